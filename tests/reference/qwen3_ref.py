"""tests/reference/qwen3_ref.py: the Qwen3 decoder in float64 PyTorch, written from spec/qwen3.md.

Plain, eager code (no fused kernels, no transformers): embedding -> L x (RMSNorm, attention with
q/k RMSNorm before rotate-half RoPE and causal GQA softmax, residual, RMSNorm, SwiGLU, residual)
-> RMSNorm -> lm_head. RoPE angles are built the way transformers builds them (fp32 inv_freq, fp32
angle, fp32 cos/sin; qwen3.md §3.4), then used in float64, which is also graft's rule.
Autograd provides the gradients graft's hand-written backward is checked against.
"""
import torch


def rope_cos_sin(T, D, theta, offset=0):
    j = torch.arange(0, D, 2, dtype=torch.int64).to(torch.float32)
    inv_freq = 1.0 / (torch.tensor(theta, dtype=torch.float32) ** (j / D))
    pos = torch.arange(offset, offset + T, dtype=torch.int64).to(torch.float32)
    ang = pos[:, None] * inv_freq[None, :]              # fp32 product
    ang = torch.cat([ang, ang], dim=-1)                  # (T, D): index d uses inv_freq[d mod D/2]
    return ang.cos().to(torch.float64), ang.sin().to(torch.float64)


def rmsnorm(x, w, eps):
    r = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
    return w * (x * r)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def attention(p, pre, a, cfg):
    B, T, C = a.shape
    nq, nkv, D = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"]
    eps = cfg["norm_eps"]
    q = (a @ p[pre + "q_proj.weight"].T).view(B, T, nq, D)
    k = (a @ p[pre + "k_proj.weight"].T).view(B, T, nkv, D)
    v = (a @ p[pre + "v_proj.weight"].T).view(B, T, nkv, D)
    q = rmsnorm(q, p[pre + "q_norm.weight"], eps)
    k = rmsnorm(k, p[pre + "k_norm.weight"], eps)
    cos, sin = rope_cos_sin(T, D, cfg["rope_theta"])
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nq // nkv
    k = k.repeat_interleave(rep, dim=2)                  # query head h reads kv head h // rep
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("bthd,buhd->bhtu", q, k) * (D ** -0.5)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    pr = torch.softmax(s, dim=-1)
    o = torch.einsum("bhtu,buhd->bthd", pr, v).reshape(B, T, nq * D)
    return o @ p[pre + "o_proj.weight"].T


def forward(p, ids, cfg):
    """p: dict name -> float64 tensor (HF names); ids: (B, T) int64. Returns logits (B, T, V)."""
    eps = cfg["norm_eps"]
    h = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["n_layer"]):
        pre = f"model.layers.{l}."
        a = rmsnorm(h, p[pre + "input_layernorm.weight"], eps)
        h = h + attention(p, pre + "self_attn.", a, cfg)
        m = rmsnorm(h, p[pre + "post_attention_layernorm.weight"], eps)
        g = m @ p[pre + "mlp.gate_proj.weight"].T
        u = m @ p[pre + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(g) * u) @ p[pre + "mlp.down_proj.weight"].T
    h = rmsnorm(h, p["model.norm.weight"], eps)
    w_out = p["model.embed_tokens.weight"] if cfg["tie"] else p["lm_head.weight"]
    return h @ w_out.T
