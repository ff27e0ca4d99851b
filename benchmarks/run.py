"""Benchmark `prepare` and `publish` against the floor, the usual approach and the targets of issue 5.

    python benchmarks/run.py --samples 1000 --repeat 3         # writes benchmarks/RESULTS.md
    python benchmarks/run.py --samples 8 --repeat 1 --out /tmp/bench --label-profiles 4

Makes a sample dataset of about N samples (and one of 4N) with `sousa_builder.sample.make_sample`,
starts the test Hub server (tests/hub_server.py) on 127.0.0.1, then measures, `--repeat` times, each
step in a fresh Python process (time of the work itself, imports excluded; peak RSS of that process):

1. floor: pyarrow alone reads every media file and writes them with the labels to Parquet
   (binary columns, FLAC uncompressed, 100-row row groups), versus `prepare --configs audio`;
2. the usual approach (pandas, `Dataset.from_dict` with file paths, `cast_column("audio", Audio())`,
   MIDI bytes in a list, `DatasetDict.push_to_hub`), versus our `prepare` + `publish`, same server;
3. peak RSS of `prepare --configs audio` at N and 4N;
4. `prepare --configs audio --num-proc 2` versus 1, at 4N;
5. publishing the unchanged folder again, versus the first publish;
6. `prepare --configs labels_only` and `validate`'s label checks on a labels-only source of
   `--label-profiles` x 1000 samples (benchmarks/labels_source.py; 100 profiles: 100k samples, ~10M strokes);
7. at 4N, `prepare --configs audio --engine ray --num-proc 2` (Ray started on this machine for the run, in a
   network namespace with only loopback: `unshare -n`), `--engine ray --ray-address HEAD` joining a 2-CPU Ray
   started before the step (`ray start --head`, in the step's namespace), and from S3 to S3 (moto's server,
   started in this process on 127.0.0.1, source uploaded once), each against `--num-proc 2` on the local disk;
8. what the driver of a prepare holds and reads at 100k samples (the labels-only source), for RESULTS.md's
   "Past one machine".

Where Ray, moto/s3fs or `unshare` is missing, those rows say "not measured" and why.

Ratios are computed within a repeat (the steps of a repeat run back to back) and their median is
reported; the machine is shared and noisy. RESULTS.md in `--out` (default: benchmarks/) is rewritten.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1024 * 1024
HUB_USER, HUB_TOKEN = "alice", "hf_alice"


# -- the measured steps: each runs in a fresh process (`run.py --worker NAME ARGS`) ----------------------------------


def step_floor(data: str, out: str) -> dict:
    """The least work: pyarrow reads labels and media and writes one Parquet file per split."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(data)
    samples = pq.read_table(root / "labels/samples.parquet")
    # All-null columns (Arrow type null) are declared int64; joins refuse the null type.
    samples = samples.cast(pa.schema([f.with_type(pa.int64()) if f.type == pa.null() else f for f in samples.schema]))
    rows = samples.join(pq.read_table(root / "labels/exercises.parquet"), "sample_id")
    rows = rows.sort_by("sample_id").combine_chunks()
    ids = rows["sample_id"].combine_chunks()
    groups, midi = rows["augmentation_group_id"].to_pylist(), rows["midi_path"].to_pylist()
    first = {}
    for group, path in zip(groups, midi):
        if path is not None:
            first.setdefault(group, path)
    midi = [path or first[group] for group, path in zip(groups, midi)]

    def nest(name: str) -> pa.Array:
        table = pq.read_table(root / f"labels/{name}.parquet")
        position = pc.index_in(table["sample_id"], value_set=ids)
        table = table.append_column("_pos", position).sort_by([("_pos", "ascending"), ("index", "ascending")])
        counts = pc.value_counts(table["_pos"]).field("counts").to_numpy()
        offsets = pa.array([0, *counts.cumsum()], pa.int32())
        fields = [n for n in table.column_names if n not in ("sample_id", "_pos")]
        items = pa.StructArray.from_arrays([table[n].combine_chunks() for n in fields], names=fields)
        return pa.ListArray.from_arrays(offsets, items)

    rows = rows.append_column("strokes", nest("strokes")).append_column("measures", nest("measures"))
    rows = rows.set_column(rows.schema.get_field_index("midi_path"), "midi_path", pa.array(midi))
    splits = json.loads((root / "splits.json").read_text())
    Path(out).mkdir(parents=True)
    written = 0
    for split, key in (("train", "train_profile_ids"), ("validation", "val_profile_ids"), ("test", "test_profile_ids")):
        part = rows.filter(pc.is_in(rows["profile_id"], value_set=pa.array(splits[key], pa.string())))
        if not part.num_rows:
            continue
        writer = None
        for batch in part.to_batches(max_chunksize=100):
            table = pa.Table.from_batches([batch])
            media = {
                name: _read_files([root / p for p in table[f"{name}_path"].to_pylist()]) for name in ("midi", "audio")
            }
            table = table.drop_columns(["midi_path", "audio_path"])
            table = table.append_column("midi", media["midi"]).append_column("audio", media["audio"])
            if writer is None:
                writer = pq.ParquetWriter(
                    Path(out) / f"{split}.parquet",
                    table.schema,
                    compression={n: "none" if n in ("audio", "midi") else "snappy" for n in table.column_names},
                    use_dictionary=[n for n in table.column_names if n not in ("audio", "midi")],
                )
            writer.write_table(table, row_group_size=100)
        writer.close()
        written += (Path(out) / f"{split}.parquet").stat().st_size
    return {"bytes": written}


def _read_files(paths: list[Path]):
    """The files' bytes as one binary array, each file read straight into the Arrow buffer (no extra copy)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(paths) + 1, np.int64)
    np.cumsum([os.stat(path).st_size for path in paths], out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    view = memoryview(data)
    for path, start, end in zip(paths, offsets[:-1], offsets[1:]):
        with open(path, "rb", buffering=0) as stream:
            while start < end:
                count = stream.readinto(view[start:end])
                if not count:
                    raise OSError(f"{path} shrank while it was read")
                start += count
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.BinaryArray.from_buffers(pa.binary(), len(paths), buffers)


def step_prepare(
    data: str,
    out: str,
    configs: list[str] | None = None,
    num_proc: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> dict:
    """`prepare`, with the time of some of its driver's phases (`_timed_phases`)."""
    from sousa_builder.prepare import prepare

    phases: dict[str, float] = {}
    with _timed_phases(phases):
        result = prepare(data, out, configs=configs, num_proc=num_proc, engine=engine, ray_address=ray_address)
    shards = sum(len(split.files) for splits in result.configs.values() for split in splits.values())
    written = 0 if _is_url(out) else _tree_bytes(Path(out))
    return {"bytes": written, "shard_files": shards, "phases": phases, "ray_address": ray_address}


@contextlib.contextmanager
def _timed_phases(phases: dict[str, float]):
    """Time parts of `prepare` (seconds per phase into `phases`) by wrapping them for the block; nothing else changes.

    Phases, all in the driver: opening the source (for a URL: copying its label files), checking the media, the
    label bucketing pass, the split rows, writing the shards (the driver waits for its writers), the auxiliary
    tables, the card's label counts, the commit at a URL (server-side copies) and, with `--engine ray`, starting
    Ray (`RayShardWriters.__enter__`: `ray.init`) and stopping it (`__exit__`: `ray.shutdown`).
    """
    import sousa_builder.prepare as module
    from sousa_builder.bucket_output import BucketStore
    from sousa_builder.labels import LabelBuckets
    from sousa_builder.source import SousaSource

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    targets = [
        (module, "_open_source", "open_source"),
        (SousaSource, "check_media", "check_media"),
        (module, "_write_split_rows", "split_rows"),
        (module, "_prepare_config", "shards"),
        (module, "_write_auxiliary", "auxiliary"),
        (module, "label_counts", "label_counts"),
        (BucketStore, "put_in_place", "commit"),
    ]
    ray_engine = sys.modules.get("sousa_builder.ray_engine")  # imported by the step's own imports, if at all
    if ray_engine is not None:
        writers = ray_engine.RayShardWriters
        targets += [(writers, "__enter__", "ray_start"), (writers, "__exit__", "ray_stop")]
    saved = [(owner, attribute, owner.__dict__[attribute]) for owner, attribute, _ in targets]
    saved.append((LabelBuckets, "write", LabelBuckets.__dict__["write"]))
    write = LabelBuckets.write  # bound to the class
    try:
        for owner, attribute, name in targets:
            setattr(owner, attribute, timed(name, getattr(owner, attribute)))
        LabelBuckets.write = staticmethod(timed("label_buckets", write))
        yield
    finally:
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)


def step_usual(data: str, repo: str) -> dict:
    """What people do today: pandas, `Dataset.from_dict` with paths, `cast_column(Audio())`, `push_to_hub`."""
    import pandas as pd
    from datasets import Audio, Dataset, DatasetDict

    root = Path(data)
    df = pd.read_parquet(root / "labels/samples.parquet").merge(
        pd.read_parquet(root / "labels/exercises.parquet"), on="sample_id"
    )
    df = df.sort_values("sample_id").reset_index(drop=True)
    first_midi = df.dropna(subset=["midi_path"]).groupby("augmentation_group_id")["midi_path"].first()
    df["midi_path"] = df["augmentation_group_id"].map(first_midi)
    for name in ("strokes", "measures"):
        labels = pd.read_parquet(root / f"labels/{name}.parquet").sort_values(["sample_id", "index"])
        nested = {sid: g.drop(columns="sample_id").to_dict("records") for sid, g in labels.groupby("sample_id")}
        df[name] = df["sample_id"].map(nested)
    splits = json.loads((root / "splits.json").read_text())
    parts = {}
    for split, key in (("train", "train_profile_ids"), ("validation", "val_profile_ids"), ("test", "test_profile_ids")):
        part = df[df["profile_id"].isin(splits[key])]
        if part.empty:
            continue
        columns = part.drop(columns=["midi_path", "audio_path"]).to_dict("list")
        columns["midi"] = [(root / path).read_bytes() for path in part["midi_path"]]
        columns["audio"] = [str(root / path) for path in part["audio_path"]]
        parts[split] = Dataset.from_dict(columns).cast_column("audio", Audio(sampling_rate=44_100))
    DatasetDict(parts).push_to_hub(repo)
    return {}


def step_ours(data: str, out: str, repo: str) -> dict:
    """`prepare` (every config) then `publish`, timed separately."""
    from sousa_builder.prepare import prepare
    from sousa_builder.publish import publish

    started = time.perf_counter()
    prepare(data, out)
    prepared = time.perf_counter()
    publish(repo, out)
    return {"prepare_s": prepared - started, "publish_s": time.perf_counter() - prepared}


def step_publish(out: str, repo: str) -> dict:
    from sousa_builder.publish import publish

    result = publish(repo, out)
    return {"committed": result.commit_url is not None, "planned_bytes": result.plan.bytes_to_send}


def step_validate_labels(data: str) -> dict:
    """validate's label checks (no media)."""
    from sousa_builder.validate import validate_source

    report = validate_source(data, media=False)
    if not report.ok():
        raise SystemExit(report.summary())
    return {}


def step_driver(data: str, out: str) -> dict:
    """What the driver of a `prepare` holds and what its tasks read, on a labels-only source (no media).

    The sample table (`SousaSource.rows`) and the split rows kept beside it, the label buckets written to the
    scratch folder, the shard plan of `labels_only` (tasks, their pickled size, the buckets each reads) and a
    shard result's pickled size. Figures in bytes; seconds of the bucketing pass.
    """
    import pickle

    import numpy as np

    from sousa_builder.builder import Sousa
    from sousa_builder.labels import LabelBuckets
    from sousa_builder.prepare import _shard_plan, _write_split_rows
    from sousa_builder.shards import ShardResult
    from sousa_builder.source import SousaSource

    folder = Path(out)
    source = SousaSource.open(data)
    facts: dict = {"samples": source.rows.num_rows, "rows_nbytes": source.rows.nbytes}
    facts["audio_rows_per_batch"] = Sousa.builder_configs["audio"].rows_per_batch
    splits = _write_split_rows(source, folder / "cache")
    facts["split_rows_nbytes"] = sum(rows.nbytes for _, rows in splits.values())
    facts["rows_files_bytes"] = sum(Path(path).stat().st_size for path, _ in splits.values())
    started = time.perf_counter()
    ids, counts = source.rows["sample_id"].combine_chunks(), source.label_row_counts()
    labels = LabelBuckets.write(source.root, ids, folder / "cache" / "labels", row_counts=counts)
    facts["bucketing_s"] = time.perf_counter() - started
    files = sorted(Path(labels.folder).iterdir())
    sizes: dict[str, int] = {}
    for path in files:  # strokes-000012.arrow, measures-000012.arrow: one bucket of samples
        bucket = path.stem.rsplit("-", 1)[1]
        sizes[bucket] = sizes.get(bucket, 0) + path.stat().st_size
    facts.update(
        buckets=labels.num_buckets,
        samples_per_bucket=labels.samples_per_bucket,
        bucket_files=len(files),
        buckets_bytes=sum(sizes.values()),
        bucket_bytes_max=max(sizes.values()),
    )
    (folder / "plan").mkdir()
    plan = _shard_plan(Sousa.builder_configs["labels_only"], splits, source, labels, folder / "plan", None, None)
    tasks = [task for split_tasks in plan.values() for task in split_tasks]
    read = []
    for task in tasks:
        rows = splits[next(split for split, (path, _) in splits.items() if str(path) == task.rows_file)][1]
        ids = rows["sample_id"].slice(task.start, task.stop - task.start).combine_chunks()
        read.append(len(np.unique(labels.bucket_of(ids))))
    facts["labels_parquet_bytes"] = sum(path.stat().st_size for path in (Path(data) / "labels").glob("*.parquet"))
    facts["first_ids_pickle_bytes"] = len(pickle.dumps(labels.first_ids))
    facts.update(
        tasks=len(tasks),
        task_rows_max=max(task.stop - task.start for task in tasks),
        task_pickle_bytes=max(len(pickle.dumps(task)) for task in tasks),
        task_buckets_min=min(read),
        task_buckets_max=max(read),
        result_pickle_bytes=len(pickle.dumps(ShardResult(tasks[0].path, 10**5, 10**9, 10**9, "0" * 64))),
    )
    return facts


def step_listing(data: str) -> dict:
    """The memory that the media listing of a source at a URL (`media.RemoteMedia`) keeps: the listing and what
    the filesystem caches of it (fsspec keeps the filesystem, and its listings cache, for the process)."""
    import tracemalloc

    from sousa_builder.media import RemoteMedia

    media = RemoteMedia(data)
    media.fs.info(f"{media.base}/splits.json")  # the client made (botocore's service models loaded) before counting
    tracemalloc.start()
    objects = len(media._listing)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"objects": objects, "listing_bytes": held}


STEPS: dict[str, tuple[Callable[..., dict], tuple[str, ...]]] = {
    "floor": (step_floor, ("numpy", "pyarrow.parquet", "pyarrow.compute")),
    "prepare": (step_prepare, ("sousa_builder.prepare",)),
    "prepare_ray": (step_prepare, ("sousa_builder.prepare", "sousa_builder.ray_engine", "ray")),
    "prepare_ray_joined": (step_prepare, ("sousa_builder.prepare", "sousa_builder.ray_engine", "ray")),
    "prepare_s3": (step_prepare, ("sousa_builder.prepare", "sousa_builder.media", "s3fs")),
    "driver": (step_driver, ("sousa_builder.prepare", "numpy")),
    "listing": (step_listing, ("sousa_builder.media", "s3fs")),
    "usual": (step_usual, ("pandas", "datasets")),
    "ours": (step_ours, ("sousa_builder.prepare", "sousa_builder.publish")),
    "publish": (step_publish, ("sousa_builder.publish",)),
    "validate_labels": (step_validate_labels, ("sousa_builder.validate.source",)),
}


def _is_url(location: str) -> bool:
    return "://" in str(location)


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _warm(folder: Path) -> None:
    """Read every file under `folder` once, so that the step after it finds them in the page cache.

    Without this, the first step of a pair read its input from the disk and the second found it
    cached, which favoured whichever side ran second.
    """
    buffer = bytearray(1 << 20)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb", buffering=0) as stream:
            while stream.readinto(buffer):
                pass


def _disk_io() -> tuple[int, int]:
    """Bytes this process caused to be (read from, written to) storage (Linux /proc/self/io); 0 where unavailable.

    Reads served by the page cache are not counted: a read here went to the disk.
    """
    try:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def _peak_rss() -> int:
    """Peak RSS of this process in bytes: VmHWM, which exec resets.

    `ru_maxrss` of a child also counts the parent's RSS at fork time (Linux keeps the larger value
    across exec), so it would report the harness's own memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, arguments: dict) -> dict:
    """Run one step (its imports first, outside the clock) and return its figures."""
    step, modules = STEPS[name]
    started = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    imported = time.perf_counter() - started
    read, written = _disk_io()
    started = time.perf_counter()
    result = step(**arguments)
    result["seconds"] = time.perf_counter() - started
    result["import_s"] = imported
    result["peak_rss"] = _peak_rss()
    result["peak_rss_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result["disk_read"], result["disk_written"] = (after - before for after, before in zip(_disk_io(), (read, written)))
    return result


def worker(name: str, arguments: str) -> None:
    step_arguments = json.loads(arguments)
    with _ray_cluster(name in CLUSTERED) as address:
        if address is not None:
            step_arguments["ray_address"] = address
        print("RESULT " + json.dumps(measure(name, step_arguments)), flush=True)


@contextlib.contextmanager
def _ray_cluster(wanted: bool):
    """For a step in `CLUSTERED`: a 2-CPU Ray head started with `ray start` before the step (outside its clock), in
    the step's network namespace; its address. At the end every other process of the namespace is killed, by id
    (tests/ray_cluster.py's way: `ray stop --force` would kill every Ray process of the machine)."""
    if not wanted:
        yield None
        return
    sys.path.insert(0, str(REPO / "tests"))
    import ray_cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"  # the driver's, as the cluster's (ray_cluster.ENV)
    try:
        head = ["--head", "--node-ip-address=127.0.0.1", "--port=6379", "--num-cpus=2", "--include-dashboard=false"]
        ray_cluster.ray("start", *head, "--disable-usage-stats", f"--temp-dir={os.environ['RAY_TMPDIR']}")
        ray_cluster.wait_for_nodes(1)
        yield ray_cluster.ADDRESS
    finally:
        ray_cluster.kill(ray_cluster.ours())


# -- the harness ------------------------------------------------------------------------------------------------------

NAMESPACED = {"prepare_ray", "prepare_ray_joined"}  # run in a network namespace with only loopback (Ray binds to
# the machine's interface)
CLUSTERED = {"prepare_ray_joined"}  # run against a Ray cluster started before them (`_ray_cluster`)
NAMESPACE = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


@dataclass
class Harness:
    work: Path
    env: dict[str, str]
    in_process: bool = False
    runs: dict[str, list[dict]] = field(default_factory=dict)

    def run(self, key: str, step: str, **arguments: object) -> dict:
        """Run one step in a fresh process (or in this one, with `in_process`); record and return its result.

        A step in `NAMESPACED` (Ray) runs in a network namespace of its own with only loopback (`unshare -n`),
        with a Ray temporary folder of its own: it neither binds to the machine's interface nor finds another
        Ray running on this machine (`ray.init()` joins the latest `ray start` cluster it finds in /tmp/ray).
        """
        os.sync()  # the step starts with no dirty pages left by the one before: its writes are its own
        source = str(arguments.get("data") or arguments["out"])
        if not _is_url(source):
            _warm(Path(source))  # its input in the page cache, as far as it fits
        if self.in_process:
            if step in NAMESPACED:
                raise ValueError(f"step {step} needs a process of its own (a network namespace)")
            result = measure(step, arguments)
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", step, json.dumps(arguments)]
            env, ray_temp = self.env, None
            if step in NAMESPACED:
                command = [*NAMESPACE, *command]
                ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths fit in 107 bytes
                env = {**self.env, "RAY_TMPDIR": ray_temp, "RAY_USAGE_STATS_ENABLED": "0"}
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=self.work)
            finally:
                if ray_temp is not None:
                    shutil.rmtree(ray_temp, ignore_errors=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                raise SystemExit(f"step {key} failed ({done.returncode}):\n{output}")
            result = json.loads(lines[-1].removeprefix("RESULT "))
        self.runs.setdefault(key, []).append(result)
        print(f"  {key:<22} {result['seconds']:8.2f} s  peak RSS {result['peak_rss'] / MiB:7.0f} MiB", flush=True)
        return result

    def pair(self, repeat: int, *sides: tuple[str, str, dict]) -> None:
        """Run the (key, step, arguments) sides back to back, in the other order on odd repeats: drift hits both."""
        for key, step, arguments in sides if repeat % 2 == 0 else sides[::-1]:
            self.run(key, step, **arguments)

    def fresh(self, name: str) -> str:
        """A path under the work folder that does not exist (removed if it did)."""
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        return str(path)


def sample_shape(samples: int) -> tuple[int, int, int]:
    """(profiles, rudiments, augmentations) whose product is close to `samples`; at least 4 profiles (3 splits)."""
    profiles = max(4, round(samples / 30))
    shapes = [(r, a) for r in range(1, 7) for a in range(1, 6)]
    rudiments, augmentations = min(shapes, key=lambda s: (abs(profiles * s[0] * s[1] - samples), -s[1]))
    return profiles, rudiments, augmentations


def make_data(folder: Path, profiles: int, rudiments: int, augmentations: int) -> Path:
    from sousa_builder.sample import make_sample

    return make_sample(folder, profiles=profiles, rudiments=rudiments, augmentations=augmentations, overwrite=True)


def start_hub():
    sys.path.insert(0, str(REPO / "tests"))
    from hub_server import FakeHub

    hub = FakeHub().start()
    hub.add_user(HUB_USER, token=HUB_TOKEN)
    return hub


def hub_env(hub, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_TOKEN=HUB_TOKEN,
        HF_HOME=str(home),
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def uploaded(hub, repo: str) -> tuple[int, int]:
    """(LFS bytes received, commits) for `repo` so far."""
    sent = sum(u.size for u in hub.lfs_uploads if u.repo_id == repo)
    return sent, len([c for c in hub.commits if c.repo_id == repo])


def forget_repo(hub, repo: str) -> None:
    """Free the server's memory of a repo (its LFS objects) between repeats."""
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=HUB_TOKEN).delete_repo(repo, repo_type="dataset", missing_ok=True)


def ray_unavailable(in_process: bool) -> str | None:
    """Why the Ray step cannot run here, or None."""
    if in_process:
        return "in-process: Ray runs in a network namespace of its own (`unshare -n`), so in a process of its own"
    if importlib.util.find_spec("ray") is None:
        return 'Ray is not installed: pip install "sousa-builder[ray]"'
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "no `unshare` or `ip` here: Ray runs in a network namespace with only loopback"
    probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"`unshare -n` failed ({probe.stderr.strip() or probe.returncode}): it needs root or CAP_SYS_ADMIN"
    return None


def start_s3() -> tuple[object, object, str | None]:
    """moto's S3 server on 127.0.0.1 in this process and an `S3` (tests/s3_server.py) on it; or why not."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as err:
        return None, None, f"moto[server] or s3fs is not installed ({err.name}): pip install 'moto[server]' s3fs"
    sys.path.insert(0, str(REPO / "tests"))
    from s3_server import ENV, S3, free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    endpoint = f"http://127.0.0.1:{port}"
    fs = s3fs.S3FileSystem(
        key=ENV["AWS_ACCESS_KEY_ID"],
        secret=ENV["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=endpoint,
        skip_instance_cache=True,
    )
    return server, S3(endpoint, fs), None


def s3_env(s3) -> dict[str, str]:
    """The environment that points a step's S3 client (s3fs, botocore) at the server, with test credentials."""
    from s3_server import ENV

    return {**ENV, "AWS_ENDPOINT_URL": s3.endpoint}


def bench(args: argparse.Namespace, work: Path) -> dict:
    started = time.perf_counter()
    hub = start_hub()
    s3_server, s3, s3_why = start_s3()
    env = hub_env(hub, work / "hf-home")
    if s3 is not None:
        env.update(s3_env(s3))
    harness = Harness(work, env, in_process=args.in_process)
    ray_why = ray_unavailable(args.in_process)
    if args.in_process:  # before anything imports huggingface_hub or datasets: they read it at import
        os.environ.clear()
        os.environ.update(harness.env)
    shape = sample_shape(args.samples)
    print(f"making sample data: {shape[0]} profiles x {shape[1]} rudiments x {shape[2]} augmentations (and 4x)")
    small = make_data(work / "data-n", *shape)
    large = make_data(work / "data-4n", shape[0] * 4, *shape[1:])
    print(f"making the labels-only source: {args.label_profiles * 1000:,} samples")
    sys.path.insert(0, str(HERE))
    from labels_source import make_source

    shutil.rmtree(work / "labels-src", ignore_errors=True)
    strokes = make_source(work / "labels-src", profiles=args.label_profiles)
    facts = {
        "n": _count(small),
        "n4": _count(large),
        "data_bytes": _tree_bytes(small),
        "data4_bytes": _tree_bytes(large),
        "label_samples": args.label_profiles * 1000,
        "label_strokes": strokes,
    }
    s3_source = s3_out = None
    if s3 is not None:
        bucket = s3.bucket()
        before = time.perf_counter()
        s3_source = s3.upload(large, f"s3://{bucket}/data-4n")
        facts["s3_upload_s"] = time.perf_counter() - before
        s3_out = f"s3://{bucket}/out"
    facts["ray_not_measured"], facts["s3_not_measured"] = ray_why, s3_why
    republish_sent, republish_commits = [], []
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}")
        harness.pair(
            repeat,
            ("floor", "floor", {"data": str(small), "out": harness.fresh("floor")}),
            ("prepare_audio_n", "prepare", {"data": str(small), "out": harness.fresh("p-n"), "configs": ["audio"]}),
        )
        harness.pair(
            repeat,
            ("floor_4n", "floor", {"data": str(large), "out": harness.fresh("floor-4n")}),
            ("prepare_audio_4n", "prepare", {"data": str(large), "out": harness.fresh("p-4n"), "configs": ["audio"]}),
        )
        # --num-proc 2 in the middle: next to Ray on one side and to S3 on the other, each order alternating.
        audio2 = {"configs": ["audio"], "num_proc": 2}
        sides = [("prepare_audio_4n_np2", "prepare", {"data": str(large), "out": harness.fresh("p-4n2"), **audio2})]
        if ray_why is None:
            ray = {"data": str(large), "out": harness.fresh("p-4n-ray"), **audio2, "engine": "ray"}
            sides.insert(0, ("prepare_audio_4n_ray", "prepare_ray", ray))
            joined = {"data": str(large), "out": harness.fresh("p-4n-ray-joined"), **audio2, "engine": "ray"}
            sides.insert(1, ("prepare_audio_4n_ray_joined", "prepare_ray_joined", joined))
        if s3 is not None:
            sides.append(("prepare_audio_4n_s3", "prepare_s3", {"data": s3_source, "out": s3_out, **audio2}))
        harness.pair(repeat, *sides)
        if s3 is not None:
            s3.fs.rm(s3_out.removeprefix("s3://"), recursive=True)  # moto keeps it in memory (or spooled files)
        usual_repo, ours_repo = f"{HUB_USER}/usual-{repeat}", f"{HUB_USER}/ours-{repeat}"
        harness.pair(
            repeat,
            ("usual", "usual", {"data": str(small), "repo": usual_repo}),
            ("ours", "ours", {"data": str(small), "out": harness.fresh("ours"), "repo": ours_repo}),
        )
        before = uploaded(hub, ours_repo)
        harness.run("republish", "publish", out=str(work / "ours"), repo=ours_repo)
        after = uploaded(hub, ours_repo)
        republish_sent.append(after[0] - before[0])
        republish_commits.append(after[1] - before[1])
        harness.runs.setdefault("usual_lfs", []).append({"bytes": uploaded(hub, usual_repo)[0]})
        harness.runs.setdefault("ours_lfs", []).append({"bytes": before[0]})
        forget_repo(hub, usual_repo)
        forget_repo(hub, ours_repo)
        harness.pair(
            repeat,
            ("usual_4n", "usual", {"data": str(large), "repo": usual_repo}),
            ("ours_4n", "ours", {"data": str(large), "out": harness.fresh("ours"), "repo": ours_repo}),
        )
        forget_repo(hub, usual_repo)
        forget_repo(hub, ours_repo)
        if repeat < args.label_repeat:
            labels = str(work / "labels-src")
            harness.run("labels", "prepare", data=labels, out=harness.fresh("labels-out"), configs=["labels_only"])
            harness.run("labels_validate", "validate_labels", data=labels)
    print("measuring what the driver holds")
    facts["driver"] = harness.run("driver", "driver", data=str(work / "labels-src"), out=harness.fresh("driver"))
    small_profiles = max(4, args.label_profiles // 10)  # a tenth of the samples: how the driver's memory grows
    if small_profiles < args.label_profiles:
        shutil.rmtree(work / "labels-small", ignore_errors=True)
        make_source(work / "labels-small", profiles=small_profiles)
        small = harness.run("driver_small", "driver", data=str(work / "labels-small"), out=harness.fresh("driver"))
        facts["driver_small"] = small
        shutil.rmtree(work / "labels-small", ignore_errors=True)
    if s3 is not None:
        facts["listing"] = harness.run("listing", "listing", data=s3_source)
        s3_server.stop()
    hub.stop()
    facts["republish_sent"] = republish_sent
    facts["republish_commits"] = republish_commits
    facts["total_seconds"] = time.perf_counter() - started
    return {"facts": facts, "runs": harness.runs}


def _count(data: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(data / "labels/samples.parquet").num_rows


# -- the report -------------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _series(runs: dict, key: str, field_: str = "seconds") -> list[float]:
    return [r[field_] for r in runs.get(key, [])]


def _ratios(runs: dict, num: Callable[[dict], float], num_key: str, den: Callable[[dict], float], den_key: str):
    return [num(a) / den(b) if den(b) else float("inf") for a, b in zip(runs[num_key], runs[den_key])]


def _e2e(r: dict) -> float:
    return r["prepare_s"] + r["publish_s"]


def summarize(measured: dict) -> dict:
    runs, facts = measured["runs"], measured["facts"]
    seconds = lambda r: r["seconds"]  # noqa: E731
    rss = lambda r: r["peak_rss"]  # noqa: E731
    disk = lambda r: r["disk_written"]  # noqa: E731
    ratio = {
        "floor": _ratios(runs, seconds, "prepare_audio_n", seconds, "floor"),
        "floor_4n": _ratios(runs, seconds, "prepare_audio_4n", seconds, "floor_4n"),
        "usual": _ratios(runs, seconds, "usual", _e2e, "ours"),
        "usual_4n": _ratios(runs, seconds, "usual_4n", _e2e, "ours_4n"),
        "disk": _ratios(runs, disk, "ours", disk, "usual"),
        "rss": _ratios(runs, rss, "prepare_audio_4n", rss, "prepare_audio_n"),
        "np2": _ratios(runs, seconds, "prepare_audio_4n", seconds, "prepare_audio_4n_np2"),
        "republish": _ratios(runs, seconds, "republish", lambda r: r["publish_s"], "ours"),
    }
    peak = max(_series(runs, "prepare_audio_4n", "peak_rss") + _series(runs, "prepare_audio_n", "peak_rss"))
    sent = max(facts["republish_sent"])
    rows = [
        ("prepare `audio` / floor (time), N", "<= 1.5x", ratio["floor"], _median(ratio["floor"]) <= 1.5),
        ("prepare `audio` / floor (time), 4N", "<= 1.5x", ratio["floor_4n"], _median(ratio["floor_4n"]) <= 1.5),
        ("usual approach / ours, end to end (time), N", ">= 2x", ratio["usual"], _median(ratio["usual"]) >= 2),
        ("usual approach / ours, end to end (time), 4N", ">= 2x", ratio["usual_4n"], _median(ratio["usual_4n"]) >= 2),
        ("ours / usual approach (bytes written to disk)", "< 1", ratio["disk"], _median(ratio["disk"]) < 1),
        (
            "peak RSS of prepare `audio`, 4N / N",
            "<= 1.15, < 1 GiB",
            ratio["rss"],
            _median(ratio["rss"]) <= 1.15 and peak < 1024 * MiB,
        ),
        ("prepare `audio` at 4N, num_proc 1 / 2 (time)", ">= 1.6x", ratio["np2"], _median(ratio["np2"]) >= 1.6),
        (
            "re-publish unchanged / first publish (time)",
            "< 0.10, 0 bytes sent",
            ratio["republish"],
            _median(ratio["republish"]) < 0.10 and sent == 0,
        ),
    ]
    rows = [(*row, None) for row in rows]
    # Past one machine (issue 15): a missing Ray, moto/s3fs or unshare leaves the row "not measured", saying why.
    for name, target, key, why, limit in (
        ("prepare `audio` at 4N, `--engine ray` (starting its own Ray) / `--num-proc 2` (time)", "reported",
         "prepare_audio_4n_ray", facts.get("ray_not_measured"), None),
        ("prepare `audio` at 4N, `--engine ray` (joining a running 2-CPU Ray) / `--num-proc 2` (time)", "<= 1.5x",
         "prepare_audio_4n_ray_joined", facts.get("ray_not_measured"), 1.5),
        ("prepare `audio` at 4N, S3 (moto) / local disk, `--num-proc 2` (time)", "reported", "prepare_audio_4n_s3",
         facts.get("s3_not_measured"), None),
    ):  # fmt: skip
        if key in runs:
            values = _ratios(runs, seconds, key, seconds, "prepare_audio_4n_np2")
            rows.append((name, target, values, None if limit is None else _median(values) <= limit, None))
        else:
            rows.append((name, target, [], None, f"not measured ({why or 'no runs'})"))
    return {"ratios": rows, "peak": peak, "sent": sent}


def _phase(runs: dict, key: str, name: str) -> list[float]:
    return [r.get("phases", {}).get(name, 0.0) for r in runs.get(key, [])]


def _without_ray_start(result: dict) -> float:
    return result["seconds"] - result["phases"]["ray_start"] - result["phases"]["ray_stop"]


def _engine_lines(measured: dict) -> list[str]:
    """Where the time of the Ray and S3 steps goes (phases), next to `--num-proc 2` on the local disk."""
    runs, facts = measured["runs"], measured["facts"]

    def figure(key: str, name: str) -> str:
        values = _phase(runs, key, name)
        return f"{_median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})"

    local = "prepare_audio_4n_np2"
    lines = []
    if "prepare_audio_4n_ray" in runs:
        ray = "prepare_audio_4n_ray"
        unstarted = _ratios(runs, _without_ray_start, ray, lambda r: r["seconds"], local)
        lines.append(
            f"- `--engine ray` at 4N, inside the step's time: `ray.init` {figure(ray, 'ray_start')}, `ray.shutdown` "
            f"{figure(ray, 'ray_stop')}; writing the shards {figure(ray, 'shards')} against "
            f"{figure(local, 'shards')} with `--num-proc 2` (each includes starting its 2 workers, which "
            f"import `datasets`). Importing Ray, outside the clock as every step's imports: "
            f"{_median(_series(runs, ray, 'import_s')):.2f} s. Without its start and stop, the Ray step against "
            f"`--num-proc 2`: {_median(unstarted):.2f} ({', '.join(f'{v:.2f}' for v in unstarted)})."
        )
    if "prepare_audio_4n_s3" in runs:
        s3 = "prepare_audio_4n_s3"
        lines.append(
            f"- S3 at 4N (local disk in brackets after it): opening the source (for S3: its label files copied) "
            f"{figure(s3, 'open_source')} [{figure(local, 'open_source')}], the media check (S3: a listing and a "
            f"ranged read of every file's header) {figure(s3, 'check_media')} [{figure(local, 'check_media')}], "
            f"writing the shards {figure(s3, 'shards')} [{figure(local, 'shards')}], the card's label counts "
            f"{figure(s3, 'label_counts')} [{figure(local, 'label_counts')}], the commit (server-side copies of "
            f"{_median(_series(runs, s3, 'shard_files')):.0f} shards, the auxiliary tables and the README) "
            f"{figure(s3, 'commit')}. The upload of the 4N source, once: {facts.get('s3_upload_s', 0):.1f} s."
        )
    return lines


def _growth(facts: dict) -> str:
    """How the driver's peak RSS grows with samples: measured at a tenth of the samples too, then extrapolated."""
    small, large = facts.get("driver_small"), facts["driver"]
    if not small or small["samples"] >= large["samples"]:
        return ""
    per_sample = (large["peak_rss"] - small["peak_rss"]) / (large["samples"] - small["samples"])
    return (
        f" ({small['peak_rss'] / MiB:.0f} MiB at {small['samples']:,} samples: {per_sample:,.0f} bytes more per "
        f"sample, so ~{(large['peak_rss'] + per_sample * (1_000_000 - large['samples'])) / 2**30:.1f} GiB at 1M "
        "*(extrapolated)*)"
    )


def past_one_machine(measured: dict) -> list[str]:
    """RESULTS.md's section on how the design scales past one machine, with the figures it rests on."""
    runs, facts = measured["runs"], measured["facts"]
    driver = facts.get("driver")
    if not driver:
        return []
    samples, scale = driver["samples"], 1_000_000 / driver["samples"]
    mb = lambda value: f"{value / 1e6:,.1f} MB"  # noqa: E731
    labels_phase = lambda name: _median(_phase(runs, "labels", name))  # noqa: E731
    check = _median(_phase(runs, "prepare_audio_4n_np2", "check_media"))
    lines = [
        "## Past one machine",
        "",
        f"How `prepare --engine ray` spreads past this machine, and what stays with the driver. Measured at "
        f"{samples:,} samples on the labels-only source (benchmarks/labels_source.py; {facts['label_strokes']:,} "
        f"stroke rows, no media), in a process of its own (step `driver`), except where said; every figure for "
        f"1M samples is an extrapolation, linear in samples (x{scale:.0f}), and marked *(extrapolated)*.",
        "",
        f"**Each Ray task** writes one shard. It is sent a `ShardTask` (at most {driver['task_pickle_bytes']:,} bytes "
        f"pickled at {samples:,} samples; most of it the first sample id of each label bucket, "
        f"{driver['first_ids_pickle_bytes']:,} bytes for {driver['buckets']} buckets: "
        f"~{driver['first_ids_pickle_bytes'] * scale / 1e3:,.0f} kB at 1M *(extrapolated)*), and reads:",
        f"- its range of rows in its split's rows file (Arrow IPC, written once by the driver: "
        f"{mb(driver['rows_files_bytes'])} for all splits), mapped and sliced;",
        f"- the label buckets its rows fall in: strokes and measures of {driver['samples_per_bucket']:,} consecutive "
        f"sample ids per bucket ({driver['buckets']} buckets, {mb(driver['buckets_bytes'])} in all, at most "
        f"{mb(driver['bucket_bytes_max'])} each); a `labels_only` shard (up to {driver['task_rows_max']:,} rows) "
        f"read {driver['task_buckets_min']} to {driver['task_buckets_max']} of them, one at a time, each whole;",
        f"- the media files of its rows, a row group at a time ({driver['audio_rows_per_batch']} rows for `audio`): "
        "local files, or concurrent fsspec requests for a source at a URL.",
        "",
        f"It writes its Parquet shard straight to OUT's staging folder (or prefix), hashing it as it streams, and "
        f"returns a `ShardResult` ({driver['result_pickle_bytes']} bytes pickled). A retried task writes the same "
        "file again. For a URL OUT the driver first copies the rows files and the label buckets to the staging "
        "prefix (`.cache/`), so every node reads them from the bucket; for a local OUT every node must see the "
        "source and the staging folder at the same paths (a shared filesystem).",
        "",
        "**The driver holds** in memory:",
        f"- the sample table (`SousaSource.rows`, one row per sample): {mb(driver['rows_nbytes'])}, and the split "
        f"rows kept beside it for the plan: {mb(driver['split_rows_nbytes'])}; at 1M "
        f"~{mb(driver['rows_nbytes'] * scale)} and ~{mb(driver['split_rows_nbytes'] * scale)} *(extrapolated)*;",
        f"- the shard plan: {driver['tasks']} `labels_only` tasks here (a shard per 500 MB of Arrow data, the "
        "default), sharing one `LabelBuckets`; the `audio` config of the full SOUSA (~100 GB at 100k samples) "
        "makes ~200 shards, ~2,000 at 1M *(extrapolated from the shard size)*: the plan stays in kilobytes to a "
        "few megabytes;",
        f"- a result per shard ({driver['result_pickle_bytes']} bytes): under a megabyte at 2,000 shards;",
        f"- in all, this process's peak RSS (source opened, buckets written, plan made, no shard written): "
        f"{driver['peak_rss'] / MiB:.0f} MiB" + _growth(facts) + ".",
    ]
    listing = facts.get("listing")
    if listing and listing.get("objects"):
        per_object = listing["listing_bytes"] / listing["objects"]
        per_sample = listing["objects"] / facts["n4"]
        lines.append(
            f"- with a source at a URL, the media listing (`media.RemoteMedia`: s3fs's info of every media object, "
            f"for sizes and the media check): {per_object:,.0f} bytes per object, measured on the 4N source in moto "
            f"({listing['objects']:,} objects, {per_sample:.2f} per sample); "
            f"~{mb(per_object * per_sample * samples)} at {samples:,} samples and "
            f"~{mb(per_object * per_sample * 1_000_000)} at 1M *(extrapolated)*. A new one is made (a new "
            "`RemoteMedia`: a listing, which s3fs may answer from its cache) for the media check and for each "
            "split's size estimate."
        )
    lines += [
        "",
        f"**On the driver's disk**: the label buckets, {mb(driver['buckets_bytes'])} (Arrow IPC, LZ4; the "
        f"source's label Parquet files: {mb(driver['labels_parquet_bytes'])}), "
        f"~{driver['buckets_bytes'] * scale / 1e9:,.1f} GB at 1M *(extrapolated)*, in its scratch folder (OUT's "
        "staging folder, or a temporary folder for a URL OUT), and the rows files.",
        "",
        f"**What remains on one machine**, in the driver (seconds at {samples:,} samples: medians of the "
        f"`labels_only` prepare's {len(runs.get('labels', []))} run(s); x{scale:.0f} at 1M *(extrapolated)*):",
        f"- opening the source (reading, checking, joining and sorting the sample tables): "
        f"{labels_phase('open_source'):.2f} s (~{labels_phase('open_source') * scale:.0f} s);",
        f"- the label bucketing pass over strokes and measures: {labels_phase('label_buckets'):.2f} s "
        f"(~{labels_phase('label_buckets') * scale:.0f} s; alone, in the `driver` step: "
        f"{driver['bucketing_s']:.2f} s);",
        f"- the auxiliary tables (strokes.parquet and measures.parquet, written a bucket at a time): "
        f"{labels_phase('auxiliary'):.2f} s (~{labels_phase('auxiliary') * scale:.0f} s);",
        f"- the card's label counts (two columns of every shard of the smallest config, `labels_only`): "
        f"{labels_phase('label_counts'):.2f} s (~{labels_phase('label_counts') * scale:.0f} s);",
        f"- the media check (a header read of every file): {check:.2f} s for the {facts['n4']:,} samples of 4N on "
        f"the local disk, ~{check / facts['n4'] * 1_000_000:.0f} s at 1M *(extrapolated)*;",
    ]
    if "prepare_audio_4n_s3" in runs:
        remote = _median(_phase(runs, "prepare_audio_4n_s3", "check_media"))
        lines.append(
            f"  from S3 (moto), a listing and one ranged GET per file: {remote:.2f} s at 4N, "
            f"~{remote / facts['n4'] * 1_000_000:.0f} s at 1M *(extrapolated; moto's cost per request, not S3's)*;"
        )
    lines.append(
        f"- for Ray with a URL OUT, copying the rows files and the label buckets to the staging prefix: "
        f"{mb(driver['rows_files_bytes'] + driver['buckets_bytes'])} at {samples:,} samples, "
        f"~{(driver['rows_files_bytes'] + driver['buckets_bytes']) * scale / 1e9:,.0f} GB at 1M *(extrapolated)*, "
        "sent by the driver;"
    )
    if "prepare_audio_4n_s3" in runs:
        commit = _median(_phase(runs, "prepare_audio_4n_s3", "commit"))
        lines.append(
            f"- for a URL OUT, the commit: one server-side copy per output file, no data through the machine "
            f"({commit:.2f} s at 4N in moto, which copies the bytes in Python, for "
            f"{_median(_series(runs, 'prepare_audio_4n_s3', 'shard_files')):.0f} shards)."
        )
    else:
        lines.append("- for a URL OUT, the commit: one server-side copy per output file, no data through the machine.")
    lines.append("")
    return lines


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    versions = []
    for module in ("datasets", "huggingface_hub", "pyarrow", "pandas"):
        with contextlib.suppress(ImportError):
            versions.append(f"{module} {__import__(module).__version__}")
    disk = shutil.disk_usage(tempfile.gettempdir())
    return [
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, "
        f"{memory:.1f} GiB RAM, temp disk {disk.total / 1024**3:.0f} GiB",
        f"Python {platform.python_version()}; " + ", ".join(versions),
    ]


def report(measured: dict, summary: dict, args: argparse.Namespace, command: str) -> str:
    runs, facts = measured["runs"], measured["facts"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mb = facts["data_bytes"] / 1e6

    def listing(values: list[float], fmt: str) -> str:
        return ", ".join(fmt.format(v) for v in values)

    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {now} ({facts['total_seconds'] / 60:.1f} min). "
        f"N = {facts['n']} samples ({mb:.0f} MB of FLAC, MIDI and labels), 4N = {facts['n4']} "
        f"({facts['data4_bytes'] / 1e6:.0f} MB); {args.repeat} repeat(s). Each ratio is taken within a repeat "
        "(its two sides run back to back, in alternating order) and the median over repeats is shown, with every "
        "repeat's value in brackets: the machine is shared with other test runs and noisy.",
        "",
        "## Ratios against the targets of issues 5 and 15",
        "",
        "| measure | target | median | repeats | met |",
        "|---|---|---|---|---|",
    ]
    for name, target, values, met, note in summary["ratios"]:
        if note is not None:
            lines.append(f"| {name} | {target} | {note} | | |")
            continue
        verdict = "n/a" if met is None else "yes" if met else "no"
        lines.append(f"| {name} | {target} | {_median(values):.2f} | {listing(values, '{:.2f}')} | {verdict} |")
    lines += [
        "",
        f"Peak RSS of prepare: {summary['peak'] / MiB:.0f} MiB at most. Re-publish: "
        f"{max(facts['republish_sent']):,} bytes of file content received by the server, "
        f"{max(facts['republish_commits'])} commit(s).",
        "",
        "## Absolute figures (medians; every repeat in brackets)",
        "",
        "| step | data | seconds | MB/s | peak RSS MiB | disk read MB | disk written MB |",
        "|---|---|---|---|---|---|---|",
    ]
    steps = [
        ("floor: pyarrow reads media + labels, writes Parquet", "floor", "N", facts["data_bytes"]),
        ("`prepare --configs audio`", "prepare_audio_n", "N", facts["data_bytes"]),
        ("floor", "floor_4n", "4N", facts["data4_bytes"]),
        ("`prepare --configs audio`", "prepare_audio_4n", "4N", facts["data4_bytes"]),
        ("`prepare --configs audio --num-proc 2`", "prepare_audio_4n_np2", "4N", facts["data4_bytes"]),
        ("usual approach: from_dict + cast_column(Audio()) + push_to_hub", "usual", "N", facts["data_bytes"]),
        ("ours: `prepare` (all configs) + `publish`", "ours", "N", facts["data_bytes"]),
        ("usual approach", "usual_4n", "4N", facts["data4_bytes"]),
        ("ours: `prepare` + `publish`", "ours_4n", "4N", facts["data4_bytes"]),
        ("re-publish, unchanged", "republish", "N", facts["data_bytes"]),
        ("`prepare --configs audio --engine ray --num-proc 2`", "prepare_audio_4n_ray", "4N", facts["data4_bytes"]),
        (
            "`prepare --configs audio --engine ray --ray-address HEAD` (running 2-CPU Ray)",
            "prepare_audio_4n_ray_joined",
            "4N",
            facts["data4_bytes"],
        ),
        ("`prepare` S3 to S3, `--configs audio --num-proc 2`", "prepare_audio_4n_s3", "4N", facts["data4_bytes"]),
    ]
    for title, key, size, data_bytes in steps:
        if key not in runs:
            continue
        values = [_e2e(r) if key.startswith("ours") else r["seconds"] for r in runs[key]]
        lines.append(
            f"| {title} | {size} | {_median(values):.2f} ({listing(values, '{:.2f}')}) "
            f"| {data_bytes / 1e6 / _median(values):.0f} "
            f"| {_median(_series(runs, key, 'peak_rss')) / MiB:.0f} "
            f"| {_median([r.get('disk_read', 0) for r in runs[key]]) / 1e6:.0f} "
            f"| {_median(_series(runs, key, 'disk_written')) / 1e6:.0f} |"
        )
    ours_prepare, ours_publish = _series(runs, "ours", "prepare_s"), _series(runs, "ours", "publish_s")
    labels_prepare, labels_validate = _series(runs, "labels"), _series(runs, "labels_validate")
    lines += [
        "",
        f"- ours, split: prepare {_median(ours_prepare):.2f} s ({listing(ours_prepare, '{:.2f}')}), "
        f"publish {_median(ours_publish):.2f} s ({listing(ours_publish, '{:.2f}')}); LFS bytes received by the "
        f"server: ours {_median(_series(runs, 'ours_lfs', 'bytes')) / 1e6:.0f} MB (3 configs + auxiliary), usual "
        f"{_median(_series(runs, 'usual_lfs', 'bytes')) / 1e6:.0f} MB.",
        f"- labels scale, {facts['label_samples']:,} samples / {facts['label_strokes']:,} stroke rows, no media: "
        f"`prepare --configs labels_only` {_median(labels_prepare):.2f} s ({listing(labels_prepare, '{:.2f}')}), "
        f"peak RSS {_median(_series(runs, 'labels', 'peak_rss')) / MiB:.0f} MiB; `validate` label checks "
        f"{_median(labels_validate):.2f} s ({listing(labels_validate, '{:.2f}')}), peak RSS "
        f"{_median(_series(runs, 'labels_validate', 'peak_rss')) / MiB:.0f} MiB.",
        *_engine_lines(measured),
        "",
        *past_one_machine(measured),
        "## How it is measured",
        "",
        *(
            ["- **`--in-process`: every step ran in the harness process; peak RSS and disk figures mean nothing.**"]
            if args.in_process
            else []
        ),
        "- Every step runs in a fresh Python process, after `os.sync()` (so that no step pays for writing back "
        "the one before); seconds are the work itself (imports excluded), peak RSS is "
        "that process's VmHWM (`ru_maxrss` of a child on Linux also keeps the parent's peak across exec; with "
        "`--num-proc 2` the worker processes are not included: their largest `ru_maxrss` was "
        f"{_median(_series(runs, 'prepare_audio_4n_np2', 'peak_rss_children')) / MiB:.0f} MiB), disk written is its "
        "`write_bytes` in /proc/self/io (temporary files included).",
        "- Before each step the harness reads its input folder once, so that the step finds it in the page cache "
        "(without this the first step of a pair read from the disk and the second did not). Disk read is what the "
        "step still fetched from the block device (`read_bytes`; with `--num-proc 2` the workers' reads are not "
        "included): this VM keeps only a few GB in its page cache, so at 4N part of the input can be read from the "
        "disk again, and such steps are bound by the disk, not by the work done on the data.",
        "- The floor reads the labels with pyarrow, nests strokes and measures, reads every FLAC and MIDI file "
        "straight into an Arrow buffer and writes one Parquet file per split: binary columns, media uncompressed, "
        "the rest snappy, 100-row row groups, no page index and no content-defined chunking (datasets 4+ writes "
        "both; `prepare` writes the page index, and no content-defined chunking for the `audio` config: see "
        "`benchmarks/dedup.py`).",
        "- The usual approach loads the label tables with pandas, nests strokes and measures with a groupby, builds "
        '`Dataset.from_dict` per split with the audio file paths, `cast_column("audio", Audio())`, the MIDI bytes '
        "in a list, and `DatasetDict.push_to_hub` (which embeds the files). It runs in the same environment as ours: "
        "casting and embedding audio do not need torch (only `Audio.encode_example` does, which this path never "
        "calls). Ours runs `prepare` with every config (more work than the single config of the usual approach), "
        "then `publish`, which validates the folder and pushes it in one commit.",
        "- Disk: datasets 5.x's `push_to_hub` writes each shard to a temporary Parquet file before uploading it "
        "(datasets 3.6 keeps it in memory), so the usual approach writes one copy of the data, as ours does; neither "
        "makes an Arrow cache (`Dataset.from_dict` stays in memory). Ours keeps its copy: the prepared folder, which "
        "`publish` reads and a re-publish reuses.",
        "- The Hub is tests/hub_server.py, in the harness process (not in the measured one), plain git-LFS over "
        "127.0.0.1, so uploads cost little next to a real network.",
        "- `--engine ray` starts Ray on this machine with 2 CPUs for the run and stops it after: both are inside the "
        "step's time (the overhead a user pays). The step runs in a network namespace of its own with only loopback "
        "(`unshare -n`; Ray binds some services to the machine's interface) and a Ray temporary folder of its own. "
        "Its peak RSS and disk figures are the driver's; Ray's processes (GCS, raylet, workers) are not included.",
        "- `--ray-address HEAD` joins a Ray of one 2-CPU node that `ray start --head` started in the step's namespace "
        "before the step (outside its clock, as a user's running cluster), and that is killed after it: the step's "
        "time is connecting, the shards as tasks, and leaving, not Ray's own start.",
        "- S3 is moto's server (`moto[server]`), in the harness process (a thread; not in the measured one), on "
        "127.0.0.1. It keeps objects of up to ~5 MB (the media) in memory and larger ones (the shards, sent in "
        "multipart uploads) in spooled temporary files, and its Python request handling shares the 2 cores with "
        "the step. So the ratio is an upper bound of the client side's cost (s3fs requests, the staging prefix, the "
        "commit's server-side copies) plus moto's own, not a figure for a real S3 (no network latency, but no S3 "
        "throughput either). The source is uploaded once; the output is removed between repeats.",
        "- Phases (seconds spent in parts of `prepare`, in the figures above and below) are timed by wrapping those "
        "functions in the measured process (`_timed_phases`); nothing else changes.",
        "- `results.json` next to this file holds every measurement.",
        "",
        "## Machine",
        "",
        *(f"- {line}" for line in machine()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=400, help="N: samples of the sample dataset (default 400)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats to take medians over (default 3)")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md goes (default: benchmarks/)")
    parser.add_argument(
        "--label-profiles", type=int, default=100, help="labels-only source: x 1000 samples (default 100: 100k)"
    )
    parser.add_argument("--label-repeat", type=int, default=3, help="repeats of the labels-scale part (default 3)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every step in this process (quick, for the smoke test; peak RSS then means nothing)",
    )
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary folder, removed after)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sousa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measured = bench(args, work.resolve())
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(measured)
    command = "python benchmarks/run.py " + " ".join(argv)
    text = report(measured, summary, args, command.strip())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(text, encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(measured, indent=1), encoding="utf-8")
    print()
    for name, target, values, met, note in summary["ratios"]:
        if note is not None:
            print(f"{name:<50} {note}")
            continue
        verdict = "reported" if met is None else "met" if met else "MISSED"
        print(f"{name:<50} {_median(values):6.2f}  target {target:<20} {verdict}")
    print(f"wrote {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
