"""The builder used the three ways users use it: the loading script, the class, and through `prepare`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE_SPLIT_ROWS
from packaging.version import Version
from test_prepare import assert_media_stored_as_given

import sousa_builder.builder
from sousa_builder import Sousa
from sousa_builder.errors import SourceNotFoundError
from sousa_builder.features import features_for
from sousa_builder.labels import LabelBuckets
from sousa_builder.prepare import prepare
from sousa_builder.sample import make_sample
from sousa_builder.source import SousaSource

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "sousa.py"
DATASETS_4 = Version(datasets.__version__) >= Version("4")


def test_builder_class_as_dataset(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    builder = Sousa(config_name="audio", data_dir=str(sample_dir), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    assert list((tmp_path / "tmp").iterdir()) == []  # its label buckets, gone once prepared
    ds = builder.as_dataset()
    assert {split: d.num_rows for split, d in ds.items()} == SAMPLE_SPLIT_ROWS
    assert ds["train"].features == features_for(with_midi=True, with_audio=True)
    row = ds["test"].with_format("arrow")[0].to_pylist()[0]
    source = {r["sample_id"]: r for r in pq.read_table(sample_dir / "labels/samples.parquet").to_pylist()}
    assert row["audio"]["bytes"] == (sample_dir / source[row["sample_id"]]["audio_path"]).read_bytes()


def test_loading_script(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets 3.x runs sousa.py; datasets 4+ refuses every script, as the README says."""
    if DATASETS_4:
        with pytest.raises(RuntimeError, match="Dataset scripts are no longer supported"):
            datasets.load_dataset(str(SCRIPT), "midi_only", data_dir=str(sample_dir))
        return
    ds = datasets.load_dataset(str(SCRIPT), "midi_only", data_dir=str(sample_dir), trust_remote_code=True)
    assert {split: d.num_rows for split, d in ds.items()} == SAMPLE_SPLIT_ROWS
    assert ds["train"].features == features_for(with_midi=True, with_audio=False)
    default = datasets.load_dataset(str(SCRIPT), data_dir=str(sample_dir), split="test", trust_remote_code=True)
    assert default.info.config_name == "audio" and isinstance(default.features["audio"], datasets.Audio)
    # The user's habit: no data_dir, the SOUSA directory named by $SOUSA_DATA_DIR.
    monkeypatch.setenv("SOUSA_DATA_DIR", str(sample_dir))
    labels = datasets.load_dataset(str(SCRIPT), "labels_only", split="validation", trust_remote_code=True)
    assert labels.num_rows == SAMPLE_SPLIT_ROWS["validation"]


def test_data_dir_from_environment(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUSA_DATA_DIR", str(sample_dir))
    builder = Sousa(config_name="labels_only", cache_dir=str(tmp_path / "cache"))
    assert builder.config.data_dir == str(sample_dir)  # part of the cache fingerprint
    builder.download_and_prepare()
    assert builder.as_dataset(split="validation").num_rows == SAMPLE_SPLIT_ROWS["validation"]


def test_no_data_dir_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUSA_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    builder = Sousa(config_name="labels_only", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(SourceNotFoundError) as error:
        builder.download_and_prepare()
    message = str(error.value)
    assert str(tmp_path / "output" / "dataset") in message
    assert "data_dir=" in message and "$SOUSA_DATA_DIR" in message


def test_default_data_dir_is_the_generator_output(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOUSA_DATA_DIR", raising=False)
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "dataset").symlink_to(sample_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    builder = Sousa(config_name="labels_only", cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    assert builder.as_dataset(split="train").num_rows == SAMPLE_SPLIT_ROWS["train"]


def test_flat_media_layout(tmp_path: Path) -> None:
    from sousa_builder.sample import make_sample

    source = make_sample(tmp_path / "flat", profiles=2, rudiments=1, augmentations=2, flat=True)
    prepare(source, tmp_path / "out", configs=["audio"])
    rows = pq.read_table(tmp_path / "out/audio/train-00000-of-00001.parquet").to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["audio"]["bytes"] == (source / "audio" / f"{row['sample_id']}.flac").read_bytes()
        assert row["midi"] is not None


def test_rerun_replaces_previous_output(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(sample_dir, out, configs=["audio", "labels_only"])
    result = prepare(sample_dir, out, configs=["labels_only"])
    assert result.replaced_previous
    assert sorted(p.name for p in out.iterdir()) == [".sousa", "README.md", "auxiliary", "labels_only"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_interrupted_run_keeps_previous_output(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    prepare(sample_dir, out, configs=["midi_only"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_read_media, calls = sousa_builder.builder.read_media_array, []

    def interrupted_read_media(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing the audio config
        return real_read_media(*args)

    monkeypatch.setattr(sousa_builder.builder, "read_media_array", interrupted_read_media)
    with pytest.raises(KeyboardInterrupt):
        prepare(sample_dir, out, configs=["audio"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_num_proc_gives_the_same_rows(sample_dir: Path, prepared_dir: Path, tmp_path: Path) -> None:
    prepare(sample_dir, tmp_path / "one", configs=["labels_only"])  # one process, one shard per split
    single = pq.read_table(tmp_path / "one/labels_only/train-00000-of-00001.parquet")
    parts = sorted((prepared_dir / "labels_only").glob("train-*.parquet"))
    assert len(parts) == 2
    parallel = [row for part in parts for row in pq.read_table(part).to_pylist()]
    assert parallel == single.to_pylist()


def test_labels_nested_a_bucket_at_a_time(sample_dir: Path, prepared_dir: Path, tmp_path: Path) -> None:
    # Buckets of 3 samples, shards of 2, over 2 processes: the rows prepare made with one bucket a split.
    ids = SousaSource.open(sample_dir).rows["sample_id"].combine_chunks()
    labels = LabelBuckets.write(sample_dir, ids, tmp_path / "buckets", samples_per_bucket=3)
    assert labels.num_buckets == 8
    builder = Sousa(
        config_name="labels_only",
        data_dir=str(sample_dir),
        cache_dir=str(tmp_path / "cache"),
        samples_per_shard=2,
        label_buckets=labels,
    )
    builder.download_and_prepare(num_proc=2)
    rows = builder.as_dataset(split="train").with_format("arrow")[:].to_pylist()
    parts = sorted((prepared_dir / "labels_only").glob("train-*.parquet"))
    assert rows == [row for part in parts for row in pq.read_table(part).to_pylist()]
    assert all(row["strokes"] and row["measures"] for row in rows)


CROSS_VERSION_CODE = """
import sys
from sousa_builder.prepare import prepare
from sousa_builder.source import SousaSource
prepare(sys.argv[1], sys.argv[2], configs=["audio", "labels_only"])
"""


def test_prepared_under_the_other_datasets_version(sample_dir: Path, tmp_path: Path, other_python: str) -> None:
    """A folder prepared with the other datasets version (3.6 vs 5.x) reads here with the declared types."""
    out = tmp_path / "other"
    subprocess.run([other_python, "-c", CROSS_VERSION_CODE, str(sample_dir), str(out)], check=True)
    other_version = subprocess.run(
        [other_python, "-c", "import datasets; print(datasets.__version__)"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert (Version(other_version) >= Version("4")) != DATASETS_4, (other_version, datasets.__version__)
    for config, media in (("audio", (True, True)), ("labels_only", (False, False))):
        ds = datasets.load_dataset(str(out), config)
        assert {split: d.num_rows for split, d in ds.items()} == SAMPLE_SPLIT_ROWS
        assert ds["train"].features == features_for(*media)
    assert_media_stored_as_given(out / "audio" / "train-00000-of-00001.parquet")
    print(f"read a folder prepared by datasets {other_version} with datasets {datasets.__version__}", file=sys.stderr)


def test_cache_follows_a_regenerated_source(tmp_path: Path) -> None:
    """SOUSA is regenerated often: the builder's cache is keyed by what the directory holds, not only its path."""
    source = make_sample(tmp_path / "data", profiles=4, rudiments=1, augmentations=1, seed=1)
    cache = str(tmp_path / "cache")

    def build(**options: str) -> Sousa:
        builder = Sousa(config_name="labels_only", data_dir=str(source), cache_dir=cache)
        builder.download_and_prepare(**options)
        return builder

    first = build()
    assert set(first.info.splits) == {"train", "validation", "test"}
    make_sample(source, profiles=3, rudiments=2, augmentations=1, seed=2, overwrite=True)  # no validation profile now
    second = build()
    assert second.cache_dir != first.cache_dir
    # 3 profiles x 2 rudiments: 2 profiles train, 1 test
    assert {split: info.num_examples for split, info in second.info.splits.items()} == {"train": 4, "test": 2}
    rows = second.as_dataset(split="train")["rudiment_slug"]
    assert len(set(rows)) == 2
    assert build().cache_dir == second.cache_dir  # unchanged source: the cache is reused
    forced = build(download_mode="force_redownload")  # failed with UnexpectedSplitsError when keyed by path alone
    assert set(forced.info.splits) == {"train", "test"}


def test_cache_follows_re_rendered_audio(tmp_path: Path) -> None:
    """Upstream re-renders the audio and leaves the labels as they were: the audio config's cache must not serve the
    old audio, even when a file keeps its size and its modification time (copied back with `cp -p`, say)."""
    source = make_sample(tmp_path / "data", profiles=3, rudiments=1, augmentations=1, seed=1)
    cache = str(tmp_path / "cache")

    def first_audio() -> bytes:
        builder = Sousa(config_name="audio", data_dir=str(source), cache_dir=cache)
        builder.download_and_prepare()
        return builder.as_dataset(split="test").with_format("arrow")[0]["audio"][0]["bytes"].as_py()

    before = first_audio()
    path = next(p for p in (source / "audio").rglob("*.flac") if p.read_bytes() == before)
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the re-rendered file: other audio, the same size, the same header
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert first_audio() == bytes(data)


@pytest.mark.skipif(DATASETS_4, reason="datasets 4+ runs no loading script")
def test_loading_script_follows_a_regenerated_source(tmp_path: Path) -> None:
    source = make_sample(tmp_path / "data", profiles=4, rudiments=1, augmentations=1, seed=1)
    options = {"data_dir": str(source), "cache_dir": str(tmp_path / "cache"), "trust_remote_code": True}
    assert datasets.load_dataset(str(SCRIPT), "labels_only", split="train", **options).num_rows == 2
    make_sample(source, profiles=4, rudiments=3, augmentations=1, seed=2, overwrite=True)
    assert datasets.load_dataset(str(SCRIPT), "labels_only", split="train", **options).num_rows == 6
