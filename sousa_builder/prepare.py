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

import pyarrow.parquet as pq
from datasets import DatasetInfo

from .builder import Sousa, config_names
from .card import dataset_card_text
from .errors import OutputExistsError
from .labels import LABEL_TABLES, LabelBuckets
from .source import SousaSource

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
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    configs: Sequence[str] | None = None,
    num_proc: int | None = None,
    max_shard_size: int | str | None = None,
    samples_per_shard: int | None = None,
) -> PrepareResult:
    """Build the chosen configs (default: all) of the SOUSA directory `data_dir` into `out`.

    The source is checked first; nothing is written when it is refused. An existing `out` is
    replaced only if it is an earlier output of this command (or empty).
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
        # The stroke and measure rows, split once into buckets of samples for every config and the auxiliary tables.
        labels = LabelBuckets.write(source.root, source.rows["sample_id"].combine_chunks(), staging / ".cache/labels")
        infos = {}
        for name in names:
            infos[name], result.configs[name] = _prepare_config(
                source, labels, name, staging, num_proc, max_shard_size, samples_per_shard
            )
        _write_auxiliary(labels, staging / AUXILIARY_DIR)
        (staging / README).write_bytes(dataset_card_text(infos).encode("utf-8"))
        shutil.rmtree(staging / ".cache")
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


def _prepare_config(
    source: SousaSource,
    labels: LabelBuckets,
    name: str,
    staging: Path,
    num_proc: int | None,
    max_shard_size: int | str | None,
    samples_per_shard: int | None,
) -> tuple[DatasetInfo, dict[str, SplitOutput]]:
    """Run `download_and_prepare(file_format="parquet")` for one config; move its shards into the Hub layout."""
    build_dir = staging / ".cache" / f"{name}-parquet"
    options = {"samples_per_shard": samples_per_shard} if samples_per_shard else {}
    builder = Sousa(
        config_name=name, data_dir=str(source.root), cache_dir=str(staging / ".cache"), label_buckets=labels, **options
    )
    builder.download_and_prepare(
        output_dir=str(build_dir), file_format="parquet", num_proc=num_proc, max_shard_size=max_shard_size
    )
    (staging / name).mkdir()
    splits = {}
    for split, split_info in builder.info.splits.items():
        shards = sorted(build_dir.glob(f"{builder.dataset_name}-{split}.parquet")) or sorted(
            build_dir.glob(f"{builder.dataset_name}-{split}-*-of-*.parquet")
        )
        files = []
        for index, shard in enumerate(shards):
            relative = f"{name}/{split}-{index:05d}-of-{len(shards):05d}.parquet"
            shard.rename(staging / relative)
            files.append(relative)
        file_bytes = sum((staging / f).stat().st_size for f in files)
        splits[split] = SplitOutput(split_info.num_examples, split_info.num_bytes, files, file_bytes)
    info = DatasetInfo(
        features=builder.info.features,
        splits=builder.info.splits,
        download_size=sum(s.file_bytes for s in splits.values()),
        dataset_size=sum(s.num_bytes for s in splits.values()),
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
