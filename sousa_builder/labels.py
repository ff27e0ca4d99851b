"""Stroke and measure labels in buckets of samples, so that a split is nested a bucket at a time.

The source label files hold the rows of every sample in no set order: nesting a split straight from
them holds all of its rows at once, in memory that grows with the dataset (gigabytes at SOUSA's full size).
One pass over each file instead writes its rows into one Arrow file per bucket (a run of samples chosen by
the caller), sorted by (sample, index) once there; each bucket is then read and nested on its own, in memory
bounded by the bucket size.

In a bucket file the sample_id column is dictionary-encoded: its dictionary is the bucket's sample ids
(sorted), its codes each row's place among them. Rows are then matched, sorted and grouped by those small
integers, never by hashing or comparing the strings of millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
# Label rows held while their buckets fill (~130 MB of strokes); past it they are written as they come.
HELD_ROWS = 1 << 20
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
        cls,
        root: Path,
        sample_ids: pa.Array,
        folder: Path,
        samples_per_bucket: int = SAMPLES_PER_BUCKET,
        row_counts: Mapping[str, pa.Array | pa.ChunkedArray] | None = None,
    ) -> LabelBuckets:
        """Split the label rows of `sample_ids` (sorted) into buckets; rows of other samples are left out.

        Each bucket file is written once, its rows sorted by (sample_id, index), as soon as the bucket has all of
        its rows (`row_counts`), else at the end; rows waiting for their bucket are bounded (`HELD_ROWS`), past
        which they go to their bucket's file as they are, to be sorted at the end.

        Args:
            root: the SOUSA directory whose strokes and measures files are read.
            sample_ids: the sample ids to keep, sorted, each once.
            folder: where the bucket files are written (made if missing).
            samples_per_bucket: samples of a bucket.
            row_counts: per table (strokes, measures), the rows of each of `sample_ids` (the samples' num_strokes
                and num_measures); only when a bucket is complete, not what is written, depends on them.

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
            expected = None
            if row_counts is not None and name in row_counts and len(sample_ids):
                counts = pc.fill_null(row_counts[name], 0).to_numpy().astype(np.int64)
                expected = np.add.reduceat(counts, np.arange(0, len(counts), samples_per_bucket))
            pending = _Pending(folder, name, expected, bucket_ids, samples_per_bucket)
            rows = num_bytes = 0
            try:
                for table in read_label_batches(root / LABEL_FILES[name], schema, ROWS_PER_READ):
                    position = positions.of(table["sample_id"])
                    if position.null_count:  # rows of other samples (or of none): left out
                        known = pc.is_valid(position)
                        table, position = table.filter(known), position.filter(known)
                    rows, num_bytes = rows + table.num_rows, num_bytes + table.nbytes
                    pending.add(table.remove_column(0), position.to_numpy())
                pending.finish()
            finally:
                pending.close()
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


class _Pending:
    """The rows of one table's buckets while the source is read.

    A batch read from the source is held as it is, with each bucket's rows in it; when a bucket has all of its
    rows (`expected`), they are taken from the batches in (sample, index) order and written: the one copy of
    them. Past `HELD_ROWS` rows held, the buckets' rows go to their files as they come, to be sorted at the end.
    A source in sample order fills its buckets one after the other.
    """

    def __init__(self, folder: Path, name: str, expected: np.ndarray | None, bucket_ids: list[pa.Array], size: int):
        self.folder, self.name, self.expected, self.bucket_ids, self.size = folder, name, expected, bucket_ids, size
        self.schema = _bucket_schema(name)
        self.batches: dict[int, pa.Table] = {}  # batch number -> its rows, without sample_id
        self.users: dict[int, int] = {}  # batch number -> the held buckets with rows in it
        self.held: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}  # bucket -> (batch, rows, codes)
        self.counts: dict[int, int] = {}  # bucket -> its rows held
        self.held_rows = 0  # rows of the batches held
        self.spilled: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self.written: set[int] = set()

    def add(self, table: pa.Table, positions: np.ndarray) -> None:
        """Take a batch of rows (without sample_id) and each row's place among the sample ids."""
        number, size = len(self.users), self.size
        buckets = positions // size
        order = np.argsort(buckets, kind="stable")
        self.batches[number], self.users[number] = table, 0
        self.held_rows += table.num_rows
        complete = []
        for bucket, start, end in runs(buckets[order]):
            rows = order[start:end]
            codes = (positions[rows] - bucket * size).astype(np.int32)
            if bucket in self.written:  # more rows than expected: written again, sorted, at the end
                self._spill(bucket, [_read_bucket(self.folder / _name(self.name, bucket))])
                self.written.discard(bucket)
            if bucket in self.spilled:
                self.spilled[bucket].write_table(self._with_ids(bucket, table.take(rows), codes))
                continue
            self.held.setdefault(bucket, []).append((number, rows, codes))
            self.users[number] += 1
            self.counts[bucket] = self.counts.get(bucket, 0) + len(rows)
            if self.expected is not None and self.counts[bucket] == self.expected[bucket]:
                complete.append(bucket)
        for bucket in complete:
            _write_bucket(self.folder / _name(self.name, bucket), self.schema, self._take(bucket))
            self.written.add(bucket)
        self._drop_unused()
        if self.held_rows > HELD_ROWS:
            for bucket in list(self.held):
                self._spill(bucket, [self._take(bucket)])
            self._drop_unused()

    def finish(self) -> None:
        """Write the buckets still held, and sort those written as their rows came."""
        for bucket in list(self.held):
            _write_bucket(self.folder / _name(self.name, bucket), self.schema, self._take(bucket))
        for bucket in list(self.spilled):
            self.spilled.pop(bucket).close()
            path = self.folder / _name(self.name, bucket)
            _write_bucket(path, self.schema, SortedRows.of(_read_bucket(path)).table)

    def close(self) -> None:
        """Close the files still open (after an error)."""
        for writer in self.spilled.values():
            writer.close()

    def _take(self, bucket: int) -> pa.Table:
        """The held rows of `bucket` (released from held), sorted by (sample, index), sample_id as codes."""
        parts = self.held.pop(bucket)
        del self.counts[bucket]
        numbers = list(dict.fromkeys(number for number, _, _ in parts))
        starts = dict(zip(numbers, np.cumsum([0] + [self.batches[n].num_rows for n in numbers[:-1]])))
        rows = np.concatenate([starts[number] + taken for number, taken, _ in parts])
        codes = np.concatenate([codes for _, _, codes in parts])
        index = pa.chunked_array(
            [chunk for number, taken, _ in parts for chunk in self.batches[number]["index"].take(taken).chunks],
            self.schema.field("index").type,
        )
        order = _sorting(codes.astype(np.int64), index)
        if order is not None:
            rows, codes = rows[order], codes[order]
        tables = [self.batches[number] for number in numbers]
        for number in numbers:  # a bucket has one part per batch
            self.users[number] -= 1
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        # Column by column: Table.take over several chunks is many times slower than the columns' takes.
        columns = [column.take(rows).combine_chunks() for column in table.columns]
        return self._with_ids(bucket, pa.Table.from_arrays(columns, schema=table.schema), codes)

    def _with_ids(self, bucket: int, table: pa.Table, codes: np.ndarray) -> pa.Table:
        ids = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), self.bucket_ids[bucket])
        return table.add_column(0, "sample_id", ids)

    def _spill(self, bucket: int, tables: list[pa.Table]) -> None:
        """From now on write the rows of `bucket` to its file as they come, starting with `tables`."""
        writer = pa.ipc.new_file(self.folder / _name(self.name, bucket), self.schema, options=BUCKET_IPC)
        self.spilled[bucket] = writer
        for table in tables:
            writer.write_table(table)

    def _drop_unused(self) -> None:
        for number in [number for number, users in self.users.items() if users == 0 and number in self.batches]:
            self.held_rows -= self.batches.pop(number).num_rows


def _read_bucket(path: Path) -> pa.Table:
    """A bucket file's rows, in memory (not mapped: the file may be rewritten while they are held)."""
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all().combine_chunks()


def _write_bucket(path: Path, schema: pa.Schema, table: pa.Table) -> None:
    """Write a bucket's rows (sorted by (sample, index)) in one record batch."""
    with pa.ipc.new_file(path, schema, options=BUCKET_IPC) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


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
