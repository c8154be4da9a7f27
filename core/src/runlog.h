/* runlog.h: the run log, one HDF5 file per run that h5py, pandas, MATLAB, HDFView and h5dump read,
 * also while the run goes (SWMR). docs/runlog.md is the schema; this header is its writer.
 *
 * Layout (all details, units and types in docs/runlog.md):
 *   /                      attributes graft_version, runlog_version, recipe, start_time, device,
 *                          git_hash, command_line, resume_count
 *   /stages/<index>_<kind> one group per stage; attributes kind, index, status, start_time, end_time
 *       train, stage0_pairs, stage0_results, eval, bench, generations   extendable compound tables
 *       <name>             text datasets (graft_runlog_set_text), e.g. hybrid_spec
 *
 * SWMR: the file uses the latest format and is in SWMR-write mode while rows are appended; every
 * append is flushed, so a reader opened with swmr=True sees it after refreshing the dataset.
 * Structural changes (a new stage group with its tables, stage attributes, a text dataset) need
 * the file out of SWMR mode: the writer closes it, reopens it for plain writing, makes the change
 * and starts SWMR writing again. Those happen a few times per run; a live reader that meets an
 * error at that moment retries (docs/runlog.md, "Following a live run").
 *
 * Resume: graft_runlog_open(..., resume = 1) reopens the log of a killed run (clearing HDF5's
 * "open for writing" marks a killed writer leaves), drops the rows that come after the checkpoint
 * being resumed (meta->resume_stage / resume_step) and appends from there, so the log reads as if
 * the run had never stopped.
 *
 * Errors: "<path>: <what>: <HDF5's innermost message>"; HDF5's own stderr printing is switched
 * off for the calling thread (H5Eset_auto). Thread safety: one log belongs to one thread.
 */
#ifndef GRAFT_RUNLOG_H
#define GRAFT_RUNLOG_H

#include <stdint.h>

#include "graft/status.h"

#define GRAFT_RUNLOG_VERSION 1

/* Fixed string widths of the tables, in bytes (docs/runlog.md). Identifiers longer than these
 * are refused; generation prompts and texts are truncated to them. */
#define GRAFT_RUNLOG_MIXER_BYTES 16
#define GRAFT_RUNLOG_MODEL_BYTES 64
#define GRAFT_RUNLOG_METRIC_BYTES 32
#define GRAFT_RUNLOG_PROMPT_BYTES 512
#define GRAFT_RUNLOG_TEXT_BYTES 4096
#define GRAFT_RUNLOG_KIND_BYTES 16

typedef struct graft_runlog graft_runlog_t;

/* What the caller knows at open. Strings are copied; NULL is written as "". */
typedef struct graft_runlog_meta {
    const char *recipe_text;  /* the recipe YAML as read                                  */
    const char *device;       /* "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)", ...             */
    const char *git_hash;     /* of the graft build                                        */
    const char *command_line; /* argv joined with spaces                                   */
    /* Resume only: the checkpoint being resumed was taken in stage resume_stage after step
     * resume_step. Rows of that stage with step > resume_step are dropped, its result tables
     * (stage0_results, eval, bench, generations) emptied, later stages removed. resume_step = -1
     * keeps none of that stage's rows. */
    int32_t resume_stage;
    int64_t resume_step;
} graft_runlog_meta;

/* One optimizer step. */
typedef struct graft_train_row {
    int64_t step;        /* 1-based optimizer step within the stage     */
    int32_t phase;       /* 0-based phase of the stage's schedule       */
    double loss;         /* the optimized loss                          */
    double ce;           /* cross-entropy part (NaN when not computed)  */
    double kl;           /* KL part (NaN when not computed)             */
    double lr;
    double grad_norm;    /* before clipping                             */
    int64_t tokens;      /* tokens seen so far in the stage             */
    double tokens_per_s;
    double wall_s;       /* seconds since the stage began               */
} graft_train_row;

/* One (layer, mixer) student of Stage 0 at one step. */
typedef struct graft_stage0_pair_row {
    int64_t step;
    int32_t layer;         /* 0-based */
    const char *mixer;     /* <= 16 bytes */
    double train_nloss;    /* normalized loss of this step's batch                    */
    double heldout_nloss;  /* normalized held-out loss, NaN when not evaluated now    */
} graft_stage0_pair_row;

/* The Stage 0 result table: one row per (layer, mixer) after training. */
typedef struct graft_stage0_result_row {
    int32_t layer;
    const char *mixer;
    double heldout_nloss;
    int64_t n_tokens;      /* held-out tokens the ratio was summed over */
} graft_stage0_result_row;

typedef struct graft_eval_row {
    const char *model;     /* <= 64 bytes: "control", "hybrid", a path  */
    const char *metric;    /* <= 32 bytes: "ppl", "nll", "acc:hellaswag" */
    double value;
    int64_t n_tokens;
    int64_t step;          /* training step of a held-out eval during training; -1: a final eval */
} graft_eval_row;

typedef struct graft_bench_row {
    const char *model;
    int64_t context;       /* prompt tokens                              */
    int64_t batch;
    int64_t prefill_chunk; /* prompt tokens per sequence per prefill call; 0: the whole prompt in one */
    double ttft_ms;        /* time to first token, milliseconds          */
    double decode_tok_s;   /* decode tokens per second (all sequences)   */
    int64_t state_bytes;   /* KV cache + recurrent state                 */
    int64_t peak_bytes;    /* peak device memory                         */
} graft_bench_row;

typedef struct graft_generation_row {
    const char *model;
    const char *prompt;    /* truncated to 512 bytes  */
    const char *text;      /* truncated to 4096 bytes */
} graft_generation_row;

/* All fields "" / 0, resume_stage 0, resume_step -1. */
graft_runlog_meta graft_runlog_default_meta(void);

/* Creates `path` (resume = 0; an existing file is replaced, written first as "<path>.tmp" and
 * renamed once its root is complete) or reopens it (resume = 1, see above). On success *out owns
 * the open file; close it with graft_runlog_close. */
graft_status graft_runlog_open(const char *path, const graft_runlog_meta *meta, int resume,
                               graft_runlog_t **out, graft_err *err);

/* Flushes and closes; NULL is fine. Stages still "running" stay so (a reader can tell an
 * unfinished stage). */
void graft_runlog_close(graft_runlog_t *log);

/* Starts stage `index` (0-based, < 1000) of `kind` (<= 16 bytes, [a-z0-9_]): creates
 * /stages/<index>_<kind> with every table, status "running". On resume, beginning the stage
 * being resumed reuses its group (the kind must match). */
graft_status graft_runlog_stage_begin(graft_runlog_t *log, int32_t index, const char *kind,
                                      graft_err *err);

/* Marks stage `index` finished: status ("done", "failed", ...; <= 16 bytes) and end_time. */
graft_status graft_runlog_stage_end(graft_runlog_t *log, int32_t index, const char *status,
                                    graft_err *err);

/* Appends one row to a table of a begun stage and flushes it (visible to SWMR readers). */
graft_status graft_runlog_append_train(graft_runlog_t *log, int32_t stage, const graft_train_row *row,
                                       graft_err *err);
graft_status graft_runlog_append_stage0_pair(graft_runlog_t *log, int32_t stage,
                                             const graft_stage0_pair_row *row, graft_err *err);
graft_status graft_runlog_append_stage0_result(graft_runlog_t *log, int32_t stage,
                                               const graft_stage0_result_row *row, graft_err *err);
graft_status graft_runlog_append_eval(graft_runlog_t *log, int32_t stage, const graft_eval_row *row,
                                      graft_err *err);
graft_status graft_runlog_append_bench(graft_runlog_t *log, int32_t stage, const graft_bench_row *row,
                                       graft_err *err);
graft_status graft_runlog_append_generation(graft_runlog_t *log, int32_t stage,
                                            const graft_generation_row *row, graft_err *err);

/* Stores `text` as the string dataset /stages/<stage>/<name> (name [a-z0-9_], <= 64 bytes, not a
 * table's name), replacing an earlier one. The hybrid spec goes here as "hybrid_spec". */
graft_status graft_runlog_set_text(graft_runlog_t *log, int32_t stage, const char *name,
                                   const char *text, graft_err *err);

/* Rows in a stage's table ("train", "eval", ...), for tests and resume logic; -1 on error. */
int64_t graft_runlog_rows(graft_runlog_t *log, int32_t stage, const char *table, graft_err *err);

#endif
