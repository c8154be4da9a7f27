"""tests/reference/linear_attention_ref.py: float64 reference of the out-of-tree example mixer
examples/linear_attention (docs/plugins.md, "Writing a mixer out of tree: a worked example").

Plain causal linear attention without a normalizer (Katharopoulos et al. 2020, eq. 4-6), written
as the naive recurrence, one token at a time, so it shares no structure with the C code:

    q, k, v = x Wq^T, x Wk^T, x Wv^T               (B, T, C); head h is columns h*D .. h*D+D-1
    S_t = S_{t-1} + phi(k_t) v_t^T,  S_0 = 0       (D, D) per sequence and head
    o_t = S_t^T phi(q_t) / sqrt(D)
    y   = o Wo^T
with phi(z) = elu(z) + 1 and D = C / H, H = the num_heads setting (default n_head).
Gradients come from autograd (check_mixer.py); the mixer has no carried stream.
"""
import math

import torch


def phi(z):
    return torch.nn.functional.elu(z) + 1.0


def forward(params, x, cfg, carry):
    B, T, C = x.shape
    H = int(cfg.get("num_heads", cfg["n_head"]))
    D = C // H
    q = x @ params["mixer.q_proj.weight"].T
    k = x @ params["mixer.k_proj.weight"].T
    v = x @ params["mixer.v_proj.weight"].T
    rows = []
    for b in range(B):
        heads = []
        for h in range(H):
            cols = slice(h * D, (h + 1) * D)
            S = torch.zeros(D, D, dtype=x.dtype)
            outs = []
            for t in range(T):
                S = S + torch.outer(phi(k[b, t, cols]), v[b, t, cols])
                outs.append(S.T @ phi(q[b, t, cols]) / math.sqrt(D))
            heads.append(torch.stack(outs))      # (T, D)
        rows.append(torch.cat(heads, dim=1))     # (T, C)
    o = torch.stack(rows)                        # (B, T, C)
    return o @ params["mixer.o_proj.weight"].T, None
