#!/bin/sh
# bench/triton_cache.sh save|restore TARBALL [DIR]: keeps Triton's compiled kernels (FLA's) between
# device calls. A device machine starts bare, and FLA's RWKV7Attention compiles its autotune
# candidates for longer than one call allows (bench/mixers_vs_fla.py's RWKV-7 peer never finished
# inside a call on 2026-12-07), so a call that runs out of time still leaves the kernels it built:
#   on the device:  sh bench/triton_cache.sh restore .dev/triton.tar.xz   (if carried)
#                   export TRITON_CACHE_DIR=/tmp/triton-cache; ...run the bench...
#                   sh bench/triton_cache.sh save $OUT/triton.tar.xz      (<= 16 MiB comes back)
#   here:           copy the returned tarball to .dev/ (git-excluded) and carry .dev next call.
# DIR defaults to $TRITON_CACHE_DIR, else /tmp/triton-cache.
set -eu
[ $# -ge 2 ] || { echo "usage: bench/triton_cache.sh save|restore TARBALL [DIR]" >&2; exit 2; }
dir=${3:-${TRITON_CACHE_DIR:-/tmp/triton-cache}}
case "$1" in
  save)
    [ -d "$dir" ] || { echo "triton_cache: $dir: no cache to save" >&2; exit 1; }
    tar -C "$dir" -cf - . | xz -T0 -6 > "$2.tmp" && mv "$2.tmp" "$2"
    echo "triton_cache: saved $dir to $2 ($(du -h "$2" | cut -f1))" ;;
  restore)
    [ -f "$2" ] || { echo "triton_cache: $2: not found (nothing restored)" >&2; exit 0; }
    mkdir -p "$dir" && xz -dc "$2" | tar -C "$dir" -xf -
    echo "triton_cache: restored $2 into $dir" ;;
  *) echo "triton_cache: $1: expected save or restore" >&2; exit 2 ;;
esac
