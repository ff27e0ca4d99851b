"""Validate a SOUSA source directory: every problem reported, none raised.

The label rules (`rules`) are the ones every reader of a source enforces: `SousaSource.open` refuses a source
that fails any of them, so `prepare` refuses exactly what this report fails. They read the files with pyarrow
(`label_files`) and check whole columns at once (numpy and pyarrow compute, no Python loop over label rows),
grouped by what they check: `structure` (rows, counts, indexes, groups), `values` (ranges and vocabularies)
and `splits`. Media are then checked file by file, in parallel (`media`, with the rules of `media_rules`),
and with `audio` what the audio sounds like (`audio`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import SourceNotFoundError
from .audio import AudioSettings, skipped_audio_checks, source_audio_checks
from .media import MEDIA_CHECKS, MEDIA_COLUMNS, MediaRefs, sampled_rows, source_media_checks
from .report import Report, skipped
from .rules import label_checks

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

    Args:
        data_dir: the SOUSA directory (a local folder).
        num_proc: processes for the media checks (default 1).
        sample: check the content of the media of only this many random samples (their presence is checked
            for all); the draw's `seed` is in the report's details.
        seed: the seed of the draw (default: a random one).
        media: False runs the label and split rules only.
        audio: the thresholds of the audio checks (`validate.audio`), which then run on the same files.

    Returns:
        The report: one result per check, in order.

    Raises:
        SourceNotFoundError: `data_dir` is not a directory.
    """
    started = time.perf_counter()
    root = Path(data_dir).expanduser().absolute()
    if not root.is_dir():
        raise SourceNotFoundError(f"{root}: no such directory")
    data, checks = label_checks(root)
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
