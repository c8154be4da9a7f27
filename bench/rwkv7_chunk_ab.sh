#!/bin/sh
# bench/rwkv7_chunk_ab.sh [MACRO]: on a GPU machine, from the repository root — A/B of a compile-time
# switch of the chunked RWKV-7 forward (plugins/rwkv7/rwkv7_cuda_chunk.cu; default MACRO
# RWKV7_CHUNK_L2_AHEAD, the L2 prefetch one chunk ahead): builds bench/rwkv7_cuda_bench.cu with
# MACRO=0 and MACRO=1 and tests/ops/rwkv7/test_rwkv7_cuda.cu (MACRO at its default), runs the
# chunk test, then the bench twice per value in alternating order (BENCH_CHUNK_ONLY=1: the "fwd
# CHUNK" lines), then with the CUPTI trace (libgraft_cupti_trace.so from scripts/device-bundle,
# TRACE_LIB=path; libcupti is looked for beside it) the per-launch k_prep / k_scan times of each value. Output to stdout.
set -u
m=${1:-RWKV7_CHUNK_L2_AHEAD}
NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icore/include"
S="plugins/rwkv7/rwkv7_cuda.cu plugins/rwkv7/rwkv7_cuda_chunk.cu"
tmp=$(mktemp -d)
nvidia-smi -L
$NV -Xcompiler -fopenmp tests/ops/rwkv7/test_rwkv7_cuda.cu $S -o "$tmp/t7" &
$NV -D$m=0 bench/rwkv7_cuda_bench.cu $S -o "$tmp/bn0" &
$NV -D$m=1 bench/rwkv7_cuda_bench.cu $S -o "$tmp/bn1" &
wait
[ -x "$tmp/t7" ] && [ -x "$tmp/bn0" ] && [ -x "$tmp/bn1" ] || { echo "rwkv7_chunk_ab: build failed" >&2; exit 1; }
"$tmp/t7" --chunk | tail -n 1
for v in 0 1 0 1; do
  echo "== $m=$v"
  BENCH_CHUNK_ONLY=1 "$tmp/bn$v" | grep "fwd CHUNK  "
done
lib=${TRACE_LIB:-.xfer-bundle/lib/libgraft_cupti_trace.so}
if [ -f "$lib" ]; then
  for v in 0 1; do
    GRAFT_TRACE_OUT="$tmp/trace$v.csv" LD_PRELOAD="$lib" LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}" \
      BENCH_CHUNK_ONLY=1 "$tmp/bn$v" > /dev/null
    python3 - "$tmp/trace$v.csv" "$m=$v" <<'PY'
import csv, sys
rows = sorted((r for r in csv.reader(open(sys.argv[1])) if r and r[0] == 'K'), key=lambda r: int(r[1]))
seq = [('scan' if 'k_scan' in r[5] else 'prep', (int(r[2]) - int(r[1])) / 1e3)
       for r in rows if 'k_scan' in r[5] or 'k_prep' in r[5]]
print(sys.argv[2], 'us per launch, in order (B4x2048, B1x32768, B1x8192):', ' '.join(f"{k}:{d:.0f}" for k, d in seq[::10]))
PY
  done
fi
rm -rf "$tmp"
