"""Writing an output folder in object storage (a URL), where there is no rename: staged under OUT, README last.

`replacing_remote(out, kind, option)` refuses OUT unless it holds nothing or an earlier output of the same
kind (its manifest lists every object outside `.sousa/`, at the size written), and yields a staging prefix
under OUT, `.sousa/staging-ID/`. The new output is written there. When the block ends well it is put in place
with server-side copies (no data passes through this machine):

1. the staging prefix gets its manifest, and a journal (`.sousa/commit.json`) names it: a run that dies
   from here on is completed by the next run on OUT;
2. every new file but the README is copied into place; the previous output's files that the new one does
   not have are deleted;
3. the manifest, then the README: the last object written, the one that makes OUT a dataset;
4. the staging prefix and the journal are removed.

A reader sees the previous output unchanged until step 2, new shards beside the previous README during
steps 2-3, then the new output. A run that fails before step 1 leaves the previous output as it was (and its
staging prefix, which the next run removes). Object storage has no lock: two runs writing one OUT at once
are not refused, and must not be started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import OutputExistsError
from .layout import README  # written last: the file that makes the folder a dataset
from .manifest import MANIFEST, MANIFEST_DIR, SHOWN, FileEntry, Manifest
from .storage import filesystem

logger = logging.getLogger(__name__)

JOURNAL = f"{MANIFEST_DIR}/commit.json"
STAGING_PREFIX = f"{MANIFEST_DIR}/staging-"


@dataclass
class RemoteStaging:
    """The staging prefix (a URL) to build the new output in, and whether it replaces an earlier one."""

    path: str
    replaces_previous: bool
    fs: Any = field(repr=False)
    root: str = field(repr=False)  # `path` in the filesystem, without its protocol
    manifest: Manifest | None = None

    def write_manifest(self, kind: str, known: Mapping[str, str]) -> Manifest:
        """List every object written under the staging prefix, with its size and sha256 (`known`: path -> sha256,
        as each was hashed while it was written; an object not in it is read to hash it)."""
        files = {}
        for relative, info in sorted(_objects(self.fs, self.root).items()):
            sha256 = known.get(relative) or _sha256(self.fs, f"{self.root}/{relative}")
            files[relative] = FileEntry(int(info["size"]), 0, sha256)  # an object store keeps its own times
        self.manifest = Manifest(kind, files)
        self.fs.pipe_file(f"{self.root}/{MANIFEST}", self.manifest.text().encode())
        return self.manifest


@contextlib.contextmanager
def replacing_remote(out: str, kind: str, option: str) -> Iterator[RemoteStaging]:
    """Build the new `out` (a URL) under the yielded staging prefix; it is put in place if the block ends well
    and the staging's manifest was written (`RemoteStaging.write_manifest`)."""
    fs, root = filesystem(out)
    root = root.rstrip("/")
    _recover(fs, root)
    previous = _check_replaceable(fs, root, out, kind, option)
    name = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    staging = RemoteStaging(f"{out}/{name}", previous, fs, f"{root}/{name}")
    try:
        yield staging
        if staging.manifest is None:
            raise RuntimeError("the staging prefix has no manifest: nothing to put in place")
    except BaseException:
        with contextlib.suppress(Exception):
            _remove_prefix(fs, staging.root)
        raise
    _commit(fs, root, name)
    if previous:
        logger.info("replaced the previous %s", out)


def _objects(fs: Any, root: str) -> dict[str, dict]:
    """Relative path -> info of every object under `root` (listed anew: other processes and nodes write there)."""
    fs.invalidate_cache(root)
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    prefix = f"{root}/"
    return {path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)}


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as stream:
        while block := stream.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(fs: Any, path: str) -> Manifest | None:
    try:
        return Manifest.parse(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _check_replaceable(fs: Any, root: str, out: str, kind: str, option: str) -> bool:
    """Whether OUT holds an earlier output of `kind` (True) or nothing (False); refuse anything else."""
    ours = f"{MANIFEST_DIR}/"  # the manifest, the journal, staging prefixes
    content = {relative: info for relative, info in _objects(fs, root).items() if not relative.startswith(ours)}
    manifest = _read_manifest(fs, f"{root}/{MANIFEST}")
    if not content and manifest is None:
        return False
    if manifest is None or manifest.kind != kind:
        what = "no sousa-builder manifest" if manifest is None else f"the output of `{manifest.kind}`"
        names = sorted(content)
        shown = ", ".join(names[:SHOWN]) + (" ..." if len(names) > SHOWN else "")
        raise OutputExistsError(
            f"{option} {out}: holds files this command did not write ({what}: {shown}); "
            "choose another location, or empty it yourself"
        )
    problems = []
    for relative, entry in manifest.files.items():
        info = content.get(relative)
        if info is None:
            problems.append(f"{relative}: missing")
        elif int(info["size"]) != entry.size:
            problems.append(f"{relative}: {int(info['size']):,} bytes, written as {entry.size:,}")
    problems += [f"{relative}: not written by sousa-builder" for relative in sorted(set(content) - set(manifest.files))]
    if problems:
        raise OutputExistsError(
            f"{option} {out}: holds files this command did not write or that changed since "
            f"({', '.join(problems[:SHOWN])}{' ...' if len(problems) > SHOWN else ''}); choose another location, "
            "or empty it yourself"
        )
    return True


def _commit(fs: Any, root: str, name: str) -> None:
    """Put the staged output `name` (a prefix under `root`, with its manifest) in place: steps 1-4 above."""
    staging = f"{root}/{name}"
    new = _read_manifest(fs, f"{staging}/{MANIFEST}")
    if new is None:
        raise RuntimeError(f"{staging}: no manifest; cannot put it in place")
    fs.pipe_file(f"{root}/{JOURNAL}", json.dumps({"staging": name}).encode())
    previous = _read_manifest(fs, f"{root}/{MANIFEST}")
    data = sorted(relative for relative in new.files if relative != README)
    if data:
        fs.copy([f"{staging}/{r}" for r in data], [f"{root}/{r}" for r in data])
    stale = sorted(set(previous.files) - set(new.files)) if previous is not None else []
    for relative in stale:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{relative}")
    fs.pipe_file(f"{root}/{MANIFEST}", new.text().encode())
    if README in new.files:
        fs.copy(f"{staging}/{README}", f"{root}/{README}")
    _remove_prefix(fs, staging)
    fs.rm_file(f"{root}/{JOURNAL}")


def _check_recoverable(fs: Any, root: str, new: Manifest) -> None:
    """Completing a commit overwrites and deletes paths of OUT: refuse if any object there is not one that the
    previous output or the new one (already copied) wrote, as its manifest says (a file written since the crash)."""
    previous = _read_manifest(fs, f"{root}/{MANIFEST}")
    written = [manifest.files for manifest in (previous, new) if manifest is not None]
    foreign = sorted(
        relative
        for relative, info in _objects(fs, root).items()
        if not relative.startswith(f"{MANIFEST_DIR}/")
        and not any(relative in files and files[relative].size == int(info["size"]) for files in written)
    )
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (" ..." if len(foreign) > SHOWN else "")
        raise OutputExistsError(
            f"{fs.unstrip_protocol(root)}: an earlier run died while putting its output in place, and it now holds "
            f"files neither output wrote ({shown}); nothing was changed: move them away, or choose another location"
        )


def _recover(fs: Any, root: str) -> None:
    """Complete a commit that a dead run left half done; remove the staging prefixes of runs that died before."""
    try:
        name = json.loads(fs.cat_file(f"{root}/{JOURNAL}"))["staging"]
    except FileNotFoundError:
        name = None
    except (ValueError, KeyError, TypeError):
        name = ""
    if name is not None:
        new = _read_manifest(fs, f"{root}/{name}/{MANIFEST}") if name else None
        if new is not None:
            _check_recoverable(fs, root, new)
            _commit(fs, root, name)
            logger.info("completed the replacement of %s that an earlier run left half done", root)
        else:
            fs.rm_file(f"{root}/{JOURNAL}")
    leftovers = {relative.split("/")[0] for relative in _objects(fs, f"{root}/{MANIFEST_DIR}")}
    for leftover in sorted(leftovers):
        if f"{MANIFEST_DIR}/{leftover}".startswith(STAGING_PREFIX):
            _remove_prefix(fs, f"{root}/{MANIFEST_DIR}/{leftover}")


def _remove_prefix(fs: Any, prefix: str) -> None:
    found = list(fs.find(prefix))
    if found:
        fs.rm(found)
