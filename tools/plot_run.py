#!/usr/bin/python3
"""tools/plot_run.py RUNLOG.h5 OUTDIR: PNG plots of a graft run log (docs/runlog.md).

Per stage group /stages/<index>_<kind>:
  loss_<group>.png            train loss (and ce, kl where finite) against step; held-out normalized
                              loss of every Stage 0 (layer, mixer) pair where evaluated
  stage0_heatmap_<group>.png  Stage 0 result table: held-out normalized loss, layers on x, mixers
                              on y, values annotated
  eval_<group>.png            eval table: one bar per (model, metric)
  bench_<group>.png           bench table: time to first token, decode tokens/s and KV + state
                              bytes against context (log-log), one line per (model, batch)
Reads only what docs/runlog.md documents, and works on a file a run is still writing (SWMR).
"""
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def text(x):
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def open_log(path):
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except OSError:
        return h5py.File(path, "r")


def plot_losses(g, name, out):
    t = g["train"][:] if "train" in g else np.zeros(0)
    p = g["stage0_pairs"][:] if "stage0_pairs" in g else np.zeros(0)
    if len(t) == 0 and len(p) == 0:
        return None
    fig, axes = plt.subplots(1, 2 if len(p) else 1, figsize=(12 if len(p) else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    if len(p):  # Stage 0: one curve per pair (its train table holds their mean, drawn dashed)
        for (layer, mixer) in sorted(set((int(r["layer"]), text(r["mixer"])) for r in p)):
            sel = p[(p["layer"] == layer) & (p["mixer"] == mixer.encode())]
            ok = np.isfinite(sel["train_nloss"])
            ax.plot(sel["step"][ok], sel["train_nloss"][ok], label=f"L{layer} {mixer}")
        if len(t):
            ax.plot(t["step"], t["loss"], "k--", label="mean")
    elif len(t):
        ax.plot(t["step"], t["loss"], label="loss")
        for f in ("ce", "kl"):
            if np.isfinite(t[f]).any():
                ax.plot(t["step"], t[f], label=f, alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title(f"{name}: training")
    ax.legend(fontsize=7)
    if len(p):
        ax = axes[0][1]
        for (layer, mixer) in sorted(set((int(r["layer"]), text(r["mixer"])) for r in p)):
            sel = p[(p["layer"] == layer) & (p["mixer"] == mixer.encode())]
            ok = np.isfinite(sel["heldout_nloss"])
            if ok.any():
                ax.plot(sel["step"][ok], sel["heldout_nloss"][ok], marker="o", ms=3, label=f"L{layer} {mixer}")
        ax.set_xlabel("step")
        ax.set_ylabel("held-out normalized loss")
        ax.set_title(f"{name}: held-out (Stage 0 pairs)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, f"loss_{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_heatmap(g, name, out):
    if "stage0_results" not in g or len(g["stage0_results"]) == 0:
        return None
    r = g["stage0_results"][:]
    layers = sorted(set(int(x) for x in r["layer"]))
    mixers = sorted(set(text(x) for x in r["mixer"]))
    grid = np.full((len(mixers), len(layers)), np.nan)
    for row in r:
        grid[mixers.index(text(row["mixer"])), layers.index(int(row["layer"]))] = row["heldout_nloss"]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(layers) + 2), max(2.5, 0.6 * len(mixers) + 1.5)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis_r")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(mixers)), mixers)
    ax.set_xlabel("layer (0-based)")
    ax.set_ylabel("mixer")
    ax.set_title(f"{name}: held-out normalized loss")
    for i in range(len(mixers)):
        for j in range(len(layers)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = os.path.join(out, f"stage0_heatmap_{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_eval(g, name, out):
    if "eval" not in g or len(g["eval"]) == 0:
        return None
    e = g["eval"][:]
    labels = [f"{text(r['model'])}\n{text(r['metric'])}" for r in e]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(e) + 1), 4))
    bars = ax.bar(range(len(e)), e["value"])
    ax.set_xticks(range(len(e)), labels, fontsize=8)
    for b, v in zip(bars, e["value"]):
        ax.annotate(f"{v:.4g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_title(f"{name}: eval")
    fig.tight_layout()
    path = os.path.join(out, f"eval_{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_bench(g, name, out):
    if "bench" not in g or len(g["bench"]) == 0:
        return None
    b = g["bench"][:]
    models = list(dict.fromkeys(text(x) for x in b["model"]))  # in the order measured
    batches = sorted(set(int(x) for x in b["batch"]))
    panels = (("ttft_ms", "time to first token (ms)"), ("decode_tok_s", "decode tokens/s (all sequences)"),
              ("state_bytes", "KV cache + state (MiB)"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (field, label) in zip(axes, panels):
        for mi, model in enumerate(models):
            for bi, batch in enumerate(batches):
                sel = b[(b["model"] == model.encode()) & (b["batch"] == batch)]
                if len(sel) == 0:
                    continue
                sel = np.sort(sel, order="context")
                y = sel[field] / 1048576.0 if field == "state_bytes" else sel[field]
                ax.plot(sel["context"], y, marker="o", ms=3, color=f"C{mi}",
                        linestyle=["-", "--", ":", "-."][bi % 4], label=f"{model} B={batch}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (prompt tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: generation benchmark (same process)")
    fig.tight_layout()
    path = os.path.join(out, f"bench_{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log, out = argv[1], argv[2]
    os.makedirs(out, exist_ok=True)
    written = []
    with open_log(log) as f:
        stages = f.get("stages", {})
        for name in sorted(stages, key=lambda n: int(stages[n].attrs["index"])):
            g = stages[name]
            for fn in (plot_losses, plot_heatmap, plot_eval, plot_bench):
                p = fn(g, name, out)
                if p:
                    written.append(p)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
