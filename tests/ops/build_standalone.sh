#!/bin/sh
# tests/ops/build_standalone.sh OUTDIR: builds test_ops_cuda and bench_cuda_ops with nvcc and gcc
# alone (no CMake, no jansson/openblas/hdf5), for a GPU machine that lacks graft's dependencies.
# ARCH (default sm_90a) picks the GPU architecture.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-build-ops}
arch=${ARCH:-sm_90a}
mkdir -p "$out/obj"
inc="-I$here/core/include -I$here/core/src -I$here/core/src/cpu -I$here/losses"
nv="nvcc -std=c++17 -O3 -arch=$arch -Xcompiler -fopenmp $inc"
cc="gcc -std=c11 -O2 -fopenmp -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $inc"
objs=""
for f in "$here"/core/src/cuda/*.cu; do
  # the backend table needs the core library (host.c); the ops test calls the entry points directly
  [ "$(basename "$f")" = backend_cuda.cu ] && continue
  o="$out/obj/$(basename "$f" .cu).o"
  $nv -c "$f" -o "$o" &
  objs="$objs $o"
done
wait
refs=""
for f in core/src/cpu/embedding.c core/src/cpu/rmsnorm.c core/src/cpu/swiglu.c core/src/adamw.c; do
  o="$out/obj/ref_$(basename "$f" .c).o"; $cc -c "$here/$f" -o "$o"; refs="$refs $o"
done
$cc -c "$here/tests/ops/ref_ce.c" -o "$out/obj/ref_ce.o"
$cc -c "$here/tests/ops/ref_topk_kl.c" -o "$out/obj/ref_topk_kl.o"
refs="$refs $out/obj/ref_ce.o $out/obj/ref_topk_kl.o"
$nv "$here/tests/ops/test_ops_cuda.cu" $objs $refs -o "$out/test_ops_cuda" -lcublasLt -lgomp -lm
$nv "$here/bench/cuda_ops.cu" $objs -o "$out/bench_cuda_ops" -lcublasLt -lgomp -lm
echo "built $out/test_ops_cuda $out/bench_cuda_ops"
