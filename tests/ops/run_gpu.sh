#!/bin/sh
# tests/ops/run_gpu.sh [OUTDIR]: on a machine with an NVIDIA GPU, builds the CUDA ops test and bench
# with nvcc alone (tests/ops/build_standalone.sh), runs every case against the CPU reference, runs
# compute-sanitizer memcheck over the cases that cover every kernel path (odd sizes, scalar and
# vector paths, in-place, refusals), and, with BENCH=1, the bench (bench/cuda_ops.cu).
# Exit status: 0 all passed, 1 a failure, 77 no GPU.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build-ops}
sh "$root/tests/ops/build_standalone.sh" "$out" || exit 1
"$out/test_ops_cuda"
rc=$?
[ $rc -eq 77 ] && exit 77
mc_cases=gemm_odd_batched_tt,gemm_odd_batched_nn,gemm_f32_host_service,gemm_k0_and_refusals,embedding_odd
mc_cases=$mc_cases,rmsnorm_C2048,rmsnorm_odd,add_rmsnorm_T1_odd,qk_norm_rope_q16_D128,qk_norm_rope_odd_pos
mc_cases=$mc_cases,qk_norm_rope_T1_D256,swiglu_odd,swiglu_fused_I6144,lmhead_ce_odd,lmhead_topk_odd_T1.5,adamw_clip_3steps
if command -v compute-sanitizer >/dev/null 2>&1; then
  echo "== compute-sanitizer --tool memcheck"
  compute-sanitizer --tool memcheck --error-exitcode 3 "$out/test_ops_cuda" --only "$mc_cases" || rc=1
else
  echo "compute-sanitizer not found: memcheck skipped"
fi
if [ "${BENCH:-0}" = 1 ]; then
  echo "== bench"
  "$out/bench_cuda_ops" || rc=1
fi
exit $rc
