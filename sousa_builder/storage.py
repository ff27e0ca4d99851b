"""Where files live: a local folder, or a URL that fsspec resolves (s3://, gs://, memory://, ...).

A location is a local path (`file://` URLs are local paths) or a URL string. Local files keep the
native fast paths (memory maps, `pa.OSFile`); URLs are read and written through fsspec, with the
backend's usual credentials from the environment (e.g. `AWS_*` for s3fs, `GOOGLE_APPLICATION_CREDENTIALS`
for gcsfs). The backend of a protocol (s3fs, gcsfs, ...) is imported only when a URL of it is used.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import SousaError, StorageConnectionError, StorageError, is_connection_error


def is_url(location: str | os.PathLike) -> bool:
    """Whether `location` is a URL read through fsspec (not a local path, nor a file:// URL)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def local_path(location: str | os.PathLike) -> Path:
    """A local location as an absolute Path (a file:// URL as its path)."""
    text = os.fspath(location)
    return Path(text.removeprefix("file://")).expanduser().absolute()


def location(text: str | os.PathLike) -> str | Path:
    """A location as given by a user: a URL stays a string (without a trailing slash, and with a run of slashes in
    its path made one: `s3://bucket//out` is `s3://bucket/out`, not a key starting with "/"), anything else is a
    local absolute Path.

    Args:
        text (`str` or `os.PathLike`):
            A local path, a file:// URL, or a URL.

    Returns:
        `str` or `Path`: the URL, or the absolute local path.
    """
    return normal_url(str(text)) if is_url(text) else local_path(text)


def normal_url(url: str) -> str:
    """`url` without a trailing slash, and a run of slashes after its protocol made one."""
    head, _, path = url.rpartition("://")
    return f"{head}://{re.sub('/{2,}', '/', path).rstrip('/')}"


# Filesystems by protocol, made afresh in a forked child: one inherited from the parent is bound to the parent's
# event loop, whose thread is not in the child (an async filesystem such as s3fs then hangs on its first request).
_FILESYSTEMS: dict[str, Any] = {}


def _after_fork_in_child() -> None:
    _FILESYSTEMS.clear()
    asyn = sys.modules.get("fsspec.asyn")
    if asyn is not None:  # fsspec 2025.3.0 (datasets 3.6's newest) does not reset its loop in a forked child itself
        asyn.reset_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path in it; a missing backend is one line saying what to install."""
    import fsspec

    url = normal_url(url)
    protocol = url.split("://", 1)[0]
    try:
        if "::" in url or protocol not in _FILESYSTEMS:  # a chained URL carries options of its own: not cached
            fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
            if "::" not in url:
                _FILESYSTEMS[protocol] = fs
            return fs, path
        fs = _FILESYSTEMS[protocol]
        return fs, fs._strip_protocol(url)
    except ImportError as err:
        raise StorageError(f"{url}: reading and writing {protocol}:// needs its fsspec backend ({err})") from None
    except ValueError as err:  # an unknown protocol
        raise StorageError(f"{url}: {err}") from None


@contextmanager
def reaching(*locations: str | os.PathLike | None) -> Iterator[None]:
    """Name the storage when a connection to it fails inside the block.

    fsspec backends raise their own connection errors (botocore's `EndpointConnectionError`, aiohttp's, ...),
    which say nothing of the URL the user gave. Errors of the package pass as they are.

    Args:
        *locations (`str`, `os.PathLike` or `None`):
            The locations the block reads or writes; the URLs among them are named.

    Raises:
        [`~errors.StorageConnectionError`]:
            A connection failed while some location was a URL.
    """
    urls = [str(where) for where in locations if where is not None and is_url(where)]
    try:
        yield
    except SousaError:
        raise
    except Exception as err:
        if not urls or not is_connection_error(err):
            raise
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise StorageConnectionError(
            f"cannot reach the storage of {' or '.join(urls)} ({first}); check its endpoint and credentials",
            url=urls[0],
        ) from err


def join(base: str | Path, *parts: str) -> str | Path:
    """`base` / parts, for a URL or a local Path."""
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return posixpath.join(base, *parts)


def read_arrow_file(where: str | os.PathLike) -> pa.Table:
    """An Arrow IPC file (memory-mapped when local)."""
    if is_url(where):
        fs, path = filesystem(os.fspath(where))
        return pa.ipc.open_file(pa.BufferReader(fs.cat_file(path))).read_all()
    with pa.memory_map(os.fspath(where)) as source:
        return pa.ipc.open_file(source).read_all()


class HashingWriter:
    """A writable file that passes its bytes to `stream` and keeps their sha256 and count (for the manifest)."""

    def __init__(self, stream: Any):
        self.stream, self.size, self._digest = stream, 0, hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self.stream.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()

    @property
    def closed(self) -> bool:
        return self.stream.closed

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


@contextmanager
def created(url: str) -> Iterator[HashingWriter]:
    """A new object at `url`, written as a stream (multipart where the store has it); it exists, whole, only
    once the block ends well: an object store publishes an upload when it is completed, not before."""
    fs, path = filesystem(url)
    stream = fs.open(path, "wb")
    writer = HashingWriter(stream)
    try:
        yield writer
    except BaseException:
        # fsspec's buffered files abort the upload (nothing is written) and must not be closed after: closing would
        # send what is buffered. Other files are left unclosed, for the same reason; they are under a staging prefix.
        if hasattr(stream, "discard"):
            stream.discard()
            stream.closed = True
        raise
    stream.close()


def relative_to(path: str | Path, base: str | Path) -> str:
    """`path` relative to `base` (POSIX), for a URL or a local Path."""
    if isinstance(base, Path):
        return Path(path).relative_to(base).as_posix()
    return str(path)[len(str(base).rstrip("/")) + 1 :]


def parquet_files(folder: str | Path, pattern: str) -> list[tuple[Any, str]]:
    """(filesystem, path) of the files in `folder` matching `pattern`, sorted; the filesystem None for local files
    (what `pyarrow.parquet.read_table(path, filesystem=...)` takes)."""
    if isinstance(folder, Path):
        return [(None, str(path)) for path in sorted(folder.glob(pattern))]
    fs, base = filesystem(folder)
    return [(fs, path) for path in sorted(fs.glob(f"{base}/{pattern}"))]
