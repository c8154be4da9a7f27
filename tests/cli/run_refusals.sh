#!/bin/bash
# tests/cli/run_refusals.sh GRAFT SOURCE_DIR: `graft run` refuses what a user can get wrong, with
# the file (and recipe position) at fault, exit code 1 (2 for bad usage), and no output left behind.
set -u
GRAFT=$1 SRC=$2
T=$(mktemp -d /tmp/graft_run_XXXXXX)
fails=0 checks=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
expect() { # expect CODE PATTERN CMD...
    local code=$1 pat=$2; shift 2
    checks=$((checks + 1))
    out=$("$@" 2>&1); rc=$?
    case "$out" in *Sanitizer*|*"runtime error"*) fail "$* -> sanitizer report"; echo "$out" | head -20 >&2; return ;; esac
    [ "$rc" = "$code" ] || { fail "$* -> exit $rc, expected $code"; echo "$out" | tail -5 >&2; return; }
    case "$out" in *"$pat"*) ;; *) fail "$* -> output lacks '$pat'"; echo "$out" | tail -5 >&2 ;; esac
}
# a tiny token shard: graft tokenize on a few lines of text with the demo tokenizer
printf 'In the beginning God created the heaven and the earth.\n%.0s' $(seq 1 200) > $T/text.txt
$GRAFT tokenize --tokenizer $SRC/data/demo-tokenizer/tokenizer.json --out $T/shards $T/text.txt >/dev/null 2>&1 ||
    fail "tokenize"
recipe() { # recipe FILE EXTRA_TOP STAGES
    cat > "$1" <<YAML
model: {config: $SRC/recipes/models/e2e-tiny.json, seed: 1}
tokenizer: $SRC/data/demo-tokenizer/tokenizer.json
data: {train: $T/shards/manifest.json, heldout: 0.1}
run_log: $T/out/run.h5
$2
stages:
$3
YAML
}
PRE='  - {kind: pretrain, steps: 2, batch: 1, seq_len: 8, lr: 1.0e-3, out: '$T'/out/m}'

expect 2 "usage: graft run" $GRAFT run
expect 0 "usage: graft run" $GRAFT run --help
expect 2 "unknown option" $GRAFT run x.yaml --bogus
expect 2 "--stage \"-1\"" $GRAFT run x.yaml --stage -1
expect 2 "exclude each other" $GRAFT run x.yaml --stage 1 --resume
expect 1 "$T/missing.yaml" $GRAFT run $T/missing.yaml

recipe $T/ok.yaml "" "$PRE"
expect 0 "OK: 1 stage(s)" $GRAFT run $T/ok.yaml --check
# every stage runs on CUDA (Stage 0 too); without a GPU (CI) opening the device is refused instead
S0='  - {kind: stage0, layers: all, mixers: {gla: {num_heads: 4}}, steps: 2, batch: 1, seq_len: 8, lr: 1.0e-3, out: '$T'/out/s0}'
if ! nvidia-smi -L >/dev/null 2>&1; then
    recipe $T/cuda1.yaml "device: cuda:0" "$PRE
$S0"
    checks=$((checks + 1))
    out=$($GRAFT run $T/cuda1.yaml --check 2>&1); rc=$?
    case "$out" in
    *"no CUDA device is available"*|*"built without CUDA"*) [ $rc = 1 ] || fail "pretrain + stage0 on cuda:0 -> exit $rc" ;;
    *) fail "pretrain + stage0 on cuda:0 without a GPU -> $out" ;;
    esac
fi
# graft forward --device: a bad spelling is named; without a GPU (CI) the refusal says so
expect 1 "--device: device \"gpu\", expected cpu, cuda or cuda:N" $GRAFT forward --model $T/none --inputs $T/x --out $T/y --device gpu
# (a build without nvcc, like the sanitizer build, says that instead)
if ! nvidia-smi -L >/dev/null 2>&1; then
    for d in cuda:0 cuda:3; do
        checks=$((checks + 1))
        out=$($GRAFT forward --model $T/none --inputs $T/x --out $T/y --device $d 2>&1); rc=$?
        case "$out" in
        *"$d: no CUDA device is available"*|*"$d: this graft was built without CUDA"*) [ $rc = 1 ] || fail "--device $d -> exit $rc" ;;
        *) fail "--device $d -> $out" ;;
        esac
    done
fi
recipe $T/nodata.yaml "" "$PRE"
sed -i "s#$T/shards/manifest.json#$T/nope/manifest.json#" $T/nodata.yaml
expect 1 "$T/nope/manifest.json" $GRAFT run $T/nodata.yaml --check
recipe $T/heads.yaml "" '  - kind: stage0
    layers: all
    mixers: {gla: {num_heads: 5}}
    steps: 1
    batch: 1
    seq_len: 8
    lr: 1.0e-3'
expect 1 "num_heads" $GRAFT run $T/heads.yaml --check
expect 1 "heads.yaml" $GRAFT run $T/heads.yaml --check
recipe $T/layer.yaml "" '  - kind: stage0
    layers: [0-7]
    mixers: {gla: {}}
    steps: 1
    batch: 1
    seq_len: 8
    lr: 1.0e-3'
expect 1 "layer.yaml:" $GRAFT run $T/layer.yaml --check
expect 1 "expected layers in 0..2 (0-based; the model has 3 layers)" $GRAFT run $T/layer.yaml --check
recipe $T/mixer.yaml "" '  - kind: stage0
    layers: all
    mixers: {mamba9: {}}
    steps: 1
    batch: 1
    seq_len: 8
    lr: 1.0e-3'
expect 1 "mamba9" $GRAFT run $T/mixer.yaml --check
recipe $T/held.yaml "" "$PRE"
sed -i "s#heldout: 0.1#heldout: [$T/shards/manifest.json]#" $T/held.yaml
expect 0 "OK: 1 stage(s)" $GRAFT run $T/held.yaml --check
sed -i "s#heldout: \[$T/shards/manifest.json\]#heldout: [$T/none.tok]#" $T/held.yaml
expect 1 "$T/none.tok" $GRAFT run $T/held.yaml --check
recipe $T/bench.yaml "" '  - {kind: bench, contexts: [8, 16], batch: [1, 2], gen_tokens: 3}'
expect 0 "OK: 1 stage(s)" $GRAFT run $T/bench.yaml --check
recipe $T/benchpath.yaml "" '  - {kind: bench, contexts: [16], models: [control, '$T'/no-model]}'
expect 1 "$T/no-model: no model.safetensors" $GRAFT run $T/benchpath.yaml --check
recipe $T/benchrep.yaml "" '  - {kind: bench, contexts: [16], repeat: 0}'
expect 1 "repeat" $GRAFT run $T/benchrep.yaml --check
recipe $T/benchhyb.yaml "" '  - {kind: bench, contexts: [16], models: [control, hybrid]}'
expect 1 "a stage1 stage before this one" $GRAFT run $T/benchhyb.yaml --check
recipe $T/spec.yaml "" '  - kind: stage1
    spec: '$T'/no-spec.yaml
    phases: [{steps: 1, batch: 1, seq_len: 8}]
    lr: 1.0e-3'
expect 1 "$T/no-spec.yaml" $GRAFT run $T/spec.yaml
[ -e $T/out/m ] && fail "a refused run left $T/out/m behind"
expect 1 "--stage 5: the recipe has stages 0..0" $GRAFT run $T/ok.yaml --stage 5

# a real (tiny) run, then --resume with everything done, then one stage alone
expect 0 "== summary" $GRAFT run $T/ok.yaml
expect 0 "nothing to resume" $GRAFT run $T/ok.yaml --resume
expect 0 "(continued)" $GRAFT run $T/ok.yaml --stage 0
# the bench stage alone (control only): a row per (context, batch), no speedup without a hybrid
expect 0 "bench: control only" $GRAFT run $T/bench.yaml
expect 0 "control                       16     2" $GRAFT run $T/bench.yaml
rm -rf "$T"
echo "run_refusals: $checks checks, $fails failure(s)"
[ $fails = 0 ]
