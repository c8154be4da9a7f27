/* linear_attention.c: the tutorial mixer of docs/plugins.md ("Writing a mixer out of tree: a
 * worked example"). Plain causal linear attention (Katharopoulos et al. 2020, "Transformers are
 * RNNs", eq. 4-6, without the normalizer), CPU fp32, in one file that builds against an INSTALLED
 * graft (find_package(graft)) and nothing else.
 *
 * The math, per sequence and head h (D = C / H, phi(z) = elu(z) + 1 > 0, s = 1 / sqrt(D)):
 *     q = x Wq^T,  k = x Wk^T,  v = x Wv^T                   (B, T, C), head h = columns h*D..
 *     S_t = S_{t-1} + phi(k_t) v_t^T                          (D, D), S_0 = the decode state
 *     o_t = s * S_t^T phi(q_t)                                (D)
 *     y   = o Wo^T                                            (B, T, C)
 * The state S is all a sequence needs to continue, so decoding is a forward with T = 1.
 *
 * What it deliberately leaves out: a normalizer, decay/gating, a CUDA path, fused kernels. The
 * float64 reference it is checked against is tests/reference/linear_attention_ref.py.
 *
 * Read it top to bottom: 1 layer object and settings, 2 parameters and init, 3 memory
 * (workspace, state), 4 forward, 5 backward, 6 the descriptor and the one exported symbol.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "graft/rng.h"

#define NAME "linear_attention"

/* ---- 1. The layer object: everything create() decided. No globals (plugin.h). ---------------- */

typedef struct layer {
    const graft_host *host;              /* valid for the layer's lifetime                   */
    int64_t C, H, D;                     /* width, heads, head dim (C = H * D)               */
    int64_t n_head, n_kv_head, head_dim; /* the Qwen3 attention it replaces (teacher init)  */
    float scale;                         /* 1 / sqrt(D)                                      */
} layer;

/* Reads a member of a struct that starts with struct_size only if the writer's struct has it. */
#define HAS(p, type, member) ((p)->struct_size >= offsetof(type, member) + sizeof((p)->member))

static graft_status create(const graft_host *host, const graft_mixer_cfg *cfg, void **out,
                           graft_err *err) {
    if (!host || !cfg || !out)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, NAME ": create: NULL argument");
    *out = NULL;
    if (!HAS(host, graft_host, parallel_for) || !HAS(cfg, graft_mixer_cfg, origin))
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, NAME ": host or cfg struct too short");
    const char *origin = cfg->origin;
    /* Settings: refuse every key we do not know, naming it (the conformance suite checks this). */
    static const char *const known[] = {"num_heads", NULL};
    if (graft_kv_check_known(cfg->kv, cfg->n_kv, known, origin, err)) return err->status;
    int64_t H = cfg->n_head, C = cfg->n_embd;
    if (graft_kv_int(cfg->kv, cfg->n_kv, "num_heads", 1, 4096, &H, origin, err)) return err->status;
    if (C < 1 || C > (1 << 20))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: n_embd: %lld, expected 1..%d",
                             origin ? origin : NAME, (long long)C, 1 << 20);
    if (H < 1 || C % H != 0) {
        const graft_kv *e = graft_kv_find(cfg->kv, cfg->n_kv, "num_heads");
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: num_heads: %lld%s, expected a divisor of n_embd %lld",
                             graft_kv_where_(e, origin), (long long)H,
                             e ? "" : " (the default, n_head)", (long long)C);
    }
    layer *L = host->alloc(host->ctx, sizeof *L);
    if (!L) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, NAME ": create: out of memory");
    L->host = host;
    L->C = C;
    L->H = H;
    L->D = C / H;
    L->n_head = cfg->n_head;
    L->n_kv_head = cfg->n_kv_head;
    L->head_dim = cfg->head_dim;
    L->scale = (float)(1.0 / sqrt((double)L->D));
    host->log(host->ctx, GRAFT_LOG_DEBUG, NAME ": layer %lld: C %lld, %lld heads of %lld",
              (long long)cfg->layer_index, (long long)C, (long long)H, (long long)L->D);
    *out = L;
    return GRAFT_STATUS_OK;
}

static void destroy(void *ptr) {
    layer *L = ptr;
    if (L) L->host->free(L->host->ctx, L);
}

/* ---- 2. Parameters and init ------------------------------------------------------------------ */

enum { P_Q, P_K, P_V, P_O, N_PARAMS };
static const char *const param_names[N_PARAMS] = {"mixer.q_proj.weight", "mixer.k_proj.weight",
                                                  "mixer.v_proj.weight", "mixer.o_proj.weight"};

static int64_t n_params(const void *ptr) {
    (void)ptr;
    return N_PARAMS;
}

static graft_status param(const void *ptr, int64_t i, graft_param_spec *out, graft_err *err) {
    const layer *L = ptr;
    if (i < 0 || i >= N_PARAMS)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, NAME ": param %lld, expected 0..%d",
                             (long long)i, N_PARAMS - 1);
    if (!HAS(out, graft_param_spec, flags))
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, NAME ": graft_param_spec too short");
    out->name = param_names[i];
    out->ndim = 2;
    out->shape[0] = L->C; /* [out, in], as in Hugging Face's nn.Linear */
    out->shape[1] = L->C;
    out->flags = 0; /* projections take weight decay */
    return GRAFT_STATUS_OK;
}

/* 1 when t is a contiguous F32 CPU tensor of shape [rows, cols]. */
static int is_matrix(const graft_tensor *t, int64_t rows, int64_t cols) {
    return t && t->data && t->dtype == GRAFT_DTYPE_F32 && t->device == GRAFT_DEVICE_CPU &&
           t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols &&
           graft_tensor_is_contiguous(t);
}

static graft_status check_params(const layer *L, const graft_tensor *p, graft_err *err) {
    for (int i = 0; i < N_PARAMS; i++)
        if (!p || !is_matrix(&p[i], L->C, L->C))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 NAME ": %s: expected F32 CPU [%lld, %lld]", param_names[i],
                                 (long long)L->C, (long long)L->C);
    return GRAFT_STATUS_OK;
}

/* Teacher init: q/o copied, k/v expanded from n_kv_head to n_head heads by repeat-interleave
 * (HF's repeat_kv: query head h reads kv head h / (n_head / n_kv_head)). q_norm/k_norm have no
 * place in this mixer and are dropped. Needs num_heads == n_head and n_head * head_dim == C. */
static graft_status init_teacher(const layer *L, const graft_tensor *p,
                                 const graft_attention_weights *t, graft_err *err) {
    int64_t C = L->C, nq = L->n_head, nkv = L->n_kv_head, D = L->head_dim;
    if (L->H != nq || nq * D != C || nkv < 1 || nq % nkv != 0)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             NAME ": init teacher: attention of %lld heads (%lld kv) of %lld, "
                                  "expected num_heads %lld heads of %lld (n_head * head_dim == "
                                  "n_embd)",
                             (long long)nq, (long long)nkv, (long long)D, (long long)L->H,
                             (long long)L->D);
    if (!HAS(t, graft_attention_weights, o_proj) || !is_matrix(t->q_proj, C, C) ||
        !is_matrix(t->k_proj, nkv * D, C) || !is_matrix(t->v_proj, nkv * D, C) ||
        !is_matrix(t->o_proj, C, C))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             NAME ": init teacher: q/o_proj [%lld, %lld] and k/v_proj [%lld, %lld] "
                                  "F32 on the CPU expected",
                             (long long)C, (long long)C, (long long)(nkv * D), (long long)C);
    size_t all_bytes = (size_t)(C * C) * sizeof(float);
    size_t head_bytes = (size_t)(D * C) * sizeof(float); /* one head: D rows of C */
    memcpy(p[P_Q].data, t->q_proj->data, all_bytes);
    memcpy(p[P_O].data, t->o_proj->data, all_bytes);
    for (int64_t h = 0; h < nq; h++) {
        int64_t g = h / (nq / nkv);
        memcpy((float *)p[P_K].data + h * D * C, (const float *)t->k_proj->data + g * D * C,
               head_bytes);
        memcpy((float *)p[P_V].data + h * D * C, (const float *)t->v_proj->data + g * D * C,
               head_bytes);
    }
    return GRAFT_STATUS_OK;
}

/* Random init: N(0, 0.02) for every weight, one rng stream per parameter, so init is a function
 * of (seed, cfg) alone (the conformance suite calls it twice and compares). */
static graft_status init(void *ptr, const graft_tensor *p, uint64_t seed,
                         const graft_attention_weights *teacher, graft_err *err) {
    const layer *L = ptr;
    if (check_params(L, p, err)) return err->status;
    if (teacher) return init_teacher(L, p, teacher, err);
    for (int i = 0; i < N_PARAMS; i++) {
        graft_rng r = graft_rng_make(seed, (uint64_t)i);
        float *w = p[i].data;
        for (int64_t j = 0; j < L->C * L->C; j++)
            w[j] = (float)(0.02 * graft_rng_normal(&r));
    }
    return GRAFT_STATUS_OK;
}

/* ---- 3. Memory: the core allocates what these functions ask for ------------------------------ */

/* saved   = q, k, v, o (B, T, C) each, then S_0 (B, H, D, D): what backward needs.
 * scratch = four (B, T, C) buffers (q..o when nothing is saved; dO, dq, dk, dv in backward), then
 *           S and dS (B, H, D, D) each. */
static graft_status workspace(const void *ptr, graft_device device, int64_t B, int64_t T,
                              size_t *saved_bytes, size_t *scratch_bytes, graft_err *err) {
    const layer *L = ptr;
    if (device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, NAME ": device %d: CPU only",
                             (int)device);
    if (B < 1 || T < 1 || B > (1 << 20) || T > (1 << 24) ||
        (double)B * (double)T * (double)L->C > 1e12)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, NAME ": B %lld, T %lld: too large or < 1",
                             (long long)B, (long long)T);
    size_t btc = (size_t)(B * T * L->C), state = (size_t)(B * L->H * L->D * L->D);
    *saved_bytes = (4 * btc + state) * sizeof(float);
    *scratch_bytes = (4 * btc + 2 * state) * sizeof(float);
    return GRAFT_STATUS_OK;
}

/* One sequence's decode state: S (H, D, D) fp32. No positions, no KV cache: capacity is unused. */
static size_t state_bytes(const void *ptr, int64_t capacity) {
    const layer *L = ptr;
    (void)capacity;
    return (size_t)(L->H * L->D * L->D) * sizeof(float);
}

static int64_t carry_width(const void *ptr) {
    (void)ptr;
    return 0;
}

/* ---- 4. Forward ------------------------------------------------------------------------------ */

/* The feature map phi(z) = elu(z) + 1 (positive, so phi(q)·phi(k) > 0) and its derivative. */
static float phi(float z) { return z > 0 ? z + 1.0f : expf(z); }
static float dphi(float z) { return z > 0 ? 1.0f : expf(z); }

/* C = A·B (+ beta·C) with row-major fp32 operands, through the host (OpenBLAS on the CPU). */
static graft_status mm(const layer *L, int ta, int tb, int64_t m, int64_t n, int64_t k,
                       const float *a, const float *b, float beta, float *c, graft_err *err) {
    return graft_host_matmul_f32(L->host, ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, c, n, beta, err);
}

/* What one parallel_for task needs: the layer, the sizes and the buffers. */
typedef struct job {
    const layer *L;
    int64_t T;
    const float *q, *k, *v, *dO; /* (B, T, C)    */
    float *o, *dq, *dk, *dv;     /* (B, T, C)    */
    float *S, *dS;               /* (B, H, D, D) */
} job;

/* The recurrence for (sequence, head) pairs [begin, end):
 *     S += phi(k_t) v_t^T;  o_t = s S^T phi(q_t)
 * Full forward, decode and split forwards all run this same loop in the same order, so they agree
 * to the last bit except for the projections. */
static void forward_heads(void *arg, int64_t begin, int64_t end) {
    const job *j = arg;
    int64_t C = j->L->C, D = j->L->D, H = j->L->H;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t off = (bh / H) * j->T * C + (bh % H) * D; /* (b, t = 0, head h) */
        float *S = j->S + bh * D * D;
        for (int64_t t = 0; t < j->T; t++, off += C) {
            const float *q = j->q + off, *k = j->k + off, *v = j->v + off;
            float *o = j->o + off;
            for (int64_t i = 0; i < D; i++) {
                float pk = phi(k[i]);
                for (int64_t c = 0; c < D; c++)
                    S[i * D + c] += pk * v[c];
            }
            for (int64_t c = 0; c < D; c++)
                o[c] = 0.0f;
            for (int64_t i = 0; i < D; i++) {
                float pq = phi(q[i]);
                for (int64_t c = 0; c < D; c++)
                    o[c] += pq * S[i * D + c];
            }
            for (int64_t c = 0; c < D; c++)
                o[c] *= j->L->scale;
        }
    }
}

static graft_status check_io(const graft_mixer_io *io, graft_err *err) {
    if (!io || !HAS(io, graft_mixer_io, dstate_in) || !io->layer)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, NAME ": graft_mixer_io NULL or too short");
    if (io->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, NAME ": device %d: CPU only",
                             (int)io->device);
    if (io->B < 1 || io->T < 1 || !io->x || !io->scratch)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             NAME ": B %lld, T %lld, x or scratch missing", (long long)io->B,
                             (long long)io->T);
    return check_params(io->layer, io->params, err);
}

static graft_status forward(const graft_mixer_io *io, graft_err *err) {
    if (check_io(io, err)) return err->status;
    const layer *L = io->layer;
    if (!io->y) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, NAME ": forward: y is NULL");
    int64_t N = io->B * io->T, C = L->C, sd = L->H * L->D * L->D; /* sd: floats of one state slot */
    const float *x = io->x;
    const graft_tensor *p = io->params;
    /* A training forward (saved != NULL) keeps q, k, v, o and S_0 for backward; inference uses
     * scratch for q, k, v, o. The running state S always lives in scratch. */
    float *qkvo = io->saved ? (float *)io->saved : (float *)io->scratch;
    float *q = qkvo, *k = q + N * C, *v = k + N * C, *o = v + N * C;
    float *S = (float *)io->scratch + 4 * N * C;
    if (mm(L, 0, 1, N, C, C, x, p[P_Q].data, 0.0f, q, err) ||
        mm(L, 0, 1, N, C, C, x, p[P_K].data, 0.0f, k, err) ||
        mm(L, 0, 1, N, C, C, x, p[P_V].data, 0.0f, v, err))
        return err->status;
    /* S_0: the state carried in (state_in MAY equal state_out: we read it all before writing). */
    size_t slots = (size_t)(io->B * sd) * sizeof(float);
    if (io->state_in)
        memcpy(S, io->state_in, slots);
    else
        memset(S, 0, slots);
    if (io->saved) memcpy(o + N * C, S, slots);
    job j = {.L = L, .T = io->T, .q = q, .k = k, .v = v, .o = o, .S = S};
    L->host->parallel_for(L->host->ctx, io->B * L->H, forward_heads, &j);
    if (io->state_out) memcpy(io->state_out, S, slots);
    return mm(L, 0, 1, N, C, C, o, p[P_O].data, 0.0f, io->y, err); /* y = o Wo^T */
}

/* ---- 5. Backward ----------------------------------------------------------------------------- */

/* For (sequence, head) pairs [begin, end), given dO = dL/do:
 *   sweep 1, t = 0..T-1, rebuilds S_t from S_0:  dq_t = phi'(q_t) * s S_t dO_t
 *   sweep 2, t = T-1..0, with G = dL/dS_t (G starts as dstate_out):
 *            G += s phi(q_t) dO_t^T;  dk_t = phi'(k_t) * G v_t;  dv_t = G^T phi(k_t)
 * After sweep 2, G = dL/dS_0 = dstate_in. Rebuilding S costs a second pass but no (T, D, D)
 * memory: nothing per-step is saved beyond q, k, v. */
static void backward_heads(void *arg, int64_t begin, int64_t end) {
    const job *j = arg;
    int64_t C = j->L->C, D = j->L->D, H = j->L->H, T = j->T;
    float s = j->L->scale;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t off0 = (bh / H) * T * C + (bh % H) * D;
        float *S = j->S + bh * D * D, *G = j->dS + bh * D * D;
        for (int64_t t = 0, off = off0; t < T; t++, off += C) {
            const float *q = j->q + off, *k = j->k + off, *v = j->v + off, *dO = j->dO + off;
            float *dq = j->dq + off;
            for (int64_t i = 0; i < D; i++) {
                float pk = phi(k[i]);
                for (int64_t c = 0; c < D; c++)
                    S[i * D + c] += pk * v[c];
            }
            for (int64_t i = 0; i < D; i++) {
                float acc = 0.0f;
                for (int64_t c = 0; c < D; c++)
                    acc += S[i * D + c] * dO[c];
                dq[i] = dphi(q[i]) * s * acc;
            }
        }
        for (int64_t t = T - 1; t >= 0; t--) {
            int64_t off = off0 + t * C;
            const float *q = j->q + off, *k = j->k + off, *v = j->v + off, *dO = j->dO + off;
            float *dk = j->dk + off, *dv = j->dv + off;
            for (int64_t i = 0; i < D; i++) {
                float sq = s * phi(q[i]);
                for (int64_t c = 0; c < D; c++)
                    G[i * D + c] += sq * dO[c];
            }
            for (int64_t c = 0; c < D; c++)
                dv[c] = 0.0f;
            for (int64_t i = 0; i < D; i++) {
                float pk = phi(k[i]), acc = 0.0f;
                for (int64_t c = 0; c < D; c++) {
                    acc += G[i * D + c] * v[c];
                    dv[c] += G[i * D + c] * pk;
                }
                dk[i] = dphi(k[i]) * acc;
            }
        }
    }
}

static graft_status backward(const graft_mixer_io *io, graft_err *err) {
    if (check_io(io, err)) return err->status;
    const layer *L = io->layer;
    if (!io->saved || !io->dy || !io->dx || !io->grads)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             NAME ": backward: saved, dy, dx or grads is NULL "
                                  "(backward needs a training forward's saved buffer)");
    if (check_params(L, io->grads, err)) return graft_err_prefix(err, "grads");
    int64_t N = io->B * io->T, C = L->C, sd = L->H * L->D * L->D;
    const graft_tensor *p = io->params, *g = io->grads;
    const float *x = io->x, *dy = io->dy;
    const float *q = io->saved, *k = q + N * C, *v = k + N * C, *o = v + N * C, *S0 = o + N * C;
    float *dO = io->scratch, *dq = dO + N * C, *dk = dq + N * C, *dv = dk + N * C;
    float *S = dv + N * C, *G = S + io->B * sd;
    /* The output projection: dO = dy Wo, dWo += dy^T o. */
    if (mm(L, 0, 0, N, C, C, dy, p[P_O].data, 0.0f, dO, err) ||
        mm(L, 1, 0, C, C, N, dy, o, 1.0f, g[P_O].data, err))
        return err->status;
    size_t slots = (size_t)(io->B * sd) * sizeof(float);
    memcpy(S, S0, slots);
    if (io->dstate_out)
        memcpy(G, io->dstate_out, slots);
    else
        memset(G, 0, slots);
    job j = {.L = L, .T = io->T, .q = q, .k = k, .v = v, .dO = dO, .dq = dq, .dk = dk, .dv = dv,
             .S = S, .dS = G};
    L->host->parallel_for(L->host->ctx, io->B * L->H, backward_heads, &j);
    if (io->dstate_in) memcpy(io->dstate_in, G, slots); /* written (=) */
    /* Input projections: dW += d(q|k|v)^T x (grads ACCUMULATE), dx = sum d(q|k|v) W (written =). */
    if (mm(L, 1, 0, C, C, N, dq, x, 1.0f, g[P_Q].data, err) ||
        mm(L, 1, 0, C, C, N, dk, x, 1.0f, g[P_K].data, err) ||
        mm(L, 1, 0, C, C, N, dv, x, 1.0f, g[P_V].data, err) ||
        mm(L, 0, 0, N, C, C, dq, p[P_Q].data, 0.0f, io->dx, err) ||
        mm(L, 0, 0, N, C, C, dk, p[P_K].data, 1.0f, io->dx, err) ||
        mm(L, 0, 0, N, C, C, dv, p[P_V].data, 1.0f, io->dx, err))
        return err->status;
    return GRAFT_STATUS_OK;
}

/* ---- 6. The descriptor and the one exported symbol ------------------------------------------- */

static const graft_mixer linear_attention_mixer = {
    .struct_size = sizeof(graft_mixer),
    .abi_version = GRAFT_ABI_VERSION,
    .name = NAME,
    .carry_name = NULL, /* no stream between layers */
    .caps = GRAFT_MIXER_CAP_CPU | GRAFT_MIXER_CAP_TEACHER_INIT | GRAFT_MIXER_CAP_STATE_GRAD,
    .create = create,
    .destroy = destroy,
    .n_params = n_params,
    .param = param,
    .init = init,
    .workspace = workspace,
    .state_bytes = state_bytes,
    .carry_width = carry_width,
    .forward = forward,
    .backward = backward,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out,
                                                   graft_err *err);

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out,
                                                   graft_err *err) {
    if (!host || !out)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, NAME ": init: NULL argument");
    if (host->abi_version != GRAFT_ABI_VERSION)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             NAME ": host abi_version %u, this plugin speaks %u", host->abi_version,
                             GRAFT_ABI_VERSION);
    if (!HAS(host, graft_host, parallel_for))
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             NAME ": graft_host struct_size %u lacks parallel_for",
                             host->struct_size);
    if (!HAS(out, graft_plugin, mixer))
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             NAME ": graft_plugin struct_size %u lacks mixer", out->struct_size);
    out->abi_version = GRAFT_ABI_VERSION;
    out->kind = GRAFT_PLUGIN_MIXER;
    out->name = NAME;
    out->version = "0.1.0";
    out->mixer = &linear_attention_mixer;
    return GRAFT_STATUS_OK;
}
