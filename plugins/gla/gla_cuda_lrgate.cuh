/* plugins/gla/gla_cuda_lrgate.cuh: the GLA gate of a 64-token x 128-channel tile from its low-rank
 * form on the tensor cores, z = lr W1ᵀ + b and gk = logsigmoid(z) · inv_gamma (spec gla.md §2 step
 * 3; rank 16), shared by the chunk kernels (gla_cuda.cu: the gates straight into shared memory)
 * and the layer's gate kernel (gla_cuda_layer.cu: gk, and z for the backward, to global memory).
 * Why the tensor cores: the one-pass gate kernel's 16 multiply-adds an element, with the
 * logsigmoid, made it ALU- and latency-bound (160 us at 1 x 32768 for 268 MB of gk, H100, 2.6x its
 * byte time); one m16n8k16 product makes 128 of those dot products. */
#ifndef GRAFT_PLUGIN_GLA_CUDA_LRGATE_CUH
#define GRAFT_PLUGIN_GLA_CUDA_LRGATE_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include "gla_cuda_math.cuh"

/* c += a b: one m16n8k16 bf16 product with fp32 accumulation (PTX fragment layouts) */
__device__ __forceinline__ void gla_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* The tile's gates by its 256 threads: tokens tok0 .. tok0 + 63 (rows >= nvalid read nothing and
 * give z = 0), channels c0 .. c0 + 127 of lr (tokens' rows of 16 bf16, 16-byte aligned), w1
 * ((channels, 16) bf16, 16-byte aligned) and bias (bf16, 4-byte aligned, or NULL). Warp w takes
 * rows [16(w&3), +16) and columns [64(w>>2), +64), one n8 tile at a time (few live registers: the
 * chunk kernels keep 64 of state beside it). For each thread's pairs it calls
 * sink(row, col, valid, z0, z1, g0, g1): columns col and col + 1 of row, z pre-activation (+ bias),
 * g = logsigmoid(z) · inv_gamma. The sum's order is the mma's (fp32 reassociation only against a
 * sequential sum). */
template <class Sink>
__device__ __forceinline__ void gla_lr_gate_tile(const __nv_bfloat16 *lr, const __nv_bfloat16 *w1,
                                                 const __nv_bfloat16 *bias, float inv_gamma, int64_t tok0,
                                                 int64_t c0, int nvalid, Sink sink) {
    const int l = threadIdx.x & 31, wp = threadIdx.x >> 5, gq = l >> 2, t4 = l & 3;
    const int r0 = 16 * (wp & 3) + gq, r1 = r0 + 8, cb = 64 * (wp >> 2);
    const bool v0 = r0 < nvalid, v1 = r1 < nvalid;
    const uint32_t *l0 = reinterpret_cast<const uint32_t *>(lr + (tok0 + r0) * 16);
    const uint32_t *l1 = reinterpret_cast<const uint32_t *>(lr + (tok0 + r1) * 16);
    uint32_t a[4]; /* A (16 x 16, row-major): rows r0 / r1, k pairs 2t4 and 2t4 + 8 */
    a[0] = v0 ? l0[t4] : 0u;
    a[1] = v1 ? l1[t4] : 0u;
    a[2] = v0 ? l0[t4 + 4] : 0u;
    a[3] = v1 ? l1[t4 + 4] : 0u;
    const uint32_t *w = reinterpret_cast<const uint32_t *>(w1 + c0 * 16);
#pragma unroll 2
    for (int nt = 0; nt < 8; nt++) {
        const int n = cb + 8 * nt, c = n + 2 * t4;
        float acc[4] = {0.f, 0.f, 0.f, 0.f}; /* B (16 x 8, col-major): channel n + gq's k pairs */
        gla_mma16816(acc, a, __ldg(w + (n + gq) * 8 + t4), __ldg(w + (n + gq) * 8 + t4 + 4));
        float b0 = 0.f, b1 = 0.f;
        if (bias) {
            const __nv_bfloat162 bb = *reinterpret_cast<const __nv_bfloat162 *>(bias + c0 + c);
            b0 = __low2float(bb), b1 = __high2float(bb);
        }
        const float z0 = acc[0] + b0, z1 = acc[1] + b1, z2 = acc[2] + b0, z3 = acc[3] + b1;
        sink(r0, c, v0, z0, z1, logsigm_d(z0) * inv_gamma, logsigm_d(z1) * inv_gamma);
        sink(r1, c, v1, z2, z3, logsigm_d(z2) * inv_gamma, logsigm_d(z3) * inv_gamma);
    }
}

#endif
