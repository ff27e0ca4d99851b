"""Audio checks (`validate --audio`): is each FLAC a drum, and does it follow its MIDI?

- **Timbre** (`audio_timbre`): harmonic salience. The long-term magnitude spectrum, less a running
  median over ~200 Hz (which removes mic and EQ tilt), read at the first 20 harmonics of every
  candidate fundamental from 40 to 400 Hz, stretched as a piano string's are; the best mean level (dB
  above the median) is the score, its fundamental the best-fit pitch. With the MIDI, the same is read
  at the pitches of the notes it plays, on the mean of the frames' dB spectra (note salience): a
  drum part played by a melodic instrument (upstream's channel bug: note 38 as a ~73 Hz piano) rings
  at those pitches all along. Levels alone do not split real drums from real piano buzz rolls (whose
  re-struck hammers blur the spectrum), so the phases do too: partial stability (`validate.partials`),
  how often the harmonics of those pitches hold as steady sinusoids from frame to frame.
- **Alignment** (`audio_alignment`): onset strengths (`validate.onsets`) fitted by the MIDI note-ons
  at every lag; the direct sound's lag and the fit's correlation say whether the audio follows the MIDI.

Workers take plain data and return one plain dict per file, so they run in processes through
`validate.media.run_tasks`. Thresholds are applied afterwards, in `audio_checks`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf

from .media import MediaRefs, run_chunked, run_tasks
from .onsets import AnalysisError, alignment, magnitudes
from .partials import partial_stability
from .report import CheckResult, first_line, share_verdict, skipped

AUDIO_CHECKS = ("audio_timbre", "audio_alignment")

# --- thresholds (calibrated on real upstream renders: README "Audio checks (`--audio`)") -----------
# 1,040 drum renders (all 5 presets) and 840 piano renders (the channel bug; 21 buzz rolls) of the
# upstream generator. Harmonic salience: drums 3.7-7.3 dB (median 5.2), piano 5.9-13.9 (buzz rolls
# from 5.9): it alone cannot split them, and 7 dB, which flags 1 drum file, is kept for audio without
# MIDI. Note salience: drums 1.6-4.9 dB, piano 4.7-14.3: they overlap, so it is gated at the same 7 dB
# (a strongly pitched file), and the split is left to partial stability: drums -0.10 to 0.060 (99th
# percentile 0.031), piano 0.131 to 0.53 (1st percentile 0.197). `sousa-builder sample`: clean
# 2.6-4.5 dB and partial stability -0.10 to 0.04, --pitched 20-31 dB and 0.67-0.71.
TIMBRE_THRESHOLD_DB = 7.0
# Midway between the real drums' highest partial stability (0.060) and the real piano's lowest (0.131).
PARTIAL_STABILITY_THRESHOLD = 0.095
# Real drums: lag -0.4 to +3.2 ms for 98% of files (1st-99th percentile; 3 read a room echo at +19
# to +28 ms, 2 an earlier cluster at -45 ms); shifted by +30 / -30 ms they read back +31.9 / -28.2
# (medians). 10 ms keeps the former and catches the latter.
MAX_LAG_MS = 10.0
# Real drums correlate (with the fit of note-ons and room, `validate.onsets`) at 0.38-0.92 (1st
# percentile 0.54, median 0.79); against another sample's MIDI 0.25 median, 0.51 at the 95th
# percentile. 0.45, with the 10 ms limit, flags 0.5% of real drums and 99.4% of the mismatched ones.
MIN_CORRELATION = 0.45
# A dataset fails when more than this share of the checked files is flagged (--strict: any).
MAX_FLAGGED_SHARE = 0.02

# --- analysis parameters ------------------------------------------------------------------------
# Timbre: 8192-point frames (5.4 Hz bins at 44.1 kHz) resolve harmonics 40 Hz apart.
TIMBRE_FFT = 8192
MEDIAN_HZ = 200.0
PITCH_RANGE_HZ = (40.0, 400.0)
PITCH_STEPS_PER_OCTAVE = 96
HARMONICS = 20
# Inharmonicity B tried: f_k = k f0 sqrt(1 + B k^2); a piano's bass strings have B ~ 1e-4.
STRETCHES = (0.0, 5e-5, 1e-4, 2e-4, 4e-4)
# Note salience: the mean over frames of their dB spectra (floored NOTE_FLOOR below the loudest bin)
# keeps what sounds all along, a string's partials, over what comes and goes, a hit's broadband
# burst; it is read within NOTE_STEPS / 96 octave of each pitch the MIDI plays, in NOTE_RANGE_HZ.
NOTE_FLOOR = 1e-5
NOTE_STEPS = 4
NOTE_RANGE_HZ = (25.0, 2000.0)
_SILENCE = 1e-6  # peak level below which a file counts as silent


@dataclass(frozen=True)
class AudioSettings:
    """The thresholds of the two audio checks (CLI: --timbre-threshold, --max-lag-ms, ...)."""

    timbre_threshold: float = TIMBRE_THRESHOLD_DB
    partial_threshold: float = PARTIAL_STABILITY_THRESHOLD
    max_lag_ms: float = MAX_LAG_MS
    min_correlation: float = MIN_CORRELATION
    max_flagged_share: float = MAX_FLAGGED_SHARE

    @property
    def note_threshold(self) -> float:
        """The note salience above which a file is flagged: the timbre threshold (kept apart in the report)."""
        return self.timbre_threshold

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_flagged_share <= 1.0:
            raise ValueError(f"max_flagged_share must be within 0-1, got {self.max_flagged_share}")
        if self.max_lag_ms < 0:
            raise ValueError(f"max_lag_ms must not be negative, got {self.max_lag_ms}")


# --- analysis -----------------------------------------------------------------------------------


def read_audio(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a sound file (a path or its bytes)."""
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        data, rate = sf.read(file, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AnalysisError(f"does not decode ({err})") from err
    mono = data.mean(axis=1)
    if mono.size < TIMBRE_FFT:
        raise AnalysisError(f"too short to analyse ({mono.size} frames)")
    if not np.abs(mono).max() > _SILENCE:
        raise AnalysisError("silent")
    return mono, rate


def read_note_ons(source: str | Path | bytes) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Note-on times (s), their weights (velocity/127)^2 and the distinct note numbers of a MIDI file."""
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


def _relative_level(level: np.ndarray, bin_hz: float) -> np.ndarray:
    """A level spectrum (dB) less its running median over `MEDIAN_HZ`, each bin the highest of it and its neighbours."""
    from scipy.ndimage import median_filter

    relative = level - median_filter(level, size=int(round(MEDIAN_HZ / bin_hz)) | 1, mode="nearest")
    return np.maximum(relative, np.maximum(np.roll(relative, 1), np.roll(relative, -1)))


def _series_score(peak: np.ndarray, bin_hz: float, candidates: np.ndarray) -> tuple[float, float]:
    """(best mean level of the first `HARMONICS` partials, its fundamental) over candidates and `STRETCHES`."""
    k = np.arange(1, HARMONICS + 1)
    best_score, best_pitch = -np.inf, float("nan")
    for stretch in STRETCHES:
        positions = np.outer(candidates, k * np.sqrt(1.0 + stretch * k**2)) / bin_hz
        inside = positions < len(peak) - 1
        levels = np.where(inside, peak[np.minimum(np.rint(positions).astype(int), len(peak) - 1)], np.nan)
        means = np.nanmean(levels, axis=1)
        index = int(np.nanargmax(means))
        if means[index] > best_score:
            best_score, best_pitch = float(means[index]), float(candidates[index])
    return best_score, best_pitch


def timbre(signal: np.ndarray, rate: int, notes: Sequence[int] = ()) -> dict[str, float]:
    """Harmonic salience (dB) and best-fit pitch (Hz); with `notes`, the salience and the partial stability
    (`validate.partials`) at those notes' pitches too."""
    total, frames, loudest = 0.0, 0, 0.0
    for block in magnitudes(signal, TIMBRE_FFT, TIMBRE_FFT // 2):  # one block held at a time
        total, frames, loudest = total + block.sum(axis=0), frames + len(block), max(loudest, float(block.max()))
    spectrum = total / frames
    bin_hz = rate / TIMBRE_FFT
    low, high = PITCH_RANGE_HZ
    steps = np.arange(int(math.log2(high / low) * PITCH_STEPS_PER_OCTAVE) + 1)
    score, pitch = _series_score(
        _relative_level(20 * np.log10(spectrum + 1e-12 * spectrum.max()), bin_hz),
        bin_hz,
        low * 2.0 ** (steps / PITCH_STEPS_PER_OCTAVE),
    )
    result = {"harmonic_salience_db": score, "pitch_hz": pitch}
    hz = [440.0 * 2.0 ** ((note - 69) / 12) for note in notes]
    hz = [f for f in hz if NOTE_RANGE_HZ[0] <= f <= NOTE_RANGE_HZ[1]]
    if hz:
        around = 2.0 ** (np.arange(-NOTE_STEPS, NOTE_STEPS + 1) / PITCH_STEPS_PER_OCTAVE)
        candidates = np.concatenate([f * around for f in hz])
        log_total = 0.0  # a second pass (the first found the loudest bin): ~1 ms for a 4 s file
        for block in magnitudes(signal, TIMBRE_FFT, TIMBRE_FFT // 2):
            log_total = log_total + (20 * np.log10(block + NOTE_FLOOR * loudest)).sum(axis=0)
        result["note_salience_db"] = _series_score(_relative_level(log_total / frames, bin_hz), bin_hz, candidates)[0]
        result["partial_stability"] = partial_stability(signal, rate, candidates, STRETCHES, MEDIAN_HZ)
    return result


def harmonic_salience(signal: np.ndarray, rate: int) -> tuple[float, float]:
    """(score in dB, best-fit fundamental in Hz): how strongly the long-term spectrum holds a harmonic series."""
    found = timbre(signal, rate)
    return found["harmonic_salience_db"], found["pitch_hz"]


def analyse(audio: str | Path | bytes, midi: str | Path | bytes | None) -> dict[str, Any]:
    """Both measurements of one file (timbre only without `midi`); a `problem` for what cannot be measured."""
    try:
        signal, rate = read_audio(audio)
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
        lag, correlation, precision, recall = alignment(signal, rate, times, weights)
    except AnalysisError as err:
        return {**result, "alignment_problem": str(err)}
    return {**result, "lag_ms": lag, "correlation": correlation, "event_precision": precision, "event_recall": recall}


# --- workers (plain data in, one plain dict per file out) ---------------------------------------


def analyse_source_files(root: str, items: Sequence[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """Worker: `(sample_id, audio path, MIDI path or None)` relative to `root` -> one result per file."""
    results = []
    for sample_id, audio, midi in items:
        found = analyse(Path(root) / audio, Path(root) / midi if midi else None)
        if midi is None:
            found["alignment_problem"] = "no readable MIDI file in its augmentation group (see media_files)"
        where = f"{audio} (sample {sample_id})"
        results.append({"sample_id": sample_id, "file": audio, "midi": midi, "where": where, **found})
    return results


def analyse_embedded(out: str, shard: str, row_group: int, wanted: Sequence[str]) -> list[dict[str, Any]]:
    """Worker: the embedded audio and MIDI bytes of the `wanted` samples in one row group of a prepared shard."""
    found = {}  # sample id -> its result
    try:
        table = pq.ParquetFile(Path(out) / shard).read_row_group(row_group, columns=["sample_id", "audio", "midi"])
    except (OSError, pa.ArrowException) as err:
        found = {
            sample_id: {"problem": f"row group {row_group} does not read ({first_line(err)})"} for sample_id in wanted
        }
    else:
        table = table.filter(pc.is_in(table["sample_id"], value_set=pa.array(wanted, pa.string())))
        for sample_id, audio, midi in zip(*(table[column].to_pylist() for column in ("sample_id", "audio", "midi"))):
            flac = (audio or {}).get("bytes")
            found[sample_id] = analyse(flac, midi) if flac is not None else {"problem": "no audio bytes"}
            if flac is not None and midi is None:
                found[sample_id]["alignment_problem"] = "no MIDI bytes"
    return [
        {"sample_id": sample_id, "file": shard, "midi": None, "where": f"{shard}: sample {sample_id}", **result}
        for sample_id, result in found.items()
    ]


# --- verdicts -----------------------------------------------------------------------------------

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
    """audio_timbre: files whose harmonic salience, note salience or partial stability is above its threshold
    (or that do not analyse) are flagged."""
    flagged: list[tuple[float, str]] = []  # (badness, offender)
    files = []
    for result in results:
        problem = result.get("problem")
        entry = {"sample_id": result["sample_id"], "file": result["file"]}
        if problem is not None:
            flagged.append((math.inf, f"{result['where']}: {problem}"))
            files.append({**entry, "flagged": True, "problem": problem})
            continue
        score, note = float(result["harmonic_salience_db"]), result.get("note_salience_db")
        stability = result.get("partial_stability")
        over = [score - settings.timbre_threshold]
        measured = {"harmonic_salience_db": round(score, 2), "pitch_hz": round(float(result["pitch_hz"]), 1)}
        if note is not None:
            measured["note_salience_db"] = round(float(note), 2)
            over.append(note - settings.note_threshold)
        if stability is not None:
            measured["partial_stability"] = round(float(stability), 3)
            over.append(10 * (stability - settings.partial_threshold))  # 0.1 of stability ranks as 1 dB
        badness = max(over)
        files.append({**entry, "flagged": bool(badness > 0), **measured})
        if badness > 0:
            pitch = _pitch_text(result["pitch_hz"], result.get("midi_notes", ()))
            why = f"{result['where']}: harmonic salience {score:.1f} dB, pitch {pitch}"
            if note is not None:
                why += f"; at the pitches of its MIDI notes {note:.1f} dB (limit {settings.note_threshold:g})"
            if stability is not None:
                why += f", partial stability {stability:.2f} (limit {settings.partial_threshold:g})"
            flagged.append((badness, why))
    scores = [f["harmonic_salience_db"] for f in files if "harmonic_salience_db" in f]
    details = {
        **details,
        "checked": len(results),
        "flagged": len(flagged),
        "threshold_db": settings.timbre_threshold,
        "note_threshold_db": settings.note_threshold,
        "partial_threshold": settings.partial_threshold,
        "max_flagged_share": settings.max_flagged_share,
        "median_harmonic_salience_db": _median(scores, 2),
        "median_note_salience_db": _median([f["note_salience_db"] for f in files if "note_salience_db" in f], 2),
        "median_partial_stability": _median([f["partial_stability"] for f in files if "partial_stability" in f], 3),
        "files": files,
    }
    flagged.sort(key=lambda item: -item[0])
    return share_verdict(
        "audio_timbre",
        len(results),
        [offender for _, offender in flagged],
        f"file(s) pitched, not a drum (harmonic salience above {settings.timbre_threshold:g} dB, or above "
        f"{settings.note_threshold:g} dB at the pitches of the notes its MIDI plays, or steady partials there: "
        f"stability above {settings.partial_threshold:g}), or not analysable",
        f"{len(results):,} file(s) sound like a drum: harmonic salience at most {settings.timbre_threshold:g} dB "
        f"(median {_shown(details['median_harmonic_salience_db'], '.1f')} dB), at most {settings.note_threshold:g} dB "
        f"at the pitches of their MIDI notes (median {_shown(details['median_note_salience_db'], '.1f')} dB), "
        f"partial stability there at most {settings.partial_threshold:g} "
        f"(median {_shown(details['median_partial_stability'], '.2f')})",
        settings.max_flagged_share,
        details,
    )


def alignment_check(
    results: Sequence[Mapping[str, Any]], settings: AudioSettings, details: dict[str, Any]
) -> CheckResult:
    """audio_alignment: files whose best lag is beyond the limit, or whose correlation is below it, are flagged."""
    flagged: list[tuple[float, str]] = []
    files = []
    for result in results:
        entry = {"sample_id": result["sample_id"], "file": result["file"], "midi": result["midi"]}
        problem = result.get("problem") or result.get("alignment_problem")
        if problem is not None:
            flagged.append((math.inf, f"{result['where']}: {problem}"))
            files.append({**entry, "flagged": True, "problem": problem})
            continue
        lag, correlation = float(result["lag_ms"]), float(result["correlation"])
        late, weak = abs(lag) > settings.max_lag_ms, correlation < settings.min_correlation
        measured = {key: round(float(result[key]), 3) for key in _ALIGNMENT_KEYS}
        files.append({**entry, "flagged": bool(late or weak), **measured})
        if late or weak:
            why = [f"best lag {lag:+.1f} ms" + (f" (limit +/-{settings.max_lag_ms:g})" if late else "")]
            why.append(f"correlation {correlation:.2f}" + (f" (minimum {settings.min_correlation:g})" if weak else ""))
            badness = max(abs(lag) / max(settings.max_lag_ms, 1e-9), settings.min_correlation / max(correlation, 1e-3))
            flagged.append((badness, f"{result['where']}: {', '.join(why)}"))
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
        len(results),
        [offender for _, offender in flagged],
        f"file(s) that do not follow their MIDI: best lag beyond +/-{settings.max_lag_ms:g} ms, correlation below "
        f"{settings.min_correlation:g}, or not analysable",
        f"{len(results):,} file(s) follow their MIDI: best lag within +/-{settings.max_lag_ms:g} ms "
        f"(median {_shown(details['median_lag_ms'], '+.1f')} ms), correlation at least {settings.min_correlation:g} "
        f"(median {_shown(details['median_correlation'], '.2f')})",
        settings.max_flagged_share,
        details,
    )


def audio_checks(
    results: Sequence[Mapping[str, Any]], settings: AudioSettings, details: dict[str, Any]
) -> list[CheckResult]:
    """Both audio checks from the per-file results; `details` (what was sampled) goes into each."""
    return [timbre_check(results, settings, details), alignment_check(results, settings, details)]


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
    """The audio checks on the readable FLAC files of samples `rows`, each against its group's MIDI file."""
    items = []
    for row in rows:
        if not refs.usable(refs.audio[row]):
            continue  # media_files reports it
        midi = next((path for path in refs.group_midi.get(refs.groups[row], ()) if refs.usable(path)), None)
        items.append((refs.ids[row], refs.audio[row], midi))
    results = run_chunked(analyse_source_files, root, items, num_proc, "Listening to audio", size=AUDIO_TASK_SIZE)
    return audio_checks(results, settings, details)


def embedded_audio_checks(
    out: Path,
    row_groups: Sequence[tuple[str, int, Sequence[str]]],
    details: dict[str, Any],
    num_proc: int | None,
    settings: AudioSettings,
) -> list[CheckResult]:
    """The audio checks on the bytes embedded in prepared shards: `(shard, row group, sample ids)` to read."""
    tasks = [(str(out), shard, group, list(ids)) for shard, group, ids in row_groups]
    weights = [len(ids) for _, _, ids in row_groups]
    results = run_tasks(analyse_embedded, tasks, weights, num_proc, "Listening to audio")
    return audio_checks(results, settings, details)


def skipped_audio_checks(reason: str) -> list[CheckResult]:
    """Both audio checks, not run for `reason`."""
    return [skipped(name, reason) for name in AUDIO_CHECKS]
