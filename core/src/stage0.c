/* stage0.c: the Stage 0 sweep (stage0.h). One teacher forward per batch, then every student's
 * forward, loss, backward and AdamW step on the captured pair (h[l], h[l+1]).
 *
 * Memory: the teacher's hidden states (L+1, B, T, C) once per step, read where the teacher's
 * forward left them (graft_model_hidden_device: no copy); each student owns its mixer parameters,
 * gradients and AdamW moments (and an MLP copy when train_mlp); students run one after another and
 * share one activation workspace.
 *
 * Devices: the sweep runs on the teacher's backend. On the CPU everything is the host arena below.
 * On CUDA each student keeps the host arena as the F32 source of truth for init, checkpoints and
 * results, and a device copy of it (F32 masters, gradients, moments, plus the bf16 working copy its
 * block reads); the step is the backend's fused AdamW with clipping (op.adamw_step), the loss the
 * nmse plugin on the device (bf16 rows, normalized in the plugin). Masters come back to the host
 * only for a checkpoint and at the end.
 */
#include "stage0.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "block.h"
#include "fsutil.h"
#include "host.h"
#include "lr_schedule.h"
#include "plugin_loader.h"
#include "safetensors.h"
#include "train_state.h"

graft_stage0_opts graft_stage0_default_opts(void) {
    graft_stage0_opts p;
    memset(&p, 0, sizeof p);
    p.init_teacher = 1;
    p.steps = 100;
    p.batch = 8;
    p.seq_len = 128;
    p.lr = 1e-3;
    p.lr_min = 1e-4;
    p.warmup = 10;
    p.weight_decay = 0.0;
    p.grad_clip = 1.0;
    p.beta1 = 0.9;
    p.beta2 = 0.999;
    p.eps = 1e-8;
    p.eval_every = 0;
    p.eval_batches = 8;
    return p;
}

typedef struct student {
    int64_t layer;
    const graft_backend *be;      /* the teacher's                                              */
    graft_loaded_plugin *plugin;
    const graft_mixer *mx;
    void *ml;
    int64_t n_mp;
    graft_tensor *mp;             /* host F32 views of the arena (init, checkpoints)            */
    graft_tensor *mpw, *mg;       /* what the block reads and the gradients: the host views on the
                                     CPU; the BF16 working copy and F32 gradients on a device   */
    char **names;                 /* HF names of the mixer params */
    float *arena;                 /* params | grads | m | v, each `floats` long */
    size_t floats;
    graft_adamw_span *spans;      /* host spans (the CPU's optimizer; offsets for a device's)   */
    int64_t n_spans;
    size_t mlp_off;               /* float offset of the MLP copy (train_mlp)                   */
    float *dev;                   /* device: master | grad | m | v, `floats` each (host layout) */
    void *work;                   /* device: act_dtype working copy of the masters            */
    void *plan;                   /* device: the backend's AdamW plan over the spans          */
    graft_block blk;
    size_t saved_bytes, scratch_bytes;
    double eval_sum, eval_count;
    size_t dcarry_bytes;          /* of the carried stream's gradient (F32 on every backend, as the
                                     model's) at the training (B, T); 0: none */
} student;

static int on_device(const student *s) { return s->be && s->be->device != GRAFT_DEVICE_CPU; }

static void student_free(student *s) {
    if (s->plan) s->be->op.adamw_free(s->be->ctx, s->plan);
    if (s->dev) s->be->free(s->be->ctx, s->dev);
    if (s->work) s->be->free(s->be->ctx, s->work);
    if (s->ml && s->mx) s->mx->destroy(s->ml);
    graft_plugin_unload(s->plugin);
    for (int64_t i = 0; s->names && i < s->n_mp; i++) free(s->names[i]);
    free(s->names);
    free(s->mp);
    free(s->mpw);
    free(s->mg);
    free(s->spans);
    free(s->arena);
}

/* A teacher weight at layer l: its host F32 data, or (work = 1) what the backend's ops read. */
static void *teacher_weight(graft_model_t *t, int64_t l, const char *suffix, int work) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix);
    graft_model_param *p = graft_model_param_find(t, name);
    return p ? (work ? p->work : p->data) : NULL;
}

static const graft_tensor *teacher_tensor(graft_model_t *t, int64_t l, const char *suffix, graft_tensor *buf) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%lld.self_attn.%s", (long long)l, suffix);
    graft_model_param *p = graft_model_param_find(t, name);
    if (!p) return NULL;
    *buf = graft_tensor_make(p->data, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, p->ndim, p->shape);
    return buf;
}

/* Device storage of a student (on_device): the arena's layout again in device memory, the working
 * copy, the block's pointers moved there, and the backend's AdamW plan. The values are uploaded by
 * student_upload. */
static graft_status student_place(student *s, const graft_qwen3_config *c, graft_err *err) {
    const graft_backend *be = s->be;
    size_t act = graft_dtype_size(be->act_dtype), n = s->floats;
    s->dev = be->alloc(be->ctx, 4 * n * sizeof(float));
    s->work = be->alloc(be->ctx, n * act + 64);
    if (!s->dev || !s->work)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "cannot allocate %zu bytes for the student on %s",
                             n * (4 * sizeof(float) + act), be->name);
    float *dg = s->dev + n;
    char *wk = s->work;
    for (int64_t i = 0; i < s->n_mp; i++) {
        size_t off = (size_t)((float *)s->mp[i].data - s->arena);
        s->mpw[i] = graft_tensor_make(wk + off * act, be->weight_dtype, be->device, s->mp[i].ndim, s->mp[i].shape);
        s->mpw[i].device_index = be->device_index;
        s->mg[i] = graft_tensor_make(dg + off, GRAFT_DTYPE_F32, be->device, s->mp[i].ndim, s->mp[i].shape);
        s->mg[i].device_index = be->device_index;
    }
    if (s->blk.d_gate) { /* train_mlp: the block reads the working copy and writes device gradients */
        size_t IC = (size_t)(c->hidden_size * c->intermediate_size), o = s->mlp_off;
        s->blk.gate = wk + o * act; s->blk.up = wk + (o + IC) * act; s->blk.down = wk + (o + 2 * IC) * act;
        s->blk.d_gate = dg + o; s->blk.d_up = dg + o + IC; s->blk.d_down = dg + o + 2 * IC;
    }
    graft_backend_adamw_span *sp = calloc((size_t)s->n_spans + 1, sizeof *sp);
    if (!sp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
    for (int64_t j = 0; j < s->n_spans; j++) {
        size_t off = (size_t)(s->spans[j].data - s->arena);
        sp[j] = (graft_backend_adamw_span){.data = s->dev + off, .grad = dg + off, .m = s->dev + 2 * n + off,
                                           .v = s->dev + 3 * n + off, .work = wk + off * act, .n = s->spans[j].n,
                                           .no_decay = (s->spans[j].flags & GRAFT_ADAMW_NO_DECAY) != 0};
    }
    graft_status st = be->op.adamw_init(be->ctx, &s->plan, sp, s->n_spans, err);
    free(sp);
    return st;
}

/* The arena's weights and moments (not its gradients) between the host and the device, kind
 * GRAFT_COPY_H2D or GRAFT_COPY_D2H: the same layout on both sides. */
static graft_status arena_copy(student *s, int kind, graft_err *err) {
    const graft_backend *be = s->be;
    size_t n = s->floats;
    float *host = s->arena, *dev = s->dev;
    float *dst = kind == GRAFT_COPY_H2D ? dev : host;
    const float *src = kind == GRAFT_COPY_H2D ? host : dev;
    graft_status st = be->copy(be->ctx, dst, src, n * sizeof(float), kind, err);                /* weights */
    if (!st) st = be->copy(be->ctx, dst + 2 * n, src + 2 * n, 2 * n * sizeof(float), kind, err); /* m, v   */
    return st;
}

/* Host arena -> device masters, moments and working copy; gradients zeroed. */
static graft_status student_upload(student *s, graft_err *err) {
    if (!on_device(s)) return GRAFT_STATUS_OK;
    const graft_backend *be = s->be;
    graft_status st = arena_copy(s, GRAFT_COPY_H2D, err);
    if (!st) st = be->zero(be->ctx, s->dev + s->floats, s->floats * sizeof(float), err);
    if (!st) st = be->op.cast(be->ctx, s->work, be->weight_dtype, s->dev, GRAFT_DTYPE_F32, (int64_t)s->floats, err);
    if (!st) st = be->sync(be->ctx, err);
    return st;
}

/* Device masters and moments -> the host arena (checkpoints, results). */
static graft_status student_download(student *s, graft_err *err) {
    if (!on_device(s)) return GRAFT_STATUS_OK;
    graft_status st = arena_copy(s, GRAFT_COPY_D2H, err);
    if (!st) st = s->be->sync(s->be->ctx, err);
    return st;
}

static graft_status student_zero_grads(student *s, graft_err *err) {
    if (!on_device(s)) {
        memset(s->arena + s->floats, 0, s->floats * sizeof(float));
        return GRAFT_STATUS_OK;
    }
    return s->be->zero(s->be->ctx, s->dev + s->floats, s->floats * sizeof(float), err);
}

/* Clip (grad_clip > 0) and one AdamW step; *gn gets the gradient norm before clipping on the CPU,
 * NaN on a device (the clip happens there; reading the norm back would wait on every pair's step). */
static graft_status student_opt_step(student *s, const graft_adamw_params *ap, const graft_stage0_opts *p, int64_t step,
                                     double lr, double *gn, graft_err *err) {
    if (on_device(s)) {
        *gn = NAN;
        return s->be->op.adamw_step(s->be->ctx, s->plan, ap->beta1, ap->beta2, ap->eps, ap->weight_decay, step, lr,
                                    p->grad_clip, NULL, err);
    }
    *gn = p->grad_clip > 0 ? graft_grad_clip(s->spans, s->n_spans, p->grad_clip) : graft_grad_norm(s->spans, s->n_spans);
    return graft_adamw_step(ap, s->spans, s->n_spans, step, lr, err);
}

static graft_status student_init(student *s, graft_model_t *teacher, const graft_stage0_pair *pair,
                                 const graft_stage0_opts *p, uint64_t seed, graft_err *err) {
    const graft_qwen3_config *c = graft_model_config(teacher);
    char where[160];
    snprintf(where, sizeof where, "stage0: layer %lld: mixer \"%s\"", (long long)pair->layer, pair->mixer);
    if (pair->layer < 0 || pair->layer >= c->n_layer)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: layer %lld, expected 0..%lld (0-based)", where,
                             (long long)pair->layer, (long long)(c->n_layer - 1));
    s->layer = pair->layer;
    s->be = graft_model_backend(teacher);
    graft_status st = graft_plugin_load(pair->mixer, GRAFT_PLUGIN_MIXER, &s->plugin, err);
    if (st) return graft_err_prefix(err, where);
    s->mx = graft_plugin_mixer(s->plugin);
    if ((st = graft_mixer_check_device(s->mx, s->be->device, err))) return graft_err_prefix(err, where);
    graft_mixer_cfg mc;
    memset(&mc, 0, sizeof mc);
    mc.struct_size = sizeof mc;
    mc.n_embd = c->hidden_size;
    mc.layer_index = pair->layer;
    mc.n_layer = c->n_layer;
    mc.n_head = c->n_head;
    mc.n_kv_head = c->n_kv_head;
    mc.head_dim = c->head_dim;
    mc.rope_theta = c->rope_theta;
    mc.norm_eps = c->rms_norm_eps;
    mc.kv = pair->kv;
    mc.n_kv = pair->n_kv;
    mc.origin = pair->origin;
    /* DESIGN: a Stage 0 student is its own first layer, so it produces any carried stream. */
    mc.carry_role = s->mx->carry_name ? GRAFT_CARRY_PRODUCER : GRAFT_CARRY_NONE;
    if ((st = s->mx->create(graft_host_get(), &mc, &s->ml, err))) return graft_err_prefix(err, where);
    s->n_mp = s->mx->n_params(s->ml);
    s->mp = calloc((size_t)s->n_mp + 1, sizeof *s->mp);
    s->mg = calloc((size_t)s->n_mp + 1, sizeof *s->mg);
    s->mpw = calloc((size_t)s->n_mp + 1, sizeof *s->mpw);
    s->names = calloc((size_t)s->n_mp + 1, sizeof *s->names);
    int64_t mlp_floats = p->train_mlp ? 3 * c->hidden_size * c->intermediate_size : 0;
    graft_param_spec *specs = calloc((size_t)s->n_mp + 1, sizeof *specs);
    if (!s->mp || !s->mg || !s->mpw || !s->names || !specs) {
        free(specs);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", where);
    }
    size_t total = 0;
    for (int64_t i = 0; i < s->n_mp; i++) {
        specs[i].struct_size = sizeof specs[i];
        if ((st = s->mx->param(s->ml, i, &specs[i], err))) {
            free(specs);
            return graft_err_prefix(err, where);
        }
        int64_t n = 1;
        for (int32_t d = 0; d < specs[i].ndim; d++) n *= specs[i].shape[d];
        total += ((size_t)n + 15) & ~(size_t)15;
        size_t len = strlen(specs[i].name) + 48;
        s->names[i] = malloc(len);
        if (!s->names[i]) {
            free(specs);
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", where);
        }
        snprintf(s->names[i], len, "model.layers.%lld.%s", (long long)pair->layer, specs[i].name);
    }
    total += (size_t)mlp_floats;
    s->floats = total;
    s->arena = calloc(4 * total + 16, sizeof(float));
    s->spans = calloc((size_t)s->n_mp + 3, sizeof *s->spans);
    if (!s->arena || !s->spans) {
        free(specs);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: cannot allocate %zu bytes", where, 16 * total);
    }
    float *w = s->arena, *g = w + total, *m1 = g + total, *m2 = m1 + total;
    size_t off = 0;
    for (int64_t i = 0; i < s->n_mp; i++) {
        s->mp[i] = graft_tensor_make(w + off, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, specs[i].ndim, specs[i].shape);
        s->mg[i] = graft_tensor_make(g + off, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, specs[i].ndim, specs[i].shape);
        int64_t n = graft_tensor_numel(&s->mp[i]);
        s->spans[s->n_spans++] = (graft_adamw_span){.data = w + off, .grad = g + off, .m = m1 + off, .v = m2 + off,
                                                    .n = n, .flags = (specs[i].flags & GRAFT_PARAM_NO_DECAY) ? GRAFT_ADAMW_NO_DECAY : 0};
        off += ((size_t)n + 15) & ~(size_t)15;
    }
    free(specs);
    /* the block: teacher's norms and MLP (frozen, or a trainable copy) around the student mixer */
    graft_block *b = &s->blk;
    b->be = s->be;
    b->mx = s->mx;
    b->ml = s->ml;
    b->C = c->hidden_size;
    b->I = c->intermediate_size;
    b->eps = (float)c->rms_norm_eps;
    b->mp = s->mpw;
    b->mg = s->mg;
    b->ln1 = teacher_weight(teacher, pair->layer, "input_layernorm.weight", 1);
    b->ln2 = teacher_weight(teacher, pair->layer, "post_attention_layernorm.weight", 1);
    b->gate = teacher_weight(teacher, pair->layer, "mlp.gate_proj.weight", 1);
    b->up = teacher_weight(teacher, pair->layer, "mlp.up_proj.weight", 1);
    b->down = teacher_weight(teacher, pair->layer, "mlp.down_proj.weight", 1);
    if (!b->ln1 || !b->ln2 || !b->gate || !b->up || !b->down)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: the teacher has no norms/MLP at this layer", where);
    if (p->train_mlp) {
        int64_t IC = c->hidden_size * c->intermediate_size;
        float *mw = w + off, *mg = g + off;
        s->mlp_off = off;
        memcpy(mw, teacher_weight(teacher, pair->layer, "mlp.gate_proj.weight", 0), (size_t)IC * sizeof(float));
        memcpy(mw + IC, teacher_weight(teacher, pair->layer, "mlp.up_proj.weight", 0), (size_t)IC * sizeof(float));
        memcpy(mw + 2 * IC, teacher_weight(teacher, pair->layer, "mlp.down_proj.weight", 0), (size_t)IC * sizeof(float));
        b->gate = mw; b->up = mw + IC; b->down = mw + 2 * IC;
        b->d_gate = mg; b->d_up = mg + IC; b->d_down = mg + 2 * IC;
        s->spans[s->n_spans++] = (graft_adamw_span){.data = mw, .grad = mg, .m = m1 + off, .v = m2 + off, .n = 3 * IC};
    }
    /* init: the plugin's own, or from the teacher's attention at this layer */
    graft_tensor q, k, v, o, qn, kn;
    graft_attention_weights aw = {.struct_size = sizeof aw};
    const graft_attention_weights *tw = NULL;
    if (p->init_teacher) {
        aw.q_proj = teacher_tensor(teacher, pair->layer, "q_proj.weight", &q);
        aw.k_proj = teacher_tensor(teacher, pair->layer, "k_proj.weight", &k);
        aw.v_proj = teacher_tensor(teacher, pair->layer, "v_proj.weight", &v);
        aw.o_proj = teacher_tensor(teacher, pair->layer, "o_proj.weight", &o);
        aw.q_norm = teacher_tensor(teacher, pair->layer, "q_norm.weight", &qn);
        aw.k_norm = teacher_tensor(teacher, pair->layer, "k_norm.weight", &kn);
        if (!aw.q_proj || !aw.k_proj || !aw.v_proj || !aw.o_proj)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: init: teacher, but the teacher's layer has no softmax attention", where);
        if (!(s->mx->caps & GRAFT_MIXER_CAP_TEACHER_INIT))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: init: teacher, but this mixer cannot start from attention weights (use init: random)", where);
        tw = &aw;
    }
    if ((st = s->mx->init(s->ml, s->mp, seed, tw, err))) return graft_err_prefix(err, where);
    for (int64_t i = 0; i < s->n_mp; i++) s->mpw[i] = s->mp[i];
    if (on_device(s) && (st = student_place(s, c, err))) return graft_err_prefix(err, where);
    return GRAFT_STATUS_OK;
}

/* A training or evaluation pass of one student on (h_l -> h_l1), activations of the backend's
 * dtype in its memory. Returns the loss sums; training leaves the gradient of sum / count (the
 * step's objective) in the student's gradients. */
static graft_status student_pass(student *s, graft_block_ws *ws, void *out, void *dout, const void *hl,
                                 const void *hl1, int64_t B, int64_t T, int train, graft_loaded_plugin *loss,
                                 void *loss_obj, double *sum, double *count, graft_err *err) {
    const graft_backend *be = s->be;
    graft_status st = graft_block_forward(&s->blk, ws, out, hl, B, T, train, err);
    if (st) return st;
    const graft_loss *L = graft_plugin_loss(loss);
    graft_loss_io io;
    memset(&io, 0, sizeof io);
    io.struct_size = sizeof io;
    io.loss = loss_obj;
    io.device = be->device;
    io.stream = be->stream;
    io.dtype = be->act_dtype;
    io.N = B * T;
    io.W = s->blk.C;
    io.student = out;
    io.target = hl1;
    io.input = hl;
    io.grad_scale = 1.0f;
    io.normalize = 1; /* the gradient of sum / count: the loss knows count only after its pass */
    io.dstudent = train ? dout : NULL;
    io.loss_sum = sum;
    io.count = count;
    if ((st = L->compute(&io, err))) return graft_err_prefix(err, "stage0: loss nmse");
    if (!train) return GRAFT_STATUS_OK;
    if (s->blk.dcarry && (st = be->zero(be->ctx, s->blk.dcarry, s->dcarry_bytes, err))) return st;
    return graft_block_backward(&s->blk, ws, dout, dout, hl, B, T, err);
}

/* The trainable spans of student i as named tensors "pair<i>.<span>": span j of a student is its
 * j-th mixer parameter, then (train_mlp) its MLP copy. Names are malloc'd into names[]. */
static graft_status sweep_tensors(student *S, int64_t n_pairs, graft_named_tensor *w, graft_named_tensor *m,
                                  graft_named_tensor *v, char **names, int64_t *n_out, graft_err *err) {
    int64_t k = 0;
    for (int64_t i = 0; i < n_pairs; i++)
        for (int64_t j = 0; j < S[i].n_spans; j++, k++) {
            names[k] = malloc(48);
            if (!names[k]) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory");
            snprintf(names[k], 48, "pair%lld.span%lld", (long long)i, (long long)j);
            const graft_adamw_span *sp = &S[i].spans[j];
            graft_named_tensor t = {.name = names[k], .numel = sp->n, .ndim = 1, .shape = {sp->n}};
            w[k] = t;
            w[k].data = sp->data;
            m[k] = t;
            m[k].data = sp->m;
            v[k] = t;
            v[k].data = sp->v;
        }
    *n_out = k;
    return GRAFT_STATUS_OK;
}

static int64_t sweep_spans(const student *S, int64_t n_pairs) {
    int64_t n = 0;
    for (int64_t i = 0; i < n_pairs; i++) n += S[i].n_spans;
    return n;
}

static graft_status sweep_save(student *S, int64_t n_pairs, const char *dir, int64_t step, const graft_data_cursor *cur,
                               graft_err *err) {
    int64_t n = sweep_spans(S, n_pairs), k = 0;
    graft_named_tensor *t = calloc((size_t)(3 * n + 1), sizeof *t);
    char **names = calloc((size_t)n + 1, sizeof *names);
    graft_status st = !t || !names ? graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory")
                                   : sweep_tensors(S, n_pairs, t, t + n, t + 2 * n, names, &k, err);
    if (!st) {
        int64_t curv[4] = {(int64_t)cur->epoch, (int64_t)cur->position, (int64_t)cur->seed, (int64_t)cur->n_train};
        graft_train_state ts = {.weights = t, .n_weights = k, .m = t + n, .v = t + 2 * n, .n_opt = k, .step = step,
                                .lr_step = step, .data_cursor = curv, .n_cursor = 4};
        st = graft_train_state_save(dir, &ts, err);
    }
    for (int64_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
    free(t);
    return st;
}

/* Loads the sweep checkpoint in dir into the students. *step = -1 when there is none. */
static graft_status sweep_load(student *S, int64_t n_pairs, const char *dir, int64_t *step, graft_data_cursor *cur,
                               graft_err *err) {
    *step = -1;
    if (graft_train_state_step(dir) < 0) return GRAFT_STATUS_OK;
    graft_train_state ts;
    graft_status st = graft_train_state_load(dir, &ts, err);
    if (st) return st;
    int64_t n = sweep_spans(S, n_pairs);
    if (ts.n_weights != n || ts.n_opt != n || ts.n_cursor != 4) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: a checkpoint of %lld tensors, this sweep has %lld: "
                           "another recipe's stage0? (remove it to start over)", dir, (long long)ts.n_weights, (long long)n);
    } else {
        for (int64_t i = 0; i < n_pairs && !st; i++)
            for (int64_t j = 0; j < S[i].n_spans && !st; j++) {
                graft_adamw_span *sp = &S[i].spans[j];
                char name[48];
                snprintf(name, sizeof name, "pair%lld.span%lld", (long long)i, (long long)j);
                int64_t w = -1, o = -1; /* the checkpoint's order is its own: find by name */
                for (int64_t k = 0; k < ts.n_weights; k++)
                    if (!strcmp(ts.weights[k].name, name)) w = k;
                for (int64_t k = 0; k < ts.n_opt; k++)
                    if (!strcmp(ts.m[k].name, name)) o = k;
                if (w < 0 || o < 0 || ts.weights[w].numel != sp->n || ts.m[o].numel != sp->n) {
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": missing or not of %lld values: "
                                       "another recipe's stage0? (remove it to start over)", dir, name, (long long)sp->n);
                    break;
                }
                memcpy(sp->data, ts.weights[w].data, (size_t)sp->n * sizeof(float));
                memcpy(sp->m, ts.m[o].data, (size_t)sp->n * sizeof(float));
                memcpy(sp->v, ts.v[o].data, (size_t)sp->n * sizeof(float));
            }
        if (!st) {
            *step = ts.step;
            *cur = (graft_data_cursor){(uint64_t)ts.data_cursor[0], (uint64_t)ts.data_cursor[1],
                                       (uint64_t)ts.data_cursor[2], (uint64_t)ts.data_cursor[3]};
        }
    }
    graft_train_state_free(&ts);
    return st;
}

graft_status graft_stage0_run(graft_model_t *teacher, graft_data_t *data, const graft_stage0_pair *pairs,
                              int64_t n_pairs, const graft_stage0_opts *p, const graft_stage0_hooks *hooks,
                              graft_stage0_result *results, graft_err *err) {
    const graft_qwen3_config *c = graft_model_config(teacher);
    const graft_backend *be = graft_model_backend(teacher);
    int64_t B = p->batch, T = p->seq_len, N = B * T, C = c->hidden_size;
    size_t act = graft_dtype_size(be->act_dtype);
    graft_status st = GRAFT_STATUS_OK;
    student *S = calloc((size_t)n_pairs + 1, sizeof *S);
    void *out = be->alloc(be->ctx, act * (size_t)(N * C));
    void *dout = be->alloc(be->ctx, act * (size_t)(N * C));
    uint32_t *win = malloc(sizeof(uint32_t) * (size_t)(B * (T + 1)));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)N);
    const void *hidden = NULL; /* the teacher's residual stream, where its forward left it */
    char *ws_mem = NULL;
    void *carry = NULL, *dcarry = NULL;
    graft_loaded_plugin *loss = NULL;
    void *loss_obj = NULL;
    if (!S || !out || !dout || !win || !ids) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory for B=%lld T=%lld", (long long)B, (long long)T);
        goto done;
    }
    if ((st = graft_plugin_load("nmse", GRAFT_PLUGIN_LOSS, &loss, err))) goto done;
    if ((st = graft_plugin_loss(loss)->create(graft_host_get(), NULL, 0, "stage0", &loss_obj, err))) goto done;
    if (be->device != GRAFT_DEVICE_CPU && !(graft_plugin_loss(loss)->caps & GRAFT_MIXER_CAP_CUDA)) {
        st = graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "stage0: loss nmse: this build's plugin has no CUDA path "
                           "(built without nvcc?); run Stage 0 with device: cpu");
        goto done;
    }
    double t_setup = graft_host_now_s(), student_bytes = 0;
    for (int64_t i = 0; i < n_pairs; i++) {
        if ((st = student_init(&S[i], teacher, &pairs[i], p, p->seed + 1000003ull * (uint64_t)(i + 1), err))) goto done;
        if ((st = student_upload(&S[i], err))) goto done;
        student_bytes += 4.0 * (double)S[i].floats * sizeof(float);
    }
    /* one shared workspace sized for the largest student */
    size_t saved = 0, scratch = 0;
    for (int64_t i = 0; i < n_pairs; i++) {
        if ((st = S[i].mx->workspace(S[i].ml, be->device, B, T, &S[i].saved_bytes, &S[i].scratch_bytes, err))) goto done;
        size_t a = graft_block_saved_bytes(&S[i].blk, N, S[i].saved_bytes);
        size_t b = graft_block_scratch_bytes(&S[i].blk, N, S[i].scratch_bytes);
        if (a > saved) saved = a;
        if (b > scratch) scratch = b;
    }
    /* A student with a carried stream (RWKV-7's v_first) is its own producer (DESIGN): it writes
     * the stream, and nothing downstream sends a gradient back, so dcarry stays zero. */
    int64_t carry_w = 0;
    for (int64_t i = 0; i < n_pairs; i++)
        if (S[i].mx->carry_name && S[i].mx->carry_width(S[i].ml) > carry_w) carry_w = S[i].mx->carry_width(S[i].ml);
    if (carry_w > 0) {
        carry = be->alloc(be->ctx, (size_t)(N * carry_w) * sizeof(float));
        dcarry = be->alloc(be->ctx, (size_t)(N * carry_w) * sizeof(float));
        if (!carry || !dcarry) {
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: cannot allocate the carried stream");
            goto done;
        }
        for (int64_t i = 0; i < n_pairs; i++)
            if (S[i].mx->carry_name) {
                S[i].blk.carry = carry;
                S[i].blk.dcarry = dcarry;
                S[i].dcarry_bytes = (size_t)(N * S[i].mx->carry_width(S[i].ml)) * sizeof(float);
            }
    }
    ws_mem = be->alloc(be->ctx, saved + scratch + 64);
    if (!ws_mem) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: cannot allocate the student workspace (%zu bytes on %s)",
                           saved + scratch + 64, be->name);
        goto done;
    }
    graft_adamw_params ap = graft_adamw_default_params();
    ap.beta1 = p->beta1;
    ap.beta2 = p->beta2;
    ap.eps = p->eps;
    ap.weight_decay = p->weight_decay;
    if ((st = graft_adamw_check(&ap, err))) goto done;
    graft_lr_schedule sched = {.lr_peak = p->lr, .lr_min = p->lr_min, .warmup_steps = p->warmup, .total_steps = p->steps};
    if ((st = graft_lr_schedule_check(&sched, err))) goto done;
    int64_t n_eval_batches = (int64_t)((graft_data_n_eval(data) + (uint64_t)B - 1) / (uint64_t)B);
    if (p->eval_batches < n_eval_batches) n_eval_batches = p->eval_batches;
    if (hooks && hooks->on_ready) hooks->on_ready(hooks->ctx, graft_host_now_s() - t_setup, student_bytes);
    int64_t step0 = 0;
    if (p->resume && p->state_dir) {
        graft_data_cursor cur;
        if ((st = sweep_load(S, n_pairs, p->state_dir, &step0, &cur, err))) goto done;
        if (step0 < 0) step0 = 0;
        else if ((st = graft_data_set_cursor(data, &cur, err))) goto done;
        for (int64_t i = 0; i < n_pairs && step0 > 0; i++)
            if ((st = student_upload(&S[i], err))) goto done;
    }
    for (int64_t step = step0 + 1; step <= p->steps + 1; step++) {
        int last = step == p->steps + 1, resumed_here = step == step0 + 1 && step0 > 0;
        /* held-out evaluation: before training continues at multiples of eval_every, and at the end
         * (a resumed sweep already made the one of its checkpoint's step) */
        if (last || (p->eval_every > 0 && (step - 1) % p->eval_every == 0 && step > 1 && !resumed_here)) {
            for (int64_t i = 0; i < n_pairs; i++) S[i].eval_sum = S[i].eval_count = 0;
            for (int64_t e = 0; e < n_eval_batches; e++) {
                int64_t rows = 0;
                if ((st = graft_data_eval_batch(data, (uint64_t)e, win, &rows, err))) goto done;
                if (rows < 1) break;
                graft_data_window_ids(win, rows, T, ids, NULL);
                if ((st = graft_model_forward(teacher, ids, rows, T, NULL, NULL, 0, err))) goto done;
                if ((st = graft_model_hidden_device(teacher, &hidden, err))) goto done;
                int64_t Ne = rows * T;
                for (int64_t i = 0; i < n_pairs; i++) {
                    graft_block_ws ws;
                    graft_block_ws_bind(&ws, &S[i].blk, Ne, ws_mem, S[i].saved_bytes, ws_mem + saved);
                    double sum = 0, cnt = 0;
                    const char *hl = (const char *)hidden + act * (size_t)(S[i].layer * Ne * C), *hl1 = hl + act * (size_t)(Ne * C);
                    if ((st = student_pass(&S[i], &ws, out, dout, hl, hl1, rows, T, 0, loss, loss_obj, &sum, &cnt, err))) goto done;
                    S[i].eval_sum += sum;
                    S[i].eval_count += cnt;
                }
            }
            for (int64_t i = 0; i < n_pairs; i++) {
                double nl = S[i].eval_count > 0 ? S[i].eval_sum / S[i].eval_count : NAN;
                if (hooks && hooks->on_eval) hooks->on_eval(hooks->ctx, step - 1, i, nl);
            }
        }
        /* the checkpoint of step - 1, after its evaluation, so a resume repeats neither */
        if (p->state_dir && p->checkpoint_every > 0 && step > 1 && !last && !resumed_here &&
            (step - 1) % p->checkpoint_every == 0) {
            graft_data_cursor cur = graft_data_get_cursor(data);
            for (int64_t i = 0; i < n_pairs; i++)
                if ((st = student_download(&S[i], err))) goto done;
            if ((st = sweep_save(S, n_pairs, p->state_dir, step - 1, &cur, err))) goto done;
        }
        if (last) break;
        double t0 = graft_host_now_s();
        if ((st = graft_data_next(data, win, err))) goto done;
        graft_data_window_ids(win, B, T, ids, NULL);
        /* ONE teacher forward for every student */
        if ((st = graft_model_forward(teacher, ids, B, T, NULL, NULL, 0, err))) goto done;
        if ((st = graft_model_hidden_device(teacher, &hidden, err))) goto done;
        double lr = graft_lr_schedule_at(&sched, step);
        for (int64_t i = 0; i < n_pairs; i++) {
            student *s = &S[i];
            if ((st = student_zero_grads(s, err))) goto done;
            graft_block_ws ws;
            graft_block_ws_bind(&ws, &s->blk, N, ws_mem, s->saved_bytes, ws_mem + saved);
            double sum = 0, cnt = 0;
            const char *hl = (const char *)hidden + act * (size_t)(s->layer * N * C), *hl1 = hl + act * (size_t)(N * C);
            if ((st = student_pass(s, &ws, out, dout, hl, hl1, B, T, 1, loss, loss_obj, &sum, &cnt, err))) goto done;
            double gn = 0;
            if ((st = student_opt_step(s, &ap, p, step, lr, &gn, err))) goto done;
            if (hooks && hooks->on_train) hooks->on_train(hooks->ctx, step, i, cnt > 0 ? sum / cnt : NAN, lr, gn);
        }
        if ((st = be->sync(be->ctx, err))) goto done; /* the step's time includes its device work */
        if (hooks && hooks->on_step) hooks->on_step(hooks->ctx, step, graft_host_now_s() - t0, N);
    }
    for (int64_t i = 0; i < n_pairs; i++)
        if ((st = student_download(&S[i], err))) goto done;
    /* results and one checkpoint per student */
    for (int64_t i = 0; i < n_pairs; i++) {
        graft_stage0_result *r = &results[i];
        memset(r, 0, sizeof *r);
        r->layer = S[i].layer;
        snprintf(r->mixer, sizeof r->mixer, "%s", pairs[i].mixer);
        r->heldout_nloss = S[i].eval_count > 0 ? S[i].eval_sum / S[i].eval_count : NAN;
        r->heldout_tokens = (double)(n_eval_batches * B * T);
        if (!p->out_dir) continue;
        if ((st = graft_fs_mkdir_p(p->out_dir, err))) goto done;
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s/layer%lld-%s.safetensors", p->out_dir,
                 (long long)S[i].layer, pairs[i].mixer);
        graft_st_entry *e = calloc((size_t)S[i].n_mp + 4, sizeof *e);
        /* metadata: what the student is, so assembly can rebuild it */
        int64_t nm = 2 * (4 + pairs[i].n_kv) + 1;
        const char **meta = calloc((size_t)nm, sizeof *meta);
        char layer_s[32], nloss_s[64];
        char (*keys)[96] = calloc((size_t)pairs[i].n_kv + 1, sizeof *keys);
        if (!e || !meta || !keys) {
            free(e); free(meta); free(keys);
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory");
            goto done;
        }
        snprintf(layer_s, sizeof layer_s, "%lld", (long long)S[i].layer);
        snprintf(nloss_s, sizeof nloss_s, "%.17g", r->heldout_nloss);
        int64_t k = 0;
        meta[k++] = "graft.stage0.mixer"; meta[k++] = pairs[i].mixer;
        meta[k++] = "graft.stage0.layer"; meta[k++] = layer_s;
        meta[k++] = "graft.stage0.heldout_nloss"; meta[k++] = nloss_s;
        meta[k++] = "graft.stage0.train"; meta[k++] = p->train_mlp ? "mixer,mlp" : "mixer";
        for (int64_t j = 0; j < pairs[i].n_kv; j++) {
            snprintf(keys[j], sizeof keys[j], "graft.mixer.%s", pairs[i].kv[j].key);
            meta[k++] = keys[j];
            meta[k++] = pairs[i].kv[j].value;
        }
        meta[k] = NULL;
        for (int64_t j = 0; j < S[i].n_mp; j++) {
            e[j].name = S[i].names[j];
            e[j].dtype = GRAFT_DTYPE_F32;
            e[j].ndim = S[i].mp[j].ndim;
            for (int d = 0; d < S[i].mp[j].ndim; d++) e[j].shape[d] = S[i].mp[j].shape[d];
            e[j].f32 = S[i].mp[j].data;
        }
        int64_t n_e = S[i].n_mp;
        char mlp_names[3][96];
        if (p->train_mlp) { /* the student's own MLP trained too: assembly takes it from here */
            static const char *const parts[3] = {"gate_proj", "up_proj", "down_proj"};
            /* the host masters (downloaded above), not blk.gate/up/down: on a device those point at
             * the device's bf16 working copy (student_place), which the host cannot read */
            const float *mw = S[i].arena + S[i].mlp_off;
            const size_t IC = (size_t)(c->hidden_size * c->intermediate_size);
            const float *src[3] = {mw, mw + IC, mw + 2 * IC};
            for (int j = 0; j < 3; j++, n_e++) {
                snprintf(mlp_names[j], sizeof mlp_names[j], "model.layers.%lld.mlp.%s.weight", (long long)S[i].layer, parts[j]);
                e[n_e].name = mlp_names[j];
                e[n_e].dtype = GRAFT_DTYPE_F32;
                e[n_e].ndim = 2;
                e[n_e].shape[0] = j == 2 ? c->hidden_size : c->intermediate_size;
                e[n_e].shape[1] = j == 2 ? c->intermediate_size : c->hidden_size;
                e[n_e].f32 = src[j];
            }
        }
        st = graft_st_write(r->checkpoint, e, n_e, (const char *const *)meta, err);
        free(e);
        free(meta);
        free(keys);
        if (st) goto done;
    }
done:
    for (int64_t i = 0; S && i < n_pairs; i++) student_free(&S[i]);
    free(S);
    if (loss_obj) graft_plugin_loss(loss)->destroy(loss_obj);
    graft_plugin_unload(loss);
    if (ws_mem) be->free(be->ctx, ws_mem);
    if (carry) be->free(be->ctx, carry);
    if (dcarry) be->free(be->ctx, dcarry);
    if (out) be->free(be->ctx, out);
    if (dout) be->free(be->ctx, dout);
    free(win);
    free(ids);
    return st;
}
