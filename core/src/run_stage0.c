/* run_stage0.c: the Stage 0 sweep and the select stage of `graft run`. Stage 0 writes its table
 * to the run log and to <out>/stage0.csv (what select reads, also in a later invocation); select
 * writes the hybrid spec(s) and stores each in the run log as text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "host.h"
#include "hybrid_spec.h"
#include "run_ctx.h"
#include "select.h"
#include "stage0.h"
#include "train_state.h"

typedef struct s0_log {
    graft_run_ctx *c;
    int32_t stage;
    const graft_stage0_pair *pairs;
    int64_t n_pairs, steps, print_every, log_every;
    double *train_nloss;      /* per pair, the latest step's */
    double sum_tok_s;
    int64_t n_steps;
    double lr, wall_s;        /* the latest step's lr; seconds of the steps so far */
    graft_status st;
    graft_err err;
} s0_log;

static void s0_on_train(void *ctx, int64_t step, int64_t pair, double nloss, double lr, double gn) {
    (void)gn;
    s0_log *t = ctx;
    t->train_nloss[pair] = nloss;
    t->lr = lr;
    if (t->st || (step % t->log_every && step != t->steps)) return;
    graft_stage0_pair_row row = {step, (int32_t)t->pairs[pair].layer, t->pairs[pair].mixer, nloss, NAN};
    t->st = graft_runlog_append_stage0_pair(t->c->log, t->stage, &row, &t->err);
}

static void s0_on_eval(void *ctx, int64_t step, int64_t pair, double heldout) {
    s0_log *t = ctx;
    if (t->st) return;
    graft_stage0_pair_row row = {step, (int32_t)t->pairs[pair].layer, t->pairs[pair].mixer, NAN, heldout};
    t->st = graft_runlog_append_stage0_pair(t->c->log, t->stage, &row, &t->err);
}

static void s0_on_step(void *ctx, int64_t step, double seconds, int64_t tokens) {
    s0_log *t = ctx;
    double tok_s = seconds > 0 ? (double)tokens / seconds : 0;
    t->sum_tok_s += tok_s;
    t->n_steps++;
    t->wall_s += seconds;
    double mean = 0;
    for (int64_t i = 0; i < t->n_pairs; i++) mean += t->train_nloss[i];
    mean /= (double)t->n_pairs;
    /* the stage's train table (docs/runlog.md): the mean over the pairs; pair-tokens/s is
     * tokens_per_s times the number of pairs (the rows of stage0_results) */
    if (!t->st && (step % t->log_every == 0 || step == t->steps)) {
        graft_train_row row = {.step = step, .phase = 0, .loss = mean, .ce = NAN, .kl = NAN, .lr = t->lr,
                               .grad_norm = NAN, .tokens = step * tokens, .tokens_per_s = tok_s, .wall_s = t->wall_s};
        t->st = graft_runlog_append_train(t->c->log, t->stage, &row, &t->err);
    }
    if (step % t->print_every && step != t->steps && step != 1) return;
    fprintf(t->c->out, "  step %5lld/%lld  mean normalized loss %.4f over %lld pairs  %.0f tok/s (%.0f pair-tok/s)\n",
            (long long)step, (long long)t->steps, mean, (long long)t->n_pairs, tok_s,
            tok_s * (double)t->n_pairs);
    fflush(t->c->out);
}

static void s0_on_ready(void *ctx, double seconds, double student_bytes) {
    s0_log *t = ctx;
    fprintf(t->c->out, "  %lld students ready in %.1f s (%.2f GB of weights, gradients and moments)\n",
            (long long)t->n_pairs, seconds, student_bytes / 1e9);
    fflush(t->c->out);
}

static graft_status write_csv(const char *path, const graft_stage0_result *res, int64_t n, graft_err *err) {
    size_t cap = 128 + (size_t)n * 96, len = 0;
    char *buf = malloc(cap);
    if (!buf) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    len += (size_t)snprintf(buf, cap, "# graft Stage 0 table: held-out normalized loss per (layer, mixer), 0-based layers\n"
                                      "mixer,layer0,normalized_loss,heldout_tokens\n");
    for (int64_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s,%lld,%.17g,%.0f\n", res[i].mixer, (long long)res[i].layer,
                                res[i].heldout_nloss, res[i].heldout_tokens);
    graft_status st = graft_fs_write_atomic(path, buf, len, err);
    free(buf);
    return st;
}

static int by_loss(const void *a, const void *b) {
    const graft_stage0_result *x = a, *y = b;
    if (x->heldout_nloss != y->heldout_nloss) return x->heldout_nloss < y->heldout_nloss ? -1 : 1;
    return x->layer < y->layer ? -1 : x->layer > y->layer;
}

graft_status graft_run_stage0(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    const graft_stage0_params *sp = &s->as.stage0;
    const graft_train_params *tp = &s->train;
    int64_t L = c->cfg.n_layer;
    int64_t *layers = calloc((size_t)L, sizeof *layers);
    graft_stage0_pair *pairs = NULL;
    graft_stage0_result *res = NULL;
    double *tn = NULL;
    graft_model_t *model = NULL;
    graft_data_t *data = NULL;
    graft_status st = GRAFT_STATUS_OK;
    if (!layers) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory");
    int64_t nl = graft_layer_set_expand(&sp->layers, L, layers), n = nl * sp->n_mixers;
    pairs = calloc((size_t)n + 1, sizeof *pairs);
    res = calloc((size_t)n + 1, sizeof *res);
    tn = calloc((size_t)n + 1, sizeof *tn);
    if (!pairs || !res || !tn) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage0: out of memory");
        goto done;
    }
    for (int64_t m = 0, k = 0; m < sp->n_mixers; m++)
        for (int64_t i = 0; i < nl; i++, k++)
            pairs[k] = (graft_stage0_pair){.layer = layers[i], .mixer = sp->mixers[m].name, .kv = sp->mixers[m].kv,
                                           .n_kv = sp->mixers[m].n_kv, .origin = c->r->path};
    double t_load = graft_host_now_s();
    if ((st = graft_run_load_model(c, c->model_dir, &c->r->model, &model, err))) goto done;
    if ((st = graft_run_place(c, model, err))) goto done; /* the sweep runs on the teacher's device */
    fprintf(c->out, "  teacher ready on %s in %.1f s\n", graft_model_backend(model)->name, graft_host_now_s() - t_load);
    fflush(c->out);
    if ((st = graft_run_open_data(c, tp->batch, tp->seq_len, &data, err))) goto done;
    graft_stage0_opts o = graft_stage0_default_opts();
    o.init_teacher = sp->init == GRAFT_STAGE0_INIT_TEACHER;
    o.train_mlp = sp->train_mlp;
    o.steps = tp->steps;
    o.batch = tp->batch;
    o.seq_len = tp->seq_len;
    o.lr = tp->lr;
    o.lr_min = tp->lr_min;
    o.warmup = tp->warmup;
    o.weight_decay = tp->weight_decay;
    o.grad_clip = tp->grad_clip;
    o.beta1 = tp->beta1;
    o.beta2 = tp->beta2;
    o.eps = tp->eps;
    o.eval_every = tp->eval_every;
    o.eval_batches = tp->eval_batches;
    o.seed = (uint64_t)c->r->seed + 104729ull * (uint64_t)(s->index + 1);
    o.out_dir = tp->out;
    char state_dir[GRAFT_RUN_PATH + 16];
    graft_run_state_dir(tp->out, state_dir, sizeof state_dir);
    o.state_dir = state_dir;
    o.checkpoint_every = tp->checkpoint_every;
    o.resume = c->resuming;
    fprintf(c->out, "  %lld pairs (%lld layers x %lld mixers) on %s (%s), one teacher forward per step; %lld steps of %lld x %lld tokens\n",
            (long long)n, (long long)nl, (long long)sp->n_mixers, c->model_dir[0] ? c->model_dir : "the random-init model",
            graft_model_backend(model)->name,
            (long long)tp->steps, (long long)tp->batch, (long long)tp->seq_len);
    s0_log t = {.c = c, .stage = (int32_t)s->index, .pairs = pairs, .n_pairs = n, .steps = tp->steps,
                .print_every = tp->steps >= 10 ? tp->steps / 10 : 1, .log_every = tp->log_every > 0 ? tp->log_every : 1,
                .train_nloss = tn};
    graft_stage0_hooks hooks = {.ctx = &t, .on_train = s0_on_train, .on_eval = s0_on_eval, .on_step = s0_on_step,
                               .on_ready = s0_on_ready};
    /* no stale students or checkpoint from an older run */
    if ((st = graft_fs_remove_tree(tp->out, err))) goto done;
    if (!o.resume && (st = graft_fs_remove_tree(state_dir, err))) goto done;
    if (o.resume && graft_train_state_step(state_dir) >= 0)
        fprintf(c->out, "  resuming from %s at step %lld\n", state_dir, (long long)graft_train_state_step(state_dir));
    if ((st = graft_stage0_run(model, data, pairs, n, &o, &hooks, res, err))) goto done;
    if (t.st) {
        *err = t.err;
        st = t.st;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        graft_stage0_result_row row = {(int32_t)res[i].layer, res[i].mixer, res[i].heldout_nloss, (int64_t)res[i].heldout_tokens};
        if ((st = graft_runlog_append_stage0_result(c->log, (int32_t)s->index, &row, err))) goto done;
    }
    char csv[GRAFT_RUN_PATH + 16];
    graft_run_stage0_csv(tp->out, csv, sizeof csv);
    if ((st = write_csv(csv, res, n, err))) goto done;
    /* the table, layer x mixer, and the ranking */
    char line[1024];
    size_t k = (size_t)snprintf(line, sizeof line, "stage0: held-out normalized loss (0 = perfect, 1 = identity)\n  layer");
    for (int64_t m = 0; m < sp->n_mixers; m++) k += (size_t)snprintf(line + k, sizeof line - k, " %10s", sp->mixers[m].name);
    graft_run_note(c, "%s", line);
    for (int64_t i = 0; i < nl; i++) {
        k = (size_t)snprintf(line, sizeof line, "  %5lld", (long long)layers[i]);
        for (int64_t m = 0; m < sp->n_mixers; m++)
            k += (size_t)snprintf(line + k, sizeof line - k, " %10.4f", res[m * nl + i].heldout_nloss);
        graft_run_note(c, "%s", line);
    }
    qsort(res, (size_t)n, sizeof *res, by_loss);
    k = (size_t)snprintf(line, sizeof line, "  ranking:");
    for (int64_t i = 0; i < n && k + 40 < sizeof line; i++)
        k += (size_t)snprintf(line + k, sizeof line - k, " %lld:%s(%.3f)", (long long)res[i].layer, res[i].mixer,
                              res[i].heldout_nloss);
    graft_run_note(c, "%s", line);
    graft_run_note(c, "  sweep speed: %.0f tok/s x %lld pairs = %.0f pair-tok/s (mean over steps)",
                   t.n_steps ? t.sum_tok_s / (double)t.n_steps : 0.0, (long long)n,
                   t.n_steps ? t.sum_tok_s / (double)t.n_steps * (double)n : 0.0);
    fprintf(c->out, "  wrote %lld students and %s\n", (long long)n, csv);
done:
    graft_data_close(data);
    graft_model_free(model);
    free(layers);
    free(pairs);
    free(res);
    free(tn);
    return st;
}

/* The mixers a spec may use: the latest Stage 0's settings, else bare names (the plugins'
 * defaults) from the table, `list` and `ranges`. */
static graft_status spec_mixers(graft_run_ctx *c, const graft_stage *s, const graft_stage0_table *t,
                                graft_recipe_mixer **out, int64_t *n, graft_err *err) {
    if (c->stage0) {
        *out = NULL;
        *n = c->stage0->n_mixers;
        return GRAFT_STATUS_OK;
    }
    const graft_select_params *sp = &s->as.select;
    int64_t cap = (t ? t->n : 0) + sp->n_list + sp->n_ranges + 1;
    graft_recipe_mixer *m = calloc((size_t)cap, sizeof *m);
    if (!m) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "select: out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < cap - 1; i++) {
        const char *name = t && i < t->n ? t->rows[i].mixer
                         : i - (t ? t->n : 0) < sp->n_list ? sp->list[i - (t ? t->n : 0)].mixer
                                                           : sp->ranges[i - (t ? t->n : 0) - sp->n_list].mixer;
        int seen = 0;
        for (int64_t j = 0; j < k; j++) seen |= !strcmp(m[j].name, name);
        if (!seen) m[k++].name = name;
    }
    *out = m;
    *n = k;
    return GRAFT_STATUS_OK;
}

graft_status graft_run_select(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    const graft_select_params *sp = &s->as.select;
    graft_stage0_table table = {0};
    graft_cost_table cost = {0};
    graft_recipe_mixer *bare = NULL;
    graft_status st = GRAFT_STATUS_OK;
    char from[GRAFT_RUN_PATH + 16];
    const char *src = sp->from;
    if (!src && c->stage0_dir[0]) {
        graft_run_stage0_csv(c->stage0_dir, from, sizeof from);
        src = from;
    }
    if (src) {
        if ((st = graft_stage0_table_load_csv(src, &table, err))) goto done;
    } else if (sp->policy != GRAFT_SELECT_LIST) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: no Stage 0 table: give `from` or run a stage0 stage before",
                           s->pos.field);
        goto done;
    }
    if (sp->cost && (st = graft_cost_table_load_csv(sp->cost, &cost, err))) goto done;
    int64_t n_mixers = 0;
    if ((st = spec_mixers(c, s, src ? &table : NULL, &bare, &n_mixers, err))) goto done;
    const graft_recipe_mixer *mixers = bare ? bare : c->stage0->mixers;
    int64_t runs = sp->policy == GRAFT_SELECT_PERCENTILE ? sp->n_percentiles : 1;
    for (int64_t i = 0; i < runs; i++) {
        graft_select_request req = {.policy = sp->policy, .percentile = sp->policy == GRAFT_SELECT_PERCENTILE ? sp->percentiles[i] : 0,
                                    .count = sp->count, .ranges = sp->ranges, .n_ranges = sp->n_ranges, .list = sp->list,
                                    .n_list = sp->n_list, .cost = sp->cost ? &cost : NULL, .budget = sp->budget,
                                    .n_layer = c->cfg.n_layer, .table_name = src ? src : "(none)"};
        graft_selection sel = {0};
        graft_hybrid_spec *spec = NULL;
        char path[GRAFT_RUN_PATH];
        graft_select_out_path(sp, req.percentile, path, sizeof path);
        if ((st = graft_select_run(src ? &table : NULL, &req, &sel, err))) goto done;
        st = graft_hybrid_spec_from_selection(&sel, mixers, n_mixers, c->stage0_dir[0] ? c->stage0_dir : NULL, &spec, err);
        if (!st) st = graft_hybrid_spec_write(spec, path, err);
        char *text = NULL;
        size_t text_len = 0;
        if (!st) st = graft_fs_read_file(path, &text, &text_len, err); /* the spec as written, for the log */
        if (!st) {
            char name[64] = "hybrid_spec";
            if (runs > 1) snprintf(name, sizeof name, "hybrid_spec_p%g", req.percentile);
            for (char *q = name; *q; q++)
                if (*q == '.') *q = '_';
            st = graft_runlog_set_text(c->log, (int32_t)s->index, name, text, err);
        }
        if (!st) {
            char line[1024];
            size_t k = (size_t)snprintf(line, sizeof line, "select -> %s:", path);
            for (int64_t m = 0; m < n_mixers; m++) {
                int64_t ls[1024];
                int64_t nl = graft_selection_layers(&sel, mixers[m].name, ls);
                k += (size_t)snprintf(line + k, sizeof line - k, " %s [", mixers[m].name);
                for (int64_t j = 0; j < nl && k + 16 < sizeof line; j++)
                    k += (size_t)snprintf(line + k, sizeof line - k, "%s%lld", j ? ", " : "", (long long)ls[j]);
                k += (size_t)snprintf(line + k, sizeof line - k, "]");
            }
            graft_run_note(c, "%s", line);
            fprintf(c->out, "  %s\n", line);
        }
        free(text);
        graft_hybrid_spec_free(spec);
        graft_selection_free(&sel);
        if (st) goto done;
    }
done:
    free(bare);
    graft_stage0_table_free(&table);
    graft_cost_table_free(&cost);
    return st;
}
