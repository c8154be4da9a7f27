#!/bin/bash
# tests/cli/inspect_init.sh GRAFT PYTHON SOURCE_DIR: `graft init` and `graft inspect` on a tiny
# Qwen3 config: successes, every refusal's exit code and message, and st.py reading graft's files.
set -u
GRAFT=$1 PY=$2 SRC=$3
T=$(mktemp -d /tmp/graft_cli_XXXXXX)
fails=0 checks=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect CODE PATTERN CMD...: runs CMD, checks exit code and that stdout+stderr contains PATTERN
expect() {
    local code=$1 pat=$2; shift 2
    checks=$((checks + 1))
    out=$("$@" 2>&1); rc=$?
    case "$out" in *Sanitizer*|*"runtime error"*) fail "$* -> sanitizer report"; echo "$out" | head -20 >&2; return ;; esac
    [ "$rc" = "$code" ] || { fail "$* -> exit $rc, expected $code"; echo "$out" | tail -5 >&2; return; }
    case "$out" in *"$pat"*) ;; *) fail "$* -> output lacks '$pat'"; echo "$out" | tail -5 >&2 ;; esac
}
cfg() { # cfg FILE TIE HIDDEN
    cat > "$1" <<JSON
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": $3,
 "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-06, "vocab_size": 100,
 "rope_theta": 10000, "tie_word_embeddings": $2, "initializer_range": 0.02, "hidden_act": "silu"}
JSON
}
cfg $T/tied.json true 64
cfg $T/untied.json false 64

# ---- help and usage ---------------------------------------------------------------------------
expect 0 "usage: graft inspect" $GRAFT inspect --help
expect 0 "usage: graft init" $GRAFT init --help
expect 2 "missing PATH" $GRAFT inspect
expect 2 "unknown option" $GRAFT inspect --bogus x
expect 2 "missing --out DIR" $GRAFT init --config $T/tied.json --random
expect 2 "--dtype: \"f8\", expected f32 or bf16" $GRAFT init --config $T/tied.json --random --out $T/x --dtype f8
expect 2 "--seed" $GRAFT init --config $T/tied.json --random --out $T/x --seed -1

# ---- init + inspect ---------------------------------------------------------------------------
expect 0 "wrote $T/m32" $GRAFT init --config $T/tied.json --random --seed 3 --out $T/m32 --dtype f32
expect 0 "parameters: total 80512, embedding 6400, non-embedding 74112" $GRAFT inspect $T/m32
expect 0 "24 tensors in 1 file" $GRAFT inspect $T/m32/model.safetensors
expect 0 "parameters (from the config): total 80512" $GRAFT inspect $T/m32/config.json
expect 0 "wrote" $GRAFT init --config $T/tied.json --random --seed 3 --out $T/m16
expect 0 "wrote" $GRAFT init --config $T/untied.json --random --seed 3 --out $T/mu --dtype f32
expect 0 "parameters: total 86912, embedding 12800, non-embedding 74112" $GRAFT inspect $T/mu
expect 0 "wrote" $GRAFT init --config $T/untied.json --random --seed 3 --out $T/ms --dtype f32 --max-shard-size 150000
expect 0 "25 tensors in 3 files" $GRAFT inspect $T/ms
expect 0 "parameters: total 86912" $GRAFT inspect $T/ms/model.safetensors.index.json
ls $T/ms | grep -q '^model-00003-of-00003.safetensors$' || fail "no third shard"
ls -a $T | grep -q 'tmp-' && fail "a tmp dir was left behind"

# ---- st.py reads graft's files; graft reads st.py's ---------------------------------------------
checks=$((checks + 1))
"$PY" - "$SRC" "$T" <<'PYEOF' || fail "python cross-check"
import sys, numpy as np
sys.path.insert(0, sys.argv[1] + "/tests/reference")
import st
T = sys.argv[2]
t32, meta = st.load(T + "/m32/model.safetensors")
assert meta["format"] == "pt", meta
assert len(t32) == 24 and "lm_head.weight" not in t32
assert t32["model.embed_tokens.weight"].shape == (100, 64)
assert t32["model.layers.1.self_attn.k_proj.weight"].shape == (32, 64)
assert t32["model.layers.0.mlp.down_proj.weight"].shape == (64, 128)
assert (t32["model.norm.weight"] == 1).all() and (t32["model.layers.0.self_attn.q_norm.weight"] == 1).all()
w = t32["model.layers.0.mlp.gate_proj.weight"].astype(np.float64)
assert abs(w.mean()) < 0.002 and abs(w.std() - 0.02) < 0.002, (w.mean(), w.std())
# the BF16 file of the same seed = RNE of the F32 values (independent numpy rounding)
t16, _ = st.load(T + "/m16/model.safetensors")
for k, v in t32.items():
    u = v.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    ref = r.astype(np.uint32).view(np.float32)
    assert np.array_equal(t16[k], ref), k
# untied: lm_head present; tensors of one seed are per-name streams
tu, _ = st.load(T + "/mu/model.safetensors")
assert tu["lm_head.weight"].shape == (100, 64)
# a file written by st.py, plus a copy of the tied model with an extra / modified tensor
st.save(T + "/py.safetensors", {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.arange(3, dtype=np.int64)})
import shutil, os
for d in ("extra", "lmcopy", "lmdiff", "noq"):
    os.makedirs(T + "/" + d)
    shutil.copy(T + "/m32/config.json", T + "/" + d)
t = dict(t32); t["model.layers.0.mixer.foo"] = np.zeros(3, np.float32); st.save(T + "/extra/model.safetensors", t)
t = dict(t32); t["lm_head.weight"] = t32["model.embed_tokens.weight"]; st.save(T + "/lmcopy/model.safetensors", t)
t = dict(t32); t["lm_head.weight"] = t32["model.embed_tokens.weight"] + 1; st.save(T + "/lmdiff/model.safetensors", t)
t = dict(t32); del t["model.layers.1.self_attn.q_proj.weight"]; st.save(T + "/noq/model.safetensors", t)
PYEOF
expect 0 "2 tensors in 1 file" $GRAFT inspect $T/py.safetensors
expect 1 "\"model.layers.0.mixer.foo\": unexpected tensor (shape [3])" $GRAFT inspect $T/extra
expect 0 "ok" $GRAFT inspect $T/lmcopy
expect 0 "warning: $T/lmdiff/model.safetensors: \"lm_head.weight\" differs" $GRAFT inspect $T/lmdiff
expect 1 "\"model.layers.1.self_attn.q_proj.weight\": missing, expected a tensor of shape [64, 64]" $GRAFT inspect $T/noq

# ---- refusals ---------------------------------------------------------------------------------
expect 1 "$T/m32: exists, expected a new directory" $GRAFT init --config $T/tied.json --random --out $T/m32
expect 1 "$T/none: does not exist" $GRAFT inspect $T/none
: > $T/x.bin
expect 2 "unknown kind of file" $GRAFT inspect $T/x.bin
cfg $T/bad.json true 0
expect 1 "hidden_size: 0, expected an integer in 1..131072" $GRAFT init --config $T/bad.json --random --out $T/never
[ -e $T/never ] && fail "init left $T/never behind"
expect 1 "hidden_size: 0" $GRAFT inspect $T/bad.json
# a config that does not match the weights
mkdir $T/mismatch && cp $T/m32/model.safetensors $T/mismatch/ && cfg $T/mismatch/config.json true 32
expect 1 "\"model.embed_tokens.weight\": shape [100, 64], expected [100, 32]" $GRAFT inspect $T/mismatch
# untied config over tied weights: lm_head missing
mkdir $T/nolm && cp $T/m32/model.safetensors $T/nolm/ && cp $T/mu/config.json $T/nolm/
expect 1 "\"lm_head.weight\": missing, expected a tensor of shape [100, 64]" $GRAFT inspect $T/nolm
# a truncated file
head -c 1000 $T/m32/model.safetensors > $T/trunc.safetensors
expect 1 "$T/trunc.safetensors @ byte" $GRAFT inspect $T/trunc.safetensors
# a missing shard
rm $T/ms/model-00002-of-00003.safetensors
expect 1 "model-00002-of-00003.safetensors: No such file or directory, expected a readable file (needed for" $GRAFT inspect $T/ms

if [ $fails = 0 ]; then rm -rf $T; echo "cli: $checks checks passed"; exit 0; fi
echo "cli: $fails of $checks checks failed (files kept in $T)" >&2
exit 1
