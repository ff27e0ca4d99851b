"""Nothing the user had is lost: what prepare replaces, what it refuses, one run at a time, and what dead runs left.

Each case builds the situation on real files, runs the command as users do (`main([...])`), and asserts the
exit code, the one-line message naming the culprit, and that the user's files are byte-identical afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import sousa_builder.output
from sousa_builder.cli import main
from sousa_builder.manifest import MANIFEST, Manifest
from sousa_builder.sample import make_sample


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def prepare_labels(source: Path, out: Path) -> int:
    return main(["prepare", str(source), "--out", str(out), "--configs", "labels_only"])


def assert_refused(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    err = capsys.readouterr().err
    assert "sousa-builder prepare: error:" in err and "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.mark.parametrize(
    "user_files",
    [
        {"README.md": "my notes"},  # a folder that only looks like an output
        {"README.md": "my notes", "audio/keep.txt": "keep me"},
        {"labels_only/train-00000-of-00001.parquet": "PAR1 not ours"},
    ],
    ids=["readme", "readme-and-config-folder", "shard-name"],
)
def test_refuses_a_folder_without_our_manifest(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], user_files: dict[str, str]
) -> None:
    out = tmp_path / "out"
    for relative, text in user_files.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text)
    before = snapshot(out)
    assert prepare_labels(sample_dir, out) == 1
    assert_refused(capsys, str(out), "no sousa-builder manifest")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging, no lock left


def test_refuses_an_earlier_output_holding_a_file_of_the_users(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    (out / "labels_only" / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert prepare_labels(sample_dir, out) == 1
    assert_refused(capsys, "labels_only/notes.txt: not written by sousa-builder")
    assert snapshot(out) == before


def test_refuses_an_earlier_output_whose_file_changed(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    (out / "README.md").write_text((out / "README.md").read_text() + "\nMy own section.\n")
    before = snapshot(out)
    assert prepare_labels(sample_dir, out) == 1
    assert_refused(capsys, "README.md: ")
    assert snapshot(out) == before


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "journal"])
def test_replaces_an_earlier_output(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    first = Manifest.read(out)
    if not exchange:  # a system without renameat2: two renames, recorded in a journal
        monkeypatch.setattr(sousa_builder.output, "_exchange", lambda a, b: False)
    assert prepare_labels(sample_dir, out) == 0
    assert {p: e.sha256 for p, e in Manifest.read(out).files.items()} == {p: e.sha256 for p, e in first.files.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_second_run_into_the_same_folder_is_refused(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    before = snapshot(out)
    with open(tmp_path / ".out.lock", "w") as lock:  # what a running prepare holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert prepare_labels(sample_dir, out) == 1
    assert_refused(capsys, "another sousa-builder run is writing it now")
    assert snapshot(out) == before


def test_leftovers_of_a_dead_run_are_removed(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    (tmp_path / ".out.partial-k1ll3d").mkdir()  # a run killed while building
    (tmp_path / ".out.partial-k1ll3d" / "big.parquet").write_bytes(b"x" * 1000)
    (tmp_path / ".out.old-k1ll3d").mkdir()  # a run killed before it removed the previous output
    assert prepare_labels(sample_dir, out) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_replacement_cut_between_its_two_renames_is_completed(sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    expected = snapshot(out)
    # The state a run leaves when killed after `out -> retired` and before `staging -> out`:
    shutil.copytree(out, tmp_path / ".out.partial-abc")
    out.rename(tmp_path / ".out.old-abc")
    (tmp_path / ".out.replacing.json").write_text(
        json.dumps({"staging": ".out.partial-abc", "retired": ".out.old-abc"})
    )
    assert prepare_labels(sample_dir, out) == 0
    assert snapshot(out).keys() == expected.keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_folders_follow_the_umask(sample_dir: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert prepare_labels(sample_dir, tmp_path / "out") == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / MANIFEST).exists()


# --- signals: real ones, to real processes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def larger_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough audio (360 samples, ~140 MB) that a prepare with --num-proc 2 runs for seconds."""
    return make_sample(
        tmp_path_factory.mktemp("larger") / "data", profiles=6, rudiments=6, tempos=2, augmentations=5, seed=1
    )


def start_prepare(source: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sousa_builder", "prepare", str(source), "--out", str(out), "--num-proc", "2"]
    command += ["--max-shard-size", "4MB"]  # many shards: the workers are busy when the signal comes
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_shards(out: Path, process: subprocess.Popen) -> None:
    """Until the run has written a shard in its staging folder (bounded: 60 s)."""
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.partial-*/audio/*.parquet")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "prepare wrote no shard in 60 s"
        time.sleep(0.05)


def processes_left(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],  # SIGHUP: the terminal was closed
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_interrupt_with_workers_is_quick_and_clean(
    larger_source: Path, sample_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "out"
    assert prepare_labels(sample_dir, out) == 0
    before = snapshot(out)
    process = start_prepare(larger_source, out)
    wait_for_shards(out, process)
    os.killpg(process.pid, signum)  # a terminal's Ctrl-C goes to the whole foreground process group
    sent = time.monotonic()
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode == code
    assert err.strip().splitlines()[-1] == f"sousa-builder prepare: interrupted: {out} is unchanged"
    assert "Traceback" not in err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging and lock removed
    time.sleep(0.5)
    assert not processes_left(process.pid)  # no worker left behind


@pytest.mark.slow
def test_workers_die_with_a_killed_prepare(larger_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_prepare(larger_source, out)
    wait_for_shards(out, process)
    process.kill()  # SIGKILL: no cleanup runs in the main process
    process.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while processes_left(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_left(process.pid)  # the workers got SIGKILL when their parent died
    assert prepare_labels(larger_source, out) == 0  # the next run removes the dead run's staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_out_folder_that_cannot_be_made_is_one_line(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("mine")
    assert prepare_labels(sample_dir, tmp_path / "a-file" / "out") == 1
    err = assert_refused(capsys, f"--out {tmp_path / 'a-file' / 'out'}: cannot make its folder")
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "a-file").read_text() == "mine"


def test_validate_json_to_a_folder_is_one_line(sample_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["validate", str(sample_dir), "--json", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"sousa-builder validate: error: --json {tmp_path}: is a directory; give a file name\n"
    assert "Traceback" not in err


def test_debug_shows_the_traceback(sample_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("mine")
    command = [sys.executable, "-m", "sousa_builder", "--debug", "validate", str(sample_dir), "--json", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr and "ReportPathError" in run.stderr


def test_killed_publish_runs_leave_no_temporary_folder(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f"sousa-publish-{int(dead.stdout)}-abcd"  # what a SIGKILLed publish --data-dir leaves
    (left / "prepared").mkdir(parents=True)
    plan = tmp_path / "plan"
    assert main(["publish", "alice/sousa", "--data-dir", str(sample_dir), "--dry-run", str(plan)]) == 0
    assert not left.exists() and not list(tmp_path.glob("sousa-publish-*"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a private read-only mount needs root")
@pytest.mark.parametrize("command", ["prepare", "sample"])
def test_a_read_only_filesystem_is_one_line(sample_dir: Path, tmp_path: Path, command: str) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    out = readonly / "out"
    args = [str(sample_dir), "--out", str(out)] if command == "prepare" else [str(out)]
    cli = " ".join([sys.executable, "-m", "sousa_builder", command, *args])
    # In a mount namespace of its own, so the read-only mount is seen by this command alone.
    script = f"mount -t tmpfs -o ro,size=1m tmpfs {readonly} && {cli}"
    run = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sousa-builder {command}: error: ") and "read-only file system" in last, run.stderr
    assert "Traceback" not in run.stderr


def test_sample_onto_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("mine")
    assert main(["sample", str(tmp_path / "a-file")]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"sousa-builder sample: error: OUT {tmp_path / 'a-file'}: exists and is not a folder; choose another"
    )
    assert (tmp_path / "a-file").read_text() == "mine"
