"""The SOUSA dataset builder: three configs over one SOUSA output directory."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from .features import FLAT_COLUMNS, class_label_columns, features_for
from .labels import LabelBuckets, LabelReader
from .media import read_media_array
from .source import SousaSource, resolve_data_dir, source_signature

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


@dataclass
class SousaConfig(datasets.BuilderConfig):
    """A SOUSA config: which media ride along with the labels, and how rows are batched and sharded."""

    with_midi: bool = False
    with_audio: bool = False
    # Rows per Arrow table, so per Parquet row group: the sizes datasets itself uses for media columns and the rest.
    rows_per_batch: int = 1000
    # Samples per gen_kwargs shard: the unit `num_proc` distributes over processes in `download_and_prepare`.
    # Small, so that each process gets about the same number of samples.
    samples_per_shard: int = 32
    # What the SOUSA directory held when the builder was made (`source.source_signature`): part of the config id,
    # so the cache of a regenerated directory is not served for the new one.
    source_signature: str = ""


class Sousa(datasets.ArrowBasedBuilder):
    """SOUSA from a local generator output directory (`data_dir`, else $SOUSA_DATA_DIR, else ./output/dataset)."""

    BUILDER_CONFIG_CLASS = SousaConfig
    BUILDER_CONFIGS = [
        SousaConfig(
            name="audio",
            with_midi=True,
            with_audio=True,
            rows_per_batch=100,
            description="Labels + the FLAC recording (Audio) + the MIDI file bytes.",
        ),
        SousaConfig(name="midi_only", with_midi=True, rows_per_batch=100, description="Labels + the MIDI file bytes."),
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
        kwargs.setdefault("source_signature", source_signature(self._data_dir.path))
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
        labels = self._label_buckets or LabelBuckets.write(
            source.root,
            source.rows["sample_id"].combine_chunks(),
            self._label_folder(),
            row_counts=source.label_row_counts(),
        )
        size = self.config.samples_per_shard
        generators = []
        for split in source.split_names:
            rows = source.split_rows(split)
            # One table and row ranges of it: num_proc pickles gen_kwargs with dill, and thousands of small
            # tables took 10 s per job at 100k samples.
            shards = [(start, min(start + size, rows.num_rows)) for start in range(0, rows.num_rows, size)]
            gen_kwargs = {"shards": shards, "rows": rows, "root": str(source.root), "labels": labels}
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs=gen_kwargs))
        return generators

    def _generate_tables(
        self, shards: list[tuple[int, int]], rows: pa.Table, root: str, labels: LabelBuckets
    ) -> Iterator[tuple[str, pa.Table]]:
        reader = labels.reader()
        for start, stop in shards:
            for table in build_tables(self.config, rows.slice(start, stop - start), Path(root), labels, reader):
                yield table["sample_id"][0].as_py(), table  # the key: the batch's first sample_id

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        """`datasets.DatasetBuilder.download_and_prepare`, then the label buckets it made are removed."""
        try:
            super().download_and_prepare(*args, **kwargs)
        finally:
            while self._label_folders:
                shutil.rmtree(self._label_folders.pop(), ignore_errors=True)

    def _label_folder(self) -> Path:
        """A new temporary folder for the label buckets: removed after `download_and_prepare`, or with the builder
        (a streaming dataset reads them as it goes)."""
        folder = tempfile.mkdtemp(prefix="sousa-labels-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        self._label_folders.append(folder)
        return Path(folder)


def build_tables(
    config: SousaConfig, rows: pa.Table, root: Path, labels: LabelBuckets, reader: LabelReader | None = None
) -> Iterator[pa.Table]:
    """The rows of `config` for `rows` (consecutive sample rows, sorted by sample_id), as tables of
    `config.rows_per_batch` rows: the label columns, the strokes and measures nested from `labels`, then
    the media read from `root` and checked as they are read (`read_media_array`). The same rows give the same
    tables, whoever calls."""
    reader = reader or labels.reader()
    for offset in range(0, rows.num_rows, config.rows_per_batch):
        batch = rows.slice(offset, config.rows_per_batch)
        strokes, measures = reader.nested(batch["sample_id"].combine_chunks())
        table = class_ids(batch.select(FLAT_COLUMNS))
        table = table.append_column("strokes", strokes).append_column("measures", measures)
        ids = batch["sample_id"].to_pylist()
        if config.with_midi:
            table = table.append_column("midi", read_media_array(root, batch["midi_path"].to_pylist(), ids))
        if config.with_audio:
            paths, durations = batch["audio_path"].to_pylist(), batch["duration_sec"].to_pylist()
            audio = read_media_array(root, paths, ids, durations)
            table = table.append_column("audio", _audio_column(audio, paths))
        yield table


def class_ids(table: pa.Table) -> pa.Table:
    """`table` with its class columns (skill_tier, rudiment_slug, ...) as `ClassLabel` ids instead of names.

    The names were checked by `SousaSource.open`: every one is in its vocabulary."""
    for column, label in class_label_columns().items():
        ids = pc.index_in(table[column], value_set=pa.array(label.names)).cast(pa.int64())
        table = table.set_column(table.schema.get_field_index(column), column, ids)
    return table


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
