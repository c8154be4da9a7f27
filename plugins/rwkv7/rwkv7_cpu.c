/* plugins/rwkv7/rwkv7_cpu.c: the fp32 CPU reference of the RWKV-7 mixer, forward and backward,
 * written to be read (DESIGN: the CPU path is the reference). Matrix products go through
 * host->matmul; the per-(sequence, head) recurrence and the per-token elementwise passes through
 * host->parallel_for.
 *
 * Not here: a chunked (DPLR, spec §5) form; the recurrence is the plain one of spec §2.11, and its
 * backward the plain one of §6.1 with the states recomputed forward from checkpoints every
 * RWKV7_CKPT tokens (never back-stepped: the transition is not safely invertible).
 * Reference: spec/rwkv7.md §2 (forward), §4 (decode state), §6.1 and §6.3 (backward);
 * flash-linear-attention fla/layers/rwkv7.py. Layout: rows n = b * T + t; a head h owns channels
 * [h * K, (h + 1) * K) of every C-wide row and [h * V, (h + 1) * V) of every Vt-wide row.
 */
#include <math.h>
#include <string.h>

#include "rwkv7.h"

#define CW 0.6065306597126334 /* c_w = exp(-1/2): w = -c_w * sigmoid(z) in (-0.6065, 0) */
#define L2_EPS 1e-6           /* kappa = u / sqrt(|u|^2 + 1e-6): FLA's fused l2_norm */
#define NBOX 6                /* the six token-shift mixes r, w, k, v, a, g */

/* Saved activations (written by a training forward, read by backward). Shapes in rows of N = B*T. */
typedef struct acts {
    float *dlt;                  /* (N, C)  delta_t = x_{t-1} - x_t                              */
    float *r, *w, *k, *k0, *kap, *al; /* (N, C) receptance, log-decay, updated key, raw key,
                                         removal key kappa, in-context rate alpha              */
    float *v0, *v, *g, *nu, *o;  /* (N, Vt) raw value, mixed value, gate, value-residual mix,
                                    recurrence output before the GroupNorm                      */
    float *hw, *ha, *hv, *hg;    /* (N, r_*) LoRA middles: tanh, identity, identity, sigmoid     */
    float *un, *mean, *rstd;     /* (N, H) |u| of kappa, GroupNorm mean and 1/std               */
    float *ckpt;                 /* (B, H, n_ckpt, K, V) S before tokens 0, RWKV7_CKPT, ...      */
} acts;

/* Scratch: temporaries of one call. */
typedef struct scratch {
    acts a;                      /* used by a forward that has no saved buffer                  */
    float *xb[NBOX];             /* (N, C) x + delta * mu_box                                   */
    float *og;                   /* (N, Vt) gated output, input of o_proj                       */
    float *Sw;                   /* (B, H, RWKV7_CKPT + 1, K, V) states of one checkpoint span  */
    float *dS;                   /* (B, H, K, V) running state gradient                          */
    float *Stmp;                 /* (B, H, K, V) running state while a span is recomputed        */
    float *vec;                  /* (B, H, 2, V) sa and dsa                                     */
    float *dxb[NBOX];            /* (N, C) gradients of the six mixes                           */
    float *dr, *dw, *dk, *dk0, *dkap, *dal; /* (N, C)                                           */
    float *dv, *dv0, *dg, *dO, *dof; /* (N, Vt)                                                */
    float *dbeta;                /* (N, H) gradient of the bonus scalar                         */
    float *dh;                   /* (N, max rank) LoRA middle gradient                          */
} scratch;

static int64_t n_ckpt(int64_t T) { return (T + RWKV7_CKPT - 1) / RWKV7_CKPT; }

/* Hands out consecutive 64-byte aligned float ranges from base (or only counts when base is NULL). */
static float *take(float *base, size_t *off, int64_t n) {
    float *p = base ? base + *off : NULL;
    *off += ((size_t)n + 15) & ~(size_t)15;
    return p;
}

static size_t acts_layout(const rwkv7_layer *L, int64_t B, int64_t T, float *base, acts *a) {
    const int64_t N = B * T, C = L->C, Vt = L->Vt, H = L->H;
    size_t off = 0;
    a->dlt = take(base, &off, N * C);
    a->r = take(base, &off, N * C);
    a->w = take(base, &off, N * C);
    a->k = take(base, &off, N * C);
    a->k0 = take(base, &off, N * C);
    a->kap = take(base, &off, N * C);
    a->al = take(base, &off, N * C);
    a->v0 = take(base, &off, N * Vt);
    a->v = take(base, &off, N * Vt);
    a->g = take(base, &off, N * Vt);
    a->nu = take(base, &off, N * Vt);
    a->o = take(base, &off, N * Vt);
    a->hw = take(base, &off, N * L->rw);
    a->ha = take(base, &off, N * L->ra);
    a->hv = take(base, &off, N * L->rv);
    a->hg = take(base, &off, N * L->rg);
    a->un = take(base, &off, N * H);
    a->mean = take(base, &off, N * H);
    a->rstd = take(base, &off, N * H);
    a->ckpt = take(base, &off, B * H * n_ckpt(T) * L->K * L->V);
    return off;
}

static size_t scratch_layout(const rwkv7_layer *L, int64_t B, int64_t T, float *base, scratch *s) {
    const int64_t N = B * T, C = L->C, Vt = L->Vt, H = L->H, KV = L->K * L->V;
    size_t off = acts_layout(L, B, T, base, &s->a);
    int64_t rmax = L->rw;
    if (L->ra > rmax) rmax = L->ra;
    if (L->rv > rmax) rmax = L->rv;
    if (L->rg > rmax) rmax = L->rg;
    for (int i = 0; i < NBOX; i++) s->xb[i] = take(base, &off, N * C);
    s->og = take(base, &off, N * Vt);
    s->Sw = take(base, &off, B * H * (RWKV7_CKPT + 1) * KV);
    s->dS = take(base, &off, B * H * KV);
    s->Stmp = take(base, &off, B * H * KV);
    s->vec = take(base, &off, B * H * 2 * L->V);
    for (int i = 0; i < NBOX; i++) s->dxb[i] = take(base, &off, N * C);
    s->dr = take(base, &off, N * C);
    s->dw = take(base, &off, N * C);
    s->dk = take(base, &off, N * C);
    s->dk0 = take(base, &off, N * C);
    s->dkap = take(base, &off, N * C);
    s->dal = take(base, &off, N * C);
    s->dv = take(base, &off, N * Vt);
    s->dv0 = take(base, &off, N * Vt);
    s->dg = take(base, &off, N * Vt);
    s->dO = take(base, &off, N * Vt);
    s->dof = take(base, &off, N * Vt);
    s->dbeta = take(base, &off, N * H);
    s->dh = take(base, &off, N * rmax);
    return off;
}

size_t rwkv7_saved_bytes(const rwkv7_layer *L, int64_t B, int64_t T) {
    acts a;
    return acts_layout(L, B, T, NULL, &a) * sizeof(float);
}

size_t rwkv7_scratch_bytes(const rwkv7_layer *L, int64_t B, int64_t T) {
    scratch s;
    return scratch_layout(L, B, T, NULL, &s) * sizeof(float);
}

size_t rwkv7_state_bytes(const rwkv7_layer *L) {
    return (size_t)(L->H * L->K * L->V + L->C) * sizeof(float);
}

/* ---- matrix products (PyTorch Linear convention: y = x W^T, W is [out, in]) ----------------- */

static graft_status mm(const rwkv7_layer *L, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc, float beta,
                       graft_err *err) {
    return graft_host_matmul_f32(L->host, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, beta, err);
}

/* Y (N, out) = X (N, in) W^T (+ beta Y) */
static graft_status lin(const rwkv7_layer *L, float *Y, const float *X, const float *W, int64_t N, int64_t in,
                        int64_t out, float beta, graft_err *err) {
    return mm(L, 0, 1, N, out, in, X, in, W, in, Y, out, beta, err);
}
/* dX (N, in) = dY (N, out) W (+ beta dX) */
static graft_status lin_dx(const rwkv7_layer *L, float *dX, const float *dY, const float *W, int64_t N, int64_t in,
                           int64_t out, float beta, graft_err *err) {
    return mm(L, 0, 0, N, in, out, dY, out, W, in, dX, in, beta, err);
}
/* dW (out, in) += dY^T X: parameter gradients accumulate (ABI). */
static graft_status lin_dw(const rwkv7_layer *L, float *dW, const float *dY, const float *X, int64_t N, int64_t in,
                           int64_t out, graft_err *err) {
    return mm(L, 1, 0, out, in, N, dY, out, X, in, dW, in, 1.0f, err);
}

static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

/* ---- the per-call context shared by the parallel passes ------------------------------------- */

typedef struct ctx {
    const rwkv7_layer *L;
    int64_t B, T, N;
    const float *x, *carry_in;
    float *carry_out, *dcarry;
    const float *P[RWKV7_N_MAX];
    float *G[RWKV7_N_MAX];
    const float *state_in, *dstate_out;
    float *state_out, *dstate_in;
    float *dxo;                 /* backward: io->dx */
    int64_t slot;               /* floats per state slot */
    acts a;
    scratch s;
} ctx;

#define PAR(c, n, fn) (c)->L->host->parallel_for((c)->L->host->ctx, (n), (fn), (c))

/* Token shift: delta and the six mixes x + delta * mu. Per row n. */
static void pass_shift(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const int64_t C = c->L->C, T = c->T;
    for (int64_t n = n0; n < n1; n++) {
        const int64_t b = n / T, t = n % T;
        const float *x = c->x + n * C;
        const float *prev = t > 0 ? x - C : (c->state_in ? c->state_in + b * c->slot + (c->slot - C) : NULL);
        float *dl = c->a.dlt + n * C;
        for (int64_t i = 0; i < C; i++) dl[i] = (prev ? prev[i] : 0.0f) - x[i];
        for (int box = 0; box < NBOX; box++) {
            const float *mu = c->P[P_X_R + box];
            float *xb = c->s.xb[box] + n * C;
            for (int64_t i = 0; i < C; i++) xb[i] = x[i] + dl[i] * mu[i];
        }
    }
}

/* Recomputes the six mixes from the saved delta (backward). */
static void pass_mix(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const int64_t C = c->L->C;
    for (int64_t n = n0; n < n1; n++)
        for (int box = 0; box < NBOX; box++) {
            const float *mu = c->P[P_X_R + box], *x = c->x + n * C, *dl = c->a.dlt + n * C;
            float *xb = c->s.xb[box] + n * C;
            for (int64_t i = 0; i < C; i++) xb[i] = x[i] + dl[i] * mu[i];
        }
}

/* Elementwise heads of the LoRAs and the key/value preparation (spec §2 steps 4-9). */
static void pass_prep(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const rwkv7_layer *L = c->L;
    const int64_t C = L->C, Vt = L->Vt, K = L->K;
    for (int64_t n = n0; n < n1; n++) {
        float *w = c->a.w + n * C, *al = c->a.al + n * C, *k = c->a.k + n * C, *kap = c->a.kap + n * C;
        const float *k0 = c->a.k0 + n * C;
        for (int64_t i = 0; i < C; i++) {
            w[i] = (float)(-CW * sigm((double)w[i] + c->P[P_W_B][i])); /* w held z = hw W2^T */
            al[i] = (float)sigm((double)al[i] + c->P[P_A_B][i]);     /* al held its pre-activation */
            k[i] = k0[i] * (1.0f + (al[i] - 1.0f) * c->P[P_K_A][i]);
        }
        for (int64_t h = 0; h < L->H; h++) { /* kappa = u / sqrt(|u|^2 + eps), u = k0 * k_k, per head */
            double ss = 0;
            for (int64_t i = h * K; i < (h + 1) * K; i++) {
                double u = (double)k0[i] * c->P[P_K_K][i];
                ss += u * u;
            }
            const double nrm = sqrt(ss + L2_EPS);
            c->a.un[n * L->H + h] = (float)nrm;
            for (int64_t i = h * K; i < (h + 1) * K; i++) kap[i] = (float)((double)k0[i] * c->P[P_K_K][i] / nrm);
        }
        float *v = c->a.v + n * Vt, *nu = c->a.nu + n * Vt;
        const float *v0 = c->a.v0 + n * Vt;
        if (L->producer) {
            memcpy(v, v0, sizeof(float) * (size_t)Vt);
            memcpy(c->carry_out + n * Vt, v0, sizeof(float) * (size_t)Vt); /* v_first := v0 */
            memset(nu, 0, sizeof(float) * (size_t)Vt);
        } else {
            const float *vf = c->carry_in + n * Vt;
            for (int64_t e = 0; e < Vt; e++) {
                nu[e] = (float)sigm((double)nu[e] + c->P[P_V_B][e]);
                v[e] = v0[e] + nu[e] * (vf[e] - v0[e]); /* torch.lerp(v0, v_first, nu) */
            }
        }
    }
}

/* The recurrence of spec §2.11 for one (b, h), state [K, V] (K-first, FLA's layout). Runs tokens
 * [t0, t1) from S (updated in place). When `states` is not NULL it receives S after each token
 * (states + (t - t0 + 1) * K * V); when `o` is not NULL the outputs o_t = S_t^T r_t are written. */
static void recur(const ctx *c, int64_t b, int64_t h, int64_t t0, int64_t t1, float *S, float *states, float *sa,
                  int write_o) {
    const rwkv7_layer *L = c->L;
    const int64_t K = L->K, V = L->V, C = L->C, Vt = L->Vt;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n = b * c->T + t;
        const float *r = c->a.r + n * C + h * K, *w = c->a.w + n * C + h * K, *k = c->a.k + n * C + h * K;
        const float *kap = c->a.kap + n * C + h * K, *al = c->a.al + n * C + h * K;
        const float *v = c->a.v + n * Vt + h * V;
        for (int64_t e = 0; e < V; e++) sa[e] = 0;
        for (int64_t i = 0; i < K; i++) /* sa = S_{t-1}^T a, a = -kappa: uses the OLD state */
            for (int64_t e = 0; e < V; e++) sa[e] -= kap[i] * S[i * V + e];
        for (int64_t i = 0; i < K; i++) {
            const float dec = expf(w[i]), bi = kap[i] * al[i]; /* FLA: kernels use exp(w), w = log decay */
            for (int64_t e = 0; e < V; e++) S[i * V + e] = dec * S[i * V + e] + bi * sa[e] + k[i] * v[e];
        }
        if (states) memcpy(states + (t - t0 + 1) * K * V, S, sizeof(float) * (size_t)(K * V));
        if (write_o) {
            float *o = c->a.o + n * Vt + h * V;
            for (int64_t e = 0; e < V; e++) {
                double acc = 0;
                for (int64_t i = 0; i < K; i++) acc += (double)S[i * V + e] * r[i];
                o[e] = (float)acc;
            }
        }
    }
}

static void pass_recur_fwd(void *arg, int64_t j0, int64_t j1) {
    ctx *c = arg;
    const rwkv7_layer *L = c->L;
    const int64_t KV = L->K * L->V, nck = n_ckpt(c->T);
    for (int64_t j = j0; j < j1; j++) {
        const int64_t b = j / L->H, h = j % L->H;
        float *S = c->s.Sw + j * (RWKV7_CKPT + 1) * KV, *sa = c->s.vec + j * 2 * L->V;
        if (c->state_in) memcpy(S, c->state_in + b * c->slot + h * KV, sizeof(float) * (size_t)KV);
        else memset(S, 0, sizeof(float) * (size_t)KV);
        for (int64_t ck = 0; ck < nck; ck++) {
            const int64_t t0 = ck * RWKV7_CKPT, t1 = t0 + RWKV7_CKPT < c->T ? t0 + RWKV7_CKPT : c->T;
            memcpy(c->a.ckpt + (j * nck + ck) * KV, S, sizeof(float) * (size_t)KV);
            recur(c, b, h, t0, t1, S, NULL, sa, 1);
        }
        if (c->state_out) memcpy(c->state_out + b * c->slot + h * KV, S, sizeof(float) * (size_t)KV);
    }
}

/* GroupNorm (eps = head_dim * norm_eps), bonus term and gate, spec §2 steps 12-14: og = (GN(o) + beta v) * g.
 * Writes mean/rstd when `stats` (forward), else reads them (backward). */
static void out_row(const ctx *c, int64_t n, int stats, float *ohf) {
    const rwkv7_layer *L = c->L;
    const int64_t K = L->K, V = L->V, C = L->C, Vt = L->Vt;
    for (int64_t h = 0; h < L->H; h++) {
        const float *o = c->a.o + n * Vt + h * V;
        if (stats) {
            double m = 0, var = 0;
            for (int64_t e = 0; e < V; e++) m += o[e];
            m /= (double)V;
            for (int64_t e = 0; e < V; e++) var += ((double)o[e] - m) * ((double)o[e] - m);
            var /= (double)V; /* biased, as torch's group_norm */
            c->a.mean[n * L->H + h] = (float)m;
            c->a.rstd[n * L->H + h] = (float)(1.0 / sqrt(var + L->gn_eps));
        }
        const float m = c->a.mean[n * L->H + h], rs = c->a.rstd[n * L->H + h];
        const float *r = c->a.r + n * C + h * K, *k = c->a.k + n * C + h * K, *rk = c->P[P_R_K] + h * K;
        double beta = 0;
        for (int64_t i = 0; i < K; i++) beta += (double)r[i] * k[i] * rk[i];
        const float *v = c->a.v + n * Vt + h * V;
        for (int64_t e = 0; e < V; e++) {
            const int64_t ch = h * V + e;
            ohf[ch] = (o[e] - m) * rs * c->P[P_GN_W][ch] + c->P[P_GN_B][ch] + (float)beta * v[e];
        }
    }
}

static void pass_out(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const int64_t Vt = c->L->Vt;
    for (int64_t n = n0; n < n1; n++) {
        float *og = c->s.og + n * Vt;
        out_row(c, n, 1, og);
        for (int64_t e = 0; e < Vt; e++) og[e] *= c->a.g[n * Vt + e];
    }
}

typedef struct ew { float *p; int64_t width; int kind; } ew; /* kind 0 tanh, 1 sigmoid */
static void pass_ew(void *arg, int64_t n0, int64_t n1) {
    ew *e = arg;
    for (int64_t i = n0 * e->width; i < n1 * e->width; i++)
        e->p[i] = e->kind == 0 ? tanhf(e->p[i]) : (float)sigm(e->p[i]);
}

static void fill_ctx(ctx *c, const graft_mixer_io *io) {
    const rwkv7_layer *L = io->layer;
    memset(c, 0, sizeof *c);
    c->L = L;
    c->B = io->B;
    c->T = io->T;
    c->N = io->B * io->T;
    c->x = io->x;
    for (int64_t i = 0; i < L->n_params; i++) {
        c->P[i] = io->params[i].data;
        if (io->grads) c->G[i] = io->grads[i].data;
    }
    c->slot = (int64_t)(rwkv7_state_bytes(L) / sizeof(float));
    c->state_in = io->state_in;
    c->state_out = io->state_out;
    c->dstate_out = io->dstate_out;
    c->dstate_in = io->dstate_in;
    if (L->producer) c->carry_out = io->carry;
    else c->carry_in = io->carry;
    c->dcarry = io->dcarry;
    scratch_layout(L, io->B, io->T, io->scratch, &c->s);
    if (io->saved) acts_layout(L, io->B, io->T, io->saved, &c->a);
    else c->a = c->s.a;
}

graft_status rwkv7_cpu_forward(const graft_mixer_io *io, graft_err *err) {
    ctx cc, *c = &cc;
    fill_ctx(c, io);
    const rwkv7_layer *L = c->L;
    const int64_t N = c->N, C = L->C, Vt = L->Vt;
    const float *const *P = c->P;
    float **xb = c->s.xb;
    PAR(c, N, pass_shift);
    ew e;
    if (lin(L, c->a.r, xb[0], P[P_R_PROJ], N, C, C, 0, err) || lin(L, c->a.k0, xb[2], P[P_K_PROJ], N, C, C, 0, err) ||
        lin(L, c->a.v0, xb[3], P[P_V_PROJ], N, C, Vt, 0, err))
        return err->status;
    /* decay LoRA: w = -c_w sigmoid(tanh(x^w W0^T) W2^T + b) (bias and sigmoid in pass_prep) */
    if (lin(L, c->a.hw, xb[1], P[P_W_L0], N, C, L->rw, 0, err)) return err->status;
    e = (ew){c->a.hw, L->rw, 0};
    L->host->parallel_for(L->host->ctx, N, pass_ew, &e);
    if (lin(L, c->a.w, c->a.hw, P[P_W_L2], N, L->rw, C, 0, err)) return err->status;
    /* in-context rate LoRA (identity middle) */
    if (lin(L, c->a.ha, xb[4], P[P_A_L0], N, C, L->ra, 0, err) ||
        lin(L, c->a.al, c->a.ha, P[P_A_L2], N, L->ra, C, 0, err))
        return err->status;
    /* gate LoRA: g = sigmoid(x^g W0^T) W2^T, no bias, no final activation */
    if (lin(L, c->a.hg, xb[5], P[P_G_L0], N, C, L->rg, 0, err)) return err->status;
    e = (ew){c->a.hg, L->rg, 1};
    L->host->parallel_for(L->host->ctx, N, pass_ew, &e);
    if (lin(L, c->a.g, c->a.hg, P[P_G_L2], N, L->rg, Vt, 0, err)) return err->status;
    /* value-residual LoRA (consumer only; identity middle) */
    if (!L->producer && (lin(L, c->a.hv, xb[3], P[P_V_L0], N, C, L->rv, 0, err) ||
                         lin(L, c->a.nu, c->a.hv, P[P_V_L2], N, L->rv, Vt, 0, err)))
        return err->status;
    PAR(c, N, pass_prep);
    PAR(c, c->B * L->H, pass_recur_fwd);
    PAR(c, N, pass_out);
    if (lin(L, io->y, c->s.og, P[P_O_PROJ], N, Vt, C, 0, err)) return err->status;
    if (c->state_out) /* token-shift tail: the last x (read above, so in-place is safe) */
        for (int64_t b = 0; b < c->B; b++)
            memcpy(c->state_out + b * c->slot + (c->slot - C), c->x + (b * c->T + c->T - 1) * C,
                   sizeof(float) * (size_t)C);
    return GRAFT_STATUS_OK;
}

/* ---- backward ------------------------------------------------------------------------------- */

/* LoRA middle derivative: dh *= 1 - h^2 (tanh) or h (1 - h) (sigmoid), h the saved activation. */
typedef struct ewd { float *dh; const float *h; int64_t width; int kind; } ewd;
static void pass_ewd(void *arg, int64_t n0, int64_t n1) {
    ewd *e = arg;
    for (int64_t i = n0 * e->width; i < n1 * e->width; i++)
        e->dh[i] *= e->kind == 0 ? 1.0f - e->h[i] * e->h[i] : e->h[i] * (1.0f - e->h[i]);
}

static void pass_og(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const int64_t Vt = c->L->Vt;
    for (int64_t n = n0; n < n1; n++) {
        float *og = c->s.og + n * Vt;
        out_row(c, n, 0, og);
        for (int64_t e = 0; e < Vt; e++) og[e] *= c->a.g[n * Vt + e];
    }
}

/* Through the gate, the bonus term and the GroupNorm (spec §6.3). In: dof = d(og) (N, Vt).
 * Out: dg, dof := d(o_hat + beta v), dv, dr, dk (=), dbeta, dO = d(o) before the GroupNorm. */
static void pass_bwd_out(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const rwkv7_layer *L = c->L;
    const int64_t K = L->K, V = L->V, C = L->C, Vt = L->Vt;
    for (int64_t n = n0; n < n1; n++) {
        float *ohf = c->s.og + n * Vt, *dof = c->s.dof + n * Vt, *dg = c->s.dg + n * Vt;
        const float *g = c->a.g + n * Vt;
        out_row(c, n, 0, ohf);
        for (int64_t e = 0; e < Vt; e++) {
            dg[e] = dof[e] * ohf[e];
            dof[e] *= g[e];
        }
        for (int64_t h = 0; h < L->H; h++) {
            const float *r = c->a.r + n * C + h * K, *k = c->a.k + n * C + h * K, *rk = c->P[P_R_K] + h * K;
            const float *v = c->a.v + n * Vt + h * V, *o = c->a.o + n * Vt + h * V, *d = dof + h * V;
            double beta = 0, dbeta = 0;
            for (int64_t i = 0; i < K; i++) beta += (double)r[i] * k[i] * rk[i];
            for (int64_t e = 0; e < V; e++) dbeta += (double)d[e] * v[e];
            c->s.dbeta[n * L->H + h] = (float)dbeta;
            float *dv = c->s.dv + n * Vt + h * V, *dr = c->s.dr + n * C + h * K, *dk = c->s.dk + n * C + h * K;
            for (int64_t e = 0; e < V; e++) dv[e] = (float)(beta * d[e]);
            for (int64_t i = 0; i < K; i++) {
                dr[i] = (float)(dbeta * k[i] * rk[i]);
                dk[i] = (float)(dbeta * r[i] * rk[i]);
            }
            /* GroupNorm: dO = rstd (dxh - mean(dxh) - xh mean(dxh xh)), dxh = d * gamma */
            const double m = c->a.mean[n * L->H + h], rs = c->a.rstd[n * L->H + h];
            double m1 = 0, m2 = 0;
            for (int64_t e = 0; e < V; e++) {
                const double dxh = (double)d[e] * c->P[P_GN_W][h * V + e], xh = (o[e] - m) * rs;
                m1 += dxh;
                m2 += dxh * xh;
            }
            m1 /= (double)V;
            m2 /= (double)V;
            float *dO = c->s.dO + n * Vt + h * V;
            for (int64_t e = 0; e < V; e++) {
                const double dxh = (double)d[e] * c->P[P_GN_W][h * V + e], xh = (o[e] - m) * rs;
                dO[e] = (float)(rs * (dxh - m1 - xh * m2));
            }
        }
    }
}

/* The plain recurrent backward of spec §6.1 for one (b, h), with a = -kappa, b = kappa * alpha folded
 * into d(kappa) = -da + alpha db and d(alpha) = kappa db (§6.3). Accumulates dr, dk, dv (+=, they hold
 * the bonus-term part), writes dw, dkap, dal (=) and the gradient of the initial state. */
static void pass_recur_bwd(void *arg, int64_t j0, int64_t j1) {
    ctx *c = arg;
    const rwkv7_layer *L = c->L;
    const int64_t K = L->K, V = L->V, C = L->C, Vt = L->Vt, KV = K * V, nck = n_ckpt(c->T);
    for (int64_t j = j0; j < j1; j++) {
        const int64_t b = j / L->H, h = j % L->H;
        float *dS = c->s.dS + j * KV, *Sw = c->s.Sw + j * (RWKV7_CKPT + 1) * KV, *St = c->s.Stmp + j * KV;
        float *sa = c->s.vec + j * 2 * V, *dsa = sa + V;
        if (c->dstate_out) memcpy(dS, c->dstate_out + b * c->slot + h * KV, sizeof(float) * (size_t)KV);
        else memset(dS, 0, sizeof(float) * (size_t)KV);
        for (int64_t ck = nck - 1; ck >= 0; ck--) {
            const int64_t t0 = ck * RWKV7_CKPT, t1 = t0 + RWKV7_CKPT < c->T ? t0 + RWKV7_CKPT : c->T;
            memcpy(Sw, c->a.ckpt + (j * nck + ck) * KV, sizeof(float) * (size_t)KV);
            memcpy(St, Sw, sizeof(float) * (size_t)KV);
            recur(c, b, h, t0, t1, St, Sw, sa, 0); /* Sw[i] = S before token t0 + i */
            for (int64_t t = t1 - 1; t >= t0; t--) {
                const int64_t n = b * c->T + t;
                const float *Sn = Sw + (t - t0 + 1) * KV, *Sp = Sw + (t - t0) * KV;
                const float *r = c->a.r + n * C + h * K, *w = c->a.w + n * C + h * K, *k = c->a.k + n * C + h * K;
                const float *kap = c->a.kap + n * C + h * K, *al = c->a.al + n * C + h * K;
                const float *v = c->a.v + n * Vt + h * V, *dO = c->s.dO + n * Vt + h * V;
                float *dr = c->s.dr + n * C + h * K, *dk = c->s.dk + n * C + h * K, *dw = c->s.dw + n * C + h * K;
                float *dkap = c->s.dkap + n * C + h * K, *dal = c->s.dal + n * C + h * K;
                float *dv = c->s.dv + n * Vt + h * V;
                for (int64_t i = 0; i < K; i++) /* dS += r do^T: dS is now the total gradient of S_t */
                    for (int64_t e = 0; e < V; e++) dS[i * V + e] += r[i] * dO[e];
                for (int64_t e = 0; e < V; e++) {
                    double s1 = 0, s2 = 0, s3 = 0; /* dv, sa = S_{t-1}^T a, dsa = dS^T b */
                    for (int64_t i = 0; i < K; i++) {
                        s1 += (double)dS[i * V + e] * k[i];
                        s2 -= (double)kap[i] * Sp[i * V + e];
                        s3 += (double)dS[i * V + e] * kap[i] * al[i];
                    }
                    dv[e] += (float)s1;
                    sa[e] = (float)s2;
                    dsa[e] = (float)s3;
                }
                for (int64_t i = 0; i < K; i++) {
                    double s_dr = 0, s_dk = 0, s_db = 0, s_da = 0, s_dw = 0;
                    for (int64_t e = 0; e < V; e++) {
                        const double ds = dS[i * V + e];
                        s_dr += (double)Sn[i * V + e] * dO[e];
                        s_dk += ds * v[e];
                        s_db += ds * sa[e];
                        s_da += (double)Sp[i * V + e] * dsa[e];
                        s_dw += (double)Sp[i * V + e] * ds;
                    }
                    const double dec = exp((double)w[i]);
                    dr[i] += (float)s_dr;
                    dk[i] += (float)s_dk;
                    dw[i] = (float)(dec * s_dw);
                    dkap[i] = (float)(-s_da + al[i] * s_db); /* a = -kappa: d(kappa) = -da + alpha db */
                    dal[i] = (float)(kap[i] * s_db);
                    for (int64_t e = 0; e < V; e++) /* gradient of S_{t-1} */
                        dS[i * V + e] = (float)(dec * dS[i * V + e] - (double)kap[i] * dsa[e]);
                }
            }
        }
        if (c->dstate_in) memcpy(c->dstate_in + b * c->slot + h * KV, dS, sizeof(float) * (size_t)KV);
    }
}

/* Through the key update, the key normalization, the sigmoids and the value residual (spec §6.3). */
static void pass_bwd_prep(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const rwkv7_layer *L = c->L;
    const int64_t K = L->K, C = L->C, Vt = L->Vt;
    const float *ka = c->P[P_K_A], *kk = c->P[P_K_K];
    for (int64_t n = n0; n < n1; n++) {
        const float *k0 = c->a.k0 + n * C, *al = c->a.al + n * C, *w = c->a.w + n * C;
        const float *dk = c->s.dk + n * C;
        float *dk0 = c->s.dk0 + n * C, *dal = c->s.dal + n * C, *dkap = c->s.dkap + n * C, *dw = c->s.dw + n * C;
        for (int64_t i = 0; i < C; i++) { /* k = k0 (1 + (alpha - 1) k_a) */
            dk0[i] = dk[i] * (1.0f + (al[i] - 1.0f) * ka[i]);
            dal[i] += dk[i] * k0[i] * ka[i];
        }
        for (int64_t h = 0; h < L->H; h++) { /* kappa = u / nrm: du = dkap / nrm - u (u . dkap) / nrm^3 */
            const double nrm = c->a.un[n * L->H + h];
            double dot = 0;
            for (int64_t i = h * K; i < (h + 1) * K; i++) dot += (double)k0[i] * kk[i] * dkap[i];
            for (int64_t i = h * K; i < (h + 1) * K; i++) {
                const double u = (double)k0[i] * kk[i];
                const double du = dkap[i] / nrm - u * dot / (nrm * nrm * nrm);
                dkap[i] = (float)du; /* dkap now holds du */
                dk0[i] += (float)(du * kk[i]);
            }
        }
        for (int64_t i = 0; i < C; i++) {
            dal[i] = dal[i] * al[i] * (1.0f - al[i]);  /* d of the a_lora pre-activation */
            const double s = -(double)w[i] / CW;      /* sigmoid(z) recovered from w */
            dw[i] = (float)(-CW * s * (1.0 - s) * dw[i]); /* d of the w_lora pre-activation */
        }
        float *dv = c->s.dv + n * Vt, *dv0 = c->s.dv0 + n * Vt;
        if (L->producer) { /* v_first = v0: the consumers' accumulated gradient lands on v0 */
            for (int64_t e = 0; e < Vt; e++) dv0[e] = dv[e] + (c->dcarry ? c->dcarry[n * Vt + e] : 0.0f);
        } else {
            const float *nu = c->a.nu + n * Vt, *v0 = c->a.v0 + n * Vt, *vf = c->carry_in + n * Vt;
            for (int64_t e = 0; e < Vt; e++) {
                dv0[e] = dv[e] * (1.0f - nu[e]);
                c->dcarry[n * Vt + e] += dv[e] * nu[e]; /* += : every consumer adds its share */
                dv[e] = dv[e] * (vf[e] - v0[e]) * nu[e] * (1.0f - nu[e]); /* dv now holds d(z_nu) */
            }
        }
    }
}

/* dx = sum_box (1 - mu) dx^box_t + mu dx^box_{t+1} (+ the final shift state's gradient at t = T-1). */
static void pass_bwd_shift(void *arg, int64_t n0, int64_t n1) {
    ctx *c = arg;
    const int64_t C = c->L->C, T = c->T;
    for (int64_t n = n0; n < n1; n++) {
        const int64_t b = n / T, t = n % T;
        float *dxo = c->dxo + n * C;
        for (int64_t i = 0; i < C; i++) {
            double acc = 0;
            for (int box = 0; box < NBOX; box++) {
                const float mu = c->P[P_X_R + box][i];
                acc += (1.0 - mu) * c->s.dxb[box][n * C + i];
                if (t + 1 < T) acc += (double)mu * c->s.dxb[box][(n + 1) * C + i];
            }
            if (t == T - 1 && c->dstate_out) acc += c->dstate_out[b * c->slot + (c->slot - C) + i];
            dxo[i] = (float)acc;
        }
        if (t == 0 && c->dstate_in)
            for (int64_t i = 0; i < C; i++) {
                double acc = 0;
                for (int box = 0; box < NBOX; box++) acc += (double)c->P[P_X_R + box][i] * c->s.dxb[box][n * C + i];
                c->dstate_in[b * c->slot + (c->slot - C) + i] = (float)acc;
            }
    }
}

/* grad[i] += sum over rows of a[n, i] (* b[n, i] when b is not NULL) (* (bb[n, i] + off)), in double. */
static void reduce_rows(float *grad, const float *a, const float *b, const float *bb, float off, int64_t N,
                        int64_t W) {
    for (int64_t i = 0; i < W; i++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) {
            double t = a[n * W + i];
            if (b) t *= b[n * W + i];
            if (bb) t *= (double)bb[n * W + i] + off;
            acc += t;
        }
        grad[i] += (float)acc;
    }
}

graft_status rwkv7_cpu_backward(const graft_mixer_io *io, graft_err *err) {
    ctx cc, *c = &cc;
    fill_ctx(c, io);
    c->dxo = io->dx;
    const rwkv7_layer *L = c->L;
    const int64_t N = c->N, C = L->C, Vt = L->Vt, K = L->K, V = L->V, H = L->H;
    const float *const *P = c->P;
    float *const *G = c->G;
    scratch *s = &c->s;
    PAR(c, N, pass_mix);
    PAR(c, N, pass_og);
    /* y = og W_o^T */
    if (lin_dw(L, G[P_O_PROJ], io->dy, s->og, N, Vt, C, err) || lin_dx(L, s->dof, io->dy, P[P_O_PROJ], N, Vt, C, 0, err))
        return err->status;
    PAR(c, N, pass_bwd_out);
    for (int64_t h = 0; h < H; h++) /* r_k [H, K]: sum over rows of dbeta r k */
        for (int64_t i = 0; i < K; i++) {
            double acc = 0;
            for (int64_t n = 0; n < N; n++)
                acc += (double)s->dbeta[n * H + h] * c->a.r[n * C + h * K + i] * c->a.k[n * C + h * K + i];
            G[P_R_K][h * K + i] += (float)acc;
        }
    for (int64_t ch = 0; ch < Vt; ch++) { /* GroupNorm affine */
        const int64_t h = ch / V;
        double dgw = 0, dgb = 0;
        for (int64_t n = 0; n < N; n++) {
            const double xh = ((double)c->a.o[n * Vt + ch] - c->a.mean[n * H + h]) * c->a.rstd[n * H + h];
            dgw += (double)s->dof[n * Vt + ch] * xh;
            dgb += s->dof[n * Vt + ch];
        }
        G[P_GN_W][ch] += (float)dgw;
        G[P_GN_B][ch] += (float)dgb;
    }
    PAR(c, c->B * H, pass_recur_bwd);
    reduce_rows(G[P_K_A], s->dk, c->a.k0, c->a.al, -1.0f, N, C); /* before pass_bwd_prep changes nothing it reads */
    PAR(c, N, pass_bwd_prep);
    reduce_rows(G[P_K_K], s->dkap, c->a.k0, NULL, 0, N, C);
    reduce_rows(G[P_W_B], s->dw, NULL, NULL, 0, N, C);
    reduce_rows(G[P_A_B], s->dal, NULL, NULL, 0, N, C);
    if (!L->producer) reduce_rows(G[P_V_B], s->dv, NULL, NULL, 0, N, Vt);
    ewd e;
    /* decay LoRA */
    if (lin_dw(L, G[P_W_L2], s->dw, c->a.hw, N, L->rw, C, err) || lin_dx(L, s->dh, s->dw, P[P_W_L2], N, L->rw, C, 0, err))
        return err->status;
    e = (ewd){s->dh, c->a.hw, L->rw, 0};
    L->host->parallel_for(L->host->ctx, N, pass_ewd, &e);
    if (lin_dw(L, G[P_W_L0], s->dh, s->xb[1], N, C, L->rw, err) ||
        lin_dx(L, s->dxb[1], s->dh, P[P_W_L0], N, C, L->rw, 0, err))
        return err->status;
    /* in-context rate LoRA */
    if (lin_dw(L, G[P_A_L2], s->dal, c->a.ha, N, L->ra, C, err) ||
        lin_dx(L, s->dh, s->dal, P[P_A_L2], N, L->ra, C, 0, err) ||
        lin_dw(L, G[P_A_L0], s->dh, s->xb[4], N, C, L->ra, err) ||
        lin_dx(L, s->dxb[4], s->dh, P[P_A_L0], N, C, L->ra, 0, err))
        return err->status;
    /* gate LoRA */
    if (lin_dw(L, G[P_G_L2], s->dg, c->a.hg, N, L->rg, Vt, err) ||
        lin_dx(L, s->dh, s->dg, P[P_G_L2], N, L->rg, Vt, 0, err))
        return err->status;
    e = (ewd){s->dh, c->a.hg, L->rg, 1};
    L->host->parallel_for(L->host->ctx, N, pass_ewd, &e);
    if (lin_dw(L, G[P_G_L0], s->dh, s->xb[5], N, C, L->rg, err) ||
        lin_dx(L, s->dxb[5], s->dh, P[P_G_L0], N, C, L->rg, 0, err))
        return err->status;
    /* r, k, v projections */
    if (lin_dw(L, G[P_R_PROJ], s->dr, s->xb[0], N, C, C, err) || lin_dx(L, s->dxb[0], s->dr, P[P_R_PROJ], N, C, C, 0, err) ||
        lin_dw(L, G[P_K_PROJ], s->dk0, s->xb[2], N, C, C, err) ||
        lin_dx(L, s->dxb[2], s->dk0, P[P_K_PROJ], N, C, C, 0, err) ||
        lin_dw(L, G[P_V_PROJ], s->dv0, s->xb[3], N, C, Vt, err) ||
        lin_dx(L, s->dxb[3], s->dv0, P[P_V_PROJ], N, C, Vt, 0, err))
        return err->status;
    /* value-residual LoRA (consumer): dv holds d(z_nu) */
    if (!L->producer && (lin_dw(L, G[P_V_L2], s->dv, c->a.hv, N, L->rv, Vt, err) ||
                         lin_dx(L, s->dh, s->dv, P[P_V_L2], N, L->rv, Vt, 0, err) ||
                         lin_dw(L, G[P_V_L0], s->dh, s->xb[3], N, C, L->rv, err) ||
                         lin_dx(L, s->dxb[3], s->dh, P[P_V_L0], N, C, L->rv, 1, err)))
        return err->status;
    /* token shift: d mu_box = sum dx^box * delta, then dx */
    for (int box = 0; box < NBOX; box++) reduce_rows(G[P_X_R + box], s->dxb[box], c->a.dlt, NULL, 0, N, C);
    PAR(c, N, pass_bwd_shift);
    return GRAFT_STATUS_OK;
}
