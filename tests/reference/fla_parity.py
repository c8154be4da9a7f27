"""tests/reference/fla_parity.py: graft's CPU GLA and RWKV-7 plugins against flash-linear-attention.

Run on a GPU machine that has PyTorch, Triton and FLA's `fla` package (carried, never committed):

    python3 tests/reference/fla_parity.py --mixer-apply build/bin/mixer_apply --out OUTDIR [--T 128]

For each of the original experiment's mixer configs (GLA: hidden 2048, 16 heads, expand_k 1,
expand_v 1, short conv 4, swish gate, norm eps 1e-6; RWKV-7: head_dim 128, decay/gate/a/v low
ranks 64/128/64/16, norm eps 1e-6, as producer (layer 0) and consumer (layer 1 with a v_first
input)), it builds FLA's layer in fp32 on the GPU with random weights (FLA's init plus noise, so
no gradient is trivially zero), runs forward and backward on random x and upstream dy, writes the
same weights and inputs to a safetensors file, runs graft's plugin on them with mixer_apply
(CPU, fp32), and prints the NMSE of the output, the input gradient, every parameter gradient and
the carried stream. TF32 is disabled so that FLA computes in fp32. Exit status: 0 when every NMSE
is under --tol (1e-6).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", ".."))  # a carried fla/ at the repository root
import st  # noqa: E402


def fla_commit():
    p = os.path.join(here, "..", "..", "fla", "COMMIT")
    return open(p).read().strip() if os.path.exists(p) else "unknown"


def perturb(layer, gen):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            scale = 0.02 if p.dim() >= 2 else 0.1
            p.add_(torch.randn(p.shape, generator=gen, device="cpu").to(p.device) * scale)


def run_case(name, layer, case, mixer, args, gen, producer=False, consumer=False):
    dev = "cuda"
    B, T, C = args.B, args.T, 2048
    layer = layer.to(dev).float()
    perturb(layer, gen)
    x = torch.randn(B, T, C, generator=gen).to(dev).requires_grad_(True)
    dy = torch.randn(B, T, C, generator=gen).to(dev)
    vf = torch.randn(B, T, C, generator=gen).to(dev).requires_grad_(True) if consumer else None
    if mixer == "gla":
        y = layer(x)[0]
        carry_out = None
    else:
        out = layer(x, v_first=vf)
        y, carry_out = out[0], out[-1]
    try:
        (y * dy).sum().backward()
        have_grad = True
    except Exception as e:  # an FLA mode without a backward: compare the forward only
        print(f"    ({name}: FLA backward unavailable: {type(e).__name__}: {str(e)[:200]}; forward only)", flush=True)
        have_grad = False
    tensors = {"x": x.detach().cpu().numpy(), "dy": dy.cpu().numpy()}
    if consumer:
        tensors["carry"] = vf.detach().cpu().numpy()
    for n, p in layer.named_parameters():
        tensors["mixer." + n] = p.detach().cpu().numpy()
    os.makedirs(args.out, exist_ok=True)
    fin = os.path.join(args.out, f"{name}_in.safetensors")
    fout = os.path.join(args.out, f"{name}_graft.safetensors")
    st.save(fin, tensors)
    subprocess.run([args.mixer_apply, "--plugin", mixer, "--case", case, "--in", fin, "--out", fout], check=True)
    g, _ = st.load(fout)
    if producer:  # v_first = v_proj(x + (x_{t-1} - x_t) * x_v): independent of any kernel
        with torch.no_grad():
            xs = torch.nn.functional.pad(x, (0, 0, 1, -1)) - x
            v0 = ((x + xs * layer.x_v) @ layer.v_proj.weight.T).cpu().numpy()
        print(f"    diagnostic: v_first by hand vs FLA nmse {st.nmse(carry_out.detach().cpu().numpy(), v0):.3e}, "
              f"vs graft nmse {st.nmse(g['carry_out'], v0):.3e}", flush=True)
    rows = [("y", st.nmse(g["y"], y.detach().cpu().numpy()))]
    if producer:
        rows.append(("v_first (carry out)", st.nmse(g["carry_out"], carry_out.detach().cpu().numpy())))
    if not have_grad:
        for f in (fin, fout):
            os.remove(f)
        return rows
    rows.append(("dx", st.nmse(g["dx"], x.grad.cpu().numpy())))
    if consumer:
        rows.append(("d v_first (dcarry)", st.nmse(g["dcarry"], vf.grad.cpu().numpy())))
    for n, p in layer.named_parameters():
        rows.append(("grad " + n, st.nmse(g["grad.mixer." + n], p.grad.cpu().numpy())))
    for f in (fin, fout):
        os.remove(f)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixer-apply", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-gla", action="store_true")
    ap.add_argument("--rwkv-mode", default="chunk", help="FLA's RWKV7Attention mode (chunk | fused_recurrent)")
    ap.add_argument("--quick", action="store_true", help="GLA in its fused_recurrent mode only")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from fla.layers import GatedLinearAttention, RWKV7Attention

    gen = torch.Generator().manual_seed(args.seed)
    results = {}
    gla_case = ("n_embd=2048 n_head=16 n_kv_head=8 head_dim=128 num_heads=16 expand_k=1 expand_v=1 "
                "use_short_conv=true conv_size=4 norm_eps=1e-6")
    import time

    def progress(case):
        print(f"[{time.time() - t_start:7.1f} s] {case}:", flush=True)
        for n, e in results[case]:
            print(f"    {n:45s} nmse {e:.3e}", flush=True)

    t_start = time.time()
    for mode in ("fused_recurrent", "chunk")[: 0 if args.skip_gla else 1 if args.quick else 2]:
        torch.manual_seed(args.seed)
        layer = GatedLinearAttention(mode=mode, hidden_size=2048, num_heads=16, expand_k=1.0, expand_v=1.0,
                                     use_short_conv=True, conv_size=4, norm_eps=1e-6, gate_fn="swish")
        results[f"gla ({mode})"] = run_case(f"gla_{mode}", layer, gla_case, "gla", args, gen)
        progress(f"gla ({mode})")
    rw = ("n_embd=2048 n_head=16 n_kv_head=8 head_dim=128 decay_low_rank_dim=64 gate_low_rank_dim=128 "
          "a_low_rank_dim=64 v_low_rank_dim=16 norm_eps=1e-6 n_layer=28")
    for idx in (0, 1):
        torch.manual_seed(args.seed)
        layer = RWKV7Attention(mode=args.rwkv_mode, hidden_size=2048, head_dim=128, decay_low_rank_dim=64,
                               gate_low_rank_dim=128, a_low_rank_dim=64, v_low_rank_dim=16, norm_eps=1e-6,
                               layer_idx=idx, fuse_norm=True, num_hidden_layers=28)
        role = "producer" if idx == 0 else "consumer"
        results[f"rwkv7 ({role})"] = run_case(f"rwkv7_{role}", layer,
                                              rw + f" layer_index={idx} carry_role={role}", "rwkv7", args, gen,
                                              producer=idx == 0, consumer=idx == 1)
        progress(f"rwkv7 ({role})")
    worst = 0.0
    lines = [f"FLA commit {fla_commit()}, torch {torch.__version__}, {torch.cuda.get_device_name()}, "
             f"B={args.B} T={args.T}, fp32 (TF32 off)"]
    for case, rows in results.items():
        lines.append(f"\n{case}")
        for n, e in rows:
            worst = max(worst, e)
            lines.append(f"  {'ok  ' if e < args.tol else 'FAIL'} {n:45s} nmse {e:.3e}")
    lines.append(f"\nworst NMSE {worst:.3e} (tol {args.tol:g})")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "fla_parity.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "fla_parity.json"), "w") as f:
        json.dump({k: dict(v) for k, v in results.items()}, f, indent=1)
    return 0 if worst < args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
