/* run_eval.c: the eval stage of `graft run`: held-out perplexity of each chosen model (teacher,
 * control, hybrid or a path) on the same held-out windows, and a few generations with the decode
 * state, written to the run log's eval and generations tables. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "run_ctx.h"
#include "tokenizer.h"
#include "train.h"

const char *graft_run_choice_name(const graft_model_choice *m) {
    switch (m->kind) {
    case GRAFT_MODEL_CHOICE_TEACHER: return "teacher";
    case GRAFT_MODEL_CHOICE_CONTROL: return "control";
    case GRAFT_MODEL_CHOICE_HYBRID: return "hybrid";
    default: return m->path;
    }
}

graft_status graft_run_load_choice(graft_run_ctx *c, const graft_model_choice *m, graft_model_t **out,
                                   graft_err *err) {
    switch (m->kind) {
    case GRAFT_MODEL_CHOICE_TEACHER:
        return graft_run_load_model(c, c->teacher_dir, c->r->teacher_is_model ? &c->r->model : &c->r->teacher, out, err);
    case GRAFT_MODEL_CHOICE_CONTROL: return graft_run_load_model(c, c->model_dir, &c->r->model, out, err);
    case GRAFT_MODEL_CHOICE_HYBRID:
        if (!c->hybrid_dir[0])
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: hybrid, but no stage1 came before", m->pos.where,
                                 m->pos.field);
        return graft_run_load_model(c, c->hybrid_dir, NULL, out, err);
    default: return graft_run_load_model(c, m->path, NULL, out, err);
    }
}

/* Greedy or sampled continuations of each prompt; rows in the generations table. */
static graft_status generations(graft_run_ctx *c, const graft_stage *s, graft_model_t *m, const char *name,
                                graft_tokenizer_t *tok, double *tok_s, graft_err *err) {
    const graft_generate_params *g = &s->as.eval.generate;
    graft_generate_opts o = graft_generate_default_opts();
    o.max_new_tokens = g->max_new_tokens;
    o.greedy = g->greedy;
    o.temperature = g->temperature;
    o.top_k = g->top_k;
    o.top_p = g->top_p;
    o.seed = (uint64_t)c->r->seed;
    uint32_t eot = graft_tokenizer_eot_id(tok);
    o.stop_id = eot == UINT32_MAX ? -1 : (int64_t)eot;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)g->max_new_tokens);
    if (!out) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "eval: out of memory");
    graft_status st = GRAFT_STATUS_OK;
    double decode_s = 0;
    int64_t decoded = 0;
    for (int64_t i = 0; i < g->n_prompts && !st; i++) {
        graft_ids ids = {0};
        char *text = NULL;
        size_t text_len = 0;
        const char *prompt = g->prompts[i];
        if ((st = graft_tokenizer_encode(tok, NULL, prompt, strlen(prompt), 0, &ids, err))) break;
        int32_t *p = malloc(sizeof(int32_t) * (ids.n ? ids.n : 1));
        if (!p) st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "eval: out of memory");
        for (size_t j = 0; p && j < ids.n; j++) p[j] = (int32_t)ids.data[j];
        graft_generate_stats gs = {0};
        if (!st && ids.n == 0)
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: generate.prompts[%lld]: encodes to no tokens", s->pos.where,
                               (long long)i);
        if (!st) {
            /* the ids must fit the model's vocabulary */
            for (size_t j = 0; j < ids.n; j++)
                if ((int64_t)ids.data[j] >= c->cfg.vocab_size) {
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: generate.prompts[%lld]: token id %u >= vocab_size %lld",
                                       s->pos.where, (long long)i, ids.data[j], (long long)c->cfg.vocab_size);
                    break;
                }
        }
        if (!st) st = graft_generate(m, p, (int64_t)ids.n, &o, out, &gs, err);
        uint32_t *u = NULL;
        if (!st) {
            u = malloc(sizeof(uint32_t) * (size_t)(gs.n_new ? gs.n_new : 1));
            if (!u) st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "eval: out of memory");
            /* ids past the tokenizer (a padded vocabulary) have no text: left out */
            size_t nu = 0;
            for (int64_t j = 0; u && j < gs.n_new; j++)
                if ((uint32_t)out[j] < graft_tokenizer_n_vocab(tok)) u[nu++] = (uint32_t)out[j];
            if (!st) st = graft_tokenizer_decode(tok, u, nu, 0, &text, &text_len, err);
        }
        if (!st) {
            graft_generation_row row = {name, prompt, text};
            st = graft_runlog_append_generation(c->log, (int32_t)s->index, &row, err);
            fprintf(c->out, "  [%s] %s|%s\n", name, prompt, text);
            decode_s += gs.decode_s;
            decoded += gs.n_new > 1 ? gs.n_new - 1 : 0;
        }
        free(u);
        free(p);
        free(text);
        graft_ids_free(&ids);
    }
    free(out);
    *tok_s = decode_s > 0 ? (double)decoded / decode_s : NAN;
    return st;
}

graft_status graft_run_eval(graft_run_ctx *c, const graft_stage *s, graft_err *err) {
    const graft_eval_params *ep = &s->as.eval;
    graft_status st = GRAFT_STATUS_OK;
    graft_data_t *data = NULL;
    graft_tokenizer_t *tok = NULL;
    if ((st = graft_run_open_data(c, ep->batch, ep->seq_len, &data, err))) return st;
    if (ep->has_generate) {
        if (!c->tokenizer[0]) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: generate: no tokenizer (set `tokenizer` in the recipe)",
                               s->pos.where);
            goto done;
        }
        if ((st = graft_tokenizer_load(c->tokenizer, &tok, err))) goto done;
    }
    /* default models: control, and the hybrid once a stage1 ran */
    graft_model_choice defaults[2] = {{.kind = GRAFT_MODEL_CHOICE_CONTROL, .pos = s->pos},
                                      {.kind = GRAFT_MODEL_CHOICE_HYBRID, .pos = s->pos}};
    const graft_model_choice *models = ep->n_models ? ep->models : defaults;
    int64_t n_models = ep->n_models ? ep->n_models : (c->hybrid_dir[0] ? 2 : 1);
    char line[2048];
    size_t k = (size_t)snprintf(line, sizeof line, "eval: held-out ppl");
    for (int64_t i = 0; i < n_models; i++) {
        graft_model_t *m = NULL;
        const char *name = graft_run_choice_name(&models[i]);
        if ((st = graft_run_load_choice(c, &models[i], &m, err))) goto done;
        if ((st = graft_run_place(c, m, err))) {
            graft_model_free(m);
            goto done;
        }
        double ce = NAN, tokens = 0, tok_s = NAN;
        st = graft_eval_heldout_ce(m, data, ep->batch, ep->seq_len, ep->heldout_batches, &ce, &tokens, err);
        if (!st) {
            graft_eval_row r1 = {name, "nll", ce, (int64_t)tokens, -1}, r2 = {name, "ppl", exp(ce), (int64_t)tokens, -1};
            st = graft_runlog_append_eval(c->log, (int32_t)s->index, &r1, err);
            if (!st) st = graft_runlog_append_eval(c->log, (int32_t)s->index, &r2, err);
            fprintf(c->out, "  %-8s held-out ppl %.3f (nll %.4f over %.0f tokens)\n", name, exp(ce), ce, tokens);
        }
        if (!st && tok) st = generations(c, s, m, name, tok, &tok_s, err);
        graft_model_free(m);
        if (st) goto done;
        k += (size_t)snprintf(line + k, sizeof line - k, "  %s %.3f", name, exp(ce));
        if (!isnan(tok_s)) k += (size_t)snprintf(line + k, sizeof line - k, " (decode %.0f tok/s)", tok_s);
    }
    graft_run_note(c, "%s", line);
done:
    graft_tokenizer_free(tok);
    graft_data_close(data);
    return st;
}
