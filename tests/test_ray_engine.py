"""`prepare --engine ray`: the shards as Ray tasks give the single-machine output byte for byte.

Runs where Ray is installed (the `ray` extra; CI's newest environment); skipped elsewhere, except the
test of a missing Ray, which runs everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_prepare import tree_bytes

from sousa_builder.cli import main
from sousa_builder.manifest import Manifest
from sousa_builder.prepare import prepare
from sousa_builder.sample import make_sample

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def assert_same_output(found: Path, expected: Path) -> None:
    """Every file but the manifest byte for byte; the manifest's hashes are those of the files."""
    want, got = tree_bytes(expected), tree_bytes(found)
    assert list(got) == list(want)
    assert [name for name in want if got[name] != want[name]] == []
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in got.items()}
    assert {name: entry.sha256 for name, entry in Manifest.read(found).files.items()} == hashes


def test_ray_engine_equals_the_local_prepare(sample_dir: Path, prepared_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    prepare(sample_dir, out, num_proc=2, num_shards=2, engine="ray")  # starts Ray here with 2 CPUs, stops it after
    assert_same_output(out, prepared_dir)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_without_ray_engine_ray_says_how_to_install_it(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    assert main(["prepare", str(sample_dir), "--out", str(tmp_path / "out"), "--engine", "ray"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "sousa-builder prepare: error: --engine ray needs Ray, which is not installed: "
        'pip install -e ".[ray]" in the sousa-builder checkout (it is not on PyPI)\n'
    )
    assert not (tmp_path / "out").exists()


def test_the_single_machine_prepare_does_not_import_ray(sample_dir: Path, tmp_path: Path) -> None:
    # Nor an object-storage backend: those are imported by fsspec for a URL of theirs only.
    code = (
        "import sys; from sousa_builder.cli import main; "
        f"main(['prepare', {str(sample_dir)!r}, '--out', {str(tmp_path / 'out')!r}, '--configs', 'labels_only']); "
        "loaded = {'ray', 's3fs', 'gcsfs', 'adlfs', 'botocore'} & set(sys.modules); "
        "assert not loaded, f'imported {loaded}'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_ray_address_needs_engine_ray(sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", str(sample_dir), "--out", str(tmp_path / "out"), "--ray-address", "auto"])
    assert exit_.value.code == 2


def test_a_ray_address_where_nothing_answers_is_named_in_seconds(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "cannot reach the Hub", and not ray.init retrying for minutes: the address, in one line."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    argv = ["prepare", str(sample_dir), "--out", str(out), "--engine", "ray", "--ray-address", "127.0.0.1:9"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("sousa-builder prepare: error: --ray-address 127.0.0.1:9: cannot reach a Ray cluster at ")
    assert "Hub" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_a_ray_timeout_that_is_not_seconds_is_one_line(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("SOUSA_RAY_TIMEOUT", value)
    out = tmp_path / "out"
    argv = ["prepare", str(sample_dir), "--out", str(out), "--engine", "ray", "--ray-address", "127.0.0.1:9"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (
        err == f"sousa-builder prepare: error: SOUSA_RAY_TIMEOUT={value}: must be a number of seconds greater than 0\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("how", ["address", "auto"])
def test_a_ray_address_that_accepts_and_never_answers_is_named_in_seconds(
    sample_dir: Path, tmp_path: Path, how: str
) -> None:
    """A listener on 127.0.0.1 that accepts connections and never answers (a TCP probe passes it; ray.init would
    wait there for minutes), given as HOST:PORT or found by 'auto' through RAY_ADDRESS. In a fresh process,
    its own session: if the bound is broken, the test ends it instead of hanging. 'auto' sets the bound
    (SOUSA_RAY_TIMEOUT), 'address' keeps the default."""
    pytest.importorskip("ray")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        out = tmp_path / "out"
        command = [sys.executable, "-m", "sousa_builder", "prepare", str(sample_dir), "--out", str(out)]
        command += ["--engine", "ray", "--ray-address", address if how == "address" else "auto"]
        env = {**os.environ, "RAY_ADDRESS": address}
        env.pop("SOUSA_RAY_TIMEOUT", None)
        if how == "auto":
            env["SOUSA_RAY_TIMEOUT"] = "3"
        run = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
        started = time.monotonic()
        try:
            _, err = run.communicate(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
    took = time.monotonic() - started
    given = address if how == "address" else "auto"
    assert run.returncode == 1, err
    assert err.startswith(f"sousa-builder prepare: error: --ray-address {given}: cannot reach "), err
    bound = "3" if how == "auto" else "10"
    assert address in err and f"no answer within {bound} s (SOUSA_RAY_TIMEOUT sets the wait)" in err, err
    assert err.count("\n") == 1, err
    assert took < 40, f"{took:.0f} s"
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_ray_prepare_is_one_line_and_leaves_nothing(
    tmp_path: Path, signal_number: int, code: int
) -> None:
    """Ctrl-C or SIGTERM while Ray tasks write shards: one line, OUT unchanged, the Ray started for the run gone.
    (Ray replaces both handlers in ray.init; a force-cancel of a finishing task aborted the driver.)"""
    pytest.importorskip("ray")
    source = make_sample(tmp_path / "data", profiles=6, rudiments=6, tempos=2, augmentations=5, seed=1)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sousa_builder", "prepare", str(source), "--out", str(out), "--engine", "ray"]
    command += ["--num-proc", "1", "--max-shard-size", "1MB"]  # many shards, one at a time: busy when signalled
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob(".out.partial-*/audio/*.parquet")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "prepare wrote no shard in 180 s"
        time.sleep(0.02)
    ray_processes = ray_children(process.pid)
    assert ray_processes, "no Ray started for the run"
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith(("Preparing", "prepared"))]
    assert lines == [f"sousa-builder prepare: interrupted: {out} is unchanged"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert outliving(ray_processes) == []


@pytest.mark.slow
@pytest.mark.parametrize(("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_ray_while_it_starts_is_one_line_and_leaves_nothing(
    sample_dir: Path, tmp_path: Path, signal_number: int, code: int
) -> None:
    """Ctrl-C or SIGTERM inside ray.init (its GCS is up, the rest starting): ray.init's own SIGTERM handler
    exits with code 15 and no word; here it is one line and 143, and what ray.init started is stopped."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sousa_builder", "prepare", str(sample_dir), "--out", str(out), "--engine", "ray"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not any(b"gcs_server" in command_line(pid) for pid in ray_children(process.pid)):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no GCS started in 180 s"
        time.sleep(0.01)
    ray_processes = ray_children(process.pid)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith(("Preparing", "prepared"))]
    assert lines == [f"sousa-builder prepare: interrupted: {out} is unchanged"]
    assert not out.exists()
    assert outliving(ray_processes) == []


def test_a_sigterm_while_ray_waits_ends_the_wait_as_terminated(sample_dir: Path, tmp_path: Path) -> None:
    """Ray's wait stops on KeyboardInterrupt only; another exception raised by a handler inside it stays pending
    until the wait ends (a task's whole run) and then surfaces as a SystemError: a bug's exit code, 70. The
    task here blocks: its rows file is a FIFO that nobody writes, until a second timer (the bound of a broken
    fix) opens and closes it, which ends the task."""
    pytest.importorskip("ray")
    from sousa_builder.errors import Terminated
    from sousa_builder.labels import LabelBuckets
    from sousa_builder.ray_engine import RayShardWriters
    from sousa_builder.shards import ShardTask

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum)

    os.mkfifo(tmp_path / "rows.arrow")
    labels = LabelBuckets(str(tmp_path), 1000, (), {"strokes": 1.0, "measures": 1.0})
    task = ShardTask("labels_only", str(tmp_path / "rows.arrow"), 0, 1, str(sample_dir), labels, str(tmp_path / "x"))

    def release() -> None:
        with contextlib.suppress(OSError):  # ENXIO: nothing reads it any more
            os.close(os.open(tmp_path / "rows.arrow", os.O_WRONLY | os.O_NONBLOCK))

    previous = signal.signal(signal.SIGTERM, terminate)
    timer = threading.Timer(3, os.kill, (os.getpid(), signal.SIGTERM))
    releaser = threading.Timer(30, release)
    releaser.start()
    try:
        with pytest.raises(Terminated) as raised, RayShardWriters(num_cpus=1) as writers:
            timer.start()
            started = time.monotonic()
            writers.write([task], desc="blocked")
        assert raised.value.signum == signal.SIGTERM and time.monotonic() - started < 15
        assert signal.getsignal(signal.SIGTERM) is terminate
    finally:
        timer.cancel()
        releaser.cancel()
        signal.signal(signal.SIGTERM, previous)


def test_no_process_of_the_runs_own_ray_outlives_it_when_its_gcs_died() -> None:
    """With the GCS of the Ray started for the run killed, ray.shutdown leaves Ray's DashboardAgent and
    RuntimeEnvAgent running (seen with Ray 2.60): the run ends them."""
    pytest.importorskip("ray")
    from sousa_builder.ray_engine import RayShardWriters

    others = set(ray_children(os.getpid()))  # a test server of an earlier test, say
    with RayShardWriters(num_cpus=1):
        ray_processes = [pid for pid in ray_children(os.getpid()) if pid not in others]
        names = {pid: command_line(pid) for pid in ray_processes}
        assert any(b"RuntimeEnvAgent" in name for name in names.values()), names
        os.kill(next(pid for pid, name in names.items() if b"gcs_server" in name), signal.SIGKILL)
    assert outliving(ray_processes, bound=5) == []


def outliving(pids: list[int], bound: float = 15) -> list[int]:
    """Those of `pids` still there after `bound` seconds (a killed process takes a moment to be reaped)."""
    deadline = time.monotonic() + bound
    while (alive := [pid for pid in pids if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def command_line(pid: int) -> bytes:
    """The command line of process `pid` (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def ray_children(pid: int) -> list[int]:
    """The processes started under `pid` (Ray's, once it runs): every descendant, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(found - {pid})


def test_a_failing_shard_task_raises_its_own_error(sample_dir: Path, tmp_path: Path) -> None:
    """A task's error comes back as itself (what the CLI turns into one line), not as Ray's traceback wrapper."""
    pytest.importorskip("ray")
    from sousa_builder.labels import LabelBuckets
    from sousa_builder.ray_engine import RayShardWriters
    from sousa_builder.shards import ShardTask

    labels = LabelBuckets(str(tmp_path), 1000, (), {"strokes": 1.0, "measures": 1.0})
    task = ShardTask("labels_only", str(tmp_path / "missing.arrow"), 0, 1, str(sample_dir), labels, str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError) as raised, RayShardWriters(num_cpus=1) as writers:
        writers.write([task], desc="failing")
    assert type(raised.value) is FileNotFoundError and "missing.arrow" in str(raised.value)


def test_the_local_ray_is_the_runs_own_even_where_ray_address_names_a_cluster(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there: joining it would fail
    expected, out = tmp_path / "expected", tmp_path / "ray"
    prepare(sample_dir, expected, configs=["labels_only"])
    prepare(sample_dir, out, configs=["labels_only"], num_proc=1, engine="ray")
    assert_same_output(out, expected)


def test_what_ray_writes_to_stderr_while_leaving_after_an_error_is_dropped_and_stderr_comes_back() -> None:
    """Ray's C++ core worker writes to file descriptor 2 itself (not through sys.stderr): the block drops that."""
    code = (
        "import os, sys; from sousa_builder.ray_engine import _stderr_to_devnull\n"
        "print('before', file=sys.stderr)\n"
        "with _stderr_to_devnull():\n"
        "    os.write(2, b'task_manager.cc:1545: Failed to push error to driver\\n')\n"
        "    print('python', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stderr.splitlines() == ["before", "after"]
