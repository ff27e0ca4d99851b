"""The benchmark harness runs end to end at a tiny size (the real run: `python benchmarks/run.py`)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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
        "| prepare `audio` at 4N, `--engine ray` (starting its own Ray) / `--num-proc 2` (time) | reported |",
        "| prepare `audio` at 4N, `--engine ray` (joining a running 2-CPU Ray) / `--num-proc 2` (time) | <= 1.5x |",
        "| prepare `audio` at 4N, S3 (moto) / local disk, `--num-proc 2` (time) | reported |",
        "| re-publish unchanged / first publish (time) |",
    ):
        assert row in ratios
    assert "N = 8 samples" in text and "4N = 32" in text
    assert "labels scale, 4,000 samples" in text and "## Machine" in text
    # In one process Ray is not run: it needs a network namespace, so a process, of its own (covered below).
    for target in ("reported", "<= 1.5x"):  # starting its own Ray, and joining a running one
        assert f"| {target} | not measured (in-process: Ray runs in a network namespace" in ratios
    assert "## Past one machine" in text and "**The driver holds** in memory:" in text
    measured = json.loads((tmp_path / "results.json").read_text())
    assert measured["facts"]["republish_sent"] == [0]  # publishing the same folder again sends no file content
    assert {r["seconds"] > 0 for r in measured["runs"]["floor"]} == {True}
    assert measured["facts"]["driver"]["samples"] == 4000 and measured["facts"]["driver"]["buckets"] == 4
    if importlib.util.find_spec("moto") and importlib.util.find_spec("s3fs"):  # S3 runs in-process too
        assert len(measured["runs"]["prepare_audio_4n_s3"]) == 1 and measured["facts"]["s3_not_measured"] is None
        assert measured["facts"]["listing"]["objects"] == 48  # 32 FLAC and 16 MIDI files
        assert "S3 (moto) / local disk, `--num-proc 2` (time) | reported | not measured" not in ratios


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


@pytest.mark.slow
@pytest.mark.parametrize("step", ["prepare_ray", "prepare_ray_joined"])
def test_the_ray_steps_run_in_a_network_namespace_of_their_own(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Ray started for the run, or a cluster started before the step (joined); nothing of it left after."""
    pytest.importorskip("ray")
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs root, unshare and ip: the Ray step runs in a network namespace of its own")
    spec = importlib.util.spec_from_file_location("benchmarks_run", REPO / "benchmarks" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    harness = bench.Harness(tmp_path, dict(os.environ))
    out = tmp_path / "out"
    before = ray_processes()
    result = harness.run("ray", step, data=str(sample_dir), out=str(out), configs=["audio"], engine="ray")
    assert sorted(p.name for p in (out / "audio").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert result["shard_files"] == 3 and {"ray_start", "ray_stop", "shards"} <= set(result["phases"])
    # joined: prepare was pointed at the head started before it (not left to start a Ray of its own)
    assert result["ray_address"] == ("127.0.0.1:6379" if step == "prepare_ray_joined" else None)
    assert ray_processes() - before == set()


def ray_processes() -> set[int]:
    """The ids of this machine's Ray heads and nodes (their GCS servers and raylets)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if b"gcs_server" in command or b"raylet" in command:
            found.add(int(entry.name))
    return found
