"""The measurements of `validate --audio`, one file at a time: decode a FLAC and its MIDI, then measure timbre
(`validate.timbre`) and alignment (`validate.onsets`). Workers take plain data and return one plain dict per file,
so they run in processes through `validate.media.run_tasks`; `validate.audio` turns the dicts into checks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import soundfile as sf

from ..errors import AnalysisError, UndecodableError
from ..prepared_files import parquet_file
from .onsets import alignment
from .report import first_line
from .timbre import TIMBRE_FFT, timbre

_SILENCE = 1e-6  # peak level below which a file counts as silent


def read_audio(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a sound file, decoded in full.

    Args:
        source (`str`, `Path` or `bytes`): the file, or its bytes.

    Returns:
        `tuple[np.ndarray, int]`: the samples (channels averaged) and the sample rate.

    Raises:
        [`~errors.UndecodableError`]: not every frame decodes.
        [`~errors.AnalysisError`]: too short to analyse, or silent.
    """
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        data, rate = sf.read(file, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise UndecodableError(f"does not decode in full ({type(err).__name__}: {err})".replace(": )", ")")) from err
    mono = data.mean(axis=1)
    if mono.size < TIMBRE_FFT:
        raise AnalysisError(f"too short to analyse ({mono.size} frames)")
    if not np.abs(mono).max() > _SILENCE:
        raise AnalysisError("silent")
    return mono, rate


def read_note_ons(source: str | Path | bytes) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The note-ons of a MIDI file (its tracks merged, times through its tempo map).

    Args:
        source (`str`, `Path` or `bytes`): the file, or its bytes.

    Returns:
        `tuple[np.ndarray, np.ndarray, list[int]]`: the note-on times (s), their weights (velocity/127)^2, and the
        distinct note numbers, sorted.

    Raises:
        [`~errors.AnalysisError`]: the file does not parse, or holds no note-on.
    """
    try:
        midi = mido.MidiFile(file=io.BytesIO(source)) if isinstance(source, bytes) else mido.MidiFile(str(source))
        times, weights, notes, now = [], [], set(), 0.0
        for message in midi:  # merged tracks, times in seconds through the tempo map
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                times.append(now)
                weights.append((message.velocity / 127.0) ** 2)
                notes.add(message.note)
    except Exception as err:  # mido raises OSError, EOFError, ValueError, KeyError... on malformed files
        raise AnalysisError(f"MIDI does not parse ({type(err).__name__}: {err})") from err
    if not times:
        raise AnalysisError("MIDI holds no note events")
    return np.array(times), np.array(weights), sorted(notes)


def analyse(audio: str | Path | bytes, midi: str | Path | bytes | None) -> dict[str, Any]:
    """Both measurements of one file (timbre only without `midi`).

    Args:
        audio (`str`, `Path` or `bytes`): the FLAC file, or its bytes.
        midi (`str`, `Path` or `bytes`, *optional*): its MIDI file, or its bytes.

    Returns:
        `dict[str, Any]`: the timbre (`validate.timbre`) and alignment (`validate.onsets.alignment`) measurements;
        `undecodable` for a file that does not decode in full, `problem` for one that cannot be analysed,
        `alignment_problem` when the alignment cannot be measured.
    """
    try:
        signal, rate = read_audio(audio)
    except UndecodableError as err:
        return {"undecodable": str(err)}
    except AnalysisError as err:
        return {"problem": str(err)}
    if midi is None:
        return timbre(signal, rate)  # the caller says why there is no MIDI
    try:
        times, weights, notes = read_note_ons(midi)
    except AnalysisError as err:
        return {**timbre(signal, rate), "alignment_problem": str(err)}
    result: dict[str, Any] = {**timbre(signal, rate, notes), "midi_notes": notes}
    try:
        return {**result, **alignment(signal, rate, times, weights)}
    except AnalysisError as err:
        return {**result, "alignment_problem": str(err)}


# --- workers (plain data in, one plain dict per file out) ---------------------------------------


def analyse_source_files(root: str, items: Sequence[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """Worker: `analyse` on source files.

    Args:
        root (`str`): the source's root folder.
        items (`Sequence[tuple[str, str, str | None]]`): (sample_id, audio path, MIDI path or None), relative to
            `root`.

    Returns:
        `list[dict[str, Any]]`: one result per file: its measurements, with `sample_id`, `file`, `midi`, `where`.
    """
    results = []
    for sample_id, audio, midi in items:
        found = analyse(Path(root) / audio, Path(root) / midi if midi else None)
        if midi is None:
            found["alignment_problem"] = "no readable MIDI file in its augmentation group (see media_files)"
        where = f"{audio} (sample {sample_id})"
        results.append({"sample_id": sample_id, "file": audio, "midi": midi, "where": where, **found})
    return results


def analyse_embedded(out: str, shard: str, row_group: int, wanted: Sequence[str]) -> list[dict[str, Any]]:
    """Worker: `analyse` on the audio and MIDI bytes of the `wanted` samples in one row group of a prepared shard.

    Args:
        out (`str`): the prepared output, a folder or a URL.
        shard (`str`): the shard's POSIX path in it.
        row_group (`int`): the row group to read.
        wanted (`Sequence[str]`): the sample ids to analyse.

    Returns:
        `list[dict[str, Any]]`: one result per sample found, as `analyse_source_files` gives them (`undecodable`
        for every wanted sample when the row group does not read).
    """
    found = {}  # sample id -> its result
    try:
        table = parquet_file(out, shard).read_row_group(row_group, columns=["sample_id", "audio", "midi"])
    except (OSError, pa.ArrowException) as err:
        unreadable = f"row group {row_group} does not read ({first_line(err)})"
        found = {sample_id: {"undecodable": unreadable} for sample_id in wanted}
    else:
        table = table.filter(pc.is_in(table["sample_id"], value_set=pa.array(wanted, pa.string())))
        for sample_id, audio, midi in zip(*(table[column].to_pylist() for column in ("sample_id", "audio", "midi"))):
            flac = (audio or {}).get("bytes")
            found[sample_id] = analyse(flac, midi) if flac is not None else {"undecodable": "no audio bytes"}
            if flac is not None and midi is None:
                found[sample_id]["alignment_problem"] = "no MIDI bytes"
    return [
        {"sample_id": sample_id, "file": shard, "midi": None, "where": f"{shard}: sample {sample_id}", **result}
        for sample_id, result in found.items()
    ]
