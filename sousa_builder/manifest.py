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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputExistsError
from .hashes import HashCache, file_sha256s

MANIFEST = ".sousa/manifest.json"
MANIFEST_DIR = ".sousa"
SHOWN = 5


@dataclass(frozen=True)
class FileEntry:
    """A file as it was written."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a folder written by sousa-builder holds: path (POSIX, relative) -> entry."""

    kind: str
    files: dict[str, FileEntry]

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The folder's manifest; None if it has none or it does not read as one."""
        try:
            return cls.parse((folder / MANIFEST).read_bytes())
        except OSError:
            return None

    @classmethod
    def parse(cls, text: str | bytes) -> Manifest | None:
        """A manifest from its JSON text; None if it does not read as one."""
        try:
            document = json.loads(text)
            files = {path: FileEntry(**entry) for path, entry in document["files"].items()}
            return cls(str(document["kind"]), files)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def text(self) -> str:
        """The manifest as the JSON text of `.sousa/manifest.json`."""
        document = {"kind": self.kind, "files": {path: vars(entry) for path, entry in self.files.items()}}
        return json.dumps(document, indent=1, sort_keys=True) + "\n"


def write_manifest(folder: Path, kind: str, known: Mapping[str, str] | None = None) -> Manifest:
    """List every file under `folder` in its manifest, with its sha256 (from `known`, path -> sha256, where the
    writer hashed it already, else computed and remembered for `publish` and `validate`)."""
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
    """Tell the hash cache the sha256 of each listed file where it now is (after the folder was moved)."""
    hashes = HashCache.load()
    for relative, entry in manifest.files.items():
        hashes.remember(folder / relative, entry.sha256)
    hashes.save()


def check_replaceable(folder: Path, kind: str, option: str) -> bool:
    """Whether `folder` holds an earlier output of `kind` (True) or nothing (False); refuse anything else.

    `option` names the folder the way the user gave it (e.g. "--out"), for the message.
    """
    if not folder.exists() and not folder.is_symlink():
        return False
    if folder.is_symlink() or not folder.is_dir():
        raise OutputExistsError(f"{option} {folder}: exists and is not a folder; choose another")
    if not any(folder.iterdir()):
        return False
    manifest = Manifest.read(folder)
    if manifest is None or manifest.kind != kind:
        what = "no sousa-builder manifest" if manifest is None else f"the output of `{manifest.kind}`"
        raise OutputExistsError(
            f"{option} {folder}: holds files this command did not write ({what}: {_listing(folder)}); "
            "choose another folder, or empty it yourself"
        )
    foreign = ownership_problems(folder, manifest, hashed=False)
    if foreign:
        raise OutputExistsError(
            f"{option} {folder}: holds files this command did not write or that changed since "
            f"({', '.join(foreign[:SHOWN])}{' ...' if len(foreign) > SHOWN else ''}); choose another folder, "
            "or empty it yourself"
        )
    return True


def ownership_problems(folder: Path, manifest: Manifest, hashed: bool = True) -> list[str]:
    """What in `folder` is not as its manifest says: files missing, changed (size; with `hashed` the sha256,
    else the modification time), links, and anything not listed. Empty when the folder is what was written."""
    problems, present, to_hash = [], _entries(folder), []
    for relative, entry in manifest.files.items():
        path = folder / relative
        kind = present.get(relative)
        if kind is None:
            problems.append(f"{relative}: missing")
        elif kind != "file":
            problems.append(f"{relative}: a {kind}, listed as a file")
        elif path.stat().st_size != entry.size:
            problems.append(f"{relative}: {path.stat().st_size:,} bytes, written as {entry.size:,}")
        elif hashed:
            to_hash.append(relative)
        elif path.stat().st_mtime_ns != entry.mtime_ns:
            problems.append(f"{relative}: modified since it was written")
    found = file_sha256s([folder / relative for relative in to_hash]) if to_hash else []
    for relative, (sha256, _) in zip(to_hash, found):
        if sha256 != manifest.files[relative].sha256:
            problems.append(
                f"{relative}: its bytes are not the ones written (sha256 differs){_damage(folder / relative)}"
            )
    listed_folders = {p.rsplit("/", 1)[0] for p in manifest.files if "/" in p} | {MANIFEST_DIR}
    for relative, kind in sorted(present.items()):
        if relative in manifest.files or relative == MANIFEST:
            continue
        if kind == "folder" and any(f == relative or f.startswith(f"{relative}/") for f in listed_folders):
            continue
        problems.append(f"{relative}: {'a link' if kind == 'link' else 'not written by sousa-builder'}")
    return problems


def _damage(path: Path) -> str:
    """Where a damaged Parquet file fails its page checksums (prepare writes them), as ': row group N, column C'."""
    if path.suffix != ".parquet":
        return ""
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
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


def _listing(folder: Path) -> str:
    names = sorted(entry.name for entry in folder.iterdir())
    return ", ".join(names[:SHOWN]) + (" ..." if len(names) > SHOWN else "")
