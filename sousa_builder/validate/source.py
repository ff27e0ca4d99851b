"""Validate a SOUSA source directory: every problem reported, none raised.

`SousaSource.open` stops at the first problem, which is what the builder needs. Validation reads the
same files with pyarrow (`label_files`) and checks each property on whole columns at once (numpy and
pyarrow compute, no Python loop over label rows), so a 100k-sample source with 10M stroke rows takes
seconds. The label checks are grouped by what they check: `structure` (rows, counts, indexes,
groups), `values` (ranges and vocabularies) and `splits`. Media are then checked file by file, in
parallel (`media`), and with `audio` what the audio sounds like (`audio`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import SourceNotFoundError
from ..features import class_label_columns
from .audio import AudioSettings, skipped_audio_checks, source_audio_checks
from .label_files import LabelData, read_labels
from .media import MEDIA_CHECKS, MEDIA_COLUMNS, MediaRefs, sampled_rows, source_media_checks
from .report import CheckResult, Report, skipped
from .splits import split_coverage, split_disjoint, split_summary
from .structure import (
    augmentation_groups,
    known_samples,
    measure_counts,
    measure_indexes,
    measure_ranges,
    one_exercise_row,
    stroke_counts,
    stroke_indexes,
    unique_sample_ids,
)
from .values import VELOCITY_COLUMNS, categorical_values, positive_values, score_ranges, velocity_ranges

logger = logging.getLogger(__name__)


def validate_source(
    data_dir: str | os.PathLike,
    num_proc: int | None = None,
    sample: int | None = None,
    seed: int | None = None,
    media: bool = True,
    audio: AudioSettings | None = None,
) -> Report:
    """Run every source check on the SOUSA directory `data_dir` and report each one.

    Media are decoded and parsed in `num_proc` processes; with `sample`, only the media of that
    many random samples (drawn with `seed`, reported in the details) are decoded and parsed; their
    presence is checked for all. `media=False` runs the label and split checks only. With `audio`
    (its thresholds), the audio checks (`validate.audio`) run too, on the same files.
    """
    started = time.perf_counter()
    root = Path(data_dir).expanduser().absolute()
    if not root.is_dir():
        raise SourceNotFoundError(f"{root}: no such directory")
    data, checks = read_labels(root)
    for name, needs, check in LABEL_CHECKS:
        reason = data.unavailable(needs)
        began = time.perf_counter()
        checks.append(skipped(name, reason) if reason else check(data))
        logger.debug("%s: %.3f s", name, time.perf_counter() - began)
    if not media:
        checks += [skipped(name, "media checks were not asked for") for name in MEDIA_CHECKS]
        checks += skipped_audio_checks("media checks were not asked for") if audio else []
    else:
        reason = data.unavailable({"samples": MEDIA_COLUMNS})
        if reason:
            checks += [skipped(name, reason) for name in MEDIA_CHECKS]
            checks += skipped_audio_checks(reason) if audio else []
        else:
            refs = MediaRefs.read(root, data.tables["samples"], num_proc)
            rows, details = sampled_rows(len(refs.ids), sample, seed)
            checks += source_media_checks(root, refs, rows, details, num_proc)
            checks += source_audio_checks(root, refs, rows, details, num_proc, audio) if audio else []
    return Report(str(root), "source", checks, time.perf_counter() - started)


# Label checks in report order: name, what they need (table -> columns, "splits"), the check.
LABEL_CHECKS: tuple[tuple[str, dict[str, tuple[str, ...]], Callable[[LabelData], CheckResult]], ...] = (
    ("unique_sample_ids", {"samples": ("sample_id",)}, unique_sample_ids),
    (
        "known_samples",
        {"samples": ("sample_id",), "exercises": ("sample_id",), "strokes": ("sample_id",), "measures": ("sample_id",)},
        known_samples,
    ),
    ("one_exercise_row", {"samples": ("sample_id",), "exercises": ("sample_id",)}, one_exercise_row),
    ("stroke_counts", {"samples": ("sample_id", "num_strokes"), "strokes": ("sample_id",)}, stroke_counts),
    ("measure_counts", {"samples": ("sample_id", "num_measures"), "measures": ("sample_id",)}, measure_counts),
    ("stroke_indexes", {"samples": ("sample_id",), "strokes": ("sample_id", "index")}, stroke_indexes),
    ("measure_indexes", {"samples": ("sample_id",), "measures": ("sample_id", "index")}, measure_indexes),
    (
        "measure_ranges",
        {
            "samples": ("sample_id", "num_strokes"),
            "measures": ("sample_id", "index", "stroke_start", "stroke_end"),
        },
        measure_ranges,
    ),
    ("augmentation_groups", {"samples": ("sample_id", "augmentation_group_id")}, augmentation_groups),
    ("score_ranges", {"exercises": ("sample_id",)}, score_ranges),
    (
        "velocity_ranges",
        {"samples": ("sample_id",), "strokes": ("sample_id", "index", *VELOCITY_COLUMNS)},
        velocity_ranges,
    ),
    ("positive_values", {"samples": ("sample_id", "tempo_bpm", "duration_sec")}, positive_values),
    (
        "categorical_values",
        {
            "samples": ("sample_id", *class_label_columns()),
            "strokes": ("sample_id", "index", "hand"),
        },
        categorical_values,
    ),
    ("split_disjoint", {"splits": ()}, split_disjoint),
    ("split_coverage", {"samples": ("sample_id", "profile_id"), "splits": ()}, split_coverage),
    ("split_summary", {"samples": ("sample_id", "profile_id", "skill_tier"), "splits": ()}, split_summary),
)
