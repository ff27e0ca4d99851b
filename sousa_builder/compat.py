"""Workarounds for the `datasets` versions we support (3.6 and 4.x/5.x), active only while examples are written."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter
from packaging.version import Version

DATASETS_4 = Version(datasets.__version__) >= Version("4")


class BytesAudio(datasets.Audio):
    """`Audio` that stores the FLAC bytes it is given as they are, without torch.

    datasets >= 4.1 imports torch and torchcodec in `Audio.encode_example`, even for raw bytes
    (3.x and 4.0 did not). The builder's rows always carry the file's bytes, so nothing needs them.
    """

    def encode_example(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"bytes": value["bytes"], "path": value["path"]}


@contextlib.contextmanager
def writing_examples(features: datasets.Features) -> Iterator[None]:
    """Write `features` without torch, and (datasets < 4) without compressing FLAC bytes again.

    The declared `Audio` type is what ends up in the files and the dataset info: it is restored after.
    """
    audio = features.get("audio")
    writer_class = ParquetWriter._WRITER_CLASS if not DATASETS_4 else None
    if isinstance(audio, datasets.Audio):
        fields = {f.name: getattr(audio, f.name) for f in dataclasses.fields(audio) if f.init}
        features["audio"] = BytesAudio(**fields)
    if not DATASETS_4:
        # datasets 3.x writes every Parquet column with snappy and dictionaries; 4+ leaves embedded
        # media uncompressed and PLAIN. Do as 4+ does.
        ParquetWriter._WRITER_CLASS = _MediaAwareParquetWriter
    try:
        yield
    finally:
        if audio is not None:
            features["audio"] = audio
        if writer_class is not None:
            ParquetWriter._WRITER_CLASS = writer_class


def _leaf_paths(path: str, pa_type: pa.DataType) -> list[str]:
    if pa.types.is_struct(pa_type):
        return [leaf for field in pa_type for leaf in _leaf_paths(f"{path}.{field.name}", field.type)]
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type):
        return _leaf_paths(f"{path}.list.element", pa_type.value_type)
    return [path]


class _MediaAwareParquetWriter(pq.ParquetWriter):
    """`pq.ParquetWriter` with FLAC bytes stored as they are and everything else snappy + dictionary."""

    def __init__(self, where: Any, schema: pa.Schema, **options: Any):
        leaves = [leaf for field in schema for leaf in _leaf_paths(field.name, field.type)]
        media = {"audio.bytes"}
        options.setdefault("compression", {leaf: "none" if leaf in media else "snappy" for leaf in leaves})
        options.setdefault("use_dictionary", [leaf for leaf in leaves if leaf not in media])
        super().__init__(where, schema, **options)
