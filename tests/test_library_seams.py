"""Pins for the places where sousa-builder leans on `datasets` / `huggingface_hub` beyond their documented API.

README.md ("Library seams") lists each with why; each test here fails when an upgrade breaks one.
"""

from __future__ import annotations

import hashlib
import pathlib
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.utils.sha import git_hash

import sousa_builder.builder
from sousa_builder.features import features_for


def test_builder_module_is_not_patched_for_streaming() -> None:
    """datasets (3.6 to 5.2) patches the module of a builder it streams unless `_patched_for_streaming` is set;
    patched, every `Path / name` in the builder parsed a URL and every process imported scipy.io (0.2 s)."""
    from datasets.download.download_config import DownloadConfig
    from datasets.streaming import extend_module_for_streaming

    extend_module_for_streaming(sousa_builder.builder.__name__, download_config=DownloadConfig())
    assert sousa_builder.builder.Path is pathlib.Path
    assert sousa_builder.builder._patched_for_streaming is True


def test_upload_info_sha256_can_be_given(tmp_path: Path) -> None:
    """publish hashes each file once (and caches it); it hands the sha256 to the commit operation instead of
    letting the client read the file again."""
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(b"PAR1" * 1000)
    operation = CommitOperationAdd("audio/train-00000-of-00001.parquet", str(shard))
    digest = hashlib.sha256(shard.read_bytes()).digest()
    shard.unlink()  # were the client to read the file again, it would fail now
    operation.upload_info.sha256 = digest
    assert operation.upload_info.sha256 == digest


def test_git_hash_is_the_git_blob_id() -> None:
    """publish compares a remote README (not in LFS) with the local one by its git blob id."""
    assert git_hash(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"


def test_file_size_parser() -> None:
    """`--max-shard-size 500MB` is parsed by datasets' own parser, as `max_shard_size` is in datasets."""
    from datasets.utils.py_utils import convert_file_size_to_int

    assert convert_file_size_to_int("500MB") == 500 * 10**6
    assert convert_file_size_to_int("2GiB") == 2 * 2**30


def test_progress_bars_follow_datasets_switch() -> None:
    """Progress goes through datasets' tqdm, so `datasets.disable_progress_bars()` silences ours too."""
    from datasets.utils.tqdm import tqdm

    datasets.disable_progress_bars()
    try:
        assert tqdm(range(3)).disable
    finally:
        datasets.enable_progress_bars()


def test_features_schema_carries_the_declared_features() -> None:
    """Shards are written with `Features.arrow_schema`, whose `huggingface` metadata datasets reads back."""
    features = features_for(with_midi=True, with_audio=True)
    schema = features.arrow_schema
    assert b"huggingface" in schema.metadata
    assert datasets.Features.from_arrow_schema(schema) == features
    assert schema.field("audio").type == pa.struct({"bytes": pa.binary(), "path": pa.string()})


def test_column_options_written_for_datasets_36_are_datasets_own() -> None:
    """Shards use datasets' `get_parquet_column_options` where it exists (4+); datasets 3.6 has none, and the rule
    written for it must give the same options, so a folder prepared under either is the same bytes."""
    from sousa_builder import shards

    if shards.get_parquet_column_options is None:
        pytest.skip("datasets 3.6 has no get_parquet_column_options: the comparison runs under datasets 4+")
    for with_midi, with_audio in ((True, True), (True, False), (False, False)):
        features = features_for(with_midi, with_audio)
        datasets_own = shards._column_options(features, features.arrow_schema)
        shards.get_parquet_column_options, saved = None, shards.get_parquet_column_options
        try:
            ours = shards._column_options(features, features.arrow_schema)
        finally:
            shards.get_parquet_column_options = saved
        assert ours == datasets_own
