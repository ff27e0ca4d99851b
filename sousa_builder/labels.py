"""Stroke and measure labels in buckets of samples, so that a split is nested a bucket at a time.

The source label files hold the rows of every sample in no set order: nesting a split straight from
them holds all of its rows at once (3.5 GiB at 100k samples / 10M strokes). One pass over each file
instead writes its rows into one Arrow file per bucket (a run of samples chosen by the caller);
each bucket is then read, sorted and nested on its own, in memory bounded by the bucket size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .source_files import LABEL_FILES, MEASURES_SCHEMA, STROKES_SCHEMA, read_label_batches
from .storage import is_url, join, read_arrow_file

LABEL_TABLES = {"strokes": STROKES_SCHEMA, "measures": MEASURES_SCHEMA}


# Samples per bucket: the labels nested at once, so the memory they take (~100k stroke rows, ~11 MB).
SAMPLES_PER_BUCKET = 1000
# Label rows read from a source file at a time while bucketing (~7 MB of strokes).
ROWS_PER_READ = 1 << 16
# LZ4 frames: a bucket is written once and read whole, and for a URL OUT copied to the store for the Ray nodes.
# At 100k samples: 446 MB instead of 1,646 MB, written in the same time (benchmarks/labels_source.py source).
BUCKET_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


@dataclass(frozen=True)
class LabelBuckets:
    """The stroke and measure rows of a SOUSA directory, in one Arrow file per bucket and table under `folder`.

    Bucket k holds the samples at positions [k * samples_per_bucket, (k + 1) * samples_per_bucket) of
    the sample ids it was written for (sorted), whatever their split; `first_ids` are their first ids.
    `folder` is local where they are written, and may be a URL where they are read (`moved_to`).
    `row_bytes` is the mean Arrow size of a row of each table, for estimating the size of a shard.
    """

    folder: str
    samples_per_bucket: int
    first_ids: tuple[str, ...]
    row_bytes: dict[str, float]

    @property
    def num_buckets(self) -> int:
        return len(self.first_ids)

    @classmethod
    def write(
        cls, root: Path, sample_ids: pa.Array, folder: Path, samples_per_bucket: int = SAMPLES_PER_BUCKET
    ) -> LabelBuckets:
        """Split the label rows of `sample_ids` (sorted) into buckets; rows of other samples are left out."""
        folder.mkdir(parents=True, exist_ok=True)
        row_bytes = {}
        for name, schema in LABEL_TABLES.items():
            writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
            rows = num_bytes = 0
            try:
                for table in read_label_batches(root / LABEL_FILES[name], schema, ROWS_PER_READ):
                    position = pc.index_in(table["sample_id"], value_set=sample_ids)
                    known = pc.is_valid(position)
                    table, position = table.filter(known), position.filter(known)
                    buckets = position.to_numpy() // samples_per_bucket
                    order = np.argsort(buckets, kind="stable")
                    table = table.take(order)
                    rows, num_bytes = rows + table.num_rows, num_bytes + table.nbytes
                    for bucket, start, end in runs(buckets[order]):
                        if bucket not in writers:
                            writers[bucket] = pa.ipc.new_file(folder / _name(name, bucket), schema, options=BUCKET_IPC)
                        writers[bucket].write_table(table.slice(start, end - start))
            finally:
                for writer in writers.values():
                    writer.close()
            row_bytes[name] = num_bytes / max(rows, 1)
        first_ids = tuple(sample_ids[::samples_per_bucket].to_pylist())
        return cls(str(folder), samples_per_bucket, first_ids, row_bytes)

    def moved_to(self, folder: str) -> LabelBuckets:
        """The same buckets, read from `folder` (where the caller copied this folder's files)."""
        return LabelBuckets(folder, self.samples_per_bucket, self.first_ids, self.row_bytes)

    def reader(self) -> LabelReader:
        """A reader that nests the labels of runs of consecutive samples, one bucket in memory at a time."""
        return LabelReader(self)

    def bucket_of(self, sample_ids: pa.Array) -> np.ndarray:
        """The bucket of each of these sample ids."""
        first = np.array(self.first_ids, dtype=object)
        return np.searchsorted(first, np.array(sample_ids.to_pylist(), dtype=object), side="right") - 1

    def rows(self, name: str, bucket: int, sample_ids: pa.Array | None = None) -> pa.Table:
        """The `name` rows of one bucket (of `sample_ids` only, if given), sorted by (sample_id, index)."""
        folder = self.folder if is_url(self.folder) else Path(self.folder)
        try:
            table = read_arrow_file(join(folder, _name(name, bucket)))
        except FileNotFoundError:  # no sample of the bucket has such rows
            return LABEL_TABLES[name].empty_table()
        if sample_ids is not None:
            table = table.filter(pc.is_in(table["sample_id"], value_set=sample_ids))
        return table.sort_by([("sample_id", "ascending"), ("index", "ascending")])


class LabelReader:
    """Nests the strokes and measures of sample ids, keeping the last bucket read (callers go in id order)."""

    def __init__(self, labels: LabelBuckets):
        self.labels = labels
        self._bucket: int | None = None
        self._tables: dict[str, pa.Table] = {}

    def nested(self, sample_ids: pa.Array) -> tuple[pa.ListArray, pa.ListArray]:
        """Strokes and measures of `sample_ids` (sorted) as list-of-struct arrays aligned with them."""
        parts: dict[str, list[pa.ListArray]] = {name: [] for name in LABEL_TABLES}
        for bucket, start, end in runs(self.labels.bucket_of(sample_ids)):
            ids = sample_ids.slice(start, end - start)
            for name in LABEL_TABLES:
                table = self._rows(name, bucket)
                parts[name].append(_nest(table.filter(pc.is_in(table["sample_id"], value_set=ids)), ids))
        strokes, measures = (_concat(parts[name], LABEL_TABLES[name]) for name in LABEL_TABLES)
        return strokes, measures

    def _rows(self, name: str, bucket: int) -> pa.Table:
        if bucket != self._bucket:
            self._bucket, self._tables = bucket, {n: self.labels.rows(n, bucket) for n in LABEL_TABLES}
        return self._tables[name]


def _concat(arrays: list[pa.ListArray], schema: pa.Schema) -> pa.ListArray:
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        return _nest(schema.empty_table(), pa.array([], pa.string()))
    return pa.concat_arrays(arrays)


def _name(name: str, bucket: int) -> str:
    return f"{name}-{bucket:06d}.arrow"


def _nest(table: pa.Table, sample_ids: pa.Array) -> pa.ListArray:
    """Group label rows, sorted by (sample_id, index), into one list of structs per sample id."""
    position = pc.index_in(table["sample_id"], value_set=sample_ids).to_numpy(zero_copy_only=False)
    counts = np.bincount(position, minlength=len(sample_ids))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    fields = table.schema.names[1:]  # all but sample_id
    items = pa.StructArray.from_arrays([table[name].combine_chunks() for name in fields], names=fields)
    return pa.ListArray.from_arrays(offsets, items)


def runs(bucket_of: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(bucket, start, end) of each run of equal values in `bucket_of`."""
    starts = np.flatnonzero(np.diff(bucket_of, prepend=-1))
    for start, end in zip(starts, [*starts[1:], len(bucket_of)]):
        yield int(bucket_of[start]), int(start), int(end)
