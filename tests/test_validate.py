"""`sousa-builder validate`: a clean sample passes every check; each check fails on a sample broken in
exactly its way, with a message naming the offending sample or file; JSON report and exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from sousa_builder.cli import main
from sousa_builder.manifest import write_manifest
from sousa_builder.validate import HubLimits, Report, validate_prepared, validate_source

SOURCE_CHECKS = [
    "label_files", "splits_file", "columns", "unique_sample_ids", "known_samples", "one_exercise_row",
    "stroke_counts", "measure_counts", "stroke_indexes", "measure_indexes", "measure_ranges",
    "augmentation_groups", "score_ranges", "velocity_ranges", "positive_values", "categorical_values",
    "split_disjoint", "split_coverage", "split_summary", "media_files", "audio_decode", "midi_parse",
    "unreferenced_media",
]  # fmt: skip
PREPARED_CHECKS = [
    "manifest", "readme", "load", "features", "no_path_columns", "row_counts", "rows_unique_sample_ids",
    "rows_stroke_counts", "rows_measure_counts", "rows_stroke_indexes", "rows_measure_indexes", "rows_measure_ranges",
    "rows_augmentation_groups", "rows_score_ranges", "rows_velocity_ranges", "rows_positive_values",
    "rows_categorical_values", "source_labels", "configs_agree", "embedded_media", "media_bytes", "split_profiles",
    "hub_file_size", "hub_folder_entries", "hub_file_count", "hub_row_groups",
]  # fmt: skip


# --- helpers that break a copy of the sample for real --------------------------------------------


def labels(d: Path, name: str) -> Path:
    return d / "labels" / f"{name}.parquet"


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def every(row: dict) -> bool:
    return True


def set_where(table: pa.Table, column: str, where: Callable[[dict], bool], value: object) -> pa.Table:
    """`table` with `column` set to `value` in the rows where `where(row)`; the type is kept if it fits."""
    rows = table.to_pylist()
    values = [value if where(row) else row[column] for row in rows]
    try:
        array = pa.array(values, table[column].type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array(values)
    return table.set_column(table.schema.get_field_index(column), column, array)


def samples(d: Path) -> list[dict]:
    return pq.read_table(labels(d, "samples")).to_pylist()


def victim(d: Path) -> dict:
    """The first sample: the first augmentation of its group, the one with the group's MIDI file."""
    return samples(d)[0]


def of_sample(sample_id: str) -> Callable[[dict], bool]:
    return lambda row: row["sample_id"] == sample_id


def at(sample_id: str, index: int) -> Callable[[dict], bool]:
    """The stroke (or measure) row `index` of a sample."""
    return lambda row: row["sample_id"] == sample_id and row["index"] == index


def in_group(members: list[str]) -> Callable[[dict], bool]:
    return lambda row: row["sample_id"] in members


def group_of(d: Path) -> tuple[str, list[str]]:
    group = victim(d)["augmentation_group_id"]
    return group, [r["sample_id"] for r in samples(d) if r["augmentation_group_id"] == group]


def drop_last(d: Path, name: str, sample_id: str) -> None:
    def change(table: pa.Table) -> pa.Table:
        rows = np.flatnonzero(pc.equal(table["sample_id"], sample_id).to_numpy(zero_copy_only=False))
        keep = np.ones(table.num_rows, bool)
        keep[rows[-1]] = False
        return table.filter(pa.array(keep))

    rewrite(labels(d, name), change)


# --- source breakages: each returns (the check that must fail, text its message must contain) ----


def strokes_missing(d: Path) -> tuple[str, str]:
    labels(d, "strokes").unlink()
    return "label_files", "labels/strokes.parquet: missing"


def measures_not_parquet(d: Path) -> tuple[str, str]:
    labels(d, "measures").write_text("not parquet")
    return "label_files", "labels/measures.parquet: does not parse as Parquet"


def splits_not_json(d: Path) -> tuple[str, str]:
    (d / "splits.json").write_text("{not json")
    return "splits_file", "splits.json: not valid JSON"


def splits_wrong_shape(d: Path) -> tuple[str, str]:
    document = json.loads((d / "splits.json").read_text())
    document["val_profile_ids"] = "one-profile"
    (d / "splits.json").write_text(json.dumps(document))
    return "splits_file", "'val_profile_ids' must be a list of profile id strings, found a str"


def column_missing(d: Path) -> tuple[str, str]:
    rewrite(labels(d, "strokes"), lambda t: t.drop_columns(["hand"]))
    return "columns", "labels/strokes.parquet: column hand missing"


def column_wrong_type(d: Path) -> tuple[str, str]:
    rewrite(labels(d, "samples"), lambda t: set_where(t, "tempo_bpm", every, "fast"))
    return "columns", "labels/samples.parquet: column tempo_bpm has type string, which does not convert to int64"


def whole_number_column_fractional(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    first = at(sample_id, 0)
    rewrite(labels(d, "strokes"), lambda t: set_where(t, "buzz_count", first, 2.5))  # documented double, whole numbers
    return "columns", "labels/strokes.parquet: column buzz_count has type double, which does not convert to int64"


def duplicate_sample(d: Path) -> tuple[str, str]:
    rewrite(labels(d, "samples"), lambda t: pa.concat_tables([t, t.slice(3, 1)]))
    return "unique_sample_ids", f"{samples(d)[3]['sample_id']} (2 rows)"


def unknown_sample(d: Path) -> tuple[str, str]:
    rewrite(
        labels(d, "strokes"), lambda t: pa.concat_tables([t, set_where(t.slice(0, 1), "sample_id", every, "ghost")])
    )
    return "known_samples", "ghost (labels/strokes.parquet: 1 row(s))"


def no_exercise_row(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    rewrite(labels(d, "exercises"), lambda t: t.filter(pc.not_equal(t["sample_id"], sample_id)))
    return "one_exercise_row", f"{sample_id} (no exercise rows)"


def stroke_row_missing(d: Path) -> tuple[str, str]:
    row = victim(d)
    drop_last(d, "strokes", row["sample_id"])
    return "stroke_counts", f"{row['sample_id']} (num_strokes {row['num_strokes']}, {row['num_strokes'] - 1} rows)"


def measure_row_missing(d: Path) -> tuple[str, str]:
    row = victim(d)
    drop_last(d, "measures", row["sample_id"])
    return "measure_counts", f"{row['sample_id']} (num_measures 2, 1 rows)"


def stroke_index_repeated(d: Path) -> tuple[str, str]:
    row = victim(d)
    fourth = at(row["sample_id"], 3)
    rewrite(labels(d, "strokes"), lambda t: set_where(t, "index", fourth, 2))
    return "stroke_indexes", f"{row['sample_id']} ({row['num_strokes']} rows; repeated 2; missing 3)"


def measure_index_gap(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    rewrite(labels(d, "measures"), lambda t: set_where(t, "index", at(sample_id, 1), 5))
    return "measure_indexes", f"{sample_id} (2 rows; missing 1; outside 0-1: 5)"


def measures_overlap(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    ends = {
        r["index"]: r["stroke_end"]
        for r in pq.read_table(labels(d, "measures")).to_pylist()
        if r["sample_id"] == sample_id
    }
    first = at(sample_id, 0)
    rewrite(labels(d, "measures"), lambda t: set_where(t, "stroke_end", first, ends[1]))
    return "measure_ranges", f"{sample_id} measure 1: strokes"


def measure_outside_strokes(d: Path) -> tuple[str, str]:
    row = victim(d)
    last = at(row["sample_id"], 1)
    rewrite(labels(d, "measures"), lambda t: set_where(t, "stroke_end", last, 999))
    return "measure_ranges", f"not inside [0, {row['num_strokes']})"


def group_disagrees(d: Path) -> tuple[str, str]:
    group, members = group_of(d)
    second = of_sample(members[1])
    rewrite(labels(d, "samples"), lambda t: set_where(t, "tempo_bpm", second, samples(d)[1]["tempo_bpm"] + 2))
    return "augmentation_groups", f"group {group}: tempo_bpm differ ({members[0]}"


def score_out_of_range(d: Path) -> tuple[str, str]:
    _, members = group_of(d)
    rewrite(labels(d, "exercises"), lambda t: set_where(t, "overall_score", in_group(members), 150.0))
    return "score_ranges", f"{members[0]} overall_score 150 (range 0-100)"


def velocity_out_of_range(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    first = at(sample_id, 0)
    rewrite(labels(d, "strokes"), lambda t: set_where(t, "actual_velocity", first, 200))
    return "velocity_ranges", f"{sample_id} stroke 0: actual_velocity 200"


def tempo_zero(d: Path) -> tuple[str, str]:
    _, members = group_of(d)
    rewrite(labels(d, "samples"), lambda t: set_where(t, "tempo_bpm", in_group(members), 0))
    return "positive_values", f"{members[0]} tempo_bpm 0"


def tier_undocumented(d: Path) -> tuple[str, str]:
    _, members = group_of(d)
    rewrite(labels(d, "samples"), lambda t: set_where(t, "skill_tier", in_group(members), "expert"))
    return "categorical_values", f"{members[0]} skill_tier 'expert'"


def rudiment_undocumented(d: Path) -> tuple[str, str]:
    _, members = group_of(d)
    rewrite(labels(d, "samples"), lambda t: set_where(t, "rudiment_slug", in_group(members), "paradiddle"))
    return "categorical_values", f"{members[0]} rudiment_slug 'paradiddle'"


def hand_undocumented(d: Path) -> tuple[str, str]:
    sample_id = victim(d)["sample_id"]
    first = at(sample_id, 0)
    rewrite(labels(d, "strokes"), lambda t: set_where(t, "hand", first, "X"))
    return "categorical_values", f"{sample_id} stroke 0: hand 'X'"


def profile_in_two_splits(d: Path) -> tuple[str, str]:
    document = json.loads((d / "splits.json").read_text())
    profile = document["train_profile_ids"][0]
    document["test_profile_ids"].append(profile)
    (d / "splits.json").write_text(json.dumps(document))
    return "split_disjoint", f"{profile} (in train and test)"


def profile_in_no_split(d: Path) -> tuple[str, str]:
    document = json.loads((d / "splits.json").read_text())
    profile = document["test_profile_ids"].pop()
    (d / "splits.json").write_text(json.dumps(document))
    first = next(r["sample_id"] for r in samples(d) if r["profile_id"] == profile)
    return "split_coverage", f"{first} (profile {profile})"


def audio_missing(d: Path) -> tuple[str, str]:
    row = victim(d)
    (d / row["audio_path"]).unlink()
    return "media_files", f"{row['audio_path']} (sample {row['sample_id']}): missing"


def midi_missing(d: Path) -> tuple[str, str]:
    row = victim(d)
    (d / row["midi_path"]).unlink()
    return "media_files", f"{row['midi_path']} (sample {row['sample_id']}): missing"


def audio_outside_root(d: Path) -> tuple[str, str]:
    (d.parent / "outside.flac").write_bytes((d / victim(d)["audio_path"]).read_bytes())
    sample_id = victim(d)["sample_id"]
    rewrite(labels(d, "samples"), lambda t: set_where(t, "audio_path", of_sample(sample_id), "../outside.flac"))
    return "media_files", f"../outside.flac (sample {sample_id}): escapes the dataset root"


def group_without_midi(d: Path) -> tuple[str, str]:
    group, members = group_of(d)
    rewrite(labels(d, "samples"), lambda t: set_where(t, "midi_path", in_group(members), None))
    return "media_files", f"sample {members[0]}: no MIDI file in its augmentation group {group}"


def audio_truncated(d: Path) -> tuple[str, str]:
    row = victim(d)
    path = d / row["audio_path"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the header survives, the frames do not
    return "audio_decode", f"{row['audio_path']} (sample {row['sample_id']}): does not decode"


def audio_resampled(d: Path) -> tuple[str, str]:
    row = victim(d)
    data, _ = sf.read(d / row["audio_path"])
    sf.write(d / row["audio_path"], data[::2], 22_050, format="FLAC", subtype="PCM_24")
    return "audio_decode", f"{row['audio_path']} (sample {row['sample_id']}): sample rate 22050 Hz, expected 44100"


def audio_too_long(d: Path) -> tuple[str, str]:
    row = victim(d)
    data, rate = sf.read(d / row["audio_path"])
    sf.write(d / row["audio_path"], np.concatenate([data, np.zeros((rate, 2))]), rate, format="FLAC")
    return "audio_decode", f"{row['audio_path']} (sample {row['sample_id']}): lasts"


def audio_is_wav(d: Path) -> tuple[str, str]:
    row = victim(d)
    data, rate = sf.read(d / row["audio_path"])
    sf.write(d / row["audio_path"], data, rate, format="WAV")
    # Its first bytes say so: refused as prepare refuses it, before any decode.
    return "media_files", f"{row['audio_path']} (sample {row['sample_id']}): not a FLAC file"


def midi_garbage(d: Path) -> tuple[str, str]:
    row = victim(d)
    (d / row["midi_path"]).write_bytes(b"this is not a MIDI file")
    return "media_files", f"{row['midi_path']} (sample {row['sample_id']}): not a MIDI file"


def midi_without_notes(d: Path) -> tuple[str, str]:
    row = victim(d)
    midi = mido.MidiFile(type=1)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)]))
    midi.save(d / row["midi_path"])
    return "midi_parse", f"{row['midi_path']} (sample {row['sample_id']}): holds no note events"


SOURCE_BREAKAGES = [
    strokes_missing, measures_not_parquet, splits_not_json, splits_wrong_shape, column_missing,
    column_wrong_type, whole_number_column_fractional, duplicate_sample, unknown_sample, no_exercise_row,
    stroke_row_missing, measure_row_missing, stroke_index_repeated, measure_index_gap, measures_overlap,
    measure_outside_strokes, group_disagrees, score_out_of_range, velocity_out_of_range, tempo_zero,
    tier_undocumented, rudiment_undocumented, hand_undocumented, profile_in_two_splits, profile_in_no_split,
    audio_missing, midi_missing, audio_outside_root, group_without_midi, audio_truncated, audio_resampled,
    audio_too_long, audio_is_wav, midi_garbage, midi_without_notes,
]  # fmt: skip
# Checks that cannot run on a broken input are skipped (the failing check says why), not failed.
SKIPPED = {
    "strokes_missing": {"known_samples", "stroke_counts", "stroke_indexes", "velocity_ranges", "categorical_values"},
    "measures_not_parquet": {"known_samples", "measure_counts", "measure_indexes", "measure_ranges"},
    "splits_not_json": {"split_disjoint", "split_coverage", "split_summary"},
    "splits_wrong_shape": {"split_disjoint", "split_coverage", "split_summary"},
    "column_missing": {"categorical_values"},
    "column_wrong_type": {"positive_values"},
}
# Breakages that also leave a file no sample references: a warning, not a failure.
WARNS = {"audio_outside_root", "group_without_midi"}


def failing(report: Report) -> set[str]:
    return {check.name for check in report.with_status("fail")}


def test_clean_source_passes_every_check(sample_dir: Path) -> None:
    report = validate_source(sample_dir)
    assert [check.name for check in report.checks] == SOURCE_CHECKS
    assert {check.name: check.status for check in report.checks} == dict.fromkeys(SOURCE_CHECKS, "pass")
    assert report.ok(strict=True)
    # 4 profiles x 3 rudiments x 2 augmentations: 24 FLAC; MIDI only for the first augmentation: 12.
    assert (report["audio_decode"].details["checked"], report["midi_parse"].details["checked"]) == (24, 12)
    # profiles 0-1 train (beginner, intermediate), 2 validation (advanced), 3 test (professional); 6 samples each
    assert report["split_summary"].details["train"] == {
        "samples": 12,
        "profiles": 2,
        "profiles_listed": 2,
        "skill_tier": {"beginner": 6, "intermediate": 6},
    }
    assert report["split_summary"].details["test"]["skill_tier"] == {"professional": 6}


@pytest.mark.parametrize("breakage", SOURCE_BREAKAGES, ids=lambda f: f.__name__)
def test_source_check_fails(breakage: Callable[[Path], tuple[str, str]], source_copy: Path) -> None:
    check, expected = breakage(source_copy)
    report = validate_source(source_copy)
    result = report[check]
    assert result.status == "fail", result
    assert expected in result.text
    assert failing(report) == {check}, report.summary()  # broken in exactly one way: one check fails
    assert {c.name for c in report.with_status("skip")} == SKIPPED.get(breakage.__name__, set())
    assert {c.name for c in report.with_status("warn")} == (
        {"unreferenced_media"} if breakage.__name__ in WARNS else set()
    )
    assert not report.ok()


def test_undocumented_but_convertible_type_warns(source_copy: Path) -> None:
    rewrite(labels(source_copy, "samples"), lambda t: t.set_column(3, "tempo_bpm", t["tempo_bpm"].cast(pa.float64())))
    report = validate_source(source_copy)
    assert report["columns"].status == "warn"
    assert (
        "labels/samples.parquet: column tempo_bpm has type double, documented int64; it converts"
        in report["columns"].text
    )
    assert report.ok() and not report.ok(strict=True)
    assert failing(report) == set()


def test_unreferenced_media_warns_and_strict_fails(source_copy: Path, tmp_path: Path, capsys) -> None:
    shutil.copy(source_copy / victim(source_copy)["audio_path"], source_copy / "audio" / "stray.flac")
    report = validate_source(source_copy)
    assert report["unreferenced_media"].status == "warn"
    assert report["unreferenced_media"].offenders == ["audio/stray.flac"]
    assert main(["validate", str(source_copy)]) == 0
    assert main(["validate", str(source_copy), "--strict", "--json", str(tmp_path / "r.json")]) == 1
    document = json.loads((tmp_path / "r.json").read_text())
    assert (document["ok"], document["strict"], document["counts"]["warn"]) == (False, True, 1)
    assert "audio/stray.flac" in capsys.readouterr().out


def test_sample_and_num_proc(source_copy: Path) -> None:
    broken, expected = audio_truncated(source_copy)
    parallel = validate_source(source_copy, num_proc=2)
    assert parallel["audio_decode"].status == "fail" and expected in parallel["audio_decode"].text
    assert parallel.to_dict()["checks"] == validate_source(source_copy).to_dict()["checks"]
    sampled = validate_source(source_copy, sample=3, seed=7, num_proc=2)
    details = sampled["audio_decode"].details
    assert (details["sampled"], details["sample"], details["seed"], details["checked"]) == (True, 3, 7, 3)
    assert sampled["media_files"].status == "pass"  # presence is checked for every sample, sampled or not
    assert 1 <= sampled["midi_parse"].details["checked"] <= 3


def test_the_report_gives_the_seed_of_a_sample(source_copy: Path, tmp_path: Path, capsys) -> None:
    """A run of --sample without --seed can be repeated: the human report names the seed and the option."""
    assert main(["validate", str(source_copy), "--sample", "3", "--json", str(tmp_path / "first.json")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sampled")]
    assert len(lines) == 1, lines
    seed = int(re.fullmatch(r"sampled with seed (\d+): --sample 3 --seed \1 checks the same samples", lines[0])[1])
    first = json.loads((tmp_path / "first.json").read_text())
    assert {c["details"].get("seed") for c in first["checks"] if c["details"].get("sampled")} == {seed}
    again = ["validate", str(source_copy), "--sample", "3", "--seed", str(seed), "--json", str(tmp_path / "again.json")]
    assert main(again) == 0
    assert f"sampled with seed {seed}: --sample 3 --seed {seed} checks the same samples\n" in capsys.readouterr().out
    assert json.loads((tmp_path / "again.json").read_text())["checks"] == first["checks"]
    assert main(["validate", str(source_copy)]) == 0
    assert "sampled" not in capsys.readouterr().out  # every sample checked: no draw to repeat


def test_labels_only_run(source_copy: Path) -> None:
    shutil.rmtree(source_copy / "audio")
    report = validate_source(source_copy, media=False)
    assert report.ok(strict=True)
    assert {c.name for c in report.with_status("skip")} == {
        "media_files",
        "audio_decode",
        "midi_parse",
        "unreferenced_media",
    }


# --- CLI: summary, JSON, exit codes -------------------------------------------------------------


def test_cli_clean_source_json(sample_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["validate", str(sample_dir), "--json", str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("  PASS")]) == len(SOURCE_CHECKS)
    assert out.rstrip().endswith("OK")
    document = json.loads((tmp_path / "report.json").read_text())
    assert (document["kind"], document["ok"], document["strict"]) == ("source", True, False)
    assert document["counts"] == {"pass": len(SOURCE_CHECKS), "warn": 0, "fail": 0, "skip": 0}
    assert [c["name"] for c in document["checks"]] == SOURCE_CHECKS
    assert set(document["checks"][0]) == {"name", "status", "message", "count", "offenders", "details"}


def test_cli_broken_source_json_and_summary(source_copy: Path, tmp_path: Path, capsys) -> None:
    document = json.loads((source_copy / "splits.json").read_text())
    profile = document["test_profile_ids"].pop()  # its 6 samples are in no split
    (source_copy / "splits.json").write_text(json.dumps(document))
    ids = sorted(r["sample_id"] for r in samples(source_copy) if r["profile_id"] == profile)
    assert main(["validate", str(source_copy), "--json", str(tmp_path / "report.json")]) == 1
    out = capsys.readouterr().out
    assert "  FAIL  split_coverage" in out
    failures = out[out.index("failures:") :]
    # the first 5 offenders, then how many more
    assert re.search(rf"split_coverage: 6 sample\(s\) whose profile is in no split.*{ids[0]}.* and 1 more", failures)
    assert out.rstrip().endswith("FAILED: 1 fail")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and report["counts"]["fail"] == 1
    check = next(c for c in report["checks"] if c["name"] == "split_coverage")
    assert (check["status"], check["count"], len(check["offenders"])) == ("fail", 6, 6)
    assert sorted(o.split(" ")[0] for o in check["offenders"]) == ids


@pytest.mark.parametrize(
    "argv",
    [
        [],  # neither DATA_DIR nor --prepared
        ["DATA", "--prepared", "DATA"],
        ["DATA", "--source", "DATA"],  # --source needs --prepared
        ["DATA", "--num-proc", "0"],
        ["DATA", "--sample", "many"],
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], sample_dir: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["validate", *(str(sample_dir) if a == "DATA" else a for a in argv)])
    assert exit_.value.code == 2
    assert "usage: sousa-builder validate" in capsys.readouterr().err


# --- prepared folder ------------------------------------------------------------------------------


@pytest.fixture
def prepared_copy(prepared_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared_dir, tmp_path / "prepared"))


def shard(prepared: Path, config: str, split: str = "train", index: int = 0) -> Path:
    return prepared / config / f"{split}-{index:05d}-of-00002.parquet"


def test_clean_prepared_passes_every_check(prepared_dir: Path, sample_dir: Path) -> None:
    report = validate_prepared(prepared_dir, source=sample_dir, num_proc=2)
    assert [check.name for check in report.checks] == PREPARED_CHECKS
    # With the source, every config is compared with it (source_labels) instead of with each other.
    expected = dict.fromkeys(PREPARED_CHECKS, "pass") | {"configs_agree": "skip"}
    assert {check.name: check.status for check in report.checks} == expected
    # 24 samples in audio and in midi_only; each row's audio and/or MIDI compared
    assert report["media_bytes"].details["compared_rows"] == 48
    assert report["row_counts"].details["rows"]["labels_only"] == {"train": 12, "validation": 6, "test": 6}
    without_source = validate_prepared(prepared_dir)
    assert without_source["media_bytes"].status == "skip" and without_source.ok(strict=True)
    # Without the source too, every embedded value passes the media rules: audio and MIDI in audio, MIDI in midi_only.
    assert without_source["embedded_media"].details["checked"] == 3 * 24
    assert without_source["configs_agree"].status == "pass"


def test_cli_prepared_json(prepared_dir: Path, sample_dir: Path, tmp_path: Path, capsys) -> None:
    argv = ["validate", "--prepared", str(prepared_dir), "--source", str(sample_dir), "--sample", "2", "--seed", "3"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    document = json.loads((tmp_path / "r.json").read_text())
    assert (document["kind"], document["ok"]) == ("prepared", True)
    media = next(c for c in document["checks"] if c["name"] == "media_bytes")
    assert media["details"] == {"sampled": True, "sample": 2, "seed": 3, "compared_rows": 4}  # 2 in audio + 2 in midi
    out = capsys.readouterr().out
    assert "PASS  media_bytes" in out and "\nsampled with seed 3: --sample 2 --seed 3 checks" in out


def readme_drops_a_split(p: Path) -> tuple[str, str, set[str]]:
    readme = p / "README.md"
    readme.write_text(readme.read_text().replace("  - split: test\n    path: labels_only/test-*\n", ""))
    return "readme", "labels_only/test-00000-of-00002.parquet: not listed", set()


def readme_yaml_broken(p: Path) -> tuple[str, str, set[str]]:
    readme = p / "README.md"
    readme.write_text(readme.read_text().replace("configs:\n", "configs: [\n", 1))
    return "readme", "README.md: the YAML does not parse", set()


def readme_declares_another_type(p: Path) -> tuple[str, str, set[str]]:
    readme = p / "README.md"
    text = readme.read_text()
    midi_only = text.index("- config_name: midi_only")  # the first one is in dataset_info
    declared = "  - name: tempo_bpm\n    dtype: int64\n"
    assert declared in text[midi_only:]
    readme.write_text(text[:midi_only] + text[midi_only:].replace(declared, declared.replace("int64", "float64"), 1))
    return "features", "README.md config midi_only: column tempo_bpm is", set()


def shard_column_renamed(p: Path) -> tuple[str, str, set[str]]:
    rewrite(
        shard(p, "labels_only"),
        lambda t: t.rename_columns(["tempo" if c == "tempo_bpm" else c for c in t.column_names]),
    )
    return "load", "config labels_only:", {"features"}


def shard_type_changed(p: Path) -> tuple[str, str, set[str]]:
    rewrite(shard(p, "midi_only"), lambda t: t.set_column(3, "tempo_bpm", t["tempo_bpm"].cast(pa.float64())))
    return "features", "midi_only/train-00000-of-00002.parquet: column tempo_bpm has type double, declared int64", set()


def audio_path_leaks(p: Path) -> tuple[str, str, set[str]]:
    def change(table: pa.Table) -> pa.Table:
        audio = table["audio"].combine_chunks()
        paths = ["/home/someone/output/dataset/audio/" + name for name in audio.field("path").to_pylist()]
        leaky = pa.StructArray.from_arrays([audio.field("bytes"), pa.array(paths)], fields=list(audio.type))
        return table.set_column(table.schema.get_field_index("audio"), "audio", leaky)

    sample_id = pq.read_table(shard(p, "audio"))["sample_id"][0].as_py()
    rewrite(shard(p, "audio"), change)
    return "no_path_columns", f"sample {sample_id} audio.path '/home/someone/output/dataset/audio/", set()


def internal_column_left(p: Path) -> tuple[str, str, set[str]]:
    rewrite(shard(p, "labels_only"), lambda t: t.append_column("audio_path", pa.array(["audio/x.flac"] * t.num_rows)))
    return (
        "no_path_columns",
        "labels_only/train-00000-of-00002.parquet: internal column audio_path",
        {"features", "load"},
    )


def row_dropped(p: Path) -> tuple[str, str, set[str]]:
    sample_id = pq.read_table(shard(p, "labels_only"))["sample_id"][0].as_py()
    rewrite(shard(p, "labels_only"), lambda t: t.slice(1))
    return "row_counts", f"labels_only/train: sample {sample_id} missing (in source)", set()


def midi_bytes_changed(p: Path) -> tuple[str, str, set[str]]:
    table = pq.read_table(shard(p, "midi_only"))
    sample_id = table["sample_id"][0].as_py()
    rewrite(shard(p, "midi_only"), lambda t: set_where(t, "midi", of_sample(sample_id), t["midi"][0].as_py() + b"\0"))
    return "media_bytes", f"midi_only/train-00000-of-00002.parquet: sample {sample_id} midi", set()


def audio_bytes_changed(p: Path) -> tuple[str, str, set[str]]:
    def change(table: pa.Table) -> pa.Table:
        audio = table["audio"].combine_chunks()
        flac = audio.field("bytes").to_pylist()
        flac[-1] = flac[-1][:-1] + bytes([flac[-1][-1] ^ 1])  # one bit of the last sample's FLAC
        changed = pa.StructArray.from_arrays(
            [pa.array(flac, pa.binary()), audio.field("path")], fields=list(audio.type)
        )
        return table.set_column(table.schema.get_field_index("audio"), "audio", changed)

    sample_id = pq.read_table(shard(p, "audio", "test", 1))["sample_id"][-1].as_py()
    rewrite(shard(p, "audio", "test", 1), change)
    # The flipped bit breaks the last FLAC frame, which the media rules decode.
    return "media_bytes", f"audio/test-00001-of-00002.parquet: sample {sample_id} audio", {"embedded_media"}


def audio_pages_corrupt(p: Path) -> tuple[str, str, set[str]]:
    """The footer and sample_id column still read; the audio column's first page header does not."""
    path = shard(p, "audio")
    metadata = pq.ParquetFile(path).metadata
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    offset = metadata.row_group(0).column(names.index("audio.bytes")).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    # no_path_columns reads only the audio.path leaf, which is intact.
    return "media_bytes", "audio/train-00000-of-00002.parquet: row group 0 does not read", {"load", "embedded_media"}


def profile_in_two_prepared_splits(p: Path) -> tuple[str, str, set[str]]:
    train_profile = pq.read_table(shard(p, "labels_only"))["profile_id"][0].as_py()
    rewrite(shard(p, "labels_only", "test"), lambda t: set_where(t, "profile_id", every, train_profile))
    return (
        "split_profiles",
        f"profile {train_profile} in test (labels_only/test-00000-of-00002.parquet) and train",
        {"rows_augmentation_groups", "source_labels"},  # the rows' profile_id changed: its group's disagree
    )


PREPARED_BREAKAGES = [
    readme_drops_a_split, readme_yaml_broken, readme_declares_another_type, shard_column_renamed, shard_type_changed,
    audio_path_leaks, internal_column_left, row_dropped, midi_bytes_changed, audio_bytes_changed, audio_pages_corrupt,
    profile_in_two_prepared_splits,
]  # fmt: skip


@pytest.mark.parametrize("breakage", PREPARED_BREAKAGES, ids=lambda f: f.__name__)
def test_prepared_check_fails(
    breakage: Callable[[Path], tuple[str, str, set[str]]], prepared_copy: Path, sample_dir: Path
) -> None:
    check, expected, also = breakage(prepared_copy)
    write_manifest(prepared_copy, "prepare")  # as if prepare had written it so: this check alone must see it
    report = validate_prepared(prepared_copy, source=sample_dir)
    result = report[check]
    assert result.status == "fail", result
    assert expected in result.text
    assert failing(report) == {check, *also}, report.summary()


@pytest.mark.parametrize(
    ("limits", "check", "expected"),
    [
        (HubLimits(max_file_bytes=100_000), "hub_file_size", "audio/test-00000-of-00002.parquet: 0.00 GB"),
        (HubLimits(max_folder_entries=6), "hub_folder_entries", "audio/: 6 entries"),
        (
            HubLimits(max_files=10),
            "hub_file_count",
            "21 files, the Hub allows fewer than 10 (the fullest folders): audio/: 6 files",
        ),
        (HubLimits(max_row_group_bytes=100_000), "hub_row_groups", "audio/test-00000-of-00002.parquet row group 0:"),
    ],
)
def test_hub_limits(limits: HubLimits, check: str, expected: str, prepared_dir: Path) -> None:
    report = validate_prepared(prepared_dir, limits=limits)
    assert report[check].status == "fail"
    assert expected in report[check].text
    assert failing(report) == {check}


# --- the manifest: the prepared folder is what prepare wrote, byte for byte -------------------------------------


def flip_bytes(path: Path, count: int = 32) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def audio_shard_flipped(p: Path) -> str:
    flip_bytes(shard(p, "audio"))  # inside the FLAC data: the row still loads, the audio is damaged
    return "audio/train-00000-of-00002.parquet: its bytes are not the ones written (sha256 differs): row group 0"


def auxiliary_flipped(p: Path) -> str:
    flip_bytes(p / "auxiliary" / "strokes.parquet", 8)
    return "auxiliary/strokes.parquet: its bytes are not the ones written"


def link_to_outside(p: Path) -> str:
    (p / "auxiliary" / "extra.parquet").symlink_to(shard(p, "audio").resolve())
    return "auxiliary/extra.parquet: a link"


def dangling_link(p: Path) -> str:
    (p / "audio" / "gone.parquet").symlink_to(p / "nowhere.parquet")
    return "audio/gone.parquet: a link"


def file_of_the_users(p: Path) -> str:
    (p / "labels_only" / "notes.txt").write_text("mine")
    return "labels_only/notes.txt: not written by sousa-builder"


def manifest_removed(p: Path) -> str:
    shutil.rmtree(p / ".sousa")
    return ".sousa/manifest.json: missing or unreadable"


@pytest.mark.parametrize(
    "breakage",
    [audio_shard_flipped, auxiliary_flipped, link_to_outside, dangling_link, file_of_the_users, manifest_removed],
    ids=lambda f: f.__name__,
)
def test_manifest_catches_what_prepare_did_not_write(
    breakage: Callable[[Path], str], prepared_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = breakage(prepared_copy)
    report = validate_prepared(prepared_copy)  # no --source needed
    assert report["manifest"].status == "fail" and expected in report["manifest"].text, report["manifest"].text
    assert main(["validate", "--prepared", str(prepared_copy)]) == 1
    out, err = capsys.readouterr()
    assert "FAIL  manifest" in out and "Traceback" not in out + err


def test_a_source_without_samples_fails(source_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("samples", "exercises", "strokes", "measures"):
        rewrite(labels(source_copy, name), lambda t: t.slice(0, 0))
    assert main(["validate", str(source_copy)]) == 1
    out = capsys.readouterr().out
    assert "labels/samples.parquet: no samples" in out and "FAIL  label_files" in out


@pytest.mark.parametrize("command", ["validate", "publish"])
def test_a_fifo_named_like_a_shard_is_refused_before_it_is_opened(
    prepared_dir: Path, tmp_path: Path, command: str
) -> None:
    """Opening a FIFO blocks until something writes to it: refused by its type, in a fresh process with a bound."""
    folder = Path(shutil.copytree(prepared_dir, tmp_path / "prepared"))
    shard = next((folder / "labels_only").glob("train-*.parquet"))
    shard.unlink()
    os.mkfifo(shard)
    args = ["--prepared", str(folder)]
    argv = ["validate", *args] if command == "validate" else ["publish", "alice/sousa", *args, "--dry-run", "plan"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "sousa_builder", *argv], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env=env)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"sousa-builder {command}: error: {shard}: not a regular file (a FIFO (named pipe)); a prepared folder holds "
        "only the files prepare wrote: remove it, or prepare again"
    )
    assert not (tmp_path / "plan").exists()
