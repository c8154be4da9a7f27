#!/bin/sh
# tests/plugins/cuda_standalone.sh OUTDIR: builds, with nvcc and gcc alone (no CMake, none of
# graft's libraries), the gla, softmax and rwkv7 plugins with their CUDA paths, the CUDA-vs-CPU
# conformance program (cuda_standalone.c + cuda_vs_cpu.c), bench/mixers_vs_fla_driver and
# bench/mixers_vs_fla_finite, for a GPU machine that lacks graft's dependencies. Then:
#   OUTDIR/cuda_conformance OUTDIR/libgraft_gla.so tests/plugins/configs/cuda/gla.txt
#   OUTDIR/mixers_vs_fla_driver OUTDIR/libgraft_gla.so gla
#   OUTDIR/mixers_vs_fla_finite OUTDIR/libgraft_rwkv7.so rwkv7 [STEPS]
# NVCCFLAGS adds nvcc flags (a build switch for an A/B against another OUTDIR, e.g.
# NVCCFLAGS=-DGRAFT_GLA_FAST_SIGMOID=1; bench/layer_ab.sh DIR MIXER OTHER_DIR/libgraft_MIXER.so).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-build-cuda-standalone}
arch=${ARCH:-sm_90a}
mkdir -p "$out/obj"
inc="-I$here/core/include -I$here/core/src -I$here/tests/plugins"
nv="nvcc -std=c++17 -O3 -lineinfo -arch=$arch $inc ${NVCCFLAGS:-}" # line tables only (bench/kernel_ncu.sh): the code is the same
case $arch in *90a*) nv="$nv -DSM_HAVE_WGMMA=1" ;; esac
cc="gcc -std=c11 -O2 -fopenmp -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $inc -I/usr/local/cuda/include"
plugin() { # name sources...
  name=$1; shift
  objs=""
  for f in "$@"; do
    o="$out/obj/${name}_$(basename "$f").o"
    case $f in
      *.cu) $nv -Xcompiler -fPIC,-fvisibility=hidden -DGRAFT_PLUGIN_CUDA=1 -c "$here/$f" -o "$o" ;;
      *.c) $cc -fPIC -fvisibility=hidden -DGRAFT_PLUGIN_CUDA=1 -c "$here/$f" -o "$o" ;;
    esac
    objs="$objs $o"
  done
  nvcc -shared -arch=$arch $objs -o "$out/libgraft_$name.so" -lm
}
plugin gla plugins/gla/gla.c plugins/gla/gla_cpu.c plugins/gla/gla_cuda.cu plugins/gla/gla_cuda_layer.cu plugins/gla/gla_cuda_decode.cu &
plugin softmax plugins/softmax/softmax.c plugins/softmax/softmax_cpu.c plugins/softmax/softmax_cuda.cu \
  plugins/softmax/softmax_cuda_fwd_wgmma.cu plugins/softmax/softmax_cuda_layer.cu &
plugin rwkv7 plugins/rwkv7/rwkv7.c plugins/rwkv7/rwkv7_cpu.c plugins/rwkv7/rwkv7_cuda.cu plugins/rwkv7/rwkv7_cuda_chunk.cu \
  plugins/rwkv7/rwkv7_cuda_layer.cu &
$nv -c "$here/bench/mixers_vs_fla_finite.cu" -o "$out/obj/finite.o" &
$nv -c "$here/core/src/cuda/matmul.cu" -o "$out/obj/matmul.o" &
$nv -c "$here/core/src/cuda/skinny.cu" -o "$out/obj/skinny.o" &
$cc -c "$here/tests/plugins/standalone_host.c" -o "$out/obj/standalone_host.o"
$cc -c "$here/tests/plugins/cuda_vs_cpu.c" -o "$out/obj/cuda_vs_cpu.o"
$cc -c "$here/tests/plugins/cuda_standalone.c" -o "$out/obj/cuda_standalone.o"
$cc -c "$here/bench/mixers_vs_fla_driver.c" -o "$out/obj/driver.o"
wait
common="$out/obj/standalone_host.o $out/obj/matmul.o $out/obj/skinny.o -lcublasLt -lcudart -lgomp -ldl -lm"
nvcc -arch=$arch "$out/obj/cuda_standalone.o" "$out/obj/cuda_vs_cpu.o" $common -o "$out/cuda_conformance"
nvcc -arch=$arch "$out/obj/driver.o" $common -o "$out/mixers_vs_fla_driver"
nvcc -arch=$arch "$out/obj/finite.o" $common -o "$out/mixers_vs_fla_finite"
echo "built $out: libgraft_gla.so libgraft_softmax.so libgraft_rwkv7.so cuda_conformance mixers_vs_fla_driver mixers_vs_fla_finite"
