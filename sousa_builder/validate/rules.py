"""The rules about a SOUSA source's labels, written once: `validate` reports every one, and every reader
(`prepare`, `publish --data-dir`, the `Sousa` builder) refuses a source that fails any of them.

`label_checks` reads the label files and splits.json and runs each rule on whole columns (numpy and
pyarrow compute, no Python loop over label rows); `refuse_failures` turns the failed ones into one error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from ..errors import SourceFormatError
from ..features import class_label_columns
from ..storage import is_url
from .label_files import LabelData, read_labels
from .report import CheckResult, skipped
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

# Label rules in report order: name, what they need (table -> columns, "splits"), the rule.
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


def label_checks(root: Path) -> tuple[LabelData, list[CheckResult]]:
    """Read the labels and splits.json of the SOUSA directory `root` and run every label rule on them.

    Args:
        root: the SOUSA directory (the folder that holds labels/ and splits.json).

    Returns:
        What could be read of the labels, and one result per rule: label_files, splits_file and columns
        (whether the files read), then `LABEL_CHECKS` in order; a rule whose input did not read is skipped.
    """
    data, checks = read_labels(root)
    release_memory()
    for name, needs, check in LABEL_CHECKS:
        reason = data.unavailable(needs)
        began = time.perf_counter()
        checks.append(skipped(name, reason) if reason else check(data))
        release_memory()
        logger.debug("%s: %.3f s", name, time.perf_counter() - began)
    return data, checks


def release_memory() -> None:
    """Return to the system the memory Arrow's pool keeps from freed arrays (the temporaries of reading a file or of a
    rule), so that the next one's peak does not stack on them."""
    pa.default_memory_pool().release_unused()


def refusal(checks: Sequence[CheckResult], target: str, command: str | None) -> str | None:
    """One line naming every failed rule and its first offenders, or None when none failed.

    Args:
        checks: the results of the rules.
        target: the source or folder they were run on, as the user named it.
        command: the command that prints the full report, if there is one for `target`.
    """
    failures = [check for check in checks if check.status == "fail"]
    if not failures:
        return None
    reasons = "; ".join(f"{check.name}: {check.text}" for check in failures)
    report = f"; `{command}` gives the full report" if command else ""
    return f"{target} fails validation ({reasons}){report}"


def refuse_failures(checks: Sequence[CheckResult], target: str) -> None:
    """Raise when any rule in `checks` failed on the SOUSA directory `target`.

    Raises:
        SourceFormatError: naming each failed rule with its first offending samples, files or values.
    """
    command = None if is_url(target) else f"sousa-builder validate {target}"  # validate reads local sources
    message = refusal(checks, target, command)
    if message:
        raise SourceFormatError(message)


def refuse_invalid_labels(root: Path) -> None:
    """Run every label rule on the SOUSA directory `root` and refuse it if any fails (warnings pass).

    Raises:
        SourceFormatError: as `refuse_failures`.
    """
    checks = label_checks(root)[1]
    release_memory()  # the labels read for the rules, freed: not kept through the rest of the run
    refuse_failures(checks, str(root))
