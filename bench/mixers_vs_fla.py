"""mixers_vs_fla.py: graft's mixer layers on CUDA against their peers, one process per side, same
device, same shapes (Qwen3-1.7B-sized layer: hidden 2048, 16 heads of 128):

  GLA      graft plugins/gla (libgraft_gla.so, via bench/mixers_vs_fla_driver) vs FLA's
           GatedLinearAttention(mode="chunk", hidden 2048, 16 heads, expand 1, conv 4, swish; bf16)
  softmax  graft plugins/softmax vs transformers' Qwen3Attention (attn_implementation "sdpa",
           16 q heads / 8 kv heads, bf16; RoPE cos/sin computed once outside the timed region)
  RWKV-7   slot: graft plugins/rwkv7 vs FLA's RWKV7Attention, when --rwkv7 names its plugin .so;
           --rwkv7-chunk adds a row with graft's chunked forward (GRAFT_RWKV7_CHUNK=1), same peer

Shapes: B=4 T=2048 forward+backward (parameter and input gradients), B=1 T=8192 and T=32768
forward (inference: torch.no_grad / no saved activations). Peers timed with triton's do_bench
(CUDA events, median); graft by the driver (CUDA events, median of 20 after 3 warm-ups). Weights
are random with FLA's init scale (N(0, 0.02^2)) on both sides: timing does not depend on their
values, and agreement of the functions is checked elsewhere (tests/reference/fla_parity.py).

FLA's Triton autotune takes minutes on a cold machine: by default its search spaces are trimmed to
num_warps in {4, 8} and num_stages in {2, 3} (bench/fla_autotune.py); --full-autotune keeps
them. FLA's RWKV7Attention still compiles for longer than one device call allows: keep Triton's
cache between calls (TRITON_CACHE_DIR and bench/triton_cache.sh save / restore) and run --only rwkv7
again.

  python3 bench/mixers_vs_fla.py --bin DIR [--rwkv7 DIR/libgraft_rwkv7.so] [--out results.md]
  (DIR from tests/plugins/cuda_standalone.sh; PYTHONPATH must reach FLA's fla/ package)
"""
import argparse
import datetime
import os
import subprocess
import sys

import fla_autotune
import torch
import triton

SHAPES = [("fwdbwd", 4, 2048), ("fwd", 1, 8192), ("fwd", 1, 32768)]


def bench(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=50, rep=200, return_mode="median")


def time_layer(call, shapes, C=2048):
    out = {}
    for pas, B, T in shapes:
        x = torch.randn(B, T, C, device="cuda", dtype=torch.bfloat16)
        try:
            if pas == "fwdbwd":
                xg = x.clone().requires_grad_(True)
                dy = torch.randn_like(x)

                def step():
                    y = call(xg)
                    y.backward(dy)
                out[(pas, B, T)] = bench(step)
            else:
                with torch.no_grad():
                    out[(pas, B, T)] = bench(lambda: call(x))
        except torch.cuda.OutOfMemoryError:
            out[(pas, B, T)] = float("nan")
        print(f"  peer {pas} B={B} T={T}: {out[(pas, B, T)]:.3f} ms", flush=True)
        del x
        torch.cuda.empty_cache()
    return out


def fla_gla():
    from fla.layers import GatedLinearAttention
    layer = GatedLinearAttention(mode="chunk", hidden_size=2048, num_heads=16, expand_k=1.0, expand_v=1.0,
                                 use_short_conv=True, conv_size=4, norm_eps=1e-6, gate_fn="swish")
    for p in layer.parameters():
        torch.nn.init.normal_(p, 0.0, 0.02) if p.dim() > 1 else None
    layer = layer.cuda().to(torch.bfloat16)
    return lambda x: layer(x)[0]


def qwen3_sdpa():
    from transformers.models.qwen3.configuration_qwen3 import Qwen3Config
    from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RotaryEmbedding
    cfg = Qwen3Config(hidden_size=2048, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                      rope_theta=1000000.0, max_position_embeddings=40960, rms_norm_eps=1e-6,
                      attn_implementation="sdpa")
    cfg._attn_implementation = "sdpa"
    attn = Qwen3Attention(cfg, layer_idx=0).cuda().to(torch.bfloat16)
    rope = Qwen3RotaryEmbedding(cfg).cuda()
    cache = {}

    def call(x):
        T = x.shape[1]
        if T not in cache:
            pos = torch.arange(T, device="cuda")[None]
            cache[T] = rope(x, pos)
        return attn(x, position_embeddings=cache[T], attention_mask=None)[0]
    return call


def fla_rwkv7():
    from fla.layers import RWKV7Attention
    layer = RWKV7Attention(mode="chunk", hidden_size=2048, head_dim=128, decay_low_rank_dim=64,
                           gate_low_rank_dim=128, a_low_rank_dim=64, v_low_rank_dim=16, norm_eps=1e-6,
                           layer_idx=0, fuse_norm=True, num_hidden_layers=28).cuda().to(torch.bfloat16)
    return lambda x: layer(x)[0]


def graft_times(driver, so, name, env=None):
    r = subprocess.run([driver, so, name], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, **(env or {})))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT"):
            _, _, pas, b, t, med, _mn = line.split()
            out[(pas, int(b[2:]), int(t[2:]))] = float(med)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder of cuda_standalone.sh's outputs")
    ap.add_argument("--rwkv7", help="libgraft_rwkv7.so with a CUDA path (the RWKV-7 row)")
    ap.add_argument("--rwkv7-chunk", action="store_true",
                    help="also time graft's RWKV-7 with GRAFT_RWKV7_CHUNK=1 (chunked forward) against the same peer")
    ap.add_argument("--out", help="append the table to this markdown file")
    ap.add_argument("--full-autotune", action="store_true")
    ap.add_argument("--only", choices=["gla", "softmax", "rwkv7"], action="append")
    args = ap.parse_args()
    if not args.full_autotune:
        fla_autotune.trim()
    driver = os.path.join(args.bin, "mixers_vs_fla_driver")
    rows = []
    todo = args.only or ["gla", "softmax", "rwkv7"]
    if "gla" in todo:
        print("graft gla", flush=True)
        g = graft_times(driver, os.path.join(args.bin, "libgraft_gla.so"), "gla")
        print("FLA GatedLinearAttention", flush=True)
        rows.append(("GLA", "FLA GatedLinearAttention (chunk)", g, time_layer(fla_gla(), SHAPES)))
    if "softmax" in todo:
        print("graft softmax", flush=True)
        g = graft_times(driver, os.path.join(args.bin, "libgraft_softmax.so"), "softmax")
        print("transformers Qwen3Attention (sdpa)", flush=True)
        rows.append(("softmax", "Qwen3Attention, SDPA", g, time_layer(qwen3_sdpa(), SHAPES)))
    if "rwkv7" in todo:
        if args.rwkv7:
            g = graft_times(driver, args.rwkv7, "rwkv7", {"GRAFT_RWKV7_CHUNK": "0"})
            gc = graft_times(driver, args.rwkv7, "rwkv7", {"GRAFT_RWKV7_CHUNK": "1"}) if args.rwkv7_chunk else None
            peer = time_layer(fla_rwkv7(), SHAPES)
            rows.append(("RWKV-7", "FLA RWKV7Attention (chunk)", g, peer))
            if gc is not None:
                rows.append(("RWKV-7, chunked fwd", "FLA RWKV7Attention (chunk)", gc, peer))
        else:
            rows.append(("RWKV-7", "FLA RWKV7Attention (chunk)", {}, {}))
    dev = torch.cuda.get_device_name()
    lines = [f"{datetime.date.today()} on {dev}, torch {torch.__version__}, triton {triton.__version__}, "
             f"FLA autotune {'full' if args.full_autotune else 'trimmed'}", "",
             "| mixer | peer | shape | graft ms | peer ms | peer / graft |", "|---|---|---|---|---|---|"]
    for mixer, peer, g, p in rows:
        for pas, B, T in SHAPES:
            key = (pas, B, T)
            gm, pm = g.get(key), p.get(key)
            fmt = lambda v: "—" if v is None or v != v else f"{v:.3f}"
            ratio = f"{pm / gm:.2f}x" if gm and pm and pm == pm else "—"
            lines.append(f"| {mixer} | {peer} | {'fwd+bwd' if pas == 'fwdbwd' else 'fwd'} B={B} T={T} | "
                         f"{fmt(gm)} | {fmt(pm)} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
