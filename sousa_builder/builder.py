"""The SOUSA dataset builder: three configs over one SOUSA output directory."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .compat import writing_tables
from .features import features_for, label_features
from .labels import LabelBuckets, runs
from .source import SousaSource, read_media_array, resolve_data_dir

logger = logging.getLogger(__name__)

# datasets (3.6 to 5.2, `extend_module_for_streaming`) patches the module of every builder it makes for
# streaming remote files: `open`, `pathlib.Path`, `os.path.*`, and the pandas and scipy readers. This
# builder reads local files only; patched, each `Path / name` parsed a URL and every process imported
# scipy.io (0.2 s). A module that says it is already patched is left as it is.
_patched_for_streaming = True

_DESCRIPTION = (
    "SOUSA (Synthetic Open Unified Snare Assessment): synthetic performances of the 40 PAS drum "
    "rudiments by simulated players in four skill tiers, with FLAC audio, MIDI and labels at three "
    "levels (strokes, measures, exercise scores)."
)
_LICENSE = "mit"
# Rows per table handed to the writer: the row group sizes datasets itself uses for media columns and for the rest.
MEDIA_ROWS_PER_BATCH = 100
LABEL_ROWS_PER_BATCH = 1000


@dataclass
class SousaConfig(datasets.BuilderConfig):
    """A SOUSA config: which media ride along with the labels, and how rows are sharded."""

    with_midi: bool = False
    with_audio: bool = False
    # Samples per gen_kwargs shard: the unit `num_proc` distributes over processes. Small, so that each
    # process gets about the same number of samples (output files are per process, not per shard).
    samples_per_shard: int = 32


class Sousa(datasets.ArrowBasedBuilder):
    """SOUSA from a local generator output directory (`data_dir`, else $SOUSA_DATA_DIR, else ./output/dataset)."""

    BUILDER_CONFIG_CLASS = SousaConfig
    BUILDER_CONFIGS = [
        SousaConfig(
            name="audio",
            with_midi=True,
            with_audio=True,
            description="Labels + the FLAC recording (Audio) + the MIDI file bytes.",
        ),
        SousaConfig(name="midi_only", with_midi=True, description="Labels + the MIDI file bytes."),
        SousaConfig(name="labels_only", description="Metadata, exercise scores, stroke and measure labels."),
    ]
    DEFAULT_CONFIG_NAME = "audio"

    def __init__(
        self, *args: Any, data_dir: str | None = None, label_buckets: LabelBuckets | None = None, **kwargs: Any
    ):
        """`label_buckets`: the labels of `data_dir` already split by `LabelBuckets.write` (prepare makes
        them once for every config); by default the builder splits them itself, in a temporary folder."""
        # Resolve the default here so the cache fingerprint names the directory actually read.
        self._data_dir = resolve_data_dir(data_dir)
        self._label_buckets = label_buckets
        self._label_folders: list[str] = []
        kwargs.setdefault("dataset_name", "sousa")
        super().__init__(*args, data_dir=str(self._data_dir.path), **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=features_for(self.config.with_midi, self.config.with_audio),
            license=_LICENSE,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        source = SousaSource.open(self._data_dir)
        source.check_media(with_midi=self.config.with_midi, with_audio=self.config.with_audio)
        ids = source.rows["sample_id"].combine_chunks()
        labels = self._label_buckets or LabelBuckets.write(source.root, ids, self._label_folder())
        size = self.config.samples_per_shard
        generators = []
        for split in source.split_names:
            in_split = np.flatnonzero(pc.equal(source.rows["split"], split).to_numpy(zero_copy_only=False))
            # Shards are (label bucket, start, stop): ranges of `size` of the split's rows, each in one bucket.
            # num_proc pickles gen_kwargs with dill: one table is fast, thousands of small ones took 10 s per job.
            shards = [
                (bucket, start, min(start + size, end))
                for bucket, first, end in runs(labels.bucket_of(in_split))
                for start in range(first, end, size)
            ]
            rows = source.rows.take(in_split)
            gen_kwargs = {"shards": shards, "rows": rows, "root": str(source.root), "labels": labels}
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs=gen_kwargs))
        return generators

    def _generate_tables(
        self, shards: list[tuple[int, int, int]], rows: pa.Table, root: str, labels: LabelBuckets
    ) -> Iterator[tuple[str, pa.Table]]:
        # Rows are built as Arrow tables, column by column, one label bucket at a time: the labels nested
        # from the bucket's rows, the media as binary arrays read one batch of rows at a time.
        with_media = self.config.with_midi or self.config.with_audio
        size = self._writer_batch_size or (MEDIA_ROWS_PER_BATCH if with_media else LABEL_ROWS_PER_BATCH)
        for bucket, first, end in runs(np.array([shard[0] for shard in shards])):
            start, stop = shards[first][1], shards[end - 1][2]  # a job's shards are consecutive
            group = rows.slice(start, stop - start)
            strokes, measures = labels.nested(bucket, group["sample_id"].combine_chunks())
            group = group.append_column("strokes", strokes).append_column("measures", measures)
            for offset in range(0, group.num_rows, size):
                yield self._table(group.slice(offset, size), Path(root))

    def _table(self, batch: pa.Table, root: Path) -> tuple[str, pa.Table]:
        """(key, table) of one batch of rows: the label columns, then the media read from `root`."""
        table = batch.select(list(label_features()))
        ids = batch["sample_id"].to_pylist()
        if self.config.with_midi:
            table = table.append_column("midi", read_media_array(root, batch["midi_path"].to_pylist(), ids))
        if self.config.with_audio:
            paths = batch["audio_path"].to_pylist()
            table = table.append_column("audio", _audio_column(read_media_array(root, paths, ids), paths))
        return ids[0], table

    def _label_folder(self) -> Path:
        """A new folder for the label buckets, removed after `download_and_prepare` (or with the builder)."""
        os.makedirs(self._cache_dir_root, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=".sousa-labels-", dir=self._cache_dir_root)
        weakref.finalize(self, shutil.rmtree, folder, True)
        self._label_folders.append(folder)
        return Path(folder)

    def _download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        try:
            super()._download_and_prepare(*args, **kwargs)
        finally:
            while self._label_folders:
                shutil.rmtree(self._label_folders.pop(), ignore_errors=True)

    def _prepare_split(self, split_generator: datasets.SplitGenerator, **kwargs: Any) -> None:
        with writing_tables():
            super()._prepare_split(split_generator, **kwargs)


def _audio_column(data: pa.ChunkedArray, paths: list[str]) -> pa.ChunkedArray:
    """The storage of an `Audio` column: each file's bytes, and its file name as the path."""
    names = pa.array([PurePosixPath(path).name for path in paths], pa.string())
    chunks, offset = [], 0
    for chunk in data.chunks:
        chunks.append(pa.StructArray.from_arrays([chunk, names.slice(offset, len(chunk))], ["bytes", "path"]))
        offset += len(chunk)
    return pa.chunked_array(chunks)


def config_names() -> list[str]:
    """Names of the builder's configs, default first."""
    return [config.name for config in Sousa.BUILDER_CONFIGS]
