"""Decoding the `audio` config without torch: `sousa_builder.decode` / `decoded`, on datasets 3.6 and 5.x."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import SAMPLE_SPLIT_ROWS
from packaging.version import Version

from sousa_builder import decode, decoded

DATASETS_4 = Version(datasets.__version__) >= Version("4")


def source_audio(sample_dir: Path) -> dict[str, Path]:
    rows = pq.read_table(sample_dir / "labels/samples.parquet").to_pylist()
    return {row["sample_id"]: sample_dir / row["audio_path"] for row in rows}


def assert_decoded_as_source(row: dict, files: dict[str, Path]) -> None:
    expected, rate = sf.read(files[row["sample_id"]], dtype="float32")
    audio = row["audio"]
    assert audio["sampling_rate"] == rate == 44_100
    assert audio["array"].dtype == np.float32 and audio["array"].shape == expected.shape
    assert np.array_equal(audio["array"], expected)
    assert audio["path"] == files[row["sample_id"]].name


def test_with_transform_decodes_every_row(prepared_dir: Path, sample_dir: Path) -> None:
    files = source_audio(sample_dir)
    ds = datasets.load_dataset(str(prepared_dir), "audio", split="test")
    ds = ds.cast_column("audio", datasets.Audio(decode=False)).with_transform(decode)
    for index in range(ds.num_rows):
        assert_decoded_as_source(ds[index], files)
    batch = ds[:2]  # a slice is a batch: the same function decodes each value
    assert [a["array"].shape for a in batch["audio"]] == [sf.read(files[i])[0].shape for i in batch["sample_id"]]
    assert ds.features["skill_tier"].names[ds[0]["skill_tier"]] == "professional"


def test_decode_one_row(prepared_dir: Path, sample_dir: Path) -> None:
    ds = datasets.load_dataset(str(prepared_dir), "audio", split="train")
    row = ds.cast_column("audio", datasets.Audio(decode=False))[0]
    assert_decoded_as_source(decode(row), source_audio(sample_dir))


def test_decoded_dataset_dict_and_stream(prepared_dir: Path, sample_dir: Path) -> None:
    files = source_audio(sample_dir)
    ds = decoded(datasets.load_dataset(str(prepared_dir), "audio"))
    assert {split: d.num_rows for split, d in ds.items()} == SAMPLE_SPLIT_ROWS
    assert_decoded_as_source(ds["validation"][0], files)
    stream = decoded(datasets.load_dataset(str(prepared_dir), "audio", split="test", streaming=True))
    rows = list(stream)
    assert len(rows) == SAMPLE_SPLIT_ROWS["test"]
    for row in rows:
        row["audio"]["array"] = np.asarray(row["audio"]["array"])
        assert_decoded_as_source(row, files)


def test_decode_refuses_decoded_audio() -> None:
    with pytest.raises(ValueError, match=r"cast_column\('audio', Audio\(decode=False\)\)"):
        decode({"audio": {"path": "x.flac", "array": np.zeros(3), "sampling_rate": 44_100}})
    with pytest.raises(ValueError, match="x.flac: cannot decode it"):
        decode({"audio": {"path": "x.flac", "bytes": b"not a flac"}})


NO_TORCH = """
import sys
import datasets
from sousa_builder import decoded
row = decoded(datasets.load_dataset(sys.argv[1], "audio", split="test"))[0]
assert row["audio"]["array"].shape[0] > 0
print(sorted(name for name in ("torch", "torchcodec", "librosa") if name in sys.modules))
"""


def test_decoding_imports_neither_torch_nor_librosa(prepared_dir: Path) -> None:
    run = subprocess.run([sys.executable, "-c", NO_TORCH, str(prepared_dir)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


@pytest.mark.skipif(DATASETS_4, reason="datasets 4+ decodes Audio with torchcodec (torch + FFmpeg), not installed")
def test_native_audio_decoding_on_datasets_3(prepared_dir: Path, sample_dir: Path) -> None:
    """datasets 3.x decodes `Audio` itself with soundfile + librosa, which the `script` extra installs."""
    if importlib.util.find_spec("librosa") is None:
        pytest.fail("librosa is not installed: the `script` extra (pyproject.toml) must install it for datasets 3.x")
    files = source_audio(sample_dir)
    row = datasets.load_dataset(str(prepared_dir), "audio", split="test")[0]
    stereo, rate = sf.read(files[row["sample_id"]], dtype="float32")
    assert row["audio"]["sampling_rate"] == rate
    assert np.allclose(row["audio"]["array"], stereo.mean(axis=1), atol=1e-6)  # datasets' Audio is mono by default


def test_card_decoding_snippet_runs(prepared_dir: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The card's soundfile-only snippet, run as a reader of the card would (only the folder filled in)."""
    card = (prepared_dir / "README.md").read_text()
    section = card.split("### Decoding the audio", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0].replace("<repo or folder>", str(prepared_dir))
    namespace: dict = {}
    exec(compile(code, "card snippet", "exec"), namespace)
    frames = sf.info(source_audio(sample_dir)[namespace["ds"][0]["sample_id"]]).frames
    assert capsys.readouterr().out.split("\n")[:2] == [f"({frames}, 2) 44100", "44100"]
    stored = namespace["ds"].with_format(None)[0]  # the transform off: the FLAC bytes
    assert np.array_equal(namespace["ds"][0]["audio"]["array"], decode(stored)["audio"]["array"])
