"""Audio checks (`validate --audio`): is each FLAC a drum, and does it follow its MIDI?

- **Timbre** (`audio_timbre`): does the file ring at the pitches its MIDI plays, all along, as a melodic
  instrument does (upstream's channel bug: note 38 as a ~73 Hz piano)? Note salience and partial stability
  (`validate.timbre`) make one pitch evidence, fitted across drum kits (`docs/audio-checks.md`).
- **Alignment** (`audio_alignment`): onset strengths (`validate.onsets`) fitted by the MIDI note-ons
  at every lag; the direct sound's lag and the fit's correlation say whether the audio follows the MIDI.

The measurements (`validate.audio_analysis`) run in worker processes, one plain dict per file; the thresholds here
are applied afterwards, in `audio_checks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# analyse, read_audio and read_note_ons: benchmarks/audio_calibration.py imports them from here.
from .audio_analysis import analyse, analyse_embedded, analyse_source_files, read_audio, read_note_ons  # noqa: F401
from .media import MediaRefs, run_chunked, run_tasks
from .report import CheckResult, share_verdict, skipped, verdict

AUDIO_CHECKS = ("audio_full_decode", "audio_timbre", "audio_alignment")

# --- thresholds (fitted across drum kits: docs/audio-checks.md, benchmarks/audio_calibration.py) --------
# Real renders of 14 kits (2,240 files) and the pianos of 3 soundfonts (400 files, upstream as shipped).
# With the MIDI, a file is pitched when its *pitch evidence*, partial stability credited with its note
# salience above NOTE_REFERENCE_DB at NOTE_WEIGHT a dB, is above PARTIAL_STABILITY_THRESHOLD. Each cue
# alone overlaps: a brush kit's looped tail holds steady partials (drums up to 0.125, piano from 0.110),
# and a piano buzz roll blurs its salience (drums up to 5.43 dB, piano from 5.41); the evidence does not
# (drums up to 0.131, piano from 0.164). The weight separates the two best, the threshold is midway.
NOTE_REFERENCE_DB = 4.0
NOTE_WEIGHT = 0.0225
PARTIAL_STABILITY_THRESHOLD = 0.148
# Without MIDI only harmonic salience is left, which brush, synthetic and FM kits reach too (drums up to
# 9.3 dB, piano from 6.6): above every drum, it flags 77% of the pianos. Such a file is flagged by
# audio_alignment anyway (no MIDI).
TIMBRE_THRESHOLD_DB = 9.5
# Real drums (13 kits; not the orchestra kit, whose concert snare peaks 12.6 ms after its note-on and reads
# +12 to +14 ms): lag -0.5 to +8.6 ms (1st-99th percentile, median +2.5); shifted by +30 / -30 ms they
# read +32.2 / -27.5 (medians). Not fitted: 10 ms sits between the two.
MAX_LAG_MS = 10.0
# Real drums correlate (with the fit of note-ons and room, `validate.onsets`) at 0.58 at the 0.5th
# percentile (median 0.82); against another rudiment's MIDI 0.22 median, 0.50 at the 95th percentile.
# Fitted: the 0.5th percentile of the drums', rounded down.
MIN_CORRELATION = 0.53
# A dataset fails when more than this share of the checked files is flagged (--strict: any).
MAX_FLAGGED_SHARE = 0.02


@dataclass(frozen=True)
class AudioSettings:
    """The thresholds of the two audio checks (CLI: --timbre-threshold, --max-lag-ms, ...)."""

    timbre_threshold: float = TIMBRE_THRESHOLD_DB
    partial_threshold: float = PARTIAL_STABILITY_THRESHOLD
    max_lag_ms: float = MAX_LAG_MS
    min_correlation: float = MIN_CORRELATION
    max_flagged_share: float = MAX_FLAGGED_SHARE
    note_weight: float = NOTE_WEIGHT

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_flagged_share <= 1.0:
            raise ValueError(f"max_flagged_share must be within 0-1, got {self.max_flagged_share}")
        if self.max_lag_ms < 0:
            raise ValueError(f"max_lag_ms must not be negative, got {self.max_lag_ms}")


# --- analysis (`validate.audio_analysis`) and verdicts ---------------------------------------


def pitch_evidence(partial_stability: float, note_salience_db: float, note_weight: float = NOTE_WEIGHT) -> float:
    """Partial stability credited with the note salience above `NOTE_REFERENCE_DB` at `note_weight` a dB.

    Args:
        partial_stability (`float`): at the pitches of the file's MIDI notes (`validate.timbre`).
        note_salience_db (`float`): there, in dB.
        note_weight (`float`): the credit per dB.

    Returns:
        `float`: the pitch evidence (a file above `PARTIAL_STABILITY_THRESHOLD` is pitched).
    """
    return partial_stability + note_weight * (note_salience_db - NOTE_REFERENCE_DB)


_ALIGNMENT_KEYS = ("lag_ms", "correlation", "event_precision", "event_recall")
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _pitch_text(hz: float, notes: Sequence[int]) -> str:
    """'73.9 Hz (D2)', and whether that is a note the file's MIDI plays (the channel bug's signature)."""
    position = 69 + 12 * math.log2(hz / 440.0)
    note = round(position)
    name = f"{_NOTE_NAMES[note % 12]}{note // 12 - 1}"
    if note in notes:
        return f"{hz:.1f} Hz ({name} = MIDI note {note}, which it plays: drum notes on a melodic instrument?)"
    return f"{hz:.1f} Hz ({name})"


def _shown(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _median(values: Sequence[float], digits: int) -> float | None:
    return round(float(np.median(values)), digits) if values else None


def timbre_check(results: Sequence[Mapping[str, Any]], settings: AudioSettings, details: dict[str, Any]) -> CheckResult:
    """audio_timbre: files whose pitch evidence at their MIDI's pitches (without MIDI: harmonic salience) is above
    its threshold, or that do not analyse, are flagged.

    Args:
        results (`Sequence[Mapping[str, Any]]`): one per file, from the analysis workers.
        settings ([`AudioSettings`]): the thresholds.
        details (`dict[str, Any]`): what was sampled, reported with the measurements.

    Returns:
        [`~validate.report.CheckResult`]: the check; it fails when the share flagged is above the allowed one.
    """
    flagged: list[tuple[float, str]] = []  # (badness, offender)
    files = []
    results = _decoded(results)
    for result in results:
        problem = result.get("problem")
        entry = {"sample_id": result["sample_id"], "file": result["file"]}
        if problem is not None:
            flagged.append((math.inf, f"{result['where']}: {problem}"))
            files.append({**entry, "flagged": True, "problem": problem})
            continue
        score, note = float(result["harmonic_salience_db"]), result.get("note_salience_db")
        stability = result.get("partial_stability")
        measured = {"harmonic_salience_db": round(score, 2), "pitch_hz": round(float(result["pitch_hz"]), 1)}
        pitch = _pitch_text(result["pitch_hz"], result.get("midi_notes", ()))
        if note is not None and stability is not None:
            evidence = pitch_evidence(stability, note, settings.note_weight)
            measured["note_salience_db"] = round(float(note), 2)
            measured["partial_stability"] = round(float(stability), 3)
            measured["pitch_evidence"] = round(evidence, 3)
            badness = 10 * (evidence - settings.partial_threshold)  # 0.1 of evidence ranks as 1 dB
            why = (
                f"pitch evidence {evidence:.2f} (limit {settings.partial_threshold:g}): partial stability "
                f"{stability:.2f} at the pitches of its MIDI notes, note salience {note:.1f} dB there; "
                f"harmonic salience {score:.1f} dB, pitch {pitch}"
            )
        else:  # no MIDI (audio_alignment says why): the long-term spectrum alone
            badness = score - settings.timbre_threshold
            why = f"harmonic salience {score:.1f} dB (limit {settings.timbre_threshold:g}, no MIDI), pitch {pitch}"
        files.append({**entry, "flagged": bool(badness > 0), **measured})
        if badness > 0:
            flagged.append((badness, f"{result['where']}: {why}"))
    details = {
        **details,
        "checked": len(results),
        "flagged": len(flagged),
        "threshold_db": settings.timbre_threshold,
        "partial_threshold": settings.partial_threshold,
        "note_weight": settings.note_weight,
        "note_reference_db": NOTE_REFERENCE_DB,
        "max_flagged_share": settings.max_flagged_share,
        **{
            f"median_{key}": _median([f[key] for f in files if key in f], 3)
            for key in ("harmonic_salience_db", "note_salience_db", "partial_stability", "pitch_evidence")
        },
        "files": files,
    }
    flagged.sort(key=lambda item: -item[0])
    return share_verdict(
        "audio_timbre",
        len(results),
        [offender for _, offender in flagged],
        f"file(s) pitched, not a drum (pitch evidence at the pitches of the notes its MIDI plays above "
        f"{settings.partial_threshold:g}; without MIDI, harmonic salience above {settings.timbre_threshold:g} dB), "
        "or not analysable",
        f"{len(results):,} file(s) sound like a drum: pitch evidence at the pitches of their MIDI notes at most "
        f"{settings.partial_threshold:g} (median {_shown(details['median_pitch_evidence'], '.2f')}: partial "
        f"stability {_shown(details['median_partial_stability'], '.2f')}, note salience "
        f"{_shown(details['median_note_salience_db'], '.1f')} dB)",
        settings.max_flagged_share,
        details,
    )


def alignment_verdict(result: Mapping[str, Any], settings: AudioSettings) -> tuple[bool, float, str]:
    """One file's alignment judged against the thresholds.

    Args:
        result (`Mapping[str, Any]`): its measurements, or why they could not be made.
        settings ([`AudioSettings`]): the thresholds.

    Returns:
        `tuple[bool, float, str]`: whether it is flagged, how badly (to rank offenders), and why in words.
    """
    if result.get("alignment_problem") or result.get("problem"):
        return True, math.inf, result.get("problem") or result["alignment_problem"]
    lag, correlation = float(result["lag_ms"]), float(result["correlation"])
    late, weak = abs(lag) > settings.max_lag_ms, correlation < settings.min_correlation
    why = [f"best lag {lag:+.1f} ms" + (f" (limit +/-{settings.max_lag_ms:g})" if late else "")]
    why.append(f"correlation {correlation:.2f}" + (f" (minimum {settings.min_correlation:g})" if weak else ""))
    badness = max(abs(lag) / max(settings.max_lag_ms, 1e-9), settings.min_correlation / max(correlation, 1e-3))
    return late or weak, badness, ", ".join(why)


def alignment_check(
    results: Sequence[Mapping[str, Any]], settings: AudioSettings, details: dict[str, Any]
) -> CheckResult:
    """audio_alignment: files whose best lag is beyond the limit, or whose correlation is below it, are flagged.

    Args:
        results (`Sequence[Mapping[str, Any]]`): one per file, from the analysis workers.
        settings ([`AudioSettings`]): the thresholds.
        details (`dict[str, Any]`): what was sampled, reported with the measurements.

    Returns:
        [`~validate.report.CheckResult`]: the check; it fails when the share flagged is above the allowed one.
    """
    flagged: list[tuple[float, str]] = []
    files = []
    results = _decoded(results)
    for result in results:
        entry = {"sample_id": result["sample_id"], "file": result["file"], "midi": result["midi"]}
        late_or_weak, badness, why = alignment_verdict(result, settings)
        if "lag_ms" not in result:
            files.append({**entry, "flagged": True, "problem": why})
        else:
            measured = {key: round(float(result[key]), 3) for key in _ALIGNMENT_KEYS}
            files.append({**entry, "flagged": bool(late_or_weak), **measured})
        if late_or_weak:
            flagged.append((badness, f"{result['where']}: {why}"))
    measured_files = [f for f in files if "lag_ms" in f]
    details = {
        **details,
        "checked": len(results),
        "flagged": len(flagged),
        "max_lag_ms": settings.max_lag_ms,
        "min_correlation": settings.min_correlation,
        "max_flagged_share": settings.max_flagged_share,
        **{f"median_{key}": _median([f[key] for f in measured_files], 3) for key in _ALIGNMENT_KEYS},
        "files": files,
    }
    flagged.sort(key=lambda item: -item[0])
    return share_verdict(
        "audio_alignment",
        details["checked"],
        [offender for _, offender in flagged],
        f"file(s) that do not follow their MIDI: best lag beyond +/-{settings.max_lag_ms:g} ms, correlation below "
        f"{settings.min_correlation:g}, or not analysable",
        f"{details['checked']:,} file(s) follow their MIDI: best lag within +/-{settings.max_lag_ms:g} ms "
        f"(median {_shown(details['median_lag_ms'], '+.1f')} ms), correlation at least {settings.min_correlation:g} "
        f"(median {_shown(details['median_correlation'], '.2f')})",
        settings.max_flagged_share,
        details,
    )


def _decoded(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The results of the files that decode (the others are audio_full_decode's)."""
    return [result for result in results if "undecodable" not in result]


def full_decode_check(results: Sequence[Mapping[str, Any]], details: dict[str, Any]) -> CheckResult:
    """audio_full_decode: every file listened to decodes in full. A file that does not is broken, so this check
    fails on any one (the media rules decode only a file's last frames; listening decodes all of them).

    Args:
        results (`Sequence[Mapping[str, Any]]`): one per file, from the analysis workers.
        details (`dict[str, Any]`): what was sampled.

    Returns:
        [`~validate.report.CheckResult`]: the check.
    """
    offenders = [f"{result['where']}: {result['undecodable']}" for result in results if "undecodable" in result]
    return verdict(
        "audio_full_decode",
        len(offenders),
        offenders,
        "audio file(s) that do not decode in full",
        f"{len(results):,} file(s) decode in full",
        details={**details, "checked": len(results)},
    )


def audio_checks(
    results: Sequence[Mapping[str, Any]], settings: AudioSettings, details: dict[str, Any]
) -> list[CheckResult]:
    """The audio checks from the per-file results.

    Args:
        results (`Sequence[Mapping[str, Any]]`): one per file, from the analysis workers.
        settings ([`AudioSettings`]): the thresholds.
        details (`dict[str, Any]`): what was sampled; it goes into each check.

    Returns:
        `list[CheckResult]`: audio_full_decode, audio_timbre, audio_alignment.
    """
    return [
        full_decode_check(results, details),
        timbre_check(results, settings, details),
        alignment_check(results, settings, details),
    ]


# --- drivers: a SOUSA source, a prepared folder -------------------------------------------------

# Files per task handed to a worker: ~25 ms each, so a task takes a fraction of a second.
AUDIO_TASK_SIZE = 8


def source_audio_checks(
    root: Path,
    refs: MediaRefs,
    rows: Sequence[int],
    details: dict[str, Any],
    num_proc: int | None,
    settings: AudioSettings,
) -> list[CheckResult]:
    """The audio checks on the readable FLAC files of samples `rows`, each against its group's MIDI file.

    Args:
        root (`Path`): the source's root folder.
        refs ([`~validate.media.MediaRefs`]): the samples' media references.
        rows (`Sequence[int]`): the samples to listen to.
        details (`dict[str, Any]`): what was sampled.
        num_proc (`int`, *optional*): worker processes.
        settings ([`AudioSettings`]): the thresholds.

    Returns:
        `list[CheckResult]`: as `audio_checks`.
    """
    items = []
    for row in rows:
        if not refs.usable(refs.audio[row]):
            continue  # media_files reports it
        midi = next((path for path in refs.group_midi.get(refs.groups[row], ()) if refs.usable(path)), None)
        items.append((refs.ids[row], refs.audio[row], midi))
    results = run_chunked(analyse_source_files, root, items, num_proc, "Listening to audio", size=AUDIO_TASK_SIZE)
    return audio_checks(results, settings, details)


def embedded_audio_checks(
    out: Path | str,
    row_groups: Sequence[tuple[str, int, Sequence[str]]],
    details: dict[str, Any],
    num_proc: int | None,
    settings: AudioSettings,
) -> list[CheckResult]:
    """The audio checks on the bytes embedded in prepared shards.

    Args:
        out (`Path` or `str`): the prepared output, a folder or a URL.
        row_groups (`Sequence[tuple[str, int, Sequence[str]]]`): (shard, row group, sample ids) to read.
        details (`dict[str, Any]`): what was sampled.
        num_proc (`int`, *optional*): worker processes.
        settings ([`AudioSettings`]): the thresholds.

    Returns:
        `list[CheckResult]`: as `audio_checks`.
    """
    tasks = [(str(out), shard, group, list(ids)) for shard, group, ids in row_groups]
    weights = [len(ids) for _, _, ids in row_groups]
    results = run_tasks(analyse_embedded, tasks, weights, num_proc, "Listening to audio")
    return audio_checks(results, settings, details)


def skipped_audio_checks(reason: str) -> list[CheckResult]:
    """The audio checks, each skipped.

    Args:
        reason (`str`): why they did not run.

    Returns:
        `list[CheckResult]`: one skipped check per name of `AUDIO_CHECKS`.
    """
    return [skipped(name, reason) for name in AUDIO_CHECKS]
