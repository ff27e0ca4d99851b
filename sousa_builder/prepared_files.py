"""A prepared output read where it is: a local folder as it is, a URL listed and read through fsspec, never copied.

`list_prepared(out)` lists the objects under a URL and reads its manifest. Every path it meets (object keys and
the manifest's entries) must stay inside OUT: an absolute path, an empty part, `.` or `..` is refused before
any object is read and before anything is written; content from a bucket never chooses where a file goes.
Objects the manifest does not list (outside `.sousa/`, where the writer keeps its own files) are `foreign`:
`validate` reports them, `publish` refuses them, as for a local folder.

Files are then read in place, a local folder and a URL alike: `parquet_file` opens a Parquet file (at a URL through
an fsspec file read in `BLOCK_SIZE` ranges, so a footer, a page index or a row group is fetched, not the file);
`object_problems` is the manifest check of a URL, each object's sha256 streamed; `verified_stream.VerifiedReader`
streams an object to an upload, hashing as it goes, and fails before its last bytes if they are not the manifest's.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from .errors import PreparedFolderError
from .manifest import (
    MANIFEST,
    MANIFEST_DIR,
    SHOWN,
    ContentCheck,
    FileEntry,
    Found,
    Manifest,
    listing_problems,
    parquet_damage,
)
from .storage import filesystem, is_url, reaching

logger = logging.getLogger(__name__)

# Bytes fetched from a bucket at a time: a read of a few bytes (a footer) fetches this much, a stream reads in these.
BLOCK_SIZE = 8 << 20


@dataclass
class RemoteListing:
    """A prepared output at a URL as listed: its objects, its manifest, and what the manifest does not list."""

    url: str
    fs: Any = field(repr=False)
    root: str  # `url` in the filesystem, without its protocol
    objects: dict[str, dict[str, Any]]  # relative path -> the listing's info (size, ...)
    manifest: Manifest | None
    foreign: list[str]  # objects outside `.sousa/` that the manifest does not list

    def path(self, relative: str) -> str:
        """The filesystem path of an object.

        Args:
            relative (`str`):
                Its path under the root (checked by `checked_relative`).

        Returns:
            `str`: its path in `fs`.
        """
        return f"{self.root}/{relative}"

    def present(self) -> dict[str, Found]:
        """The objects to check against the manifest, as the manifest check sees a local folder's files: all but
        the writer's own under `.sousa/` (its lease, journal and staging), which the manifest does not list.

        Returns:
            `dict[str, Found]`: relative path -> the object (its size and ETag).
        """
        return {
            relative: Found("file", int(info.get("size") or 0), info.get("ETag"))
            for relative, info in self.objects.items()
            if relative == MANIFEST or not relative.startswith(f"{MANIFEST_DIR}/")
        }


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


def open_file(out: str | Path, relative: str) -> BinaryIO:
    """A prepared output's file opened for reading where it is: a local file, or an object read in ranges.

    Args:
        out (`str` or `Path`):
            The prepared output: a local folder, or a URL.
        relative (`str`):
            The file's POSIX path in it (checked to stay inside it when it came from a listing or a manifest).

    Returns:
        `BinaryIO`: the open file; an object's bytes are fetched `BLOCK_SIZE` at a time as they are read.

    Raises:
        `OSError`: the file cannot be opened (`FileNotFoundError` when it is not there).
    """
    if not is_url(out):
        return open(Path(out, *relative.split("/")), "rb")
    fs, root = filesystem(str(out))
    return fs.open(f"{root.rstrip('/')}/{relative}", "rb", block_size=BLOCK_SIZE, cache_type="readahead")


def read_bytes(out: str | Path, relative: str) -> bytes:
    """The whole of a small file of a prepared output (its README), read where it is.

    Args:
        out (`str` or `Path`):
            The prepared output: a local folder, or a URL.
        relative (`str`):
            The file's POSIX path in it.

    Returns:
        `bytes`: its content.

    Raises:
        `OSError`: it cannot be read (`FileNotFoundError` when it is not there).
    """
    with reaching(out), open_file(out, relative) as stream:
        return stream.read()


def glob_files(out: str | Path, pattern: str) -> list[str]:
    """The files of a prepared output matching `pattern` (`config/train-*.parquet`, a README data_files pattern).

    Args:
        out (`str` or `Path`):
            The prepared output: a local folder, or a URL.
        pattern (`str`):
            A glob pattern relative to `out`.

    Returns:
        `list[str]`: their POSIX paths relative to `out`, sorted.
    """
    if not is_url(out):
        return sorted(path.relative_to(out).as_posix() for path in Path(out).glob(pattern))
    fs, root = filesystem(str(out))
    root = root.rstrip("/")
    with reaching(out):
        return sorted(path[len(root) + 1 :] for path in fs.glob(f"{root}/{pattern}") if path.startswith(f"{root}/"))


def parquet_file(out: str | Path, relative: str, **options: Any) -> pq.ParquetFile:
    """A Parquet file of a prepared output, read where it is (`open_file`): what is read is its footer, then the
    row groups, columns and page indexes asked for.

    Args:
        out (`str` or `Path`):
            The prepared output: a local folder, or a URL.
        relative (`str`):
            The file's POSIX path in it.
        **options:
            For `pyarrow.parquet.ParquetFile` (`page_checksum_verification=True`, ...).

    Returns:
        `pyarrow.parquet.ParquetFile`: the file, its footer read.

    Raises:
        `OSError`, `pyarrow.ArrowException`: it cannot be read, or is no Parquet file.
    """
    if not is_url(out):
        return pq.ParquetFile(Path(out, *relative.split("/")), **options)
    return pq.ParquetFile(open_file(out, relative), **options)


def stream_sha256(stream: BinaryIO) -> str:
    """The sha256 of what is left to read in `stream`, read `BLOCK_SIZE` at a time (never all at once).

    Args:
        stream (`BinaryIO`):
            An open file, local or an object's.

    Returns:
        `str`: the sha256 (hex).

    Raises:
        `OSError`: the stream cannot be read.
    """
    digest = hashlib.sha256()
    while block := stream.read(BLOCK_SIZE):
        digest.update(block)
    return digest.hexdigest()


def object_problems(listing: RemoteListing, hashed: bool = True, known: Mapping[str, str] | None = None) -> list[str]:
    """What at a URL is not as its manifest says (`manifest.listing_problems`, the rule of a local folder): objects
    missing, of another size, of other content, and objects it does not list.

    Args:
        listing ([`RemoteListing`]):
            The output, as `list_prepared` found it (with a manifest).
        hashed (`bool`):
            Prove each object by its sha256, streamed from the bucket (True); else by the ETag recorded when it was
            put in place, where the manifest has one (the store keeps it), and by its sha256 where it has none.
        known (`Mapping[str, str]`, *optional*):
            The sha256 of objects the caller streamed already (relative path -> sha256): those are not read again.

    Returns:
        `list[str]`: one line per problem, as for a local folder; empty when the output is what prepare wrote.

    Raises:
        `ValueError`: the listing has no manifest.
        [`~errors.StorageConnectionError`]:
            The storage could not be reached.
    """
    if listing.manifest is None:
        raise ValueError(f"{listing.url}: no manifest to check against")
    present = listing.present()
    content = _object_content_check(listing, present, hashed, known or {})
    with reaching(listing.url):
        return listing_problems(present, [listing.manifest], content)


def _object_content_check(
    listing: RemoteListing, present: Mapping[str, Found], hashed: bool, known: Mapping[str, str]
) -> ContentCheck:
    def check(candidates: dict[str, list[FileEntry]]) -> dict[str, str]:
        problems = {}
        for relative, entries in candidates.items():
            sha256s = {entry.sha256 for entry in entries}
            if relative in known:
                if known[relative] in sha256s:
                    continue
            elif not hashed and present[relative].etag in {entry.etag for entry in entries if entry.etag}:
                continue
            else:
                with open_file(listing.url, relative) as stream:
                    if stream_sha256(stream) in sha256s:
                        continue
            with open_file(listing.url, relative) as stream:
                damage = parquet_damage(stream, relative)
            problems[relative] = f"{relative}: its bytes are not the ones written (sha256 differs){damage}"
        return problems

    return check
