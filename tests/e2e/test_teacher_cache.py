"""tests/e2e/test_teacher_cache.py GRAFT SRC WORK: Stage 1 from a precomputed teacher top-k cache
trains exactly as with the live teacher (same losses, bit for bit); a second run reads the cache
without loading the teacher; a truncated cache, or one made for another schedule, is refused naming
the file."""
import os
import subprocess
import sys

import h5py
import numpy as np

from e2e_util import Checks, graft_env, start, write_recipe

graft, src, work = start(sys.argv)
check = Checks()


def stages(cache, phases="[{steps: 8, batch: 4, seq_len: 32}, {steps: 6, batch: 2, seq_len: 64}]"):
    return f"""  - kind: pretrain
    steps: 20
    batch: 4
    seq_len: 32
    lr: 3.0e-3
    out: @OUT@/teacher
  - kind: select
    policy: list
    list: {{rwkv7: [1]}}
    out: @OUT@/hybrid.yaml
  - kind: stage1
    phases: {phases}
    accum: 2
    lr: 1.0e-3
    warmup: 2
    eval_batches: 1
    out: @OUT@/hybrid
""" + (f"    teacher_cache: {cache}\n" if cache else "")


def rows(name):
    with h5py.File(os.path.join(work, name, "run.h5"), "r") as f:
        return f["stages/2_stage1/train"][:]


cache = os.path.join(work, "topk.cache")
live = write_recipe(src, work, "live", stages(None))
cached = write_recipe(src, work, "cached", stages(cache))
r = subprocess.run([graft, "run", live], capture_output=True, text=True, env=graft_env())
check(r.returncode == 0, f"live teacher run: {r.stderr.strip()[-300:]}")
r = subprocess.run([graft, "run", cached], capture_output=True, text=True, env=graft_env())
check(r.returncode == 0 and "precomputed first into" in r.stdout, f"cache made, then used: {r.stderr.strip()[-300:]}")
check(os.path.exists(cache) and not os.path.exists(cache + ".tmp"), "cache complete, no .tmp left")
a, b = rows("live"), rows("cached")
same = len(a) == 14 and all(np.array_equal(a[k], b[k], equal_nan=True) for k in ("loss", "ce", "kl", "grad_norm"))
check(same, "stage1 from the cache = stage1 with the live teacher (loss, ce, kl, grad_norm)")
r = subprocess.run([graft, "run", cached, "--stage", "2"], capture_output=True, text=True, env=graft_env())
check(r.returncode == 0 and "read from" in r.stdout, f"stage1 alone reads the cache: {r.stderr.strip()[-300:]}")
check(np.array_equal(rows("cached")["loss"], a["loss"]), "and trains the same")
other = write_recipe(src, work, "other", stages(cache, "[{steps: 9, batch: 4, seq_len: 32}]"))
r = subprocess.run([graft, "run", other], capture_output=True, text=True, env=graft_env())
check(r.returncode == 1 and "made for another data seed or phase schedule" in r.stderr and cache in r.stderr,
      f"another schedule refused: {r.stderr.strip()[-300:]}")
with open(cache, "r+b") as f:
    f.truncate(os.path.getsize(cache) - 7)
r = subprocess.run([graft, "run", cached, "--stage", "2"], capture_output=True, text=True, env=graft_env())
check(r.returncode == 1 and cache in r.stderr and "expected" in r.stderr, f"truncated cache refused: {r.stderr.strip()[-300:]}")
check.finish()
