/* stage0.h: Stage 0, the layer-wise replaceability sweep (DESIGN "The job" and "Decisions").
 *
 * One frozen teacher forward per batch captures the residual stream h[0..L]; every chosen
 * (layer l, mixer) student = the teacher's layer l with its attention swapped for the mixer
 * (the teacher's ln1, ln2 and MLP, frozen unless train_mlp) maps h[l] to a prediction of h[l+1]
 * and trains on the normalized MSE (loss plugin "nmse") in the same step as all the others.
 * Students never see each other's errors. Held-out evaluation gives each pair's normalized loss
 * sum||s - h[l+1]||^2 / sum||h[l] - h[l+1]||^2 over the held-out windows (a ratio of sums).
 *
 * Not here: reading recipes, the run log and printing (run.c passes callbacks), selection.
 */
#ifndef GRAFT_STAGE0_H
#define GRAFT_STAGE0_H

#include <stdint.h>

#include "data.h"
#include "graft/plugin.h"
#include "model.h"

/* One (layer, mixer) student to train. */
typedef struct graft_stage0_pair {
    int64_t layer;             /* 0-based */
    const char *mixer;         /* plugin name */
    const graft_kv *kv;        /* the mixer's settings */
    int64_t n_kv;
    const char *origin;        /* where the settings came from (recipe path), for messages */
} graft_stage0_pair;

typedef struct graft_stage0_opts {
    int init_teacher;          /* 1: mixer starts from the teacher's attention (plugin mapping) */
    int train_mlp;             /* 1: the student's own copy of the MLP trains too               */
    int64_t steps, batch, seq_len;
    double lr, lr_min;
    int64_t warmup;
    double weight_decay, grad_clip, beta1, beta2, eps;
    int64_t eval_every;        /* 0: only at the end */
    int64_t eval_batches;      /* held-out batches per evaluation (capped by what exists)    */
    uint64_t seed;
    const char *out_dir;       /* one safetensors per student; NULL: none written             */
    /* Training checkpoint of the whole sweep (every student's weights and AdamW moments, the
     * step, the data cursor), written atomically every checkpoint_every steps (0: never); with
     * resume = 1 a sweep continues from the one in state_dir and takes the steps an uninterrupted
     * sweep would have taken. */
    const char *state_dir;
    int64_t checkpoint_every;
    int resume;
} graft_stage0_opts;

graft_stage0_opts graft_stage0_default_opts(void);

/* What the sweep reports as it goes (any member may be NULL). */
typedef struct graft_stage0_hooks {
    void *ctx;
    /* after each step, per pair: the step's training normalized loss (grad_norm: NaN on a device) */
    void (*on_train)(void *ctx, int64_t step, int64_t pair, double nloss, double lr, double grad_norm);
    /* after each held-out evaluation, per pair */
    void (*on_eval)(void *ctx, int64_t step, int64_t pair, double heldout_nloss);
    /* after each step: tokens/s of the whole step (teacher + every student) */
    void (*on_step)(void *ctx, int64_t step, double seconds, int64_t tokens);
    /* once, when every student is built, initialized and on the device, before the first step */
    void (*on_ready)(void *ctx, double seconds, double student_bytes);
} graft_stage0_hooks;

typedef struct graft_stage0_result {
    int64_t layer;
    char mixer[32];
    double heldout_nloss;      /* final held-out normalized loss */
    double heldout_tokens;
    char checkpoint[512];      /* the student's safetensors, "" when out_dir is NULL */
} graft_stage0_result;

/* Runs the sweep. results: n_pairs entries, filled in pair order. */
graft_status graft_stage0_run(graft_model_t *teacher, graft_data_t *data, const graft_stage0_pair *pairs,
                              int64_t n_pairs, const graft_stage0_opts *p, const graft_stage0_hooks *hooks,
                              graft_stage0_result *results, graft_err *err);

#endif
