#!/bin/bash
# bench/generate_cpu.sh [BUILD_DIR] [OUT_DIR]: the generation benchmark on the CPU, control vs hybrids
# timed in one process (graft bench, core/src/bench.h), for two random-weight shapes:
#   demo-tiny   recipes/models/demo-tiny.json (4 layers x 128), contexts 64..1024, batch 1 and 4
#   cpu-512x8   bench/models/cpu-512x8.json (8 layers x 512, GQA 8/4 heads of 64), contexts 128..2048
# Hybrids: bench/models/*-{hybrid,gla-half,rwkv7-half,gla-all}.yaml (random mixer init: speed only).
# Prints the tables and speedups, writes OUT_DIR/<shape>.h5 and the plots (tools/plot_run.py).
# bench/results/generate-cpu-*.md records a run. Takes about 25 minutes on 2 cores.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
OUT=${2:-$SRC/runs/bench-cpu}
GRAFT=$BUILD/bin/graft
export GRAFT_PLUGIN_PATH=${GRAFT_PLUGIN_PATH:-$BUILD/plugins}
mkdir -p "$OUT"
echo "# $(date -u +%F) $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
$GRAFT bench --config "$SRC/recipes/models/demo-tiny.json" \
    --spec "$SRC/bench/models/demo-tiny-hybrid.yaml" --spec "$SRC/bench/models/demo-tiny-gla-all.yaml" \
    --contexts 64,256,1024 --batch 1,4 --gen-tokens 64 --repeat 3 --run-log "$OUT/demo-tiny.h5"
$GRAFT bench --config "$SRC/bench/models/cpu-512x8.json" \
    --spec "$SRC/bench/models/cpu-512x8-gla-half.yaml" --spec "$SRC/bench/models/cpu-512x8-rwkv7-half.yaml" \
    --spec "$SRC/bench/models/cpu-512x8-gla-all.yaml" \
    --contexts 128,512,2048 --batch 1,4 --gen-tokens 32 --repeat 3 --run-log "$OUT/cpu-512x8.h5"
for f in demo-tiny cpu-512x8; do /usr/bin/python3 "$SRC/tools/plot_run.py" "$OUT/$f.h5" "$OUT/plots-$f"; done
