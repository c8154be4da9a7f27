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

Two things about FLA's RWKV7Attention (commit bc3b101d) that a comparison must know:
* Its token-shift mix `fused_addcmul_rwkv7` writes, in backward, the gradient of its input INTO the
  input tensor (addcmul_bwd1(..., inplace=True): fine inside FLA's model, where that input is a
  norm's output). So after backward the caller's x holds dL/dx, not x. This script therefore takes
  its copies of x, dy and v_first BEFORE calling FLA (an earlier version saved x after backward, so
  graft was fed a gradient as its input and every RWKV-7 tensor "differed").
* The layer ignores `mode` for the kernel choice: `self.training or T >= 64` runs `chunk_rwkv7`,
  otherwise the forward-only `fused_mul_recurrent_rwkv7`. --rwkv-core picks the recurrence:
  naive = FLA's own pure-torch `dplr_recurrence` (autograd gives every gradient; FLA's Triton
  helpers for token shift, addcmul, k update, L2 norm, GroupNorm and gate correction still run),
  chunk = FLA's Triton chunk kernel (fp32 compilation/autotuning takes minutes),
  fused_recurrent = FLA's Triton recurrent kernel (layer in eval mode, T < 64, forward only).
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
    import fla
    p = os.path.join(os.path.dirname(fla.__file__), "COMMIT")
    return open(p).read().strip() if os.path.exists(p) else "unknown"


def naive_rwkv7(r, w, k, v, a, b, scale=1.0, initial_state=None, output_final_state=False, cu_seqlens=None,
                **kwargs):
    """chunk_rwkv7's contract computed by FLA's pure-torch dplr_recurrence ([B, H, T, K] layout, which
    multiplies q by K^-1/2 itself: undone here so that the net scale is `scale`)."""
    from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence
    if cu_seqlens is not None:
        raise ValueError("naive_rwkv7: cu_seqlens is not supported")
    q = r * (scale * r.shape[-1] ** 0.5)
    tr = lambda t: t.transpose(1, 2)  # noqa: E731
    o, s = dplr_recurrence(tr(q), tr(k), tr(v), tr(a), tr(b), tr(w), initial_state, output_final_state)
    return tr(o), s


def perturb(layer, gen):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            scale = 0.02 if p.dim() >= 2 else 0.1
            p.add_(torch.randn(p.shape, generator=gen, device="cpu").to(p.device) * scale)


def use_torch_helpers(layer):
    """Swaps FLA's Triton helpers in RWKV7Attention.forward for FLA's own pure-torch references
    (token_shift_ref, torch_addcmul_rwkv7, k_update_ref, gate_output_correction_ref, GroupNormRef's
    forward; the L2 norm written out as FLA's kernel computes it, x / sqrt(sum x^2 + eps)). The layer's
    own code and parameters are unchanged; nothing is compiled."""
    import functools

    import fla.layers.rwkv7 as m
    from fla.modules.layernorm import GroupNormRef
    from fla.modules.token_shift import token_shift_ref
    from fla.ops.rwkv7.fused_addcmul import torch_addcmul_rwkv7
    from fla.ops.rwkv7.fused_k_update import k_update_ref
    from fla.ops.rwkv7.gate_output_correction import gate_output_correction_ref

    def token_shift(x, cu_seqlens=None, output_cache=False, cache=None, **kw):
        if cache is not None:
            raise ValueError("use_torch_helpers: no decode cache")
        d = token_shift_ref(x, cu_seqlens)
        return (d, x[:, -1]) if output_cache else d

    m.token_shift = token_shift
    m.fused_addcmul_rwkv7 = torch_addcmul_rwkv7
    m.fused_k_rwkv7 = lambda k, a, ka, *args, **kw: k_update_ref(k, a, ka)
    m.gate_output_correction = gate_output_correction_ref
    m.l2_norm = lambda x, eps=1e-6, **kw: x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)
    layer.g_norm.forward = functools.partial(GroupNormRef.forward, layer.g_norm)


def run_case(name, layer, case, mixer, args, gen, producer=False, consumer=False):
    dev = "cuda"
    dt = torch.bfloat16 if args.fla_dtype == "bf16" else torch.float32
    B, T, C = args.B, args.T, 2048
    layer = layer.to(dev).float()
    perturb(layer, gen)
    layer = layer.to(dt)
    if mixer == "rwkv7" and args.fla_helpers == "torch":
        use_torch_helpers(layer)
    if mixer == "rwkv7" and args.rwkv_core == "fused_recurrent":
        layer.eval()  # T < 64 and not training: FLA's forward-only fused_mul_recurrent_rwkv7
    # inputs rounded to FLA's dtype; graft gets exactly those values in fp32, copied BEFORE FLA runs
    x = torch.randn(B, T, C, generator=gen).to(dev).to(dt).requires_grad_(True)
    dy = torch.randn(B, T, C, generator=gen).to(dev).to(dt)
    vf = torch.randn(B, T, C, generator=gen).to(dev).to(dt).requires_grad_(True) if consumer else None
    tensors = {"x": x.detach().float().cpu().numpy().copy(), "dy": dy.float().cpu().numpy().copy()}
    if consumer:
        tensors["carry"] = vf.detach().float().cpu().numpy().copy()
    for n, p in layer.named_parameters():
        tensors["mixer." + n] = p.detach().float().cpu().numpy().copy()
    if mixer == "gla":
        y = layer(x)[0]
        carry_out = None
    else:
        out = layer(x, v_first=vf)
        y, carry_out = out[0], out[-1]
    forward_only = mixer == "rwkv7" and args.rwkv_core == "fused_recurrent"
    try:
        if forward_only:  # the Triton recurrence is outside autograd: a backward would silently skip it
            raise NotImplementedError("fused_mul_recurrent_rwkv7 is forward-only")
        (y * dy).sum().backward()
        have_grad = True
    except Exception as e:  # an FLA mode without a backward: compare the forward only
        print(f"    ({name}: FLA backward unavailable: {type(e).__name__}: {str(e)[:200]}; forward only)", flush=True)
        have_grad = False
    x_after = x.detach().float().cpu().numpy()
    if not np.array_equal(x_after, tensors["x"]):
        print(f"    note: FLA overwrote the input x during {'backward' if have_grad else 'forward'} "
              f"(nmse of x after vs before {st.nmse(x_after, tensors['x']):.3e}); graft gets the copy from before",
              flush=True)
    os.makedirs(args.out, exist_ok=True)
    fin = os.path.join(args.out, f"{name}_in.safetensors")
    fout = os.path.join(args.out, f"{name}_graft.safetensors")
    st.save(fin, tensors)
    subprocess.run([args.mixer_apply, "--plugin", mixer, "--case", case, "--in", fin, "--out", fout], check=True)
    g, _ = st.load(fout)
    if producer:  # v_first = v_proj(x + (x_{t-1} - x_t) * x_v): independent of any kernel
        with torch.no_grad():
            x0 = torch.from_numpy(tensors["x"]).to(dev).double()
            xs = torch.nn.functional.pad(x0, (0, 0, 1, -1)) - x0
            v0 = ((x0 + xs * layer.x_v.double()) @ layer.v_proj.weight.double().T).cpu().numpy()
        print(f"    diagnostic: v_first by hand vs FLA nmse {st.nmse(carry_out.detach().float().cpu().numpy(), v0):.3e}, "
              f"vs graft nmse {st.nmse(g['carry_out'], v0):.3e}", flush=True)
    rows = [("y", st.nmse(g["y"], y.detach().float().cpu().numpy()))]
    if producer:
        rows.append(("v_first (carry out)", st.nmse(g["carry_out"], carry_out.detach().float().cpu().numpy())))
    if not have_grad:
        for f in (fin, fout):
            os.remove(f)
        return rows
    rows.append(("dx", st.nmse(g["dx"], x.grad.float().cpu().numpy())))
    if consumer:
        rows.append(("d v_first (dcarry)", st.nmse(g["dcarry"], vf.grad.float().cpu().numpy())))
    for n, p in layer.named_parameters():
        rows.append(("grad " + n, st.nmse(g["grad.mixer." + n], p.grad.float().cpu().numpy())))
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
    ap.add_argument("--rwkv-core", default="naive", choices=("naive", "chunk", "fused_recurrent"),
                    help="FLA's RWKV-7 recurrence: its pure-torch dplr_recurrence (default), its Triton chunk "
                         "kernel, or its forward-only Triton fused_recurrent kernel (T < 64)")
    ap.add_argument("--fla-helpers", default="triton", choices=("triton", "torch"),
                    help="RWKV-7: FLA's Triton helper kernels (default) or FLA's pure-torch references for them "
                         "(no compilation: FLA's fp32 backward helpers take minutes to autotune on a cold machine)")
    ap.add_argument("--fla-dtype", default="fp32", choices=("fp32", "bf16"),
                    help="FLA's parameter/activation dtype (graft always runs fp32 on the same values)")
    ap.add_argument("--quick", action="store_true", help="GLA in its fused_recurrent mode only")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from fla.layers import GatedLinearAttention, RWKV7Attention
    if args.rwkv_core == "naive":
        import fla.layers.rwkv7
        fla.layers.rwkv7.chunk_rwkv7 = naive_rwkv7
    if args.rwkv_core == "fused_recurrent" and args.T >= 64:
        ap.error("--rwkv-core fused_recurrent needs --T < 64 (FLA switches to chunk at T >= 64)")

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
        layer = RWKV7Attention(mode="chunk", hidden_size=2048, head_dim=128, decay_low_rank_dim=64,
                               gate_low_rank_dim=128, a_low_rank_dim=64, v_low_rank_dim=16, norm_eps=1e-6,
                               layer_idx=idx, fuse_norm=True, num_hidden_layers=28)
        role = "producer" if idx == 0 else "consumer"
        results[f"rwkv7 ({role})"] = run_case(f"rwkv7_{role}", layer,
                                              rw + f" layer_index={idx} carry_role={role}", "rwkv7", args, gen,
                                              producer=idx == 0, consumer=idx == 1)
        progress(f"rwkv7 ({role})")
    worst = 0.0
    lines = [f"FLA commit {fla_commit()}, torch {torch.__version__}, {torch.cuda.get_device_name()}, "
             f"B={args.B} T={args.T}, FLA in {args.fla_dtype} (TF32 off), RWKV-7 recurrence: {args.rwkv_core}, "
             f"helpers: {args.fla_helpers}"]
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
