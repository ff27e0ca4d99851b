"""Build tests/data/upstream-kits: a few real upstream renders of several drum kits and pianos, as two SOUSA
source directories (`drums/`, `piano/`) that tests/test_validate_audio.py validates.

    python benchmarks/audio_test_set.py OUT LIST

LIST holds one `RUN_DIR SAMPLE_ID` a line (# comments allowed): a sample of an upstream render directory
(`upstream_renders.sh`, see docs/audio-checks.md), which goes into OUT/drums or OUT/piano as the RUN_DIR's
name says (`piano` in it: piano). Each FLAC is stored as rendered but mono and 16-bit (the checks read the
mean of the channels; it keeps the set small); MIDI files are copied; the four label files are the rows of
the kept samples, and splits.json / index.json the runs' merged, so the directories pass `validate`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf

LABELS = ("samples", "exercises", "strokes", "measures")
SPLITS = ("train_profile_ids", "val_profile_ids", "test_profile_ids")


def build(out: Path, picks: list[tuple[Path, str]]) -> dict[str, int]:
    """Write OUT/drums and OUT/piano from `picks`; the number of samples in each."""
    by_kind: dict[str, dict[Path, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run, sample_id in picks:
        by_kind["piano" if "piano" in run.name else "drums"][run].append(sample_id)
    counts = {}
    for kind, runs in by_kind.items():
        target = out / kind
        shutil.rmtree(target, ignore_errors=True)
        (target / "labels").mkdir(parents=True)
        tables: dict[str, list[pa.Table]] = defaultdict(list)
        splits: dict[str, list[str]] = {key: [] for key in SPLITS}
        ids: list[str] = []
        for run, wanted in runs.items():
            samples = pq.read_table(run / "labels" / "samples.parquet")
            keep = pc.is_in(samples["sample_id"], value_set=pa.array(wanted, samples.schema.field("sample_id").type))
            kept = samples.filter(keep)
            missing = set(wanted) - set(kept["sample_id"].to_pylist())
            if missing:
                raise SystemExit(f"{run}: no sample {sorted(missing)}")
            for name in LABELS:
                table = samples if name == "samples" else pq.read_table(run / "labels" / f"{name}.parquet")
                tables[name].append(table.filter(pc.is_in(table["sample_id"], value_set=kept["sample_id"])))
            profiles = set(kept["profile_id"].to_pylist())
            run_splits = json.loads((run / "splits.json").read_text())
            for key in SPLITS:
                splits[key] += [p for p in run_splits[key] if p in profiles]
            for row in kept.to_pylist():
                ids.append(row["sample_id"])
                data, rate = sf.read(run / row["audio_path"], always_2d=True)
                (target / row["audio_path"]).parent.mkdir(parents=True, exist_ok=True)
                sf.write(target / row["audio_path"], data.mean(axis=1), rate, subtype="PCM_16")
                if row["midi_path"]:
                    (target / row["midi_path"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(run / row["midi_path"], target / row["midi_path"])
        for name in LABELS:
            pq.write_table(pa.concat_tables(tables[name]), target / "labels" / f"{name}.parquet")
        stats = {"total_profiles": sum(len(v) for v in splits.values())}
        (target / "splits.json").write_text(json.dumps({**splits, "stats": stats}, indent=2) + "\n")
        (target / "index.json").write_text(json.dumps({"num_samples": len(ids), "sample_ids": ids}, indent=2) + "\n")
        counts[kind] = len(ids)
    return counts


def main() -> int:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("list", type=Path)
    parser.add_argument("--renders", type=Path, default=Path("."), help="where the LIST's RUN_DIRs are relative to")
    args = parser.parse_args()
    picks = []
    for line in args.list.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            run, sample_id = line.split()
            picks.append((args.renders / run, sample_id))
    print(build(args.out, picks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
