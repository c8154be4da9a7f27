#!/bin/sh
# tests/ops/attention/run.sh: on a GPU machine, builds (nvcc) and runs the CUDA attention test, the
# compute-sanitizer memcheck at the small shapes, and (with --bench) bench/attention_vs_sdpa.py.
# The test runs once per forward kernel (the default, then GRAFT_CUDA_ATTN_WGMMA=0).
#   sh tests/ops/attention/run.sh [--bench] [OUTDIR]     (from the repository root)
set -e
bench=0
if [ "$1" = "--bench" ]; then bench=1; shift; fi
out=${1:-build-attn}
mkdir -p "$out"
NVCC=${NVCC:-nvcc}
ARCH="-gencode=arch=compute_90a,code=sm_90a -DSM_HAVE_WGMMA=1"
SRC="plugins/softmax/softmax_cuda.cu plugins/softmax/softmax_cuda_fwd_wgmma.cu"
if [ ! -x "$out/test_attention_cuda" ]; then
  $NVCC $ARCH -O3 -std=c++17 -Icore/include -Iplugins/softmax -Xcompiler -fopenmp \
    tests/ops/attention/test_attention_cuda.cu $SRC -o "$out/test_attention_cuda"
fi
if [ ! -f "$out/libgraft_attn.so" ]; then
  $NVCC $ARCH -O3 -std=c++17 -Icore/include -shared -Xcompiler -fPIC $SRC -o "$out/libgraft_attn.so"
fi
status=0
"$out/test_attention_cuda" || status=1
# the other forward kernel (GRAFT_CUDA_ATTN_WGMMA=0: mma.sync instead of wgmma + TMA)
for v in 0; do
  echo "== GRAFT_CUDA_ATTN_WGMMA=$v"
  GRAFT_CUDA_ATTN_WGMMA=$v "$out/test_attention_cuda" > "$out/test-wgmma$v.log" 2>&1 || status=1
  grep -E "prefill|FAIL|PASS" "$out/test-wgmma$v.log" | grep -v " dq\| dk\| dv\|deterministic"
done
compute-sanitizer --tool memcheck --error-exitcode 3 "$out/test_attention_cuda" --small > "$out/memcheck.log" 2>&1 || status=1
tail -n 3 "$out/memcheck.log"
if [ $bench = 1 ]; then
  PYTHONUNBUFFERED=1 python3 bench/attention_vs_sdpa.py "$out/libgraft_attn.so" "$out/attention-bench.md" || status=1
fi
exit $status
