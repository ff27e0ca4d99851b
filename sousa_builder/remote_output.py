"""Reading an output in object storage (a URL): its objects, its manifest, and a local copy of it.

Writing one is `bucket_output.BucketStore`'s, through `store.replacing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import PreparedFolderError, StorageError
from .manifest import MANIFEST, MANIFEST_DIR, Manifest
from .storage import filesystem, reaching
from .store import temporary_prefix

logger = logging.getLogger(__name__)


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


@contextlib.contextmanager
def local_copy(out: str) -> Iterator[Path]:
    """A local copy of the prepared output at the URL `out` (the files its manifest lists, and the manifest), in a
    temporary folder removed after the block: for the checks and uploads that read every file anyway.

    Args:
        out (`str`):
            The URL of a prepared output.

    Yields:
        `Path`: the temporary folder holding the copy.

    Raises:
        [`~errors.PreparedFolderError`]:
            Nothing is there.
        [`~errors.StorageError`]:
            The temporary folder's disk has no room for the copy (said before the first byte is copied).
        [`~errors.StorageConnectionError`]:
            The storage of `out` could not be reached.
    """
    fs, root = filesystem(out)
    root = root.rstrip("/")
    with reaching(out):
        found = _objects(fs, root)
    if not found:
        raise PreparedFolderError(f"{out}: nothing there; run `sousa-builder prepare ... --out {out}` first")
    with reaching(out):
        manifest = _read_manifest(fs, f"{root}/{MANIFEST}")
    if manifest is None:  # copied as it is, for the checks to say what is wrong
        relatives = sorted(r for r in found if not r.startswith(f"{MANIFEST_DIR}/"))
    else:  # a listed file that is missing is for the manifest check to report
        relatives = [r for r in [*sorted(manifest.files), MANIFEST] if r in found]
    size = sum(int(found[relative].get("size") or 0) for relative in relatives)
    temporary = tempfile.gettempdir()
    free = shutil.disk_usage(temporary).free
    if size > free:  # refused before the first byte, not with a full disk halfway through the copy
        raise StorageError(
            f"{out}: its checks and uploads work on a local copy of its {len(relatives)} files ({_gb(size)}), and "
            f"{temporary} has {_gb(free)} free: set TMPDIR to a folder on a disk with room"
        )
    with tempfile.TemporaryDirectory(prefix=temporary_prefix("sousa-prepared-")) as folder:
        logger.info("copying %d files of %s (%s) to %s", len(relatives), out, _gb(size), folder)
        targets = [os.path.join(folder, *relative.split("/")) for relative in relatives]
        for target in targets:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with reaching(out):
            fs.get([f"{root}/{relative}" for relative in relatives], targets)
        yield Path(folder)


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"
