"""The media files of a SOUSA directory: whether each is usable, and reading their bytes.

Media paths in the labels are relative to the dataset root; a usable one stays inside the root, is a
regular readable file, and starts as its kind does (a header read, not a decode). The root may be a URL
(`storage`): its files are then listed once (sizes) and read through fsspec, many requests at a time, and
their headers checked as they are read.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import SourceFormatError
from .storage import filesystem, is_url
from .validate.media_rules import HEADER_BYTES, content_problem, header_problem

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
            head = stream.read(HEADER_BYTES)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    return header_problem(relative, head)


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


def read_media_array(
    root: Path | str,
    relatives: Sequence[str],
    sample_ids: Sequence[str],
    durations: Sequence[float | None] | None = None,
) -> pa.ChunkedArray:
    """The bytes of several media files as a binary array, each file read straight into the Arrow buffer
    (under a URL root: fetched together, then copied in), each checked as it is read.

    Args:
        root: the dataset root, a local folder or a URL.
        relatives: the media paths, relative to `root`.
        sample_ids: the sample of each path, for messages.
        durations: each sample's `duration_sec`, for the length of a FLAC (None: not checked).

    Returns:
        One chunk, unless the files hold more than a binary array can (2 GiB): then as many as needed.

    Raises:
        SourceFormatError: a file that is not what the media rules (`validate.media_rules.content_problem`)
            require of the bytes embedded, that is not a regular file, that resolves outside `root` (a file
            replaced by a link since it was checked), or that changed size while it was read.
    """
    durations = list(durations) if durations is not None else [None] * len(relatives)
    if is_url(root):
        return RemoteMedia(str(root)).read_array(relatives, sample_ids, durations)
    root = Path(root)
    real_root = os.path.realpath(root)
    arrays, start = [], 0
    while start < len(relatives):
        files, size = [], 0
        for relative, sample_id in zip(relatives[start:], sample_ids[start:]):
            opened = _open_inside(root, real_root, relative, sample_id)
            if files and size + opened.size >= 2**31:
                os.close(opened.fd)
                break
            files.append(opened)
            size += opened.size
        try:
            arrays.append(_read_into_array(files, durations[start : start + len(files)]))
        finally:
            for opened in files:
                os.close(opened.fd)
        start += len(files)
    return pa.chunked_array([chunk for array in arrays for chunk in array.chunks], pa.binary())


@dataclass
class _OpenMedia:
    """A media file opened for reading: its descriptor, size, path and sample (for messages)."""

    fd: int
    size: int
    path: str
    relative: str
    sample_id: str


def _open_inside(root: Path, real_root: str, relative: str, sample_id: str) -> _OpenMedia:
    """Open a media file for reading, refusing anything but a regular file inside the root (checked on the
    opened file, so a file swapped for a link or a FIFO after the first check is caught, and never blocks)."""
    path = os.path.join(root, relative)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise SourceFormatError(f"{path} (sample {sample_id}): unreadable ({err.strerror})") from err
    try:
        info = os.fstat(fd)
        where = _opened_path(fd, path)
        if where != real_root and not where.startswith(real_root.rstrip(os.sep) + os.sep):
            raise SourceFormatError(f"{path} (sample {sample_id}): escapes the dataset root (it resolves to {where})")
        if not stat.S_ISREG(info.st_mode):
            raise SourceFormatError(f"{path} (sample {sample_id}): not a regular file")
        if info.st_size >= 2**31:
            raise SourceFormatError(f"{path} (sample {sample_id}): larger than 2 GiB, too large for one row")
    except BaseException:
        os.close(fd)
        raise
    return _OpenMedia(fd, info.st_size, path, relative, sample_id)


def _opened_path(fd: int, path: str) -> str:
    """The real path of the file open at `fd` (Linux knows it; elsewhere the path resolved now)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _read_into_array(files: Sequence[_OpenMedia], durations: Sequence[float | None]) -> pa.ChunkedArray:
    """The bytes of opened `files` (under 2 GiB in all) as one binary chunk, each checked by the media rules."""
    offsets = np.zeros(len(files) + 1, np.int64)
    np.cumsum([opened.size for opened in files], out=offsets[1:])
    # From Arrow's memory pool, which keeps freed pages for the next batch: a fresh numpy array per
    # batch made the kernel fault in (and compact into huge pages) new memory each time, 2-8x the read.
    data = pa.allocate_buffer(int(offsets[-1]))
    view = memoryview(data)
    for opened, duration, start, end in zip(files, durations, offsets[:-1], offsets[1:]):
        where = f"{opened.path} (sample {opened.sample_id})"
        try:
            # io.FileIO, not open(): datasets 3.6 replaces `open` in the modules a builder imports (for streaming)
            with io.FileIO(opened.fd, "rb", closefd=False) as stream:
                position = start
                while position < end and (count := stream.readinto(view[position:end])):
                    position += count
                changed = position != end or stream.read(1)
        except OSError as err:
            raise SourceFormatError(f"{where}: unreadable ({err.strerror})") from err
        if changed:
            raise SourceFormatError(f"{where}: changed size while it was read")
        problem = content_problem(opened.relative, view[start:end], duration)
        if problem:
            raise SourceFormatError(f"{where}: {problem}")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), data]
    return pa.chunked_array([pa.BinaryArray.from_buffers(pa.binary(), len(files), buffers)], pa.binary())


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
        file is slow on object storage (benchmarks/RESULTS.md has the cost of one per file) and would double the
        requests of a run. A bad header then stops the run while it writes, which leaves OUT as it was (the output
        is staged)."""
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

    def read_array(
        self, relatives: Sequence[str], sample_ids: Sequence[str], durations: Sequence[float | None]
    ) -> pa.ChunkedArray:
        """The bytes of `relatives` as one binary chunk per 2 GiB at most, fetched concurrently, each checked by
        the media rules (`read_media_array`)."""
        keys = [self._key(relative) for relative in relatives]
        found = self.fs.cat(keys, on_error="return")
        data = []
        for key, relative, sample_id, duration in zip(keys, relatives, sample_ids, durations):
            value = found.get(key)
            if not isinstance(value, bytes):
                reason = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else "missing"
                raise SourceFormatError(f"{self.root}/{relative} (sample {sample_id}): unreadable ({reason})")
            problem = content_problem(relative, value, duration)
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
