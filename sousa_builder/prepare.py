"""Prepare a SOUSA directory as Parquet shards in the Hub layout, with a README that describes them.

```
OUT/README.md
OUT/{config}/{split}-NNNNN-of-NNNNN.parquet
OUT/auxiliary/strokes.parquet, OUT/auxiliary/measures.parquet
```
Everything is built in a staging folder next to OUT; OUT is replaced only once the new output is
complete, so an interrupted or refused run leaves the previous OUT as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import DatasetInfo, SplitDict, SplitInfo

from .builder import Sousa, SousaConfig, class_ids, config_names
from .card import dataset_card_text, label_counts
from .errors import OutputExistsError
from .features import FLAT_COLUMNS, features_for
from .labels import LABEL_TABLES, LabelBuckets
from .shards import ShardTask, ShardWriters, count_shards, shard_ranges, size_text
from .source import DataDir, SousaSource

logger = logging.getLogger(__name__)

AUXILIARY_DIR = "auxiliary"
README = "README.md"  # the dataset card, with the YAML that configures loading


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

    out: Path
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
) -> PrepareResult:
    """Build the chosen configs (default: all) of the SOUSA directory `data_dir` into `out`.

    Each split of a config is cut into shards of at most `max_shard_size` (bytes, or "500MB"; the
    default), or into exactly `num_shards`; they are written in `num_proc` processes. The output is
    the same byte for byte whatever `num_proc`. The source is checked first; nothing is written when
    it is refused. An existing `out` is replaced only if it is an earlier output of this command (or empty).
    """
    started = time.perf_counter()
    names = _checked_config_names(configs)
    out = Path(out).absolute()
    previous = _previous_output(out)
    source = SousaSource.open(data_dir)
    specs = [Sousa.builder_configs[name] for name in names]
    source.check_media(with_midi=any(s.with_midi for s in specs), with_audio=any(s.with_audio for s in specs))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    result = PrepareResult(out=out, replaced_previous=previous)
    try:
        cache = staging / ".cache"
        # The stroke and measure rows, split once into buckets of samples for every config and the auxiliary tables.
        labels = LabelBuckets.write(source.root, source.rows["sample_id"].combine_chunks(), cache / "labels")
        splits = _write_split_rows(source, cache)
        infos = {}
        with ShardWriters(num_proc) as writers:
            for spec in specs:
                plan = _shard_plan(spec, splits, source, labels, staging, max_shard_size, num_shards)
                infos[spec.name], result.configs[spec.name] = _prepare_config(spec, plan, staging, writers)
        _write_auxiliary(labels, staging / AUXILIARY_DIR)
        card = dataset_card_text(infos, counts=label_counts(staging, infos))
        (staging / README).write_bytes(card.encode("utf-8"))
        shutil.rmtree(cache)
        _replace(out, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.seconds = time.perf_counter() - started
    return result


def _checked_config_names(configs: Sequence[str] | None) -> list[str]:
    known = config_names()
    if not configs:
        return known
    unknown = [name for name in configs if name not in known]
    if unknown:
        raise ValueError(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [name for name in known if name in configs]


def _previous_output(out: Path) -> bool:
    """Whether `out` holds an earlier output (True) or nothing (False); refuse anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    ours = {"README.md", ".gitattributes", AUXILIARY_DIR, *config_names()}
    foreign = sorted(entry.name for entry in out.iterdir() if entry.name not in ours)
    if foreign:
        raise OutputExistsError(
            f"{out} holds files that are not a prepared SOUSA folder ({', '.join(foreign[:5])}); "
            "choose another --out, or empty it yourself"
        )
    return any(out.iterdir())


def _write_split_rows(source: SousaSource, cache: Path) -> dict[str, tuple[Path, pa.Table]]:
    """Each split's sample rows, in an Arrow file that the shard writers map (sent to no process whole)."""
    splits = {}
    for split in source.split_names:
        rows, path = source.split_rows(split), cache / f"rows-{split}.arrow"
        with pa.ipc.new_file(path, rows.schema) as writer:
            writer.write_table(rows)
        splits[split] = path, rows
    return splits


def _shard_plan(
    spec: SousaConfig,
    splits: dict[str, tuple[Path, pa.Table]],
    source: SousaSource,
    labels: LabelBuckets,
    staging: Path,
    max_shard_size: int | str | None,
    num_shards: int | None,
) -> dict[str, list[ShardTask]]:
    """split -> the shards of one config: ranges of the split's rows and the files they go to."""
    plan = {}
    for split, (rows_file, rows) in splits.items():
        count = num_shards or count_shards(_estimated_bytes(spec, rows, source.root, labels), max_shard_size)
        ranges = shard_ranges(rows.num_rows, count)
        plan[split] = [
            ShardTask(spec.name, str(rows_file), start, stop, str(source.root), labels,
                      str(staging / spec.name / f"{split}-{index:05d}-of-{len(ranges):05d}.parquet"))
            for index, (start, stop) in enumerate(ranges)
        ]  # fmt: skip
    return plan


def _estimated_bytes(spec: SousaConfig, rows: pa.Table, root: Path, labels: LabelBuckets) -> int:
    """The Arrow size of a config's split (what `max_shard_size` bounds, as in `datasets`): its label columns,
    its strokes and measures at their mean row size, and its media files."""
    total = class_ids(rows.select(FLAT_COLUMNS)).nbytes
    for name, count in (("strokes", "num_strokes"), ("measures", "num_measures")):
        total += labels.row_bytes[name] * (pc.sum(rows[count]).as_py() or 0)
    for column in ["midi_path"] * spec.with_midi + ["audio_path"] * spec.with_audio:
        total += sum(os.path.getsize(root / path) for path in rows[column].to_pylist())
    return int(total)


def _prepare_config(
    spec: SousaConfig, plan: dict[str, list[ShardTask]], staging: Path, writers: ShardWriters
) -> tuple[DatasetInfo, dict[str, SplitOutput]]:
    """Write the shards of one config; its info (features, splits, sizes) for the card."""
    (staging / spec.name).mkdir()
    started = time.perf_counter()
    splits, split_infos = {}, SplitDict(dataset_name="sousa")
    for split, tasks in plan.items():
        shards = writers.write(tasks, desc=f"Preparing {spec.name}/{split}")
        files = [Path(shard.path).relative_to(staging).as_posix() for shard in shards]
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


def _write_auxiliary(labels: LabelBuckets, folder: Path) -> None:
    """The flat stroke and measure tables of the prepared samples, sorted by (sample_id, index).

    Written a bucket of samples at a time, so that memory does not grow with the dataset.
    """
    folder.mkdir()
    for name, schema in LABEL_TABLES.items():
        with pq.ParquetWriter(folder / f"{name}.parquet", schema) as writer:
            for bucket in range(labels.num_buckets):
                writer.write_table(labels.rows(name, bucket))


def _replace(out: Path, staging: Path) -> None:
    """Put the complete `staging` folder in place of `out`."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired)
    logger.info("replaced the previous %s", out)
