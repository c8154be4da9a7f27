/* tests/unit/test_gla_plugin.c: GLA-specific checks of libgraft_gla.so through its descriptor,
 * with a minimal host table of its own (naive matmul, serial parallel_for), so the plugin is
 * tested without the core's host:
 *  - the experiment's config (hidden 2048, 16 heads, ...) is accepted, with FLA's parameter
 *    shapes and count (spec/gla.md §1.1), and bad settings are refused naming the key;
 *  - decoding token by token and a split prefill equal the full forward (outputs and state);
 *  - every gradient (params, x, initial state incl. conv caches) against central differences
 *    along random directions, with FLA-sized and strong (alpha ~ -94) decays;
 *  - causality, T = 0, and the teacher init mapping.
 * The float64 PyTorch comparison is the conformance suite's (tests/reference/gla_ref.py).
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "graft/plugin.h"
#include "graft/rng.h"
#include "test_util.h"

/* ---- a minimal host ------------------------------------------------------------------------ */

static void h_log(void *ctx, int level, const char *fmt, ...) { (void)ctx; (void)level; (void)fmt; }
static graft_status h_matmul(void *ctx, const graft_matmul_args *a, graft_err *err) {
    (void)ctx;
    (void)err;
    for (int64_t bi = 0; bi < a->batch; bi++) {
        const float *A = (const float *)a->a + bi * a->stride_a;
        const float *B = (const float *)a->b + bi * a->stride_b;
        float *Cm = (float *)a->c + bi * a->stride_c;
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++) {
                double acc = 0;
                for (int64_t k = 0; k < a->k; k++) {
                    float av = a->trans_a ? A[k * a->lda + i] : A[i * a->lda + k];
                    float bv = a->trans_b ? B[j * a->ldb + k] : B[k * a->ldb + j];
                    acc += (double)av * bv;
                }
                float *c = &Cm[i * a->ldc + j];
                *c = (float)(a->alpha * acc + (a->beta != 0 ? a->beta * *c : 0));
            }
    }
    return GRAFT_STATUS_OK;
}
static void *h_alloc(void *ctx, size_t n) { (void)ctx; return calloc(1, n ? n : 1); }
static void h_free(void *ctx, void *p) { (void)ctx; free(p); }
static void h_parallel_for(void *ctx, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    (void)ctx;
    for (int64_t i = 0; i < n; i += 3) fn(arg, i, i + 3 < n ? i + 3 : n);  /* several ranges */
}

static graft_host host = {sizeof(graft_host), GRAFT_ABI_VERSION, NULL, h_log, h_matmul,
                          h_alloc, h_free, h_parallel_for};
static const graft_mixer *M;

/* ---- a layer with its tensors ---------------------------------------------------------------- */

typedef struct {
    void *layer;
    int64_t n, C;
    graft_tensor p[16], g[16];
    graft_param_spec s[16];
    size_t state_floats;
} lay;

static graft_status make(lay *L, int64_t C, int64_t nh, int64_t nkv, int64_t hd, const char *kvs,
                         graft_err *err) {
    /* kvs: "k=v k=v" */
    static char buf[1024];
    static graft_kv kv[32];
    int64_t n = 0;
    snprintf(buf, sizeof buf, "%s", kvs);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        *eq = 0;
        kv[n].key = tok;
        kv[n].value = eq + 1;
        kv[n].where = "test";
        n++;
    }
    graft_mixer_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.n_embd = C;
    cfg.n_layer = 1;
    cfg.n_head = nh;
    cfg.n_kv_head = nkv;
    cfg.head_dim = hd;
    cfg.norm_eps = 1e-6;
    cfg.kv = kv;
    cfg.n_kv = n;
    memset(L, 0, sizeof *L);
    L->C = C;
    if (M->create(&host, &cfg, &L->layer, err)) return err->status;
    L->n = M->n_params(L->layer);
    for (int64_t i = 0; i < L->n; i++) {
        L->s[i].struct_size = sizeof L->s[i];
        M->param(L->layer, i, &L->s[i], err);
        int64_t numel = 1;
        for (int d = 0; d < L->s[i].ndim; d++) numel *= L->s[i].shape[d];
        L->p[i] = graft_tensor_make(calloc((size_t)numel, 4), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU,
                                    L->s[i].ndim, L->s[i].shape);
        L->g[i] = graft_tensor_make(calloc((size_t)numel, 4), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU,
                                    L->s[i].ndim, L->s[i].shape);
    }
    L->state_floats = M->state_bytes(L->layer, 100) / 4;
    return GRAFT_STATUS_OK;
}

static void drop(lay *L) {
    for (int64_t i = 0; i < L->n; i++) {
        free(L->p[i].data);
        free(L->g[i].data);
    }
    M->destroy(L->layer);
}

static int64_t find(const lay *L, const char *name) {
    for (int64_t i = 0; i < L->n; i++)
        if (!strcmp(L->s[i].name, name)) return i;
    return -1;
}

static void randn(float *a, int64_t n, double sd, graft_rng *r) {
    for (int64_t i = 0; i < n; i++) a[i] = (float)(sd * graft_rng_normal(r));
}

/* Test weights larger than FLA's 0.02 init so that every path (gate, conv, norm) matters. */
static void fill(lay *L, uint64_t seed) {
    graft_rng r = graft_rng_make(seed, 99);
    for (int64_t i = 0; i < L->n; i++) {
        int64_t n = graft_tensor_numel(&L->p[i]);
        float *d = L->p[i].data;
        double fan = L->s[i].ndim >= 2 ? (double)L->s[i].shape[L->s[i].ndim - 1] : 1.0;
        randn(d, n, 0.8 / sqrt(fan), &r);
        if (strstr(L->s[i].name, "norm")) for (int64_t j = 0; j < n; j++) d[j] += 1.0f;
    }
}

/* forward (and optionally backward); saved/scratch allocated here */
static graft_status run(lay *L, int64_t B, int64_t T, const float *x, float *y, const float *sin,
                        float *sout, const float *dy, float *dx, const float *dsout, float *dsin,
                        graft_err *err) {
    size_t sb = 0, cb = 0;
    if (M->workspace(L->layer, GRAFT_DEVICE_CPU, B, T, &sb, &cb, err)) return err->status;
    void *saved = calloc(1, sb + 4), *scratch = calloc(1, cb + 4);
    graft_mixer_io io;
    memset(&io, 0, sizeof io);
    io.struct_size = sizeof io;
    io.layer = L->layer;
    io.device = GRAFT_DEVICE_CPU;
    io.B = B;
    io.T = T;
    io.params = L->p;
    io.x = x;
    io.y = y;
    io.saved = dy ? saved : NULL;
    io.scratch = scratch;
    io.state_in = sin;
    io.state_out = sout;
    graft_status st = M->forward(&io, err);
    if (!st && dy) {
        io.grads = L->g;
        io.dy = dy;
        io.dx = dx;
        io.dstate_out = dsout;
        io.dstate_in = dsin;
        st = M->backward(&io, err);
    }
    free(saved);
    free(scratch);
    return st;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_experiment_config(void) {
    lay L;
    graft_err err = {0};
    const char *kv = "num_heads=16 expand_k=1 expand_v=1 use_short_conv=true conv_size=4 "
                     "gate_fn=swish hidden_act=swish norm_eps=1e-6 share_conv_kernel=true "
                     "use_gk=true use_gv=false fuse_norm=true attn_mode=chunk clamp_min=null "
                     "hidden_ratio=4 intermediate_size=6144 use_output_gate=true";
    graft_status st = make(&L, 2048, 16, 8, 128, kv, &err);
    CHECK(st == GRAFT_STATUS_OK);
    if (st) { fprintf(stderr, "%s\n", err.msg); return; }
    CHECK(L.n == 12);
    int64_t total = 0;
    for (int64_t i = 0; i < L.n; i++) total += graft_tensor_numel(&L.p[i]);
    CHECK(total == 21063808);  /* spec/gla.md §1.1 */
    int64_t qc = find(&L, "mixer.q_conv1d.weight");
    CHECK(qc >= 0 && L.s[qc].ndim == 3 && L.s[qc].shape[0] == 2048 && L.s[qc].shape[1] == 1 &&
          L.s[qc].shape[2] == 4);
    int64_t nw = find(&L, "mixer.g_norm_swish_gate.weight");
    CHECK(nw >= 0 && L.s[nw].shape[0] == 128 && (L.s[nw].flags & GRAFT_PARAM_NO_DECAY));
    int64_t bb = find(&L, "mixer.gk_proj.1.bias");
    CHECK(bb >= 0 && (L.s[bb].flags & GRAFT_PARAM_NO_DECAY));
    CHECK(find(&L, "mixer.gk_proj.0.weight") >= 0 && find(&L, "mixer.o_proj.weight") >= 0);
    CHECK(M->state_bytes(L.layer, 1) == M->state_bytes(L.layer, 1 << 20));
    CHECK(M->state_bytes(L.layer, 1) == 4u * (16 * 128 * 128 + 3 * 2048 * 4));
    drop(&L);
}

static void refused(const char *kvs, int64_t C, const char *needle) {
    lay L;
    graft_err err = {0};
    graft_status st = make(&L, C, 4, 4, 16, kvs, &err);
    CHECK(st != GRAFT_STATUS_OK);
    if (st) CHECK_CONTAINS(err.msg, needle);
    else drop(&L);
}

static void test_refusals(void) {
    refused("use_gate=true", 64, "use_gate");
    refused("num_heads=5", 64, "num_heads");
    refused("num_heads=3 expand_k=0.3", 48, "num_heads");  /* int(48*0.3) = 14 */
    refused("num_heads=4 num_kv_heads=3", 64, "num_kv_heads");
    refused("gate_low_rank_dim=0", 64, "gate_low_rank_dim");
    refused("gate_low_rank_dim=-2", 64, "gate_low_rank_dim");
    refused("conv_size=0", 64, "conv_size");
    refused("clamp_min=0.1", 64, "clamp_min");
    refused("use_output_gate=false", 64, "use_output_gate");
    refused("gate_fn=sigmoid", 64, "gate_fn");
    refused("feature_map=relu", 64, "feature_map");
    refused("gate_logit_normalizer=0", 64, "gate_logit_normalizer");
    refused("expand_k=0.01", 64, "num_heads");
}

static const char *SMALL = "num_heads=4 num_kv_heads=2 conv_size=4 gate_low_rank_dim=3";

static void test_decode_and_split(const char *kvs, int strong) {
    lay L;
    graft_err err = {0};
    if (make(&L, 24, 4, 2, 6, kvs, &err)) { fprintf(stderr, "%s\n", err.msg); CHECK(0); return; }
    fill(&L, 1);
    if (strong) {  /* a few channels with z ~ -1500 (alpha ~ -94), the rest alpha ~ -2 */
        float *b = L.p[find(&L, "mixer.gk_proj.1.bias")].data;
        int64_t n = graft_tensor_numel(&L.p[find(&L, "mixer.gk_proj.1.bias")]);
        for (int64_t i = 0; i < n; i++) b[i] = (i % 3 == 0) ? -1500.0f : -32.0f;
    }
    const int64_t B = 2, T = 11, C = 24;
    size_t sf = L.state_floats;
    graft_rng r = graft_rng_make(2, 0);
    float *x = malloc(sizeof(float) * B * T * C), *y = malloc(sizeof(float) * B * T * C);
    float *y2 = malloc(sizeof(float) * B * T * C), *s0 = malloc(sizeof(float) * sf * B);
    float *s1 = malloc(sizeof(float) * sf * B), *s2 = malloc(sizeof(float) * sf * B);
    randn(x, B * T * C, 1.0, &r);
    randn(s0, (int64_t)sf * B, 0.5, &r);
    CHECK(run(&L, B, T, x, y, s0, s1, NULL, NULL, NULL, NULL, &err) == GRAFT_STATUS_OK);
    for (int64_t i = 0; i < B * T * C; i++) CHECK(isfinite(y[i]));
    /* token by token, in place (state_in == state_out) */
    memcpy(s2, s0, sizeof(float) * sf * B);
    float xt[2 * 24], yt[2 * 24];
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) memcpy(xt + b * C, x + (b * T + t) * C, sizeof(float) * C);
        CHECK(run(&L, B, 1, xt, yt, s2, s2, NULL, NULL, NULL, NULL, &err) == GRAFT_STATUS_OK);
        for (int64_t b = 0; b < B; b++) memcpy(y2 + (b * T + t) * C, yt + b * C, sizeof(float) * C);
    }
    check_close_f32(strong ? "decode y (strong decay)" : "decode y", y2, y, B * T * C, 1e-10);
    check_close_f32("decode state", s2, s1, (int64_t)sf * B, 1e-10);
    /* split prefill at t = 1, 2, 5 (conv history shorter and longer than W-1) */
    for (int64_t cut = 1; cut <= 5; cut += (cut == 2 ? 3 : 1)) {
        float *xa = malloc(sizeof(float) * B * T * C), *ya = malloc(sizeof(float) * B * T * C);
        for (int64_t b = 0; b < B; b++) {
            memcpy(xa + b * cut * C, x + b * T * C, sizeof(float) * cut * C);
            memcpy(xa + B * cut * C + b * (T - cut) * C, x + (b * T + cut) * C,
                   sizeof(float) * (T - cut) * C);
        }
        CHECK(!run(&L, B, cut, xa, ya, s0, s2, NULL, NULL, NULL, NULL, &err));
        CHECK(!run(&L, B, T - cut, xa + B * cut * C, ya + B * cut * C, s2, s2, NULL, NULL, NULL,
                   NULL, &err));
        for (int64_t b = 0; b < B; b++) {
            memcpy(y2 + b * T * C, ya + b * cut * C, sizeof(float) * cut * C);
            memcpy(y2 + (b * T + cut) * C, ya + B * cut * C + b * (T - cut) * C,
                   sizeof(float) * (T - cut) * C);
        }
        check_close_f32("split y", y2, y, B * T * C, 1e-10);
        check_close_f32("split state", s2, s1, (int64_t)sf * B, 1e-10);
        free(xa);
        free(ya);
    }
    /* T = 0 passes the state through */
    CHECK(!run(&L, B, 0, x, y2, s0, s2, NULL, NULL, NULL, NULL, &err));
    check_close_f32("T=0 state", s2, s0, (int64_t)sf * B, 0);
    /* causality: perturbing x at t = 6 leaves y at t <= 5 unchanged */
    for (int64_t b = 0; b < B; b++) x[(b * T + 6) * C + 3] += 1.0f;
    CHECK(!run(&L, B, T, x, y2, s0, NULL, NULL, NULL, NULL, NULL, &err));
    for (int64_t b = 0; b < B; b++) {
        check_close_f32("causal prefix", y2 + b * T * C, y + b * T * C, 6 * C, 0);
        CHECK(y2[(b * T + 6) * C] != y[(b * T + 6) * C]);
    }
    free(x); free(y); free(y2); free(s0); free(s1); free(s2);
    drop(&L);
}

/* f = <y, ry> + <state_out, rs>; compares <grad, v> with central differences for each param,
 * x and state_in, along random v. fp32 forward: tolerance relative to the directional scale. */
static void test_gradients(const char *kvs, int64_t T, int strong, const char *label) {
    lay L;
    graft_err err = {0};
    if (make(&L, 24, 4, 2, 6, kvs, &err)) { fprintf(stderr, "%s\n", err.msg); CHECK(0); return; }
    fill(&L, 3);
    int64_t ib = find(&L, "mixer.gk_proj.1.bias");
    if (strong) {
        float *b = L.p[ib].data;
        for (int64_t i = 0; i < graft_tensor_numel(&L.p[ib]); i++) b[i] = (i % 3 == 0) ? -1500.0f : -30.0f;
    }
    const int64_t B = 2, C = 24, nx = B * T * C;
    size_t sf = L.state_floats;
    int64_t ns = (int64_t)sf * B;
    graft_rng r = graft_rng_make(4, 0);
    float *x = malloc(4 * nx), *y = malloc(4 * nx), *ry = malloc(4 * nx), *dx = malloc(4 * nx);
    float *s0 = malloc(4 * ns), *s1 = malloc(4 * ns), *rs = malloc(4 * ns), *ds0 = malloc(4 * ns);
    randn(x, nx, 1.0, &r);
    randn(s0, ns, 0.5, &r);
    randn(ry, nx, 1.0, &r);
    randn(rs, ns, 1.0, &r);
    for (int64_t i = 0; i < L.n; i++) memset(L.g[i].data, 0, 4 * (size_t)graft_tensor_numel(&L.g[i]));
    CHECK(!run(&L, B, T, x, y, s0, s1, ry, dx, rs, ds0, &err));
    for (int64_t i = 0; i < L.n; i++) {
        const float *g = L.g[i].data;
        for (int64_t j = 0; j < graft_tensor_numel(&L.g[i]); j++) CHECK(isfinite(g[j]));
    }
    /* one target per param, then x (index n), then state_in (index n+1) */
    for (int64_t i = 0; i <= L.n + 1; i++) {
        if (strong && i == ib) continue;  /* sigma(-z) underflows at z=-1500: nothing to see */
        float *base = i < L.n ? L.p[i].data : (i == L.n ? x : s0);
        const float *grad = i < L.n ? L.g[i].data : (i == L.n ? dx : ds0);
        int64_t n = i < L.n ? graft_tensor_numel(&L.p[i]) : (i == L.n ? nx : ns);
        float *v = malloc(4 * (size_t)n), *keep = malloc(4 * (size_t)n);
        randn(v, n, 1.0, &r);
        memcpy(keep, base, 4 * (size_t)n);
        double an = dot(grad, v, n), f[2], h = 2e-3;
        for (int sgn = 0; sgn < 2; sgn++) {
            for (int64_t j = 0; j < n; j++) base[j] = keep[j] + (float)((sgn ? -h : h) * v[j]);
            run(&L, B, T, x, y, s0, s1, NULL, NULL, NULL, NULL, &err);
            f[sgn] = dot(y, ry, nx) + dot(s1, rs, ns);
        }
        memcpy(base, keep, 4 * (size_t)n);
        double fd = (f[0] - f[1]) / (2 * h);
        double gn = sqrt(dot(grad, grad, n)) * sqrt((double)n) + 1e-3;
        int ok = fabs(fd - an) <= 3e-3 * gn + 2e-3 * fabs(an);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "%s: grad %s: analytic %.6g finite-diff %.6g\n", label,
                    i < L.n ? L.s[i].name : (i == L.n ? "x" : "state_in"), an, fd);
        free(v);
        free(keep);
    }
    free(x); free(y); free(ry); free(dx); free(s0); free(s1); free(rs); free(ds0);
    drop(&L);
}

static void test_teacher_init(void) {
    lay L;
    graft_err err = {0};
    /* Qwen3-like: 4 q heads, 2 kv heads, head_dim 8, C = 32; GLA keeps 4 kv heads */
    if (make(&L, 32, 4, 2, 8, "num_heads=4", &err)) { fprintf(stderr, "%s\n", err.msg); CHECK(0); return; }
    float wq[32 * 32], wk[16 * 32], wv[16 * 32], wo[32 * 32];
    graft_rng r = graft_rng_make(5, 0);
    randn(wq, 32 * 32, 1, &r);
    randn(wk, 16 * 32, 1, &r);
    randn(wv, 16 * 32, 1, &r);
    randn(wo, 32 * 32, 1, &r);
    int64_t sq[2] = {32, 32}, skv[2] = {16, 32};
    graft_tensor tq = graft_tensor_make(wq, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, sq);
    graft_tensor tk = graft_tensor_make(wk, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, skv);
    graft_tensor tv = graft_tensor_make(wv, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, skv);
    graft_tensor to = graft_tensor_make(wo, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, sq);
    graft_attention_weights tw = {sizeof tw, &tq, &tk, &tv, &to, NULL, NULL};
    CHECK(M->init(L.layer, L.p, 7, &tw, &err) == GRAFT_STATUS_OK);
    const float *k = L.p[find(&L, "mixer.k_proj.weight")].data;
    const float *v = L.p[find(&L, "mixer.v_proj.weight")].data;
    const float *q = L.p[find(&L, "mixer.q_proj.weight")].data;
    const float *o = L.p[find(&L, "mixer.o_proj.weight")].data;
    const float *cv = L.p[find(&L, "mixer.v_conv1d.weight")].data;
    CHECK(!memcmp(q, wq, sizeof wq) && !memcmp(o, wo, sizeof wo));
    for (int j = 0; j < 4; j++) {  /* GLA kv head j <- teacher kv head j / 2 */
        CHECK(!memcmp(k + j * 8 * 32, wk + (j / 2) * 8 * 32, 8 * 32 * 4));
        CHECK(!memcmp(v + j * 8 * 32, wv + (j / 2) * 8 * 32, 8 * 32 * 4));
    }
    CHECK(cv[0] == 0 && cv[3] == 1 && cv[4] == 0 && cv[7] == 1);
    const float *nw = L.p[find(&L, "mixer.g_norm_swish_gate.weight")].data;
    CHECK(nw[0] == 1.0f);
    drop(&L);
    /* refused when the GLA heads do not match the attention's */
    if (make(&L, 32, 4, 2, 8, "num_heads=4 expand_k=0.5", &err)) { CHECK(0); return; }
    CHECK(M->init(L.layer, L.p, 7, &tw, &err) != GRAFT_STATUS_OK);
    CHECK_CONTAINS(err.msg, "teacher");
    /* random init: N(0, 0.02^2), bias 0, norm 1, deterministic in the seed */
    CHECK(M->init(L.layer, L.p, 7, NULL, &err) == GRAFT_STATUS_OK);
    const float *qq = L.p[0].data;
    double ss = 0;
    int64_t nq = graft_tensor_numel(&L.p[0]);
    for (int64_t i = 0; i < nq; i++) ss += (double)qq[i] * qq[i];
    CHECK(fabs(sqrt(ss / (double)nq) - 0.02) < 0.003);
    drop(&L);
}

int main(void) {
    const char *dir = getenv("GRAFT_PLUGIN_PATH");
    char path[4096];
    snprintf(path, sizeof path, "%s/libgraft_gla.so", dir ? dir : GRAFT_BUILD_DIR "/lib/graft/plugins");
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) { fprintf(stderr, "dlopen %s: %s\n", path, dlerror()); return 1; }
    graft_plugin_init_fn init = (graft_plugin_init_fn)(uintptr_t)dlsym(so, GRAFT_PLUGIN_ENTRY);
    graft_plugin pl;
    memset(&pl, 0, sizeof pl);
    pl.struct_size = sizeof pl;
    pl.abi_version = GRAFT_ABI_VERSION;
    graft_err err = {0};
    if (!init || init(&host, &pl, &err) || !pl.mixer) { fprintf(stderr, "init: %s\n", err.msg); return 1; }
    M = pl.mixer;
    CHECK(!strcmp(M->name, "gla"));
    test_experiment_config();
    test_refusals();
    test_decode_and_split(SMALL, 0);
    test_decode_and_split(SMALL, 1);
    test_decode_and_split("num_heads=4 use_short_conv=false gate_low_rank_dim=2", 0);
    test_gradients(SMALL, 11, 0, "small");
    test_gradients(SMALL, 70, 0, "T=70 (3 checkpoint chunks)");
    test_gradients(SMALL, 9, 1, "strong decay");
    test_gradients("num_heads=2 use_short_conv=false expand_k=0.5", 5, 0, "no conv");
    test_gradients("num_heads=4 conv_size=1 gate_low_rank_dim=1", 3, 0, "W=1");
    test_gradients("num_heads=4 conv_size=6", 3, 0, "T<W");
    test_teacher_init();
    dlclose(so);
    return test_finish("test_gla_plugin");
}
