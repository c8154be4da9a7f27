/* cuda/qk_norm_rope.cuh: Qwen3's per-head q/k RMSNorm followed by RoPE, fused, and its backward
 * (spec/qwen3.md §3.2, §3.4, §5; CPU twin: norm_rope / norm_rope_bwd in
 * plugins/softmax/softmax_cpu.c, whose conventions this copies exactly).
 *
 * For token n and head h, with x the head's D-vector (D even, D <= 256) and half = D/2:
 *   r      = 1 / sqrt(mean_d x_d^2 + eps)                           fp32, saved rstd (N, H)
 *   a_d    = w_d * (x_d * r),   b_d = w_{d+half} * (x_{d+half} * r)  d < half
 *   y_d    = a_d cos - b_d sin,   y_{d+half} = b_d cos + a_d sin
 *   inv_freq_j = 1 / powf(theta, fp32(2j) / fp32(D))   angle = fp32(pos) * inv_freq_j (all fp32,
 *   as transformers builds them); cos/sin by cosf/sinf of the fp32 angle.
 * Backward: t = rope^T(dy) (t_d = g_d cos + g_{d+half} sin, t_{d+half} = -g_d sin + g_{d+half} cos),
 *   dw += t * x * r (fp32, deterministic),  dx = r * (t * w) - x * r^3 * mean(t * w * x).
 *
 * Layout: x (N, ld_x) bf16 holding H heads of D at column h*D (ld_x >= H*D, so q or k can be read
 * in place from a fused QKV projection output); y likewise with ld_y. pos (N) int32 device
 * positions, or NULL for pos = n % T (a batch of B sequences of T tokens from position 0).
 * Thread safety: calls touch only the buffers passed.
 */
#ifndef GRAFT_CUDA_QK_NORM_ROPE_CUH
#define GRAFT_CUDA_QK_NORM_ROPE_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = rope(rmsnorm_D(x) * w); rstd (N, H) fp32 written when non-NULL. y MAY alias x (same ld). */
graft_status graft_cuda_qk_norm_rope_fwd(graft_bf16 *y, float *rstd, const graft_bf16 *x, const graft_bf16 *w,
                                         const int32_t *pos, int64_t N, int64_t T, int64_t H, int64_t D,
                                         int64_t ld_x, int64_t ld_y, double theta, float eps, void *stream,
                                         graft_err *err);

/* Scratch bytes graft_cuda_qk_norm_rope_bwd needs (dw partials). */
size_t graft_cuda_qk_norm_rope_bwd_scratch_bytes(int64_t N, int64_t H, int64_t D);

/* dx (N, ld_dx) = d/dx (written =; MAY alias dy with the same ld), dw (D) fp32 += d/dw unless NULL.
 * x is the forward's input (before the norm), rstd the forward's. */
graft_status graft_cuda_qk_norm_rope_bwd(graft_bf16 *dx, float *dw, const graft_bf16 *dy, const graft_bf16 *x,
                                         const graft_bf16 *w, const float *rstd, const int32_t *pos, int64_t N,
                                         int64_t T, int64_t H, int64_t D, int64_t ld_x, int64_t ld_dy,
                                         int64_t ld_dx, double theta, void *scratch, size_t scratch_bytes,
                                         void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
