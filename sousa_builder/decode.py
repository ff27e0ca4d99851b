"""Decode the `audio` column with soundfile alone: no torch, torchcodec, FFmpeg or librosa.

datasets 4+ decodes `Audio` with torchcodec (torch and FFmpeg), datasets 3.x with soundfile and librosa.
For people who only want the samples, read the column as stored (`Audio(decode=False)`: the FLAC
bytes) and decode it with `decode`, on any datasets version, streaming or not:

    from datasets import Audio, load_dataset
    from sousa_builder import decode

    ds = load_dataset("./build/sousa", "audio", split="train").cast_column("audio", Audio(decode=False))
    ds = ds.with_transform(decode)    # decoded as rows are read
    ds[0]["audio"]["array"], ds[0]["audio"]["sampling_rate"]

    stream = load_dataset("./build/sousa", "audio", split="train", streaming=True)
    stream = stream.cast_column("audio", Audio(decode=False)).map(decode)

`decoded(ds)` does the cast and the transform (or map) for any of the four dataset types. Not
`Dataset.map(decode)`: that stores the decoded audio back into an `Audio` column, encoding it again.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
import soundfile as sf

__all__ = ["decode", "decode_audio", "decoded"]

AnyDataset = datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict


def decode_audio(audio: Mapping[str, Any] | None, dtype: str = "float32") -> dict[str, Any] | None:
    """One stored `audio` value ({"bytes", "path"}) decoded: {"path", "array", "sampling_rate"}.

    Args:
        audio (`Mapping[str, Any]`, *optional*):
            The value as stored (`Audio(decode=False)`); the file at "path" is read when "bytes" is None.
        dtype (`str`, *optional*, defaults to `"float32"`):
            The array's dtype, as `soundfile.read` takes it ("float64", "int16", ...).

    Returns:
        `dict` or `None`: {"path", "array", "sampling_rate"}, where "array" is what `soundfile.read` returns:
        shape (frames,) for mono, (frames, channels) otherwise (SOUSA's FLAC is stereo). None for None.

    Raises:
        `ValueError`:
            The value has neither bytes nor path, or its bytes do not decode (the message names the path).
    """
    if audio is None:
        return None
    data, path = audio.get("bytes"), audio.get("path")
    if data is None and path is None:
        raise ValueError("an audio value with neither bytes nor path: nothing to decode")
    try:
        array, sampling_rate = sf.read(io.BytesIO(data) if data is not None else path, dtype=dtype)
    except RuntimeError as err:  # soundfile.LibsndfileError
        raise ValueError(f"audio {path or '(no path)'}: cannot decode it ({err})") from err
    return {"path": path, "array": np.asarray(array), "sampling_rate": int(sampling_rate)}


def decode(example: dict[str, Any]) -> dict[str, Any]:
    """`example` with its `audio` decoded by `decode_audio`; a batch (a list of audio values) is decoded
    value by value, so that the same function serves `ds.with_transform`, `ds.map` and single rows.

    Args:
        example (`dict[str, Any]`):
            A row or a batch whose `audio` is read as stored: `ds.cast_column("audio", Audio(decode=False))`.

    Returns:
        `dict[str, Any]`: a new dict, `example` with its `audio` decoded.

    Raises:
        `ValueError`:
            The audio is decoded already (not read as stored), or a value does not decode (see `decode_audio`).
    """
    audio = example["audio"]
    if isinstance(audio, Mapping) and "array" in audio:
        raise ValueError(
            "the audio is decoded already; read it as stored first: ds.cast_column('audio', Audio(decode=False))"
        )
    decoded = [decode_audio(value) for value in audio] if isinstance(audio, list) else decode_audio(audio)
    return {**example, "audio": decoded}


def decoded(ds: AnyDataset) -> AnyDataset:
    """`ds` with its `audio` read as stored and decoded by `decode` as rows are read: `with_transform` for a
    dataset, `map` for a streaming one.

    Args:
        ds (`Dataset`, `DatasetDict`, `IterableDataset` or `IterableDatasetDict`):
            A dataset of the `audio` config, its `audio` decoded by datasets or not.

    Returns:
        The same kind of dataset, whose rows carry the decoded audio. A file that does not decode raises
        `ValueError` when its row is read, not here.
    """
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    if isinstance(ds, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        return ds.map(decode)
    return ds.with_transform(decode)
