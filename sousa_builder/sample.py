"""Write a small SOUSA-layout dataset: real FLAC, real MIDI, consistent labels.

It reproduces the quirks of real generator output that the builder has to handle: MIDI only for
the first augmentation of a group, NaN-coded nullables, all-null `aug_bit_depth` /
`aug_sample_rate` columns of Arrow type null, large_string columns, label files in several row
groups, and (with 3 profiles or fewer) an empty validation split.

Two options break the audio on purpose, for `validate --audio`: `pitched` renders each note as a
harmonic tone at the MIDI note's pitch (what a General MIDI soundfont plays when a drum part is on
a melodic channel: note 38 as a ~73 Hz piano), and `shift_ms` moves the audio against the MIDI.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputExistsError
from .features import BINARY_TIER, SCORE_COLUMNS, TIERS
from .manifest import write_manifest
from .output import replacing
from .sample_media import write_flac, write_midi
from .sample_rudiments import RUDIMENTS, Rudiment
from .source_files import LABEL_SCHEMAS, upstream_types

logger = logging.getLogger(__name__)

# Timing spread (ms) and velocity spread per tier, and the centre of its exercise scores.
TIER_TIMING_SD = {"beginner": 18.0, "intermediate": 11.0, "advanced": 6.0, "professional": 3.0}
TIER_VELOCITY_SD = {"beginner": 14.0, "intermediate": 9.0, "advanced": 6.0, "professional": 3.0}
TIER_SCORE = {"beginner": 45.0, "intermediate": 60.0, "advanced": 75.0, "professional": 88.0}
PRESETS = (
    ("blackpea", "marchingfield"),
    ("generaluser", "studio"),
    ("marching", "garage"),
    ("fluidr3", "concerthall"),
    ("arachno", "practiceroom"),
)
SAMPLE = "sample"  # the kind of folder in its manifest
# Profiles from which every split holds every tier (`split_profiles`): one run of the tiers per split.
TIERED_PROFILES = 3 * len(TIERS)
DEFAULT_PROFILES = TIERED_PROFILES
TEMPOS = range(90, 181, 2)
# Scores drawn separately from the nine 0-100 scores of every exercise.
SPECIAL_SCORES = (
    "flam_quality",
    "diddle_quality",
    "roll_sustain",
    "groove_feel_proxy",
    "overall_score",
    "tier_confidence",
)


def make_sample(
    out: str | Path,
    profiles: int = DEFAULT_PROFILES,
    rudiments: int = 3,
    augmentations: int = 2,
    tempos: int = 1,
    seed: int = 0,
    flat: bool = False,
    overwrite: bool = False,
    pitched: bool = False,
    shift_ms: float = 0.0,
) -> Path:
    """Write a sample SOUSA dataset of `profiles * rudiments * tempos * augmentations` samples to `out`.

    Args:
        out (`str` or `Path`):
            The folder to write: absent or empty, or an earlier sample with `overwrite`.
        profiles (`int`, *optional*, defaults to `DEFAULT_PROFILES`):
            Player profiles, at least 1. Each plays one skill tier, in turn, and belongs to one split
            (`split_profiles`: from `TIERED_PROFILES` profiles, the default, every split holds every tier).
        rudiments (`int`, *optional*, defaults to 3):
            Each profile plays the first `rudiments` of the known rudiments (1 to all of them).
        augmentations (`int`, *optional*, defaults to 2):
            Renders of each performance (soundfont presets), 1 to the number of presets.
        tempos (`int`, *optional*, defaults to 1):
            Distinct tempos each rudiment is played at.
        seed (`int`, *optional*, defaults to 0):
            The seed of every random choice.
        flat (`bool`, *optional*, defaults to `False`):
            The older media layout (`audio/<id>.flac`) instead of `audio/<slug>/<id>.flac`.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace a non-empty `out`, only if it is an earlier sample, unchanged.
        pitched (`bool`, *optional*, defaults to `False`):
            Render harmonic tones at the MIDI note's pitch instead of drum hits (labels and MIDI are the same).
        shift_ms (`float`, *optional*, defaults to 0.0):
            Play the audio that much later than the MIDI (earlier if negative); labels and MIDI are the same.

    Returns:
        `Path`: `out`, made absolute.

    Raises:
        [`~errors.OutputExistsError`]:
            `out` is not empty and `overwrite` is not given, or holds something that is not an earlier sample.
        [`~errors.OutputBusyError`]: another run is writing `out`.
        `ValueError`: a count out of range; the message gives the range.
    """
    out = Path(out).absolute()
    _check_options(out, overwrite, profiles, rudiments, augmentations, tempos)
    with replacing(out, SAMPLE, "OUT") as staging:
        profile_ids, samples = _write_dataset(staging.path, profiles, rudiments, augmentations, tempos, seed, flat,
                                              pitched, shift_ms)  # fmt: skip
        write_manifest(staging.path, SAMPLE)
    logger.debug("wrote %d samples to %s", samples, out)
    return out


def _write_dataset(
    out: Path, profiles: int, rudiments: int, augmentations: int, tempos: int, seed: int, flat: bool,
    pitched: bool, shift_ms: float,
) -> tuple[list[str], int]:  # fmt: skip
    """Write the media, labels and splits.json of a sample into `out`; its profile ids and number of samples."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    tables: dict[str, list[dict]] = {"samples": [], "exercises": [], "strokes": [], "measures": []}
    profile_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(profiles)]
    for performance in _performances(profile_ids, rudiments, tempos, rng):
        for a, (soundfont, preset) in enumerate(PRESETS[:augmentations]):
            sample = _render(out, performance, a, soundfont, preset, flat, (nprng, pitched, shift_ms))
            tables["samples"].append(sample)
            tables["exercises"].append({"sample_id": sample["sample_id"], **performance.scores})
            tables["strokes"] += [{"sample_id": sample["sample_id"], **s} for s in performance.strokes]
            tables["measures"] += [{"sample_id": sample["sample_id"], **m} for m in performance.measures]
    _write_labels(out, tables)
    _write_splits(out, profile_ids, tables["samples"])
    return profile_ids, len(tables["samples"])


def _check_options(out: Path, overwrite: bool, profiles: int, rudiments: int, augmentations: int, tempos: int) -> None:
    """Refuse counts out of range, and a non-empty `out` unless `overwrite` (an earlier sample is then replaced)."""
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty; pass overwrite (--overwrite) to replace it")
    if not 1 <= rudiments <= len(RUDIMENTS):
        raise ValueError(f"rudiments must be 1-{len(RUDIMENTS)}, got {rudiments}")
    if not 1 <= augmentations <= len(PRESETS):
        raise ValueError(f"augmentations must be 1-{len(PRESETS)}, got {augmentations}")
    if profiles < 1 or not 1 <= tempos <= len(TEMPOS):
        raise ValueError(f"profiles must be at least 1 and tempos 1-{len(TEMPOS)}, got {profiles} and {tempos}")


@dataclass
class Performance:
    """One performance of a rudiment by a profile at a tempo: what every augmentation of it shares."""

    profile: int
    profile_id: str
    tier: str
    hand: str
    rudiment: Rudiment
    tempo: int
    strokes: list[dict]
    measures: list[dict]
    scores: dict

    @property
    def group_id(self) -> str:
        """The augmentation group id of every augmentation of the performance: tier, profile, rudiment, tempo."""
        return f"{self.tier[:3]}{self.profile:03d}_{self.rudiment.slug}_{self.tempo}bpm"


def _performances(profile_ids: list[str], rudiments: int, tempos: int, rng: random.Random) -> Iterator[Performance]:
    """Each profile plays each of the first `rudiments` rudiments at `tempos` distinct tempos."""
    for p, profile_id in enumerate(profile_ids):
        tier = TIERS[p % len(TIERS)]
        hand = "left" if p % 5 == 4 else "right"
        for rudiment in RUDIMENTS[:rudiments]:
            drawn: set[int] = set()
            for _ in range(tempos):
                tempo = rng.choice(TEMPOS)
                while tempo in drawn:  # the tempo is part of the sample_id: one rudiment, distinct tempos
                    tempo = rng.choice(TEMPOS)
                drawn.add(tempo)
                strokes = _perform(rudiment, tempo, tier, hand, rng)
                measures = _measures(strokes, tempo, rudiment)
                scores = _scores(rudiment, tier, rng)
                yield Performance(p, profile_id, tier, hand, rudiment, tempo, strokes, measures, scores)


def _render(
    out: Path,
    performance: Performance,
    a: int,
    soundfont: str,
    preset: str,
    flat: bool,
    audio: tuple[np.random.Generator, bool, float],
) -> dict:
    """Write augmentation `a` of a performance (its FLAC; the group's MIDI for the first) and return its samples row."""
    rudiment, tempo, strokes = performance.rudiment, performance.tempo, performance.strokes
    sample_id = f"{performance.group_id}_{soundfont}_{preset}"
    media_dir = "" if flat else f"{rudiment.slug}/"
    audio_path = f"audio/{media_dir}{sample_id}.flac"
    midi_path = f"midi/{media_dir}{sample_id}.mid" if a == 0 else None
    duration = 8 * 60.0 / tempo  # two 4/4 measures
    write_flac(out / audio_path, strokes, duration, a, *audio)
    if midi_path:
        write_midi(out / midi_path, strokes, tempo)
    return dict(
        sample_id=sample_id,
        profile_id=performance.profile_id,
        rudiment_slug=rudiment.slug,
        tempo_bpm=tempo,
        duration_sec=duration,
        num_cycles=8 // rudiment.beats_per_cycle,
        skill_tier=performance.tier,
        skill_tier_binary=BINARY_TIER[performance.tier],
        dominant_hand=performance.hand,
        midi_path=midi_path,
        audio_path=audio_path,
        num_strokes=len(strokes),
        num_measures=len(performance.measures),
        soundfont=soundfont,
        augmentation_preset=preset,
        augmentation_group_id=performance.group_id,
        aug_soundfont=soundfont,
        aug_room_type=preset,
        aug_room_wet_dry=round(0.1 * a, 2),
        aug_mic_distance=1.0 + a,
        aug_mic_type="dynamic" if a % 2 else "condenser",
        aug_compression_ratio=1.0 + a,
        aug_noise_level_db=-70.0 + 5 * a,
        aug_bit_depth=None,
        aug_sample_rate=None,
    )


def _perform(rudiment: Rudiment, tempo: int, tier: str, hand: str, rng: random.Random) -> list[dict]:
    """Stroke label rows for two 4/4 measures of the rudiment, played by a player of `tier`."""
    beat_ms = 60_000.0 / tempo
    swap = {"R": "L", "L": "R"} if hand == "left" else {"R": "R", "L": "L"}
    rows: list[dict] = []

    def add(kind: str, hand_: str, intended: float, velocity: int, **extra) -> None:
        actual = intended + rng.gauss(0.0, TIER_TIMING_SD[tier])
        played = int(min(127, max(1, round(velocity + rng.gauss(0.0, TIER_VELOCITY_SD[tier])))))
        rows.append(
            dict(
                index=len(rows),
                hand=hand_,
                stroke_type=kind,
                intended_time_ms=intended,
                actual_time_ms=actual,
                timing_error_ms=actual - intended,
                intended_velocity=velocity,
                actual_velocity=played,
                velocity_error=played - velocity,
                is_grace_note=kind == "grace",
                is_accent=extra.get("accent", False),
                diddle_position=float(extra.get("diddle_position", float("nan"))),
                parent_stroke_index=float(extra.get("parent", float("nan"))),
                buzz_count=float(extra.get("buzz_count", float("nan"))),
                flam_spacing_ms=float(extra.get("flam_spacing", float("nan"))),
            )
        )

    for cycle in range(8 // rudiment.beats_per_cycle):
        for stroke in rudiment.pattern:
            intended = (cycle * rudiment.beats_per_cycle + stroke.beat) * beat_ms
            h = swap[stroke.hand]
            if stroke.flam:
                spacing = rng.uniform(15.0, 40.0)
                add("grace", swap[h], intended - spacing, 40, parent=len(rows) + 1, flam_spacing=spacing)
            velocity = 110 if stroke.accent else 70
            add(
                stroke.kind,
                h,
                intended,
                velocity,
                accent=stroke.accent,
                **({"diddle_position": stroke.diddle_position} if stroke.diddle_position is not None else {}),
                **({"buzz_count": rng.randint(3, 6)} if stroke.buzz else {}),
            )
    return rows


def _measures(strokes: list[dict], tempo: int, rudiment: Rudiment) -> list[dict]:
    """Measure label rows: each 4/4 measure's stroke range and its timing/velocity statistics."""
    measure_ms = 4 * 60_000.0 / tempo
    # A grace note belongs to the measure of the stroke it ornaments.
    measure_of = [
        int((s["intended_time_ms"] + (s["flam_spacing_ms"] if s["is_grace_note"] else 0.0)) // measure_ms)
        for s in strokes
    ]
    rows = []
    for m in range(2):
        members = [i for i, mm in enumerate(measure_of) if mm == m]
        chosen = [strokes[i] for i in members]
        errors = np.array([s["timing_error_ms"] for s in chosen])
        velocities = np.array([s["actual_velocity"] for s in chosen], dtype=float)
        by_hand = {h: [s for s in chosen if s["hand"] == h] for h in "LR"}
        two_handed = all(by_hand.values())
        rows.append(
            dict(
                index=m,
                stroke_start=members[0],
                stroke_end=members[-1] + 1,
                timing_mean_error_ms=float(errors.mean()),
                timing_std_ms=float(errors.std()),
                timing_max_error_ms=float(np.abs(errors).max()),
                velocity_mean=float(velocities.mean()),
                velocity_std=float(velocities.std()),
                velocity_consistency=float(max(0.0, 100.0 - velocities.std())),
                lr_velocity_ratio=float(
                    np.mean([s["actual_velocity"] for s in by_hand["L"]])
                    / np.mean([s["actual_velocity"] for s in by_hand["R"]])
                )
                if two_handed
                else float("nan"),
                lr_timing_diff_ms=float(
                    np.mean([s["timing_error_ms"] for s in by_hand["L"]])
                    - np.mean([s["timing_error_ms"] for s in by_hand["R"]])
                )
                if two_handed
                else float("nan"),
            )
        )
    return rows


def _scores(rudiment: Rudiment, tier: str, rng: random.Random) -> dict:
    def score() -> float:
        return round(min(100.0, max(0.0, rng.gauss(TIER_SCORE[tier], 6.0))), 3)

    names = [name for name, _, _ in SCORE_COLUMNS if name not in SPECIAL_SCORES]
    scores = {name: score() for name in names}
    scores["flam_quality"] = score() if rudiment.has_flams else float("nan")
    scores["diddle_quality"] = score() if rudiment.has_diddles else float("nan")
    scores["roll_sustain"] = score() if rudiment.is_roll else float("nan")
    scores["groove_feel_proxy"] = round(rng.uniform(0.2, 1.0), 4)
    scores["overall_score"] = round(float(np.mean([scores[n] for n in names])), 3)
    scores["tier_confidence"] = round(rng.uniform(0.5, 1.0), 4)
    return scores


def _source_schema(name: str) -> pa.Schema:
    """The schema upstream writes for a label file: the declared columns with upstream's types
    (`upstream_types`), the samples' media paths after `dominant_hand` (MIDI first), as upstream orders them."""
    fields = [pa.field(f.name, upstream_types(f)[0]) for f in LABEL_SCHEMAS[name]]
    if name == "samples":
        media = [f for f in fields if f.name in ("midi_path", "audio_path")][::-1]
        fields = [f for f in fields if f not in media]
        at = [f.name for f in fields].index("dominant_hand") + 1
        fields[at:at] = media
    return pa.schema(fields)


def _write_labels(out: Path, tables: dict[str, list[dict]]) -> None:
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        table = pa.Table.from_pylist(rows, schema=_source_schema(name))
        # Upstream appends in batches: several row groups per file.
        pq.write_table(table, out / "labels" / f"{name}.parquet", row_group_size=max(1, table.num_rows // 3 + 1))


def _write_splits(out: Path, profile_ids: list[str], samples: list[dict]) -> None:
    """splits.json: the profiles of each split (`split_profiles`) and their numbers of samples."""
    train, val, test = split_profiles(profile_ids)
    stats = {
        f"{key}_samples": sum(s["profile_id"] in ids for s in samples)
        for key, ids in (("train", train), ("val", val), ("test", test))
    }
    document = {"train_profile_ids": train, "val_profile_ids": val, "test_profile_ids": test, "stats": stats}
    (out / "splits.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def split_profiles(profile_ids: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Cut the profiles, in order, into train, validation and test: each profile in one split only.

    Profile `p` plays tier `TIERS[p % len(TIERS)]`, so any `len(TIERS)` consecutive profiles hold every tier.
    From `TIERED_PROFILES` profiles on, validation and test are each the same whole number of such runs (one, or
    about a tenth of the profiles) and train the rest: every split holds every tier, and a tier classifier is
    tested on tiers it was trained on. With fewer profiles that cannot be: validation and test get one profile
    each (from 4 profiles; test alone from 2), train the rest.

    Args:
        profile_ids (`list[str]`):
            The profiles, in the order they were made (profile `p` is `profile_ids[p]`).

    Returns:
        `tuple[list[str], list[str], list[str]]`: the train, validation and test profiles.
    """
    n, runs = len(profile_ids), len(TIERS)
    if n >= TIERED_PROFILES:
        n_val = n_test = runs * max(1, n // (10 * runs))
    else:
        n_val, n_test = (1, 1) if n >= 4 else (0, 1 if n >= 2 else 0)
    n_train = n - n_val - n_test
    return profile_ids[:n_train], profile_ids[n_train : n_train + n_val], profile_ids[n_train + n_val :]
