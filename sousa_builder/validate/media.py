"""Media checks: the source's files are there and pass the media rules (`media_rules`); the worker pool.

The expensive ones run in chunks, in worker processes with `num_proc` > 1, under one progress bar
shown on a terminal only (datasets' tqdm: `datasets.disable_progress_bars()` or
`HF_DATASETS_DISABLE_PROGRESS_BARS=1` turns it off). Workers are top-level functions that take plain
data and return offender strings.
"""

from __future__ import annotations

import logging
import os
import posixpath
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from datasets.utils.tqdm import tqdm

from ..media import LocalMedia, RemoteMedia, media_problem
from .media_rules import content_problem
from .report import CheckResult, verdict

logger = logging.getLogger(__name__)

# Files (or row groups) per task handed to a worker.
TASK_SIZE = 32
MEDIA_CHECKS = ("media_files", "audio_decode", "midi_parse", "unreferenced_media")
# The samples columns the media checks read.
MEDIA_COLUMNS = ("sample_id", "audio_path", "midi_path", "augmentation_group_id", "duration_sec")

T = TypeVar("T")


def path_problems(root: str, paths: Sequence[str]) -> list[tuple[str, str | None]]:
    """Worker: whether each media path names a readable file inside `root` (`media.media_problem`).

    Args:
        root: the source's root folder.
        paths: media paths relative to it.

    Returns:
        (path, why it is not a readable file inside `root`, or None) for each path, in order.
    """
    return [(path, media_problem(Path(root), path)) for path in paths]


def _file_problem(path: Path, duration_sec: float | None = None) -> str | None:
    """The media rules (`media_rules.content_problem`) on a source file, read whole."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"unreadable ({err.strerror})"
    return content_problem(path.name, data, duration_sec)


def check_audio_files(root: str, items: Sequence[tuple[str, str, float | None]]) -> list[str]:
    """Worker: the media rules on source FLAC files, each read whole.

    Args:
        root: the source's root folder.
        items: `(sample_id, path relative to root, duration_sec)` of each file.

    Returns:
        One 'path (sample id): problem' line per file that breaks a rule.
    """
    found = []
    for sample_id, relative, duration in items:
        problem = _file_problem(Path(root) / relative, duration)
        if problem:
            found.append(f"{relative} (sample {sample_id}): {problem}")
    return found


def check_midi_files(root: str, items: Sequence[tuple[str, str]]) -> list[str]:
    """Worker: the media rules on source MIDI files, each read whole.

    Args:
        root: the source's root folder.
        items: `(sample_id, path relative to root)` of each file.

    Returns:
        One 'path (sample id): problem' line per file that breaks a rule.
    """
    found = []
    for sample_id, relative in items:
        problem = _file_problem(Path(root) / relative)
        if problem:
            found.append(f"{relative} (sample {sample_id}): {problem}")
    return found


def run_tasks(
    worker: Callable[..., list[T]],
    tasks: Sequence[tuple[Any, ...]],
    weights: Sequence[int],
    num_proc: int | None,
    desc: str,
    unit: str = "file",
) -> list[T]:
    """`worker(*task)` for every task, in `num_proc` processes if > 1; results concatenated in task order.

    The progress bar advances by each task's weight (`unit`s: files or rows) as it completes. Not
    `tqdm.contrib.concurrent.process_map`: its bar counts tasks, and a task here is a chunk of files or a
    row group of a shard, of unequal weights; nor does it run in this process when `num_proc` is 1.

    Args:
        worker: a top-level function (picklable) returning a list.
        tasks: the arguments of each call.
        weights: how far each task moves the progress bar.
        num_proc: processes; None or 1 runs every task in this process.
        desc: the progress bar's label.
        unit: what `weights` count.

    Returns:
        The lists the tasks returned, concatenated in task order.

    Raises:
        Whatever a task raised (the first one to finish with an exception).
    """
    if not tasks:
        return []
    results: list[list[T]] = [[] for _ in tasks]
    with tqdm(total=sum(weights), desc=desc, unit=unit, disable=None) as bar:  # no bar without a terminal
        if not num_proc or num_proc <= 1 or len(tasks) <= 1:
            for position, task in enumerate(tasks):
                results[position] = worker(*task)
                bar.update(weights[position])
        else:
            with ProcessPoolExecutor(max_workers=min(num_proc, len(tasks))) as pool:
                futures = {pool.submit(worker, *task): position for position, task in enumerate(tasks)}
                for future in as_completed(futures):
                    position = futures[future]
                    results[position] = future.result()
                    bar.update(weights[position])
    return [item for chunk in results for item in chunk]


def chunks(items: Sequence[T], size: int = TASK_SIZE) -> list[Sequence[T]]:
    """`items` cut into consecutive pieces.

    Args:
        items: what to cut.
        size: the most items in a piece.

    Returns:
        The pieces, in order.
    """
    return [items[start : start + size] for start in range(0, len(items), size)]


# --- the source's media checks -------------------------------------------------------------------


@dataclass
class MediaRefs:
    """The media references of the samples, one list entry per sample, and what is wrong with each file."""

    ids: list[str]
    audio: list[str | None]
    midi: list[str | None]
    groups: list[str | None]
    durations: list[float | None]
    problems: dict[str, str | None]  # relative path -> why it is unusable, None when it is fine
    group_midi: dict[str | None, list[str]]  # augmentation group -> its MIDI files

    @classmethod
    def read(
        cls, root: Path | str, samples: pa.Table, num_proc: int | None, media: LocalMedia | RemoteMedia | None = None
    ) -> MediaRefs:
        """The media references of `samples` and what is wrong with each file they name.

        Args:
            root: the source's root (a local folder unless `media` is given).
            samples: the samples table (its `MEDIA_COLUMNS`).
            num_proc: processes checking local files.
            media: the source's media, which checks its files itself (a URL root); without it each file is
                checked by `media_problem`.

        Returns:
            The references, with each file's problem (None when it is fine).
        """
        ids, audio, midi, groups, durations = (samples[column].to_pylist() for column in MEDIA_COLUMNS)
        paths = [path for path in dict.fromkeys([*audio, *midi]) if path is not None]
        if media is not None:
            problems = dict(zip(paths, media.problems(paths)))
        else:
            problems = dict(run_chunked(path_problems, Path(root), paths, num_proc, "Finding media", size=1024))
        group_midi: dict[str | None, list[str]] = {}
        for group, path in zip(groups, midi):
            if path is not None:
                group_midi.setdefault(group, []).append(path)
        return cls(ids, audio, midi, groups, durations, problems, group_midi)

    def usable(self, path: str | None) -> bool:
        """Whether `path` is a media file without a problem.

        Args:
            path: a media path of the references, or None.

        Returns:
            False for None (no file named) and for a file with a problem.
        """
        return path is not None and self.problems[path] is None


def sampled_rows(count: int, sample: int | None, seed: int | None) -> tuple[Sequence[int], dict[str, Any]]:
    """The rows a check reads: all of them, or a random draw.

    Args:
        count: the number of rows.
        sample: draw this many (all rows if None).
        seed: the seed of the draw (random if None).

    Returns:
        The row numbers, sorted; and the details a check reports of the draw (`sampled`, `sample`, `seed`).
    """
    rows: Sequence[int] = range(count)
    details: dict[str, Any] = {"sampled": sample is not None}
    if sample is not None:
        seed = random.randrange(2**32) if seed is None else seed
        rows = sorted(random.Random(seed).sample(rows, min(sample, count)))
        details.update(sample=sample, seed=seed)
    return rows, details


def source_media_checks(
    root: Path, refs: MediaRefs, rows: Sequence[int], details: dict[str, Any], num_proc: int | None
) -> list[CheckResult]:
    """The source's media checks: media_files and unreferenced_media on every sample, audio_decode and midi_parse
    on `rows`.

    Args:
        root: the source's root folder.
        refs: the samples' media references.
        rows: the samples whose files are decoded (`sampled_rows`).
        details: the details of that draw, reported by the decoding checks.
        num_proc: processes decoding files.

    Returns:
        The four checks, in that order.
    """
    audio = [(refs.ids[r], refs.audio[r], refs.durations[r]) for r in rows if refs.usable(refs.audio[r])]
    owner = {path: sid for sid, path in zip(refs.ids, refs.midi) if path is not None}
    chosen_midi = dict.fromkeys(path for r in rows for path in refs.group_midi.get(refs.groups[r], ()))
    midi = [(owner[path], path) for path in chosen_midi if refs.usable(path)]
    undecoded = run_chunked(check_audio_files, root, audio, num_proc, "Decoding FLAC")
    unparsed = run_chunked(check_midi_files, root, midi, num_proc, "Parsing MIDI")
    return [
        media_files(refs),
        verdict(
            "audio_decode",
            len(undecoded),
            undecoded,
            "audio file(s) that are not 44.1 kHz FLAC, do not decode to their end, or do not last duration_sec + 0.5 s",
            f"{len(audio):,} FLAC file(s): 44.1 kHz, decode to their end, last duration_sec + 0.5 s",
            details={**details, "checked": len(audio)},
        ),
        verdict(
            "midi_parse",
            len(unparsed),
            unparsed,
            "MIDI file(s) that do not parse or hold no notes",
            f"{len(midi):,} MIDI file(s) parse and hold note events",
            details={**details, "checked": len(midi)},
        ),
        unreferenced_media(root, [*refs.audio, *refs.midi]),
    ]


def run_chunked(
    worker: Callable[..., list], root: Path, items: Sequence, num_proc: int | None, desc: str, size: int = TASK_SIZE
) -> list:
    """`worker(root, piece)` over `items` cut in pieces (`run_tasks`, one piece a task).

    Args:
        worker: a top-level function of (root, piece) returning a list.
        root: its first argument.
        items: cut into pieces of `size`.
        num_proc: processes.
        desc: the progress bar's label.
        size: items in a piece.

    Returns:
        The lists the pieces gave, concatenated in order.
    """
    pieces = chunks(items, size)
    return run_tasks(worker, [(str(root), piece) for piece in pieces], [len(p) for p in pieces], num_proc, desc)


def media_files(refs: MediaRefs, audio: bool = True, midi: bool = True) -> CheckResult:
    """The media_files rule: every audio (with `audio`) and MIDI (with `midi`) path resolves to a readable file
    inside the root whose header is sound, and every augmentation group has a MIDI file.

    Args:
        refs: the samples' media references, with each file's problem.
        audio: check the audio references.
        midi: check the MIDI references and groups.

    Returns:
        The media_files check.
    """
    offenders = []
    for sid, audio_path, midi_path, group in zip(refs.ids, refs.audio, refs.midi, refs.groups):
        if audio and audio_path is None:
            offenders.append(f"sample {sid}: audio_path is null")
        for path in (audio_path,) * audio + (midi_path,) * midi:
            if path is not None and refs.problems[path]:
                offenders.append(f"{path} (sample {sid}): {refs.problems[path]}")
        if midi and group not in refs.group_midi:
            offenders.append(f"sample {sid}: no MIDI file in its augmentation group {group}")
    midi_files = sum(len(paths) for paths in refs.group_midi.values())
    return verdict(
        "media_files",
        len(offenders),
        offenders,
        "media reference(s) missing, unreadable or outside the root",
        f"{len(refs.ids):,} audio and {midi_files:,} MIDI references: readable files inside the root; "
        "every augmentation group has a MIDI file",
    )


def unreferenced_media(root: Path, referenced: Sequence[str | None]) -> CheckResult:
    """Files under audio/ and midi/ that no sample refers to (a warning: they are left out of the dataset).

    Args:
        root: the source's root folder.
        referenced: every media path the samples name (None where a sample names none).

    Returns:
        The unreferenced_media check.
    """
    known = {posixpath.normpath(path) for path in referenced if path}
    stray = []
    for folder in ("audio", "midi"):
        for directory, subdirectories, files in os.walk(root / folder):
            subdirectories.sort()
            for name in sorted(files):
                relative = (Path(directory) / name).relative_to(root).as_posix()
                if relative not in known:
                    stray.append(relative)
    return verdict(
        "unreferenced_media",
        len(stray),
        stray,
        "media file(s) under audio/ or midi/ that no sample references",
        "every file under audio/ and midi/ is referenced by a sample",
        severity="warn",
    )
