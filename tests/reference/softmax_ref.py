"""tests/reference/softmax_ref.py: float64 reference of the "softmax" mixer (Qwen3 self-attention,
spec/qwen3.md §3.2 and §3.4), written as the plain eager formula with explicit loops over heads and
positions. Used by check_mixer.py; autograd gives the gradients.

RoPE rule (the same as plugins/softmax): inv_freq built in fp32 (fp32 exponent 2j/D, fp32 pow,
fp32 reciprocal), angle = fp32(pos) * inv_freq in fp32; the fp32 angle is then converted to float64
and cos/sin are taken in float64.
"""
import torch


def _rmsnorm(x, w, eps):
    r = 1.0 / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return w * (x * r)


def _rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def forward(params, x, cfg, carry=None):
    B, T, C = x.shape
    nq, nkv, D = int(cfg["n_head"]), int(cfg["n_kv_head"]), int(cfg["head_dim"])
    eps = float(cfg["norm_eps"])
    theta = float(cfg["rope_theta"])
    n_rep = nq // nkv
    p = params
    q = (x @ p["self_attn.q_proj.weight"].T).view(B, T, nq, D)
    k = (x @ p["self_attn.k_proj.weight"].T).view(B, T, nkv, D)
    v = (x @ p["self_attn.v_proj.weight"].T).view(B, T, nkv, D)
    q = _rmsnorm(q, p["self_attn.q_norm.weight"], eps)
    k = _rmsnorm(k, p["self_attn.k_norm.weight"], eps)

    expo = torch.arange(0, D, 2, dtype=torch.float32) / torch.tensor(float(D), dtype=torch.float32)
    inv_freq = 1.0 / torch.pow(torch.tensor(theta, dtype=torch.float32), expo)
    pos = torch.arange(T, dtype=torch.float32)
    ang = (pos[:, None] * inv_freq[None, :]).to(torch.float64)  # (T, D/2) fp32 angles
    cos, sin = torch.cos(ang), torch.sin(ang)
    q = _rope(q, cos[None, :, None, :], sin[None, :, None, :])
    k = _rope(k, cos[None, :, None, :], sin[None, :, None, :])

    scale = D ** -0.5
    out = torch.zeros(B, T, nq, D, dtype=torch.float64)
    outs = []
    for b in range(B):
        heads = []
        for hq in range(nq):
            hk = hq // n_rep
            rows = []
            for t in range(T):
                s = (k[b, : t + 1, hk, :] @ q[b, t, hq, :]) * scale  # (t+1,)
                pr = torch.softmax(s, dim=0)
                rows.append(pr @ v[b, : t + 1, hk, :])
            heads.append(torch.stack(rows))  # (T, D)
        outs.append(torch.stack(heads, dim=1))  # (T, nq, D)
    out = torch.stack(outs)  # (B, T, nq, D)
    y = out.reshape(B, T, nq * D) @ p["self_attn.o_proj.weight"].T
    return y, None
