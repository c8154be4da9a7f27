#!/usr/bin/env python3
"""tests/losses/check_losses.py: every loss .so against its float64 autograd reference.

For each case it draws fresh random fp32 inputs (the seed is printed; GRAFT_TEST_SEED=<n> replays
a run), writes them as safetensors, runs tests/losses/loss_driver on them, and compares what the
plugin returned with tests/reference/losses_ref.py: loss_sum, count, parts, every row's loss and
count (each row also run alone, without a gradient), and grad_scale * d(loss_sum)/d(student), both
as a whole and row by row. Tolerance: NMSE <= 1e-9 (the C side computes in double from the same
fp32 inputs and rounds the gradient to fp32 once, so the expected NMSE is ~1e-14). Refusals are
asserted by message. The exit status is the verdict.

    check_losses.py --driver build/bin/loss_driver [--only <case substring>]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import losses_ref as ref  # noqa: E402
import st  # noqa: E402

TOL = 1e-9
VOCAB = 151936  # Qwen3's vocabulary
failures = []
n_checks = 0
worst = [0.0, ""]  # the largest NMSE seen, and where


def nmse(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = float((b * b).sum())
    num = float(((a - b) ** 2).sum())
    return num / den if den > 0 else num


def check(case, what, got, want, tol=TOL):
    global n_checks
    n_checks += 1
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(f"{case}: {what}: shape {got.shape}, expected {want.shape}")
        return
    if not np.all(np.isfinite(got)) or not np.all(np.isfinite(want)):
        bad = np.argwhere(~np.isfinite(got) | ~np.isfinite(want))
        failures.append(f"{case}: {what}: non-finite value at {bad[0].tolist()}")
        return
    e = nmse(got, want)
    if e > worst[0]:
        worst[:] = [e, f"{case}: {what}"]
    if not e <= tol:
        d = np.abs(got - want).reshape(-1)
        failures.append(f"{case}: {what}: nmse {e:.3e} > {tol:.0e}, max|diff| {d.max():.3e} at flat index "
                        f"{int(d.argmax())} (got {got.reshape(-1)[d.argmax()]:.9g}, "
                        f"want {want.reshape(-1)[d.argmax()]:.9g})")


def run_driver(args, loss, tensors, settings=(), grad_scale=1.0):
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        st.save(fin, tensors)
        cmd = [args.driver, loss, fin, fout, "--grad-scale", repr(float(grad_scale))] + list(settings)
        p = subprocess.run(cmd, capture_output=True, text=True)
        out = st.load(fout)[0] if p.returncode == 0 else None
        return p.returncode, p.stderr, out


def compare(args, case, loss, tensors, want, settings=(), grad_scale=1.0):
    if args.only and args.only not in case:
        return None
    rc, err, out = run_driver(args, loss, tensors, settings, grad_scale)
    if rc != 0:
        failures.append(f"{case}: driver failed ({rc}): {err.strip()}")
        return None
    check(case, "loss_sum", out["loss_sum"], [want["loss_sum"]])
    check(case, "count", out["count"], [want["count"]])
    check(case, "row_loss", out["row_loss"], want["row_loss"])
    check(case, "row_count", out["row_count"], want["row_count"])
    g = np.float64(np.float32(grad_scale)) * want["grad"]
    check(case, "dstudent", out["dstudent"], g)
    for r in range(g.shape[0]):
        check(case, f"dstudent row {r}", out["dstudent"][r], g[r])
    if "parts" in want:
        check(case, "parts", out["parts"], want["parts"])
    return out


def refuse(args, case, loss, tensors, needle, settings=()):
    global n_checks
    if args.only and args.only not in case:
        return
    n_checks += 1
    rc, err, _ = run_driver(args, loss, tensors, settings)
    if rc != 2 or needle not in err:
        failures.append(f"{case}: expected refusal (exit 2) with \"{needle}\", got exit {rc}: {err.strip()}")


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def i32(a):
    return np.ascontiguousarray(a, dtype=np.int32)


# ---- nmse ------------------------------------------------------------------------------------

def cases_nmse(args, rng):
    for N, W in [(5, 37), (3, 1), (4, 256)]:
        t = rng.normal(size=(N, W))
        x = t + rng.normal(size=(N, W))
        s = t + 0.3 * rng.normal(size=(N, W))
        tensors = dict(student=f32(s), target=f32(t), input=f32(x))
        want = ref.nmse(tensors["student"], tensors["target"], tensors["input"])
        compare(args, f"nmse N={N} W={W}", "nmse", tensors, want, grad_scale=1.0 / want["count"])

    # Ratio of sums across two micro-batches of different sizes and scales: summing loss_sum and
    # count from the two calls and dividing once equals the ratio over all rows, which here is far
    # from the mean of the two batch ratios.
    case = "nmse micro-batches ratio of sums"
    if args.only and args.only not in case:
        return
    W = 48
    t = rng.normal(size=(7, W))
    x = t + rng.normal(size=(7, W)) * np.array([1, 1, 5, 5, 5, 5, 5])[:, None]
    s = t + 0.5 * rng.normal(size=(7, W))
    full = ref.nmse(f32(s), f32(t), f32(x))
    sums, ratios = [0.0, 0.0], []
    for rows in (slice(0, 2), slice(2, 7)):
        tensors = dict(student=f32(s[rows]), target=f32(t[rows]), input=f32(x[rows]))
        rc, err, out = run_driver(args, "nmse", tensors)
        if rc != 0:
            failures.append(f"{case}: driver failed: {err.strip()}")
            return
        sums[0] += float(out["loss_sum"][0])
        sums[1] += float(out["count"][0])
        ratios.append(float(out["loss_sum"][0]) / float(out["count"][0]))
    check(case, "ratio", [sums[0] / sums[1]], [full["loss_sum"] / full["count"]])
    global n_checks
    n_checks += 1
    if abs(np.mean(ratios) - full["loss_sum"] / full["count"]) < 1e-3:
        failures.append(f"{case}: mean of batch ratios equals the ratio of sums; the case does not discriminate")
    refuse(args, "nmse input missing", "nmse", dict(student=f32(s), target=f32(t)), "input is NULL")
    refuse(args, "nmse unknown key", "nmse", dict(student=f32(s), target=f32(t), input=f32(x)),
           "temperature: unknown key", ["temperature=2"])


# ---- ce --------------------------------------------------------------------------------------

def cases_ce(args, rng):
    N, W = 7, 1000
    z = f32(2.0 * rng.normal(size=(N, W)))
    y = rng.integers(0, W, size=N)
    y[[1, 4]] = -100
    want = ref.ce(z, y, -100)
    compare(args, "ce N=7 W=1000 ignore_index=-100", "ce", dict(student=z, labels=i32(y)), want,
            grad_scale=1.0 / want["count"])

    y2 = rng.integers(0, W, size=N)
    y2[[0, 6]] = 5
    want = ref.ce(z, y2, 5)
    compare(args, "ce ignore_index=5", "ce", dict(student=z, labels=i32(y2)), want, ["ignore_index=5"], 0.25)

    y3 = np.full(N, -100)
    want = ref.ce(z, y3, -100)
    compare(args, "ce all rows ignored", "ce", dict(student=z, labels=i32(y3)), want)

    zv = f32(3.0 * rng.normal(size=(2, VOCAB)))
    yv = rng.integers(0, VOCAB, size=2)
    compare(args, "ce W=151936", "ce", dict(student=zv, labels=i32(yv)), ref.ce(zv, yv), grad_scale=0.5)

    bad = y.copy()
    bad[3] = W
    refuse(args, "ce label = W", "ce", dict(student=z, labels=i32(bad)),
           f"labels[3] (row 3): {W}, expected 0..{W - 1} or ignore_index -100")
    bad = y.copy()
    bad[5] = -1
    refuse(args, "ce label -1", "ce", dict(student=z, labels=i32(bad)), "labels[5] (row 5): -1, expected 0..999")
    refuse(args, "ce -100 not ignored when ignore_index=5", "ce", dict(student=z, labels=i32(y)),
           "labels[1] (row 1): -100, expected 0..999 or ignore_index 5", ["ignore_index=5"])
    refuse(args, "ce labels missing", "ce", dict(student=z), "labels is NULL")
    refuse(args, "ce bad ignore_index", "ce", dict(student=z, labels=i32(y)), "ignore_index: \"x\", expected an integer",
           ["ignore_index=x"])


# ---- kl --------------------------------------------------------------------------------------

def cases_kl(args, rng):
    N, W = 5, 333
    z = f32(2.0 * rng.normal(size=(N, W)))
    t = f32(z + 1.5 * rng.normal(size=(N, W)))
    for T in (1.0, 3.0, 0.5):
        compare(args, f"kl T={T}", "kl", dict(student=z, target=t), ref.kl(z, t, T), [f"temperature={T}"], 0.2)
    y = rng.integers(0, W, size=N)
    y[2] = -100
    compare(args, "kl T=2 ignore_index", "kl", dict(student=z, target=t, labels=i32(y)),
            ref.kl(z, t, 2.0, y, -100), ["temperature=2"], 0.5)
    zv = f32(2.0 * rng.normal(size=(1, VOCAB)))
    tv = f32(zv + rng.normal(size=(1, VOCAB)))
    compare(args, "kl W=151936 T=4", "kl", dict(student=zv, target=tv), ref.kl(zv, tv, 4.0), ["temperature=4"])
    refuse(args, "kl target missing", "kl", dict(student=z), "target is NULL")
    refuse(args, "kl temperature 0", "kl", dict(student=z, target=t), "temperature: 0, expected", ["temperature=0"])


# ---- topk_kl ---------------------------------------------------------------------------------

def teacher_topk(rng, tlogits, k):
    """The teacher cache: top-k ids (in a shuffled order: the loss must not rely on it), their
    log-probabilities at temperature 1, and the top-k mass."""
    t = np.asarray(tlogits, dtype=np.float64)
    lp = t - (np.log(np.exp(t - t.max(1, keepdims=True)).sum(1, keepdims=True)) + t.max(1, keepdims=True))
    ids = np.argsort(-lp, axis=1, kind="stable")[:, :k]
    for r in range(ids.shape[0]):
        rng.shuffle(ids[r])
    lpk = np.take_along_axis(lp, ids, 1)
    return i32(ids), f32(lpk), f32(np.exp(lpk).sum(1))


def topk_inputs(rng, N, W, k, tscale=2.0):
    t = tscale * rng.normal(size=(N, W))
    z = f32(t + 1.0 * rng.normal(size=(N, W)))
    ids, lp, P = teacher_topk(rng, t, k)
    return dict(student=z, topk_ids=ids, topk_logp=lp, topk_mass=P)


def run_topk(args, case, tensors, T=4.0, k=None, labels=None, grad_scale=1.0, extra=()):
    k = tensors["topk_ids"].shape[1] if k is None else k
    settings = [f"k={k}", f"temperature={T}"] + list(extra)
    if labels is not None:
        tensors = dict(tensors, labels=i32(labels))
    want = ref.topk_kl(tensors["student"], tensors["topk_ids"], tensors["topk_logp"], tensors["topk_mass"], T,
                       labels, -100)
    compare(args, case, "topk_kl", tensors, want, settings, grad_scale)


def cases_topk(args, rng):
    run_topk(args, "topk_kl N=6 W=517 k=8 T=4", topk_inputs(rng, 6, 517, 8), 4.0, grad_scale=1 / 6)
    run_topk(args, "topk_kl T=1", topk_inputs(rng, 4, 300, 5), 1.0)
    run_topk(args, "topk_kl T=2.5 k=1", topk_inputs(rng, 4, 77, 1), 2.5)
    run_topk(args, "topk_kl k=W", topk_inputs(rng, 3, 6, 6), 4.0)

    # Masked rows: labels == ignore_index, with garbage teacher data that must not be read.
    x = topk_inputs(rng, 5, 211, 4)
    y = rng.integers(0, 211, size=5)
    y[[0, 3]] = -100
    x["topk_ids"][0] = [-1, 5, 5, 999]
    x["topk_mass"][3] = np.nan
    run_topk(args, "topk_kl ignore_index rows", x, 4.0, labels=y, grad_scale=1 / 3)

    # Mass near 1 and near 0, for teacher (P) and student (Q). Rows combine P in
    # {0, 1e-7, 0.3, 1 - 2^-22, 1 - 6e-8, 1} with Q pushed near 0 or 1 by shifting the student's
    # logits on S by -/+ 25, or left alone.
    N, W, k = 18, 401, 6
    x = topk_inputs(rng, N, W, k)
    Ps = [0.0, 1e-7, 0.3, 1 - 2.0 ** -22, float(np.float32(1 - 6e-8)), 1.0]
    for r in range(N):
        x["topk_mass"][r] = Ps[r % 6]
        shift = [-25.0, 0.0, 25.0][r // 6]
        x["student"][r, x["topk_ids"][r]] += np.float32(shift)
    run_topk(args, "topk_kl mass near 0 and 1", x, 4.0)
    # A teacher with nearly all mass in its top-k, consistent cache (P from the log-probs).
    t = 2.0 * rng.normal(size=(3, 300))
    t[:, :5] += 18.0
    ids, lp, P = teacher_topk(rng, t, 5)
    z = f32(t + rng.normal(size=t.shape))
    run_topk(args, "topk_kl teacher mass ~1 (consistent)", dict(student=z, topk_ids=ids, topk_logp=lp, topk_mass=P))
    # A flat teacher over a large vocabulary: top-k mass near 0.
    t = 0.1 * rng.normal(size=(3, 4099))
    ids, lp, P = teacher_topk(rng, t, 3)
    z = f32(t + rng.normal(size=t.shape))
    run_topk(args, "topk_kl teacher mass ~0 W=4099", dict(student=z, topk_ids=ids, topk_logp=lp, topk_mass=P), 2.0)

    run_topk(args, "topk_kl W=151936 k=32 T=4", topk_inputs(rng, 2, VOCAB, 32, 3.0), 4.0, grad_scale=0.5)

    # Refusals.
    x = topk_inputs(rng, 3, 30, 4)
    big = topk_inputs(rng, 3, 60, 40)
    big["student"] = f32(big["student"][:, :30])
    refuse(args, "topk_kl k > W", "topk_kl", big, "k: 40, expected 1..30 (W, the vocabulary)", ["k=40"])
    refuse(args, "topk_kl k != setting", "topk_kl", x, "io k: 4, expected the k setting 32")
    refuse(args, "topk_kl k=0 setting", "topk_kl", x, "k: 0, expected 1..", ["k=0"])
    refuse(args, "topk_kl alpha is the caller's", "topk_kl", x, "alpha: unknown key", ["k=4", "alpha=0.5"])
    d = dict(x, topk_ids=x["topk_ids"].copy())
    d["topk_ids"][2, 3] = d["topk_ids"][2, 1]
    refuse(args, "topk_kl duplicate id", "topk_kl", d,
           f"topk_ids row 2: id {d['topk_ids'][2, 1]} appears twice", ["k=4"])
    d = dict(x, topk_ids=x["topk_ids"].copy())
    d["topk_ids"][1, 0] = 30
    refuse(args, "topk_kl id = W", "topk_kl", d, "topk_ids[1, 0] (row 1): 30, expected 0..29", ["k=4"])
    d = dict(x, topk_ids=x["topk_ids"].copy())
    d["topk_ids"][0, 2] = -3
    refuse(args, "topk_kl id < 0", "topk_kl", d, "topk_ids[0, 2] (row 0): -3, expected 0..29", ["k=4"])
    d = dict(x, topk_mass=x["topk_mass"].copy())
    d["topk_mass"][2] = 1.5
    refuse(args, "topk_kl mass > 1", "topk_kl", d, "topk_mass[2] (row 2): 1.5, expected 0..1", ["k=4"])
    d = dict(x, topk_logp=x["topk_logp"].copy())
    d["topk_logp"][1, 1] = np.nan
    refuse(args, "topk_kl logp NaN", "topk_kl", d, "topk_logp[1, 1] (row 1): nan", ["k=4"])
    refuse(args, "topk_kl teacher missing", "topk_kl", dict(student=x["student"]), "must all be given", ["k=4"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    seed = int(os.environ.get("GRAFT_TEST_SEED", np.random.SeedSequence().entropy % (2 ** 32)))
    print(f"check_losses: seed {seed} (GRAFT_TEST_SEED={seed} replays this run)", flush=True)
    rng = np.random.default_rng(seed)
    for cases in (cases_nmse, cases_ce, cases_kl, cases_topk):
        cases(args, rng)
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    if failures:
        print(f"check_losses: {len(failures)} of {n_checks} checks failed (seed {seed})", file=sys.stderr)
        return 1
    print(f"check_losses: {n_checks} checks passed (seed {seed}); worst nmse {worst[0]:.2e} ({worst[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
