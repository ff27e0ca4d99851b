"""The schema of every SOUSA config, declared once.

The builder, the prepared folder's README, validation, the sample maker and the dataset card all
read their column types, descriptions and documented values from here.
"""

from __future__ import annotations

from typing import Any

import datasets
from datasets import ClassLabel, Features, Value

SAMPLING_RATE = 44_100
# Real generator output lasts duration_sec + this.
AUDIO_TAIL_SEC = 0.5
# The documented values of the categorical columns. Those of the sample columns are the names of their
# ClassLabels, in class id order: changing an order changes the ids of published data.
TIERS = ("beginner", "intermediate", "advanced", "professional")
BINARY_TIER = {"beginner": "novice", "intermediate": "novice", "advanced": "skilled", "professional": "skilled"}
BINARY_TIERS = ("novice", "skilled")
DOMINANT_HANDS = ("right", "left")
HANDS = ("L", "R")
# The 40 PAS International Drum Rudiments, in PAS order (rolls, diddles, flams, drags), as upstream writes them.
RUDIMENT_SLUGS = (
    "single_stroke_roll", "single_stroke_four", "single_stroke_seven", "multiple_bounce_roll", "triple_stroke_roll",
    "double_stroke_open_roll", "five_stroke_roll", "six_stroke_roll", "seven_stroke_roll", "nine_stroke_roll",
    "ten_stroke_roll", "eleven_stroke_roll", "thirteen_stroke_roll", "fifteen_stroke_roll", "seventeen_stroke_roll",
    "single_paradiddle", "double_paradiddle", "triple_paradiddle", "paradiddle_diddle",
    "flam", "flam_accent", "flam_tap", "flamacue", "flam_paradiddle", "single_flammed_mill",
    "flam_paradiddle_diddle", "pataflafla", "swiss_army_triplet", "inverted_flam_tap", "flam_drag",
    "drag", "single_drag_tap", "double_drag_tap", "lesson_25", "single_dragadiddle", "drag_paradiddle_1",
    "drag_paradiddle_2", "single_ratamacue", "double_ratamacue", "triple_ratamacue",
)  # fmt: skip

_str, _int, _float, _bool = Value("string"), Value("int64"), Value("float64"), Value("bool")

# (column, type, description). Order here is column order in the output.
SAMPLE_COLUMNS: tuple[tuple[str, Value | ClassLabel, str], ...] = (
    ("sample_id", _str, "Unique id of the sample (one rendered performance)."),
    ("profile_id", _str, "Simulated player profile (UUID); splits are by profile."),
    ("rudiment_slug", ClassLabel(names=list(RUDIMENT_SLUGS)), "Which of the 40 PAS rudiments is played, e.g. `flam`."),
    ("tempo_bpm", _int, "Tempo in beats per minute."),
    ("duration_sec", _float, "Length of the performance in seconds (the audio lasts 0.5 s longer)."),
    ("num_cycles", _int, "How many times the rudiment pattern is repeated."),
    ("skill_tier", ClassLabel(names=list(TIERS)), "beginner, intermediate, advanced or professional."),
    (
        "skill_tier_binary",
        ClassLabel(names=list(BINARY_TIERS)),
        "novice (beginner, intermediate) or skilled (advanced, professional).",
    ),
    ("dominant_hand", ClassLabel(names=list(DOMINANT_HANDS)), "right or left."),
    ("num_strokes", _int, "Number of strokes (rows of `strokes`)."),
    ("num_measures", _int, "Number of measures (rows of `measures`)."),
    ("soundfont", _str, "Drum sound used to render the audio."),
    ("augmentation_preset", _str, "Audio augmentation preset (room, mic, compression, noise)."),
    ("augmentation_group_id", _str, "Samples of one group share the performance and differ only in audio."),
    ("aug_soundfont", _str, "Soundfont chosen by the augmentation."),
    ("aug_room_type", _str, "Simulated room."),
    ("aug_room_wet_dry", _float, "Reverb wet/dry mix."),
    ("aug_mic_distance", _float, "Simulated microphone distance."),
    ("aug_mic_type", _str, "Simulated microphone type."),
    ("aug_compression_ratio", _float, "Compression ratio."),
    ("aug_noise_level_db", _float, "Added noise level in dB."),
    ("aug_bit_depth", _int, "Bit-depth reduction, if any (null: none; upstream writes an all-null column)."),
    ("aug_sample_rate", _int, "Resampling rate, if any (null: none; upstream writes an all-null column)."),
)

SCORE_COLUMNS: tuple[tuple[str, Value, str], ...] = (
    ("timing_accuracy", _float, "Exercise score, 0-100."),
    ("timing_consistency", _float, "Exercise score, 0-100."),
    ("tempo_stability", _float, "Exercise score, 0-100."),
    ("subdivision_evenness", _float, "Exercise score, 0-100."),
    ("velocity_control", _float, "Exercise score, 0-100."),
    ("accent_differentiation", _float, "Exercise score, 0-100."),
    ("accent_accuracy", _float, "Exercise score, 0-100."),
    ("hand_balance", _float, "Exercise score, 0-100."),
    ("weak_hand_index", _float, "Exercise score, 0-100."),
    ("flam_quality", _float, "Exercise score, 0-100; null when the rudiment has no flams."),
    ("diddle_quality", _float, "Exercise score, 0-100; null when the rudiment has no diddles."),
    ("roll_sustain", _float, "Exercise score, 0-100; null when the rudiment is not a roll."),
    ("groove_feel_proxy", _float, "Exercise score, 0-1."),
    ("overall_score", _float, "Exercise score, 0-100."),
    ("tier_confidence", _float, "How typical the performance is of its skill tier, 0-1."),
)

STROKE_FIELDS: tuple[tuple[str, Value, str], ...] = (
    ("index", _int, "0-based position of the stroke in the sample."),
    ("hand", _str, "L or R."),
    ("stroke_type", _str, "tap, accent, grace, diddle, buzz, ..."),
    ("intended_time_ms", _float, "Where the stroke should be (negative for a grace note before beat 1)."),
    ("actual_time_ms", _float, "Where the player put it."),
    ("timing_error_ms", _float, "actual - intended."),
    ("intended_velocity", _int, "MIDI velocity aimed for, 0-127."),
    ("actual_velocity", _int, "MIDI velocity played, 0-127."),
    ("velocity_error", _int, "actual - intended."),
    ("is_grace_note", _bool, "Grace note of a flam or drag."),
    ("is_accent", _bool, "Accented stroke."),
    ("diddle_position", _int, "Position inside a diddle (null when not a diddle)."),
    ("parent_stroke_index", _int, "Primary stroke a grace note belongs to (null otherwise)."),
    ("buzz_count", _int, "Bounces of a buzz stroke (null otherwise)."),
    ("flam_spacing_ms", _float, "Grace-to-primary spacing of a flam (null otherwise)."),
)

MEASURE_FIELDS: tuple[tuple[str, Value, str], ...] = (
    ("index", _int, "0-based position of the measure in the sample."),
    ("stroke_start", _int, "First stroke index of the measure."),
    ("stroke_end", _int, "Stroke index after the last one (exclusive)."),
    ("timing_mean_error_ms", _float, "Mean timing error."),
    ("timing_std_ms", _float, "Standard deviation of the timing error."),
    ("timing_max_error_ms", _float, "Largest timing error."),
    ("velocity_mean", _float, "Mean velocity."),
    ("velocity_std", _float, "Standard deviation of velocity."),
    ("velocity_consistency", _float, "Velocity consistency."),
    ("lr_velocity_ratio", _float, "Left/right velocity ratio (null when the measure is one-handed)."),
    ("lr_timing_diff_ms", _float, "Left/right timing difference (null when one-handed)."),
)

# The label columns of a row before its nested strokes and measures: sample metadata, then exercise scores.
FLAT_COLUMNS = tuple(name for name, _, _ in SAMPLE_COLUMNS + SCORE_COLUMNS)

# Columns the source stores as float-with-NaN although they hold whole numbers.
NULLABLE_INT_FIELDS = ("diddle_position", "parent_stroke_index", "buzz_count")


MEDIA_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("midi", Value("binary"), "The MIDI file, byte-identical to the generator's .mid."),
    ("audio", datasets.Audio(sampling_rate=SAMPLING_RATE), "The FLAC recording (44.1 kHz), bytes as generated."),
)


def class_label_columns() -> dict[str, ClassLabel]:
    """The sample columns that are classification targets: column -> its `ClassLabel` (the names are the
    documented vocabulary). The source stores them as strings; the output as class ids."""
    return {name: feature for name, feature, _ in SAMPLE_COLUMNS if isinstance(feature, ClassLabel)}


def _struct(fields: tuple[tuple[str, Value, str], ...]) -> dict[str, Value]:
    return {name: feature for name, feature, _ in fields}


def label_features() -> Features:
    """Features of `labels_only`: sample metadata, exercise scores, nested strokes and measures."""
    return Features(
        {
            **_struct(SAMPLE_COLUMNS),
            **_struct(SCORE_COLUMNS),
            "strokes": [_struct(STROKE_FIELDS)],
            "measures": [_struct(MEASURE_FIELDS)],
        }
    )


def features_for(with_midi: bool, with_audio: bool) -> Features:
    """The declared `Features` of a config: the labels, then MIDI and audio if it carries them."""
    features = label_features()
    media = {name: feature for name, feature, _ in MEDIA_COLUMNS}
    if with_midi:
        features["midi"] = media["midi"]
    if with_audio:
        features["audio"] = media["audio"]
    return features


def column_descriptions() -> dict[str, str]:
    """Top-level column name -> one-line description, for cards and reports."""
    described = {name: text for name, _, text in SAMPLE_COLUMNS + SCORE_COLUMNS + MEDIA_COLUMNS}
    described["strokes"] = "The sample's strokes, ordered by index (fields below)."
    described["measures"] = "The sample's measures, ordered by index (fields below)."
    return described
