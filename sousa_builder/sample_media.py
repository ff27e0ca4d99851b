"""The sample's media: each performance rendered as a FLAC (snare-like hits, or pitched tones on purpose) and
written as a MIDI file, as the SOUSA generator lays them out.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from .features import AUDIO_TAIL_SEC, SAMPLING_RATE

SNARE_NOTE = 38
# `pitched` renders: harmonics (1/k amplitudes) of the note's pitch, slightly stretched as a piano
# string's are (f_k = k f0 sqrt(1 + B k^2)), decaying slowly.
PITCHED_HARMONICS = 20
PITCHED_STRETCH = 1e-4
PITCHED_DECAY_SEC = 0.5
PITCHED_LENGTH_SEC = 1.5


def _onsets_sec(strokes: list[dict]) -> list[tuple[float, int]]:
    """(seconds, velocity) of each stroke, shifted so that the earliest is at or after 0."""
    lead = max(0.0, -min(s["actual_time_ms"] for s in strokes))
    return [((s["actual_time_ms"] + lead) / 1000.0, s["actual_velocity"]) for s in strokes]


def write_flac(
    path: Path,
    strokes: list[dict],
    duration: float,
    variant: int,
    rng: np.random.Generator,
    pitched: bool = False,
    shift_ms: float = 0.0,
) -> None:
    """Render the strokes as snare-like hits (decaying noise + a low body tone), stereo PCM_24.

    `pitched`: as harmonic tones at the pitch of MIDI note `SNARE_NOTE` instead. `shift_ms`: every
    hit that much later (the start of a hit moved before 0 is cut).
    """
    frames = int(round((duration + AUDIO_TAIL_SEC) * SAMPLING_RATE))
    if pitched:
        hit = _pitched_tone(SNARE_NOTE, PITCHED_DECAY_SEC * (1.0 + 0.2 * variant))
    else:
        t = np.arange(int(0.12 * SAMPLING_RATE)) / SAMPLING_RATE
        decay = 0.012 + 0.004 * variant  # each augmentation sounds a little different
        hit = rng.standard_normal(t.size) * np.exp(-t / decay)
        hit += 0.6 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.03)
    signal = np.zeros(frames)
    for onset, velocity in _onsets_sec(strokes):
        start = int((onset + shift_ms / 1000.0) * SAMPLING_RATE)
        cut = max(0, -start)
        start += cut
        end = min(frames, start + hit.size - cut)
        if end <= start:  # shifted out of the file
            continue
        signal[start:end] += (velocity / 127.0) ** 2 * hit[cut : cut + end - start]
    signal *= 0.5 / max(1e-9, float(np.abs(signal).max()))
    stereo = np.stack([signal, signal * (0.9 - 0.05 * variant)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, stereo, SAMPLING_RATE, subtype="PCM_24", format="FLAC")


def _pitched_tone(note: int, decay_sec: float) -> np.ndarray:
    """One note of a piano-like instrument: stretched harmonics of the note's pitch, a 2 ms attack, a slow decay."""
    t = np.arange(int(PITCHED_LENGTH_SEC * SAMPLING_RATE)) / SAMPLING_RATE
    f0 = 440.0 * 2.0 ** ((note - 69) / 12)
    k = np.arange(1, PITCHED_HARMONICS + 1)
    frequencies = k * f0 * np.sqrt(1.0 + PITCHED_STRETCH * k**2)
    k, frequencies = k[frequencies < SAMPLING_RATE / 2], frequencies[frequencies < SAMPLING_RATE / 2]
    tone = (np.sin(2 * np.pi * np.outer(t, frequencies)) / k).sum(axis=1)
    return tone * np.minimum(1.0, t / 0.002) * np.exp(-t / decay_sec)


def write_midi(path: Path, strokes: list[dict], tempo: int) -> None:
    """Type 1, 480 PPQ: tempo and time signature in track 0, snare notes in track 1."""
    ticks_per_beat = 480
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        ]
    )
    events = []
    for onset, velocity in _onsets_sec(strokes):
        tick = round(onset * tempo / 60.0 * ticks_per_beat)
        events.append((tick, 1, mido.Message("note_on", channel=9, note=SNARE_NOTE, velocity=velocity)))
        events.append((tick + 20, 0, mido.Message("note_off", channel=9, note=SNARE_NOTE, velocity=0)))
    notes, now = mido.MidiTrack(), 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        notes.append(message.copy(time=tick - now))
        now = tick
    midi.tracks += [meta, notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)
