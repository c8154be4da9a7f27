/* cuda/adamw.cuh: AdamW on fp32 master weights with a bf16 working copy, and the global gradient
 * L2 norm for clipping (CPU twin and exact math: core/src/adamw.h, torch.optim.AdamW and
 * torch.nn.utils.clip_grad_norm_).
 *
 * Per element of a span, at step t with clip coefficient c (1 unless clipping applies):
 *   g = c * grad;  p *= 1 - lr * wd (skipped for NO_DECAY spans)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps);  p_bf16 = bf16(p)
 * with the same fp32 constants the CPU step computes in double once. The clip coefficient is read
 * on the device from the norm graft_cuda_grad_norm wrote (no host round trip):
 *   c = max_norm / (norm + 1e-6) when max_norm > 0 and that is < 1, else 1; grad is not modified.
 * The norm is deterministic: one double partial per fixed chunk, summed in chunk order.
 *
 * Thread safety: one call at a time per plan (the norm partials live in it).
 */
#ifndef GRAFT_CUDA_ADAMW_CUH
#define GRAFT_CUDA_ADAMW_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_CUDA_ADAMW_NO_DECAY 1u

/* One parameter tensor seen flat. Pointers are device pointers. */
typedef struct graft_cuda_adamw_span {
    float *data;           /* (n) fp32 master weights                                  */
    const float *grad;     /* (n) fp32 gradient                                        */
    float *m, *v;          /* (n) fp32 moments, zero at the start                      */
    graft_bf16 *data_bf16; /* (n) bf16 copy written after the step, or NULL            */
    int64_t n;
    uint32_t flags;        /* GRAFT_CUDA_ADAMW_* bits                                  */
    uint32_t pad;
} graft_cuda_adamw_span;

typedef struct graft_cuda_adamw_params {
    double beta1, beta2, eps, weight_decay; /* 0.9, 0.999, 1e-8, 0.01 */
} graft_cuda_adamw_params;

/* The spans of one optimizer, cut into fixed chunks of 32768 elements once, on the device: a
 * step or a norm is then one launch over all chunks whatever the mix of sizes, and the norm's
 * partial sums (one per chunk, in a fixed order) are bitwise reproducible. */
typedef struct graft_cuda_adamw_plan graft_cuda_adamw_plan_t;

/* Copies the span table (a HOST array of n_spans spans holding device pointers; buffers must
 * stay where they are while the plan lives) and allocates the chunk table and the norm partials
 * on the current device (init time, not the hot path). Refuses n < 0 or a NULL buffer with n > 0
 * (naming the span). *out owned by the caller: graft_cuda_adamw_plan_free. */
graft_status graft_cuda_adamw_plan_init(graft_cuda_adamw_plan_t **out, const graft_cuda_adamw_span *spans,
                                        int64_t n_spans, graft_err *err);

/* Frees the plan's device and host memory; accepts NULL. */
void graft_cuda_adamw_plan_free(graft_cuda_adamw_plan_t *plan);

/* norm[0] (device double) = sqrt(sum of grad^2 over every span), accumulated in double. */
graft_status graft_cuda_grad_norm(graft_cuda_adamw_plan_t *plan, double *norm, void *stream, graft_err *err);

/* One step t >= 1 with learning rate lr over the plan's spans. norm: device pointer to the norm
 * from graft_cuda_grad_norm, or NULL (no clipping); max_norm <= 0 disables clipping. Refuses bad
 * betas, eps <= 0, weight_decay < 0, t < 1 (naming the field). */
graft_status graft_cuda_adamw_step(graft_cuda_adamw_plan_t *plan, const graft_cuda_adamw_params *p, int64_t t,
                                   double lr, const double *norm, double max_norm, void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
