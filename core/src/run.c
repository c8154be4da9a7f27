/* run.c: `graft run` (run.h): recipe -> checks -> stages in order, progress file, resume, summary.
 * The stages themselves are in run_train.c (pretrain, stage1), run_stage0.c (stage0, select),
 * run_eval.c (eval) and run_bench.c (bench). */
#include "run.h"
#include "backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "data.h"
#include "fsutil.h"
#include "graft/graft.h"
#include "host.h"
#include "hybrid.h"
#include "hybrid_spec.h"
#include "plugin_loader.h"
#include "run_ctx.h"
#include "select.h"
#include "tokenizer.h"
#include "train_state.h"

#ifndef GRAFT_GIT_HASH
#define GRAFT_GIT_HASH ""
#endif

graft_run_opts graft_run_default_opts(void) {
    graft_run_opts o;
    memset(&o, 0, sizeof o);
    o.only_stage = -1;
    return o;
}

void graft_run_note(graft_run_ctx *c, const char *fmt, ...) {
    size_t n = strlen(c->summary);
    if (n + 2 >= sizeof c->summary) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->summary + n, sizeof c->summary - n - 1, fmt, ap);
    va_end(ap);
    n = strlen(c->summary);
    c->summary[n] = '\n';
    c->summary[n + 1] = 0;
}

void graft_run_state_dir(const char *out, char *buf, size_t size) { snprintf(buf, size, "%s.state", out); }

void graft_run_stage0_csv(const char *stage0_dir, char *buf, size_t size) {
    snprintf(buf, size, "%s/stage0.csv", stage0_dir);
}

const char *graft_run_tokenizer_dir(graft_run_ctx *c, char *buf, size_t size) {
    if (!c->tokenizer[0]) return NULL;
    snprintf(buf, size, "%s", c->tokenizer);
    size_t n = strlen(buf);
    if (n > 5 && !strcmp(buf + n - 5, ".json")) { /* a tokenizer.json file: its directory */
        char *slash = strrchr(buf, '/');
        if (slash) *slash = 0;
        else snprintf(buf, size, ".");
    }
    return buf;
}

graft_status graft_run_load_model(graft_run_ctx *c, const char *dir, const graft_model_ref *ref,
                                  graft_model_t **out, graft_err *err) {
    (void)c;
    *out = NULL;
    if (dir && dir[0]) return graft_hybrid_load(dir, out, err);
    if (!ref->random_init)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "run: no model directory for %s", ref->pos.field);
    graft_qwen3_config cfg;
    graft_status st = graft_config_load(ref->config, &cfg, err);
    if (st) return st;
    if ((st = graft_model_create(&cfg, NULL, out, err))) return st;
    if ((st = graft_model_init_random(*out, (uint64_t)ref->seed, err))) {
        graft_model_free(*out);
        *out = NULL;
    }
    return st;
}

graft_status graft_run_place(graft_run_ctx *c, graft_model_t *m, graft_err *err) {
    if (!c->be || c->be->device == GRAFT_DEVICE_CPU) return GRAFT_STATUS_OK;
    return graft_model_set_backend(m, c->be, err);
}

graft_status graft_run_open_data(graft_run_ctx *c, int64_t B, int64_t T, graft_data_t **out, graft_err *err) {
    graft_data_params dp = graft_data_default_params();
    dp.B = B;
    dp.T = T;
    dp.shuffle = 1;
    dp.seed = (uint64_t)c->r->data.seed;
    dp.holdout_fraction = c->r->data.heldout_fraction;
    dp.heldout_paths = c->r->data.heldout;
    dp.n_heldout = (size_t)c->r->data.n_heldout;
    dp.max_vocab = (uint64_t)c->cfg.vocab_size;
    return graft_data_open(c->r->data.train, (size_t)c->r->data.n_train, &dp, out, err);
}

/* ---- recipe-level facts --------------------------------------------------------------------- */

typedef struct name_list {
    char names[32][64];
    const char *ptrs[33];
    int n;
} name_list;

static void collect_mixer(void *arg, const char *path, const graft_loaded_plugin *p, const graft_err *refusal) {
    (void)path;
    name_list *l = arg;
    if (refusal || !p || l->n >= 32) return;
    const graft_mixer *m = graft_plugin_mixer(p);
    if (!m) return;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], m->name)) return;
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", m->name);
    l->ptrs[l->n] = l->names[l->n];
    l->n++;
    l->ptrs[l->n] = NULL;
}

static graft_status model_config(const graft_model_ref *ref, graft_qwen3_config *cfg, graft_err *err) {
    if (ref->random_init) return graft_config_load(ref->config, cfg, err);
    char path[GRAFT_RUN_PATH + 16];
    snprintf(path, sizeof path, "%s/config.json", ref->path);
    return graft_config_load_hybrid(path, cfg, err);
}

/* What a stage leaves behind, recorded in the context (also for stages completed earlier). */
static void stage_outputs(graft_run_ctx *c, const graft_stage *s) {
    switch (s->kind) {
    case GRAFT_STAGE_PRETRAIN:
        snprintf(c->model_dir, sizeof c->model_dir, "%s", s->train.out);
        if (c->r->teacher_is_model) snprintf(c->teacher_dir, sizeof c->teacher_dir, "%s", s->train.out);
        break;
    case GRAFT_STAGE_STAGE0:
        snprintf(c->stage0_dir, sizeof c->stage0_dir, "%s", s->train.out);
        c->stage0 = &s->as.stage0;
        break;
    case GRAFT_STAGE_SELECT:
        c->spec[0] = 0;
        if (s->as.select.policy != GRAFT_SELECT_PERCENTILE || s->as.select.n_percentiles <= 1)
            graft_select_out_path(&s->as.select, s->as.select.n_percentiles ? s->as.select.percentiles[0] : 0,
                                  c->spec, sizeof c->spec);
        break;
    case GRAFT_STAGE_STAGE1:
        snprintf(c->hybrid_dir, sizeof c->hybrid_dir, "%s", s->train.out);
        break;
    default:
        break;
    }
}

/* ---- progress file: "<run_log>.progress", one "done <index> <kind>" line per finished stage --- */

static void progress_path(const graft_run_ctx *c, char *buf, size_t size) {
    snprintf(buf, size, "%s.progress", c->r->run_log);
}

static int64_t progress_done(const graft_run_ctx *c) {
    char path[GRAFT_RUN_PATH + 16];
    progress_path(c, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long long idx;
    char kind[32];
    int64_t next = 0;
    while (fscanf(f, "done %lld %31s\n", &idx, kind) == 2) {
        if (idx != next || idx >= c->r->n_stages || strcmp(kind, graft_stage_kind_name(c->r->stages[idx].kind))) break;
        next++;
    }
    fclose(f);
    return next;
}

static graft_status progress_write(const graft_run_ctx *c, int64_t n_done, graft_err *err) {
    char path[GRAFT_RUN_PATH + 16], text[8192];
    progress_path(c, path, sizeof path);
    size_t n = 0;
    text[0] = 0;
    for (int64_t i = 0; i < n_done && n + 64 < sizeof text; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "done %lld %s\n", (long long)i,
                              graft_stage_kind_name(c->r->stages[i].kind));
    return graft_fs_write_atomic(path, text, n, err);
}

/* ---- --check ---------------------------------------------------------------------------------- */

static graft_status check_model_dir(const char *dir, const char *what, graft_err *err) {
    char p1[GRAFT_RUN_PATH + 64], p2[GRAFT_RUN_PATH + 64];
    snprintf(p1, sizeof p1, "%s/model.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model.safetensors.index.json", dir);
    if (!graft_fs_exists(p1) && !graft_fs_exists(p2))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: no model.safetensors or model.safetensors.index.json",
                             what, dir);
    return GRAFT_STATUS_OK;
}

static graft_status check_mixers(graft_run_ctx *c, const graft_stage0_params *s0, graft_err *err) {
    for (int64_t i = 0; i < s0->n_mixers; i++) {
        const graft_recipe_mixer *rm = &s0->mixers[i];
        graft_loaded_plugin *lp = NULL;
        graft_status st = graft_plugin_load(rm->name, GRAFT_PLUGIN_MIXER, &lp, err);
        if (st) return graft_err_prefix(err, rm->pos.where);
        const graft_mixer *mx = graft_plugin_mixer(lp);
        if (c->be && (st = graft_mixer_check_device(mx, c->be->device, err))) {
            graft_plugin_unload(lp);
            return graft_err_prefix(err, rm->pos.where);
        }
        graft_mixer_cfg mc = {.struct_size = sizeof mc, .n_embd = c->cfg.hidden_size, .layer_index = 0,
                              .n_layer = c->cfg.n_layer, .n_head = c->cfg.n_head, .n_kv_head = c->cfg.n_kv_head,
                              .head_dim = c->cfg.head_dim, .rope_theta = c->cfg.rope_theta,
                              .norm_eps = c->cfg.rms_norm_eps, .kv = rm->kv, .n_kv = rm->n_kv,
                              .origin = c->r->path,
                              .carry_role = mx->carry_name ? GRAFT_CARRY_PRODUCER : GRAFT_CARRY_NONE};
        void *layer = NULL;
        st = mx->create(graft_host_get(), &mc, &layer, err);
        if (!st) mx->destroy(layer);
        graft_plugin_unload(lp);
        if (st) return st;
    }
    return GRAFT_STATUS_OK;
}

static graft_status run_check(graft_run_ctx *c, graft_err *err) {
    const graft_recipe *r = c->r;
    graft_status st;
    if (!r->model.random_init && (st = check_model_dir(r->model.path, r->model.pos.where, err))) return st;
    if (!r->teacher_is_model) {
        graft_qwen3_config tc;
        if ((st = model_config(&r->teacher, &tc, err))) {
            char at[600];
            snprintf(at, sizeof at, "%s: %s", r->teacher.pos.where ? r->teacher.pos.where : r->path,
                     r->teacher.pos.field ? r->teacher.pos.field : "teacher");
            return graft_err_prefix(err, at);
        }
        if (!r->teacher.random_init && (st = check_model_dir(r->teacher.path, r->teacher.pos.where, err))) return st;
        if (tc.vocab_size != c->cfg.vocab_size)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: teacher: vocabulary %lld, the model's is %lld: they must be equal",
                                 r->teacher.pos.where, (long long)tc.vocab_size, (long long)c->cfg.vocab_size);
    }
    if (c->tokenizer[0]) {
        graft_tokenizer_t *tok = NULL;
        if ((st = graft_tokenizer_load(c->tokenizer, &tok, err))) return st;
        uint32_t nv = graft_tokenizer_n_vocab(tok);
        graft_tokenizer_free(tok);
        if ((int64_t)nv > c->cfg.vocab_size)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: tokenizer: %u ids, more than the model's vocab_size %lld",
                                 c->tokenizer, nv, (long long)c->cfg.vocab_size);
    }
    if (r->has_data) {
        graft_data_t *d = NULL;
        if ((st = graft_run_open_data(c, 1, 1, &d, err))) {
            char at[600];
            snprintf(at, sizeof at, "%s: data", r->path);
            return graft_err_prefix(err, at);
        }
        graft_data_close(d);
    }
    for (int64_t i = 0; i < r->n_stages; i++) {
        const graft_stage *s = &r->stages[i];
        switch (s->kind) {
        case GRAFT_STAGE_STAGE0:
            if ((st = check_mixers(c, &s->as.stage0, err))) return st;
            break;
        case GRAFT_STAGE_SELECT: {
            const graft_select_params *sp = &s->as.select;
            if (sp->from) {
                graft_stage0_table t = {0};
                if ((st = graft_stage0_table_load_csv(sp->from, &t, err))) return st;
                graft_stage0_table_free(&t);
            }
            if (sp->cost) {
                graft_cost_table t = {0};
                if ((st = graft_cost_table_load_csv(sp->cost, &t, err))) return st;
                graft_cost_table_free(&t);
            }
            break;
        }
        case GRAFT_STAGE_STAGE1:
            if (s->as.stage1.spec && graft_fs_exists(s->as.stage1.spec)) {
                graft_hybrid_spec *spec = NULL;
                if ((st = graft_hybrid_spec_load(s->as.stage1.spec, &spec, err))) return st;
                int64_t nl = spec->n_layer;
                graft_hybrid_spec_free(spec);
                if (nl != c->cfg.n_layer)
                    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: n_layer %lld, the model has %lld layers",
                                         s->as.stage1.spec, (long long)nl, (long long)c->cfg.n_layer);
            }
            break;
        case GRAFT_STAGE_BENCH:
            for (int64_t k = 0; k < s->as.bench.n_models; k++) {
                const graft_model_choice *mc = &s->as.bench.models[k];
                if (mc->kind == GRAFT_MODEL_CHOICE_PATH && (st = check_model_dir(mc->path, mc->pos.where, err))) return st;
            }
            break;
        default:
            break;
        }
    }
    return GRAFT_STATUS_OK;
}

/* ---- the run ---------------------------------------------------------------------------------- */

static graft_status run_stage(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    switch (s->kind) {
    case GRAFT_STAGE_PRETRAIN: return graft_run_pretrain(c, s, err);
    case GRAFT_STAGE_STAGE0: return graft_run_stage0(c, s, err);
    case GRAFT_STAGE_SELECT: return graft_run_select(c, s, err);
    case GRAFT_STAGE_STAGE1: return graft_run_stage1(c, s, err);
    case GRAFT_STAGE_EVAL: return graft_run_eval(c, s, err);
    case GRAFT_STAGE_BENCH: return graft_run_bench(c, s, err);
    default: /* the recipe loader admits no other kind */
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: %s: stage kind %d has no runner", s->pos.where,
                             s->pos.field, (int)s->kind);
    }
}

graft_status graft_run(const graft_run_opts *o, graft_err *err) {
    graft_run_ctx *c = calloc(1, sizeof *c);
    if (!c) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "run: out of memory");
    c->o = o;
    c->out = o->out ? o->out : stdout;
    graft_recipe *r = NULL;
    char *recipe_text = NULL;
    graft_status st;
    name_list mixers = {0};
    graft_plugin_scan(collect_mixer, &mixers);
    if ((st = graft_recipe_load(o->recipe, mixers.ptrs, &r, err))) goto done;
    c->r = r;
    if (r->threads > 0 && !getenv("GRAFT_THREADS")) { /* before the first use of the thread pool */
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)r->threads);
        setenv("GRAFT_THREADS", t, 1);
    }
    if ((st = model_config(&r->model, &c->cfg, err))) {
        char at[600];
        snprintf(at, sizeof at, "%s: %s", r->model.pos.where ? r->model.pos.where : r->path,
                 r->model.pos.field ? r->model.pos.field : "model");
        graft_err_prefix(err, at);
        goto done;
    }
    if ((st = graft_recipe_check_layers(r, c->cfg.n_layer, err))) goto done;
    if (r->device_cuda) {
        /* Every stage runs on CUDA: pretrain, stage1 and eval train and evaluate through the fused
         * loss and device AdamW (train.c), stage0 trains its students on the device (stage0.c),
         * select has no device work, bench times the device. */
        const graft_backend *be = NULL;
        if ((st = graft_backend_open(r->device, r->path, &be, err))) goto done;
        c->be = be;
    }
    if (r->tokenizer) snprintf(c->tokenizer, sizeof c->tokenizer, "%s", r->tokenizer);
    else if (!r->model.random_init) snprintf(c->tokenizer, sizeof c->tokenizer, "%s", r->model.path);
    if (!r->model.random_init) snprintf(c->model_dir, sizeof c->model_dir, "%s", r->model.path);
    if (r->teacher_is_model) snprintf(c->teacher_dir, sizeof c->teacher_dir, "%s", c->model_dir);
    else if (!r->teacher.random_init) snprintf(c->teacher_dir, sizeof c->teacher_dir, "%s", r->teacher.path);
    if ((st = run_check(c, err))) goto done;
    if (o->check_only) {
        fprintf(c->out, "%s: OK: %lld stage(s), model %lld layers x %lld wide, vocabulary %lld\n", r->path,
                (long long)r->n_stages, (long long)c->cfg.n_layer, (long long)c->cfg.hidden_size,
                (long long)c->cfg.vocab_size);
        goto done;
    }
    if (o->only_stage >= r->n_stages) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "--stage %lld: the recipe has stages 0..%lld",
                           (long long)o->only_stage, (long long)(r->n_stages - 1));
        goto done;
    }
    /* where to start, and what earlier stages left on disk */
    int64_t first = 0, last = r->n_stages - 1;
    if (o->only_stage >= 0) first = last = o->only_stage;
    else if (o->resume) first = progress_done(c);
    if (first > last) {
        fprintf(c->out, "%s: every stage is done (%s.progress); nothing to resume\n", r->path, r->run_log);
        goto done;
    }
    for (int64_t i = 0; i < first; i++) stage_outputs(c, &r->stages[i]);
    c->resuming = o->resume && o->only_stage < 0;
    c->resume_stage = first;
    {
        char dir[GRAFT_RUN_PATH];
        snprintf(dir, sizeof dir, "%s", r->run_log);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            if ((st = graft_fs_mkdir_p(dir, err))) goto done;
        }
    }
    /* the run log: a fresh one, or continued (resume, or one stage of an existing run) */
    size_t recipe_len = 0;
    if ((st = graft_fs_read_file(r->path, &recipe_text, &recipe_len, err))) goto done;
    graft_runlog_meta meta = graft_runlog_default_meta();
    meta.recipe_text = recipe_text;
    meta.device = r->device ? r->device : "cpu";
    meta.git_hash = GRAFT_GIT_HASH;
    meta.command_line = o->command_line;
    int reopen = (o->resume || o->only_stage >= 0) && graft_fs_exists(r->run_log);
    if (reopen) {
        meta.resume_stage = (int32_t)first;
        meta.resume_step = -1;
        const graft_stage *s = &r->stages[first];
        if (c->resuming && (s->kind == GRAFT_STAGE_PRETRAIN || s->kind == GRAFT_STAGE_STAGE1 ||
                            s->kind == GRAFT_STAGE_STAGE0)) {
            /* rows after the checkpoint being resumed are dropped; the stage repeats them */
            char sd[GRAFT_RUN_PATH + 16];
            graft_run_state_dir(s->train.out, sd, sizeof sd);
            meta.resume_step = graft_train_state_step(sd);
        }
    }
    if (!o->resume && o->only_stage < 0 && (st = progress_write(c, 0, err))) goto done;
    if ((st = graft_runlog_open(r->run_log, &meta, reopen, &c->log, err))) goto done;
    fprintf(c->out, "graft run %s: %lld stage(s), model %lld layers x %lld wide, vocabulary %lld, run log %s%s\n", r->path,
            (long long)r->n_stages, (long long)c->cfg.n_layer, (long long)c->cfg.hidden_size,
            (long long)c->cfg.vocab_size, r->run_log, reopen ? " (continued)" : "");
    for (int64_t i = first; i <= last; i++) {
        const graft_stage *s = &r->stages[i];
        const char *kind = graft_stage_kind_name(s->kind);
        fprintf(c->out, "== stage %lld: %s ==\n", (long long)i, kind);
        fflush(c->out);
        if ((st = graft_runlog_stage_begin(c->log, (int32_t)i, kind, err))) goto done;
        st = run_stage(c, s, err);
        graft_err e2;
        graft_runlog_stage_end(c->log, (int32_t)i, st ? "failed" : "done", &e2);
        if (st) {
            graft_err_prefix(err, s->pos.where);
            goto done;
        }
        c->resuming = 0;
        stage_outputs(c, s);
        if (o->only_stage < 0 && (st = progress_write(c, i + 1, err))) goto done;
    }
    fprintf(c->out, "\n== summary (%s) ==\n%s", r->path, c->summary);
    fprintf(c->out, "run log: %s (tools/plot_run.py %s OUTDIR draws its curves)\n", r->run_log, r->run_log);
done:
    graft_runlog_close(c->log);
    graft_recipe_free(r);
    free(recipe_text);
    free(c);
    return st;
}
