"""`prepare --engine ray` on a two-node Ray cluster started with the `ray` CLI (head + one worker node, one
CPU each), in a network namespace that has only loopback: the output equals the local prepare's, also when the
worker node is killed while it writes a shard (its tasks are retried on the head), and from S3 to S3 (moto's
server, in the same namespace). The scenario is tests/ray_cluster.py, run in one subprocess that starts and
stops the cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_prepare import tree_bytes
from test_ray_engine import assert_same_output

from sousa_builder.prepare import prepare
from sousa_builder.sample import make_sample

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).with_name("ray_cluster.py")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The local prepare of a 360-sample source (~70 audio shards), and the report of the cluster scenario."""
    pytest.importorskip("ray")
    pytest.importorskip("moto.server")
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs root, unshare and ip: the cluster runs in a network namespace of its own")
    work = tmp_path_factory.mktemp("ray-cluster")
    source = make_sample(work / "data", profiles=6, rudiments=6, tempos=2, augmentations=5, seed=1)
    prepare(source, work / "local", num_proc=2, max_shard_size="2MB")
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    command += [sys.executable, str(SCENARIO), str(source), str(work)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    return work, json.loads(run.stdout)


def test_a_two_node_cluster_prepares_what_the_local_prepare_does(cluster_run: tuple[Path, dict]) -> None:
    work, report = cluster_run
    assert report["plain"]["returncode"] == 0, report["plain"]["stderr"]
    assert report["plain"]["worker_node_wrote"], "the worker node wrote no shard"
    assert_same_output(work / "plain", work / "local")


def test_a_worker_node_killed_mid_run_changes_nothing(cluster_run: tuple[Path, dict]) -> None:
    work, report = cluster_run
    run = report["killed"]
    assert run["killed"] is not None, "the worker node wrote no shard, so it was not killed"
    assert run["returncode"] == 0, run["stderr"]
    assert_same_output(work / "killed", work / "local")


def test_a_two_node_cluster_prepares_from_s3_to_s3_what_the_local_prepare_does(cluster_run: tuple[Path, dict]) -> None:
    work, report = cluster_run
    assert report["s3"]["returncode"] == 0, report["s3"]["stderr"]
    assert report["s3"]["worker_node_wrote"], "the worker node wrote no shard"
    found, expected = tree_bytes(work / "s3"), tree_bytes(work / "local")
    assert list(found) == list(expected)
    assert [name for name in expected if found[name] != expected[name]] == []
    staged = [p for p in (work / "s3" / ".sousa").iterdir() if p.name != "manifest.json"]
    assert staged == []  # no staging prefix or journal left in the bucket
