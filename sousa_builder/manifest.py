"""What a folder written by sousa-builder holds, and whether it may be replaced.

Every folder that `prepare`, `publish --dry-run` or `sample` writes carries `.sousa/manifest.json`:
what wrote it (`kind`) and each file it wrote, with its size, modification time and sha256. A folder
is replaced only if it is empty, or carries a manifest of the same kind and holds nothing else: no
file, folder or link the manifest does not list, and every listed file as it was written. Anything
else is refused, naming what is in the way. The manifest is not published.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .hashes import HashCache, file_sha256s

MANIFEST = ".sousa/manifest.json"
MANIFEST_DIR = ".sousa"
SHOWN = 5


@dataclass(frozen=True)
class FileEntry:
    """A file as it was written; `etag` is the object store's ETag of the object in place (None for a local file,
    and in manifests written before it was recorded)."""

    size: int
    mtime_ns: int
    sha256: str
    etag: str | None = None


@dataclass(frozen=True)
class Found:
    """An entry found in an output: "file", "folder", "link" or "other", and a file's size and ETag (objects)."""

    kind: str
    size: int = 0
    etag: str | None = None


# relative path -> the entries it may be (same size) -> relative path -> why its content is not one of them
ContentCheck = Callable[[dict[str, list[FileEntry]]], dict[str, str]]


@dataclass(frozen=True)
class Manifest:
    """What a folder written by sousa-builder holds: path (POSIX, relative) -> entry."""

    kind: str
    files: dict[str, FileEntry]

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The folder's manifest.

        Args:
            folder (`Path`):
                A local output folder.

        Returns:
            [`Manifest`] or None: None if it has none, or one that cannot be read or does not parse.
        """
        try:
            return cls.parse((folder / MANIFEST).read_bytes())
        except OSError:
            return None

    @classmethod
    def parse(cls, text: str | bytes) -> Manifest | None:
        """A manifest from its JSON text.

        Args:
            text (`str` or `bytes`):
                The content of a `.sousa/manifest.json`.

        Returns:
            [`Manifest`] or None: None if it does not parse as one.
        """
        try:
            document = json.loads(text)
            files = {path: FileEntry(**entry) for path, entry in document["files"].items()}
            return cls(str(document["kind"]), files)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def text(self) -> str:
        """The manifest as the JSON text of `.sousa/manifest.json`.

        Returns:
            `str`: the JSON document, sorted, ending in a newline.
        """
        files = {path: {k: v for k, v in vars(entry).items() if v is not None} for path, entry in self.files.items()}
        document = {"kind": self.kind, "files": files}
        return json.dumps(document, indent=1, sort_keys=True) + "\n"


def write_manifest(folder: Path, kind: str, known: Mapping[str, str] | None = None) -> Manifest:
    """List every file under `folder` in its manifest, with its sha256, and write the manifest there.

    Args:
        folder (`Path`):
            The output folder.
        kind (`str`):
            What wrote it ("prepare", "publish --dry-run", "sample").
        known (`Mapping[str, str]`, *optional*):
            path -> sha256 of the files the writer hashed already; the others are hashed here and remembered for
            `publish` and `validate` (the hash cache).

    Returns:
        [`Manifest`]: the manifest written.

    Raises:
        `OSError`: a file cannot be read, or the manifest cannot be written.
    """
    known = known or {}
    hashes = HashCache.load()
    files = {}
    for relative in sorted(_entries(folder)):
        if relative == MANIFEST:
            continue
        path = folder / relative
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            continue
        sha256 = known[relative] if relative in known else hashes.sha256(path)[0]
        hashes.remember(path, sha256)
        files[relative] = FileEntry(info.st_size, info.st_mtime_ns, sha256)
    hashes.save()
    manifest = Manifest(kind, files)
    (folder / MANIFEST_DIR).mkdir(exist_ok=True)
    (folder / MANIFEST).write_text(manifest.text(), encoding="utf-8")
    return manifest


def remember_hashes(folder: Path, manifest: Manifest) -> None:
    """Tell the hash cache the sha256 of each listed file where it now is (after the folder was moved).

    Args:
        folder (`Path`):
            Where the folder now is.
        manifest ([`Manifest`]):
            Its manifest.

    Raises:
        `OSError`: a listed file cannot be `stat`ed.
    """
    hashes = HashCache.load()
    for relative, entry in manifest.files.items():
        hashes.remember(folder / relative, entry.sha256)
    hashes.save()


def ownership_problems(
    folder: Path, manifest: Manifest, hashed: bool = True, known: Mapping[str, str] | None = None
) -> list[str]:
    """What in `folder` is not as its manifest says: files missing, changed (size; with `hashed` the sha256,
    else the modification time), links, and anything not listed.

    Args:
        folder (`Path`):
            The output folder.
        manifest ([`Manifest`]):
            Its manifest.
        hashed (`bool`):
            Compare the sha256 (True) or the modification time.
        known (`Mapping[str, str]`, *optional*):
            The sha256 of files already read by the caller (relative path -> sha256): those are not read again.

    Returns:
        `list[str]`: one line per problem; empty when the folder is what was written.

    Raises:
        `OSError`: a file cannot be read.
    """
    return listing_problems(folder_entries(folder), [manifest], folder_content_check(folder, hashed, known))


def folder_content_check(folder: Path, hashed: bool = True, known: Mapping[str, str] | None = None) -> ContentCheck:
    """How a local file is proven to be a listed one: its sha256 (through the hash cache, which reads only the files
    changed since it last saw them), or without `hashed` its modification time.

    Args:
        folder (`Path`):
            The output folder.
        hashed (`bool`):
            Compare the sha256 (True) or the modification time.
        known (`Mapping[str, str]`, *optional*):
            The sha256 of files the caller read already (relative path -> sha256), taken instead of reading them.

    Returns:
        `ContentCheck`: the check, for `listing_problems`.
    """
    known = known or {}

    def check(candidates: dict[str, list[FileEntry]]) -> dict[str, str]:
        if not hashed:
            return {
                relative: f"{relative}: modified since it was written"
                for relative, entries in candidates.items()
                if (folder / relative).stat().st_mtime_ns not in {entry.mtime_ns for entry in entries}
            }
        names = sorted(candidates)
        unread = [relative for relative in names if relative not in known]
        hashes = dict(zip(unread, file_sha256s([folder / relative for relative in unread]) if unread else []))
        found = [(known[relative], 0) if relative in known else hashes[relative] for relative in names]
        differs = "its bytes are not the ones written (sha256 differs)"
        return {
            relative: f"{relative}: {differs}{parquet_damage(folder / relative)}"
            for relative, (sha256, _) in zip(names, found)
            if sha256 not in {entry.sha256 for entry in candidates[relative]}
        }

    return check


def folder_entries(folder: Path) -> dict[str, Found]:
    """Every entry below `folder` (relative POSIX path -> what it is, and a file's size); links not followed.

    Args:
        folder (`Path`):
            A local folder.

    Returns:
        `dict[str, Found]`: the entries, in no particular order.
    """
    return {
        relative: Found(kind, (folder / relative).lstat().st_size if kind == "file" else 0)
        for relative, kind in _entries(folder).items()
    }


def listing_problems(
    present: Mapping[str, Found], manifests: list[Manifest], content: ContentCheck, complete: bool = True
) -> list[str]:
    """What in an output (its entries, `present`) is not what one of `manifests` lists: the rule every kind of OUT
    follows. A listed file must be there (with `complete`: an output in the middle of a replacement may miss some),
    as a file, at a listed size, and its content proven by `content` (a sha256, or an ETag the store keeps); nothing
    unlisted may be there but folders holding listed files, and the manifest.

    Args:
        present (`Mapping[str, Found]`):
            Every entry below OUT (relative POSIX path) but the store's own (a journal, a lease, staging).
        manifests (`list[Manifest]`):
            The outputs OUT may hold files of: its manifest, and those of replacements stopped midway.
        content (`ContentCheck`):
            Given the files whose size is a listed one (with the entries they may be), says which are not.
        complete (`bool`):
            Whether every file of the first manifest must be there.

    Returns:
        `list[str]`: one line per problem, empty when OUT holds what was written.
    """
    problems, candidates = [], {}
    for relative in sorted(set().union(*(manifest.files for manifest in manifests))):
        entries = [manifest.files[relative] for manifest in manifests if relative in manifest.files]
        found = present.get(relative)
        if found is None:
            if complete and relative in manifests[0].files:
                problems.append(f"{relative}: missing")
        elif found.kind != "file":
            problems.append(f"{relative}: a {found.kind}, listed as a file")
        elif found.size not in {entry.size for entry in entries}:
            problems.append(f"{relative}: {found.size:,} bytes, written as {entries[0].size:,}")
        else:
            candidates[relative] = [entry for entry in entries if entry.size == found.size]
    problems += content(candidates).values()
    listed = set().union(*(manifest.files for manifest in manifests))
    listed_folders = {p.rsplit("/", 1)[0] for p in listed if "/" in p} | {MANIFEST_DIR}
    for relative, found in sorted(present.items()):
        if relative in listed or relative == MANIFEST:
            continue
        if found.kind == "folder" and any(f == relative or f.startswith(f"{relative}/") for f in listed_folders):
            continue
        problems.append(f"{relative}: {'a link' if found.kind == 'link' else 'not written by sousa-builder'}")
    return problems


def parquet_damage(source: Path | str | Any, name: str | None = None) -> str:
    """Where a damaged Parquet file fails its page checksums (prepare writes them), as ': row group N, column C'.

    Args:
        source (`Path`, `str` or a binary file object):
            The file: a local path, or a file object opened where it is (an object in a bucket).
        name (`str`, *optional*):
            Its name, when `source` is a file object (only a `.parquet` file is read).

    Returns:
        `str`: the place, or "" when it is not a Parquet file or every page reads.
    """
    if not str(name if name is not None else source).endswith(".parquet"):
        return ""
    try:
        parquet = pq.ParquetFile(source, page_checksum_verification=True)
        for group in range(parquet.num_row_groups):
            for column in parquet.schema_arrow.names:
                try:
                    parquet.read_row_group(group, columns=[column])
                except (OSError, pa.ArrowException):
                    return f": row group {group}, column {column} fails its page checksum"
    except (OSError, pa.ArrowException) as err:
        return f": {' '.join(str(err).split())[:200]}"
    return ""


def _entries(folder: Path) -> dict[str, str]:
    """Every entry below `folder` (relative POSIX path -> "file", "folder", "link" or "other"); links not followed."""
    found = {}
    for directory, folders, files in os.walk(folder):
        here = Path(directory)
        for name in folders + files:
            path = here / name
            mode = path.lstat().st_mode
            kind = "link" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode) else "file"
            kind = kind if kind != "file" or stat.S_ISREG(mode) else "other"
            found[path.relative_to(folder).as_posix()] = kind
    return found
