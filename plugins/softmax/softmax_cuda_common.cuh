/* softmax_cuda_common.cuh: what the softmax plugin's CUDA kernel files share (internal, device
 * code only): the head_dim they serve, the cp.async / ex2 / bf16-pack helpers, the forward's
 * argument block, its online-softmax step and its epilogue. softmax_cuda.cu holds the mma.sync
 * kernels (every Ampere+ GPU), softmax_cuda_fwd_wgmma.cu the Hopper (sm_90a) forward. */
#ifndef GRAFT_SOFTMAX_CUDA_COMMON_CUH
#define GRAFT_SOFTMAX_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "softmax_cuda.cuh"

typedef __nv_bfloat16 bf16;

#define HD 128                /* head_dim served by the tensor-core kernels                   */
#define ROWB 256              /* bytes of one tile row (HD bf16)                               */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

#define CU_CHECK(call)                                                                                   \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess)                                                                           \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call, \
                                 cudaGetErrorString(e_));                                                \
    } while (0)

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void cp16(uint32_t dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void cp4(uint32_t dst, const void *src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 4 : 0));
}
static __device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
static __device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }
/* 2^x by the special-function unit (ex2.approx: relative error ~2^-22, -inf -> +0); exp2f
 * without fast-math adds range handling that costs more than the exponential itself */
static __device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

struct FwdArgs {
    const bf16 *q, *k, *v; /* (B, T, Hq, D), (B, T, Hkv, D) x2                                */
    bf16 *o;               /* (B, T, Hq, D)                                                   */
    float *lse;            /* (B, T, Hq) or NULL                                               */
    int T, Hq, Hkv, n_rep;
    float sl;              /* scale * log2(e): scores go to base 2 before exp2               */
    const int32_t *past;   /* continuing a KV cache (the Hopper cached forward only): keys     */
                           /* before the T new tokens, per sequence (device); NULL otherwise   */
};

/* Causal mask, then one online-softmax step for 16 rows (rmin..rmin+15) against the NT * 8 keys
 * n0..n0+NT*8-1 (S holds NT C-fragments of 8 keys): S (raw scores) becomes P = 2^(S sl - m sl)
 * with the running max m and row sums l updated; corr[i] = 2^(m_old sl - m_new sl) is the factor
 * the output accumulator of row g + 8 i must be multiplied by (online_softmax applies it at once;
 * the pipelined wgmma forward applies it after the product still accumulating into O). */
template <int NT>
static __device__ __forceinline__ void softmax_step(float (*S)[4], float *corr, float *mrow, float *lrow, int n0,
                                                    int rmin, int T, float sl, int g, int t4) {
    if (n0 + NT * 8 - 1 > rmin || n0 + NT * 8 > T) {
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = n0 + n * 8 + 2 * t4 + (e & 1), row = rmin + g + (e >> 1) * 8;
                if (key > row || key >= T) S[n][e] = -INFINITY;
            }
    }
    float mx[2] = {mrow[0], mrow[1]};
#pragma unroll
    for (int n = 0; n < NT; n++) {
        mx[0] = fmaxf(mx[0], fmaxf(S[n][0], S[n][1]));
        mx[1] = fmaxf(mx[1], fmaxf(S[n][2], S[n][3]));
    }
    float msc[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        corr[i] = mrow[i] == -INFINITY ? 0.f : ex2((mrow[i] - mx[i]) * sl);
        mrow[i] = mx[i];
        msc[i] = mx[i] == -INFINITY ? 0.f : mx[i] * sl;
        lrow[i] *= corr[i];
    }
#pragma unroll
    for (int n = 0; n < NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) S[n][e] = ex2(fmaf(S[n][e], sl, -msc[e >> 1]));
        lrow[0] += S[n][0] + S[n][1];
        lrow[1] += S[n][2] + S[n][3];
    }
}

/* O (16 rows x 128, C fragments): row g + 8 i times corr[i] */
static __device__ __forceinline__ void rescale_rows(float (*O)[4], const float *corr) {
#pragma unroll
    for (int d = 0; d < 16; d++) {
        O[d][0] *= corr[0];
        O[d][1] *= corr[0];
        O[d][2] *= corr[1];
        O[d][3] *= corr[1];
    }
}

template <int NT>
static __device__ __forceinline__ void online_softmax(float (*S)[4], float (*O)[4], float *mrow, float *lrow, int n0,
                                                      int rmin, int T, float sl, int g, int t4) {
    float corr[2];
    softmax_step<NT>(S, corr, mrow, lrow, n0, rmin, T, sl, g, t4);
    rescale_rows(O, corr);
}

/* Final row sums, O / l to bf16, and the natural-log lse of 16 rows */
static __device__ __forceinline__ void fwd_store(const FwdArgs &a, float (*O)[4], const float *mrow, float *lrow,
                                                 int b, int hq, int rmin, int g, int t4) {
    const int T = a.T;
    const int64_t qstr = (int64_t)a.Hq * HD;
    bf16 *og = a.o + ((int64_t)b * T * a.Hq + hq) * HD;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        lrow[i] += __shfl_xor_sync(0xffffffffu, lrow[i], 1);
        lrow[i] += __shfl_xor_sync(0xffffffffu, lrow[i], 2);
        int row = rmin + g + i * 8;
        if (row >= T) continue;
        float inv = 1.f / lrow[i];
#pragma unroll
        for (int d = 0; d < 16; d++)
            *reinterpret_cast<__nv_bfloat162 *>(og + (int64_t)row * qstr + d * 8 + 2 * t4) =
                __floats2bfloat162_rn(O[d][2 * i] * inv, O[d][2 * i + 1] * inv);
        if (a.lse && t4 == 0)
            a.lse[((int64_t)b * T + row) * a.Hq + hq] = (mrow[i] * a.sl + log2f(lrow[i])) * LN2;
    }
}

/* The Hopper forward (softmax_cuda_fwd_wgmma.cu). sm_cuda_fwd_wgmma_available: compiled for
 * sm_90a (SM_HAVE_WGMMA), the current device is compute capability 9.x, the driver hands out
 * cuTensorMapEncodeTiled, and GRAFT_CUDA_ATTN_WGMMA is not "0". sm_cuda_fwd_wgmma_cached: the
 * same kernel with its keys and values read from a KV cache (sm_cuda_attn_fwd_cached; a.k, a.v
 * are the caches, a.past the lengths before the new tokens). */
bool sm_cuda_fwd_wgmma_available(void);
graft_status sm_cuda_fwd_wgmma(const FwdArgs &a, int B, cudaStream_t stream, graft_err *err);
graft_status sm_cuda_fwd_wgmma_cached(const FwdArgs &a, int B, int64_t cap, int64_t head_stride, int64_t slot_stride,
                                      cudaStream_t stream, graft_err *err);

#endif
