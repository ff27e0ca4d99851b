"""A two-node Ray cluster on this machine, and `prepare --engine ray` on it: run by tests/test_ray_cluster.py.

Run it in a network namespace of its own that has only loopback (`unshare -n`): Ray binds some services to
the machine's interface address even with --node-ip-address=127.0.0.1, and nothing here may reach beyond
127.0.0.1 (nor clash with another Ray on this machine). Usage:

    python ray_cluster.py SOURCE WORK

starts moto's S3 server (on 127.0.0.1 of the namespace; the cluster's nodes get its endpoint in their
environment), a head and one worker node (one CPU each), prepares SOURCE into WORK/plain with
`--engine ray --ray-address 127.0.0.1:6379`, then into WORK/killed while SIGKILLing the worker node (its
raylet, its workers, its agents) once one of its workers is writing a shard, then (a new worker node
started) SOURCE uploaded to s3://cluster/source into s3://cluster/sousa, downloaded to WORK/s3; prints a
JSON report. Every wait is bounded. At the end it kills every process left in this namespace, by id:
`ray stop --force` would kill every Ray process of the machine, other runs' too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ADDRESS = "127.0.0.1:6379"
ENV = dict(
    os.environ,
    RAY_USAGE_STATS_ENABLED="0",
    RAY_AUTH_MODE="disabled",
    # A dead node is declared dead after ~2 s (default ~30 s), so its tasks are retried soon.
    RAY_health_check_period_ms="500",
    RAY_health_check_timeout_ms="500",
    RAY_health_check_failure_threshold="4",
)


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process of the machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return found


def children(pids: set[int]) -> set[int]:
    """The child processes of `pids` (cheap: no scan of /proc)."""
    found = set()
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.update(int(child) for child in task.read_text().split())
    return found


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def descendants(roots: set[int]) -> set[int]:
    table, found = processes(), set(roots)
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def ours() -> set[int]:
    """Processes in this network namespace (ours: the cluster, its workers, the driver), but this one."""
    mine, found = os.readlink("/proc/self/ns/net"), set()
    for pid in processes():
        try:
            if pid != os.getpid() and os.readlink(f"/proc/{pid}/ns/net") == mine:
                found.add(pid)
        except OSError:
            continue
    return found


def kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def ray(*args: str) -> None:
    subprocess.run([str(BIN / "ray"), *args], env=ENV, check=True, capture_output=True, timeout=60)


def wait_for_nodes(count: int) -> None:
    code = f"import ray; ray.init(address={ADDRESS!r}, logging_level='ERROR'); "
    code += "print(sum(n['Alive'] for n in ray.nodes()))"
    deadline = time.monotonic() + 30
    while True:
        run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
        if run.stdout.strip() == str(count):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster has not {count} nodes after 30 s: {run.stdout} {run.stderr}")
        time.sleep(0.5)


def start_s3() -> object:
    """moto's S3 server on this namespace's loopback; the environment of everything started after points at it."""
    from moto.server import ThreadedMotoServer
    from s3_server import ENV as S3_ENV
    from s3_server import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    ENV.update(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    return server


def prepare(source: str, out: Path | str, worker_node: set[int], kill_it: bool) -> dict:
    """Prepare `source` into `out` on the cluster, watching the worker node (and killing it, `kill_it`, once one
    of its workers writes a shard: Ray titles a worker process after the task it runs)."""
    command = [str(BIN / "sousa-builder"), "prepare", source, "--out", str(out), "--engine", "ray"]
    command += ["--ray-address", ADDRESS, "--max-shard-size", "2MB"]  # many shards, on both nodes
    started = time.monotonic()
    driver = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = killed = None
    while driver.poll() is None and time.monotonic() - started < 90 and not (busy and (killed or not kill_it)):
        busy = busy or [pid for pid in children(worker_node) if "write_shard" in title(pid)]
        if busy and kill_it:
            victims = descendants(worker_node)
            kill(victims)
            killed = {"processes": len(victims), "after_s": time.monotonic() - started}
        time.sleep(0.002)
    try:
        stdout, stderr = driver.communicate(timeout=max(1.0, 90 - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        driver.kill()
        stdout, stderr = driver.communicate()
    return {"returncode": driver.returncode, "stdout": stdout[-2000:], "stderr": stderr[-3000:],
            "worker_node_wrote": bool(busy), "killed": killed, "seconds": time.monotonic() - started}  # fmt: skip


def prepare_in_s3(source: Path, downloaded: Path, worker_node: set[int]) -> dict:
    """Upload `source` to the S3 server, prepare it there on the cluster (S3 to S3), download the output."""
    import s3fs
    from s3_server import S3

    store = S3(os.environ["AWS_ENDPOINT_URL"], s3fs.S3FileSystem(skip_instance_cache=True))
    store.fs.mkdir("cluster")
    report = prepare(store.upload(source, "s3://cluster/source"), "s3://cluster/sousa", worker_node, kill_it=False)
    if report["returncode"] == 0:
        store.download("s3://cluster/sousa", downloaded)
    return report


def main() -> None:
    source, work = sys.argv[1], Path(sys.argv[2])
    report: dict = {}
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    server = start_s3()
    try:
        ray("start", "--head", "--node-ip-address=127.0.0.1", "--port=6379", "--num-cpus=1",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}")  # fmt: skip
        before = ours()
        ray("start", f"--address={ADDRESS}", "--node-ip-address=127.0.0.1", "--num-cpus=1")
        worker_node = ours() - before  # its raylet and agents; the raylet's workers are their children
        wait_for_nodes(2)
        report["plain"] = prepare(source, work / "plain", worker_node, kill_it=False)
        report["killed"] = prepare(source, work / "killed", worker_node, kill_it=True)
        before = ours()
        ray("start", f"--address={ADDRESS}", "--node-ip-address=127.0.0.1", "--num-cpus=1")  # the killed one's heir
        worker_node = ours() - before
        wait_for_nodes(2)
        report["s3"] = prepare_in_s3(Path(source), work / "s3", worker_node)
    finally:
        kill(ours())
        subprocess.run(["rm", "-rf", temp], check=False)
        server.stop()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
