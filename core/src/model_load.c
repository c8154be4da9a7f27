/* model_load.c: filling a created model from an HF checkpoint (spec/qwen3.md §2.2, formats.md §6).
 *
 * Every parameter the model declares must be in the checkpoint with exactly its shape, in
 * BF16/F16/F32; any tensor the model does not declare is refused, except the tied lm_head copy of
 * 0.6B/1.7B releases, which is compared with the embedding and warned about when it differs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "model.h"

static void shape_str(char *buf, size_t n, int32_t ndim, const int64_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(buf + len, n - len, "[");
    for (int32_t i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

graft_status graft_model_load_weights(graft_model_t *m, const char *path, graft_err *err) {
    graft_ckpt_t *ck = NULL;
    graft_status st = graft_ckpt_open(path, &ck, err);
    if (st) return st;
    const graft_qwen3_config *cfg = graft_model_config(m);
    int64_t n = graft_model_n_params(m);
    for (int64_t i = 0; i < n; i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        const graft_st_file_t *f = NULL;
        const graft_st_tensor *t = graft_ckpt_find(ck, p->name, &f);
        char want[96], got[96];
        if (!t) {
            shape_str(want, sizeof want, p->ndim, p->shape);
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": missing, expected a tensor of shape %s",
                               path, p->name, want);
            goto done;
        }
        int same = t->ndim == p->ndim;
        for (int32_t d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            shape_str(want, sizeof want, p->ndim, p->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": shape %s, expected %s",
                               graft_st_path(f), p->name, got, want);
            goto done;
        }
        if ((st = graft_st_read_f32(f, t, p->data, p->numel, err))) goto done;
    }
    /* anything the model does not declare */
    for (int64_t i = 0; i < graft_ckpt_count(ck); i++) {
        const graft_st_file_t *f = NULL;
        const graft_st_tensor *t = graft_ckpt_get(ck, i, &f);
        if (graft_model_param_find(m, t->name)) continue;
        if (cfg->tie_word_embeddings && !strcmp(t->name, "lm_head.weight")) {
            graft_model_param *e = graft_model_param_find(m, "model.embed_tokens.weight");
            int same = t->ndim == 2 && t->shape[0] == e->shape[0] && t->shape[1] == e->shape[1];
            float *tmp = same ? malloc((size_t)e->numel * sizeof(float)) : NULL;
            if (same && !tmp) {
                st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory comparing lm_head.weight", path);
                goto done;
            }
            if (same && (st = graft_st_read_f32(f, t, tmp, e->numel, err))) {
                free(tmp);
                goto done;
            }
            if (!same || memcmp(tmp, e->data, (size_t)e->numel * sizeof(float)))
                fprintf(stderr, "graft: warning: %s: \"lm_head.weight\" differs from the tied "
                                "\"model.embed_tokens.weight\"; the embedding is used for both (qwen3.md §2.2)\n",
                        graft_st_path(f));
            free(tmp);
            continue;
        }
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": unexpected tensor, not a parameter of this model",
                           graft_st_path(f), t->name);
        goto done;
    }
done:
    graft_ckpt_close(ck);
    return st;
}

graft_status graft_model_load(const char *dir, graft_model_t **out, graft_err *err) {
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
    graft_qwen3_config cfg;
    graft_status st = graft_config_load(path, &cfg, err);
    if (st) return st;
    graft_model_t *m = NULL;
    if ((st = graft_model_create(&cfg, NULL, &m, err))) return st;
    if ((st = graft_model_load_weights(m, dir, err))) {
        graft_model_free(m);
        return st;
    }
    *out = m;
    return GRAFT_STATUS_OK;
}
