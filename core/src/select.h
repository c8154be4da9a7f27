/* select.h: the layer-selection policy. Stage 0 table (mixer, 0-based layer, normalized loss)
 * + allowed layers per mixer + a policy -> which layer gets which mixer (a graft_selection,
 * which hybrid_spec.h turns into a spec file).
 *
 * Policies (docs/recipes.md "select"), all deterministic:
 *  - percentile p: per mixer, the candidates are the layers of its allowed set (every candidate
 *    MUST have a row in the table), sorted by loss ascending (ties: lower layer first); the best
 *    max(1, floor(n * p / 100)) are kept: the rule of the original experiment
 *    (configs/hybrid_config_generator.py; shared/reference/README.md). floor is taken of
 *    n * p / 100 + 1e-9 so that 10 * 30 / 100 is 3 whatever the rounding.
 *  - count N: per mixer, the best min(N, n).
 *  - list: the layers given, per mixer, as they are (the table is optional; a layer given for two
 *    mixers is refused).
 *  - budget B with a cost table (mixer, layer, saved_ms = the time one token saves when that
 *    layer's attention is replaced by that mixer): all (mixer, layer) candidates of all mixers
 *    are sorted by loss ascending (ties: lower layer, then the mixer listed first); walking that
 *    order, a pair whose layer is still free is taken and its saved_ms added, until the total
 *    reaches B. A budget no selection can reach is refused, naming the reachable total.
 * Conflicts (percentile, count): when two mixers pick the same layer, the pair with the lower
 * loss keeps it (equal losses: the mixer listed first in `ranges`, else first in the table); the
 * other mixer gets no replacement pick. Mixers without allowed ranges: when `ranges` is empty
 * every mixer in the table is a candidate on every layer the table has for it.
 *
 * Thread safety: no globals; separate objects may be used from separate threads.
 */
#ifndef GRAFT_SELECT_H
#define GRAFT_SELECT_H

#include <stdint.h>

#include "graft/status.h"
#include "recipe.h"

#define GRAFT_MIXER_NAME_BYTES 64

/* One Stage 0 result. */
typedef struct graft_stage0_row {
    char mixer[GRAFT_MIXER_NAME_BYTES];
    int64_t layer;           /* 0-based */
    double loss;             /* normalized loss, finite, >= 0 */
} graft_stage0_row;

/* A Stage 0 table. rows is malloc'd (graft_stage0_table_free); the run log fills the same
 * struct from its HDF5 table. (mixer, layer) pairs are unique. */
typedef struct graft_stage0_table {
    graft_stage0_row *rows;
    int64_t n;
} graft_stage0_table;

/* Reads a CSV: '#' lines and blank lines are skipped; the first other line is the header.
 * Columns by name: mixer; layer0 (0-based) if present, else layer (taken as 0-based);
 * normalized_loss (or loss). Other columns are ignored. Refuses (path:line: column: found,
 * expected ...) missing columns, bad numbers, negative or non-finite losses, duplicate
 * (mixer, layer) rows, files over 16 MiB. On failure *out is empty. */
graft_status graft_stage0_table_load_csv(const char *path, graft_stage0_table *out,
                                         graft_err *err);
void graft_stage0_table_free(graft_stage0_table *t);

/* One measured saving (cost table for the budget policy). */
typedef struct graft_cost_row {
    char mixer[GRAFT_MIXER_NAME_BYTES];
    int64_t layer;           /* 0-based */
    double saved_ms;         /* finite; may be negative (a slower mixer) */
} graft_cost_row;

typedef struct graft_cost_table {
    graft_cost_row *rows;
    int64_t n;
} graft_cost_table;

/* Reads a CSV with columns mixer, layer (0-based; or layer0), saved_ms; same rules as above. */
graft_status graft_cost_table_load_csv(const char *path, graft_cost_table *out, graft_err *err);
void graft_cost_table_free(graft_cost_table *t);

/* What to select. Pointers are borrowed for the duration of graft_select_run. */
typedef struct graft_select_request {
    graft_select_policy policy;
    double percentile;                  /* percentile: in (0, 100]                          */
    int64_t count;                      /* count: >= 1                                      */
    const graft_mixer_layers *ranges;   /* allowed layers per mixer (recipe.h), may be empty */
    int64_t n_ranges;
    const graft_mixer_layers *list;     /* list policy                                      */
    int64_t n_list;
    const graft_cost_table *cost;       /* budget policy                                    */
    double budget;                      /* budget policy: saved ms to reach, > 0            */
    int64_t n_layer;                    /* layers of the model, >= 1                        */
    const char *table_name;             /* names the table in messages ("runs/x/run.h5")    */
} graft_select_request;

/* The result: per layer, the mixer grafted there ("" = the layer keeps full attention). */
typedef struct graft_selection {
    int64_t n_layer;
    char (*mixer)[GRAFT_MIXER_NAME_BYTES]; /* n_layer entries                                  */
    double *loss;                          /* n_layer entries: its Stage 0 loss, NAN if none   */
    double saved_ms;                       /* budget policy: the total reached, else 0         */
} graft_selection;

/* Runs the policy. table may be NULL for the list policy. On success *out is filled (free with
 * graft_selection_free); on failure it is empty and err says why (a layer outside 0..n_layer-1,
 * a candidate without a Stage 0 row, an unreachable budget, ...). */
graft_status graft_select_run(const graft_stage0_table *table, const graft_select_request *req,
                              graft_selection *out, graft_err *err);
void graft_selection_free(graft_selection *s);

/* The layers given to `mixer`, ascending, written to out (capacity s->n_layer); returns the count. */
int64_t graft_selection_layers(const graft_selection *s, const char *mixer, int64_t *out);

#endif
