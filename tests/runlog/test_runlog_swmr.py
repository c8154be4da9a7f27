#!/usr/bin/python3
"""tests/runlog/test_runlog_swmr.py: the run log as readers see it (docs/runlog.md).

1. live: runlog_writer appends 50 steps with 20 ms sleeps; h5py (swmr=True) follows the train table
   while it grows, then every table is read back and checked against the writer's formulas.
2. kill: the writer is SIGKILLed mid-stage; the file still opens in h5py and holds a consistent
   prefix; the writer resumes from an earlier "checkpoint" step and the final file equals an
   uninterrupted run (steps 1..N exactly once).
3. tools/plot_run.py on the live file writes valid PNGs.

usage: test_runlog_swmr.py RUNLOG_WRITER OUTDIR PLOT_RUN_PY
"""
import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def start(writer, *args):
    p = subprocess.Popen([writer, *map(str, args)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.wait()
        raise SystemExit(f"writer did not start: {line!r}, rc {p.returncode}")
    return p


def open_swmr(path):
    return h5py.File(path, "r", libver="latest", swmr=True)


def check_train_rows(t, n_total, where):
    steps = t["step"]
    check(np.array_equal(steps, np.arange(1, len(t) + 1)), f"{where}: steps are 1..{len(t)} in order")
    st = steps.astype(np.float64)
    check(np.allclose(t["loss"], 1.0 / st), f"{where}: loss")
    check(np.allclose(t["ce"], 0.5 / st) and np.allclose(t["kl"], 0.25 / st), f"{where}: ce, kl")
    check(np.allclose(t["lr"], 1e-3 * st / n_total), f"{where}: lr")
    check(np.array_equal(t["phase"], (steps > n_total // 2).astype(np.int32)), f"{where}: phase")
    check(np.array_equal(t["tokens"], 64 * steps), f"{where}: tokens")
    check(np.allclose(t["wall_s"], 0.01 * st) and np.all(t["tokens_per_s"] == 6400.0), f"{where}: wall_s")


def check_complete(path, n):
    with h5py.File(path, "r") as f:
        a = f.attrs
        check(s(a["graft_version"]).count(".") == 2, "graft_version attribute")
        check(int(a["runlog_version"]) == 1, "runlog_version attribute")
        check("kind: stage0" in s(a["recipe"]), "recipe attribute")
        check(s(a["device"]) == "cpu" and s(a["git_hash"]) == "deadbeef", "device, git_hash attributes")
        check(s(a["command_line"]) == "runlog_writer", "command_line attribute")
        check(s(a["start_time"]).endswith("Z") and "T" in s(a["start_time"]), "start_time is ISO-8601 UTC")
        check(sorted(f["stages"]) == ["0_stage0", "1_select", "2_eval"], f"stage groups {sorted(f['stages'])}")
        for name, idx, kind in [("0_stage0", 0, "stage0"), ("1_select", 1, "select"), ("2_eval", 2, "eval")]:
            g = f["stages"][name]
            check(s(g.attrs["kind"]) == kind and int(g.attrs["index"]) == idx, f"{name}: kind/index")
            check(s(g.attrs["status"]) == "done", f"{name}: status {s(g.attrs['status'])}")
            check(s(g.attrs["end_time"]) >= s(g.attrs["start_time"]), f"{name}: end_time")
        g = f["stages/0_stage0"]
        t = g["train"][:]
        check(len(t) == n, f"train rows {len(t)}, expected {n}")
        check_train_rows(t, n, "train")
        p = g["stage0_pairs"][:]
        check(len(p) == 4 * n, f"stage0_pairs rows {len(p)}")
        check(p.dtype["mixer"] == np.dtype("S16"), "stage0_pairs.mixer is S16")
        for row in p[:8]:
            base = 1.0 / (1 + row["layer"] + 2 * ["gla", "rwkv7"].index(s(row["mixer"])))
            check(math.isclose(row["train_nloss"], base + 1.0 / row["step"]), "stage0_pairs.train_nloss")
        held = p[p["step"] % 10 == 0]["heldout_nloss"]
        check(np.all(np.isfinite(held)) and np.all(np.isnan(p[p["step"] % 10 != 0]["heldout_nloss"])),
              "stage0_pairs.heldout_nloss NaN when not evaluated")
        r = g["stage0_results"][:]
        check(len(r) == 4 and set(s(m) for m in r["mixer"]) == {"gla", "rwkv7"}, "stage0_results")
        check(math.isclose(r[r["layer"] == 1][0]["heldout_nloss"], 0.5), "stage0_results value")
        check(s(f["stages/1_select/hybrid_spec"][()]) == "layer_types: [gla, softmax]\n", "hybrid_spec text")
        e = f["stages/2_eval/eval"][:]
        check([s(x) for x in e["model"]] == ["control", "hybrid"] and list(e["value"]) == [10.5, 11.25], "eval")
        b = f["stages/2_eval/bench"][:]
        check(len(b) == 1 and b[0]["context"] == 4096 and b[0]["prefill_chunk"] == 1024 and
              b[0]["peak_bytes"] == 987654321, "bench")
        gen = f["stages/2_eval/generations"][:]
        check(len(gen) == 1 and s(gen[0]["text"]) == " Paris.", "generations")
        for tname in ["train", "stage0_pairs", "stage0_results"]:
            check(len(f["stages/1_select"][tname]) == 0, f"1_select/{tname} empty")


def test_live(writer, out):
    path = os.path.join(out, "live.h5")
    n = 50
    p = start(writer, path, "new", n, 20)
    seen, errors = [], 0
    with open_swmr(path) as f:
        d = f["stages/0_stage0/train"]
        while p.poll() is None:
            try:
                d.refresh()
                k = d.shape[0]
                if k and (not seen or k != seen[-1]):
                    check_train_rows(d[:k], n, f"live read at {k} rows")
                seen.append(k)
            except Exception:  # the writer restructures the file at stage boundaries
                errors += 1
            time.sleep(0.03)
    check(p.wait() == 0, f"writer exit status {p.returncode}")
    distinct = sorted(set(k for k in seen if 0 < k < n))
    check(len(distinct) >= 5, f"reader saw the table grow: {distinct}")
    check(seen == sorted(seen), "row count never shrank while following")
    check_complete(path, n)
    return path


def test_kill(writer, out):
    path = os.path.join(out, "killed.h5")
    n = 200
    p = start(writer, path, "new", n, 20)
    with open_swmr(path) as f:
        d = f["stages/0_stage0/train"]
        while True:
            d.refresh()
            if d.shape[0] >= 30:
                break
            time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    with open_swmr(path) as f:  # readable after the kill
        t = f["stages/0_stage0/train"][:]
        check(30 <= len(t) < n, f"killed file has {len(t)} train rows")
        check_train_rows(t, n, "after kill")
        check(s(f["stages/0_stage0"].attrs["status"]) == "running", "killed stage still 'running'")
    resume_step = len(t) - 7  # the last checkpoint is older than the last logged row
    rc = subprocess.run([writer, path, "resume", str(n), "0", str(resume_step)], stdout=subprocess.DEVNULL).returncode
    check(rc == 0, f"resumed writer exit status {rc}")
    check_complete(path, n)
    with h5py.File(path, "r") as f:
        check(int(f.attrs["resume_count"]) == 1, "resume_count")


def test_plot(plot, path, out):
    pdir = os.path.join(out, "plots")
    rc = subprocess.run([sys.executable, plot, path, pdir]).returncode
    check(rc == 0, f"plot_run.py exit status {rc}")
    pngs = sorted(x for x in os.listdir(pdir) if x.endswith(".png")) if os.path.isdir(pdir) else []
    for want in ["loss_0_stage0.png", "stage0_heatmap_0_stage0.png", "eval_2_eval.png"]:
        check(want in pngs, f"plot {want} written (have {pngs})")
    for x in pngs:
        with open(os.path.join(pdir, x), "rb") as fh:
            head = fh.read(8)
        check(head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(os.path.join(pdir, x)) > 1000, f"{x} is a PNG")


def main():
    writer, out, plot = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    for x in ["live.h5", "killed.h5"]:
        if os.path.exists(os.path.join(out, x)):
            os.remove(os.path.join(out, x))
    live = test_live(writer, out)
    test_kill(writer, out)
    test_plot(plot, live, out)
    if FAILURES:
        print(f"test_runlog_swmr: {len(FAILURES)} failures", file=sys.stderr)
        return 1
    print("test_runlog_swmr: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
