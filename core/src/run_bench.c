/* run_bench.c: the bench stage of `graft run`: the stage's models (as eval: control, and the
 * hybrid once a stage1 ran, or the listed teacher / control / hybrid / paths) timed in this
 * process for every (context, batch) with a fixed generation length (bench.h), rows in the run
 * log's bench table, each model's speedup over the control printed and noted in the summary. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench.h"
#include "run_ctx.h"

typedef struct loader {
    graft_run_ctx *c;
    const graft_model_choice *models;
} loader;

static graft_status load(void *ctx, int64_t i, graft_model_t **out, graft_err *err) {
    loader *l = ctx;
    graft_status st = graft_run_load_choice(l->c, &l->models[i], out, err);
    if (st || !l->c->be || l->c->be->device == GRAFT_DEVICE_CPU) return st;
    if ((st = graft_model_set_backend(*out, l->c->be, err))) {
        graft_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* A path's name in the table: the path when it fits the run log's 63 bytes, else its last part. */
static void display_name(const char *name, char *buf, size_t size) {
    const char *s = name;
    if (strlen(s) >= size) {
        const char *slash = strrchr(s, '/');
        if (slash && slash[1]) s = slash + 1;
    }
    snprintf(buf, size, "%s", s);
}

graft_status graft_run_bench(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    const graft_bench_params *bp = &s->as.bench;
    graft_model_choice defaults[2] = {{.kind = GRAFT_MODEL_CHOICE_CONTROL, .pos = s->pos},
                                      {.kind = GRAFT_MODEL_CHOICE_HYBRID, .pos = s->pos}};
    const graft_model_choice *models = bp->n_models ? bp->models : defaults;
    int64_t n = bp->n_models ? bp->n_models : (c->hybrid_dir[0] ? 2 : 1);
    char (*names)[64] = calloc((size_t)n, sizeof *names);
    const char **ptrs = calloc((size_t)n, sizeof *ptrs);
    if (!names || !ptrs) {
        free(names);
        free(ptrs);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bench: out of memory");
    }
    int64_t baseline = 0;
    for (int64_t i = n - 1; i >= 0; i--) {
        display_name(graft_run_choice_name(&models[i]), names[i], sizeof names[i]);
        ptrs[i] = names[i];
        if (models[i].kind == GRAFT_MODEL_CHOICE_CONTROL) baseline = i;
    }
    loader l = {c, models};
    graft_bench_plan p = {.names = ptrs, .n_models = n, .load = load, .load_ctx = &l, .baseline = baseline,
                          .contexts = bp->contexts, .n_contexts = bp->n_contexts, .batches = bp->batches,
                          .n_batches = bp->n_batches, .gen_tokens = bp->gen_tokens,
                          .prefill_chunk = bp->prefill_chunk, .repeat = bp->repeat, .out = c->out, .log = c->log,
                          .stage = (int32_t)s->index};
    fprintf(c->out, "  %lld model(s), %lld new tokens per sequence (fixed), synthetic prompts; speedups against %s\n",
            (long long)n, (long long)bp->gen_tokens, ptrs[baseline]);
    char summary[4096];
    graft_status st = graft_bench_run(&p, summary, sizeof summary, err);
    if (!st && summary[0]) graft_run_note(c, "%s", summary);
    if (!st && n == 1) graft_run_note(c, "bench: %s only (no hybrid to compare)", ptrs[0]);
    free(names);
    free(ptrs);
    return st;
}
