"""Input the builder refuses: a clear message naming the file or sample, exit 1, nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sousa_builder.cli import main

SAMPLES = "labels/samples.parquet"


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


def first_row(source: Path) -> dict:
    return pq.read_table(source / SAMPLES).to_pylist()[0]


def missing_exercises(d: Path) -> str:
    (d / "labels/exercises.parquet").unlink()
    return "labels/exercises.parquet: missing"


def missing_strokes(d: Path) -> str:
    (d / "labels/strokes.parquet").unlink()
    return "labels/strokes.parquet: missing"


def missing_splits(d: Path) -> str:
    (d / "splits.json").unlink()
    return "splits.json: missing"


def splits_not_json(d: Path) -> str:
    (d / "splits.json").write_text("{not json")
    return "splits.json: not valid JSON"


def splits_wrong_shape(d: Path) -> str:
    document = json.loads((d / "splits.json").read_text())
    document["test_profile_ids"] = "one-profile"
    (d / "splits.json").write_text(json.dumps(document))
    return "'test_profile_ids' must be a list of profile id strings, found a str"


def profile_in_two_splits(d: Path) -> str:
    document = json.loads((d / "splits.json").read_text())
    profile = document["train_profile_ids"][0]
    document["test_profile_ids"].append(profile)
    (d / "splits.json").write_text(json.dumps(document))
    return f"split_disjoint: 1 profile(s) listed in more than one split of splits.json: {profile} (in train and test)"


def profile_in_no_split(d: Path) -> str:
    document = json.loads((d / "splits.json").read_text())
    profile = document["test_profile_ids"].pop()
    (d / "splits.json").write_text(json.dumps(document))
    return f"6 sample(s) whose profile is in no split of splits.json: {first_with(d, 'profile_id', profile)[:6]}"


def first_with(d: Path, column: str, value: str) -> str:
    rows = sorted(r["sample_id"] for r in pq.read_table(d / SAMPLES).to_pylist() if r[column] == value)
    return rows[0]


def duplicate_sample_id(d: Path) -> str:
    table = pq.read_table(d / SAMPLES)
    pq.write_table(pa.concat_tables([table, table.slice(3, 1)]), d / SAMPLES)
    repeated = table["sample_id"][3].as_py()
    return f"unique_sample_ids: 1 sample_id(s) repeated in labels/samples.parquet, or null: {repeated} (2 rows)"


def no_exercise_scores(d: Path) -> str:
    victim = first_row(d)["sample_id"]
    rewrite(d / "labels/exercises.parquet", lambda t: t.filter(pc.not_equal(t["sample_id"], victim)))
    return f"one_exercise_row: 1 sample(s) without exactly one exercise row: {victim} (no exercise rows)"


def audio_file_missing(d: Path) -> str:
    row = first_row(d)
    (d / row["audio_path"]).unlink()
    return f"{row['audio_path']} (sample {row['sample_id']}): missing"


def midi_file_missing(d: Path) -> str:
    row = next(r for r in pq.read_table(d / SAMPLES).to_pylist() if r["midi_path"])
    (d / row["midi_path"]).unlink()
    return f"{row['midi_path']} (sample {row['sample_id']}): missing"


def audio_unreadable(d: Path) -> str:
    row = first_row(d)
    (d / row["audio_path"]).unlink()
    (d / row["audio_path"]).mkdir()  # a folder where the file should be: nothing to read
    return f"{row['audio_path']} (sample {row['sample_id']}): not a regular file"


def audio_empty(d: Path) -> str:
    row = first_row(d)
    (d / row["audio_path"]).write_bytes(b"")
    return f"{row['audio_path']} (sample {row['sample_id']}): empty (0 bytes)"


def audio_not_flac(d: Path) -> str:
    row = first_row(d)
    (d / row["audio_path"]).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(100))  # a WAV named .flac
    return f"{row['audio_path']} (sample {row['sample_id']}): not a FLAC file"


def midi_garbage(d: Path) -> str:
    row = next(r for r in pq.read_table(d / SAMPLES).to_pylist() if r["midi_path"])
    (d / row["midi_path"]).write_bytes(b"this is not a MIDI file")
    return f"{row['midi_path']} (sample {row['sample_id']}): not a MIDI file"


def no_samples(d: Path) -> str:
    for name in ("samples", "exercises", "strokes", "measures"):
        rewrite(d / f"labels/{name}.parquet", lambda t: t.slice(0, 0))
    return "labels/samples.parquet: no samples"


def integer_beyond_float(d: Path) -> str:
    # duration_sec is a float: an integer column there converts only up to 2^53
    rewrite(d / SAMPLES, lambda t: t.set_column(t.schema.get_field_index("duration_sec"), "duration_sec",
                                                pa.array([2**60 + 1] * t.num_rows, pa.int64())))  # fmt: skip
    return f"column duration_sec has type int64, which does not convert to double: sample {first_row(d)['sample_id']}"


def audio_escapes_root(d: Path) -> str:
    (d.parent / "outside.flac").write_bytes((d / first_row(d)["audio_path"]).read_bytes())
    rewrite(d / SAMPLES, lambda t: set_value(t, "audio_path", 0, "../outside.flac"))
    return f"../outside.flac (sample {first_row(d)['sample_id']}): escapes the dataset root"


def audio_absolute(d: Path) -> str:
    absolute = str((d / first_row(d)["audio_path"]).absolute())
    rewrite(d / SAMPLES, lambda t: set_value(t, "audio_path", 0, absolute))
    return f"{absolute} (sample {first_row(d)['sample_id']}): an absolute path"


def audio_path_null(d: Path) -> str:
    victim = first_row(d)["sample_id"]
    rewrite(d / SAMPLES, lambda t: set_value(t, "audio_path", 0, None))
    return f"media_files: 1 media reference(s) missing, unreadable or outside the root: sample {victim}: audio_path is"


def group_without_midi(d: Path) -> str:
    row = next(r for r in pq.read_table(d / SAMPLES).to_pylist() if r["midi_path"])
    group = row["augmentation_group_id"]
    index = pq.read_table(d / SAMPLES)["sample_id"].to_pylist().index(row["sample_id"])
    rewrite(d / SAMPLES, lambda t: set_value(t, "midi_path", index, None))
    members = sorted(
        r["sample_id"] for r in pq.read_table(d / SAMPLES).to_pylist() if r["augmentation_group_id"] == group
    )
    return f"sample {members[0]}: no MIDI file in its augmentation group {group}"


def column_missing(d: Path) -> str:
    rewrite(d / SAMPLES, lambda t: t.drop_columns(["tempo_bpm"]))
    return "columns: 1 column(s) missing or of a wrong type: labels/samples.parquet: column tempo_bpm missing"


def column_wrong_type(d: Path) -> str:
    rewrite(d / SAMPLES, lambda t: t.set_column(3, "tempo_bpm", pa.array(["fast"] * t.num_rows)))
    return "labels/samples.parquet: column tempo_bpm has type string, which does not convert to int64: sample "


def labels_not_parquet(d: Path) -> str:
    (d / "labels/measures.parquet").write_text("not parquet")
    return "label_files: 1 label file(s) missing or unreadable: labels/measures.parquet: does not parse as Parquet"


def unknown_skill_tier(d: Path) -> str:
    row = first_row(d)
    rewrite(d / SAMPLES, lambda t: set_value(t, "skill_tier", 0, "expert"))
    return f"(or skill_tier_binary not matching skill_tier): {row['sample_id']} skill_tier 'expert'"


def unknown_rudiment_slug(d: Path) -> str:
    row = first_row(d)
    rewrite(d / SAMPLES, lambda t: set_value(t, "rudiment_slug", 0, "paradiddle"))  # PAS: single_paradiddle
    return f"{row['sample_id']} rudiment_slug 'paradiddle'"


def null_dominant_hand(d: Path) -> str:
    row = first_row(d)
    rewrite(d / SAMPLES, lambda t: set_value(t, "dominant_hand", 0, None))
    return f"{row['sample_id']} dominant_hand None"


BREAKAGES = [
    missing_exercises, missing_strokes, missing_splits, splits_not_json, splits_wrong_shape,
    profile_in_two_splits, profile_in_no_split, duplicate_sample_id, no_exercise_scores,
    audio_file_missing, midi_file_missing, audio_unreadable, audio_empty, audio_not_flac, midi_garbage,
    audio_escapes_root, audio_absolute, no_samples, integer_beyond_float,
    audio_path_null, group_without_midi, column_missing, column_wrong_type, labels_not_parquet,
    unknown_skill_tier, unknown_rudiment_slug, null_dominant_hand,
]  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_prepare_refuses(
    breakage: Callable[[Path], str], source_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = breakage(source_copy)
    out = tmp_path / "build" / "sousa"
    assert main(["prepare", str(source_copy), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "sousa-builder prepare: error:" in err
    assert expected in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no staging folder left behind


def test_labels_only_does_not_need_media(source_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(source_copy / "audio")
    shutil.rmtree(source_copy / "midi")
    assert main(["prepare", str(source_copy), "--out", str(tmp_path / "out"), "--configs", "labels_only"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".sousa", "README.md", "auxiliary", "labels_only"]


def test_refuses_an_out_folder_that_is_not_ours(sample_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["prepare", str(sample_dir), "--out", str(out), "--configs", "labels_only"]) == 1
    assert "thesis.tex" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_out_that_is_holds_or_lies_inside_the_source_is_refused(
    source_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writing OUT inside the source would change it (and a second prepare would read the first one's output)."""
    (tmp_path / "link").symlink_to(source_copy)  # a symlink does not hide the source
    cases = [
        (source_copy / "build" / "sousa", source_copy / "build" / "sousa"),
        (source_copy, source_copy),
        (tmp_path, tmp_path),
        (tmp_path / "link" / "out", source_copy / "out"),
    ]
    before = tree_state(tmp_path)
    for out, shown in cases:
        assert main(["prepare", str(tmp_path / "link"), "--out", str(out), "--configs", "labels_only"]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"sousa-builder prepare: error: --out {shown}: is, holds or lies inside the SOUSA directory "
            f"{source_copy}; choose a location outside it\n"
        )
        assert tree_state(tmp_path) == before
