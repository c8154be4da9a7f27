/* softmax_cpu.c: CPU fp32 reference of Qwen3 self-attention (spec/qwen3.md §3.2, §3.4) and its
 * backward (§5). Matrix products go through host->matmul (OpenBLAS in the core); the per-head work
 * runs over host->parallel_for: forward over (b, query head), backward over (b, kv head) so that the
 * dK/dV sums of one kv head's n_rep query heads never race.
 *
 * Not here: CUDA, backward through a KV cache (refused: no CAP_STATE_GRAD).
 *
 * Buffers (floats, token-major, bt = b*T + t):
 *   saved: q_raw (BT, nq*D) | qr (BT, nq*D) | o (BT, nq*D) | k_raw (BT, nkv*D) | kr (BT, nkv*D)
 *          | v (BT, nkv*D) | lse (BT, nq) | rstd_q (BT, nq) | rstd_k (BT, nkv)
 *     (q_raw/k_raw: projections before the norm; qr/kr: after norm and RoPE; o: attention output
 *      before o_proj; lse: log-sum-exp of each softmax row, so backward recomputes P exactly)
 *   scratch: [the saved layout, used when io->saved is NULL] | cos (BT, D/2) | sin (BT, D/2)
 *          | acc (B*nq, D) | dO (BT, nq*D) | dqr (BT, nq*D) | dkr (BT, nkv*D) | dv (BT, nkv*D) | tmp (2D)
 *   state slot (one per sequence): K (nkv, capacity, D) then V (nkv, capacity, D).
 */
#include <math.h>
#include <string.h>

#include "softmax.h"

int64_t sm_saved_floats_per_token(const sm_layer *l) {
    return 3 * l->nq * l->D + 3 * l->nkv * l->D + 2 * l->nq + l->nkv;
}

int64_t sm_scratch_floats(const sm_layer *l, int64_t B, int64_t T) {
    int64_t BT = B * T;
    return BT * sm_saved_floats_per_token(l) + BT * l->D + B * l->nq * l->D +
           BT * (2 * l->nq * l->D + 2 * l->nkv * l->D) + 2 * l->D;
}

typedef struct ctx {
    const sm_layer *l;
    int64_t B, T, cap;
    const int64_t *past; /* NULL = zeros */
    const float *state_in;
    const float *x;
    float *q_raw, *qr, *o, *k_raw, *kr, *v, *lse, *rq, *rk;
    float *cosb, *sinb, *acc;
    const float *wq_norm, *wk_norm;
    const float *dO;
    float *dqr, *dkr, *dv;
} ctx;

static int64_t past_of(const ctx *c, int64_t b) { return c->past ? c->past[b] : 0; }

static void carve(ctx *c, float *base) {
    const sm_layer *l = c->l;
    int64_t BT = c->B * c->T, qd = l->nq * l->D, kd = l->nkv * l->D;
    c->q_raw = base; base += BT * qd;
    c->qr = base; base += BT * qd;
    c->o = base; base += BT * qd;
    c->k_raw = base; base += BT * kd;
    c->kr = base; base += BT * kd;
    c->v = base; base += BT * kd;
    c->lse = base; base += BT * l->nq;
    c->rq = base; base += BT * l->nq;
    c->rk = base;
}

static graft_status mm(const sm_layer *l, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float *cc, int64_t ldc, float beta, graft_err *err) {
    return graft_host_matmul_f32(l->host, ta, tb, m, n, k, a, lda, b, ldb, cc, ldc, beta, err);
}

/* RMSNorm over D (weight w), then RoPE with rotate-half pairs (d, d + D/2). Returns rstd. */
static float norm_rope(const float *x, const float *w, const float *cs, const float *sn, float *y, int64_t D,
                       double eps) {
    double ss = 0;
    for (int64_t d = 0; d < D; d++) ss += (double)x[d] * x[d];
    float r = (float)(1.0 / sqrt(ss / (double)D + eps));
    int64_t h = D / 2;
    for (int64_t d = 0; d < h; d++) {
        float a = w[d] * (x[d] * r), b = w[d + h] * (x[d + h] * r);
        y[d] = a * cs[d] - b * sn[d];
        y[d + h] = b * cs[d] + a * sn[d];
    }
    return r;
}

/* Per token: cos/sin of its position (fp32 angle = fp32(pos) * inv_freq), norms and RoPE. */
static void task_norm_rope(void *arg, int64_t begin, int64_t end) {
    ctx *c = arg;
    const sm_layer *l = c->l;
    int64_t D = l->D, h = D / 2;
    for (int64_t bt = begin; bt < end; bt++) {
        int64_t b = bt / c->T, t = bt % c->T;
        float pos = (float)(past_of(c, b) + t);
        float *cs = c->cosb + bt * h, *sn = c->sinb + bt * h;
        for (int64_t j = 0; j < h; j++) {
            float ang = pos * l->inv_freq[j];
            cs[j] = cosf(ang);
            sn[j] = sinf(ang);
        }
        for (int64_t hq = 0; hq < l->nq; hq++) {
            int64_t off = (bt * l->nq + hq) * D;
            c->rq[bt * l->nq + hq] = norm_rope(c->q_raw + off, c->wq_norm, cs, sn, c->qr + off, D, l->eps);
        }
        for (int64_t hk = 0; hk < l->nkv; hk++) {
            int64_t off = (bt * l->nkv + hk) * D;
            c->rk[bt * l->nkv + hk] = norm_rope(c->k_raw + off, c->wk_norm, cs, sn, c->kr + off, D, l->eps);
        }
    }
}

/* Key / value u of sequence b, kv head hk: from the cache for u < past, else from this call. */
static const float *key_at(const ctx *c, int64_t b, int64_t hk, int64_t u, int64_t past, int value) {
    const sm_layer *l = c->l;
    if (u < past) {
        const float *slot = c->state_in + b * 2 * l->nkv * c->cap * l->D;
        if (value) slot += l->nkv * c->cap * l->D;
        return slot + (hk * c->cap + u) * l->D;
    }
    const float *src = value ? c->v : c->kr;
    return src + ((b * c->T + (u - past)) * l->nkv + hk) * l->D;
}

/* Causal softmax attention for one (b, query head), online (streaming max) softmax. */
static void task_attn(void *arg, int64_t begin, int64_t end) {
    ctx *c = arg;
    const sm_layer *l = c->l;
    int64_t D = l->D;
    for (int64_t task = begin; task < end; task++) {
        int64_t b = task / l->nq, hq = task % l->nq, hk = hq / l->n_rep;
        int64_t past = past_of(c, b);
        float *acc = c->acc + task * D;
        for (int64_t t = 0; t < c->T; t++) {
            int64_t bt = b * c->T + t;
            const float *q = c->qr + (bt * l->nq + hq) * D;
            float m = -INFINITY, sum = 0.0f;
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int64_t u = 0; u <= past + t; u++) {
                const float *k = key_at(c, b, hk, u, past, 0), *vv = key_at(c, b, hk, u, past, 1);
                float s = 0.0f;
                for (int64_t d = 0; d < D; d++) s += q[d] * k[d];
                s *= l->scale;
                if (s > m) {
                    float corr = expf(m - s); /* 0 when m = -inf */
                    sum *= corr;
                    for (int64_t d = 0; d < D; d++) acc[d] *= corr;
                    m = s;
                }
                float p = expf(s - m);
                sum += p;
                for (int64_t d = 0; d < D; d++) acc[d] += p * vv[d];
            }
            float *o = c->o + (bt * l->nq + hq) * D;
            for (int64_t d = 0; d < D; d++) o[d] = acc[d] / sum;
            c->lse[bt * l->nq + hq] = m + logf(sum);
        }
    }
}

static graft_status check_io(const graft_mixer_io *io, int backward, graft_err *err) {
    if (!io || io->struct_size < offsetof(graft_mixer_io, dcarry) + sizeof io->dcarry)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: graft_mixer_io missing or too short");
    const sm_layer *l = io->layer;
    if (!l) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: io.layer is NULL");
    if (io->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "softmax: device %d: this build of the plugin has no CUDA kernels",
                             (int)io->device);
    if (io->B < 1 || io->T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: B %lld, T %lld, expected >= 1", (long long)io->B,
                             (long long)io->T);
    if (!io->params || !io->x || !io->scratch || (!backward && !io->y) ||
        (backward && (!io->dy || !io->dx || !io->grads || !io->saved)))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax: %s: a required buffer is NULL (params, x, scratch, %s)",
                             backward ? "backward" : "forward", backward ? "dy, dx, grads, saved" : "y");
    for (int i = 0; i < N_PARAMS; i++) {
        const graft_tensor *p = &io->params[i];
        int64_t want0 = i == P_Q ? l->nq * l->D : (i == P_K || i == P_V) ? l->nkv * l->D : i == P_O ? l->C : l->D;
        if (!p->data || p->dtype != GRAFT_DTYPE_F32 || p->device != GRAFT_DEVICE_CPU || p->shape[0] != want0 ||
            !graft_tensor_is_contiguous(p) || (backward && (!io->grads[i].data || !graft_tensor_is_contiguous(&io->grads[i]))))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax: param %d: expected a contiguous F32 CPU tensor of the declared shape", i);
    }
    return GRAFT_STATUS_OK;
}

graft_status sm_forward_cpu(const graft_mixer_io *io, graft_err *err) {
    if (check_io(io, 0, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    const sm_layer *l = io->layer;
    int64_t B = io->B, T = io->T, BT = B * T, C = l->C, D = l->D, qd = l->nq * D, kd = l->nkv * D;
    const int64_t cap = io->state_capacity;
    for (int64_t b = 0; b < B; b++) {
        int64_t past = io->past_len ? io->past_len[b] : 0;
        if (past < 0 || (past > 0 && !io->state_in))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax: past_len[%lld] = %lld %s", (long long)b, (long long)past,
                                 past < 0 ? "is negative" : "but state_in is NULL (no cache to continue)");
        if ((io->state_in || io->state_out) && past + T > cap)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax: sequence %lld: past_len %lld + T %lld exceeds the KV cache capacity %lld",
                                 (long long)b, (long long)past, (long long)T, (long long)cap);
    }
    ctx c;
    memset(&c, 0, sizeof c);
    c.l = l;
    c.B = B;
    c.T = T;
    c.cap = cap;
    c.past = io->state_in ? io->past_len : NULL;
    c.state_in = io->state_in;
    c.x = io->x;
    float *scratch = io->scratch;
    carve(&c, io->saved ? (float *)io->saved : scratch);
    float *rest = scratch + BT * sm_saved_floats_per_token(l);
    c.cosb = rest; rest += BT * D / 2;
    c.sinb = rest; rest += BT * D / 2;
    c.acc = rest;
    c.wq_norm = io->params[P_QNORM].data;
    c.wk_norm = io->params[P_KNORM].data;

    /* projections: (BT, C) x (out, C)^T */
    if (mm(l, 0, 1, BT, qd, C, io->x, C, io->params[P_Q].data, C, c.q_raw, qd, 0.0f, err) ||
        mm(l, 0, 1, BT, kd, C, io->x, C, io->params[P_K].data, C, c.k_raw, kd, 0.0f, err) ||
        mm(l, 0, 1, BT, kd, C, io->x, C, io->params[P_V].data, C, c.v, kd, 0.0f, err))
        return graft_err_prefix(err, "softmax: forward");
    const graft_host *h = l->host;
    h->parallel_for(h->ctx, BT, task_norm_rope, &c);
    h->parallel_for(h->ctx, B * l->nq, task_attn, &c);
    if (mm(l, 0, 1, BT, C, qd, c.o, qd, io->params[P_O].data, qd, io->y, C, 0.0f, err))
        return graft_err_prefix(err, "softmax: forward");

    /* the cache after this call: the old prefix (unless updated in place) and the new keys */
    if (io->state_out) {
        int64_t slot = 2 * kd * cap;
        for (int64_t b = 0; b < B; b++) {
            int64_t past = c.past ? c.past[b] : 0;
            float *K = (float *)io->state_out + b * slot, *V = K + kd * cap;
            if (io->state_in && io->state_in != io->state_out && past > 0) {
                const float *Ki = (const float *)io->state_in + b * slot, *Vi = Ki + kd * cap;
                for (int64_t hk = 0; hk < l->nkv; hk++) {
                    memcpy(K + hk * cap * D, Ki + hk * cap * D, (size_t)(past * D) * sizeof(float));
                    memcpy(V + hk * cap * D, Vi + hk * cap * D, (size_t)(past * D) * sizeof(float));
                }
            }
            for (int64_t t = 0; t < T; t++)
                for (int64_t hk = 0; hk < l->nkv; hk++) {
                    int64_t src = ((b * T + t) * l->nkv + hk) * D;
                    memcpy(K + (hk * cap + past + t) * D, c.kr + src, (size_t)D * sizeof(float));
                    memcpy(V + (hk * cap + past + t) * D, c.v + src, (size_t)D * sizeof(float));
                }
        }
    }
    return GRAFT_STATUS_OK;
}

/* Backward of the attention for one (b, kv head): its n_rep query heads, dK and dV summed. */
static void task_attn_bwd(void *arg, int64_t begin, int64_t end) {
    ctx *c = arg;
    const sm_layer *l = c->l;
    int64_t D = l->D, T = c->T;
    for (int64_t task = begin; task < end; task++) {
        int64_t b = task / l->nkv, hk = task % l->nkv;
        for (int64_t t = 0; t < T; t++) {
            int64_t bt = b * T + t;
            memset(c->dkr + (bt * l->nkv + hk) * D, 0, (size_t)D * sizeof(float));
            memset(c->dv + (bt * l->nkv + hk) * D, 0, (size_t)D * sizeof(float));
        }
        for (int64_t hq = hk * l->n_rep; hq < (hk + 1) * l->n_rep; hq++) {
            for (int64_t t = 0; t < T; t++) {
                int64_t bt = b * T + t;
                const float *q = c->qr + (bt * l->nq + hq) * D, *dO = c->dO + (bt * l->nq + hq) * D;
                const float *o = c->o + (bt * l->nq + hq) * D;
                float *dq = c->dqr + (bt * l->nq + hq) * D;
                memset(dq, 0, (size_t)D * sizeof(float));
                float delta = 0.0f; /* rowsum(dP * P) = dO . o */
                for (int64_t d = 0; d < D; d++) delta += dO[d] * o[d];
                float lse = c->lse[bt * l->nq + hq];
                for (int64_t u = 0; u <= t; u++) {
                    int64_t bu = b * T + u;
                    const float *k = c->kr + (bu * l->nkv + hk) * D, *vv = c->v + (bu * l->nkv + hk) * D;
                    float *dk = c->dkr + (bu * l->nkv + hk) * D, *dvv = c->dv + (bu * l->nkv + hk) * D;
                    float s = 0.0f, dp = 0.0f;
                    for (int64_t d = 0; d < D; d++) {
                        s += q[d] * k[d];
                        dp += dO[d] * vv[d];
                    }
                    float p = expf(s * l->scale - lse);
                    float ds = p * (dp - delta) * l->scale; /* dS, with the score scale folded in */
                    for (int64_t d = 0; d < D; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dvv[d] += p * dO[d];
                    }
                }
            }
        }
    }
}

/* Through RoPE (the transpose rotation) and RMSNorm of one head vector: g (D) in, dx (D) out
 * (may alias g); dw (D) accumulated. */
static void norm_rope_bwd(const float *g, const float *x, float r, const float *w, const float *cs, const float *sn,
                          float *tmp, float *dw, float *dx, int64_t D) {
    int64_t h = D / 2;
    for (int64_t d = 0; d < h; d++) {
        tmp[d] = g[d] * cs[d] + g[d + h] * sn[d];
        tmp[d + h] = -g[d] * sn[d] + g[d + h] * cs[d];
    }
    double dotv = 0;
    for (int64_t d = 0; d < D; d++) {
        dw[d] += tmp[d] * (x[d] * r);
        dotv += (double)tmp[d] * w[d] * x[d];
    }
    float k3 = (float)((double)r * r * r * dotv / (double)D);
    for (int64_t d = 0; d < D; d++) dx[d] = r * (tmp[d] * w[d]) - x[d] * k3;
}

graft_status sm_backward_cpu(const graft_mixer_io *io, graft_err *err) {
    if (check_io(io, 1, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    const sm_layer *l = io->layer;
    if (io->state_in || io->dstate_out || io->dstate_in)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax: backward through a KV cache (state_in / dstate_out / dstate_in) is not "
                             "supported: run the training forward and backward from the empty state");
    if (io->past_len)
        for (int64_t b = 0; b < io->B; b++)
            if (io->past_len[b])
                return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                     "softmax: backward with past_len[%lld] = %lld is not supported", (long long)b,
                                     (long long)io->past_len[b]);
    int64_t B = io->B, T = io->T, BT = B * T, C = l->C, D = l->D, qd = l->nq * D, kd = l->nkv * D;
    ctx c;
    memset(&c, 0, sizeof c);
    c.l = l;
    c.B = B;
    c.T = T;
    carve(&c, io->saved);
    float *rest = (float *)io->scratch + BT * sm_saved_floats_per_token(l);
    c.cosb = rest; rest += BT * D / 2;
    c.sinb = rest; rest += BT * D / 2;
    c.acc = rest; rest += B * l->nq * D;
    float *dO = rest; rest += BT * qd;
    c.dqr = rest; rest += BT * qd;
    c.dkr = rest; rest += BT * kd;
    c.dv = rest; rest += BT * kd;
    float *tmp = rest;
    c.dO = dO;
    const float *x = io->x, *dy = io->dy;
    float *gq = io->grads[P_Q].data, *gk = io->grads[P_K].data, *gv = io->grads[P_V].data, *go = io->grads[P_O].data;
    float *gqn = io->grads[P_QNORM].data, *gkn = io->grads[P_KNORM].data;
    const float *wqn = io->params[P_QNORM].data, *wkn = io->params[P_KNORM].data;

    /* y = o Wo^T:  dO = dy Wo,  dWo += dy^T o */
    if (mm(l, 0, 0, BT, qd, C, dy, C, io->params[P_O].data, qd, dO, qd, 0.0f, err) ||
        mm(l, 1, 0, C, qd, BT, dy, C, c.o, qd, go, qd, 1.0f, err))
        return graft_err_prefix(err, "softmax: backward");
    const graft_host *h = l->host;
    h->parallel_for(h->ctx, B * l->nkv, task_attn_bwd, &c);

    /* RoPE and norm backward, serial: the norm weight gradients sum over every token and head */
    int64_t hh = D / 2;
    for (int64_t bt = 0; bt < BT; bt++) {
        float pos = (float)(bt % T);
        float *cs = c.cosb + bt * hh, *sn = c.sinb + bt * hh;
        for (int64_t j = 0; j < hh; j++) {
            float ang = pos * l->inv_freq[j];
            cs[j] = cosf(ang);
            sn[j] = sinf(ang);
        }
        for (int64_t hq = 0; hq < l->nq; hq++) {
            int64_t off = (bt * l->nq + hq) * D;
            norm_rope_bwd(c.dqr + off, c.q_raw + off, c.rq[bt * l->nq + hq], wqn, cs, sn, tmp, gqn, c.dqr + off, D);
        }
        for (int64_t hk = 0; hk < l->nkv; hk++) {
            int64_t off = (bt * l->nkv + hk) * D;
            norm_rope_bwd(c.dkr + off, c.k_raw + off, c.rk[bt * l->nkv + hk], wkn, cs, sn, tmp, gkn, c.dkr + off, D);
        }
    }
    /* projections: dx = dq Wq + dk Wk + dv Wv;  dW += d^T x */
    if (mm(l, 0, 0, BT, C, qd, c.dqr, qd, io->params[P_Q].data, C, io->dx, C, 0.0f, err) ||
        mm(l, 0, 0, BT, C, kd, c.dkr, kd, io->params[P_K].data, C, io->dx, C, 1.0f, err) ||
        mm(l, 0, 0, BT, C, kd, c.dv, kd, io->params[P_V].data, C, io->dx, C, 1.0f, err) ||
        mm(l, 1, 0, qd, C, BT, c.dqr, qd, x, C, gq, C, 1.0f, err) ||
        mm(l, 1, 0, kd, C, BT, c.dkr, kd, x, C, gk, C, 1.0f, err) ||
        mm(l, 1, 0, kd, C, BT, c.dv, kd, x, C, gv, C, 1.0f, err))
        return graft_err_prefix(err, "softmax: backward");
    return GRAFT_STATUS_OK;
}
