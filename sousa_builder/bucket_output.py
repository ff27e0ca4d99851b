"""An output in object storage (a URL), as `store.replacing` writes it: there is no rename, so it is staged under
OUT and put in place by server-side copies (no data passes through this machine), the README last.

The store's own names, under `OUT/.sousa/`: `manifest.json`; `lease.json` (`lease`: one run at a time);
`staging-ID/` with its marker `staging-ID.json`, written before anything is staged (a prefix without its marker
is not ours, and is never deleted); `commit.json`, the journal. Putting a staging in place:

1. the journal names it, phase "copying": from here OUT is midway, and `validate --prepared` refuses it;
2. every new file but the README is copied into place; the files of the previous output (and of a replacement
   stopped midway) that the new one does not have are deleted; then the README;
3. the manifest, with the ETag of each object in place (what proves it ours to the next run), then the journal's
   phase "placed": OUT is the new output;
4. the staging prefixes and the journal are removed.

A run stopped in steps 1-2 (Ctrl-C, SIGKILL, a lost connection) leaves OUT midway: the next run that gets as far
as putting its own output in place deletes what neither output needs and puts its own in place; a run refused
before (a broken source) changes nothing. A run stopped in steps 3-4 is finished by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .layout import README  # written last: the file that makes the folder a dataset
from .lease import Lease
from .manifest import MANIFEST, MANIFEST_DIR, ContentCheck, FileEntry, Found, Manifest
from .remote_output import _objects as _listed
from .remote_output import _read_manifest, _sha256
from .storage import filesystem
from .store import MIDWAY, REPLACED, UNCHANGED, OutputStore, Staging, mark_left

logger = logging.getLogger(__name__)

JOURNAL = f"{MANIFEST_DIR}/commit.json"
LEASE = f"{MANIFEST_DIR}/lease.json"
STAGING_PREFIX = f"{MANIFEST_DIR}/staging-"
_STAGING = re.compile(rf"{re.escape(STAGING_PREFIX)}([0-9a-f]{{12}})(\.json|/.*)$")


def _objects(fs: Any, root: str) -> dict[str, dict]:
    """Relative path -> info of every object under `root`, listed anew: fsspec's listings cache (before 2025.5
    `invalidate_cache(path)` kept the listings of folders under `path`) must not hide what another run wrote."""
    fs.invalidate_cache()
    return _listed(fs, root)


class BucketStore(OutputStore):
    """OUT as a URL (see the module's docstring)."""

    def __init__(self, out: str, option: str):
        self.fs, root = filesystem(out)
        self.out, self.option, self.root = out, option, root.rstrip("/")
        self.lease: Lease | None = None
        self.kept: list[str] = []  # the staging names of a replacement stopped midway (in the journal)
        self._warned_size_only = False

    @contextlib.contextmanager
    def claimed(self) -> Iterator[None]:
        """See `OutputStore.claimed`: the lease object `OUT/.sousa/lease.json` (`lease.Lease`).

        Raises:
            [`~errors.OutputBusyError`]:
                Another run holds the lease, or took it at the same time.
        """
        with Lease(self.fs, f"{self.root}/{LEASE}", self.out) as lease:
            self.lease = lease
            yield

    def settle(self) -> list[Manifest]:
        """See `OutputStore.settle`: a journal in phase "placed" is finished; the staging names of one in phase
        "copying" are kept (`kept`) with their manifests.
        """
        journal = self._journal()
        if journal is None:
            return []
        names, phase = journal
        if phase == "placed":  # the new output is in place: only the staging is left
            self._remove_staging(names)
            self.fs.rm_file(f"{self.root}/{JOURNAL}")
            logger.info("completed the replacement of %s that an earlier run left half done", self.out)
            return []
        self.kept = names
        return [m for name in names if (m := _read_manifest(self.fs, f"{self.root}/{name}/{MANIFEST}")) is not None]

    def remove_leftovers(self) -> None:
        """See `OutputStore.remove_leftovers`: every marked staging prefix but the kept ones."""
        marked = {name for name, ours in self._staging_names().items() if ours}
        self._remove_staging(sorted(marked - set(self.kept)))

    def present(self) -> dict[str, Found] | None:
        """See `OutputStore.present`: every object under OUT but the manifest, journal, lease and marked staging
        prefixes, with its size and ETag.
        """
        objects = _objects(self.fs, self.root)
        marked = {m.group(1) for m in map(_STAGING.match, objects) if m and m.group(2) == ".json"}
        found = {}
        for relative, info in objects.items():
            if not relative or relative.endswith("/") or relative in (MANIFEST, JOURNAL, LEASE):
                continue  # a console's folder marker ("out/"), or ours
            match = _STAGING.match(relative)
            if match and match.group(1) in marked:
                continue
            found[relative] = Found("file", int(info.get("size") or 0), info.get("ETag"))
        return found

    def manifest(self) -> Manifest | None:
        """See `OutputStore.manifest`: `OUT/.sousa/manifest.json`."""
        return _read_manifest(self.fs, f"{self.root}/{MANIFEST}")

    def content_check(self, present: Mapping[str, Found]) -> ContentCheck:
        """An object is the one written if its ETag is the one the manifest recorded once it was in place; else it
        is read, and its sha256 compared (a file copied by a replacement stopped midway). A manifest without ETags
        (written by an earlier version) proves by size only, and says so."""

        def check(candidates: dict[str, list[FileEntry]]) -> dict[str, str]:
            problems = {}
            for relative, entries in candidates.items():
                etag = present[relative].etag
                if etag is not None and etag in {entry.etag for entry in entries}:
                    continue
                if any(entry.etag is None and entry.mtime_ns == 0 and not self.kept for entry in entries):
                    self._warn_size_only()
                    continue
                if _sha256(self.fs, f"{self.root}/{relative}") not in {entry.sha256 for entry in entries}:
                    problems[relative] = f"{relative}: its content is not the one written (ETag and sha256 differ)"
            return problems

        return check

    def new_staging(self, replaces_previous: bool) -> Staging:
        """See `OutputStore.new_staging`: a `.sousa/staging-ID/` prefix, its marker written before it."""
        name = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        marker = {"owner": self.lease.owner if self.lease else None}
        self.fs.pipe_file(f"{self.root}/{name}.json", json.dumps(marker).encode())  # before anything is staged
        return Staging(f"{self.out}/{name}", replaces_previous, self)

    def write_staging_manifest(self, staging: Staging, kind: str, known: Mapping[str, str]) -> Manifest:
        """See `OutputStore.write_staging_manifest`: objects not in `known` are read to hash them."""
        root = self._root_of(staging)
        files = {}
        for relative, info in sorted(_objects(self.fs, root).items()):
            sha256 = known.get(relative) or _sha256(self.fs, f"{root}/{relative}")
            files[relative] = FileEntry(int(info["size"]), 0, sha256)  # an object store keeps its own times
        manifest = Manifest(kind, files)
        self.fs.pipe_file(f"{root}/{MANIFEST}", manifest.text().encode())
        return manifest

    def discard(self, staging: Staging) -> None:
        """See `OutputStore.discard`."""
        self._remove_staging([self._root_of(staging)[len(self.root) + 1 :]])

    def put_in_place(self, staging: Staging, pending: list[Manifest]) -> None:
        """See `OutputStore.put_in_place`, and the steps in the module's docstring.

        Raises:
            [`~errors.OutputBusyError`]:
                This run lost its lease (another run holds it now, or it is gone).
            `RuntimeError`:
                The staging has no manifest.
        """
        if self.lease is not None:
            self.lease.confirm()
        name = self._root_of(staging)[len(self.root) + 1 :]
        names = [*self.kept, name]
        new, previous = staging.manifest or _read_manifest(self.fs, f"{self.root}/{name}/{MANIFEST}"), self.manifest()
        if new is None:
            raise RuntimeError(f"{staging.path}: no manifest; nothing to put in place")
        try:
            self._write_journal(names, "copying")
        except BaseException as err:
            mark_left(err, MIDWAY if self.kept else UNCHANGED)
            raise
        try:
            self._copy(name, new, [m for m in (previous, *pending) if m is not None])
            placed = _objects(self.fs, self.root)
            files = {
                relative: replace(entry, etag=placed[relative].get("ETag")) for relative, entry in new.files.items()
            }
            self.fs.pipe_file(f"{self.root}/{MANIFEST}", Manifest(new.kind, files).text().encode())
        except BaseException as err:
            mark_left(err, MIDWAY)
            raise
        try:
            self._write_journal(names, "placed")
            self._remove_staging(names)
            self.fs.rm_file(f"{self.root}/{JOURNAL}")
        except BaseException as err:
            mark_left(err, REPLACED)
            raise

    def in_progress(self) -> str | None:
        """See `OutputStore.in_progress`: a journal in phase "copying"."""
        journal = self._journal()
        if journal is None or journal[1] == "placed":
            return None
        return (
            f"{self.out}: a prepare was stopped while putting its output in place ({JOURNAL}): it holds files of two "
            "outputs; the next prepare into it completes the replacement"
        )

    def _copy(self, name: str, new: Manifest, earlier: list[Manifest]) -> None:
        """Step 2: copy the new files but the README, delete the stale ones, copy the README."""
        staging = f"{self.root}/{name}"
        data = sorted(relative for relative in new.files if relative != README)
        if data:
            self.fs.copy([f"{staging}/{r}" for r in data], [f"{self.root}/{r}" for r in data])
        stale = sorted(set().union(*(m.files for m in earlier)) - set(new.files)) if earlier else []
        for relative in stale:  # each proven ours by `check_replaceable` when the run began (under the lease)
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(f"{self.root}/{relative}")
        if README in new.files:
            self.fs.copy(f"{staging}/{README}", f"{self.root}/{README}")

    def _journal(self) -> tuple[list[str], str] | None:
        try:
            document = json.loads(self.fs.cat_file(f"{self.root}/{JOURNAL}"))
        except FileNotFoundError:
            return None
        except ValueError:
            return [], "copying"
        names = document.get("staging", []) if isinstance(document, dict) else []
        names = [names] if isinstance(names, str) else names  # an earlier version's journal: one name
        return [n for n in names if isinstance(n, str)], str(document.get("phase", "copying"))

    def _write_journal(self, names: list[str], phase: str) -> None:
        self.fs.pipe_file(f"{self.root}/{JOURNAL}", json.dumps({"staging": names, "phase": phase}).encode())

    def _staging_names(self) -> dict[str, bool]:
        """Each staging name under `.sousa/` (prefix or marker), and whether its marker is there."""
        found = {}
        for relative in _objects(self.fs, f"{self.root}/{MANIFEST_DIR}"):
            match = _STAGING.match(f"{MANIFEST_DIR}/{relative}")
            if match:
                name = f"{STAGING_PREFIX}{match.group(1)}"
                found[name] = found.get(name, False) or match.group(2) == ".json"
        for key in self._uploads():
            match = _STAGING.match(key)
            if match:
                found.setdefault(f"{STAGING_PREFIX}{match.group(1)}", False)
        return found  # listed anew (`_objects`): a cached `exists` may not see a marker written since

    def _remove_staging(self, names: list[str]) -> None:
        """Abort the unfinished uploads under each staging prefix, remove its objects, then its marker."""
        for name in names:
            if not name.startswith(STAGING_PREFIX):
                continue
            self._abort_uploads(f"{name}/")
            prefix = f"{self.root}/{name}"
            found = [f"{prefix}/{relative}" for relative in _objects(self.fs, prefix)]
            if found:
                self.fs.rm(found)
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(f"{prefix}.json")
        if names:
            self.fs.invalidate_cache(self.root)

    def _uploads(self, under: str = STAGING_PREFIX) -> dict[str, list[str]]:
        """Relative key -> upload ids of the multipart uploads begun under `under` (S3 only; none elsewhere)."""
        if not hasattr(self.fs, "call_s3"):
            return {}
        bucket, _, key = self.root.partition("/")
        prefix = f"{key}/{under}" if key else under
        uploads: dict[str, list[str]] = {}
        response = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
        while True:
            for upload in response.get("Uploads", []):
                relative = upload["Key"][len(key) + 1 :] if key else upload["Key"]
                uploads.setdefault(relative, []).append(upload["UploadId"])
            if not response.get("IsTruncated"):
                return uploads
            response = self.fs.call_s3(
                "list_multipart_uploads", Bucket=bucket, Prefix=prefix,
                KeyMarker=response["NextKeyMarker"], UploadIdMarker=response["NextUploadIdMarker"],
            )  # fmt: skip

    def _abort_uploads(self, under: str) -> None:
        bucket, _, key = self.root.partition("/")
        for relative, ids in self._uploads(under).items():
            for upload in ids:
                full = f"{key}/{relative}" if key else relative
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=full, UploadId=upload)
                logger.info("aborted an unfinished upload of %s/%s", self.out, relative)

    def _root_of(self, staging: Staging) -> str:
        return f"{self.root}/{str(staging.path)[len(self.out) + 1 :]}"

    def _warn_size_only(self) -> None:
        if not self._warned_size_only:
            self._warned_size_only = True
            logger.warning(
                "%s: its manifest was written by an earlier sousa-builder and records no ETags: its files are "
                "proven by size only this time",
                self.out,
            )
