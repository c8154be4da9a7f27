/* block.h: one Qwen3 decoder layer with a pluggable token mixer (spec/qwen3.md §3):
 *
 *   a = rmsnorm(h, ln1);  hmid = h + mixer(a);  m = rmsnorm(hmid, ln2);
 *   out = hmid + down(silu(gate m) * up m)
 *
 * A block does not own its weights: it points at them (the model's arena, or, for a Stage 0
 * student, the teacher's frozen ln1/ln2/MLP plus the student's own mixer parameters). A gradient
 * pointer that is NULL means "frozen": nothing is accumulated there.
 *
 * The per-call activations live in a graft_block_ws the caller sizes with graft_block_ws_floats
 * and keeps between forward and backward. Not here: embedding, final norm, head (model.c).
 */
#ifndef GRAFT_BLOCK_H
#define GRAFT_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "graft/plugin.h"

typedef struct graft_block {
    const graft_backend *be;
    const graft_mixer *mx;
    void *ml;                        /* mixer layer object                                     */
    int64_t C, I;
    float eps;
    const graft_tensor *mp;          /* mixer params (n_mp)                                    */
    graft_tensor *mg;                /* mixer grads (n_mp) or NULL (frozen mixer)              */
    const void *ln1, *ln2, *gate, *up, *down; /* be->weight_dtype, on be's device            */
    float *d_ln1, *d_ln2, *d_gate, *d_up, *d_down; /* NULL = frozen                         */
    void *carry, *dcarry;            /* carried stream buffers or NULL                         */
} graft_block;

/* Activations of one block for one (B, T) call. */
typedef struct graft_block_ws {
    void *a, *hmid, *m, *g, *u;                     /* saved by a training forward (act dtype) */
    float *rstd1, *rstd2;                           /* saved, F32 on every backend            */
    void *saved;                                    /* the mixer's saved buffer               */
    /* scratch, may be shared between blocks run one after another: */
    void *mo, *tmpC, *dmid, *da, *act, *dg, *du;
    void *scratch;
} graft_block_ws;

/* Bytes needed for the saved part (per block) and the shared scratch part of a workspace, given
 * the mixer's workspace() byte counts: views sized in elements of the backend's act_dtype (half
 * the bytes on CUDA's BF16), rstd and the backward's `da` in F32, each view 64-byte aligned. */
size_t graft_block_saved_bytes(const graft_block *b, int64_t N, size_t mixer_saved_bytes);
size_t graft_block_scratch_bytes(const graft_block *b, int64_t N, size_t mixer_scratch_bytes);
/* Points ws at `saved` (graft_block_saved_bytes bytes) and `scratch` (64-byte aligned both). */
void graft_block_ws_bind(graft_block_ws *ws, const graft_block *b, int64_t N, void *saved,
                         size_t mixer_saved_bytes, void *scratch);

/* out = block(h) (activations of b->be->act_dtype on its device). train = 1 keeps what backward
 * needs in ws. out may not alias h. */
graft_status graft_block_forward(const graft_block *b, graft_block_ws *ws, void *out, const void *h,
                                 int64_t B, int64_t T, int train, graft_err *err);

/* Inference forward continuing decode state: state holds B slots of the mixer's
 * state_bytes(capacity) (updated in place); past_len (B) counts the tokens already in it
 * (NULL: empty state, a prefill from scratch). past_len_dev: the same as (B) int32 in device
 * memory for a graph-captured decode step (plugin.h graft_mixer_io.past_len_dev), else NULL. */
graft_status graft_block_forward_state(const graft_block *b, graft_block_ws *ws, void *out, const void *h,
                                       int64_t B, int64_t T, void *state, int64_t capacity,
                                       const int64_t *past_len, const int32_t *past_len_dev, graft_err *err);

/* Given d out (dout), writes d h into dh (dh may alias dout) and accumulates parameter
 * gradients (F32, the backend's memory) into the non-NULL gradient pointers. h is the block's
 * forward input; activations of b->be->act_dtype. */
graft_status graft_block_backward(const graft_block *b, graft_block_ws *ws, void *dh, const void *dout,
                                  const void *h, int64_t B, int64_t T, graft_err *err);

#endif
