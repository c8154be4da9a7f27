#!/bin/sh
# tests/ops/rwkv7/run.sh: build and run the CUDA RWKV-7 core test on a GPU machine (nvcc only).
# Usage: tests/ops/rwkv7/run.sh [--small | --long | --memcheck]   from the repository root; exits
# non-zero on failure. --memcheck: the --small cases under compute-sanitizer memcheck.
set -e
NVCC=${NVCC:-nvcc}
OUT=${BUILD_DIR:-build-rwkv7-cuda}
mkdir -p "$OUT"
"$NVCC" -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Icore/include -Xcompiler -fopenmp \
    tests/ops/rwkv7/test_rwkv7_cuda.cu plugins/rwkv7/rwkv7_cuda.cu plugins/rwkv7/rwkv7_cuda_chunk.cu -o "$OUT/test_rwkv7_cuda"
if [ "$1" = "--memcheck" ]; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$OUT/test_rwkv7_cuda" --small
else
    "$OUT/test_rwkv7_cuda" "$@"
fi
