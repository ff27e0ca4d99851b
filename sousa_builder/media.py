"""The media files of a SOUSA directory: whether each is usable, and reading their bytes.

Media paths in the labels are relative to the dataset root; a usable one stays inside the root, is a
regular readable file, and starts as its kind does (a header read, not a decode). The root may be a URL
(`storage`): its files are then listed once (sizes) and read through fsspec, many requests at a time, and
their headers checked as they are read.
"""

from __future__ import annotations

import functools
import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import SourceFormatError
from .storage import filesystem, is_url

MEDIA_FOLDERS = ("audio", "midi")  # where the generator writes the FLAC and MIDI files


def media_files(root: Path | str) -> LocalMedia | RemoteMedia:
    """The media files under `root`, a local folder or a URL: what `problems` they have, their `sizes`."""
    return RemoteMedia(str(root)) if is_url(root) else LocalMedia(Path(root))


class LocalMedia:
    """The media files under a local folder."""

    def __init__(self, root: Path):
        self.root = root

    def problems(self, relatives: Sequence[str]) -> list[str | None]:
        """`media_problem` of each of `relatives`."""
        return [media_problem(self.root, relative) for relative in relatives]

    def sizes(self, relatives: Sequence[str]) -> list[int]:
        """The size in bytes of each of `relatives` (usable files: checked by `problems`)."""
        return [os.path.getsize(os.path.join(self.root, relative)) for relative in relatives]


def media_problem(root: Path, relative: str) -> str | None:
    """Why `relative` cannot be read as a media file inside `root`, or None if it can."""
    if os.path.isabs(relative):
        return "an absolute path; media paths must be relative to the dataset root"
    path = _real_path(os.path.join(root, relative))
    real_root = _real_directory(os.fspath(root))
    if path != real_root and not path.startswith(real_root.rstrip(os.sep) + os.sep):
        return "escapes the dataset root"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    try:
        with open(path, "rb") as stream:
            head = stream.read(_HEADER_BYTES)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    return header_problem(relative, head)


# FLAC: "fLaC", then the STREAMINFO block header (type 0, 34 bytes long); MIDI: "MThd" and its length, 6.
_FLAC_HEAD, _MIDI_HEAD, _HEADER_BYTES = b"fLaC\x00\x00\x00\x22", b"MThd\x00\x00\x00\x06", 8


def header_problem(name: str, head: bytes) -> str | None:
    """Why a media file's first bytes are not what its name claims (a cheap check, not a decode), or None."""
    if not head:
        return "empty (0 bytes)"
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".flac" and not (head[:4] == _FLAC_HEAD[:4] and head[4] & 0x7F == 0 and head[5:8] == _FLAC_HEAD[5:]):
        return "not a FLAC file (it does not start with fLaC and a STREAMINFO block)"
    if suffix in (".mid", ".midi") and head[:8] != _MIDI_HEAD:
        return "not a MIDI file (it does not start with an MThd header)"
    return None


def _real_path(path: str) -> str:
    """`os.path.realpath(path)`, resolving each folder once: a dataset has 100k files in a few dozen folders."""
    folder, name = os.path.split(path)
    if name in ("", os.curdir, os.pardir):
        return os.path.realpath(path)
    resolved = os.path.join(_real_directory(folder), name)
    return os.path.realpath(resolved) if os.path.islink(resolved) else resolved


def forget_resolved_folders() -> None:
    """Resolve folders anew from here on (they are resolved once, for the 100k files of a few dozen folders)."""
    _real_directory.cache_clear()


@functools.lru_cache(maxsize=4096)
def _real_directory(folder: str) -> str:
    return os.path.realpath(folder)


def read_media_array(root: Path | str, relatives: Sequence[str], sample_ids: Sequence[str]) -> pa.ChunkedArray:
    """The bytes of several media files as a binary array, each file read straight into the Arrow buffer
    (under a URL root: fetched together, then copied in).

    One chunk, unless the files hold more than a binary array can (2 GiB): then as many as needed.
    The paths must have passed `SousaSource.check_media` (inside the root, regular, readable): the
    builder checks them all before it reads any, so they are not resolved again here.
    """
    if is_url(root):
        return RemoteMedia(str(root)).read_array(relatives, sample_ids)
    root = Path(root)
    paths, sizes = [root / relative for relative in relatives], []
    for path, sample_id in zip(paths, sample_ids):
        try:
            sizes.append(os.stat(path).st_size)
        except OSError as err:
            raise SourceFormatError(f"{path} (sample {sample_id}): unreadable ({err.strerror})") from err
    if sum(sizes) >= 2**31:
        if len(paths) == 1:
            raise SourceFormatError(f"{paths[0]} (sample {sample_ids[0]}): larger than 2 GiB, too large for one row")
        half = len(paths) // 2
        chunks = [read_media_array(root, relatives[:half], sample_ids[:half])]
        chunks.append(read_media_array(root, relatives[half:], sample_ids[half:]))
        return pa.chunked_array([chunk for part in chunks for chunk in part.chunks], pa.binary())
    offsets = np.zeros(len(paths) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    # From Arrow's memory pool, which keeps freed pages for the next batch: a fresh numpy array per
    # batch made the kernel fault in (and compact into huge pages) new memory each time, 2-8x the read.
    data = pa.allocate_buffer(int(offsets[-1]))
    view = memoryview(data)
    for path, sample_id, start, end in zip(paths, sample_ids, offsets[:-1], offsets[1:]):
        try:
            with open(path, "rb", buffering=0) as stream:
                while start < end and (count := stream.readinto(view[start:end])):
                    start += count
                changed = start != end or stream.read(1)
        except OSError as err:
            raise SourceFormatError(f"{path} (sample {sample_id}): unreadable ({err.strerror})") from err
        if changed:
            raise SourceFormatError(f"{path} (sample {sample_id}): changed size while it was read")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), data]
    return pa.chunked_array([pa.BinaryArray.from_buffers(pa.binary(), len(paths), buffers)], pa.binary())


class RemoteMedia:
    """The media files under a URL (object storage): one listing for sizes, batched range reads for headers."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self.base = filesystem(self.root)

    def _key(self, relative: str) -> str | None:
        """The object path of `relative`, or None if it is absolute or leaves the root."""
        normal = posixpath.normpath(relative)
        if posixpath.isabs(relative) or normal == ".." or normal.startswith("../"):
            return None
        return posixpath.join(self.base, normal)

    @functools.cached_property
    def _listing(self) -> dict[str, dict]:
        """Object path -> its info, for every object under the media folders (a listing, not a request a file)."""
        found = {}
        for folder in MEDIA_FOLDERS:
            found.update(self.fs.find(posixpath.join(self.base, folder), detail=True))
        return {self.fs._strip_protocol(path): info for path, info in found.items()}

    def problems(self, relatives: Sequence[str]) -> list[str | None]:
        """Why each of `relatives` is not a usable media file (None where it is), from the listing alone.

        The first bytes of each file are checked when the file is read (`read_array`), not here: a request per
        file (22 s for 4,000 files through moto) would double the requests of a run. A bad header then stops the
        run while it writes, which leaves OUT as it was (the output is staged)."""
        problems: list[str | None] = []
        for relative in relatives:
            key = self._key(relative)
            info = self._listing.get(key) if key else None
            if key is None:
                problems.append("an absolute path; media paths must be relative to the dataset root"
                                if posixpath.isabs(relative) else "escapes the dataset root")  # fmt: skip
            elif info is None:
                problems.append("missing")
            elif info.get("type", "file") != "file":
                problems.append("not a regular file")
            elif not info.get("size"):
                problems.append("empty (0 bytes)")
            else:
                problems.append(None)
        return problems

    def sizes(self, relatives: Sequence[str]) -> list[int]:
        """The size of each of `relatives`, from the listing."""
        return [int(self._listing[self._key(relative)]["size"]) for relative in relatives]

    def read_array(self, relatives: Sequence[str], sample_ids: Sequence[str]) -> pa.ChunkedArray:
        """The bytes of `relatives` as one binary chunk per 2 GiB at most, fetched concurrently."""
        keys = [self._key(relative) for relative in relatives]
        found = self.fs.cat(keys, on_error="return")
        data = []
        for key, relative, sample_id in zip(keys, relatives, sample_ids):
            value = found.get(key)
            if not isinstance(value, bytes):
                reason = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else "missing"
                raise SourceFormatError(f"{self.root}/{relative} (sample {sample_id}): unreadable ({reason})")
            problem = header_problem(relative, value[:_HEADER_BYTES])
            if problem:
                raise SourceFormatError(f"{self.root}/{relative} (sample {sample_id}): {problem}")
            data.append(value)
        chunks, chunk, size = [], [], 0
        for value in data:
            if chunk and size + len(value) >= 2**31:
                chunks.append(pa.array(chunk, pa.binary()))
                chunk, size = [], 0
            chunk.append(value)
            size += len(value)
        chunks.append(pa.array(chunk, pa.binary()))
        return pa.chunked_array(chunks, pa.binary())
