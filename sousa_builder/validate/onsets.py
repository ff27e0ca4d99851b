"""Onsets for `validate --audio`: does a file's audio follow its MIDI (`audio_alignment`)?

An onset strength is the rise of band levels (dB over a 40 dB range) above their maximum in the
previous 15 ms: upstream's rooms add, after each hit, reflections (up to 65 ms later) and a loud noise
tail, which rise little above the recent maximum, while a new hit rises from the decay. One strength
uses 40 bands from 60 Hz, the other 10 above 6 kHz, where upstream's reverb (low-passed at 8 kHz)
hardly reaches and the direct hit stands out. Each is cross-correlated with the MIDI note-ons
(weighted by (velocity/127)^2); of the peaks of the mean curve within 80% of the best, the earliest
gives the lag, since an echo can only come after its hit. Per-event precision / recall of picked
onset peaks is reported, not gated.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np


class AnalysisError(ValueError):
    """A file cannot be analysed: it does not decode, is silent, or its MIDI holds no notes."""


# Onset strength: 1024-point frames every 128 samples (2.9 ms at 44.1 kHz).
ONSET_FFT = 512
ONSET_HOP = 128
BANDS = 40
BANDS_HZ = (60.0, 16_000.0)
# Upstream's rooms low-pass their reverb at 8 kHz: above 6 kHz the direct hit stands out of the tail.
HIGH_BANDS = 10
HIGH_BANDS_HZ = (6_000.0, 20_000.0)
# Band levels below the file's loudest band level by more than this are raised to it: a hit out of
# near-silence (a soft grace note) then counts no more than one out of a decay.
ONSET_RANGE_DB = 40.0
# An onset is a rise above the band's maximum over this much of the past: the first reflections of
# upstream's rooms (2-25 ms after the direct sound) rise little above it.
RISE_OVER_MS = 15.0
# The file's start rises out of nothing (or out of a cut, if the audio was trimmed) and would outweigh
# every later onset; it is limited to this share of the largest onset after it.
START_MS = 20.0
START_SHARE = 0.75
# Lags searched either side of zero: well beyond any threshold, below most inter-stroke gaps.
LAG_SEARCH_MS = 100.0
# Both strengths are cross-correlated with the note-ons and the two curves averaged; of its peaks at least
# this share of the best, the earliest is taken (echoes come later). The correlation reported is the
# higher of the two curves' there.
EARLIEST_PEAK_SHARE = 0.8
TRAIN_SPREAD = (0.5, 1.0, 0.5)
# Subtracted from the lag read. Real renders, whose hits start on the note-on, read +1.9 ms (median of
# 1,040), the sample maker's -1.5 (attacks out of digital silence enter the window early): no correction.
ONSET_DELAY_MS = 0.0
# A detected onset peak matches a note-on within this (after the best lag) for precision / recall.
EVENT_TOLERANCE_MS = 25.0
_FRAMES_PER_BLOCK = 512
_TINY = 1e-12  # magnitude floor: 1e-24 squared is still a normal float32


def magnitudes(signal: np.ndarray, size: int, hop: int) -> Iterator[np.ndarray]:
    """|FFT| of Hann-windowed frames of `size` every `hop` samples (frame i centred on sample i * hop).

    In blocks of `_FRAMES_PER_BLOCK` frames, so that memory does not grow with the file's length.
    """
    import scipy.fft  # here and below: scipy.signal takes ~0.5 s to import, only --audio needs scipy

    frames = np.lib.stride_tricks.sliding_window_view(np.pad(signal, size // 2), size)[::hop]
    window = np.hanning(size).astype(signal.dtype)
    for start in range(0, len(frames), _FRAMES_PER_BLOCK):
        yield np.abs(scipy.fft.rfft(frames[start : start + _FRAMES_PER_BLOCK] * window, axis=1))


@lru_cache(maxsize=8)
def _band_matrix(rate: int, low: float, high: float, count: int) -> np.ndarray:
    """(count x FFT bins) triangular filters, log-spaced from `low` to `high` Hz (capped below Nyquist)."""
    edges = np.geomspace(low, min(high, 0.45 * rate), count + 2)
    hz = np.arange(ONSET_FFT // 2 + 1) * rate / ONSET_FFT
    rising = (hz[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - hz[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


@lru_cache(maxsize=8)
def _bands(rate: int) -> Any:
    """All bands, then the high ones, as a sparse matrix: a dense product would start BLAS threads, which in
    worker processes cost more CPU than they save."""
    from scipy.sparse import csr_matrix

    return csr_matrix(
        np.concatenate([_band_matrix(rate, *BANDS_HZ, BANDS), _band_matrix(rate, *HIGH_BANDS_HZ, HIGH_BANDS)])
    )


def _rise(power: np.ndarray, rate: int) -> np.ndarray:
    """Mean rise (dB) of band powers (frames x bands) over their maximum in the previous `RISE_OVER_MS`."""
    from scipy.ndimage import maximum_filter1d

    level = 10.0 * np.log10(np.maximum(power, power.max() * 10.0 ** (-ONSET_RANGE_DB / 10.0) + _TINY))
    span = max(1, int(round(RISE_OVER_MS / 1000.0 * rate / ONSET_HOP)))
    recent = maximum_filter1d(level, span, axis=0, origin=(span - 1) // 2)  # frames n - span + 1 .. n
    before = np.concatenate([np.full((1, level.shape[1]), level.min()), recent[:-1]])  # n - span .. n - 1
    strength = np.maximum(level - before, 0.0).mean(axis=1)
    start = int(np.ceil(START_MS / 1000.0 * rate / ONSET_HOP))
    if len(strength) > start:
        strength[:start] = np.minimum(strength[:start], START_SHARE * strength[start:].max())
    return strength


def onset_strengths(signal: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The onset strength over all bands, and over the bands above `HIGH_BANDS_HZ`, every `ONSET_HOP` samples."""
    bands = _bands(rate)
    # Floored so that squares of near-silent bins are not float32 subnormals, which slow arithmetic ~15x.
    floored = (np.maximum(block, _TINY) for block in magnitudes(signal, ONSET_FFT, ONSET_HOP))
    power = np.concatenate([(bands @ (block * block).T).T for block in floored])
    return _rise(power[:, :BANDS], rate), _rise(power[:, BANDS:], rate)


def note_train(times: np.ndarray, weights: np.ndarray, frames: int, frame_sec: float) -> np.ndarray:
    """The note-ons as weighted impulses on the onset-strength frame grid (split between two frames)."""
    train = np.zeros(frames)
    position = times / frame_sec
    below = np.floor(position).astype(int)
    fraction = position - below
    for offset, share in ((0, 1.0 - fraction), (1, fraction)):
        index = below + offset
        inside = (index >= 0) & (index < frames)
        np.add.at(train, index[inside], (weights * share)[inside])
    return train


def alignment(
    signal: np.ndarray, rate: int, times: np.ndarray, weights: np.ndarray
) -> tuple[float, float, float, float]:
    """(best lag in ms, correlation at it, precision, recall) of the audio's onsets against the note-ons.

    A positive lag means the audio comes later than the MIDI.
    """
    from scipy.signal import correlate, correlation_lags, find_peaks

    frame_sec = ONSET_HOP / rate
    reach = int(round(LAG_SEARCH_MS / 1000.0 / frame_sec))
    envelopes, curves = onset_strengths(signal, rate), []
    for envelope in envelopes:
        # Spread over a frame either side: an onset's rise spans 2-3 frames, and jitters by one.
        train = np.convolve(note_train(times, weights, len(envelope), frame_sec), TRAIN_SPREAD, "same")
        x, y = envelope - envelope.mean(), train - train.mean()
        norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
        lags = correlation_lags(len(x), len(y))
        window = np.flatnonzero(np.abs(lags) <= reach)
        curves.append(correlate(x, y, method="fft")[window] / norm if norm > 0 else np.zeros(len(window)))
    if not any(curve.any() for curve in curves):
        raise AnalysisError("no onsets in the audio")
    values = (curves[0] + curves[1]) / 2
    best = int(np.argmax(values))
    peaks, _ = find_peaks(values)
    strong = peaks[values[peaks] >= EARLIEST_PEAK_SHARE * values[best]]
    best = int(min(best, *strong)) if len(strong) else best
    shift = 0.0
    if 0 < best < len(values) - 1:  # parabolic interpolation between frames
        before, at, after = values[best - 1 : best + 2]
        curvature = before - 2 * at + after
        shift = 0.5 * (before - after) / curvature if curvature < 0 else 0.0
    lag_sec = (lags[window][best] + shift) * frame_sec - ONSET_DELAY_MS / 1000.0
    precision, recall = _event_scores(envelopes[0], frame_sec, times + lag_sec)
    return float(lag_sec * 1000.0), float(max(curves[0][best], curves[1][best])), precision, recall


def _event_scores(envelope: np.ndarray, frame_sec: float, expected: np.ndarray) -> tuple[float, float]:
    """Precision and recall of onset peaks against the expected note-on times, one-to-one within tolerance."""
    from scipy.signal import find_peaks

    floor = np.median(envelope)
    peaks, _ = find_peaks(envelope, height=floor + 0.1 * (envelope.max() - floor), distance=3)
    found = peaks * frame_sec - ONSET_DELAY_MS / 1000.0
    tolerance = EVENT_TOLERANCE_MS / 1000.0
    used = np.zeros(len(found), bool)
    matched = 0
    for time in np.sort(expected):
        gaps = np.where(used, np.inf, np.abs(found - time))
        if len(gaps) and gaps.min() <= tolerance:
            used[int(np.argmin(gaps))] = True
            matched += 1
    return (matched / len(found) if len(found) else 0.0), matched / len(expected)
