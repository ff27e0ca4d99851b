"""The benchmark harness runs end to end at a tiny size (the real run: `python benchmarks/run.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_harness_writes_results(tmp_path: Path) -> None:
    # In one process to stay quick (the real run starts a process per step); the worker path is exercised below.
    # 4 profiles x 1 rudiment x 2 augmentations = 8 samples (4N: 32); labels scale: 4 profiles = 4,000 samples.
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--samples", "8", "--repeat", "1"]
    command += ["--label-profiles", "4", "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--in-process"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    ratios = text.split("## Ratios", 1)[1].split("## Absolute", 1)[0]
    for row in (
        "| prepare `audio` / floor (time), N | <= 1.5x |",
        "| prepare `audio` / floor (time), 4N | <= 1.5x |",
        "| usual approach / ours, end to end (time), N | >= 2x |",
        "| usual approach / ours, end to end (time), 4N | >= 2x |",
        "| ours / usual approach (bytes written to disk) |",
        "| peak RSS of prepare `audio`, 4N / N |",
        "| prepare `audio` at 4N, num_proc 1 / 2 (time) | >= 1.6x |",
        "| re-publish unchanged / first publish (time) |",
    ):
        assert row in ratios
    assert "N = 8 samples" in text and "4N = 32" in text
    assert "labels scale, 4,000 samples" in text and "## Machine" in text
    measured = json.loads((tmp_path / "results.json").read_text())
    assert measured["facts"]["republish_sent"] == [0]  # publishing the same folder again sends no file content
    assert {r["seconds"] > 0 for r in measured["runs"]["floor"]} == {True}


def test_worker_runs_one_step_in_its_own_process(sample_dir: Path, tmp_path: Path) -> None:
    arguments = json.dumps({"data": str(sample_dir), "out": str(tmp_path / "floor")})
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--worker", "floor", arguments]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads([line for line in run.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    written = sorted(p.name for p in (tmp_path / "floor").iterdir())
    assert written == ["test.parquet", "train.parquet", "validation.parquet"]
    assert result["bytes"] == sum(p.stat().st_size for p in (tmp_path / "floor").iterdir())
    assert result["seconds"] > 0 and 0 < result["peak_rss"] < 2**31
