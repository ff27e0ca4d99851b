"""Reading a prepared output in object storage (a URL): what is there, checked before anything is read or written.

`list_prepared(out)` lists the objects under OUT and reads its manifest. Every path it meets (object keys and
the manifest's entries) must stay inside OUT: an absolute path, an empty part, `.` or `..` is refused before
any object is read and before anything is written; content from a bucket never chooses where a file goes.
Objects the manifest does not list (outside `.sousa/`, where the writer keeps its own files) are `foreign`:
`validate` reports them, `publish` refuses them, as for a local folder.

`local_copy(listing)` copies the listed files to a temporary folder, for the checks and uploads that still
work on local files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PreparedFolderError, StorageError
from .manifest import MANIFEST, MANIFEST_DIR, SHOWN, Manifest
from .storage import filesystem, reaching
from .store import temporary_prefix

logger = logging.getLogger(__name__)


@dataclass
class RemoteListing:
    """A prepared output at a URL as listed: its objects, its manifest, and what the manifest does not list."""

    url: str
    fs: Any = field(repr=False)
    root: str  # `url` in the filesystem, without its protocol
    objects: dict[str, dict[str, Any]]  # relative path -> the listing's info (size, ...)
    manifest: Manifest | None
    foreign: list[str]  # objects outside `.sousa/` that the manifest does not list

    @property
    def relatives(self) -> list[str]:
        """The objects to read: those the manifest lists (a listed one that is missing is the manifest check's to
        report) and the manifest; without a manifest, every object outside `.sousa/`, for the checks to say
        what is wrong."""
        if self.manifest is None:
            return sorted(r for r in self.objects if not r.startswith(f"{MANIFEST_DIR}/"))
        return [r for r in [*sorted(self.manifest.files), MANIFEST] if r in self.objects]

    def foreign_problems(self) -> list[str]:
        """The foreign objects, as the manifest check words them for a local folder."""
        return [f"{relative}: not written by sousa-builder" for relative in self.foreign]


def checked_relative(relative: str, url: str, where: str) -> str:
    """`relative` if it is a path inside its root: no absolute path, empty part, `.`, `..`, backslash or NUL.

    Args:
        relative (`str`):
            A POSIX path relative to the root `url`, as a bucket listing or a manifest gives it.
        url (`str`):
            The root, as the user gave it (for the message).
        where (`str`):
            Where the path was found (for the message), e.g. "its manifest".

    Returns:
        `str`: `relative`, unchanged.

    Raises:
        [`~errors.PreparedFolderError`]:
            The path would lead outside the root, or is not a plain relative path.
    """
    parts = relative.split("/")
    if (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("", ".", "..") for part in parts)
        or posixpath.normpath(relative) != relative
    ):
        raise PreparedFolderError(
            f"{url}: {where} names {relative!r}, not a plain path inside {url}; refused before anything was read "
            "or written (a prepared output holds only the files prepare wrote: prepare it again)"
        )
    return relative


def list_prepared(out: str) -> RemoteListing:
    """List the prepared output at the URL `out` and read its manifest; every path is checked to stay inside it.

    Args:
        out (`str`):
            The URL of a prepared output, as the user gave it.

    Returns:
        [`RemoteListing`]: its objects, its manifest (None if it has none, or one that does not parse) and the
        objects the manifest does not list.

    Raises:
        [`~errors.PreparedFolderError`]:
            Nothing is there, or an object key or a manifest entry is not a plain path inside `out`.
        [`~errors.StorageConnectionError`]:
            The storage of `out` could not be reached.
    """
    fs, root = filesystem(out)
    root = root.rstrip("/")
    prefix = f"{root}/"
    with reaching(out):
        fs.invalidate_cache(root)
        found = fs.find(root, detail=True) if fs.exists(root) else {}
    objects = {path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)}
    if not objects:
        raise PreparedFolderError(f"{out}: nothing there; run `sousa-builder prepare ... --out {out}` first")
    for relative in objects:
        checked_relative(relative, out, "an object key")
    manifest = None
    if MANIFEST in objects:
        with reaching(out):
            manifest = Manifest.parse(fs.cat_file(f"{root}/{MANIFEST}"))
    for relative in manifest.files if manifest is not None else ():
        checked_relative(relative, out, f"its manifest ({MANIFEST})")
    listed = set(manifest.files) if manifest is not None else set()
    foreign = sorted(r for r in objects if r not in listed and not r.startswith(f"{MANIFEST_DIR}/"))
    return RemoteListing(out, fs, root, objects, manifest, foreign if manifest is not None else [])


def refuse_foreign(listing: RemoteListing) -> None:
    """Refuse a prepared output at a URL holding objects its manifest does not list (nothing is read or sent).

    Args:
        listing ([`RemoteListing`]):
            The output, as `list_prepared` found it.

    Raises:
        [`~errors.PreparedFolderError`]:
            Names the first such objects.
    """
    if listing.foreign:
        shown = ", ".join(listing.foreign[:SHOWN]) + (" ..." if len(listing.foreign) > SHOWN else "")
        raise PreparedFolderError(
            f"{listing.url}: holds {len(listing.foreign)} object(s) its manifest does not list ({shown}), so it is "
            "not the output prepare wrote and nothing was published: remove them, or prepare again"
        )


@contextlib.contextmanager
def local_copy(listing: RemoteListing) -> Iterator[Path]:
    """A local copy of the prepared output `listing` names (`RemoteListing.relatives`), in a temporary folder
    removed after the block: for the checks and uploads that work on local files.

    Args:
        listing ([`RemoteListing`]):
            The output, as `list_prepared` found it (its paths checked).

    Yields:
        `Path`: the temporary folder holding the copy.

    Raises:
        [`~errors.StorageError`]:
            The temporary folder's disk has no room for the copy (said before the first byte is copied).
        [`~errors.StorageConnectionError`]:
            The storage of the output could not be reached.
    """
    out, relatives = listing.url, listing.relatives
    size = sum(int(listing.objects[relative].get("size") or 0) for relative in relatives)
    temporary = tempfile.gettempdir()
    free = shutil.disk_usage(temporary).free
    if size > free:  # refused before the first byte, not with a full disk halfway through the copy
        raise StorageError(
            f"{out}: its checks and uploads work on a local copy of its {len(relatives)} files ({_gb(size)}), and "
            f"{temporary} has {_gb(free)} free: set TMPDIR to a folder on a disk with room"
        )
    with tempfile.TemporaryDirectory(prefix=temporary_prefix("sousa-prepared-")) as folder:
        logger.info("copying %d files of %s (%s) to a temporary folder", len(relatives), out, _gb(size))
        targets = [_inside(folder, relative) for relative in relatives]
        for target in targets:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with reaching(out):
            listing.fs.get([f"{listing.root}/{relative}" for relative in relatives], targets)
        yield Path(folder)


def _inside(folder: str, relative: str) -> str:
    """`folder`/`relative`, asserted to stay inside `folder` (`relative` was checked by `checked_relative`)."""
    target = os.path.join(folder, *relative.split("/"))
    if os.path.commonpath([os.path.realpath(folder), os.path.realpath(target)]) != os.path.realpath(folder):
        raise PreparedFolderError(f"{relative}: leads outside the temporary folder; refused")
    return target


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB"
