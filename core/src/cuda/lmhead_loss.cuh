/* cuda/lmhead_loss.cuh: the output projection fused with its losses: token cross-entropy over the
 * whole vocabulary (V = 151,936 for Qwen3) and, optionally, the decoupled top-k KL of Stage 1
 * (DESIGN "Decoupled top-k KL"; CPU twins losses/ce.c and losses/topk_kl.c, math and gradient in
 * losses/README.md). fp32 logits for the whole batch never exist: rows go in chunks of chunk_rows.
 *
 * Per chunk of rows [r0, r0 + R):
 *   1. logits (R, V) fp32 = hidden[r0:] (R, C) bf16 . W^T          cuBLASLt, fp32 accumulate
 *   2. one block per row: labels / top-k checks, online max/sum-exp in fp32, per-row losses (the
 *      scalar formulas in double), and the gradient written IN PLACE as bf16 over the row's own
 *      fp32 logits (a bf16 (R, V) matrix with leading dimension 2V), tile by tile so no element is
 *      overwritten before it is read
 *         dlogits = ce_scale * (softmax(z) - onehot(y)) + kl_scale * d(Bern + TopK)/dz
 *   3. dhidden[r0:] (R, C) bf16 = dlogits . W              (when dhidden != NULL)
 *   4. dW (V, C) fp32 += dlogits^T . hidden[r0:]           (when dweight != NULL)
 * then per-row values are summed in row order (deterministic) into sums.
 *
 * Rows: counted iff labels[n] != ignore_index. A counted row's CE target is labels[n] (the caller
 * shifts labels for causal LM). The top-k KL uses labels only as its mask (as losses/topk_kl.c with
 * labels given). Ignored rows contribute 0 and get a zero gradient. A counted label outside [0, V),
 * or a top-k id outside [0, V), makes that row's loss NaN (visible in sums) and its gradient zero:
 * kernels cannot refuse, and graft validates ids where they enter (shards, teacher cache). Top-k ids
 * of a row MUST be distinct (the teacher cache's contract; losses/topk_kl.c checks it on the CPU).
 *
 * Thread safety: one call at a time per blas object (its workspace) and per workspace.
 */
#ifndef GRAFT_CUDA_LMHEAD_LOSS_CUH
#define GRAFT_CUDA_LMHEAD_LOSS_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"
#include "matmul.cuh"

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_CUDA_TOPK_MAX 256

/* Every pointer is a device pointer. */
typedef struct graft_cuda_lmhead_loss_io {
    const graft_bf16 *hidden;   /* (N, C) final-normed hidden states                              */
    const graft_bf16 *weight;   /* (V, C) lm_head.weight (or the tied embedding)                  */
    const int32_t *labels;      /* (N) targets; ignore_index rows are not counted                 */
    int64_t N, C, V;
    int32_t ignore_index;       /* -100                                                           */
    float ce_scale;             /* weight of d(CE sum) in dlogits, e.g. alpha / count             */
    /* decoupled top-k KL; topk_ids == NULL: CE only */
    const int32_t *topk_ids;    /* (N, k) teacher's top-k ids, distinct per row                   */
    const float *topk_logp;     /* (N, k) teacher log-probs at temperature 1                      */
    const float *topk_mass;     /* (N) teacher top-k mass at temperature 1                        */
    int64_t k;                  /* 1..GRAFT_CUDA_TOPK_MAX                                         */
    float temperature;          /* T > 0                                                          */
    float kl_scale;             /* weight of d(Bern + TopK sum) in dlogits, e.g. (1-alpha)/count  */
    /* outputs */
    graft_bf16 *dhidden;        /* (N, C) written (=), or NULL                                    */
    float *dweight;             /* (V, C) accumulated (+=), or NULL (frozen head)                 */
    double *sums;               /* (4): CE sum, counted rows, Bernoulli sum, top-k sum; written   */
    /* scratch */
    void *workspace;            /* graft_cuda_lmhead_loss_workspace_bytes(N, V, chunk_rows) bytes */
    size_t workspace_bytes;
    int64_t chunk_rows;         /* rows per chunk, >= 1                                           */
    void *stream;
} graft_cuda_lmhead_loss_io;

/* Workspace for N rows processed chunk_rows at a time: N * 32 bytes of per-row results plus
 * chunk_rows * V * 4 bytes of logits (chunk_rows = 1024 at V = 151,936: 622 MB). */
size_t graft_cuda_lmhead_loss_workspace_bytes(int64_t N, int64_t V, int64_t chunk_rows);

/* Runs the whole fused loss on io->stream (asynchronous; read sums after a sync). BAD_INPUT names
 * the member for sizes, k, temperature, NULL pointers and a short workspace. */
graft_status graft_cuda_lmhead_loss(graft_cuda_blas_t *blas, const graft_cuda_lmhead_loss_io *io, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
