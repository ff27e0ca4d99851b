"""A fake Hugging Face Hub for tests: the unmodified `huggingface_hub` and `datasets` clients talk to it over HTTP.

`FakeHub` keeps users, repos (refs -> commits, each commit a full snapshot path -> `Blob`) and a per-repo LFS
store keyed by sha256, serves the Hub endpoints that publishing and loading use (see
/work/shared/docs/hub-protocol.md) on 127.0.0.1, and records every request, LFS upload and commit. Faults
(a status code or a dropped connection on the N-th request of a route) are injected with `inject_fault`.

With `FakeHub(xet_dir=...)` it also serves the Xet path that huggingface_hub takes when hf_xet is installed: the
xet-write/read-token routes hand out a `local://<xet_dir>` CAS endpoint, a folder that hf_xet itself writes chunks
to and reads them from (see `XetStore`); commits may then name files the client uploaded there, and resolve and
tree answers carry their Xet hashes so that downloads go through hf_xet too. Files seeded with `commit_files` stay
LFS-only (served by plain resolve, as the Hub serves files it has not moved to Xet). hf_xet resolves host names
itself, past `guard_network`; with a `local://` endpoint it has none to resolve.

Use the `hub` fixture: `from hub_server import hub_fixture  # noqa: F401`, then `def test_x(hub): ...`.
It starts a server with user "alice" (token "hf_alice", org "sousa-org"), points both clients at it and
makes any host lookup other than 127.0.0.1 fail (and the test with it). The clients use plain LFS unless the test
asks for Xet: `@pytest.mark.parametrize("hub", ["lfs", "xet"], indirect=True)`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# A subset of the .gitattributes the Hub writes into every new repo; the repo's own .gitattributes wins.
DEFAULT_LFS_PATTERNS = (
    *("*.7z", "*.arrow", "*.bin", "*.bz2", "*.gz", "*.h5", "*.lz4", "*.npy", "*.npz", "*.onnx", "*.parquet"),
    *("*.pickle", "*.pkl", "*.pt", "*.safetensors", "*.tar", "*.tar.*", "*.tgz", "*.xz", "*.zip", "*.zst"),
    *("*.flac", "*.mp3", "*.ogg", "*.wav", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.mp4"),
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores any file of 10 MiB or more in LFS
_REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"
_API = rf"/api/(?P<type>models|datasets|spaces)/{_REPO}"
_GIT = rf"/(?P<type>datasets/|spaces/)?{_REPO}"
# (method, path regex, route name): `FakeHub._route_<name>` answers; route names are also used by faults.
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("DELETE", r"/api/repos/delete", "delete_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"{_API}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
        ("GET", rf"{_API}/refs", "list_refs"),
        ("GET", rf"{_API}/auth-check(?:/(?P<access>write))?", "auth_check"),
        ("GET", rf"{_API}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        ("POST", rf"{_API}/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("POST", rf"{_API}/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", rf"{_API}/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", rf"{_API}/branch/(?P<branch>[^/]+)", "create_branch"),
        ("GET", rf"{_API}/xet-(?P<access>read|write)-token/(?P<rev>[^/]+)", "xet_token"),
        ("POST", rf"{_GIT}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("POST", rf"{_GIT}\.git/info/lfs/objects/verify", "lfs_verify"),
        ("PUT", r"/lfs-upload/(?P<ticket>\w+)(?:/(?P<part>\d+))?", "lfs_upload"),
        ("POST", r"/lfs-upload/(?P<ticket>\w+)", "lfs_complete"),
        ("HEAD", rf"{_GIT}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ("GET", rf"{_GIT}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    )
)
_NO_AUTH_ROUTES = {"lfs_upload", "lfs_complete"}  # presigned storage URLs: the client sends no token
XET_TOKEN_LIFETIME = 3600  # seconds; hf_xet asks the refresh route again shortly before a token expires


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """File content as stored in a commit; `oid` is the git oid (of the pointer file, for LFS).

    `xet_hash` is set for LFS files whose content is in the Xet store: downloads of those go through hf_xet."""

    data: bytes
    lfs: bool
    oid: str
    sha256: str
    xet_hash: str | None = None

    @classmethod
    def make(cls, data: bytes, lfs: bool, xet_hash: str | None = None) -> Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        oid = git_blob_oid(_lfs_pointer(sha256, len(data)) if lfs else data)
        return cls(data, lfs, oid, sha256, xet_hash if lfs else None)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def lfs_info(self) -> dict[str, Any]:
        return {"oid": self.sha256, "size": self.size, "pointerSize": len(_lfs_pointer(self.sha256, self.size))}

    @property
    def remote_oid(self) -> str:
        """What preupload reports and `CommitOperationAdd._local_oid` compares: sha256 for LFS, else the git oid."""
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True)
class Commit:
    """One commit: its snapshot (`files`) and the paths its operations added/deleted, in request order."""

    oid: str
    parent: str | None
    repo_id: str
    repo_type: str
    ref: str
    summary: str
    description: str
    author: str | None
    date: datetime
    files: Mapping[str, Blob]
    added: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()  # folders keep their trailing "/"


@dataclass
class Repo:
    """A repo: refs (branch names and refs/pr/N) -> commit oid, every commit, and its LFS objects."""

    repo_type: str
    repo_id: str
    private: bool
    created: datetime
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    pull_requests: int = 0

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass(frozen=True)
class User:
    """A user and one of their tokens; `role` "read" cannot write."""

    name: str
    token: str
    orgs: tuple[str, ...] = ()
    role: str = "write"


@dataclass(frozen=True)
class RequestRecord:
    """One request as answered; status 0 means the connection was dropped without an answer."""

    method: str
    path: str  # percent-decoded, without the query
    query: str
    route: str | None
    status: int
    user: str | None


@dataclass(frozen=True)
class LfsUpload:
    """One LFS object received in full (single PUT or completed multipart upload)."""

    repo_id: str
    oid: str
    size: int


@dataclass(frozen=True)
class XetUpload:
    """One file that reached the Xet store, by its Xet hash, with the sha256 and size of its content."""

    xet_hash: str
    sha256: str
    size: int


class XetStore:
    """The CAS of the Xet path: a folder that hf_xet uses as a `local://` endpoint, and what the Hub knows of it.

    hf_xet writes the chunks of uploaded files there (in xorbs) with shards that list each file by its Xet hash,
    and reads files back from it by Xet hash; the server never parses chunks. A commit, though, names files by
    sha256 only, as the real Hub learns the link from the shards. So does this store: it reads the file hashes
    from new shards (the part of the published MDB shard format, https://huggingface.co/docs/xet/shard, that lists
    files), downloads each new file back through hf_xet's public API and hashes the bytes itself. A misread shard
    can thus only make a file missing (the commit fails), never a wrong one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads: list[XetUpload] = []  # in the order the server first saw them
        self._content: dict[str, bytes] = {}  # sha256 -> content
        self._by_sha256: dict[str, XetUpload] = {}
        self._session: Any = None
        self._lock = threading.RLock()

    @property
    def endpoint(self) -> str:
        return f"local://{self.root}"

    def lookup(self, sha256: str) -> tuple[XetUpload, bytes] | None:
        """The stored file with this sha256 (scanning the store for new uploads first if needed), or None."""
        with self._lock:
            if sha256 not in self._by_sha256:
                self.scan()
            upload = self._by_sha256.get(sha256)
            return None if upload is None else (upload, self._content[sha256])

    def scan(self) -> list[XetUpload]:
        """Index the files that shards list and the server has not seen yet; returns them."""
        with self._lock:
            known = {u.xet_hash for u in self.uploads}
            found: list[XetUpload] = []
            for shard in sorted(self.root.rglob("*.mdb")):
                try:
                    hashes = _shard_file_hashes(shard.read_bytes())
                except (OSError, ValueError, struct.error):
                    continue  # a shard being written, or not one: a later scan sees it again
                for xet_hash in hashes:
                    if xet_hash in known:
                        continue
                    data = self._download(xet_hash)
                    if data is None:
                        continue  # listed but its chunks are not (all) there: an interrupted upload
                    known.add(xet_hash)
                    upload = XetUpload(xet_hash, hashlib.sha256(data).hexdigest(), len(data))
                    self.uploads.append(upload)
                    self._by_sha256.setdefault(upload.sha256, upload)
                    self._content.setdefault(upload.sha256, data)
                    found.append(upload)
            return found

    def _download(self, xet_hash: str) -> bytes | None:
        import hf_xet

        if self._session is None:
            self._session = hf_xet.XetSession()
        expiry = int(time.time()) + XET_TOKEN_LIFETIME
        with tempfile.TemporaryDirectory(prefix="fake-hub-xet-") as tmp:
            target = Path(tmp) / "file"
            try:
                with self._session.new_file_download_group(self.endpoint, "fake-hub", expiry) as group:
                    group.start_download_file(hf_xet.XetFileInfo(xet_hash), str(target))
                return target.read_bytes()
            except (RuntimeError, OSError):
                return None


def _shard_file_hashes(shard: bytes) -> list[str]:
    """The Xet hashes of the files an MDB shard lists, as hex in hf_xet's notation.

    Published layout: a 48-byte header (32-byte tag, u64 version, u64 footer size); the footer, if any, starts
    with u64 version, u64 file-info offset; the file-info section is a run of blocks, each a 48-byte header (32-byte
    file hash, u32 flags, u32 number of entries, 8 unused bytes) followed by that many 48-byte entries, as many
    verification entries if flag bit 31 is set and one 48-byte metadata entry if bit 30 is set; a header whose
    hash is all 0xff ends it. A hash is four little-endian u64, written as 16 hex digits each."""
    _, footer_size = struct.unpack_from("<QQ", shard, 32)
    offset = struct.unpack_from("<Q", shard, len(shard) - footer_size + 8)[0] if footer_size else 48
    hashes = []
    while True:
        raw = shard[offset : offset + 32]
        if len(raw) < 32:
            raise ValueError("shard ends inside its file-info section")
        if raw == b"\xff" * 32:
            return hashes
        flags, entries = struct.unpack_from("<II", shard, offset + 32)
        hashes.append("".join(f"{word:016x}" for word in struct.unpack("<4Q", raw)))
        offset += 48 * (1 + entries * (2 if flags & 1 << 31 else 1) + (1 if flags & 1 << 30 else 0))


@dataclass
class Fault:
    """Fail matching requests: let `after` through, then fail `times` of them (None: all) with `status` or a drop.

    `drop` closes the connection without an answer. `apply_first` lets the request take effect before it fails
    (a commit that landed but whose answer was lost or a 5xx)."""

    routes: frozenset[str]
    after: int = 0
    times: int | None = None
    status: int = 500
    drop: bool = False
    apply_first: bool = False
    seen: int = 0
    fired: int = 0

    def fires(self, route: str) -> bool:
        if route not in self.routes:
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class _Ticket:
    """A pending LFS upload (the presigned URL the batch endpoint handed out)."""

    repo: Repo
    oid: str
    size: int
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Request:
    """A parsed request as the routes see it."""

    method: str
    params: dict[str, str]  # the route's regex groups, percent-decoded
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    user: User | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


class HubError(Exception):
    """Answered as `{"error": message}` with `X-Error-Message` and, if given, `X-Error-Code`."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, dict(extra or {})

    def response(self) -> Response:
        response = Response.of({"error": self.message, **self.extra}, self.status)
        response.headers["X-Error-Message"] = self.message
        if self.code:
            response.headers["X-Error-Code"] = self.code
        return response


class FakeHub:
    """The Hub's state, its HTTP routes and a record of the traffic. Start with `with FakeHub() as hub:`."""

    def __init__(self, multipart_chunk_size: int | None = None, xet_dir: Path | None = None) -> None:
        """`multipart_chunk_size`: LFS objects larger than this are asked for as multipart uploads of that size.
        `xet_dir`: serve the Xet path too, with this (existing, empty) folder as the `local://` CAS."""
        self.multipart_chunk_size = multipart_chunk_size
        self.xet = XetStore(xet_dir) if xet_dir is not None else None
        self.requests: list[RequestRecord] = []
        self.lfs_uploads: list[LfsUpload] = []
        self.commits: list[Commit] = []
        self.faults: list[Fault] = []
        self.blocked_hosts: list[str] = []  # filled by `guard_network`
        self._users: dict[str, User] = {}  # token -> user
        self._repos: dict[tuple[str, str], Repo] = {}
        self._tickets: dict[str, _Ticket] = {}
        self._salt = secrets.token_hex(8)  # commit ids differ between servers, so client caches never collide
        self._lock = threading.RLock()
        self._server: _Server | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        self._server = _Server(self)
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test API: setup, inspection, faults -----------------------------------------------------------------------

    def add_user(self, name: str, token: str | None = None, orgs: Iterable[str] = (), role: str = "write") -> User:
        """Register a user (or another token of one); returns it, with `.token` to pass to the clients."""
        user = User(name, token or f"hf_{name}", tuple(orgs), role)
        self._users[user.token] = user
        return user

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> Repo:
        """Create a repo directly, with the Hub's initial `.gitattributes` commit on main."""
        with self._lock:
            repo = Repo(repo_type, repo_id, private, _now())
            self._repos[(repo_type, repo_id)] = repo
            attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS)
            files = {".gitattributes": Blob.make(attributes.encode(), lfs=False)}
            self._add_commit(repo, "main", files, "initial commit", "", None, added=(".gitattributes",))
            return repo

    def commit_files(
        self, repo_id: str, files: Mapping[str, bytes], summary: str = "seed", revision: str = "main"
    ) -> Commit:
        """Commit files directly (LFS chosen as preupload would), e.g. to seed a repo before a test."""
        with self._lock:
            repo = self.repo(repo_id)
            head = self._commit_at(repo, revision)
            snapshot = dict(head.files)
            for path, data in files.items():
                blob = Blob.make(data, self._is_lfs(snapshot, path, data))
                snapshot[path] = blob
                if blob.lfs:
                    repo.lfs_objects[blob.sha256] = data
            return self._add_commit(repo, revision, snapshot, summary, "", None, added=tuple(files))

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self._repos[(repo_type, repo_id)]

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> Commit:
        return self._commit_at(self.repo(repo_id, repo_type), revision)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """The current tree of a branch (or any revision): path -> content."""
        return {path: blob.data for path, blob in self.head(repo_id, revision, repo_type).files.items()}

    def requests_for(self, *routes: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.route in routes]

    def xet_uploads(self) -> list[XetUpload]:
        """Every file that reached the Xet store so far (it is scanned now), in the order the server saw them."""
        if self.xet is None:
            return []
        with self._lock:
            self.xet.scan()
            return list(self.xet.uploads)

    def uploaded_oids(self) -> list[str]:
        """The sha256 of every object received through either path: LFS uploads, then files in the Xet store."""
        return [u.oid for u in self.lfs_uploads] + [u.sha256 for u in self.xet_uploads()]

    def inject_fault(
        self,
        *routes: str,
        after: int = 0,
        times: int | None = None,
        status: int = 500,
        drop: bool = False,
        apply_first: bool = False,
    ) -> Fault:
        """Fail requests of these routes (see ROUTES): the first `after` pass, then `times` fail (None: all)."""
        fault = Fault(frozenset(routes), after, times, status, drop, apply_first)
        self.faults.append(fault)
        return fault

    def fail_lfs_uploads_after(self, n: int, times: int | None = None, status: int = 500, drop: bool = False) -> Fault:
        """Let `n` LFS PUTs (single or part) succeed, then fail. The client retries 5xx and drops 5 times with
        1+2+4+8+8 s of backoff: pass a 4xx status for a fast hard failure, or `times=1` for one retried failure."""
        return self.inject_fault("lfs_upload", after=n, times=times, status=status, drop=drop)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- state helpers -------------------------------------------------------------------------------------------

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def _add_commit(
        self,
        repo: Repo,
        ref: str,
        files: dict[str, Blob],
        summary: str,
        description: str,
        author: str | None,
        added: tuple[str, ...] = (),
        deleted: tuple[str, ...] = (),
    ) -> Commit:
        parent = repo.refs.get(ref)
        tree = hashlib.sha1(json.dumps(sorted((p, b.oid) for p, b in files.items())).encode()).hexdigest()
        seed = f"{self._salt}\n{len(self.commits)}\n{parent}\n{tree}\n{summary}"
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(
            oid, parent, repo.repo_id, repo.repo_type, ref, summary, description, author, _now(), files, added, deleted
        )
        repo.commits[oid] = commit
        repo.refs[ref] = oid
        self.commits.append(commit)
        return commit

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        """The commit a branch, refs/pr/N, refs/heads/<branch> or a full commit id points to."""
        oid = repo.refs.get(revision.removeprefix("refs/heads/"))
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def _is_lfs(self, files: Mapping[str, Blob], path: str, sample: bytes, size: int | None = None) -> bool:
        """LFS if the repo's .gitattributes says so, if the file is large, or if it looks binary."""
        size = len(sample) if size is None else size
        attributes = files.get(".gitattributes")
        patterns = [
            line.split()[0]
            for line in (attributes.data.decode(errors="replace").splitlines() if attributes else ())
            if "filter=lfs" in line and not line.startswith("#")
        ] or DEFAULT_LFS_PATTERNS
        matched = any(fnmatch(path if "/" in p else path.rsplit("/", 1)[-1], p) for p in patterns)
        return size > 0 and (matched or size >= LFS_SIZE_THRESHOLD or b"\0" in sample[:512])

    def _can_write(self, user: User | None, namespace: str) -> bool:
        return user is not None and user.role == "write" and namespace in (user.name, *user.orgs)

    def _repo_for(self, req: Request, write: bool = False) -> Repo:
        """The route's repo, checking visibility (404/401 RepoNotFound) and, if `write`, the rights (401/403)."""
        repo_type = req.params["type"].strip("/").removesuffix("s") if req.params.get("type") else "model"
        repo = self._repos.get((repo_type, req.params["repo"]))
        user = req.user
        if repo is None or (repo.private and not (user and repo.namespace in (user.name, *user.orgs))):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and user is None:
            raise HubError(401, "You must be authenticated to write to this repo")
        if write and not self._can_write(user, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to {repo.repo_type}s/{repo.repo_id}")
        return repo

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any] | None:
        """A tree / paths-info entry for a file or folder of `commit`, None if there is neither."""
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = blob.lfs_info
            if blob.xet_hash:
                entry["xetHash"] = blob.xet_hash
        else:
            oid = _folder_oid(commit.files, path)
            if oid is None:
                return None
            entry = {"type": "directory", "oid": oid, "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, commit, path)
            entry["lastCommit"] = {"id": last.oid, "title": last.summary, "date": _iso(last.date)}
        return entry

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> Commit:
        """The most recent commit (from `commit` back) that changed the file or folder `path`."""

        def state(c: Commit) -> str | None:
            blob = c.files.get(path)
            return blob.oid if blob else _folder_oid(c.files, path)

        while commit.parent is not None and state(repo.commits[commit.parent]) == state(commit):
            commit = repo.commits[commit.parent]
        return commit

    # -- routes: each takes the parsed request and returns a Response or raises HubError -----------------------

    def _route_whoami(self, req: Request) -> Response:
        if req.user is None:
            raise HubError(401, "Invalid username or password.")
        u = req.user
        orgs = [{"type": "org", "name": org, "roleInOrg": "write"} for org in u.orgs]
        token = {"displayName": f"{u.name}-token", "role": u.role}
        auth = {"type": "access_token", "accessToken": token}
        return Response.of(
            {"type": "user", "id": u.name, "name": u.name, "fullname": u.name.title(), "email": f"{u.name}@example.org"}
            | {"emailVerified": True, "isPro": False, "orgs": orgs, "auth": auth}
        )

    def _route_create_repo(self, req: Request) -> Response:
        body = req.json()
        if req.user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        repo_type, name = body.get("type") or "model", body.get("name", "")
        namespace = body.get("organization") or req.user.name
        if repo_type not in URL_PREFIXES or not re.fullmatch(r"[\w.\-]{1,96}", name) or ".." in name:
            raise HubError(400, f"Invalid repo name or type: {name!r} ({repo_type})")
        if not self._can_write(req.user, namespace):
            raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
        repo_id = f"{namespace}/{name}"
        existing = self._repos.get((repo_type, repo_id))
        if existing is not None:
            raise HubError(409, f"You already created this {repo_type} repo", extra={"url": self._repo_url(existing)})
        private = body.get("private") or body.get("visibility") == "private"
        repo = self.create_repo(repo_id, repo_type, private=bool(private))
        return Response.of({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _route_delete_repo(self, req: Request) -> Response:
        body = req.json()
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or (req.user.name if req.user else "")
        req.params.update(type=repo_type + "s", repo=f"{namespace}/{body.get('name', '')}")
        repo = self._repo_for(req, write=True)
        del self._repos[(repo.repo_type, repo.repo_id)]
        return Response.of({})

    def _route_validate_yaml(self, req: Request) -> Response:
        content = req.json().get("content", "")
        if content.startswith("---") and "\n---" not in content[3:]:
            return Response.of({"errors": [{"message": "README.md metadata: unterminated YAML block"}]}, 400)
        return Response.of({"errors": [], "warnings": []})

    def _route_repo_info(self, req: Request) -> Response:
        repo = self._repo_for(req)
        commit = self._commit_at(repo, req.params.get("rev") or "main")
        blobs = req.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling |= {"size": blob.size, "blobId": blob.oid}
                if blob.lfs:
                    sibling["lfs"] = {"sha256": blob.sha256, **blob.lfs_info}
            siblings.append(sibling)
        return Response.of(
            {"_id": repo.repo_id, "id": repo.repo_id, "author": repo.namespace, "sha": commit.oid}
            | {"private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": []}
            | {"createdAt": _iso(repo.created), "lastModified": _iso(commit.date), "siblings": siblings}
        )

    def _route_auth_check(self, req: Request) -> Response:
        """`HfApi.auth_check`: 200 if the token may read (or, `/write`, write) the repo; 404/401 RepoNotFound for a
        repo it cannot see or that does not exist, 401 without a token for writing, 403 without the rights."""
        self._repo_for(req, write=req.params.get("access") == "write")
        return Response.of({})

    def _route_list_refs(self, req: Request) -> Response:
        repo = self._repo_for(req)

        def refs(pr: bool) -> list[dict[str, str]]:
            return [
                {"name": name, "ref": name if pr else f"refs/heads/{name}", "targetCommit": oid}
                for name, oid in sorted(repo.refs.items())
                if name.startswith("refs/pr/") == pr
            ]

        prs = refs(True) if req.query.get("include_prs") else []
        return Response.of({"branches": refs(False), "converts": [], "tags": [], "pullRequests": prs})

    def _route_tree(self, req: Request) -> Response:
        repo = self._repo_for(req)
        commit = self._commit_at(repo, req.params["rev"])
        folder = (req.params.get("path") or "").strip("/")
        recursive = req.query.get("recursive", ["false"])[0].lower() == "true"
        expand = req.query.get("expand", ["false"])[0].lower() == "true"
        if folder and _folder_oid(commit.files, folder) is None:
            raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""
        paths = set()
        for path in commit.files:
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                paths.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        entries = [e for p in sorted(paths) if (e := self._entry(repo, commit, p, expand)) is not None]
        return Response.of(sorted(entries, key=lambda e: (e["type"] != "directory", e["path"])))

    def _route_paths_info(self, req: Request) -> Response:
        repo = self._repo_for(req)
        commit = self._commit_at(repo, req.params["rev"])
        form = parse_qs(req.body.decode())
        expand = form.get("expand", ["false"])[0].lower() == "true"
        entries = [self._entry(repo, commit, p.strip("/"), expand) for p in form.get("paths", [])]
        return Response.of([e for e in entries if e is not None])

    def _route_preupload(self, req: Request) -> Response:
        repo = self._repo_for(req, write="create_pr" not in req.query)
        head = self._commit_at(repo, req.params["rev"])
        answers = []
        for file in req.json().get("files", []):
            path, size = file["path"], int(file["size"])
            sample = base64.b64decode(file.get("sample", ""))
            remote = head.files.get(path)
            mode = "lfs" if self._is_lfs(head.files, path, sample, size) else "regular"
            answers.append(
                {"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": remote.remote_oid if remote else None}
            )
        return Response.of({"files": answers, "commitOid": head.oid})

    def _route_commit(self, req: Request) -> Response:
        create_pr = req.query.get("create_pr", ["0"])[0] == "1"
        repo = self._repo_for(req, write=not create_pr)
        revision = req.params["rev"]
        head = self._commit_at(repo, revision)
        if revision.removeprefix("refs/heads/") not in repo.refs:
            raise HubError(400, f"Invalid rev id: {revision} is not a branch")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files, added, deleted = dict(head.files), [], []
        for line in lines[1:]:  # applied in order: a delete after an add removes the added file
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                files[path] = Blob.make(base64.b64decode(value.get("content", "")), lfs=False)
                added.append(path)
            elif key == "lfsFile":
                data, xet_hash = self._lfs_content(repo, value.get("oid", ""))
                if data is None or ("size" in value and value["size"] != len(data)):
                    raise HubError(400, f"LFS object {value.get('oid')} of {path} was not uploaded")
                files[path] = Blob.make(data, lfs=True, xet_hash=xet_hash)
                added.append(path)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                deleted.append(path)
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(f"{path}/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
                deleted.append(f"{path}/")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        ref, pr_url = revision.removeprefix("refs/heads/"), None
        if create_pr:
            repo.pull_requests += 1
            ref, pr_url = f"refs/pr/{repo.pull_requests}", f"{self._repo_url(repo)}/discussions/{repo.pull_requests}"
            repo.refs[ref] = head.oid
        summary, description = header.get("summary", ""), header.get("description", "")
        author = req.user.name if req.user else None
        commit = self._add_commit(repo, ref, files, summary, description, author, tuple(added), tuple(deleted))
        commit_url = f"{self._repo_url(repo)}/commit/{commit.oid}"
        return Response.of(
            {"success": True, "commitOid": commit.oid, "commitUrl": commit_url, "pullRequestUrl": pr_url}
            | {"hookOutput": ""}
        )

    def _lfs_content(self, repo: Repo, sha256: str) -> tuple[bytes | None, str | None]:
        """The content of an LFS object of the repo, uploaded through LFS or Xet, and its Xet hash if it has one."""
        found = self.xet.lookup(sha256) if self.xet is not None else None
        if found is not None:
            return found[1], found[0].xet_hash
        return repo.lfs_objects.get(sha256), None

    def _route_xet_token(self, req: Request) -> Response:
        """A Xet access token with the CAS endpoint, in headers (huggingface_hub reads those) and JSON (hf_xet)."""
        write = req.params["access"] == "write"
        repo = self._repo_for(req, write=write and "create_pr" not in req.query)
        if req.params["rev"] != "None":  # the client asks for .../None when it will open a pull request
            self._commit_at(repo, req.params["rev"])
        if self.xet is None:
            raise HubError(404, "Xet storage is not enabled on this FakeHub (start it with xet_dir=...)")
        token, expires = f"xet_{secrets.token_hex(8)}", int(time.time()) + XET_TOKEN_LIFETIME
        response = Response.of({"accessToken": token, "exp": expires, "casUrl": self.xet.endpoint})
        response.headers |= {"X-Xet-Cas-Url": self.xet.endpoint, "X-Xet-Access-Token": token}
        response.headers["X-Xet-Token-Expiration"] = str(expires)
        return response

    def _route_create_branch(self, req: Request) -> Response:
        repo = self._repo_for(req, write=True)
        branch = req.params["branch"]
        if branch in repo.refs or branch.startswith("refs/"):
            raise HubError(409, f"Reference already exists or is reserved: {branch}")
        start = self._commit_at(repo, req.json().get("startingPoint") or "main")
        repo.refs[branch] = start.oid
        return Response.of({})

    def _route_lfs_batch(self, req: Request) -> Response:
        body = req.json()
        repo = self._repo_for(req, write="ref" in body)  # no ref: an upload for a pull request, read rights suffice
        chunk, objects = self.multipart_chunk_size, []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), int(obj.get("size", 0))
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid sha256 oid"}})
                continue
            if oid in repo.lfs_objects:
                objects.append({"oid": oid, "size": size})  # no "actions": already stored, the client skips it
                continue
            ticket = secrets.token_hex(12)
            self._tickets[ticket] = _Ticket(repo, oid, size)
            upload: dict[str, Any] = {"href": f"{self.url}/lfs-upload/{ticket}"}
            if chunk is not None and size > chunk:
                parts = {f"{n:05d}": f"{self.url}/lfs-upload/{ticket}/{n}" for n in range(1, -(-size // chunk) + 1)}
                upload["header"] = {"chunk_size": str(chunk), **parts}
            verify = {"href": f"{self._repo_url(repo)}.git/info/lfs/objects/verify"}
            objects.append({"oid": oid, "size": size, "actions": {"upload": upload, "verify": verify}})
        transfer = "multipart" if chunk is not None else "basic"
        return Response.of({"transfer": transfer, "objects": objects, "hash_algo": "sha256"})

    def _route_lfs_verify(self, req: Request) -> Response:
        repo = self._repo_for(req)
        body = req.json()
        data = repo.lfs_objects.get(body.get("oid", ""))
        if data is None or len(data) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} not found")
        return Response.of({"message": "Object verified"})

    def _route_lfs_upload(self, req: Request) -> Response:
        ticket = self._ticket(req)
        if req.params.get("part"):
            ticket.parts[int(req.params["part"])] = req.body
            return Response(headers={"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})
        self._store_lfs(ticket, req.body)
        return Response()

    def _route_lfs_complete(self, req: Request) -> Response:
        ticket = self._ticket(req)
        numbers = [int(part["partNumber"]) for part in req.json().get("parts", [])]
        if not numbers or any(n not in ticket.parts for n in numbers):
            raise HubError(400, "Multipart upload is missing parts")
        self._store_lfs(ticket, b"".join(ticket.parts[n] for n in sorted(numbers)))
        return Response.of({})

    def _ticket(self, req: Request) -> _Ticket:
        ticket = self._tickets.get(req.params["ticket"])
        if ticket is None:
            raise HubError(403, "Upload URL expired or unknown")
        return ticket

    def _store_lfs(self, ticket: _Ticket, data: bytes) -> None:
        if len(data) != ticket.size or hashlib.sha256(data).hexdigest() != ticket.oid:
            raise HubError(400, f"Uploaded content does not match oid {ticket.oid} / size {ticket.size}")
        ticket.repo.lfs_objects[ticket.oid] = data
        self.lfs_uploads.append(LfsUpload(ticket.repo.repo_id, ticket.oid, ticket.size))

    def _route_resolve(self, req: Request) -> Response:
        repo = self._repo_for(req)
        commit = self._commit_at(repo, req.params["rev"])
        blob = commit.files.get(req.params["path"])
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        etag = f'"{blob.sha256 if blob.lfs else blob.oid}"'
        headers = {"X-Repo-Commit": commit.oid, "ETag": etag, "Accept-Ranges": "bytes"}
        headers["Content-Type"] = "application/octet-stream"
        if blob.lfs:
            headers |= {"X-Linked-Etag": etag, "X-Linked-Size": str(blob.size)}
        if blob.xet_hash and self.xet is not None:  # the client downloads through hf_xet; GET still answers
            refresh = f"{self.url}/api/{repo.repo_type}s/{repo.repo_id}/xet-read-token/{commit.oid}"
            headers |= {"X-Xet-Hash": blob.xet_hash, "X-Xet-Refresh-Route": refresh}
            headers["Link"] = f'<{refresh}>; rel="xet-auth"'
        if req.method == "HEAD":
            return Response(headers=headers | {"Content-Length": str(blob.size)})
        span = _parse_range(req.headers.get("Range"), blob.size)
        if span is None:
            return Response(200, blob.data, headers)
        start, end = span
        if start >= blob.size:
            return Response(416, b"", headers | {"Content-Range": f"bytes */{blob.size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        return Response(206, blob.data[start : end + 1], headers)

    # -- dispatch ----------------------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Response | None:
        """Answer one request (None: drop the connection) and record it."""
        split = urlsplit(raw_path)
        route, params, response, user, fault = None, {}, None, None, None
        for route_method, pattern, name in ROUTES:
            match = pattern.fullmatch(split.path)
            if route_method == method and match:
                route = name
                params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                break
        with self._lock:
            try:
                if route is None:
                    raise HubError(404, f"No such endpoint: {method} {split.path}")
                fault = next((f for f in self.faults if f.fires(route)), None)  # the first fault that fires
                if fault is None or fault.apply_first:
                    req = Request(method, params, parse_qs(split.query), headers, body)
                    if route not in _NO_AUTH_ROUTES:
                        req.user = user = self._authenticate(headers)
                    response = getattr(self, f"_route_{route}")(req)
            except HubError as error:
                response = error.response()
            if fault is not None:
                response = None if fault.drop else HubError(fault.status, f"Injected failure of {route}").response()
            status = 0 if response is None else response.status
            self.requests.append(
                RequestRecord(method, unquote(split.path), split.query, route, status, user.name if user else None)
            )
        return response

    def _authenticate(self, headers: Mapping[str, str]) -> User | None:
        authorization = headers.get("Authorization") or ""
        if not authorization:
            return None
        user = self._users.get(authorization.removeprefix("Bearer ").strip())
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user


def _folder_oid(files: Mapping[str, Blob], folder: str) -> str | None:
    """A stable id for the folder's content, None if no file lies under it (the root always exists)."""
    prefix = f"{folder}/" if folder else ""
    inside = sorted((p, b.oid) for p, b in files.items() if p.startswith(prefix))
    if folder and not inside:
        return None
    return hashlib.sha1(json.dumps(inside).encode()).hexdigest()


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `bytes=a-b`, `bytes=a-` or `bytes=-n` range, None without one."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive plumbing; `FakeHub.handle` does the rest."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self) -> None:
        response = self.server.hub.handle(self.command, self.path, self.headers, self._read_body())
        if response is None:
            self.close_connection = True  # a dropped connection: no status line at all
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Silent: the FakeHub record is the log."""


class _Server(ThreadingHTTPServer):
    """A threading server on 127.0.0.1 (a free port) that can close its kept-alive connections on stop."""

    daemon_threads = True

    def __init__(self, hub: FakeHub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self._connections: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


# -- pointing the clients at a FakeHub --------------------------------------------------------------------------


def point_clients_at(
    url: str, monkeypatch: pytest.MonkeyPatch, home: Path, token: str | None, xet: bool = False
) -> None:
    """Make huggingface_hub and datasets (already imported or not) use `url`, caches under `home`, and plain LFS
    for uploads unless `xet` (then hf_xet uploads and downloads LFS files, through the server's Xet routes)."""
    import datasets.config
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api
    from huggingface_hub import HfFileSystem

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    env = {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "" if xet else "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env |= {"HF_HOME": str(home), "HF_XET_TELEMETRY_ENABLED": "false"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    host = urlsplit(url).hostname or "127.0.0.1"
    for name, value in {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {host},
        "HF_HUB_DISABLE_XET": not xet,  # with hf_xet installed and this False, LFS files go through Xet
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,  # also stops the fetch of {ENDPOINT}/api/agent-harnesses
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),  # no stored token from the user's home
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", url)  # module-level `HfApi()` behind create_commit()
    for name, value in {
        "HF_ENDPOINT": url,
        "HUB_DATASETS_URL": url + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_HUB_OFFLINE": False,
        "USE_PARQUET_EXPORT": False,  # else load_dataset asks http://datasets-server.<host> for exported infos
        "HF_UPDATE_DOWNLOAD_COUNTS": False,  # else load_dataset pings s3.amazonaws.com
        "HF_DATASETS_CACHE": home / "datasets",
        "DOWNLOADED_DATASETS_PATH": home / "datasets" / "downloads",
        "EXTRACTED_DATASETS_PATH": home / "datasets" / "downloads" / "extracted",
    }.items():
        monkeypatch.setattr(datasets.config, name, value)
    HfFileSystem.clear_instance_cache()  # fsspec caches instances (and their listings) across tests


def guard_network(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail every host lookup except the loopback; the host names land in `hub.blocked_hosts`."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("127.0.0.1", "localhost", "::1"):
            hub.blocked_hosts.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"FakeHub test: no network access to {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


DEFAULT_USER, DEFAULT_TOKEN, DEFAULT_ORG = "alice", "hf_alice", "sousa-org"


@pytest.fixture(name="hub")
def hub_fixture(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A started FakeHub with user alice (HF_TOKEN, org sousa-org), both clients pointed at it, no other network.

    Uploads use plain LFS; parametrize indirectly with "xet" (`parametrize("hub", ["lfs", "xet"], indirect=True)`)
    for the Xet path, with the CAS in the test's tmp_path."""
    from huggingface_hub import HfFileSystem

    transfer = getattr(request, "param", "lfs")
    assert transfer in ("lfs", "xet"), f"hub fixture: unknown transfer {transfer!r}"
    xet_dir = tmp_path / "xet-cas" if transfer == "xet" else None
    if xet_dir is not None:
        xet_dir.mkdir()
    with FakeHub(xet_dir=xet_dir) as server:
        server.add_user(DEFAULT_USER, token=DEFAULT_TOKEN, orgs=(DEFAULT_ORG,))
        point_clients_at(server.url, monkeypatch, tmp_path / "hf-home", token=DEFAULT_TOKEN, xet=xet_dir is not None)
        guard_network(server, monkeypatch)
        yield server
        HfFileSystem.clear_instance_cache()
    assert not server.blocked_hosts, f"requests tried to leave 127.0.0.1: {server.blocked_hosts}"
