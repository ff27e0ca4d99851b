"""Stroke and measure labels in buckets of samples, so that a split is nested a bucket at a time.

The source label files hold the rows of every sample in no set order: nesting a split straight from
them holds all of its rows at once, in memory that grows with the dataset (gigabytes at SOUSA's full size).
One pass over each file instead writes its rows into one Arrow file per bucket (a run of samples chosen by
the caller); each bucket is then read, sorted and nested on its own, in memory bounded by the bucket size.

In a bucket file the sample_id column is dictionary-encoded: its dictionary is the bucket's sample ids
(sorted), its codes each row's place among them. Rows are then matched, sorted and grouped by those small
integers, never by hashing or comparing the strings of millions of rows.
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
# How a bucket file holds sample_id: codes into the bucket's sample ids.
BUCKET_IDS = pa.dictionary(pa.int32(), pa.string())


# Samples per bucket: the labels nested at once, so the memory they take (~100k stroke rows, ~11 MB).
SAMPLES_PER_BUCKET = 1000
# Label rows read from a source file at a time while bucketing (~7 MB of strokes).
ROWS_PER_READ = 1 << 16
# LZ4 frames: a bucket is written once and read whole, and for a URL OUT copied to the store for the Ray nodes.
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
        """The number of buckets (one per first sample id)."""
        return len(self.first_ids)

    @classmethod
    def write(
        cls, root: Path, sample_ids: pa.Array, folder: Path, samples_per_bucket: int = SAMPLES_PER_BUCKET
    ) -> LabelBuckets:
        """Split the label rows of `sample_ids` (sorted) into buckets; rows of other samples are left out.

        Args:
            root: the SOUSA directory whose strokes and measures files are read.
            sample_ids: the sample ids to keep, sorted, each once.
            folder: where the bucket files are written (made if missing).
            samples_per_bucket: samples of a bucket.

        Returns:
            The buckets.

        Raises:
            SourceFormatError: a label file does not read (`read_label_batches`).
        """
        folder.mkdir(parents=True, exist_ok=True)
        sample_ids = sample_ids.cast(pa.string())
        bucket_ids = [
            sample_ids.slice(start, samples_per_bucket) for start in range(0, len(sample_ids), samples_per_bucket)
        ]
        positions, row_bytes = _Positions(sample_ids), {}
        for name, schema in LABEL_TABLES.items():
            bucket_schema = _bucket_schema(name)
            writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
            rows = num_bytes = 0
            try:
                for table in read_label_batches(root / LABEL_FILES[name], schema, ROWS_PER_READ):
                    position = positions.of(table["sample_id"])
                    known = pc.is_valid(position)
                    table, position = table.filter(known), position.filter(known)
                    buckets = position.to_numpy() // samples_per_bucket
                    order = np.argsort(buckets, kind="stable")
                    table, codes = table.take(order), position.to_numpy()[order]
                    rows, num_bytes = rows + table.num_rows, num_bytes + table.nbytes
                    for bucket, start, end in runs(buckets[order]):
                        local = pa.array(codes[start:end] - bucket * samples_per_bucket, pa.int32())
                        ids = pa.DictionaryArray.from_arrays(local, bucket_ids[bucket])
                        piece = table.slice(start, end - start).set_column(0, "sample_id", ids)
                        if bucket not in writers:
                            path = folder / _name(name, bucket)
                            writers[bucket] = pa.ipc.new_file(path, bucket_schema, options=BUCKET_IPC)
                        writers[bucket].write_table(piece)
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
        """The `name` rows of one bucket (of `sample_ids` only, if given), sorted by (sample_id, index).

        Args:
            name: strokes or measures.
            bucket: the bucket's number.
            sample_ids: the samples whose rows to keep; all of the bucket's by default.

        Returns:
            The rows, with the columns and types of `LABEL_TABLES[name]`.
        """
        table = self.sorted_rows(name, bucket).table
        if sample_ids is not None:
            ids = table["sample_id"].combine_chunks()
            table = table.filter(pc.is_in(ids.dictionary, value_set=sample_ids).take(ids.indices))
        ids = table["sample_id"].combine_chunks()
        return table.set_column(0, "sample_id", ids.dictionary.take(ids.indices))

    def sorted_rows(self, name: str, bucket: int) -> SortedRows:
        """The `name` rows of one bucket sorted by (sample_id, index), sample_id still as codes."""
        folder = self.folder if is_url(self.folder) else Path(self.folder)
        try:
            table = read_arrow_file(join(folder, _name(name, bucket)))
        except FileNotFoundError:  # no sample of the bucket has such rows
            table = pa.table({field.name: pa.array([], field.type) for field in _bucket_schema(name)})
        return SortedRows.of(table.combine_chunks())


@dataclass(frozen=True)
class SortedRows:
    """A bucket's rows sorted by (sample, index): the rows of the bucket's sample k are rows
    [starts[k], starts[k] + counts[k]) of `table`, whose sample_id is dictionary-encoded (k: its code)."""

    table: pa.Table
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, table: pa.Table) -> SortedRows:
        """Sort the rows of one bucket file (one chunk per column)."""
        ids = table["sample_id"].chunk(0)
        codes = ids.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        order = _sorting(codes, table["index"])
        if order is not None:
            table, codes = table.take(order).combine_chunks(), codes[order]
        counts = np.bincount(codes, minlength=len(ids.dictionary))
        return cls(table, np.cumsum(counts) - counts, counts)

    def nested(self, sample_ids: pa.Array) -> pa.ListArray:
        """The rows of `sample_ids` (sorted; each of this bucket, or none) as one list of structs each."""
        dictionary = self.table["sample_id"].chunk(0).dictionary
        code = pc.fill_null(pc.index_in(sample_ids, value_set=dictionary), -1).to_numpy().astype(np.int64)
        have = code >= 0
        counts = np.zeros(len(code), np.int64)
        counts[have] = self.counts[code[have]]
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
        rows = _ranges(self.starts[code[have]], counts[have])
        fields = self.table.schema.names[1:]  # all but sample_id
        if len(rows) == self.table.num_rows:  # every row of the bucket, in order
            columns = [self.table[name].chunk(0) for name in fields]
        else:
            taken = self.table.select(fields).take(rows)
            columns = [taken[name].combine_chunks() for name in fields]
        items = pa.StructArray.from_arrays(columns, names=fields)
        return pa.ListArray.from_arrays(offsets, items)


class LabelReader:
    """Nests the strokes and measures of sample ids, keeping the last bucket read (callers go in id order)."""

    def __init__(self, labels: LabelBuckets):
        self.labels = labels
        self._bucket: int | None = None
        self._rows: dict[str, SortedRows] = {}

    def nested(self, sample_ids: pa.Array) -> tuple[pa.ListArray, pa.ListArray]:
        """Strokes and measures of `sample_ids` (sorted) as list-of-struct arrays aligned with them."""
        parts: dict[str, list[pa.ListArray]] = {name: [] for name in LABEL_TABLES}
        for bucket, start, end in runs(self.labels.bucket_of(sample_ids)):
            ids = sample_ids.slice(start, end - start)
            if bucket != self._bucket:
                self._bucket = bucket
                self._rows = {name: self.labels.sorted_rows(name, bucket) for name in LABEL_TABLES}
            for name in LABEL_TABLES:
                parts[name].append(self._rows[name].nested(ids))
        strokes, measures = (_concat(parts[name], LABEL_TABLES[name]) for name in LABEL_TABLES)
        return strokes, measures


class _Positions:
    """Each label row's place among the sample ids (null where it has none), found for the distinct ids of a batch
    (a few hundred) by a binary search of the ids, not by hashing every row against all of them."""

    def __init__(self, sample_ids: pa.Array):
        self.ids = np.array(sample_ids.to_pylist(), dtype=str) if len(sample_ids) else np.array([], dtype=str)
        self.sorter = np.argsort(self.ids, kind="stable")

    def of(self, column: pa.ChunkedArray) -> pa.Array:
        """The place of each row's sample_id, an int32 array (null where the id is null or not a sample's)."""
        encoded = pc.dictionary_encode(column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
        values = np.array(encoded.dictionary.to_pylist(), dtype=str)
        places = np.full(len(values), -1, np.int64)
        if len(self.ids) and len(values):
            found = np.minimum(np.searchsorted(self.ids, values, sorter=self.sorter), len(self.ids) - 1)
            place = self.sorter[found]
            places = np.where(self.ids[place] == values, place, -1)
        return pa.array(places, pa.int32(), mask=places < 0).take(encoded.indices)


def _sorting(codes: np.ndarray, index: pa.ChunkedArray) -> np.ndarray | None:
    """The order that sorts rows by (code, index), or None when they are sorted already. Nulls in `index`
    (a source that the rules refuse) go last within a sample, as Arrow's sort puts them."""
    if index.null_count:
        keys = pa.table({"code": codes, "index": index})
        sort_keys = [("code", "ascending"), ("index", "ascending")]
        return pc.sort_indices(keys, sort_keys=sort_keys, null_placement="at_end").to_numpy()
    values = index.to_numpy().astype(np.int64) if len(index) else np.empty(0, np.int64)
    if len(values) < 2:
        return None
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    if span * (int(codes.max()) + 1) < 2**62:
        key = codes * span + (values - low)
        if (key[1:] >= key[:-1]).all():
            return None
        return np.argsort(key, kind="stable")
    return np.lexsort((values, codes))


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions start..start+count-1 of each (start, count), one run after the other."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)


def _concat(arrays: list[pa.ListArray], schema: pa.Schema) -> pa.ListArray:
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        empty = schema.empty_table()
        fields = schema.names[1:]
        items = pa.StructArray.from_arrays([empty[name].combine_chunks() for name in fields], names=fields)
        return pa.ListArray.from_arrays(pa.array([0], pa.int32()), items)
    return pa.concat_arrays(arrays)


def _bucket_schema(name: str) -> pa.Schema:
    """The schema of a bucket file of table `name`: the declared one, sample_id dictionary-encoded."""
    return LABEL_TABLES[name].set(0, pa.field("sample_id", BUCKET_IDS))


def _name(name: str, bucket: int) -> str:
    return f"{name}-{bucket:06d}.arrow"


def runs(bucket_of: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(bucket, start, end) of each run of equal values in `bucket_of`."""
    starts = np.flatnonzero(np.diff(bucket_of, prepend=-1))
    for start, end in zip(starts, [*starts[1:], len(bucket_of)]):
        yield int(bucket_of[start]), int(start), int(end)
