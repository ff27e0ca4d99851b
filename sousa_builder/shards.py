"""Parquet shards: cut a split's rows into shards, and write each shard with a writer this package owns.

A shard is a range of a split's rows (sorted by sample_id), fixed before anything is written: the
number of shards comes from the split's size and `max_shard_size` (or is given), as in `datasets`'
`push_to_hub`. Each shard is written on its own, from the rows alone, so the files are the same
byte for byte whichever process writes them, however many processes there are, and under any
multiprocessing start method (fork, spawn, forkserver).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.utils.py_utils import convert_file_size_to_int
from datasets.utils.tqdm import tqdm

from .builder import Sousa, SousaConfig, build_tables
from .features import features_for
from .hashes import sha256_file
from .labels import LabelBuckets
from .storage import created, is_url, read_arrow_file

DEFAULT_MAX_SHARD_SIZE = "500MB"  # as `datasets.config.MAX_SHARD_SIZE`
# Content-defined chunking, as datasets 4+ writes it (`datasets.config.DEFAULT_CDC_OPTIONS`), where pyarrow has it:
# pages cut by content, so that a changed row changes few pages and the Hub's Xet storage deduplicates the rest.
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}
_PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
PYARROW_HAS_CDC = int(pa.__version__.split(".")[0]) >= 21  # pyarrow 21 added content-defined chunking

logger = logging.getLogger(__name__)

try:  # datasets 4+: the per-column Parquet options its own writer uses
    from datasets.arrow_writer import get_parquet_column_options
except ImportError:  # datasets 3.6
    get_parquet_column_options = None


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: rows [start, stop) of the split rows stored at `rows_file`, into `path`.

    Paths (and `root`, the media's) are local, or URLs (`storage`) for sources and outputs in object storage."""

    config: str
    rows_file: str
    start: int
    stop: int
    root: str
    labels: LabelBuckets
    path: str


@dataclass(frozen=True)
class ShardResult:
    """What a shard holds: rows, their Arrow size (`num_bytes` in the card), the file's size and sha256."""

    path: str
    num_examples: int
    num_bytes: int
    file_bytes: int
    sha256: str


def size_text(num_bytes: int) -> str:
    """A byte count for people: '43.6 kB', '6.0 MB', '1.2 GB' (decimal units, as `--max-shard-size`)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} bytes"


def shard_ranges(num_rows: int, num_shards: int) -> list[tuple[int, int]]:
    """`num_rows` cut into `num_shards` contiguous ranges whose sizes differ by one row at most."""
    num_shards = max(1, min(num_shards, num_rows))
    bounds = [num_rows * index // num_shards for index in range(num_shards + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def count_shards(estimated_bytes: int, max_shard_size: int | str | None) -> int:
    """How many shards keep each under `max_shard_size` (bytes or "500MB"), as `push_to_hub` counts them."""
    limit = convert_file_size_to_int(max_shard_size or DEFAULT_MAX_SHARD_SIZE)
    return int(estimated_bytes / limit) + 1


def parquet_options(features: datasets.Features, schema: pa.Schema, cdc: bool | None = None) -> dict:
    """`pq.ParquetWriter` options: embedded FLAC stored as it is (PLAIN, uncompressed), the rest snappy +
    dictionary, as datasets 4+ writes media; page checksums and index; content-defined chunking (`cdc`,
    by default for configs without audio) where pyarrow has it."""
    options = {**_column_options(features, schema), "write_page_index": True, "write_page_checksum": True}
    encoding = options["column_encoding"]
    if PYARROW_HAS_CDC:
        # Embedded FLAC is stored PLAIN and uncompressed, so Xet deduplicates its bytes as they are: chunking by
        # content would cut it into ~1 MB pages with a header between files, which dedups worse (83% against 95%
        # of a 400 MB shard after 3% of rows are inserted, benchmarks/dedup.py) and costs 0.3 s CPU per 400 MB.
        options["use_content_defined_chunking"] = CDC_OPTIONS if (not encoding if cdc is None else cdc) else False
    return options


def _column_options(features: datasets.Features, schema: pa.Schema) -> dict:
    """Per-leaf `compression`, `use_dictionary` and `column_encoding`: datasets' own where it has them (4+), else
    the same rule written here for datasets 3.6 (media stored PLAIN and uncompressed, the rest snappy + dictionary)."""
    if get_parquet_column_options is not None:
        return get_parquet_column_options(features, schema)
    compression, use_dictionary, encoding = {}, [], {}
    for field in schema:
        embedded = isinstance(features[field.name], datasets.Audio)
        for leaf in _leaf_paths(field.name, field.type):
            compression[leaf] = "none" if embedded else "snappy"
            if embedded:
                encoding[leaf] = "PLAIN"
            else:
                use_dictionary.append(leaf)
    return {"compression": compression, "use_dictionary": use_dictionary, "column_encoding": encoding}


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    """Parquet's leaf column paths of a field ("strokes.list.element.hand"): per-column options name these."""
    if pa.types.is_struct(pa_type):
        return [leaf for field in pa_type for leaf in _leaf_paths(f"{path}.{field.name}", field.type)]
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


def write_parquet(
    path: str | os.PathLike, tables: Iterable[pa.Table], features: datasets.Features, cdc: bool | None = None
) -> tuple[int, int, tuple[str, int] | None]:
    """Write `tables` (one row group each) as one Parquet file with the schema of `features` and
    `parquet_options` (`cdc` overrides whether pages are cut by content); `path` may be a URL.

    Returns (rows, Arrow bytes) written, and the file's (sha256, size) where it was written to a URL (hashed
    as it streams out), else None. A local file goes through a native Arrow file: through a Python file object
    pyarrow hands every page to Python, which copies it (CPU time that grows with the bytes written).
    """
    if is_url(path):
        with created(os.fspath(path)) as sink:
            rows, num_bytes = _write_parquet(sink, tables, features, cdc)
        return rows, num_bytes, (sink.sha256, sink.size)
    with pa.OSFile(str(path), "wb") as sink:
        return (*_write_parquet(sink, tables, features, cdc), None)


def _write_parquet(
    sink: pa.NativeFile | object, tables: Iterable[pa.Table], features: datasets.Features, cdc: bool | None
) -> tuple[int, int]:
    schema = features.arrow_schema
    options = parquet_options(features, schema, cdc)
    rows = num_bytes = 0
    with pq.ParquetWriter(sink, schema, **options) as writer:
        if options.get("use_content_defined_chunking"):
            writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
        for table in tables:
            table = table.cast(schema)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            rows, num_bytes = rows + table.num_rows, num_bytes + table.nbytes
    return rows, num_bytes


def write_shard(task: ShardTask) -> ShardResult:
    """Build the rows of one shard and write them (runs in a worker process)."""
    config: SousaConfig = Sousa.builder_configs[task.config]
    rows = read_arrow_file(task.rows_file).slice(task.start, task.stop - task.start)
    root = task.root if is_url(task.root) else Path(task.root)
    tables = build_tables(config, rows, root, task.labels)
    features = features_for(config.with_midi, config.with_audio)
    num_examples, num_bytes, digest = write_parquet(task.path, tables, features)
    # Hashed now, while the file is in the page cache: the manifest, validate and publish need no other read.
    sha256, size = digest or sha256_file(Path(task.path))
    return ShardResult(task.path, num_examples, num_bytes, size, sha256)


class ShardWriters:
    """Writes shards in `num_proc` worker processes (in this one if `num_proc` is None or 1).

    One pool serves every config and split of a prepare: workers started with spawn or forkserver
    import `datasets` first, which takes each of them a while. If the block is left by an exception (Ctrl-C
    included), the workers are killed at once (SIGKILL); they also die with this process (Linux).
    Not `multiprocessing.Pool`: its terminate() could hang on a queue lock held by a worker that a
    signal to the process group had killed (seen with SIGTERM); this executor notices
    dead workers.
    """

    def __init__(self, num_proc: int | None = None):
        self.num_proc = num_proc or 1
        self._pool: ProcessPoolExecutor | None = None
        self._other_children: set[multiprocessing.process.BaseProcess] = set()

    def __enter__(self) -> ShardWriters:
        if self.num_proc > 1:
            # The start method is the user's (multiprocessing's default, or set_start_method): the output is the same.
            context = multiprocessing.get_context()
            self._other_children = set(multiprocessing.active_children())  # not ours to kill
            self._pool = ProcessPoolExecutor(self.num_proc, mp_context=context, initializer=_worker_signals)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if self._pool is None:
            return
        if exc_type is not None:
            for worker in set(multiprocessing.active_children()) - self._other_children:
                worker.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, tasks: Sequence[ShardTask]) -> None:
        """The shards of the whole run, before the first `write`: nothing to do ahead here (a split at a time)."""

    def write(self, tasks: Sequence[ShardTask], desc: str) -> list[ShardResult]:
        """Write `tasks`; their results in task order.

        Progress in rows, under `desc`: a bar on a terminal; elsewhere (a CI log) one INFO line when done,
        since a bar redrawn into a file runs together.
        """
        results: dict[str, ShardResult] = {}
        started = time.perf_counter()
        with tqdm(total=sum(t.stop - t.start for t in tasks), desc=desc, unit=" rows", disable=None) as bar:
            for result in self._results(tasks):
                results[result.path] = result
                bar.update(result.num_examples)
            shown = not bar.disable
        ordered = [results[task.path] for task in tasks]
        if not shown:
            log_written(desc, ordered, started)
        return ordered

    def _results(self, tasks: Sequence[ShardTask]) -> Iterator[ShardResult]:
        if self._pool is None or len(tasks) <= 1:
            return map(write_shard, tasks)
        return (future.result() for future in as_completed([self._pool.submit(write_shard, t) for t in tasks]))


def log_written(desc: str, results: Sequence[ShardResult], started: float) -> None:
    """One INFO line for shards written where no progress bar shows (a CI log): rows, shards, size, time."""
    rows, size = sum(r.num_examples for r in results), size_text(sum(r.file_bytes for r in results))
    seconds = time.perf_counter() - started
    logger.info("%s: %d rows in %d shard(s), %s, %.1f s", desc, rows, len(results), size, seconds)


def _worker_signals() -> None:
    """In a worker: Ctrl-C, SIGTERM and SIGHUP are the parent's to handle (it then kills the workers); die with
    the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
