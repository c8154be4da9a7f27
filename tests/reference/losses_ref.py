"""tests/reference/losses_ref.py: float64 PyTorch references for the loss plugins in losses/.

Each function takes numpy inputs (the same fp32 arrays the C driver reads), computes the loss in
float64 with plain torch ops, and its gradient with autograd, never with a hand-written backward.
It returns a dict with the same names the C driver writes:
    loss_sum  sum of per-row losses over counted rows
    count     counted rows (nmse: sum of ||input - target||^2, the ratio's denominator)
    row_loss  (N) per-row losses (0 for ignored rows), row_count (N) per-row counts
    grad      d(loss_sum)/d(student), (N, W), UNSCALED (the C side multiplies by grad_scale)
    parts     topk_kl only: [sum Bernoulli, sum top-k]
The formulas are those of losses/README.md, written out from the definitions, not from the C.
"""
import numpy as np
import torch
import torch.nn.functional as F

D = torch.float64


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=D)


def _grad(z, loss):
    (g,) = torch.autograd.grad(loss, z) if loss.requires_grad else (torch.zeros_like(z),)
    return g.numpy()


def nmse(student, target, inp):
    s = _t(student).requires_grad_(True)
    t, x = _t(target), _t(inp)
    row_num = ((s - t) ** 2).sum(1)
    row_den = ((x - t) ** 2).sum(1)
    loss = row_num.sum()
    return dict(loss_sum=loss.item(), count=row_den.sum().item(), row_loss=row_num.detach().numpy(),
                row_count=row_den.numpy(), grad=_grad(s, loss))


def _counted(labels, n, ignore_index):
    if labels is None:
        return np.ones(n, dtype=bool)
    return np.asarray(labels).astype(np.int64) != ignore_index


def ce(student, labels, ignore_index=-100):
    z = _t(student).requires_grad_(True)
    n = z.shape[0]
    keep = _counted(labels, n, ignore_index)
    y = torch.tensor(np.where(keep, labels, 0).astype(np.int64))
    logp = torch.log_softmax(z, dim=1)
    nll = -logp.gather(1, y[:, None])[:, 0]
    row = nll * _t(keep.astype(np.float64))
    loss = row.sum()
    return dict(loss_sum=loss.item(), count=float(keep.sum()), row_loss=row.detach().numpy(),
                row_count=keep.astype(np.float64), grad=_grad(z, loss))


def kl(student, target, T=1.0, labels=None, ignore_index=-100):
    z = _t(student).requires_grad_(True)
    n = z.shape[0]
    keep = _counted(labels, n, ignore_index)
    logp = torch.log_softmax(_t(target) / T, dim=1)
    p = logp.exp()
    logq = torch.log_softmax(z / T, dim=1)
    logp_safe = torch.where(p > 0, logp, torch.zeros_like(logp))  # 0 log 0 = 0
    row = T * T * (p * (logp_safe - logq)).sum(1) * _t(keep.astype(np.float64))
    loss = row.sum()
    return dict(loss_sum=loss.item(), count=float(keep.sum()), row_loss=row.detach().numpy(),
                row_count=keep.astype(np.float64), grad=_grad(z, loss))


def topk_kl(student, topk_ids, topk_logp, topk_mass, T=4.0, labels=None, ignore_index=-100):
    """Decoupled top-k KL (losses/README.md): per counted row
        Bern = P log(P/Q) + (1-P) log((1-P)/(1-Q)),  Q = sum_{i in S} softmax(z)_i  (0 when k = W)
        TopK = T^2 * P * KL(softmax(l/T) || softmax(z_S/T))
    Ignored rows are left out of the computation altogether (their ids may be garbage)."""
    zfull = _t(student).requires_grad_(True)
    n, W = zfull.shape
    keep = _counted(labels, n, ignore_index)
    rows = np.nonzero(keep)[0]
    k = np.asarray(topk_ids).shape[1]
    row_b = torch.zeros(n, dtype=D)
    row_k = torch.zeros(n, dtype=D)
    if len(rows):
        z = zfull[torch.tensor(rows)]
        ids = torch.tensor(np.asarray(topk_ids)[rows].astype(np.int64))
        l = _t(np.asarray(topk_logp)[rows])
        P = _t(np.asarray(topk_mass)[rows])
        zS = z.gather(1, ids)
        if k < W:
            mask = torch.zeros(z.shape, dtype=torch.bool).scatter_(1, ids, True)
            # Q = sigmoid(LS - LC), the top-k mass as a sigmoid of its log-odds. Written as
            # logQ = LS - logsumexp(z), autograd would form d log(1-Q) as softmax_C - softmax, a
            # difference of two near-equal numbers when Q ~ 1e-12, and lose most digits of the
            # reference's own gradient; -softplus keeps them (exp(-50) is below float64's eps).
            LS = torch.logsumexp(zS, 1)
            LC = torch.logsumexp(z.masked_fill(mask, float("-inf")), 1)
            logQ = -F.softplus(LC - LS, threshold=50.0)
            log1mQ = -F.softplus(LS - LC, threshold=50.0)
            logP = torch.where(P > 0, P.log(), torch.zeros_like(P))          # P log P = 0 at P = 0
            log1mP = torch.where(P < 1, torch.log1p(-P), torch.zeros_like(P))  # likewise at P = 1
            bern = P * (logP - logQ) + (1 - P) * (log1mP - log1mQ)
        else:
            bern = torch.zeros(len(rows), dtype=D) + 0 * zS.sum(1)
        lp = torch.log_softmax(l / T, dim=1)
        p = lp.exp()
        lp_safe = torch.where(p > 0, lp, torch.zeros_like(lp))
        lq = torch.log_softmax(zS / T, dim=1)
        topk = T * T * P * (p * (lp_safe - lq)).sum(1)
        idx = torch.tensor(rows)
        row_b = row_b.index_put((idx,), bern)
        row_k = row_k.index_put((idx,), topk)
    row = row_b + row_k
    loss = row.sum()
    return dict(loss_sum=loss.item(), count=float(keep.sum()), row_loss=row.detach().numpy(),
                row_count=keep.astype(np.float64), grad=_grad(zfull, loss),
                parts=np.array([row_b.sum().item(), row_k.sum().item()]))
