"""Validate a SOUSA source directory: every problem reported, none raised.

`SousaSource.open` stops at the first problem, which is what the builder needs. Validation reads the
same files with pyarrow and checks each property on whole columns at once (numpy and pyarrow
compute, no Python loop over label rows), so a 100k-sample source with 10M stroke rows takes
seconds. Media are then checked file by file, in parallel (`validate.media`), and with `audio` what
the audio sounds like (`validate.audio`). A prepared folder is validated by `validate.prepared`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SourceNotFoundError
from ..features import BINARY_TIER, DOMINANT_HANDS, HANDS, SCORE_COLUMNS, TIERS
from ..source import (
    LABEL_FILES,
    LABEL_SCHEMAS,
    SPLIT_KEYS,
    SPLITS_FILE,
    convert_column,
    read_splits_file,
    upstream_types,
)
from .audio import AudioSettings, skipped_audio_checks, source_audio_checks
from .media import MEDIA_CHECKS, MEDIA_COLUMNS, MediaRefs, sampled_rows, source_media_checks
from .report import KEPT, CheckResult, Report, first_line, listing, skipped, verdict

logger = logging.getLogger(__name__)

# Of the per-stroke and per-measure tables only these columns are read; every column is type-checked.
READ_ONLY = {
    "strokes": ("sample_id", "index", "hand", "intended_velocity", "actual_velocity"),
    "measures": ("sample_id", "index", "stroke_start", "stroke_end"),
}
# String columns of the big tables read dictionary-encoded: few distinct values, millions of rows.
DICTIONARY_COLUMNS = ("sample_id", "hand")

CATEGORIES = {
    ("samples", "skill_tier"): TIERS,
    ("samples", "skill_tier_binary"): tuple(dict.fromkeys(BINARY_TIER.values())),
    ("samples", "dominant_hand"): DOMINANT_HANDS,
    ("strokes", "hand"): HANDS,
}
SCORES = tuple(name for name, _, _ in SCORE_COLUMNS)
UNIT_SCORES = ("groove_feel_proxy", "tier_confidence")  # 0-1; every other score is 0-100
OPTIONAL_SCORES = ("flam_quality", "diddle_quality", "roll_sustain")  # null when the rudiment lacks it
VELOCITY_COLUMNS = ("intended_velocity", "actual_velocity")
# What the samples of one augmentation group share: the performance (only the audio differs).
GROUP_COLUMNS = (
    "profile_id",
    "rudiment_slug",
    "tempo_bpm",
    "duration_sec",
    "num_cycles",
    "skill_tier",
    "skill_tier_binary",
    "dominant_hand",
    "num_strokes",
    "num_measures",
)


@dataclass
class _Keys:
    """Which sample each row of a label table belongs to."""

    codes: np.ndarray  # row -> index into `names`, -1 where sample_id is null
    names: pa.Array  # the distinct sample ids of the table
    pos: np.ndarray  # row -> first samples row with that id, -1 if there is none


@dataclass
class _Labels:
    """What could be read of a source: usable columns (converted to the declared types) and splits."""

    root: Path
    tables: dict[str, pa.Table] = field(default_factory=dict)
    splits: dict[str, list[str]] | None = None
    keys: dict[str, _Keys] = field(default_factory=dict)
    sample_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    first: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # samples row -> first row of its id

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


def validate_source(
    data_dir: str | os.PathLike,
    num_proc: int | None = None,
    sample: int | None = None,
    seed: int | None = None,
    media: bool = True,
    audio: AudioSettings | None = None,
) -> Report:
    """Run every source check on the SOUSA directory `data_dir` and report each one.

    Media are decoded and parsed in `num_proc` processes; with `sample`, only the media of that
    many random samples (drawn with `seed`, reported in the details) are decoded and parsed; their
    presence is checked for all. `media=False` runs the label and split checks only. With `audio`
    (its thresholds), the audio checks (`validate.audio`) run too, on the same files.
    """
    started = time.perf_counter()
    root = Path(data_dir).expanduser().absolute()
    if not root.is_dir():
        raise SourceNotFoundError(f"{root}: no such directory")
    data, checks = _read_labels(root)
    for name, needs, check in LABEL_CHECKS:
        reason = data.unavailable(needs)
        began = time.perf_counter()
        checks.append(skipped(name, reason) if reason else check(data))
        logger.debug("%s: %.3f s", name, time.perf_counter() - began)
    if not media:
        checks += [skipped(name, "media checks were not asked for") for name in MEDIA_CHECKS]
        checks += skipped_audio_checks("media checks were not asked for") if audio else []
    else:
        reason = data.unavailable({"samples": MEDIA_COLUMNS})
        if reason:
            checks += [skipped(name, reason) for name in MEDIA_CHECKS]
            checks += skipped_audio_checks(reason) if audio else []
        else:
            refs = MediaRefs.read(root, data.tables["samples"], num_proc)
            rows, details = sampled_rows(len(refs.ids), sample, seed)
            checks += source_media_checks(root, refs, rows, details, num_proc)
            checks += source_audio_checks(root, refs, rows, details, num_proc, audio) if audio else []
    return Report(str(root), "source", checks, time.perf_counter() - started)


# --- reading -------------------------------------------------------------------------------------


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
    dictionary = [
        column
        for column in DICTIONARY_COLUMNS
        if name in READ_ONLY and column in wanted and present.field(column).type in (pa.string(), pa.large_string())
    ]
    try:
        table = pq.read_table(path, columns=wanted, read_dictionary=dictionary or None)
    except (OSError, pa.ArrowException) as err:
        return None, f"{relative}: does not read ({first_line(err)})", fails, warns
    columns = {}
    for column_name in wanted:
        found, declared = present.field(column_name).type, schema.field(column_name)
        if column_name in dictionary:
            columns[column_name] = table[column_name]
            continue
        try:
            converted = convert_column(table[column_name], declared.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            fails.append(
                f"{relative}: column {column_name} has type {found}, which does not convert to {declared.type} "
                f"({first_line(err)})"
            )
            continue
        if found not in upstream_types(declared):
            documented = " or ".join(str(t) for t in upstream_types(declared))
            warns.append(f"{relative}: column {column_name} has type {found}, documented {documented}; it converts")
        if column_name in keep:
            columns[column_name] = converted
    return pa.table(columns), None, fails, warns


def _keys(column: pa.ChunkedArray, sample_ids: pa.Array) -> _Keys:
    """Map each row's sample_id to its samples row, through the (small) dictionary of distinct ids."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        names, codes = pa.array([], pa.string()), np.empty(0, np.int64)
    else:
        names = column.chunk(0).dictionary.cast(pa.string())
        codes = np.concatenate([pc.fill_null(chunk.indices, -1).to_numpy() for chunk in column.chunks])
    codes = codes.astype(np.int64)
    lookup = np.append(pc.fill_null(pc.index_in(names, value_set=sample_ids), -1).to_numpy().astype(np.int64), -1)
    return _Keys(codes, names, lookup[codes])


def _read_labels(root: Path) -> tuple[_Labels, list[CheckResult]]:
    """Read the label files and splits.json as far as they go; the label_files, splits_file and columns checks."""
    data = _Labels(root)
    unreadable, fails, warns = [], [], []
    for name in LABEL_SCHEMAS:
        table, problem, column_fails, column_warns = _read_label_file(root, name)
        fails += column_fails
        warns += column_warns
        if problem:
            unreadable.append(problem)
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
                data.keys[name] = _keys(table["sample_id"], data.sample_ids)
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


# --- helpers -------------------------------------------------------------------------------------


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    return column.cast(pa.float64()).to_numpy()


def _ints(column: pa.ChunkedArray, fill: int = -1) -> np.ndarray:
    """An integer column as int64, `fill` where null."""
    return pc.fill_null(column, fill).to_numpy().astype(np.int64)


def _nulls(column: pa.ChunkedArray) -> np.ndarray:
    return column.is_null().to_numpy(zero_copy_only=False)


def _few(values: np.ndarray, shown: int = 5) -> str:
    return listing([str(v) for v in values[:shown]], len(values), shown)


def _number(value: float) -> str:
    """A value for a message: 'null' for NaN, whole numbers without '.0'."""
    if np.isnan(value):
        return "null"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _value_counts(codes: np.ndarray, names: pa.Array) -> list[tuple[str | None, int]]:
    """(name, rows) per distinct code in `codes` (-1 is a null name), most rows first."""
    values, counts = np.unique(codes, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    pylist = names.to_pylist()
    return [(pylist[v] if v >= 0 else None, int(c)) for v, c in zip(values[order], counts[order])]


# --- identity ------------------------------------------------------------------------------------


def _unique_sample_ids(data: _Labels) -> CheckResult:
    counts = pc.value_counts(data.sample_ids)
    values, repeats = counts.field("values"), counts.field("counts")
    duplicated = pc.greater(repeats, 1)
    offenders = [
        f"{value} ({count} rows)" if value is not None else f"null sample_id ({count} rows)"
        for value, count in zip(values.filter(duplicated).to_pylist(), repeats.filter(duplicated).to_pylist())
    ]
    nulls = data.sample_ids.null_count
    if nulls == 1:
        offenders.append("null sample_id (1 row)")
    return verdict(
        "unique_sample_ids",
        len(offenders),
        sorted(offenders),
        "sample_id(s) repeated in labels/samples.parquet, or null",
        f"{len(data.sample_ids):,} samples, every sample_id unique",
    )


def _known_samples(data: _Labels) -> CheckResult:
    offenders, count = [], 0
    for name in ("exercises", "strokes", "measures"):
        keys = data.keys[name]
        unknown = keys.pos < 0
        if not unknown.any():
            continue
        found = _value_counts(keys.codes[unknown], keys.names)
        count += len(found)
        offenders += [
            f"{sid if sid is not None else 'null sample_id'} ({LABEL_FILES[name]}: {rows} row(s))"
            for sid, rows in found
        ]
    return verdict(
        "known_samples",
        count,
        offenders,
        "sample id(s) in exercises / strokes / measures that are not in samples",
        "every exercise, stroke and measure row belongs to a sample",
    )


def _rows_per_sample(data: _Labels, name: str) -> np.ndarray:
    """For each samples row, how many rows of label table `name` have its sample_id."""
    pos = data.keys[name].pos
    return np.bincount(pos[pos >= 0], minlength=len(data.sample_ids))[data.first]


def _is_first(data: _Labels) -> np.ndarray:
    """True for the first samples row of each sample_id (later duplicates are reported once, elsewhere)."""
    return data.first == np.arange(len(data.first))


def _one_exercise_row(data: _Labels) -> CheckResult:
    rows = _rows_per_sample(data, "exercises")
    bad = np.flatnonzero((rows != 1) & _is_first(data))
    ids = data.ids_at(bad[:KEPT])
    offenders = [f"{sid} ({'no' if rows[p] == 0 else rows[p]} exercise rows)" for sid, p in zip(ids, bad)]
    return verdict(
        "one_exercise_row",
        len(bad),
        offenders,
        "sample(s) without exactly one exercise row",
        "every sample has exactly one exercise row",
    )


# --- consistency ---------------------------------------------------------------------------------


def _count_check(data: _Labels, name: str, column: str, check: str) -> CheckResult:
    rows = _rows_per_sample(data, name)
    declared = _floats(data.tables["samples"][column])
    bad = np.flatnonzero((declared != rows) & _is_first(data))
    ids = data.ids_at(bad[:KEPT])
    offenders = [f"{sid} ({column} {_number(declared[p])}, {rows[p]} rows)" for sid, p in zip(ids, bad)]
    return verdict(
        check,
        len(bad),
        offenders,
        f"sample(s) whose {column} differs from their rows in {LABEL_FILES[name]}",
        f"{column} equals the rows in {LABEL_FILES[name]} for every sample",
    )


def _stroke_counts(data: _Labels) -> CheckResult:
    return _count_check(data, "strokes", "num_strokes", "stroke_counts")


def _measure_counts(data: _Labels) -> CheckResult:
    return _count_check(data, "measures", "num_measures", "measure_counts")


def _sorted_by_sample(pos: np.ndarray, *keys: np.ndarray) -> np.ndarray | None:
    """The order that sorts rows by (pos, keys...), or None when they are sorted already (the usual case)."""
    first = keys[0]
    ordered = (pos[1:] > pos[:-1]) | ((pos[1:] == pos[:-1]) & (first[1:] > first[:-1]))
    if ordered.all():
        return None
    return np.lexsort((*reversed(keys), pos))


def _index_story(indexes: np.ndarray) -> str:
    """What is wrong with one sample's indexes compared with 0..n-1."""
    n = len(indexes)
    values, counts = np.unique(indexes, return_counts=True)
    parts = []
    repeated = values[(counts > 1) & (values >= 0)]
    if len(repeated):
        parts.append(f"repeated {_few(repeated)}")
    missing = np.setdiff1d(np.arange(n), values)
    if len(missing):
        parts.append(f"missing {_few(missing)}")
    outside = values[(values < 0) | (values >= n)]
    if len(outside):
        parts.append(f"outside 0-{n - 1}: {_few(outside)}")
    return f"{n} rows; " + "; ".join(parts)


def _index_check(data: _Labels, name: str, check: str) -> CheckResult:
    """Each sample's rows of `name` carry the indexes 0..n-1, each once."""
    keys = data.keys[name]
    valid = keys.pos >= 0
    pos, index = keys.pos[valid], _ints(data.tables[name]["index"])[valid]
    order = _sorted_by_sample(pos, index)
    if order is not None:
        pos, index = pos[order], index[order]
    counts = np.bincount(pos, minlength=len(data.sample_ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rank = np.arange(len(pos)) - starts[pos] if len(pos) else np.empty(0, np.int64)
    bad = np.unique(pos[index != rank])
    ids = data.ids_at(bad[:KEPT])
    offenders = [f"{sid} ({_index_story(index[starts[p] : starts[p] + counts[p]])})" for sid, p in zip(ids, bad)]
    what = name[:-1]
    return verdict(
        check,
        len(bad),
        offenders,
        f"sample(s) whose {what} indexes are not 0..n-1 without gaps",
        f"every sample's {what} indexes run 0..n-1 without gaps",
    )


def _stroke_indexes(data: _Labels) -> CheckResult:
    return _index_check(data, "strokes", "stroke_indexes")


def _measure_indexes(data: _Labels) -> CheckResult:
    return _index_check(data, "measures", "measure_indexes")


def _measure_ranges(data: _Labels) -> CheckResult:
    """Each measure's [stroke_start, stroke_end) lies inside [0, num_strokes) and overlaps no other measure."""
    table, keys = data.tables["measures"], data.keys["measures"]
    valid = keys.pos >= 0
    pos = keys.pos[valid]
    start = np.clip(_ints(table["stroke_start"])[valid], -1, 2**31)
    end = np.clip(_ints(table["stroke_end"])[valid], -1, 2**31)
    index = _ints(table["index"])[valid]
    null = (_nulls(table["stroke_start"]) | _nulls(table["stroke_end"]))[valid]
    strokes = _floats(data.tables["samples"]["num_strokes"])[pos]
    outside = null | (start < 0) | (end < start) | (end > strokes)
    # Sorted by (sample, start, end), a measure overlaps an earlier one when it starts before the
    # largest end seen so far in its sample (ends are shifted per sample so one running max serves all).
    order = np.lexsort((end, start, pos))
    span = int(max(end.max(initial=0), start.max(initial=0))) + 2
    shifted_end = end[order] + pos[order] * span
    before = np.concatenate([[-1], np.maximum.accumulate(shifted_end)[:-1]]) if len(order) else shifted_end
    overlap = np.zeros(len(pos), bool)
    overlap[order] = start[order] + pos[order] * span < before
    overlap &= ~outside
    bad = np.flatnonzero(outside | overlap)
    ids = data.ids_at(pos[bad[:KEPT]])
    offenders = []
    for sid, row in zip(ids, bad):
        stroke_range = f"strokes [{start[row]}, {end[row]})" if not null[row] else "a null stroke range"
        if outside[row]:
            offenders.append(f"{sid} measure {index[row]}: {stroke_range} not inside [0, {_number(strokes[row])})")
        else:
            offenders.append(f"{sid} measure {index[row]}: {stroke_range} overlaps an earlier measure")
    return verdict(
        "measure_ranges",
        len(bad),
        offenders,
        "measure(s) whose stroke range leaves the sample's strokes or overlaps another measure",
        "every measure's stroke range lies inside its sample's strokes, without overlap",
    )


def _differing_groups(table: pa.Table, columns: Sequence[str]) -> dict[str, list[str]]:
    """augmentation_group_id -> the columns whose values differ between its rows."""
    table = table.filter(pc.is_valid(table["augmentation_group_id"]))
    if not columns or not table.num_rows:
        return {}
    counted = table.group_by("augmentation_group_id").aggregate(
        [(column, "count_distinct", pc.CountOptions(mode="all")) for column in columns]
    )
    differing: dict[str, list[str]] = {}
    for column in columns:
        groups = counted["augmentation_group_id"].filter(pc.greater(counted[f"{column}_count_distinct"], 1))
        for group in groups.to_pylist():
            differing.setdefault(group, []).append(column)
    return differing


def _augmentation_groups(data: _Labels) -> CheckResult:
    """Samples of one augmentation group share the performance: metadata and exercise scores."""
    samples = data.tables["samples"]
    meta = [column for column in GROUP_COLUMNS if column in samples.column_names]
    differing = _differing_groups(samples, meta)
    exercises = data.tables.get("exercises")
    usable = exercises is not None and "sample_id" in exercises.column_names
    scores = [column for column in SCORES if usable and column in exercises.column_names]
    joined = samples
    if scores:  # samples without an exercise row drop out here (one_exercise_row reports them)
        joined = samples.select(["sample_id", "augmentation_group_id"]).join(
            _plain_ids(exercises.select(["sample_id", *scores])), "sample_id", join_type="inner"
        )
        for group, columns in _differing_groups(joined, scores).items():
            differing.setdefault(group, []).extend(columns)
    offenders = []
    for group in sorted(differing)[:KEPT]:
        columns = differing[group]
        table = samples if columns[0] in samples.column_names else joined
        members = table.filter(pc.equal(table["augmentation_group_id"], group))
        values = zip(members["sample_id"].to_pylist()[:3], members[columns[0]].to_pylist()[:3])
        shown = ", ".join(f"{sid}: {value}" for sid, value in values)
        offenders.append(f"group {group}: {', '.join(columns)} differ ({shown})")
    return verdict(
        "augmentation_groups",
        len(differing),
        offenders,
        "augmentation group(s) whose samples disagree on the performance",
        "the samples of each augmentation group share the performance (metadata and exercise scores)",
        details={"compared": meta + scores},
    )


def _plain_ids(table: pa.Table) -> pa.Table:
    """`table` with its sample_id as plain strings (the big tables keep them dictionary-encoded)."""
    column = table["sample_id"]
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    return table.set_column(table.schema.get_field_index("sample_id"), "sample_id", column)


# --- ranges --------------------------------------------------------------------------------------


def _score_ranges(data: _Labels) -> CheckResult:
    exercises = data.tables["exercises"]
    ids = exercises["sample_id"]
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in SCORES:
        if column not in exercises.column_names:
            continue
        values = _floats(exercises[column])
        high = 1.0 if column in UNIT_SCORES else 100.0
        null = np.isnan(values)
        bad = np.flatnonzero((null & (column not in OPTIONAL_SCORES)) | (values < 0) | (values > high))
        count += len(bad)
        bad_rows += [(int(row), column, values[row]) for row in bad[:KEPT]]
    bad_rows.sort()
    offenders = [
        f"{ids[row].as_py()} {column} {_number(value)} (range {'0-1' if column in UNIT_SCORES else '0-100'})"
        for row, column, value in bad_rows[:KEPT]
    ]
    return verdict(
        "score_ranges",
        count,
        offenders,
        "exercise score(s) out of range or null",
        "exercise scores within 0-100 (groove_feel_proxy, tier_confidence 0-1)",
    )


def _velocity_ranges(data: _Labels) -> CheckResult:
    strokes, keys = data.tables["strokes"], data.keys["strokes"]
    index = _ints(strokes["index"])
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in VELOCITY_COLUMNS:
        values = _floats(strokes[column])
        bad = np.flatnonzero(np.isnan(values) | (values < 0) | (values > 127))
        count += len(bad)
        bad_rows += [(int(row), column, values[row]) for row in bad[:KEPT]]
    bad_rows.sort()
    names = keys.names.to_pylist()
    offenders = [
        f"{names[keys.codes[row]] if keys.codes[row] >= 0 else 'null sample_id'} stroke {index[row]}: "
        f"{column} {_number(value)}"
        for row, column, value in bad_rows[:KEPT]
    ]
    return verdict(
        "velocity_ranges",
        count,
        offenders,
        "stroke velocity value(s) outside 0-127 or null",
        f"{', '.join(VELOCITY_COLUMNS)} within 0-127",
    )


def _positive_values(data: _Labels) -> CheckResult:
    samples = data.tables["samples"]
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in ("tempo_bpm", "duration_sec"):
        values = _floats(samples[column])
        bad = np.flatnonzero(~(values > 0))
        count += len(bad)
        bad_rows += [(int(row), column, values[row]) for row in bad[:KEPT]]
    bad_rows.sort()
    ids = data.ids_at([row for row, _, _ in bad_rows[:KEPT]])
    offenders = [f"{sid} {column} {_number(value)}" for sid, (_, column, value) in zip(ids, bad_rows)]
    return verdict(
        "positive_values",
        count,
        offenders,
        "tempo_bpm / duration_sec value(s) not positive or null",
        "tempo_bpm and duration_sec positive",
    )


def _categorical_values(data: _Labels) -> CheckResult:
    offenders: list[str] = []
    count = 0
    samples = data.tables["samples"]
    for (name, column), allowed in CATEGORIES.items():
        if name == "samples":
            bad = np.flatnonzero(~pc.fill_null(pc.is_in(samples[column], pa.array(allowed)), False).to_numpy())
            count += len(bad)
            values = samples[column].take(pa.array(bad[:KEPT], pa.int64())).to_pylist()
            offenders += [f"{sid} {column} {value!r}" for sid, value in zip(data.ids_at(bad[:KEPT]), values)]
        else:  # strokes.hand, dictionary-encoded: match its few distinct values, then find their rows
            keys, column_data = data.keys["strokes"], data.tables["strokes"][column]
            hand = _keys(column_data, pa.array(allowed))  # pos: the value's place in `allowed`, -1 if not there
            bad = np.flatnonzero(hand.pos < 0)
            count += len(bad)
            index = _ints(data.tables["strokes"]["index"])
            names, hands = keys.names.to_pylist(), hand.names.to_pylist()
            offenders += [
                f"{names[keys.codes[row]] if keys.codes[row] >= 0 else 'null sample_id'} stroke {index[row]}: "
                f"{column} {hands[hand.codes[row]] if hand.codes[row] >= 0 else None!r}"
                for row in bad[:KEPT]
            ]
    # skill_tier_binary follows from skill_tier (undocumented values of either are reported above).
    tier, binary = samples["skill_tier"], samples["skill_tier_binary"]
    expected = pa.array(list(BINARY_TIER.values())).take(pc.index_in(tier, value_set=pa.array(list(BINARY_TIER))))
    mismatch = pc.and_(pc.is_in(binary, pa.array(sorted(set(BINARY_TIER.values())))), pc.not_equal(binary, expected))
    bad = np.flatnonzero(pc.fill_null(mismatch, False).to_numpy(zero_copy_only=False))
    count += len(bad)
    pairs = zip(data.ids_at(bad[:KEPT]), tier.take(bad[:KEPT]).to_pylist(), binary.take(bad[:KEPT]).to_pylist())
    offenders += [f"{sid} skill_tier_binary {b!r} but skill_tier {t!r}" for sid, t, b in pairs]
    return verdict(
        "categorical_values",
        count,
        offenders,
        "categorical value(s) not documented (or skill_tier_binary not matching skill_tier)",
        "skill_tier, skill_tier_binary, dominant_hand and hand take only their documented values",
        details={"documented": {column: list(allowed) for (_, column), allowed in CATEGORIES.items()}},
    )


# --- splits --------------------------------------------------------------------------------------


def _split_of(data: _Labels) -> dict[str, list[str]]:
    """profile_id -> the splits whose list in splits.json holds it."""
    listed: dict[str, list[str]] = {}
    for split, profiles in data.splits.items():
        for profile in dict.fromkeys(profiles):
            listed.setdefault(profile, []).append(split)
    return listed


def _split_disjoint(data: _Labels) -> CheckResult:
    twice = {profile: splits for profile, splits in _split_of(data).items() if len(splits) > 1}
    offenders = [f"{profile} (in {' and '.join(splits)})" for profile, splits in sorted(twice.items())]
    return verdict(
        "split_disjoint",
        len(offenders),
        offenders,
        "profile(s) listed in more than one split of splits.json",
        "no profile is listed in two splits",
    )


def _split_coverage(data: _Labels) -> CheckResult:
    samples = data.tables["samples"]
    listed = pa.array(list(_split_of(data)), pa.string())
    bad = np.flatnonzero(~pc.fill_null(pc.is_in(samples["profile_id"], value_set=listed), False).to_numpy())
    profiles = samples["profile_id"].take(pa.array(bad[:KEPT], pa.int64())).to_pylist()
    offenders = [f"{sid} (profile {profile})" for sid, profile in zip(data.ids_at(bad[:KEPT]), profiles)]
    return verdict(
        "split_coverage",
        len(bad),
        offenders,
        "sample(s) whose profile is in no split of splits.json",
        "every sample's profile is in a split",
    )


def _split_summary(data: _Labels) -> CheckResult:
    """Samples, profiles and skill-tier mix per split (a profile listed twice counts in its first split)."""
    samples = data.tables["samples"]
    split_of = {profile: splits[0] for profile, splits in _split_of(data).items()}
    profiles = pc.unique(samples["profile_id"])
    lookup = pa.array([split_of.get(profile) for profile in profiles.to_pylist()], pa.string())
    split = lookup.take(pc.index_in(samples["profile_id"], value_set=profiles))
    table = pa.table({"split": split, "profile_id": samples["profile_id"], "skill_tier": samples["skill_tier"]})
    mix = table.group_by(["split", "skill_tier"]).aggregate([("profile_id", "count")]).to_pylist()
    per_profile = table.group_by("split").aggregate([("profile_id", "count_distinct")]).to_pylist()
    details: dict[str, Any] = {}
    for name in SPLIT_KEYS:
        tiers = {row["skill_tier"]: row["profile_id_count"] for row in mix if row["split"] == name}
        ordered = {tier: tiers[tier] for tier in (*TIERS, *sorted(set(tiers) - set(TIERS), key=str)) if tier in tiers}
        details[name] = {
            "samples": sum(ordered.values()),
            "profiles": next((row["profile_id_count_distinct"] for row in per_profile if row["split"] == name), 0),
            "profiles_listed": len(data.splits[name]),
            "skill_tier": ordered,
        }
    parts = []
    for name, info in details.items():
        tiers = ", ".join(f"{tier} {n}" for tier, n in info["skill_tier"].items())
        parts.append(f"{name} {info['samples']:,}" + (f" ({tiers})" if tiers else ""))
    return CheckResult("split_summary", "pass", "; ".join(parts), details=details)


# Label checks in report order: name, what they need (table -> columns, "splits"), the check.
LABEL_CHECKS: tuple[tuple[str, dict[str, tuple[str, ...]], Callable[[_Labels], CheckResult]], ...] = (
    ("unique_sample_ids", {"samples": ("sample_id",)}, _unique_sample_ids),
    (
        "known_samples",
        {"samples": ("sample_id",), "exercises": ("sample_id",), "strokes": ("sample_id",), "measures": ("sample_id",)},
        _known_samples,
    ),
    ("one_exercise_row", {"samples": ("sample_id",), "exercises": ("sample_id",)}, _one_exercise_row),
    ("stroke_counts", {"samples": ("sample_id", "num_strokes"), "strokes": ("sample_id",)}, _stroke_counts),
    ("measure_counts", {"samples": ("sample_id", "num_measures"), "measures": ("sample_id",)}, _measure_counts),
    ("stroke_indexes", {"samples": ("sample_id",), "strokes": ("sample_id", "index")}, _stroke_indexes),
    ("measure_indexes", {"samples": ("sample_id",), "measures": ("sample_id", "index")}, _measure_indexes),
    (
        "measure_ranges",
        {
            "samples": ("sample_id", "num_strokes"),
            "measures": ("sample_id", "index", "stroke_start", "stroke_end"),
        },
        _measure_ranges,
    ),
    ("augmentation_groups", {"samples": ("sample_id", "augmentation_group_id")}, _augmentation_groups),
    ("score_ranges", {"exercises": ("sample_id",)}, _score_ranges),
    (
        "velocity_ranges",
        {"samples": ("sample_id",), "strokes": ("sample_id", "index", *VELOCITY_COLUMNS)},
        _velocity_ranges,
    ),
    ("positive_values", {"samples": ("sample_id", "tempo_bpm", "duration_sec")}, _positive_values),
    (
        "categorical_values",
        {
            "samples": ("sample_id", "skill_tier", "skill_tier_binary", "dominant_hand"),
            "strokes": ("sample_id", "index", "hand"),
        },
        _categorical_values,
    ),
    ("split_disjoint", {"splits": ()}, _split_disjoint),
    ("split_coverage", {"samples": ("sample_id", "profile_id"), "splits": ()}, _split_coverage),
    ("split_summary", {"samples": ("sample_id", "profile_id", "skill_tier"), "splits": ()}, _split_summary),
)
