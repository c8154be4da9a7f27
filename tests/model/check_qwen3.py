"""tests/model/check_qwen3.py: graft's CPU Qwen3 forward and backward against float64 autograd.

Usage: check_qwen3.py GRAFT_BIN WORKDIR --config CONFIG.json [--B 2 --T 7] [--grads PATTERN,...]

1. `graft init` writes a random checkpoint for CONFIG (fresh seed each run, printed);
2. this script draws fresh random ids and an upstream gradient R = d loss / d logits;
3. `graft forward` computes logits and every parameter gradient (of sum(logits * R));
4. the float64 reference (tests/reference/qwen3_ref.py) does the same with autograd;
5. logits and each gradient must agree with NMSE < 1e-9. Exit status is the verdict.
--grads limits the compared gradients to names containing one of the patterns (for the 0.6B-size
run, where holding every float64 gradient would take tens of GB).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import qwen3_ref  # noqa: E402
import st  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graft")
    ap.add_argument("workdir")
    ap.add_argument("--config", required=True)
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=7)
    ap.add_argument("--grads", default="")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tol", type=float, default=1e-9)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(time.time() * 1000) % 2**31
    print(f"seed {seed} (rerun with --seed {seed})")
    rng = np.random.default_rng(seed)
    os.makedirs(a.workdir, exist_ok=True)
    model = os.path.join(a.workdir, "model")
    shutil.rmtree(model, ignore_errors=True)
    subprocess.run([a.graft, "init", "--config", a.config, "--random", "--seed", str(seed),
                    "--out", model, "--dtype", "f32"], check=True)
    cfgj = json.load(open(os.path.join(model, "config.json")))
    V = cfgj["vocab_size"]
    ids = rng.integers(0, V, size=(a.B, a.T)).astype(np.int32)
    R = rng.standard_normal((a.B, a.T, V)).astype(np.float32)
    inputs = os.path.join(a.workdir, "inputs.safetensors")
    out = os.path.join(a.workdir, "out.safetensors")
    st.save(inputs, {"ids": ids, "dlogits": R})
    cmd = [a.graft, "forward", "--model", model, "--inputs", inputs, "--out", out]
    if a.grads:
        cmd += ["--grads", a.grads]
    else:
        cmd += ["--grads", "all"]
    subprocess.run(cmd, check=True)
    got, _ = st.load(out)

    weights = {}
    for fn in sorted(os.listdir(model)):
        if fn.endswith(".safetensors"):
            t, _ = st.load(os.path.join(model, fn))
            weights.update(t)
    pats = [p for p in a.grads.split(",") if p] if a.grads else []
    p = {}
    for k, v in weights.items():
        t = torch.tensor(v.astype(np.float64))
        if not pats or any(s in k for s in pats):
            t.requires_grad_(True)
        p[k] = t
    cfg = {"n_layer": cfgj["num_hidden_layers"], "n_head": cfgj["num_attention_heads"],
           "n_kv_head": cfgj["num_key_value_heads"], "head_dim": cfgj["head_dim"],
           "norm_eps": cfgj["rms_norm_eps"], "rope_theta": cfgj["rope_theta"],
           "tie": cfgj.get("tie_word_embeddings", False)}
    logits = qwen3_ref.forward(p, torch.tensor(ids.astype(np.int64)), cfg)
    loss = (logits * torch.tensor(R.astype(np.float64))).sum()
    loss.backward()
    failures = 0
    rows = [("logits", st.nmse(got["logits"], logits.detach().numpy()))]
    for k, t in p.items():
        if t.grad is None:
            continue
        key = "grad." + k
        if key not in got:
            print(f"MISSING {key} in graft's output")
            failures += 1
            continue
        rows.append((key, st.nmse(got[key], t.grad.numpy())))
    for name, e in rows:
        bad = not (e < a.tol)
        failures += bad
        print(f"{'FAIL' if bad else 'ok  '} {name:60s} nmse {e:.3e}")
    print(f"{len(rows) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
