"""Label checks of values: scores, velocities and other numbers in range, categories in their vocabularies."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..features import BINARY_TIER, HANDS, SCORE_COLUMNS, class_label_columns
from .label_files import LabelData, floats, ints, number
from .report import KEPT, CheckResult, verdict

logger = logging.getLogger(__name__)

# The sample columns' vocabularies are the names of their ClassLabels: what `prepare` accepts.
CATEGORIES = {
    **{("samples", column): tuple(label.names) for column, label in class_label_columns().items()},
    ("strokes", "hand"): HANDS,
}
SCORES = tuple(name for name, _, _ in SCORE_COLUMNS)
UNIT_SCORES = ("groove_feel_proxy", "tier_confidence")  # 0-1; every other score is 0-100
OPTIONAL_SCORES = ("flam_quality", "diddle_quality", "roll_sustain")  # null when the rudiment lacks it
VELOCITY_COLUMNS = ("intended_velocity", "actual_velocity")


def score_ranges(data: LabelData) -> CheckResult:
    """Exercise scores are within 0-100 (0-1 for the unit scores), and null only where optional.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "score_ranges", failed, with the count and the first few of the bad
        scores (sample, column, value); else passed.
    """
    exercises = data.tables["exercises"]
    ids = exercises["sample_id"]
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in SCORES:
        if column not in exercises.column_names:
            continue
        values = floats(exercises[column])
        high = 1.0 if column in UNIT_SCORES else 100.0
        null = np.isnan(values)
        bad = np.flatnonzero((null & (column not in OPTIONAL_SCORES)) | (values < 0) | (values > high))
        count += len(bad)
        bad_rows += [(int(row), column, values[row]) for row in bad[:KEPT]]
    bad_rows.sort()
    offenders = [
        f"{ids[row].as_py()} {column} {number(value)} (range {'0-1' if column in UNIT_SCORES else '0-100'})"
        for row, column, value in bad_rows[:KEPT]
    ]
    return verdict(
        "score_ranges",
        count,
        offenders,
        "exercise score(s) out of range or null",
        "exercise scores within 0-100 (groove_feel_proxy, tier_confidence 0-1)",
    )


def velocity_ranges(data: LabelData) -> CheckResult:
    """Stroke velocities (intended and actual) are within 0-127 and not null.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "velocity_ranges", failed, with the count and the first few of the bad
        velocities (sample, stroke, column, value); else passed.
    """
    strokes, keys = data.tables["strokes"], data.keys["strokes"]
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in VELOCITY_COLUMNS:  # compared at the column's width: no float copy of millions of rows
        within = pc.and_(pc.greater_equal(strokes[column], 0), pc.less_equal(strokes[column], 127))
        bad = np.flatnonzero(~pc.fill_null(within, False).to_numpy(zero_copy_only=False))
        count += len(bad)
        values = floats(strokes[column].take(pa.array(bad[:KEPT], pa.int64())))
        bad_rows += [(int(row), column, value) for row, value in zip(bad[:KEPT], values)]
    bad_rows.sort()
    names = keys.names.to_pylist()
    index = _index_at(strokes, [row for row, _, _ in bad_rows[:KEPT]])
    offenders = [
        f"{names[keys.codes[row]] if keys.codes[row] >= 0 else 'null sample_id'} stroke {index[row]}: "
        f"{column} {number(value)}"
        for row, column, value in bad_rows[:KEPT]
    ]
    return verdict(
        "velocity_ranges",
        count,
        offenders,
        "stroke velocity value(s) outside 0-127 or null",
        f"{', '.join(VELOCITY_COLUMNS)} within 0-127",
    )


def positive_values(data: LabelData) -> CheckResult:
    """Each sample's `tempo_bpm` and `duration_sec` are positive (not null).

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "positive_values", failed, with the count and the first few of the bad
        values (sample, column, value); else passed.
    """
    samples = data.tables["samples"]
    bad_rows: list[tuple[int, str, float]] = []
    count = 0
    for column in ("tempo_bpm", "duration_sec"):
        values = floats(samples[column])
        bad = np.flatnonzero(~(values > 0))
        count += len(bad)
        bad_rows += [(int(row), column, values[row]) for row in bad[:KEPT]]
    bad_rows.sort()
    ids = data.ids_at([row for row, _, _ in bad_rows[:KEPT]])
    offenders = [f"{sid} {column} {number(value)}" for sid, (_, column, value) in zip(ids, bad_rows)]
    return verdict(
        "positive_values",
        count,
        offenders,
        "tempo_bpm / duration_sec value(s) not positive or null",
        "tempo_bpm and duration_sec positive",
    )


def categorical_values(data: LabelData) -> CheckResult:
    """Categorical columns take only their documented values, and `skill_tier_binary` follows `skill_tier`.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "categorical_values", failed, with the count and the first few of the
        undocumented values (sample or stroke, column, value); else passed.
    """
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
            bad = _undocumented_rows(column_data, allowed)
            count += len(bad)
            index = _index_at(data.tables["strokes"], bad[:KEPT])
            names = keys.names.to_pylist()
            hands = column_data.take(pa.array(bad[:KEPT], pa.int64())).to_pylist()
            offenders += [
                f"{names[keys.codes[row]] if keys.codes[row] >= 0 else 'null sample_id'} stroke {index[row]}: "
                f"{column} {hand!r}"
                for row, hand in zip(bad[:KEPT], hands)
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
        "rudiment_slug, skill_tier, skill_tier_binary, dominant_hand and hand take only their documented values",
        details={"documented": {column: list(allowed) for (_, column), allowed in CATEGORIES.items()}},
    )


def _undocumented_rows(column: pa.ChunkedArray, allowed: Sequence[str]) -> np.ndarray:
    """The rows whose value is null or not in `allowed`, matched a chunk at a time through its dictionary."""
    found, start = [], 0
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        documented = pc.fill_null(pc.is_in(chunk.dictionary.cast(pa.string()), value_set=pa.array(allowed)), False)
        documented = np.append(documented.to_numpy(zero_copy_only=False), False)  # [-1]: a null value
        found.append(start + np.flatnonzero(~documented[pc.fill_null(chunk.indices, -1).to_numpy()]))
        start += len(chunk)
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _index_at(strokes: pa.Table, rows: Sequence[int] | np.ndarray) -> dict[int, int]:
    """row -> its stroke index (-1 where null), for the few rows a message names."""
    rows = [int(row) for row in rows]
    return dict(zip(rows, ints(strokes["index"].take(pa.array(rows, pa.int64())))))
