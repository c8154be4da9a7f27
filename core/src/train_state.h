/* train_state.h: a training checkpoint, i.e. everything a killed run needs to continue exactly:
 * weights, AdamW moments, step/phase, data cursor, RNG state, schedule position, recipe hash.
 *
 * On disk it is one directory, published atomically (fsutil.h graft_fs_publish_dir):
 *   <dir>/weights.safetensors     F32, Hugging Face tensor names
 *   <dir>/optimizer.safetensors   F32, "exp_avg.<name>" (m) and "exp_avg_sq.<name>" (v)
 *   <dir>/state.json              format_version, step, phase, stage, lr_step, recipe_hash,
 *                                 data_cursor [int64...], rng_state ["<uint64 decimal>"...],
 *                                 files {name: bytes}, n_weights, n_opt
 * written into "<dir>.tmp" (each file fsynced, state.json last), then exchanged with the old
 * directory. A crash at any instant leaves the old complete checkpoint or the new complete one.
 *
 * Not here: the arena that holds the tensors during training (the caller copies in and out).
 * Thread safety: calls on distinct directories may run at once.
 */
#ifndef GRAFT_TRAIN_STATE_H
#define GRAFT_TRAIN_STATE_H

#include <stdint.h>

#include "graft/status.h"
#include "safetensors.h"

#define GRAFT_TRAIN_STATE_FORMAT 1
#define GRAFT_TRAIN_STATE_MAX_CURSOR 64 /* caps on the small arrays, checked on load */
#define GRAFT_TRAIN_STATE_MAX_RNG 64

/* A named fp32 tensor. On save all pointers are the caller's; on load they are owned by the
 * state and freed by graft_train_state_free. */
typedef struct graft_named_tensor {
    char *name;
    float *data;
    int64_t numel;
    int32_t ndim;
    int64_t shape[GRAFT_ST_MAX_DIMS];
} graft_named_tensor;

typedef struct graft_train_state {
    graft_named_tensor *weights; /* n_weights entries, distinct names                         */
    int64_t n_weights;
    graft_named_tensor *m, *v;   /* n_opt entries each; m[i], v[i] belong to the weight of the  */
    int64_t n_opt;               /* same name (same shape); frozen weights have none           */
    int64_t step;                /* optimizer steps taken in the stage                         */
    int32_t phase;
    int32_t stage;               /* index of the recipe stage                                  */
    int64_t lr_step;             /* schedule position (lr_schedule.h step)                     */
    int64_t *data_cursor;        /* the data loader's position, caller-defined meaning          */
    int64_t n_cursor;            /* <= GRAFT_TRAIN_STATE_MAX_CURSOR                            */
    uint64_t *rng_state;         /* graft_rng states                                           */
    int64_t n_rng;               /* <= GRAFT_TRAIN_STATE_MAX_RNG                               */
    char recipe_hash[72];        /* hex digest of the recipe, NUL-terminated                   */
    int32_t format_version;      /* set by load; save writes GRAFT_TRAIN_STATE_FORMAT          */
} graft_train_state;

/* Writes the checkpoint directory `dir` (parents created). Refuses inconsistent input (numel vs
 * shape, an m/v without a weight, duplicate names) naming the tensor. On failure `dir` is
 * untouched. */
graft_status graft_train_state_save(const char *dir, const graft_train_state *st, graft_err *err);

/* Reads `dir` (or "<dir>.old" left by a crash mid-publish) into *st, which it zeroes first and
 * which then owns every array: release with graft_train_state_free. Refuses a truncated,
 * missing or mismatched file naming it (and the tensor or field). On failure *st holds nothing. */
graft_status graft_train_state_load(const char *dir, graft_train_state *st, graft_err *err);

/* Frees what graft_train_state_load allocated and zeroes *st; NULL is fine. Never call it on a
 * state whose arrays the caller owns. */
void graft_train_state_free(graft_train_state *st);

/* The step of the complete checkpoint in dir (reading only its state.json), or -1 when there is
 * none or it cannot be read. */
int64_t graft_train_state_step(const char *dir);

#endif
