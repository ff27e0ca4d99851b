"""Partial stability for `audio_timbre`: do the harmonics of the pitches a file's MIDI plays hold steady?

A string playing a note holds sinusoids at its harmonics: from one short-time spectrum to the next,
the phase of the bin nearest each harmonic advances as that harmonic's frequency says. A drum's noise
and reverb (and its inharmonic modes) do not, whatever their level. The score is the share of
(frame, harmonic) pairs where the instantaneous frequency (from the phase advance) of the peak bin
nearest the harmonic, and of its louder neighbour, is within 0.6 bin of it, and the bin stands out of
its spectral neighbourhood, best over the pitch and stretch candidates of `validate.timbre`, less the
same share read midway between the harmonics (what noise alone scores). Unlike a long-term
spectrum, it holds when a buzz roll's re-struck hammers smear the partials' levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# 4096-point frames (10.8 Hz bins at 44.1 kHz) every 1024 samples: the phase advance over a hop tells
# a bin's frequency to within +/-2 bins, and few hops straddle a buzz roll's re-strike.
PARTIAL_FFT = 4096
PARTIAL_HOP = 1024
PARTIAL_MAX_HZ = 2000.0
PARTIAL_HARMONICS = 20
# A harmonic is steady in a frame when the peak bin nearest it, and that bin's louder neighbour, both
# read within this many bins of it: a sinusoid's main lobe reads its frequency in every bin it covers,
# while a hit's burst (or digital silence) reads each bin's own centre, which may lie near a harmonic...
FREQUENCY_TOLERANCE_BINS = 0.6
# ...and that bin is this much (dB) above the mean level of its 200 Hz neighbourhood.
STANDS_OUT_DB = 3.0
# Frames whose power below PARTIAL_MAX_HZ is under this share of the loudest frame's (30 dB) are left out.
LOUD_FRAMES = 1e-3
_FLOOR = 1e-5


def _spectra(signal: np.ndarray, bins: int) -> np.ndarray:
    """Complex spectra (frames x `bins`) of Hann-windowed `PARTIAL_FFT`-point frames every `PARTIAL_HOP`."""
    import scipy.fft

    frames = np.lib.stride_tricks.sliding_window_view(np.pad(signal, PARTIAL_FFT // 2), PARTIAL_FFT)[::PARTIAL_HOP]
    window = np.hanning(PARTIAL_FFT).astype(signal.dtype)
    return np.concatenate(
        [scipy.fft.rfft(frames[start : start + 256] * window, axis=1)[:, :bins] for start in range(0, len(frames), 256)]
    )


def partial_stability(
    signal: np.ndarray, rate: int, fundamentals: Sequence[float], stretches: Sequence[float], neighbourhood_hz: float
) -> float:
    """Share of steady harmonics over the candidate `fundamentals` x `stretches` (best), less the midway share.

    `stretches` are inharmonicities B (harmonic k at k f0 sqrt(1 + B k^2)); a bin stands out when it is
    `STANDS_OUT_DB` above the mean level of its `neighbourhood_hz`.
    """
    from scipy.ndimage import uniform_filter1d

    bin_hz = rate / PARTIAL_FFT
    bins = int(PARTIAL_MAX_HZ / bin_hz) + 2
    spectra = _spectra(signal, bins)
    if len(spectra) < 2:
        return 0.0
    magnitude = np.abs(spectra[1:])
    advance = np.angle(spectra[1:]) - np.angle(spectra[:-1]) - 2 * np.pi * np.arange(bins) * PARTIAL_HOP / PARTIAL_FFT
    deviation = (advance + np.pi) % (2 * np.pi) - np.pi  # radians a hop, off the bin's centre frequency
    frequency = (np.arange(bins) + deviation * PARTIAL_FFT / (2 * np.pi * PARTIAL_HOP)) * bin_hz
    level = 20 * np.log10(magnitude + _FLOOR * magnitude.max())
    # The mean, not the median, of the neighbourhood: as telling here, and a median filter costs ~4x the rest.
    stands_out = level - uniform_filter1d(level, int(round(neighbourhood_hz / bin_hz)) | 1, axis=1, mode="nearest")
    power = (magnitude * magnitude).sum(axis=1)
    loud = power > LOUD_FRAMES * power.max()
    magnitude, frequency, stands_out = magnitude[loud], frequency[loud], stands_out[loud]
    # For every bin (but the two ends), the loudest of it and its two neighbours: where a partial near it
    # peaks; and the louder of that peak's two neighbours, which a sinusoid's main lobe also covers.
    centre = np.arange(1, bins - 1)
    peak = centre + np.argmax(np.stack([magnitude[:, :-2], magnitude[:, 1:-1], magnitude[:, 2:]]), axis=0) - 1
    below, above = np.maximum(peak - 1, 0), np.minimum(peak + 1, bins - 1)
    louder_below = np.take_along_axis(magnitude, below, 1) > np.take_along_axis(magnitude, above, 1)
    peak_frequency = np.take_along_axis(frequency, peak, 1)
    lobe_frequency = np.take_along_axis(frequency, np.where(louder_below, below, above), 1)
    peak_stands_out = np.take_along_axis(stands_out, peak, 1) > STANDS_OUT_DB

    k = np.arange(1, PARTIAL_HARMONICS + 1)
    best = {}
    for offset in (0.0, 0.5):  # on the harmonics, and midway between them
        targets = np.concatenate(
            [np.outer(fundamentals, (k + offset) * np.sqrt(1.0 + stretch * k**2)) for stretch in stretches]
        )  # candidates x harmonics, Hz
        inside = targets < PARTIAL_MAX_HZ
        column = np.clip(np.rint(targets / bin_hz).astype(int), 1, bins - 2) - 1
        tolerance = FREQUENCY_TOLERANCE_BINS * bin_hz
        steady = np.abs(peak_frequency[:, column] - targets) < tolerance
        steady &= np.abs(lobe_frequency[:, column] - targets) < tolerance
        steady &= peak_stands_out[:, column] & inside
        best[offset] = float((steady.sum(axis=(0, 2)) / np.maximum(inside.sum(axis=1) * len(steady), 1)).max())
    return best[0.0] - best[0.5]
