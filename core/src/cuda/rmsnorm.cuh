/* cuda/rmsnorm.cuh: RMSNorm forward/backward and the fused residual add + RMSNorm forward of the
 * pre-norm Qwen3 block (spec/qwen3.md §3.1, §5; CPU twin cpu/rmsnorm.c).
 *
 *   r[n] = 1 / sqrt(mean_c x[n,c]^2 + eps)          fp32, saved as rstd (N) for backward
 *   y    = bf16(w * (x * r))                        one rounding, at the end
 *   dx   = r * (dy * w) - x * r^3 * mean(dy * w * x)       bf16, written (=) or added (+=)
 *   dw  += sum_n dy * x * r                          fp32, deterministic (fixed row blocks, then
 *                                                    a fixed-order sum of the block partials)
 * Storage: x, y, dy, dx, w bf16; rstd, dw fp32. C <= 12288 (the partials live in shared memory).
 *
 * Thread safety: calls touch only the buffers passed.
 */
#ifndef GRAFT_CUDA_RMSNORM_CUH
#define GRAFT_CUDA_RMSNORM_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y (N, C) = rmsnorm(x (N, C)) * w (C); rstd (N) fp32 written when non-NULL. y MAY alias x. */
graft_status graft_cuda_rmsnorm_fwd(graft_bf16 *y, float *rstd, const graft_bf16 *x, const graft_bf16 *w, int64_t N,
                                    int64_t C, float eps, void *stream, graft_err *err);

/* The residual step of a pre-norm block: x (N, C) = bf16(x + delta) in place (fp32 sum, one
 * rounding), then y = rmsnorm(x) * w from the rounded x (so backward sees what forward used),
 * rstd (N) written when non-NULL. delta MAY be NULL (plain norm of x). */
graft_status graft_cuda_add_rmsnorm_fwd(graft_bf16 *x, graft_bf16 *y, float *rstd, const graft_bf16 *delta,
                                        const graft_bf16 *w, int64_t N, int64_t C, float eps, void *stream,
                                        graft_err *err);

/* The same out of place: sum (N, C) = bf16(a + b), then y = rmsnorm(sum) * w, rstd when non-NULL
 * (a block's mid-layer residual step, which keeps its input for the backward). sum must not alias
 * b; it may alias a. */
graft_status graft_cuda_add_rmsnorm_out(graft_bf16 *sum, graft_bf16 *y, float *rstd, const graft_bf16 *a,
                                        const graft_bf16 *b, const graft_bf16 *w, int64_t N, int64_t C, float eps,
                                        void *stream, graft_err *err);

/* Scratch bytes graft_cuda_rmsnorm_bwd needs (the dw partials); 0 is fine when dw is NULL. */
size_t graft_cuda_rmsnorm_bwd_scratch_bytes(int64_t N, int64_t C);

/* dx (N, C) = (accumulate ? dx + : ) d/dx; dw (C) fp32 += d/dw unless NULL (frozen weight).
 * rstd from the forward. scratch: device, graft_cuda_rmsnorm_bwd_scratch_bytes(N, C) bytes. */
graft_status graft_cuda_rmsnorm_bwd(graft_bf16 *dx, float *dw, const graft_bf16 *dy, const graft_bf16 *x,
                                    const graft_bf16 *w, const float *rstd, int64_t N, int64_t C, int accumulate,
                                    void *scratch, size_t scratch_bytes, void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
