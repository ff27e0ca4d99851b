"""Calibrate the audio checks across drum kits, and measure them leave-one-kit-out (docs/audio-checks.md).

Two steps:

    python benchmarks/audio_calibration.py measure FEATURES.jsonl SPEC... [--num-proc 2]
    python benchmarks/audio_calibration.py table FEATURES.jsonl [--fit-all]
    python benchmarks/audio_calibration.py cost DIR [--repeat 3]

A SPEC is `NAME,KIND,FONT=DIR`: a SOUSA source directory DIR (as upstream's generator writes it) of
KIND `drums` (a healthy kit) or `piano` (upstream as shipped: the channel bug), named NAME, made with
the soundfont family FONT. `measure` runs the package's own analysis (`validate.audio.analyse`) on every
file, and for drums also alignment on the audio made 30 ms late (padded) and 30 ms early (trimmed), and
against the MIDI of another rudiment at the same tempo (same profile) and of another rudiment at any
tempo; one JSON line a file. `table` fits the thresholds on all kits but one and measures them on the
one left out, for every drum kit (its font's piano, or upstream's FluidR3 piano for drum-only fonts,
is left out with it), and prints the markdown table of docs/audio-checks.md; `--fit-all` prints the
values fitted on every kit (the defaults in `validate/audio.py`). `cost` times `analyse` on every FLAC
file of a source directory DIR in this one process (CPU time, `time.process_time`), per file and per
4 s of audio, the best of `--repeat` passes; it needs only `analyse`, so this script, copied into an
export of an older commit (`git archive COMMIT sousa_builder benchmarks | tar -x -C DIR`), times that code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sousa_builder.validate.audio import analyse, read_audio, read_note_ons  # noqa: E402
from sousa_builder.validate.onsets import AnalysisError, alignment  # noqa: E402

if TYPE_CHECKING:
    from sousa_builder.validate.audio import AudioSettings

SHIFT_MS = 30.0
# A swapped MIDI whose every note-on is this close to the file's own cannot be told by onsets: not counted.
SAME_ONSETS_SEC = 0.010
CONDITIONS = ("late", "early", "swap_same_tempo", "swap_any")
# Fitting. The note weight is the one that best separates the 99.5th percentile of the training drums' pitch
# evidence from the 0.5th of the pianos', in the two spreads; the threshold sits midway between the highest
# drum and the lowest piano at that weight (the previous calibration's rule). The minimum correlation is the
# 0.5th percentile of the training drums' (two decimals, rounded down).
WEIGHTS = np.round(np.arange(0.0, 0.1001, 0.0025), 4)
QUANTILE = 0.5  # percent


def shifted(signal: np.ndarray, rate: int, shift_ms: float) -> np.ndarray:
    """The signal `shift_ms` later (padded with silence in front) or earlier (its start cut), length kept."""
    n = round(abs(shift_ms) * rate / 1000)
    pad = np.zeros(n, signal.dtype)
    return np.concatenate([pad, signal[:-n]]) if shift_ms > 0 else np.concatenate([signal[n:], pad])


def _aligned(signal: np.ndarray, rate: int, midi: Path) -> dict[str, Any]:
    times, weights, _ = read_note_ons(midi)
    try:
        return alignment(signal, rate, times, weights)
    except AnalysisError as err:
        return {"alignment_problem": str(err)}


def measure_file(job: tuple[str, str, str, str, dict, dict | None, dict | None]) -> dict[str, Any]:
    """One file: `analyse` as `validate --audio` runs it; for drums, alignment under each condition too."""
    name, kind, font, root, row, same, other = job
    base = Path(root)
    found = analyse(base / row["audio_path"], base / row["midi_path"])
    result = {
        "kit": name, "kind": kind, "font": font, "file": row["audio_path"], "rudiment": row["rudiment_slug"],
        "tempo": row["tempo_bpm"], "preset": row["augmentation_preset"], **found,
    }  # fmt: skip
    if kind == "drums" and "problem" not in found:
        signal, rate = read_audio(base / row["audio_path"])
        result["late"] = _aligned(shifted(signal, rate, SHIFT_MS), rate, base / row["midi_path"])
        result["early"] = _aligned(shifted(signal, rate, -SHIFT_MS), rate, base / row["midi_path"])
        own = np.sort(read_note_ons(base / row["midi_path"])[0])
        for key, swap in (("swap_same_tempo", same), ("swap_any", other)):
            if swap is not None:
                result[key] = {**_aligned(signal, rate, base / swap["midi_path"]), "with": swap["rudiment_slug"]}
                theirs = np.sort(read_note_ons(base / swap["midi_path"])[0])
                if len(theirs) == len(own) and np.abs(theirs - own).max() <= SAME_ONSETS_SEC:
                    result[key]["indistinguishable"] = "the same note-on times as its own MIDI: only velocities differ"
    return result


def jobs(specs: Sequence[str]) -> list[tuple]:
    """The files of every SPEC, each drum file with its two swap partners (a seeded draw)."""
    rng = np.random.default_rng(0)
    found = []
    for spec in specs:
        label, root = spec.split("=", 1)
        name, kind, font = label.split(",")
        table = [
            row for row in pq.read_table(Path(root) / "labels" / "samples.parquet").to_pylist() if row["midi_path"]
        ]
        for row in table:
            others = [o for o in table if o["rudiment_slug"] != row["rudiment_slug"]]
            same = [o for o in others if o["profile_id"] == row["profile_id"]]
            pick = lambda pool: pool[int(rng.integers(len(pool)))] if pool else None  # noqa: E731
            found.append((name, kind, font, root, row, pick(same), pick(others)))
    return found


# --- fitting and the leave-one-kit-out table ---------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def fit(rows: Sequence[dict]) -> AudioSettings:
    """Note weight, pitch-evidence threshold and minimum correlation fitted on `rows` (healthy drums, piano)."""
    from sousa_builder.validate.audio import AudioSettings, pitch_evidence

    drums = [r for r in rows if r["kind"] == "drums" and "partial_stability" in r]
    piano = [r for r in rows if r["kind"] == "piano" and "partial_stability" in r]
    best = None
    for weight in WEIGHTS:
        d = [pitch_evidence(r["partial_stability"], r["note_salience_db"], weight) for r in drums]
        p = [pitch_evidence(r["partial_stability"], r["note_salience_db"], weight) for r in piano]
        high, low = _percentile(d, 100 - QUANTILE), _percentile(p, QUANTILE)
        separation = (low - high) / (np.std(d) + np.std(p))  # the gap, in the two spreads
        if best is None or separation > best[0]:
            best = (separation, weight, (max(d) + min(p)) / 2)
    _, weight, threshold = best
    correlations = [r["correlation"] for r in drums if "correlation" in r]
    min_correlation = np.floor(100 * _percentile(correlations, QUANTILE)) / 100
    return AudioSettings(
        partial_threshold=round(float(threshold), 3), note_weight=float(weight), min_correlation=float(min_correlation)
    )


def _share(flags: Sequence[bool]) -> str:
    return f"{100 * np.mean(flags):.1f}%" if len(flags) else "n/a"


def evaluate(rows: Sequence[dict], settings: AudioSettings) -> dict[str, Any]:
    """Flagged shares of `rows` under `settings`: healthy drums by each check, piano, and each condition."""
    from sousa_builder.validate.audio import alignment_verdict, pitch_evidence

    drums = [r for r in rows if r["kind"] == "drums" and "problem" not in r]
    piano = [r for r in rows if r["kind"] == "piano"]

    def pitched(r: dict) -> bool:
        if "problem" in r:
            return True
        return pitch_evidence(r["partial_stability"], r["note_salience_db"], settings.note_weight) > (
            settings.partial_threshold
        )

    out: dict[str, Any] = {"drums": len(drums), "piano": len(piano)}
    out["timbre"] = [pitched(r) for r in drums]
    out["piano_caught"] = [pitched(r) for r in piano]
    skipped: dict[str, int] = {}
    for key in ("healthy", *CONDITIONS):
        flags = []
        for r in drums:
            found = r if key == "healthy" else r.get(key)
            if found is None:
                continue
            if found.get("indistinguishable"):
                skipped[key] = skipped.get(key, 0) + 1
                continue
            flags.append(alignment_verdict(found, settings)[0])
        out[key] = flags
    out["skipped"] = skipped
    return out


def table(rows: Sequence[dict]) -> str:
    """The leave-one-kit-out markdown table."""
    kits = sorted({r["kit"] for r in rows if r["kind"] == "drums"})
    header = (
        "| kit left out | drums | timbre: healthy flagged | alignment: healthy flagged | piano caught | "
        "+30 ms caught | -30 ms caught | swap, same tempo, caught | swap, any, caught | skipped | fitted |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for kit in kits:
        font = next(r["font"] for r in rows if r["kit"] == kit)
        held = [r for r in rows if r["kit"] == kit or (r["kind"] == "piano" and r["font"] == font)]
        train = [r for r in rows if r not in held]
        settings = fit(train)
        e = evaluate(held, settings)
        pianos = sorted({r["kit"] for r in held if r["kind"] == "piano"})
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(e["skipped"].items())) or "0"
        lines.append(
            f"| {kit} | {e['drums']} | {_share(e['timbre'])} | {_share(e['healthy'])} | "
            f"{_share(e['piano_caught'])} ({'+'.join(pianos)}, {e['piano']}) | {_share(e['late'])} | "
            f"{_share(e['early'])} | {_share(e['swap_same_tempo'])} | {_share(e['swap_any'])} | {skipped} | "
            f"w {settings.note_weight:g}, t {settings.partial_threshold:g}, r {settings.min_correlation:g} |"
        )
    return "\n".join(lines)


def cost(root: Path, repeat: int) -> str:
    """CPU time of `analyse` on every file of a source directory, per file and per 4 s of audio."""
    import soundfile as sf

    table = [row for row in pq.read_table(root / "labels" / "samples.parquet").to_pylist() if row["midi_path"]]
    seconds = sum(sf.info(str(root / row["audio_path"])).duration for row in table)
    analyse(root / table[0]["audio_path"], root / table[0]["midi_path"])  # imports, caches
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for row in table:
            analyse(root / row["audio_path"], root / row["midi_path"])
        best = min(best, time.process_time() - start)
    per_file = 1000 * best / len(table)
    per_4s = 1000 * best / seconds * 4
    return f"{len(table)} files, {seconds / len(table):.2f} s each: {per_file:.1f} ms a file, {per_4s:.1f} ms per 4 s"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `measure` or `table` (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="analyse every file of the SPECs into FEATURES.jsonl")
    measure.add_argument("features", type=Path)
    measure.add_argument("specs", nargs="+", metavar="NAME,KIND,FONT=DIR")
    measure.add_argument("--num-proc", type=int, default=1)
    show = commands.add_parser("table", help="the leave-one-kit-out table from FEATURES.jsonl")
    show.add_argument("features", type=Path)
    show.add_argument("--fit-all", action="store_true", help="also print the values fitted on every kit")
    timing = commands.add_parser("cost", help="CPU time of the analysis on every file of a source directory")
    timing.add_argument("root", type=Path)
    timing.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "cost":
        print(cost(args.root, args.repeat))
        return 0
    if args.command == "measure":
        todo = jobs(args.specs)
        with ProcessPoolExecutor(args.num_proc) as pool, args.features.open("w") as out:
            for done, result in enumerate(pool.map(measure_file, todo, chunksize=4), 1):
                out.write(json.dumps(result, default=float) + "\n")
                if done % 100 == 0:
                    print(f"{done} / {len(todo)}", file=sys.stderr)
        return 0
    rows = [json.loads(line) for line in args.features.read_text().splitlines()]
    print(table(rows))
    if args.fit_all:
        from sousa_builder.validate.audio import MAX_LAG_MS, NOTE_REFERENCE_DB

        settings = fit(rows)
        print(
            f"\nfitted on every kit: NOTE_WEIGHT = {settings.note_weight:g} (reference {NOTE_REFERENCE_DB:g} dB), "
            f"PARTIAL_STABILITY_THRESHOLD = {settings.partial_threshold:g}, MIN_CORRELATION = "
            f"{settings.min_correlation:g} (MAX_LAG_MS {MAX_LAG_MS:g}, not fitted)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
