/* cuda/skinny.cuh: products with at most 8 rows against a bf16 weight (decode steps), at memory
 * bandwidth (skinny.cu explains why cuBLASLt is not used there). Plain C11 header. */
#ifndef GRAFT_CUDA_SKINNY_CUH
#define GRAFT_CUDA_SKINNY_CUH

#include "graft/plugin.h"
#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether graft_cuda_skinny_matmul serves these (already validated) arguments: A and B BF16, C BF16
 * or F32, C = alpha * A . B^T (trans_a = 0, trans_b = 1), batch 1, beta = 0, 1 <= m <= 8, k, lda
 * and ldb multiples of 8, A and B 16-byte aligned, and GRAFT_CUDA_SKINNY is not "0". */
int graft_cuda_skinny_fits(const graft_matmul_args *a, graft_dtype c_dtype);

/* Turns the skinny path on or off for this process (benches compare it with cuBLASLt). */
void graft_cuda_skinny_enable(int on);

/* The product on a->stream (asynchronous). Call only when graft_cuda_skinny_fits says so. */
graft_status graft_cuda_skinny_matmul(const graft_matmul_args *a, graft_dtype c_dtype, graft_err *err);

/* The MLP of a step with N <= 8 rows (backend op mlp_small, backend.h), two launches:
 * act (N, I) = silu(m gate^T) * (m up^T) with the gate and up rows streamed by the same warp, then
 * out (N, C) = hmid + act down^T. All bf16, (N, C) / (N, I) contiguous. UNSUPPORTED (nothing
 * queued) when N, C, I or the alignment do not fit, or GRAFT_CUDA_SKINNY=0. */
graft_status graft_cuda_mlp_small(void *out, void *act, const void *hmid, const void *m, const void *gate,
                                  const void *up, const void *down, int64_t N, int64_t C, int64_t I, void *stream,
                                  graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
