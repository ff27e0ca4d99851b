"""`prepare` output: the Hub layout, its README, and rows equal to the source, read back with `datasets`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLE_SPLIT_ROWS

from sousa_builder.builder import config_names
from sousa_builder.features import FLAT_COLUMNS, RUDIMENT_SLUGS, TIERS, features_for
from sousa_builder.manifest import Manifest
from sousa_builder.shards import PYARROW_HAS_CDC
from sousa_builder.source import SPLIT_KEYS

CONFIGS = {"audio": (True, True), "midi_only": (True, False), "labels_only": (False, False)}


def read_split(prepared: Path, config: str, split: str) -> pa.Table:
    """All shards of one split, read with pyarrow (no decoding, bytes as stored)."""
    return pa.concat_tables(pq.read_table(f) for f in sorted((prepared / config).glob(f"{split}-*.parquet")))


def card_yaml(prepared: Path) -> dict:
    return yaml.safe_load((prepared / "README.md").read_text().split("---")[1])


def source_rows(source: Path) -> dict[str, dict]:
    return {r["sample_id"]: r for r in pq.read_table(source / "labels/samples.parquet").to_pylist()}


def test_hub_layout(prepared_dir: Path) -> None:
    files = sorted(str(p.relative_to(prepared_dir)) for p in prepared_dir.rglob("*") if p.is_file())
    # num_shards=2: every split in 2 files, whatever its size.
    expected = [f"{c}/{s}-0000{i}-of-00002.parquet" for c in CONFIGS for s in SPLIT_KEYS for i in range(2)]
    assert files == sorted(
        [".sousa/manifest.json", "README.md", "auxiliary/measures.parquet", "auxiliary/strokes.parquet", *expected]
    )
    assert not [p for p in prepared_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_readme_configs_and_dataset_info(prepared_dir: Path) -> None:
    card = card_yaml(prepared_dir)
    configs = {c["config_name"]: c for c in card["configs"]}
    assert set(configs) == set(CONFIGS) and configs["audio"].get("default") is True
    assert not any(configs[name].get("default") for name in ("midi_only", "labels_only"))
    assert configs["midi_only"]["data_files"] == [
        {"split": s, "path": f"midi_only/{s}-*"} for s in ("train", "validation", "test")
    ]
    assert (card["license"], card["language"], card["pretty_name"], card["size_categories"]) == (
        "mit",
        ["en"],
        "SOUSA",
        ["n<1K"],
    )
    assert card["task_categories"] == ["audio-classification", "tabular-classification", "tabular-regression"]
    assert {"drum-rudiments", "midi", "synthetic"} <= set(card["tags"])
    infos = {i["config_name"]: i for i in card["dataset_info"]}
    for name in CONFIGS:
        assert {s["name"]: s["num_examples"] for s in infos[name]["splits"]} == SAMPLE_SPLIT_ROWS
        assert infos[name]["download_size"] == sum(f.stat().st_size for f in (prepared_dir / name).iterdir())
    features = {name: {f["name"]: f for f in info["features"]} for name, info in infos.items()}
    assert set(features["labels_only"]) == {*FLAT_COLUMNS, "strokes", "measures"}
    assert features["labels_only"]["tempo_bpm"] == {"name": "tempo_bpm", "dtype": "int64"}
    assert features["midi_only"]["midi"] == {"name": "midi", "dtype": "binary"}
    assert features["audio"]["audio"] == {"name": "audio", "dtype": {"audio": {"sampling_rate": 44100}}}
    strokes = features["labels_only"]["strokes"]
    # datasets 4+ writes a list of structs as `list:`, 3.x as `sequence:`.
    assert {"name": "hand", "dtype": "string"} in strokes.get("list", strokes.get("sequence"))
    # And datasets reads back exactly the declared features of each config.
    for name, (with_midi, with_audio) in CONFIGS.items():
        builder = datasets.load_dataset_builder(str(prepared_dir), name)
        assert builder.info.features == features_for(with_midi, with_audio), name


def test_card_body_numbers_come_from_the_data(prepared_dir: Path) -> None:
    body = (prepared_dir / "README.md").read_text().split("---", 2)[2]
    assert "| `audio` (default) | Labels + the FLAC recording (Audio) + the MIDI file bytes. | 12 | 6 | 6 |" in body
    assert "| validation | 6 | 6 | 6 |" in body
    assert "| `audio` | Audio (44100 Hz) |" in body and "| `diddle_position` | int64 |" in body
    audio_mb = sum(f.stat().st_size for f in (prepared_dir / "audio").iterdir()) / 1e6
    assert f"{audio_mb:,.1f} MB" in body


def test_card_counts_rows_per_split_tier_and_rudiment(prepared_dir: Path, sample_dir: Path) -> None:
    """The card's count tables hold what the source says: rows per split and skill tier, per split and rudiment."""
    splits = json.loads((sample_dir / "splits.json").read_text())
    split_of = {profile: split for split, key in SPLIT_KEYS.items() for profile in splits[key]}
    rows = source_rows(sample_dir).values()
    body = (prepared_dir / "README.md").read_text().split("---", 2)[2]
    for column, labels in (("skill_tier", TIERS), ("rudiment_slug", RUDIMENT_SLUGS[:1] + RUDIMENT_SLUGS[5:6])):
        counts = Counter((row[column], split_of[row["profile_id"]]) for row in rows)
        assert f"| {column} | train | validation | test | total |" in body
        for label in labels:
            per_split = [counts[label, split] for split in SPLIT_KEYS]
            assert f"| {label} | {' | '.join(map(str, per_split))} | {sum(per_split)} |" in body, label
        assert "| **total** | 12 | 6 | 6 | 24 |" in body
    # Every tier, even one without rows; only the rudiments that have rows (3 here).
    assert "| professional | 0 | 0 | 6 | 6 |" in body and "| beginner | 6 | 0 | 0 | 6 |" in body
    assert "| flam |" not in body and "3 of the 40 rudiments have rows." in body


@pytest.mark.parametrize("config", config_names())
def test_load_dataset_rows_and_types(prepared_dir: Path, config: str) -> None:
    ds = datasets.load_dataset(str(prepared_dir), config)
    assert {split: d.num_rows for split, d in ds.items()} == SAMPLE_SPLIT_ROWS
    assert ds["train"].features == features_for(*CONFIGS[config])
    assert "audio_path" not in ds["train"].column_names and "midi_path" not in ds["train"].column_names
    # Same rows, same order in every config: sorted by sample_id.
    ids = ds["train"]["sample_id"]
    assert list(ids) == sorted(ids) == read_split(prepared_dir, "labels_only", "train")["sample_id"].to_pylist()


@pytest.mark.parametrize("config", config_names())
def test_streaming(prepared_dir: Path, config: str) -> None:
    stream = datasets.load_dataset(str(prepared_dir), config, split="test", streaming=True)
    if config == "audio":  # decoding needs torchcodec (datasets 4+) or librosa (3.x); not our concern here
        stream = stream.cast_column("audio", datasets.Audio(sampling_rate=44100, decode=False))
    rows = list(stream)
    assert len(rows) == SAMPLE_SPLIT_ROWS["test"]
    assert isinstance(rows[0]["strokes"], list) and isinstance(
        rows[0]["strokes"][0]["diddle_position"], (int, type(None))
    )


def test_media_bytes_identical_to_source(prepared_dir: Path, sample_dir: Path) -> None:
    source = source_rows(sample_dir)
    groups = {}
    for row in source.values():
        if row["midi_path"]:
            groups[row["augmentation_group_id"]] = row["midi_path"]
    checked = 0
    for split in SPLIT_KEYS:
        for row in read_split(prepared_dir, "audio", split).to_pylist():
            src = source[row["sample_id"]]
            assert row["audio"]["bytes"] == (sample_dir / src["audio_path"]).read_bytes()
            assert row["audio"]["path"] == Path(src["audio_path"]).name
            # Every row has MIDI: its own file, or the one of its augmentation group.
            assert row["midi"] == (sample_dir / groups[src["augmentation_group_id"]]).read_bytes()
            checked += 1
    assert checked == 24
    midi_only = read_split(prepared_dir, "midi_only", "train").to_pylist()
    audio = read_split(prepared_dir, "audio", "train").to_pylist()
    assert [r["midi"] for r in midi_only] == [r["midi"] for r in audio]


def test_class_labels(prepared_dir: Path, sample_dir: Path) -> None:
    """The classification targets are ClassLabels named by their documented vocabularies: ids in the shards,
    names through `features`, and `train_test_split` can stratify on them."""
    ds = datasets.load_dataset(str(prepared_dir), "labels_only", split="train")
    features = ds.features
    assert features["skill_tier"].names == ["beginner", "intermediate", "advanced", "professional"]
    assert features["skill_tier_binary"].names == ["novice", "skilled"]
    assert features["dominant_hand"].names == ["right", "left"]
    assert len(features["rudiment_slug"].names) == 40 and features["rudiment_slug"].str2int("flam") == 19
    source = source_rows(sample_dir)
    for row in ds:
        for column in ("skill_tier", "skill_tier_binary", "dominant_hand", "rudiment_slug"):
            assert features[column].int2str(row[column]) == source[row["sample_id"]][column], column
    halves = ds.train_test_split(test_size=0.5, stratify_by_column="skill_tier", seed=0)
    for part in halves.values():  # train holds 6 beginner and 6 intermediate rows: 3 of each in either half
        assert sorted(part["skill_tier"]) == [0, 0, 0, 1, 1, 1]
    body = (prepared_dir / "README.md").read_text().split("---", 2)[2]
    assert "| `skill_tier` | beginner, intermediate, advanced or professional. |" not in body
    assert "| `skill_tier` | ClassLabel (4 classes) |" in body
    assert "| `skill_tier` | 0: beginner, 1: intermediate, 2: advanced, 3: professional |" in body
    assert "19: flam, 20: flam_accent" in body


def test_nested_labels_equal_source_tables(prepared_dir: Path, sample_dir: Path) -> None:
    strokes = pq.read_table(sample_dir / "labels/strokes.parquet").to_pandas()
    measures = pq.read_table(sample_dir / "labels/measures.parquet").to_pandas()
    rows = read_split(prepared_dir, "labels_only", "train").to_pylist()
    for row in rows:
        want = strokes[strokes.sample_id == row["sample_id"]].sort_values("index").drop(columns="sample_id")
        got = row["strokes"]
        assert [s["index"] for s in got] == list(range(len(want))) == list(want["index"])
        for got_stroke, want_stroke in zip(got, want.to_dict("records"), strict=True):
            for key, value in want_stroke.items():
                if value != value:  # NaN in the source is null in the output
                    assert got_stroke[key] is None, key
                else:
                    assert got_stroke[key] == value, key
        want_m = measures[measures.sample_id == row["sample_id"]].sort_values("index")
        assert [(m["stroke_start"], m["stroke_end"]) for m in row["measures"]] == list(
            zip(want_m.stroke_start, want_m.stroke_end)
        )


def test_nullable_columns(prepared_dir: Path) -> None:
    table = read_split(prepared_dir, "labels_only", "train")
    assert table.schema.field("aug_bit_depth").type == pa.int64()
    assert table["aug_bit_depth"].null_count == table.num_rows
    rows = table.to_pylist()
    # flam_quality exists only for rudiments with flams; the 3 sample rudiments have none.
    assert all(r["flam_quality"] is None for r in rows)
    assert all(r["diddle_quality"] is not None for r in rows if r["rudiment_slug"] == "double_stroke_open_roll")
    diddles = [s["diddle_position"] for r in rows for s in r["strokes"]]
    assert set(diddles) == {None, 0, 1}
    stroke_type = table.schema.field("strokes").type.value_type
    assert stroke_type.field("diddle_position").type == pa.int64()


def assert_media_stored_as_given(audio_shard: Path) -> None:
    """FLAC bytes are not compressed a second time and sit in small row groups (<= 100 rows)."""
    metadata = pq.ParquetFile(audio_shard).metadata
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        assert row_group.num_rows <= 100
        columns = {row_group.column(c).path_in_schema: row_group.column(c) for c in range(row_group.num_columns)}
        assert columns["audio.bytes"].compression == "UNCOMPRESSED"
        assert "RLE_DICTIONARY" not in columns["audio.bytes"].encodings
        assert columns["sample_id"].compression == "SNAPPY"


def test_media_stored_as_given(prepared_dir: Path) -> None:
    for shard in (prepared_dir / "audio").iterdir():
        assert_media_stored_as_given(shard)


@pytest.mark.skipif(not PYARROW_HAS_CDC, reason="pyarrow < 21 writes no content-defined chunks")
def test_flac_shards_without_content_defined_chunking(prepared_dir: Path) -> None:
    # FLAC bytes stored as they are dedup on the Hub's Xet storage without CDC (benchmarks/dedup.py);
    # the compressed label columns keep datasets' default, CDC.
    for config in config_names():
        metadata = pq.ParquetFile(next((prepared_dir / config).glob("train-*.parquet"))).metadata.metadata
        assert (b"content_defined_chunking" in metadata) == (config != "audio"), config


def test_auxiliary_tables(prepared_dir: Path, sample_dir: Path) -> None:
    strokes = pq.read_table(prepared_dir / "auxiliary/strokes.parquet")
    source = pq.read_table(sample_dir / "labels/strokes.parquet")
    assert strokes.num_rows == source.num_rows
    assert strokes.schema.field("buzz_count").type == pa.int64()
    keys = list(zip(strokes["sample_id"].to_pylist(), strokes["index"].to_pylist()))
    assert keys == sorted(keys)


def test_empty_split_left_out(tmp_path: Path) -> None:
    from sousa_builder.prepare import prepare
    from sousa_builder.sample import make_sample

    source = make_sample(tmp_path / "data", profiles=3, rudiments=1, augmentations=1)  # no validation profile
    result = prepare(source, tmp_path / "out", configs=["labels_only"])
    assert list(result.configs["labels_only"]) == ["train", "test"]
    card = card_yaml(tmp_path / "out")
    assert [d["split"] for d in card["configs"][0]["data_files"]] == ["train", "test"]
    ds = datasets.load_dataset(str(tmp_path / "out"), "labels_only")
    assert {s: d.num_rows for s, d in ds.items()} == {"train": 2, "test": 1}


# prepare in a fresh interpreter with one multiprocessing start method: the user's choice, or the platform default
# (spawn on macOS; Python 3.14 makes forkserver the default on Linux).
PREPARE_WITH_START_METHOD = """
import multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1])
from sousa_builder.prepare import prepare
prepare(sys.argv[2], sys.argv[3], num_proc=int(sys.argv[4]), num_shards=2)
"""


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a prepared folder but its manifest (which records when each file was written)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != ".sousa")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


@pytest.mark.parametrize(
    ("start_method", "num_proc"),
    [
        ("fork", 2),
        ("spawn", 1),
        pytest.param("spawn", 2, marks=pytest.mark.slow),
        pytest.param("forkserver", 2, marks=pytest.mark.slow),
    ],
)
def test_prepare_is_deterministic(
    sample_dir: Path, prepared_dir: Path, tmp_path: Path, start_method: str, num_proc: int
) -> None:
    """The same source gives byte-identical shards and README (what makes re-publishing a no-op), whatever the
    number of processes and however they are started."""
    again = tmp_path / "again"
    code = [sys.executable, "-c", PREPARE_WITH_START_METHOD, start_method, str(sample_dir), str(again), str(num_proc)]
    subprocess.run(code, check=True, capture_output=True)
    expected = tree_bytes(prepared_dir)
    found = tree_bytes(again)
    assert list(found) == list(expected)
    assert [name for name in expected if found[name] != expected[name]] == []
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in found.items()}
    assert {name: entry.sha256 for name, entry in Manifest.read(again).files.items()} == hashes
