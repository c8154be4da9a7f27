#!/usr/bin/env python3
"""attention_vs_sdpa.py: graft's CUDA attention kernels (plugins/softmax/softmax_cuda*.cu, called
through ctypes from a shared build of that file) against torch SDPA's flash backend (bf16), in one
process on the same inputs, timed with triton.testing.do_bench (median, L2 flushed between runs).

Prints, per case: graft ms, SDPA ms, speed ratio (SDPA time / graft time, > 1: graft faster) and
each as % of the physical floor: FLOPs / measured bf16 matmul peak for prefill (causal FLOPs
= 4*B*Hq*D*T^2/2 forward, 2.5x that backward), KV bytes / measured copy bandwidth for decode.
Also checks graft against SDPA (NMSE) on each prefill case.

  python3 bench/attention_vs_sdpa.py LIB.so [results.md]
"""
import ctypes
import datetime
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

D = 128


class GraftErr(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 1024)]


lib = ctypes.CDLL(sys.argv[1])
P, I64, F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
lib.sm_cuda_attn_fwd.argtypes = [P] * 5 + [I64] * 5 + [F32, P, ctypes.POINTER(GraftErr)]
lib.sm_cuda_attn_bwd.argtypes = [P] * 9 + [I64] * 5 + [F32, P, ctypes.c_size_t, P, ctypes.POINTER(GraftErr)]
lib.sm_cuda_attn_bwd_scratch_bytes.argtypes = [I64] * 3
lib.sm_cuda_attn_bwd_scratch_bytes.restype = ctypes.c_size_t
lib.sm_cuda_attn_decode.argtypes = [P] * 4 + [I64, I64, ctypes.POINTER(I64)] + [I64] * 4 + [F32, P, ctypes.c_size_t, P,
                                                                                          ctypes.POINTER(GraftErr)]
lib.sm_cuda_attn_decode_scratch_bytes.argtypes = [I64] * 4
lib.sm_cuda_attn_decode_scratch_bytes.restype = ctypes.c_size_t
err = GraftErr()


def check(st):
    if st != 0:
        raise RuntimeError(err.msg.decode())


def stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


def ms(fn):
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


dev = torch.device("cuda")
torch.manual_seed(0)
# measured ceilings
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
t = ms(lambda: a @ b)
PEAK = 2 * 8192 ** 3 / (t * 1e-3)
del a, b
x = torch.empty(1 << 29, device=dev, dtype=torch.float32)  # 2 GiB
y = torch.empty_like(x)
t = ms(lambda: y.copy_(x))
BW = 2 * x.numel() * 4 / (t * 1e-3)
del x, y
rows = []
print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; measured bf16 matmul {PEAK/1e12:.0f} "
      f"TFLOP/s, copy {BW/1e12:.2f} TB/s (read+write)", flush=True)


def sdpa(q, k, v, causal):
    # q (B,T,H,D) layout viewed as (B,H,T,D), the flash backend's native strides
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=causal, enable_gqa=True).transpose(1, 2)


def nmse(a, b):
    a, b = a.double(), b.double()
    return ((a - b) ** 2).sum().item() / (b ** 2).sum().item()


def row(name, tg, ts, floor_s, extra=""):
    r = (name, tg, ts, ts / tg, 100 * floor_s / (tg * 1e-3), 100 * floor_s / (ts * 1e-3), extra)
    rows.append(r)
    print(f"{name:34s} graft {tg:9.4f} ms  sdpa {ts:9.4f} ms  sdpa/graft {ts/tg:5.2f}  "
          f"floor% graft {r[4]:5.1f} sdpa {r[5]:5.1f}  {extra}", flush=True)


def prefill(B, T, Hq, Hkv, bwd):
    scale = 1 / math.sqrt(D)
    q = torch.randn(B, T, Hq, D, device=dev, dtype=torch.bfloat16) * 1.5
    k = torch.randn(B, T, Hkv, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(B, T, Hkv, D, device=dev, dtype=torch.bfloat16)
    o = torch.empty_like(q)
    lse = torch.empty(B, T, Hq, device=dev, dtype=torch.float32)
    fwd = lambda: check(lib.sm_cuda_attn_fwd(o.data_ptr(), lse.data_ptr(), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                                              B, T, Hq, Hkv, D, scale, stream(), ctypes.byref(err)))
    fwd()
    ref = sdpa(q, k, v, True)
    e = nmse(o, ref)
    flops = 4 * B * Hq * D * T * T / 2
    if not bwd:
        # the forward kernels side by side (GRAFT_CUDA_ATTN_WGMMA, read per call): the default
        # (wgmma + TMA on Hopper) and the mma.sync kernel; and torch's default SDPA backend choice
        # (cuDNN on the H100) next to its flash backend
        notes = [f"nmse(o) {e:.1e}"]
        for label, val in (("mma.sync", "0"),):
            os.environ["GRAFT_CUDA_ATTN_WGMMA"] = val
            o.fill_(float("nan"))
            fwd()
            notes.append(f"{label} {ms(fwd):.4f} ms (nmse {nmse(o, ref):.1e})")
        os.environ.pop("GRAFT_CUDA_ATTN_WGMMA")
        tdef = ms(lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                         is_causal=True, enable_gqa=True))
        notes.append(f"sdpa default backend {tdef:.4f} ms")
        o.fill_(float("nan"))
        fwd()
        notes[0] = f"nmse(o) {nmse(o, ref):.1e}"
        row(f"fwd B={B} T={T} Hq={Hq}/{Hkv}", ms(fwd), ms(lambda: sdpa(q, k, v, True)), flops / PEAK,
            "; ".join(notes))
        return
    do = torch.randn_like(q)
    dq = torch.empty(B, T, Hq, D, device=dev, dtype=torch.float32)
    dk = torch.empty(B, T, Hkv, D, device=dev, dtype=torch.float32)
    dv = torch.empty_like(dk)
    sb = lib.sm_cuda_attn_bwd_scratch_bytes(B, T, Hq)
    scr = torch.empty(sb // 4 + 1, device=dev, dtype=torch.float32)

    def bwd_only():
        check(lib.sm_cuda_attn_bwd(dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), q.data_ptr(), k.data_ptr(),
                                   v.data_ptr(), o.data_ptr(), lse.data_ptr(), do.data_ptr(), B, T, Hq, Hkv, D, scale,
                                   scr.data_ptr(), sb, stream(), ctypes.byref(err)))

    def both():
        fwd()
        bwd_only()

    both()
    qr, kr, vr = (t_.detach().clone().requires_grad_(True) for t_ in (q, k, v))

    def torch_both():
        out = sdpa(qr, kr, vr, True)
        return torch.autograd.grad(out, (qr, kr, vr), do)

    gq, gk, gv = torch_both()
    es = f"nmse vs sdpa o {e:.1e} dq {nmse(dq, gq):.1e} dk {nmse(dk, gk):.1e} dv {nmse(dv, gv):.1e}"
    row(f"fwd+bwd B={B} T={T} Hq={Hq}/{Hkv}", ms(both), ms(torch_both), 3.5 * flops / PEAK, es)
    # backward alone: torch's share measured as (fwd+bwd) - fwd
    tsb = ms(torch_both) - ms(lambda: sdpa(qr, kr, vr, True))
    row(f"bwd B={B} T={T} Hq={Hq}/{Hkv}", ms(bwd_only), tsb, 2.5 * flops / PEAK, "(sdpa: fwd+bwd minus fwd)")


def decode(B, L, Hq, Hkv):
    scale = 1 / math.sqrt(D)
    cache = torch.randn(B, 2, Hkv, L, D, device=dev, dtype=torch.bfloat16)
    q = torch.randn(B, Hq, D, device=dev, dtype=torch.bfloat16) * 1.5
    o = torch.empty_like(q)
    lens = (I64 * B)(*([L] * B))
    sb = lib.sm_cuda_attn_decode_scratch_bytes(B, Hq, D, L)
    scr = torch.empty(sb // 4 + 1, device=dev, dtype=torch.float32)
    kc, vc = cache[:, 0], cache[:, 1]
    fn = lambda: check(lib.sm_cuda_attn_decode(o.data_ptr(), q.data_ptr(), kc.data_ptr(), vc.data_ptr(),
                                                2 * Hkv * L * D, L * D, lens, B, Hq, Hkv, D, scale, scr.data_ptr(),
                                                sb, stream(), ctypes.byref(err)))
    fn()

    def ts():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q.unsqueeze(2), kc, vc, enable_gqa=True)

    e = nmse(o, ts().squeeze(2))
    row(f"decode B={B} ctx={L} Hq={Hq}/{Hkv}", ms(fn), ms(ts), B * Hkv * L * D * 2 * 2 / BW, f"nmse(o) {e:.1e}")


for T in (512, 4096, 16384, 32768):
    prefill(1, T, 16, 8, False)
prefill(1, 4096, 32, 8, False)
prefill(4, 2048, 16, 8, True)
for B in (1, 16):
    for L in (512, 2048, 8192, 32768):
        decode(B, L, 16, 8)

if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        f.write(f"# graft attention vs torch SDPA (flash backend), {datetime.date.today()}\n\n")
        f.write(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; measured bf16 matmul "
                f"{PEAK/1e12:.0f} TFLOP/s, copy {BW/1e12:.2f} TB/s. Times: triton do_bench median, L2 flushed.\n\n")
        f.write("| case | graft ms | SDPA ms | SDPA/graft | graft % floor | SDPA % floor | notes |\n|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]} |\n")
