"""The label rules read strokes and measures a batch at a time: what they find does not depend on the batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_validate import labels, rewrite, set_where

import sousa_builder.validate.label_files
from sousa_builder.validate import validate_source


def _last_stroke(d: Path) -> tuple[str, int]:
    """The sample id and index of the last row of the strokes file (in its last batch)."""
    table = pq.read_table(labels(d, "strokes"))
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    return last["sample_id"], last["index"]


def _at(sample_id: str, index: int):
    return lambda row: row["sample_id"] == sample_id and row["index"] == index


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sousa_builder.validate.label_files, "BATCH_ROWS", 64)


def test_clean_source_reads_the_same_in_small_batches(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = validate_source(sample_dir, media=False)
    monkeypatch.setattr(sousa_builder.validate.label_files, "BATCH_ROWS", 64)
    batched = validate_source(sample_dir, media=False)
    assert [(c.name, c.status, c.text) for c in batched.checks] == [(c.name, c.status, c.text) for c in whole.checks]
    assert batched.ok(strict=True)


def test_a_value_past_int32_in_the_last_batch(source_copy: Path, small_batches: None) -> None:
    # The earlier batches narrow to int32; this one does not fit, so the whole column is read at int64.
    sample_id, index = _last_stroke(source_copy)
    rewrite(labels(source_copy, "strokes"), lambda t: set_where(t, "actual_velocity", _at(sample_id, index), 2**33))
    report = validate_source(source_copy, media=False)
    assert report["velocity_ranges"].status == "fail"
    assert f"{sample_id} stroke {index}: actual_velocity {2**33}" in report["velocity_ranges"].text
    assert report["columns"].status == "pass"


def test_an_undocumented_hand_in_the_last_batch(source_copy: Path, small_batches: None) -> None:
    sample_id, index = _last_stroke(source_copy)
    rewrite(labels(source_copy, "strokes"), lambda t: set_where(t, "hand", _at(sample_id, index), "X"))
    report = validate_source(source_copy, media=False)
    assert report["categorical_values"].status == "fail"
    assert f"{sample_id} stroke {index}: hand 'X'" in report["categorical_values"].text
