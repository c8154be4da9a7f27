/* run_ctx.h: what the stages of one `graft run` share (internal to run*.c): the recipe, the run
 * log, which model directory each role refers to as stages produce them, and the summary. */
#ifndef GRAFT_RUN_CTX_H
#define GRAFT_RUN_CTX_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "model.h"
#include "recipe.h"
#include "run.h"
#include "runlog.h"

#define GRAFT_RUN_PATH 4096

typedef struct graft_run_ctx {
    const graft_recipe *r;
    const graft_run_opts *o;
    FILE *out;
    graft_runlog_t *log;              /* NULL in check mode */
    graft_qwen3_config cfg;           /* of `model` */
    /* Where each role's weights are now: "" = the recipe's random init (model/teacher with
     * `config:`), else a model directory (HF or hybrid). Stages update them as they produce. */
    char model_dir[GRAFT_RUN_PATH];
    char teacher_dir[GRAFT_RUN_PATH];
    char hybrid_dir[GRAFT_RUN_PATH];  /* the latest stage1 output, "" before one */
    char stage0_dir[GRAFT_RUN_PATH];  /* the latest stage0 output dir, "" before one */
    const graft_stage0_params *stage0; /* that stage's settings (mixer kv), NULL before one */
    char spec[GRAFT_RUN_PATH];        /* the latest select's single output, "" before one */
    char tokenizer[GRAFT_RUN_PATH];   /* tokenizer file or dir, "" when none is known */
    const struct graft_backend *be;   /* the recipe's device (NULL: the CPU)                      */
    /* resume: the stage being resumed continues from its checkpoint */
    int resuming;
    int64_t resume_stage;
    char summary[16384];              /* printed at the end */
} graft_run_ctx;

/* Appends a formatted line to the summary. */
void graft_run_note(graft_run_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the model a role points at: a directory (graft_hybrid_load), or the recipe's random init
 * (`ref` with random_init) when dir is "". */
graft_status graft_run_load_model(graft_run_ctx *c, const char *dir, const graft_model_ref *ref,
                                  graft_model_t **out, graft_err *err);

/* Moves a loaded model to the recipe's device (nothing on the CPU); on failure it stays on the CPU. */
graft_status graft_run_place(graft_run_ctx *c, graft_model_t *m, graft_err *err);

/* A model choice of eval / bench (teacher, control, hybrid or a path): its display name, and
 * the model loaded from where that role's weights are now (run_eval.c). */
const char *graft_run_choice_name(const graft_model_choice *m);
graft_status graft_run_load_choice(graft_run_ctx *c, const graft_model_choice *m, graft_model_t **out,
                                   graft_err *err);

/* Opens the recipe's data with windows of (B, T) and the model's vocabulary as the id bound. */
graft_status graft_run_open_data(graft_run_ctx *c, int64_t B, int64_t T, graft_data_t **out,
                                 graft_err *err);

/* The tokenizer directory to copy into a saved model ("" or NULL when none). */
const char *graft_run_tokenizer_dir(graft_run_ctx *c, char *buf, size_t size);

/* The stages (run_train.c, run_stage0.c, run_eval.c, run_bench.c). Each gets its stage and, for training
 * stages, whether to continue from its checkpoint. */
graft_status graft_run_pretrain(graft_run_ctx *c, const graft_stage *s, graft_err *err);
graft_status graft_run_stage1(graft_run_ctx *c, const graft_stage *s, graft_err *err);
graft_status graft_run_stage0(graft_run_ctx *c, const graft_stage *s, graft_err *err);
graft_status graft_run_select(graft_run_ctx *c, const graft_stage *s, graft_err *err);
graft_status graft_run_eval(graft_run_ctx *c, const graft_stage *s, graft_err *err);
graft_status graft_run_bench(graft_run_ctx *c, const graft_stage *s, graft_err *err);

/* Where a training stage keeps its checkpoints: "<out>.state". */
void graft_run_state_dir(const char *out, char *buf, size_t size);

/* Stage outputs as they will be on disk (also for stages not run in this invocation). */
void graft_run_stage0_csv(const char *stage0_dir, char *buf, size_t size);

#endif
