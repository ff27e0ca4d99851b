"""An object of a prepared output at a URL, streamed to an upload and checked against its manifest as it goes."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from .errors import PreparedFolderError
from .manifest import FileEntry
from .prepared_files import BLOCK_SIZE, open_file
from .storage import reaching


class Positioned:
    """What a stream of known `size` read at its `_position` has in common (a mixin before an `io` base class):
    readable, seekable anywhere, and `readinto` served by the class's `read`."""

    size: int
    _position: int

    def read(self, size: int = -1) -> bytes | memoryview:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class VerifiedReader(Positioned, io.BufferedIOBase):
    """An object of a prepared output at a URL, read as a seekable stream (for an upload) that hashes the bytes as
    they pass and raises before handing out the last of them if they are not the ones its manifest lists: a changed
    object never reaches its end, so an upload of it never completes.

    Reads may go back (an upload retried, a part sent again): hashing then starts again from the first byte. Reads
    that skip ahead hash the bytes skipped first.

    Args:
        url (`str`):
            The prepared output's URL.
        relative (`str`):
            The object's path in it.
        entry ([`~manifest.FileEntry`]):
            The manifest's entry: the size and sha256 the bytes must have.
    """

    def __init__(self, url: str, relative: str, entry: FileEntry):
        super().__init__()
        self.url, self.relative, self.entry = url, relative, entry
        self._stream: BinaryIO | None = None
        self._position = self._hashed = 0
        self._digest = hashlib.sha256()

    @property
    def size(self) -> int:
        """The object's size, as its manifest lists it."""
        return self.entry.size

    @property
    def shown(self) -> str:
        """The object's URL, as messages name it."""
        return f"{self.url}/{self.relative}"

    def _changed(self, what: str) -> PreparedFolderError:
        return PreparedFolderError(
            f"{self.shown}: {what} since prepare wrote it, so nothing was committed: prepare {self.url} again"
        )

    def _file(self) -> BinaryIO:
        if self._stream is None:
            with reaching(self.url), self._expired():
                self._stream = open_file(self.url, self.relative)
            size = getattr(self._stream, "size", self.entry.size)
            if size != self.entry.size:
                raise self._changed(f"{size:,} bytes, not the {self.entry.size:,} its manifest lists: changed")
        return self._stream

    def head(self, count: int = 512) -> bytes:
        """The first `count` bytes (what the Hub reads to choose how a file is stored); the stream is left at 0.

        Returns:
            `bytes`: at most `count` bytes.

        Raises:
            [`~errors.PreparedFolderError`]:
                The object is not the manifest's (its size, or for a small object its sha256).
        """
        data = self.read(count)
        self.seek(0)
        return data

    @contextlib.contextmanager
    def _expired(self) -> Iterator[None]:
        """s3fs reads an object only while its ETag is the one listed (`FileExpired` otherwise): changed."""
        try:
            yield
        except OSError as err:
            if type(err).__name__ != "FileExpired":
                raise
            raise self._changed("its ETag is not the one listed and checked: changed") from None

    def read(self, size: int | None = -1) -> bytes:
        left = self.entry.size - self._position
        if left <= 0:
            return b""
        want = left if size is None or size < 0 else min(size, left)
        if self._position < self._hashed:  # read again: what is sent now is hashed again, from the start
            self._digest, self._hashed = hashlib.sha256(), 0
        while self._hashed < self._position:  # skipped ahead: hash the bytes between
            self._take(self._read_at(self._hashed, min(BLOCK_SIZE, self._position - self._hashed)))
        data = self._read_at(self._position, want)
        self._take(data)
        self._position += len(data)
        return data

    read1 = read

    def _read_at(self, position: int, count: int) -> bytes:
        stream = self._file()
        with reaching(self.url), self._expired():
            stream.seek(position)
            data = stream.read(count)
        if len(data) != count:
            raise self._changed("shorter than its manifest lists: changed")
        return data

    def _take(self, data: bytes) -> None:
        """Hash `data` (the bytes at `_hashed`); at the end, raise unless the sha256 is the manifest's."""
        self._digest.update(data)
        self._hashed += len(data)
        if self._hashed == self.entry.size and self._digest.hexdigest() != self.entry.sha256:
            raise self._changed("its bytes (sha256) are not the ones its manifest lists: changed")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        super().close()
