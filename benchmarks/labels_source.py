"""Time `validate`'s label checks and `prepare --configs labels_only` on a full-size synthetic SOUSA source.

    python benchmarks/labels_source.py                          # 100k samples, ~10M strokes, temp dir
    python benchmarks/labels_source.py --out /tmp/sousa-big --keep --repeat 3

The source has the real layout and types (large_string, NaN-coded nullables, all-null aug_* columns,
several row groups per file, MIDI only for the first augmentation) and is consistent, so every label
check passes. Media checks are not run (`validate_source(..., media=False)`): there are no files.
Each measurement is a fresh process, the two alternating, `--repeat` times: the label checks (the work's
seconds, imports excluded, as benchmarks/run.py counts them) and `sousa-builder prepare --configs labels_only`
(the whole process). Prints the medians of wall time, CPU time (user + sys) and peak RSS of each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sousa_builder.features import RUDIMENT_SLUGS, TIERS
from sousa_builder.validate import validate_source

PRESETS = ("blackpea_marchingfield", "generaluser_studio", "marching_garage", "fluidr3_concerthall", "arachno_room")
SCORES = (
    "timing_accuracy", "timing_consistency", "tempo_stability", "subdivision_evenness", "velocity_control",
    "accent_differentiation", "accent_accuracy", "hand_balance", "weak_hand_index", "flam_quality",
    "diddle_quality", "roll_sustain", "overall_score",
)  # fmt: skip
MEASURE_STATS = (
    "timing_mean_error_ms", "timing_std_ms", "timing_max_error_ms", "velocity_mean", "velocity_std",
    "velocity_consistency", "lr_velocity_ratio", "lr_timing_diff_ms",
)  # fmt: skip
MEASURES_PER_SAMPLE = 10
_S, _I, _F = pa.large_string(), pa.int64(), pa.float64()


def _text(values: np.ndarray | list) -> pa.Array:
    return pa.array(np.asarray(values).astype(str).tolist(), _S)


def _join(*parts: pa.Array | str, separator: str = "") -> pa.Array:
    scalars = [pa.scalar(part, _S) if isinstance(part, str) else part for part in parts]
    return pc.binary_join_element_wise(*scalars, pa.scalar(separator, _S))


def _repeat_ids(ids: pa.Array, owner: np.ndarray) -> pa.Array:
    """`ids[owner]` as large_string, built through a dictionary (fast for millions of rows)."""
    return pa.DictionaryArray.from_arrays(pa.array(owner, pa.int32()), ids).cast(_S)


def make_source(out: Path, profiles: int = 100, rudiments: int = 40, tempos: int = 5, seed: int = 0) -> int:
    """Write a labels-only source of `profiles * rudiments * tempos * 5` samples; return its stroke rows."""
    rng = np.random.default_rng(seed)
    (out / "labels").mkdir(parents=True)
    augmentations = len(PRESETS)
    grid = np.meshgrid(*map(np.arange, (profiles, rudiments, tempos, augmentations)), indexing="ij")
    p, r, t, a = (axis.ravel() for axis in grid)
    n, performances = len(p), len(p) // augmentations
    profile_ids = np.array([str(uuid.UUID(int=int(rng.integers(2**62)), version=4)) for _ in range(profiles)])
    tier = np.array(TIERS)[p % 4]
    tempo = 60 + 20 * t + 2 * (p % 7)
    slug = _text(np.array(RUDIMENT_SLUGS)[r])  # prepare refuses a slug outside the 40 PAS rudiments
    group = _join(_text(np.char.add("p", p.astype(str))), slug, _join(_text(tempo), "bpm"), separator="_")
    preset = _text(np.array(PRESETS)[a])
    sample_id = _join(group, preset, separator="_")
    num_strokes = np.repeat(rng.integers(60, 141, performances), augmentations)  # one performance per group
    midi = _join("midi/", slug, "/", sample_id, ".mid")
    samples = pa.table(
        {
            "sample_id": sample_id,
            "profile_id": _text(profile_ids[p]),
            "rudiment_slug": slug,
            "tempo_bpm": pa.array(tempo, _I),
            "duration_sec": pa.array(8 * 60.0 / tempo, _F),
            "num_cycles": pa.array(np.full(n, 4), _I),
            "skill_tier": _text(tier),
            "skill_tier_binary": _text(np.where(p % 4 < 2, "novice", "skilled")),
            "dominant_hand": _text(np.where(p % 5 == 4, "left", "right")),
            "midi_path": pc.if_else(pa.array(a == 0), midi, pa.scalar(None, _S)),
            "audio_path": _join("audio/", slug, "/", sample_id, ".flac"),
            "num_strokes": pa.array(num_strokes, _I),
            "num_measures": pa.array(np.full(n, MEASURES_PER_SAMPLE), _I),
            "soundfont": preset,
            "augmentation_preset": preset,
            "augmentation_group_id": group,
            "aug_soundfont": preset,
            "aug_room_type": preset,
            "aug_room_wet_dry": pa.array(0.1 * a, _F),
            "aug_mic_distance": pa.array(1.0 + a, _F),
            "aug_mic_type": _text(np.where(a % 2, "dynamic", "condenser")),
            "aug_compression_ratio": pa.array(1.0 + a, _F),
            "aug_noise_level_db": pa.array(-70.0 + 5 * a, _F),
            "aug_bit_depth": pa.nulls(n),
            "aug_sample_rate": pa.nulls(n),
        }
    )
    scores = {name: np.repeat(rng.uniform(0, 100, performances), augmentations) for name in SCORES}
    scores["roll_sustain"][r % 3 == 0] = np.nan  # not a roll
    for name in ("groove_feel_proxy", "tier_confidence"):
        scores[name] = np.repeat(rng.uniform(0, 1, performances), augmentations)
    exercises = pa.table({"sample_id": sample_id, **{k: pa.array(v, _F) for k, v in scores.items()}})

    total = int(num_strokes.sum())
    owner = np.repeat(np.arange(n), num_strokes)
    index = np.arange(total) - np.repeat(np.cumsum(num_strokes) - num_strokes, num_strokes)
    intended = index * 100.0
    actual = intended + rng.normal(0, 5, total)
    velocity = rng.integers(40, 120, total)
    played = np.clip(velocity + rng.integers(-8, 9, total), 1, 127)
    strokes = pa.table(
        {
            "sample_id": _repeat_ids(sample_id, owner),
            "index": pa.array(index, _I),
            "hand": _repeat_ids(pa.array(["R", "L"], _S), index % 2),
            "stroke_type": _repeat_ids(pa.array(["tap", "accent", "diddle"], _S), index % 3),
            "intended_time_ms": pa.array(intended, _F),
            "actual_time_ms": pa.array(actual, _F),
            "timing_error_ms": pa.array(actual - intended, _F),
            "intended_velocity": pa.array(velocity, _I),
            "actual_velocity": pa.array(played, _I),
            "velocity_error": pa.array(played - velocity, _I),
            "is_grace_note": pa.array(np.zeros(total, bool)),
            "is_accent": pa.array(index % 3 == 1),
            "diddle_position": pa.array(np.where(index % 3 == 2, 0.0, np.nan), _F),
            "parent_stroke_index": pa.array(np.full(total, np.nan), _F),
            "buzz_count": pa.array(np.full(total, np.nan), _F),
            "flam_spacing_ms": pa.array(np.full(total, np.nan), _F),
        }
    )
    measure = np.tile(np.arange(MEASURES_PER_SAMPLE), n)
    measure_owner = np.repeat(np.arange(n), MEASURES_PER_SAMPLE)
    strokes_of = num_strokes[measure_owner]
    measures = pa.table(
        {
            "sample_id": _repeat_ids(sample_id, measure_owner),
            "index": pa.array(measure, _I),
            "stroke_start": pa.array(strokes_of * measure // MEASURES_PER_SAMPLE, _I),
            "stroke_end": pa.array(strokes_of * (measure + 1) // MEASURES_PER_SAMPLE, _I),
            **{name: pa.array(rng.normal(0, 1, len(measure)), _F) for name in MEASURE_STATS},
        }
    )
    for name, table in (("samples", samples), ("exercises", exercises), ("strokes", strokes), ("measures", measures)):
        # Upstream appends in batches: several row groups per file.
        pq.write_table(table, out / "labels" / f"{name}.parquet", row_group_size=table.num_rows // 4 + 1)
    order = profile_ids[rng.permutation(profiles)].tolist()
    train, val = int(profiles * 0.7), int(profiles * 0.85)
    splits = {"train_profile_ids": order[:train], "val_profile_ids": order[train:val], "test_profile_ids": order[val:]}
    (out / "splits.json").write_text(json.dumps({**splits, "stats": {}}), encoding="utf-8")
    return total


def _measured(command: list[str]) -> dict:
    """Run `command` as a child process: its wall seconds, CPU seconds (user + sys), peak RSS (MiB) and the JSON
    object it printed last, if any."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output}")
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        **(json.loads(lines[-1]) if lines else {}),
    }


def _validate_child(data: Path) -> None:
    """In the child process: the label checks, timed without the imports."""
    started, cpu = time.perf_counter(), time.process_time()
    report = validate_source(data, media=False)
    if not report.ok():
        raise SystemExit(report.summary())
    work = {"work_wall": time.perf_counter() - started, "work_cpu": time.process_time() - cpu}
    print(json.dumps({**work, "checks": len(report.checks)}))


def _median(runs: list[dict], key: str) -> str:
    values = [run[key] for run in runs]
    return f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where to write the source (default: a temporary folder)")
    parser.add_argument("--profiles", type=int, default=100, help="x 40 rudiments x 5 tempos x 5 augmentations")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")
    parser.add_argument("--keep", action="store_true", help="keep the generated source")
    parser.add_argument("--reuse", action="store_true", help="measure the source already at --out (kept)")
    parser.add_argument("--validate-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.validate_child:
        _validate_child(args.validate_child)
        return
    work = Path(tempfile.mkdtemp(prefix="sousa-bench-"))
    out = args.out or work / "data"
    if not (args.reuse and out.exists()):
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        strokes = make_source(out, profiles=args.profiles)
        written = time.perf_counter() - started
        print(f"wrote {out}: {args.profiles * 1000:,} samples, {strokes:,} stroke rows ({written:.1f} s)")
    validate, prepare = [], []
    for _ in range(args.repeat):
        validate.append(_measured([sys.executable, __file__, "--validate-child", str(out)]))
        prepared = work / "prepared"
        shutil.rmtree(prepared, ignore_errors=True)
        command = [sys.executable, "-m", "sousa_builder", "prepare", str(out), "--out", str(prepared)]
        prepare.append(_measured([*command, "--configs", "labels_only"]))
    print(f"label checks ({validate[0]['checks']} checks), medians of {args.repeat}:")
    print(f"  work (imports excluded): wall {_median(validate, 'work_wall')} s, CPU {_median(validate, 'work_cpu')} s")
    print(f"  whole process: wall {_median(validate, 'wall')} s, CPU {_median(validate, 'cpu')} s, "
          f"peak RSS {_median(validate, 'rss_mib')} MiB")  # fmt: skip
    print(f"prepare --configs labels_only (whole process), medians of {args.repeat}:")
    print(f"  wall {_median(prepare, 'wall')} s, CPU {_median(prepare, 'cpu')} s, "
          f"peak RSS {_median(prepare, 'rss_mib')} MiB")  # fmt: skip
    shutil.rmtree(work / "prepared", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    if args.out and not (args.keep or args.reuse):
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
