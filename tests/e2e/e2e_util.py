"""Shared by the e2e tests: a small fixed synthetic corpus tokenized with the committed demo tokenizer, a recipe
written from a template into a scratch directory, and graft run as a subprocess."""
import os
import subprocess


def make_corpus(graft, src, work, sentences=12000):
    """A fixed synthetic English corpus (a small seeded grammar: learnable, and the same on every
    machine and every commit), tokenized with the committed demo tokenizer into work/shards."""
    import random
    rng = random.Random(20261123)
    adj = "old young great small wise dark bright silent ancient holy".split()
    noun = "king people city river house servant land prophet mountain temple sword word".split()
    verb = "saw built called found kept gave loved left blessed judged".split()
    place = "in the morning|at the gate|by the river|in the field|upon the hill|before the temple".split("|")
    lines = []
    for _ in range(sentences):
        s = f"the {rng.choice(adj)} {rng.choice(noun)} {rng.choice(verb)} the {rng.choice(noun)}"
        if rng.random() < 0.5:
            s += " " + rng.choice(place)
        if rng.random() < 0.3:
            s += f", and the {rng.choice(noun)} {rng.choice(verb)} him"
        lines.append(s.capitalize() + ".")
    text = os.path.join(work, "corpus.txt")
    with open(text, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = os.path.join(work, "shards")
    subprocess.run([graft, "tokenize", "--tokenizer", os.path.join(src, "data", "demo-tokenizer", "tokenizer.json"),
                    "--out", out, text], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(out, "manifest.json")


def write_recipe(src, work, name, stages, threads=1, device="cpu", config=None, model=None):
    """A recipe for the e2e-tiny model (or the model config file `config`; or the checkpoint
    directory `model`) on the corpus in work/, with the given stages (YAML text), on `device`
    (cpu, cuda, cuda:N)."""
    config = config or f"{src}/recipes/models/e2e-tiny.json"
    model_line = f"{{config: {config}, seed: 1}}" if model is None else model
    text = f"""model: {model_line}
tokenizer: {src}/data/demo-tokenizer/tokenizer.json
data: {{train: {work}/shards/manifest.json, heldout: 0.05, seed: 5}}
device: {device}
run_log: {work}/{name}/run.h5
seed: 11
threads: {threads}
stages:
{stages}"""
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(text.replace("@OUT@", os.path.join(work, name)))
    return path


def text(x):
    """An HDF5 string field as str (h5py hands fixed-length strings back as bytes)."""
    return x.decode() if isinstance(x, bytes) else x


def graft_env():
    env = dict(os.environ)
    env.setdefault("GRAFT_THREADS", "1")
    return env


def start(argv):
    """GRAFT SRC WORK from the command line; WORK emptied and given the corpus."""
    import shutil
    graft, src, work = argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    make_corpus(graft, src, work)
    return graft, src, work


class Checks:
    """check(cond, what) prints ok/FAIL per assertion; finish() exits with the verdict."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            self.failures.append(what)

    def finish(self):
        import sys
        print(f"{len(self.failures)} failure(s)")
        sys.exit(1 if self.failures else 0)


def cuda_setup(argv, hidden_size, intermediate_size):
    """What the CUDA e2e tests share: GRAFT SRC WORK from argv (WORK given the corpus), the device
    (GRAFT_E2E_DEVICE=cpu runs the "gpu" side on the CPU: a dry run of a test on a machine without a
    GPU), and an e2e-tiny config with 128-wide heads (the CUDA mixer kernels serve those only)
    written to WORK. Exits 77 (skipped) when this graft cannot open the device (--check opens the
    recipe's device), 1 when the probe fails otherwise. Returns graft, src, work, device, config."""
    import json
    import sys
    device = os.environ.get("GRAFT_E2E_DEVICE", "cuda")
    graft, src, work = start(argv)
    with open(os.path.join(src, "recipes", "models", "e2e-tiny.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=hidden_size, intermediate_size=intermediate_size, num_attention_heads=2,
               num_key_value_heads=1, head_dim=128)
    config = os.path.join(work, f"e2e-tiny-d{hidden_size}.json")
    with open(config, "w") as f:
        json.dump(cfg, f, indent=1)
    probe = write_recipe(src, work, "probe", "  - {kind: select, policy: count, count: 1, out: @OUT@/x.yaml}",
                         device=device, config=config)
    r = subprocess.run([graft, "run", probe, "--check"], capture_output=True, text=True, env=graft_env())
    if r.returncode != 0:
        msg = (r.stdout + r.stderr).strip()
        if "no CUDA device is available" in msg or "built without CUDA" in msg:
            print(f"skipped: {msg[-300:]}")
            sys.exit(77)
        print(f"FAIL probe: {msg}")
        sys.exit(1)
    return graft, src, work, device, config
