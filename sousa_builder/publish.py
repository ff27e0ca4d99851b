"""Publish a prepared SOUSA folder to the Hub: one atomic commit, resumable, idempotent.

How it stays safe:
- The prepared folder is validated before anything is sent (the prepared checks of `sousa-builder
  validate`); a folder that fails them is refused.
- Nothing is purged first. LFS content is uploaded before any commit (`preupload_lfs_files`);
  then a single `create_commit` adds the new shards and card and deletes the stale files, with
  `parent_commit` pinned to the revision the plan was made against. A reader of the branch sees the
  old tree or the new one, never a mix.
- Resumable: an interrupted upload changes no branch; a rerun asks the server which objects it
  already has and sends only the others.
- Idempotent: `prepare` output is byte-for-byte deterministic, files equal to the remote ones are
  left out of the commit, and when nothing differs no commit is made. File hashes are remembered
  (under HF_HOME) with the file's size, times and inode, so publishing again reads no unchanged file.

    python -m sousa_builder.publish user/sousa --data-dir output/dataset
    python -m sousa_builder.publish user/sousa --prepared build/sousa
    python -m sousa_builder.publish user/sousa --data-dir output/dataset --dry-run build/plan
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from datasets import DatasetInfo
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_token,
)
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import EntryNotFoundError

from .builder import config_names
from .card import card_infos, dataset_card_text
from .errors import HubAccessError, HubRevisionError, PreparedFolderError, PublishConflictError
from .prepare import AUXILIARY_DIR, README
from .validate import validate_prepared

logger = logging.getLogger(__name__)

# Where earlier versions of the dataset kept files: stale wherever they are found.
LEGACY_FOLDERS = ("data", "midi", "labels")
LEGACY_SUFFIXES = (".flac", ".mid", ".wav")
# Files per preupload call: each call asks the server about its files once, then uploads.
PREUPLOAD_BATCH = 50
# Rows per split that the pre-publish validation loads with `datasets` (the footers are checked in full).
VALIDATION_ROWS = 100
# Under HF_HOME: sha256 of prepared files already hashed, so that a re-publish reads no unchanged file.
HASH_CACHE = "sousa-builder/sha256-cache.json"
HASH_THREADS = min(4, os.cpu_count() or 1)


@dataclass
class PublishPlan:
    """What a publish would change on the branch, file by file (paths in the repo)."""

    repo_id: str
    revision: str
    parent_commit: str | None
    add: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_to_send: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.add or self.replace or self.delete)

    def summary(self) -> str:
        """A human-readable plan, one section per action."""
        lines = [f"plan for {self.repo_id}@{self.revision}:"]
        for title, paths in (("add", self.add), ("replace", self.replace), ("delete", self.delete)):
            lines.append(f"  {title}: {len(paths)} file(s)")
            lines += [f"    {path}" for path in paths]
        lines.append(f"  unchanged: {len(self.unchanged)} file(s); kept as they are: {len(self.kept)} file(s)")
        lines.append(f"  bytes to send: {self.bytes_to_send:,}")
        return "\n".join(lines)


@dataclass
class PublishResult:
    """The plan carried out, and the commit it made (None when there was nothing to publish)."""

    plan: PublishPlan
    commit_url: str | None = None
    pull_request_url: str | None = None
    cancelled: bool = False


@dataclass
class _LocalFile:
    path: str
    source: Path | bytes
    size: int
    sha256: str
    git_sha1: str


def publish(
    repo_id: str,
    prepared: str | os.PathLike,
    *,
    token: str | None = None,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    commit_message: str | None = None,
    configs: Sequence[str] | None = None,
    dry_run_dir: str | os.PathLike | None = None,
    confirm: Callable[[PublishPlan], bool] | None = None,
    endpoint: str | None = None,
) -> PublishResult:
    """Push the prepared folder's configs (all, or `configs`), auxiliary tables and card to `repo_id`.

    The folder must pass the prepared checks of `sousa-builder validate` (`PreparedFolderError` if not)
    before anything is sent or written; when the branch already holds exactly these files, nothing is
    sent and the checks are not run.
    Configs already on the Hub but not pushed are kept, with their entries in the card.
    With `dry_run_dir`, nothing is sent: the tree that would be pushed is written there instead.
    `confirm` sees the plan before anything is uploaded; returning False stops there.
    """
    prepared = Path(prepared)
    local_infos = read_prepared_infos(prepared)
    local_card = (_git_sha1((prepared / README).read_bytes()), dict(local_infos))
    if configs:
        missing = sorted(set(configs) - set(local_infos))
        if missing:
            raise PreparedFolderError(f"{prepared} has no config {', '.join(missing)} to publish")
        local_infos = {name: info for name, info in local_infos.items() if name in configs}
    api = HfApi(endpoint=endpoint, token=token or get_token())
    if dry_run_dir is None:
        _check_write_access(api, repo_id)
    remote = _remote_state(api, repo_id, revision, local_card)
    kept_infos = {name: info for name, info in remote.infos.items() if name not in local_infos}
    card = dataset_card_text({**kept_infos, **local_infos}).encode("utf-8")
    local = _local_files(prepared, card, local_infos)
    plan = _plan(repo_id, remote, local, pushed_configs=set(local_infos))
    if plan.is_empty and dry_run_dir is None:
        # The branch holds exactly these files already: nothing would be sent, so there is nothing to check.
        logger.info("nothing to publish: %s@%s already holds these files", repo_id, plan.revision)
        return PublishResult(plan)

    check_prepared(prepared)
    if dry_run_dir is not None:
        _write_tree(local, Path(dry_run_dir))
        return PublishResult(plan)
    if confirm is not None and not confirm(plan):
        return PublishResult(plan, cancelled=True)
    _create_repo(api, repo_id, private)

    additions = [_addition(f) for f in local if f.path in {*plan.add, *plan.replace}]
    for start in range(0, len(additions), PREUPLOAD_BATCH):
        api.preupload_lfs_files(
            repo_id, additions[start : start + PREUPLOAD_BATCH], repo_type="dataset", revision=plan.revision
        )
    try:
        commit = api.create_commit(
            repo_id,
            operations=[*(CommitOperationDelete(path) for path in plan.delete), *additions],
            commit_message=commit_message or _commit_message(local_infos),
            repo_type="dataset",
            revision=plan.revision,
            create_pr=create_pr,
            parent_commit=plan.parent_commit,
        )
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 412:
            raise PublishConflictError(
                f"{repo_id}@{plan.revision} changed while publishing (someone else committed); run again: "
                "the uploaded files are kept on the Hub and will not be sent twice"
            ) from None
        raise
    return PublishResult(plan, commit_url=commit.commit_url, pull_request_url=commit.pr_url)


def read_prepared_infos(prepared: Path) -> dict[str, DatasetInfo]:
    """Config name -> info (features, splits, sizes) from a prepared folder's README YAML."""
    readme = prepared / README
    if not readme.is_file():
        raise PreparedFolderError(f"{readme}: missing; run `sousa-builder prepare` to make a prepared folder")
    infos = card_infos(readme.read_text(encoding="utf-8"))
    unknown = sorted(set(infos) - set(config_names()))
    if not infos or unknown:
        raise PreparedFolderError(f"{readme}: dataset_info lists {unknown or 'no'} config(s) that this tool makes")
    for name, info in infos.items():
        for split in info.splits or {}:
            if not list((prepared / name).glob(f"{split}-*.parquet")):
                raise PreparedFolderError(f"{prepared / name}: no shard for split {split!r} that the README lists")
    return infos


def check_prepared(prepared: Path) -> None:
    """Run the prepared-folder checks of `sousa-builder validate`; raise if any fails."""
    report = validate_prepared(prepared, sample=VALIDATION_ROWS)
    failures = report.with_status("fail")
    if failures:
        reasons = "\n".join(f"  {check.name}: {check.text}" for check in failures)
        raise PreparedFolderError(
            f"{prepared} fails validation, so nothing was published:\n{reasons}\n"
            f"(`sousa-builder validate --prepared {prepared}` gives the full report)"
        )
    logger.info("validated %s: %d checks, no failure", prepared, len(report.checks))


@dataclass
class _RemoteState:
    revision: str
    sha: str | None
    files: dict[str, tuple[str, int]]  # path -> (sha256 for LFS files or git sha1, size)
    infos: dict[str, DatasetInfo]


def _remote_state(
    api: HfApi, repo_id: str, revision: str | None, local_card: tuple[str, dict[str, DatasetInfo]]
) -> _RemoteState:
    """The branch's commit, files (with content hashes) and card infos; empty for a repo not created yet.

    `local_card` is the git sha1 of the prepared folder's README and its infos: a remote card with that
    sha1 is that card, and is not downloaded.
    """
    try:
        info = api.repo_info(repo_id, repo_type="dataset", revision=revision)
    except RevisionNotFoundError as err:
        raise HubRevisionError(
            f"revision {revision!r} does not exist in dataset {repo_id}; create the branch first or omit --revision"
        ) from err
    except RepositoryNotFoundError:
        return _RemoteState(revision or "main", None, {}, {})
    files = {}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", revision=info.sha, recursive=True):
        if isinstance(entry, RepoFile):
            files[entry.path] = (entry.lfs.sha256 if entry.lfs else entry.blob_id, entry.size)
    infos = {}
    if README in files and files[README][0] == local_card[0]:
        infos = local_card[1]
    elif README in files:
        try:
            card = Path(api.hf_hub_download(repo_id, README, repo_type="dataset", revision=info.sha))
            infos = card_infos(card.read_text(encoding="utf-8"), ignore_metadata_errors=True)
        except (EntryNotFoundError, ValueError, UnicodeDecodeError, yaml.YAMLError) as err:
            logger.warning("ignoring the card of %s: %s", repo_id, err)
    return _RemoteState(revision or "main", info.sha, files, infos)


def _local_files(prepared: Path, card: bytes, infos: dict[str, DatasetInfo]) -> list[_LocalFile]:
    """The files to push: the shards of the configs in `infos`, the auxiliary tables, and the card."""
    local = [_LocalFile(README, card, len(card), hashlib.sha256(card).hexdigest(), _git_sha1(card))]
    paths = [path for folder in (*infos, AUXILIARY_DIR) for path in sorted((prepared / folder).glob("*.parquet"))]
    hashes = _HashCache.load()
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:  # hashlib lets go of the GIL: files in parallel
        for path, (sha256, size) in zip(paths, pool.map(hashes.sha256, paths)):
            local.append(_LocalFile(path.relative_to(prepared).as_posix(), path, size, sha256, ""))
    hashes.save()
    return local


def _git_sha1(data: bytes) -> str:
    """The git blob id of `data` (what the Hub reports for a file that is not in LFS)."""
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class _HashCache:
    """sha256 of local files, remembered with what `stat` said of the file when it was hashed.

    Publishing an unchanged folder again then reads none of it (git's index does the same). A file
    that `prepare` rewrote is a new file (new inode and times) and is hashed again.
    """

    def __init__(self, path: Path, entries: dict[str, list]):
        self.path, self.entries, self.changed = path, entries, False

    @classmethod
    def load(cls) -> _HashCache:
        path = Path(hf_constants.HF_HOME) / HASH_CACHE
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def sha256(self, file: Path) -> tuple[str, int]:
        """The file's sha256 (hex) and size."""
        key, info = str(file.absolute()), file.stat()
        stamp = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
        entry = self.entries.get(key)
        if isinstance(entry, list) and entry[:1] == [stamp]:
            return entry[1], info.st_size
        digest, buffer = hashlib.sha256(), memoryview(bytearray(4 << 20))
        with open(file, "rb", buffering=0) as stream:
            while count := stream.readinto(buffer):
                digest.update(buffer[:count])
        self.entries[key] = [stamp, digest.hexdigest()]
        self.changed = True
        return digest.hexdigest(), info.st_size

    def save(self) -> None:
        """Write the cache (entries of files that are gone are dropped); a failure only costs a rehash later."""
        if not self.changed:
            return
        kept = {key: entry for key, entry in self.entries.items() if os.path.exists(key)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(kept), encoding="utf-8")
            partial.replace(self.path)
        except OSError as err:
            logger.warning("could not save the file hash cache %s: %s", self.path, err)


def _addition(f: _LocalFile) -> CommitOperationAdd:
    """The commit operation adding `f`, with the sha256 already computed (the client would read the file again)."""
    operation = CommitOperationAdd(f.path, _fileobj(f.source))
    operation.upload_info.sha256 = bytes.fromhex(f.sha256)
    return operation


def _plan(repo_id: str, remote: _RemoteState, local: list[_LocalFile], pushed_configs: set[str]) -> PublishPlan:
    plan = PublishPlan(repo_id, remote.revision, remote.sha)
    for f in local:
        remote_file = remote.files.get(f.path)
        if remote_file is None:
            plan.add.append(f.path)
        elif remote_file[0] in (f.sha256, f.git_sha1):
            plan.unchanged.append(f.path)
            continue
        else:
            plan.replace.append(f.path)
        plan.bytes_to_send += f.size
    local_paths = {f.path for f in local}
    for path in sorted(remote.files):
        if path in local_paths:
            continue
        (plan.delete if _is_stale(path, pushed_configs) else plan.kept).append(path)
    return plan


def _is_stale(path: str, pushed_configs: set[str]) -> bool:
    """A remote file the new tree replaces: in a pushed config's folder, auxiliary/, or an older layout."""
    parts = PurePosixPath(path).parts
    if len(parts) > 1 and parts[0] in {*pushed_configs, "auxiliary", *LEGACY_FOLDERS}:
        return True
    if len(parts) == 1 and path.endswith(".parquet"):
        return True
    return path.endswith(LEGACY_SUFFIXES)


def _fileobj(source: Path | bytes) -> str | bytes:
    return source if isinstance(source, bytes) else str(source)


def _write_tree(local: list[_LocalFile], target: Path) -> None:
    """Write the files that would be pushed into `target` (replacing an earlier dry run there)."""
    if target.exists() and any(target.iterdir()) and not (target / README).is_file():
        raise PreparedFolderError(f"{target} exists and is not an earlier dry run; choose another folder")
    if target.exists():
        shutil.rmtree(target)
    for f in local:
        destination = target / f.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(f.source, bytes):
            destination.write_bytes(f.source)
        else:
            shutil.copyfile(f.source, destination)


def _commit_message(infos: dict[str, DatasetInfo]) -> str:
    rows = ", ".join(
        f"{name}: {sum(s.num_examples for s in info.splits.values())} rows" for name, info in infos.items()
    )
    return f"Publish SOUSA ({rows})"


def _check_write_access(api: HfApi, repo_id: str) -> None:
    if not api.token:
        raise HubAccessError("no Hub token: set HF_TOKEN or log in with `hf auth login`")
    try:
        whoami = api.whoami()
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 401:
            raise HubAccessError(
                "the Hub refused the token (invalid or expired): set HF_TOKEN to a valid one"
            ) from None
        raise
    namespace = repo_id.split("/")[0]
    orgs = {org.get("name") for org in whoami.get("orgs", [])}
    if namespace != whoami.get("name") and namespace not in orgs:
        raise HubAccessError(
            f"user {whoami.get('name')!r} cannot write to namespace {namespace!r} (not theirs, nor an org of theirs)"
        )


def _create_repo(api: HfApi, repo_id: str, private: bool) -> None:
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code in (401, 403):
            raise HubAccessError(f"no write access to {repo_id}: {err.response.status_code}") from None
        raise


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["publish", *sys.argv[1:]]))
