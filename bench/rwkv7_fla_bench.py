"""bench/rwkv7_fla_bench.py: FLA's RWKV-7 core (fla.ops.rwkv7) on the shapes of bench/rwkv7_cuda_bench.cu, bf16,
the layer's call (chunk_rwkv7 with scale 1, safe_gate, lower_bound −e^{−1/2}, chunk 64) and the recurrent
fused_recurrent_rwkv7 (forward only), median of triton.testing.do_bench. Run with FLA's package folder on
PYTHONPATH. FLA's Triton autotune spaces are trimmed to num_warps in {4, 8}, num_stages in {2, 3} (the full
spaces take minutes per kernel on a fresh machine). Prints "fla <shape> <pass> <ms>" lines."""
import sys

import fla_autotune
import triton

fla_autotune.trim()

import torch
import torch.nn.functional as F
from fla.ops.rwkv7 import chunk_rwkv7, fused_recurrent_rwkv7

CW = 0.6065306597126334
H, D = 16, 128
torch.manual_seed(0)
shapes = [(4, 2048, True), (1, 32768, False)]
if len(sys.argv) > 1:
    shapes = shapes[:int(sys.argv[1])]

def inputs(B, T):
    r, k, v, do = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    w = (-CW * torch.sigmoid(torch.randn(B, T, H, D, device="cuda"))).to(torch.bfloat16)
    kap = F.normalize(torch.randn(B, T, H, D, device="cuda"), dim=-1)
    al = torch.rand(B, T, H, D, device="cuda")
    return r, w, k, v, (-kap).to(torch.bfloat16), (kap * al).to(torch.bfloat16), do

def chunk(r, w, k, v, a, b):
    return chunk_rwkv7(r, w, k, v, a, b, scale=1.0, safe_gate=True, lower_bound=-CW, chunk_size=64)[0]

for B, T, bwd in shapes:
    r, w, k, v, a, b, do = inputs(B, T)
    with torch.no_grad():
        f = lambda: chunk(r, w, k, v, a, b)
        f(); torch.cuda.synchronize()
        ms = triton.testing.do_bench(f, warmup=25, rep=200, return_mode="median")
        print(f"fla   B={B} T={T:<6d} chunk_rwkv7 fwd          {ms:8.3f} ms", flush=True)
        if T <= 4096:
            g = lambda: fused_recurrent_rwkv7(r, w, k, v, a, b, scale=1.0, output_final_state=False)
            g(); torch.cuda.synchronize()
            ms = triton.testing.do_bench(g, warmup=25, rep=200, return_mode="median")
            print(f"fla   B={B} T={T:<6d} fused_recurrent fwd      {ms:8.3f} ms", flush=True)
    if bwd:
        xs = [x.clone().requires_grad_(True) for x in (r, w, k, v, a, b)]
        def fb():
            chunk(*xs).backward(do)
        fb(); torch.cuda.synchronize()
        ms = triton.testing.do_bench(fb, warmup=25, rep=200, grad_to_none=xs, return_mode="median")
        print(f"fla   B={B} T={T:<6d} chunk_rwkv7 fwd+bwd      {ms:8.3f} ms", flush=True)
