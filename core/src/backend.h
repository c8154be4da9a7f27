/* backend.h: the internal backend contract (never installed). A backend is a table of function
 * pointers plus a context; the model calls ops only through it, so no caller #ifdefs on the
 * device. An op a backend lacks is NULL and the caller refuses with a message naming it.
 *
 * The ops are the TYPED table `op` (docs/cuda.md "The typed backend"), which the model, its
 * blocks and Stage 0 use on every device. Tensors are void * whose dtype is fixed by role:
 * activations have `act_dtype` (F32 on the CPU, BF16 on CUDA), weights the ops read have
 * `weight_dtype` (F32 / BF16), statistics (rstd), parameter gradients and master weights are
 * always F32. Every typed op returns graft_status and fills graft_err (CUDA launch errors), and
 * runs asynchronously on the backend's stream. The CPU backend's typed ops call the fp32 kernels
 * of cpu/cpu_ops.h, so the CPU numbers are those of the plain fp32 code.
 *
 * Op convention (STYLE.md): outputs first, then inputs, then sizes. N = rows (B*T tokens),
 * C = width, I = MLP width, V = vocabulary. Gradients of parameters are ACCUMULATED (+=), gradients
 * of activations are WRITTEN (=) unless the op's comment says otherwise.
 *
 * Not here: attention and RoPE (they live in plugins/softmax, behind the mixer ABI), losses
 * (losses/ plugins).
 */
#ifndef GRAFT_BACKEND_H
#define GRAFT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"
#include "graft/status.h"

struct graft_backend_loss_io;
struct graft_backend_adamw_span;

typedef struct graft_backend {
    const char *name;          /* "cpu", "cuda" */
    graft_device device;
    void *ctx;

    void *(*alloc)(void *ctx, size_t bytes);  /* zero-filled, 64-byte aligned; NULL on failure */
    void (*free)(void *ctx, void *ptr);

    /* Row-major product (graft_matmul_args semantics, mixed dtypes included: the CPU serves
     * F32 only, CUDA BF16 x BF16 -> BF16 or F32 and F32). */
    graft_status (*matmul)(void *ctx, const graft_matmul_args *args, graft_err *err);

    /* ---- typed part ---------------------------------------------------------------------- */
    graft_dtype act_dtype;     /* activations: F32 (CPU), BF16 (CUDA)                          */
    graft_dtype weight_dtype;  /* the working copy of the weights ops read: F32 (CPU), BF16    */
    int32_t device_index;      /* CUDA ordinal; 0 on the CPU                                    */
    void *stream;              /* cudaStream_t on CUDA (NULL: the default stream); NULL on CPU  */

    /* Memory of this backend (device memory on CUDA) and transfers. kind: GRAFT_COPY_*. */
    graft_status (*copy)(void *ctx, void *dst, const void *src, size_t bytes, int kind, graft_err *err);
    graft_status (*zero)(void *ctx, void *dst, size_t bytes, graft_err *err);
    /* Waits for everything queued on the stream; reports an asynchronous failure. */
    graft_status (*sync)(void *ctx, graft_err *err);
    /* CUDA graphs (NULL on the CPU): what is queued on the stream between graph_begin and
     * graph_end is captured (not run) into an executable graph (*exec); graph_launch replays it
     * on the stream, graph_free frees it. Used for the single-token decode step (model.c). */
    graft_status (*graph_begin)(void *ctx, graft_err *err);
    graft_status (*graph_end)(void *ctx, void **exec, graft_err *err);
    graft_status (*graph_launch)(void *ctx, void *exec, graft_err *err);
    void (*graph_free)(void *ctx, void *exec);
    /* Bytes this backend has allocated at most since the last call with reset = 1 (it then restarts
     * from the bytes allocated now); NULL on the CPU (bench.c reads the process's VmHWM there). */
    int64_t (*mem_peak)(void *ctx, int reset);

    struct graft_backend_ops {
        /* out (N, C) act = table (V, C) weight [ids (N), device int32] */
        graft_status (*embedding_fwd)(void *ctx, void *out, const void *table, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, graft_err *err);
        /* y (N, C) act = rmsnorm(x) * w; rstd (N) F32 or NULL. */
        graft_status (*rmsnorm_fwd)(void *ctx, void *y, float *rstd, const void *x, const void *w, int64_t N,
                                    int64_t C, float eps, graft_err *err);
        /* h (N, I) = silu(g) * u; g, u (N, I) act. */
        graft_status (*swiglu_fwd)(void *ctx, void *h, const void *g, const void *u, int64_t N, int64_t I,
                                   graft_err *err);
        /* y = a + b over n act elements (y may alias a or b). */
        graft_status (*add)(void *ctx, void *y, const void *a, const void *b, int64_t n, graft_err *err);
        /* sum (N, C) act = a + b, then y = rmsnorm(sum) * w, rstd (N) F32 or NULL: a block's
         * mid-layer residual step in one pass (sum may alias a, not b). Equals add then rmsnorm_fwd. */
        graft_status (*add_rmsnorm_fwd)(void *ctx, void *sum, void *y, float *rstd, const void *a, const void *b,
                                        const void *w, int64_t N, int64_t C, float eps, graft_err *err);
        /* The MLP of a step with few rows (a decode step), nothing saved: act (N, I) act scratch =
         * silu(m gate^T) * (m up^T), then out (N, C) = hmid + act down^T; bit-identical to linear,
         * linear, swiglu_fwd, linear, add on this backend. NULL where a backend has none; returns
         * GRAFT_STATUS_UNSUPPORTED, queueing nothing, where N or the shapes do not fit it (CUDA:
         * N <= 8), and the caller takes the general path. */
        graft_status (*mlp_small)(void *ctx, void *out, void *act, const void *hmid, const void *m, const void *gate,
                                  const void *up, const void *down, int64_t N, int64_t C, int64_t I, graft_err *err);
        /* ids (rows) int32 = the first index of each row's largest value in x (rows, V) F32, both
         * this backend's memory; NaN never chosen unless it leads the row (then 0), as the host's
         * greedy scan in generate.c. NULL on the CPU (the host scans its own logits). */
        graft_status (*argmax_rows)(void *ctx, int32_t *ids, const float *x, int64_t rows, int64_t V, graft_err *err);
        /* dst (n) of dst_dtype = src (n) of src_dtype, both this backend's memory (F32 <-> act). */
        graft_status (*cast)(void *ctx, void *dst, graft_dtype dst_dtype, const void *src, graft_dtype src_dtype,
                             int64_t n, graft_err *err);

        /* ---- backward (training). Parameter gradients F32, ACCUMULATED; activation gradients
         * act_dtype, written unless `accumulate`. Scratch the CUDA ops need (the dw partials, the
         * id sort) is one growable buffer of the backend, grown on first use of a larger size. */
        /* dtable (V, C) F32 += dout (N, C) act scattered by ids (N, device int32). */
        graft_status (*embedding_bwd)(void *ctx, float *dtable, const void *dout, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, graft_err *err);
        /* dx (N, C) act (= or += when accumulate); dw (C) F32 += (NULL: frozen). x, dy act; w weight;
         * rstd (N) F32 from the forward. */
        graft_status (*rmsnorm_bwd)(void *ctx, void *dx, float *dw, const void *dy, const void *x, const void *w,
                                    const float *rstd, int64_t N, int64_t C, int accumulate, graft_err *err);
        /* dg, du (N, I) act = d/dg, d/du of h = silu(g) * u given dh; element-wise, so dg may alias
         * dh or g and du may alias u. */
        graft_status (*swiglu_bwd)(void *ctx, void *dg, void *du, const void *dh, const void *g, const void *u,
                                   int64_t N, int64_t I, graft_err *err);
        /* The output projection fused with the token cross-entropy (and optionally the decoupled
         * top-k KL): NULL on the CPU, whose model computes logits and calls the loss plugins. */
        graft_status (*lmhead_loss)(void *ctx, const struct graft_backend_loss_io *io, graft_err *err);

        /* ---- AdamW on this backend's memory (fp32 masters, moments and gradients; the working copy
         * written after each step). NULL on the CPU (core/src/adamw.h serves it directly). */
        graft_status (*adamw_init)(void *ctx, void **plan, const struct graft_backend_adamw_span *spans,
                                   int64_t n_spans, graft_err *err);
        /* One step t >= 1: global grad norm (written to *norm_host when non-NULL: a sync), clip to
         * max_norm (<= 0: none) with clip_grad_norm_ semantics, then AdamW (core/src/adamw.h math). */
        graft_status (*adamw_step)(void *ctx, void *plan, double beta1, double beta2, double eps,
                                   double weight_decay, int64_t t, double lr, double max_norm, double *norm_host,
                                   graft_err *err);
        void (*adamw_free)(void *ctx, void *plan);
    } op;
} graft_backend;

enum { GRAFT_COPY_H2D = 1, GRAFT_COPY_D2H = 2, GRAFT_COPY_D2D = 3 };

/* op.lmhead_loss: every pointer is the backend's memory (cuda/lmhead_loss.cuh has the math). */
typedef struct graft_backend_loss_io {
    const void *hidden;        /* (N, C) act: the final-normed rows                              */
    const void *weight;        /* (V, C) weight dtype: lm_head (or the tied embedding)           */
    const int32_t *labels;     /* (N) targets, ignore_index rows not counted                     */
    int64_t N, C, V;
    int32_t ignore_index;
    float ce_scale;            /* weight of d(CE sum) in dlogits                                 */
    const int32_t *topk_ids;   /* (N, k) or NULL: CE only                                        */
    const float *topk_logp, *topk_mass;
    int64_t k;
    float temperature, kl_scale;
    void *dhidden;             /* (N, C) act, written; or NULL                                   */
    float *dweight;            /* (V, C) F32 +=, or NULL                                         */
    double *sums;              /* (4) doubles, backend memory: CE sum, rows, Bernoulli, top-k    */
} graft_backend_loss_io;

/* op.adamw_init: one parameter seen flat, every pointer the backend's memory. */
typedef struct graft_backend_adamw_span {
    float *data;               /* (n) F32 master                                                 */
    const float *grad;         /* (n) F32                                                        */
    float *m, *v;              /* (n) F32 moments, zero at the start                             */
    void *work;                /* (n) weight_dtype working copy refreshed after the step, or NULL */
    int64_t n;
    int no_decay;
} graft_backend_adamw_span;

/* The CPU backend (always available). */
const graft_backend *graft_backend_cpu(void);

/* Opens the CUDA backend on device `index` (cudaSetDevice, a stream, the cuBLASLt handle) and
 * registers its matmul as the host table's CUDA service. The object lives until the process exits
 * (one per device index; a second call with the same index returns the same one). Fails with
 * GRAFT_STATUS_UNSUPPORTED in a build without CUDA, and GRAFT_STATUS_DEVICE naming the index and
 * the CUDA error when no such device is present. Not thread-safe: open before starting threads. */
graft_status graft_backend_cuda_open(int index, const graft_backend **out, graft_err *err);

/* Parses "cpu", "cuda" or "cuda:N" and opens that backend; the error names `what` (an option or
 * a recipe location) and the text. */
graft_status graft_backend_open(const char *spec, const char *what, const graft_backend **out, graft_err *err);

#endif
