"""tests/e2e/test_kill_resume.py GRAFT SRC WORK: a run is SIGKILLed in the middle of pretraining, of
the Stage 0 sweep and of Stage 1, resumed with `graft run --resume` each time, and its run log then
holds exactly the rows of an uninterrupted run (same losses, bit for bit, on one thread); the
checkpoints and the log are never half-written (each resume reads them; no .tmp is left)."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

from e2e_util import Checks, graft_env, start, write_recipe

graft, src, work = start(sys.argv)
check = Checks()


stages = """  - kind: pretrain
    steps: 60
    batch: 8
    seq_len: 64
    lr: 3.0e-3
    warmup: 5
    eval_every: 20
    eval_batches: 1
    checkpoint_every: 7
    out: @OUT@/teacher
  - kind: stage0
    layers: [1-2]
    mixers: {gla: {num_heads: 4}}
    steps: 40
    batch: 8
    seq_len: 64
    lr: 2.0e-3
    warmup: 2
    eval_every: 10
    eval_batches: 1
    checkpoint_every: 6
    out: @OUT@/stage0
  - kind: select
    policy: count
    count: 1
    out: @OUT@/hybrid.yaml
  - kind: stage1
    phases: [{steps: 12, batch: 4, seq_len: 32}, {steps: 12, batch: 2, seq_len: 64}]
    lr: 1.0e-3
    warmup: 2
    eval_batches: 1
    checkpoint_every: 5
    out: @OUT@/hybrid
"""
ref = write_recipe(src, work, "ref", stages)
r = subprocess.run([graft, "run", ref], capture_output=True, text=True, env=graft_env())
check(r.returncode == 0, f"uninterrupted run: {r.stderr.strip()}")


def rows(log, group):
    with h5py.File(log, "r", swmr=True) as f:
        return f[f"stages/{group}/train"][:]


def kill_at(proc, log, group, stage_line, step_line, table="train"):
    """SIGKILLs proc at graft's first progress line starting with step_line after the line starting
    with stage_line (graft flushes each), then returns the rows of `group`'s `table` in the run log.
    graft's own output, not a poll of the run log: a poll under a loaded machine could see the
    stage's rows only after the stage had ended."""
    in_stage = False
    for line in proc.stdout:
        in_stage = in_stage or line.startswith(stage_line)
        if in_stage and line.strip().startswith(step_line):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        return -1
    with h5py.File(log, "r", libver="latest", swmr=True) as f:  # a killed SWMR writer leaves it marked open
        g = f.get(f"stages/{group}/{table}")
        return -1 if g is None else g.shape[0]


def start_run(*extra):
    return subprocess.Popen([graft, "run", run, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=graft_env())


run = write_recipe(src, work, "run", stages)
log = os.path.join(work, "run", "run.h5")
# the kills: pretrain prints every 6th step, stage0 every 4th, stage1 every 2nd
p = start_run()
n = kill_at(p, log, "0_pretrain", "== stage 0: pretrain", "step    18/60")
check(n >= 17 and p.returncode == -signal.SIGKILL, f"killed during pretrain after {n} rows")
p = start_run("--resume")
n1 = kill_at(p, log, "1_stage0", "== stage 1: stage0", "step    16/40", table="stage0_pairs")
check(n1 >= 15 and p.returncode == -signal.SIGKILL, f"resumed, then killed during stage0 after {n1} pair rows")
p = start_run("--resume")
n2 = kill_at(p, log, "3_stage1", "== stage 3: stage1", "step    16/24")
check(n2 >= 16 and p.returncode == -signal.SIGKILL, f"resumed, then killed during stage1 after {n2} rows")
# a reader holding the log open (h5py or MATLAB watching a run) must not block the writer's opens
# (HDF5 file locks: "unable to lock file, errno = 11" before runlog.c opened without them)
reader = h5py.File(log, "r", swmr=True)
r = subprocess.run([graft, "run", run, "--resume"], capture_output=True, text=True, env=graft_env())
reader.close()
check(r.returncode == 0, f"second resume finishes (a reader holding the log open): {r.stderr.strip()[-400:]}")
check("resuming from" in r.stdout, "the last resume continues stage1 from its checkpoint")
with h5py.File(os.path.join(work, "ref", "run.h5"), "r") as fa, h5py.File(log, "r") as fb:
    a, b = fa["stages/1_stage0/stage0_pairs"][:], fb["stages/1_stage0/stage0_pairs"][:]
    same = len(a) == len(b) and all(np.array_equal(a[k], b[k], equal_nan=True)
                                    for k in ("step", "layer", "train_nloss", "heldout_nloss"))
    check(same, f"1_stage0: the {len(a)} pair rows (train and held-out losses) equal the uninterrupted run's ({len(b)})")
    a, b = fa["stages/1_stage0/stage0_results"][:], fb["stages/1_stage0/stage0_results"][:]
    check(np.array_equal(a["heldout_nloss"], b["heldout_nloss"]), "1_stage0: the result table equals the uninterrupted run's")
for group, steps in (("0_pretrain", 60), ("3_stage1", 24)):
    a, b = rows(os.path.join(work, "ref", "run.h5"), group), rows(log, group)
    check(len(b) == steps and list(b["step"]) == list(range(1, steps + 1)), f"{group}: rows 1..{steps} once each")
    same = len(a) == len(b) and all(np.array_equal(a[k], b[k], equal_nan=True)
                                    for k in ("loss", "ce", "kl", "lr", "grad_norm", "tokens"))
    check(same, f"{group}: loss, lr, grad_norm, tokens equal the uninterrupted run's")
    if not same and len(a) == len(b):
        d = np.nonzero(a["loss"] != b["loss"])[0]
        print(f"  first differing step {d[:5] + 1}: {a['loss'][d[:5]]} vs {b['loss'][d[:5]]}")
with h5py.File(log, "r") as f:
    check(int(f.attrs["resume_count"]) == 3, f"resume_count {f.attrs['resume_count']}")
for root, dirs, files in os.walk(os.path.join(work, "run")):
    tmp = [x for x in dirs + files if x.endswith(".tmp")]
    check(not tmp, f"no temporary files in {root}: {tmp}")
check.finish()
