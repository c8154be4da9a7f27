/* cli/cmd_inspect.c: `graft inspect PATH`: validates and summarizes a model directory, a
 * .safetensors file, a model.safetensors.index.json or a config.json (spec/formats.md §4, §6.3;
 * spec/qwen3.md §1, §2, §4).
 *
 * Each input kind is one row of the KINDS table below (match + handler); a new kind (token
 * shards, .bin) is one more row. Exit: 0 valid, 1 invalid (the error on stderr), 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "commands.h"
#include "config.h"

typedef struct {
    const char *path;
    int all;
} inspect_opts;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* dir of `path` + "/" + name; caller frees. For a directory path, path + "/" + name. */
static char *sibling(const char *path, const char *name, int path_is_dir) {
    size_t dl = path_is_dir ? strlen(path) : (size_t)(base_name(path) - path);
    char *p = malloc(dl + strlen(name) + 3);
    if (!p) return NULL;
    if (dl == 0) {
        strcpy(p, name);
    } else {
        memcpy(p, path, dl);
        if (p[dl - 1] != '/') p[dl++] = '/';
        strcpy(p + dl, name);
    }
    return p;
}

static void print_config(const char *path, const graft_qwen3_config *c) {
    printf("config %s\n", path);
    printf("  hidden_size %lld, intermediate_size %lld, layers %lld, heads %lld (kv %lld), "
           "head_dim %lld%s\n", (long long)c->hidden_size, (long long)c->intermediate_size,
           (long long)c->n_layer, (long long)c->n_head, (long long)c->n_kv_head,
           (long long)c->head_dim, c->head_dim_defaulted ? " (defaulted)" : "");
    printf("  vocab_size %lld, tie_word_embeddings %s, rope_theta %g, rms_norm_eps %g, "
           "max_position_embeddings %lld, dtype hint %s\n", (long long)c->vocab_size,
           c->tie_word_embeddings ? "true" : "false", c->rope_theta, c->rms_norm_eps,
           (long long)c->max_position_embeddings, c->dtype[0] ? c->dtype : "(none)");
    if (c->head_dim_defaulted)
        fprintf(stderr, "warning: %s: head_dim missing, using hidden_size / num_attention_heads "
                "= %lld\n", path, (long long)c->head_dim);
}

static int64_t numel(const graft_st_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static void shape_str(char *dst, size_t cap, int32_t nd, const int64_t *shape) {
    size_t o = (size_t)snprintf(dst, cap, "[");
    for (int32_t i = 0; i < nd && o < cap; i++)
        o += (size_t)snprintf(dst + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(dst + o, cap - o, "]");
}

typedef struct { char name[96]; int32_t nd; int64_t shape[2]; } expect;

/* qwen3.md §2.1 table for config c (lm_head only when untied). Returns count; *out malloc'd. */
static int64_t expected_tensors(const graft_qwen3_config *c, expect **out) {
    int64_t cap = 11 * c->n_layer + 3, n = 0;
    expect *e = calloc((size_t)cap, sizeof *e);
    *out = e;
    if (!e) return -1;
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t q = c->n_head * D, kv = c->n_kv_head * D;
#define E(nd_, a, b, ...)                                                                      \
    do {                                                                                       \
        snprintf(e[n].name, sizeof e[n].name, __VA_ARGS__);                                    \
        e[n].nd = nd_, e[n].shape[0] = a, e[n].shape[1] = b, n++;                              \
    } while (0)
    E(2, c->vocab_size, H, "model.embed_tokens.weight");
    E(1, H, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) E(2, c->vocab_size, H, "lm_head.weight");
    for (long long l = 0; l < c->n_layer; l++) {
        E(1, H, 0, "model.layers.%lld.input_layernorm.weight", l);
        E(2, q, H, "model.layers.%lld.self_attn.q_proj.weight", l);
        E(2, kv, H, "model.layers.%lld.self_attn.k_proj.weight", l);
        E(2, kv, H, "model.layers.%lld.self_attn.v_proj.weight", l);
        E(2, H, q, "model.layers.%lld.self_attn.o_proj.weight", l);
        E(1, D, 0, "model.layers.%lld.self_attn.q_norm.weight", l);
        E(1, D, 0, "model.layers.%lld.self_attn.k_norm.weight", l);
        E(1, H, 0, "model.layers.%lld.post_attention_layernorm.weight", l);
        E(2, I, H, "model.layers.%lld.mlp.gate_proj.weight", l);
        E(2, I, H, "model.layers.%lld.mlp.up_proj.weight", l);
        E(2, H, I, "model.layers.%lld.mlp.down_proj.weight", l);
    }
#undef E
    return n;
}

/* 1 when the two tensors hold the same values after conversion to F32. */
static int same_values(const graft_st_file_t *fa, const graft_st_tensor *a,
                       const graft_st_file_t *fb, const graft_st_tensor *b) {
    if (!strcmp(a->dtype_name, b->dtype_name))
        return !memcmp(graft_st_data(fa, a), graft_st_data(fb, b), (size_t)(a->end - a->begin));
    int64_t n = numel(a), cols = a->ndim == 2 ? a->shape[1] : n;
    if (cols <= 0) return 1;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    graft_err e;
    int same = x && y && !graft_st_read_f32(fa, a, x, n, &e) && !graft_st_read_f32(fb, b, y, n, &e) &&
               !memcmp(x, y, (size_t)n * sizeof *x);
    free(x);
    free(y);
    return same;
}

/* Checks the checkpoint against the Qwen3 table (formats.md §4 rows 24-25, qwen3.md §2.2) and
 * prints parameter counts. Returns 0 ok, 1 refused. */
static int check_model(const char *path, const graft_qwen3_config *c, const graft_ckpt_t *ck) {
    expect *ex;
    int64_t ne = expected_tensors(c, &ex);
    if (ne < 0) {
        fprintf(stderr, "graft inspect: out of memory\n");
        return 1;
    }
    int rc = 0;
    char want[96], got[96];
    for (int64_t i = 0; i < ne && !rc; i++) {
        const graft_st_file_t *f;
        const graft_st_tensor *t = graft_ckpt_find(ck, ex[i].name, &f);
        shape_str(want, sizeof want, ex[i].nd, ex[i].shape);
        if (!t) {
            fprintf(stderr, "%s: \"%s\": missing, expected a tensor of shape %s\n", path,
                    ex[i].name, want);
            rc = 1;
            break;
        }
        shape_str(got, sizeof got, t->ndim, t->shape);
        if (t->ndim != ex[i].nd || t->shape[0] != ex[i].shape[0] ||
            (ex[i].nd == 2 && t->shape[1] != ex[i].shape[1])) {
            fprintf(stderr, "%s: \"%s\": shape %s, expected %s\n", graft_st_path(f), ex[i].name,
                    got, want);
            rc = 1;
        } else if (!t->known_dtype || (t->dtype != GRAFT_DTYPE_BF16 && t->dtype != GRAFT_DTYPE_F16 &&
                                       t->dtype != GRAFT_DTYPE_F32)) {
            fprintf(stderr, "%s: \"%s\": unsupported dtype %s for tensor %s, expected BF16, F16 "
                    "or F32\n", graft_st_path(f), ex[i].name, t->dtype_name, ex[i].name);
            rc = 1;
        }
    }
    /* every tensor of the checkpoint must be expected (tied lm_head copy: warned, not refused) */
    int64_t total = 0, emb = 0;
    for (int64_t i = 0; i < graft_ckpt_count(ck) && !rc; i++) {
        const graft_st_file_t *f;
        const graft_st_tensor *t = graft_ckpt_get(ck, i, &f);
        int found = 0;
        for (int64_t k = 0; k < ne && !found; k++) found = !strcmp(ex[k].name, t->name);
        if (!found && c->tie_word_embeddings && !strcmp(t->name, "lm_head.weight")) {
            const graft_st_file_t *fe;
            const graft_st_tensor *e = graft_ckpt_find(ck, "model.embed_tokens.weight", &fe);
            int64_t sh[2] = {c->vocab_size, c->hidden_size};
            shape_str(want, sizeof want, 2, sh);
            shape_str(got, sizeof got, t->ndim, t->shape);
            if (t->ndim != 2 || t->shape[0] != sh[0] || t->shape[1] != sh[1]) {
                fprintf(stderr, "%s: \"lm_head.weight\": shape %s, expected %s (tied copy of "
                        "model.embed_tokens.weight)\n", graft_st_path(f), got, want);
                rc = 1;
            } else if (!same_values(f, t, fe, e)) {
                fprintf(stderr, "warning: %s: \"lm_head.weight\" differs from "
                        "model.embed_tokens.weight; tie_word_embeddings is true, so the embedding "
                        "is used for both\n", graft_st_path(f));
            }
            continue; /* a tied copy is not a parameter of its own */
        }
        if (!found) {
            shape_str(got, sizeof got, t->ndim, t->shape);
            fprintf(stderr, "%s: \"%s\": unexpected tensor (shape %s), expected only the Qwen3 "
                    "tensors of the config%s\n", graft_st_path(f), t->name, got,
                    !strcmp(t->name, "lm_head.weight") ? "" : "");
            rc = 1;
            break;
        }
        total += numel(t);
        if (!strcmp(t->name, "model.embed_tokens.weight") || !strcmp(t->name, "lm_head.weight"))
            emb += numel(t);
    }
    if (!rc)
        printf("parameters: total %lld, embedding %lld, non-embedding %lld\n", (long long)total,
               (long long)emb, (long long)(total - emb));
    free(ex);
    return rc;
}

static void print_tensors(const graft_ckpt_t *ck, int all) {
    int64_t n = graft_ckpt_count(ck), shown = all || n <= 40 ? n : 24;
    uint64_t bytes = 0;
    printf("%lld tensors in %lld file%s\n", (long long)n, (long long)graft_ckpt_n_files(ck),
           graft_ckpt_n_files(ck) == 1 ? "" : "s");
    for (int64_t i = 0; i < graft_ckpt_n_files(ck); i++) {
        const graft_st_file_t *f = graft_ckpt_file(ck, i);
        printf("  %s: %llu bytes, header %llu, %lld tensors\n", graft_st_path(f),
               (unsigned long long)graft_st_file_bytes(f),
               (unsigned long long)graft_st_header_bytes(f), (long long)graft_st_count(f));
    }
    printf("  %-56s %-6s %-20s %14s\n", "name", "dtype", "shape", "bytes");
    for (int64_t i = 0; i < n; i++) {
        const graft_st_tensor *t = graft_ckpt_get(ck, i, NULL);
        bytes += t->end - t->begin;
        if (i >= shown) continue;
        char sh[96];
        shape_str(sh, sizeof sh, t->ndim, t->shape);
        printf("  %-56s %-6s %-20s %14llu\n", t->name, t->dtype_name, sh,
               (unsigned long long)(t->end - t->begin));
    }
    if (shown < n) printf("  ... %lld more (--all lists every tensor)\n", (long long)(n - shown));
    printf("tensor data: %llu bytes\n", (unsigned long long)bytes);
}

static int show_checkpoint(const char *ck_path, const char *cfg_path, const inspect_opts *o) {
    graft_err err;
    graft_qwen3_config cfg;
    int have_cfg = cfg_path && !access(cfg_path, F_OK);
    if (have_cfg) {
        if (graft_config_load(cfg_path, &cfg, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        print_config(cfg_path, &cfg);
    }
    graft_ckpt_t *ck;
    if (graft_ckpt_open(ck_path, &ck, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *w = graft_ckpt_warnings(ck);
    if (*w) fprintf(stderr, "warning: %s", w);
    print_tensors(ck, o->all);
    int rc = 0;
    if (have_cfg) {
        rc = check_model(ck_path, &cfg, ck);
    } else {
        int64_t total = 0, emb = 0;
        for (int64_t i = 0; i < graft_ckpt_count(ck); i++) {
            const graft_st_tensor *t = graft_ckpt_get(ck, i, NULL);
            total += numel(t);
            if (!strcmp(t->name, "model.embed_tokens.weight") || !strcmp(t->name, "lm_head.weight"))
                emb += numel(t);
        }
        printf("parameters (no config: every tensor counted): total %lld, embedding %lld, "
               "non-embedding %lld\n", (long long)total, (long long)emb, (long long)(total - emb));
    }
    graft_ckpt_close(ck);
    if (!rc) printf("ok\n");
    return rc;
}

/* ---- one handler per input kind ----------------------------------------------------------- */

static int is_dir(const char *p) { struct stat sb; return !stat(p, &sb) && S_ISDIR(sb.st_mode); }

static int match_dir(const char *p) { return is_dir(p); }
static int run_dir(const inspect_opts *o) {
    char *cfg = sibling(o->path, "config.json", 1);
    int rc = show_checkpoint(o->path, cfg, o);
    free(cfg);
    return rc;
}

static int match_config(const char *p) {
    return ends_with(p, ".json") && !ends_with(p, ".index.json");
}
static int run_config(const inspect_opts *o) {
    graft_err err;
    graft_qwen3_config cfg;
    if (graft_config_load(o->path, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    print_config(o->path, &cfg);
    int64_t H = cfg.hidden_size, D = cfg.head_dim, per_layer =
        H * cfg.n_head * D * 2 + H * cfg.n_kv_head * D * 2 + 3 * H * cfg.intermediate_size +
        2 * H + 2 * D;
    int64_t emb = cfg.vocab_size * H * (cfg.tie_word_embeddings ? 1 : 2);
    int64_t nonemb = per_layer * cfg.n_layer + H;
    printf("parameters (from the config): total %lld, embedding %lld, non-embedding %lld\n",
           (long long)(nonemb + emb), (long long)emb, (long long)nonemb);
    printf("ok\n");
    return 0;
}

static int match_index(const char *p) { return ends_with(p, ".index.json"); }
static int match_safetensors(const char *p) { return ends_with(p, ".safetensors"); }
static int run_file_ckpt(const inspect_opts *o) {
    /* the sibling config describes this file only when it is the whole model */
    const char *b = base_name(o->path);
    char *cfg = NULL;
    if (!strcmp(b, "model.safetensors") || !strcmp(b, "model.safetensors.index.json"))
        cfg = sibling(o->path, "config.json", 0);
    int rc = show_checkpoint(o->path, cfg, o);
    free(cfg);
    return rc;
}

static const struct {
    const char *what;
    int (*match)(const char *path);
    int (*run)(const inspect_opts *o);
} KINDS[] = {
    {"model directory", match_dir, run_dir},
    {"sharded index", match_index, run_file_ckpt},
    {"safetensors file", match_safetensors, run_file_ckpt},
    {"config.json", match_config, run_config},
};

static void help(FILE *out) {
    fprintf(out,
            "usage: graft inspect [--all] PATH\n\n"
            "Validates and summarizes PATH, one of:\n"
            "  a model directory (config.json + model.safetensors or an index and its shards)\n"
            "  a .safetensors file, a model.safetensors.index.json, a config.json\n\n"
            "Prints the config summary, the tensor table and parameter counts; with a config,\n"
            "checks every Qwen3 tensor name and shape. Exit 0 valid, 1 invalid, 2 bad usage.\n\n"
            "  --all    list every tensor (default: a summary for large models)\n"
            "  --help   this text\n");
}

int graft_cmd_inspect(int argc, char **argv) {
    inspect_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--all")) {
            o.all = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "graft inspect: unknown option \"%s\"\n", argv[i]);
            help(stderr);
            return 2;
        } else if (o.path) {
            fprintf(stderr, "graft inspect: more than one PATH (\"%s\", \"%s\")\n", o.path, argv[i]);
            return 2;
        } else {
            o.path = argv[i];
        }
    }
    if (!o.path) {
        fprintf(stderr, "graft inspect: missing PATH\n");
        help(stderr);
        return 2;
    }
    if (access(o.path, F_OK)) {
        fprintf(stderr, "%s: does not exist\n", o.path);
        return 1;
    }
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++)
        if (KINDS[k].match(o.path)) return KINDS[k].run(&o);
    fprintf(stderr, "%s: unknown kind of file, expected a model directory, .safetensors, "
            ".index.json or config.json\n", o.path);
    return 2;
}
