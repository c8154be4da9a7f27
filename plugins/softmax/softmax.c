/* softmax.c: the "softmax" mixer: Qwen3 self-attention (spec/qwen3.md §3.2) as a plugin. This file
 * holds the descriptor, the entry point, config validation, parameter specs, init and workspace
 * sizes; the math lives in softmax_cpu.c. README.md has the formulas and the state layout.
 *
 * Parameters (names under model.layers.{i}., the Hugging Face ones):
 *   self_attn.q_proj.weight [nq*D, C], self_attn.k_proj.weight [nkv*D, C],
 *   self_attn.v_proj.weight [nkv*D, C], self_attn.o_proj.weight [C, nq*D],
 *   self_attn.q_norm.weight [D], self_attn.k_norm.weight [D] (NO_DECAY).
 * Decode state per sequence: K cache then V cache, each (nkv, capacity, D) fp32, post-norm
 * post-RoPE keys.
 */
#include <math.h>
#include <string.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "graft/rng.h"
#include "softmax.h"

static const char *const param_names[N_PARAMS] = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
};

static graft_status sm_create(const graft_host *host, const graft_mixer_cfg *cfg, void **out, graft_err *err) {
    if (!out) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: create: layer pointer is NULL");
    *out = NULL;
    if (!host || !cfg)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: create: host or cfg is NULL");
    const char *origin = cfg->origin ? cfg->origin : "(mixer config)";
    if (cfg->struct_size < offsetof(graft_mixer_cfg, carry_role) + sizeof cfg->carry_role)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: graft_mixer_cfg struct_size %u is too short",
                             cfg->struct_size);
    static const char *const known[] = {NULL};
    if (graft_kv_check_known(cfg->kv, cfg->n_kv, known, origin, err))
        return graft_err_prefix(err, "softmax (takes no settings)");
    if (cfg->n_embd <= 0 || cfg->n_head <= 0 || cfg->n_kv_head <= 0 || cfg->head_dim <= 0 ||
        cfg->n_embd > (1 << 20) || cfg->n_head > 4096 || cfg->n_kv_head > 4096 || cfg->head_dim > 4096)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: softmax: n_embd %lld, n_head %lld, n_kv_head %lld, head_dim %lld: expected "
                             "positive sizes (n_embd <= 2^20, heads and head_dim <= 4096)",
                             origin, (long long)cfg->n_embd, (long long)cfg->n_head, (long long)cfg->n_kv_head,
                             (long long)cfg->head_dim);
    if (cfg->n_head % cfg->n_kv_head)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: softmax: n_head %lld is not a multiple of n_kv_head %lld", origin,
                             (long long)cfg->n_head, (long long)cfg->n_kv_head);
    if (cfg->head_dim % 2)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: softmax: head_dim %lld is odd, expected even (RoPE)",
                             origin, (long long)cfg->head_dim);
    if (!(cfg->rope_theta > 1.0) || !isfinite(cfg->rope_theta))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: softmax: rope_theta %g, expected a number > 1",
                             origin, cfg->rope_theta);
    if (!(cfg->norm_eps >= 0.0) || !(cfg->norm_eps < 1.0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: softmax: norm_eps %g, expected 0 <= eps < 1", origin,
                             cfg->norm_eps);
    sm_layer *l = host->alloc(host->ctx, sizeof *l);
    if (!l) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "softmax: out of memory");
    l->host = host;
    l->inv_freq_dev = NULL;
    l->C = cfg->n_embd;
    l->nq = cfg->n_head;
    l->nkv = cfg->n_kv_head;
    l->D = cfg->head_dim;
    l->n_rep = l->nq / l->nkv;
    l->eps = cfg->norm_eps;
    l->scale = (float)pow((double)l->D, -0.5);
    l->inv_freq = host->alloc(host->ctx, (size_t)(l->D / 2) * sizeof(float));
    if (!l->inv_freq) {
        host->free(host->ctx, l);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "softmax: out of memory");
    }
    /* transformers: 1.0 / (base ** (arange(0, D, 2).float() / D)), all in fp32 */
    float base = (float)cfg->rope_theta;
    for (int64_t j = 0; j < l->D / 2; j++) {
        float e = (float)(2 * j) / (float)l->D;
        l->inv_freq[j] = 1.0f / powf(base, e);
    }
    *out = l;
    return GRAFT_STATUS_OK;
}

static void sm_destroy(void *layer) {
    sm_layer *l = layer;
    if (!l) return;
    const graft_host *h = l->host;
#ifdef GRAFT_PLUGIN_CUDA
    sm_cuda_release(l);
#endif
    h->free(h->ctx, l->inv_freq);
    h->free(h->ctx, l);
}

static int64_t sm_n_params(const void *layer) {
    (void)layer;
    return N_PARAMS;
}

static void param_shape(const sm_layer *l, int64_t i, int32_t *ndim, int64_t *shape) {
    switch (i) {
    case P_Q: *ndim = 2; shape[0] = l->nq * l->D; shape[1] = l->C; break;
    case P_K: case P_V: *ndim = 2; shape[0] = l->nkv * l->D; shape[1] = l->C; break;
    case P_O: *ndim = 2; shape[0] = l->C; shape[1] = l->nq * l->D; break;
    default: *ndim = 1; shape[0] = l->D; break;
    }
}

static graft_status sm_param(const void *layer, int64_t i, graft_param_spec *out, graft_err *err) {
    const sm_layer *l = layer;
    if (i < 0 || i >= N_PARAMS)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: param index %lld, expected 0..%d", (long long)i,
                             N_PARAMS - 1);
    if (!out || out->struct_size < offsetof(graft_param_spec, flags) + sizeof out->flags)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: param: graft_param_spec too short");
    uint32_t ss = out->struct_size;
    memset(out, 0, ss < sizeof *out ? ss : sizeof *out);
    out->struct_size = ss;
    out->name = param_names[i];
    param_shape(l, i, &out->ndim, out->shape);
    out->flags = (i == P_QNORM || i == P_KNORM) ? GRAFT_PARAM_NO_DECAY : 0u;
    return GRAFT_STATUS_OK;
}

static int same_shape(const graft_tensor *t, int32_t ndim, const int64_t *shape) {
    if (!t || t->ndim != ndim) return 0;
    for (int32_t d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

static graft_status sm_init(void *layer, const graft_tensor *params, uint64_t seed,
                            const graft_attention_weights *teacher, graft_err *err) {
    const sm_layer *l = layer;
    if (!params) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: init: params is NULL");
    const graft_tensor *src[N_PARAMS] = {0};
    if (teacher) {
        if (teacher->struct_size < offsetof(graft_attention_weights, k_norm) + sizeof teacher->k_norm)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: init: teacher struct_size %u too short",
                                 teacher->struct_size);
        src[P_Q] = teacher->q_proj; src[P_K] = teacher->k_proj; src[P_V] = teacher->v_proj;
        src[P_O] = teacher->o_proj; src[P_QNORM] = teacher->q_norm; src[P_KNORM] = teacher->k_norm;
    }
    for (int64_t i = 0; i < N_PARAMS; i++) {
        int32_t ndim;
        int64_t shape[GRAFT_MAX_DIMS] = {0};
        param_shape(l, i, &ndim, shape);
        const graft_tensor *p = &params[i];
        if (!same_shape(p, ndim, shape) || p->dtype != GRAFT_DTYPE_F32 || p->device != GRAFT_DEVICE_CPU ||
            !graft_tensor_is_contiguous(p) || !p->data)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax: init: %s: expected a contiguous F32 CPU tensor of the declared shape",
                                 param_names[i]);
        float *dst = p->data;
        int64_t n = graft_tensor_numel(p);
        if (teacher) {
            const graft_tensor *s = src[i];
            if (!s || !s->data || !same_shape(s, ndim, shape) || s->dtype != GRAFT_DTYPE_F32 ||
                s->device != GRAFT_DEVICE_CPU || !graft_tensor_is_contiguous(s))
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "softmax: init: teacher %s: missing, or not a contiguous F32 CPU tensor of "
                                     "shape [%lld%s%lld]",
                                     param_names[i], (long long)shape[0], ndim > 1 ? ", " : "",
                                     ndim > 1 ? (long long)shape[1] : 0LL);
            memcpy(dst, s->data, (size_t)n * sizeof(float));
        } else if (i == P_QNORM || i == P_KNORM) {
            for (int64_t j = 0; j < n; j++) dst[j] = 1.0f;
        } else {
            graft_rng r = graft_rng_make(seed, (uint64_t)i);
            for (int64_t j = 0; j < n; j++) dst[j] = (float)(0.02 * graft_rng_normal(&r));
        }
    }
    return GRAFT_STATUS_OK;
}

static graft_status sm_workspace(const void *layer, graft_device device, int64_t B, int64_t T, size_t *saved_bytes,
                                 size_t *scratch_bytes, graft_err *err) {
    const sm_layer *l = layer;
    if (B < 1 || T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: workspace: B %lld, T %lld, expected >= 1",
                             (long long)B, (long long)T);
#ifdef GRAFT_PLUGIN_CUDA
    if (device == GRAFT_DEVICE_CUDA) return sm_workspace_cuda(l, B, T, saved_bytes, scratch_bytes, err);
#endif
    if (device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "softmax: workspace: device %d is not served by this build",
                             (int)device);
    if (saved_bytes) *saved_bytes = (size_t)(B * T * sm_saved_floats_per_token(l)) * sizeof(float);
    if (scratch_bytes) *scratch_bytes = (size_t)sm_scratch_floats(l, B, T) * sizeof(float);
    return GRAFT_STATUS_OK;
}

static size_t sm_state_bytes(const void *layer, int64_t capacity) {
    const sm_layer *l = layer;
    if (capacity <= 0) return 0;
    return (size_t)(2 * l->nkv * l->D * capacity) * sizeof(float);
}

/* On CUDA the cache holds bf16 keys and values (softmax_cuda_layer.cu), half the CPU's fp32. */
static size_t sm_state_bytes_on(const void *layer, graft_device device, int64_t capacity) {
    size_t b = sm_state_bytes(layer, capacity);
    return device == GRAFT_DEVICE_CUDA ? b / 2 : b;
}

static int64_t sm_carry_width(const void *layer) {
    (void)layer;
    return 0;
}

/* Dispatch on the io's device. io->struct_size is checked by each path. */
static graft_status sm_forward(const graft_mixer_io *io, graft_err *err) {
    if (!io) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: io is NULL");
#ifdef GRAFT_PLUGIN_CUDA
    if (io->device == GRAFT_DEVICE_CUDA) return sm_forward_cuda(io, err);
#endif
    return sm_forward_cpu(io, err);
}

static graft_status sm_backward(const graft_mixer_io *io, graft_err *err) {
    if (!io) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: io is NULL");
#ifdef GRAFT_PLUGIN_CUDA
    if (io->device == GRAFT_DEVICE_CUDA) return sm_backward_cuda(io, err);
#endif
    return sm_backward_cpu(io, err);
}

/* CAP_CUDA only where the kernels are in the .so: forward, backward and KV-cache decode (head_dim
 * 128; other head dims are refused at the call with UNSUPPORTED). */
#ifdef GRAFT_PLUGIN_CUDA
#define SM_CAP_CUDA (GRAFT_MIXER_CAP_CUDA | GRAFT_MIXER_CAP_CUDA_GRAPH)
#else
#define SM_CAP_CUDA 0u
#endif

static const graft_mixer softmax_mixer = {
    .struct_size = sizeof(graft_mixer),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "softmax",
    .carry_name = NULL,
    .caps = GRAFT_MIXER_CAP_CPU | SM_CAP_CUDA | GRAFT_MIXER_CAP_TEACHER_INIT,
    .create = sm_create,
    .destroy = sm_destroy,
    .n_params = sm_n_params,
    .param = sm_param,
    .init = sm_init,
    .workspace = sm_workspace,
    .state_bytes = sm_state_bytes,
    .state_bytes_on = sm_state_bytes_on,
    .carry_width = sm_carry_width,
    .forward = sm_forward,
    .backward = sm_backward,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    if (!host || !out) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: host or out is NULL");
    if (host->abi_version != GRAFT_ABI_VERSION)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "softmax: host abi_version %u, this plugin speaks %u",
                             host->abi_version, GRAFT_ABI_VERSION);
    size_t need = offsetof(graft_host, parallel_for) + sizeof host->parallel_for;
    if (host->struct_size < need)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax: host struct_size %u, expected at least %zu", host->struct_size, need);
    if (out->struct_size < offsetof(graft_plugin, mixer) + sizeof out->mixer)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "softmax: graft_plugin struct_size %u too short",
                             out->struct_size);
    out->abi_version = GRAFT_ABI_VERSION;
    out->kind = GRAFT_PLUGIN_MIXER;
    out->name = "softmax";
    out->version = "0.1.0";
    out->mixer = &softmax_mixer;
    if (out->struct_size >= offsetof(graft_plugin, loss) + sizeof out->loss) out->loss = NULL;
    return GRAFT_STATUS_OK;
}
