"""`prepare --engine ray`: the shards of every config written as Ray tasks, on this machine or a Ray cluster.

Each shard is a Ray core task running `shards.write_shard`, the function the local pool runs, on the same
`ShardTask`: it reads the split's rows and the label buckets from the staging folder and writes its Parquet
file straight into it. So the output is byte-identical to the single-machine prepare's, and a task retried
after its worker died writes the same file again. Every node must see the staging folder (next to OUT) and
the SOUSA directory at the same paths: this machine, or a filesystem shared by the cluster; or both are URLs
in object storage (`storage`) that every node reaches with its own credentials, and the staging folder is a
prefix of OUT's there.

Ray is an optional extra (`pip install -e ".[ray]"` in the checkout), imported here only, when a run asks for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from datasets.utils.tqdm import tqdm

from .errors import RayConnectionError, RayNotInstalledError, Terminated
from .shards import ShardResult, ShardTask, log_written, write_shard
from .storage import is_url, seconds_setting

logger = logging.getLogger(__name__)

# Retries of a shard whose worker process (or node) died; the rewrite is identical, so a retry is harmless.
MAX_RETRIES = 3
INSTALL_HINT = 'pip install -e ".[ray]" in the sousa-builder checkout (it is not on PyPI)'
RAY_TIMEOUT_VARIABLE = "SOUSA_RAY_TIMEOUT"
DEFAULT_RAY_TIMEOUT = 10.0  # seconds to reach the head at --ray-address HOST:PORT, and for it to answer
# A gRPC server (a Ray head's GCS) answers the HTTP/2 connection preface with a SETTINGS frame (type 4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def import_ray() -> Any:
    """The `ray` module, imported only when a run asks for it.

    Returns:
        The `ray` module.

    Raises:
        [`~errors.RayNotInstalledError`]:
            Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError:
        raise RayNotInstalledError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayShardWriters:
    """Writes shards as Ray tasks; the interface of `shards.ShardWriters`, plus `submit`.

    `address` None starts Ray on this machine (with `num_cpus` CPUs, default all) for the run and stops it
    after; "auto" or a head's "HOST:PORT" joins a running cluster (a Ray this process already joined is
    used as it is, and left connected). `submit` hands every shard of the
    run to Ray at once (so that small splits do not wait for each other); `write` then collects one
    split's, with one progress bar over all the shards. If the block is left by an exception (Ctrl-C
    included), the driver leaves Ray, which ends the tasks still running.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self._ray: Any = None
        self._remote: Any = None
        self._pending: dict[str, Any] = {}  # shard path -> its task's ObjectRef
        self._bar: tqdm | None = None
        self._started_ray = False
        self._own_processes: dict[int, str] = {}  # pid -> start time: what the Ray started here runs
        self._other_processes: dict[int, str] = {}  # this process's children from before it started Ray
        self._cluster_setting: bool | None = None  # Ray's own, while the Ray started here runs

    def __enter__(self) -> RayShardWriters:
        ray = self._ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine unless the user asks
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
            if self.address is None:
                # "local": a Ray of this run's own, even where $RAY_ADDRESS or an earlier `ray start` names a cluster.
                options.update(address="local", num_cpus=self.num_cpus, _node_ip_address="127.0.0.1")
                # Nor is its address asked of the network: where Ray has no node (after an interrupt, say) it
                # connects to 8.8.8.8:53 to learn this machine's IP, and logs a warning where that fails.
                self._cluster_setting = ray._private.ray_constants.ENABLE_RAY_CLUSTER
                ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
                # Its one message is that the Ray started here requires a token (made for the run): no news.
                logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            self._other_processes = _descendants()
            try:
                with _own_signal_handlers(), _joining(self.address):
                    ray.init(**{"address": self.address, **options})
            except BaseException as stopped:  # Ctrl-C or SIGTERM mid-way included: stop what ray.init started
                with _stderr_to_devnull():
                    ray.shutdown()
                if self._cluster_setting is not None:
                    ray._private.ray_constants.ENABLE_RAY_CLUSTER = self._cluster_setting
                if isinstance(stopped, SystemExit) and stopped.code == signal.SIGTERM:
                    raise Terminated(signal.SIGTERM) from None  # ray.init's own SIGTERM handler: sys.exit(15)
                raise
            self._started_ray = True
            if self.address is None:
                self._own_processes = self._ray_processes()
        self._remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(write_shard)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # No ray.cancel on the way out: cancelling a task whose reply is under way aborts the driver in Ray 2.60
        # ("Tried to complete task that was not pending"). Ending the job is enough: Ray kills the workers of a
        # driver that left, and a local Ray is stopped whole.
        try:
            if self._bar is not None:
                self._bar.close()
        finally:
            self._pending.clear()
            if self._started_ray:  # connected by us (ray.init), locally or to a cluster: disconnect
                # Left by an error or an interrupt, the tasks still running fail as the driver leaves, and Ray's
                # C++ core worker logs that at ERROR straight to file descriptor 2 ("Failed to push error to
                # driver"): noise beside the one line the CLI prints, so it goes to /dev/null instead.
                if self._own_processes:  # and what it started since (agents, workers)
                    self._own_processes |= self._ray_processes()
                with _stderr_to_devnull() if exc_type is not None else contextlib.nullcontext():
                    self._ray.shutdown()
                _end_survivors(self._own_processes)
            if self._cluster_setting is not None:
                self._ray._private.ray_constants.ENABLE_RAY_CLUSTER = self._cluster_setting

    def _ray_processes(self) -> dict[int, str]:
        """The processes below this one that were not there before it started Ray: pid -> start time."""
        return {pid: start for pid, start in _descendants().items() if self._other_processes.get(pid) != start}

    def submit(self, tasks: Sequence[ShardTask]) -> None:
        """Start writing `tasks` (every shard of the run); `write` collects them."""
        new = [task for task in tasks if task.path not in self._pending]
        for task in new:
            self._pending[task.path] = self._remote.remote(_absolute(task))
        if self._bar is None:
            self._bar = tqdm(total=0, desc="Preparing shards (ray)", unit=" shards", disable=None)
        self._bar.total += len(new)
        self._bar.refresh()

    def write(self, tasks: Sequence[ShardTask], desc: str) -> list[ShardResult]:
        """Wait for `tasks` (submitting those not yet submitted); their results in task order.

        A task's own error is raised as it is (a one-line `SousaError`, say), not as Ray's wrapper.
        """
        missing = [task for task in tasks if task.path not in self._pending]
        if missing:
            self.submit(missing)
        started = time.perf_counter()
        refs = {self._pending[task.path]: task.path for task in tasks}
        results: dict[str, ShardResult] = {}
        waiting = list(refs)
        while waiting:
            with _signals_as_keyboard_interrupt():
                done, waiting = self._ray.wait(waiting, num_returns=1, timeout=None)
            for ref in done:
                results[refs[ref]] = self._get(ref)
                del self._pending[refs[ref]]
                if self._bar is not None:
                    self._bar.update(1)
        ordered = [results[task.path] for task in tasks]
        if self._bar is None or self._bar.disable:
            log_written(desc, ordered, started)
        return ordered

    def _get(self, ref: Any) -> ShardResult:
        try:
            with _signals_as_keyboard_interrupt():
                return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise


@contextlib.contextmanager
def _joining(address: str | None) -> Iterator[None]:
    """Name the Ray address when no cluster can be joined there (Ray raises a bare `ConnectionError`).

    A HOST:PORT (or the one "auto" finds) is asked first whether it answers as a gRPC server does, bounded by
    `SOUSA_RAY_TIMEOUT` seconds (`_probe`): `ray.init` itself keeps retrying an address where nothing answers, or
    where something accepts connections and never answers.
    """
    where = "a running Ray cluster ('auto' found none)" if address == "auto" else f"a Ray cluster at {address}"
    target = _bootstrap_address(address)
    host, _, port = (target or "").rpartition(":")
    if host and port.isdigit() and "://" not in target:
        problem = _probe(host.strip("[]"), int(port))
        if problem is not None:
            where = f"the Ray cluster 'auto' found at {target}" if target != address else where
            raise RayConnectionError(
                f"--ray-address {address}: cannot reach {where} ({problem}); start one there with `ray "
                "start --head`, or leave out --ray-address to start Ray for this run",
                address=address,
            ) from None
    try:
        yield
    except ConnectionError as err:
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise RayConnectionError(
            f"--ray-address {address}: cannot reach {where} ({first}); start one with `ray start --head`, or leave "
            "out --ray-address to start Ray for this run",
            address=address,
        ) from err


def _bootstrap_address(address: str | None) -> str | None:
    """The HOST:PORT that `ray.init(address)` would join: `address` itself, or for "auto" the cluster Ray finds
    (`RAY_ADDRESS`, or the last one started on this machine); None when it cannot tell (ray.init then says)."""
    if address != "auto":
        return address
    try:
        from ray._private.services import get_ray_address_from_environment

        return get_ray_address_from_environment(address, None)
    except Exception:  # none found, or Ray's private helper moved: ray.init reports it
        return None


def _probe(host: str, port: int) -> str | None:
    """None if HOST:PORT answers the HTTP/2 preface as a gRPC server (a Ray head's GCS) does within
    `SOUSA_RAY_TIMEOUT` seconds, else what went wrong, in words. With TLS (`RAY_USE_TLS`) only the connection is
    tried."""
    timeout = seconds_setting(RAY_TIMEOUT_VARIABLE, DEFAULT_RAY_TIMEOUT, RayConnectionError)
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return None
            connection.sendall(HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                data = connection.recv(9 - len(header))
                if not data:
                    return "it closed the connection without answering as a Ray head does"
                header += data
    except TimeoutError:
        return f"no answer within {timeout:g} s ({RAY_TIMEOUT_VARIABLE} sets the wait)"
    except OSError as err:
        return err.strerror or str(err)
    return None if header[3] == 4 else "it answers, but not as a Ray head (gRPC) does"


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keep this process's SIGINT and SIGTERM handlers across `ray.init`, which replaces them (SIGTERM with an
    exit, and its core worker's crash handler with a stack dump): the CLI turns both into one line and a
    clean exit, the tasks still running cancelled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _signals_as_keyboard_interrupt() -> Iterator[None]:
    """While Ray waits, SIGTERM and SIGHUP raise KeyboardInterrupt, and leave the block as `Terminated`.

    Ray's waits check for signals in C++ and stop only on a KeyboardInterrupt: any other exception a handler
    raises there is kept pending until the wait ends by itself, which then fails with a SystemError. Only a
    signal whose handler is a Python function (one that raises, as the CLI's does) is redirected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {
        number: handler for number in (signal.SIGTERM, signal.SIGHUP) if callable(handler := signal.getsignal(number))
    }
    for number in previous:
        signal.signal(number, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if received:
            raise Terminated(received[-1]) from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 of this process (where C++ code writes, not only `sys.stderr`) at /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _descendants(pid: int | None = None) -> dict[int, str]:
    """The processes below `pid` (default: this one), children of children included: pid -> start time.

    Read from /proc (empty where there is none). The start time tells a process from a later one that reuses
    its pid.
    """
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:  # else gone meanwhile
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
                starts[int(entry.name)] = fields[19].decode()
    found: dict[int, str] = {}
    waiting = list(parents.get(os.getpid() if pid is None else pid, ()))
    while waiting:
        child = waiting.pop()
        found[child] = starts[child]
        waiting += parents.get(child, ())
    return found


def _end_survivors(processes: dict[int, str], grace: float = 2.0) -> None:
    """SIGKILL those of `processes` (pid -> start time, from `_descendants`) still running after `grace` seconds.

    `ray.shutdown` stops the processes of a Ray started here; when its GCS died first, its agents
    (DashboardAgent, RuntimeEnvAgent) are left running. A pid whose start time differs is another process now.
    """
    deadline = time.monotonic() + grace
    while (alive := [pid for pid, start in processes.items() if _start_time(pid) == start]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` as /proc gives it; None once it is gone."""
    fields = _stat(pid)
    return fields[19].decode() if fields else None


def _stat(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, parent, ...); empty once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return []
    return fields if len(fields) > 19 else []


def _absolute(task: ShardTask) -> ShardTask:
    """The task with absolute paths (URLs as they are): a Ray worker's working folder is not the driver's."""
    labels = dataclasses.replace(task.labels, folder=_absolute_path(task.labels.folder))
    return dataclasses.replace(
        task,
        rows_file=_absolute_path(task.rows_file),
        root=_absolute_path(task.root),
        labels=labels,
        path=_absolute_path(task.path),
    )


def _absolute_path(location: str) -> str:
    return location if is_url(location) else os.path.abspath(location)
