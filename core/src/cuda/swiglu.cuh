/* cuda/swiglu.cuh: the SwiGLU activation of the Qwen3 MLP and its backward (spec/qwen3.md §3.3,
 * §5; CPU twin cpu/swiglu.c):
 *   h = silu(g) * u,  silu(z) = z * sigmoid(z);   dg = dh * u * s * (1 + g (1 - s)),  du = dh * silu(g)
 * all math in fp32, bf16 storage.
 *
 * Layout: row n of g and u starts at n * ld_gu (so both halves of one fused [gate; up] projection
 * of width 2I are served in place: g = gu, u = gu + I, ld_gu = 2I; separate g and u: ld_gu = I).
 * h and dh are (N, I) with row stride ld_h; dg and du follow ld_gu like g and u (the fused layout
 * writes the (N, 2I) gradient of the fused projection directly).
 * Thread safety: calls touch only the buffers passed.
 */
#ifndef GRAFT_CUDA_SWIGLU_CUH
#define GRAFT_CUDA_SWIGLU_CUH

#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

graft_status graft_cuda_swiglu_fwd(graft_bf16 *h, const graft_bf16 *g, const graft_bf16 *u, int64_t N, int64_t I,
                                   int64_t ld_gu, int64_t ld_h, void *stream, graft_err *err);

/* dg, du written (=); they MAY alias g, u (the forward's inputs are dead after backward). */
graft_status graft_cuda_swiglu_bwd(graft_bf16 *dg, graft_bf16 *du, const graft_bf16 *dh, const graft_bf16 *g,
                                   const graft_bf16 *u, int64_t N, int64_t I, int64_t ld_gu, int64_t ld_h,
                                   void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
