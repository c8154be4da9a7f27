/* cuda/swiglu_gemm.cuh: the inference MLP's first half in one Hopper kernel (swiglu_gemm.cu):
 *   act (N, I) = silu(g) * u,  g = bf16(x gate^T),  u = bf16(x up^T)
 * x (N, C) and act (N, I) bf16 row-major (row strides C and I), gate and up (I, C) bf16 row-major
 * weights; all device pointers, 16-byte aligned. Equals two bf16 products, then swiglu_fwd, up to
 * the products' fp32 summation order.
 *
 * Returns GRAFT_STATUS_UNSUPPORTED, queueing nothing, where it does not serve: a build without
 * sm_90a code, a device other than compute capability 9, C not a multiple of 64, I not a multiple
 * of 128, a misaligned pointer, or GRAFT_CUDA_SWIGLU_GEMM=0; the caller then takes the unfused
 * path. Thread safety: calls touch only the buffers passed; the first call decides (once per
 * process) whether the device is served.
 */
#ifndef GRAFT_CUDA_SWIGLU_GEMM_CUH
#define GRAFT_CUDA_SWIGLU_GEMM_CUH

#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

graft_status graft_cuda_gate_up_swiglu(graft_bf16 *act, const graft_bf16 *x, const graft_bf16 *gate,
                                       const graft_bf16 *up, int64_t N, int64_t C, int64_t I, void *stream,
                                       graft_err *err);

#ifdef __cplusplus
}
#endif

#endif
