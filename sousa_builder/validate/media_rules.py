"""The rules about one media file, written once for every path that reads one: `validate` on a source's
files, `prepare` (and the `Sousa` builder) on the bytes it embeds, `validate --prepared` on embedded bytes.

Two depths, both cheap enough for every file of a 100k-sample dataset:
- `header_problem`: the first `HEADER_BYTES` bytes (a read of the start of a file, before anything is
  written): FLAC's `fLaC` and a whole STREAMINFO block; MIDI's `MThd` header.
- `content_problem`: the whole file as it is embedded: a 44.1 kHz FLAC whose STREAMINFO length matches the
  sample's `duration_sec` + 0.5 s and whose last frames decode (a cut file fails here); a MIDI file that
  parses and holds notes. Decoding every frame is left to `validate --audio`, which decodes anyway.
"""

from __future__ import annotations

import io
import os

import mido
import soundfile as sf

from ..features import AUDIO_TAIL_SEC, SAMPLING_RATE

# "fLaC" (4), the STREAMINFO block header (4: type 0, length 34), then STREAMINFO itself (34).
HEADER_BYTES = 42
_FLAC_MAGIC, _STREAMINFO_HEADER, _MIDI_HEAD = b"fLaC", b"\x00\x00\x00\x22", b"MThd\x00\x00\x00\x06"
# Real generator output lasts duration_sec + 0.5 s. The tolerance absorbs rounding and an encoder
# padding to a block (a 1024-frame FLAC block is 23 ms at 44.1 kHz) yet is far below one beat at
# 300 bpm (200 ms), so a cut or wrongly rendered file is still caught.
AUDIO_LENGTH_TOLERANCE_SEC = 0.05
# The frames decoded at the end of a FLAC: one block of the reference encoder.
_TAIL_FRAMES = 4096


def is_flac(name: str) -> bool:
    """Whether a media path names a FLAC file (by its extension)."""
    return os.path.splitext(name)[1].lower() == ".flac"


def is_midi(name: str) -> bool:
    """Whether a media path names a MIDI file (by its extension)."""
    return os.path.splitext(name)[1].lower() in (".mid", ".midi")


def header_problem(name: str, head: bytes) -> str | None:
    """Why a media file's first bytes are not what its name claims, or None.

    Args:
        name: the file's path or name; its extension says what the file must be.
        head: its first `HEADER_BYTES` bytes (fewer if the file is shorter).

    Returns:
        A problem such as "not a FLAC file (...)", or None when the header is sound.
    """
    if not head:
        return "empty (0 bytes)"
    if is_flac(name):
        if head[:4] != _FLAC_MAGIC:
            return "not a FLAC file (it does not start with fLaC)"
        if len(head) < HEADER_BYTES or head[4] & 0x7F != 0 or head[5:8] != _STREAMINFO_HEADER[1:]:
            return "not a FLAC file (fLaC is not followed by a whole STREAMINFO block)"
        rate = int.from_bytes(head[18:21], "big") >> 4
        if rate == 0:
            return "not a FLAC file (its STREAMINFO gives no sample rate)"
    if is_midi(name) and head[:8] != _MIDI_HEAD:
        return "not a MIDI file (it does not start with an MThd header)"
    return None


def content_problem(name: str, data: bytes | memoryview, duration_sec: float | None = None) -> str | None:
    """Why the bytes of a media file are not a usable one of its kind, or None.

    Args:
        name: the file's path or name; its extension says which rules apply.
        data: the whole file, as read (or as embedded in a shard).
        duration_sec: the sample's `duration_sec`; the FLAC must last that + 0.5 s. None: not checked.

    Returns:
        The first problem found, worded for a report line, or None.
    """
    problem = header_problem(name, bytes(data[:HEADER_BYTES]))
    if problem:
        return problem
    if is_flac(name):
        return flac_problem(data, duration_sec)
    if is_midi(name):
        return midi_problem(data)
    return None


def flac_problem(data: bytes | memoryview, duration_sec: float | None = None) -> str | None:
    """Why `data` is not a whole 44.1 kHz FLAC of `duration_sec` + 0.5 s, or None (see `content_problem`)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio:
            if audio.format != "FLAC":
                return f"format {audio.format}, expected FLAC"
            if audio.samplerate != SAMPLING_RATE:
                return f"sample rate {audio.samplerate} Hz, expected {SAMPLING_RATE}"
            frames = audio.frames
            audio.seek(max(0, frames - _TAIL_FRAMES))
            tail = len(audio.read(dtype="int32"))
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        return f"does not decode ({type(err).__name__}: {err})".replace(": )", ")")
    if tail != min(frames, _TAIL_FRAMES):
        return f"does not decode to its end ({frames - min(frames, _TAIL_FRAMES) + tail} of {frames} frames)"
    if duration_sec is None:
        return None
    seconds, expected = frames / SAMPLING_RATE, duration_sec + AUDIO_TAIL_SEC
    if abs(seconds - expected) > AUDIO_LENGTH_TOLERANCE_SEC:
        return (
            f"lasts {seconds:.3f} s, expected duration_sec + {AUDIO_TAIL_SEC} s = {expected:.3f} s "
            f"(tolerance {AUDIO_LENGTH_TOLERANCE_SEC} s)"
        )
    return None


def midi_problem(data: bytes | memoryview) -> str | None:
    """Why `data` is not a MIDI file with notes in it, or None."""
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as err:  # mido raises OSError, EOFError, ValueError, KeyError... on malformed files
        return f"does not parse as MIDI ({type(err).__name__}: {err})"
    if not any(message.type == "note_on" and message.velocity > 0 for track in midi.tracks for message in track):
        return "holds no note events"
    return None
