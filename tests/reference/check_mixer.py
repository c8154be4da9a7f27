#!/usr/bin/env python3
"""tests/reference/check_mixer.py DUMP: checks a mixer plugin's C forward and backward against its
float64 PyTorch reference.

DUMP is a safetensors file written by `graft_conformance --dump` (tests/plugins): __metadata__
holds the case (all keys as strings, "mixer" names the plugin), the tensors are the parameters
under their declared names, x, dy, y, dx, "grad.<param>", and for a mixer with a carried stream
"carry" and "dcarry". tests/reference/<mixer>_ref.py must define

    forward(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: dict, carry: torch.Tensor | None)
        -> (y, carry_out | None)

in float64, written as the naive formula (plain loops, not a fused kernel). The check runs
autograd of L = <y, dy> (+ <carry_out, dcarry> for a producer, whose dump holds the upstream
dcarry it read) and requires NMSE < 1e-9 for y, dx, every parameter gradient, the producer's
carry and the consumer's dcarry (gradient wrt the carry input). Exit status 0 = pass.
"""
import importlib
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

TOL = 1e-9


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tensors, meta = st.load(sys.argv[1])
    name = meta["mixer"]
    ref = importlib.import_module(f"{name}_ref")
    role = meta.get("carry_role", "none")
    t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in tensors.items()}
    skip = {"x", "dy", "y", "dx", "carry", "dcarry"}
    params = {k: v.clone().requires_grad_(True) for k, v in t.items()
              if k not in skip and not k.startswith("grad.")}
    x = t["x"].clone().requires_grad_(True)
    carry = None
    if role == "consumer":
        carry = t["carry"].clone().requires_grad_(True)
    y, carry_out = ref.forward(params, x, dict(meta), carry)
    loss = (y * t["dy"]).sum()
    if role == "producer":
        loss = loss + (carry_out * t["dcarry"]).sum()
    loss.backward()

    rows = [("y", y.detach(), t["y"]), ("dx", x.grad, t["dx"])]
    for k in sorted(params):
        g = params[k].grad
        if g is None:
            g = torch.zeros_like(params[k])
        rows.append(("grad." + k, g, t["grad." + k]))
    if role == "producer":
        rows.append(("carry", carry_out.detach(), t["carry"]))
    if role == "consumer":
        rows.append(("dcarry", carry.grad, t["dcarry"]))

    print(f"mixer {name} seed {meta.get('seed')} case "
          + " ".join(f"{k}={v}" for k, v in meta.items() if k not in ("mixer", "seed", "format")))
    print(f"{'tensor':<40} {'max|diff|':>12} {'nmse':>12}  verdict")
    bad = 0
    for nm, ref_v, got in rows:
        ref_np = ref_v.numpy()
        got_np = got.numpy()
        if ref_np.shape != got_np.shape:
            print(f"{nm:<40} shape {got_np.shape} vs reference {ref_np.shape}  FAIL")
            bad += 1
            continue
        e = st.nmse(got_np, ref_np)
        diff = np.abs(got_np - ref_np)
        md = float(diff.max()) if diff.size else 0.0
        ok = np.isfinite(got_np).all() and e < TOL
        first = ""
        if not ok:
            bad += 1
            i = int(np.argmax(diff.reshape(-1))) if diff.size else 0
            first = f" (worst index {np.unravel_index(i, diff.shape)}: {got_np.reshape(-1)[i]:.8g} vs " \
                    f"{ref_np.reshape(-1)[i]:.8g})"
        print(f"{nm:<40} {md:12.3e} {e:12.3e}  {'ok' if ok else 'FAIL'}{first}")
    print("PASS" if not bad else f"FAIL: {bad} tensors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
