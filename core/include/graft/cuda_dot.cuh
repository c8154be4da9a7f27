/* graft/cuda_dot.cuh: the 8-element bf16 dot step of the core's decode products (cuda/skinny.cu),
 * for a plugin kernel that must sum a product exactly as those do (the RWKV-7 fused decode step's
 * LoRA second stages, plugins/rwkv7/rwkv7_cuda_layer.cu, give the unfused path's bits only while
 * both add in this order). Header-only CUDA C++, as graft/cuda_colsum.cuh: no link, no ABI.
 *
 * acc += w . x over one 16-byte chunk (8 bf16 each), element 0 first, one fmaf per element.
 */
#ifndef GRAFT_CUDA_DOT_CUH
#define GRAFT_CUDA_DOT_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

static __device__ __forceinline__ void graft_fma8(float &acc, const uint4 &w, const uint4 &x) {
    const __nv_bfloat162 *wp = reinterpret_cast<const __nv_bfloat162 *>(&w);
    const __nv_bfloat162 *xp = reinterpret_cast<const __nv_bfloat162 *>(&x);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 a = __bfloat1622float2(wp[i]), b = __bfloat1622float2(xp[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
}

#endif
