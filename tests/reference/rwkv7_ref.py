"""tests/reference/rwkv7_ref.py: float64 reference of graft's RWKV-7 mixer (spec/rwkv7.md §2).

A plain loop over time (a naive recurrence, not a chunked kernel), written from the spec and
flash-linear-attention's fla/layers/rwkv7.py conventions: w = -c_w * sigmoid(.) is the natural-log
decay and the state is multiplied by exp(w); kappa = u / sqrt(|u|^2 + 1e-6) per head from the
un-updated key; S_t = diag(e^w) S_{t-1} + (S_{t-1}^T a) b-term + k v^T with a = -kappa,
b = kappa * alpha, state [K, V]; o = S_t^T r (scale 1); GroupNorm eps = head_dim * norm_eps; bonus
(sum r k r_k) v after the norm; gate; o_proj. Gradients come from torch autograd.

forward(params, x, cfg, carry) -> (y, carry_out):
  params  dict name -> tensor, names as the plugin declares them ("mixer.x_r", ...)
  x       (B, T, C)
  cfg     case keys and mixer settings (n_embd, head_dim, norm_eps, carry_role, ...)
  carry   v_first (B, T, C) for a consumer, else None
  returns y (B, T, C) and, for a producer, v_first = v0 (B, T, C) (None for a consumer).
Optional keyword state=(S0 (B, H, K, V), shift0 (B, C)) continues from a decode state;
forward_with_state returns (y, carry_out, (S_T, shift_T)).
"""
import math

import torch

CW = math.exp(-0.5)


def _get(cfg, key, default):
    v = cfg.get(key, None)
    if v is None or v == "" or v == "null":
        return default
    return v


def dims(cfg):
    C = int(cfg["n_embd"])
    hd = cfg.get("head_dim")
    K = int(hd) if hd is not None and int(hd) > 0 else 64
    H = C // K
    eps = float(_get(cfg, "norm_eps", 1e-5))
    role = cfg.get("carry_role", "producer")
    producer = role in ("producer", 1, "1")
    return C, H, K, eps, producer


def forward_with_state(params, x, cfg, carry=None, state=None):
    p = {k[len("mixer."):] if k.startswith("mixer.") else k: v for k, v in params.items()}
    C, H, K, eps, producer = dims(cfg)
    V = K
    B, T, _ = x.shape
    if state is None:
        S0 = x.new_zeros(B, H, K, V)
        prev0 = x.new_zeros(B, C)
    else:
        S0, prev0 = state
    # 1. token shift: delta_t = x_{t-1} - x_t, x_{-1} = the cached last token (zero at start)
    xprev = torch.cat([prev0.unsqueeze(1), x[:, :-1]], dim=1)
    dlt = xprev - x
    mix = {b: x + dlt * p["x_" + b].reshape(C) for b in "rwkvag"}
    lin = lambda a, w: a @ w.t()
    r = lin(mix["r"], p["r_proj.weight"])
    k0 = lin(mix["k"], p["k_proj.weight"])
    v0 = lin(mix["v"], p["v_proj.weight"])
    w = -CW * torch.sigmoid(lin(torch.tanh(lin(mix["w"], p["w_lora.lora.0.weight"])), p["w_lora.lora.2.weight"])
                            + p["w_lora.lora.2.bias"])
    if producer:
        v = v0
        carry_out = v0
    else:
        nu = torch.sigmoid(lin(lin(mix["v"], p["v_lora.lora.0.weight"]), p["v_lora.lora.2.weight"])
                           + p["v_lora.lora.2.bias"])
        v = torch.lerp(v0, carry, nu)
        carry_out = None
    alpha = torch.sigmoid(lin(lin(mix["a"], p["a_lora.lora.0.weight"]), p["a_lora.lora.2.weight"])
                          + p["a_lora.lora.2.bias"])
    g = lin(torch.sigmoid(lin(mix["g"], p["g_lora.lora.0.weight"])), p["g_lora.lora.2.weight"])
    u = (k0 * p["k_k"]).reshape(B, T, H, K)
    kap = u / torch.sqrt((u * u).sum(-1, keepdim=True) + 1e-6)
    k = k0 * (1 + (alpha - 1) * p["k_a"])
    rh, wh, kh, vh = (t.reshape(B, T, H, -1) for t in (r, w, k, v))
    ah = -kap
    bh = kap * alpha.reshape(B, T, H, K)
    S = S0
    outs = []
    for t in range(T):
        sa = torch.einsum("bhk,bhkv->bhv", ah[:, t], S)          # S_{t-1}^T a: the old state
        S = (torch.exp(wh[:, t]).unsqueeze(-1) * S + bh[:, t].unsqueeze(-1) * sa.unsqueeze(-2)
             + kh[:, t].unsqueeze(-1) * vh[:, t].unsqueeze(-2))
        outs.append(torch.einsum("bhkv,bhk->bhv", S, rh[:, t]))  # o_t = S_t^T r_t, scale 1
    o = torch.stack(outs, dim=1)                                  # (B, T, H, V)
    mean = o.mean(-1, keepdim=True)
    var = ((o - mean) ** 2).mean(-1, keepdim=True)
    on = ((o - mean) / torch.sqrt(var + K * eps)).reshape(B, T, C) * p["g_norm.weight"] + p["g_norm.bias"]
    beta = (rh * kh * p["r_k"]).sum(-1, keepdim=True)             # bonus: updated k, mixed v
    on = on + (beta * vh).reshape(B, T, C)
    y = lin(on * g, p["o_proj.weight"])
    return y, carry_out, (S, x[:, -1])


def forward(params, x, cfg, carry=None):
    y, carry_out, _ = forward_with_state(params, x, cfg, carry)
    return y, carry_out


def check_dump(path):
    """Compares a dump written by tests/unit/test_rwkv7_plugin.c (safetensors, F32 inputs and the
    plugin's outputs; cfg as JSON in the metadata) with this reference in float64. Returns the
    number of mismatches (NMSE > 1e-9)."""
    import json
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import st
    t, meta = st.load(path)
    cfg = json.loads(meta["cfg"])
    f64 = lambda n: torch.tensor(t[n], dtype=torch.float64, requires_grad=True)
    params = {n[2:]: f64(n) for n in t if n.startswith("p.")}
    x = f64("x")
    _, H, K, _, producer = dims(cfg)
    state = (f64("S0"), f64("shift0")) if "S0" in t else None
    carry = None if producer else f64("carry")
    y, carry_out, (ST, shT) = forward_with_state(params, x, cfg, carry, state)
    loss = (y * torch.tensor(t["dy"], dtype=torch.float64)).sum()
    loss = loss + (ST * torch.tensor(t["dS_T"], dtype=torch.float64)).sum()
    loss = loss + (shT * torch.tensor(t["dshift_T"], dtype=torch.float64)).sum()
    if producer:
        loss = loss + (carry_out * torch.tensor(t["carry"], dtype=torch.float64)).sum()
    loss.backward()
    want = {"y": y, "S_T": ST, "shift_T": shT, "dx": x.grad}
    if producer:
        want["carry_out"] = carry_out
    else:
        want["dcarry"] = carry.grad
    if state is not None:
        want["dS0"], want["dshift0"] = state[0].grad, state[1].grad
    for n, p in params.items():
        want["g." + n] = p.grad
    bad = 0
    for n, ref in want.items():
        got = torch.tensor(t[n], dtype=torch.float64)
        ref = ref.detach().reshape(got.shape)
        den = (ref * ref).sum().item()
        num = ((got - ref) ** 2).sum().item()
        nmse = num / den if den > 0 else num
        if not (nmse <= 1e-9):
            bad += 1
            diff = (got - ref).abs().flatten()
            print(f"MISMATCH {n}: max|diff|={diff.max().item():.3e} nmse={nmse:.3e} first bad index "
                  f"{int(diff.argmax())}")
    print(f"rwkv7_ref: {path}: {len(want)} tensors compared, {bad} mismatches")
    return bad


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(1 if check_dump(sys.argv[2]) else 0)
    # Self-check: the decay convention (w = log 0.9 decays the state by exactly 0.9 per step)
    # and finite differences on a tiny case.
    torch.manual_seed(0)
    S = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    w = torch.full((1, 1, 2), math.log(0.9), dtype=torch.float64)
    assert torch.allclose(torch.exp(w).unsqueeze(-1) * S, 0.9 * S)
    cfg = {"n_embd": 8, "head_dim": 4, "norm_eps": 1e-5, "carry_role": "consumer"}
    shapes = {"x_r": (1, 1, 8), "x_w": (1, 1, 8), "x_k": (1, 1, 8), "x_v": (1, 1, 8), "x_a": (1, 1, 8),
              "x_g": (1, 1, 8), "k_k": (8,), "k_a": (8,), "r_k": (2, 4), "r_proj.weight": (8, 8),
              "k_proj.weight": (8, 8), "v_proj.weight": (8, 8), "o_proj.weight": (8, 8),
              "w_lora.lora.0.weight": (2, 8), "w_lora.lora.2.weight": (8, 2), "w_lora.lora.2.bias": (8,),
              "a_lora.lora.0.weight": (2, 8), "a_lora.lora.2.weight": (8, 2), "a_lora.lora.2.bias": (8,),
              "v_lora.lora.0.weight": (2, 8), "v_lora.lora.2.weight": (8, 2), "v_lora.lora.2.bias": (8,),
              "g_lora.lora.0.weight": (3, 8), "g_lora.lora.2.weight": (8, 3), "g_norm.weight": (8,),
              "g_norm.bias": (8,)}
    params = {"mixer." + n: torch.randn(*s, dtype=torch.float64, requires_grad=True) for n, s in shapes.items()}
    x = torch.randn(2, 9, 8, dtype=torch.float64, requires_grad=True)
    vf = torch.randn(2, 9, 8, dtype=torch.float64, requires_grad=True)
    inputs = list(params.values()) + [x, vf]
    assert torch.autograd.gradcheck(lambda *a: forward(dict(zip(params, a[:-2])), a[-2], cfg, a[-1])[0], inputs)
    print("rwkv7_ref: self-check passed")
