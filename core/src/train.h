/* train.h: whole-model training: pretraining with cross-entropy and Stage 1 distillation
 * (DESIGN: alpha * CE + (1 - alpha) * decoupled top-k KL from a teacher, in phases).
 *
 * One loop serves both: with no teacher (or alpha = 1) it is plain causal-LM training (how the
 * demo makes its teacher); with a teacher it distills. Each phase has its own (steps, batch,
 * seq_len); the learning rate follows one warmup + cosine schedule over all phases' steps.
 * A training checkpoint (weights, AdamW moments, step, phase, data cursor) is written every
 * checkpoint_every steps and at the end, atomically; a run started with resume = 1 continues from
 * the last complete one and produces the same losses as an uninterrupted run.
 *
 * Not here: recipes and the run log (run.c passes hooks), evaluation (eval.c).
 */
#ifndef GRAFT_TRAIN_H
#define GRAFT_TRAIN_H

#include <stdint.h>

#include "data.h"
#include "model.h"
#include "runlog.h" /* graft_train_row */

#define GRAFT_TRAIN_MAX_PHASES 16

typedef struct graft_train_phase {
    int64_t steps, batch, seq_len;
} graft_train_phase;

typedef struct graft_train_opts {
    graft_train_phase phases[GRAFT_TRAIN_MAX_PHASES];
    int n_phases;
    double lr, lr_min;
    int64_t warmup;
    int64_t accum;                /* micro-batches per optimizer step (gradient accumulation)   */
    double weight_decay, grad_clip, beta1, beta2, eps;
    double alpha;                 /* weight of CE; 1 = no distillation                          */
    int64_t k;                    /* top-k of the decoupled KL                                  */
    double temperature;           /* T of the decoupled KL                                      */
    int64_t eval_every;           /* 0: none during training                                    */
    int64_t eval_batches;
    int64_t checkpoint_every;     /* 0: only at the end                                         */
    const char *state_dir;        /* training checkpoint directory; NULL: none                  */
    int resume;                   /* continue from state_dir when it holds a checkpoint         */
    double holdout_fraction;
    const char *teacher_cache;    /* teacher top-k cache (teacher_cache.h): read when it exists,
                                     else made first from `teacher`; NULL: live teacher          */
    const char *const *heldout_paths; /* separate held-out shards (data.h), or NULL            */
    int64_t n_heldout;
    uint64_t seed;
} graft_train_opts;

graft_train_opts graft_train_default_opts(void);


typedef struct graft_train_hooks {
    void *ctx;
    void (*on_step)(void *ctx, const graft_train_row *row);
    void (*on_eval)(void *ctx, int64_t step, double heldout_ce, double tokens);
} graft_train_hooks;

/* Trains `student` (every parameter) on the token shards `paths`, distilling when alpha < 1 from
 * `teacher` or from p->teacher_cache (teacher may be NULL when that cache exists). Teacher and
 * student must share the vocabulary. */
graft_status graft_train_run(graft_model_t *student, graft_model_t *teacher, const char *const *paths,
                             int64_t n_paths, const graft_train_opts *p, const graft_train_hooks *hooks,
                             graft_err *err);

/* Held-out cross-entropy (nats per token) of a model over up to max_batches held-out batches of
 * (batch, seq_len) windows of `data`; exp of it is the perplexity. */
graft_status graft_eval_heldout_ce(graft_model_t *m, graft_data_t *data, int64_t batch, int64_t seq_len,
                                   int64_t max_batches, double *ce, double *tokens, graft_err *err);

#endif
