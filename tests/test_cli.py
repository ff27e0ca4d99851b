"""The command line as a user meets it: help, version, progress in a log, messages in its own terms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE_SPLIT_ROWS_TEXT = "24 rows (train 12, validation 6, test 6)"


def sousa_builder(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`sousa-builder ARGS` in a fresh interpreter, its output captured (not a terminal, as in CI)."""
    command = [sys.executable, "-m", "sousa_builder", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_prepare_progress_in_a_log(sample_dir: Path, tmp_path: Path) -> None:
    """Without a terminal: no progress bars redrawn into the log, one line per split and a summary per config."""
    run = sousa_builder("prepare", str(sample_dir), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "%|" not in run.stderr
    lines = run.stderr.splitlines()
    for config in ("audio", "midi_only", "labels_only"):
        for split, rows in (("train", 12), ("validation", 6), ("test", 6)):
            assert any(line.startswith(f"Preparing {config}/{split}: {rows} rows in 1 shard(s), ") for line in lines)
        assert any(line.startswith(f"prepared {config}: {SAMPLE_SPLIT_ROWS_TEXT} in 3 shards, ") for line in lines)
    assert "config       split" in run.stdout  # the table of what was written, on stdout
