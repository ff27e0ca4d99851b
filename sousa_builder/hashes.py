"""sha256 of prepared files, computed once and remembered by `stat` under HF_HOME (prepare, validate, publish)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from huggingface_hub import constants as hf_constants

from .errors import NotARegularFileError

logger = logging.getLogger(__name__)

# Under HF_HOME: sha256 of prepared files already hashed, so that a re-publish reads no unchanged file.
HASH_CACHE = "sousa-builder/sha256-cache.json"
HASH_THREADS = min(4, os.cpu_count() or 1)


def file_sha256s(paths: Sequence[Path]) -> list[tuple[str, int]]:
    """The sha256 and size of each file, in threads (hashlib lets go of the GIL), through the hash cache.

    Args:
        paths (`Sequence[Path]`):
            Regular files.

    Returns:
        `list[tuple[str, int]]`: (sha256 hex, size) of each, in order.

    Raises:
        [`~errors.NotARegularFileError`]:
            A path is a FIFO, socket, device or folder.
        `OSError`: a file cannot be read.
    """
    hashes = HashCache.load()
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        found = list(pool.map(hashes.sha256, paths))
    hashes.save()
    return found


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 of a regular file, and its size.

    Opened without blocking and checked before it is read: a FIFO named like a shard would block the read forever.

    Args:
        path (`Path`):
            The file.

    Returns:
        `tuple[str, int]`: the sha256 (hex) and the number of bytes read.

    Raises:
        [`~errors.NotARegularFileError`]:
            `path` is a FIFO, socket, device or folder.
        `OSError`: the file cannot be read.
    """
    with open_regular(path) as stream:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            digest = hashlib.file_digest(stream, "sha256")
        else:
            digest, buffer = hashlib.sha256(), memoryview(bytearray(4 << 20))
            while count := stream.readinto(buffer):
                digest.update(buffer[:count])
        return digest.hexdigest(), stream.tell()


def open_regular(path: Path) -> BinaryIO:
    """A regular file opened for reading, unbuffered; opened without blocking and checked before it is read: a FIFO
    named like a shard would block the read forever.

    Args:
        path (`Path`):
            The file.

    Returns:
        `BinaryIO`: the open file, at its start.

    Raises:
        [`~errors.NotARegularFileError`]:
            `path` is a FIFO, socket, device or folder.
        `OSError`: the file cannot be opened.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    stream = open(descriptor, "rb", buffering=0)  # noqa: SIM115 (returned open: the caller closes it)
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        stream.close()
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise NotARegularFileError(f"{path}: {kind}; only regular files are hashed and published")
    return stream


def file_stamp(info: os.stat_result) -> list[int]:
    """What `stat` says of a file that changes when the file is rewritten (size, times, inode, device).

    Args:
        info (`os.stat_result`):
            The file's `stat` (or `fstat` of it open).

    Returns:
        `list[int]`: the stamp the hash cache keeps with a sha256.
    """
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


class HashCache:
    """sha256 of local files, remembered with what `stat` said of the file when it was hashed.

    Publishing an unchanged folder again then reads none of it (git's index does the same). A file
    that `prepare` rewrote is a new file (new inode and times) and is hashed again.
    """

    def __init__(self, path: Path, entries: dict[str, list]):
        self.path, self.entries, self.changed = path, entries, False

    @classmethod
    def load(cls) -> HashCache:
        """The cache remembered under the Hub's home folder (`HF_HOME`); empty when it is missing or does not read.

        Returns:
            [`HashCache`]: the cache, to be saved again if `changed`.
        """
        path = Path(hf_constants.HF_HOME) / HASH_CACHE
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def sha256(self, file: Path) -> tuple[str, int]:
        """The file's sha256 (hex) and size, computed only if the cache has none for the file as it is now.

        Args:
            file (`Path`):
                A regular file.

        Returns:
            `tuple[str, int]`: the sha256 (hex) and the size.

        Raises:
            [`~errors.NotARegularFileError`]:
                `file` is a FIFO, socket, device or folder.
            `OSError`: the file cannot be read.
        """
        info = file.stat()
        known = self.known(file, info)
        if known is not None:
            return known, info.st_size
        sha256, _ = sha256_file(file)
        self.entries[str(file.absolute())] = [file_stamp(info), sha256]
        self.changed = True
        return sha256, info.st_size

    def known(self, file: Path, info: os.stat_result | None = None) -> str | None:
        """The sha256 remembered for the file as it is now, without reading it.

        Args:
            file (`Path`):
                The file.
            info (`os.stat_result`, *optional*):
                Its `stat`, if already taken.

        Returns:
            `str` or None: the sha256 (hex), or None when the cache has none for the file as `stat` finds it.

        Raises:
            `OSError`: the file cannot be `stat`ed.
        """
        entry = self.entries.get(str(file.absolute()))
        stamp = file_stamp(info or file.stat())
        return entry[1] if isinstance(entry, list) and entry[:1] == [stamp] else None

    def remember(self, file: Path, sha256: str, stamp: list[int] | None = None) -> None:
        """Record a sha256 computed elsewhere (prepare hashes each shard as it writes it) for the file as it is.

        Args:
            file (`Path`):
                The file.
            sha256 (`str`):
                Its sha256 (hex).
            stamp (`list[int]`, *optional*):
                The `file_stamp` of the file when it was hashed: nothing is recorded if the file is no longer so.

        Raises:
            `OSError`: the file cannot be `stat`ed.
        """
        now = file_stamp(file.stat())
        if stamp is not None and stamp != now:
            return
        self.entries[str(file.absolute())] = [now, sha256]
        self.changed = True

    def save(self) -> None:
        """Write the cache (entries of files that are gone are dropped); a failure only costs a rehash later."""
        if not self.changed:
            return
        kept = {key: entry for key, entry in self.entries.items() if os.path.exists(key)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(kept), encoding="utf-8")
            partial.replace(self.path)
        except OSError as err:
            logger.warning("could not save the file hash cache %s: %s", self.path, err)
