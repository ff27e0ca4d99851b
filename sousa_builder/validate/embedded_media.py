"""The media rules on every byte string a prepared output embeds (`embedded_media`), in the pass that hashes it.

The `audio` and `midi_only` shards are most of an output's bytes, and the manifest check reads each one whole to
hash it. This pass reads each such shard once, in order: every row group's bytes are hashed as they are read and
kept in memory while its `audio` / `midi` values are decoded from them, and every value goes through the media
rules (`media_rules.content_problem`: a FLAC needs `fLaC`, a STREAMINFO block, 44.1 kHz, a last frame that decodes
and the length of its row's `duration_sec` + 0.5 s; a MIDI file its header and notes). The sha256 it computes is
then given to the manifest check, which reads those shards no more. A local shard whose sha256 the hash cache
already holds is read without hashing it again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..hashes import HashCache, file_stamp, open_regular
from ..prepared_files import BLOCK_SIZE, open_file
from ..storage import is_url, reaching
from ..verified_stream import Positioned
from .media import run_tasks
from .media_rules import content_problem
from .prepared_folder import PreparedFolder
from .report import CheckResult, first_line, verdict

EMBEDDED_COLUMNS = ("audio", "midi")
# The name each embedded column is checked as (its extension picks the rules): an `audio` value is a FLAC.
_CHECKED_AS = {"audio": "audio.flac", "midi": "midi.mid"}


@dataclass
class EmbeddedMedia:
    """What the pass found: the `embedded_media` check, and the sha256 of the shards it hashed (relative path ->
    sha256, for the manifest check)."""

    check: CheckResult
    sha256: dict[str, str] = field(default_factory=dict)


@dataclass
class ShardPass:
    """One shard as the pass read it (a worker's result: plain data)."""

    relative: str
    sha256: str | None  # None when not hashed (already known), or when the shard could not be read to its end
    stamp: list[int] | None  # a local file's `file_stamp` when it was opened
    offenders: list[str]
    values: int  # embedded values checked


class HashingReader(Positioned, io.RawIOBase):
    """A file handed to a Parquet reader while its sha256 is computed in one sequential pass.

    `load(start, end)` reads the file on to `end`, hashing every byte once and in order, and keeps `start`-`end` in
    memory; the reader's reads there are served from memory. A read elsewhere goes to the file itself (not hashed:
    hashing covers the sequential pass only). `finish` hashes what is left.

    Args:
        stream (`BinaryIO`):
            The file, open for reading and seekable.
        size (`int`):
            Its size in bytes.
        hashed (`bool`):
            Compute the sha256 (False: only serve the reads, each byte still read once).
    """

    def __init__(self, stream: BinaryIO, size: int, hashed: bool = True):
        super().__init__()
        self._stream, self.size = stream, size
        self._digest = hashlib.sha256() if hashed else None
        self._done = self._position = self._window_start = 0
        self._window = memoryview(b"")

    def load(self, start: int, end: int) -> None:
        """Read (and hash) the file on to `end`; keep `start`-`end` in memory for the reads that follow.

        Args:
            start (`int`): the first byte to keep.
            end (`int`): the byte after the last one to keep.

        Raises:
            `OSError`: the file cannot be read, or ends before `end`.
        """
        start, end = max(0, min(start, end)), min(end, self.size)
        window = memoryview(bytearray(end - start))  # a new buffer: the reader may still hold views of the last
        if start < self._done:  # already passed (a reader going back): read again, not hashed again
            self._stream.seek(start)
            self._read_into(window[: min(end, self._done) - start])
        self._stream.seek(self._done)
        while self._done < end:
            if self._done < start:  # between two windows: hashed, not kept
                part = self._stream.read(min(BLOCK_SIZE, start - self._done))
            else:
                part = window[self._done - start : min(end, self._done + BLOCK_SIZE) - start]
                part = part[: self._stream.readinto(part) or 0]
            if not part:
                raise OSError(f"ends at {self._done:,} bytes, not {self.size:,}")
            if self._digest is not None:
                self._digest.update(part)
            self._done += len(part)
        self._window_start, self._window = start, window

    def _read_into(self, view: memoryview) -> None:
        filled = 0
        while filled < len(view):
            count = self._stream.readinto(view[filled:])
            if not count:
                raise OSError(f"ends before {self.size:,} bytes")
            filled += count

    def finish(self) -> str | None:
        """Hash the rest of the file; free the bytes kept.

        Returns:
            `str` or None: the sha256 (hex) of the whole file, or None when it was not hashed.

        Raises:
            `OSError`: the file cannot be read, or ends early.
        """
        self.load(self.size, self.size)
        return self._digest.hexdigest() if self._digest is not None else None

    def read(self, size: int = -1) -> bytes | memoryview:
        start = self._position
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if end <= start:
            return b""
        offset = start - self._window_start
        if offset >= 0 and end - self._window_start <= len(self._window):
            data: bytes | memoryview = self._window[offset : offset + end - start]  # no copy: Arrow takes a view
        else:
            self._stream.seek(start)
            data = self._stream.read(end - start)
        self._position += len(data)
        return data


def embedded_media(prepared: PreparedFolder, num_proc: int | None = None) -> EmbeddedMedia:
    """Check every embedded `audio` / `midi` value of `prepared` by the media rules, hashing each shard it reads.

    Args:
        prepared ([`~validate.prepared_folder.PreparedFolder`]):
            The output, as `scan` found it.
        num_proc (`int`, *optional*):
            Processes reading shards (one shard a task); one, in this process, if not given.

    Returns:
        [`EmbeddedMedia`]: the `embedded_media` check, and the sha256 of each shard read to its end and hashed
        (a local shard the hash cache knows unchanged is not hashed again, and not in it).

    Raises:
        [`~errors.StorageConnectionError`]:
            The storage of a URL output could not be reached.
    """
    shards = [s for s in prepared.readable if set(EMBEDDED_COLUMNS) & set(s.schema.names)]
    local = prepared.listing is None
    cache = HashCache.load() if local else None
    tasks, weights = [], []
    for shard in shards:
        known = cache.known(Path(prepared.out, *shard.path.split("/"))) if cache is not None else None
        tasks.append((str(prepared.out), shard.path, shard.metadata, known is None))
        weights.append(shard.rows)
    passes: list[ShardPass] = run_tasks(_shard_pass, tasks, weights, num_proc, "Checking embedded media", "row")
    sha256 = {found.relative: found.sha256 for found in passes if found.sha256 is not None}
    if cache is not None:
        for found in passes:
            if found.sha256 is not None and found.stamp is not None:
                cache.remember(Path(prepared.out, *found.relative.split("/")), found.sha256, found.stamp)
        cache.save()
    offenders = [line for found in passes for line in found.offenders]
    values = sum(found.values for found in passes)
    check = verdict(
        "embedded_media",
        len(offenders),
        offenders,
        "embedded audio / MIDI value(s) that break the media rules",
        f"{values:,} embedded audio / MIDI value(s) in {len(shards)} shard(s) pass the media rules "
        "(FLAC: fLaC, STREAMINFO, 44.1 kHz, decodes to its end, lasts duration_sec + 0.5 s; MIDI: parses, holds notes)",
        details={"checked": values},
    )
    return EmbeddedMedia(check, sha256)


def _shard_pass(out: str, relative: str, metadata: pq.FileMetaData, hashed: bool) -> list[ShardPass]:
    """Worker: one shard read once, in order: its embedded values checked, its bytes hashed (with `hashed`)."""
    with reaching(out):
        if is_url(out):
            stream, stamp = open_file(out, relative), None
            size = stream.size
        else:
            stream = open_regular(Path(out, *relative.split("/")))
            info = os.fstat(stream.fileno())
            size, stamp = info.st_size, file_stamp(info)
        with stream:
            reader = HashingReader(stream, size, hashed)
            offenders, values = _check_row_groups(reader, relative, metadata)
            try:
                sha256 = reader.finish()
            except OSError as err:
                offenders.append(f"{relative}: unreadable ({first_line(err)})")
                sha256 = None
        if stamp is not None and file_stamp(os.stat(Path(out, *relative.split("/")))) != stamp:
            sha256 = None  # changed while it was read: the manifest check hashes it again
    return [ShardPass(relative, sha256, stamp, offenders, values)]


def _check_row_groups(reader: HashingReader, relative: str, metadata: pq.FileMetaData) -> tuple[list[str], int]:
    """The media rules on each embedded value of each row group, each group's bytes loaded (and hashed) first."""
    config = relative.split("/", 1)[0]
    parquet = pq.ParquetFile(reader, metadata=metadata, page_checksum_verification=True)
    names = parquet.schema_arrow.names
    columns = [c for c in ("sample_id", *EMBEDDED_COLUMNS, "duration_sec") if c in names]
    offenders, values = [], 0
    for group in range(metadata.num_row_groups):
        try:
            reader.load(*_byte_range(metadata.row_group(group)))
            table = parquet.read_row_group(group, columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as err:
            offenders.append(f"{relative} (config {config}): row group {group} does not read ({first_line(err)})")
            continue
        ids = table["sample_id"].to_pylist() if "sample_id" in names else [None] * table.num_rows
        durations = table["duration_sec"].to_pylist() if "duration_sec" in names else [None] * table.num_rows
        for column in (c for c in EMBEDDED_COLUMNS if c in names):
            chunks = table[column].chunks
            data = [v for c in chunks for v in (c.field("bytes") if pa.types.is_struct(c.type) else c).to_pylist()]
            for sample_id, value, duration in zip(ids, data, durations):
                values += 1
                if value is None:
                    problem = "missing (null)"
                elif column == "midi":
                    problem = _midi_problem(value)
                else:
                    problem = content_problem(_CHECKED_AS[column], value, duration)
                if problem:
                    offenders.append(f"{relative} (config {config}): sample {sample_id} {column}: {problem}")
    return offenders, values


@functools.lru_cache(maxsize=1024)
def _midi_problem(data: bytes) -> str | None:
    """The media rules on a MIDI file, once per content: one file is embedded for each sample of its augmentation
    group, in `audio` and again in `midi_only`, and its rules do not depend on the row."""
    return content_problem(_CHECKED_AS["midi"], data)


def _byte_range(group: pq.RowGroupMetaData) -> tuple[int, int]:
    """The bytes of a row group in its file: from its first column chunk's first page to the end of its last."""
    starts, ends = [], []
    for index in range(group.num_columns):
        chunk = group.column(index)
        first = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        first = min(first, chunk.data_page_offset) if first else chunk.data_page_offset
        starts.append(first)
        ends.append(first + chunk.total_compressed_size)
    return (min(starts), max(ends)) if starts else (0, 0)
