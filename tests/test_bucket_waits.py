"""Every wait for an object store has a bound: an S3 endpoint on 127.0.0.1 that accepts connections and never
answers ends prepare, validate and publish in one line naming the URL and the endpoint; Ctrl-C and SIGTERM are
obeyed at once while a request waits; the storage clients' INFO lines stay out of stderr."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import FakeHub, hub_fixture  # noqa: F401
from s3_server import ENV

from sousa_builder.cli import main
from sousa_builder.errors import StorageError
from sousa_builder.storage import DEFAULT_STORAGE_TIMEOUT, STORAGE_ATTEMPTS, bounded_options

pytest.importorskip("s3fs")
URL = "s3://bucket/sousa"


class SilentEndpoint:
    """A server on 127.0.0.1 that accepts every connection, reads nothing and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentEndpoint]:
    """The silent endpoint, in the AWS environment the way a user sets it (no other credentials, no metadata)."""
    endpoint = SilentEndpoint()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "SOUSA_STORAGE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**ENV, "AWS_ENDPOINT_URL": endpoint.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sousa_builder.storage._FILESYSTEMS", {})
    yield endpoint
    endpoint.close()


@pytest.mark.parametrize(
    "command",
    [
        ["prepare", "s3://bucket/source", "--out", "{tmp}/out"],
        ["validate", "--prepared", URL],
        ["publish", "alice/sousa", "--prepared", URL, "--yes"],
    ],
    ids=["prepare", "validate", "publish"],
)
def test_a_silent_endpoint_ends_the_run_in_one_line_naming_it(
    hub: FakeHub,
    silent: SilentEndpoint,
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOUSA_STORAGE_TIMEOUT", "1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    command = [part.format(tmp=tmp_path) for part in command]
    started = time.monotonic()
    with watchdog(60):  # an unbounded wait fails the test instead of hanging it
        assert main(command) == 1
    took = time.monotonic() - started
    err = capsys.readouterr().err
    url = command[1] if command[0] == "prepare" else URL
    assert err.startswith(f"sousa-builder {command[0]}: error: cannot reach the storage of {url} ("), err
    assert "127.0.0.1:" in err and "no answer within 1 s, 2 tries: SOUSA_STORAGE_TIMEOUT sets the wait" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert silent.accepted, "the endpoint was never asked"
    assert took < 30, f"{took:.0f} s for waits of 1 s"  # 2 tries of 1 s a request, a few requests at most
    assert not (tmp_path / "out").exists()
    assert not hub.requests_for("create_repo", "preupload", "commit")


def test_the_bounds_have_defaults_of_a_minute_at_most_and_refuse_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOUSA_STORAGE_TIMEOUT", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    config = bounded_options("s3")["config_kwargs"]
    assert config["connect_timeout"] == config["read_timeout"] == DEFAULT_STORAGE_TIMEOUT
    assert config["retries"]["max_attempts"] == STORAGE_ATTEMPTS
    assert DEFAULT_STORAGE_TIMEOUT * STORAGE_ATTEMPTS <= 60
    assert bounded_options("memory") == {}
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv("SOUSA_STORAGE_TIMEOUT", bad)
        with pytest.raises(StorageError, match=f"SOUSA_STORAGE_TIMEOUT={bad}: must be a number of seconds"):
            bounded_options("s3")


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise in the main thread when the block has not ended after `seconds` (the CLI reports it as a crash)."""

    def expired(signum: int, frame: object) -> None:
        raise RuntimeError(f"still waiting after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(silent: SilentEndpoint, **env: str) -> subprocess.Popen[str]:
    """`validate --prepared URL` in a fresh interpreter (its own logging, as a user runs it), against `silent`."""
    environment = {**os.environ, **ENV, "AWS_ENDPOINT_URL": silent.url, **env}
    command = [sys.executable, "-m", "sousa_builder", "validate", "--prepared", URL]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_request(silent: SilentEndpoint, run: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not silent.accepted and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert silent.accepted, f"no request reached the endpoint: {run.poll()=}"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "term"])
def test_ctrl_c_and_sigterm_are_obeyed_at_once_while_a_request_waits(
    silent: SilentEndpoint, signum: int, code: int
) -> None:
    run = _run(silent)  # the default bound: the request would wait for a minute
    try:
        _wait_for_request(silent, run)
        time.sleep(0.5)  # inside the wait for an answer
        run.send_signal(signum)
        started = time.monotonic()
        _, err = run.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        run.kill()
    assert run.returncode == code, err
    assert took < 5, f"{took:.1f} s after the signal"
    assert err == "sousa-builder validate: interrupted: nothing was changed\n" or err.count("\n") == 1, err


def test_the_storage_clients_info_lines_stay_out_of_stderr(silent: SilentEndpoint) -> None:
    """botocore says "Found credentials in environment variables" at INFO: the error is one line, alone."""
    run = _run(silent, SOUSA_STORAGE_TIMEOUT="1", AWS_MAX_ATTEMPTS="1")
    try:
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 1
    assert err.startswith(f"sousa-builder validate: error: cannot reach the storage of {URL} ("), err
    assert err.count("\n") == 1, err
