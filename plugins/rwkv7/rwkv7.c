/* plugins/rwkv7/rwkv7.c: the RWKV-7 mixer plugin's descriptor and entry point, its configuration
 * (FLA's RWKV7Attention keys), its parameter table (FLA names under "mixer.") and its init
 * (FLA's own scheme, spec/rwkv7.md §1.3, or a Qwen3 teacher's q/k/v/o projections).
 *
 * Not here: the arithmetic (rwkv7_cpu.c) and the block around the mixer (graft keeps the Qwen3
 * layer's RMSNorms and MLP, so RWKV7Block's LayerNorms, pre_norm and FFN do not exist).
 * Reference: flash-linear-attention fla/layers/rwkv7.py (RWKV7Attention), spec/rwkv7.md.
 */
#include "rwkv7.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graft/kv.h"
#include "graft/rng.h"

static const char *const param_names[RWKV7_N_MAX] = {
    "mixer.x_r", "mixer.x_w", "mixer.x_k", "mixer.x_v", "mixer.x_a", "mixer.x_g",
    "mixer.k_k", "mixer.k_a", "mixer.r_k",
    "mixer.r_proj.weight", "mixer.k_proj.weight", "mixer.v_proj.weight", "mixer.o_proj.weight",
    "mixer.w_lora.lora.0.weight", "mixer.w_lora.lora.2.weight", "mixer.w_lora.lora.2.bias",
    "mixer.a_lora.lora.0.weight", "mixer.a_lora.lora.2.weight", "mixer.a_lora.lora.2.bias",
    "mixer.g_lora.lora.0.weight", "mixer.g_lora.lora.2.weight",
    "mixer.g_norm.weight", "mixer.g_norm.bias",
    "mixer.v_lora.lora.0.weight", "mixer.v_lora.lora.2.weight", "mixer.v_lora.lora.2.bias",
};

/* Keys of FLA's RWKV7Attention that graft implements, and RWKV7Config keys that belong to the
 * block or the model and are accepted (so an FLA config can be pasted) but change nothing here. */
static const char *const known_keys[] = {
    "head_dim", "num_heads", "decay_low_rank_dim", "a_low_rank_dim", "v_low_rank_dim",
    "gate_low_rank_dim", "value_dim", "norm_eps", "num_hidden_layers",
    "norm_first", "norm_bias", "hidden_act", "use_l2warp", "fuse_norm", "attn_mode",
    "intermediate_size", "hidden_ratio", NULL};

static void set_spec(rwkv7_layer *L, int i, int32_t ndim, int64_t d0, int64_t d1, int64_t d2,
                     uint32_t flags) {
    graft_param_spec *s = &L->spec[i];
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->name = param_names[i];
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->flags = flags;
}

static void build_params(rwkv7_layer *L) {
    const int64_t C = L->C, Vt = L->Vt;
    const uint32_t ND = GRAFT_PARAM_NO_DECAY;
    for (int i = P_X_R; i <= P_X_G; i++) set_spec(L, i, 3, 1, 1, C, ND);
    set_spec(L, P_K_K, 1, C, 0, 0, ND);
    set_spec(L, P_K_A, 1, C, 0, 0, ND);
    set_spec(L, P_R_K, 2, L->H, L->K, 0, ND);
    set_spec(L, P_R_PROJ, 2, C, C, 0, 0);
    set_spec(L, P_K_PROJ, 2, C, C, 0, 0);
    set_spec(L, P_V_PROJ, 2, Vt, C, 0, 0);
    set_spec(L, P_O_PROJ, 2, C, Vt, 0, 0);
    set_spec(L, P_W_L0, 2, L->rw, C, 0, 0);
    set_spec(L, P_W_L2, 2, C, L->rw, 0, 0);
    set_spec(L, P_W_B, 1, C, 0, 0, ND);
    set_spec(L, P_A_L0, 2, L->ra, C, 0, 0);
    set_spec(L, P_A_L2, 2, C, L->ra, 0, 0);
    set_spec(L, P_A_B, 1, C, 0, 0, ND);
    set_spec(L, P_G_L0, 2, L->rg, C, 0, 0);
    set_spec(L, P_G_L2, 2, Vt, L->rg, 0, 0);
    set_spec(L, P_GN_W, 1, Vt, 0, 0, ND);
    set_spec(L, P_GN_B, 1, Vt, 0, 0, ND);
    L->n_params = RWKV7_N_COMMON;
    if (!L->producer) {
        set_spec(L, P_V_L0, 2, L->rv, C, 0, 0);
        set_spec(L, P_V_L2, 2, Vt, L->rv, 0, 0);
        set_spec(L, P_V_B, 1, Vt, 0, 0, ND);
        L->n_params = RWKV7_N_MAX;
    }
}

/* FLA's automatic LoRA rank (RWKV7Attention.__init__): max(32, round(f * sqrt(D) / 32) * 32),
 * with Python's round (half to even, which rint does in the default rounding mode). */
static int64_t auto_rank(double f, int64_t D) {
    double r = rint(f * sqrt((double)D) / 32.0) * 32.0;
    return r < 32 ? 32 : (int64_t)r;
}

static graft_status create(const graft_host *host, const graft_mixer_cfg *cfg, void **layer,
                           graft_err *err) {
    const char *origin = cfg->origin ? cfg->origin : "(rwkv7 config)";
    *layer = NULL;
    if (!host || !host->alloc || !host->free || !host->matmul || !host->parallel_for)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "rwkv7: host table lacks alloc/free/matmul/parallel_for");
    if (graft_kv_check_known(cfg->kv, cfg->n_kv, known_keys, origin, err)) return err->status;
    if (cfg->carry_role != GRAFT_CARRY_PRODUCER && cfg->carry_role != GRAFT_CARRY_CONSUMER)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: rwkv7: carry_role %d, expected producer (1) or consumer (2): "
                             "the core assigns a v_first role to every RWKV-7 layer",
                             origin, (int)cfg->carry_role);
    const int64_t C = cfg->n_embd;
    if (C < 1 || C > (1 << 20))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: n_embd: %lld, expected 1..%d", origin,
                             (long long)C, 1 << 20);

    /* head_dim: the model's (Qwen3's attention head_dim, 128 in the experiment); FLA's default 64
     * only when the model gives none. */
    int64_t K = cfg->head_dim > 0 ? cfg->head_dim : 64;
    if (graft_kv_int(cfg->kv, cfg->n_kv, "head_dim", 1, C, &K, origin, err)) return err->status;
    if (C % K != 0) {
        const graft_kv *e = graft_kv_find(cfg->kv, cfg->n_kv, "head_dim");
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: head_dim: %lld does not divide the width n_embd %lld, expected a divisor",
                             graft_kv_where_(e, origin), (long long)K, (long long)C);
    }
    int64_t H = C / K, nh = H;
    if (graft_kv_int(cfg->kv, cfg->n_kv, "num_heads", 1, C, &nh, origin, err)) return err->status;
    if (nh != H)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: num_heads: %lld, expected n_embd / head_dim = %lld / %lld = %lld",
                             graft_kv_where_(graft_kv_find(cfg->kv, cfg->n_kv, "num_heads"), origin),
                             (long long)nh, (long long)C, (long long)K, (long long)H);
    const graft_kv *vd = graft_kv_find(cfg->kv, cfg->n_kv, "value_dim");
    if (vd) {
        const char *v = vd->value ? vd->value : "";
        char *end = NULL;
        long long n = strtoll(v, &end, 10);
        int is_null = !strcmp(v, "null") || !strcmp(v, "None") || !strcmp(v, "none") || !*v;
        if (!is_null && !(end != v && *end == 0 && n == C))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: value_dim: \"%s\", expected null (value width = n_embd = %lld)",
                                 graft_kv_where_(vd, origin), v, (long long)C);
    }
    const double factor = (double)K / 64.0;
    int64_t rw = auto_rank(2.5 * factor, C), ra = auto_rank(2.5 * factor, C);
    int64_t rv = auto_rank(1.7 * factor, C), rg = auto_rank(5.0, C);
    if (graft_kv_int(cfg->kv, cfg->n_kv, "decay_low_rank_dim", 1, 1 << 16, &rw, origin, err) ||
        graft_kv_int(cfg->kv, cfg->n_kv, "a_low_rank_dim", 1, 1 << 16, &ra, origin, err) ||
        graft_kv_int(cfg->kv, cfg->n_kv, "v_low_rank_dim", 1, 1 << 16, &rv, origin, err) ||
        graft_kv_int(cfg->kv, cfg->n_kv, "gate_low_rank_dim", 1, 1 << 16, &rg, origin, err))
        return err->status;
    double eps = cfg->norm_eps > 0 ? cfg->norm_eps : 1e-5;
    if (graft_kv_double(cfg->kv, cfg->n_kv, "norm_eps", 1e-30, 1.0, &eps, origin, err)) return err->status;
    int64_t n_layer = cfg->n_layer;
    if (graft_kv_int(cfg->kv, cfg->n_kv, "num_hidden_layers", 1, 1 << 20, &n_layer, origin, err))
        return err->status;
    if (cfg->layer_index < 0 || n_layer < 1 || cfg->layer_index >= n_layer)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: layer_index %lld with %lld layers (n_layer or num_hidden_layers), "
                             "expected 0 <= layer_index < layers",
                             origin, (long long)cfg->layer_index, (long long)n_layer);
    /* Block-level keys: validated only where a wrong type would hide a typo. */
    int flag = 0;
    if (graft_kv_bool(cfg->kv, cfg->n_kv, "norm_first", &flag, origin, err) ||
        graft_kv_bool(cfg->kv, cfg->n_kv, "norm_bias", &flag, origin, err) ||
        graft_kv_bool(cfg->kv, cfg->n_kv, "use_l2warp", &flag, origin, err) ||
        graft_kv_bool(cfg->kv, cfg->n_kv, "fuse_norm", &flag, origin, err))
        return err->status;
    static const char *const modes[] = {"chunk", "fused_recurrent", NULL};
    int mode = 0;
    if (graft_kv_enum(cfg->kv, cfg->n_kv, "attn_mode", modes, &mode, origin, err)) return err->status;

    rwkv7_layer *L = host->alloc(host->ctx, sizeof *L);
    if (!L) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "rwkv7: out of memory for the layer object");
    L->host = host;
    L->C = C;
    L->H = H;
    L->K = K;
    L->V = K;
    L->Vt = C;
    L->rw = rw;
    L->ra = ra;
    L->rv = rv;
    L->rg = rg;
    L->producer = cfg->carry_role == GRAFT_CARRY_PRODUCER;
    L->gn_eps = (double)K * eps;
    L->layer_index = cfg->layer_index;
    L->n_layer = n_layer;
    build_params(L);
    *layer = L;
    return GRAFT_STATUS_OK;
}

static void destroy(void *layer) {
    rwkv7_layer *L = layer;
    if (L) L->host->free(L->host->ctx, L);
}

static int64_t n_params(const void *layer) { return ((const rwkv7_layer *)layer)->n_params; }

static graft_status param(const void *layer, int64_t i, graft_param_spec *out, graft_err *err) {
    const rwkv7_layer *L = layer;
    if (i < 0 || i >= L->n_params)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: parameter index %lld, expected 0..%lld",
                             (long long)i, (long long)L->n_params - 1);
    uint32_t size = out->struct_size ? out->struct_size : (uint32_t)sizeof *out;
    if (size > sizeof *out) size = sizeof *out;
    memcpy(out, &L->spec[i], size);
    out->struct_size = size;
    return GRAFT_STATUS_OK;
}

/* ---- init ----------------------------------------------------------------------------------- */

/* torch.nn.init.orthogonal_(W, gain) for W [rows, cols]: the Q of a QR decomposition of a Gaussian
 * matrix, with orthonormal columns when rows >= cols and orthonormal rows otherwise, times gain.
 * Modified Gram-Schmidt in double over the longer side; its R has a positive diagonal, which is the
 * sign convention torch applies (q *= sign(diag(r))). `work` holds rows * cols doubles.
 *
 * The m x n matrix is stored by columns (column j at work + j * m, contiguous), and MGS runs
 * right-looking: once column j is normalized, every later column k loses its projection on it, the
 * columns k in parallel (host->parallel_for). Column k still meets q_0, q_1, ... in that order with
 * the same sums over i, so the values equal the left-looking loop's; a 2048 x 2048 init takes
 * seconds instead of minutes (the row-major left-looking loop strode through memory). */
typedef struct mgs_job {
    double *w;
    int64_t m, j;
} mgs_job;

static void mgs_project(void *arg, int64_t b, int64_t e) {
    const mgs_job *g = arg;
    const double *q = g->w + g->j * g->m;
    for (int64_t k = g->j + 1 + b; k < g->j + 1 + e; k++) {
        double *c = g->w + k * g->m, dot = 0;
        for (int64_t i = 0; i < g->m; i++) dot += q[i] * c[i];
        for (int64_t i = 0; i < g->m; i++) c[i] -= dot * q[i];
    }
}

static void orthogonal(const graft_host *host, float *W, int64_t rows, int64_t cols, double gain, graft_rng *rng,
                       double *work) {
    const int tr = rows < cols;           /* build the transpose, Q is [m, n] with m >= n */
    const int64_t m = tr ? cols : rows, n = tr ? rows : cols;
    for (int64_t i = 0; i < m; i++)       /* drawn in row-major order, stored by columns */
        for (int64_t j = 0; j < n; j++) work[j * m + i] = graft_rng_normal(rng);
    for (int64_t j = 0; j < n; j++) {
        double *q = work + j * m, nrm = 0;
        for (int64_t i = 0; i < m; i++) nrm += q[i] * q[i];
        nrm = sqrt(nrm);
        for (int64_t i = 0; i < m; i++) q[i] = nrm > 0 ? q[i] / nrm : 0;
        mgs_job g = {work, m, j};
        if (j + 1 < n) host->parallel_for(host->ctx, n - j - 1, mgs_project, &g);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            W[r * cols + c] = (float)(gain * (tr ? work[r * m + c] : work[c * m + r]));
}

/* FLA's LoRA up-projection gain: 0.1, times sqrt(rank / out) when rank > out. */
static double lora_gain(int64_t out, int64_t rank) {
    return 0.1 * (rank > out ? sqrt((double)rank / (double)out) : 1.0);
}

static graft_status check_tensors(const rwkv7_layer *L, const graft_tensor *params, graft_err *err) {
    for (int64_t i = 0; i < L->n_params; i++) {
        const graft_tensor *t = &params[i];
        const graft_param_spec *s = &L->spec[i];
        int ok = t->data && t->dtype == GRAFT_DTYPE_F32 && t->device == GRAFT_DEVICE_CPU &&
                 t->ndim == s->ndim && graft_tensor_is_contiguous(t);
        for (int32_t d = 0; ok && d < s->ndim; d++) ok = t->shape[d] == s->shape[d];
        if (!ok)
            return graft_err_set(err, GRAFT_STATUS_INTERNAL,
                                 "rwkv7: %s: tensor is not a contiguous F32 CPU tensor of the declared shape",
                                 s->name);
    }
    return GRAFT_STATUS_OK;
}

/* Copies a Qwen3 projection [out_rows, C] into dst [n_rep * out_rows, C], repeating each group of
 * head_dim rows n_rep times in place (GQA expansion: query head j reads kv head j / n_rep). */
static void expand_heads(float *dst, const float *src, int64_t n_kv, int64_t n_rep, int64_t hd, int64_t C) {
    for (int64_t j = 0; j < n_kv * n_rep; j++)
        memcpy(dst + j * hd * C, src + (j / n_rep) * hd * C, (size_t)(hd * C) * sizeof(float));
}

static int teacher_tensor_ok(const graft_tensor *t, int64_t d0, int64_t d1) {
    return t && t->data && t->dtype == GRAFT_DTYPE_F32 && t->device == GRAFT_DEVICE_CPU && t->ndim == 2 &&
           t->shape[0] == d0 && t->shape[1] == d1 && graft_tensor_is_contiguous(t);
}

static graft_status init(void *layer, const graft_tensor *params, uint64_t seed,
                         const graft_attention_weights *teacher, graft_err *err) {
    rwkv7_layer *L = layer;
    const graft_host *host = L->host;
    if (check_tensors(L, params, err)) return err->status;
    const int64_t C = L->C, Vt = L->Vt, K = L->K;
    float *P[RWKV7_N_MAX] = {0};
    for (int64_t i = 0; i < L->n_params; i++) P[i] = params[i].data;

    /* Teacher shapes are checked before anything is written. */
    int64_t nq = 0, nkv = 0, hd = 0;
    if (teacher) {
        if (teacher->struct_size < offsetof(graft_attention_weights, o_proj) + sizeof teacher->o_proj ||
            !teacher->q_proj || !teacher->k_proj || !teacher->v_proj || !teacher->o_proj ||
            teacher->q_proj->ndim != 2 || teacher->k_proj->ndim != 2)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "rwkv7: init teacher: q/k/v/o_proj missing");
        hd = 0;
        int64_t qrows = teacher->q_proj->shape[0], kvrows = teacher->k_proj->shape[0];
        /* Qwen3's head_dim is not in the weights; q_norm [head_dim] carries it. */
        if (teacher->struct_size >= offsetof(graft_attention_weights, q_norm) + sizeof teacher->q_norm &&
            teacher->q_norm && teacher->q_norm->ndim == 1)
            hd = teacher->q_norm->shape[0];
        if (hd <= 0 || qrows % hd || kvrows % hd || qrows != C)
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "rwkv7: init teacher: q_proj has %lld rows (head_dim %lld), expected n_embd = %lld "
                                 "rows (n_head * head_dim = n_embd) to map q/k/v/o onto r/k/v/o_proj",
                                 (long long)qrows, (long long)hd, (long long)C);
        nq = qrows / hd;
        nkv = kvrows / hd;
        if (nkv < 1 || nq % nkv)
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "rwkv7: init teacher: %lld query heads not a multiple of %lld kv heads",
                                 (long long)nq, (long long)nkv);
        if (!teacher_tensor_ok(teacher->q_proj, C, C) || !teacher_tensor_ok(teacher->k_proj, nkv * hd, C) ||
            !teacher_tensor_ok(teacher->v_proj, nkv * hd, C) || !teacher_tensor_ok(teacher->o_proj, C, C))
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "rwkv7: init teacher: q/k/v/o_proj are not contiguous F32 CPU tensors of shapes "
                                 "[%lld,%lld] [%lld,%lld] [%lld,%lld] [%lld,%lld]",
                                 (long long)C, (long long)C, (long long)(nkv * hd), (long long)C,
                                 (long long)(nkv * hd), (long long)C, (long long)C, (long long)C);
    }

    const double l = (double)L->layer_index, NL = (double)L->n_layer;
    /* p0 = l / (L - 1); FLA divides by zero when L = 1, graft takes p0 = 0 there. */
    const double p0 = NL > 1 ? l / (NL - 1) : 0.0, p1 = 1.0 - l / NL;
    for (int64_t n = 0; n < C; n++) {
        const double ddd = (double)n / (double)C;
        const double lin = C > 1 ? (double)n / (double)(C - 1) - 0.5 : -0.5;
        const double half = (double)(K - 1) / 2.0;
        const double z = K > 1 ? ((double)(n % K) - half) / half : 0.0, zig = z * fabs(z);
        const double www = -6.0 + 6.0 * pow(C > 1 ? (double)n / (double)(C - 1) : 0.0, 1.0 + pow(p0, 0.3));
        P[P_X_R][n] = (float)(1.0 - pow(ddd, 0.2 * p1));
        P[P_X_G][n] = (float)(1.0 - pow(ddd, 0.2 * p1));
        P[P_X_W][n] = (float)(1.0 - pow(ddd, 0.9 * p1));
        P[P_X_A][n] = (float)(1.0 - pow(ddd, 0.9 * p1));
        P[P_X_K][n] = (float)(1.0 - pow(ddd, 0.7 * p1));
        P[P_X_V][n] = (float)(1.0 - pow(ddd, 0.7 * p1));
        P[P_K_K][n] = (float)(0.71 - 0.1 * lin);
        P[P_K_A][n] = 1.02f;
        P[P_R_K][n] = -0.04f; /* r_k [H, K] has C entries too */
        P[P_W_B][n] = (float)(www + 0.5 + 2.5 * zig);
        P[P_A_B][n] = (float)(-0.19 + 0.3 * zig + 0.4 * lin);
    }
    const float gn = (float)pow((l + 1.0) / NL, 0.7);
    for (int64_t n = 0; n < Vt; n++) {
        P[P_GN_W][n] = gn;
        P[P_GN_B][n] = 0.0f;
        /* Consumer: FLA would start from 0.73 - 0.4 * linear; graft closes the v_first gate
         * (sigma(-20) ~ 2e-9) so that an assembled hybrid computes what its Stage-0 producer
         * students computed (DESIGN: assembly preserves function). */
        if (!L->producer) P[P_V_B][n] = -20.0f;
    }
    memset(P[P_W_L0], 0, sizeof(float) * (size_t)(L->rw * C));
    memset(P[P_A_L0], 0, sizeof(float) * (size_t)(L->ra * C));
    memset(P[P_G_L0], 0, sizeof(float) * (size_t)(L->rg * C));
    if (!L->producer) memset(P[P_V_L0], 0, sizeof(float) * (size_t)(L->rv * C));

    int64_t big = C * C > Vt * C ? C * C : Vt * C;
    double *work = host->alloc(host->ctx, sizeof(double) * (size_t)big);
    if (!work) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "rwkv7: init: out of memory (%lld doubles)",
                                    (long long)big);
    /* One rng stream per parameter index, so adding a parameter does not shift the others. */
    graft_rng rng;
    rng = graft_rng_make(seed, P_W_L2);
    orthogonal(host, P[P_W_L2], C, L->rw, lora_gain(C, L->rw), &rng, work);
    rng = graft_rng_make(seed, P_A_L2);
    orthogonal(host, P[P_A_L2], C, L->ra, lora_gain(C, L->ra), &rng, work);
    rng = graft_rng_make(seed, P_G_L2);
    orthogonal(host, P[P_G_L2], Vt, L->rg, lora_gain(Vt, L->rg), &rng, work);
    if (!L->producer) {
        rng = graft_rng_make(seed, P_V_L2);
        orthogonal(host, P[P_V_L2], Vt, L->rv, lora_gain(Vt, L->rv), &rng, work);
    }
    if (teacher) {
        memcpy(P[P_R_PROJ], teacher->q_proj->data, sizeof(float) * (size_t)(C * C));
        expand_heads(P[P_K_PROJ], teacher->k_proj->data, nkv, nq / nkv, hd, C);
        expand_heads(P[P_V_PROJ], teacher->v_proj->data, nkv, nq / nkv, hd, C);
        memcpy(P[P_O_PROJ], teacher->o_proj->data, sizeof(float) * (size_t)(C * C));
    } else {
        rng = graft_rng_make(seed, P_R_PROJ);
        orthogonal(host, P[P_R_PROJ], C, C, 1.0, &rng, work);
        rng = graft_rng_make(seed, P_K_PROJ);
        orthogonal(host, P[P_K_PROJ], C, C, 0.1, &rng, work);
        rng = graft_rng_make(seed, P_V_PROJ);
        orthogonal(host, P[P_V_PROJ], Vt, C, 1.0, &rng, work);
        memset(P[P_O_PROJ], 0, sizeof(float) * (size_t)(C * Vt));
    }
    host->free(host->ctx, work);
    return GRAFT_STATUS_OK;
}

/* ---- sizes and dispatch --------------------------------------------------------------------- */

static graft_status workspace(const void *layer, graft_device device, int64_t B, int64_t T,
                              size_t *saved_bytes, size_t *scratch_bytes, graft_err *err) {
    const rwkv7_layer *L = layer;
    if (B < 0 || T < 0 || (B > 0 && T > ((int64_t)1 << 40) / B))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "rwkv7: workspace: B %lld T %lld out of range",
                             (long long)B, (long long)T);
#ifdef GRAFT_PLUGIN_CUDA
    if (device == GRAFT_DEVICE_CUDA) return rwkv7_cuda_workspace(L, B, T, saved_bytes, scratch_bytes, err);
#endif
    if (device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "rwkv7: device %d: this build serves the CPU%s",
                             (int)device,
#ifdef GRAFT_PLUGIN_CUDA
                             " and CUDA"
#else
                             ""
#endif
        );
    *saved_bytes = rwkv7_saved_bytes(L, B, T);
    *scratch_bytes = rwkv7_scratch_bytes(L, B, T);
    return GRAFT_STATUS_OK;
}

static size_t state_bytes(const void *layer, int64_t capacity) {
    (void)capacity; /* a fixed-size recurrent state: independent of the sequence length */
    return rwkv7_state_bytes(layer);
}

static int64_t carry_width(const void *layer) { return ((const rwkv7_layer *)layer)->Vt; }

static graft_status check_io(const graft_mixer_io *io, graft_err *err) {
    if (!io || io->struct_size < offsetof(graft_mixer_io, dcarry) + sizeof io->dcarry || !io->layer)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: io struct too short or no layer");
    if (io->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "rwkv7: device %d: only the CPU is implemented",
                             (int)io->device);
    if (io->B < 1 || io->T < 1 || !io->x || !io->params)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: B %lld T %lld, x or params missing",
                             (long long)io->B, (long long)io->T);
    if (!io->carry)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: io->carry (v_first) is NULL");
    return check_tensors(io->layer, io->params, err);
}

static graft_status forward(const graft_mixer_io *io, graft_err *err) {
#ifdef GRAFT_PLUGIN_CUDA
    if (io && io->layer && io->device == GRAFT_DEVICE_CUDA) return rwkv7_cuda_layer_forward(io->layer, io, err);
#endif
    if (check_io(io, err)) return err->status;
    if (!io->y || !io->scratch) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: forward: y or scratch missing");
    return rwkv7_cpu_forward(io, err);
}

static graft_status backward(const graft_mixer_io *io, graft_err *err) {
#ifdef GRAFT_PLUGIN_CUDA
    if (io && io->layer && io->device == GRAFT_DEVICE_CUDA) return rwkv7_cuda_layer_backward(io->layer, io, err);
#endif
    if (check_io(io, err)) return err->status;
    if (!io->dy || !io->dx || !io->grads || !io->saved || !io->scratch)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: backward: dy, dx, grads, saved or scratch missing");
    const rwkv7_layer *L = io->layer;
    if (L->producer == 0 && !io->dcarry)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: backward: consumer without dcarry");
    return rwkv7_cpu_backward(io, err);
}

/* CAP_CUDA only where the kernels are in the .so. CUDA_GRAPH: the one-token decode step
 * (rwkv7_cuda_layer.cu) reads no length, makes no host copy, no sync and no allocation. */
#ifdef GRAFT_PLUGIN_CUDA
#define RWKV7_CAP_CUDA (GRAFT_MIXER_CAP_CUDA | GRAFT_MIXER_CAP_CUDA_GRAPH)
#else
#define RWKV7_CAP_CUDA 0u
#endif

static const graft_mixer rwkv7_mixer = {
    .struct_size = sizeof(graft_mixer),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "rwkv7",
    .carry_name = "v_first",
    .caps = GRAFT_MIXER_CAP_CPU | RWKV7_CAP_CUDA | GRAFT_MIXER_CAP_TEACHER_INIT | GRAFT_MIXER_CAP_STATE_GRAD,
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

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    if (!host || !out) return graft_err_set(err, GRAFT_STATUS_PLUGIN, "rwkv7: NULL host or plugin struct");
    if (host->abi_version != GRAFT_ABI_VERSION)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "rwkv7: host abi_version %u, this plugin speaks %u",
                             host->abi_version, GRAFT_ABI_VERSION);
    if (host->struct_size < offsetof(graft_host, parallel_for) + sizeof host->parallel_for)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             "rwkv7: host struct_size %u, expected >= %zu (needs parallel_for)", host->struct_size,
                             offsetof(graft_host, parallel_for) + sizeof host->parallel_for);
    if (out->struct_size < offsetof(graft_plugin, mixer) + sizeof out->mixer)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "rwkv7: graft_plugin struct_size %u too small",
                             out->struct_size);
    out->abi_version = GRAFT_ABI_VERSION;
    out->kind = GRAFT_PLUGIN_MIXER;
    out->name = "rwkv7";
    out->version = "0.1.0";
    out->mixer = &rwkv7_mixer;
    if (out->struct_size >= offsetof(graft_plugin, loss) + sizeof out->loss) out->loss = NULL;
    return GRAFT_STATUS_OK;
}
