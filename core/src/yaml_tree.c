/* yaml_tree.c: libyaml's event parser turned into a small positioned tree, with the safety caps
 * documented in yaml_tree.h. Holds no schema. Reference: libyaml's yaml_parser_parse() event
 * stream (yaml.h); marks there are 0-based, messages here are 1-based. */
#include "yaml_tree.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static void node_free(graft_ynode *n) {
    if (!n) return;
    for (int64_t i = 0; i < n->n; i++) {
        if (n->items) node_free(n->items[i]);
        if (n->keys) node_free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->text);
    free(n);
}

void graft_ydoc_free(graft_ydoc *doc) {
    if (!doc) return;
    node_free(doc->root);
    free(doc->path);
    free(doc);
}

typedef struct frame {
    graft_ynode *node;
    int64_t cap;
    int expect_value; /* MAP: a key was read, its value comes next */
} frame;

typedef struct builder {
    const char *path;
    graft_ydoc *doc;
    frame stack[GRAFT_YAML_MAX_DEPTH + 1];
    int depth;
    int64_t n_nodes;
    graft_err *err;
} builder;

static graft_status fail_at(builder *b, const yaml_mark_t *m, const char *fmt, const char *a,
                            const char *c) {
    return graft_err_set(b->err, GRAFT_STATUS_BAD_INPUT, "%s:%zu:%zu: %s%s%s", b->path,
                         m->line + 1, m->column + 1, a, c, fmt);
}

static int grow(graft_ynode *n, int64_t *cap, int with_keys) {
    if (n->n < *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 4;
    graft_ynode **it = realloc(n->items, (size_t)nc * sizeof *it);
    if (!it) return -1;
    n->items = it;
    if (with_keys) {
        graft_ynode **k = realloc(n->keys, (size_t)nc * sizeof *k);
        if (!k) return -1;
        n->keys = k;
    }
    *cap = nc;
    return 0;
}

/* Attaches a new node under the open container (or as the root). */
static graft_status attach(builder *b, graft_ynode *n, const yaml_mark_t *m) {
    if (b->depth == 0) {
        b->doc->root = n;
        return GRAFT_STATUS_OK;
    }
    frame *f = &b->stack[b->depth - 1];
    graft_ynode *p = f->node;
    if (p->kind == GRAFT_YNODE_SEQ) {
        if (grow(p, &f->cap, 0)) goto oom;
        p->items[p->n++] = n;
        return GRAFT_STATUS_OK;
    }
    if (f->expect_value) {
        p->items[p->n - 1] = n;
        f->expect_value = 0;
        return GRAFT_STATUS_OK;
    }
    if (n->kind != GRAFT_YNODE_SCALAR) {
        node_free(n);
        return fail_at(b, m, "a map or list used as a mapping key, expected a plain key", "", "");
    }
    if (grow(p, &f->cap, 1)) goto oom;
    p->keys[p->n] = n;
    p->items[p->n] = NULL;
    p->n++;
    f->expect_value = 1;
    return GRAFT_STATUS_OK;
oom:
    node_free(n);
    return graft_err_set(b->err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory while parsing", b->path);
}

static int key_cmp(const void *a, const void *b) {
    const graft_ynode *x = *(const graft_ynode *const *)a, *y = *(const graft_ynode *const *)b;
    int c = strcmp(x->text, y->text);
    if (c) return c;
    return (x->line > y->line || (x->line == y->line && x->col > y->col)) ? 1 : -1;
}

static graft_status check_duplicates(builder *b, const graft_ynode *map) {
    if (map->n < 2) return GRAFT_STATUS_OK;
    graft_ynode **k = malloc((size_t)map->n * sizeof *k);
    if (!k) return graft_err_set(b->err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", b->path);
    memcpy(k, map->keys, (size_t)map->n * sizeof *k);
    qsort(k, (size_t)map->n, sizeof *k, key_cmp);
    graft_status st = GRAFT_STATUS_OK;
    for (int64_t i = 1; i < map->n; i++) {
        if (strcmp(k[i - 1]->text, k[i]->text) == 0) {
            st = graft_err_set(b->err, GRAFT_STATUS_BAD_INPUT,
                               "%s:%lld:%lld: %.200s: duplicate key (first at %lld:%lld), expected "
                               "each key once per map",
                               b->path, (long long)k[i]->line, (long long)k[i]->col, k[i]->text,
                               (long long)k[i - 1]->line, (long long)k[i - 1]->col);
            break;
        }
    }
    free(k);
    return st;
}

static graft_ynode *new_node(builder *b, graft_ynode_kind kind, const yaml_mark_t *m) {
    graft_ynode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = (int64_t)m->line + 1;
    n->col = (int64_t)m->column + 1;
    b->n_nodes++;
    return n;
}

static graft_status on_event(builder *b, yaml_event_t *ev, int *n_docs) {
    const yaml_mark_t *m = &ev->start_mark;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*n_docs > 1)
            return fail_at(b, m, "a second document, expected one document per file", "", "");
        if (ev->data.document_start.tag_directives.start != ev->data.document_start.tag_directives.end)
            return fail_at(b, m, "%TAG directive, expected no tags", "", "");
        return GRAFT_STATUS_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(b, m, ": aliases are not allowed in recipes, expected the value written out",
                       "alias *", (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        graft_ynode *n = b->stack[--b->depth].node;
        if (n->kind == GRAFT_YNODE_MAP) return check_duplicates(b, n);
        return GRAFT_STATUS_OK;
    }
    default:
        return GRAFT_STATUS_OK;
    }
    if (anchor)
        return fail_at(b, m, ": anchors are not allowed in recipes, expected the value written out",
                       "anchor &", (const char *)anchor);
    if (tag)
        return fail_at(b, m, ": tags are not allowed in recipes, expected an untagged value", "tag ",
                       (const char *)tag);
    if (b->n_nodes >= GRAFT_YAML_MAX_NODES)
        return fail_at(b, m, "more than 200000 nodes, expected a smaller file", "", "");

    if (ev->type == YAML_SCALAR_EVENT) {
        size_t len = ev->data.scalar.length;
        if (memchr(ev->data.scalar.value, 0, len))
            return fail_at(b, m, "a scalar with a NUL byte, expected text", "", "");
        graft_ynode *n = new_node(b, GRAFT_YNODE_SCALAR, m);
        char *t = malloc(len + 1);
        if (!n || !t) {
            free(n);
            free(t);
            return graft_err_set(b->err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", b->path);
        }
        memcpy(t, ev->data.scalar.value, len);
        t[len] = 0;
        n->text = t;
        n->len = len;
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return attach(b, n, m);
    }
    if (b->depth >= GRAFT_YAML_MAX_DEPTH)
        return fail_at(b, m, "nesting deeper than 32 levels, expected at most 32", "", "");
    graft_ynode *n = new_node(b, ev->type == YAML_MAPPING_START_EVENT ? GRAFT_YNODE_MAP
                                                                       : GRAFT_YNODE_SEQ, m);
    if (!n) return graft_err_set(b->err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", b->path);
    graft_status st = attach(b, n, m);
    if (st) return st;
    b->stack[b->depth].node = n;
    b->stack[b->depth].cap = 0;
    b->stack[b->depth].expect_value = 0;
    b->depth++;
    return GRAFT_STATUS_OK;
}

graft_status graft_ydoc_parse(const char *path, const char *text, size_t len, graft_ydoc **out,
                              graft_err *err) {
    *out = NULL;
    if (!path) path = "(yaml)";
    if (len > GRAFT_YAML_MAX_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: file of %zu bytes, expected at most 1 MiB (%d bytes)", path, len,
                             GRAFT_YAML_MAX_BYTES);
    builder b;
    memset(&b, 0, sizeof b);
    b.path = path;
    b.err = err;
    b.doc = calloc(1, sizeof *b.doc);
    if (!b.doc || !(b.doc->path = strdup(path))) {
        free(b.doc);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        graft_ydoc_free(b.doc);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    graft_status st = GRAFT_STATUS_OK;
    int n_docs = 0, done = 0;
    while (!done && st == GRAFT_STATUS_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.error == YAML_MEMORY_ERROR) {
                st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
            } else {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s:%zu:%zu: invalid YAML: %s%s%s, expected well-formed YAML",
                                   path, p.problem_mark.line + 1, p.problem_mark.column + 1,
                                   p.problem ? p.problem : "syntax error",
                                   p.context ? " " : "", p.context ? p.context : "");
            }
            break;
        }
        if (ev.type == YAML_STREAM_END_EVENT) done = 1;
        else st = on_event(&b, &ev, &n_docs);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (st) {
        graft_ydoc_free(b.doc);
        return st;
    }
    *out = b.doc;
    return GRAFT_STATUS_OK;
}

graft_status graft_ydoc_load(const char *path, graft_ydoc **out, graft_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(GRAFT_YAML_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, GRAFT_YAML_MAX_BYTES + 1, f);
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    graft_status st;
    if (bad) st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot read: %s", path, strerror(e));
    else if (n > GRAFT_YAML_MAX_BYTES)
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                           "%s: file larger than 1 MiB, expected at most %d bytes", path,
                           GRAFT_YAML_MAX_BYTES);
    else st = graft_ydoc_parse(path, buf, n, out, err);
    free(buf);
    return st;
}

const graft_ynode *graft_ynode_key(const graft_ynode *map, const char *key) {
    if (!map || map->kind != GRAFT_YNODE_MAP) return NULL;
    for (int64_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0) return map->keys[i];
    return NULL;
}

const graft_ynode *graft_ynode_get(const graft_ynode *map, const char *key) {
    if (!map || map->kind != GRAFT_YNODE_MAP) return NULL;
    for (int64_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0) return map->items[i];
    return NULL;
}

int graft_ynode_is_null(const graft_ynode *n) {
    if (!n || n->kind != GRAFT_YNODE_SCALAR || n->quoted) return 0;
    return n->len == 0 || !strcmp(n->text, "~") || !strcmp(n->text, "null") ||
           !strcmp(n->text, "Null") || !strcmp(n->text, "NULL");
}

const char *graft_ynode_describe(const graft_ynode *n, char *buf, size_t size) {
    if (!n) snprintf(buf, size, "nothing");
    else if (n->kind == GRAFT_YNODE_MAP) snprintf(buf, size, "a map");
    else if (n->kind == GRAFT_YNODE_SEQ) snprintf(buf, size, "a list");
    else if (graft_ynode_is_null(n)) snprintf(buf, size, "null");
    else {
        const char *ell = n->len > 60 ? "..." : "";
        if (n->quoted) snprintf(buf, size, "\"%.60s%s\"", n->text, ell);
        else snprintf(buf, size, "%.60s%s", n->text, ell);
    }
    return buf;
}

const char *graft_ynode_where(const graft_ydoc *doc, const graft_ynode *n, char *buf, size_t size) {
    const char *p = doc && doc->path ? doc->path : "(yaml)";
    if (n) snprintf(buf, size, "%s:%lld:%lld", p, (long long)n->line, (long long)n->col);
    else snprintf(buf, size, "%s", p);
    return buf;
}

int graft_parse_int64(const char *s, int64_t *out) {
    int neg = 0;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (!*s) return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

int graft_parse_double(const char *s, double *out) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return -1;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end != p || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static graft_status type_error(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                               const char *expected, graft_err *err) {
    char w[1100], d[96];
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected %s",
                         graft_ynode_where(doc, n, w, sizeof w), keypath,
                         n ? graft_ynode_describe(n, d, sizeof d) : "missing", expected);
}

graft_status graft_ynode_int64(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                               int64_t *out, graft_err *err) {
    if (!n || n->kind != GRAFT_YNODE_SCALAR || n->quoted || graft_parse_int64(n->text, out))
        return type_error(doc, n, keypath, "an integer", err);
    return GRAFT_STATUS_OK;
}

graft_status graft_ynode_double(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                                double *out, graft_err *err) {
    if (!n || n->kind != GRAFT_YNODE_SCALAR || n->quoted || graft_parse_double(n->text, out))
        return type_error(doc, n, keypath, "a finite number", err);
    return GRAFT_STATUS_OK;
}

graft_status graft_ynode_bool(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                              int *out, graft_err *err) {
    if (n && n->kind == GRAFT_YNODE_SCALAR && !n->quoted) {
        if (!strcmp(n->text, "true")) { *out = 1; return GRAFT_STATUS_OK; }
        if (!strcmp(n->text, "false")) { *out = 0; return GRAFT_STATUS_OK; }
    }
    return type_error(doc, n, keypath, "true or false", err);
}

graft_status graft_ynode_string(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                                const char **out, graft_err *err) {
    if (!n || n->kind != GRAFT_YNODE_SCALAR || graft_ynode_is_null(n))
        return type_error(doc, n, keypath, "a string", err);
    *out = n->text;
    return GRAFT_STATUS_OK;
}
