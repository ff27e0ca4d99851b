"""Workarounds for the `datasets` versions we support (3.6 and 4.x/5.x), active only while a split is written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import datasets
import datasets.builder
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.arrow_writer import ParquetWriter
from packaging.version import Version

DATASETS_4 = Version(datasets.__version__) >= Version("4")


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


class _RowsParquetWriter(ParquetWriter):
    """datasets' `ParquetWriter` for rows that already carry the media bytes.

    The builder puts each file's bytes in its row, so there is nothing to embed; datasets would
    otherwise run `Audio.embed_storage` over every row in Python, copying each FLAC file out of Arrow
    and back in.
    """

    if not DATASETS_4:
        # datasets 3.x writes every Parquet column with snappy and dictionaries; 4+ leaves embedded
        # media uncompressed and PLAIN. Do as 4+ does.
        _WRITER_CLASS = _MediaAwareParquetWriter

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["embed_local_files"] = False
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def writing_tables() -> Iterator[None]:
    """While a split is written, datasets' builder writes Parquet with `_RowsParquetWriter`."""
    writer_class = datasets.builder.ParquetWriter
    datasets.builder.ParquetWriter = _RowsParquetWriter
    try:
        yield
    finally:
        datasets.builder.ParquetWriter = writer_class
