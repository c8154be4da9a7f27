#!/bin/sh
# bench/gla_chunk_ab.sh: the GLA chunk kernels v1 against v2 (plugins/gla/gla_cuda.cu) on a GPU
# machine, nvcc only, from the repository root, in one command: correctness first, then time.
#   GRAFT_GLA_CHUNK_V1=1  the v1 forward (the baseline)
#   (unset)               the v2 forward (the default); the backward is v1's either way
# 1. tests/ops/gla/test_gla_cuda (the chunk core vs the fp64 CPU reference: every shape, gate dtype,
#    segment count and state path it covers) under each setting;
# 2. bench/gla_cuda_bench (the chunk core alone, beside its byte and FLOP floors), the settings in
#    turn, twice, so drift between runs shows.
# The plugin conformance on CUDA (scripts/gpu-verify plugins) and the layer against FLA
# (bench/mixers_vs_fla.py) take the plugin build; run them as those scripts say.
# Output in $OUT (default ./gla-ab-out): test.<setting>.log, core.<setting>.<i>.log. Exit status 0
# when every test passed.
set -u
out=${OUT:-$(pwd)/gla-ab-out}
bld=${BUILD_DIR:-/tmp/gla-ab}
mkdir -p "$out" "$bld"
nv="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icore/include"
$nv -Xcompiler -fopenmp tests/ops/gla/test_gla_cuda.cu plugins/gla/gla_cuda.cu -o "$bld/test_gla_cuda" &
$nv bench/gla_cuda_bench.cu plugins/gla/gla_cuda.cu -o "$bld/gla_cuda_bench" &
wait
[ -x "$bld/test_gla_cuda" ] && [ -x "$bld/gla_cuda_bench" ] || { echo "gla_chunk_ab: build failed" >&2; exit 1; }
fail=0
run() { # run SETTING CMD...: CMD under SETTING (v1 | default)
  case $1 in
    v1) shift; env GRAFT_GLA_CHUNK_V1=1 "$@" ;;
    *) shift; env -u GRAFT_GLA_CHUNK_V1 "$@" ;;
  esac
}
for v in v1 default; do
  if run $v "$bld/test_gla_cuda" > "$out/test.$v.log" 2>&1; then echo "PASS test_gla_cuda ($v)"
  else echo "FAIL test_gla_cuda ($v): $out/test.$v.log"; tail -5 "$out/test.$v.log"; fail=1; fi
done
for i in 1 2; do
  for v in v1 default; do
    run $v "$bld/gla_cuda_bench" > "$out/core.$v.$i.log" 2>&1
    grep graft "$out/core.$v.$i.log" | sed "s/^/$v.$i /"
  done
done
exit $fail
