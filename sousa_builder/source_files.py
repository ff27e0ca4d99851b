"""The files of a SOUSA output directory: where they are, their declared schemas, and reading them typed.

What a file holds is the reader's business; whether its contents are acceptable is the rules' (`validate`),
which every command runs before it uses a source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import ClassLabel

from .errors import SourceFormatError
from .features import (
    MEASURE_FIELDS,
    NULLABLE_INT_FIELDS,
    SAMPLE_COLUMNS,
    SCORE_COLUMNS,
    STROKE_FIELDS,
)

LABEL_FILES = {
    "samples": "labels/samples.parquet",
    "exercises": "labels/exercises.parquet",
    "strokes": "labels/strokes.parquet",
    "measures": "labels/measures.parquet",
}
SPLITS_FILE = "splits.json"
# Split name -> its key in splits.json, in the order splits are written.
SPLIT_KEYS = {"train": "train_profile_ids", "validation": "val_profile_ids", "test": "test_profile_ids"}
MEDIA_PATH_COLUMNS = ("audio_path", "midi_path")
# How many offending items an error message lists before "and N more".
SHOWN = 5

_ID = ("sample_id", pa.string())


def listing(items: Sequence[str], shown: int = SHOWN) -> str:
    """'a, b, c and 4 more': a short, bounded list for error messages."""
    head = ", ".join(str(item) for item in items[:shown])
    return head if len(items) <= shown else f"{head} and {len(items) - shown} more"


def _arrow_type(feature) -> pa.DataType:
    if isinstance(feature, ClassLabel):  # the source writes the class name; the output stores its id
        return pa.string()
    return feature.pa_type if hasattr(feature, "pa_type") else pa.type_for_alias(feature.dtype)


def _schema(fields: Iterable[tuple[str, object, str]]) -> pa.Schema:
    return pa.schema([(name, _arrow_type(feature)) for name, feature, _ in fields])


SAMPLES_SCHEMA = pa.schema([*_schema(SAMPLE_COLUMNS), *(pa.field(c, pa.string()) for c in MEDIA_PATH_COLUMNS)])
EXERCISES_SCHEMA = pa.schema([_ID, *_schema(SCORE_COLUMNS)])
STROKES_SCHEMA = pa.schema([_ID, *_schema(STROKE_FIELDS)])
MEASURES_SCHEMA = pa.schema([_ID, *_schema(MEASURE_FIELDS)])
# Each label file (a key of LABEL_FILES) as read: declared columns, declared types.
LABEL_SCHEMAS = {
    "samples": SAMPLES_SCHEMA,
    "exercises": EXERCISES_SCHEMA,
    "strokes": STROKES_SCHEMA,
    "measures": MEASURES_SCHEMA,
}
# Declared int, written by upstream as an all-null column of Arrow type null.
ALL_NULL_COLUMNS = ("aug_bit_depth", "aug_sample_rate")


def upstream_types(field: pa.Field) -> tuple[pa.DataType, ...]:
    """The Arrow types upstream writes for a declared column (sousa-source-format.md), today's first."""
    if field.type == pa.string():
        return (pa.large_string(), pa.string())
    if field.name in NULLABLE_INT_FIELDS:
        return (pa.float64(), pa.int64())
    if field.name in ALL_NULL_COLUMNS:
        return (pa.null(), pa.int64())
    return (field.type,)


def _normalize_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Cast one source column to its declared type; NaN becomes null (upstream's 'missing')."""
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column.cast(target)


def convert_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """The conversion `read_label_table` applies to a source column (validation accepts exactly what it accepts).

    Raises `pa.ArrowInvalid` or `pa.ArrowNotImplementedError` when the column does not convert.
    """
    return _normalize_column(column, target)


def read_label_table(path: Path, schema: pa.Schema) -> pa.Table:
    """Read a label file as `schema`: declared columns only, declared types, NaN as null.

    A missing column is an error naming the file.
    """
    _refuse_missing_columns(path, schema)
    try:
        table = pq.read_table(path, columns=schema.names)
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err
    return _normalized(table, schema, path)


def read_label_batches(path: Path, schema: pa.Schema, rows: int) -> Iterator[pa.Table]:
    """`read_label_table(path, schema)` in tables of up to `rows` rows, holding one at a time."""
    _refuse_missing_columns(path, schema)
    try:
        for batch in pq.ParquetFile(path).iter_batches(rows, columns=schema.names):
            yield _normalized(pa.Table.from_batches([batch]), schema, path)
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err


def _refuse_missing_columns(path: Path, schema: pa.Schema) -> None:
    """Refuse a label file whose schema does not read or lacks a declared column."""
    try:
        present = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {', '.join(missing)}")


def _normalized(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    columns = []
    for field in schema:
        try:
            columns.append(_normalize_column(table[field.name], field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            found = table.schema.field(field.name).type
            raise SourceFormatError(
                f"{path}: column {field.name!r} has type {found}, which does not convert to {field.type}"
                f"{unconvertible_values(table, field)} ({first_line(err)})"
            ) from err
    return pa.Table.from_arrays(columns, schema=schema)


def unconvertible_values(table: pa.Table, field: pa.Field) -> str:
    """': sample S (value V), ...' for the first rows of `table` whose `field` value does not convert (or '')."""
    column = table[field.name].combine_chunks()
    ids = table["sample_id"].combine_chunks() if "sample_id" in table.column_names else None
    bad: list[int] = []
    for start in range(0, len(column), 4096):  # only on the error path: find the rows, a block at a time
        block = column.slice(start, 4096)
        try:
            _normalize_column(pa.chunked_array([block]), field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad += [start + i for i in range(len(block)) if not _converts(block.slice(i, 1), field.type)]
        if len(bad) >= SHOWN:
            break
    shown = [f"sample {ids[i].as_py() if ids is not None else f'row {i}'} ({column[i].as_py()!r})" for i in bad[:SHOWN]]
    return f": {', '.join(shown)}" if shown else ""


def _converts(value: pa.Array, target: pa.DataType) -> bool:
    try:
        _normalize_column(pa.chunked_array([value]), target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def first_line(error: BaseException) -> str:
    """The first line of an error's message (pyarrow's can run on with schemas)."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def read_splits_file(root: Path) -> tuple[dict[str, list[str]] | None, list[str]]:
    """split -> the profile ids splits.json lists for it, and every problem with the file (None if any)."""
    path = root / SPLITS_FILE
    if not path.is_file():
        return None, [f"{SPLITS_FILE}: missing; it maps each profile_id to train/validation/test"]
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"{SPLITS_FILE}: not valid JSON ({err})"]
    if not isinstance(document, dict):
        return None, [f"{SPLITS_FILE}: expected a JSON object with {', '.join(SPLIT_KEYS.values())}"]
    splits, problems = {}, []
    for split, key in SPLIT_KEYS.items():
        profiles = document.get(key)
        if isinstance(profiles, list) and all(isinstance(profile, str) for profile in profiles):
            splits[split] = profiles
            continue
        if key not in document:
            found = "missing"
        elif isinstance(profiles, list):
            found = "a list with items that are not strings"
        else:
            found = f"a {type(profiles).__name__}"
        problems.append(f"{SPLITS_FILE}: {key!r} must be a list of profile id strings, found {found}")
    return (None if problems else splits), problems
