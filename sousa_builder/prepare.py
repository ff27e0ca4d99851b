"""Prepare a SOUSA directory as Parquet shards in the Hub layout, with a README that describes them.

```
OUT/README.md
OUT/{config}/{split}-NNNNN-of-NNNNN.parquet
OUT/auxiliary/strokes.parquet, OUT/auxiliary/measures.parquet
```
Everything is built in a staging folder or prefix, with a manifest of what was written
(`.sousa/manifest.json`), and put in place once the new output is complete, only if OUT is an
earlier output of prepare (`store.replacing`: one set of rules for a local folder and a URL), so a
refused run leaves the previous OUT as it was. The source and OUT may be URLs (`storage`): media are
then read and shards written through fsspec, as streams; a local OUT is replaced in one step, a URL
by server-side copies with the README last (`bucket_output`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import DatasetInfo, SplitDict, SplitInfo

from .builder import Sousa, SousaConfig, class_ids, config_names
from .card import dataset_card_text, label_counts
from .features import FLAT_COLUMNS, features_for
from .labels import LABEL_TABLES, LabelBuckets
from .layout import AUXILIARY_DIR, README, auxiliary_path, shard_name
from .manifest import remember_hashes
from .shards import ShardTask, ShardWriters, count_shards, shard_ranges, size_text
from .source import DataDir, SousaSource
from .storage import created, filesystem, is_url, join, location, relative_to
from .store import Staging, refuse_overlap, replacing, temporary_prefix

if TYPE_CHECKING:
    from .ray_engine import RayShardWriters

logger = logging.getLogger(__name__)

PREPARED = "prepare"  # the kind of folder in its manifest


@dataclass
class SplitOutput:
    """One prepared split: its row count, Arrow size, shard files (relative to OUT) and their size."""

    num_examples: int
    num_bytes: int
    files: list[str]
    file_bytes: int


@dataclass
class PrepareResult:
    """What `prepare` wrote."""

    out: Path | str  # a local folder, or a URL
    configs: dict[str, dict[str, SplitOutput]] = field(default_factory=dict)
    seconds: float = 0.0
    replaced_previous: bool = False


def prepare(
    data_dir: str | os.PathLike | DataDir,
    out: str | os.PathLike,
    configs: Sequence[str] | None = None,
    num_proc: int | None = None,
    max_shard_size: int | str | None = None,
    num_shards: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> PrepareResult:
    """Build the chosen configs (default: all) of the SOUSA directory `data_dir` into `out`.

    The output is the same byte for byte whatever `num_proc`, and with `engine="ray"`. The source is checked
    first; nothing is written when it is refused. An existing `out` is replaced only if it is an earlier output
    of this command (or empty), unchanged since (its manifest); a refused run leaves it as it was, and an
    interrupted one says what it left (`store.left_as`).

    Args:
        data_dir (`str`, `os.PathLike` or [`~source.DataDir`]):
            The SOUSA directory: a folder, or a URL (s3://, gs://, ...; see `storage`).
        out (`str` or `os.PathLike`):
            Where the output goes: a folder, or a URL; not inside `data_dir`.
        configs (`Sequence[str]`, *optional*):
            The configs to build; all of them by default.
        num_proc (`int`, *optional*):
            Processes writing shards; None or 1: this process. With `engine="ray"`, the CPUs of the Ray started
            for the run (default all).
        max_shard_size (`int` or `str`, *optional*):
            The largest shard, in bytes or as "500MB" (the default), as `push_to_hub` counts it.
        num_shards (`int`, *optional*):
            Exactly this many shards per split, instead of `max_shard_size`.
        engine (`str`, *optional*, defaults to `"local"`):
            "local" (processes on this machine) or "ray" (each shard a Ray task; see `ray_engine`).
        ray_address (`str`, *optional*):
            The Ray cluster to join with `engine="ray"` ("auto": the running one); None starts one for the run.

    Returns:
        [`PrepareResult`]: what was written: each config's splits (rows, sizes, shard files) and the seconds taken.

    Raises:
        [`~errors.SourceNotFoundError`]:
            No SOUSA dataset at `data_dir`.
        [`~errors.SourceFormatError`]:
            The labels, splits.json or media break a rule; the message names the sample, file and value.
        [`~errors.OutputExistsError`]:
            `out` is inside `data_dir`, holds something that is not an earlier output, or cannot be made.
        [`~errors.OutputBusyError`]:
            Another run is writing `out`.
        [`~errors.StorageError`]:
            A URL whose filesystem cannot be used ([`~errors.StorageConnectionError`]: its endpoint cannot be
            reached).
        [`~errors.RayNotInstalledError`]:
            `engine="ray"` without Ray installed.
        [`~errors.RayConnectionError`]:
            No Ray cluster at `ray_address`.
        `ValueError`:
            An unknown config or engine, `ray_address` without `engine="ray"`, or a `max_shard_size` that does
            not parse.
    """
    started = time.perf_counter()
    names = _checked_config_names(configs)
    out = location(out)
    refuse_overlap(out, "--out", data_dir.path if isinstance(data_dir, DataDir) else data_dir, "the SOUSA directory")
    writers = _shard_writers(engine, num_proc, ray_address)
    specs = [Sousa.builder_configs[name] for name in names]
    with replacing(out, PREPARED, "--out") as staging, _scratch(staging) as cache:
        source = _open_source(data_dir, cache)
        source.check_media(with_midi=any(s.with_midi for s in specs), with_audio=any(s.with_audio for s in specs))
        result = PrepareResult(out=out, replaced_previous=staging.replaces_previous)
        hashes: dict[str, str] = {}
        # The stroke and measure rows, split once into buckets of samples for every config and the auxiliary tables.
        ids, counts = source.rows["sample_id"].combine_chunks(), source.label_row_counts()
        labels = LabelBuckets.write(source.root, ids, cache / "labels", row_counts=counts)
        splits = _write_split_rows(source, cache)
        if isinstance(staging.path, str) and engine == "ray":  # Ray nodes read them from the staging prefix
            labels, splits = _shared(cache, join(staging.path, ".cache"), labels, splits)
        infos = {}
        plans = {spec.name: _shard_plan(spec, splits, source, labels, staging.path, max_shard_size, num_shards)
                 for spec in specs}  # fmt: skip
        # The auxiliary tables are written in a thread while the shards are (pyarrow encodes without the GIL).
        stop = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix="sousa-auxiliary") as background:
            auxiliary = background.submit(_write_auxiliary, labels, staging.path, stop)
            try:
                with writers:
                    writers.submit([task for plan in plans.values() for tasks in plan.values() for task in tasks])
                    for spec in specs:
                        plan = plans[spec.name]
                        info, result.configs[spec.name] = _prepare_config(spec, plan, staging.path, writers, hashes)
                        infos[spec.name] = info
            except BaseException:
                stop.set()  # the thread stops at its next bucket; the staging folder is discarded
                raise
            hashes.update(auxiliary.result())
        card = dataset_card_text(infos, counts=label_counts(staging.path, infos))
        _write_bytes(join(staging.path, README), card.encode("utf-8"), hashes, README)
        _remove_scratch(staging, cache)
        manifest = staging.write_manifest(PREPARED, hashes)
    if isinstance(out, Path):
        remember_hashes(out, manifest)
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _scratch(staging: Staging) -> Iterator[Path]:
    """A local folder for the run's working files: in the staging folder (a cluster sharing the filesystem sees
    it there), or a temporary folder named with this process's pid when the staging is a URL (a later run removes
    it if this one is killed)."""
    if isinstance(staging.path, Path):
        yield staging.path / ".cache"
        return
    with tempfile.TemporaryDirectory(prefix=temporary_prefix("sousa-prepare-")) as folder:
        yield Path(folder)


def _remove_scratch(staging: Staging, cache: Path) -> None:
    if isinstance(staging.path, Path):
        shutil.rmtree(cache)
        return
    fs, path = filesystem(join(staging.path, ".cache"))
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _open_source(data_dir: str | os.PathLike | DataDir, cache: Path) -> SousaSource:
    if not isinstance(data_dir, DataDir) and is_url(data_dir):
        return SousaSource.open_url(str(data_dir).rstrip("/"), cache / "source")
    return SousaSource.open(data_dir)


def _shared(
    cache: Path, url: str, labels: LabelBuckets, splits: dict[str, tuple[Path, pa.Table]]
) -> tuple[LabelBuckets, dict[str, tuple[str, pa.Table]]]:
    """Copy the label buckets and split rows to `url` (under the staging prefix), for workers on other machines."""
    fs, path = filesystem(url)
    fs.put(str(Path(labels.folder)), f"{path}/labels", recursive=True)
    for rows_file, _ in splits.values():
        fs.put_file(str(rows_file), f"{path}/{rows_file.name}")
    shared = {split: (f"{url}/{rows_file.name}", rows) for split, (rows_file, rows) in splits.items()}
    return labels.moved_to(f"{url}/labels"), shared


def _write_bytes(where: Path | str, data: bytes, hashes: dict[str, str], relative: str) -> None:
    """Write a small file; a URL's sha256 (hashed as it is sent) goes into `hashes` under `relative`."""
    if isinstance(where, Path):
        where.write_bytes(data)
        return
    with created(where) as stream:
        stream.write(data)
    hashes[relative] = stream.sha256


ENGINES = ("local", "ray")


def _shard_writers(engine: str, num_proc: int | None, ray_address: str | None) -> ShardWriters | RayShardWriters:
    """The shard writers of `engine`: processes of this machine, or Ray tasks (Ray is imported only then)."""
    if engine == "local":
        if ray_address is not None:
            raise ValueError("ray_address (--ray-address) needs engine='ray' (--engine ray)")
        return ShardWriters(num_proc)
    if engine == "ray":
        from .ray_engine import RayShardWriters, import_ray

        import_ray()  # a missing Ray is said before anything is read or written
        return RayShardWriters(ray_address, num_cpus=num_proc)
    raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def _checked_config_names(configs: Sequence[str] | None) -> list[str]:
    known = config_names()
    if not configs:
        return known
    unknown = [name for name in configs if name not in known]
    if unknown:
        raise ValueError(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [name for name in known if name in configs]


def _write_split_rows(source: SousaSource, cache: Path) -> dict[str, tuple[Path, pa.Table]]:
    """Each split's sample rows, in an Arrow file that the shard writers map (sent to no process whole)."""
    cache.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in source.split_names:
        rows, path = source.split_rows(split), cache / f"rows-{split}.arrow"
        with pa.ipc.new_file(path, rows.schema) as writer:
            writer.write_table(rows)
        splits[split] = path, rows
    return splits


def _shard_plan(
    spec: SousaConfig,
    splits: dict[str, tuple[Path | str, pa.Table]],
    source: SousaSource,
    labels: LabelBuckets,
    staging: Path | str,
    max_shard_size: int | str | None,
    num_shards: int | None,
) -> dict[str, list[ShardTask]]:
    """split -> the shards of one config: ranges of the split's rows and the files they go to (in its folder, made)."""
    plan = {}
    folder = join(staging, spec.name)
    if isinstance(folder, Path):
        folder.mkdir()
    for split, (rows_file, rows) in splits.items():
        count = num_shards or count_shards(_estimated_bytes(spec, rows, source, labels), max_shard_size)
        ranges = shard_ranges(rows.num_rows, count)
        plan[split] = [
            ShardTask(spec.name, str(rows_file), start, stop, str(source.media_root), labels,
                      str(join(folder, shard_name(split, index, len(ranges)))))
            for index, (start, stop) in enumerate(ranges)
        ]  # fmt: skip
    return plan


def _estimated_bytes(spec: SousaConfig, rows: pa.Table, source: SousaSource, labels: LabelBuckets) -> int:
    """The Arrow size of a config's split (what `max_shard_size` bounds, as in `datasets`): its label columns,
    its strokes and measures at their mean row size, and its media files."""
    total = class_ids(rows.select(FLAT_COLUMNS)).nbytes
    for name, count in (("strokes", "num_strokes"), ("measures", "num_measures")):
        total += labels.row_bytes[name] * (pc.sum(rows[count]).as_py() or 0)
    for column in ["midi_path"] * spec.with_midi + ["audio_path"] * spec.with_audio:
        total += source.media_bytes(rows, column)
    return int(total)


def _prepare_config(
    spec: SousaConfig,
    plan: dict[str, list[ShardTask]],
    staging: Path | str,
    writers: ShardWriters | RayShardWriters,
    hashes: dict[str, str],
) -> tuple[DatasetInfo, dict[str, SplitOutput]]:
    """Write the shards of one config (their sha256 into `hashes`); its info (features, splits, sizes) for the card."""
    started = time.perf_counter()
    splits, split_infos = {}, SplitDict(dataset_name="sousa")
    for split, tasks in plan.items():
        shards = writers.write(tasks, desc=f"Preparing {spec.name}/{split}")
        files = [relative_to(shard.path, staging) for shard in shards]
        hashes.update(zip(files, (shard.sha256 for shard in shards)))
        num_examples, num_bytes = sum(s.num_examples for s in shards), sum(s.num_bytes for s in shards)
        splits[split] = SplitOutput(num_examples, num_bytes, files, sum(s.file_bytes for s in shards))
        split_infos.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=num_examples, dataset_name="sousa"))
    info = DatasetInfo(
        features=features_for(spec.with_midi, spec.with_audio),
        splits=split_infos,
        download_size=sum(s.file_bytes for s in splits.values()),
        dataset_size=sum(s.num_bytes for s in splits.values()),
    )
    logger.info(
        "prepared %s: %d rows (%s) in %d shards, %s, %.1f s",
        spec.name,
        sum(s.num_examples for s in splits.values()),
        ", ".join(f"{split} {output.num_examples}" for split, output in splits.items()),
        sum(len(s.files) for s in splits.values()),
        size_text(info.download_size),
        time.perf_counter() - started,
    )
    return info, splits


def _write_auxiliary(labels: LabelBuckets, root: Path | str, stop: threading.Event) -> dict[str, str]:
    """Write the flat stroke and measure tables of the prepared samples in `root` (`layout.auxiliary_path`),
    sorted by (sample_id, index); the sha256 of those written to a URL. Stops early once `stop` is set.

    Written a bucket of samples at a time, so that memory does not grow with the dataset.
    """
    hashes = {}
    if isinstance(root, Path):
        (root / AUXILIARY_DIR).mkdir()
    for name, schema in LABEL_TABLES.items():
        where = join(root, auxiliary_path(name))
        with contextlib.ExitStack() as stack:
            sink = str(where) if isinstance(where, Path) else stack.enter_context(created(where))
            with pq.ParquetWriter(sink, schema) as writer:
                for bucket in range(labels.num_buckets):
                    if stop.is_set():
                        return hashes
                    writer.write_table(labels.rows(name, bucket))
        if not isinstance(where, Path):
            hashes[auxiliary_path(name)] = sink.sha256
    return hashes
