"""tests/e2e/test_pipeline.py GRAFT SRC WORK: the whole pipeline (pretrain, stage0, select,
stage1, eval, bench) on a toy model, its run log read with h5py while graft is still writing it (SWMR)
and after; `graft run --check` first; the summary printed; plots drawn."""
import os
import subprocess
import sys
import time

import h5py
import numpy as np

from e2e_util import Checks, graft_env, start, text, write_recipe

graft, src, work = start(sys.argv)
check = Checks()


stages = """  - kind: pretrain
    steps: 150
    batch: 4
    seq_len: 32
    lr: 3.0e-3
    warmup: 5
    eval_every: 50
    eval_batches: 2
    checkpoint_every: 50
    out: @OUT@/teacher
  - kind: stage0
    layers: all
    mixers:
      gla: {num_heads: 4}
      rwkv7: {head_dim: 16, decay_low_rank_dim: 8, gate_low_rank_dim: 8, a_low_rank_dim: 8, v_low_rank_dim: 4}
    train: [mixer]
    steps: 30
    batch: 4
    seq_len: 32
    lr: 2.0e-3
    warmup: 3
    eval_every: 10
    eval_batches: 2
    out: @OUT@/stage0
  - kind: select
    policy: count
    count: 1
    out: @OUT@/hybrid.yaml
  - kind: stage1
    phases: [{steps: 20, batch: 4, seq_len: 32}, {steps: 10, batch: 2, seq_len: 64}]
    lr: 2.0e-3
    warmup: 2
    eval_batches: 4
    checkpoint_every: 10
    out: @OUT@/hybrid
  - kind: eval
    models: [teacher, control, hybrid]
    heldout_batches: 2
    batch: 2
    seq_len: 32
    generate: {prompts: ["In the beginning", "graft"], max_new_tokens: 8, greedy: true}
  - kind: bench
    contexts: [8, 32]
    batch: [1, 3]
    gen_tokens: 4
    prefill_chunk: 16
"""
recipe = write_recipe(src, work, "run", stages)
chk = subprocess.run([graft, "run", recipe, "--check"], capture_output=True, text=True)
check(chk.returncode == 0 and "OK" in chk.stdout, f"graft run --check: {chk.stdout.strip()} {chk.stderr.strip()}")
check(not os.path.exists(os.path.join(work, "run")), "--check wrote nothing")

log = os.path.join(work, "run", "run.h5")
proc = subprocess.Popen([graft, "run", recipe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        env=graft_env())
live_rows, live_reads = 0, 0
while proc.poll() is None:
    try:
        with h5py.File(log, "r", libver="latest", swmr=True) as f:
            if "stages" in f:
                for g in f["stages"].values():
                    if "train" in g:
                        g["train"].refresh()
                        live_rows = max(live_rows, g["train"].shape[0])
                live_reads += 1
    except (OSError, KeyError, RuntimeError):
        pass  # the file is created, or between SWMR sessions (docs/runlog.md): retry
    time.sleep(0.02)
out = proc.stdout.read()
print(out)
check(proc.returncode == 0, "graft run exit status 0")
check(live_reads > 0 and live_rows > 0, f"h5py read the log while graft ran: {live_reads} reads, up to {live_rows} train rows")

with h5py.File(log, "r", swmr=True) as f:
    names = sorted(f["stages"].keys())
    check(names == ["0_pretrain", "1_stage0", "2_select", "3_stage1", "4_eval", "5_bench"], f"stage groups {names}")
    for n in names:
        st = f["stages"][n].attrs["status"]
        st = text(st)
        check(st == "done", f"{n} status {st}")
    tr = f["stages/0_pretrain/train"][:]
    check(len(tr) == 150 and list(tr["step"]) == list(range(1, 151)), "pretrain: 150 train rows, steps 1..150")
    check(tr["loss"][-10:].mean() < tr["loss"][:10].mean() - 0.5, f"pretrain loss falls {tr['loss'][:10].mean():.3f} -> {tr['loss'][-10:].mean():.3f}")
    check(bool(np.all(np.diff(tr["tokens"]) == 128)), "train rows: tokens cumulative")
    res = f["stages/1_stage0/stage0_results"][:]
    check(len(res) == 6, f"stage0: 6 results ({len(res)})")
    check(bool(np.all(np.isfinite(res["heldout_nloss"]) & (res["heldout_nloss"] > 0))), "stage0: finite positive normalized losses")
    pairs = f["stages/1_stage0/stage0_pairs"][:]
    ev = pairs[np.isfinite(pairs["heldout_nloss"])]
    check(len(ev) == 6 * 3, f"stage0: held-out evaluations at steps 10, 20, 30 for each pair ({len(ev)})")
    spec = f["stages/2_select/hybrid_spec"][()]
    spec = text(spec)
    check("graft-hybrid-spec/1" in spec, "select: hybrid spec stored in the log")
    e1 = f["stages/3_stage1/eval"][:]
    hyb = e1[(e1["model"] == b"hybrid") & (e1["metric"] == b"ppl")]
    at0, end = hyb[hyb["step"] == 0]["value"], hyb[hyb["step"] == 30]["value"]
    check(len(at0) == 1 and len(end) == 1 and end[0] < at0[0], f"stage1: hybrid ppl after ({end}) < at assembly ({at0})")
    s1 = f["stages/3_stage1/train"][:]
    check(len(s1) == 30 and bool(np.all(np.isfinite(s1["kl"]))), "stage1: 30 rows with a finite KL part")
    ev = f["stages/4_eval/eval"][:]
    models = sorted({m.decode() for m in ev["model"]})
    check(models == ["control", "hybrid", "teacher"], f"eval models {models}")
    gen = f["stages/4_eval/generations"][:]
    check(len(gen) == 6, f"6 generations ({len(gen)})")
    be = f["stages/5_bench/bench"][:]
    combos = sorted((m.decode(), int(c), int(b)) for m, c, b in zip(be["model"], be["context"], be["batch"]))
    want = sorted((m, int(c), int(b)) for m in ("control", "hybrid") for c in set(be["context"]) for b in set(be["batch"]))
    check(len(be) == 8 and combos == want and len(set(be["context"])) == 2 and len(set(be["batch"])) == 2,
          f"bench: 2 contexts x 2 batches x (control, hybrid) rows ({len(be)})")
    check(bool(np.all((be["ttft_ms"] > 0) & (be["decode_tok_s"] > 0) & (be["state_bytes"] > 0))),
          "bench: positive TTFT, decode tokens/s, state bytes")
    check(bool(np.all(be["prefill_chunk"] == np.where(be["context"] == 32, 16, 0))),
          "bench: prefill in chunks of 16 at context 32, one call (0) at context 8")
    ctl = be[be["model"] == b"control"]
    check(int(ctl[(ctl["context"] == 32) & (ctl["batch"] == 3)]["state_bytes"][0]) >
          int(ctl[(ctl["context"] == 8) & (ctl["batch"] == 1)]["state_bytes"][0]), "bench: the KV cache grows with context x batch")
check("== summary" in out and "ranking:" in out and "select ->" in out, "summary printed")
check("bench: hybrid vs control ctx 32 x3: TTFT" in out, "bench speedups in the summary")
for p in ("teacher/config.json", "teacher/model.safetensors", "hybrid/config.json", "stage0/stage0.csv",
          "stage0/layer0-gla.safetensors", "stage0/layer2-rwkv7.safetensors", "hybrid.yaml"):
    check(os.path.exists(os.path.join(work, "run", p)), f"output {p}")
leftovers = [p for p in os.listdir(os.path.join(work, "run")) if p.endswith(".tmp")]
check(not leftovers, f"no temporary files left: {leftovers}")
plots = os.path.join(work, "plots")
r = subprocess.run([sys.executable, os.path.join(src, "tools", "plot_run.py"), log, plots], capture_output=True, text=True)
check(r.returncode == 0 and any("heatmap" in p for p in os.listdir(plots)), f"plot_run.py: {r.stderr.strip()[-300:]}")
check(os.path.exists(os.path.join(plots, "bench_5_bench.png")), "plot_run.py drew the bench plot")
check.finish()
