"""tests/reference/gla_ref.py: the GLA mixer in float64 PyTorch, written from spec/gla.md §2.

An independent reference for plugins/gla: plain loops over t for the recurrence (never a chunked
or fused form), the short causal depthwise conv written as a sum over taps, the low-rank
logsigmoid gate, the per-head RMSNorm times SiLU(g). Gradients come from autograd.

check_mixer.py calls forward(params, x, cfg, carry) with params keyed by the plugin's names
("mixer.q_proj.weight", ...), x (B, T, C) float64, cfg the case keys and mixer settings (numbers
or strings). GLA has no carried stream: carry is ignored and None is returned for it.

mixer(params, x, c, state) also takes and returns the decode state (S V-first [B, H, dv, dk],
conv caches [B, width, W]) so that state carrying can be checked against the plugin too.
"""
import torch
import torch.nn.functional as F

_NULL = ("", "null", "None", "none", "~")


def _get(cfg, key, default, conv):
    v = cfg.get(key)
    if v is None or (isinstance(v, str) and v.strip() in _NULL):
        return default
    if conv is bool:
        if isinstance(v, str):
            return v.strip() in ("true", "1", "yes")
        return bool(v)
    return conv(v)


def config(cfg, C):
    """The layer's sizes from a case (same defaults as plugins/gla/gla.c)."""
    H = _get(cfg, "num_heads", _get(cfg, "n_head", 1, int), int)
    Hkv = _get(cfg, "num_kv_heads", H, int)
    Ktot = int(C * _get(cfg, "expand_k", 1.0, float))
    Vtot = int(C * _get(cfg, "expand_v", 1.0, float))
    eps = _get(cfg, "norm_eps", 1e-6, float)
    return dict(
        C=C, H=H, Hkv=Hkv, G=H // Hkv, Ktot=Ktot, Vtot=Vtot, dk=Ktot // H, dv=Vtot // H,
        use_conv=_get(cfg, "use_short_conv", True, bool), W=_get(cfg, "conv_size", 4, int),
        gamma=_get(cfg, "gate_logit_normalizer", 16.0, float), eps=eps)


def short_conv(u, w, hist):
    """u (B, T, ch) pre-conv inputs, w (ch, 1, W), hist (B, ch, W) cache (oldest first) or None.
    pre_t[c] = sum_j w[c,0,j] E[t+1+j], E = [hist, u]; returns (SiLU(pre), new cache E[T:T+W])."""
    B, T, ch = u.shape
    W = w.shape[-1]
    if hist is None:
        hist = torch.zeros(B, ch, W, dtype=u.dtype)
    E = torch.cat([hist.transpose(1, 2), u], dim=1)          # (B, W+T, ch)
    pre = torch.zeros(B, T, ch, dtype=u.dtype)
    for j in range(W):
        pre = pre + w[:, 0, j] * E[:, 1 + j:1 + j + T, :]
    return F.silu(pre), E[:, T:T + W, :].transpose(1, 2)


def mixer(params, x, c, state=None):
    """x (B, T, C) -> y (B, T, C), final state (S [B, H, dv, dk], (cq, ck, cv) or None)."""
    p = lambda n: params["mixer." + n]
    B, T, C = x.shape
    H, G, dk, dv = c["H"], c["G"], c["dk"], c["dv"]
    S0, hist = (state if state is not None else (None, None))
    q = x @ p("q_proj.weight").T
    k = x @ p("k_proj.weight").T
    v = x @ p("v_proj.weight").T
    g = x @ p("g_proj.weight").T
    caches = None
    if c["use_conv"]:
        hq, hk, hv = hist if hist is not None else (None, None, None)
        q, cq = short_conv(q, p("q_conv1d.weight"), hq)
        k, ck = short_conv(k, p("k_conv1d.weight"), hk)
        v, cv = short_conv(v, p("v_conv1d.weight"), hv)
        caches = (cq, ck, cv)
    z = (x @ p("gk_proj.0.weight").T) @ p("gk_proj.1.weight").T + p("gk_proj.1.bias")
    alpha = F.logsigmoid(z) / c["gamma"]
    # heads; kv head j serves q heads j*G .. j*G+G-1 (FLA's repeat '(h d) -> (h g) d')
    q = q.reshape(B, T, H, dk)
    k = k.reshape(B, T, -1, dk).repeat_interleave(G, dim=2)
    alpha = alpha.reshape(B, T, -1, dk).repeat_interleave(G, dim=2)
    v = v.reshape(B, T, -1, dv).repeat_interleave(G, dim=2)
    scale = dk ** -0.5
    # S_t = Diag(exp a_t) S_{t-1} + k_t v_t^T ; o_t = scale S_t^T q_t   (S: [B, H, dk, dv])
    S = torch.zeros(B, H, dk, dv, dtype=x.dtype) if S0 is None else S0.transpose(-1, -2)
    outs = []
    for t in range(T):
        S = torch.exp(alpha[:, t]).unsqueeze(-1) * S + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outs.append(scale * torch.einsum("bhc,bhce->bhe", q[:, t], S))
    o = torch.stack(outs, dim=1) if T else torch.zeros(B, 0, H, dv, dtype=x.dtype)
    # per-head RMSNorm over dv, weight [dv] shared by heads, times SiLU(g)
    rstd = torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + c["eps"])
    u = o * rstd * p("g_norm_swish_gate.weight") * F.silu(g.reshape(B, T, H, dv))
    y = u.reshape(B, T, H * dv) @ p("o_proj.weight").T
    return y, (S.transpose(-1, -2), caches)


def forward(params, x, cfg, carry=None):
    c = config(cfg, x.shape[-1])
    y, _ = mixer(params, x, c)
    return y, None


if __name__ == "__main__":
    # Self-checks of the reference on tiny sizes, float64: the dα identity of spec §5.4 (on the
    # core recurrence) and split-sequence state carrying of the whole mixer.
    torch.manual_seed(0)
    B, T, C = 2, 9, 8
    cfg = {"num_heads": 2, "conv_size": 4, "gate_low_rank_dim": 2}
    c = config(cfg, C)
    names = {"q_proj.weight": (8, 8), "k_proj.weight": (8, 8), "v_proj.weight": (8, 8),
             "g_proj.weight": (8, 8), "q_conv1d.weight": (8, 1, 4), "k_conv1d.weight": (8, 1, 4),
             "v_conv1d.weight": (8, 1, 4), "gk_proj.0.weight": (2, 8), "gk_proj.1.weight": (8, 2),
             "gk_proj.1.bias": (8,), "o_proj.weight": (8, 8), "g_norm_swish_gate.weight": (4,)}
    params = {"mixer." + n: torch.randn(*s, dtype=torch.float64) for n, s in names.items()}
    x = torch.randn(B, T, C, dtype=torch.float64)
    y, st = mixer(params, x, c)
    for t in (1, 2, 5):
        y1, s1 = mixer(params, x[:, :t], c)
        y2, s2 = mixer(params, x[:, t:], c, s1)
        err = (torch.cat([y1, y2], 1) - y).abs().max().item()
        err_s = (s2[0] - st[0]).abs().max().item()
        assert err < 1e-12 and err_s < 1e-12, (t, err, err_s)
    # dα identity: dα_t = revcumsum(q⊙dq − k⊙dk)_t + rowsum(S_T ⊙ dS_T)
    H, dk, dv = 2, 4, 4
    q, k = torch.randn(T, dk, dtype=torch.float64, requires_grad=True), torch.randn(T, dk, dtype=torch.float64, requires_grad=True)
    vv = torch.randn(T, dv, dtype=torch.float64)
    a = (F.logsigmoid(torch.randn(T, dk, dtype=torch.float64)) / 16).requires_grad_(True)
    S = torch.zeros(dk, dv, dtype=torch.float64)
    os_ = []
    for t in range(T):
        S = torch.exp(a[t]).unsqueeze(-1) * S + k[t].unsqueeze(-1) * vv[t]
        os_.append(S.T @ q[t])
    ST = S
    do, dS = torch.randn(T, dv, dtype=torch.float64), torch.randn(dk, dv, dtype=torch.float64)
    f = (torch.stack(os_) * do).sum() + (ST * dS).sum()
    dq, dk_, da = torch.autograd.grad(f, (q, k, a))
    rhs = torch.flip(torch.cumsum(torch.flip((q * dq - k * dk_).detach(), [0]), 0), [0]) + (ST.detach() * dS).sum(-1)
    assert (rhs - da).abs().max().item() < 1e-12
    print("gla_ref self-check ok")
