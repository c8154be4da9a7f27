/* tests/unit/test_rwkv7_plugin.c: RWKV-7-specific checks of libgraft_rwkv7.so through its ABI, with a
 * minimal host table (naive double-accumulating matmul, serial parallel_for in uneven ranges).
 *
 *  - forward/backward against tests/reference/rwkv7_ref.py (float64 autograd) with NON-degenerate
 *    random parameters set directly here: the plugin's own init has lora.0 = 0 and o_proj = 0, which
 *    makes most gradients exactly zero, so init() values alone would prove little. Every parameter,
 *    x, v_first (consumer) / v_first's gradient (producer), the initial state and the final state's
 *    gradient are compared (NMSE <= 1e-9);
 *  - parameter and dcarry gradients accumulate (+=), dx is written (=);
 *  - decoding token by token (in-place state) and a split prefill equal the full forward;
 *  - config refusals name the key; the experiment's configuration is accepted; FLA's automatic ranks;
 *  - init statistics (spec §8.9) and the teacher mapping (GQA expansion).
 * Not here: the generic conformance suite (tests/plugins), which runs over every plugin.
 */
#include <dlfcn.h>
#include <stdlib.h>

#include "graft/plugin.h"
#include "graft/rng.h"
#include "test_util.h"

/* ---- a minimal host ---------------------------------------------------------------------- */

static graft_status h_matmul(void *ctx, const graft_matmul_args *a, graft_err *err) {
    (void)ctx;
    (void)err;
    for (int64_t bt = 0; bt < a->batch; bt++) {
        const float *A = (const float *)a->a + bt * a->stride_a, *B = (const float *)a->b + bt * a->stride_b;
        float *Cm = (float *)a->c + bt * a->stride_c;
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++) {
                double s = 0;
                for (int64_t p = 0; p < a->k; p++) {
                    double x = a->trans_a ? A[p * a->lda + i] : A[i * a->lda + p];
                    double y = a->trans_b ? B[j * a->ldb + p] : B[p * a->ldb + j];
                    s += x * y;
                }
                double old = a->beta != 0 ? (double)a->beta * Cm[i * a->ldc + j] : 0.0;
                Cm[i * a->ldc + j] = (float)(a->alpha * s + old);
            }
    }
    return GRAFT_STATUS_OK;
}
static void *h_alloc(void *ctx, size_t n) {
    (void)ctx;
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (p) memset(p, 0, (n + 63) / 64 * 64 + 64);
    return p;
}
static void h_free(void *ctx, void *p) { (void)ctx; free(p); }
static void h_par(void *ctx, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    (void)ctx;
    int64_t cut1 = n / 3, cut2 = n - n / 4; /* uneven ranges catch range-boundary bugs */
    if (cut1 > 0) fn(arg, 0, cut1);
    if (cut2 > cut1) fn(arg, cut1, cut2);
    if (n > cut2) fn(arg, cut2, n);
}
static void h_log(void *ctx, int level, const char *fmt, ...) { (void)ctx; (void)level; (void)fmt; }

static graft_host host = {sizeof(graft_host), GRAFT_ABI_VERSION, NULL, h_log, h_matmul, h_alloc, h_free, h_par};
static const graft_mixer *M;

/* ---- a layer with its parameters ----------------------------------------------------------- */

typedef struct tl {
    void *layer;
    int64_t np;
    graft_param_spec spec[32];
    graft_tensor pt[32], gt[32];
} tl;

static graft_mixer_cfg make_cfg(int64_t C, int64_t hd, graft_carry_role role, const graft_kv *kv, int64_t nkv) {
    graft_mixer_cfg c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.n_embd = C;
    c.layer_index = 1;
    c.n_layer = 4;
    c.n_head = C / hd;
    c.n_kv_head = C / hd / 2 > 0 ? C / hd / 2 : 1;
    c.head_dim = hd;
    c.rope_theta = 1e6;
    c.norm_eps = 1e-5;
    c.kv = kv;
    c.n_kv = nkv;
    c.origin = "test.yaml";
    c.carry_role = role;
    return c;
}

static int tl_make(tl *t, const graft_mixer_cfg *cfg) {
    graft_err err;
    memset(t, 0, sizeof *t);
    if (M->create(&host, cfg, &t->layer, &err)) {
        fprintf(stderr, "create: %s\n", err.msg);
        return 1;
    }
    t->np = M->n_params(t->layer);
    for (int64_t i = 0; i < t->np; i++) {
        t->spec[i].struct_size = sizeof t->spec[i];
        if (M->param(t->layer, i, &t->spec[i], &err)) return 1;
        int64_t n = 1;
        for (int d = 0; d < t->spec[i].ndim; d++) n *= t->spec[i].shape[d];
        t->pt[i] = graft_tensor_make(calloc((size_t)n, 4), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, t->spec[i].ndim,
                                     t->spec[i].shape);
        t->gt[i] = graft_tensor_make(calloc((size_t)n, 4), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, t->spec[i].ndim,
                                     t->spec[i].shape);
    }
    return 0;
}

static void tl_free(tl *t) {
    for (int64_t i = 0; i < t->np; i++) {
        free(t->pt[i].data);
        free(t->gt[i].data);
    }
    M->destroy(t->layer);
}

static int64_t numel(const graft_tensor *t) { return graft_tensor_numel(t); }
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}
static float *randv(graft_rng *r, int64_t n, double scale, double shift) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(shift + scale * graft_rng_normal(r));
    return p;
}

/* Non-degenerate random parameters: O(1) activations everywhere, the v_first gate half open. */
static void random_params(tl *t, uint64_t seed) {
    graft_rng r = graft_rng_make(seed, 99);
    for (int64_t i = 0; i < t->np; i++) {
        const graft_param_spec *s = &t->spec[i];
        float *p = t->pt[i].data;
        int64_t n = numel(&t->pt[i]);
        double in = s->ndim == 2 ? (double)s->shape[1] : 1.0;
        for (int64_t j = 0; j < n; j++) {
            double z = graft_rng_normal(&r), u = graft_rng_uniform(&r), v;
            if (strstr(s->name, ".x_")) v = u;                          /* mu in (0, 1) */
            else if (ends_with(s->name, "k_a")) v = 0.5 + u;
            else if (ends_with(s->name, "k_k")) v = 0.5 + 0.5 * z;
            else if (ends_with(s->name, "r_k")) v = 0.5 * z;
            else if (ends_with(s->name, "g_norm.weight")) v = 1 + 0.2 * z;
            else if (ends_with(s->name, "bias")) v = 0.5 * z;
            else v = z / sqrt(in);
            p[j] = (float)v;
        }
    }
}

/* ---- a safetensors dump for the Python reference ------------------------------------------ */

typedef struct dump { int n; const char *name[96]; char own[96][112]; const float *d[96]; int nd[96]; int64_t sh[96][4]; } dump;
static void dump_add(dump *D, const char *name, const float *d, int nd, int64_t s0, int64_t s1, int64_t s2, int64_t s3) {
    int i = D->n++;
    snprintf(D->own[i], sizeof D->own[i], "%s", name);
    D->name[i] = D->own[i];
    D->d[i] = d;
    D->nd[i] = nd;
    D->sh[i][0] = s0; D->sh[i][1] = s1; D->sh[i][2] = s2; D->sh[i][3] = s3;
}
static int dump_write(const dump *D, const char *path, const char *cfg_json) {
    static char hdr[65536];
    size_t len = 0;
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{\"__metadata__\":{\"cfg\":\"%s\"}", cfg_json);
    for (int i = 0; i < D->n; i++) {
        int64_t n = 1;
        len += (size_t)snprintf(hdr + len, sizeof hdr - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", D->name[i]);
        for (int k = 0; k < D->nd[i]; k++) {
            n *= D->sh[i][k];
            len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%lld", k ? "," : "", (long long)D->sh[i][k]);
        }
        len += (size_t)snprintf(hdr + len, sizeof hdr - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + 4 * (uint64_t)n));
        off += 4 * (uint64_t)n;
    }
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "}");
    while ((8 + len) % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < D->n; i++) {
        int64_t n = 1;
        for (int k = 0; k < D->nd[i]; k++) n *= D->sh[i][k];
        fwrite(D->d[i], 4, (size_t)n, f);
    }
    return fclose(f) != 0;
}

/* ---- one forward/backward case checked against the reference ------------------------------- */

typedef struct io_bufs {
    float *x, *y, *dy, *dx, *carry, *dcarry, *sin, *sout, *dsout, *dsin;
    void *saved, *scratch;
} io_bufs;

static graft_mixer_io make_io(tl *t, io_bufs *b, int64_t B, int64_t T) {
    graft_mixer_io io;
    memset(&io, 0, sizeof io);
    io.struct_size = sizeof io;
    io.layer = t->layer;
    io.device = GRAFT_DEVICE_CPU;
    io.B = B;
    io.T = T;
    io.params = t->pt;
    io.x = b->x;
    io.y = b->y;
    io.dy = b->dy;
    io.dx = b->dx;
    io.saved = b->saved;
    io.scratch = b->scratch;
    io.state_in = b->sin;
    io.state_out = b->sout;
    io.dstate_out = b->dsout;
    io.dstate_in = b->dsin;
    io.carry = b->carry;
    io.dcarry = b->dcarry;
    return io;
}

static void run_case(const char *name, int64_t C, int64_t hd, graft_carry_role role, int64_t B, int64_t T,
                     const graft_kv *kv, int64_t nkv, int with_state) {
    graft_mixer_cfg cfg = make_cfg(C, hd, role, kv, nkv);
    tl t;
    if (tl_make(&t, &cfg)) { CHECK(0); return; }
    random_params(&t, 7);
    graft_err err;
    size_t sb = 0, xb = 0, st = M->state_bytes(t.layer, 0);
    CHECK(M->workspace(t.layer, GRAFT_DEVICE_CPU, B, T, &sb, &xb, &err) == GRAFT_STATUS_OK);
    const int64_t N = B * T, H = C / hd, KV = hd * hd, slot = (int64_t)(st / 4);
    CHECK(slot == H * KV + C);
    graft_rng r = graft_rng_make(11, 1);
    io_bufs b = {0};
    b.x = randv(&r, N * C, 1, 0);
    b.dy = randv(&r, N * C, 1, 0);
    b.y = calloc((size_t)(N * C), 4);
    b.dx = calloc((size_t)(N * C), 4);
    b.carry = role == GRAFT_CARRY_CONSUMER ? randv(&r, N * C, 1, 0) : calloc((size_t)(N * C), 4);
    b.dcarry = role == GRAFT_CARRY_PRODUCER ? randv(&r, N * C, 1, 0) : calloc((size_t)(N * C), 4);
    b.sin = with_state ? randv(&r, B * slot, 0.5, 0) : NULL;
    b.sout = calloc((size_t)(B * slot), 4);
    b.dsout = randv(&r, B * slot, 1, 0);
    b.dsin = calloc((size_t)(B * slot), 4);
    b.saved = h_alloc(NULL, sb);
    b.scratch = h_alloc(NULL, xb);
    graft_mixer_io io = make_io(&t, &b, B, T);
    io.grads = NULL;
    CHECK(M->forward(&io, &err) == GRAFT_STATUS_OK);
    float *carry_fwd = malloc((size_t)(N * C) * 4);
    memcpy(carry_fwd, b.carry, (size_t)(N * C) * 4);
    float *dcarry_in = malloc((size_t)(N * C) * 4);
    memcpy(dcarry_in, b.dcarry, (size_t)(N * C) * 4);
    io.grads = t.gt;
    if (M->backward(&io, &err)) { fprintf(stderr, "%s: backward: %s\n", name, err.msg); CHECK(0); }

    /* += semantics: a second backward doubles the parameter gradients (and the consumer's dcarry) and
     * rewrites dx. */
    float *g1[32], *dx1 = malloc((size_t)(N * C) * 4), *dc1 = malloc((size_t)(N * C) * 4);
    memcpy(dx1, b.dx, (size_t)(N * C) * 4);
    memcpy(dc1, b.dcarry, (size_t)(N * C) * 4);
    for (int64_t i = 0; i < t.np; i++) {
        size_t n = (size_t)numel(&t.gt[i]);
        g1[i] = malloc(n * 4);
        memcpy(g1[i], t.gt[i].data, n * 4);
    }
    if (role == GRAFT_CARRY_PRODUCER) memcpy(b.dcarry, dcarry_in, (size_t)(N * C) * 4);
    CHECK(M->backward(&io, &err) == GRAFT_STATUS_OK);
    int acc_ok = !memcmp(dx1, b.dx, (size_t)(N * C) * 4);
    for (int64_t i = 0; i < t.np; i++) {
        const float *g2 = t.gt[i].data;
        for (int64_t j = 0; j < numel(&t.gt[i]); j++) acc_ok &= g2[j] == 2 * g1[i][j];
    }
    if (role == GRAFT_CARRY_CONSUMER)
        for (int64_t j = 0; j < N * C; j++) acc_ok &= b.dcarry[j] == 2 * dc1[j];
    if (!acc_ok) fprintf(stderr, "%s: gradients do not accumulate (+=) / dx not written (=)\n", name);
    CHECK(acc_ok);

    /* dump inputs and the first backward's outputs */
    dump *D = calloc(1, sizeof *D);
    float *S0 = NULL, *sh0 = NULL, *ST = malloc((size_t)(B * H * KV) * 4), *shT = malloc((size_t)(B * C) * 4);
    float *dST = malloc((size_t)(B * H * KV) * 4), *dshT = malloc((size_t)(B * C) * 4);
    float *dS0 = malloc((size_t)(B * H * KV) * 4), *dsh0 = malloc((size_t)(B * C) * 4);
    for (int64_t bb = 0; bb < B; bb++) {
        memcpy(ST + bb * H * KV, b.sout + bb * slot, (size_t)(H * KV) * 4);
        memcpy(shT + bb * C, b.sout + bb * slot + H * KV, (size_t)C * 4);
        memcpy(dST + bb * H * KV, b.dsout + bb * slot, (size_t)(H * KV) * 4);
        memcpy(dshT + bb * C, b.dsout + bb * slot + H * KV, (size_t)C * 4);
        memcpy(dS0 + bb * H * KV, b.dsin + bb * slot, (size_t)(H * KV) * 4);
        memcpy(dsh0 + bb * C, b.dsin + bb * slot + H * KV, (size_t)C * 4);
    }
    dump_add(D, "x", b.x, 3, B, T, C, 0);
    dump_add(D, "dy", b.dy, 3, B, T, C, 0);
    dump_add(D, "y", b.y, 3, B, T, C, 0);
    dump_add(D, "dx", dx1, 3, B, T, C, 0);
    dump_add(D, "S_T", ST, 4, B, H, hd, hd);
    dump_add(D, "shift_T", shT, 2, B, C, 0, 0);
    dump_add(D, "dS_T", dST, 4, B, H, hd, hd);
    dump_add(D, "dshift_T", dshT, 2, B, C, 0, 0);
    if (role == GRAFT_CARRY_PRODUCER) {
        dump_add(D, "carry", dcarry_in, 3, B, T, C, 0);
        dump_add(D, "carry_out", carry_fwd, 3, B, T, C, 0);
    } else {
        dump_add(D, "carry", carry_fwd, 3, B, T, C, 0);
        dump_add(D, "dcarry", dc1, 3, B, T, C, 0);
    }
    if (with_state) {
        S0 = malloc((size_t)(B * H * KV) * 4);
        sh0 = malloc((size_t)(B * C) * 4);
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(S0 + bb * H * KV, b.sin + bb * slot, (size_t)(H * KV) * 4);
            memcpy(sh0 + bb * C, b.sin + bb * slot + H * KV, (size_t)C * 4);
        }
        dump_add(D, "S0", S0, 4, B, H, hd, hd);
        dump_add(D, "shift0", sh0, 2, B, C, 0, 0);
        dump_add(D, "dS0", dS0, 4, B, H, hd, hd);
        dump_add(D, "dshift0", dsh0, 2, B, C, 0, 0);
    }
    for (int64_t i = 0; i < t.np; i++) {
        char nm[96];
        const graft_param_spec *s = &t.spec[i];
        snprintf(nm, sizeof nm, "p.%s", s->name);
        dump_add(D, nm, t.pt[i].data, s->ndim, s->shape[0], s->shape[1], s->shape[2], 0);
        snprintf(nm, sizeof nm, "g.%s", s->name);
        dump_add(D, nm, g1[i], s->ndim, s->shape[0], s->shape[1], s->shape[2], 0);
    }
    char cfg_json[1024], path[512], cmd[2048];
    size_t cl = (size_t)snprintf(cfg_json, sizeof cfg_json,
                                 "{\\\"n_embd\\\": %lld, \\\"head_dim\\\": %lld, \\\"norm_eps\\\": 1e-5, "
                                 "\\\"carry_role\\\": \\\"%s\\\"",
                                 (long long)C, (long long)hd, role == GRAFT_CARRY_PRODUCER ? "producer" : "consumer");
    for (int64_t i = 0; i < nkv; i++)
        cl += (size_t)snprintf(cfg_json + cl, sizeof cfg_json - cl, ", \\\"%s\\\": \\\"%s\\\"", kv[i].key, kv[i].value);
    snprintf(cfg_json + cl, sizeof cfg_json - cl, "}");
    snprintf(path, sizeof path, "%s/rwkv7_dump_%s.safetensors", GRAFT_BUILD_DIR, name);
    CHECK(dump_write(D, path, cfg_json) == 0);
    const char *py = getenv("GRAFT_PYTHON") ? getenv("GRAFT_PYTHON") : "/usr/bin/python3";
    snprintf(cmd, sizeof cmd, "%s %s/tests/reference/rwkv7_ref.py --check %s", py, GRAFT_SOURCE_DIR, path);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "%s: reference comparison failed (rc %d)\n", name, rc);
    CHECK(rc == 0);

    free(D); free(S0); free(sh0); free(ST); free(shT); free(dST); free(dshT); free(dS0); free(dsh0);
    for (int64_t i = 0; i < t.np; i++) free(g1[i]);
    free(dx1); free(dc1); free(carry_fwd); free(dcarry_in);
    free(b.x); free(b.dy); free(b.y); free(b.dx); free(b.carry); free(b.dcarry); free(b.sin); free(b.sout);
    free(b.dsout); free(b.dsin); free(b.saved); free(b.scratch);
    tl_free(&t);
}

/* ---- decoding: token by token (in place) and a split prefill equal the full forward --------- */

static void run_decode(graft_carry_role role) {
    const int64_t C = 48, hd = 16, B = 2, T = 37, N = B * T, split = 20;
    graft_mixer_cfg cfg = make_cfg(C, hd, role, NULL, 0);
    tl t;
    if (tl_make(&t, &cfg)) { CHECK(0); return; }
    random_params(&t, 3);
    graft_err err;
    const int64_t slot = (int64_t)(M->state_bytes(t.layer, 1000) / 4);
    CHECK(M->state_bytes(t.layer, 1) == M->state_bytes(t.layer, 1000)); /* independent of capacity */
    graft_rng r = graft_rng_make(5, 2);
    float *x = randv(&r, N * C, 1, 0), *vf = randv(&r, N * C, 1, 0), *s0 = randv(&r, B * slot, 0.3, 0);
    float *y_full = calloc((size_t)(N * C), 4), *c_full = calloc((size_t)(N * C), 4);
    float *s_full = calloc((size_t)(B * slot), 4);
    if (role == GRAFT_CARRY_CONSUMER) memcpy(c_full, vf, (size_t)(N * C) * 4);
    size_t sb, xb;
    M->workspace(t.layer, GRAFT_DEVICE_CPU, B, T, &sb, &xb, &err);
    io_bufs b = {0};
    b.x = x; b.y = y_full; b.carry = c_full; b.sin = s0; b.sout = s_full; b.scratch = h_alloc(NULL, xb);
    graft_mixer_io io = make_io(&t, &b, B, T);
    CHECK(M->forward(&io, &err) == GRAFT_STATUS_OK);

    /* token by token: rows of one time step gathered from every sequence, state updated in place */
    float *state = malloc((size_t)(B * slot) * 4), *xs = malloc((size_t)(B * C) * 4), *ys = malloc((size_t)(B * C) * 4);
    float *cs = malloc((size_t)(B * C) * 4), *y_dec = calloc((size_t)(N * C), 4), *c_dec = calloc((size_t)(N * C), 4);
    memcpy(state, s0, (size_t)(B * slot) * 4);
    size_t sb1, xb1;
    M->workspace(t.layer, GRAFT_DEVICE_CPU, B, 1, &sb1, &xb1, &err);
    void *scr1 = h_alloc(NULL, xb1);
    int64_t past[2];
    for (int64_t s = 0; s < T; s++) {
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(xs + bb * C, x + (bb * T + s) * C, (size_t)C * 4);
            memcpy(cs + bb * C, vf + (bb * T + s) * C, (size_t)C * 4);
            past[bb] = s;
        }
        io_bufs d = {0};
        d.x = xs; d.y = ys; d.carry = cs; d.sin = state; d.sout = state; d.scratch = scr1;
        graft_mixer_io io1 = make_io(&t, &d, B, 1);
        io1.past_len = past;
        CHECK(M->forward(&io1, &err) == GRAFT_STATUS_OK);
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(y_dec + (bb * T + s) * C, ys + bb * C, (size_t)C * 4);
            memcpy(c_dec + (bb * T + s) * C, cs + bb * C, (size_t)C * 4);
        }
    }
    check_close_f32("decode y", y_dec, y_full, N * C, 1e-10);
    check_close_f32("decode state", state, s_full, B * slot, 1e-10);
    if (role == GRAFT_CARRY_PRODUCER) check_close_f32("decode v_first", c_dec, c_full, N * C, 1e-10);

    /* split prefill: [0, split) then [split, T) from the carried state */
    float *x1 = malloc((size_t)(B * T * C) * 4), *y1 = calloc((size_t)(B * T * C), 4), *c1 = malloc((size_t)(B * T * C) * 4);
    float *y_split = calloc((size_t)(N * C), 4), *st = malloc((size_t)(B * slot) * 4);
    for (int part = 0; part < 2; part++) {
        const int64_t a = part ? split : 0, len = part ? T - split : split;
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(x1 + bb * len * C, x + (bb * T + a) * C, (size_t)(len * C) * 4);
            memcpy(c1 + bb * len * C, vf + (bb * T + a) * C, (size_t)(len * C) * 4);
        }
        io_bufs d = {0};
        d.x = x1; d.y = y1; d.carry = c1; d.sin = part ? st : s0; d.sout = st; d.scratch = b.scratch;
        graft_mixer_io io2 = make_io(&t, &d, B, len);
        CHECK(M->forward(&io2, &err) == GRAFT_STATUS_OK);
        for (int64_t bb = 0; bb < B; bb++) memcpy(y_split + (bb * T + a) * C, y1 + bb * len * C, (size_t)(len * C) * 4);
    }
    check_close_f32("split y", y_split, y_full, N * C, 1e-10);
    check_close_f32("split state", st, s_full, B * slot, 1e-10);

    free(x1); free(y1); free(c1); free(y_split); free(st);
    free(state); free(xs); free(ys); free(cs); free(y_dec); free(c_dec); free(scr1);
    free(x); free(vf); free(s0); free(y_full); free(c_full); free(s_full); free(b.scratch);
    tl_free(&t);
}

/* ---- configuration ---------------------------------------------------------------------------- */

static void expect_refusal(const graft_kv *kv, int64_t nkv, graft_carry_role role, const char *needle) {
    graft_mixer_cfg cfg = make_cfg(64, 16, role, kv, nkv);
    graft_err err = {0};
    void *layer = NULL;
    graft_status s = M->create(&host, &cfg, &layer, &err);
    CHECK(s == GRAFT_STATUS_BAD_INPUT);
    CHECK(layer == NULL);
    if (s) CHECK_CONTAINS(err.msg, needle);
    else M->destroy(layer);
}

static int64_t spec_dim(const tl *t, const char *name, int d) {
    for (int64_t i = 0; i < t->np; i++)
        if (!strcmp(t->spec[i].name, name)) return t->spec[i].shape[d];
    return -1;
}

static void test_config(void) {
    const graft_kv unknown[] = {{"num_head", "4", "x.yaml:3:5"}};
    expect_refusal(unknown, 1, GRAFT_CARRY_PRODUCER, "x.yaml:3:5: num_head: unknown key");
    const graft_kv hd[] = {{"head_dim", "24", NULL}};
    expect_refusal(hd, 1, GRAFT_CARRY_PRODUCER, "head_dim");
    const graft_kv rank0[] = {{"decay_low_rank_dim", "0", NULL}};
    expect_refusal(rank0, 1, GRAFT_CARRY_PRODUCER, "decay_low_rank_dim");
    const graft_kv rankneg[] = {{"gate_low_rank_dim", "-3", NULL}};
    expect_refusal(rankneg, 1, GRAFT_CARRY_PRODUCER, "gate_low_rank_dim");
    const graft_kv nh[] = {{"num_heads", "3", NULL}};
    expect_refusal(nh, 1, GRAFT_CARRY_PRODUCER, "num_heads");
    const graft_kv vd[] = {{"value_dim", "32", NULL}};
    expect_refusal(vd, 1, GRAFT_CARRY_PRODUCER, "value_dim");
    expect_refusal(NULL, 0, GRAFT_CARRY_NONE, "carry_role");

    /* The experiment's configuration (FLA keys, block keys included) is accepted. */
    const graft_kv exp[] = {{"head_dim", "128", NULL}, {"decay_low_rank_dim", "64", NULL},
                            {"a_low_rank_dim", "64", NULL}, {"v_low_rank_dim", "16", NULL},
                            {"gate_low_rank_dim", "128", NULL}, {"norm_eps", "1e-6", NULL},
                            {"value_dim", "null", NULL}, {"norm_first", "true", NULL},
                            {"norm_bias", "true", NULL}, {"attn_mode", "chunk", NULL},
                            {"hidden_act", "sqrelu", NULL}, {"use_l2warp", "true", NULL},
                            {"hidden_ratio", "3", NULL}, {"intermediate_size", "6144", NULL},
                            {"fuse_norm", "true", NULL}, {"num_hidden_layers", "28", NULL}};
    graft_mixer_cfg cfg = make_cfg(2048, 128, GRAFT_CARRY_CONSUMER, exp, (int64_t)(sizeof exp / sizeof exp[0]));
    tl t;
    CHECK(tl_make(&t, &cfg) == 0);
    CHECK(t.np == 26);
    CHECK(spec_dim(&t, "mixer.w_lora.lora.0.weight", 0) == 64);
    CHECK(spec_dim(&t, "mixer.a_lora.lora.2.weight", 1) == 64);
    CHECK(spec_dim(&t, "mixer.v_lora.lora.0.weight", 0) == 16);
    CHECK(spec_dim(&t, "mixer.g_lora.lora.2.weight", 1) == 128);
    CHECK(spec_dim(&t, "mixer.r_k", 0) == 16 && spec_dim(&t, "mixer.r_k", 1) == 128);
    int64_t total = 0;
    for (int64_t i = 0; i < t.np; i++) total += numel(&t.pt[i]);
    CHECK(total == 17920000); /* spec §1.1, l != 0 */
    tl_free(&t);
    /* FLA's automatic ranks for D = 2048, d = 128: 224 / 224 / 160 / 224 (spec §0); producer: no v_lora */
    cfg = make_cfg(2048, 128, GRAFT_CARRY_PRODUCER, NULL, 0);
    CHECK(tl_make(&t, &cfg) == 0);
    CHECK(t.np == 23);
    CHECK(spec_dim(&t, "mixer.w_lora.lora.0.weight", 0) == 224);
    CHECK(spec_dim(&t, "mixer.a_lora.lora.0.weight", 0) == 224);
    CHECK(spec_dim(&t, "mixer.g_lora.lora.0.weight", 0) == 224);
    CHECK(spec_dim(&t, "mixer.v_lora.lora.0.weight", 0) == -1);
    for (int64_t i = 0; i < t.np; i++) {
        int nd = strstr(t.spec[i].name, "bias") || strstr(t.spec[i].name, "g_norm") || strstr(t.spec[i].name, ".x_") ||
                 strstr(t.spec[i].name, ".k_k") || strstr(t.spec[i].name, ".k_a") || strstr(t.spec[i].name, ".r_k");
        CHECK(!!(t.spec[i].flags & GRAFT_PARAM_NO_DECAY) == nd);
    }
    tl_free(&t);
}

/* ---- init ----------------------------------------------------------------------------------- */

static float *param_of(tl *t, const char *name) {
    for (int64_t i = 0; i < t->np; i++)
        if (!strcmp(t->spec[i].name, name)) return t->pt[i].data;
    return NULL;
}

/* max |W W^T - gain^2 I| over the rows (W [rows, cols], rows <= cols) or W^T W otherwise */
static double ortho_err(const float *W, int64_t rows, int64_t cols, double gain) {
    int tr = rows > cols;
    int64_t m = tr ? cols : rows, k = tr ? rows : cols;
    double worst = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += tr ? (double)W[p * cols + i] * W[p * cols + j] : (double)W[i * cols + p] * W[j * cols + p];
            double e = fabs(s - (i == j ? gain * gain : 0));
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_init(void) {
    graft_mixer_cfg cfg = make_cfg(64, 16, GRAFT_CARRY_CONSUMER, NULL, 0);
    const graft_kv ranks[] = {{"decay_low_rank_dim", "4", NULL}, {"a_low_rank_dim", "4", NULL},
                              {"v_low_rank_dim", "2", NULL}, {"gate_low_rank_dim", "8", NULL}};
    cfg.kv = ranks;
    cfg.n_kv = 4;
    tl t;
    graft_err err;
    if (tl_make(&t, &cfg)) { CHECK(0); return; }
    CHECK(M->init(t.layer, t.pt, 42, NULL, &err) == GRAFT_STATUS_OK);
    CHECK(ortho_err(param_of(&t, "mixer.r_proj.weight"), 64, 64, 1.0) < 1e-5);
    CHECK(ortho_err(param_of(&t, "mixer.k_proj.weight"), 64, 64, 0.1) < 1e-6);
    CHECK(ortho_err(param_of(&t, "mixer.v_proj.weight"), 64, 64, 1.0) < 1e-5);
    CHECK(ortho_err(param_of(&t, "mixer.w_lora.lora.2.weight"), 64, 4, 0.1) < 1e-6);
    CHECK(ortho_err(param_of(&t, "mixer.g_lora.lora.2.weight"), 64, 8, 0.1) < 1e-6);
    const float *o = param_of(&t, "mixer.o_proj.weight"), *l0 = param_of(&t, "mixer.w_lora.lora.0.weight");
    int zero = 1;
    for (int i = 0; i < 64 * 64; i++) zero &= o[i] == 0;
    for (int i = 0; i < 4 * 64; i++) zero &= l0[i] == 0;
    CHECK(zero);
    /* l = 1, L = 4: x_* start at 1 (n = 0), k_a 1.02, r_k -0.04, g_norm ((l+1)/L)^0.7, v_first gate closed */
    CHECK(param_of(&t, "mixer.x_r")[0] == 1.0f && param_of(&t, "mixer.x_w")[0] == 1.0f);
    CHECK(fabs(param_of(&t, "mixer.x_r")[32] - (1 - pow(0.5, 0.2 * 0.75))) < 1e-6);
    CHECK(param_of(&t, "mixer.k_a")[5] == 1.02f && param_of(&t, "mixer.r_k")[7] == -0.04f);
    CHECK(fabs(param_of(&t, "mixer.g_norm.weight")[3] - pow(0.5, 0.7)) < 1e-6);
    CHECK(param_of(&t, "mixer.v_lora.lora.2.bias")[9] == -20.0f);
    CHECK(fabs(param_of(&t, "mixer.k_k")[0] - 0.76) < 1e-6);
    /* zigzag: a_lora bias at n = 0 is -0.19 + 0.3 * (-1) + 0.4 * (-0.5) */
    CHECK(fabs(param_of(&t, "mixer.a_lora.lora.2.bias")[0] - (-0.69)) < 1e-6);
    /* determinism */
    float *copy = malloc(64 * 64 * 4);
    memcpy(copy, param_of(&t, "mixer.r_proj.weight"), 64 * 64 * 4);
    CHECK(M->init(t.layer, t.pt, 42, NULL, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(copy, param_of(&t, "mixer.r_proj.weight"), 64 * 64 * 4));

    /* teacher: 4 query heads, 2 kv heads of 16: k_proj rows of head j come from kv head j / 2 */
    graft_rng r = graft_rng_make(1, 1);
    float *q = randv(&r, 64 * 64, 1, 0), *k = randv(&r, 32 * 64, 1, 0), *v = randv(&r, 32 * 64, 1, 0);
    float *ow = randv(&r, 64 * 64, 1, 0), *qn = randv(&r, 16, 1, 0);
    int64_t sq[2] = {64, 64}, skv[2] = {32, 64}, sn[1] = {16};
    graft_tensor tq = graft_tensor_make(q, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, sq);
    graft_tensor tk = graft_tensor_make(k, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, skv);
    graft_tensor tv = graft_tensor_make(v, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, skv);
    graft_tensor to = graft_tensor_make(ow, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, sq);
    graft_tensor tn = graft_tensor_make(qn, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 1, sn);
    graft_attention_weights aw = {sizeof aw, &tq, &tk, &tv, &to, &tn, &tn};
    CHECK(M->init(t.layer, t.pt, 42, &aw, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(param_of(&t, "mixer.r_proj.weight"), q, 64 * 64 * 4));
    CHECK(!memcmp(param_of(&t, "mixer.o_proj.weight"), ow, 64 * 64 * 4));
    CHECK(!memcmp(param_of(&t, "mixer.k_proj.weight") + 16 * 64, k, 16 * 64 * 4));
    CHECK(!memcmp(param_of(&t, "mixer.k_proj.weight") + 32 * 64, k + 16 * 64, 16 * 64 * 4));
    CHECK(!memcmp(param_of(&t, "mixer.v_proj.weight") + 48 * 64, v + 16 * 64, 16 * 64 * 4));
    CHECK(param_of(&t, "mixer.x_r")[0] == 1.0f);
    int64_t sbad[2] = {48, 64};
    graft_tensor tqb = graft_tensor_make(q, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, 2, sbad);
    aw.q_proj = &tqb;
    CHECK(M->init(t.layer, t.pt, 42, &aw, &err) == GRAFT_STATUS_UNSUPPORTED);
    free(q); free(k); free(v); free(ow); free(qn); free(copy);
    tl_free(&t);
}

int main(void) {
    const char *dir = getenv("GRAFT_PLUGIN_PATH");
    char path[1024];
    snprintf(path, sizeof path, "%s/libgraft_rwkv7.so", dir ? dir : GRAFT_BUILD_DIR "/lib/graft/plugins");
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 1;
    }
    graft_plugin_init_fn entry;
    *(void **)&entry = dlsym(so, GRAFT_PLUGIN_ENTRY);
    graft_plugin pl;
    memset(&pl, 0, sizeof pl);
    pl.struct_size = sizeof pl;
    pl.abi_version = GRAFT_ABI_VERSION;
    graft_err err;
    if (!entry || entry(&host, &pl, &err) != GRAFT_STATUS_OK) {
        fprintf(stderr, "graft_plugin_init failed\n");
        return 1;
    }
    M = pl.mixer;
    CHECK(pl.kind == GRAFT_PLUGIN_MIXER && !strcmp(M->name, "rwkv7") && !strcmp(M->carry_name, "v_first"));

    test_config();
    test_init();
    const graft_kv ranks[] = {{"decay_low_rank_dim", "4", NULL}, {"a_low_rank_dim", "4", NULL},
                              {"v_low_rank_dim", "2", NULL}, {"gate_low_rank_dim", "8", NULL}};
    run_case("producer", 64, 16, GRAFT_CARRY_PRODUCER, 2, 63, ranks, 4, 0);
    run_case("consumer_state", 64, 16, GRAFT_CARRY_CONSUMER, 2, 63, ranks, 4, 1);
    run_case("producer_T1_state", 64, 16, GRAFT_CARRY_PRODUCER, 2, 1, ranks, 4, 1);
    run_case("consumer_odd_T70", 48, 16, GRAFT_CARRY_CONSUMER, 1, 70, ranks, 4, 1);
    run_decode(GRAFT_CARRY_PRODUCER);
    run_decode(GRAFT_CARRY_CONSUMER);
    dlclose(so);
    return test_finish("test_rwkv7_plugin");
}
