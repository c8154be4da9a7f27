/* qwen3_init.c: a random Qwen3 checkpoint (spec/qwen3.md §2.1 names and shapes, §8 init),
 * streamed tensor by tensor through the safetensors writer's fill callback.
 *
 * Not here: the checks of a loaded model against the table (cmd_inspect.c / model code).
 */
#include "qwen3_init.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "graft/rng.h"

#define NAME_BYTES 96

typedef struct {
    char name[NAME_BYTES];
    int32_t ndim;
    int64_t shape[2];
    int ones;          /* RMSNorm weight */
    graft_rng rng;
    float std;
} init_tensor;

static int cmp_init(const void *a, const void *b) {
    return strcmp(((const init_tensor *)a)->name, ((const init_tensor *)b)->name);
}

static graft_status fill(void *ctx, int64_t offset, float *dst, int64_t n, graft_err *err) {
    init_tensor *t = ctx;
    (void)offset;
    for (int64_t i = 0; i < n; i++)
        dst[i] = t->ones ? 1.0f : (float)(graft_rng_normal(&t->rng) * t->std);
    return GRAFT_STATUS_OK;
}

static void add(init_tensor *ts, int64_t *n, const char *name, int ones, int32_t ndim, int64_t d0,
                int64_t d1) {
    init_tensor *t = &ts[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ones = ones;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
}

graft_status graft_qwen3_write_random(const graft_qwen3_config *c, uint64_t seed, graft_dtype dtype,
                                      const char *out_dir, uint64_t max_shard_bytes, graft_err *err) {
    graft_status st = graft_config_validate(c, out_dir, err);
    if (st) return st;
    if (dtype != GRAFT_DTYPE_F32 && dtype != GRAFT_DTYPE_BF16)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: dtype: %s, expected F32 or BF16",
                             out_dir, graft_dtype_name(dtype));
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim, V = c->vocab_size;
    int64_t q = c->n_head * D, kv = c->n_kv_head * D;
    int64_t cap = 11 * c->n_layer + 3;
    init_tensor *ts = calloc((size_t)cap, sizeof *ts);
    graft_st_entry *es = calloc((size_t)cap, sizeof *es);
    if (!ts || !es) {
        free(ts);
        free(es);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", out_dir);
    }
    int64_t n = 0;
    char nm[NAME_BYTES];
    add(ts, &n, "model.embed_tokens.weight", 0, 2, V, H);
    add(ts, &n, "model.norm.weight", 1, 1, H, 0);
    if (!c->tie_word_embeddings) add(ts, &n, "lm_head.weight", 0, 2, V, H);
    for (int64_t l = 0; l < c->n_layer; l++) {
#define L(suffix, ones, nd, a, b)                                                              \
    do {                                                                                       \
        snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, suffix);                 \
        add(ts, &n, nm, ones, nd, a, b);                                                       \
    } while (0)
        L("input_layernorm.weight", 1, 1, H, 0);
        L("self_attn.q_proj.weight", 0, 2, q, H);
        L("self_attn.k_proj.weight", 0, 2, kv, H);
        L("self_attn.v_proj.weight", 0, 2, kv, H);
        L("self_attn.o_proj.weight", 0, 2, H, q);
        L("self_attn.q_norm.weight", 1, 1, D, 0);
        L("self_attn.k_norm.weight", 1, 1, D, 0);
        L("post_attention_layernorm.weight", 1, 1, H, 0);
        L("mlp.gate_proj.weight", 0, 2, I, H);
        L("mlp.up_proj.weight", 0, 2, I, H);
        L("mlp.down_proj.weight", 0, 2, H, I);
#undef L
    }
    qsort(ts, (size_t)n, sizeof *ts, cmp_init);
    for (int64_t k = 0; k < n; k++) {
        ts[k].rng = graft_rng_make(seed, (uint64_t)k);
        ts[k].std = (float)c->initializer_range;
        es[k].name = ts[k].name;
        es[k].dtype = dtype;
        es[k].ndim = ts[k].ndim;
        es[k].shape[0] = ts[k].shape[0];
        es[k].shape[1] = ts[k].shape[1];
        es[k].fill = fill;
        es[k].fill_ctx = &ts[k];
    }
    static const char *const meta[] = {"graft_init", "random", NULL, NULL};
    st = graft_ckpt_write(out_dir, es, n, max_shard_bytes, meta, err);
    if (!st) {
        graft_qwen3_config cc = *c;
        snprintf(cc.dtype, sizeof cc.dtype, "%s", dtype == GRAFT_DTYPE_BF16 ? "bfloat16" : "float32");
        size_t pl = strlen(out_dir);
        char *cp = malloc(pl + 13);
        if (!cp) {
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", out_dir);
        } else {
            snprintf(cp, pl + 13, "%s/config.json", out_dir);
            st = graft_config_write(cp, &cc, err);
            free(cp);
        }
    }
    free(ts);
    free(es);
    return st;
}
