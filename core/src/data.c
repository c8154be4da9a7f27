/* data.c: the shard manifest, JSONL text extraction, and the training batch loader (data.h).
 * Does not hold: the shard format (shard.c) or tokenization (tokenizer.c). The windowing, split
 * and shuffling rules are documented in data.h and docs/data.md. */
#include "data.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graft/rng.h"
#include "shard.h"

/* ---- manifest ------------------------------------------------------------------------------ */

void graft_manifest_free(graft_manifest *m) {
    if (!m) return;
    free(m->tokenizer);
    for (size_t i = 0; i < m->n_shards; i++) free(m->shards[i].path);
    free(m->shards);
    for (size_t i = 0; i < m->n_sources; i++) free(m->sources[i]);
    free(m->sources);
    memset(m, 0, sizeof *m);
}

graft_status graft_manifest_add_shard(graft_manifest *m, const char *path, uint64_t tokens,
                                      uint64_t documents, uint64_t checksum, graft_err *err) {
    graft_manifest_shard *s = realloc(m->shards, (m->n_shards + 1) * sizeof *s);
    if (!s) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "manifest: out of memory");
    m->shards = s;
    s = &m->shards[m->n_shards];
    s->path = strdup(path);
    if (!s->path) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "manifest: out of memory");
    s->tokens = tokens;
    s->documents = documents;
    s->checksum = checksum;
    m->n_shards++;
    return GRAFT_STATUS_OK;
}

graft_status graft_manifest_add_source(graft_manifest *m, const char *source, graft_err *err) {
    char **s = realloc(m->sources, (m->n_sources + 1) * sizeof *s);
    if (!s) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "manifest: out of memory");
    m->sources = s;
    if (!(s[m->n_sources] = strdup(source)))
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "manifest: out of memory");
    m->n_sources++;
    return GRAFT_STATUS_OK;
}

static void hex64(char *b, uint64_t v) { snprintf(b, 19, "0x%016llx", (unsigned long long)v); }

graft_status graft_manifest_write(const char *path, const graft_manifest *m, graft_err *err) {
    char hex[24];
    json_t *shards = json_array(), *sources = json_array();
    for (size_t i = 0; i < m->n_shards; i++) {
        hex64(hex, m->shards[i].checksum);
        json_array_append_new(shards,
                              json_pack("{s:s, s:I, s:I, s:s}", "path", m->shards[i].path, "tokens",
                                        (json_int_t)m->shards[i].tokens, "documents",
                                        (json_int_t)m->shards[i].documents, "checksum", hex));
    }
    for (size_t i = 0; i < m->n_sources; i++)
        json_array_append_new(sources, json_string(m->sources[i]));
    hex64(hex, m->tokenizer_hash);
    json_t *o =
        json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o}", "format",
                  "graft-token-shards", "version", 1, "tokenizer", m->tokenizer ? m->tokenizer : "",
                  "tokenizer_hash", hex, "vocab_size", (json_int_t)m->vocab_size, "eot_id",
                  (json_int_t)m->eot_id, "n_tokens", (json_int_t)m->n_tokens, "n_documents",
                  (json_int_t)m->n_documents, "shards", shards, "sources", sources);
    if (!o)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: cannot build the manifest", path);
    size_t l = strlen(path);
    char *tmp = malloc(l + 5);
    graft_status st = GRAFT_STATUS_OK;
    if (!tmp)
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    else {
        memcpy(tmp, path, l);
        memcpy(tmp + l, ".tmp", 5);
        if (json_dump_file(o, tmp, JSON_INDENT(2)) || rename(tmp, path)) {
            st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot write: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    json_decref(o);
    return st;
}

static graft_status get_u64(json_t *o, const char *key, uint64_t *out, const char *where,
                            graft_err *err) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s.%s: missing or not a non-negative integer", where, key);
    *out = (uint64_t)json_integer_value(v);
    return GRAFT_STATUS_OK;
}

static graft_status get_hex(json_t *o, const char *key, uint64_t *out, const char *where,
                            graft_err *err) {
    json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    char *end;
    if (s) {
        errno = 0;
        *out = strtoull(s, &end, 16);
        if (!errno && *s && !*end) return GRAFT_STATUS_OK;
    }
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                         "%s.%s: missing or not a hex string, expected \"0x...\"", where, key);
}

graft_status graft_manifest_read(const char *path, graft_manifest *m, graft_err *err) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: %s", path, je.line, je.column,
                             je.text);
    graft_status st = GRAFT_STATUS_OK;
    json_t *fmt = json_object_get(o, "format"), *shards = json_object_get(o, "shards");
    json_t *tok = json_object_get(o, "tokenizer"), *sources = json_object_get(o, "sources");
    uint64_t eot = 0;
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "graft-token-shards")) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                           "%s: format: expected \"graft-token-shards\"", path);
        goto out;
    }
    if ((st = get_hex(o, "tokenizer_hash", &m->tokenizer_hash, path, err)) ||
        (st = get_u64(o, "vocab_size", &m->vocab_size, path, err)) ||
        (st = get_u64(o, "n_tokens", &m->n_tokens, path, err)) ||
        (st = get_u64(o, "n_documents", &m->n_documents, path, err)) ||
        (st = get_u64(o, "eot_id", &eot, path, err)))
        goto out;
    m->eot_id = (uint32_t)eot;
    m->tokenizer = strdup(json_is_string(tok) ? json_string_value(tok) : "");
    if (!json_is_array(shards) || json_array_size(shards) == 0) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                           "%s: shards: missing or empty, expected an array of shards", path);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(shards); i++) {
        json_t *s = json_array_get(shards, i);
        char where[600];
        snprintf(where, sizeof where, "%s: shards[%zu]", path, i);
        json_t *p = json_object_get(s, "path");
        uint64_t tokens = 0, docs = 0, sum = 0;
        if (!json_is_string(p)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s.path: missing or not a string",
                               where);
            goto out;
        }
        if ((st = get_u64(s, "tokens", &tokens, where, err)) ||
            (st = get_u64(s, "documents", &docs, where, err)) ||
            (st = get_hex(s, "checksum", &sum, where, err)) ||
            (st = graft_manifest_add_shard(m, json_string_value(p), tokens, docs, sum, err)))
            goto out;
    }
    for (size_t i = 0; i < json_array_size(sources); i++)
        if (json_is_string(json_array_get(sources, i)) &&
            (st = graft_manifest_add_source(m, json_string_value(json_array_get(sources, i)), err)))
            goto out;
out:
    json_decref(o);
    if (st) graft_manifest_free(m);
    return st;
}

graft_status graft_jsonl_text(const char *line, size_t n, char **text, size_t *len,
                              graft_err *err) {
    *text = NULL;
    *len = 0;
    json_error_t je;
    json_t *o = json_loadb(line, n, JSON_ALLOW_NUL, &je);
    json_t *t = json_object_get(o, "text");
    if (!o || !json_is_string(t)) {
        graft_status st = graft_err_set(
            err, GRAFT_STATUS_BAD_INPUT, "%s",
            !o ? je.text : "\"text\": missing or not a string, expected {\"text\": \"...\"}");
        json_decref(o);
        return st;
    }
    size_t l = json_string_length(t);
    char *s = malloc(l + 1);
    if (!s) {
        json_decref(o);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
    }
    memcpy(s, json_string_value(t), l + 1);
    json_decref(o);
    *text = s;
    *len = l;
    return GRAFT_STATUS_OK;
}

/* ---- loader -------------------------------------------------------------------------------- */

graft_data_params graft_data_default_params(void) {
    graft_data_params p = {
        .B = 8, .T = 256, .shuffle = 1, .seed = 0, .holdout_fraction = 0.01, .max_vocab = 0};
    return p;
}

struct graft_data {
    graft_data_params p;
    graft_shard_t **shards;
    size_t n_shards;
    uint64_t *first_window; /* (n_shards + 1): global index of each shard's first window */
    uint64_t n_windows, n_train, n_eval;
    uint64_t *perm; /* (n_train) this epoch's order; NULL when not shuffling */
    graft_data_cursor cur;
};

void graft_data_close(graft_data_t *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_shards; i++) graft_shard_close(d->shards[i]);
    free(d->shards);
    free(d->first_window);
    free(d->perm);
    free(d);
}

uint64_t graft_data_n_train(const graft_data_t *d) { return d->n_train; }
uint64_t graft_data_n_eval(const graft_data_t *d) { return d->n_eval; }

static graft_status add_shard(graft_data_t *d, const char *path, graft_err *err) {
    graft_shard_t **s = realloc(d->shards, (d->n_shards + 1) * sizeof *s);
    if (!s) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "data: out of memory");
    d->shards = s;
    graft_status st = graft_shard_open(path, d->p.max_vocab, &d->shards[d->n_shards], err);
    if (st) return st;
    const graft_shard_header *h0 = graft_shard_get_header(d->shards[0]);
    const graft_shard_header *h = graft_shard_get_header(d->shards[d->n_shards]);
    d->n_shards++;
    if (h->tokenizer_hash != h0->tokenizer_hash)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 32: tokenizer_hash 0x%016llx, expected 0x%016llx as in %s "
                             "(another tokenizer)",
                             path, (unsigned long long)h->tokenizer_hash,
                             (unsigned long long)h0->tokenizer_hash,
                             graft_shard_path(d->shards[0]));
    return GRAFT_STATUS_OK;
}

static graft_status add_manifest(graft_data_t *d, const char *mpath, graft_err *err) {
    graft_manifest m;
    graft_status st = graft_manifest_read(mpath, &m, err);
    if (st) return st;
    const char *slash = strrchr(mpath, '/');
    size_t dl = slash ? (size_t)(slash - mpath) : 0;
    for (size_t i = 0; i < m.n_shards && !st; i++) {
        char p[4096];
        if (m.shards[i].path[0] == '/' || !slash)
            snprintf(p, sizeof p, "%s", m.shards[i].path);
        else
            snprintf(p, sizeof p, "%.*s/%s", (int)dl, mpath, m.shards[i].path);
        st = add_shard(d, p, err);
        if (!st) {
            const graft_shard_header *h = graft_shard_get_header(d->shards[d->n_shards - 1]);
            if (h->n_tokens != m.shards[i].tokens || h->checksum != m.shards[i].checksum ||
                h->tokenizer_hash != m.tokenizer_hash)
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s: shards[%zu] (%s): tokens/checksum/tokenizer_hash differ "
                                   "from the shard's header",
                                   mpath, i, p);
        }
    }
    graft_manifest_free(&m);
    return st;
}

static void make_perm(graft_data_t *d) {
    if (!d->perm) return;
    for (uint64_t i = 0; i < d->n_train; i++) d->perm[i] = i;
    graft_rng r = graft_rng_make(d->p.seed, d->cur.epoch);
    for (uint64_t i = d->n_train; i > 1; i--) {
        uint64_t j = graft_rng_next(&r) % i;
        uint64_t t = d->perm[i - 1];
        d->perm[i - 1] = d->perm[j];
        d->perm[j] = t;
    }
}

graft_status graft_data_open(const char *const *paths, size_t n_paths, const graft_data_params *p,
                             graft_data_t **out, graft_err *err) {
    *out = NULL;
    if (p->B < 1 || p->T < 1 || p->T > (1 << 24) ||
        !(p->holdout_fraction >= 0 && p->holdout_fraction <= 0.5))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "data: B %lld, T %lld, holdout_fraction %g, expected B >= 1, 1 <= T "
                             "<= 2^24, holdout 0..0.5",
                             (long long)p->B, (long long)p->T, p->holdout_fraction);
    if (n_paths == 0) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "data: no shards given");
    if (p->n_heldout > 0 && p->holdout_fraction != 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "data: held-out shards and holdout_fraction %g given, expected one of the two",
                             p->holdout_fraction);
    graft_data_t *d = calloc(1, sizeof *d);
    if (!d) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "data: out of memory");
    d->p = *p;
    graft_status st = GRAFT_STATUS_OK;
    size_t n_train_shards = 0;
    for (size_t i = 0; i < n_paths + p->n_heldout && !st; i++) {
        if (i == n_paths) n_train_shards = d->n_shards;
        const char *path = i < n_paths ? paths[i] : p->heldout_paths[i - n_paths];
        struct stat sb;
        char mp[4200];
        const size_t l = strlen(path);
        if (!stat(path, &sb) && S_ISDIR(sb.st_mode)) {
            snprintf(mp, sizeof mp, "%s/manifest.json", path);
            st = add_manifest(d, mp, err);
        } else if (l >= 5 && !strcmp(path + l - 5, ".json")) {
            st = add_manifest(d, path, err);
        } else {
            st = add_shard(d, path, err);
        }
    }
    if (p->n_heldout == 0) n_train_shards = d->n_shards;
    if (!st) {
        d->first_window = calloc(d->n_shards + 1, sizeof *d->first_window);
        if (!d->first_window)
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "data: out of memory");
    }
    if (!st) {
        uint64_t w = 0;
        for (size_t i = 0; i < d->n_shards; i++) {
            d->first_window[i] = w;
            uint64_t n = graft_shard_get_header(d->shards[i])->n_tokens;
            w += n > 0 ? (n - 1) / (uint64_t)p->T : 0;
        }
        d->first_window[d->n_shards] = w;
        d->n_windows = w;
        if (p->n_heldout > 0) {
            d->n_eval = w - d->first_window[n_train_shards];
        } else {
            d->n_eval =
                (uint64_t)ceil(p->holdout_fraction * (double)w - 1e-9); /* no 15.000000001 -> 16 */
            if (p->holdout_fraction > 0 && d->n_eval == 0) d->n_eval = 1;
            if (d->n_eval >= w) d->n_eval = w ? w - 1 : 0;
        }
        d->n_train = w - d->n_eval;
        if (p->n_heldout > 0 && d->n_eval == 0)
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "data: the held-out shards hold no window of T+1 = %lld tokens", (long long)p->T + 1);
        else if (d->n_train == 0)
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "data: %llu windows of T+1 = %lld tokens in %zu shard(s), expected "
                               "at least one training window",
                               (unsigned long long)w, (long long)p->T + 1, d->n_shards);
    }
    if (!st && p->shuffle) {
        d->perm = malloc(d->n_train * sizeof *d->perm);
        if (!d->perm) st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "data: out of memory");
    }
    if (st) {
        graft_data_close(d);
        return st;
    }
    d->cur.seed = p->seed;
    d->cur.n_train = d->n_train;
    make_perm(d);
    *out = d;
    return GRAFT_STATUS_OK;
}

/* Copies global window g into dst (T + 1 tokens). */
static void copy_window(const graft_data_t *d, uint64_t g, uint32_t *dst) {
    size_t lo = 0,
           hi = d->n_shards; /* find shard s with first_window[s] <= g < first_window[s+1] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (d->first_window[mid] <= g)
            lo = mid;
        else
            hi = mid;
    }
    uint64_t n;
    const uint32_t *tok = graft_shard_tokens(d->shards[lo], &n);
    uint64_t start = (g - d->first_window[lo]) * (uint64_t)d->p.T;
    memcpy(dst, tok + start, ((size_t)d->p.T + 1) * sizeof *dst);
}

graft_status graft_data_next(graft_data_t *d, uint32_t *windows, graft_err *err) {
    size_t row = (size_t)d->p.T + 1;
    for (int64_t b = 0; b < d->p.B; b++) {
        if (d->cur.position >= d->n_train) {
            d->cur.epoch++;
            d->cur.position = 0;
            make_perm(d);
        }
        uint64_t k = d->perm ? d->perm[d->cur.position] : d->cur.position;
        copy_window(d, k, windows + (size_t)b * row);
        d->cur.position++;
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_data_eval_batch(const graft_data_t *d, uint64_t index, uint32_t *windows,
                                   int64_t *n_rows, graft_err *err) {
    uint64_t first = index * (uint64_t)d->p.B;
    if (first >= d->n_eval)
        return graft_err_set(
            err, GRAFT_STATUS_BAD_INPUT, "data: eval batch %llu, expected < %llu",
            (unsigned long long)index,
            (unsigned long long)((d->n_eval + (uint64_t)d->p.B - 1) / (uint64_t)d->p.B));
    int64_t rows = 0;
    for (uint64_t k = first; k < d->n_eval && rows < d->p.B; k++, rows++)
        copy_window(d, d->n_train + k, windows + (size_t)rows * ((size_t)d->p.T + 1));
    *n_rows = rows;
    return GRAFT_STATUS_OK;
}

graft_data_cursor graft_data_get_cursor(const graft_data_t *d) { return d->cur; }

graft_status graft_data_set_cursor(graft_data_t *d, const graft_data_cursor *c, graft_err *err) {
    if (c->seed != d->p.seed || c->n_train != d->n_train || c->position > d->n_train)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "data cursor: seed %llu, %llu training windows, position %llu; this "
                             "loader has seed %llu "
                             "and %llu training windows (another dataset or seed)",
                             (unsigned long long)c->seed, (unsigned long long)c->n_train,
                             (unsigned long long)c->position, (unsigned long long)d->p.seed,
                             (unsigned long long)d->n_train);
    uint64_t old_epoch = d->cur.epoch;
    d->cur = *c;
    if (d->perm && c->epoch != old_epoch) make_perm(d);
    return GRAFT_STATUS_OK;
}

void graft_data_window_ids(const uint32_t *windows, int64_t rows, int64_t T, int32_t *ids, int32_t *labels) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < T; t++) {
            ids[r * T + t] = (int32_t)windows[r * (T + 1) + t];
            if (labels) labels[r * T + t] = (int32_t)windows[r * (T + 1) + t + 1];
        }
}
