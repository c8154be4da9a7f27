"""stage0_finite.py: a long RWKV-7 Stage 0 run in bf16 on the GPU stays finite (issue #8; the original
experiment's RWKV-7 hybrids failed from mixed-precision errors).

  python3 bench/stage0_finite.py --graft BIN/graft [--config bench/configs/qwen3-1.7b.json]
          [--steps 2000] [--batch 4] [--seq 1024] [--layers 0,13,27] [--mixers rwkv7] [--out finite.md]

`graft run` of a stage0 recipe on device: cuda (a random-weight teacher of the config's shape, the
synthetic e2e corpus), then reads the run log: every pair's training normalized loss at every step
must be finite, and the held-out one too. Prints the loss at a few steps per pair and the verdict;
exit status 1 when anything is not finite.
"""
import os
import subprocess
import sys
import time

import h5py
import numpy as np

from stage0_common import gpu_name, parser, stage0_recipe
from e2e_util import text  # noqa: E402 (stage0_common puts tests/e2e on the path)

a = parser(steps=2000, batch=4, seq=1024, layers="0,13,27", mixers="rwkv7", out="stage0_finite.md").parse_args()
recipe, work = stage0_recipe(a, ", ".join(f"{m}: {{}}" for m in a.mixers.split(",")), sentences=60000,
                             warmup=max(1, a.steps // 50), eval_every=max(1, a.steps // 4), eval_batches=2,
                             prefix="graft-s0finite-")
t0 = time.time()
r = subprocess.run([a.graft, "run", recipe], capture_output=True, text=True)
wall = time.time() - t0
print(r.stdout[-2500:], r.stderr[-2000:], flush=True)
lines = []
gpu = gpu_name()
lines.append(f"# Stage 0 {a.mixers} in bf16 for {a.steps} steps ({time.strftime('%Y-%m-%d')}, commit "
             f"{os.environ.get('GRAFT_COMMIT', '?')})")
lines.append("")
lines.append(f"Device: {gpu}. Teacher: {os.path.basename(a.config)} random weights; layers {a.layers}; batch "
             f"{a.batch} x {a.seq}; lr {a.lr}; {wall:.0f} s wall (exit {r.returncode}).")
lines.append("")
ok = r.returncode == 0
if ok:
    with h5py.File(os.path.join(work, "run.h5"), "r") as f:
        p = f["stages/0_stage0/stage0_pairs"][:]
        res = f["stages/0_stage0/stage0_results"][:]
        t = f["stages/0_stage0/train"][:]
    tr = p[np.isfinite(p["train_nloss"]) | np.isnan(p["heldout_nloss"])]
    marks = sorted({1, a.steps // 10, a.steps // 4, a.steps // 2, a.steps})
    lines.append("| layer | mixer | " + " | ".join(f"train nloss @{m}" for m in marks) + " | held-out nloss (end) | all steps finite |")
    lines.append("|---|---|" + "---|" * len(marks) + "---|---|")
    for x in res:
        sel = tr[(tr["layer"] == x["layer"]) & (tr["mixer"] == x["mixer"])]
        fin = bool(np.all(np.isfinite(sel["train_nloss"]))) and len(sel) == a.steps
        ok = ok and fin and bool(np.isfinite(x["heldout_nloss"]))
        vals = []
        for m in marks:
            v = sel["train_nloss"][sel["step"] == m]
            vals.append(f"{float(v[0]):.4f}" if len(v) else "-")
        lines.append(f"| {int(x['layer'])} | {text(x['mixer'])} | " + " | ".join(vals) +
                     f" | {float(x['heldout_nloss']):.4f} | {fin} ({len(sel)} steps) |")
    lines.append("")
    lines.append(f"Mean {np.mean(t['tokens_per_s'][1:]):.0f} tokens/s (teacher tokens) over the steps.")
lines.append("")
lines.append(f"Verdict: {'finite' if ok else 'NOT finite or failed'}")
print("\n".join(lines))
with open(a.out, "w") as f:
    f.write("\n".join(lines) + "\n")
sys.exit(0 if ok else 1)
