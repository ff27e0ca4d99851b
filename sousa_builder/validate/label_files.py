"""A source's label files and splits.json, read as far as they go, for the label checks.

Each file is read with the declared columns converted to their declared types; what does not
read or convert is reported by the label_files, splits_file and columns checks instead of raised.
The big tables (strokes, measures) are read with only the columns a check needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..source_files import (
    LABEL_FILES,
    LABEL_SCHEMAS,
    SPLITS_FILE,
    convert_column,
    read_splits_file,
    unconvertible_values,
    upstream_types,
)
from .report import CheckResult, first_line, listing, verdict

logger = logging.getLogger(__name__)

# Of the per-stroke and per-measure tables only these columns are read; every column is type-checked.
READ_ONLY = {
    "strokes": ("sample_id", "index", "hand", "intended_velocity", "actual_velocity"),
    "measures": ("sample_id", "index", "stroke_start", "stroke_end"),
}
# String columns of the big tables read dictionary-encoded: few distinct values, millions of rows.
DICTIONARY_COLUMNS = ("sample_id", "hand")
# Rows of the big tables read and converted at a time.
BATCH_ROWS = 1 << 20


@dataclass
class _Keys:
    """Which sample each row of a label table belongs to."""

    codes: np.ndarray  # int32: row -> index into `names`, -1 where sample_id is null
    names: pa.Array  # the distinct sample ids of the table
    pos: np.ndarray  # int32: row -> first samples row with that id, -1 if there is none


@dataclass
class LabelData:
    """What could be read of a source: usable columns (converted to the declared types) and splits."""

    root: Path
    tables: dict[str, pa.Table] = field(default_factory=dict)
    splits: dict[str, list[str]] | None = None
    keys: dict[str, _Keys] = field(default_factory=dict)
    sample_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    first: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # samples row -> first row of its id
    # Where each table's rows come from, as the checks' messages name it (a prepared folder's are not files).
    origin: dict[str, str] = field(default_factory=lambda: dict(LABEL_FILES))

    def unavailable(self, needs: Mapping[str, Sequence[str]]) -> str | None:
        """What of `needs` (table -> columns; "splits" for splits.json) could not be read, or None."""
        missing = []
        for name, columns in needs.items():
            if name == "splits":
                if self.splits is None:
                    missing.append(SPLITS_FILE)
                continue
            table = self.tables.get(name)
            if table is None:
                missing.append(LABEL_FILES[name])
                continue
            absent = [column for column in columns if column not in table.column_names]
            if absent:
                missing.append(f"{LABEL_FILES[name]} column(s) {', '.join(absent)}")
        return f"{'; '.join(missing)} unusable (see label_files, splits_file, columns)" if missing else None

    def ids_at(self, positions: Sequence[int] | np.ndarray) -> list[str]:
        """The sample ids of samples rows `positions`."""
        return self.sample_ids.take(pa.array(np.asarray(positions, dtype=np.int64))).to_pylist()


# --- reading ---


def _needs_converting(found: pa.DataType, declared: pa.Field) -> bool:
    """Whether a column must be read to know that it converts: an undocumented type, or floats that must be whole."""
    lossy = pa.types.is_floating(found) and pa.types.is_integer(declared.type)
    return lossy or found not in upstream_types(declared)


def _read_label_file(root: Path, name: str) -> tuple[pa.Table | None, str | None, list[str], list[str]]:
    """(usable columns, why the file is unusable, column failures, column warnings) of one label file."""
    relative, schema = LABEL_FILES[name], LABEL_SCHEMAS[name]
    path = root / relative
    if not path.is_file():
        return None, f"{relative}: missing", [], []
    try:
        present = pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        return None, f"{relative}: does not parse as Parquet ({first_line(err)})", [], []
    keep = READ_ONLY.get(name, schema.names)
    fails, warns, wanted = [], [], []
    for field_ in schema:
        if field_.name not in present.names:
            fails.append(f"{relative}: column {field_.name} missing")
        elif field_.name in keep or _needs_converting(present.field(field_.name).type, field_):
            wanted.append(field_.name)
    if name in READ_ONLY:
        return _read_in_batches(path, relative, present, schema, wanted, keep, fails, warns)
    # Columns read only to know that they convert are read one at a time and dropped.
    try:
        table = pq.read_table(path, columns=[c for c in wanted if c in keep])
    except (OSError, pa.ArrowException) as err:
        return None, f"{relative}: does not read ({first_line(err)})", fails, warns
    columns = {}
    for column_name in wanted:
        declared = schema.field(column_name)
        try:
            read = table if column_name in keep else pq.read_table(path, columns=[column_name])
            converted = convert_column(read[column_name], declared.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            fails.append(_conversion_failure(path, relative, present, column_name, declared, err))
            continue
        except (OSError, pa.ArrowException) as err:
            return None, f"{relative}: does not read ({first_line(err)})", fails, warns
        warns += _undocumented(relative, present, declared)
        if column_name in keep:
            del read
            table = table.drop_columns([column_name])  # its memory goes once converted, not at the end
            columns[column_name] = converted
            del converted
    return pa.table(columns), None, fails, warns


def _read_in_batches(
    path: Path,
    relative: str,
    present: pa.Schema,
    schema: pa.Schema,
    wanted: list[str],
    keep: Sequence[str],
    fails: list[str],
    warns: list[str],
) -> tuple[pa.Table | None, str | None, list[str], list[str]]:
    """`_read_label_file` of a big table (strokes, measures): read and converted `BATCH_ROWS` at a time, the kept
    integer columns narrowed as they come, so that memory holds the kept columns and one batch, not every column
    read at its declared width."""
    strings = (pa.string(), pa.large_string())
    dictionary = [c for c in DICTIONARY_COLUMNS if c in wanted and present.field(c).type in strings]
    chunks: dict[str, list[pa.Array]] = {column: [] for column in wanted if column in keep}
    failed: dict[str, str] = {}  # column -> its failure
    try:
        batches = pq.ParquetFile(path, read_dictionary=dictionary or None).iter_batches(BATCH_ROWS, columns=wanted)
        for batch in batches:
            for column_name in wanted:
                if column_name in failed:
                    continue
                if column_name in dictionary:
                    chunks[column_name].append(batch.column(column_name))
                    continue
                declared = schema.field(column_name)
                try:
                    converted = convert_column(pa.chunked_array([batch.column(column_name)]), declared.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    failed[column_name] = _conversion_failure(path, relative, present, column_name, declared, err)
                    continue
                if column_name in keep:
                    chunks[column_name] += _narrowed(converted).chunks
            del batch
    except (OSError, pa.ArrowException) as err:
        return None, f"{relative}: does not read ({first_line(err)})", fails, warns
    for column_name in wanted:  # in column order, as when read whole
        if column_name in failed:
            fails.append(failed[column_name])
        elif column_name not in dictionary:
            warns += _undocumented(relative, present, schema.field(column_name))
    columns = {}
    for column_name, parts in chunks.items():
        if column_name in failed:
            continue
        if column_name in dictionary:
            empty = pa.dictionary(pa.int32(), present.field(column_name).type)
            columns[column_name] = pa.chunked_array(parts, parts[0].type if parts else empty)
            continue
        declared = schema.field(column_name).type
        if any(part.type != pa.int32() for part in parts):  # a batch that did not fit: the declared type for all
            parts = [part.cast(declared) for part in parts]
        columns[column_name] = pa.chunked_array(parts, parts[0].type if parts else declared)
    return pa.table(columns), None, fails, warns


def _conversion_failure(
    path: Path, relative: str, present: pa.Schema, column_name: str, declared: pa.Field, err: Exception
) -> str:
    """The columns check's line for a column that does not convert, naming the first values that do not."""
    found = present.field(column_name).type
    with_ids = pq.read_table(path, columns=["sample_id", column_name]) if "sample_id" in present.names else None
    values = unconvertible_values(with_ids, declared) if with_ids is not None else ""
    return (
        f"{relative}: column {column_name} has type {found}, which does not convert to {declared.type}"
        f"{values} ({first_line(err)})"
    )


def _undocumented(relative: str, present: pa.Schema, declared: pa.Field) -> list[str]:
    """The columns check's warning for a column that converts but is not of a type upstream writes, if it is not."""
    found = present.field(declared.name).type
    if found in upstream_types(declared):
        return []
    documented = " or ".join(str(t) for t in upstream_types(declared))
    return [f"{relative}: column {declared.name} has type {found}, documented {documented}; it converts"]


def _narrowed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An int64 column as int32 when every value fits: half the memory for millions of rows, and the checks read
    integers through `ints` (int64) and `floats` all the same."""
    if column.type != pa.int64():
        return column
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    fits = low is None or (low >= -(2**31) and high < 2**31)  # all null fits
    return column.cast(pa.int32()) if fits else column


def key_positions(column: pa.ChunkedArray, sample_ids: pa.Array) -> _Keys:
    """Map each row's sample_id to its samples row, through the (small) dictionary of distinct ids."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        names, codes = pa.array([], pa.string()), np.empty(0, np.int32)
    else:
        names = column.chunk(0).dictionary.cast(pa.string())
        parts = [pc.fill_null(chunk.indices, -1).to_numpy().astype(np.int32, copy=False) for chunk in column.chunks]
        codes = parts[0] if len(parts) == 1 else np.concatenate(parts)
    lookup = np.append(pc.fill_null(pc.index_in(names, value_set=sample_ids), -1).to_numpy().astype(np.int32), -1)
    return _Keys(codes, names, lookup[codes])


def read_labels(root: Path) -> tuple[LabelData, list[CheckResult]]:
    """Read the label files and splits.json as far as they go; the label_files, splits_file and columns checks."""
    data = LabelData(root)
    unreadable, fails, warns = [], [], []
    for name in LABEL_SCHEMAS:
        table, problem, column_fails, column_warns = _read_label_file(root, name)
        fails += column_fails
        warns += column_warns
        if problem:
            unreadable.append(problem)
        elif name == "samples" and table.num_rows == 0:
            unreadable.append(f"{LABEL_FILES[name]}: no samples (the file has no rows)")
        else:
            data.tables[name] = table
    data.splits, split_problems = read_splits_file(root)

    samples = data.tables.get("samples")
    if samples is not None and "sample_id" in samples.column_names:
        data.sample_ids = samples["sample_id"].combine_chunks()
        data.first = pc.index_in(data.sample_ids, value_set=data.sample_ids).to_numpy(zero_copy_only=False)
        data.first = data.first.astype(np.int64)
        for name in ("exercises", "strokes", "measures"):
            table = data.tables.get(name)
            if table is not None and "sample_id" in table.column_names:
                data.keys[name] = key_positions(table["sample_id"], data.sample_ids)
    else:  # without sample ids no table can be joined to the samples
        for name in ("exercises", "strokes", "measures"):
            table = data.tables.get(name)
            if table is not None and "sample_id" in table.column_names:
                data.tables[name] = table.drop_columns(["sample_id"])

    checks = [
        verdict(
            "label_files", len(unreadable), unreadable, "label file(s) missing or unreadable", "4 label files read"
        ),
        verdict("splits_file", len(split_problems), split_problems, "problem(s) in splits.json", "read splits.json"),
    ]
    if fails:
        checks.append(verdict("columns", len(fails), fails + warns, "column(s) missing or of a wrong type", ""))
    else:
        ok = "every required column present, of the documented type"
        checks.append(verdict("columns", len(warns), warns, "column(s) of an undocumented type", ok, "warn"))
    return data, checks


# --- column helpers for the checks ---


def floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    return column.cast(pa.float64()).to_numpy()


def ints(column: pa.ChunkedArray, fill: int = -1) -> np.ndarray:
    """An integer column as int64, `fill` where null."""
    return pc.fill_null(column, fill).to_numpy().astype(np.int64)


def nulls(column: pa.ChunkedArray) -> np.ndarray:
    """Where a column is null.

    Args:
        column (`pa.ChunkedArray`):
            Any column.

    Returns:
        `np.ndarray`: a bool per row, True where null.
    """
    return column.is_null().to_numpy(zero_copy_only=False)


def few(values: np.ndarray, shown: int = 5) -> str:
    """The first `shown` of `values` for a message, and how many more there are ('1, 2, 3 and 4 more').

    Args:
        values (`np.ndarray`):
            The values (indexes, say) to name.
        shown (`int`, *optional*, defaults to 5):
            How many are named.

    Returns:
        `str`: the listing.
    """
    return listing([str(v) for v in values[:shown]], len(values), shown)


def number(value: float) -> str:
    """A value for a message: 'null' for NaN, whole numbers without '.0'."""
    if np.isnan(value):
        return "null"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def value_counts(codes: np.ndarray, names: pa.Array) -> list[tuple[str | None, int]]:
    """(name, rows) per distinct code in `codes` (-1 is a null name), most rows first."""
    values, counts = np.unique(codes, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    pylist = names.to_pylist()
    return [(pylist[v] if v >= 0 else None, int(c)) for v, c in zip(values[order], counts[order])]
