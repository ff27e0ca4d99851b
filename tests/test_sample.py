"""`sousa-builder sample` writes a SOUSA directory with real media and the quirks of real output."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from sousa_builder.cli import main
from sousa_builder.features import RUDIMENT_SLUGS, TIERS
from sousa_builder.sample import RUDIMENTS, make_sample, split_profiles
from sousa_builder.source import SousaSource

# Real upstream output in the repository (tests/data/upstream-kits/README.md): two SOUSA source directories.
UPSTREAM_KITS = Path(__file__).resolve().parent / "data" / "upstream-kits"


def test_labels_are_consistent(sample_dir: Path) -> None:
    samples = pq.read_table(sample_dir / "labels/samples.parquet").to_pandas()
    strokes = pq.read_table(sample_dir / "labels/strokes.parquet").to_pandas()
    measures = pq.read_table(sample_dir / "labels/measures.parquet").to_pandas()
    assert len(samples) == 24 and samples["sample_id"].is_unique
    stroke_counts = strokes.groupby("sample_id").size()
    measure_counts = measures.groupby("sample_id").size()
    for row in samples.itertuples():
        assert stroke_counts[row.sample_id] == row.num_strokes
        assert measure_counts[row.sample_id] == row.num_measures
    for (_, sample_measures), n in zip(measures.groupby("sample_id"), stroke_counts, strict=True):
        ranges = sample_measures.sort_values("index")[["stroke_start", "stroke_end"]].to_numpy()
        assert ranges[0][0] == 0 and ranges[-1][1] == n  # the measures tile the strokes
        assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))


def test_quirks_of_real_output(sample_dir: Path) -> None:
    samples = pq.read_table(sample_dir / "labels/samples.parquet")
    assert samples.schema.field("sample_id").type == pa.large_string()
    assert samples.schema.field("aug_bit_depth").type == pa.null()
    assert samples.schema.field("aug_sample_rate").type == pa.null()
    assert pq.ParquetFile(sample_dir / "labels/strokes.parquet").metadata.num_row_groups > 1
    strokes = pq.read_table(sample_dir / "labels/strokes.parquet")
    assert strokes.schema.field("diddle_position").type == pa.float64()
    assert pc.sum(pc.is_nan(strokes["diddle_position"])).as_py() > 0
    # MIDI only for the first augmentation of each group: 12 groups, 24 samples.
    rows = samples.to_pylist()
    assert sum(r["midi_path"] is not None for r in rows) == 12
    assert len({r["augmentation_group_id"] for r in rows}) == 12


def test_media_are_real(sample_dir: Path) -> None:
    samples = pq.read_table(sample_dir / "labels/samples.parquet").to_pylist()
    strokes = pq.read_table(sample_dir / "labels/strokes.parquet").to_pandas().groupby("sample_id").size()
    for row in samples:
        info = sf.info(sample_dir / row["audio_path"])
        assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 2, "PCM_24", "FLAC")
        assert info.duration == pytest.approx(row["duration_sec"] + 0.5, abs=0.01)
        assert row["audio_path"] == f"audio/{row['rudiment_slug']}/{row['sample_id']}.flac"
        if row["midi_path"]:
            midi = mido.MidiFile(sample_dir / row["midi_path"])
            notes = [m for m in midi.tracks[1] if m.type == "note_on" and m.velocity > 0]
            assert (midi.type, midi.ticks_per_beat, len(notes)) == (1, 480, strokes[row["sample_id"]])


def test_splits_by_profile(sample_dir: Path) -> None:
    splits = json.loads((sample_dir / "splits.json").read_text())
    assert [len(splits[k]) for k in ("train_profile_ids", "val_profile_ids", "test_profile_ids")] == [2, 1, 1]


def test_default_sample_holds_every_tier_in_every_split(tmp_path: Path) -> None:
    """A tier classifier trained on the default sample is validated and tested on the tiers it saw; no player
    (profile) is in two splits."""
    assert main(["sample", str(tmp_path / "d"), "--rudiments", "1", "--augmentations", "1"]) == 0
    rows = SousaSource.open(tmp_path / "d").rows.select(["split", "profile_id", "skill_tier"]).to_pylist()
    splits = {split: [r for r in rows if r["split"] == split] for split in ("train", "validation", "test")}
    for split, members in splits.items():
        assert {r["skill_tier"] for r in members} == set(TIERS), split
    profiles = [{r["profile_id"] for r in members} for members in splits.values()]
    assert sum(map(len, profiles)) == len(set().union(*profiles)) == 12


@pytest.mark.parametrize("count", [12, 13, 19, 39, 40, 81, 200])
def test_from_12_profiles_every_split_holds_every_tier(count: int) -> None:
    ids = [f"p{p}" for p in range(count)]
    tier = {f"p{p}": TIERS[p % len(TIERS)] for p in range(count)}  # how make_sample gives the tiers
    cut = split_profiles(ids)
    assert [p for part in cut for p in part] == ids  # each profile in one split
    assert all({tier[p] for p in part} == set(TIERS) for part in cut), cut
    assert len(cut[1]) == len(cut[2]) <= max(4, count // 10)  # train keeps most


def test_fewer_profiles_split_as_before() -> None:
    ids = [f"p{p}" for p in range(11)]
    assert [len(part) for part in split_profiles(ids)] == [9, 1, 1]
    assert [[len(part) for part in split_profiles(ids[:n])] for n in (1, 2, 3, 4)] == [
        [1, 0, 0],
        [1, 0, 1],
        [2, 0, 1],
        [2, 1, 1],
    ]


def test_cli_flat_layout_and_empty_validation(tmp_path: Path) -> None:
    assert main(["sample", str(tmp_path / "d"), "--profiles", "3", "--rudiments", "1", "--flat"]) == 0
    samples = pq.read_table(tmp_path / "d/labels/samples.parquet").to_pylist()
    assert all(r["audio_path"] == f"audio/{r['sample_id']}.flac" for r in samples)
    assert json.loads((tmp_path / "d/splits.json").read_text())["val_profile_ids"] == []


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("precious")
    assert main(["sample", str(keep.parent)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert keep.read_text() == "precious"
    # --overwrite replaces an earlier sample only: never a folder of the user's.
    assert main(["sample", str(keep.parent), "--rudiments", "1", "--overwrite"]) == 1
    assert "no sousa-builder manifest" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"] and keep.read_text() == "precious"
    sample = tmp_path / "sample"
    assert main(["sample", str(sample), "--rudiments", "1"]) == 0
    assert main(["sample", str(sample), "--rudiments", "2", "--overwrite"]) == 0
    assert len({p.parent.name for p in (sample / "audio").rglob("*.flac")}) == 2  # the new sample, 2 rudiments


def test_several_tempos_give_distinct_samples(tmp_path: Path) -> None:
    # 1 profile x 6 rudiments x 5 tempos x 1 augmentation = 30 samples; drawn with replacement, seed 0
    # repeats a tempo within a rudiment, and the sample_id (which holds the tempo) with it.
    out = make_sample(tmp_path / "data", profiles=1, rudiments=6, tempos=5, augmentations=1, seed=0)
    ids = pq.read_table(out / "labels" / "samples.parquet")["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 30
    assert SousaSource.open(out).rows.num_rows == 30
    with pytest.raises(ValueError, match="tempos 1-46"):
        make_sample(tmp_path / "more", tempos=47)


def test_rudiment_slugs_are_upstreams() -> None:
    """The rudiment_slug vocabulary is the 40 slugs real upstream output holds; the sample maker uses some of them."""
    assert len(set(RUDIMENT_SLUGS)) == len(RUDIMENT_SLUGS) == 40
    assert {rudiment.slug for rudiment in RUDIMENTS} <= set(RUDIMENT_SLUGS)
    for kit in ("drums", "piano"):
        upstream = set(pq.read_table(UPSTREAM_KITS / kit / "labels/samples.parquet")["rudiment_slug"].to_pylist())
        assert upstream and upstream <= set(RUDIMENT_SLUGS), kit
