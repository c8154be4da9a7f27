#!/bin/sh
# bench/prefill_ab.sh VAR VALUES [T] : an A/B of a run-time switch on graft's prefill, in one call
# on the GPU machine (repository root, the bundle of scripts/device-bundle unpacked in
# ${BUNDLE:-.xfer-bundle}): graft_bench_prefill (B = 1, time to first token, median of 5 after 2
# warm-ups) with the environment variable VAR set to each comma-separated value of VALUES in turn,
# the list run twice in alternating order (A B A B... then ...B A B A) so drift shows, on one
# Qwen3-1.7B-shaped random checkpoint (HF's init on the GPU, as bench/qwen3_vs_hf.py). T: token
# counts (default 4096,16384). Prints one line per run and a table last; PROFILE=1 also writes a
# CUPTI kernel timeline of one 16384-token forward per value (bench/trace_summary.py) to $OUT.
#   sh bench/prefill_ab.sh GRAFT_CUDA_QKV_ROWS 0,1
set -eu
if [ $# -lt 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
  echo "usage: sh bench/prefill_ab.sh VAR VALUES [T]   e.g. GRAFT_CUDA_QKV_ROWS 0,1 16384" >&2
  exit 2
fi
var=$1 vals=$2 Ts=${3:-4096,16384}
[ -x "${BUNDLE:-$(pwd)/.xfer-bundle}/bin/graft_bench_prefill" ] || {
  echo "prefill_ab: ${BUNDLE:-$(pwd)/.xfer-bundle}/bin/graft_bench_prefill missing: unpack the bundle of scripts/device-bundle first" >&2
  exit 1
}
root=$(pwd)
bundle=${BUNDLE:-$root/.xfer-bundle}
out=${OUT:-/tmp/prefill-ab}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export GRAFT_PLUGIN_PATH="$bundle/plugins"
ck=${CKPT:-/tmp/prefill-ab-ckpt}
if [ ! -f "$ck/config.json" ]; then
  mkdir -p "$ck.cfg" && cp bench/configs/qwen3-1.7b.json "$ck.cfg/config.json"
  python3 -c "import sys, torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(1)
with torch.device('cuda'):
    m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(sys.argv[1]), dtype=torch.bfloat16)
m.save_pretrained(sys.argv[2])" "$ck.cfg" "$ck"
fi
rev=$(echo "$vals" | tr ',' '\n' | tac | paste -sd, -)
: > "$out/prefill_ab.jsonl"
for v in $(echo "$vals,$rev" | tr ',' ' '); do
  env "$var=$v" "$bundle/bin/graft_bench_prefill" --model "$ck" --device cuda --T "$Ts" --reps 5 --warmup 2 |
    sed "s/^{/{\"$var\": \"$v\", /" | tee -a "$out/prefill_ab.jsonl"
done
if [ "${PROFILE:-0}" = 1 ] && [ -f "$bundle/lib/libgraft_cupti_trace.so" ]; then
  for v in $(echo "$vals" | tr ',' ' '); do
    env "$var=$v" GRAFT_TRACE_OUT="$out/trace-$v.csv" LD_PRELOAD="$bundle/lib/libgraft_cupti_trace.so" \
      "$bundle/bin/graft_bench_prefill" --model "$ck" --device cuda --T 16384 --reps 1 --warmup 1 > /dev/null
    echo "== timeline of one 16384-token forward, $var=$v"
    python3 bench/trace_summary.py "$out/trace-$v.csv" --from embedding --skip 1 --until embedding |
      tee "$out/trace-$v.txt" | head -30
    rm -f "$out/trace-$v.csv"
  done
fi
python3 - "$out/prefill_ab.jsonl" "$var" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
var = sys.argv[2]
t = collections.defaultdict(list)
for r in rows:
    t[(r[var], r["T"])].append(r["ttft_ms_median"])
print(f"\n| {var} | T | TTFT ms (each run's median of 5) |\n|---|---|---|")
for (v, T), ms in t.items():
    print(f"| {v} | {T} | {', '.join(f'{m:.2f}' for m in ms)} |")
PY
