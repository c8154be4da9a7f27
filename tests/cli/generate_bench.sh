#!/bin/bash
# tests/cli/generate_bench.sh GRAFT SOURCE_DIR: `graft generate` and `graft bench` as a user runs
# them: a batch of prompts of different lengths on a plain Qwen3 and on a hybrid directory (the
# output of `graft bench`'s spec grafting is not written, so the hybrid comes from a tiny `graft run`),
# and every refusal with its message and exit code (1 the work failed, 2 bad usage).
set -u
GRAFT=$1 SRC=$2
T=$(mktemp -d /tmp/graft_gen_XXXXXX)
TOK=$SRC/data/demo-tokenizer/tokenizer.json
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
$GRAFT init --config $SRC/recipes/models/e2e-tiny.json --random --seed 3 --dtype f32 --out $T/m >/dev/null 2>&1 || fail "init"

# ---- graft generate ----
expect 2 "usage: graft generate" $GRAFT generate
expect 0 "usage: graft generate" $GRAFT generate --help
expect 2 "missing --prompt" $GRAFT generate --model $T/m
expect 2 "missing --model" $GRAFT generate --prompt hi
expect 2 "unknown option \"--bogus\"" $GRAFT generate --model $T/m --prompt hi --bogus 1
expect 2 "--max-new \"0\": expected an integer >= 1" $GRAFT generate --model $T/m --prompt hi --max-new 0
expect 2 "--temperature 0: expected > 0" $GRAFT generate --model $T/m --prompt hi --temperature 0
expect 2 "--top-p 1.5: expected in (0, 1]" $GRAFT generate --model $T/m --prompt hi --top-p 1.5
expect 2 "--top-k \"-1\"" $GRAFT generate --model $T/m --prompt hi --top-k -1
expect 2 "--prefill-chunk \"-1\": expected an integer >= 0" $GRAFT generate --model $T/m --prompt hi --prefill-chunk -1
expect 2 "exclude each other" $GRAFT generate --model $T/m --prompt hi --greedy --top-k 5
expect 2 "needs a value" $GRAFT generate --model $T/m --prompt
expect 1 "$T/nope" $GRAFT generate --model $T/nope --tokenizer $TOK --prompt hi
expect 1 "$T/m" $GRAFT generate --model $T/m --prompt hi            # no tokenizer in the model dir
expect 1 "$T/no.json" $GRAFT generate --model $T/m --tokenizer $T/no.json --prompt hi
expect 1 "--prompt 2 (\"\"): encodes to no tokens" $GRAFT generate --model $T/m --tokenizer $TOK --prompt hi --prompt ""
# a batch of three prompts of different lengths, greedy and sampled, fixed length
expect 0 "[2] In the beginning God created|" $GRAFT generate --model $T/m --tokenizer $TOK --prompt "The" \
    --prompt "And God said" --prompt "In the beginning God created" --max-new 6 --fixed-length
expect 0 "3 sequence(s), 18 new tokens" $GRAFT generate --model $T/m --tokenizer $TOK --prompt "The" \
    --prompt "And God said" --prompt "In the beginning God created" --max-new 6 --fixed-length
expect 0 "[1] And God said|" $GRAFT generate --model $T/m --tokenizer $TOK --prompt "The" --prompt "And God said" \
    --max-new 5 --temperature 0.8 --top-k 20 --top-p 0.9 --seed 7 --threads 1
# the first prompt alone continues the same way as in the batch (greedy)
a=$($GRAFT generate --model $T/m --tokenizer $TOK --prompt "And God said" --prompt "The" --max-new 6 --fixed-length 2>/dev/null | head -1)
b=$($GRAFT generate --model $T/m --tokenizer $TOK --prompt "And God said" --max-new 6 --fixed-length 2>/dev/null)
checks=$((checks + 1)); [ -n "$a" ] && [ "$a" = "$b" ] || fail "batch vs alone: '$a' vs '$b'"
# a prefill in chunks of 2 tokens continues the prompts as one call does (greedy)
a=$($GRAFT generate --model $T/m --tokenizer $TOK --prompt "The" --prompt "In the beginning God created" --max-new 6 \
    --fixed-length 2>/dev/null)
b=$($GRAFT generate --model $T/m --tokenizer $TOK --prompt "The" --prompt "In the beginning God created" --max-new 6 \
    --fixed-length --prefill-chunk 2 2>/dev/null)
checks=$((checks + 1)); [ -n "$a" ] && [ "$a" = "$b" ] || fail "prefill chunk 2 vs one call: '$a' vs '$b'"

# ---- graft bench ----
SPEC=$T/hyb.yaml
cat > $SPEC <<YAML
format: graft-hybrid-spec/1
n_layer: 3
layer_types: ["gla", "full_attention", "rwkv7"]
mixers:
  "gla": {"num_heads": "4"}
  "rwkv7": {"head_dim": "16", "decay_low_rank_dim": "8", "gate_low_rank_dim": "8", "a_low_rank_dim": "8", "v_low_rank_dim": "4"}
YAML
sed 's/n_layer: 3/n_layer: 4/; s/"rwkv7"\]/"rwkv7", "gla"]/' $SPEC > $T/four.yaml
sed 's/num_heads": "4"/num_heads": "5"/' $SPEC > $T/heads.yaml
expect 2 "usage: graft bench" $GRAFT bench
expect 0 "usage: graft bench" $GRAFT bench --help
expect 2 "missing --contexts" $GRAFT bench --model $T/m
expect 2 "none was given" $GRAFT bench --contexts 8
expect 2 "not both" $GRAFT bench --contexts 8 --model $T/m --config $SRC/recipes/models/e2e-tiny.json
expect 2 "--spec goes with --config" $GRAFT bench --contexts 8 --model $T/m --spec $SPEC
expect 2 "--contexts \"0\": expected an integer >= 1" $GRAFT bench --contexts 8,0 --model $T/m
expect 2 "--batch \"x\"" $GRAFT bench --contexts 8 --batch x --model $T/m
expect 2 "--prefill-chunk \"-2\": expected an integer >= -1" $GRAFT bench --contexts 8 --prefill-chunk -2 --model $T/m
expect 1 "--device: device \"gpu\", expected cpu, cuda or cuda:N" $GRAFT bench --contexts 8 --model $T/m --device gpu
expect 1 "--device: device \"cuda:x\", expected cpu, cuda or cuda:N" $GRAFT generate --model $T/m --prompt hi --device cuda:x
expect 1 "$T/nope" $GRAFT bench --contexts 8 --model $T/m --model $T/nope
expect 1 "$T/four.yaml: n_layer 4, but" $GRAFT bench --contexts 8 --config $SRC/recipes/models/e2e-tiny.json --spec $T/four.yaml
expect 1 "num_heads" $GRAFT bench --contexts 8 --config $SRC/recipes/models/e2e-tiny.json --spec $T/heads.yaml
expect 0 "hyb vs control at context 16, batch 2: TTFT" $GRAFT bench --contexts 8,16 --batch 1,2 --gen-tokens 3 \
    --repeat 2 --config $SRC/recipes/models/e2e-tiny.json --spec $SPEC --run-log $T/bench.h5
[ -s $T/bench.h5 ] || fail "no run log written"
expect 0 "m vs $T/m" $GRAFT bench --contexts 8 --gen-tokens 2 --model $T/m --model $T/m
# the chunk column: 3 tokens per call at context 8, one call ("-") at context 2
expect 0 "      8     1      3 " $GRAFT bench --contexts 2,8 --gen-tokens 2 --prefill-chunk 3 --model $T/m
expect 0 "      2     1      - " $GRAFT bench --contexts 2,8 --gen-tokens 2 --prefill-chunk 3 --model $T/m
rm -rf "$T"
echo "generate_bench: $checks checks, $fails failure(s)"
[ $fails = 0 ]
