/* run.h: `graft run RECIPE`: executes a recipe's stages in order (DESIGN "The job"), writing the
 * run log, every stage's outputs and a summary.
 *
 * Stages and their outputs (docs/recipes.md):
 *   pretrain  trains `model` with CE; writes the model to `out` (it becomes the control, and the
 *             teacher when the recipe has none)
 *   stage0    the (layer, mixer) sweep; one safetensors per student and stage0.csv in `out`
 *   select    hybrid spec(s) from the latest Stage 0 table (or `from`)
 *   stage1    assembles the hybrid from the spec and distills it from the teacher; writes `out`
 *   eval      held-out perplexity and generations of teacher / control / hybrid
 * Completed stages are recorded in "<run_log>.progress" (atomically); `resume` skips them and
 * continues the first unfinished one from its last training checkpoint, so a killed run ends as an
 * uninterrupted one would. `only_stage` runs one stage alone, taking earlier stages' outputs from
 * disk.
 *
 * Not here: the stages' numerics (stage0.c, train.c, select.c, hybrid.c). Thread safety: one run
 * per process (the thread count is process-wide).
 */
#ifndef GRAFT_RUN_H
#define GRAFT_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "graft/status.h"

typedef struct graft_run_opts {
    const char *recipe;        /* path of the recipe YAML                                        */
    int check_only;            /* validate the recipe and everything it names; run nothing       */
    int resume;                /* continue a killed run (see above)                              */
    int64_t only_stage;        /* >= 0: run only stages[only_stage]; -1: all                     */
    const char *command_line;  /* recorded in the run log                                        */
    FILE *out;                 /* progress and summary; NULL: stdout                            */
} graft_run_opts;

graft_run_opts graft_run_default_opts(void);

/* Runs (or checks) the recipe. Errors name the recipe position or the file at fault. */
graft_status graft_run(const graft_run_opts *o, graft_err *err);

#endif
