/* run_train.c: the training stages of `graft run`: pretrain (CE from scratch or from a model) and
 * stage1 (assemble the hybrid from the spec and the Stage 0 students, then distill it from the
 * teacher). Both write train rows and held-out evals to the run log, checkpoint to "<out>.state"
 * and resume from it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "hybrid.h"
#include "hybrid_spec.h"
#include "run_ctx.h"
#include "train.h"
#include "train_state.h"

typedef struct train_log {
    graft_run_ctx *c;
    int32_t stage;
    const char *model;       /* eval rows' model name */
    int64_t total_steps, print_every, log_every;
    double last_loss, last_tok_s, sum_tok_s;
    int64_t n_rows;
    graft_status st;         /* first run-log failure (reported after the stage) */
    graft_err err;
} train_log;

static void on_step(void *ctx, const graft_train_row *row) {
    train_log *t = ctx;
    t->last_loss = row->loss;
    t->last_tok_s = row->tokens_per_s;
    t->sum_tok_s += row->tokens_per_s;
    t->n_rows++;
    if (!t->st && (row->step % t->log_every == 0 || row->step == t->total_steps))
        t->st = graft_runlog_append_train(t->c->log, t->stage, row, &t->err);
    if (row->step % t->print_every == 0 || row->step == t->total_steps || row->step == 1) {
        fprintf(t->c->out, "  step %5lld/%lld  loss %.4f", (long long)row->step, (long long)t->total_steps, row->loss);
        if (!isnan(row->kl)) fprintf(t->c->out, " (ce %.4f, kl %.4f)", row->ce, row->kl);
        fprintf(t->c->out, "  lr %.2e  |g| %.3f  %.0f tok/s\n", row->lr, row->grad_norm, row->tokens_per_s);
        fflush(t->c->out);
    }
}

static graft_status log_eval(graft_run_ctx *c, int32_t stage, const char *model, double ce, double tokens, int64_t step,
                             graft_err *err);

static void on_eval(void *ctx, int64_t step, double ce, double tokens) {
    train_log *t = ctx;
    if (!t->st) t->st = log_eval(t->c, t->stage, t->model, ce, tokens, step, &t->err);
    fprintf(t->c->out, "  step %5lld  held-out ppl %.3f (%.0f tokens)\n", (long long)step, exp(ce), tokens);
}

/* Options common to pretrain and stage1 from the stage's keys. */
static void train_opts(graft_run_ctx *c, const graft_stage *s, graft_train_opts *p, char *state_dir, size_t size) {
    const graft_train_params *tp = &s->train;
    *p = graft_train_default_opts();
    p->n_phases = 1;
    p->phases[0] = (graft_train_phase){.steps = tp->steps, .batch = tp->batch, .seq_len = tp->seq_len};
    p->lr = tp->lr;
    p->lr_min = tp->lr_min;
    p->warmup = tp->warmup;
    p->accum = tp->accum;
    p->weight_decay = tp->weight_decay;
    p->grad_clip = tp->grad_clip;
    p->beta1 = tp->beta1;
    p->beta2 = tp->beta2;
    p->eps = tp->eps;
    p->eval_every = tp->eval_every;
    p->eval_batches = tp->eval_batches;
    p->checkpoint_every = tp->checkpoint_every;
    p->holdout_fraction = c->r->data.heldout_fraction;
    p->heldout_paths = c->r->data.heldout;
    p->n_heldout = c->r->data.n_heldout;
    p->seed = (uint64_t)c->r->data.seed + 7919ull * (uint64_t)(s->index + 1);
    graft_run_state_dir(tp->out, state_dir, size);
    p->state_dir = state_dir;
    p->resume = c->resuming;
}

/* Held-out perplexity of m with the stage's last phase shape. */
static graft_status heldout(graft_run_ctx *c, graft_model_t *m, const graft_train_opts *p, double *ce, double *tokens,
                            graft_err *err) {
    const graft_train_phase *ph = &p->phases[p->n_phases - 1];
    graft_data_t *d = NULL;
    graft_status st = graft_run_open_data(c, ph->batch, ph->seq_len, &d, err);
    if (!st) st = graft_eval_heldout_ce(m, d, ph->batch, ph->seq_len, p->eval_batches, ce, tokens, err);
    graft_data_close(d);
    return st;
}

static graft_status log_eval(graft_run_ctx *c, int32_t stage, const char *model, double ce, double tokens, int64_t step,
                             graft_err *err) {
    graft_eval_row r1 = {model, "nll", ce, (int64_t)tokens, step}, r2 = {model, "ppl", exp(ce), (int64_t)tokens, step};
    graft_status st = graft_runlog_append_eval(c->log, stage, &r1, err);
    return st ? st : graft_runlog_append_eval(c->log, stage, &r2, err);
}

static graft_status run_training(graft_run_ctx *c, const graft_stage *s, graft_model_t *student, graft_model_t *teacher,
                                 graft_train_opts *p, const char *model_name, train_log *tl, graft_err *err) {
    int64_t total = 0;
    for (int i = 0; i < p->n_phases; i++) total += p->phases[i].steps;
    *tl = (train_log){.c = c, .stage = (int32_t)s->index, .model = model_name, .total_steps = total,
                      .print_every = total >= 20 ? total / 20 : 1, .log_every = s->train.log_every > 0 ? s->train.log_every : 1};
    if (!p->resume) { /* a fresh stage must not pick up an older run's checkpoint later */
        graft_status st = graft_fs_remove_tree(p->state_dir, err);
        if (st) return st;
    } else {
        int64_t at = graft_train_state_step(p->state_dir);
        if (at >= 0) fprintf(c->out, "  resuming from %s at step %lld\n", p->state_dir, (long long)at);
    }
    graft_train_hooks hooks = {.ctx = tl, .on_step = on_step, .on_eval = on_eval};
    graft_status st = graft_train_run(student, teacher, c->r->data.train, c->r->data.n_train, p, &hooks, err);
    if (!st && tl->st) {
        *err = tl->err;
        st = tl->st;
    }
    return st;
}

graft_status graft_run_pretrain(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    graft_model_t *m = NULL;
    graft_train_opts p;
    char state_dir[GRAFT_RUN_PATH + 16], tokdir[GRAFT_RUN_PATH];
    train_opts(c, s, &p, state_dir, sizeof state_dir);
    p.alpha = 1.0;
    graft_status st = graft_run_load_model(c, c->model_dir, &c->r->model, &m, err);
    if (st) return st;
    if ((st = graft_run_place(c, m, err))) goto done;
    fprintf(c->out, "  model: %s (%lld parameters); %lld steps of %lld x %lld tokens\n",
            c->model_dir[0] ? c->model_dir : "random init", (long long)graft_model_numel(m), (long long)s->train.steps,
            (long long)s->train.batch, (long long)s->train.seq_len);
    train_log tl;
    if ((st = run_training(c, s, m, NULL, &p, "model", &tl, err))) goto done;
    double ce = NAN, tok = 0;
    if ((st = heldout(c, m, &p, &ce, &tok, err))) goto done;
    if ((st = log_eval(c, (int32_t)s->index, "model", ce, tok, -1, err))) goto done;
    if ((st = graft_hybrid_save(m, NULL, s->train.out, graft_run_tokenizer_dir(c, tokdir, sizeof tokdir), err))) goto done;
    graft_run_note(c, "pretrain: %lld steps, final train loss %.4f, held-out ppl %.3f, %.0f tok/s (mean); model in %s",
                   (long long)s->train.steps, tl.last_loss, exp(ce), tl.n_rows ? tl.sum_tok_s / (double)tl.n_rows : 0.0,
                   s->train.out);
    fprintf(c->out, "  held-out ppl %.3f; wrote %s\n", exp(ce), s->train.out);
done:
    graft_model_free(m);
    return st;
}

/* The hybrid's layers from a spec file: which mixer, its settings, its Stage 0 student's weights. */
static graft_status spec_layers(const graft_hybrid_spec *spec, graft_hybrid_layer *layers, const char *origin) {
    for (int64_t l = 0; l < spec->n_layer; l++) {
        layers[l] = (graft_hybrid_layer){0};
        if (!strcmp(spec->layer_types[l], GRAFT_FULL_ATTENTION)) continue;
        layers[l].mixer = spec->layer_types[l];
        layers[l].origin = origin;
        layers[l].weights = spec->weights[l];
        for (int64_t k = 0; k < spec->n_mixers; k++)
            if (!strcmp(spec->mixers[k].name, spec->layer_types[l])) {
                layers[l].kv = spec->mixers[k].kv;
                layers[l].n_kv = spec->mixers[k].n_kv;
            }
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_run_stage1(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    const graft_stage1_params *sp = &s->as.stage1;
    const char *spec_path = sp->spec ? sp->spec : (c->spec[0] ? c->spec : NULL);
    if (!spec_path)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: spec: none given and no earlier select stage wrote one",
                             s->pos.field);
    graft_hybrid_spec *spec = NULL;
    graft_model_t *base = NULL, *teacher = NULL, *hybrid = NULL;
    graft_hybrid_layer *layers = NULL;
    char *note = NULL;
    char state_dir[GRAFT_RUN_PATH + 16], tokdir[GRAFT_RUN_PATH];
    graft_status st = graft_hybrid_spec_load(spec_path, &spec, err);
    if (st) return st;
    if (spec->n_layer != c->cfg.n_layer) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: n_layer %lld, the model has %lld layers", spec_path,
                           (long long)spec->n_layer, (long long)c->cfg.n_layer);
        goto done;
    }
    layers = calloc((size_t)spec->n_layer, sizeof *layers);
    if (!layers) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "stage1: out of memory");
        goto done;
    }
    spec_layers(spec, layers, spec_path);
    if ((st = graft_run_load_model(c, c->model_dir, &c->r->model, &base, err))) goto done;
    if ((st = graft_hybrid_assemble(base, layers, (uint64_t)c->r->seed, &hybrid, &note, err))) goto done;
    graft_model_free(base);
    base = NULL;
    if ((st = graft_run_place(c, hybrid, err))) goto done;
    /* with a complete teacher cache the teacher is not needed (DESIGN: the cache replaces it) */
    int cached = sp->teacher_cache && graft_fs_exists(sp->teacher_cache);
    if (!cached && (st = graft_run_load_model(c, c->teacher_dir, c->r->teacher_is_model ? &c->r->model : &c->r->teacher,
                                              &teacher, err)))
        goto done;
    if (teacher && (st = graft_run_place(c, teacher, err))) goto done; /* on the student's device */
    if (sp->teacher_cache)
        fprintf(c->out, "  teacher top-k %s %s\n", cached ? "read from" : "precomputed first into", sp->teacher_cache);
    {
        char grafted[512] = "";
        size_t n = 0;
        for (int64_t l = 0; l < spec->n_layer && n + 32 < sizeof grafted; l++)
            if (layers[l].mixer) n += (size_t)snprintf(grafted + n, sizeof grafted - n, " %lld:%s", (long long)l, layers[l].mixer);
        fprintf(c->out, "  hybrid from %s:%s\n", spec_path, grafted[0] ? grafted : " (no grafted layer)");
    }
    if (note) fprintf(c->out, "  assembly notes:\n%s", note);
    graft_train_opts p;
    train_opts(c, s, &p, state_dir, sizeof state_dir);
    p.n_phases = (int)sp->n_phases;
    if (sp->n_phases > GRAFT_TRAIN_MAX_PHASES) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: phases: %lld, at most %d", s->pos.field, (long long)sp->n_phases,
                           GRAFT_TRAIN_MAX_PHASES);
        goto done;
    }
    for (int64_t i = 0; i < sp->n_phases; i++)
        p.phases[i] = (graft_train_phase){sp->phases[i].steps, sp->phases[i].batch, sp->phases[i].seq_len};
    p.alpha = sp->alpha;
    p.k = sp->k;
    p.temperature = sp->temperature;
    p.teacher_cache = sp->teacher_cache;
    /* perplexity at assembly (what Stage 0 gives Stage 1) and the teacher's, on the same windows */
    double ce0 = NAN, ce_t = NAN, tok = 0, ce1 = NAN;
    if ((st = heldout(c, hybrid, &p, &ce0, &tok, err))) goto done;
    if (teacher && (st = heldout(c, teacher, &p, &ce_t, &tok, err))) goto done;
    if ((st = log_eval(c, (int32_t)s->index, "hybrid", ce0, tok, 0, err))) goto done;
    if (teacher && (st = log_eval(c, (int32_t)s->index, "teacher", ce_t, tok, -1, err))) goto done;
    fprintf(c->out, "  held-out ppl at assembly %.3f (teacher %.3f)\n", exp(ce0), exp(ce_t));
    train_log tl;
    if ((st = run_training(c, s, hybrid, teacher, &p, "hybrid", &tl, err))) goto done;
    if ((st = heldout(c, hybrid, &p, &ce1, &tok, err))) goto done;
    if ((st = log_eval(c, (int32_t)s->index, "hybrid", ce1, tok, tl.total_steps, err))) goto done;
    if ((st = graft_hybrid_save(hybrid, layers, s->train.out, graft_run_tokenizer_dir(c, tokdir, sizeof tokdir), err)))
        goto done;
    fprintf(c->out, "  held-out ppl after Stage 1 %.3f (at assembly %.3f, teacher %.3f); wrote %s\n", exp(ce1), exp(ce0),
            exp(ce_t), s->train.out);
    graft_run_note(c, "stage1: held-out ppl %.3f at assembly -> %.3f after %lld steps (teacher %.3f); %.0f tok/s (mean); hybrid in %s",
                   exp(ce0), exp(ce1), (long long)tl.total_steps, exp(ce_t),
                   tl.n_rows ? tl.sum_tok_s / (double)tl.n_rows : 0.0, s->train.out);
done:
    free(note);
    free(layers);
    graft_hybrid_spec_free(spec);
    graft_model_free(base);
    graft_model_free(teacher);
    graft_model_free(hybrid);
    return st;
}
