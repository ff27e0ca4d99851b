"""Onsets for `validate --audio`: does a file's audio follow its MIDI (`audio_alignment`)?

An onset strength is the rise of band levels (dB over a 40 dB range) above their maximum in the
previous 15 ms: upstream's rooms add, after each hit, reflections (up to 65 ms later) and a loud noise
tail, which rise little above the recent maximum, while a new hit rises from the decay. One strength
uses 40 bands from 60 Hz, the other 10 above 6 kHz, where upstream's reverb (low-passed at 8 kHz)
hardly reaches and the direct hit stands out.

The lag is not one cross-correlation peak: a room's copies of every hit (upstream's garage and gym
add a noise tail 33 and 65 ms after the direct sound, louder than it) make the correlation peak at
the echo. The strengths are instead fitted by a nonnegative sum of the note-ons (weighted by
(velocity/127)^2) delayed by every lag searched; the weights then cluster at the direct sound's lag
and at the room's, and the earliest strong cluster is the lag, since an echo only comes after its
hit; unless it is a grace note's shadow (`_grace_shadow`): where a kit plays flams' and drags' grace
notes about as loud as the strokes, the strokes' train fits the grace onsets too, a cluster as early
before the direct sound as the grace notes are before their strokes. The correlation is that of the
strengths with the part of the fit from that lag to 70 ms after it (the hits and their room).
Per-event precision / recall of picked onset peaks is reported, not gated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import AnalysisError

# Onset strength: 512-point frames every 128 samples (2.9 ms at 44.1 kHz).
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
# The onset strengths are fitted by a nonnegative sum of the note train at every lag searched. A room
# adds, after each hit, copies of it: the weights then have a cluster at the direct sound's lag and
# more up to ECHO_MS later (upstream's gym: 23-65 ms), which may weigh more. Of the clusters at least
# EARLIEST_PEAK_SHARE of the heaviest and at most ECHO_MS before it, the earliest is the lag.
EARLIEST_PEAK_SHARE = 0.6
ECHO_MS = 50.0
# ...unless it is a grace note's shadow (`_grace_shadow`): an offset at which this share of the notes, within
# SHADOW_TOLERANCE_FRAMES, have a later neighbour. Calibrated across kits (docs/audio-checks.md).
SHADOW_SHARE = (0.05, 0.7)
SHADOW_TOLERANCE_FRAMES = 1.5
# The correlation reported is that of the onset strengths with the fit's part from the lag to ROOM_MS
# after it: the direct sound and the room's copies of it.
ROOM_MS = 70.0
# A strength's weight in the fit is its best cross-correlation with the notes, at least this.
MIN_QUALITY = 0.05
TRAIN_SPREAD = (0.5, 1.0, 0.5)
# Subtracted from the lag read. Real renders, whose hits start on the note-on, read +1.8 ms (median of
# 1,040), the sample maker's -1.3 (attacks out of digital silence enter the window early): no correction.
ONSET_DELAY_MS = 0.0
# A detected onset peak matches a note-on within this (after the best lag) for precision / recall.
EVENT_TOLERANCE_MS = 25.0
_FRAMES_PER_BLOCK = 512
_TINY = 1e-12  # magnitude floor: 1e-24 squared is still a normal float32


def magnitudes(signal: np.ndarray, size: int, hop: int) -> Iterator[np.ndarray]:
    """|FFT| of Hann-windowed frames of `size` every `hop` samples (frame i centred on sample i * hop).

    In blocks of `_FRAMES_PER_BLOCK` frames, so that memory does not grow with the file's length.

    Args:
        signal (`np.ndarray`): mono samples.
        size (`int`): the frame (and FFT) length.
        hop (`int`): samples between frames.

    Yields:
        `np.ndarray`: (frames x `size` // 2 + 1) magnitudes, block after block.
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
    """The onset strengths of a signal, every `ONSET_HOP` samples.

    Args:
        signal (`np.ndarray`): mono samples.
        rate (`int`): their sample rate.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: the strength over all bands, and over the bands in `HIGH_BANDS_HZ`.
    """
    bands = _bands(rate)
    # Floored so that squares of near-silent bins are not float32 subnormals, which slow arithmetic ~15x.
    floored = (np.maximum(block, _TINY) for block in magnitudes(signal, ONSET_FFT, ONSET_HOP))
    power = np.concatenate([(bands @ (block * block).T).T for block in floored])
    return _rise(power[:, :BANDS], rate), _rise(power[:, BANDS:], rate)


def note_train(times: np.ndarray, weights: np.ndarray, frames: int, frame_sec: float) -> np.ndarray:
    """The note-ons as weighted impulses on the onset-strength frame grid (each split between two frames).

    Args:
        times (`np.ndarray`): the note-on times, in seconds.
        weights (`np.ndarray`): their weights.
        frames (`int`): the length of the grid.
        frame_sec (`float`): seconds between two frames.

    Returns:
        `np.ndarray`: the train, `frames` long (note-ons outside the grid left out).
    """
    train = np.zeros(frames)
    position = times / frame_sec
    below = np.floor(position).astype(int)
    fraction = position - below
    for offset, share in ((0, 1.0 - fraction), (1, fraction)):
        index = below + offset
        inside = (index >= 0) & (index < frames)
        np.add.at(train, index[inside], (weights * share)[inside])
    return train


def _delayed_trains(train: np.ndarray, reach: int) -> Any:
    """(frames x 2 reach + 1) sparse matrix: column j is `train` delayed by j - reach frames (zeros shifted in)."""
    from scipy.sparse import csc_matrix

    frames, (nonzero,) = len(train), np.flatnonzero(train).reshape(1, -1)
    delays = np.arange(-reach, reach + 1)
    rows = nonzero[None, :] + delays[:, None]
    columns = np.broadcast_to(np.arange(len(delays))[:, None], rows.shape)
    values = np.broadcast_to(train[nonzero][None, :], rows.shape)
    inside = (rows >= 0) & (rows < frames)
    return csc_matrix((values[inside], (rows[inside], columns[inside])), shape=(frames, len(delays)))


def _lag_weights(envelopes: Sequence[np.ndarray], trains: Any, qualities: Sequence[float]) -> np.ndarray:
    """Nonnegative weights, one a lag, of the delayed note trains that best sum to the two onset strengths.

    Each strength is scaled to its maximum times `qualities` (its best cross-correlation), so that a band
    that does not follow the notes (noise above 6 kHz outdoors) weighs little; each has its own constant.
    Solved on the normal equations (their Cholesky factor), a (lags + 2)-square problem.
    """
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    frames, lags = trains.shape
    targets = [envelope / envelope.max() * quality for envelope, quality in zip(envelopes, qualities)]
    gram = np.zeros((lags + 2, lags + 2))
    gram[:lags, :lags] = len(targets) * (trains.T @ trains).toarray()
    column_sums = np.asarray(trains.sum(axis=0)).ravel()
    rhs = np.zeros(lags + 2)
    rhs[:lags] = trains.T @ sum(targets)
    for k, target in enumerate(targets):
        gram[:lags, lags + k] = gram[lags + k, :lags] = column_sums
        gram[lags + k, lags + k] = frames
        rhs[lags + k] = target.sum()
    gram[np.diag_indices_from(gram)] += 1e-9 * np.trace(gram)  # the trains at both ends can coincide
    upper = cholesky(gram)
    try:
        weights, _ = nnls(upper, solve_triangular(upper, rhs, trans="T"), maxiter=50 * (lags + 2))
    except RuntimeError as err:  # scipy's "too many iterations"; not seen on 4,000+ real and synthetic files
        raise AnalysisError(f"the onset fit does not converge ({err})") from err
    return weights[:lags]


def alignment(signal: np.ndarray, rate: int, times: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """`lag_ms`, `correlation`, `event_precision`, `event_recall` of the audio's onsets against the note-ons.

    A positive lag means the audio comes later than the MIDI. The correlation is that of the onset
    strengths with the note-ons at the lag and the room's copies of them up to `ROOM_MS` later.

    Args:
        signal (`np.ndarray`): mono samples of the audio.
        rate (`int`): their sample rate.
        times (`np.ndarray`): the MIDI's note-on times, in seconds.
        weights (`np.ndarray`): their weights ((velocity/127)^2).

    Returns:
        `dict[str, float]`: the four measurements.

    Raises:
        [`~errors.AnalysisError`]: the audio has no onsets, or does not follow the note-ons at any lag.
    """
    from scipy.signal import correlate, find_peaks

    frame_sec = ONSET_HOP / rate
    reach = int(round(LAG_SEARCH_MS / 1000.0 / frame_sec))
    envelopes = onset_strengths(signal, rate)
    if not all(envelope.max() > 0 for envelope in envelopes):
        raise AnalysisError("no onsets in the audio")
    # Spread over a frame either side: an onset's rise spans 2-3 frames, and jitters by one.
    train = np.convolve(note_train(times, weights, len(envelopes[0]), frame_sec), TRAIN_SPREAD, "same")
    qualities = []  # each strength's best cross-correlation with the train, within the lags searched
    y = train - train.mean()
    for envelope in envelopes:
        x = envelope - envelope.mean()
        norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
        middle = len(y) - 1  # correlate()'s index of lag 0
        curve = correlate(x, y, method="fft")[middle - reach : middle + reach + 1]
        qualities.append(max(float(curve.max()) / norm if norm > 0 else 0.0, MIN_QUALITY))
    trains = _delayed_trains(train, reach)
    lag_weights = _lag_weights(envelopes, trains, qualities)
    # Lags a frame either side make one cluster (an onset jitters by a frame); of the clusters at least
    # EARLIEST_PEAK_SHARE of the heaviest and at most ECHO_MS before it, the earliest is the direct sound.
    clustered = np.convolve(lag_weights, np.ones(3), "same")
    if not clustered.any():
        raise AnalysisError("the onsets do not follow the note-ons at any lag")
    peaks, _ = find_peaks(np.concatenate([[0.0], clustered, [0.0]]))
    peaks -= 1
    heaviest = int(np.argmax(clustered))
    echo = ECHO_MS / 1000.0 / frame_sec
    strong = peaks[(clustered[peaks] >= EARLIEST_PEAK_SHARE * clustered[heaviest]) & (peaks >= heaviest - echo)]
    strong = [peak for peak in strong if not _grace_shadow(times / frame_sec, heaviest - peak)]
    chosen = int(min(strong)) if strong else heaviest
    around = slice(max(chosen - 1, 0), chosen + 2)
    delays = np.arange(-reach, reach + 1)
    lag_frames = float((delays[around] * lag_weights[around]).sum() / lag_weights[around].sum())
    room = (delays >= delays[chosen] - 1) & (delays <= delays[chosen] + ROOM_MS / 1000.0 / frame_sec)
    fit = trains @ np.where(room, lag_weights, 0.0)
    correlation = max(_pearson(envelope, fit) for envelope in envelopes)
    lag_sec = lag_frames * frame_sec - ONSET_DELAY_MS / 1000.0
    precision, recall = _event_scores(envelopes[0], frame_sec, times + lag_sec)
    return {
        "lag_ms": float(lag_sec * 1000.0),
        "correlation": correlation,
        "event_precision": precision,
        "event_recall": recall,
    }


def _grace_shadow(positions: np.ndarray, offset: float) -> bool:
    """Whether a cluster `offset` frames before the heaviest is the shadow of grace notes, not the direct sound.

    Flams and drags put grace notes a few frames before their main strokes. Where a kit plays them about
    as loud as the strokes (the fit weighs them by velocity squared), the main strokes' train fits the grace
    notes' onsets too, a cluster that early; it is told from the direct sound by the MIDI itself: part of
    its notes, not all (an even roll), have a neighbour that far after them.
    """
    if offset <= SHADOW_TOLERANCE_FRAMES:
        return False
    positions = np.sort(positions)
    gaps = positions[None, :] - positions[:, None]
    share = float(np.mean(np.any(np.abs(gaps - offset) <= SHADOW_TOLERANCE_FRAMES, axis=1)))
    return SHADOW_SHARE[0] <= share <= SHADOW_SHARE[1]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / norm) if norm > 0 else 0.0


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
