/* train.c: the training loop of pretrain and Stage 1 (train.h).
 *
 * One step: student forward (B, T) -> logits; labels = the next tokens of each window;
 *   CE part:  "ce" loss plugin, gradient scaled by alpha / N;
 *   KL part:  the teacher's logits of the same windows -> per row its top-k ids, log-probs and
 *             top-k mass (temperature 1) -> "topk_kl" loss plugin, gradient scaled by (1-alpha)/N;
 * then backward, global-norm clipping, AdamW at the schedule's learning rate.
 *
 * On a device backend (CUDA) the same step goes through the model's fused path instead of the
 * loss plugins: graft_model_backward_loss (lm_head + CE + decoupled top-k KL on the GPU, no logits
 * on the host) and graft_model_opt_step (AdamW on fp32 masters on the GPU). The teacher's top-k
 * reaches it as on the CPU: the teacher (on the same device) runs an inference forward, its logits
 * come to the host and teacher_topk() picks the rows' top-k there (or the teacher cache supplies
 * them). That is the simplest correct route and shares the cache's code; its cost is one (N, V)
 * F32 copy per micro-batch (a device top-k would remove it: TODO(#8)). Checkpoints download the
 * masters and moments; resume uploads them. The CPU path is untouched (bit-identical).
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "fsutil.h"
#include "host.h"
#include "lr_schedule.h"
#include "plugin_loader.h"
#include "teacher_cache.h"
#include "train_state.h"

graft_train_opts graft_train_default_opts(void) {
    graft_train_opts p;
    memset(&p, 0, sizeof p);
    p.phases[0] = (graft_train_phase){.steps = 100, .batch = 8, .seq_len = 128};
    p.n_phases = 1;
    p.lr = 1e-3;
    p.lr_min = 1e-4;
    p.warmup = 10;
    p.accum = 1;
    p.weight_decay = 0.1;
    p.grad_clip = 1.0;
    p.beta1 = 0.9;
    p.beta2 = 0.95;
    p.eps = 1e-8;
    p.alpha = 1.0;
    p.k = 32;
    p.temperature = 4.0;
    p.eval_batches = 8;
    p.holdout_fraction = 0.05;
    return p;
}

/* A loss plugin and one object of it. */
typedef struct loss_handle {
    graft_loaded_plugin *plugin;
    const graft_loss *L;
    void *obj;
} loss_handle;

static graft_status loss_open(loss_handle *h, const char *name, const graft_kv *kv, int64_t n_kv, graft_err *err) {
    graft_status st = graft_plugin_load(name, GRAFT_PLUGIN_LOSS, &h->plugin, err);
    if (st) return st;
    h->L = graft_plugin_loss(h->plugin);
    return h->L->create(graft_host_get(), kv, n_kv, "train", &h->obj, err);
}

static void loss_close(loss_handle *h) {
    if (h->obj) h->L->destroy(h->obj);
    graft_plugin_unload(h->plugin);
}

/* Per row of z (N, V): the k largest ids, their log-probabilities and their total probability. */
static void teacher_topk(const float *z, int64_t N, int64_t V, int64_t k, int32_t *ids, float *logp, float *mass) {
    for (int64_t r = 0; r < N; r++) {
        const float *row = z + r * V;
        int32_t *id = ids + r * k;
        float *lp = logp + r * k;
        double mx = -INFINITY;
        for (int64_t v = 0; v < V; v++) if (row[v] > mx) mx = row[v];
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
        double lse = mx + log(s);
        /* insertion into a sorted (descending) list of k: k is small (32) */
        int64_t n = 0;
        for (int64_t v = 0; v < V; v++) {
            float x = row[v];
            if (n == k && x <= row[id[k - 1]]) continue;
            int64_t pos = n < k ? n++ : k - 1;
            while (pos > 0 && row[id[pos - 1]] < x) {
                id[pos] = id[pos - 1];
                pos--;
            }
            id[pos] = (int32_t)v;
        }
        double m = 0;
        for (int64_t j = 0; j < k; j++) {
            lp[j] = (float)((double)row[id[j]] - lse);
            m += exp((double)lp[j]);
        }
        mass[r] = (float)(m > 1.0 ? 1.0 : m);
    }
}

graft_status graft_eval_heldout_ce(graft_model_t *m, graft_data_t *data, int64_t batch, int64_t seq_len,
                                   int64_t max_batches, double *ce, double *tokens, graft_err *err) {
    int64_t B = batch, T = seq_len, V = graft_model_config(m)->vocab_size;
    uint32_t *win = malloc(sizeof(uint32_t) * (size_t)(B * (T + 1)));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(B * T));
    float *logits = malloc(sizeof(float) * (size_t)(B * T * V));
    loss_handle lh = {0};
    double sum = 0, count = 0;
    graft_status st = GRAFT_STATUS_OK;
    if (!win || !ids || !labels || !logits) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "eval: out of memory");
        goto done;
    }
    if ((st = loss_open(&lh, "ce", NULL, 0, err))) goto done;
    int64_t nb = (int64_t)((graft_data_n_eval(data) + (uint64_t)B - 1) / (uint64_t)B);
    if (max_batches > 0 && nb > max_batches) nb = max_batches;
    for (int64_t b = 0; b < nb; b++) {
        int64_t rows = 0;
        if ((st = graft_data_eval_batch(data, (uint64_t)b, win, &rows, err))) goto done;
        if (rows < 1) break;
        graft_data_window_ids(win, rows, T, ids, labels);
        if ((st = graft_model_forward(m, ids, rows, T, logits, NULL, 0, err))) goto done;
        double s = 0, c = 0;
        graft_loss_io io = {.struct_size = sizeof io, .loss = lh.obj, .device = GRAFT_DEVICE_CPU, .N = rows * T,
                            .W = V, .student = logits, .labels = labels, .grad_scale = 1, .loss_sum = &s, .count = &c};
        if ((st = lh.L->compute(&io, err))) goto done;
        sum += s;
        count += c;
    }
    *ce = count > 0 ? sum / count : NAN;
    *tokens = count;
done:
    loss_close(&lh);
    free(win);
    free(ids);
    free(labels);
    free(logits);
    return st;
}

/* ---- training checkpoints (train_state.h) -------------------------------------------------- */

/* m and v of parameter i live at moments + off_i and moments + total + off_i (off in order). */
static graft_status train_checkpoint(const char *dir, graft_model_t *m, float *moments, size_t total, int64_t step,
                                     int phase, const graft_data_cursor *cur, graft_err *err) {
    int64_t np = graft_model_n_params(m);
    graft_named_tensor *w = calloc((size_t)np * 3 + 1, sizeof *w);
    if (!w) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", dir);
    graft_named_tensor *mm = w + np, *vv = w + 2 * np;
    char **names = calloc((size_t)np * 2 + 1, sizeof *names);
    graft_status st = GRAFT_STATUS_OK;
    size_t off = 0;
    for (int64_t i = 0; names && i < np; i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        graft_named_tensor t = {.name = (char *)p->name, .data = p->data, .numel = p->numel, .ndim = p->ndim};
        for (int d = 0; d < p->ndim; d++) t.shape[d] = p->shape[d];
        w[i] = t;
        mm[i] = t;
        mm[i].data = moments + off;
        vv[i] = t;
        vv[i].data = moments + total + off;
        off += (size_t)p->numel;
    }
    int64_t curv[4] = {(int64_t)cur->epoch, (int64_t)cur->position, (int64_t)cur->seed, (int64_t)cur->n_train};
    graft_train_state ts = {.weights = w, .n_weights = np, .m = mm, .v = vv, .n_opt = np, .step = step,
                            .phase = phase, .lr_step = step, .data_cursor = curv, .n_cursor = 4};
    if (!names) st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", dir);
    else st = graft_train_state_save(dir, &ts, err);
    free(names);
    free(w);
    return st;
}

/* Loads the checkpoint in dir (if any) into the model and moments. *found = 0 when there is none. */
static graft_status train_resume(const char *dir, graft_model_t *m, float *moments, size_t total, int64_t *step,
                                 int *phase, graft_data_cursor *cur, int *found, graft_err *err) {
    *found = 0;
    char real[4096];
    if (graft_fs_dir_resolve(dir, real, sizeof real, err) != GRAFT_STATUS_OK) return GRAFT_STATUS_OK; /* none yet */
    graft_train_state ts;
    memset(&ts, 0, sizeof ts);
    graft_status st = graft_train_state_load(real, &ts, err);
    if (st) return st;
    int64_t np = graft_model_n_params(m);
    size_t off = 0;
    for (int64_t i = 0; i < np && !st; i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        int hit = 0;
        for (int64_t j = 0; j < ts.n_weights; j++)
            if (!strcmp(ts.weights[j].name, p->name) && ts.weights[j].numel == p->numel) {
                memcpy(p->data, ts.weights[j].data, (size_t)p->numel * sizeof(float));
                hit |= 1;
            }
        for (int64_t j = 0; j < ts.n_opt; j++)
            if (!strcmp(ts.m[j].name, p->name) && ts.m[j].numel == p->numel) {
                memcpy(moments + off, ts.m[j].data, (size_t)p->numel * sizeof(float));
                memcpy(moments + total + off, ts.v[j].data, (size_t)p->numel * sizeof(float));
                hit |= 2;
            }
        if (hit != 3)
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": missing or of another shape in the training checkpoint",
                               real, p->name);
        off += (size_t)p->numel;
    }
    if (!st && ts.n_cursor != 4)
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: data cursor has %lld entries, expected 4", real, (long long)ts.n_cursor);
    if (!st) {
        *step = ts.step;
        *phase = ts.phase;
        cur->epoch = (uint64_t)ts.data_cursor[0];
        cur->position = (uint64_t)ts.data_cursor[1];
        cur->seed = (uint64_t)ts.data_cursor[2];
        cur->n_train = (uint64_t)ts.data_cursor[3];
        *found = 1;
    }
    graft_train_state_free(&ts);
    return st;
}

/* The data of phase ph, as training reads it (the teacher cache is made in the same order). */
static graft_status open_phase(const graft_train_opts *p, int ph, int64_t V, const char *const *paths, int64_t n_paths,
                               graft_data_t **data, graft_err *err) {
    graft_data_params dp = graft_data_default_params();
    dp.B = p->phases[ph].batch;
    dp.T = p->phases[ph].seq_len;
    dp.seed = p->seed + (uint64_t)ph;
    dp.shuffle = 1;
    dp.holdout_fraction = p->holdout_fraction;
    dp.heldout_paths = p->heldout_paths;
    dp.n_heldout = (size_t)p->n_heldout;
    dp.max_vocab = (uint64_t)V;
    return graft_data_open(paths, (size_t)n_paths, &dp, data, err);
}

/* What a teacher cache must match: the data seed and the schedule that orders its rows. */
static uint64_t cache_fingerprint(const graft_train_opts *p) {
    uint64_t h = 1469598103934665603ull;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ull)
    MIX(p->seed);
    MIX(p->accum > 0 ? p->accum : 1);
    MIX(p->k);
    MIX(p->n_phases);
    for (int i = 0; i < p->n_phases; i++) {
        MIX(p->phases[i].steps);
        MIX(p->phases[i].batch);
        MIX(p->phases[i].seq_len);
    }
#undef MIX
    return h;
}

/* Runs the teacher over every training window in training order and writes its top-k. */
static graft_status make_teacher_cache(graft_model_t *teacher, const char *const *paths, int64_t n_paths,
                                       const graft_train_opts *p, graft_err *err) {
    int64_t V = graft_model_config(teacher)->vocab_size, accum = p->accum > 0 ? p->accum : 1, maxN = 0;
    for (int i = 0; i < p->n_phases; i++)
        if (p->phases[i].batch * p->phases[i].seq_len > maxN) maxN = p->phases[i].batch * p->phases[i].seq_len;
    int64_t maxW = 0;
    for (int i = 0; i < p->n_phases; i++)
        if (p->phases[i].batch * (p->phases[i].seq_len + 1) > maxW) maxW = p->phases[i].batch * (p->phases[i].seq_len + 1);
    uint32_t *win = malloc(sizeof(uint32_t) * (size_t)maxW);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)maxN), *tk = malloc(sizeof(int32_t) * (size_t)(maxN * p->k));
    float *z = malloc(sizeof(float) * (size_t)(maxN * V)), *lp = malloc(sizeof(float) * (size_t)(maxN * p->k));
    float *mass = malloc(sizeof(float) * (size_t)maxN);
    graft_tkcache_t *c = NULL;
    graft_data_t *data = NULL;
    graft_status st = GRAFT_STATUS_OK;
    if (!win || !ids || !tk || !z || !lp || !mass) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", p->teacher_cache);
        goto done;
    }
    if ((st = graft_tkcache_create(p->teacher_cache, p->k, V, cache_fingerprint(p), &c, err))) goto done;
    for (int ph = 0; ph < p->n_phases; ph++) {
        int64_t B = p->phases[ph].batch, T = p->phases[ph].seq_len;
        if ((st = open_phase(p, ph, V, paths, n_paths, &data, err))) goto done;
        for (int64_t s = 0; s < p->phases[ph].steps * accum; s++) {
            if ((st = graft_data_next(data, win, err))) goto done;
            graft_data_window_ids(win, B, T, ids, NULL);
            if ((st = graft_model_forward(teacher, ids, B, T, z, NULL, 0, err))) goto done;
            teacher_topk(z, B * T, V, p->k, tk, lp, mass);
            if ((st = graft_tkcache_append(c, ids, tk, lp, mass, B * T, err))) goto done;
        }
        graft_data_close(data);
        data = NULL;
    }
    st = graft_tkcache_finish(c, err);
    c = NULL;
done:
    graft_tkcache_abort(c);
    graft_data_close(data);
    free(win); free(ids); free(tk); free(z); free(lp); free(mass);
    return st;
}

/* One micro-batch on a device backend: the teacher's top-k (cache row `row0`, or the live teacher),
 * the student's training forward and graft_model_backward_loss; sums added to the step's. */
static graft_status device_micro(graft_model_t *student, graft_model_t *teacher, graft_tkcache_t *tkc,
                                 const graft_train_opts *p, const int32_t *ids, const int32_t *labels, int64_t B,
                                 int64_t T, int64_t row0, double ce_scale, double kl_scale, float *tlogits,
                                 int32_t *tk_ids, float *tk_logp, float *tk_mass, double *ce_sum, double *ce_n,
                                 double *kl_sum, double *kl_n, graft_err *err) {
    int64_t N = B * T;
    graft_status st;
    graft_model_loss L = {.labels = labels, .ignore_index = -100, .ce_scale = (float)ce_scale};
    if (tlogits) { /* distilling */
        if (tkc) {
            if ((st = graft_tkcache_read(tkc, row0, N, ids, tk_ids, tk_logp, tk_mass, err))) return st;
        } else {
            if ((st = graft_model_forward(teacher, ids, B, T, tlogits, NULL, 0, err))) return st;
            teacher_topk(tlogits, N, graft_model_config(teacher)->vocab_size, p->k, tk_ids, tk_logp, tk_mass);
        }
        L.topk_ids = tk_ids;
        L.topk_logp = tk_logp;
        L.topk_mass = tk_mass;
        L.k = p->k;
        L.temperature = (float)p->temperature;
        L.kl_scale = (float)kl_scale;
    }
    if ((st = graft_model_forward(student, ids, B, T, NULL, NULL, 1, err))) return st;
    double sums[4] = {0, 0, 0, 0};
    if ((st = graft_model_backward_loss(student, &L, sums, err))) return st;
    *ce_sum += sums[0];
    *ce_n += sums[1];
    if (tlogits) { /* the KL's rows are the CE's counted rows (losses/topk_kl.c with labels) */
        *kl_sum += sums[2] + sums[3];
        *kl_n += sums[1];
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_train_run(graft_model_t *student, graft_model_t *teacher, const char *const *paths,
                             int64_t n_paths, const graft_train_opts *p, const graft_train_hooks *hooks,
                             graft_err *err) {
    const graft_qwen3_config *c = graft_model_config(student);
    int64_t V = c->vocab_size;
    int distill = (teacher || p->teacher_cache) && p->alpha < 1.0;
    if (distill && teacher && graft_model_config(teacher)->vocab_size != V)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "stage1: teacher vocabulary %lld, student %lld: they must be equal",
                             (long long)graft_model_config(teacher)->vocab_size, (long long)V);
    if (p->n_phases < 1 || p->n_phases > GRAFT_TRAIN_MAX_PHASES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "train: %d phases, expected 1..%d", p->n_phases, GRAFT_TRAIN_MAX_PHASES);
    int64_t maxN = 0, maxW = 0, total_steps = 0;
    for (int i = 0; i < p->n_phases; i++) {
        int64_t n = p->phases[i].batch * p->phases[i].seq_len;
        if (n > maxN) maxN = n;
        if (n + p->phases[i].batch > maxW) maxW = n + p->phases[i].batch;
        total_steps += p->phases[i].steps;
    }
    graft_status st = GRAFT_STATUS_OK;
    uint32_t *win = NULL;
    int32_t *ids = NULL, *labels = NULL, *tk_ids = NULL;
    float *logits = NULL, *dce = NULL, *tlogits = NULL, *tk_logp = NULL, *tk_mass = NULL;
    float *moments = NULL;
    graft_adamw_span *spans = NULL;
    graft_data_t *data = NULL;
    loss_handle ce = {0}, kl = {0};
    graft_tkcache_t *tkc = NULL;
    /* device: loss and optimizer run in the model (no host logits, no loss plugins) */
    const int dev = graft_model_backend(student)->device != GRAFT_DEVICE_CPU;
    win = malloc(sizeof(uint32_t) * (size_t)maxW);
    ids = malloc(sizeof(int32_t) * (size_t)maxN);
    labels = malloc(sizeof(int32_t) * (size_t)maxN);
    if (!dev) {
        logits = malloc(sizeof(float) * (size_t)(maxN * V));
        dce = malloc(sizeof(float) * (size_t)(maxN * V));
    }
    if (!win || !ids || !labels || (!dev && (!logits || !dce))) goto oom;
    if (distill) {
        tlogits = p->teacher_cache ? malloc(sizeof(float)) : malloc(sizeof(float) * (size_t)(maxN * V));
        tk_ids = malloc(sizeof(int32_t) * (size_t)(maxN * p->k));
        tk_logp = malloc(sizeof(float) * (size_t)(maxN * p->k));
        tk_mass = malloc(sizeof(float) * (size_t)maxN);
        if (!tlogits || !tk_ids || !tk_logp || !tk_mass) goto oom;
    }
    if (distill && p->teacher_cache) { /* the teacher's top-k from the cache, made first if absent */
        if (!graft_fs_exists(p->teacher_cache)) {
            if (!teacher) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: teacher cache not found and no teacher to make it",
                                   p->teacher_cache);
                goto done;
            }
            if ((st = make_teacher_cache(teacher, paths, n_paths, p, err))) goto done;
        }
        if ((st = graft_tkcache_open(p->teacher_cache, p->k, V, cache_fingerprint(p), &tkc, err))) goto done;
    }
    if (!dev && (st = loss_open(&ce, "ce", NULL, 0, err))) goto done;
    if (distill && !dev) {
        char ks[32], ts[64];
        snprintf(ks, sizeof ks, "%lld", (long long)p->k);
        snprintf(ts, sizeof ts, "%.17g", p->temperature);
        graft_kv kv[2] = {{"k", ks, "stage1.k"}, {"temperature", ts, "stage1.temperature"}};
        if ((st = loss_open(&kl, "topk_kl", kv, 2, err))) goto done;
    }
    /* optimizer over every parameter */
    int64_t np = graft_model_n_params(student);
    size_t total = 0;
    for (int64_t i = 0; i < np; i++) total += (size_t)graft_model_param_at(student, i)->numel;
    moments = calloc(2 * total + 1, sizeof(float));
    spans = calloc((size_t)np + 1, sizeof *spans);
    if (!moments || !spans) goto oom;
    {
        /* a forward allocates the gradients */
        int32_t one = 0;
        if ((st = graft_model_forward(student, &one, 1, 1, NULL, NULL, 1, err))) goto done;
    }
    size_t off = 0;
    for (int64_t i = 0; i < np; i++) {
        graft_model_param *q = graft_model_param_at(student, i);
        spans[i] = (graft_adamw_span){.data = q->data, .grad = q->grad, .m = moments + off, .v = moments + total + off,
                                      .n = q->numel, .flags = (q->flags & GRAFT_PARAM_NO_DECAY) ? GRAFT_ADAMW_NO_DECAY : 0};
        off += (size_t)q->numel;
    }
    graft_adamw_params ap = graft_adamw_default_params();
    ap.beta1 = p->beta1;
    ap.beta2 = p->beta2;
    ap.eps = p->eps;
    ap.weight_decay = p->weight_decay;
    if ((st = graft_adamw_check(&ap, err))) goto done;
    graft_lr_schedule sched = {.lr_peak = p->lr, .lr_min = p->lr_min, .warmup_steps = p->warmup, .total_steps = total_steps};
    if ((st = graft_lr_schedule_check(&sched, err))) goto done;

    /* resume */
    int64_t step0 = 0;
    int phase0 = 0;
    graft_data_cursor cursor0;
    int have_cursor = 0;
    if (p->resume && p->state_dir) {
        int found = 0;
        if ((st = train_resume(p->state_dir, student, moments, total, &step0, &phase0, &cursor0, &found, err))) goto done;
        have_cursor = found;
        /* device: the working copy from the restored host weights, then the optimizer state (its
         * F32 masters from those host weights) with the restored moments */
        if (found && dev && ((st = graft_model_upload(student, err)) || (st = graft_model_opt_moments_set(student, moments, err))))
            goto done;
    }
    /* tokens seen before the resumed step (the row's `tokens` is cumulative over the stage) */
    int64_t tokens_seen = 0;
    {
        int64_t left = step0;
        for (int i = 0; i < p->n_phases && left > 0; i++) {
            int64_t n = left < p->phases[i].steps ? left : p->phases[i].steps;
            tokens_seen += n * p->phases[i].batch * p->phases[i].seq_len * (p->accum > 0 ? p->accum : 1);
            left -= n;
        }
    }
    double t_start = graft_host_now_s();
    int64_t step = 0;
    for (int ph = 0; ph < p->n_phases; ph++) {
        const graft_train_phase *P = &p->phases[ph];
        int64_t B = P->batch, T = P->seq_len, N = B * T;
        if (step + P->steps <= step0) { /* a phase finished before the checkpoint */
            step += P->steps;
            continue;
        }
        if ((st = open_phase(p, ph, V, paths, n_paths, &data, err))) goto done;
        if (have_cursor && ph == phase0) {
            if ((st = graft_data_set_cursor(data, &cursor0, err))) goto done;
            step = step0;
        }
        int64_t end = 0;
        for (int i = 0; i <= ph; i++) end += p->phases[i].steps;
        while (step < end) {
            step++;
            double t0 = graft_host_now_s();
            double ce_sum = 0, ce_n = 0, kl_sum = 0, kl_n = 0;
            double a = distill ? p->alpha : 1.0;
            int64_t accum = p->accum > 0 ? p->accum : 1;
            graft_model_zero_grad(student);
            /* accum micro-batches; the objective is the mean over all accum * N positions */
            for (int64_t micro = 0; micro < accum; micro++) {
                if ((st = graft_data_next(data, win, err))) goto done;
                graft_data_window_ids(win, B, T, ids, labels);
                double denom = (double)N * (double)accum;
                if (dev) {
                    if ((st = device_micro(student, teacher, tkc, p, ids, labels, B, T, tokens_seen + micro * N, a / denom,
                                           (1.0 - a) / denom, tlogits, tk_ids, tk_logp, tk_mass, &ce_sum, &ce_n, &kl_sum,
                                           &kl_n, err)))
                        goto done;
                    continue;
                }
                if ((st = graft_model_forward(student, ids, B, T, logits, NULL, 1, err))) goto done;
                graft_loss_io io = {.struct_size = sizeof io, .loss = ce.obj, .device = GRAFT_DEVICE_CPU, .N = N, .W = V,
                                    .student = logits, .labels = labels, .grad_scale = (float)(a / denom),
                                    .dstudent = dce, .loss_sum = &ce_sum, .count = &ce_n};
                if ((st = ce.L->compute(&io, err))) goto done;
                if (distill) {
                    if (tkc) { /* row of this micro-batch = tokens trained on before it */
                        if ((st = graft_tkcache_read(tkc, tokens_seen + micro * N, N, ids, tk_ids, tk_logp, tk_mass, err)))
                            goto done;
                    } else {
                        if ((st = graft_model_forward(teacher, ids, B, T, tlogits, NULL, 0, err))) goto done;
                        teacher_topk(tlogits, N, V, p->k, tk_ids, tk_logp, tk_mass);
                    }
                    graft_loss_io kio = {.struct_size = sizeof kio, .loss = kl.obj, .device = GRAFT_DEVICE_CPU, .N = N,
                                         .W = V, .student = logits, .k = p->k, .topk_ids = tk_ids, .topk_logp = tk_logp,
                                         .topk_mass = tk_mass, .grad_scale = (float)((1.0 - a) / denom),
                                         .dstudent = dce, .loss_sum = &kl_sum, .count = &kl_n,
                                         .accumulate = 1}; /* the KL gradient adds into the CE's */
                    if ((st = kl.L->compute(&kio, err))) goto done;
                }
                if ((st = graft_model_backward(student, dce, err))) goto done;
            }
            tokens_seen += N * accum;
            double gn = 0, lr = graft_lr_schedule_at(&sched, step);
            if (dev) { /* clip_grad_norm_ semantics on the device: max_norm <= 0 measures only */
                if ((st = graft_model_opt_step(student, &ap, step, lr, p->grad_clip, &gn, err))) goto done;
            } else {
                gn = p->grad_clip > 0 ? graft_grad_clip(spans, np, p->grad_clip) : graft_grad_norm(spans, np);
                if ((st = graft_adamw_step(&ap, spans, np, step, lr, err))) goto done;
            }
            double dt = graft_host_now_s() - t0;
            if (hooks && hooks->on_step) {
                double cev = ce_n > 0 ? ce_sum / ce_n : NAN, klv = kl_n > 0 ? kl_sum / kl_n : 0;
                graft_train_row row = {.step = step, .phase = ph, .loss = a * cev + (1 - a) * klv, .ce = cev,
                                       .kl = distill ? klv : NAN, .lr = lr, .grad_norm = gn, .tokens = tokens_seen,
                                       .tokens_per_s = (double)(N * accum) / dt, .wall_s = graft_host_now_s() - t_start};
                hooks->on_step(hooks->ctx, &row);
            }
            if (p->eval_every > 0 && step % p->eval_every == 0 && hooks && hooks->on_eval) {
                double hce = 0, htok = 0;
                if ((st = graft_eval_heldout_ce(student, data, B, T, p->eval_batches, &hce, &htok, err))) goto done;
                hooks->on_eval(hooks->ctx, step, hce, htok);
            }
            int ckpt = p->state_dir && ((p->checkpoint_every > 0 && step % p->checkpoint_every == 0) || step == total_steps);
            if (ckpt) {
                graft_data_cursor cur = graft_data_get_cursor(data);
                if (dev && ((st = graft_model_download(student, err)) || (st = graft_model_opt_moments_get(student, moments, err))))
                    goto done;
                if ((st = train_checkpoint(p->state_dir, student, moments, total, step, ph, &cur, err))) goto done;
            }
        }
        graft_data_close(data);
        data = NULL;
    }
    /* the trained weights back in the host arrays (saving, CPU-side use) */
    if (dev) st = graft_model_download(student, err);
    goto done;
oom:
    st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "train: out of memory (batch x seq_len x vocab too large?)");
done:
    graft_data_close(data);
    loss_close(&ce);
    loss_close(&kl);
    graft_tkcache_close(tkc);
    free(win); free(ids); free(labels); free(tk_ids);
    free(logits); free(dce); free(tlogits); free(tk_logp); free(tk_mass);
    free(moments); free(spans);
    return st;
}
