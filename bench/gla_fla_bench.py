"""bench/gla_fla_bench.py: FLA's chunk_gla (fla.ops.gla) on the shapes of bench/gla_cuda_bench.cu,
bf16 inputs and gates (FLA's fp32 autotune takes minutes), median of triton.testing.do_bench.
Run with FLA's package folder on PYTHONPATH. Prints "fla <name> <ms>" lines."""
import sys
import torch
import torch.nn.functional as F
import triton
from fla.ops.gla import chunk_gla

H, D = 16, 128
torch.manual_seed(0)
for B, T, bwd in [(4, 2048, True), (1, 8192, False), (1, 32768, False)]:
    q, k, v, do = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    g = (F.logsigmoid(torch.randn(B, T, H, D, device="cuda")) / 16).to(torch.bfloat16)
    with torch.no_grad():
        f = lambda: chunk_gla(q, k, v, g, scale=D ** -0.5, output_final_state=False)
        f(); torch.cuda.synchronize()
        ms = triton.testing.do_bench(f, warmup=50, rep=300, return_mode="median")
    print(f"fla   B={B} T={T} gk=bf16 fwd{'':14s} {ms:8.3f} ms", flush=True)
    if bwd:
        qq, kk, vv, gg = (x.clone().requires_grad_(True) for x in (q, k, v, g))
        def fb():
            o, _ = chunk_gla(qq, kk, vv, gg, scale=D ** -0.5, output_final_state=False)
            o.backward(do)
        fb(); torch.cuda.synchronize()
        ms = triton.testing.do_bench(fb, warmup=50, rep=300, grad_to_none=[qq, kk, vv, gg],
                                     return_mode="median")
        print(f"fla   B={B} T={T} gk=bf16 fwd+bwd{'':10s} {ms:8.3f} ms", flush=True)
