/* plugins/gla/gla_cuda_math.cuh: the scalar functions the GLA layer kernels share (the layer's
 * elementwise kernels in gla_cuda_layer.cu and the fused decode step in gla_cuda_decode.cu), so
 * both paths evaluate the gate, SiLU and their derivatives with the same instructions. */
#ifndef GRAFT_PLUGIN_GLA_CUDA_MATH_CUH
#define GRAFT_PLUGIN_GLA_CUDA_MATH_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* Σ over the warp's 32 lanes, butterfly order (every lane ends with the sum) */
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* σ(z). The IEEE reciprocal (rcp.rn: the SFU's estimate, two Newton steps and a range check, ~8
 * instructions) is most of SiLU's cost in the conv, whose ~20 instructions an element at 201M
 * elements (1 x 32768, 1.7B shape) are ~0.14 ms of issue at full IPC against its 365 us.
 * GRAFT_GLA_FAST_SIGMOID (a build flag, e.g. NVCCFLAGS=-DGRAFT_GLA_FAST_SIGMOID=1
 * tests/plugins/cuda_standalone.sh) takes the SFU's estimate alone (__fdividef: ~2 ulp, far under
 * the bf16 rounding every caller applies next; 1 + e^{-z} = inf still gives 0). Off until an A/B
 * on a GPU (`sh bench/layer_ab.sh DIR gla OTHER_DIR/libgraft_gla.so`) says what it buys. Every GLA
 * kernel (prefill, decode, backward) takes the same definition, so cached generation still equals
 * recompute. */
#if defined(GRAFT_GLA_FAST_SIGMOID) && GRAFT_GLA_FAST_SIGMOID
__device__ __forceinline__ float sigm_d(float z) { return __fdividef(1.0f, 1.0f + __expf(-z)); }
#else
__device__ __forceinline__ float sigm_d(float z) { return 1.0f / (1.0f + __expf(-z)); }
#endif
__device__ __forceinline__ float silu_d(float z) { return z * sigm_d(z); }
__device__ __forceinline__ float dsilu_d(float z) {
    float s = sigm_d(z);
    return s * (1.0f + z * (1.0f - s));
}
/* log1p(e) for e in [0, 1]: below 1/64 the series to e⁴ (truncation < e⁵/5, 1.3e-8 relative at
 * 1/64), above it log(1 + e) through the SFU's log2 (absolute error ~2e-7, 1.5e-5 relative at
 * worst, at 1/64; gk is a log decay summed over <= 64 tokens a chunk, so ~1e-5 relative in its
 * decay factor, far under bf16's 4e-3). The libm log1pf it replaces is a ~25-FMA polynomial with
 * branches: with expf it made the fused gate kernel ALU-bound (83 us at 1 x 8192 for 67 MB
 * written, traced on an H100 on 2026-12-07; 61 us with this and two rows a step). */
__device__ __forceinline__ float log1p_unit_d(float e) {
    const float series = e * (1.0f - e * (0.5f - e * (0.33333334f - e * 0.25f)));
    return e < 0.015625f ? series : __logf(1.0f + e);
}
/* logsigmoid(z) = min(z,0) − log1p(exp(−|z|)): no overflow for any z (spec §7.1: α unbounded);
 * exp(−|z|) <= 1 through the SFU (underflows to 0 below −87: then logsigmoid = z exactly). */
__device__ __forceinline__ float logsigm_d(float z) { return fminf(z, 0.0f) - log1p_unit_d(__expf(-fabsf(z))); }

/* The gated RMSNorm (spec §2 step 6) of one (token, head) row of 128 channels by a warp, lane l
 * holding channels 4l .. 4l+3 of o (ov), ĝ (gv) and w_n (wv): u = o · rsqrt(mean o² + ε) · w_n ·
 * SiLU(ĝ), rounded to bf16 (the lane's 4, packed). *rstd receives the row's rsqrt. The layer's norm
 * kernel's arithmetic (norm_gate128_kernel), kept here beside the other shared scalar functions. */
__device__ __forceinline__ uint2 gated_rmsnorm128_lane(const float (&ov)[4], const float (&gv)[4],
                                                       const float (&wv)[4], float eps, float *rstd) {
    float ms = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) ms += ov[i] * ov[i];
    ms = warp_sum(ms);
    const float r = rsqrtf(ms / 128.0f + eps);
    *rstd = r;
    uint2 out;
    __nv_bfloat16 *op = reinterpret_cast<__nv_bfloat16 *>(&out);
#pragma unroll
    for (int i = 0; i < 4; i++) op[i] = __float2bfloat16(ov[i] * r * wv[i] * silu_d(gv[i]));
    return out;
}

#endif
