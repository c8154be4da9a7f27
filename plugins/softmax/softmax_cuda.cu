/* softmax_cuda.cu: the softmax plugin's CUDA attention kernels (declared in softmax_cuda.cuh):
 * causal GQA flash attention forward, its backward, and split-K decode over a KV cache.
 *
 * Reference: FlashAttention-2 (Dao, 2023), Algorithm 1 (forward, online softmax) and Algorithm 2
 * (backward: D_i = rowsum(dO_i * O_i), then P recomputed from the saved logsumexp). graft's own
 * code: bf16 tensor cores through mma.sync.m16n8k16 (fp32 accumulation), ldmatrix from shared
 * memory tiles filled by cp.async. On Hopper the forward is softmax_cuda_fwd_wgmma.cu's (wgmma +
 * TMA); this file's forward serves other GPUs and GRAFT_CUDA_ATTN_WGMMA=0. Not here: the
 * projections, norms and RoPE (softmax_cuda_layer.cu), head_dim other than 128.
 *
 * Shared-memory tiles hold rows of 128 bf16 (256 bytes = 16 chunks of 16 bytes). Chunk c of row r
 * is stored at chunk position c ^ (r & 7), so the 8 row addresses of one ldmatrix fall into 8
 * different bank groups (no bank conflicts) and cp.async writes stay 16-byte aligned.
 *
 * mma.sync.m16n8k16 fragments (g = lane / 4, t = lane % 4):
 *   A (16x16, row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16x8, col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
 *   C (16x8, f32):  c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
 * Two neighbouring C tiles (n 0..7, 8..15) packed to bf16 are exactly the A fragment of a k16
 * step, which is how P (and dS) go from one product into the next without shared memory.
 */
#include "softmax_cuda_common.cuh"

/* ---------------------------------------------------------------------------------------------- */
/* PTX helpers                                                                                     */
/* ---------------------------------------------------------------------------------------------- */

/* byte offset of chunk c (16 bytes) of row r in a swizzled tile */
static __device__ __forceinline__ uint32_t toff(int r, int c) { return (uint32_t)((r * 16 + (c ^ (r & 7))) * 16); }

static __device__ __forceinline__ void ldsm4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm4t(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
/* c += a * b, bf16 in, fp32 accumulate */
static __device__ __forceinline__ void mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Copies rows row0..row0+R-1 (rows >= T zero-filled) of a (rows, stride) bf16 matrix into a
 * swizzled tile with NT threads. */
template <int R, int NT>
static __device__ __forceinline__ void load_tile(uint32_t s, const bf16 *g, int64_t stride, int row0, int T,
                                                 int tid) {
#pragma unroll
    for (int i = tid; i < R * 16; i += NT) {
        int r = i >> 4, c = i & 15, row = row0 + r;
        bool ok = row < T;
        cp16(s + toff(r, c), ok ? g + (int64_t)row * stride + c * 8 : g, ok);
    }
}

/* S[8][4] (16 rows x 64 keys) = A (16 x 128, fragments a[8][4]) times B^T, B a 64-row tile */
static __device__ __forceinline__ void mm_abt(float (*S)[4], const uint32_t (*a)[4], uint32_t tile, int lane) {
#pragma unroll
    for (int n = 0; n < 8; n++) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm4(b, tile + toff(np * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1)));
            mma(S[2 * np], a[ks], b[0], b[1]);
            mma(S[2 * np + 1], a[ks], b[2], b[3]);
        }
    }
}

/* S[8][4] += A B^T where A is 16 rows of a tile (row0..row0+15) read from shared memory */
static __device__ __forceinline__ void mm_abt_s(float (*S)[4], uint32_t atile, int row0, uint32_t tile, int lane) {
#pragma unroll
    for (int n = 0; n < 8; n++) S[n][0] = S[n][1] = S[n][2] = S[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < 8; ks++) {
        uint32_t a[4];
        ldsm4(a, atile + toff(row0 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm4(b, tile + toff(np * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1)));
            mma(S[2 * np], a, b[0], b[1]);
            mma(S[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* Acc[16][4] (16 rows x 128) += P (16 x 64, C-fragment floats) times a 64-row tile */
static __device__ __forceinline__ void mm_pv(float (*O)[4], const float (*P)[4], uint32_t tile, int lane) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        uint32_t pa[4] = {pack2(P[2 * kk][0], P[2 * kk][1]), pack2(P[2 * kk][2], P[2 * kk][3]),
                          pack2(P[2 * kk + 1][0], P[2 * kk + 1][1]), pack2(P[2 * kk + 1][2], P[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < 8; dp++) {
            uint32_t b[4];
            ldsm4t(b, tile + toff(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 2 + (lane >> 4)));
            mma(O[2 * dp], pa, b[0], b[1]);
            mma(O[2 * dp + 1], pa, b[2], b[3]);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Forward                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

#define FWD_BM 128
#define FWD_BN 64
#define FWD_THREADS 256
#define FWD2_THREADS 128
#ifndef SM_FWD_WIDE
#define SM_FWD_WIDE 1 /* 1: fwd2_kernel (32 rows per warp, faster: bench/results/attention-2026-11-23.md); 0: fwd_kernel */
#endif
#define FWD_SMEM (FWD_BM * ROWB + 4 * FWD_BN * ROWB) /* Q, K[2], V[2]: 96 KiB */

/* grid (Hq, ceil(T/128), B); 8 warps, 16 query rows each; query blocks in reverse order so the
 * longest (last) blocks start first. Heads are the fastest grid index so the query heads of one
 * kv group run together and share K/V through L2. */
__global__ void __launch_bounds__(FWD_THREADS, 1) fwd_kernel(const FwdArgs a) {
    extern __shared__ __align__(128) uint8_t smem[];
    const int hq = blockIdx.x, mb = gridDim.y - 1 - blockIdx.y, b = blockIdx.z, hk = hq / a.n_rep;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int T = a.T, m0 = mb * FWD_BM;
    const int64_t qstr = (int64_t)a.Hq * HD, kstr = (int64_t)a.Hkv * HD;
    const bf16 *qg = a.q + ((int64_t)b * T * a.Hq + hq) * HD;
    const bf16 *kg = a.k + ((int64_t)b * T * a.Hkv + hk) * HD;
    const bf16 *vg = a.v + ((int64_t)b * T * a.Hkv + hk) * HD;
    const uint32_t sQ = smem_u32(smem), sK = sQ + FWD_BM * ROWB, sV = sK + 2 * FWD_BN * ROWB;
    const int n_kb = min((m0 + FWD_BM + FWD_BN - 1) / FWD_BN, (T + FWD_BN - 1) / FWD_BN);

    load_tile<FWD_BM, FWD_THREADS>(sQ, qg, qstr, m0, T, tid);
    load_tile<FWD_BN, FWD_THREADS>(sK, kg, kstr, 0, T, tid);
    load_tile<FWD_BN, FWD_THREADS>(sV, vg, kstr, 0, T, tid);
    cp_commit();

    const int rmin = m0 + warp * 16, rmax = rmin + 15;
    float O[16][4];
#pragma unroll
    for (int i = 0; i < 16; i++) O[i][0] = O[i][1] = O[i][2] = O[i][3] = 0.f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
    uint32_t qf[8][4];

    for (int j = 0; j < n_kb; j++) {
        cp_wait_all();
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int ks = 0; ks < 8; ks++) ldsm4(qf[ks], sQ + toff(warp * 16 + (lane & 15), ks * 2 + (lane >> 4)));
        }
        if (j + 1 < n_kb) {
            uint32_t nb = ((j + 1) & 1) * FWD_BN * ROWB;
            load_tile<FWD_BN, FWD_THREADS>(sK + nb, kg, kstr, (j + 1) * FWD_BN, T, tid);
            load_tile<FWD_BN, FWD_THREADS>(sV + nb, vg, kstr, (j + 1) * FWD_BN, T, tid);
        }
        cp_commit();
        const int n0 = j * FWD_BN;
        if (n0 > rmax) continue; /* every key of this block is in this warp's future */
        const uint32_t kb = sK + (j & 1) * FWD_BN * ROWB, vb = sV + (j & 1) * FWD_BN * ROWB;
        float S[8][4];
        mm_abt(S, qf, kb, lane);
        online_softmax<8>(S, O, mrow, lrow, n0, rmin, T, a.sl, g, t4);
        mm_pv(O, S, vb, lane);
    }

    fwd_store(a, O, mrow, lrow, b, hq, rmin, g, t4);
}

/* The same forward with 4 warps of 32 query rows (two m16 tiles per warp): each K/V fragment
 * read from shared memory feeds two products, halving the shared-memory traffic per FLOP; Q
 * fragments are re-read per k step instead of held in registers. Grid as fwd_kernel. */
__global__ void __launch_bounds__(FWD2_THREADS, 1) fwd2_kernel(const FwdArgs a) {
    extern __shared__ __align__(128) uint8_t smem[];
    const int hq = blockIdx.x, mb = gridDim.y - 1 - blockIdx.y, b = blockIdx.z, hk = hq / a.n_rep;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int T = a.T, m0 = mb * FWD_BM;
    const int64_t qstr = (int64_t)a.Hq * HD, kstr = (int64_t)a.Hkv * HD;
    const bf16 *qg = a.q + ((int64_t)b * T * a.Hq + hq) * HD;
    const bf16 *kg = a.k + ((int64_t)b * T * a.Hkv + hk) * HD;
    const bf16 *vg = a.v + ((int64_t)b * T * a.Hkv + hk) * HD;
    const uint32_t sQ = smem_u32(smem), sK = sQ + FWD_BM * ROWB, sV = sK + 2 * FWD_BN * ROWB;
    const int n_kb = min((m0 + FWD_BM + FWD_BN - 1) / FWD_BN, (T + FWD_BN - 1) / FWD_BN);

    load_tile<FWD_BM, FWD2_THREADS>(sQ, qg, qstr, m0, T, tid);
    load_tile<FWD_BN, FWD2_THREADS>(sK, kg, kstr, 0, T, tid);
    load_tile<FWD_BN, FWD2_THREADS>(sV, vg, kstr, 0, T, tid);
    cp_commit();

    const int rmin = m0 + warp * 32, rmax = rmin + 31;
    float O[2][16][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < 16; i++) O[mt][i][0] = O[mt][i][1] = O[mt][i][2] = O[mt][i][3] = 0.f;
    float mrow[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}}, lrow[2][2] = {{0.f, 0.f}, {0.f, 0.f}};

    for (int j = 0; j < n_kb; j++) {
        cp_wait_all();
        __syncthreads();
        if (j + 1 < n_kb) {
            uint32_t nb = ((j + 1) & 1) * FWD_BN * ROWB;
            load_tile<FWD_BN, FWD2_THREADS>(sK + nb, kg, kstr, (j + 1) * FWD_BN, T, tid);
            load_tile<FWD_BN, FWD2_THREADS>(sV + nb, vg, kstr, (j + 1) * FWD_BN, T, tid);
        }
        cp_commit();
        const int n0 = j * FWD_BN;
        if (n0 > rmax) continue;
        const uint32_t kb = sK + (j & 1) * FWD_BN * ROWB, vb = sV + (j & 1) * FWD_BN * ROWB;
        float S[2][8][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int n = 0; n < 8; n++) S[mt][n][0] = S[mt][n][1] = S[mt][n][2] = S[mt][n][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            uint32_t qa[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
                ldsm4(qa[mt], sQ + toff(warp * 32 + mt * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t bb[4];
                ldsm4(bb, kb + toff(np * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1)));
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma(S[mt][2 * np], qa[mt], bb[0], bb[1]);
                    mma(S[mt][2 * np + 1], qa[mt], bb[2], bb[3]);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
            online_softmax<8>(S[mt], O[mt], mrow[mt], lrow[mt], n0, rmin + mt * 16, T, a.sl, g, t4);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t pa[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                pa[mt][0] = pack2(S[mt][2 * kk][0], S[mt][2 * kk][1]);
                pa[mt][1] = pack2(S[mt][2 * kk][2], S[mt][2 * kk][3]);
                pa[mt][2] = pack2(S[mt][2 * kk + 1][0], S[mt][2 * kk + 1][1]);
                pa[mt][3] = pack2(S[mt][2 * kk + 1][2], S[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < 8; dp++) {
                uint32_t bb[4];
                ldsm4t(bb, vb + toff(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 2 + (lane >> 4)));
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma(O[mt][2 * dp], pa[mt], bb[0], bb[1]);
                    mma(O[mt][2 * dp + 1], pa[mt], bb[2], bb[3]);
                }
            }
        }
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++) fwd_store(a, O[mt], mrow[mt], lrow[mt], b, hq, rmin + mt * 16, g, t4);
}

/* ---------------------------------------------------------------------------------------------- */
/* Backward                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

struct BwdArgs {
    const bf16 *q, *k, *v, *o, *dout;
    const float *lse;  /* (B, T, Hq), natural log                                               */
    float *delta;      /* (B, T, Hq): rowsum(dO * O)                                            */
    float *dq, *dk, *dv;
    int T, Hq, Hkv, n_rep, B;
    float sl, scale;
};

/* D_i = sum_d dO[i, d] * O[i, d] (fp32), one thread per (b, t, hq) row */
__global__ void delta_kernel(const BwdArgs a) {
    int64_t row = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n = (int64_t)a.B * a.T * a.Hq;
    if (row >= n) return;
    const uint4 *o4 = reinterpret_cast<const uint4 *>(a.o + row * HD);
    const uint4 *d4 = reinterpret_cast<const uint4 *>(a.dout + row * HD);
    float s = 0.f;
#pragma unroll 4
    for (int c = 0; c < HD / 8; c++) {
        uint4 x = o4[c], y = d4[c];
        const __nv_bfloat162 *xp = reinterpret_cast<const __nv_bfloat162 *>(&x);
        const __nv_bfloat162 *yp = reinterpret_cast<const __nv_bfloat162 *>(&y);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 xf = __bfloat1622float2(xp[i]), yf = __bfloat1622float2(yp[i]);
            s = fmaf(xf.x, yf.x, fmaf(xf.y, yf.y, s));
        }
    }
    a.delta[row] = s;
}

#define BWD_B 64          /* rows of every tile in the backward kernels */
#define BWD_THREADS 128
#define BWD_SMEM (6 * BWD_B * ROWB + 4 * BWD_B * 4) /* 96 KiB + lse/delta tiles */

/* dQ: grid (Hq, ceil(T/64), B), 4 warps of 16 query rows; loops over the key blocks at or before
 * the query block. dQ = scale * sum_j dS_j K_j, dS = P * (dP - D), dP = dO V^T. */
__global__ void __launch_bounds__(BWD_THREADS, 1) bwd_dq_kernel(const BwdArgs a) {
    extern __shared__ __align__(128) uint8_t smem[];
    const int hq = blockIdx.x, mb = gridDim.y - 1 - blockIdx.y, b = blockIdx.z, hk = hq / a.n_rep;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int T = a.T, m0 = mb * BWD_B;
    const int64_t qstr = (int64_t)a.Hq * HD, kstr = (int64_t)a.Hkv * HD;
    const int64_t qoff = ((int64_t)b * T * a.Hq + hq) * HD, koff = ((int64_t)b * T * a.Hkv + hk) * HD;
    const uint32_t sQ = smem_u32(smem), sdO = sQ + BWD_B * ROWB, sK = sdO + BWD_B * ROWB,
                   sV = sK + 2 * BWD_B * ROWB;
    const int n_kb = mb + 1;

    load_tile<BWD_B, BWD_THREADS>(sQ, a.q + qoff, qstr, m0, T, tid);
    load_tile<BWD_B, BWD_THREADS>(sdO, a.dout + qoff, qstr, m0, T, tid);
    load_tile<BWD_B, BWD_THREADS>(sK, a.k + koff, kstr, 0, T, tid);
    load_tile<BWD_B, BWD_THREADS>(sV, a.v + koff, kstr, 0, T, tid);
    cp_commit();

    const int rmin = m0 + warp * 16, rmax = rmin + 15;
    float lse2[2], dlt[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int row = rmin + g + 8 * i;
        int64_t idx = ((int64_t)b * T + row) * a.Hq + hq;
        lse2[i] = row < T ? a.lse[idx] * LOG2E : 0.f;
        dlt[i] = row < T ? a.delta[idx] : 0.f;
    }
    float dQ[16][4];
#pragma unroll
    for (int i = 0; i < 16; i++) dQ[i][0] = dQ[i][1] = dQ[i][2] = dQ[i][3] = 0.f;
    uint32_t qf[8][4], df[8][4];

    for (int j = 0; j < n_kb; j++) {
        cp_wait_all();
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int ks = 0; ks < 8; ks++) {
                ldsm4(qf[ks], sQ + toff(warp * 16 + (lane & 15), ks * 2 + (lane >> 4)));
                ldsm4(df[ks], sdO + toff(warp * 16 + (lane & 15), ks * 2 + (lane >> 4)));
            }
        }
        if (j + 1 < n_kb) {
            uint32_t nb = ((j + 1) & 1) * BWD_B * ROWB;
            load_tile<BWD_B, BWD_THREADS>(sK + nb, a.k + koff, kstr, (j + 1) * BWD_B, T, tid);
            load_tile<BWD_B, BWD_THREADS>(sV + nb, a.v + koff, kstr, (j + 1) * BWD_B, T, tid);
        }
        cp_commit();
        const int n0 = j * BWD_B;
        if (n0 > rmax) continue;
        const uint32_t kb = sK + (j & 1) * BWD_B * ROWB, vb = sV + (j & 1) * BWD_B * ROWB;
        float S[8][4], dP[8][4];
        mm_abt(S, qf, kb, lane);
        mm_abt(dP, df, vb, lane);
        const bool edge = n0 + BWD_B - 1 > rmin || n0 + BWD_B > T;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = ex2(fmaf(S[n][e], a.sl, -lse2[e >> 1]));
                if (edge) {
                    int key = n0 + n * 8 + 2 * t4 + (e & 1), row = rmin + g + (e >> 1) * 8;
                    if (key > row || key >= T) p = 0.f;
                }
                S[n][e] = p * (dP[n][e] - dlt[e >> 1]);
            }
        mm_pv(dQ, S, kb, lane);
    }
    float *dqg = a.dq + qoff;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int row = rmin + g + i * 8;
        if (row >= T) continue;
#pragma unroll
        for (int d = 0; d < 16; d++)
            *reinterpret_cast<float2 *>(dqg + (int64_t)row * qstr + d * 8 + 2 * t4) =
                make_float2(dQ[d][2 * i] * a.scale, dQ[d][2 * i + 1] * a.scale);
    }
}

/* dK, dV: grid (Hkv, ceil(T/64), B), 4 warps of 16 keys; loops over the kv group's query heads
 * and the query blocks at or after the key block, so the group sum needs no atomics.
 * S^T = K Q^T, P^T = exp(S^T scale - lse), dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D),
 * dK += scale dS^T Q. */
__global__ void __launch_bounds__(BWD_THREADS, 1) bwd_dkdv_kernel(const BwdArgs a) {
    extern __shared__ __align__(128) uint8_t smem[];
    const int hk = blockIdx.x, nb = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int T = a.T, n0 = nb * BWD_B;
    const int64_t qstr = (int64_t)a.Hq * HD, kstr = (int64_t)a.Hkv * HD;
    const int64_t koff = ((int64_t)b * T * a.Hkv + hk) * HD;
    const uint32_t sK = smem_u32(smem), sV = sK + BWD_B * ROWB, sQ = sV + BWD_B * ROWB,
                   sdO = sQ + 2 * BWD_B * ROWB, sL = sdO + 2 * BWD_B * ROWB, sD = sL + 2 * BWD_B * 4;
    const float *fL = reinterpret_cast<const float *>(smem + (sL - sK));
    const float *fD = reinterpret_cast<const float *>(smem + (sD - sK));
    const int n_qb = (T + BWD_B - 1) / BWD_B - nb, n_it = n_qb * a.n_rep;

    /* issues the loads of iteration `it` (query head r, query block nb + i) into buffer buf */
    auto issue = [&](int it, int buf) {
        int r = it / n_qb, q0 = (nb + it % n_qb) * BWD_B, hq = hk * a.n_rep + r;
        int64_t qoff = ((int64_t)b * T * a.Hq + hq) * HD;
        load_tile<BWD_B, BWD_THREADS>(sQ + buf * BWD_B * ROWB, a.q + qoff, qstr, q0, T, tid);
        load_tile<BWD_B, BWD_THREADS>(sdO + buf * BWD_B * ROWB, a.dout + qoff, qstr, q0, T, tid);
        int row = q0 + (tid & 63);
        bool ok = row < T;
        int64_t idx = ok ? ((int64_t)b * T + row) * a.Hq + hq : 0;
        if (tid < 64) cp4(sL + (buf * BWD_B + tid) * 4, a.lse + idx, ok);
        else cp4(sD + (buf * BWD_B + (tid & 63)) * 4, a.delta + idx, ok);
    };
    load_tile<BWD_B, BWD_THREADS>(sK, a.k + koff, kstr, n0, T, tid);
    load_tile<BWD_B, BWD_THREADS>(sV, a.v + koff, kstr, n0, T, tid);
    issue(0, 0);
    cp_commit();

    const int kmin = n0 + warp * 16;
    float dK[16][4], dV[16][4];
#pragma unroll
    for (int i = 0; i < 16; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dK[i][e] = dV[i][e] = 0.f;

    for (int it = 0; it < n_it; it++) {
        cp_wait_all();
        __syncthreads();
        if (it + 1 < n_it) issue(it + 1, (it + 1) & 1);
        cp_commit();
        const int buf = it & 1, q0 = (nb + it % n_qb) * BWD_B;
        const uint32_t qb = sQ + buf * BWD_B * ROWB, db = sdO + buf * BWD_B * ROWB;
        /* dV is updated before dP^T is formed, so fewer values are live at once */
        float S[8][4], dP[8][4];
        mm_abt_s(S, sK, warp * 16, qb, lane);
        const bool edge = q0 < kmin + 15 || q0 + BWD_B > T;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int qi = n * 8 + 2 * t4 + (e & 1);
                float p = ex2(fmaf(S[n][e], a.sl, -fL[buf * BWD_B + qi] * LOG2E));
                if (edge) {
                    int key = kmin + g + (e >> 1) * 8, qrow = q0 + qi;
                    if (qrow < key || qrow >= T) p = 0.f;
                }
                S[n][e] = p;
            }
        mm_pv(dV, S, db, lane);
        mm_abt_s(dP, sV, warp * 16, db, lane);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dP[n][e] = S[n][e] * (dP[n][e] - fD[buf * BWD_B + n * 8 + 2 * t4 + (e & 1)]);
        mm_pv(dK, dP, qb, lane);
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int key = kmin + g + i * 8;
        if (key >= T) continue;
        int64_t off = koff + (int64_t)key * kstr;
#pragma unroll
        for (int d = 0; d < 16; d++) {
            *reinterpret_cast<float2 *>(a.dk + off + d * 8 + 2 * t4) =
                make_float2(dK[d][2 * i] * a.scale, dK[d][2 * i + 1] * a.scale);
            *reinterpret_cast<float2 *>(a.dv + off + d * 8 + 2 * t4) = make_float2(dV[d][2 * i], dV[d][2 * i + 1]);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Decode                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

#define DEC_MAX_B 256      /* sequences per launch: their lengths travel in the kernel parameters */
#define DEC_MAX_SPLIT 64
#define DEC_THREADS 128    /* 4 warps x 2 half-warps = 8 key streams; a half-warp reads one row */

struct DecArgs {
    const bf16 *q;          /* (B, Hq, D)                                                        */
    const bf16 *kc, *vc;    /* cache bases                                                       */
    bf16 *o;                /* (B, Hq, D)                                                        */
    float *part_o;          /* (B, Hq, nsplit, D) normalized partial outputs                     */
    float *part_lse;        /* (B, Hq, nsplit) their base-2 logsumexp of scaled scores           */
    int64_t slot_stride, head_stride;
    int Hq, n_rep, chunk, nsplit;
    float sl;
    const int32_t *len_dev; /* non-NULL: sequence b's length is len_dev[b] + len_add (device memory,
                               read at run time, so a captured graph serves any length)      */
    int len_add;
    int len[DEC_MAX_B];
};

static __device__ __forceinline__ int dec_len(const DecArgs &a, int b) {
    return a.len_dev ? a.len_dev[b] + a.len_add : a.len[b];
}

static __device__ __forceinline__ void bf8_to_f(uint4 u, float *f) {
    const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __bfloat1622float2(p[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

/* grid (nsplit, Hq / NR, B): one block per (chunk, NR query heads sharing one kv head, sequence).
 * Lane l of a half-warp owns dims 8l..8l+7; each half-warp streams rows base + 8k + stream,
 * k < KS, issuing all KS key and value loads before the first use. */
template <int NR, int KS>
__global__ void __launch_bounds__(DEC_THREADS) dec_kernel(const __grid_constant__ DecArgs a) {
    __shared__ float s_m[8][NR], s_l[8][NR], s_acc[8][NR][HD];
    const int s = blockIdx.x, hq0 = blockIdx.y * NR, b = blockIdx.z, hk = hq0 / a.n_rep;
    const int len = dec_len(a, b), start = s * a.chunk;
    if (start >= len) return;
    const int end = min(len, start + a.chunk);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, sub = lane & 15;
    const int stream = warp * 2 + (lane >> 4);
    const bf16 *kb = a.kc + b * a.slot_stride + hk * a.head_stride + sub * 8;
    const bf16 *vb = a.vc + b * a.slot_stride + hk * a.head_stride + sub * 8;
    float qv[NR][8], acc[NR][8], m[NR], l[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) {
        bf8_to_f(*reinterpret_cast<const uint4 *>(a.q + ((int64_t)b * a.Hq + hq0 + r) * HD + sub * 8), qv[r]);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            qv[r][i] *= a.sl;
            acc[r][i] = 0.f;
        }
        m[r] = -INFINITY;
        l[r] = 0.f;
    }
    for (int base = start; base < end; base += 8 * KS) {
        uint4 kr[KS], vr[KS];
        bool ok[KS];
#pragma unroll
        for (int k = 0; k < KS; k++) {
            int u = base + k * 8 + stream;
            ok[k] = u < end;
            if (ok[k]) {
                kr[k] = __ldg(reinterpret_cast<const uint4 *>(kb + (int64_t)u * HD));
                vr[k] = __ldg(reinterpret_cast<const uint4 *>(vb + (int64_t)u * HD));
            } else {
                kr[k] = make_uint4(0, 0, 0, 0);
                vr[k] = kr[k];
            }
        }
        float sc[KS][NR];
#pragma unroll
        for (int k = 0; k < KS; k++) {
            float kf[8];
            bf8_to_f(kr[k], kf);
#pragma unroll
            for (int r = 0; r < NR; r++) {
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) d = fmaf(qv[r][i], kf[i], d);
                d += __shfl_xor_sync(0xffffffffu, d, 8);
                d += __shfl_xor_sync(0xffffffffu, d, 4);
                d += __shfl_xor_sync(0xffffffffu, d, 2);
                d += __shfl_xor_sync(0xffffffffu, d, 1);
                sc[k][r] = ok[k] ? d : -INFINITY;
            }
        }
#pragma unroll
        for (int r = 0; r < NR; r++) {
            float mx = m[r];
#pragma unroll
            for (int k = 0; k < KS; k++) mx = fmaxf(mx, sc[k][r]);
            if (mx == -INFINITY) continue;
            float corr = ex2(m[r] - mx); /* 0 while m is -inf */
            m[r] = mx;
            l[r] *= corr;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[r][i] *= corr;
        }
#pragma unroll
        for (int k = 0; k < KS; k++) {
            float vf[8];
            bf8_to_f(vr[k], vf);
#pragma unroll
            for (int r = 0; r < NR; r++) {
                float p = ok[k] ? ex2(sc[k][r] - m[r]) : 0.f;
                l[r] += p;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[r][i] = fmaf(p, vf[i], acc[r][i]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < NR; r++) {
#pragma unroll
        for (int i = 0; i < 8; i++) s_acc[stream][r][sub * 8 + i] = acc[r][i];
        if (sub == 0) {
            s_m[stream][r] = m[r];
            s_l[stream][r] = l[r];
        }
    }
    __syncthreads();
    for (int idx = tid; idx < NR * HD; idx += DEC_THREADS) {
        int r = idx / HD, d = idx % HD;
        float M = -INFINITY;
#pragma unroll
        for (int st = 0; st < 8; st++) M = fmaxf(M, s_m[st][r]);
        float L = 0.f, A = 0.f;
#pragma unroll
        for (int st = 0; st < 8; st++) {
            if (s_m[st][r] == -INFINITY) continue;
            float w = ex2(s_m[st][r] - M);
            L += s_l[st][r] * w;
            A += s_acc[st][r][d] * w;
        }
        int64_t row = (int64_t)b * a.Hq + hq0 + r;
        if (a.nsplit == 1) {
            a.o[row * HD + d] = __float2bfloat16(A / L);
        } else {
            a.part_o[(row * a.nsplit + s) * HD + d] = A / L;
            if (d == 0) a.part_lse[row * a.nsplit + s] = M + log2f(L);
        }
    }
}

/* grid (Hq, B), HD threads: merges the chunks of one (sequence, head) by their logsumexp */
__global__ void __launch_bounds__(HD) dec_combine_kernel(const __grid_constant__ DecArgs a) {
#if __CUDA_ARCH__ >= 900
    /* lets the output projection that follows (the core's decode products, launched with
     * programmatic dependent launch) become resident and prefetch its weights while this runs;
     * it waits for this grid's completion before reading o */
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
    const int hq = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
    const int ns = (dec_len(a, b) + a.chunk - 1) / a.chunk;
    const int64_t row = (int64_t)b * a.Hq + hq;
    const float *pl = a.part_lse + row * a.nsplit;
    float M = -INFINITY;
    for (int s = 0; s < ns; s++) M = fmaxf(M, pl[s]);
    float L = 0.f, A = 0.f;
    for (int s = 0; s < ns; s++) {
        float w = ex2(pl[s] - M);
        L += w;
        A = fmaf(w, a.part_o[(row * a.nsplit + s) * HD + d], A);
    }
    a.o[row * HD + d] = __float2bfloat16(A / L);
}

/* ---------------------------------------------------------------------------------------------- */
/* Host entry points                                                                               */
/* ---------------------------------------------------------------------------------------------- */

static graft_status check_common(const char *what, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                                 float scale, graft_err *err) {
    if (D != HD)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax_cuda: %s: head_dim %lld, the CUDA kernels serve head_dim %d", what,
                             (long long)D, HD);
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: %s: B %lld, T %lld, Hq %lld, Hkv %lld: expected positive sizes with Hq "
                             "a multiple of Hkv",
                             what, (long long)B, (long long)T, (long long)Hq, (long long)Hkv);
    if (B > 65535 || T > (1 << 24) || Hq > 65535)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax_cuda: %s: B %lld, T %lld, Hq %lld: expected B <= 65535, T <= 2^24, Hq <= 65535",
                             what, (long long)B, (long long)T, (long long)Hq);
    if (!(scale > 0.f) || !isfinite(scale))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: %s: scale %g, expected a positive number",
                             what, (double)scale);
    return GRAFT_STATUS_OK;
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The forward kernels' argument block (sizes already checked by the caller) */
static FwdArgs fwd_args(void *o, float *lse, const void *q, const void *k, const void *v, const int32_t *past,
                        int64_t T, int64_t Hq, int64_t Hkv, float scale) {
    FwdArgs a;
    a.q = (const bf16 *)q;
    a.k = (const bf16 *)k;
    a.v = (const bf16 *)v;
    a.o = (bf16 *)o;
    a.lse = lse;
    a.T = (int)T;
    a.Hq = (int)Hq;
    a.Hkv = (int)Hkv;
    a.n_rep = (int)(Hq / Hkv);
    a.sl = scale * LOG2E;
    a.past = past;
    return a;
}

extern "C" int sm_cuda_attn_fwd_cached_available(void) { return sm_cuda_fwd_wgmma_available(); }

extern "C" graft_status sm_cuda_attn_fwd_cached(void *o, const void *q, const void *kcache, const void *vcache,
                                                int64_t slot_stride, int64_t head_stride, int64_t cap,
                                                const int32_t *past_dev, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                                                int64_t D, float scale, void *stream, graft_err *err) {
    if (check_common("cached forward", B, T, Hq, Hkv, D, scale, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    if (!o || !q || !kcache || !vcache || !past_dev || !aligned16(o) || !aligned16(q) || !aligned16(kcache) ||
        !aligned16(vcache))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: cached forward: o, q, kcache, vcache, past_dev must be non-NULL and o, q, "
                             "kcache, vcache 16-byte aligned");
    if (cap < T || cap > (1 << 24))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: cached forward: cache capacity %lld, expected T %lld <= capacity <= 2^24",
                             (long long)cap, (long long)T);
    if (head_stride < cap * D || slot_stride < head_stride * Hkv || head_stride % 8 || slot_stride % 8)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: cached forward: head stride %lld, slot stride %lld (elements): expected "
                             "head stride >= capacity * D = %lld, slot stride >= Hkv * head stride, both multiples of 8",
                             (long long)head_stride, (long long)slot_stride, (long long)(cap * D));
    if (!sm_cuda_fwd_wgmma_available())
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax_cuda: cached forward: needs the Hopper (sm_90a) kernel");
    const FwdArgs a = fwd_args(o, NULL, q, kcache, vcache, past_dev, T, Hq, Hkv, scale);
    return sm_cuda_fwd_wgmma_cached(a, (int)B, cap, head_stride, slot_stride, (cudaStream_t)stream, err);
}

extern "C" graft_status sm_cuda_attn_fwd(void *o, float *lse, const void *q, const void *k, const void *v,
                                         int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                         void *stream, graft_err *err) {
    if (check_common("forward", B, T, Hq, Hkv, D, scale, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    if (!o || !q || !k || !v || !aligned16(o) || !aligned16(q) || !aligned16(k) || !aligned16(v) ||
        ((uintptr_t)lse & 3u))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: forward: o, q, k, v must be non-NULL and 16-byte aligned (lse 4-byte)");
    const FwdArgs a = fwd_args(o, lse, q, k, v, NULL, T, Hq, Hkv, scale);
    if (sm_cuda_fwd_wgmma_available()) return sm_cuda_fwd_wgmma(a, (int)B, (cudaStream_t)stream, err);
    dim3 grid((unsigned)Hq, (unsigned)((T + FWD_BM - 1) / FWD_BM), (unsigned)B);
    if (SM_FWD_WIDE) {
        CU_CHECK(cudaFuncSetAttribute(fwd2_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, FWD_SMEM));
        fwd2_kernel<<<grid, FWD2_THREADS, FWD_SMEM, (cudaStream_t)stream>>>(a);
    } else {
        CU_CHECK(cudaFuncSetAttribute(fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, FWD_SMEM));
        fwd_kernel<<<grid, FWD_THREADS, FWD_SMEM, (cudaStream_t)stream>>>(a);
    }
    CU_CHECK(cudaGetLastError());
    return GRAFT_STATUS_OK;
}

extern "C" size_t sm_cuda_attn_bwd_scratch_bytes(int64_t B, int64_t T, int64_t Hq) {
    return (size_t)(B * T * Hq) * sizeof(float);
}

extern "C" graft_status sm_cuda_attn_bwd(float *dq, float *dk, float *dv, const void *q, const void *k,
                                         const void *v, const void *o, const float *lse, const void *dout,
                                         int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                         void *scratch, size_t scratch_bytes, void *stream, graft_err *err) {
    if (check_common("backward", B, T, Hq, Hkv, D, scale, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    const void *ptrs[] = {dq, dk, dv, q, k, v, o, dout};
    for (int i = 0; i < 8; i++)
        if (!ptrs[i] || !aligned16(ptrs[i]))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax_cuda: backward: dq, dk, dv, q, k, v, o, dout must be non-NULL and "
                                 "16-byte aligned (argument %d is not)",
                                 i);
    if (!lse || ((uintptr_t)lse & 3u) || !scratch || ((uintptr_t)scratch & 3u))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: backward: lse and scratch must be non-NULL "
                                                          "and 4-byte aligned");
    size_t need = sm_cuda_attn_bwd_scratch_bytes(B, T, Hq);
    if (scratch_bytes < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: backward: scratch %zu bytes, expected >= %zu",
                             scratch_bytes, need);
    BwdArgs a;
    a.q = (const bf16 *)q;
    a.k = (const bf16 *)k;
    a.v = (const bf16 *)v;
    a.o = (const bf16 *)o;
    a.dout = (const bf16 *)dout;
    a.lse = lse;
    a.delta = (float *)scratch;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.T = (int)T;
    a.Hq = (int)Hq;
    a.Hkv = (int)Hkv;
    a.n_rep = (int)(Hq / Hkv);
    a.B = (int)B;
    a.sl = scale * LOG2E;
    a.scale = scale;
    cudaStream_t st = (cudaStream_t)stream;
    int64_t rows = B * T * Hq;
    delta_kernel<<<(unsigned)((rows + 255) / 256), 256, 0, st>>>(a);
    CU_CHECK(cudaGetLastError());
    CU_CHECK(cudaFuncSetAttribute(bwd_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, BWD_SMEM));
    CU_CHECK(cudaFuncSetAttribute(bwd_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, BWD_SMEM));
    unsigned nblk = (unsigned)((T + BWD_B - 1) / BWD_B);
    bwd_dkdv_kernel<<<dim3((unsigned)Hkv, nblk, (unsigned)B), BWD_THREADS, BWD_SMEM, st>>>(a);
    CU_CHECK(cudaGetLastError());
    bwd_dq_kernel<<<dim3((unsigned)Hq, nblk, (unsigned)B), BWD_THREADS, BWD_SMEM, st>>>(a);
    CU_CHECK(cudaGetLastError());
    return GRAFT_STATUS_OK;
}

/* Splits of at least 64 keys: a block's 8 key streams x 8 rows in flight cover 64 keys in one
 * round trip, so at batch 1 a short context is spread over enough blocks to finish in about one
 * memory latency (with chunks of >= 256 keys, 512 keys ran as 24 blocks of four round trips
 * each: ncu on an H100, 2026-11-24, 9.9 us for 2 MB). */
static int64_t dec_max_split(int64_t max_len) {
    int64_t ns = (max_len + 63) / 64;
    return ns < 1 ? 1 : ns > DEC_MAX_SPLIT ? DEC_MAX_SPLIT : ns;
}

extern "C" size_t sm_cuda_attn_decode_scratch_bytes(int64_t B, int64_t Hq, int64_t D, int64_t max_len) {
    int64_t bb = B < DEC_MAX_B ? B : DEC_MAX_B;
    return (size_t)(bb * Hq * dec_max_split(max_len) * (D + 1)) * sizeof(float);
}

template <int NR>
static cudaError_t dec_launch(const DecArgs &a, int B, int groups, cudaStream_t st) {
    /* 8 rows in flight per lane where registers allow, 4 for 8 heads per block */
    dec_kernel<NR, NR <= 4 ? 8 : 4><<<dim3((unsigned)a.nsplit, (unsigned)groups, (unsigned)B), DEC_THREADS, 0, st>>>(a);
    return cudaGetLastError();
}

/* The decode launches. Lengths from the host (kv_len) or, for graph capture, from the device
 * (len_dev[b] + len_add, bounded by max_len, which then alone fixes the split). */
static graft_status dec_run(void *o, const void *q, const void *kcache, const void *vcache, int64_t slot_stride,
                            int64_t head_stride, const int64_t *kv_len, const int32_t *len_dev, int len_add,
                            int64_t max_len, int64_t B, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                            void *scratch, size_t scratch_bytes, void *stream, graft_err *err) {
    if (check_common("decode", B, 1, Hq, Hkv, D, scale, err)) return err ? err->status : GRAFT_STATUS_BAD_INPUT;
    if (!o || !q || !kcache || !vcache || (!kv_len && !len_dev) || !aligned16(q) || !aligned16(kcache) ||
        !aligned16(vcache) || ((uintptr_t)o & 1u) || slot_stride % 8 || head_stride % 8 || slot_stride < 0 ||
        head_stride < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "softmax_cuda: decode: o, q, kcache, vcache, the lengths must be non-NULL, q and the caches "
                             "16-byte aligned, strides multiples of 8 elements");
    if (len_dev && (max_len < 1 || max_len > (1 << 30)))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: decode: max_len %lld, expected 1..2^30",
                             (long long)max_len);
    for (int64_t b = 0; kv_len && b < B; b++) {
        if (kv_len[b] < 1 || kv_len[b] > (1 << 30))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: decode: kv_len[%lld] = %lld, expected 1..2^30",
                                 (long long)b, (long long)kv_len[b]);
        if (kv_len[b] > max_len) max_len = kv_len[b];
    }
    const int n_rep = (int)(Hq / Hkv);
    const int NR = n_rep == 1 || n_rep == 2 || n_rep == 4 || n_rep == 8 ? n_rep : 1;
    int dev = 0, sms = 132;
    CU_CHECK(cudaGetDevice(&dev));
    CU_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    cudaStream_t st = (cudaStream_t)stream;
    for (int64_t b0 = 0; b0 < B; b0 += DEC_MAX_B) {
        int bn = (int)(B - b0 < DEC_MAX_B ? B - b0 : DEC_MAX_B);
        int64_t ml = kv_len ? 0 : max_len;
        for (int i = 0; kv_len && i < bn; i++) ml = kv_len[b0 + i] > ml ? kv_len[b0 + i] : ml;
        int groups = (int)(Hq / NR);
        /* enough blocks for ~2 waves, chunks of at least 64 keys */
        int64_t ns = (2 * (int64_t)sms + (int64_t)bn * groups - 1) / ((int64_t)bn * groups);
        int64_t cap = dec_max_split(ml);
        ns = ns < 1 ? 1 : ns > cap ? cap : ns;
        int64_t chunk = (ml + ns - 1) / ns;
        chunk = (chunk + 31) / 32 * 32;
        ns = (ml + chunk - 1) / chunk;
        DecArgs a;
        a.q = (const bf16 *)q + b0 * Hq * HD;
        a.kc = (const bf16 *)kcache + b0 * slot_stride;
        a.vc = (const bf16 *)vcache + b0 * slot_stride;
        a.o = (bf16 *)o + b0 * Hq * HD;
        a.slot_stride = slot_stride;
        a.head_stride = head_stride;
        a.Hq = (int)Hq;
        a.n_rep = n_rep;
        a.chunk = (int)chunk;
        a.nsplit = (int)ns;
        a.sl = scale * LOG2E;
        for (int i = 0; i < bn; i++) a.len[i] = kv_len ? (int)kv_len[b0 + i] : 0;
        for (int i = bn; i < DEC_MAX_B; i++) a.len[i] = 0;
        a.len_dev = len_dev ? len_dev + b0 : NULL;
        a.len_add = len_add;
        a.part_o = NULL;
        a.part_lse = NULL;
        if (ns > 1) {
            size_t need = (size_t)(bn * Hq * ns * (HD + 1)) * sizeof(float);
            if (!scratch || scratch_bytes < need || ((uintptr_t)scratch & 3u))
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "softmax_cuda: decode: scratch %zu bytes, expected >= %zu (4-byte aligned)",
                                     scratch_bytes, need);
            a.part_o = (float *)scratch;
            a.part_lse = a.part_o + (int64_t)bn * Hq * ns * HD;
        }
        cudaError_t e;
        switch (NR) {
        case 8: e = dec_launch<8>(a, bn, groups, st); break;
        case 4: e = dec_launch<4>(a, bn, groups, st); break;
        case 2: e = dec_launch<2>(a, bn, groups, st); break;
        default: e = dec_launch<1>(a, bn, groups, st); break;
        }
        CU_CHECK(e);
        if (ns > 1) {
            dec_combine_kernel<<<dim3((unsigned)Hq, (unsigned)bn), HD, 0, st>>>(a);
            CU_CHECK(cudaGetLastError());
        }
    }
    return GRAFT_STATUS_OK;
}

extern "C" graft_status sm_cuda_attn_decode(void *o, const void *q, const void *kcache, const void *vcache,
                                            int64_t slot_stride, int64_t head_stride, const int64_t *kv_len,
                                            int64_t B, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                            void *scratch, size_t scratch_bytes, void *stream, graft_err *err) {
    if (!kv_len)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: decode: kv_len must be non-NULL");
    return dec_run(o, q, kcache, vcache, slot_stride, head_stride, kv_len, NULL, 0, 0, B, Hq, Hkv, D, scale, scratch,
                   scratch_bytes, stream, err);
}

extern "C" graft_status sm_cuda_attn_decode_dev(void *o, const void *q, const void *kcache, const void *vcache,
                                                int64_t slot_stride, int64_t head_stride, const int32_t *past_dev,
                                                int len_add, int64_t max_len, int64_t B, int64_t Hq, int64_t Hkv,
                                                int64_t D, float scale, void *scratch, size_t scratch_bytes,
                                                void *stream, graft_err *err) {
    if (!past_dev)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax_cuda: decode_dev: past_dev must be non-NULL");
    return dec_run(o, q, kcache, vcache, slot_stride, head_stride, NULL, past_dev, len_add, max_len, B, Hq, Hkv, D,
                   scale, scratch, scratch_bytes, stream, err);
}
