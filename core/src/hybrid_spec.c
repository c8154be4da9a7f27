/* hybrid_spec.c: reading, validating and atomically writing the hybrid spec (hybrid_spec.h).
 * Not here: the selection policy (select.c) or building the hybrid model. */
#include "hybrid_spec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yaml_tree.h"

#define MAX_LAYERS 1024

void graft_hybrid_spec_free(graft_hybrid_spec *s) {
    if (!s) return;
    for (int64_t l = 0; l < s->n_layer; l++) {
        if (s->layer_types) free(s->layer_types[l]);
        if (s->weights) free(s->weights[l]);
    }
    free(s->layer_types);
    free(s->weights);
    for (int64_t i = 0; i < s->n_mixers; i++) {
        free(s->mixers[i].name);
        for (int64_t j = 0; j < s->mixers[i].n_kv; j++) {
            free((char *)s->mixers[i].kv[j].key);
            free((char *)s->mixers[i].kv[j].value);
            free((char *)s->mixers[i].kv[j].where);
        }
        free(s->mixers[i].kv);
    }
    free(s->mixers);
    free(s);
}

static graft_status oom(graft_err *err) {
    return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "hybrid spec: out of memory");
}

graft_status graft_hybrid_spec_init(int64_t n_layer, graft_hybrid_spec **out, graft_err *err) {
    *out = NULL;
    if (n_layer < 1 || n_layer > MAX_LAYERS)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: n_layer: %lld, expected "
                             "1..%d", (long long)n_layer, MAX_LAYERS);
    graft_hybrid_spec *s = calloc(1, sizeof *s);
    if (!s) return oom(err);
    s->layer_types = calloc((size_t)n_layer, sizeof *s->layer_types);
    s->weights = calloc((size_t)n_layer, sizeof *s->weights);
    if (!s->layer_types || !s->weights) {
        graft_hybrid_spec_free(s);
        return oom(err);
    }
    s->n_layer = n_layer;
    for (int64_t l = 0; l < n_layer; l++)
        if (!(s->layer_types[l] = strdup(GRAFT_FULL_ATTENTION))) {
            graft_hybrid_spec_free(s);
            return oom(err);
        }
    *out = s;
    return GRAFT_STATUS_OK;
}

static int valid_name(const char *n) {
    if (!*n || strlen(n) >= 64 || !strcmp(n, GRAFT_FULL_ATTENTION)) return 0;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static const graft_spec_mixer *find_mixer(const graft_hybrid_spec *s, const char *name) {
    for (int64_t i = 0; i < s->n_mixers; i++)
        if (!strcmp(s->mixers[i].name, name)) return &s->mixers[i];
    return NULL;
}

static graft_status add_mixer(graft_hybrid_spec *s, const char *name, const graft_kv *kv,
                              int64_t n_kv, int keep_where, graft_err *err) {
    if (!valid_name(name))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: mixer \"%.80s\", expected "
                             "a name of [A-Za-z0-9_.-] other than full_attention", name);
    if (find_mixer(s, name))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: mixer %s given twice, "
                             "expected once", name);
    graft_spec_mixer *m = realloc(s->mixers, (size_t)(s->n_mixers + 1) * sizeof *m);
    if (!m) return oom(err);
    s->mixers = m;
    graft_spec_mixer *x = &m[s->n_mixers];
    memset(x, 0, sizeof *x);
    s->n_mixers++;
    if (!(x->name = strdup(name))) return oom(err);
    if (n_kv > 0) {
        if (!(x->kv = calloc((size_t)n_kv, sizeof *x->kv))) return oom(err);
        for (int64_t i = 0; i < n_kv; i++) {
            x->n_kv = i + 1;
            x->kv[i].key = strdup(kv[i].key ? kv[i].key : "");
            x->kv[i].value = strdup(kv[i].value ? kv[i].value : "");
            if (keep_where && kv[i].where) x->kv[i].where = strdup(kv[i].where);
            if (!x->kv[i].key || !x->kv[i].value || (keep_where && kv[i].where && !x->kv[i].where))
                return oom(err);
        }
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_hybrid_spec_add_mixer(graft_hybrid_spec *s, const char *name,
                                         const graft_kv *kv, int64_t n_kv, graft_err *err) {
    return add_mixer(s, name, kv, n_kv, 0, err);
}

graft_status graft_hybrid_spec_set_layer(graft_hybrid_spec *s, int64_t layer, const char *type,
                                         const char *weights, graft_err *err) {
    if (layer < 0 || layer >= s->n_layer)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: layer %lld, expected "
                             "0..%lld", (long long)layer, (long long)(s->n_layer - 1));
    if (strcmp(type, GRAFT_FULL_ATTENTION) && !find_mixer(s, type))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: layer %lld: %.80s, expected "
                             "full_attention or an added mixer", (long long)layer, type);
    char *t = strdup(type), *w = weights ? strdup(weights) : NULL;
    if (!t || (weights && !w)) {
        free(t);
        free(w);
        return oom(err);
    }
    free(s->layer_types[layer]);
    free(s->weights[layer]);
    s->layer_types[layer] = t;
    s->weights[layer] = w;
    return GRAFT_STATUS_OK;
}

graft_status graft_hybrid_spec_from_selection(const graft_selection *sel,
                                              const graft_recipe_mixer *mixers, int64_t n_mixers,
                                              const char *weights_dir, graft_hybrid_spec **out,
                                              graft_err *err) {
    graft_hybrid_spec *s = NULL;
    if (graft_hybrid_spec_init(sel->n_layer, &s, err)) return err->status;
    graft_status st = GRAFT_STATUS_OK;
    for (int64_t l = 0; l < sel->n_layer && !st; l++) {
        const char *m = sel->mixer[l];
        if (!m[0]) continue;
        if (!find_mixer(s, m)) {
            const graft_recipe_mixer *rm = NULL;
            for (int64_t i = 0; i < n_mixers; i++)
                if (!strcmp(mixers[i].name, m)) rm = &mixers[i];
            if (!rm) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "hybrid spec: layer %lld: mixer %s "
                                   "has no settings, expected it among the stage0 mixers",
                                   (long long)l, m);
                break;
            }
            st = graft_hybrid_spec_add_mixer(s, m, rm->kv, rm->n_kv, err);
            if (st) break;
        }
        char w[4096];
        if (weights_dir) snprintf(w, sizeof w, "%s/layer%lld-%s.safetensors", weights_dir,
                                  (long long)l, m);
        st = graft_hybrid_spec_set_layer(s, l, m, weights_dir ? w : NULL, err);
    }
    if (st) {
        graft_hybrid_spec_free(s);
        *out = NULL;
        return st;
    }
    *out = s;
    return GRAFT_STATUS_OK;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static void put_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

graft_status graft_hybrid_spec_write(const graft_hybrid_spec *s, const char *path, graft_err *err) {
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%.200s...: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "# graft hybrid spec: which layer gets which mixer (docs/recipes.md, \"Hybrid spec\")\n");
    fprintf(f, "format: %s\nn_layer: %lld\nlayer_types:\n", GRAFT_HYBRID_SPEC_FORMAT,
            (long long)s->n_layer);
    for (int64_t l = 0; l < s->n_layer; l++) {
        fputs("  - ", f);
        put_str(f, s->layer_types[l]);
        fprintf(f, "  # %lld\n", (long long)l);
    }
    fputs(s->n_mixers ? "mixers:\n" : "mixers: {}\n", f);
    for (int64_t i = 0; i < s->n_mixers; i++) {
        fputs("  ", f);
        put_str(f, s->mixers[i].name);
        fputs(s->mixers[i].n_kv ? ":\n" : ": {}\n", f);
        for (int64_t j = 0; j < s->mixers[i].n_kv; j++) {
            fputs("    ", f);
            put_str(f, s->mixers[i].kv[j].key);
            fputs(": ", f);
            put_str(f, s->mixers[i].kv[j].value);
            fputc('\n', f);
        }
    }
    int any = 0;
    for (int64_t l = 0; l < s->n_layer; l++) any |= s->weights[l] != NULL;
    fputs(any ? "weights:\n" : "weights: {}\n", f);
    for (int64_t l = 0; l < s->n_layer; l++) {
        if (!s->weights[l]) continue;
        fprintf(f, "  %lld: ", (long long)l);
        put_str(f, s->weights[l]);
        fputc('\n', f);
    }
    int bad = fflush(f) != 0 || ferror(f);
    if (!bad) bad = fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        unlink(tmp);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot rename to %s: %s", tmp, path,
                             strerror(e));
    }
    return GRAFT_STATUS_OK;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static graft_status bad(const graft_ydoc *d, const graft_ynode *n, const char *field,
                        const char *expected, graft_err *err) {
    char w[1100], desc[96];
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected %s",
                         graft_ynode_where(d, n, w, sizeof w), field,
                         n ? graft_ynode_describe(n, desc, sizeof desc) : "missing", expected);
}

static graft_status load_tree(const graft_ydoc *d, graft_hybrid_spec **out, graft_err *err) {
    const graft_ynode *root = d->root;
    if (!root || root->kind != GRAFT_YNODE_MAP)
        return bad(d, root, "(spec)", "a map with format, n_layer, layer_types, mixers, weights",
                   err);
    static const char *const keys[] = {"format", "n_layer", "layer_types", "mixers", "weights", NULL};
    for (int64_t i = 0; i < root->n; i++) {
        int ok = 0;
        for (const char *const *k = keys; *k; k++) ok |= !strcmp(*k, root->keys[i]->text);
        if (!ok) {
            char w[1100];
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %.80s: unknown key, expected one "
                                 "of: format, n_layer, layer_types, mixers, weights",
                                 graft_ynode_where(d, root->keys[i], w, sizeof w),
                                 root->keys[i]->text);
        }
    }
    const graft_ynode *fmt = graft_ynode_get(root, "format");
    if (!fmt || fmt->kind != GRAFT_YNODE_SCALAR || strcmp(fmt->text, GRAFT_HYBRID_SPEC_FORMAT))
        return bad(d, fmt ? fmt : root, "format", GRAFT_HYBRID_SPEC_FORMAT, err);
    int64_t n_layer;
    const graft_ynode *nl = graft_ynode_get(root, "n_layer");
    if (!nl) return bad(d, root, "n_layer", "an integer in 1..1024", err);
    if (graft_ynode_int64(d, nl, "n_layer", &n_layer, err)) return err->status;
    if (n_layer < 1 || n_layer > MAX_LAYERS) return bad(d, nl, "n_layer", "an integer in 1..1024", err);
    graft_hybrid_spec *s = NULL;
    if (graft_hybrid_spec_init(n_layer, &s, err)) return err->status;
    *out = s;

    const graft_ynode *mx = graft_ynode_get(root, "mixers");
    if (mx && !graft_ynode_is_null(mx)) {
        if (mx->kind != GRAFT_YNODE_MAP) return bad(d, mx, "mixers", "a map of name -> settings", err);
        for (int64_t i = 0; i < mx->n; i++) {
            const graft_ynode *v = mx->items[i];
            char field[160];
            snprintf(field, sizeof field, "mixers.%.100s", mx->keys[i]->text);
            if (!valid_name(mx->keys[i]->text))
                return bad(d, mx->keys[i], field, "a mixer name of [A-Za-z0-9_.-]", err);
            int64_t nkv = 0;
            graft_kv *kv = NULL;
            if (!graft_ynode_is_null(v)) {
                if (v->kind != GRAFT_YNODE_MAP) return bad(d, v, field, "a map of settings", err);
                nkv = v->n;
                kv = calloc((size_t)(nkv ? nkv : 1), sizeof *kv);
                if (!kv) return oom(err);
                char (*wh)[1100] = malloc((size_t)(nkv ? nkv : 1) * sizeof *wh);
                if (!wh) {
                    free(kv);
                    return oom(err);
                }
                graft_status st = GRAFT_STATUS_OK;
                for (int64_t j = 0; j < nkv && !st; j++) {
                    if (v->items[j]->kind != GRAFT_YNODE_SCALAR) {
                        char f2[300];
                        snprintf(f2, sizeof f2, "%s.%.100s", field, v->keys[j]->text);
                        st = bad(d, v->items[j], f2, "a scalar setting", err);
                    }
                    kv[j].key = v->keys[j]->text;
                    kv[j].value = v->items[j]->text;
                    kv[j].where = graft_ynode_where(d, v->items[j], wh[j], sizeof wh[j]);
                }
                if (!st) st = add_mixer(s, mx->keys[i]->text, kv, nkv, 1, err);
                free(kv);
                free(wh);
                if (st) return st;
            } else if (add_mixer(s, mx->keys[i]->text, NULL, 0, 1, err)) {
                return err->status;
            }
        }
    }

    const graft_ynode *lt = graft_ynode_get(root, "layer_types");
    char exp[64];
    snprintf(exp, sizeof exp, "a list of %lld layer types", (long long)n_layer);
    if (!lt) return bad(d, root, "layer_types", exp, err);
    if (lt->kind != GRAFT_YNODE_SEQ || lt->n != n_layer) return bad(d, lt, "layer_types", exp, err);
    for (int64_t l = 0; l < n_layer; l++) {
        const graft_ynode *e = lt->items[l];
        char field[64];
        snprintf(field, sizeof field, "layer_types[%lld]", (long long)l);
        if (e->kind != GRAFT_YNODE_SCALAR ||
            (strcmp(e->text, GRAFT_FULL_ATTENTION) && !find_mixer(s, e->text)))
            return bad(d, e, field, "full_attention or a mixer listed under mixers", err);
        if (graft_hybrid_spec_set_layer(s, l, e->text, NULL, err)) return err->status;
    }

    const graft_ynode *wt = graft_ynode_get(root, "weights");
    if (wt && !graft_ynode_is_null(wt)) {
        if (wt->kind != GRAFT_YNODE_MAP) return bad(d, wt, "weights", "a map of layer -> path", err);
        const char *slash = strrchr(d->path, '/');
        for (int64_t i = 0; i < wt->n; i++) {
            int64_t l;
            char field[160];
            snprintf(field, sizeof field, "weights.%.100s", wt->keys[i]->text);
            if (graft_parse_int64(wt->keys[i]->text, &l) || l < 0 || l >= n_layer) {
                char e2[64];
                snprintf(e2, sizeof e2, "a layer index in 0..%lld", (long long)(n_layer - 1));
                return bad(d, wt->keys[i], field, e2, err);
            }
            if (!strcmp(s->layer_types[l], GRAFT_FULL_ATTENTION))
                return bad(d, wt->keys[i], field, "weights only for grafted layers", err);
            if (s->weights[l]) return bad(d, wt->keys[i], field, "each layer once", err);
            const char *p;
            if (graft_ynode_string(d, wt->items[i], field, &p, err)) return err->status;
            char full[4200];
            if (p[0] != '/' && slash)
                snprintf(full, sizeof full, "%.*s/%s", (int)(slash - d->path), d->path, p);
            else
                snprintf(full, sizeof full, "%s", p);
            if (!(s->weights[l] = strdup(full))) return oom(err);
        }
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_hybrid_spec_load(const char *path, graft_hybrid_spec **out, graft_err *err) {
    *out = NULL;
    graft_ydoc *d = NULL;
    if (graft_ydoc_load(path, &d, err)) return err->status;
    graft_hybrid_spec *s = NULL;
    graft_status st = load_tree(d, &s, err);
    graft_ydoc_free(d);
    if (st) {
        graft_hybrid_spec_free(s);
        return st;
    }
    *out = s;
    return GRAFT_STATUS_OK;
}
