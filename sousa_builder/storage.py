"""Where files live: a local folder, or a URL that fsspec resolves (s3://, gs://, memory://, ...).

A location is a local path (`file://` URLs are local paths) or a URL string. Local files keep the
native fast paths (memory maps, `pa.OSFile`); URLs are read and written through fsspec, with the
backend's usual credentials from the environment (e.g. `AWS_*` for s3fs, `GOOGLE_APPLICATION_CREDENTIALS`
for gcsfs). The backend of a protocol (s3fs, gcsfs, ...) is imported only when a URL of it is used.

Every wait for an S3 endpoint is bounded: connecting and each read wait at most `SOUSA_STORAGE_TIMEOUT` seconds
(default `DEFAULT_STORAGE_TIMEOUT`), and a request is tried `AWS_MAX_ATTEMPTS` times (default `STORAGE_ATTEMPTS`),
so an endpoint that never answers ends the run once those waits are spent, in one line naming the URL and the endpoint.
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


# Protocols that name the same store: an object under s3a:// is the object under s3://.
_SAME_PROTOCOL = {"s3a": "s3", "gcs": "gs"}


def overlapping(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two locations are the same, or one lies inside the other.

    Local paths are compared once their symlinks are resolved; URLs of one store by their bucket and key
    prefix, whole path parts only (`s3://b/out2` is not inside `s3://b/out`). A URL and a local path never overlap.

    Args:
        a (`str` or `os.PathLike`):
            A local path, a file:// URL, or a URL.
        b (`str` or `os.PathLike`):
            Another.

    Returns:
        `bool`: True when `a` is `b`, holds it or lies inside it.
    """
    a, b = location(a), location(b)
    if isinstance(a, Path) and isinstance(b, Path):
        a, b = a.resolve(), b.resolve()
        return a == b or a.is_relative_to(b) or b.is_relative_to(a)
    if isinstance(a, Path) or isinstance(b, Path):
        return False
    (protocol_a, parts_a), (protocol_b, parts_b) = _url_parts(a), _url_parts(b)
    shared = min(len(parts_a), len(parts_b))
    return protocol_a == protocol_b and parts_a[:shared] == parts_b[:shared]


def _url_parts(url: str) -> tuple[str, list[str]]:
    """A normal URL's protocol (its alias resolved) and path parts, the bucket first."""
    protocol, _, path = url.partition("://")
    protocol = protocol.lower()
    return _SAME_PROTOCOL.get(protocol, protocol), [part for part in path.split("/") if part]


TIMEOUT_VARIABLE = "SOUSA_STORAGE_TIMEOUT"
DEFAULT_STORAGE_TIMEOUT = 20.0  # seconds: connecting, and each wait for an answer
STORAGE_ATTEMPTS = 3  # botocore's tries of a request; s3fs's own retry loop is left out (it would multiply them)
S3_PROTOCOLS = ("s3", "s3a")
# Class names of an expired wait: botocore's read timeout, fsspec's, asyncio's and the built-in (by name).
_TIMEOUT_ERRORS = {"ReadTimeoutError", "ConnectTimeoutError", "FSTimeoutError", "TimeoutError"}


def storage_timeout() -> float:
    """The bound of each wait for an object store, in seconds (`SOUSA_STORAGE_TIMEOUT`, else the default).

    Returns:
        `float`: seconds, greater than 0.

    Raises:
        [`~errors.StorageError`]:
            `SOUSA_STORAGE_TIMEOUT` is not a positive number.
    """
    return seconds_setting(TIMEOUT_VARIABLE, DEFAULT_STORAGE_TIMEOUT, StorageError)


def seconds_setting(variable: str, default: float, error: type[Exception]) -> float:
    """A bound of a network wait, in seconds, from the environment variable `variable` (else `default`).

    Args:
        variable (`str`):
            The environment variable's name, e.g. "SOUSA_STORAGE_TIMEOUT".
        default (`float`):
            The seconds when the variable is unset or empty.
        error (`type[Exception]`):
            The error to raise for a value that is not a positive number (the kind of wait it bounds).

    Returns:
        `float`: seconds, greater than 0 and finite.

    Raises:
        `error`:
            The variable is set to something other than a positive number; the message names it and its value.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise error(f"{variable}={text}: must be a number of seconds greater than 0")
    return value


def _attempts() -> int:
    text = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else STORAGE_ATTEMPTS


def bounded_options(protocol: str) -> dict[str, Any]:
    """The filesystem options bounding every network wait of `protocol` (S3: connect and read timeouts, tries).

    Args:
        protocol (`str`):
            A URL's protocol, e.g. "s3".

    Returns:
        `dict`: keyword arguments for `fsspec.core.url_to_fs` (empty for a protocol without such options).

    Raises:
        [`~errors.StorageError`]:
            `SOUSA_STORAGE_TIMEOUT` is not a positive number.
    """
    if protocol not in S3_PROTOCOLS:
        return {}
    timeout = storage_timeout()
    retries = {"max_attempts": _attempts(), "mode": "standard"}
    return {"config_kwargs": {"connect_timeout": timeout, "read_timeout": timeout, "retries": retries}}


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
            options = {} if "::" in url else bounded_options(protocol)
            fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
            if options and hasattr(fs, "retries"):
                fs.retries = 1  # s3fs's own loop would try each of botocore's tries again, 5 times
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
    which say nothing of the URL the user gave; so do their timeouts (an endpoint that accepts and never
    answers). Errors of the package pass as they are.

    Args:
        *locations (`str`, `os.PathLike` or `None`):
            The locations the block reads or writes; the URLs among them are named.

    Raises:
        [`~errors.StorageConnectionError`]:
            A connection failed, or a wait expired, while some location was a URL.
    """
    urls = [str(where) for where in locations if where is not None and is_url(where)]
    try:
        yield
    except SousaError:
        raise
    except Exception as err:
        timed_out = _is_timeout(err)
        if not urls or not (timed_out or is_connection_error(err)):
            raise
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        if timed_out and any(url.split("://", 1)[0] in S3_PROTOCOLS for url in urls):
            first += (
                f"; no answer within {storage_timeout():g} s, {_attempts()} tries: {TIMEOUT_VARIABLE} sets the wait"
            )
        raise StorageConnectionError(
            f"cannot reach the storage of {' or '.join(urls)} ({first}); check its endpoint and credentials",
            url=urls[0],
        ) from err


def _is_timeout(error: BaseException | None) -> bool:
    """Whether an expired wait (a timeout, by class name) is `error` or behind it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if {cls.__name__ for cls in type(error).__mro__} & _TIMEOUT_ERRORS:
            return True
        error = error.__cause__ or error.__context__
    return False


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
        """Pass `data` to the stream, hashing and counting it.

        Args:
            data (`bytes` or `memoryview`):
                The bytes to write.

        Returns:
            `int`: what the stream's `write` returned.
        """
        self._digest.update(data)
        self.size += len(data)
        return self.stream.write(data)

    def tell(self) -> int:
        """The bytes written so far (a stream of fsspec may not tell)."""
        return self.size

    def flush(self) -> None:
        """Flush the stream."""
        self.stream.flush()

    def close(self) -> None:
        """Close the stream; `sha256` and `size` stay readable."""
        self.stream.close()

    @property
    def closed(self) -> bool:
        """Whether the stream is closed."""
        return self.stream.closed

    def writable(self) -> bool:
        """True: it is written to."""
        return True

    def seekable(self) -> bool:
        """False: the bytes are hashed in the order written, so it never seeks."""
        return False

    @property
    def sha256(self) -> str:
        """The sha256 (hex) of the bytes written so far."""
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
