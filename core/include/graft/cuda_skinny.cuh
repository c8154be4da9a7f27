/* graft/cuda_skinny.cuh: one warp's share of a decode product (C = A . W^T with m <= 8 rows of A,
 * W bf16 row-major), as the core's skinny kernel (core/src/cuda/skinny.cu) computes it: RPW weight
 * rows against R rows of A, each lane streaming the 16-byte chunks lane, lane + 32, ... of every
 * row with UNROLL chunks per row in flight, fp32 accumulators, then the lanes summed by the
 * butterfly 16, 8, 4, 2, 1. A plugin kernel that does these steps gets the core product's bits
 * (the RWKV-7 decode step's grouped first-stage product, plugins/rwkv7/rwkv7_cuda_layer.cu), and
 * the unroll does not change them: a lane adds its chunks in increasing order either way.
 * Header-only CUDA C++, as graft/cuda_dot.cuh: no link, no ABI.
 */
#ifndef GRAFT_CUDA_SKINNY_UNIT_CUH
#define GRAFT_CUDA_SKINNY_UNIT_CUH

#include "graft/cuda_dot.cuh"

/* 16-byte chunks per lane and weight row in flight before the first use: 8 where registers allow
 * (RPW * R <= 2: a 2048-wide row is then one round trip, 32 lanes x 8 x 16 B), else 4. */
#define GRAFT_SKINNY_UNROLL(R, RPW) ((RPW) * (R) <= 2 ? 8 : 4)

/* Pull the first UNROLL chunks of each of the warp's weight rows into L2: issued before
 * graft_pdl_wait (graft/cuda_pdl.cuh), while the kernel before may still run. A prefetch cannot
 * return stale data, so this is safe even where W is an activation. */
template <int RPW, int UNROLL>
static __device__ __forceinline__ void graft_skinny_prefetch(const uint4 *const (&wr)[RPW], int lane, int64_t kc) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
#pragma unroll
        for (int j = 0; j < RPW; j++)
            if (lane + 32 * u < kc) asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[j] + lane + 32 * u));
}

/* acc[j][r] += this lane's part of row j of W . row r of A, over kc chunks of 16 bytes */
template <int R, int RPW, int UNROLL>
static __device__ __forceinline__ void graft_skinny_dot(float (&acc)[RPW][R], const uint4 *const (&wr)[RPW],
                                                        const uint4 *const (&ar)[R], int lane, int64_t kc) {
    int64_t i = lane;
    for (; i + 32 * (UNROLL - 1) < kc; i += 32 * UNROLL) {
        uint4 wv[UNROLL][RPW];
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
#pragma unroll
            for (int j = 0; j < RPW; j++) wv[u][j] = __ldg(wr[j] + i + 32 * u);
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint4 xv = __ldg(ar[r] + i + 32 * u);
#pragma unroll
                for (int j = 0; j < RPW; j++) graft_fma8(acc[j][r], wv[u][j], xv);
            }
    }
    for (; i < kc; i += 32) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            uint4 xv = __ldg(ar[r] + i);
#pragma unroll
            for (int j = 0; j < RPW; j++) graft_fma8(acc[j][r], __ldg(wr[j] + i), xv);
        }
    }
}

/* The lanes' partial sums added by shuffles; every lane ends with the totals. */
template <int R, int RPW>
static __device__ __forceinline__ void graft_skinny_reduce(float (&acc)[RPW][R]) {
#pragma unroll
    for (int j = 0; j < RPW; j++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float v = acc[j][r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[j][r] = v;
        }
}

#endif
