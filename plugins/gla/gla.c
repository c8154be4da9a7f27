/* plugins/gla/gla.c: the GLA mixer plugin: entry point, descriptor, config parsing, the parameter
 * table, init (random = FLA's model init; teacher = Qwen3 attention weights), workspace and
 * decode-state sizes. The arithmetic lives in gla_cpu.c.
 *
 * Reference: spec/gla.md (FLA fla/layers/gla.py, GatedLinearAttention, at the commit named there);
 * README.md in this folder documents every config key, the names, init and the state layout.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "gla.h"
#include "graft/kv.h"
#include "graft/rng.h"

#define GLA_VERSION "0.1.0"

/* Keys accepted in a gla mixer's settings (FLA's names). See README.md "Config". */
static const char *const known_keys[] = {
    "num_heads", "num_kv_heads", "expand_k", "expand_v", "use_short_conv", "conv_size",
    "conv_bias", "gate_low_rank_dim", "gate_logit_normalizer", "norm_eps", "gate_fn",
    "hidden_act", "feature_map", "use_output_gate", "clamp_min", "fuse_norm",
    "elementwise_affine", "attn_mode", "mode", "share_conv_kernel", "use_gk", "use_gv",
    "hidden_ratio", "intermediate_size", NULL};

static int is_null_text(const char *v) {
    return !v || !v[0] || !strcmp(v, "null") || !strcmp(v, "None") || !strcmp(v, "none") ||
           !strcmp(v, "~");
}

/* A key whose only supported value is null (or absence). */
static graft_status require_null(const graft_mixer_cfg *cfg, const char *key, const char *why,
                                 graft_err *err) {
    const graft_kv *e = graft_kv_find(cfg->kv, cfg->n_kv, key);
    if (e && !is_null_text(e->value))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\", expected null (%s)",
                             graft_kv_where_(e, cfg->origin), key, e->value, why);
    return GRAFT_STATUS_OK;
}

/* A boolean key whose only supported value is `want` (absence is fine). */
static graft_status require_bool(const graft_mixer_cfg *cfg, const char *key, int want,
                                 const char *why, graft_err *err) {
    int v = want;
    if (graft_kv_bool(cfg->kv, cfg->n_kv, key, &v, cfg->origin, err)) return err->status;
    if (v != want) {
        const graft_kv *e = graft_kv_find(cfg->kv, cfg->n_kv, key);
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected %s (%s)",
                             graft_kv_where_(e, cfg->origin), key, v ? "true" : "false",
                             want ? "true" : "false", why);
    }
    return GRAFT_STATUS_OK;
}

/* A key FLA stores and never reads: accepted (a number or null) and ignored. */
static graft_status ignored_number(const graft_mixer_cfg *cfg, const char *key, graft_err *err) {
    const graft_kv *e = graft_kv_find(cfg->kv, cfg->n_kv, key);
    if (!e || is_null_text(e->value)) return GRAFT_STATUS_OK;
    double d = 0;
    return graft_kv_double(cfg->kv, cfg->n_kv, key, 0.0, 1e12, &d, cfg->origin, err);
}

static void set_spec(gla_layer *L, int slot, const char *name, int32_t ndim, int64_t d0,
                     int64_t d1, int64_t d2, uint32_t flags) {
    graft_param_spec *s = &L->spec[L->n_params];
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->name = name;
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->flags = flags;
    L->slot[slot] = (int)L->n_params++;
}

static graft_status gla_parse(const graft_mixer_cfg *cfg, gla_layer *L, graft_err *err) {
    const graft_kv *kv = cfg->kv;
    const int64_t n = cfg->n_kv;
    const char *org = cfg->origin;
    if (graft_kv_check_known(kv, n, known_keys, org, err)) return err->status;
    if (cfg->n_embd < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: n_embd: %lld, expected >= 1",
                             org ? org : "(mixer config)", (long long)cfg->n_embd);
    L->C = cfg->n_embd;
    L->t_nq = cfg->n_head;
    L->t_nkv = cfg->n_kv_head;
    L->t_D = cfg->head_dim;

    int64_t H = cfg->n_head > 0 ? cfg->n_head : 1;
    if (graft_kv_int(kv, n, "num_heads", 1, 1 << 16, &H, org, err)) return err->status;
    int64_t Hkv = H;
    const graft_kv *e = graft_kv_find(kv, n, "num_kv_heads");
    if (e && !is_null_text(e->value) &&
        graft_kv_int(kv, n, "num_kv_heads", 1, 1 << 16, &Hkv, org, err))
        return err->status;
    if (H % Hkv != 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: num_kv_heads: %lld does not divide num_heads %lld, expected a "
                             "divisor", graft_kv_where_(e, org), (long long)Hkv, (long long)H);

    double expand_k = 1.0, expand_v = 1.0;
    if (graft_kv_double(kv, n, "expand_k", 1e-6, 1024.0, &expand_k, org, err) ||
        graft_kv_double(kv, n, "expand_v", 1e-6, 1024.0, &expand_v, org, err))
        return err->status;
    /* FLA: key_dim = int(hidden_size * expand_k) (truncation) */
    int64_t Ktot = (int64_t)((double)L->C * expand_k), Vtot = (int64_t)((double)L->C * expand_v);
    const char *dims[2] = {"expand_k", "expand_v"};
    int64_t tot[2] = {Ktot, Vtot};
    double ex[2] = {expand_k, expand_v};
    for (int i = 0; i < 2; i++)
        if (tot[i] < H || tot[i] % H != 0) {
            const graft_kv *w = graft_kv_find(kv, n, "num_heads");
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: num_heads: %lld does not divide the %s width int(%lld * %s "
                                 "%g) = %lld, expected a divisor",
                                 graft_kv_where_(w ? w : graft_kv_find(kv, n, dims[i]), org),
                                 (long long)H, i ? "value" : "key", (long long)L->C, dims[i],
                                 ex[i], (long long)tot[i]);
        }
    L->H = H;
    L->Hkv = Hkv;
    L->G = H / Hkv;
    L->dk = Ktot / H;
    L->dv = Vtot / H;
    L->Kq = Ktot;
    L->Vq = Vtot;
    L->Kkv = Hkv * L->dk;
    L->Vkv = Hkv * L->dv;

    L->use_conv = 1;
    L->W = 4;
    L->r = 16;
    L->gamma = 16.0;
    L->eps = cfg->norm_eps > 0 ? cfg->norm_eps : 1e-6;
    if (graft_kv_bool(kv, n, "use_short_conv", &L->use_conv, org, err) ||
        graft_kv_int(kv, n, "conv_size", 1, 64, &L->W, org, err) ||
        graft_kv_int(kv, n, "gate_low_rank_dim", 1, 1 << 20, &L->r, org, err) ||
        graft_kv_double(kv, n, "gate_logit_normalizer", 1e-6, 1e9, &L->gamma, org, err) ||
        graft_kv_double(kv, n, "norm_eps", 1e-30, 1.0, &L->eps, org, err))
        return err->status;

    static const char *const swish[] = {"swish", "silu", NULL};
    static const char *const modes[] = {"chunk", "fused_recurrent", "fused_chunk", NULL};
    int ignored = 0;
    if (graft_kv_enum(kv, n, "gate_fn", swish, &ignored, org, err) ||
        graft_kv_enum(kv, n, "hidden_act", swish, &ignored, org, err) ||
        graft_kv_enum(kv, n, "attn_mode", modes, &ignored, org, err) ||
        graft_kv_enum(kv, n, "mode", modes, &ignored, org, err) ||
        graft_kv_bool(kv, n, "share_conv_kernel", &ignored, org, err) ||
        graft_kv_bool(kv, n, "use_gk", &ignored, org, err) ||
        graft_kv_bool(kv, n, "use_gv", &ignored, org, err) ||
        ignored_number(cfg, "hidden_ratio", err) || ignored_number(cfg, "intermediate_size", err))
        return err->status;
    if (require_null(cfg, "clamp_min", "graft's GLA has no lower clamp of the log gate (FLA default null)", err) ||
        require_null(cfg, "feature_map", "no feature map on q, k is implemented", err) ||
        require_bool(cfg, "use_output_gate", 1, "graft's GLA always gates the output norm (FLA default true)", err) ||
        require_bool(cfg, "fuse_norm", 1,
                     "unfused, FLA names the norm g_norm.weight; graft keeps g_norm_swish_gate", err) ||
        require_bool(cfg, "elementwise_affine", 1, "the norm always has its weight", err) ||
        require_bool(cfg, "conv_bias", 0, "FLA's GLA convolutions have no bias", err))
        return err->status;

    /* parameter table, FLA's registration order, names after "attn." in FLA */
    L->n_params = 0;
    for (int i = 0; i < GLA_P_COUNT; i++) L->slot[i] = -1;
    set_spec(L, GLA_P_Q, "mixer.q_proj.weight", 2, L->Kq, L->C, 0, 0);
    set_spec(L, GLA_P_K, "mixer.k_proj.weight", 2, L->Kkv, L->C, 0, 0);
    set_spec(L, GLA_P_V, "mixer.v_proj.weight", 2, L->Vkv, L->C, 0, 0);
    set_spec(L, GLA_P_G, "mixer.g_proj.weight", 2, L->Vq, L->C, 0, 0);
    if (L->use_conv) {
        set_spec(L, GLA_P_QCONV, "mixer.q_conv1d.weight", 3, L->Kq, 1, L->W, 0);
        set_spec(L, GLA_P_KCONV, "mixer.k_conv1d.weight", 3, L->Kkv, 1, L->W, 0);
        set_spec(L, GLA_P_VCONV, "mixer.v_conv1d.weight", 3, L->Vkv, 1, L->W, 0);
    }
    set_spec(L, GLA_P_GK0, "mixer.gk_proj.0.weight", 2, L->r, L->C, 0, 0);
    set_spec(L, GLA_P_GK1, "mixer.gk_proj.1.weight", 2, L->Kkv, L->r, 0, 0);
    set_spec(L, GLA_P_GK1_BIAS, "mixer.gk_proj.1.bias", 1, L->Kkv, 0, 0, GRAFT_PARAM_NO_DECAY);
    set_spec(L, GLA_P_O, "mixer.o_proj.weight", 2, L->C, L->Vq, 0, 0);
    set_spec(L, GLA_P_NORM, "mixer.g_norm_swish_gate.weight", 1, L->dv, 0, 0,
             GRAFT_PARAM_NO_DECAY);
    L->scale = (float)(1.0 / sqrt((double)L->dk));
    return GRAFT_STATUS_OK;
}

static graft_status gla_create(const graft_host *host, const graft_mixer_cfg *cfg, void **layer,
                               graft_err *err) {
    if (!host || !cfg || !layer)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "gla: create: NULL argument");
    if (host->struct_size < offsetof(graft_host, parallel_for) + sizeof host->parallel_for ||
        !host->alloc || !host->free || !host->matmul || !host->parallel_for)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             "gla: host table too short or incomplete (struct_size %u)",
                             (unsigned)host->struct_size);
    gla_layer tmp;
    memset(&tmp, 0, sizeof tmp);
    if (gla_parse(cfg, &tmp, err)) return err->status;
    gla_layer *L = host->alloc(host->ctx, sizeof *L);
    if (!L) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "gla: out of memory");
    *L = tmp;
    L->host = host;
    *layer = L;
    return GRAFT_STATUS_OK;
}

static void gla_destroy(void *layer) {
    gla_layer *L = layer;
    if (L) L->host->free(L->host->ctx, L);
}

static int64_t gla_n_params(const void *layer) { return ((const gla_layer *)layer)->n_params; }

static graft_status gla_param(const void *layer, int64_t i, graft_param_spec *out, graft_err *err) {
    const gla_layer *L = layer;
    if (i < 0 || i >= L->n_params)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: param %lld, expected 0..%lld",
                             (long long)i, (long long)L->n_params - 1);
    uint32_t size = out->struct_size && out->struct_size < sizeof *out ? out->struct_size
                                                                        : (uint32_t)sizeof *out;
    memcpy(out, &L->spec[i], size);
    out->struct_size = size;
    return GRAFT_STATUS_OK;
}

/* ---- init ------------------------------------------------------------------------------------ */

static graft_status check_teacher(const graft_tensor *t, const char *name, int64_t rows,
                                  int64_t cols, graft_err *err) {
    if (!t || !t->data)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: init teacher: %s missing", name);
    if (t->dtype != GRAFT_DTYPE_F32 || t->device != GRAFT_DEVICE_CPU || t->ndim != 2 ||
        !graft_tensor_is_contiguous(t) || t->shape[0] != rows || t->shape[1] != cols)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla: init teacher: %s: %s [%lld, %lld], expected a contiguous CPU F32 "
                             "[%lld, %lld]", name, graft_dtype_name(t->dtype),
                             t->ndim > 0 ? (long long)t->shape[0] : -1LL,
                             t->ndim > 1 ? (long long)t->shape[1] : -1LL, (long long)rows,
                             (long long)cols);
    return GRAFT_STATUS_OK;
}

/* GLA kv head j takes teacher kv head j / (Hkv / nkv): the same grouping as the teacher's own
 * GQA (q head h reads kv head h*nkv/nq there and h*Hkv/H here). */
static void expand_heads(const float *src, int64_t nkv, float *dst, int64_t Hkv, int64_t d,
                         int64_t C) {
    int64_t rep = Hkv / nkv;
    for (int64_t j = 0; j < Hkv; j++)
        memcpy(dst + j * d * C, src + (j / rep) * d * C, sizeof(float) * (size_t)(d * C));
}

static graft_status gla_init(void *layer, const graft_tensor *params, uint64_t seed,
                             const graft_attention_weights *teacher, graft_err *err) {
    const gla_layer *L = layer;
    for (int64_t i = 0; i < L->n_params; i++) {
        const graft_param_spec *s = &L->spec[i];
        const graft_tensor *t = &params[i];
        int ok = t->data && t->dtype == GRAFT_DTYPE_F32 && t->ndim == s->ndim &&
                 graft_tensor_is_contiguous(t);
        for (int32_t d = 0; ok && d < s->ndim; d++) ok = t->shape[d] == s->shape[d];
        if (!ok)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "gla: init: %s: not a contiguous F32 of the declared shape",
                                 s->name);
    }
    /* the teacher mapping is checked completely before anything is written */
    int64_t nq = 0, nkv = 0, D = 0;
    if (teacher) {
        const graft_tensor *tq = teacher->q_proj, *tk = teacher->k_proj;
        nq = L->t_nq;
        nkv = L->t_nkv;
        D = L->t_D;
        if (nq != L->H || D != L->dk || D != L->dv)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "gla: init teacher: the attention has %lld heads of dim %lld, GLA has "
                                 "num_heads %lld with key dim %lld and value dim %lld; expected the same "
                                 "heads and dims (num_heads = n_head, expand_k = expand_v = "
                                 "n_head * head_dim / hidden_size)", (long long)nq, (long long)D,
                                 (long long)L->H, (long long)L->dk, (long long)L->dv);
        if (nkv < 1 || L->Hkv % nkv != 0)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "gla: init teacher: %lld teacher kv heads do not divide num_kv_heads "
                                 "%lld", (long long)nkv, (long long)L->Hkv);
        if (check_teacher(tq, "q_proj", nq * D, L->C, err) ||
            check_teacher(tk, "k_proj", nkv * D, L->C, err) ||
            check_teacher(teacher->v_proj, "v_proj", nkv * D, L->C, err) ||
            check_teacher(teacher->o_proj, "o_proj", L->C, nq * D, err))
            return err->status;
    }
    /* random: FLA's model init (GLAPreTrainedModel._init_weights): every Linear / Conv1d weight
     * N(0, 0.02²), bias 0, norm weight 1; stream = declared parameter index */
    for (int64_t i = 0; i < L->n_params; i++) {
        float *d = params[i].data;
        int64_t n = graft_tensor_numel(&params[i]);
        if ((int)i == L->slot[GLA_P_NORM]) {
            for (int64_t j = 0; j < n; j++) d[j] = 1.0f;
        } else if ((int)i == L->slot[GLA_P_GK1_BIAS]) {
            memset(d, 0, sizeof(float) * (size_t)n);
        } else {
            graft_rng rng = graft_rng_make(seed, (uint64_t)i);
            for (int64_t j = 0; j < n; j++) d[j] = (float)(0.02 * graft_rng_normal(&rng));
        }
    }
    if (!teacher) return GRAFT_STATUS_OK;
    /* teacher: q, k, v, o from the attention (GQA expanded); convs identity; gate, g random */
    memcpy(params[L->slot[GLA_P_Q]].data, teacher->q_proj->data,
           sizeof(float) * (size_t)(L->Kq * L->C));
    expand_heads(teacher->k_proj->data, nkv, params[L->slot[GLA_P_K]].data, L->Hkv, D, L->C);
    expand_heads(teacher->v_proj->data, nkv, params[L->slot[GLA_P_V]].data, L->Hkv, D, L->C);
    memcpy(params[L->slot[GLA_P_O]].data, teacher->o_proj->data,
           sizeof(float) * (size_t)(L->C * L->Vq));
    if (L->use_conv) {
        const int conv[3] = {GLA_P_QCONV, GLA_P_KCONV, GLA_P_VCONV};
        for (int c = 0; c < 3; c++) {
            const graft_tensor *t = &params[L->slot[conv[c]]];
            float *d = t->data;
            for (int64_t ch = 0; ch < t->shape[0]; ch++)
                for (int64_t j = 0; j < L->W; j++) d[ch * L->W + j] = j == L->W - 1 ? 1.0f : 0.0f;
        }
    }
    return GRAFT_STATUS_OK;
}

/* ---- sizes ----------------------------------------------------------------------------------- */

static graft_status gla_workspace(const void *layer, graft_device device, int64_t B, int64_t T,
                                  size_t *saved_bytes, size_t *scratch_bytes, graft_err *err) {
    const gla_layer *L = layer;
    if (B < 0 || T < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: workspace: B=%lld T=%lld",
                             (long long)B, (long long)T);
#ifdef GRAFT_PLUGIN_CUDA
    if (device == GRAFT_DEVICE_CUDA)
        return gla_cuda_workspace(L, B, T, saved_bytes, scratch_bytes, err);
#endif
    if (device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla: device %d is not served by this build (CPU%s)", (int)device,
#ifdef GRAFT_PLUGIN_CUDA
                             " and CUDA"
#else
                             " only"
#endif
        );
    gla_plan p;
    gla_plan_make(L, B, T, &p);
    /* scratch = a copy-sized activation region (used when a forward saves nothing) + work */
    if (saved_bytes) *saved_bytes = sizeof(float) * p.act_floats;
    if (scratch_bytes) *scratch_bytes = sizeof(float) * (p.act_floats + p.work_floats);
    return GRAFT_STATUS_OK;
}

static size_t gla_state_bytes(const void *layer, int64_t capacity) {
    (void)capacity;  /* a recurrent state does not grow with the sequence */
    return sizeof(float) * gla_state_floats(layer);
}

static int64_t gla_carry_width(const void *layer) {
    (void)layer;
    return 0;
}

static graft_status gla_forward(const graft_mixer_io *io, graft_err *err) {
    if (!io || !io->layer) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "gla: forward: no layer");
#ifdef GRAFT_PLUGIN_CUDA
    if (io->device == GRAFT_DEVICE_CUDA) return gla_cuda_layer_forward(io->layer, io, err);
#endif
    return gla_cpu_forward(io->layer, io, err);
}

static graft_status gla_backward(const graft_mixer_io *io, graft_err *err) {
    if (!io || !io->layer)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "gla: backward: no layer");
#ifdef GRAFT_PLUGIN_CUDA
    if (io->device == GRAFT_DEVICE_CUDA) return gla_cuda_layer_backward(io->layer, io, err);
#endif
    return gla_cpu_backward(io->layer, io, err);
}

/* CAP_CUDA only where the kernels are in the .so (forward, backward with state gradients, and the
 * one-token decode step); layers the kernels do not serve (dk or dv != 128, GQA) are refused at the
 * call with UNSUPPORTED. */
#ifdef GRAFT_PLUGIN_CUDA
/* CUDA_GRAPH: the decode step (gla_cuda_layer.cu) depends on no length and makes no host copy or
 * synchronization, so the core may capture it (plugin.h past_len_dev). */
#define GLA_CAP_CUDA (GRAFT_MIXER_CAP_CUDA | GRAFT_MIXER_CAP_CUDA_GRAPH)
#else
#define GLA_CAP_CUDA 0u
#endif

static const graft_mixer gla_mixer = {
    .struct_size = sizeof(graft_mixer),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "gla",
    .carry_name = NULL,
    .caps = GRAFT_MIXER_CAP_CPU | GLA_CAP_CUDA | GRAFT_MIXER_CAP_TEACHER_INIT |
            GRAFT_MIXER_CAP_STATE_GRAD,
    .create = gla_create,
    .destroy = gla_destroy,
    .n_params = gla_n_params,
    .param = gla_param,
    .init = gla_init,
    .workspace = gla_workspace,
    .state_bytes = gla_state_bytes,
    .carry_width = gla_carry_width,
    .forward = gla_forward,
    .backward = gla_backward,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out,
                                                   graft_err *err) {
    if (!host || !out) return graft_err_set(err, GRAFT_STATUS_PLUGIN, "gla: NULL host or out");
    if (host->abi_version != GRAFT_ABI_VERSION)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "gla: host abi_version %u, this plugin speaks %u",
                             (unsigned)host->abi_version, (unsigned)GRAFT_ABI_VERSION);
    if (host->struct_size < offsetof(graft_host, parallel_for) + sizeof host->parallel_for)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             "gla: host struct_size %u, expected at least %u (log, matmul, alloc, "
                             "free, parallel_for)", (unsigned)host->struct_size,
                             (unsigned)(offsetof(graft_host, parallel_for) +
                                        sizeof host->parallel_for));
    if (out->struct_size < offsetof(graft_plugin, mixer) + sizeof out->mixer)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "gla: graft_plugin struct_size %u too small",
                             (unsigned)out->struct_size);
    out->abi_version = GRAFT_ABI_VERSION;
    out->kind = GRAFT_PLUGIN_MIXER;
    out->name = gla_mixer.name;
    out->version = GLA_VERSION;
    out->mixer = &gla_mixer;
    if (out->struct_size >= offsetof(graft_plugin, loss) + sizeof out->loss) out->loss = NULL;
    return GRAFT_STATUS_OK;
}
