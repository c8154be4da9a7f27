/* recipe.c: the recipe schema (recipe.h) checked key by key over the yaml_tree of the file.
 * Holds the schema, defaults, ranges and path resolution; not the stages' execution.
 * docs/recipes.md is the reference this file implements; change both together. */
#include "recipe.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_tree.h"

/* Key paths in messages are built in fixed buffers; an absurdly long path is cut, never overrun. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* ---- a pool owning every allocation of a recipe ---------------------------------------------- */

typedef struct blk {
    struct blk *next;
    alignas(max_align_t) unsigned char data[];
} blk;

struct graft_recipe_pool {
    blk *head;
};

typedef struct ctx {
    graft_recipe *r;
    graft_ydoc *doc;
    graft_err *err;
    const char *const *known_mixers;
} ctx;

static void *palloc(ctx *c, size_t n) {
    blk *b = calloc(1, sizeof *b + (n ? n : 1));
    if (!b) return NULL;
    b->next = c->r->pool_->head;
    c->r->pool_->head = b;
    return b->data;
}

static char *pstrdup(ctx *c, const char *s) {
    size_t n = strlen(s);
    char *d = palloc(c, n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

#define OOM(c) graft_err_set((c)->err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", (c)->doc->path)

/* ---- messages --------------------------------------------------------------------------------- */

static const char *where(ctx *c, const graft_ynode *n, char *buf, size_t size) {
    return graft_ynode_where(c->doc, n, buf, size);
}

static graft_status bad(ctx *c, const graft_ynode *n, const char *kp, const char *expected) {
    char w[1100], d[96];
    return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected %s",
                         where(c, n, w, sizeof w), kp, graft_ynode_describe(n, d, sizeof d),
                         expected);
}

static graft_status missing(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                            const char *expected) {
    char w[1100];
    return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT, "%s: %s%s%s: missing, expected %s",
                         where(c, map, w, sizeof w), kp, *kp ? "." : "", key, expected);
}

static graft_status set_pos(ctx *c, graft_recipe_pos *p, const graft_ynode *n, const char *kp) {
    char w[1100];
    p->where = pstrdup(c, where(c, n, w, sizeof w));
    p->field = pstrdup(c, kp);
    return (p->where && p->field) ? GRAFT_STATUS_OK : OOM(c);
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* " (did you mean x?)" when a candidate is close, else "". */
static const char *suggest(const char *word, const char *const *cands, char *buf, size_t size) {
    const char *best = NULL;
    size_t bd = 99;
    for (const char *const *k = cands; k && *k; k++) {
        size_t d = edit_distance(word, *k);
        if (d < bd) bd = d, best = *k;
    }
    size_t wl = strlen(word);
    size_t lim = wl <= 3 ? 1 : (wl <= 6 ? 2 : 3);
    if (best && bd <= lim) snprintf(buf, size, " (did you mean %s?)", best);
    else buf[0] = 0;
    return buf;
}

static void join(const char *const *list, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (const char *const *k = list; k && *k; k++) {
        int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", *k);
        if (w < 0 || (size_t)w >= size - len) break;
        len += (size_t)w;
    }
}

static graft_status check_keys(ctx *c, const graft_ynode *map, const char *kp,
                               const char *const *allowed) {
    for (int64_t i = 0; i < map->n; i++) {
        const char *k = map->keys[i]->text;
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(k, *a)) ok = 1;
        if (ok) continue;
        char w[1100], s[128], list[700];
        join(allowed, list, sizeof list);
        return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT,
                             "%s: %s%s%.100s: unknown key%s, expected one of: %s",
                             where(c, map->keys[i], w, sizeof w), kp, *kp ? "." : "", k,
                             suggest(k, allowed, s, sizeof s), list);
    }
    return GRAFT_STATUS_OK;
}

static graft_status need_map(ctx *c, const graft_ynode *n, const char *kp) {
    if (n && n->kind == GRAFT_YNODE_MAP) return GRAFT_STATUS_OK;
    return bad(c, n, kp, "a map");
}

/* ---- typed getters: absent keys keep *out (the default) unless required ----------------------- */

static void kpath(char *buf, size_t size, const char *kp, const char *key) {
    snprintf(buf, size, "%s%s%s", kp, *kp ? "." : "", key);
}

static graft_status get_int(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                            int64_t lo, int64_t hi, int required, int64_t *out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char exp[96], p[300];
    if (hi == INT64_MAX) snprintf(exp, sizeof exp, "an integer >= %lld", (long long)lo);
    else snprintf(exp, sizeof exp, "an integer in %lld..%lld", (long long)lo, (long long)hi);
    if (!n) return required ? missing(c, map, kp, key, exp) : GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    int64_t v;
    if (n->kind != GRAFT_YNODE_SCALAR || n->quoted || graft_parse_int64(n->text, &v) || v < lo ||
        v > hi)
        return bad(c, n, p, exp);
    *out = v;
    return GRAFT_STATUS_OK;
}

/* Bounds: lo_open/hi_open make the bound exclusive; hi = INFINITY for none. */
static graft_status num_node(ctx *c, const graft_ynode *n, const char *p, double lo, int lo_open,
                             double hi, int hi_open, double *out) {
    char exp[96];
    if (isinf(hi)) snprintf(exp, sizeof exp, "a number %s %g", lo_open ? ">" : ">=", lo);
    else snprintf(exp, sizeof exp, "a number in %c%g, %g%c", lo_open ? '(' : '[', lo, hi,
                  hi_open ? ')' : ']');
    double v;
    if (!n || n->kind != GRAFT_YNODE_SCALAR || n->quoted || graft_parse_double(n->text, &v) ||
        v < lo || (lo_open && v == lo) || v > hi || (hi_open && v == hi))
        return bad(c, n, p, exp);
    *out = v;
    return GRAFT_STATUS_OK;
}

static graft_status get_num(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                            double lo, int lo_open, double hi, int hi_open, int required,
                            double *out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char p[300];
    if (!n) {
        if (!required) return GRAFT_STATUS_OK;
        return missing(c, map, kp, key, "a number");
    }
    kpath(p, sizeof p, kp, key);
    return num_node(c, n, p, lo, lo_open, hi, hi_open, out);
}

static graft_status get_bool(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                             int *out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char p[300];
    if (!n) return GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    return graft_ynode_bool(c->doc, n, p, out, c->err);
}

static graft_status get_str(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                            int required, const char **out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char p[300];
    if (!n) return required ? missing(c, map, kp, key, "a string") : GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    const char *s;
    if (graft_ynode_string(c->doc, n, p, &s, c->err)) return c->err->status;
    if (!(*out = pstrdup(c, s))) return OOM(c);
    return GRAFT_STATUS_OK;
}

/* Removes "." and "name/.." components in place (lexically: symlinks are not followed), so that
 * paths in messages read "/x/runs/demo", not "/x/recipes/../runs/demo". */
static void normalize_path(char *p) {
    size_t n = strlen(p);
    char *src = malloc(n + 1);
    if (!src) return; /* left as it is: still a valid path */
    memcpy(src, p, n + 1);
    int abs = src[0] == '/', k = 0;
    const char *comps[256];
    char *save = NULL;
    for (char *tok = strtok_r(src, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..") && k > 0 && strcmp(comps[k - 1], "..")) {
            k--;
            continue;
        }
        if (!strcmp(tok, "..") && k == 0 && abs) continue; /* "/.." is "/" */
        if (k == 256) {
            free(src);
            return;
        }
        comps[k++] = tok;
    }
    char *out = p;
    if (abs) *out++ = '/';
    for (int i = 0; i < k; i++) {
        if (i) *out++ = '/';
        size_t len = strlen(comps[i]);
        memcpy(out, comps[i], len);
        out += len;
    }
    if (out == p) *out++ = '.';
    *out = 0;
    free(src);
}

static const char *resolve(ctx *c, const char *path) {
    if (path[0] == '/') return pstrdup(c, path);
    size_t n = strlen(c->r->dir) + strlen(path) + 2;
    char *d = palloc(c, n);
    if (d) {
        snprintf(d, n, "%s/%s", c->r->dir, path);
        normalize_path(d);
    }
    return d;
}

static graft_status path_node(ctx *c, const graft_ynode *n, const char *p, const char **out) {
    const char *s;
    if (graft_ynode_string(c->doc, n, p, &s, c->err)) return c->err->status;
    if (!(*out = resolve(c, s))) return OOM(c);
    return GRAFT_STATUS_OK;
}

static graft_status get_path(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                             int required, const char **out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char p[300];
    if (!n) return required ? missing(c, map, kp, key, "a path") : GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    return path_node(c, n, p, out);
}

/* A path or a list of paths (>= 1). */
static graft_status get_paths(ctx *c, const graft_ynode *n, const char *p, const char *const **out,
                              int64_t *count) {
    if (n && n->kind == GRAFT_YNODE_SEQ) {
        if (n->n == 0) return bad(c, n, p, "a path or a non-empty list of paths");
        const char **a = palloc(c, (size_t)n->n * sizeof *a);
        if (!a) return OOM(c);
        for (int64_t i = 0; i < n->n; i++) {
            char q[320];
            snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
            if (path_node(c, n->items[i], q, &a[i])) return c->err->status;
        }
        *out = a;
        *count = n->n;
        return GRAFT_STATUS_OK;
    }
    const char **a = palloc(c, sizeof *a);
    if (!a) return OOM(c);
    if (path_node(c, n, p, &a[0])) return c->err->status;
    *out = a;
    *count = 1;
    return GRAFT_STATUS_OK;
}

/* One of `names` (NULL-terminated); *out is its index. */
static graft_status get_enum(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                             const char *const *names, int required, int *out) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char list[300], exp[340], p[300], s[128];
    join(names, list, sizeof list);
    snprintf(exp, sizeof exp, "one of: %s", list);
    if (!n) return required ? missing(c, map, kp, key, exp) : GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    if (n->kind == GRAFT_YNODE_SCALAR)
        for (int i = 0; names[i]; i++)
            if (!strcmp(n->text, names[i])) {
                *out = i;
                return GRAFT_STATUS_OK;
            }
    if (n->kind == GRAFT_YNODE_SCALAR && suggest(n->text, names, s, sizeof s)[0]) {
        char w[1100], d[96];
        return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s%s, expected %s",
                             where(c, n, w, sizeof w), p, graft_ynode_describe(n, d, sizeof d), s,
                             exp);
    }
    return bad(c, n, p, exp);
}

/* A scalar or a list of integers (each >= lo). */
static graft_status get_int_list(ctx *c, const graft_ynode *map, const char *kp, const char *key,
                                 int64_t lo, int required, const int64_t **out, int64_t *count) {
    const graft_ynode *n = graft_ynode_get(map, key);
    char p[300], exp[96];
    snprintf(exp, sizeof exp, "a list of integers >= %lld", (long long)lo);
    if (!n) return required ? missing(c, map, kp, key, exp) : GRAFT_STATUS_OK;
    kpath(p, sizeof p, kp, key);
    int64_t m = n->kind == GRAFT_YNODE_SEQ ? n->n : 1;
    if (n->kind == GRAFT_YNODE_MAP || m == 0) return bad(c, n, p, exp);
    int64_t *a = palloc(c, (size_t)m * sizeof *a);
    if (!a) return OOM(c);
    for (int64_t i = 0; i < m; i++) {
        const graft_ynode *e = n->kind == GRAFT_YNODE_SEQ ? n->items[i] : n;
        char q[320], ex[96];
        if (n->kind == GRAFT_YNODE_SEQ) snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
        else snprintf(q, sizeof q, "%s", p);
        snprintf(ex, sizeof ex, "an integer >= %lld", (long long)lo);
        if (!e || e->kind != GRAFT_YNODE_SCALAR || e->quoted || graft_parse_int64(e->text, &a[i]) ||
            a[i] < lo)
            return bad(c, e, q, ex);
    }
    *out = a;
    *count = m;
    return GRAFT_STATUS_OK;
}

static graft_status check_mixer_name(ctx *c, const graft_ynode *key, const char *p) {
    if (!c->known_mixers) return GRAFT_STATUS_OK;
    for (const char *const *k = c->known_mixers; *k; k++)
        if (!strcmp(*k, key->text)) return GRAFT_STATUS_OK;
    char w[1100], s[128], list[700];
    join(c->known_mixers, list, sizeof list);
    return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT,
                         "%s: %s: unknown mixer \"%.100s\"%s, expected a mixer plugin found at run "
                         "time: %s",
                         where(c, key, w, sizeof w), p, key->text,
                         suggest(key->text, c->known_mixers, s, sizeof s), list[0] ? list : "(none)");
}

/* ---- layer sets ------------------------------------------------------------------------------- */

static int parse_range(const char *t, int64_t *lo, int64_t *hi) {
    const char *dash = strchr(t, '-');
    if (!dash) {
        if (graft_parse_int64(t, lo) || *lo < 0) return -1;
        *hi = *lo;
        return 0;
    }
    char a[32];
    size_t la = (size_t)(dash - t);
    if (la == 0 || la >= sizeof a) return -1;
    memcpy(a, t, la);
    a[la] = 0;
    if (a[0] == '+' || dash[1] == '+' || dash[1] == '-') return -1;
    if (graft_parse_int64(a, lo) || graft_parse_int64(dash + 1, hi)) return -1;
    if (*lo < 0 || *hi < *lo) return -1;
    return 0;
}

static graft_status layer_set(ctx *c, const graft_ynode *n, const char *p, graft_layer_set *out) {
    static const char *exp =
        "all, or a list of 0-based layer indices and ranges \"a-b\" (a <= b)";
    memset(out, 0, sizeof *out);
    if (!n) return bad(c, n, p, exp);
    if (n->kind == GRAFT_YNODE_SCALAR && !n->quoted && !strcmp(n->text, "all")) {
        out->all = 1;
        return GRAFT_STATUS_OK;
    }
    int64_t m = n->kind == GRAFT_YNODE_SEQ ? n->n : 1;
    if (n->kind == GRAFT_YNODE_MAP || m == 0) return bad(c, n, p, exp);
    graft_layer_range *r = palloc(c, (size_t)m * sizeof *r);
    if (!r) return OOM(c);
    for (int64_t i = 0; i < m; i++) {
        const graft_ynode *e = n->kind == GRAFT_YNODE_SEQ ? n->items[i] : n;
        char q[320];
        if (n->kind == GRAFT_YNODE_SEQ) snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
        else snprintf(q, sizeof q, "%s", p);
        if (e->kind != GRAFT_YNODE_SCALAR || parse_range(e->text, &r[i].lo, &r[i].hi))
            return bad(c, e, q, "a 0-based layer index or a range \"a-b\" with a <= b");
        if (!(r[i].text = pstrdup(c, e->text))) return OOM(c);
        if (set_pos(c, &r[i].pos, e, q)) return c->err->status;
    }
    out->ranges = r;
    out->n_ranges = m;
    return GRAFT_STATUS_OK;
}

int64_t graft_layer_set_expand(const graft_layer_set *set, int64_t n_layer, int64_t *out) {
    int64_t k = 0;
    for (int64_t l = 0; l < n_layer; l++) {
        int in = set->all;
        for (int64_t i = 0; !in && i < set->n_ranges; i++)
            in = l >= set->ranges[i].lo && l <= set->ranges[i].hi;
        if (in) out[k++] = l;
    }
    return k;
}

/* mixer -> layer set map (select `ranges` / `list`) */
static graft_status mixer_layers(ctx *c, const graft_ynode *n, const char *p,
                                 const graft_mixer_layers **out, int64_t *count) {
    if (!n || n->kind != GRAFT_YNODE_MAP || n->n == 0)
        return bad(c, n, p, "a map of mixer name -> list of layers");
    graft_mixer_layers *m = palloc(c, (size_t)n->n * sizeof *m);
    if (!m) return OOM(c);
    for (int64_t i = 0; i < n->n; i++) {
        char q[320];
        snprintf(q, sizeof q, "%s.%s", p, n->keys[i]->text);
        if (check_mixer_name(c, n->keys[i], q)) return c->err->status;
        if (!(m[i].mixer = pstrdup(c, n->keys[i]->text))) return OOM(c);
        if (set_pos(c, &m[i].pos, n->keys[i], q)) return c->err->status;
        if (layer_set(c, n->items[i], q, &m[i].layers)) return c->err->status;
    }
    *out = m;
    *count = n->n;
    return GRAFT_STATUS_OK;
}

/* ---- top-level pieces ------------------------------------------------------------------------- */

static graft_status model_ref(ctx *c, const graft_ynode *n, const char *p, graft_model_ref *out) {
    memset(out, 0, sizeof *out);
    if (set_pos(c, &out->pos, n, p)) return c->err->status;
    if (n && n->kind == GRAFT_YNODE_MAP) {
        static const char *const keys[] = {"config", "seed", NULL};
        if (check_keys(c, n, p, keys)) return c->err->status;
        out->random_init = 1;
        out->seed = c->r->seed;
        if (get_path(c, n, p, "config", 1, &out->config)) return c->err->status;
        return get_int(c, n, p, "seed", 0, INT64_MAX, 0, &out->seed);
    }
    if (!n || n->kind != GRAFT_YNODE_SCALAR || graft_ynode_is_null(n))
        return bad(c, n, p, "a model directory or a map {config: path, seed: N}");
    return path_node(c, n, p, &out->path);
}

static graft_status data_params(ctx *c, const graft_ynode *n) {
    static const char *const keys[] = {"train", "heldout", "seed", NULL};
    graft_recipe_data *d = &c->r->data;
    if (need_map(c, n, "data") || check_keys(c, n, "data", keys)) return c->err->status;
    c->r->has_data = 1;
    const graft_ynode *t = graft_ynode_get(n, "train");
    if (!t) return missing(c, n, "data", "train", "a path or a list of paths");
    if (get_paths(c, t, "data.train", &d->train, &d->n_train)) return c->err->status;
    d->heldout_fraction = 0.05;
    const graft_ynode *h = graft_ynode_get(n, "heldout");
    double f;
    if (h && h->kind == GRAFT_YNODE_SCALAR && !h->quoted && !graft_parse_double(h->text, &f)) {
        if (num_node(c, h, "data.heldout", 0, 1, 0.5, 1, &d->heldout_fraction))
            return c->err->status;
    } else if (h) {
        if (get_paths(c, h, "data.heldout", &d->heldout, &d->n_heldout)) return c->err->status;
        d->heldout_fraction = 0;
    }
    d->seed = c->r->seed;
    return get_int(c, n, "data", "seed", 0, INT64_MAX, 0, &d->seed);
}

static graft_status device(ctx *c, const graft_ynode *root) {
    const graft_ynode *n = graft_ynode_get(root, "device");
    c->r->device = "cpu";
    if (!n) return GRAFT_STATUS_OK;
    static const char *exp = "cpu, cuda or cuda:N";
    if (n->kind != GRAFT_YNODE_SCALAR) return bad(c, n, "device", exp);
    const char *t = n->text;
    if (!strcmp(t, "cpu")) {
    } else if (!strcmp(t, "cuda")) {
        c->r->device_cuda = 1;
    } else if (!strncmp(t, "cuda:", 5) && t[5] >= '0' && t[5] <= '9' &&
               !graft_parse_int64(t + 5, &c->r->device_index) && c->r->device_index < 1024) {
        c->r->device_cuda = 1;
    } else {
        return bad(c, n, "device", exp);
    }
    if (!(c->r->device = pstrdup(c, t))) return OOM(c);
    return GRAFT_STATUS_OK;
}

/* ---- stages ----------------------------------------------------------------------------------- */

#define TRAIN_KEYS                                                                                 \
    "accum", "lr", "lr_min", "warmup", "weight_decay", "grad_clip", "beta1", "beta2", "eps",     \
        "eval_every", "eval_batches", "checkpoint_every", "log_every", "out"

static const char *const kind_names[] = {"pretrain", "stage0", "select", "stage1", "eval", "bench",
                                         NULL};

const char *graft_stage_kind_name(graft_stage_kind kind) {
    return (kind >= 0 && kind <= GRAFT_STAGE_BENCH) ? kind_names[kind] : "unknown";
}

static graft_status train_params(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s,
                                 int with_shape) {
    graft_train_params *t = &s->train;
    t->accum = 1;
    t->grad_clip = 1.0;
    t->beta1 = 0.9;
    t->beta2 = 0.95;
    t->eps = 1e-8;
    t->eval_batches = 8;
    t->log_every = 1;
    if (with_shape) {
        if (get_int(c, m, kp, "steps", 1, INT64_MAX, 1, &t->steps) ||
            get_int(c, m, kp, "batch", 1, INT64_MAX, 1, &t->batch) ||
            get_int(c, m, kp, "seq_len", 1, INT64_MAX, 1, &t->seq_len))
            return c->err->status;
    }
    if (get_int(c, m, kp, "accum", 1, INT64_MAX, 0, &t->accum) ||
        get_num(c, m, kp, "lr", 0, 1, INFINITY, 0, 1, &t->lr) ||
        get_num(c, m, kp, "lr_min", 0, 0, INFINITY, 0, 0, &t->lr_min) ||
        get_int(c, m, kp, "warmup", 0, INT64_MAX, 0, &t->warmup) ||
        get_num(c, m, kp, "weight_decay", 0, 0, INFINITY, 0, 0, &t->weight_decay) ||
        get_num(c, m, kp, "grad_clip", 0, 0, INFINITY, 0, 0, &t->grad_clip) ||
        get_num(c, m, kp, "beta1", 0, 0, 1, 1, 0, &t->beta1) ||
        get_num(c, m, kp, "beta2", 0, 0, 1, 1, 0, &t->beta2) ||
        get_num(c, m, kp, "eps", 0, 1, INFINITY, 0, 0, &t->eps) ||
        get_int(c, m, kp, "eval_every", 0, INT64_MAX, 0, &t->eval_every) ||
        get_int(c, m, kp, "eval_batches", 1, INT64_MAX, 0, &t->eval_batches) ||
        get_int(c, m, kp, "checkpoint_every", 0, INT64_MAX, 0, &t->checkpoint_every) ||
        get_int(c, m, kp, "log_every", 1, INT64_MAX, 0, &t->log_every) ||
        get_path(c, m, kp, "out", 0, &t->out))
        return c->err->status;
    if (t->lr_min > t->lr) {
        char p[300];
        kpath(p, sizeof p, kp, "lr_min");
        return bad(c, graft_ynode_get(m, "lr_min"), p, "a number in [0, lr]");
    }
    if (!t->out) {
        /* default: <run_log dir>/stage<i>-<kind> */
        const char *rl = c->r->run_log;
        const char *slash = strrchr(rl, '/');
        size_t dl = slash ? (size_t)(slash - rl) : 0;
        size_t n = dl + 64;
        char *o = palloc(c, n);
        if (!o) return OOM(c);
        snprintf(o, n, "%.*s/stage%lld-%s", (int)dl, rl, (long long)s->index,
                 graft_stage_kind_name(s->kind));
        t->out = o;
    }
    return GRAFT_STATUS_OK;
}

static graft_status stage0(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s) {
    static const char *const keys[] = {"kind", "steps", "batch", "seq_len", TRAIN_KEYS, "layers",
                                       "mixers", "init", "train", "loss", NULL};
    graft_stage0_params *z = &s->as.stage0;
    char p[300];
    if (check_keys(c, m, kp, keys) || train_params(c, m, kp, s, 1)) return c->err->status;
    const graft_ynode *l = graft_ynode_get(m, "layers");
    if (!l) return missing(c, m, kp, "layers", "all, or a list of layer indices and ranges");
    kpath(p, sizeof p, kp, "layers");
    if (layer_set(c, l, p, &z->layers)) return c->err->status;

    const graft_ynode *mx = graft_ynode_get(m, "mixers");
    if (!mx) return missing(c, m, kp, "mixers", "a map of mixer name -> settings");
    kpath(p, sizeof p, kp, "mixers");
    if (mx->kind != GRAFT_YNODE_MAP || mx->n == 0)
        return bad(c, mx, p, "a non-empty map of mixer name -> settings");
    graft_recipe_mixer *mix = palloc(c, (size_t)mx->n * sizeof *mix);
    if (!mix) return OOM(c);
    for (int64_t i = 0; i < mx->n; i++) {
        char q[400];
        snprintf(q, sizeof q, "%s.%s", p, mx->keys[i]->text);
        if (check_mixer_name(c, mx->keys[i], q)) return c->err->status;
        if (!(mix[i].name = pstrdup(c, mx->keys[i]->text))) return OOM(c);
        if (set_pos(c, &mix[i].pos, mx->keys[i], q)) return c->err->status;
        const graft_ynode *v = mx->items[i];
        if (graft_ynode_is_null(v)) continue; /* `gla:` with no settings */
        if (v->kind != GRAFT_YNODE_MAP) return bad(c, v, q, "a map of settings");
        graft_kv *kv = palloc(c, (size_t)(v->n ? v->n : 1) * sizeof *kv);
        if (!kv) return OOM(c);
        for (int64_t j = 0; j < v->n; j++) {
            char r[500], w[1100];
            snprintf(r, sizeof r, "%s.%s", q, v->keys[j]->text);
            if (v->items[j]->kind != GRAFT_YNODE_SCALAR)
                return bad(c, v->items[j], r, "a scalar setting");
            kv[j].key = pstrdup(c, v->keys[j]->text);
            kv[j].value = pstrdup(c, v->items[j]->text);
            kv[j].where = pstrdup(c, where(c, v->items[j], w, sizeof w));
            if (!kv[j].key || !kv[j].value || !kv[j].where) return OOM(c);
        }
        mix[i].kv = kv;
        mix[i].n_kv = v->n;
    }
    z->mixers = mix;
    z->n_mixers = mx->n;

    static const char *const inits[] = {"teacher", "random", NULL};
    int init = 0;
    if (get_enum(c, m, kp, "init", inits, 0, &init)) return c->err->status;
    z->init = (graft_stage0_init)init;
    z->train_mixer = 1;
    const graft_ynode *tr = graft_ynode_get(m, "train");
    if (tr) {
        kpath(p, sizeof p, kp, "train");
        static const char *exp = "a non-empty list of: mixer, mlp";
        if (tr->kind != GRAFT_YNODE_SEQ || tr->n == 0) return bad(c, tr, p, exp);
        z->train_mixer = 0;
        for (int64_t i = 0; i < tr->n; i++) {
            const graft_ynode *e = tr->items[i];
            char q[320];
            snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
            if (e->kind == GRAFT_YNODE_SCALAR && !strcmp(e->text, "mixer")) z->train_mixer = 1;
            else if (e->kind == GRAFT_YNODE_SCALAR && !strcmp(e->text, "mlp")) z->train_mlp = 1;
            else return bad(c, e, q, "mixer or mlp");
        }
    }
    z->loss = "nmse";
    return get_str(c, m, kp, "loss", 0, &z->loss);
}

static graft_status select_stage(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s) {
    static const char *const keys[] = {"kind", "policy", "percentile", "count", "ranges", "list",
                                       "cost", "budget", "from", "out", NULL};
    static const char *const policies[] = {"percentile", "count", "list", "budget", NULL};
    graft_select_params *z = &s->as.select;
    char p[300];
    if (check_keys(c, m, kp, keys)) return c->err->status;
    int pol = 0;
    if (get_enum(c, m, kp, "policy", policies, 1, &pol)) return c->err->status;
    z->policy = (graft_select_policy)pol;

    const graft_ynode *pc = graft_ynode_get(m, "percentile");
    if (pc) {
        kpath(p, sizeof p, kp, "percentile");
        int64_t np = pc->kind == GRAFT_YNODE_SEQ ? pc->n : 1;
        if (pc->kind == GRAFT_YNODE_MAP || np == 0)
            return bad(c, pc, p, "a number in (0, 100] or a non-empty list of them");
        double *v = palloc(c, (size_t)np * sizeof *v);
        if (!v) return OOM(c);
        for (int64_t i = 0; i < np; i++) {
            char q[320];
            if (pc->kind == GRAFT_YNODE_SEQ) snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
            else snprintf(q, sizeof q, "%s", p);
            if (num_node(c, pc->kind == GRAFT_YNODE_SEQ ? pc->items[i] : pc, q, 0, 1, 100, 0,
                         &v[i]))
                return c->err->status;
        }
        z->percentiles = v;
        z->n_percentiles = np;
    } else if (z->policy == GRAFT_SELECT_PERCENTILE) {
        return missing(c, m, kp, "percentile", "a number in (0, 100] or a list of them");
    }
    if (get_int(c, m, kp, "count", 1, INT64_MAX, z->policy == GRAFT_SELECT_COUNT, &z->count))
        return c->err->status;
    const graft_ynode *rg = graft_ynode_get(m, "ranges");
    if (rg) {
        kpath(p, sizeof p, kp, "ranges");
        if (mixer_layers(c, rg, p, &z->ranges, &z->n_ranges)) return c->err->status;
    }
    const graft_ynode *ls = graft_ynode_get(m, "list");
    if (ls) {
        kpath(p, sizeof p, kp, "list");
        if (mixer_layers(c, ls, p, &z->list, &z->n_list)) return c->err->status;
    } else if (z->policy == GRAFT_SELECT_LIST) {
        return missing(c, m, kp, "list", "a map of mixer name -> list of layers");
    }
    int need_budget = z->policy == GRAFT_SELECT_BUDGET;
    if (get_path(c, m, kp, "cost", need_budget, &z->cost) ||
        get_num(c, m, kp, "budget", 0, 1, INFINITY, 0, need_budget, &z->budget) ||
        get_path(c, m, kp, "from", 0, &z->from) || get_path(c, m, kp, "out", 1, &z->out))
        return c->err->status;
    if ((z->cost || z->budget > 0) && !need_budget) {
        const char *k = z->cost ? "cost" : "budget";
        char w[1100];
        kpath(p, sizeof p, kp, k);
        return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT,
                             "%s: %s: given with policy %s, expected only with policy budget",
                             where(c, graft_ynode_get(m, k), w, sizeof w), p, policies[pol]);
    }
    if (z->policy == GRAFT_SELECT_PERCENTILE && z->n_percentiles > 1 && !strstr(z->out, "{p}")) {
        kpath(p, sizeof p, kp, "out");
        return bad(c, graft_ynode_get(m, "out"), p,
                   "a path containing {p} (one spec is written per percentile)");
    }
    return GRAFT_STATUS_OK;
}

void graft_select_out_path(const graft_select_params *s, double p, char *buf, size_t size) {
    const char *at = strstr(s->out, "{p}");
    if (!at) {
        snprintf(buf, size, "%s", s->out);
        return;
    }
    snprintf(buf, size, "%.*s%g%s", (int)(at - s->out), s->out, p, at + 3);
}

static graft_status stage1(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s,
                           const graft_stage *stages) {
    static const char *const keys[] = {"kind", TRAIN_KEYS, "spec", "alpha", "k", "temperature",
                                       "phases", "teacher_cache", NULL};
    static const char *const pkeys[] = {"steps", "batch", "seq_len", NULL};
    graft_stage1_params *z = &s->as.stage1;
    char p[300];
    if (check_keys(c, m, kp, keys) || train_params(c, m, kp, s, 0)) return c->err->status;
    z->alpha = 0.5;
    z->k = 32;
    z->temperature = 4;
    if (get_path(c, m, kp, "spec", 0, &z->spec) ||
        get_num(c, m, kp, "alpha", 0, 0, 1, 0, 0, &z->alpha) ||
        get_int(c, m, kp, "k", 1, INT64_MAX, 0, &z->k) ||
        get_num(c, m, kp, "temperature", 0, 1, INFINITY, 0, 0, &z->temperature) ||
        get_path(c, m, kp, "teacher_cache", 0, &z->teacher_cache))
        return c->err->status;
    const graft_ynode *ph = graft_ynode_get(m, "phases");
    static const char *pexp = "a non-empty list of {steps, batch, seq_len}";
    if (!ph) return missing(c, m, kp, "phases", pexp);
    kpath(p, sizeof p, kp, "phases");
    if (ph->kind != GRAFT_YNODE_SEQ || ph->n == 0) return bad(c, ph, p, pexp);
    graft_stage1_phase *v = palloc(c, (size_t)ph->n * sizeof *v);
    if (!v) return OOM(c);
    for (int64_t i = 0; i < ph->n; i++) {
        char q[320];
        snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
        const graft_ynode *e = ph->items[i];
        if (need_map(c, e, q) || check_keys(c, e, q, pkeys) ||
            get_int(c, e, q, "steps", 1, INT64_MAX, 1, &v[i].steps) ||
            get_int(c, e, q, "batch", 1, INT64_MAX, 1, &v[i].batch) ||
            get_int(c, e, q, "seq_len", 1, INT64_MAX, 1, &v[i].seq_len) ||
            set_pos(c, &v[i].pos, e, q))
            return c->err->status;
        if (s->train.steps > INT64_MAX - v[i].steps) return bad(c, e, q, "fewer steps in total");
        s->train.steps += v[i].steps;
    }
    z->phases = v;
    z->n_phases = ph->n;
    s->train.batch = v[0].batch;
    s->train.seq_len = v[0].seq_len;
    if (!z->spec) {
        for (int64_t i = s->index - 1; i >= 0; i--) {
            if (stages[i].kind != GRAFT_STAGE_SELECT) continue;
            const graft_select_params *sel = &stages[i].as.select;
            if (sel->policy == GRAFT_SELECT_PERCENTILE && sel->n_percentiles > 1) {
                char w[1100];
                return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT,
                                     "%s: %s.spec: missing, expected a hybrid spec path (the select "
                                     "stage stages[%lld] writes %lld specs)",
                                     where(c, m, w, sizeof w), kp, (long long)i,
                                     (long long)sel->n_percentiles);
            }
            char buf[4096];
            graft_select_out_path(sel, sel->n_percentiles ? sel->percentiles[0] : 0, buf,
                                  sizeof buf);
            if (!(z->spec = pstrdup(c, buf))) return OOM(c);
            break;
        }
        if (!z->spec)
            return missing(c, m, kp, "spec", "a hybrid spec path (no earlier select stage)");
    }
    return GRAFT_STATUS_OK;
}

static graft_status model_choices(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s,
                                  const graft_stage *stages, const graft_model_choice **out,
                                  int64_t *count) {
    const char *hybrid = NULL;
    for (int64_t i = s->index - 1; i >= 0 && !hybrid; i--)
        if (stages[i].kind == GRAFT_STAGE_STAGE1) hybrid = stages[i].train.out;
    const graft_ynode *n = graft_ynode_get(m, "models");
    char p[300];
    kpath(p, sizeof p, kp, "models");
    if (!n) {
        graft_model_choice *v = palloc(c, 2 * sizeof *v);
        if (!v) return OOM(c);
        v[0].kind = GRAFT_MODEL_CHOICE_CONTROL;
        if (set_pos(c, &v[0].pos, m, p)) return c->err->status;
        *count = 1;
        if (hybrid) {
            v[1].kind = GRAFT_MODEL_CHOICE_HYBRID;
            v[1].path = hybrid;
            v[1].pos = v[0].pos;
            *count = 2;
        }
        *out = v;
        return GRAFT_STATUS_OK;
    }
    static const char *exp = "a non-empty list of teacher, control, hybrid or model paths";
    if (n->kind != GRAFT_YNODE_SEQ || n->n == 0) return bad(c, n, p, exp);
    graft_model_choice *v = palloc(c, (size_t)n->n * sizeof *v);
    if (!v) return OOM(c);
    for (int64_t i = 0; i < n->n; i++) {
        const graft_ynode *e = n->items[i];
        char q[320];
        snprintf(q, sizeof q, "%s[%lld]", p, (long long)i);
        if (set_pos(c, &v[i].pos, e, q)) return c->err->status;
        if (e->kind == GRAFT_YNODE_SCALAR && !e->quoted && !strcmp(e->text, "teacher")) {
            v[i].kind = GRAFT_MODEL_CHOICE_TEACHER;
        } else if (e->kind == GRAFT_YNODE_SCALAR && !e->quoted && !strcmp(e->text, "control")) {
            v[i].kind = GRAFT_MODEL_CHOICE_CONTROL;
        } else if (e->kind == GRAFT_YNODE_SCALAR && !e->quoted && !strcmp(e->text, "hybrid")) {
            if (!hybrid) return bad(c, e, q, "a stage1 stage before this one (hybrid is its output)");
            v[i].kind = GRAFT_MODEL_CHOICE_HYBRID;
            v[i].path = hybrid;
        } else {
            v[i].kind = GRAFT_MODEL_CHOICE_PATH;
            if (path_node(c, e, q, &v[i].path)) return c->err->status;
        }
    }
    *out = v;
    *count = n->n;
    return GRAFT_STATUS_OK;
}

static graft_status eval_stage(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s,
                               const graft_stage *stages) {
    static const char *const keys[] = {"kind", "models", "heldout_batches", "batch", "seq_len",
                                       "generate", NULL};
    static const char *const gkeys[] = {"prompts", "max_new_tokens", "temperature", "top_k",
                                        "top_p", "greedy", NULL};
    graft_eval_params *z = &s->as.eval;
    z->heldout_batches = 16;
    z->batch = 8;
    z->seq_len = 512;
    if (check_keys(c, m, kp, keys) ||
        model_choices(c, m, kp, s, stages, &z->models, &z->n_models) ||
        get_int(c, m, kp, "heldout_batches", 1, INT64_MAX, 0, &z->heldout_batches) ||
        get_int(c, m, kp, "batch", 1, INT64_MAX, 0, &z->batch) ||
        get_int(c, m, kp, "seq_len", 1, INT64_MAX, 0, &z->seq_len))
        return c->err->status;
    const graft_ynode *g = graft_ynode_get(m, "generate");
    if (!g) return GRAFT_STATUS_OK;
    char p[300];
    kpath(p, sizeof p, kp, "generate");
    graft_generate_params *gp = &z->generate;
    z->has_generate = 1;
    gp->temperature = 1;
    gp->top_p = 1;
    if (need_map(c, g, p) || check_keys(c, g, p, gkeys)) return c->err->status;
    const graft_ynode *pr = graft_ynode_get(g, "prompts");
    if (!pr) return missing(c, g, p, "prompts", "a non-empty list of strings");
    char q[320];
    kpath(q, sizeof q, p, "prompts");
    if (pr->kind != GRAFT_YNODE_SEQ || pr->n == 0)
        return bad(c, pr, q, "a non-empty list of strings");
    const char **v = palloc(c, (size_t)pr->n * sizeof *v);
    if (!v) return OOM(c);
    for (int64_t i = 0; i < pr->n; i++) {
        char r[340];
        const char *t;
        snprintf(r, sizeof r, "%s[%lld]", q, (long long)i);
        if (graft_ynode_string(c->doc, pr->items[i], r, &t, c->err)) return c->err->status;
        if (!(v[i] = pstrdup(c, t))) return OOM(c);
    }
    gp->prompts = v;
    gp->n_prompts = pr->n;
    if (get_int(c, g, p, "max_new_tokens", 1, INT64_MAX, 1, &gp->max_new_tokens) ||
        get_num(c, g, p, "temperature", 0, 1, INFINITY, 0, 0, &gp->temperature) ||
        get_int(c, g, p, "top_k", 0, INT64_MAX, 0, &gp->top_k) ||
        get_num(c, g, p, "top_p", 0, 1, 1, 0, 0, &gp->top_p) ||
        get_bool(c, g, p, "greedy", &gp->greedy))
        return c->err->status;
    return GRAFT_STATUS_OK;
}

static graft_status bench_stage(ctx *c, const graft_ynode *m, const char *kp, graft_stage *s,
                                const graft_stage *stages) {
    static const char *const keys[] = {"kind", "contexts", "batch", "gen_tokens", "prefill_chunk", "repeat", "models",
                                       NULL};
    graft_bench_params *z = &s->as.bench;
    static const int64_t one = 1;
    z->batches = &one;
    z->n_batches = 1;
    z->gen_tokens = 128;
    z->prefill_chunk = 0;
    z->repeat = 1;
    if (check_keys(c, m, kp, keys) ||
        get_int_list(c, m, kp, "contexts", 1, 1, &z->contexts, &z->n_contexts) ||
        get_int_list(c, m, kp, "batch", 1, 0, &z->batches, &z->n_batches) ||
        get_int(c, m, kp, "gen_tokens", 1, INT64_MAX, 0, &z->gen_tokens) ||
        get_int(c, m, kp, "prefill_chunk", -1, INT64_MAX, 0, &z->prefill_chunk) ||
        get_int(c, m, kp, "repeat", 1, 1000, 0, &z->repeat) ||
        model_choices(c, m, kp, s, stages, &z->models, &z->n_models))
        return c->err->status;
    return GRAFT_STATUS_OK;
}

static graft_status stages_list(ctx *c, const graft_ynode *root) {
    const graft_ynode *n = graft_ynode_get(root, "stages");
    static const char *exp = "a non-empty list of stages";
    if (!n) return missing(c, root, "", "stages", exp);
    if (n->kind != GRAFT_YNODE_SEQ || n->n == 0) return bad(c, n, "stages", exp);
    graft_stage *st = palloc(c, (size_t)n->n * sizeof *st);
    if (!st) return OOM(c);
    c->r->stages = st;
    int needs_data = 0;
    for (int64_t i = 0; i < n->n; i++) {
        char kp[64];
        snprintf(kp, sizeof kp, "stages[%lld]", (long long)i);
        const graft_ynode *m = n->items[i];
        graft_stage *s = &st[i];
        s->index = i;
        int kind = 0;
        if (need_map(c, m, kp) || set_pos(c, &s->pos, m, kp) ||
            get_enum(c, m, kp, "kind", kind_names, 1, &kind))
            return c->err->status;
        s->kind = (graft_stage_kind)kind;
        graft_status r = GRAFT_STATUS_OK;
        switch (s->kind) {
        case GRAFT_STAGE_PRETRAIN: {
            static const char *const keys[] = {"kind", "steps", "batch", "seq_len", TRAIN_KEYS,
                                               NULL};
            r = check_keys(c, m, kp, keys);
            if (!r) r = train_params(c, m, kp, s, 1);
            needs_data = 1;
            break;
        }
        case GRAFT_STAGE_STAGE0: r = stage0(c, m, kp, s); needs_data = 1; break;
        case GRAFT_STAGE_SELECT: r = select_stage(c, m, kp, s); break;
        case GRAFT_STAGE_STAGE1: r = stage1(c, m, kp, s, st); needs_data = 1; break;
        case GRAFT_STAGE_EVAL: r = eval_stage(c, m, kp, s, st); needs_data = 1; break;
        case GRAFT_STAGE_BENCH: r = bench_stage(c, m, kp, s, st); break;
        }
        if (r) return r;
        c->r->n_stages = i + 1;
    }
    if (needs_data && !c->r->has_data)
        return missing(c, root, "", "data", "a map {train, heldout, seed} (a stage trains or evaluates)");
    return GRAFT_STATUS_OK;
}

static graft_status recipe_root(ctx *c) {
    static const char *const keys[] = {"model", "teacher", "tokenizer", "data", "device",
                                       "run_log", "seed", "threads", "stages", NULL};
    const graft_ynode *root = c->doc->root;
    graft_recipe *r = c->r;
    if (!root)
        return graft_err_set(c->err, GRAFT_STATUS_BAD_INPUT,
                             "%s: empty file, expected a recipe (a map with model, data, run_log, "
                             "stages)", c->doc->path);
    if (root->kind != GRAFT_YNODE_MAP) return bad(c, root, "(recipe)", "a map of recipe keys");
    if (check_keys(c, root, "", keys) ||
        get_int(c, root, "", "seed", 0, INT64_MAX, 0, &r->seed) ||
        get_int(c, root, "", "threads", 0, 4096, 0, &r->threads) ||
        get_path(c, root, "", "run_log", 1, &r->run_log) || device(c, root))
        return c->err->status;
    const graft_ynode *m = graft_ynode_get(root, "model");
    if (!m) return missing(c, root, "", "model", "a model directory or {config, seed}");
    if (model_ref(c, m, "model", &r->model)) return c->err->status;
    const graft_ynode *t = graft_ynode_get(root, "teacher");
    if (t) {
        if (model_ref(c, t, "teacher", &r->teacher)) return c->err->status;
    } else {
        r->teacher = r->model;
        r->teacher_is_model = 1;
    }
    if (get_path(c, root, "", "tokenizer", 0, &r->tokenizer)) return c->err->status;
    const graft_ynode *d = graft_ynode_get(root, "data");
    if (d && data_params(c, d)) return c->err->status;
    return stages_list(c, root);
}

graft_status graft_recipe_load(const char *path, const char *const *known_mixers,
                               graft_recipe **out, graft_err *err) {
    *out = NULL;
    graft_ydoc *doc = NULL;
    graft_status st = graft_ydoc_load(path, &doc, err);
    if (st) return st;
    graft_recipe *r = calloc(1, sizeof *r);
    graft_recipe_pool *pool = calloc(1, sizeof *pool);
    if (!r || !pool) {
        free(r);
        free(pool);
        graft_ydoc_free(doc);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    r->pool_ = pool;
    ctx c = {r, doc, err, known_mixers};
    /* the recipe's directory, absolute */
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char *abs = realpath(dir, NULL);
    r->path = pstrdup(&c, path);
    r->dir = pstrdup(&c, abs ? abs : dir);
    free(abs);
    if (!r->path || !r->dir) st = OOM(&c);
    else st = recipe_root(&c);
    graft_ydoc_free(doc);
    if (st) {
        graft_recipe_free(r);
        return st;
    }
    *out = r;
    return GRAFT_STATUS_OK;
}

void graft_recipe_free(graft_recipe *r) {
    if (!r) return;
    if (r->pool_) {
        blk *b = r->pool_->head;
        while (b) {
            blk *next = b->next;
            free(b);
            b = next;
        }
        free(r->pool_);
    }
    free(r);
}

static graft_status check_set(const graft_layer_set *s, int64_t n_layer, graft_err *err) {
    for (int64_t i = 0; i < s->n_ranges; i++) {
        const graft_layer_range *g = &s->ranges[i];
        if (g->hi >= n_layer)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: %s: %s, expected layers in 0..%lld (0-based; the model has "
                                 "%lld layers)",
                                 g->pos.where, g->pos.field, g->text, (long long)(n_layer - 1),
                                 (long long)n_layer);
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_recipe_check_layers(const graft_recipe *r, int64_t n_layer, graft_err *err) {
    if (n_layer < 1)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: n_layer %lld, expected >= 1", r->path,
                             (long long)n_layer);
    for (int64_t i = 0; i < r->n_stages; i++) {
        const graft_stage *s = &r->stages[i];
        if (s->kind == GRAFT_STAGE_STAGE0 && check_set(&s->as.stage0.layers, n_layer, err))
            return err->status;
        if (s->kind != GRAFT_STAGE_SELECT) continue;
        for (int64_t j = 0; j < s->as.select.n_ranges; j++)
            if (check_set(&s->as.select.ranges[j].layers, n_layer, err)) return err->status;
        for (int64_t j = 0; j < s->as.select.n_list; j++)
            if (check_set(&s->as.select.list[j].layers, n_layer, err)) return err->status;
    }
    return GRAFT_STATUS_OK;
}

const graft_stage0_params *graft_stage_stage0(const graft_stage *s) {
    return s && s->kind == GRAFT_STAGE_STAGE0 ? &s->as.stage0 : NULL;
}
const graft_select_params *graft_stage_select(const graft_stage *s) {
    return s && s->kind == GRAFT_STAGE_SELECT ? &s->as.select : NULL;
}
const graft_stage1_params *graft_stage_stage1(const graft_stage *s) {
    return s && s->kind == GRAFT_STAGE_STAGE1 ? &s->as.stage1 : NULL;
}
const graft_eval_params *graft_stage_eval(const graft_stage *s) {
    return s && s->kind == GRAFT_STAGE_EVAL ? &s->as.eval : NULL;
}
const graft_bench_params *graft_stage_bench(const graft_stage *s) {
    return s && s->kind == GRAFT_STAGE_BENCH ? &s->as.bench : NULL;
}
const graft_train_params *graft_stage_train(const graft_stage *s) {
    return s && (s->kind == GRAFT_STAGE_PRETRAIN || s->kind == GRAFT_STAGE_STAGE0 ||
                 s->kind == GRAFT_STAGE_STAGE1)
               ? &s->train
               : NULL;
}
