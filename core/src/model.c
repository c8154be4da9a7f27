/* model.c: the Qwen3 decoder on a backend, with one mixer plugin per layer (spec/qwen3.md §3, §5).
 *
 *   h0 = embed[ids]
 *   layer l:  a = rmsnorm(h_l, ln1);  hmid = h_l + mixer_l(a)
 *             m = rmsnorm(hmid, ln2); h_{l+1} = hmid + down(silu(gate m) * up m)
 *   logits = rmsnorm(h_L, norm) . W_out^T        (W_out = embed when tied)
 *
 * The backward is the hand-written chain rule of qwen3.md §5; the mixer's part is its plugin's
 * backward. Checked against PyTorch float64 autograd by tests/model (tests/reference/qwen3_ref.py).
 *
 * Carried streams (plugin.h): the first layer whose mixer names a stream is its PRODUCER, later
 * ones CONSUMERS; the core owns one (B, T, width) buffer per stream and its gradient.
 *
 * Not here: reading checkpoints (model_load.c), losses, optimizers.
 */
#include "model.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "block.h"
#include "graft/rng.h"
#include "host.h"
#include "plugin_loader.h"

#define MAX_CARRY 4

typedef struct layer {
    graft_loaded_plugin *plugin;
    const graft_mixer *mx;
    void *ml;                     /* the mixer's layer object                                  */
    int64_t n_mp;                 /* mixer parameter count                                      */
    int64_t p_mixer;              /* index of the first mixer parameter in the registry         */
    int64_t p_ln1, p_ln2, p_gate, p_up, p_down;
    int carry;                    /* carried-stream slot or -1                                  */
    graft_tensor *mp, *mg;        /* mixer param / grad views (n_mp each), host F32              */
    graft_tensor *mpw;            /* mixer params as the backend's ops read them (== mp on CPU)   */
    size_t saved_bytes, scratch_bytes;
    graft_block blk;              /* the layer as a block, pointing into the model's arenas     */
    graft_block_ws ws;
} layer;

struct graft_model {
    graft_qwen3_config cfg;
    const graft_backend *be;
    const graft_host *host;
    layer *layers;
    graft_model_param *params;
    int64_t n_params;
    int64_t p_embed, p_lm_head, p_norm; /* p_lm_head == p_embed when tied */
    float *weights;               /* host F32 master weights                                     */
    float *grads;                 /* F32 gradients in the backend's memory (host on the CPU)     */
    /* optimizer (graft_model_opt_*): moments m | v, F32 in the backend's memory; on a device also
     * the F32 master copy the step updates (the host weights are refreshed by download) */
    float *opt_moments, *opt_master;
    void *opt_plan;
    int64_t opt_t;
    size_t weights_floats;
    void *work;                   /* the backend's working copy (weight_dtype, on its device);
                                     NULL on the CPU, where params[i].work == params[i].data    */
    void *logits_dev;             /* F32 logits on a device backend, logits_cap floats          */
    size_t logits_cap;
    int32_t *next_dev;            /* greedy ids (logits_cap / V rows), after the logits         */
    int n_carry;
    int64_t carry_width[MAX_CARRY];
    /* activations, for capacity N = B*T */
    int64_t cap_N, B, T;
    int trained;                  /* the last forward kept activations                          */
    int act_train;                /* the arena holds every layer's saved part (training)        */
    void *act;                    /* one allocation on the backend; views below point into it   */
    size_t act_bytes;
    int32_t *ids, *labels;        /* device int32 on a device backend                            */
    double *sums;                 /* (4) the fused loss's sums                                  */
    void *h, *hf, *dh, *dhf;      /* activation dtype                                           */
    float *rstdf;
    int32_t *past_dev;            /* (N) int32: a decode step's past lengths, for its mixers      */
    float *carry[MAX_CARRY], *dcarry[MAX_CARRY];
    void *topk_dev;               /* teacher top-k uploaded for the fused loss, topk_cap bytes   */
    size_t topk_cap;
    /* The captured single-token decode step (CUDA graph), valid while its key holds: the batch,
     * the state and its capacity, and the arena and logits buffer its kernels address. */
    void *graph;
    int graph_warm;               /* the key ran once eagerly: lazy first-call work is done       */
    int64_t graph_B, graph_cap;
    const void *graph_state, *graph_act, *graph_logits;
    int64_t graph_launches;       /* replays so far (tests, bench)                              */
};

static void bind_blocks(graft_model_t *m);
static void bind_work(graft_model_t *m);
static void free_activations(graft_model_t *m);

/* Element address i of an activation buffer of the backend's dtype. */
static void *act_at(const graft_model_t *m, void *base, int64_t i) {
    return (char *)base + (size_t)i * graft_dtype_size(m->be->act_dtype);
}

/* ---- parameter registry ------------------------------------------------------------------- */

static graft_status add_param(graft_model_t *m, int64_t *cap, const char *name, int32_t ndim,
                              const int64_t *shape, uint32_t flags, int64_t layer_idx, int64_t *index,
                              graft_err *err) {
    if (m->n_params == *cap) {
        int64_t ncap = *cap ? *cap * 2 : 64;
        graft_model_param *np = realloc(m->params, (size_t)ncap * sizeof *np);
        if (!np) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory (parameter table)");
        m->params = np;
        *cap = ncap;
    }
    graft_model_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    if (!p->name) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory");
    p->ndim = ndim;
    p->numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->flags = flags;
    p->layer = layer_idx;
    *index = m->n_params++;
    return GRAFT_STATUS_OK;
}

static graft_status build_registry(graft_model_t *m, const graft_layer_spec *specs, graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    int64_t cap = 0, C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    graft_status st;
    int64_t s2[2];
    const char *carry_names[MAX_CARRY] = {0};
    char name[256];

    s2[0] = V; s2[1] = C;
    if ((st = add_param(m, &cap, "model.embed_tokens.weight", 2, s2, 0, -1, &m->p_embed, err))) return st;
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer *L = &m->layers[l];
        const graft_layer_spec *sp = specs ? &specs[l] : NULL;
        const char *mixer = (sp && sp->mixer) ? sp->mixer : "softmax";
        if ((st = graft_plugin_load(mixer, GRAFT_PLUGIN_MIXER, &L->plugin, err))) {
            snprintf(name, sizeof name, "layer %lld: mixer \"%s\"", (long long)l, mixer);
            return graft_err_prefix(err, name);
        }
        L->mx = graft_plugin_mixer(L->plugin);
        L->carry = -1;
        graft_carry_role role = GRAFT_CARRY_NONE;
        if (L->mx->carry_name) {
            int slot = -1;
            for (int s = 0; s < m->n_carry; s++)
                if (!strcmp(carry_names[s], L->mx->carry_name)) slot = s;
            if (slot < 0) {
                if (m->n_carry == MAX_CARRY)
                    return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "model: more than %d carried streams", MAX_CARRY);
                slot = m->n_carry++;
                carry_names[slot] = L->mx->carry_name;
                role = GRAFT_CARRY_PRODUCER;
            } else {
                role = GRAFT_CARRY_CONSUMER;
            }
            L->carry = slot;
        }
        graft_mixer_cfg mc;
        memset(&mc, 0, sizeof mc);
        mc.struct_size = sizeof mc;
        mc.n_embd = C;
        mc.layer_index = l;
        mc.n_layer = c->n_layer;
        mc.n_head = c->n_head;
        mc.n_kv_head = c->n_kv_head;
        mc.head_dim = c->head_dim;
        mc.rope_theta = c->rope_theta;
        mc.norm_eps = c->rms_norm_eps;
        mc.kv = sp ? sp->kv : NULL;
        mc.n_kv = sp ? sp->n_kv : 0;
        mc.origin = sp ? sp->origin : NULL;
        mc.carry_role = role;
        if ((st = L->mx->create(m->host, &mc, &L->ml, err))) {
            snprintf(name, sizeof name, "layer %lld: mixer \"%s\"", (long long)l, mixer);
            return graft_err_prefix(err, name);
        }
        if (L->carry >= 0) {
            int64_t w = L->mx->carry_width ? L->mx->carry_width(L->ml) : 0;
            if (w <= 0)
                return graft_err_set(err, GRAFT_STATUS_PLUGIN, "layer %lld: mixer \"%s\": carry_width %lld, expected > 0",
                                     (long long)l, mixer, (long long)w);
            if (role == GRAFT_CARRY_PRODUCER) m->carry_width[L->carry] = w;
            else if (m->carry_width[L->carry] != w)
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "layer %lld: mixer \"%s\": carried stream \"%s\" width %lld, but its producer has %lld",
                                     (long long)l, mixer, L->mx->carry_name, (long long)w,
                                     (long long)m->carry_width[L->carry]);
        }
        int64_t s1[1] = {C};
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        if ((st = add_param(m, &cap, name, 1, s1, GRAFT_PARAM_NO_DECAY, l, &L->p_ln1, err))) return st;
        L->n_mp = L->mx->n_params(L->ml);
        L->p_mixer = m->n_params;
        for (int64_t i = 0; i < L->n_mp; i++) {
            graft_param_spec ps;
            memset(&ps, 0, sizeof ps);
            ps.struct_size = sizeof ps;
            if ((st = L->mx->param(L->ml, i, &ps, err))) return st;
            if (ps.ndim < 1 || ps.ndim > GRAFT_MAX_DIMS || !ps.name)
                return graft_err_set(err, GRAFT_STATUS_PLUGIN, "layer %lld: mixer \"%s\": parameter %lld: bad spec",
                                     (long long)l, mixer, (long long)i);
            snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, ps.name);
            int64_t idx;
            if ((st = add_param(m, &cap, name, ps.ndim, ps.shape, ps.flags, l, &idx, err))) return st;
        }
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        if ((st = add_param(m, &cap, name, 1, s1, GRAFT_PARAM_NO_DECAY, l, &L->p_ln2, err))) return st;
        s2[0] = I; s2[1] = C;
        snprintf(name, sizeof name, "model.layers.%lld.mlp.gate_proj.weight", (long long)l);
        if ((st = add_param(m, &cap, name, 2, s2, 0, l, &L->p_gate, err))) return st;
        snprintf(name, sizeof name, "model.layers.%lld.mlp.up_proj.weight", (long long)l);
        if ((st = add_param(m, &cap, name, 2, s2, 0, l, &L->p_up, err))) return st;
        s2[0] = C; s2[1] = I;
        snprintf(name, sizeof name, "model.layers.%lld.mlp.down_proj.weight", (long long)l);
        if ((st = add_param(m, &cap, name, 2, s2, 0, l, &L->p_down, err))) return st;
    }
    int64_t s1[1] = {C};
    if ((st = add_param(m, &cap, "model.norm.weight", 1, s1, GRAFT_PARAM_NO_DECAY, -1, &m->p_norm, err))) return st;
    if (c->tie_word_embeddings) {
        m->p_lm_head = m->p_embed;
    } else {
        s2[0] = V; s2[1] = C;
        if ((st = add_param(m, &cap, "lm_head.weight", 2, s2, 0, -1, &m->p_lm_head, err))) return st;
    }
    return GRAFT_STATUS_OK;
}

/* Points every parameter (and the mixers' tensor views) into the arena `base` (weights or grads). */
static void bind_views(graft_model_t *m, float *base, int grads) {
    size_t off = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        graft_model_param *p = &m->params[i];
        if (grads) p->grad = base + off;
        else p->data = base + off;
        off += ((size_t)p->numel + 15) & ~(size_t)15; /* 64-byte aligned views */
    }
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        layer *L = &m->layers[l];
        graft_tensor *t = grads ? L->mg : L->mp;
        for (int64_t i = 0; i < L->n_mp; i++) {
            graft_model_param *p = &m->params[L->p_mixer + i];
            t[i] = graft_tensor_make(grads ? p->grad : p->data, GRAFT_DTYPE_F32,
                                     grads ? m->be->device : GRAFT_DEVICE_CPU, p->ndim, p->shape);
            if (grads) t[i].device_index = m->be->device_index;
        }
    }
}

graft_status graft_model_create(const graft_qwen3_config *cfg, const graft_layer_spec *layers,
                                graft_model_t **out, graft_err *err) {
    *out = NULL;
    graft_status st = graft_config_validate(cfg, "model config", err);
    if (st) return st;
    graft_model_t *m = calloc(1, sizeof *m);
    if (!m) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory");
    m->cfg = *cfg;
    m->be = graft_backend_cpu();
    m->host = graft_host_get();
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory");
    }
    if ((st = build_registry(m, layers, err))) goto fail;
    size_t total = 0;
    for (int64_t i = 0; i < m->n_params; i++) total += ((size_t)m->params[i].numel + 15) & ~(size_t)15;
    m->weights_floats = total;
    m->weights = graft_backend_cpu()->alloc(NULL, total * sizeof(float));
    if (!m->weights) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: cannot allocate %zu bytes of weights",
                           total * sizeof(float));
        goto fail;
    }
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        layer *L = &m->layers[l];
        L->mp = calloc((size_t)(L->n_mp ? L->n_mp : 1), sizeof(graft_tensor));
        L->mg = calloc((size_t)(L->n_mp ? L->n_mp : 1), sizeof(graft_tensor));
        L->mpw = calloc((size_t)(L->n_mp ? L->n_mp : 1), sizeof(graft_tensor));
        if (!L->mp || !L->mg || !L->mpw) {
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory");
            goto fail;
        }
    }
    bind_views(m, m->weights, 0);
    bind_work(m);
    bind_blocks(m);
    /* RMSNorm weights start at 1 (qwen3.md §8) so a created model is usable before loading. */
    for (int64_t i = 0; i < m->n_params; i++) {
        graft_model_param *p = &m->params[i];
        if (p->ndim == 1 && strstr(p->name, "layernorm.weight")) for (int64_t j = 0; j < p->numel; j++) p->data[j] = 1.0f;
    }
    for (int64_t j = 0; j < cfg->hidden_size; j++) m->params[m->p_norm].data[j] = 1.0f;
    *out = m;
    return GRAFT_STATUS_OK;
fail:
    graft_model_free(m);
    return st;
}

typedef struct init_job {
    graft_model_t *m;
    uint64_t seed;
    int64_t *first;               /* (n_params + 1): first block of each parameter           */
} init_job;

#define INIT_BLOCK ((int64_t)1 << 20) /* elements per independent random stream */

/* Blocks [b, e) of all parameters: block j of parameter i draws from stream i (j = 0) or
 * (j << 32) | i, so the threads' split changes no value and a parameter of at most 1M elements
 * has the values of one stream per parameter. */
static void init_blocks(void *arg, int64_t b, int64_t e) {
    init_job *job = arg;
    int64_t i = 0;
    for (int64_t blk = b; blk < e; blk++) {
        while (job->first[i + 1] <= blk) i++;
        graft_model_param *p = &job->m->params[i];
        int64_t j = blk - job->first[i], lo = j * INIT_BLOCK, hi = lo + INIT_BLOCK < p->numel ? lo + INIT_BLOCK : p->numel;
        if (p->ndim == 1) {
            for (int64_t k = lo; k < hi; k++) p->data[k] = 1.0f;
            continue;
        }
        graft_rng r = graft_rng_make(job->seed, j ? ((uint64_t)j << 32) | (uint64_t)i : (uint64_t)i);
        for (int64_t k = lo; k < hi; k++) p->data[k] = (float)(graft_rng_normal(&r) * job->m->cfg.initializer_range);
    }
}

typedef struct mixer_init_job {
    graft_model_t *m;
    uint64_t seed;
    graft_err *errs;              /* one per layer; status 0 = ok */
} mixer_init_job;

static void init_mixers(void *arg, int64_t b, int64_t e) {
    mixer_init_job *j = arg;
    for (int64_t l = b; l < e; l++) {
        layer *L = &j->m->layers[l];
        if (L->n_mp) L->mx->init(L->ml, L->mp, j->seed ^ (0x5eedull * (uint64_t)(l + 1)), NULL, &j->errs[l]);
    }
}

graft_status graft_model_init_random(graft_model_t *m, uint64_t seed, graft_err *err) {
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(m->n_params + 1));
    if (!first) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: init: out of memory");
    first[0] = 0;
    for (int64_t i = 0; i < m->n_params; i++)
        first[i + 1] = first[i] + (m->params[i].numel + INIT_BLOCK - 1) / INIT_BLOCK + (m->params[i].numel == 0);
    init_job job = {m, seed, first};
    graft_host_parallel_for(first[m->n_params], init_blocks, &job);
    free(first);
    /* the mixers' own init, one layer per task (layer objects are independent) */
    mixer_init_job mj = {m, seed, calloc((size_t)m->cfg.n_layer, sizeof(graft_err))};
    if (!mj.errs) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: init: out of memory");
    graft_host_parallel_for(m->cfg.n_layer, init_mixers, &mj);
    graft_status st = GRAFT_STATUS_OK;
    for (int64_t l = 0; l < m->cfg.n_layer && !st; l++)
        if (mj.errs[l].status) {
            *err = mj.errs[l];
            char where[96];
            snprintf(where, sizeof where, "layer %lld: mixer \"%s\": init", (long long)l, m->layers[l].mx->name);
            st = graft_err_prefix(err, where);
        }
    free(mj.errs);
    return st;
}

static void graph_drop(graft_model_t *m) {
    if (m->graph && m->be->graph_free) m->be->graph_free(m->be->ctx, m->graph);
    m->graph = NULL;
    m->graph_warm = 0;
}

static void free_activations_impl(graft_model_t *m) {
    graph_drop(m);
    if (m->act) m->be->free(m->be->ctx, m->act);
    m->act = NULL;
    m->cap_N = 0;
}

/* Gradients and optimizer state live in the backend's memory: dropped when the model moves. */
static void free_training(graft_model_t *m) {
    const graft_backend *be = m->be;
    if (m->opt_plan && be->op.adamw_free) be->op.adamw_free(be->ctx, m->opt_plan);
    if (m->opt_master) be->free(be->ctx, m->opt_master);
    if (m->opt_moments) be->free(be->ctx, m->opt_moments);
    if (m->grads) be->free(be->ctx, m->grads);
    if (m->topk_dev) be->free(be->ctx, m->topk_dev);
    m->opt_plan = NULL;
    m->opt_master = m->opt_moments = m->grads = NULL;
    m->topk_dev = NULL;
    m->topk_cap = 0;
    m->opt_t = 0;
    for (int64_t i = 0; i < m->n_params; i++) m->params[i].grad = NULL;
    for (int64_t l = 0; m->layers && l < m->cfg.n_layer; l++)
        for (int64_t i = 0; i < m->layers[l].n_mp; i++) m->layers[l].mg[i] = (graft_tensor){0};
    m->trained = 0;
}

void graft_model_free(graft_model_t *m) {
    if (!m) return;
    free_activations_impl(m);
    free_training(m);
    for (int64_t l = 0; m->layers && l < m->cfg.n_layer; l++) {
        layer *L = &m->layers[l];
        if (L->ml && L->mx) L->mx->destroy(L->ml);
        graft_plugin_unload(L->plugin);
        free(L->mp);
        free(L->mg);
        free(L->mpw);
    }
    free(m->layers);
    for (int64_t i = 0; i < m->n_params; i++) free((void *)m->params[i].name);
    free(m->params);
    const graft_backend *cpu = graft_backend_cpu();
    if (m->weights) cpu->free(NULL, m->weights);
    if (m->work) m->be->free(m->be->ctx, m->work);
    if (m->logits_dev) m->be->free(m->be->ctx, m->logits_dev);
    free(m);
}

const graft_qwen3_config *graft_model_config(const graft_model_t *m) { return &m->cfg; }
int64_t graft_model_n_params(const graft_model_t *m) { return m->n_params; }
graft_model_param *graft_model_param_at(graft_model_t *m, int64_t i) {
    return (i >= 0 && i < m->n_params) ? &m->params[i] : NULL;
}
graft_model_param *graft_model_param_find(graft_model_t *m, const char *name) {
    for (int64_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}
int64_t graft_model_numel(const graft_model_t *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->n_params; i++) n += m->params[i].numel;
    return n;
}

void graft_model_zero_grad(graft_model_t *m) {
    graft_err err;
    if (m->grads) m->be->zero(m->be->ctx, m->grads, m->weights_floats * sizeof(float), &err);
}

/* ---- activations -------------------------------------------------------------------------- */

/* Points every layer's block at the current weights and gradients (called after binding). */
static void bind_blocks(graft_model_t *m) {
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        layer *L = &m->layers[l];
        graft_block *b = &L->blk;
        graft_model_param *P = m->params;
        b->be = m->be;
        b->mx = L->mx;
        b->ml = L->ml;
        b->C = m->cfg.hidden_size;
        b->I = m->cfg.intermediate_size;
        b->eps = (float)m->cfg.rms_norm_eps;
        b->mp = L->mpw;
        b->mg = m->grads ? L->mg : NULL;
        b->ln1 = P[L->p_ln1].work; b->ln2 = P[L->p_ln2].work;
        b->gate = P[L->p_gate].work; b->up = P[L->p_up].work; b->down = P[L->p_down].work;
        b->d_ln1 = P[L->p_ln1].grad; b->d_ln2 = P[L->p_ln2].grad;
        b->d_gate = P[L->p_gate].grad; b->d_up = P[L->p_up].grad; b->d_down = P[L->p_down].grad;
    }
}

static void free_activations(graft_model_t *m) { free_activations_impl(m); }

/* Points params[i].work and each layer's mpw at the working copy: the host F32 weights on the
 * CPU, else views into m->work (weight_dtype, 64-byte aligned per parameter). */
static void bind_work(graft_model_t *m) {
    const graft_backend *be = m->be;
    size_t es = graft_dtype_size(be->weight_dtype), off = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        graft_model_param *p = &m->params[i];
        if (!m->work) {
            p->work = p->data;
        } else {
            p->work = (char *)m->work + off;
            off += ((size_t)p->numel * es + 63) & ~(size_t)63;
        }
    }
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        layer *L = &m->layers[l];
        for (int64_t i = 0; i < L->n_mp; i++) {
            graft_model_param *p = &m->params[L->p_mixer + i];
            L->mpw[i] = graft_tensor_make(p->work, m->work ? be->weight_dtype : GRAFT_DTYPE_F32, be->device,
                                          p->ndim, p->shape);
            L->mpw[i].device_index = be->device_index;
        }
    }
}

/* Bytes of the working copy on a device backend. */
static size_t work_bytes(const graft_model_t *m, const graft_backend *be) {
    size_t es = graft_dtype_size(be->weight_dtype), n = 0;
    for (int64_t i = 0; i < m->n_params; i++) n += ((size_t)m->params[i].numel * es + 63) & ~(size_t)63;
    return n;
}

graft_status graft_model_upload(graft_model_t *m, graft_err *err) {
    const graft_backend *be = m->be;
    if (!m->work) return GRAFT_STATUS_OK;
    if (be->weight_dtype != GRAFT_DTYPE_BF16)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "model: weights of %s on %s", graft_dtype_name(be->weight_dtype),
                             be->name);
    int64_t maxn = 0;
    for (int64_t i = 0; i < m->n_params; i++)
        if (m->params[i].numel > maxn) maxn = m->params[i].numel;
    /* The F32 values go over the bus into one device staging buffer of the largest parameter and
     * the backend's cast rounds them (to nearest even, as graft_bf16): a host conversion loop costs
     * ~2 ns per element on one core, 16 s for an 8B model. The stream orders the reuse. */
    float *dstage = be->op.cast ? be->alloc(be->ctx, (size_t)(maxn ? maxn : 1) * sizeof(float)) : NULL;
    if (dstage) {
        graft_status st = GRAFT_STATUS_OK;
        for (int64_t i = 0; i < m->n_params && !st; i++) {
            graft_model_param *p = &m->params[i];
            st = be->copy(be->ctx, dstage, p->data, (size_t)p->numel * sizeof(float), GRAFT_COPY_H2D, err);
            if (!st) st = be->op.cast(be->ctx, p->work, be->weight_dtype, dstage, GRAFT_DTYPE_F32, p->numel, err);
        }
        if (!st) st = be->sync(be->ctx, err);
        be->free(be->ctx, dstage);
        if (st) return graft_err_prefix(err, "model: uploading weights");
        return GRAFT_STATUS_OK;
    }
    /* No room on the device for the staging buffer: convert on the host (round to nearest even,
     * graft_bf16 rules) through one host staging buffer, then copy. */
    uint16_t *stage = malloc((size_t)(maxn ? maxn : 1) * sizeof *stage);
    if (!stage) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: out of memory (upload staging)");
    graft_status st = GRAFT_STATUS_OK;
    for (int64_t i = 0; i < m->n_params && !st; i++) {
        graft_model_param *p = &m->params[i];
        for (int64_t j = 0; j < p->numel; j++) {
            union { float f; uint32_t u; } v;
            v.f = p->data[j];
            if ((v.u & 0x7fffffffu) > 0x7f800000u) stage[j] = (uint16_t)((v.u >> 16) | 0x40u);
            else stage[j] = (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
        }
        st = be->copy(be->ctx, p->work, stage, (size_t)p->numel * 2, GRAFT_COPY_H2D, err);
        if (!st) st = be->sync(be->ctx, err); /* the staging buffer is reused by the next parameter */
    }
    free(stage);
    if (st) return graft_err_prefix(err, "model: uploading weights");
    return GRAFT_STATUS_OK;
}

graft_status graft_model_set_backend(graft_model_t *m, const graft_backend *be, graft_err *err) {
    if (be == m->be) return graft_model_upload(m, err);
    if (be->device != GRAFT_DEVICE_CPU) {
        for (int64_t l = 0; l < m->cfg.n_layer; l++) {
            if (graft_mixer_check_device(m->layers[l].mx, be->device, err)) {
                char where[48];
                snprintf(where, sizeof where, "model: layer %lld", (long long)l);
                return graft_err_prefix(err, where);
            }
        }
        if (be->act_dtype != be->weight_dtype)
            return graft_err_set(err, GRAFT_STATUS_INTERNAL, "model: backend %s: activation and weight dtypes differ",
                                 be->name);
    }
    free_activations(m);
    free_training(m);
    if (m->work) m->be->free(m->be->ctx, m->work);
    if (m->logits_dev) m->be->free(m->be->ctx, m->logits_dev);
    m->graph_launches = 0;
    m->work = NULL;
    m->logits_dev = NULL;
    m->next_dev = NULL;
    m->logits_cap = 0;
    m->be = be;
    if (be->device != GRAFT_DEVICE_CPU) {
        size_t bytes = work_bytes(m, be);
        m->work = be->alloc(be->ctx, bytes);
        if (!m->work) {
            m->be = graft_backend_cpu();
            bind_work(m);
            bind_blocks(m);
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: cannot allocate %zu bytes of %s weights on %s",
                                 bytes, graft_dtype_name(be->weight_dtype), be->name);
        }
    }
    bind_work(m);
    bind_blocks(m);
    graft_status st = graft_model_upload(m, err);
    if (st) {
        be->free(be->ctx, m->work);
        m->work = NULL;
        m->be = graft_backend_cpu();
        bind_work(m);
        bind_blocks(m);
    }
    return st;
}

const graft_backend *graft_model_backend(const graft_model_t *m) { return m->be; }

static graft_status ensure_activations(graft_model_t *m, int64_t B, int64_t T, int train, graft_err *err) {
    int64_t N = B * T;
    const graft_qwen3_config *c = &m->cfg;
    int64_t L = c->n_layer, C = c->hidden_size;
    size_t total = 0, scratch = 0;
    for (int64_t l = 0; l < L; l++) {
        layer *ly = &m->layers[l];
        graft_status st = ly->mx->workspace(ly->ml, m->be->device, B, T, &ly->saved_bytes, &ly->scratch_bytes, err);
        if (st) return st;
        size_t sv = graft_block_saved_bytes(&ly->blk, N, ly->saved_bytes);
        /* Inference keeps nothing between layers: every layer's saved part is one shared area. */
        if (train) total += sv;
        else if (sv > total) total = sv;
        size_t s = graft_block_scratch_bytes(&ly->blk, N, ly->scratch_bytes);
        if (s > scratch) scratch = s;
    }
    /* Bytes, every view 64-byte aligned: the hidden states in the activation dtype (BF16 on CUDA:
     * half what a float-sized arena took), ids and lengths int32, the norm's rstd and the carried
     * streams F32. */
#define A64(x) ((((size_t)(x)) + 63) & ~(size_t)63)
    const size_t es = graft_dtype_size(m->be->act_dtype);
    size_t fixed = A64(N * 4) * 2 + A64(8 * sizeof(double)) + A64((L + 1) * N * C * es) + A64(N * C * es) * 3 +
                   A64(N * 4) * 2;
    for (int s = 0; s < m->n_carry; s++) fixed += 2 * A64(N * m->carry_width[s] * 4);
    size_t need = fixed + total + scratch;
    if (m->act && need <= m->act_bytes && (m->act_train || !train)) goto bind;
    free_activations(m);
    m->act = m->be->alloc(m->be->ctx, need);
    if (!m->act)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: cannot allocate %zu bytes of activations for B=%lld T=%lld",
                             need, (long long)B, (long long)T);
    m->act_bytes = need;
    m->act_train = train;
bind:;
    char *p = m->act;
    m->ids = (int32_t *)(void *)p; p += A64(N * 4);
    m->labels = (int32_t *)(void *)p; p += A64(N * 4);
    m->sums = (double *)(void *)p; p += A64(8 * sizeof(double));
    m->h = p; p += A64((L + 1) * N * C * es);
    m->hf = p; p += A64(N * C * es);
    m->dh = p; p += A64(N * C * es);
    m->dhf = p; p += A64(N * C * es);
    m->rstdf = (float *)(void *)p; p += A64(N * 4);
    m->past_dev = (int32_t *)(void *)p; p += A64(N * 4);
    for (int s = 0; s < m->n_carry; s++) {
        m->carry[s] = (float *)(void *)p; p += A64(N * m->carry_width[s] * 4);
        m->dcarry[s] = (float *)(void *)p; p += A64(N * m->carry_width[s] * 4);
    }
    char *scratch_base = p + total;
    for (int64_t l = 0; l < L; l++) {
        layer *ly = &m->layers[l];
        graft_block_ws_bind(&ly->ws, &ly->blk, N, p, ly->saved_bytes, scratch_base);
        if (train) p += graft_block_saved_bytes(&ly->blk, N, ly->saved_bytes);
        ly->blk.carry = ly->carry >= 0 ? m->carry[ly->carry] : NULL;
        ly->blk.dcarry = ly->carry >= 0 ? m->dcarry[ly->carry] : NULL;
    }
#undef A64
    m->cap_N = N;
    return GRAFT_STATUS_OK;
}

/* y (N x out) F32 = x (N x in) . W^T, W is (out x in); x and W of the backend's dtypes, y F32 (the
 * logits), on the backend's device. */
static graft_status linear(graft_model_t *m, float *y, const void *x, const void *W, int64_t N,
                           int64_t in, int64_t out, graft_err *err) {
    const graft_backend *be = m->be;
    graft_matmul_args a = {.struct_size = sizeof a, .device = be->device, .stream = be->stream,
                           .dtype = be->act_dtype, .trans_a = 0, .trans_b = 1, .m = N, .n = out, .k = in,
                           .alpha = 1, .beta = 0, .a = x, .lda = in, .b = W, .ldb = in, .c = y, .ldc = out,
                           .batch = 1, .mixed_dtypes = 1, .dtype_b = be->weight_dtype, .dtype_c = GRAFT_DTYPE_F32};
    return be->matmul(be->ctx, &a, err);
}

/* The head: logits (rows, V) F32 in HOST memory from the normed rows hf. On a device backend the
 * product lands in a reused F32 device buffer and is copied back. */
static graft_status ensure_logits(graft_model_t *m, int64_t rows, graft_err *err) {
    const graft_backend *be = m->be;
    size_t need = (size_t)(rows * m->cfg.vocab_size);
    if (be->device == GRAFT_DEVICE_CPU || need <= m->logits_cap) return GRAFT_STATUS_OK;
    if (m->logits_dev) be->free(be->ctx, m->logits_dev);
    m->logits_cap = 0;
    m->next_dev = NULL;
    m->logits_dev = be->alloc(be->ctx, need * sizeof(float) + (size_t)rows * sizeof(int32_t));
    if (!m->logits_dev)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: cannot allocate %zu bytes of logits on %s",
                             need * sizeof(float), be->name);
    m->logits_cap = need;
    m->next_dev = (int32_t *)(void *)((float *)m->logits_dev + need);
    return GRAFT_STATUS_OK;
}

/* The head's product only: into `logits` on the CPU, into the device buffer elsewhere (queued). */
static graft_status head_compute(graft_model_t *m, float *logits, int64_t rows, graft_err *err) {
    int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    const void *W = m->params[m->p_lm_head].work;
    if (m->be->device == GRAFT_DEVICE_CPU) return linear(m, logits, m->hf, W, rows, C, V, err);
    return linear(m, m->logits_dev, m->hf, W, rows, C, V, err);
}

/* Device logits back to the host (waits for the stream); with `next` only each row's greedy id:
 * the argmax runs on the device and rows int32 come back instead. Nothing to do on the CPU. */
static graft_status head_fetch_or_pick(graft_model_t *m, float *logits, int32_t *next, int64_t rows, graft_err *err) {
    const graft_backend *be = m->be;
    int64_t V = m->cfg.vocab_size;
    graft_status st;
    if (be->device == GRAFT_DEVICE_CPU) return GRAFT_STATUS_OK;
    if (next) {
        st = be->op.argmax_rows(be->ctx, m->next_dev, m->logits_dev, rows, V, err);
        if (!st) st = be->copy(be->ctx, next, m->next_dev, (size_t)rows * sizeof(int32_t), GRAFT_COPY_D2H, err);
    } else {
        st = be->copy(be->ctx, logits, m->logits_dev, (size_t)(rows * V) * sizeof(float), GRAFT_COPY_D2H, err);
    }
    if (!st) st = be->sync(be->ctx, err);
    return st;
}

static graft_status head_fetch(graft_model_t *m, float *logits, int64_t rows, graft_err *err) {
    return head_fetch_or_pick(m, logits, NULL, rows, err);
}

graft_status graft_model_hidden_device(graft_model_t *m, const void **hidden, graft_err *err) {
    *hidden = NULL;
    if (!m->act || m->B * m->T < 1) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "hidden states: no forward ran");
    *hidden = m->h;
    return GRAFT_STATUS_OK;
}

graft_status graft_model_head_device(graft_model_t *m, const float **logits, graft_err *err) {
    int64_t N = m->B * m->T;
    *logits = NULL;
    if (!m->act || N < 1)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "head: no forward to project");
    if (m->be->device == GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "head: device logits on the CPU: use forward's logits");
    graft_status st = ensure_logits(m, N, err);
    if (!st) st = head_compute(m, NULL, N, err);
    if (!st) *logits = m->logits_dev;
    return st;
}

static graft_status head(graft_model_t *m, float *logits, int64_t rows, graft_err *err) {
    graft_status st = ensure_logits(m, rows, err);
    if (!st) st = head_compute(m, logits, rows, err);
    if (!st) st = head_fetch(m, logits, rows, err);
    return st;
}

/* The residual stream h[0..L] of the last forward (N rows each) into host F32 `hidden`: a copy
 * on the CPU; on a device, each h[l] cast to F32 in a staging buffer and copied back. */
static graft_status hidden_to_host(graft_model_t *m, float *hidden, int64_t N, graft_err *err) {
    const graft_backend *be = m->be;
    int64_t C = m->cfg.hidden_size, L = m->cfg.n_layer;
    if (be->device == GRAFT_DEVICE_CPU) {
        memcpy(hidden, m->h, (size_t)((L + 1) * N * C) * sizeof(float));
        return GRAFT_STATUS_OK;
    }
    float *stage = be->alloc(be->ctx, (size_t)(N * C) * sizeof(float));
    if (!stage)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "forward: cannot allocate %lld x %lld floats on %s for the "
                             "hidden states", (long long)N, (long long)C, be->name);
    graft_status st = GRAFT_STATUS_OK;
    for (int64_t l = 0; l <= L && !st; l++) {
        st = be->op.cast(be->ctx, stage, GRAFT_DTYPE_F32, act_at(m, m->h, l * N * C), be->act_dtype, N * C, err);
        if (!st) st = be->copy(be->ctx, hidden + l * N * C, stage, (size_t)(N * C) * sizeof(float), GRAFT_COPY_D2H, err);
    }
    be->free(be->ctx, stage);
    return st;
}

graft_status graft_model_forward(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                 float *logits, float *hidden, int train, graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, N = B * T;
    if (B < 1 || T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "forward: B=%lld T=%lld, expected both >= 1",
                             (long long)B, (long long)T);
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "forward: token id %d at position %lld, expected 0..%lld",
                                 ids[i], (long long)i, (long long)(V - 1));
    const graft_backend *be = m->be;
    graft_status st = ensure_activations(m, B, T, train, err);
    if (st) return st;
    if (train && !m->grads) {
        m->grads = be->alloc(be->ctx, m->weights_floats * sizeof(float));
        if (!m->grads)
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "model: cannot allocate %zu bytes of gradients on %s",
                                 m->weights_floats * sizeof(float), be->name);
        bind_views(m, m->grads, 1);
        bind_blocks(m);
    }
    m->B = B;
    m->T = T;
    const float eps = (float)c->rms_norm_eps;
    if ((st = be->copy(be->ctx, m->ids, ids, (size_t)N * sizeof(int32_t), GRAFT_COPY_H2D, err))) return st;
    if ((st = be->op.embedding_fwd(be->ctx, m->h, m->params[m->p_embed].work, m->ids, N, C, V, err))) return st;
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer *L = &m->layers[l];
        if ((st = graft_block_forward(&L->blk, &L->ws, act_at(m, m->h, (l + 1) * N * C), act_at(m, m->h, l * N * C),
                                      B, T, train, err))) {
            char where[48];
            snprintf(where, sizeof where, "layer %lld", (long long)l);
            return graft_err_prefix(err, where);
        }
    }
    if (hidden && (st = hidden_to_host(m, hidden, N, err))) return st;
    const void *hL = act_at(m, m->h, c->n_layer * N * C);
    if ((st = be->op.rmsnorm_fwd(be->ctx, m->hf, m->rstdf, hL, m->params[m->p_norm].work, N, C, eps, err))) return st;
    if (logits && (st = head(m, logits, N, err))) return st;
    if (!logits && (st = be->sync(be->ctx, err))) return st;
    m->trained = train;
    return GRAFT_STATUS_OK;
}

graft_status graft_model_forward_layers(graft_model_t *m, const float *hidden_in, int64_t B, int64_t T,
                                        float *out, graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    int64_t C = c->hidden_size, N = B * T;
    if (B < 1 || T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "forward_layers: B=%lld T=%lld, expected both >= 1",
                             (long long)B, (long long)T);
    if (m->be->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "forward_layers: CPU only so far (backend %s; issue #7)",
                             m->be->name);
    graft_status st = ensure_activations(m, B, T, 0, err);
    if (st) return st;
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer *L = &m->layers[l];
        if ((st = graft_block_forward(&L->blk, &L->ws, out + l * N * C, hidden_in + l * N * C, B, T, 0, err))) {
            char where[48];
            snprintf(where, sizeof where, "layer %lld", (long long)l);
            return graft_err_prefix(err, where);
        }
    }
    m->trained = 0;
    return GRAFT_STATUS_OK;
}

/* Everything below the head: given dhf (d of the final-normed rows), the final norm, the layers
 * and the embedding, accumulating every parameter gradient. */
static graft_status backward_body(graft_model_t *m, graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, B = m->B, T = m->T, N = B * T;
    const graft_backend *be = m->be;
    graft_status st;
    const void *hL = act_at(m, m->h, c->n_layer * N * C);
    if ((st = be->op.rmsnorm_bwd(be->ctx, m->dh, m->params[m->p_norm].grad, m->dhf, hL, m->params[m->p_norm].work,
                                 m->rstdf, N, C, 0, err)))
        return st;
    for (int s = 0; s < m->n_carry; s++)
        if ((st = be->zero(be->ctx, m->dcarry[s], (size_t)(N * m->carry_width[s]) * sizeof(float), err))) return st;
    for (int64_t l = c->n_layer - 1; l >= 0; l--) {
        layer *L = &m->layers[l];
        if ((st = graft_block_backward(&L->blk, &L->ws, m->dh, m->dh, act_at(m, m->h, l * N * C), B, T, err))) {
            char where[48];
            snprintf(where, sizeof where, "layer %lld", (long long)l);
            return graft_err_prefix(err, where);
        }
    }
    return be->op.embedding_bwd(be->ctx, m->params[m->p_embed].grad, m->dh, m->ids, N, C, V, err);
}

graft_status graft_model_backward(graft_model_t *m, const float *dlogits, graft_err *err) {
    if (m->be->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "backward: from host dlogits on the %s backend is not served (the (B, T, V) gradient "
                             "would cross the bus); use graft_model_backward_loss (the fused lm_head loss)",
                             m->be->name);
    if (!m->trained || !m->grads)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "backward: no training forward to differentiate");
    const graft_qwen3_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, B = m->B, T = m->T, N = B * T;
    const graft_backend *be = m->be;
    graft_status st;
    graft_model_param *W = &m->params[m->p_lm_head];
    /* head: dhf = dlogits . W_out; dW_out += dlogits^T hf */
    graft_matmul_args a = {.struct_size = sizeof a, .device = GRAFT_DEVICE_CPU, .dtype = GRAFT_DTYPE_F32,
                           .m = N, .n = C, .k = V, .alpha = 1, .beta = 0,
                           .a = dlogits, .lda = V, .b = W->data, .ldb = C, .c = m->dhf, .ldc = C, .batch = 1};
    if ((st = be->matmul(be->ctx, &a, err))) return st;
    graft_matmul_args g = {.struct_size = sizeof g, .device = GRAFT_DEVICE_CPU, .dtype = GRAFT_DTYPE_F32,
                           .trans_a = 1, .m = V, .n = C, .k = N, .alpha = 1, .beta = 1,
                           .a = dlogits, .lda = V, .b = m->hf, .ldb = C, .c = W->grad, .ldc = C, .batch = 1};
    if ((st = be->matmul(be->ctx, &g, err))) return st;
    return backward_body(m, err);
}

graft_status graft_model_backward_loss(graft_model_t *m, const graft_model_loss *loss, double sums[4],
                                       graft_err *err) {
    if (!m->trained || !m->grads)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "backward: no training forward to differentiate");
    const graft_qwen3_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, N = m->B * m->T;
    const graft_backend *be = m->be;
    graft_status st;
    if (loss->topk_ids && (loss->k < 1 || loss->k > 256 || loss->k > V))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss: top-k k = %lld, expected 1..%lld", (long long)loss->k,
                             (long long)(V < 256 ? V : 256));
    if (be->device == GRAFT_DEVICE_CPU) {
        /* The reference: fp32 logits, per-row softmax in double, dlogits, then the plain backward. */
        if (loss->topk_ids)
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "loss: the top-k KL on the CPU goes through the topk_kl loss plugin and "
                                 "graft_model_backward (train.c)");
        float *z = malloc((size_t)(N * V) * sizeof *z);
        if (!z) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss: cannot allocate %lld x %lld logits",
                                     (long long)N, (long long)V);
        if ((st = linear(m, z, m->hf, m->params[m->p_lm_head].work, N, C, V, err))) {
            free(z);
            return st;
        }
        double ce = 0, rows = 0;
        for (int64_t n = 0; n < N; n++) {
            float *row = z + n * V;
            int32_t y = loss->labels[n];
            if (y == loss->ignore_index) {
                memset(row, 0, (size_t)V * sizeof *row);
                continue;
            }
            if (y < 0 || y >= V) {
                free(z);
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss: label %d at row %lld, expected 0..%lld or %d",
                                     y, (long long)n, (long long)(V - 1), loss->ignore_index);
            }
            double mx = row[0], se = 0;
            for (int64_t v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
            for (int64_t v = 0; v < V; v++) se += exp((double)row[v] - mx);
            double lse = mx + log(se);
            ce += lse - (double)row[y];
            rows += 1;
            for (int64_t v = 0; v < V; v++)
                row[v] = (float)((double)loss->ce_scale * (exp((double)row[v] - lse) - (v == y ? 1.0 : 0.0)));
        }
        st = graft_model_backward(m, z, err);
        free(z);
        if (sums) {
            sums[0] = ce;
            sums[1] = rows;
            sums[2] = sums[3] = 0;
        }
        return st;
    }
    if (!be->op.lmhead_loss)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "loss: backend %s has no fused lm_head loss", be->name);
    if ((st = be->copy(be->ctx, m->labels, loss->labels, (size_t)N * sizeof(int32_t), GRAFT_COPY_H2D, err))) return st;
    graft_backend_loss_io io = {.hidden = m->hf, .weight = m->params[m->p_lm_head].work, .labels = m->labels,
                                .N = N, .C = C, .V = V, .ignore_index = loss->ignore_index,
                                .ce_scale = loss->ce_scale, .dhidden = m->dhf,
                                .dweight = m->params[m->p_lm_head].grad, .sums = m->sums};
    if (loss->topk_ids) {
        int64_t k = loss->k;
        size_t ib = (((size_t)(N * k) * 4) + 255) & ~(size_t)255, need = 2 * ib + (size_t)N * 4;
        if (need > m->topk_cap) {
            if (m->topk_dev) be->free(be->ctx, m->topk_dev);
            m->topk_cap = 0;
            if (!(m->topk_dev = be->alloc(be->ctx, need)))
                return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss: cannot allocate %zu bytes of top-k on %s", need,
                                     be->name);
            m->topk_cap = need;
        }
        char *tp = m->topk_dev;
        if ((st = be->copy(be->ctx, tp, loss->topk_ids, (size_t)(N * k) * 4, GRAFT_COPY_H2D, err)) ||
            (st = be->copy(be->ctx, tp + ib, loss->topk_logp, (size_t)(N * k) * 4, GRAFT_COPY_H2D, err)) ||
            (st = be->copy(be->ctx, tp + 2 * ib, loss->topk_mass, (size_t)N * 4, GRAFT_COPY_H2D, err)))
            return st;
        io.topk_ids = (const int32_t *)(void *)tp;
        io.topk_logp = (const float *)(void *)(tp + ib);
        io.topk_mass = (const float *)(void *)(tp + 2 * ib);
        io.k = k;
        io.temperature = loss->temperature;
        io.kl_scale = loss->kl_scale;
    }
    if ((st = be->op.lmhead_loss(be->ctx, &io, err))) return graft_err_prefix(err, "loss");
    if ((st = backward_body(m, err))) return st;
    if (sums && (st = be->copy(be->ctx, sums, m->sums, 4 * sizeof(double), GRAFT_COPY_D2H, err))) return st;
    return GRAFT_STATUS_OK;
}

/* ---- optimizer ------------------------------------------------------------------------------ */

/* F32 offset of parameter i in the weights / grads layout (bind_views). */
static size_t param_off(const graft_model_t *m, int64_t i) {
    size_t off = 0;
    for (int64_t j = 0; j < i; j++) off += ((size_t)m->params[j].numel + 15) & ~(size_t)15;
    return off;
}

static graft_status opt_init(graft_model_t *m, graft_err *err) {
    const graft_backend *be = m->be;
    size_t bytes = m->weights_floats * sizeof(float);
    if (!m->grads)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "optimizer: no gradients yet (run a training forward first)");
    if (!(m->opt_moments = be->alloc(be->ctx, 2 * bytes)))
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "optimizer: cannot allocate %zu bytes of moments on %s",
                             2 * bytes, be->name);
    if (be->device == GRAFT_DEVICE_CPU) return GRAFT_STATUS_OK;
    if (!be->op.adamw_init)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "optimizer: backend %s has no AdamW", be->name);
    if (!(m->opt_master = be->alloc(be->ctx, bytes)))
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "optimizer: cannot allocate %zu bytes of F32 masters on %s",
                             bytes, be->name);
    graft_status st = be->copy(be->ctx, m->opt_master, m->weights, bytes, GRAFT_COPY_H2D, err);
    graft_backend_adamw_span *sp = calloc((size_t)m->n_params + 1, sizeof *sp);
    if (!sp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "optimizer: out of memory");
    for (int64_t i = 0; i < m->n_params && !st; i++) {
        graft_model_param *p = &m->params[i];
        size_t off = param_off(m, i);
        sp[i] = (graft_backend_adamw_span){.data = m->opt_master + off, .grad = p->grad, .m = m->opt_moments + off,
                                           .v = m->opt_moments + m->weights_floats + off, .work = p->work,
                                           .n = p->numel, .no_decay = (p->flags & GRAFT_PARAM_NO_DECAY) != 0};
    }
    if (!st) st = be->op.adamw_init(be->ctx, &m->opt_plan, sp, m->n_params, err);
    free(sp);
    return st;
}

graft_status graft_model_opt_step(graft_model_t *m, const graft_adamw_params *p, int64_t t, double lr,
                                  double max_norm, double *grad_norm, graft_err *err) {
    graft_status st = graft_adamw_check(p, err);
    if (st) return st;
    if (!m->opt_moments && (st = opt_init(m, err))) {
        free_training(m);
        return graft_err_prefix(err, "model");
    }
    const graft_backend *be = m->be;
    m->opt_t = t;
    if (be->device != GRAFT_DEVICE_CPU)
        return be->op.adamw_step(be->ctx, m->opt_plan, p->beta1, p->beta2, p->eps, p->weight_decay, t, lr, max_norm,
                                 grad_norm, err);
    graft_adamw_span *sp = calloc((size_t)m->n_params + 1, sizeof *sp);
    if (!sp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "optimizer: out of memory");
    for (int64_t i = 0; i < m->n_params; i++) {
        graft_model_param *q = &m->params[i];
        size_t off = param_off(m, i);
        sp[i] = (graft_adamw_span){.data = q->data, .grad = q->grad, .m = m->opt_moments + off,
                                   .v = m->opt_moments + m->weights_floats + off, .n = q->numel,
                                   .flags = (q->flags & GRAFT_PARAM_NO_DECAY) ? GRAFT_ADAMW_NO_DECAY : 0};
    }
    double gn = graft_grad_clip(sp, m->n_params, max_norm);
    if (grad_norm) *grad_norm = gn;
    st = graft_adamw_step(p, sp, m->n_params, t, lr, err);
    free(sp);
    return st;
}

graft_status graft_model_download(graft_model_t *m, graft_err *err) {
    const graft_backend *be = m->be;
    if (!m->opt_master) return GRAFT_STATUS_OK;
    return be->copy(be->ctx, m->weights, m->opt_master, m->weights_floats * sizeof(float), GRAFT_COPY_D2H, err);
}

/* Moments between the backend's padded layout (param_off) and the checkpoint's packed one. */
static graft_status opt_moments_copy(graft_model_t *m, float *host, int to_host, graft_err *err) {
    const graft_backend *be = m->be;
    size_t total = (size_t)graft_model_numel(m), packed = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        size_t n = (size_t)m->params[i].numel, off = param_off(m, i);
        for (int half = 0; half < 2; half++) {
            float *dev = m->opt_moments + (half ? m->weights_floats : 0) + off, *h = host + (half ? total : 0) + packed;
            graft_status st = to_host ? be->copy(be->ctx, h, dev, n * sizeof(float), GRAFT_COPY_D2H, err)
                                      : be->copy(be->ctx, dev, h, n * sizeof(float), GRAFT_COPY_H2D, err);
            if (st) return st;
        }
        packed += n;
    }
    return be->sync(be->ctx, err);
}

graft_status graft_model_opt_moments_get(graft_model_t *m, float *mom, graft_err *err) {
    if (!m->opt_moments) {
        memset(mom, 0, 2 * (size_t)graft_model_numel(m) * sizeof(float));
        return GRAFT_STATUS_OK;
    }
    return opt_moments_copy(m, mom, 1, err);
}

graft_status graft_model_opt_moments_set(graft_model_t *m, const float *mom, graft_err *err) {
    graft_status st;
    if (!m->opt_moments && (st = opt_init(m, err))) {
        free_training(m);
        return graft_err_prefix(err, "model");
    }
    return opt_moments_copy(m, (float *)(uintptr_t)mom, 0, err);
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* One sequence's decode state of layer L on device dev (plugin.h state_bytes_on when present). */
static size_t slot_bytes(const layer *L, graft_device dev, int64_t capacity) {
    const graft_mixer *mx = L->mx;
    if (mx->struct_size >= offsetof(graft_mixer, state_bytes_on) + sizeof mx->state_bytes_on && mx->state_bytes_on)
        return mx->state_bytes_on(L->ml, dev, capacity);
    return mx->state_bytes ? mx->state_bytes(L->ml, capacity) : 0;
}

static size_t layer_state_bytes(const layer *L, graft_device dev, int64_t B, int64_t capacity) {
    size_t per = slot_bytes(L, dev, capacity);
    return (((size_t)B * per) + 63) & ~(size_t)63;
}

size_t graft_model_state_bytes(const graft_model_t *m, int64_t B, int64_t capacity) {
    size_t n = 0;
    for (int64_t l = 0; l < m->cfg.n_layer; l++) n += layer_state_bytes(&m->layers[l], m->be->device, B, capacity);
    return n;
}

graft_status graft_model_state_copy_slot(const graft_model_t *m, void *dst, int64_t B_dst, int64_t b_dst,
                                         const void *src, int64_t B_src, int64_t b_src, int64_t capacity,
                                         graft_err *err) {
    if (b_dst < 0 || b_dst >= B_dst || b_src < 0 || b_src >= B_src)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "state copy: slot %lld of %lld to slot %lld of %lld",
                             (long long)b_src, (long long)B_src, (long long)b_dst, (long long)B_dst);
    size_t od = 0, os = 0;
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        const layer *L = &m->layers[l];
        size_t per = slot_bytes(L, m->be->device, capacity);
        char *d = (char *)dst + od + (size_t)b_dst * per;
        const char *sp = (const char *)src + os + (size_t)b_src * per;
        if (per && m->be->device == GRAFT_DEVICE_CPU) memcpy(d, sp, per);
        else if (per) {
            graft_status st = m->be->copy(m->be->ctx, d, sp, per, GRAFT_COPY_D2D, err);
            if (st) return st;
        }
        od += layer_state_bytes(L, m->be->device, B_dst, capacity);
        os += layer_state_bytes(L, m->be->device, B_src, capacity);
    }
    return GRAFT_STATUS_OK;
}

/* Whether this call may run as a captured CUDA graph: a single-token step continuing a state on
 * a backend with graphs, every mixer declaring GRAFT_MIXER_CAP_CUDA_GRAPH, not switched off with
 * GRAFT_CUDA_GRAPHS=0 (for comparisons). */
static int decode_graph_eligible(const graft_model_t *m, int64_t T, const int64_t *past_len) {
    if (T != 1 || !past_len || !m->be->graph_begin) return 0;
    const char *env = getenv("GRAFT_CUDA_GRAPHS");
    if (env && !strcmp(env, "0")) return 0;
    for (int64_t l = 0; l < m->cfg.n_layer; l++)
        if (!(m->layers[l].mx->caps & GRAFT_MIXER_CAP_CUDA_GRAPH)) return 0;
    return 1;
}

int64_t graft_model_graph_launches(const graft_model_t *m) { return m->graph_launches; }

/* Embedding, the layers continuing `state`, and with `head` the final norm and the head product
 * for the last position of each sequence: everything queued on the backend, nothing read back
 * (capturable when past_dev is given). The ids are already in m->ids. */
static graft_status forward_state_body(graft_model_t *m, int64_t B, int64_t T, void *state, int64_t capacity,
                                       const int64_t *past_len, const int32_t *past_dev, int head, float *last_logits,
                                       graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    const graft_backend *be = m->be;
    int64_t C = c->hidden_size, V = c->vocab_size, N = B * T;
    graft_status st;
    if ((st = be->op.embedding_fwd(be->ctx, m->h, m->params[m->p_embed].work, m->ids, N, C, V, err))) return st;
    unsigned char *sp = state;
    for (int64_t l = 0; l < c->n_layer; l++) {
        layer *L = &m->layers[l];
        if ((st = graft_block_forward_state(&L->blk, &L->ws, act_at(m, m->h, (l + 1) * N * C),
                                            act_at(m, m->h, l * N * C), B, T, sp, capacity, past_len, past_dev,
                                            err))) {
            char where[48];
            snprintf(where, sizeof where, "layer %lld", (long long)l);
            return graft_err_prefix(err, where);
        }
        sp += layer_state_bytes(L, m->be->device, B, capacity);
    }
    if (!head) return GRAFT_STATUS_OK;
    /* final norm and head on the last position of each sequence only */
    size_t es = graft_dtype_size(be->act_dtype);
    if (T == 1) { /* the last positions are the rows themselves */
        if ((st = be->op.rmsnorm_fwd(be->ctx, m->hf, NULL, act_at(m, m->h, c->n_layer * N * C),
                                     m->params[m->p_norm].work, B, C, (float)c->rms_norm_eps, err)))
            return st;
        return head_compute(m, last_logits, B, err);
    }
    for (int64_t b = 0; b < B; b++)
        if ((st = be->copy(be->ctx, act_at(m, m->dh, b * C), act_at(m, m->h, (c->n_layer * N + b * T + T - 1) * C),
                           (size_t)C * es, GRAFT_COPY_D2D, err)))
            return st;
    if ((st = be->op.rmsnorm_fwd(be->ctx, m->hf, NULL, m->dh, m->params[m->p_norm].work, B, C, (float)c->rms_norm_eps,
                                 err)))
        return st;
    return head_compute(m, last_logits, B, err);
}

static graft_status forward_state(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T, void *state,
                                  int64_t capacity, const int64_t *past_len, float *last_logits, int32_t *next,
                                  graft_err *err);

graft_status graft_model_forward_state(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                       void *state, int64_t capacity, const int64_t *past_len,
                                       float *last_logits, graft_err *err) {
    return forward_state(m, ids, B, T, state, capacity, past_len, last_logits, NULL, err);
}

int graft_model_picks_on_device(const graft_model_t *m) {
    return m->be->device != GRAFT_DEVICE_CPU && m->be->op.argmax_rows != NULL;
}

graft_status graft_model_forward_state_greedy(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                              void *state, int64_t capacity, const int64_t *past_len, int32_t *next,
                                              graft_err *err) {
    if (!graft_model_picks_on_device(m))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "decode: the %s backend has no device greedy pick: "
                             "use graft_model_forward_state and pick from the logits", m->be->name);
    return forward_state(m, ids, B, T, state, capacity, past_len, NULL, next, err);
}

static graft_status forward_state(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T, void *state,
                                  int64_t capacity, const int64_t *past_len, float *last_logits, int32_t *next,
                                  graft_err *err) {
    const graft_qwen3_config *c = &m->cfg;
    int64_t V = c->vocab_size, N = B * T;
    if (B < 1 || T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "decode: B=%lld T=%lld, expected both >= 1",
                             (long long)B, (long long)T);
    for (int64_t b = 0; b < B; b++)
        if ((past_len ? past_len[b] : 0) + T > capacity)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "decode: sequence %lld would hold %lld tokens, capacity %lld",
                                 (long long)b, (long long)((past_len ? past_len[b] : 0) + T), (long long)capacity);
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "decode: token id %d at position %lld, expected 0..%lld",
                                 ids[i], (long long)i, (long long)(V - 1));
    graft_status st = ensure_activations(m, B, T, 0, err);
    if (st) return st;
    m->B = B;
    m->T = T;
    m->trained = 0;
    const graft_backend *be = m->be;
    if ((st = ensure_logits(m, B, err))) return st;
    if ((st = be->copy(be->ctx, m->ids, ids, (size_t)N * sizeof(int32_t), GRAFT_COPY_H2D, err))) return st;
    /* no logits wanted (a prefill chunk before the last): no head product, no copy back, no wait */
    const int head = last_logits || next;
    if (!head || !decode_graph_eligible(m, T, past_len)) {
        if ((st = forward_state_body(m, B, T, state, capacity, past_len, NULL, head, last_logits, err))) return st;
        return head ? head_fetch_or_pick(m, last_logits, next, B, err) : GRAFT_STATUS_OK;
    }
    /* The single-token step through a CUDA graph: lengths go to the device first (the graph reads
     * them there), the key's first call runs eagerly, its second is captured, later ones replay. */
    /* one copy, no stream sync: a copy from pageable host memory returns once the source has been
     * staged, so pl may be freed right after */
    int32_t *pl = malloc(sizeof(int32_t) * (size_t)B);
    if (!pl) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "decode: out of memory");
    for (int64_t b = 0; b < B; b++) pl[b] = (int32_t)past_len[b];
    st = be->copy(be->ctx, m->past_dev, pl, sizeof(int32_t) * (size_t)B, GRAFT_COPY_H2D, err);
    free(pl);
    if (st) return st;
    int same = m->graph_B == B && m->graph_cap == capacity && m->graph_state == state && m->graph_act == m->act &&
               m->graph_logits == m->logits_dev;
    if (!same || !m->graph_warm) {
        graph_drop(m);
        m->graph_B = B;
        m->graph_cap = capacity;
        m->graph_state = state;
        m->graph_act = m->act;
        m->graph_logits = m->logits_dev;
        m->graph_warm = 1;
        if ((st = forward_state_body(m, B, 1, state, capacity, past_len, m->past_dev, 1, last_logits, err))) return st;
        return head_fetch_or_pick(m, last_logits, next, B, err);
    }
    if (!m->graph) {
        if ((st = be->graph_begin(be->ctx, err))) return st;
        graft_status body = forward_state_body(m, B, 1, state, capacity, past_len, m->past_dev, 1, last_logits, err);
        void *exec = NULL;
        graft_err end_err;
        graft_status end = be->graph_end(be->ctx, &exec, &end_err);
        if (body || end) {
            if (exec) be->graph_free(be->ctx, exec);
            m->graph_warm = 0;
            if (body) return graft_err_prefix(err, "decode: capturing the CUDA graph");
            *err = end_err;
            return end;
        }
        m->graph = exec;
    }
    if ((st = be->graph_launch(be->ctx, m->graph, err))) return st;
    m->graph_launches++;
    return head_fetch_or_pick(m, last_logits, next, B, err);
}
