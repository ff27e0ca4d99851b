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
from datasets.filesystems import is_remote_filesystem
from fsspec.core import url_to_fs
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


class RowsParquetWriter(ParquetWriter):
    """datasets' `ParquetWriter` for rows that already carry the media bytes, writing them as they are.

    The builder puts each file's bytes in its row, so there is nothing to embed; datasets would
    otherwise run `Audio.embed_storage` over every row in Python, copying each FLAC file out of Arrow
    and back in. Local shards go through a native file, and FLAC columns without content-defined chunking.
    """

    if not DATASETS_4:
        # datasets 3.x writes every Parquet column with snappy and dictionaries; 4+ leaves embedded
        # media uncompressed and PLAIN. Do as 4+ does.
        _WRITER_CLASS = _MediaAwareParquetWriter

    def __init__(self, *args: Any, path: str | None = None, stream: Any = None, **kwargs: Any):
        kwargs["embed_local_files"] = False
        if DATASETS_4 and _embeds_audio(kwargs.get("features")):
            # Embedded FLAC is stored PLAIN and uncompressed, so the Hub's Xet storage deduplicates its bytes
            # as they are. Content-defined chunking would cut it into ~1 MB pages with a header between files,
            # which dedups worse (83% against 95% of a 400 MB shard after 3% of rows are inserted, measured
            # with benchmarks/dedup.py) and costs 0.3 s of CPU per 400 MB.
            kwargs.setdefault("use_content_defined_chunking", False)
        local = stream is None and path is not None and not is_remote_filesystem(url_to_fs(path)[0])
        if local:
            # A local shard is written through a native Arrow file: through fsspec's Python file object,
            # pyarrow hands every page to Python, which copies it (+0.2 s CPU per 400 MB of FLAC).
            stream = pa.OSFile(path, "wb")
        super().__init__(*args, path=path, stream=stream, **kwargs)
        if local:
            self._path, self._closable_stream = path, True


def _embeds_audio(features: datasets.Features | None) -> bool:
    return features is not None and any(isinstance(feature, datasets.Audio) for feature in features.values())


@contextlib.contextmanager
def writing_tables() -> Iterator[None]:
    """While a split is written, datasets' builder writes Parquet with `RowsParquetWriter`."""
    writer_class = datasets.builder.ParquetWriter
    datasets.builder.ParquetWriter = RowsParquetWriter
    try:
        yield
    finally:
        datasets.builder.ParquetWriter = writer_class
