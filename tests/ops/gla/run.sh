#!/bin/sh
# tests/ops/gla/run.sh: build and run the CUDA GLA core test on a GPU machine (nvcc only).
# Usage: tests/ops/gla/run.sh [--small]   from the repository root; exits non-zero on failure.
set -e
NVCC=${NVCC:-nvcc}
OUT=${BUILD_DIR:-build-gla-cuda}
mkdir -p "$OUT"
"$NVCC" -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icore/include -Xcompiler -fopenmp \
    tests/ops/gla/test_gla_cuda.cu plugins/gla/gla_cuda.cu -o "$OUT/test_gla_cuda"
"$OUT/test_gla_cuda" "$@"
