/* cuda/cuda_util.cuh: helpers every CUDA op file uses (C++ only, included by .cu files): the
 * error macros that turn a failed CUDA / cuBLAS call into GRAFT_STATUS_DEVICE with file:line and
 * the library's own error string (STYLE.md "Backends"), bf16 <-> fp32 conversions, vector loads,
 * and deterministic warp / block reductions (fixed shuffle and shared-memory order, so a result
 * does not depend on timing).
 *
 * Not here: any kernel of an op (cuda/<op>.cu), anything the C core calls (cuda/<op>.cuh).
 */
#ifndef GRAFT_CUDA_UTIL_CUH
#define GRAFT_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

/* In a function that has `graft_err *err` and returns graft_status. */
#define GRAFT_CUDA_TRY(call)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, \
                                 #call, cudaGetErrorString(e_), cudaGetErrorName(e_));             \
    } while (0)

/* After a <<<...>>> launch: a bad configuration or an earlier asynchronous fault. */
#define GRAFT_CUDA_LAUNCHED(what) GRAFT_CUDA_TRY_NAMED(cudaGetLastError(), what)
#define GRAFT_CUDA_TRY_NAMED(call, what)                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "%s:%d: launch of %s: %s (%s)", __FILE__, \
                                 __LINE__, what, cudaGetErrorString(e_), cudaGetErrorName(e_));    \
    } while (0)

typedef __nv_bfloat16 bf16;

static inline cudaStream_t graft_stream(void *s) { return (cudaStream_t)s; }

/* Programmatic dependent launch (graft_pdl_trigger / graft_pdl_wait / graft_launch_pdl, the
 * GRAFT_CUDA_PDL switch): graft/cuda_pdl.cuh, shared with the plugins' fused decode steps. */
#include "graft/cuda_pdl.cuh"

static inline int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static inline unsigned grid_for(int64_t work, int per_block, unsigned cap) {
    int64_t g = (work + per_block - 1) / per_block;
    if (g < 1) g = 1;
    return (unsigned)(g > (int64_t)cap ? cap : g);
}

__device__ __forceinline__ float b2f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 f2b(float v) { return __float2bfloat16(v); }

/* Eight bf16 in one 16-byte word. */
struct alignas(16) bf16x8 {
    bf16 v[8];
};

__device__ __forceinline__ void load8(const bf16 *p, float *out) {
    bf16x8 w = *reinterpret_cast<const bf16x8 *>(p);
#pragma unroll
    for (int i = 0; i < 8; i++) out[i] = b2f(w.v[i]);
}

__device__ __forceinline__ void store8(bf16 *p, const float *in) {
    bf16x8 w;
#pragma unroll
    for (int i = 0; i < 8; i++) w.v[i] = f2b(in[i]);
    *reinterpret_cast<bf16x8 *>(p) = w;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block; every thread gets the result. blockDim.x a multiple of 32, <= 1024; sh holds
 * 32 values. All threads must call it (it synchronizes). */
template <typename T> __device__ inline T block_sum(T v, T *sh) {
    v = warp_sum(v);
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read by a previous call */
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = l < nw ? sh[l] : T(0);
    v = warp_sum(v);
    return v;
}

/* Online log-sum-exp state: the row's max m and s = sum exp(x - m). */
struct lse_pair {
    float m, s;
};

__device__ __forceinline__ void lse_push(lse_pair &a, float x) {
    if (x <= a.m) {
        if (x != -INFINITY) a.s += expf(x - a.m);
    } else {
        a.s = a.s * expf(a.m - x) + 1.0f; /* a.m = -inf on the first element: exp(-inf) = 0 */
        a.m = x;
    }
}

__device__ __forceinline__ lse_pair lse_merge(lse_pair a, lse_pair b) {
    if (b.m == -INFINITY) return a;
    if (a.m == -INFINITY) return b;
    if (a.m >= b.m) return {a.m, a.s + b.s * expf(b.m - a.m)};
    return {b.m, b.s + a.s * expf(a.m - b.m)};
}

/* Block-wide merge of lse pairs (same rules as block_sum); sh holds 32 pairs. */
__device__ inline lse_pair block_lse(lse_pair v, lse_pair *sh) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        lse_pair u = {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = lse_merge(v, u);
    }
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    v = l < nw ? sh[l] : lse_pair{-INFINITY, 0.0f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        lse_pair u = {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = lse_merge(v, u);
    }
    return v;
}

#include "graft/cuda_colsum.cuh" /* colsum_one: the second stage of every "fixed-grid partials" reduction */

#endif
