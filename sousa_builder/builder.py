"""The SOUSA dataset builder: three configs over one SOUSA output directory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pyarrow as pa

from .compat import writing_examples
from .features import features_for
from .source import SousaSource, nested_labels, read_media, resolve_data_dir

logger = logging.getLogger(__name__)

_DESCRIPTION = (
    "SOUSA (Synthetic Open Unified Snare Assessment): synthetic performances of the 40 PAS drum "
    "rudiments by simulated players in four skill tiers, with FLAC audio, MIDI and labels at three "
    "levels (strokes, measures, exercise scores)."
)
_LICENSE = "mit"


@dataclass
class SousaConfig(datasets.BuilderConfig):
    """A SOUSA config: which media ride along with the labels, and how rows are sharded."""

    with_midi: bool = False
    with_audio: bool = False
    # Samples per gen_kwargs shard: the unit `num_proc` distributes over processes.
    samples_per_shard: int = 256


class Sousa(datasets.GeneratorBasedBuilder):
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

    def __init__(self, *args: Any, data_dir: str | None = None, **kwargs: Any):
        # Resolve the default here so the cache fingerprint names the directory actually read.
        self._data_dir = resolve_data_dir(data_dir)
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
        size = self.config.samples_per_shard
        generators = []
        for split in source.split_names:
            rows = source.split_rows(split)
            shards = [rows.slice(start, size) for start in range(0, rows.num_rows, size)]
            generators.append(
                datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards, "root": str(source.root)})
            )
        return generators

    def _generate_examples(self, shards: list[pa.Table], root: str) -> Iterator[tuple[str, dict[str, Any]]]:
        # The label tables of this job's samples are held; media are read one example at a time.
        rows = pa.concat_tables(shards).drop_columns(["split"])
        strokes, measures = nested_labels(Path(root), rows["sample_id"].combine_chunks())
        rows = rows.append_column("strokes", strokes).append_column("measures", measures)
        for batch in rows.to_batches(max_chunksize=64):
            for row in batch.to_pylist():
                audio_path, midi_path = row.pop("audio_path"), row.pop("midi_path")
                if self.config.with_midi:
                    row["midi"] = read_media(Path(root), midi_path, row["sample_id"])
                if self.config.with_audio:
                    audio = read_media(Path(root), audio_path, row["sample_id"])
                    row["audio"] = {"bytes": audio, "path": PurePosixPath(audio_path).name}
                yield row["sample_id"], row

    def _prepare_split(self, split_generator: datasets.SplitGenerator, **kwargs: Any) -> None:
        with writing_examples(self.info.features):
            super()._prepare_split(split_generator, **kwargs)


def config_names() -> list[str]:
    """Names of the builder's configs, default first."""
    return [config.name for config in Sousa.BUILDER_CONFIGS]
