#!/bin/sh
# bench/kernel_ncu.sh DIR MIXER PASS:T KERNEL [OUTDIR]: on a GPU machine with Nsight Compute, from the
# repository root. Profiles one launch (the fourth, after warm-up) of the kernels whose name matches
# the regex KERNEL while DIR/mixers_vs_fla_driver runs the layer MIXER at PASS:T (e.g. fwd:32768).
# DIR: tests/plugins/cuda_standalone.sh's output, whose kernels carry line tables (-lineinfo), so the
# stall reasons can be read by CUDA source line.
# Writes OUTDIR (default $OUT, else /tmp) /ncu_KERNEL.txt: speed of light, occupancy, warp states
# and scheduler statistics; /ncu_KERNEL_src.csv: per source line, the sampled warp stalls (ncu's
# source page; empty where this ncu cannot print it). Prints the lines that say where time goes.
# Environment settings (e.g. GRAFT_GLA_FWD_2CTA=0) pass through to the driver.
set -u
[ $# -ge 4 ] || { echo "usage: bench/kernel_ncu.sh DIR MIXER PASS:T KERNEL [OUTDIR]" >&2; exit 2; }
dir=$1 mixer=$2 shape=$3 kern=$4 out=${5:-${OUT:-/tmp}}
plugin=$dir/libgraft_$mixer.so
[ -f "$plugin" ] && [ -x "$dir/mixers_vs_fla_driver" ] ||
  { echo "kernel_ncu: $plugin or $dir/mixers_vs_fla_driver missing (build with tests/plugins/cuda_standalone.sh)" >&2; exit 2; }
command -v ncu > /dev/null || { echo "kernel_ncu: ncu not found (Nsight Compute)" >&2; exit 2; }
mkdir -p "$out" || exit 1
name=$(echo "$kern" | tr -c 'A-Za-z0-9_\n' '_')
rep=$out/ncu_$name
rm -f "$rep.ncu-rep"
ncu --kernel-name "regex:$kern" --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section SourceCounters --import-source yes -o "$rep" \
    "$dir/mixers_vs_fla_driver" "$plugin" "$mixer" "$shape" > "$rep.log" 2>&1 ||
  { echo "kernel_ncu: ncu failed (last lines of $rep.log):" >&2; tail -n 5 "$rep.log" >&2; rm -f "$rep.ncu-rep"; exit 1; }
ncu --import "$rep.ncu-rep" --page details > "$rep.txt" 2>&1
ncu --import "$rep.ncu-rep" --page source --csv --print-source cuda > "$rep"_src.csv 2>/dev/null || : > "$rep"_src.csv
grep -E "Duration|Registers Per|Achieved Occupancy|Active Warps Per|No Eligible|Issued Warp Per|Warp Cycles Per Issued|Stall|DRAM Throughput|Compute \(SM\)" "$rep.txt" | head -n 30
echo "kernel_ncu: $rep.txt, ${rep}_src.csv ($(wc -l < "${rep}_src.csv") lines), $rep.ncu-rep"
