"""stage0_common.py: what the Stage 0 benches share (stage0_vs_original.py, stage0_finite.py): the
repository root, the GPU's name, the common command-line options, and a stage0 recipe of the e2e
synthetic corpus with a random-weight teacher of a config's shape."""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from e2e_util import make_corpus  # noqa: E402


def gpu_name():
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
        return r.stdout.strip() or "no GPU (nvidia-smi printed nothing)"
    except FileNotFoundError:
        return "no GPU (nvidia-smi not found)"


def parser(steps, batch, seq, layers, mixers, out):
    """The options both benches take, with their own defaults."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--graft", required=True)
    ap.add_argument("--config", default=os.path.join(ROOT, "bench", "configs", "qwen3-1.7b.json"))
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--seq", type=int, default=seq)
    ap.add_argument("--layers", default=layers, help="comma list of 0-based layers, or all")
    ap.add_argument("--mixers", default=mixers)
    ap.add_argument("--lr", default="1.0e-3")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    ap.add_argument("--out", default=out)
    return ap


def stage0_recipe(a, mixers_yaml, sentences, warmup, eval_every=0, eval_batches=1, prefix="graft-s0-"):
    """Writes the corpus (`sentences` lines) and a one-stage stage0 recipe for the options `a` into a
    fresh temporary folder. Returns (recipe path, work folder)."""
    work = tempfile.mkdtemp(prefix=prefix)
    manifest = make_corpus(a.graft, ROOT, work, sentences=sentences)
    layers = a.layers if a.layers == "all" else f"[{a.layers}]"
    recipe = os.path.join(work, "s0.yaml")
    with open(recipe, "w") as f:
        f.write(f"""model: {{config: {a.config}, seed: 1}}
tokenizer: {ROOT}/data/demo-tokenizer/tokenizer.json
data: {{train: {manifest}, heldout: 0.05, seed: 5}}
device: {a.device}
run_log: {work}/run.h5
seed: 11
stages:
  - kind: stage0
    layers: {layers}
    mixers: {{{mixers_yaml}}}
    steps: {a.steps}
    batch: {a.batch}
    seq_len: {a.seq}
    lr: {a.lr}
    warmup: {warmup}
    eval_every: {eval_every}
    eval_batches: {eval_batches}
    out: {work}/stage0
""")
    return recipe, work
