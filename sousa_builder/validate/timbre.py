"""Timbre cues for `audio_timbre`: does a file ring at a pitch, and at the pitches its MIDI plays?

- *Harmonic salience*: the long-term magnitude spectrum, less a running median over ~200 Hz (which
  removes mic and EQ tilt), read at the first 20 harmonics of every candidate fundamental from 40 to
  400 Hz, stretched as a piano string's are; the best mean level (dB above the median) is the score,
  its fundamental the best-fit pitch. It needs no MIDI, and it is the weakest cue: synthetic and brush
  kits ring too (`docs/audio-checks.md`).
- *Note salience*: the same, read at the pitches of the notes the MIDI plays, on the mean of the
  frames' dB spectra: a drum part played by a melodic instrument (upstream's channel bug: note 38 as a
  ~73 Hz piano) rings at those pitches all along.
- *Partial stability* (`validate.partials`): how often the harmonics of those pitches hold as steady
  sinusoids from frame to frame; it holds when a piano buzz roll's re-struck hammers blur the levels.

`validate.audio` combines the last two into the pitch evidence it gates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .onsets import magnitudes
from .partials import partial_stability

# 8192-point frames (5.4 Hz bins at 44.1 kHz) resolve harmonics 40 Hz apart.
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
    """Harmonic salience (dB) and best-fit pitch (Hz); with `notes`, the note salience (dB) and the partial
    stability (`validate.partials`) at those notes' pitches too."""
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
        log_total = 0.0  # a second pass (the first found the loudest bin)
        for block in magnitudes(signal, TIMBRE_FFT, TIMBRE_FFT // 2):
            log_total = log_total + (20 * np.log10(block + NOTE_FLOOR * loudest)).sum(axis=0)
        result["note_salience_db"] = _series_score(_relative_level(log_total / frames, bin_hz), bin_hz, candidates)[0]
        result["partial_stability"] = partial_stability(signal, rate, candidates, STRETCHES, MEDIAN_HZ)
    return result


def harmonic_salience(signal: np.ndarray, rate: int) -> tuple[float, float]:
    """(score in dB, best-fit fundamental in Hz): how strongly the long-term spectrum holds a harmonic series."""
    found = timbre(signal, rate)
    return found["harmonic_salience_db"], found["pitch_hz"]
