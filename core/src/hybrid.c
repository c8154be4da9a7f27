/* hybrid.c: assembling, loading and saving hybrid models (hybrid.h). */
#include "hybrid.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "graft/graft.h"
#include "fsutil.h"
#include "safetensors.h"

static int is_softmax(const char *mixer) { return !mixer || !strcmp(mixer, "softmax") || !strcmp(mixer, "full_attention"); }

/* Appends a line to a growing note. */
static void note_add(char **note, const char *line) {
    size_t old = *note ? strlen(*note) : 0, n = strlen(line);
    char *p = realloc(*note, old + n + 2);
    if (!p) return;
    memcpy(p + old, line, n);
    p[old + n] = '\n';
    p[old + n + 1] = 0;
    *note = p;
}

graft_status graft_hybrid_assemble(graft_model_t *base, const graft_hybrid_layer *layers, uint64_t seed,
                                   graft_model_t **out, char **note, graft_err *err) {
    *out = NULL;
    if (note) *note = NULL;
    const graft_qwen3_config *c = graft_model_config(base);
    graft_layer_spec *specs = calloc((size_t)c->n_layer, sizeof *specs);
    if (!specs) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "hybrid: out of memory");
    for (int64_t l = 0; l < c->n_layer; l++) {
        specs[l].mixer = is_softmax(layers[l].mixer) ? "softmax" : layers[l].mixer;
        specs[l].kv = layers[l].kv;
        specs[l].n_kv = layers[l].n_kv;
        specs[l].origin = layers[l].origin;
    }
    graft_model_t *h = NULL;
    graft_status st = graft_model_create(c, specs, &h, err);
    free(specs);
    if (st) return st;
    /* mixers start from their own init; everything shared comes from base */
    if ((st = graft_model_init_random(h, seed, err))) goto fail;
    for (int64_t i = 0; i < graft_model_n_params(h); i++) {
        graft_model_param *p = graft_model_param_at(h, i);
        graft_model_param *q = graft_model_param_find(base, p->name);
        if (q && q->numel == p->numel) memcpy(p->data, q->data, (size_t)p->numel * sizeof(float));
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (is_softmax(layers[l].mixer) || !layers[l].weights) continue;
        graft_st_file_t *f = NULL;
        if ((st = graft_st_open(layers[l].weights, &f, err))) goto fail;
        char prefix[64], mlp_prefix[64];
        int plen = snprintf(prefix, sizeof prefix, "model.layers.%lld.mixer.", (long long)l);
        int mlen = snprintf(mlp_prefix, sizeof mlp_prefix, "model.layers.%lld.mlp.", (long long)l);
        /* every tensor of the file must be one of this layer's mixer parameters, or its MLP
         * (a Stage 0 student trained with `train: [mixer, mlp]` carries its own MLP) */
        for (int64_t t = 0; t < graft_st_count(f); t++) {
            const graft_st_tensor *ten = graft_st_get(f, t);
            graft_model_param *p = graft_model_param_find(h, ten->name);
            if ((strncmp(ten->name, prefix, (size_t)plen) && strncmp(ten->name, mlp_prefix, (size_t)mlen)) || !p) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s: \"%s\": not a mixer parameter of layer %lld (%s), expected names starting \"%s\"",
                                   layers[l].weights, ten->name, (long long)l, layers[l].mixer, prefix);
                graft_st_close(f);
                goto fail;
            }
            int same = ten->ndim == p->ndim;
            for (int d = 0; same && d < p->ndim; d++) same = ten->shape[d] == p->shape[d];
            if (!same) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": shape does not match the layer's mixer settings",
                                   layers[l].weights, ten->name);
                graft_st_close(f);
                goto fail;
            }
            if ((st = graft_st_read_f32(f, ten, p->data, p->numel, err))) {
                graft_st_close(f);
                goto fail;
            }
        }
        for (int64_t i = 0; note && i < graft_model_n_params(h); i++) {
            graft_model_param *p = graft_model_param_at(h, i);
            if (strncmp(p->name, prefix, (size_t)plen) || graft_st_find(f, p->name)) continue;
            char line[512];
            snprintf(line, sizeof line, "%s keeps its init (not in %s)", p->name, layers[l].weights);
            note_add(note, line);
        }
        graft_st_close(f);
    }
    *out = h;
    return GRAFT_STATUS_OK;
fail:
    graft_model_free(h);
    if (note) {
        free(*note);
        *note = NULL;
    }
    return st;
}

/* ---- on disk ------------------------------------------------------------------------------- */

typedef struct owned_specs {
    graft_layer_spec *specs;
    graft_kv *kv;             /* all settings, all layers */
    char **strings;
    int64_t n_strings;
} owned_specs;

static void owned_free(owned_specs *o) {
    for (int64_t i = 0; i < o->n_strings; i++) free(o->strings[i]);
    free(o->strings);
    free(o->kv);
    free(o->specs);
}

static char *keep(owned_specs *o, const char *s) {
    char *d = strdup(s);
    if (d) o->strings[o->n_strings++] = d;
    return d;
}

/* layer_types + graft_mixers of config.json into per-layer specs. */
static graft_status read_layer_specs(const char *path, int64_t L, owned_specs *o, graft_err *err) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    graft_status st = GRAFT_STATUS_OK;
    json_t *lt = json_object_get(root, "layer_types");
    json_t *mx = json_object_get(root, "graft_mixers");
    size_t n_set = 0;
    if (mx && !json_is_object(mx)) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: graft_mixers: expected an object of mixer -> settings", path);
        goto done;
    }
    const char *mk;
    json_t *mv;
    if (mx) json_object_foreach(mx, mk, mv) {
        if (!json_is_object(mv)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: graft_mixers.%s: expected an object of settings", path, mk);
            goto done;
        }
        n_set += json_object_size(mv);
    }
    o->specs = calloc((size_t)L, sizeof *o->specs);
    o->kv = calloc(n_set * (size_t)L + 1, sizeof *o->kv);
    o->strings = calloc(2 * n_set + (size_t)L + 8, sizeof *o->strings);
    if (!o->specs || !o->kv || !o->strings) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto done;
    }
    /* settings shared by all layers of one mixer: one kv array per mixer */
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        if (o->specs[l].mixer) continue; /* filled by an earlier layer of the same mixer */
        const char *type = lt && json_is_array(lt) ? json_string_value(json_array_get(lt, (size_t)l)) : NULL;
        if (!type || !strcmp(type, "full_attention")) {
            o->specs[l].mixer = "softmax";
            continue;
        }
        o->specs[l].mixer = keep(o, type);
        o->specs[l].origin = path;
        json_t *set = mx ? json_object_get(mx, type) : NULL;
        o->specs[l].kv = o->kv + used;
        const char *k;
        json_t *v;
        if (set) json_object_foreach(set, k, v) {
            char buf[64];
            const char *val;
            if (json_is_string(v)) val = json_string_value(v);
            else if (json_is_integer(v)) { snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)); val = buf; }
            else if (json_is_real(v)) { snprintf(buf, sizeof buf, "%.17g", json_real_value(v)); val = buf; }
            else if (json_is_boolean(v)) val = json_is_true(v) ? "true" : "false";
            else {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: graft_mixers.%s.%s: expected a string, number or boolean",
                                   path, type, k);
                goto done;
            }
            /* strings are kept once per mixer; layers of one mixer share them */
            o->kv[used].key = keep(o, k);
            o->kv[used].value = keep(o, val);
            o->kv[used].where = path;
            used++;
            o->specs[l].n_kv++;
        }
        /* later layers of the same mixer reuse this layer's array */
        for (int64_t m = l + 1; m < L; m++) {
            const char *t2 = json_string_value(json_array_get(lt, (size_t)m));
            if (t2 && !strcmp(t2, type)) {
                o->specs[m].mixer = o->specs[l].mixer;
                o->specs[m].kv = o->specs[l].kv;
                o->specs[m].n_kv = o->specs[l].n_kv;
                o->specs[m].origin = path;
            }
        }
    }
done:
    json_decref(root);
    return st;
}

graft_status graft_hybrid_load(const char *dir, graft_model_t **out, graft_err *err) {
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
    graft_qwen3_config cfg;
    graft_status st = graft_config_load_hybrid(path, &cfg, err);
    if (st) return st;
    owned_specs o = {0};
    if ((st = read_layer_specs(path, cfg.n_layer, &o, err))) {
        owned_free(&o);
        return st;
    }
    graft_model_t *m = NULL;
    st = graft_model_create(&cfg, o.specs, &m, err);
    owned_free(&o); /* plugins copied what they need at create */
    if (st) return st;
    if ((st = graft_model_load_weights(m, dir, err))) {
        graft_model_free(m);
        return st;
    }
    *out = m;
    return GRAFT_STATUS_OK;
}

static graft_status copy_file(const char *from, const char *to, graft_err *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", from, strerror(errno));
    FILE *o = fopen(to, "wb");
    if (!o) {
        fclose(in);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", to, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    int bad = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, o) != n) bad = 1;
    bad |= ferror(in);
    fclose(in);
    if (fclose(o) || bad) return graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed", to);
    return GRAFT_STATUS_OK;
}

graft_status graft_hybrid_save(graft_model_t *m, const graft_hybrid_layer *layers, const char *dir,
                               const char *tokenizer_dir, graft_err *err) {
    const graft_qwen3_config *c = graft_model_config(m);
    char tmp[4096], path[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
    graft_status st = graft_fs_remove_tree(tmp, err);
    if (st || (st = graft_fs_mkdir_p(tmp, err))) return st;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if ((st = graft_config_write(path, c, err))) return st;
    if (layers) {
        json_error_t je;
        json_t *root = json_load_file(path, 0, &je);
        if (!root) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: cannot re-read: %s", path, je.text);
        json_t *lt = json_array(), *mx = json_object();
        for (int64_t l = 0; l < c->n_layer; l++) {
            const char *name = is_softmax(layers[l].mixer) ? "full_attention" : layers[l].mixer;
            json_array_append_new(lt, json_string(name));
            if (is_softmax(layers[l].mixer) || json_object_get(mx, name)) continue;
            json_t *set = json_object();
            for (int64_t k = 0; k < layers[l].n_kv; k++)
                json_object_set_new(set, layers[l].kv[k].key, json_string(layers[l].kv[k].value));
            json_object_set_new(mx, name, set);
        }
        json_object_set_new(root, "layer_types", lt);
        json_object_set_new(root, "graft_mixers", mx);
        int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(root);
        if (rc) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot write", path);
    }
    int64_t n = graft_model_n_params(m);
    graft_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "hybrid save: out of memory");
    for (int64_t i = 0; i < n; i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        e[i].name = p->name;
        e[i].dtype = GRAFT_DTYPE_F32;
        e[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) e[i].shape[d] = p->shape[d];
        e[i].f32 = p->data;
    }
    static const char *const meta[] = {"graft_version", GRAFT_VERSION_STRING, NULL};
    st = graft_ckpt_write(tmp, e, n, 2000000000ull, meta, err);
    free(e);
    if (st) return st;
    if (tokenizer_dir) {
        static const char *const files[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                            "added_tokens.json", "special_tokens_map.json", NULL};
        for (const char *const *f = files; *f; f++) {
            char from[4200];
            snprintf(from, sizeof from, "%s/%s", tokenizer_dir, *f);
            if (access(from, R_OK)) continue;
            snprintf(path, sizeof path, "%s/%s", tmp, *f);
            if ((st = copy_file(from, path, err))) return st;
        }
    }
    return graft_fs_publish_dir(tmp, dir, err);
}
