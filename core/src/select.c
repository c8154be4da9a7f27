/* select.c: the layer-selection policies of select.h and the CSV readers of their tables.
 * Not here: writing the spec (hybrid_spec.c) or reading the run log. */
#include "select.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_tree.h" /* graft_parse_int64 / graft_parse_double */

#define CSV_MAX_BYTES (16 * 1024 * 1024)
#define CSV_MAX_FIELDS 32

/* ---- CSV ------------------------------------------------------------------------------------ */

typedef struct csv_cols {
    const char *names[3][3]; /* per wanted column: accepted header names, preferred first */
    int idx[3];
} csv_cols;

/* Calls row(fields, line) for each data row. */
typedef graft_status (*csv_row_fn)(void *ctx, char **f, const int *idx, int64_t line,
                                   const char *path, graft_err *err);

static graft_status csv_read(const char *path, csv_cols *cols, int n_cols, csv_row_fn fn,
                             void *ctx, graft_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(CSV_MAX_BYTES + 1);
    if (!buf) {
        fclose(fp);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, CSV_MAX_BYTES + 1, fp);
    int rerr = ferror(fp);
    fclose(fp);
    graft_status st = GRAFT_STATUS_OK;
    if (rerr) st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot read", path);
    else if (len > CSV_MAX_BYTES)
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: larger than 16 MiB, expected a small CSV",
                           path);
    else if (memchr(buf, 0, len))
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: contains a NUL byte, expected text", path);
    buf[len] = 0;
    int have_header = 0;
    int64_t line_no = 0;
    char *p = buf;
    while (!st && *p) {
        char *line = p;
        char *nl = strchr(p, '\n');
        if (nl) { *nl = 0; p = nl + 1; } else p += strlen(p);
        line_no++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        char *f[CSV_MAX_FIELDS];
        int nf = 0;
        for (char *q = line;; ) {
            if (nf == CSV_MAX_FIELDS) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: more than %d columns, "
                                   "expected a small table", path, (long long)line_no, CSV_MAX_FIELDS);
                break;
            }
            char *comma = strchr(q, ',');
            if (comma) *comma = 0;
            /* trim */
            while (*q == ' ' || *q == '\t') q++;
            char *e = q + strlen(q);
            while (e > q && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
            f[nf++] = q;
            if (!comma) break;
            q = comma + 1;
        }
        if (st) break;
        if (!have_header) {
            for (int c = 0; c < n_cols && !st; c++) {
                cols->idx[c] = -1;
                for (int a = 0; a < 3 && cols->names[c][a] && cols->idx[c] < 0; a++)
                    for (int i = 0; i < nf; i++)
                        if (!strcmp(f[i], cols->names[c][a])) cols->idx[c] = i;
                if (cols->idx[c] < 0)
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                       "%s:%lld: header: no column %s, expected columns %s,%s,%s",
                                       path, (long long)line_no, cols->names[c][0],
                                       cols->names[0][0], cols->names[1][0], cols->names[2][0]);
            }
            have_header = 1;
            continue;
        }
        for (int c = 0; c < n_cols && !st; c++)
            if (cols->idx[c] >= nf)
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s:%lld: %d columns, expected at least %d", path,
                                   (long long)line_no, nf, cols->idx[c] + 1);
        if (!st) st = fn(ctx, f, cols->idx, line_no, path, err);
    }
    if (!st && !have_header)
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: no header line, expected a CSV table",
                           path);
    free(buf);
    return st;
}

typedef struct rows_ctx {
    void *rows;
    size_t row_bytes;
    int64_t n, cap;
} rows_ctx;

static void *push_row(rows_ctx *r) {
    if (r->n == r->cap) {
        int64_t nc = r->cap ? r->cap * 2 : 64;
        void *nr = realloc(r->rows, (size_t)nc * r->row_bytes);
        if (!nr) return NULL;
        r->rows = nr;
        r->cap = nc;
    }
    void *row = (char *)r->rows + (size_t)r->n * r->row_bytes;
    r->n++;
    return row;
}

/* Common fields: mixer name and 0-based layer; the row's first two members. */
static graft_status parse_key(char **f, const int *idx, int64_t line, const char *path,
                              char *mixer, int64_t *layer, graft_err *err) {
    const char *m = f[idx[0]];
    if (!*m || strlen(m) >= GRAFT_MIXER_NAME_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: mixer: \"%.80s\", expected a "
                             "name of 1..63 bytes", path, (long long)line, m);
    memcpy(mixer, m, strlen(m) + 1);
    if (graft_parse_int64(f[idx[1]], layer) || *layer < 0 || *layer > (1 << 20))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: layer: \"%.80s\", expected a "
                             "0-based layer index", path, (long long)line, f[idx[1]]);
    return GRAFT_STATUS_OK;
}

static graft_status check_dup(const void *rows, size_t row_bytes, int64_t n, const char *path,
                              int64_t line, graft_err *err) {
    const graft_stage0_row *last = (const void *)((const char *)rows + (size_t)(n - 1) * row_bytes);
    for (int64_t i = 0; i + 1 < n; i++) {
        const graft_stage0_row *r = (const void *)((const char *)rows + (size_t)i * row_bytes);
        if (r->layer == last->layer && !strcmp(r->mixer, last->mixer))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: %s layer %lld: a second "
                                 "row, expected one row per (mixer, layer)", path, (long long)line,
                                 last->mixer, (long long)last->layer);
    }
    return GRAFT_STATUS_OK;
}

static graft_status stage0_row(void *vctx, char **f, const int *idx, int64_t line,
                               const char *path, graft_err *err) {
    rows_ctx *r = vctx;
    graft_stage0_row *row = push_row(r);
    if (!row) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    if (parse_key(f, idx, line, path, row->mixer, &row->layer, err)) return err->status;
    if (graft_parse_double(f[idx[2]], &row->loss) || row->loss < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: normalized_loss: \"%.80s\", "
                             "expected a finite number >= 0", path, (long long)line, f[idx[2]]);
    return check_dup(r->rows, r->row_bytes, r->n, path, line, err);
}

static graft_status cost_row(void *vctx, char **f, const int *idx, int64_t line, const char *path,
                             graft_err *err) {
    rows_ctx *r = vctx;
    graft_cost_row *row = push_row(r);
    if (!row) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    if (parse_key(f, idx, line, path, row->mixer, &row->layer, err)) return err->status;
    if (graft_parse_double(f[idx[2]], &row->saved_ms))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%lld: saved_ms: \"%.80s\", expected "
                             "a finite number", path, (long long)line, f[idx[2]]);
    return check_dup(r->rows, r->row_bytes, r->n, path, line, err);
}

graft_status graft_stage0_table_load_csv(const char *path, graft_stage0_table *out,
                                         graft_err *err) {
    memset(out, 0, sizeof *out);
    csv_cols cols = {{{"mixer"}, {"layer0", "layer"}, {"normalized_loss", "loss"}}, {0}};
    rows_ctx r = {NULL, sizeof(graft_stage0_row), 0, 0};
    graft_status st = csv_read(path, &cols, 3, stage0_row, &r, err);
    if (st) {
        free(r.rows);
        return st;
    }
    out->rows = r.rows;
    out->n = r.n;
    return GRAFT_STATUS_OK;
}

void graft_stage0_table_free(graft_stage0_table *t) {
    if (!t) return;
    free(t->rows);
    t->rows = NULL;
    t->n = 0;
}

graft_status graft_cost_table_load_csv(const char *path, graft_cost_table *out, graft_err *err) {
    memset(out, 0, sizeof *out);
    csv_cols cols = {{{"mixer"}, {"layer0", "layer"}, {"saved_ms"}}, {0}};
    rows_ctx r = {NULL, sizeof(graft_cost_row), 0, 0};
    graft_status st = csv_read(path, &cols, 3, cost_row, &r, err);
    if (st) {
        free(r.rows);
        return st;
    }
    out->rows = r.rows;
    out->n = r.n;
    return GRAFT_STATUS_OK;
}

void graft_cost_table_free(graft_cost_table *t) {
    if (!t) return;
    free(t->rows);
    t->rows = NULL;
    t->n = 0;
}

/* ---- selection ------------------------------------------------------------------------------ */

typedef struct cand {
    const char *mixer;
    int mixer_order; /* position of the mixer in ranges (or in the table) */
    int64_t layer;
    double loss;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->loss != y->loss) return x->loss < y->loss ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (x->mixer_order > y->mixer_order) - (x->mixer_order < y->mixer_order);
}

static const graft_stage0_row *find_row(const graft_stage0_table *t, const char *mixer,
                                        int64_t layer) {
    for (int64_t i = 0; t && i < t->n; i++)
        if (t->rows[i].layer == layer && !strcmp(t->rows[i].mixer, mixer)) return &t->rows[i];
    return NULL;
}

void graft_selection_free(graft_selection *s) {
    if (!s) return;
    free(s->mixer);
    free(s->loss);
    memset(s, 0, sizeof *s);
}

int64_t graft_selection_layers(const graft_selection *s, const char *mixer, int64_t *out) {
    int64_t k = 0;
    for (int64_t l = 0; l < s->n_layer; l++)
        if (!strcmp(s->mixer[l], mixer)) out[k++] = l;
    return k;
}

/* Builds the candidates of mixer m over its allowed set (or the table's rows for it). */
static graft_status candidates(const graft_stage0_table *t, const graft_select_request *q,
                               const char *mixer, int order, const graft_layer_set *allowed,
                               const graft_recipe_pos *pos, cand *c, int64_t *n,
                               graft_err *err) {
    *n = 0;
    const char *tn = q->table_name ? q->table_name : "the Stage 0 table";
    if (allowed) {
        for (int64_t l = 0; l < q->n_layer; l++) {
            int in = allowed->all;
            for (int64_t i = 0; !in && i < allowed->n_ranges; i++)
                in = l >= allowed->ranges[i].lo && l <= allowed->ranges[i].hi;
            if (!in) continue;
            const graft_stage0_row *r = find_row(t, mixer, l);
            if (!r)
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "%s: %s: %s layer %lld has no Stage 0 loss in %s, expected "
                                     "a row for every allowed layer",
                                     pos && pos->where ? pos->where : tn,
                                     pos && pos->field ? pos->field : "ranges", mixer,
                                     (long long)l, tn);
            c[(*n)++] = (cand){mixer, order, l, r->loss};
        }
        for (int64_t i = 0; !allowed->all && i < allowed->n_ranges; i++)
            if (allowed->ranges[i].hi >= q->n_layer)
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "%s: %s: %s, expected layers in 0..%lld (0-based)",
                                     allowed->ranges[i].pos.where ? allowed->ranges[i].pos.where : tn,
                                     allowed->ranges[i].pos.field ? allowed->ranges[i].pos.field
                                                                  : "ranges",
                                     allowed->ranges[i].text ? allowed->ranges[i].text : "?",
                                     (long long)(q->n_layer - 1));
    } else {
        for (int64_t i = 0; i < t->n; i++)
            if (!strcmp(t->rows[i].mixer, mixer))
                c[(*n)++] = (cand){mixer, order, t->rows[i].layer, t->rows[i].loss};
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_select_run(const graft_stage0_table *t, const graft_select_request *q,
                              graft_selection *out, graft_err *err) {
    memset(out, 0, sizeof *out);
    const char *tn = q->table_name ? q->table_name : "the Stage 0 table";
    if (q->n_layer < 1 || q->n_layer > (1 << 20))
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "select: n_layer %lld, expected >= 1",
                             (long long)q->n_layer);
    if (!t && q->policy != GRAFT_SELECT_LIST)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "select: no Stage 0 table");
    for (int64_t i = 0; t && i < t->n; i++)
        if (t->rows[i].layer >= q->n_layer)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s layer %lld, expected layers "
                                 "in 0..%lld (the model has %lld layers)", tn, t->rows[i].mixer,
                                 (long long)t->rows[i].layer, (long long)(q->n_layer - 1),
                                 (long long)q->n_layer);
    out->n_layer = q->n_layer;
    out->mixer = calloc((size_t)q->n_layer, sizeof *out->mixer);
    out->loss = malloc((size_t)q->n_layer * sizeof *out->loss);
    int64_t cap = (t ? t->n : 0) + q->n_layer * (q->n_ranges + q->n_list + 1);
    cand *all = malloc((size_t)(cap ? cap : 1) * sizeof *all);
    if (!out->mixer || !out->loss || !all) {
        free(all);
        graft_selection_free(out);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "select: out of memory");
    }
    for (int64_t l = 0; l < q->n_layer; l++) out->loss[l] = NAN;
    graft_status st = GRAFT_STATUS_OK;

    if (q->policy == GRAFT_SELECT_LIST) {
        for (int64_t i = 0; i < q->n_list && !st; i++) {
            const graft_mixer_layers *ml = &q->list[i];
            for (int64_t l = 0; l < q->n_layer && !st; l++) {
                int in = ml->layers.all;
                for (int64_t j = 0; !in && j < ml->layers.n_ranges; j++)
                    in = l >= ml->layers.ranges[j].lo && l <= ml->layers.ranges[j].hi;
                if (!in) continue;
                if (out->mixer[l][0])
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: layer %lld is also "
                                       "listed for %s, expected each layer once",
                                       ml->pos.where ? ml->pos.where : "select", ml->pos.field ?
                                       ml->pos.field : "list", (long long)l, out->mixer[l]);
                else {
                    snprintf(out->mixer[l], GRAFT_MIXER_NAME_BYTES, "%s", ml->mixer);
                    const graft_stage0_row *r = find_row(t, ml->mixer, l);
                    if (r) out->loss[l] = r->loss;
                }
            }
            for (int64_t j = 0; !st && !ml->layers.all && j < ml->layers.n_ranges; j++)
                if (ml->layers.ranges[j].hi >= q->n_layer)
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected layers "
                                       "in 0..%lld (0-based)", ml->layers.ranges[j].pos.where ?
                                       ml->layers.ranges[j].pos.where : "select",
                                       ml->layers.ranges[j].pos.field ?
                                       ml->layers.ranges[j].pos.field : "list",
                                       ml->layers.ranges[j].text ? ml->layers.ranges[j].text : "?",
                                       (long long)(q->n_layer - 1));
        }
        free(all);
        if (st) graft_selection_free(out);
        return st;
    }

    /* the mixers: from ranges, else distinct mixers of the table in order of appearance */
    int64_t n_mix = q->n_ranges;
    const char **names = malloc((size_t)((t->n > n_mix ? t->n : n_mix) + 1) * sizeof *names);
    if (!names) {
        free(all);
        graft_selection_free(out);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "select: out of memory");
    }
    if (q->n_ranges) {
        for (int64_t i = 0; i < q->n_ranges; i++) names[i] = q->ranges[i].mixer;
    } else {
        for (int64_t i = 0; i < t->n; i++) {
            int seen = 0;
            for (int64_t j = 0; j < n_mix; j++) seen |= !strcmp(names[j], t->rows[i].mixer);
            if (!seen) names[n_mix++] = t->rows[i].mixer;
        }
    }
    int64_t n_all = 0;
    for (int64_t m = 0; m < n_mix && !st; m++) {
        cand *c = all + n_all;
        int64_t n = 0;
        st = candidates(t, q, names[m], (int)m, q->n_ranges ? &q->ranges[m].layers : NULL,
                        q->n_ranges ? &q->ranges[m].pos : NULL, c, &n, err);
        if (st) break;
        if (q->policy == GRAFT_SELECT_BUDGET) {
            n_all += n;
            continue;
        }
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        int64_t keep;
        if (q->policy == GRAFT_SELECT_PERCENTILE) {
            keep = (int64_t)floor((double)n * q->percentile / 100.0 + 1e-9);
            if (keep < 1) keep = 1;
        } else {
            keep = q->count;
        }
        if (keep > n) keep = n;
        n_all += keep;
    }
    if (!st && q->policy == GRAFT_SELECT_BUDGET) {
        if (!q->cost) {
            st = graft_err_set(err, GRAFT_STATUS_INTERNAL, "select: budget policy without a cost table");
        } else {
            qsort(all, (size_t)n_all, sizeof *all, cand_cmp);
            double total = 0, reachable = 0;
            int reached = 0;
            for (int64_t i = 0; i < n_all && !st; i++) {
                const graft_cost_row *cr = NULL;
                for (int64_t j = 0; j < q->cost->n; j++)
                    if (q->cost->rows[j].layer == all[i].layer &&
                        !strcmp(q->cost->rows[j].mixer, all[i].mixer))
                        cr = &q->cost->rows[j];
                if (!cr) {
                    st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "select: cost: %s layer %lld "
                                       "has no saved_ms row, expected one for every candidate",
                                       all[i].mixer, (long long)all[i].layer);
                    break;
                }
                if (reached || out->mixer[all[i].layer][0]) continue;
                snprintf(out->mixer[all[i].layer], GRAFT_MIXER_NAME_BYTES, "%s", all[i].mixer);
                out->loss[all[i].layer] = all[i].loss;
                total += cr->saved_ms;
                if (total >= q->budget) reached = 1;
            }
            if (!st && !reached) {
                reachable = total;
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "select: budget: %g ms, expected at "
                                   "most %g ms (what the greedy walk over every candidate saves)",
                                   q->budget, reachable);
            }
            out->saved_ms = total;
        }
    } else if (!st) {
        /* conflicts: the lower loss keeps the layer (cand_cmp order decides) */
        qsort(all, (size_t)n_all, sizeof *all, cand_cmp);
        for (int64_t i = 0; i < n_all; i++) {
            if (out->mixer[all[i].layer][0]) continue;
            snprintf(out->mixer[all[i].layer], GRAFT_MIXER_NAME_BYTES, "%s", all[i].mixer);
            out->loss[all[i].layer] = all[i].loss;
        }
    }
    free(names);
    free(all);
    if (st) graft_selection_free(out);
    return st;
}
