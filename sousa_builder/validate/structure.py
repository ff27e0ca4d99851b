"""Label checks of structure: every row belongs to a sample, and counts, indexes and groups agree."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .label_files import LabelData, few, floats, ints, nulls, number, value_counts
from .report import KEPT, CheckResult, verdict
from .values import SCORES

logger = logging.getLogger(__name__)

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


def unique_sample_ids(data: LabelData) -> CheckResult:
    """Each sample_id is in the samples table once, and none is null.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "unique_sample_ids", failed, with the count and the first few of the
        repeated (or null) ids; else passed.
    """
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
        f"sample_id(s) repeated in {data.origin['samples']}, or null",
        f"{len(data.sample_ids):,} samples, every sample_id unique",
    )


def known_samples(data: LabelData) -> CheckResult:
    """Every exercise, stroke and measure row has the sample_id of a samples row.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "known_samples", failed, with the count and the first few of the
        unknown ids (with their file and rows); else passed.
    """
    offenders, count = [], 0
    for name in ("exercises", "strokes", "measures"):
        keys = data.keys[name]
        unknown = keys.pos < 0
        if not unknown.any():
            continue
        found = value_counts(keys.codes[unknown], keys.names)
        count += len(found)
        offenders += [
            f"{sid if sid is not None else 'null sample_id'} ({data.origin[name]}: {rows} row(s))"
            for sid, rows in found
        ]
    return verdict(
        "known_samples",
        count,
        offenders,
        "sample id(s) in exercises / strokes / measures that are not in samples",
        "every exercise, stroke and measure row belongs to a sample",
    )


def _rows_per_sample(data: LabelData, name: str) -> np.ndarray:
    """For each samples row, how many rows of label table `name` have its sample_id."""
    pos = data.keys[name].pos
    return np.bincount(pos[pos >= 0], minlength=len(data.sample_ids))[data.first]


def _is_first(data: LabelData) -> np.ndarray:
    """True for the first samples row of each sample_id (later duplicates are reported once, elsewhere)."""
    return data.first == np.arange(len(data.first))


def one_exercise_row(data: LabelData) -> CheckResult:
    """Every sample has exactly one exercise row.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "one_exercise_row", failed, with the count and the first few of the
        samples with none or several; else passed.
    """
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


def _count_check(data: LabelData, name: str, column: str, check: str) -> CheckResult:
    rows = _rows_per_sample(data, name)
    declared = floats(data.tables["samples"][column])
    bad = np.flatnonzero((declared != rows) & _is_first(data))
    ids = data.ids_at(bad[:KEPT])
    offenders = [f"{sid} ({column} {number(declared[p])}, {rows[p]} rows)" for sid, p in zip(ids, bad)]
    return verdict(
        check,
        len(bad),
        offenders,
        f"sample(s) whose {column} differs from their rows in {data.origin[name]}",
        f"{column} equals the rows in {data.origin[name]} for every sample",
    )


def stroke_counts(data: LabelData) -> CheckResult:
    """Each sample's `num_strokes` equals its rows in the strokes table.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "stroke_counts", failed, with the count and the first few of the
        samples (declared and actual count); else passed.
    """
    return _count_check(data, "strokes", "num_strokes", "stroke_counts")


def measure_counts(data: LabelData) -> CheckResult:
    """Each sample's `num_measures` equals its rows in the measures table.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "measure_counts", failed, with the count and the first few of the
        samples (declared and actual count); else passed.
    """
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
        parts.append(f"repeated {few(repeated)}")
    missing = np.setdiff1d(np.arange(n), values)
    if len(missing):
        parts.append(f"missing {few(missing)}")
    outside = values[(values < 0) | (values >= n)]
    if len(outside):
        parts.append(f"outside 0-{n - 1}: {few(outside)}")
    return f"{n} rows; " + "; ".join(parts)


def _index_check(data: LabelData, name: str, check: str) -> CheckResult:
    """Each sample's rows of `name` carry the indexes 0..n-1, each once."""
    keys = data.keys[name]
    # At the column's width (int32 once narrowed), as are the ranks: millions of rows, several arrays of them at once.
    pos, index = keys.pos, pc.fill_null(data.tables[name]["index"], -1).to_numpy()
    valid = pos >= 0
    if not valid.all():  # rows of unknown samples (known_samples reports them)
        pos, index = pos[valid], index[valid]
    order = _sorted_by_sample(pos, index)
    if order is not None:
        pos, index = pos[order], index[order]
    counts = np.bincount(pos, minlength=len(data.sample_ids))
    width = np.int32 if len(pos) < 2**31 else np.int64
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(width)
    rank = np.arange(len(pos), dtype=width)
    rank -= starts[pos]
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


def stroke_indexes(data: LabelData) -> CheckResult:
    """Each sample's stroke `index` values run 0..n-1, each once.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "stroke_indexes", failed, with the count and the first few of the
        samples (their repeated, missing or out-of-range indexes); else passed.
    """
    return _index_check(data, "strokes", "stroke_indexes")


def measure_indexes(data: LabelData) -> CheckResult:
    """Each sample's measure `index` values run 0..n-1, each once.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "measure_indexes", failed, with the count and the first few of the
        samples (their repeated, missing or out-of-range indexes); else passed.
    """
    return _index_check(data, "measures", "measure_indexes")


def measure_ranges(data: LabelData) -> CheckResult:
    """Each measure's [stroke_start, stroke_end) lies inside [0, num_strokes) and overlaps no other measure.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "measure_ranges", failed, with the count and the first few of the
        measures (sample, index, stroke range); else passed.
    """
    table, keys = data.tables["measures"], data.keys["measures"]
    valid = keys.pos >= 0
    pos = keys.pos[valid].astype(np.int64)  # scaled by the stroke span below
    start = np.clip(ints(table["stroke_start"])[valid], -1, 2**31)
    end = np.clip(ints(table["stroke_end"])[valid], -1, 2**31)
    index = ints(table["index"])[valid]
    null = (nulls(table["stroke_start"]) | nulls(table["stroke_end"]))[valid]
    strokes = floats(data.tables["samples"]["num_strokes"])[pos]
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
            offenders.append(f"{sid} measure {index[row]}: {stroke_range} not inside [0, {number(strokes[row])})")
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


def augmentation_groups(data: LabelData) -> CheckResult:
    """Samples of one augmentation group share the performance: metadata and exercise scores.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "augmentation_groups", failed, with the count and the first few of
        the groups (the columns that differ, and some of their values); else passed. `details["compared"]` names
        the columns compared.
    """
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
