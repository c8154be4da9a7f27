/* plugins/gla/gla_cuda_math.cuh: the scalar functions the GLA layer kernels share (the layer's
 * elementwise kernels in gla_cuda_layer.cu and the fused decode step in gla_cuda_decode.cu), so
 * both paths evaluate the gate, SiLU and their derivatives with the same instructions. */
#ifndef GRAFT_PLUGIN_GLA_CUDA_MATH_CUH
#define GRAFT_PLUGIN_GLA_CUDA_MATH_CUH

__device__ __forceinline__ float sigm_d(float z) { return 1.0f / (1.0f + __expf(-z)); }
__device__ __forceinline__ float silu_d(float z) { return z * sigm_d(z); }
__device__ __forceinline__ float dsilu_d(float z) {
    float s = sigm_d(z);
    return s * (1.0f + z * (1.0f - s));
}
/* logsigmoid(z) = min(z,0) − log1p(exp(−|z|)): no overflow for any z (spec §7.1: α unbounded). */
__device__ __forceinline__ float logsigm_d(float z) { return fminf(z, 0.0f) - log1pf(expf(-fabsf(z))); }

#endif
