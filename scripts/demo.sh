#!/usr/bin/env bash
# The main job end to end on a sample dataset this project makes itself:
# install -> sample -> validate -> prepare all three configs -> validate the prepared folder against the
# source -> load each config back with `datasets` and print a summary -> decode one audio row without torch.
# VENV (default .venv) is created when missing. The data goes to a temporary folder, removed at the end;
# DEMO_DIR=path keeps it there instead (the sample in DEMO_DIR/data, the prepared folder in DEMO_DIR/sousa).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ -z "${DEMO_DIR:-}" ]; then
  DEMO_DIR="$(mktemp -d)"
  trap 'rm -rf "$DEMO_DIR"' EXIT
fi
export DEMO_DIR

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e .

"$VENV/bin/sousa-builder" sample "$DEMO_DIR/data" --overwrite
"$VENV/bin/sousa-builder" validate "$DEMO_DIR/data"
"$VENV/bin/sousa-builder" prepare "$DEMO_DIR/data" --out "$DEMO_DIR/sousa"
"$VENV/bin/sousa-builder" validate --prepared "$DEMO_DIR/sousa" --source "$DEMO_DIR/data"

"$VENV/bin/python" - <<'PY'
import os

import datasets

PREPARED = os.path.join(os.environ["DEMO_DIR"], "sousa")

for config in ("audio", "midi_only", "labels_only"):
    ds = datasets.load_dataset(PREPARED, config)
    train = ds["train"].with_format("arrow")
    first = train[0].to_pylist()[0]
    media = {name: f"{len(first[name]['bytes'] if name == 'audio' else first[name]):,} bytes"
             for name in ("midi", "audio") if name in first}
    print(f"{config:<12} rows {dict((s, d.num_rows) for s, d in ds.items())}  "
          f"first: {first['sample_id']} ({len(first['strokes'])} strokes, {len(first['measures'])} measures) {media}")
    print(f"{'':<12} features: {', '.join(f'{k}: {type(v).__name__}' for k, v in ds['train'].features.items() if k in ('skill_tier', 'strokes', 'midi', 'audio'))}")
    print(f"{'':<12} skill_tier of the first row: {ds['train'].features['skill_tier'].int2str(first['skill_tier'])}")

from sousa_builder import decoded

audio = decoded(datasets.load_dataset(PREPARED, "audio", split="train"))[0]["audio"]
print(f"audio decoded without torch: {audio['array'].shape} float32 at {audio['sampling_rate']} Hz")
PY
