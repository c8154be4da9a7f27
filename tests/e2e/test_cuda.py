"""tests/e2e/test_cuda.py GRAFT SRC WORK: `graft run` recipes on `device: cuda` (issue #7): pretrain,
stage1 (live teacher and teacher cache) and eval on the GPU, their losses against the same recipe on
the CPU at bf16 tolerance, and SIGKILL + --resume on the GPU giving the losses of an uninterrupted
GPU run. Stage 0 runs on the CPU first (a prelude recipe) so that both recipes' stage1s graft the
same students and spec (Stage 0 on CUDA has its own test: test_stage0_cuda.py). Without a GPU (or a CUDA build) it exits 77
(skipped). The numbers it prints are the ones to quote.

Which losses are compared step by step: pretrain's (both devices start from the same host init),
and stage1's from a second pair of runs whose model and teacher are the prelude's CPU-trained
teacher, so both devices distil the same hybrid from the same teacher. The main recipe's stage1s
start from each device's own pretrained teacher (fp32 vs bf16: two different models), so their rows
are printed, not asserted (an H100 run on 2026-11-24 had their step-1 losses 6% apart)."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

from e2e_util import Checks, cuda_setup, graft_env, text, write_recipe

graft, src, work, device, config = cuda_setup(sys.argv, hidden_size=128, intermediate_size=384)
check = Checks()

prelude = """  - kind: pretrain
    steps: 40
    batch: 4
    seq_len: 32
    lr: 3.0e-3
    warmup: 5
    eval_batches: 1
    out: @OUT@/teacher
  - kind: stage0
    layers: [1]
    mixers: {gla: {num_heads: 2, expand_k: 2, expand_v: 2}}
    steps: 10
    batch: 4
    seq_len: 32
    lr: 2.0e-3
    warmup: 2
    eval_batches: 1
    out: @OUT@/stage0
  - kind: select
    policy: count
    count: 1
    out: @OUT@/hybrid.yaml
"""
r = subprocess.run([graft, "run", write_recipe(src, work, "pre", prelude, config=config)], capture_output=True, text=True,
                   env=graft_env())
check(r.returncode == 0, f"prelude (cpu: pretrain, stage0 gla on layer 1, select): {r.stderr.strip()[-400:]}")
spec = os.path.join(work, "pre", "hybrid.yaml")

stages = f"""  - kind: pretrain
    steps: 120
    batch: 4
    seq_len: 32
    lr: 2.0e-3
    warmup: 5
    eval_every: 40
    eval_batches: 2
    checkpoint_every: 10
    out: @OUT@/teacher
  - kind: stage1
    spec: {spec}
    phases: [{{steps: 16, batch: 4, seq_len: 32}}, {{steps: 8, batch: 2, seq_len: 64}}]
    alpha: 0.5
    k: 16
    lr: 1.0e-3
    warmup: 2
    eval_batches: 2
    checkpoint_every: 6
    out: @OUT@/hybrid
  - kind: stage1
    spec: {spec}
    phases: [{{steps: 12, batch: 4, seq_len: 32}}]
    alpha: 0.25
    k: 16
    lr: 1.0e-3
    warmup: 2
    eval_batches: 2
    teacher_cache: @OUT@/teacher.topk
    out: @OUT@/hybrid_cached
  - kind: eval
    models: [teacher, control, hybrid]
    heldout_batches: 2
    batch: 2
    seq_len: 32
    generate: {{prompts: ["In the beginning", "The king"], max_new_tokens: 8, greedy: true}}
"""


def run(name, device):
    t0 = time.time()
    r = subprocess.run([graft, "run", write_recipe(src, work, name, stages, device=device, config=config)], capture_output=True,
                       text=True, env=graft_env())
    dt = time.time() - t0
    check(r.returncode == 0, f"{name} on {device}: exit {r.returncode} in {dt:.1f} s {r.stderr.strip()[-600:]}")
    print("\n".join("    " + x for x in r.stdout.splitlines() if "held-out" in x or "step" in x and "/" in x))
    return os.path.join(work, name, "run.h5")


cpu, gpu = run("cpu", "cpu"), run("gpu", device)

# stage1 from one base: the prelude's teacher as model and teacher, on both devices
s1_stages = stages[stages.index("  - kind: stage1"):stages.index("  - kind: eval")]
s1 = {}
for dev in ("cpu", device):
    name = f"s1-{dev.replace(':', '')}"
    r = subprocess.run([graft, "run", write_recipe(src, work, name, s1_stages, device=dev, config=config,
                                                   model=os.path.join(work, "pre", "teacher"))],
                       capture_output=True, text=True, env=graft_env())
    check(r.returncode == 0, f"stage1 from the prelude's teacher on {dev}: {r.stderr.strip()[-400:]}")
    s1[dev] = os.path.join(work, name, "run.h5")
runs = {"0_pretrain": (cpu, gpu), "0_stage1": (s1["cpu"], s1[device]), "1_stage1": (s1["cpu"], s1[device])}
groups = (("0_pretrain", 120), ("0_stage1", 24), ("1_stage1", 12))
main_groups = (("0_pretrain", 120), ("1_stage1", 24), ("2_stage1", 12))  # the main recipe's training stages


def table(log, path):
    with h5py.File(log, "r") as f:
        return f[path][:] if path in f else None


# losses of the same recipe: bf16 storage on the GPU against fp32 on the CPU. The first step
# starts from identical weights (pretrain: the same host init; stage1: the same base and teacher);
# later steps drift as any two precisions do.
for g, n in groups:
    a, b = table(runs[g][0], f"stages/{g}/train"), table(runs[g][1], f"stages/{g}/train")
    if a is None or b is None:
        check(False, f"{g}: train rows in both logs")
        continue
    check(len(a) == n and len(b) == n, f"{g}: {len(a)} cpu rows, {len(b)} gpu rows, expected {n}")
    m = min(len(a), len(b))
    if m == 0:
        continue
    la, lb = a["loss"][:m].astype(np.float64), b["loss"][:m].astype(np.float64)
    rel = np.abs(la - lb) / np.abs(la)
    ok = np.all(np.isfinite(lb))
    check(ok and rel[0] < 2e-3, f"{g}: step 1 loss cpu {la[0]:.6f} gpu {lb[0]:.6f} (rel {rel[0]:.2e} < 2e-3)")
    check(ok and rel.max() < 3e-2, f"{g}: max rel loss difference over {m} steps {rel.max():.2e} (< 3e-2; mean {rel.mean():.2e}); "
          f"last cpu {la[-1]:.4f} gpu {lb[-1]:.4f}")
    if not np.all(np.isnan(a["kl"][:m])):
        ka, kb = a["kl"][:m].astype(np.float64), b["kl"][:m].astype(np.float64)
        d = np.abs(ka - kb).max() / max(np.abs(ka).max(), 1e-12)
        check(np.all(np.isfinite(kb)) and d < 5e-2,
              f"{g}: KL part cpu {ka[0]:.5f}..{ka[-1]:.5f} gpu {kb[0]:.5f}..{kb[-1]:.5f} (max diff / max {d:.2e} < 5e-2)")
    ga, gb = a["grad_norm"][:m].astype(np.float64), b["grad_norm"][:m].astype(np.float64)
    check(np.all(np.isfinite(gb)) and abs(ga[0] - gb[0]) / ga[0] < 2e-2,
          f"{g}: step 1 grad norm cpu {ga[0]:.5f} gpu {gb[0]:.5f}")
    tps = b["tokens_per_s"][m // 2:].astype(np.float64).mean() if "tokens_per_s" in b.dtype.names else float("nan")
    print(f"    {g}: gpu mean {tps:.0f} tok/s over the second half")

# held-out evaluation (during and after training, and the eval stage) against the CPU's. The two runs
# train their own teachers (fp32 on the CPU, bf16 on the GPU), so from stage 1 on they compare two
# different models: a grafted hybrid's ppl at assembly is not a smooth function of its teacher (on
# the CPU, teacher lr 1.99e-3 / 2.0e-3 / 2.01e-3 gave teacher ppl 3.782 / 3.813 / 3.870 and hybrid ppl
# at assembly 4.045 / 3.960 / 4.091), so hybrid rows across runs are printed, not asserted. What the
# GPU must reproduce is the CPU's number on the SAME weights: the eval below, on the CPU run's files.
for g in ("0_pretrain", "1_stage1", "2_stage1", "3_eval"):
    a, b = table(cpu, f"stages/{g}/eval"), table(gpu, f"stages/{g}/eval")
    if a is None or b is None or len(a) != len(b) or len(a) == 0:
        check(False, f"{g}: eval rows in both logs ({None if a is None else len(a)} vs {None if b is None else len(b)})")
        continue
    va, vb = a["value"].astype(np.float64), b["value"].astype(np.float64)
    rel = np.abs(va - vb) / np.abs(va)
    desc = ", ".join(f"{text(x['model'])}/{text(x['metric'])} {y:.4f}/{z:.4f}" for x, y, z in zip(a, va, vb))
    same_model = np.array([text(x["model"]) in ("teacher", "control") for x in a])
    print(f"    {g}: held-out cpu/gpu (separately trained) {desc}")
    check(np.all(np.isfinite(vb)) and (rel[same_model].max() if same_model.any() else 0) < 3e-2,
          f"{g}: teacher/control held-out cpu vs gpu within 3e-2 (max rel "
          f"{rel[same_model].max() if same_model.any() else float('nan'):.2e})")

# the same files evaluated on both devices: the CPU run's teacher and both its hybrids
same = f"""  - kind: eval
    models: [{work}/cpu/teacher, {work}/cpu/hybrid, {work}/cpu/hybrid_cached]
    heldout_batches: 2
    batch: 2
    seq_len: 32
"""
logs = {}
for dev in ("cpu", device):
    name = f"same-{dev.replace(':', '')}"
    r = subprocess.run([graft, "run", write_recipe(src, work, name, same, device=dev, config=config)], capture_output=True,
                       text=True, env=graft_env())
    check(r.returncode == 0, f"eval of the cpu run's files on {dev}: {r.stderr.strip()[-400:]}")
    logs[dev] = os.path.join(work, name, "run.h5")
a, b = table(logs["cpu"], "stages/0_eval/eval"), table(logs[device], "stages/0_eval/eval")
if a is None or b is None or len(a) != len(b) or len(a) == 0:
    check(False, "same-weights eval rows in both logs")
else:
    va, vb = a["value"].astype(np.float64), b["value"].astype(np.float64)
    rel = np.abs(va - vb) / np.abs(va)
    desc = ", ".join(f"{os.path.basename(text(x['model']))}/{text(x['metric'])} {y:.4f}/{z:.4f}" for x, y, z in zip(a, va, vb))
    check(np.all(np.isfinite(vb)) and rel.max() < 1e-2,
          f"same weights, cpu vs {device}: {desc} (max rel {rel.max():.2e} < 1e-2)")
gens = table(gpu, "stages/3_eval/generations")
check(gens is not None and len(gens) == 6, f"3_eval: {0 if gens is None else len(gens)} generations on the gpu, expected 6")
for d in ("teacher", "hybrid", "hybrid_cached"):
    p = os.path.join(work, "gpu", d)
    check(os.path.isdir(p) and any(x.endswith(".safetensors") for x in os.listdir(p)), f"gpu run saved {d}")
check(os.path.exists(os.path.join(work, "gpu", "teacher.topk")), "gpu run wrote the teacher cache")


# SIGKILL during pretrain and during stage1 on the GPU, --resume: the losses of the uninterrupted
# GPU run (the GPU path is deterministic: fixed-order reductions; moments and masters round-trip in
# fp32). The kill follows graft's own progress lines, not the run log: on the H100 image a reader
# polling the HDF5 file (h5py's HDF5, not graft's) stalled the run at a stage boundary once.
def kill_after(argv, stage_line, step_prefix, deadline_s=60):
    """Runs graft, SIGKILLs it at the first line starting with step_prefix after stage_line."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=graft_env())
    t0, in_stage, tail = time.time(), False, []
    for line in p.stdout:
        tail = (tail + [line])[-8:]
        in_stage = in_stage or line.startswith(stage_line)
        if in_stage and line.strip().startswith(step_prefix) or time.time() - t0 > deadline_s:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return time.time() - t0 <= deadline_s, "".join(tail)
    p.wait()
    return False, "".join(tail)


rk = write_recipe(src, work, "gpuk", stages, device=device, config=config)
logk = os.path.join(work, "gpuk", "run.h5")
kills = 0
for k, (stage_line, at) in enumerate((("== stage 0: pretrain", "step    18/120"), ("== stage 1: stage1", "step     8/24"))):
    ok, tail = kill_after([graft, "run", rk] + (["--resume"] if k else []), stage_line, at)
    print(f"    killed at '{at}' of '{stage_line}'" if ok else f"    no kill at '{at}' ({stage_line}): {tail[-500:]}")
    kills += ok
r = subprocess.run([graft, "run", rk, "--resume"], capture_output=True, text=True, env=graft_env())
check(r.returncode == 0 or kills == 0, f"gpu resume finishes: {r.stderr.strip()[-400:]}")
check(kills == 2, f"{kills} of 2 kills landed during training")
for g, n in main_groups:
    a, b = table(gpu, f"stages/{g}/train"), table(logk, f"stages/{g}/train")
    if a is None or b is None:
        check(False, f"resume {g}: rows in both logs")
        continue
    check(len(b) == n and list(b["step"]) == list(range(1, n + 1)), f"resume {g}: rows 1..{n} once each")
    if len(a) == len(b):
        d = np.abs(a["loss"].astype(np.float64) - b["loss"]).max()
        same = all(np.array_equal(a[k], b[k], equal_nan=True) for k in ("loss", "ce", "kl", "grad_norm"))
        check(same or d < 1e-5, f"resume {g}: losses {'bitwise equal to' if same else f'within {d:.2e} of'} "
              "the uninterrupted gpu run's")
check.finish()
