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

    Media are decoded and parsed in `num_proc` processes; with `sample`, only the media of that
    many random samples (drawn with `seed`, reported in the details) are decoded and parsed; their
    presence is checked for all. `media=False` runs the label and split checks only. With `audio`
    (its thresholds), the audio checks (`validate.audio`) run too, on the same files.
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
