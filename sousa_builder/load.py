"""Load a prepared output, in a local folder or at a URL, with the configs and features its README declares.

For a local folder `datasets.load_dataset(OUT, "midi_only")` does this already. `datasets` does not read a
dataset folder at a URL that way (it takes `s3://bucket/sousa` for a local path); `load_prepared` reads the
README's `configs` and `dataset_info` from there and gives `load_dataset("parquet", ...)` the config's data
files and features (ClassLabels, Audio), with the filesystem's `storage_options`.
"""

from __future__ import annotations

import os
from typing import Any

import datasets
import fsspec
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from .card import card_metadata, metadata_infos
from .errors import PreparedFolderError
from .layout import README

DEFAULT_CONFIG = "audio"


def load_prepared(
    out: str | os.PathLike,
    name: str = DEFAULT_CONFIG,
    split: str | None = None,
    storage_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """`datasets.load_dataset` of config `name` of the prepared output `out`, with the features its README declares.

    Args:
        out (`str` or `os.PathLike`):
            The output of `prepare`: a folder, or a URL such as s3://bucket/sousa.
        name (`str`, *optional*, defaults to `DEFAULT_CONFIG`):
            The config to load.
        split (`str`, *optional*):
            The split to load; None for all of them (a `DatasetDict`).
        storage_options (`dict`, *optional*):
            fsspec options for a URL (an S3 endpoint, credentials, ...).
        **kwargs:
            Passed to `datasets.load_dataset` (`streaming=True`, `cache_dir`, ...).

    Returns:
        `Dataset`, `DatasetDict`, `IterableDataset` or `IterableDatasetDict`: what `load_dataset` returns for
        `split` and `streaming`.

    Raises:
        [`~errors.PreparedFolderError`]:
            `out` has no README (it is not the output of `prepare`).
        `ValueError`:
            `out` has no config `name` (the message lists the ones it has), or its README's YAML does not
            parse ([`~errors.CardMetadataError`]).
    """
    base = os.fspath(out).rstrip("/")
    try:
        with fsspec.open(f"{base}/{README}", "r", encoding="utf-8", **(storage_options or {})) as stream:
            metadata = card_metadata(stream.read())
    except FileNotFoundError:
        raise PreparedFolderError(f"{base}/{README}: missing; is it the output of `sousa-builder prepare`?") from None
    configs = MetadataConfigs.from_dataset_card_data(DatasetCardData(**metadata))
    if name not in configs:
        raise ValueError(f"{base} has no config {name!r}; it has {', '.join(configs) or 'none'}")
    data_files = {
        entry["split"]: [f"{base}/{path}" for path in _paths(entry["path"])] for entry in configs[name]["data_files"]
    }
    # Passed even where the Parquet schema would do: they also key the cache entry, and datasets 3.6 and 4+ write
    # them differently, so each version keeps its own entry in a shared cache (3.6 cannot read 4+'s "List" types).
    features = metadata_infos(metadata)[name].features
    options = dict(storage_options) if storage_options is not None else None  # load_dataset adds to the dict it gets
    return datasets.load_dataset(
        "parquet", data_files=data_files, features=features, split=split, storage_options=options, **kwargs
    )


def _paths(path: str | list[str]) -> list[str]:
    return [path] if isinstance(path, str) else list(path)
