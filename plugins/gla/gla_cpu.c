/* plugins/gla/gla_cpu.c: the fp32 CPU reference of the GLA mixer, forward and backward.
 *
 * Holds: the plain recurrence of spec/gla.md §2 (FLA fla/layers/gla.py with fused_recurrent_gla,
 * which computes the same function as chunk_gla), the short causal depthwise conv + SiLU, the
 * low-rank log-sigmoid gate, the per-head gated RMSNorm, and the hand-written backward of all of
 * it (spec/gla.md §5.4 "plain recurrent backward"). Does not hold: the chunked form (§5), CUDA,
 * config parsing or the parameter table (gla.c).
 *
 * Shapes: N = B*T rows; projections are row-major (N, width). Heads own contiguous channel
 * blocks (head h: [h*dk, (h+1)*dk)). With num_kv_heads < num_heads, q head h reads kv head
 * h / G (FLA's repeat '(h d) -> (h g) d'), for k, v and the gate alike.
 * The recurrent state is kept V-first, Sᵀ [dv, dk] per head (FLA's state_v_first layout), so the
 * read-out o[e] = s Σ_c Sᵀ[e,c] q[c] and the update both run along contiguous c.
 */
#include <math.h>
#include <string.h>

#include "gla.h"

/* ---- small math --------------------------------------------------------------------------- */

static inline float sigm(float z) { return 1.0f / (1.0f + expf(-z)); }
static inline float silu(float z) { return z * sigm(z); }
static inline float dsilu(float z) {      /* SiLU'(z) = σ(z)(1 + z(1 − σ(z))) */
    float s = sigm(z);
    return s * (1.0f + z * (1.0f - s));
}
/* logsigmoid(z) = min(z,0) − log1p(exp(−|z|)): never overflows, exact for large |z|. */
static inline float logsigm(float z) { return fminf(z, 0.0f) - log1pf(expf(-fabsf(z))); }

static size_t take(size_t *cursor, int64_t n) {
    size_t o = *cursor;
    *cursor += ((size_t)n + 15u) & ~(size_t)15u;  /* 64-byte aligned sub-buffers */
    return o;
}

void gla_plan_make(const gla_layer *L, int64_t B, int64_t T, gla_plan *p) {
    memset(p, 0, sizeof *p);
    int64_t N = B * T, Kch = L->Kq + L->Kkv + L->Vkv, dvdk = L->dv * L->dk;
    p->B = B;
    p->T = T;
    p->N = N;
    p->nck = (T + GLA_CKPT - 1) / GLA_CKPT;
    size_t c = 0;
    p->qt = take(&c, N * L->Kq);
    p->kt = take(&c, N * L->Kkv);
    p->vt = take(&c, N * L->Vkv);
    if (L->use_conv) {
        p->hist = take(&c, B * Kch * L->W);
        p->cq = take(&c, N * L->Kq);
        p->ck = take(&c, N * L->Kkv);
        p->cv = take(&c, N * L->Vkv);
    }
    p->gh = take(&c, N * L->Vq);
    p->lr = take(&c, N * L->r);
    p->z = take(&c, N * L->Kkv);
    p->o = take(&c, N * L->Vq);
    p->rstd = take(&c, N * L->H);
    p->ckpt = take(&c, B * L->H * p->nck * dvdk);
    p->act_floats = c;

    c = 0;
    if (L->use_conv) {
        p->qa = take(&c, N * L->Kq);
        p->ka = take(&c, N * L->Kkv);
        p->va = take(&c, N * L->Vkv);
    }
    p->alpha = take(&c, N * L->Kkv);
    p->u = take(&c, N * L->Vq);
    p->du = take(&c, N * L->Vq);
    p->dgh = take(&c, N * L->Vq);
    p->dout = take(&c, N * L->Vq);
    p->dq = take(&c, N * L->Kq);
    p->dke = take(&c, N * L->H * L->dk);
    p->dve = take(&c, N * L->H * L->dv);
    p->dae = take(&c, N * L->H * L->dk);
    p->dk = take(&c, N * L->Kkv);
    p->dv = take(&c, N * L->Vkv);
    p->dz = take(&c, N * L->Kkv);
    if (L->use_conv) {
        p->dqt = take(&c, N * L->Kq);
        p->dkt = take(&c, N * L->Kkv);
        p->dvt = take(&c, N * L->Vkv);
    }
    p->dlr = take(&c, N * L->r);
    p->sbuf = take(&c, B * L->H * GLA_CKPT * dvdk);
    p->dsb = take(&c, B * L->H * dvdk);
    p->dec = take(&c, B * L->H * L->dk);
    p->work_floats = c;
}

size_t gla_state_floats(const gla_layer *L) {
    size_t n = (size_t)(L->H * L->dv * L->dk);
    if (L->use_conv) n += (size_t)((L->Kq + L->Kkv + L->Vkv) * L->W);
    return n;
}

/* C = op(A) op(B) (+ C when beta = 1), row-major, through the host (OpenBLAS / cuBLAS). */
static graft_status mm(const gla_layer *L, int ta, int tb, int64_t m, int64_t n, int64_t k,
                       const float *A, int64_t lda, const float *Bm, int64_t ldb, float beta,
                       float *Cm, int64_t ldc, graft_err *err) {
    return graft_host_matmul_f32(L->host, ta, tb, m, n, k, A, lda, Bm, ldb, Cm, ldc, beta, err);
}

static const float *P(const gla_layer *L, const graft_mixer_io *io, int slot) {
    return (const float *)io->params[L->slot[slot]].data;
}
static float *G(const gla_layer *L, const graft_mixer_io *io, int slot) {
    return (float *)io->grads[L->slot[slot]].data;
}

/* ---- short convolution ---------------------------------------------------------------------
 * Per channel c, over the extended sequence E = [hist[c][0..W-1], in_0[c], ..., in_{T-1}[c]]:
 *     pre_t[c] = Σ_j w[c][j] · E[t+1+j]           (j = W−1 is the current token, spec §7.6)
 * and the state after the call holds E[T .. T+W−1] (FLA keeps W entries, oldest first). */
static inline float conv_e(const float *hist, const float *in, int64_t stride, int64_t W,
                           int64_t i) {
    return i < W ? hist[i] : in[(i - W) * stride];
}

static void conv_forward(const float *in, int64_t width, const float *hist, int64_t hist_stride_b,
                         const float *w, float *pre, float *post, int64_t B, int64_t T, int64_t W) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < width; c++) {
            const float *h = hist + b * hist_stride_b + c * W, *x = in + b * T * width + c;
            const float *wc = w + c * W;
            for (int64_t t = 0; t < T; t++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < W; j++) acc += wc[j] * conv_e(h, x, width, W, t + 1 + j);
                pre[(b * T + t) * width + c] = acc;
                post[(b * T + t) * width + c] = silu(acc);
            }
        }
}

/* Writes the conv tails E[T..T+W−1] into the state slots (after the whole forward read them). */
static void conv_tail(const float *in, int64_t width, const float *hist, int64_t hist_stride_b,
                      float *tail, int64_t tail_stride_b, int64_t B, int64_t T, int64_t W) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < width; c++) {
            const float *h = hist + b * hist_stride_b + c * W, *x = in + b * T * width + c;
            float *o = tail + b * tail_stride_b + c * W;
            for (int64_t j = 0; j < W; j++) o[j] = conv_e(h, x, width, W, T + j);
        }
}

/* Backward of conv_forward + tail. dc (N, width) is the gradient of the pre-activation (already
 * multiplied by SiLU'), dtail the gradient of the state tails (NULL = 0). Writes din (=), dhist
 * (=, may be NULL; may alias dtail: each channel's tail is read before its dhist is written) and
 * accumulates dw (+=). E[i] is read by output t = i−1−j; E[T+j] is the tail entry j. */
static void conv_backward(const float *in, int64_t width, const float *hist, int64_t hist_stride_b,
                          const float *w, const float *dc, const float *dtail, float *dhist,
                          int64_t dstate_stride_b, float *din, float *dw, int64_t B, int64_t T,
                          int64_t W) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < width; c++) {
            const float *h = hist + b * hist_stride_b + c * W, *x = in + b * T * width + c;
            const float *wc = w + c * W, *g = dc + b * T * width + c;
            float dt[64];  /* W <= 64 (gla.c) */
            for (int64_t j = 0; j < W; j++)
                dt[j] = dtail ? dtail[b * dstate_stride_b + c * W + j] : 0.0f;
            /* dE[i] for i in [0, W + T) */
            for (int64_t i = 0; i < W + T; i++) {
                float acc = (i >= T) ? dt[i - T] : 0.0f;
                for (int64_t j = 0; j < W; j++) {
                    int64_t t = i - 1 - j;
                    if (t >= 0 && t < T) acc += wc[j] * g[t * width];
                }
                if (i < W) {
                    if (dhist) dhist[b * dstate_stride_b + c * W + i] = acc;
                } else {
                    din[(b * T + (i - W)) * width + c] = acc;
                }
            }
            for (int64_t j = 0; j < W; j++) {
                double acc = 0.0;
                for (int64_t t = 0; t < T; t++)
                    acc += (double)g[t * width] * conv_e(h, x, width, W, t + 1 + j);
                dw[c * W + j] += (float)acc;
            }
        }
}

/* ---- the recurrence ------------------------------------------------------------------------ */

typedef struct rec_ctx {
    const gla_layer *L;
    const gla_plan *p;
    const float *q, *k, *v, *alpha;   /* (N, Kq) (N, Kkv) (N, Vkv) (N, Kkv)                    */
    float *o;                         /* (N, Vq) forward output, before the norm                 */
    float *ckpt;                      /* (B, H, nck, dv, dk) or NULL                             */
    const float *dout;                /* backward: (N, Vq)                                       */
    float *dq, *dke, *dve, *dae;      /* backward: (N, Kq) (N, H*dk) (N, H*dv) (N, H*dk)         */
    float *sbuf, *dsb, *dec;          /* scratch                                                 */
    const float *state_in;            /* B slots or NULL                                         */
    float *state_out;                 /* B slots or NULL                                         */
    const float *dstate_out;
    float *dstate_in;
    size_t slot_floats;
} rec_ctx;

/* Forward for (b, h) in [begin, end):  Sᵀ_t = Sᵀ_{t−1} Diag(e^{α_t}) + v_t k_tᵀ,
 * o_t = s Sᵀ_t q_t (read after the update: token t sees itself, spec §7.3). */
static void rec_forward(void *arg, int64_t begin, int64_t end) {
    const rec_ctx *cx = arg;
    const gla_layer *L = cx->L;
    const int64_t T = cx->p->T, H = L->H, dk = L->dk, dv = L->dv, dvdk = dv * dk;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / H, h = bh % H, kvh = h / L->G;
        float *S = cx->sbuf + bh * GLA_CKPT * dvdk;  /* Sᵀ [dv, dk] */
        float *dec = cx->dec + bh * dk;
        if (cx->state_in)
            memcpy(S, cx->state_in + b * cx->slot_floats + h * dvdk, sizeof(float) * dvdk);
        else
            memset(S, 0, sizeof(float) * dvdk);
        for (int64_t t = 0; t < T; t++) {
            int64_t n = b * T + t;
            if (cx->ckpt && t % GLA_CKPT == 0)
                memcpy(cx->ckpt + (bh * cx->p->nck + t / GLA_CKPT) * dvdk, S,
                       sizeof(float) * dvdk);
            const float *q = cx->q + n * L->Kq + h * dk, *k = cx->k + n * L->Kkv + kvh * dk;
            const float *v = cx->v + n * L->Vkv + kvh * dv, *a = cx->alpha + n * L->Kkv + kvh * dk;
            float *o = cx->o + n * L->Vq + h * dv;
            for (int64_t c = 0; c < dk; c++) dec[c] = expf(a[c]);
            for (int64_t e = 0; e < dv; e++) {
                float *row = S + e * dk, acc = 0.0f;
                for (int64_t c = 0; c < dk; c++) {
                    row[c] = dec[c] * row[c] + v[e] * k[c];
                    acc += row[c] * q[c];
                }
                o[e] = L->scale * acc;
            }
        }
        if (cx->state_out)
            memcpy(cx->state_out + b * cx->slot_floats + h * dvdk, S, sizeof(float) * dvdk);
    }
}

/* Backward for (b, h): spec §5.4's plain recurrent backward. S_t is recomputed forwards inside
 * each GLA_CKPT-token chunk from the saved checkpoint (never back-stepped: e^{−α} explodes).
 *     dSᵀ += s do_t q_tᵀ            (now the total gradient of S_t)
 *     dq_t = s S_t do_t;  dk_t = dS v_t;  dv_t = dSᵀ k_t
 *     dα_t = e^{α_t} ⊙ rowsum(S_{t−1} ⊙ dS);  dS ← Diag(e^{α_t}) dS   (gradient of S_{t−1})
 * dk/dv/dα are per q head (dke, dve, dae); the caller sums the G heads sharing a kv head. */
static void rec_backward(void *arg, int64_t begin, int64_t end) {
    const rec_ctx *cx = arg;
    const gla_layer *L = cx->L;
    const int64_t T = cx->p->T, H = L->H, dk = L->dk, dv = L->dv, dvdk = dv * dk;
    const int64_t nck = cx->p->nck, Hdk = H * dk, Hdv = H * dv;
    const float s = L->scale;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / H, h = bh % H, kvh = h / L->G;
        float *buf = cx->sbuf + bh * GLA_CKPT * dvdk, *dS = cx->dsb + bh * dvdk;
        float *dec = cx->dec + bh * dk;
        if (cx->dstate_out)
            memcpy(dS, cx->dstate_out + b * cx->slot_floats + h * dvdk, sizeof(float) * dvdk);
        else
            memset(dS, 0, sizeof(float) * dvdk);
        for (int64_t ck = nck - 1; ck >= 0; ck--) {
            int64_t t0 = ck * GLA_CKPT, t1 = t0 + GLA_CKPT < T ? t0 + GLA_CKPT : T;
            const float *S0 = cx->ckpt + (bh * nck + ck) * dvdk;
            for (int64_t t = t0; t < t1; t++) {  /* recompute S_t, t in [t0, t1) */
                int64_t n = b * T + t;
                const float *prev = t > t0 ? buf + (t - t0 - 1) * dvdk : S0;
                float *cur = buf + (t - t0) * dvdk;
                const float *k = cx->k + n * L->Kkv + kvh * dk, *v = cx->v + n * L->Vkv + kvh * dv;
                const float *a = cx->alpha + n * L->Kkv + kvh * dk;
                for (int64_t c = 0; c < dk; c++) dec[c] = expf(a[c]);
                for (int64_t e = 0; e < dv; e++)
                    for (int64_t c = 0; c < dk; c++)
                        cur[e * dk + c] = dec[c] * prev[e * dk + c] + v[e] * k[c];
            }
            for (int64_t t = t1 - 1; t >= t0; t--) {
                int64_t n = b * T + t;
                const float *St = buf + (t - t0) * dvdk;
                const float *Sp = t > t0 ? buf + (t - t0 - 1) * dvdk : S0;
                const float *q = cx->q + n * L->Kq + h * dk, *k = cx->k + n * L->Kkv + kvh * dk;
                const float *v = cx->v + n * L->Vkv + kvh * dv;
                const float *a = cx->alpha + n * L->Kkv + kvh * dk;
                const float *dout = cx->dout + n * L->Vq + h * dv;
                float *dq = cx->dq + n * L->Kq + h * dk, *dkk = cx->dke + n * Hdk + h * dk;
                float *dvv = cx->dve + n * Hdv + h * dv, *da = cx->dae + n * Hdk + h * dk;
                for (int64_t c = 0; c < dk; c++) {
                    dec[c] = expf(a[c]);
                    dq[c] = 0.0f;
                    dkk[c] = 0.0f;
                    da[c] = 0.0f;
                }
                for (int64_t e = 0; e < dv; e++) {
                    float *g = dS + e * dk;
                    const float *st = St + e * dk, *sp = Sp + e * dk;
                    float acc = 0.0f, sdo = s * dout[e];
                    for (int64_t c = 0; c < dk; c++) {
                        g[c] += sdo * q[c];
                        dq[c] += st[c] * sdo;
                        dkk[c] += g[c] * v[e];
                        acc += g[c] * k[c];
                        da[c] += sp[c] * g[c];
                    }
                    dvv[e] = acc;
                }
                for (int64_t c = 0; c < dk; c++) da[c] *= dec[c];
                for (int64_t e = 0; e < dv; e++)
                    for (int64_t c = 0; c < dk; c++) dS[e * dk + c] *= dec[c];
            }
        }
        if (cx->dstate_in)
            memcpy(cx->dstate_in + b * cx->slot_floats + h * dvdk, dS, sizeof(float) * dvdk);
    }
}

/* ---- checks --------------------------------------------------------------------------------- */

static graft_status check_io(const gla_layer *L, const graft_mixer_io *io, int backward,
                             graft_err *err) {
    if (io->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "gla: device %d, expected CPU",
                             (int)io->device);
    if (io->B < 1 || io->T < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: B=%lld T=%lld, expected B>=1 T>=0",
                             (long long)io->B, (long long)io->T);
    for (int64_t i = 0; i < L->n_params; i++) {
        const graft_tensor *t = &io->params[i];
        const graft_param_spec *s = &L->spec[i];
        int ok = t->dtype == GRAFT_DTYPE_F32 && t->ndim == s->ndim && t->data &&
                 graft_tensor_is_contiguous(t);
        for (int32_t d = 0; ok && d < s->ndim; d++) ok = t->shape[d] == s->shape[d];
        if (backward && ok) {
            const graft_tensor *g = &io->grads[i];
            ok = g->dtype == GRAFT_DTYPE_F32 && g->ndim == s->ndim && g->data &&
                 graft_tensor_is_contiguous(g);
            for (int32_t d = 0; ok && d < s->ndim; d++) ok = g->shape[d] == s->shape[d];
        }
        if (!ok)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "gla: %s: tensor (or its gradient) is not a contiguous F32 of the "
                                 "declared shape", s->name);
    }
    if (backward && !io->saved)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla: backward: saved is NULL, expected the buffer a training forward "
                             "wrote");
    if (io->T > 0 && !io->scratch)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: scratch is NULL");
    return GRAFT_STATUS_OK;
}

/* ---- forward ------------------------------------------------------------------------------- */

graft_status gla_cpu_forward(const gla_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 0, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, W = L->W;
    const int64_t Kch = L->Kq + L->Kkv + L->Vkv, dvdk = L->dv * L->dk;
    const size_t slot = gla_state_floats(L);
    const float *sin = io->state_in;
    float *sout = io->state_out;
    if (T == 0) {  /* nothing to mix: the state passes through */
        if (sout && sin != sout) {
            if (sin) memcpy(sout, sin, sizeof(float) * slot * (size_t)B);
            else memset(sout, 0, sizeof(float) * slot * (size_t)B);
        }
        return GRAFT_STATUS_OK;
    }
    gla_plan p;
    gla_plan_make(L, B, T, &p);
    float *act = io->saved ? (float *)io->saved : (float *)io->scratch;
    float *work = (float *)io->scratch + p.act_floats;
    const float *x = io->x;
    float *y = io->y;
    float *qt = act + p.qt, *kt = act + p.kt, *vt = act + p.vt, *gh = act + p.gh;
    float *lr = act + p.lr, *z = act + p.z, *o = act + p.o, *rstd = act + p.rstd;
    float *alpha = work + p.alpha, *u = work + p.u;

    /* 1. projections (y = x Wᵀ) */
    if (mm(L, 0, 1, N, L->Kq, C, x, C, P(L, io, GLA_P_Q), C, 0, qt, L->Kq, err) ||
        mm(L, 0, 1, N, L->Kkv, C, x, C, P(L, io, GLA_P_K), C, 0, kt, L->Kkv, err) ||
        mm(L, 0, 1, N, L->Vkv, C, x, C, P(L, io, GLA_P_V), C, 0, vt, L->Vkv, err) ||
        mm(L, 0, 1, N, L->Vq, C, x, C, P(L, io, GLA_P_G), C, 0, gh, L->Vq, err) ||
        mm(L, 0, 1, N, L->r, C, x, C, P(L, io, GLA_P_GK0), C, 0, lr, L->r, err) ||
        mm(L, 0, 1, N, L->Kkv, L->r, lr, L->r, P(L, io, GLA_P_GK1), L->r, 0, z, L->Kkv, err))
        return err->status;
    const float *bias = P(L, io, GLA_P_GK1_BIAS);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < L->Kkv; c++) {
            z[n * L->Kkv + c] += bias[c];
            /* 3. α = logsigmoid(z)/γ in fp32 (spec §6 recommends fp32) */
            alpha[n * L->Kkv + c] = logsigm(z[n * L->Kkv + c]) / (float)L->gamma;
        }

    /* 2. short conv + SiLU, history from the state's conv caches */
    const float *q = qt, *k = kt, *v = vt;
    if (L->use_conv) {
        float *hist = act + p.hist;
        for (int64_t b = 0; b < B; b++) {
            float *hb = hist + b * Kch * W;
            if (sin) memcpy(hb, sin + b * slot + H * dvdk, sizeof(float) * (size_t)(Kch * W));
            else memset(hb, 0, sizeof(float) * (size_t)(Kch * W));
        }
        conv_forward(qt, L->Kq, hist, Kch * W, P(L, io, GLA_P_QCONV), act + p.cq, work + p.qa, B,
                     T, W);
        conv_forward(kt, L->Kkv, hist + L->Kq * W, Kch * W, P(L, io, GLA_P_KCONV), act + p.ck,
                     work + p.ka, B, T, W);
        conv_forward(vt, L->Vkv, hist + (L->Kq + L->Kkv) * W, Kch * W, P(L, io, GLA_P_VCONV),
                     act + p.cv, work + p.va, B, T, W);
        q = work + p.qa;
        k = work + p.ka;
        v = work + p.va;
    }

    /* 5. recurrence, one task per (b, head) */
    rec_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.L = L;
    cx.p = &p;
    cx.q = q;
    cx.k = k;
    cx.v = v;
    cx.alpha = alpha;
    cx.o = o;
    cx.ckpt = io->saved ? act + p.ckpt : NULL;
    cx.sbuf = work + p.sbuf;
    cx.dec = work + p.dec;
    cx.state_in = sin;
    cx.state_out = sout;
    cx.slot_floats = slot;
    L->host->parallel_for(L->host->ctx, B * H, rec_forward, &cx);

    /* 6. per-head RMSNorm over dv (weight [dv] shared by heads) times SiLU(g) */
    const float *wn = P(L, io, GLA_P_NORM);
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            const float *oh = o + n * L->Vq + h * L->dv, *gg = gh + n * L->Vq + h * L->dv;
            float *uh = u + n * L->Vq + h * L->dv;
            double ms = 0.0;
            for (int64_t e = 0; e < L->dv; e++) ms += (double)oh[e] * oh[e];
            float r = (float)(1.0 / sqrt(ms / (double)L->dv + L->eps));
            rstd[n * H + h] = r;
            for (int64_t e = 0; e < L->dv; e++) uh[e] = oh[e] * r * wn[e] * silu(gg[e]);
        }

    /* 7. output projection */
    if (mm(L, 0, 1, N, C, L->Vq, u, L->Vq, P(L, io, GLA_P_O), L->Vq, 0, y, C, err))
        return err->status;

    /* decode state: conv tails last (the history was copied out of state_in above) */
    if (sout && L->use_conv) {
        const float *hist = act + p.hist;
        float *tail = sout + H * dvdk;
        conv_tail(qt, L->Kq, hist, Kch * W, tail, (int64_t)slot, B, T, W);
        conv_tail(kt, L->Kkv, hist + L->Kq * W, Kch * W, tail + L->Kq * W, (int64_t)slot, B, T, W);
        conv_tail(vt, L->Vkv, hist + (L->Kq + L->Kkv) * W, Kch * W,
                  tail + (L->Kq + L->Kkv) * W, (int64_t)slot, B, T, W);
    }
    return GRAFT_STATUS_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* dst (N, Hkv*d) = Σ over the G q heads sharing each kv head of src (N, H*d). */
static void sum_groups(const gla_layer *L, int64_t N, int64_t d, const float *src, float *dst) {
    const int64_t H = L->H, G = L->G;
    for (int64_t n = 0; n < N; n++)
        for (int64_t kh = 0; kh < L->Hkv; kh++)
            for (int64_t c = 0; c < d; c++) {
                float acc = 0.0f;
                for (int64_t g = 0; g < G; g++) acc += src[(n * H + kh * G + g) * d + c];
                dst[(n * L->Hkv + kh) * d + c] = acc;
            }
}

graft_status gla_cpu_backward(const gla_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 1, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, W = L->W;
    const int64_t Kch = L->Kq + L->Kkv + L->Vkv, dvdk = L->dv * L->dk;
    const size_t slot = gla_state_floats(L);
    if (T == 0) {  /* the state passed through: so does its gradient */
        if (io->dstate_in && io->dstate_in != io->dstate_out) {
            if (io->dstate_out)
                memcpy(io->dstate_in, io->dstate_out, sizeof(float) * slot * (size_t)B);
            else
                memset(io->dstate_in, 0, sizeof(float) * slot * (size_t)B);
        }
        return GRAFT_STATUS_OK;
    }
    gla_plan p;
    gla_plan_make(L, B, T, &p);
    const float *act = io->saved;
    float *work = (float *)io->scratch + p.act_floats;
    const float *x = io->x, *dy = io->dy;
    float *dx = io->dx;
    const float *qt = act + p.qt, *kt = act + p.kt, *vt = act + p.vt, *gh = act + p.gh;
    const float *lr = act + p.lr, *z = act + p.z, *o = act + p.o, *rstd = act + p.rstd;
    float *alpha = work + p.alpha, *u = work + p.u, *du = work + p.du, *dgh = work + p.dgh;
    float *dout = work + p.dout, *dq = work + p.dq, *dk = work + p.dk, *dv = work + p.dv;
    float *dz = work + p.dz, *dlr = work + p.dlr;
    const float *wn = P(L, io, GLA_P_NORM);

    /* recompute what the forward did not save: q, k, v after SiLU, α, the norm output u */
    const float *q = qt, *k = kt, *v = vt;
    if (L->use_conv) {
        float *qa = work + p.qa, *ka = work + p.ka, *va = work + p.va;
        const float *cq = act + p.cq, *ck = act + p.ck, *cv = act + p.cv;
        for (int64_t i = 0; i < N * L->Kq; i++) qa[i] = silu(cq[i]);
        for (int64_t i = 0; i < N * L->Kkv; i++) ka[i] = silu(ck[i]);
        for (int64_t i = 0; i < N * L->Vkv; i++) va[i] = silu(cv[i]);
        q = qa;
        k = ka;
        v = va;
    }
    for (int64_t i = 0; i < N * L->Kkv; i++) alpha[i] = logsigm(z[i]) / (float)L->gamma;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t e = 0; e < L->dv; e++) {
                int64_t i = n * L->Vq + h * L->dv + e;
                u[i] = o[i] * rstd[n * H + h] * wn[e] * silu(gh[i]);
            }

    /* o_proj: dWo += dyᵀ u (C, Vq);  du = dy Wo */
    if (mm(L, 1, 0, C, L->Vq, N, dy, C, u, L->Vq, 1, G(L, io, GLA_P_O), L->Vq, err) ||
        mm(L, 0, 0, N, L->Vq, C, dy, C, P(L, io, GLA_P_O), L->Vq, 0, du, L->Vq, err))
        return err->status;

    /* gated RMSNorm: u = ō ⊙ w ⊙ SiLU(g), ō = o·rstd;  do = rstd (dō − ō mean(dō ⊙ ō)) */
    float *dwn = G(L, io, GLA_P_NORM);
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            int64_t base = n * L->Vq + h * L->dv;
            float r = rstd[n * H + h];
            double dot = 0.0;
            for (int64_t e = 0; e < L->dv; e++) {
                float ob = o[base + e] * r, g = gh[base + e], sg = silu(g), d = du[base + e];
                dwn[e] += d * ob * sg;
                dgh[base + e] = d * ob * wn[e] * dsilu(g);
                float dob = d * wn[e] * sg;
                dout[base + e] = dob;
                dot += (double)dob * ob;
            }
            float mean = (float)(dot / (double)L->dv);
            for (int64_t e = 0; e < L->dv; e++)
                dout[base + e] = r * (dout[base + e] - o[base + e] * r * mean);
        }

    /* g_proj: dWg += dghᵀ x;  dx = dgh Wg (the first write of dx) */
    if (mm(L, 1, 0, L->Vq, C, N, dgh, L->Vq, x, C, 1, G(L, io, GLA_P_G), C, err) ||
        mm(L, 0, 0, N, C, L->Vq, dgh, L->Vq, P(L, io, GLA_P_G), C, 0, dx, C, err))
        return err->status;

    /* recurrence */
    rec_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.L = L;
    cx.p = &p;
    cx.q = q;
    cx.k = k;
    cx.v = v;
    cx.alpha = alpha;
    cx.ckpt = (float *)(act + p.ckpt);
    cx.dout = dout;
    cx.dq = dq;
    cx.dke = work + p.dke;
    cx.dve = work + p.dve;
    cx.dae = work + p.dae;
    cx.sbuf = work + p.sbuf;
    cx.dsb = work + p.dsb;
    cx.dec = work + p.dec;
    cx.dstate_out = io->dstate_out;
    cx.dstate_in = io->dstate_in;
    cx.slot_floats = slot;
    L->host->parallel_for(L->host->ctx, B * H, rec_backward, &cx);
    sum_groups(L, N, L->dk, work + p.dke, dk);
    sum_groups(L, N, L->dv, work + p.dve, dv);
    sum_groups(L, N, L->dk, work + p.dae, dz);

    /* gate: α = logsigmoid(z)/γ → dz = dα σ(−z)/γ; z = lr W1ᵀ + b; lr = x W0ᵀ */
    float *db = G(L, io, GLA_P_GK1_BIAS);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < L->Kkv; c++) {
            float *d = &dz[n * L->Kkv + c];
            *d *= sigm(-z[n * L->Kkv + c]) / (float)L->gamma;
            db[c] += *d;
        }
    if (mm(L, 1, 0, L->Kkv, L->r, N, dz, L->Kkv, lr, L->r, 1, G(L, io, GLA_P_GK1), L->r, err) ||
        mm(L, 0, 0, N, L->r, L->Kkv, dz, L->Kkv, P(L, io, GLA_P_GK1), L->r, 0, dlr, L->r, err) ||
        mm(L, 1, 0, L->r, C, N, dlr, L->r, x, C, 1, G(L, io, GLA_P_GK0), C, err) ||
        mm(L, 0, 0, N, C, L->r, dlr, L->r, P(L, io, GLA_P_GK0), C, 1, dx, C, err))
        return err->status;

    /* short conv + SiLU backward; the conv caches' gradient goes to dstate_in */
    const float *dqt = dq, *dkt = dk, *dvt = dv;
    if (L->use_conv) {
        const float *cq = act + p.cq, *ck = act + p.ck, *cv = act + p.cv, *hist = act + p.hist;
        for (int64_t i = 0; i < N * L->Kq; i++) dq[i] *= dsilu(cq[i]);
        for (int64_t i = 0; i < N * L->Kkv; i++) dk[i] *= dsilu(ck[i]);
        for (int64_t i = 0; i < N * L->Vkv; i++) dv[i] *= dsilu(cv[i]);
        const float *dto = io->dstate_out ? (const float *)io->dstate_out + H * dvdk : NULL;
        float *dhi = io->dstate_in ? (float *)io->dstate_in + H * dvdk : NULL;
        int64_t offk = L->Kq * W, offv = (L->Kq + L->Kkv) * W;
        conv_backward(qt, L->Kq, hist, Kch * W, P(L, io, GLA_P_QCONV), dq, dto, dhi,
                      (int64_t)slot, work + p.dqt, G(L, io, GLA_P_QCONV), B, T, W);
        conv_backward(kt, L->Kkv, hist + offk, Kch * W, P(L, io, GLA_P_KCONV), dk,
                      dto ? dto + offk : NULL, dhi ? dhi + offk : NULL, (int64_t)slot,
                      work + p.dkt, G(L, io, GLA_P_KCONV), B, T, W);
        conv_backward(vt, L->Vkv, hist + offv, Kch * W, P(L, io, GLA_P_VCONV), dv,
                      dto ? dto + offv : NULL, dhi ? dhi + offv : NULL, (int64_t)slot,
                      work + p.dvt, G(L, io, GLA_P_VCONV), B, T, W);
        dqt = work + p.dqt;
        dkt = work + p.dkt;
        dvt = work + p.dvt;
    }

    /* q/k/v projections */
    if (mm(L, 1, 0, L->Kq, C, N, dqt, L->Kq, x, C, 1, G(L, io, GLA_P_Q), C, err) ||
        mm(L, 0, 0, N, C, L->Kq, dqt, L->Kq, P(L, io, GLA_P_Q), C, 1, dx, C, err) ||
        mm(L, 1, 0, L->Kkv, C, N, dkt, L->Kkv, x, C, 1, G(L, io, GLA_P_K), C, err) ||
        mm(L, 0, 0, N, C, L->Kkv, dkt, L->Kkv, P(L, io, GLA_P_K), C, 1, dx, C, err) ||
        mm(L, 1, 0, L->Vkv, C, N, dvt, L->Vkv, x, C, 1, G(L, io, GLA_P_V), C, err) ||
        mm(L, 0, 0, N, C, L->Vkv, dvt, L->Vkv, P(L, io, GLA_P_V), C, 1, dx, C, err))
        return err->status;
    return GRAFT_STATUS_OK;
}
