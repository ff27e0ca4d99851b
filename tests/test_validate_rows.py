"""`validate --prepared` checks the label rows themselves: without `--source` by the source's row rules
(`rows_*` checks), with `--source` value for value against the source's labels (`source_labels`).

Each test rewrites the real shards of a prepared copy of the sample (and the manifest, as if prepare
had written them so) and checks that exactly the expected checks fail, naming the shard and sample."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sousa_builder.cli import main
from sousa_builder.features import RUDIMENT_SLUGS
from sousa_builder.manifest import write_manifest
from sousa_builder.validate import Report, validate_prepared

SHARD = "labels_only/train-00000-of-00002.parquet"


@pytest.fixture
def prepared_copy(prepared_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared_dir, tmp_path / "prepared"))


def failing(report: Report) -> set[str]:
    return {check.name for check in report.with_status("fail")}


def change_first_row(path: Path, change: Callable[[dict], None]) -> str:
    """Apply `change` to the first row of a shard (a dict, nested lists included); return its sample_id."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows[0])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return rows[0]["sample_id"]


def setter(column: str, value: object) -> Callable[[dict], None]:
    def change(row: dict) -> None:
        row[column] = value

    return change


def nested_setter(column: str, item: int, field: str, value: Callable[[dict], object]) -> Callable[[dict], None]:
    """Set `row[column][item][field]` to `value(row)` (item -1: the last one)."""

    def change(row: dict) -> None:
        row[column][item][field] = value(row)

    return change


# Each: (what to change in the first row of SHARD, the check that must fail, text after the sample id,
# other checks the change fails too). The sample is a group's first augmentation: a group column
# changed in it alone also makes its group disagree.
GROUP = "rows_augmentation_groups"
BREAKAGES = {
    "num_strokes_not_the_strokes": (setter("num_strokes", 999), "rows_stroke_counts", " (num_strokes 999, ", {GROUP}),
    "stroke_index_outside": (
        nested_setter("strokes", 3, "index", lambda row: 77),
        "rows_stroke_indexes",
        " (32 rows; missing 3; outside 0-31: 77)",
        set(),
    ),
    "stroke_index_repeated": (
        nested_setter("strokes", 1, "index", lambda row: 0),
        "rows_stroke_indexes",
        " (32 rows; repeated 0; missing 1)",
        set(),
    ),
    "measure_outside_strokes": (
        nested_setter("measures", -1, "stroke_end", lambda row: row["num_strokes"] + 5),
        "rows_measure_ranges",
        " measure ",
        set(),
    ),
    "tempo_negative": (setter("tempo_bpm", -120), "rows_positive_values", " tempo_bpm -120", {GROUP}),
    "score_out_of_range": (setter("timing_accuracy", 150.0), "rows_score_ranges", " timing_accuracy 150 ", {GROUP}),
    "velocity_out_of_range": (
        nested_setter("strokes", 2, "actual_velocity", lambda row: 200),
        "rows_velocity_ranges",
        " stroke 2: actual_velocity 200",
        set(),
    ),
    "class_id_unknown": (
        setter("rudiment_slug", len(RUDIMENT_SLUGS)),
        "rows_categorical_values",
        f" rudiment_slug 'class id {len(RUDIMENT_SLUGS)}'",
        {GROUP},
    ),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_row_rule_fails_without_source(name: str, prepared_copy: Path) -> None:
    change, check, expected, also = BREAKAGES[name]
    sample_id = change_first_row(prepared_copy / SHARD, change)
    write_manifest(prepared_copy, "prepare")
    report = validate_prepared(prepared_copy)  # no --source: the rows alone must be refused
    assert report[check].status == "fail", report[check]
    assert f"{SHARD}: {sample_id}{expected}" in report[check].text, report[check].text
    # The other configs now differ from labels_only, whose rows the rules read.
    assert failing(report) == {check, "configs_agree", *also}, report.summary()


def _shift_timing(row: dict) -> object:
    return row["strokes"][5]["timing_error_ms"] + 1.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (setter("tempo_bpm", 61), " tempo_bpm 61, labels_only "),
        (nested_setter("strokes", 5, "timing_error_ms", _shift_timing), " strokes[5].timing_error_ms "),
    ],
)
def test_without_source_every_config_must_equal_the_one_the_rules_read(
    prepared_copy: Path, change: Callable[[dict], None], expected: str
) -> None:
    """The row rules read one config (labels_only); a value changed in another config's shard, still within the
    rules, is caught by comparing the configs with it."""
    shard = next((prepared_copy / "audio").glob("train-*.parquet")).relative_to(prepared_copy).as_posix()
    sample_id = change_first_row(prepared_copy / shard, change)
    write_manifest(prepared_copy, "prepare")
    report = validate_prepared(prepared_copy)
    assert failing(report) == {"configs_agree"}, report.summary()
    assert f"{shard}: sample {sample_id}{expected}" in report["configs_agree"].text, report["configs_agree"].text
    assert report["configs_agree"].count == 1


def test_cli_refuses_rows_that_break_a_rule(prepared_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_id = change_first_row(prepared_copy / SHARD, setter("num_strokes", 999))
    write_manifest(prepared_copy, "prepare")
    assert main(["validate", "--prepared", str(prepared_copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  rows_stroke_counts" in out and f"{SHARD}: {sample_id} (num_strokes 999, " in out


def test_clean_rows_pass_and_are_compared(prepared_dir: Path, sample_dir: Path) -> None:
    report = validate_prepared(prepared_dir, source=sample_dir)
    rules = [check for check in report.checks if check.name.startswith("rows_")]
    assert len(rules) == 11 and all(check.status == "pass" for check in rules)
    assert {check.details["config"] for check in rules} == {"labels_only"}
    compared = report["source_labels"].details["compared"]
    assert set(compared) == {"labels_only", "audio", "midi_only"}
    assert all(config["rows"] == 24 and config["nested_items"] > 24 for config in compared.values())


# Rows whose values differ from the source's while every row rule holds: (shard, change, text after the sample id).
DIFFERENCES = {
    "flat_value": (SHARD, setter("soundfont", "another_font"), " soundfont 'another_font', source '"),
    "stroke_field_in_audio": (
        "audio/test-00001-of-00002.parquet",
        nested_setter("strokes", 5, "timing_error_ms", _shift_timing),
        " strokes[5].timing_error_ms ",
    ),
    "measure_field_in_midi_only": (
        "midi_only/validation-00000-of-00002.parquet",
        nested_setter("measures", 0, "velocity_mean", lambda row: 1.25),
        " measures[0].velocity_mean 1.25, source ",
    ),
    "one_stroke_less_in_midi_only": (
        "midi_only/train-00001-of-00002.parquet",
        lambda row: row["strokes"].pop(),
        " strokes: ",
    ),
}


@pytest.mark.parametrize("name", DIFFERENCES)
def test_rows_must_equal_the_source(name: str, prepared_copy: Path, sample_dir: Path) -> None:
    path, change, expected = DIFFERENCES[name]
    sample_id = change_first_row(prepared_copy / path, change)
    write_manifest(prepared_copy, "prepare")
    report = validate_prepared(prepared_copy, source=sample_dir)
    assert f"{path}: sample {sample_id}{expected}" in report["source_labels"].text, report["source_labels"].text
    assert failing(report) == {"source_labels"}, report.summary()
    # Without --source every row rule holds; the configs, compared with each other, differ.
    assert failing(validate_prepared(prepared_copy)) == {"configs_agree"}


def test_source_rows_in_any_order_compare_equal(prepared_dir: Path, source_copy: Path) -> None:
    """Upstream writes stroke and measure rows in no set order: they are compared by (sample, index)."""
    rng = np.random.default_rng(0)
    for name in ("strokes", "measures"):
        path = source_copy / "labels" / f"{name}.parquet"
        table = pq.read_table(path)
        pq.write_table(table.take(pa.array(rng.permutation(table.num_rows))), path)
    report = validate_prepared(prepared_dir, source=source_copy)
    assert report["source_labels"].status == "pass", report["source_labels"].text
    assert report.ok(), report.summary()


@pytest.mark.parametrize("column", ["audio", "midi"])
def test_embedded_media_that_break_the_media_rules_fail_even_when_the_source_holds_the_same(
    column: str, prepared_copy: Path, source_copy: Path
) -> None:
    """A shard whose embedded file is broken, beside a source file broken the same way: equal bytes, and yet not a
    usable FLAC or MIDI file, as `validate SOURCE` would say of the source (`embedded_media`, which reads every
    embedded value, says so: `media_bytes` only compares)."""
    broken = {"audio": b"fLaC" + b" not a STREAMINFO block".ljust(60, b"."), "midi": b"MThd" + b"\x00" * 10}[column]
    path = next((prepared_copy / "audio").glob("train-*.parquet"))
    table = pq.read_table(path)
    sample_id = table["sample_id"][0].as_py()
    values = table[column].combine_chunks()
    if column == "audio":
        data = values.field("bytes").to_pylist()
        data[0] = broken
        fields = list(values.type)
        values = pa.StructArray.from_arrays([pa.array(data, pa.binary()), values.field("path")], fields=fields)
    else:
        data = values.to_pylist()
        data[0] = broken
        values = pa.array(data, values.type)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), path)
    write_manifest(prepared_copy, "prepare")  # as if prepare had written it
    (original,) = source_copy.glob(f"{column}/**/{sample_id}.{'flac' if column == 'audio' else 'mid'}")
    original.write_bytes(broken)
    report = validate_prepared(prepared_copy, source=source_copy)
    # A MIDI file is shared by its augmentation group: the other samples' (and midi_only's) now differ from it.
    assert failing(report) == {"embedded_media"} | ({"media_bytes"} if column == "midi" else set()), report.summary()
    (line,) = report["embedded_media"].offenders
    assert line.startswith(f"audio/{path.name} (config audio): sample {sample_id} {column}: not a "), line
