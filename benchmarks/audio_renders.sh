#!/usr/bin/env bash
# usage: benchmarks/audio_renders.sh OUT [specs]
#
# Render the multi-kit corpus the audio checks are calibrated on (docs/audio-checks.md) into OUT, one
# upstream generator run a directory, with ../shared/tools/upstream_renders.sh ($RENDER to override;
# needs $SOUSA_UPSTREAM_SRC, an export of github:zakkeown/SOUSA). Directories already rendered are kept.
# `specs` prints instead the NAME,KIND,FONT=DIR arguments of `audio_calibration.py measure` for OUT.
# About 25 minutes on 2 cores; 32 runs, 2,640 files, 1.3 GB.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 2; }
out=$1 here=$(dirname "$(realpath "$0")")
render=${RENDER:-$here/../../shared/tools/upstream_renders.sh}
sf=${SOUSA_SF2_DIR:-/usr/share/sounds/sf2}
# run, mode, fonts (comma-separated), BANK:PRESET on channel 9, seed, profiles, fixed duration (1) or natural (0);
# then the calibration's kit name and soundfont family.
jobs="
bp-fix drums Black_Pearl_4_LV2 0:0 101 3 1 black_pearl fluidr3
bp-nat drums Black_Pearl_4_LV2 0:0 111 1 0 black_pearl fluidr3
rz-fix drums Red_Zeppelin_4_LV2 0:0 102 3 1 red_zeppelin fluidr3
rz-nat drums Red_Zeppelin_4_LV2 0:0 112 1 0 red_zeppelin fluidr3
fl-std-fix drums FluidR3_GM 128:0 202 3 1 fluidr3_standard fluidr3
fl-std-nat drums FluidR3_GM 128:0 212 1 0 fluidr3_standard fluidr3
fl-room-fix drums FluidR3_GM 128:8 206 3 1 fluidr3_room fluidr3
fl-room-nat drums FluidR3_GM 128:8 216 1 0 fluidr3_room fluidr3
fl-power-fix drums FluidR3_GM 128:16 207 3 1 fluidr3_power fluidr3
fl-power-nat drums FluidR3_GM 128:16 217 1 0 fluidr3_power fluidr3
fl-elec-fix drums FluidR3_GM 128:24 204 3 1 fluidr3_electronic fluidr3
fl-elec-nat drums FluidR3_GM 128:24 214 1 0 fluidr3_electronic fluidr3
fl-808-fix drums FluidR3_GM 128:25 203 3 1 fluidr3_tr808 fluidr3
fl-808-nat drums FluidR3_GM 128:25 213 1 0 fluidr3_tr808 fluidr3
fl-jazz-fix drums FluidR3_GM 128:32 205 3 1 fluidr3_jazz fluidr3
fl-jazz-nat drums FluidR3_GM 128:32 215 1 0 fluidr3_jazz fluidr3
fl-brush-fix drums FluidR3_GM 128:40 201 3 1 fluidr3_brush fluidr3
fl-brush-nat drums FluidR3_GM 128:40 211 1 0 fluidr3_brush fluidr3
fl-orch-fix drums FluidR3_GM 128:48 208 3 1 fluidr3_orchestra fluidr3
fl-orch-nat drums FluidR3_GM 128:48 218 1 0 fluidr3_orchestra fluidr3
tim-std-fix drums TimGM6mb 128:0 501 3 1 timgm6mb_standard timgm6mb
tim-std-nat drums TimGM6mb 128:0 511 1 0 timgm6mb_standard timgm6mb
tim-brush-fix drums TimGM6mb 128:40 502 3 1 timgm6mb_brush timgm6mb
tim-brush-nat drums TimGM6mb 128:40 512 1 0 timgm6mb_brush timgm6mb
tim-808-fix drums TimGM6mb 128:25 503 3 1 timgm6mb_tr808 timgm6mb
tim-808-nat drums TimGM6mb 128:25 513 1 0 timgm6mb_tr808 timgm6mb
opl3-fix drums OPL-3_FM_128M 128:0 401 3 1 opl3_fm opl3
opl3-nat drums OPL-3_FM_128M 128:0 411 1 0 opl3_fm opl3
piano-fix piano Black_Pearl_4_LV2,FluidR3_GM 0:0 301 4 1 piano_fluidr3 fluidr3
piano-nat piano Black_Pearl_4_LV2,FluidR3_GM 0:0 302 2 0 piano_fluidr3 fluidr3
tim-piano-fix piano TimGM6mb 0:0 311 2 1 piano_timgm6mb timgm6mb
opl3-piano-fix piano OPL-3_FM_128M 0:0 312 2 1 piano_opl3 opl3
"
while read -r run mode fonts kit seed profiles fixed name family; do
  [ -n "$run" ] || continue
  if [ "${2:-}" = specs ]; then echo "$name,$mode,$family=$out/$run"; continue; fi
  [ -f "$out/$run/labels/samples.parquet" ] && continue
  extra=(); [ "$fixed" = 1 ] && extra=(--fixed-duration 1.0)
  paths=$(for f in ${fonts//,/ }; do printf '%s ' "$sf/$f.sf2"; done)
  SOUSA_SF2="$paths" SOUSA_DRUM_KIT=$kit "$render" "$out/$run" "$mode" --profiles "$profiles" --tempos 1 \
    --augmentations 1 --seed "$seed" --skip-validation --workers 1 "${extra[@]}"
done <<<"$jobs"
