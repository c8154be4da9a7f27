/* plugins/gla/gla_cuda.cu: the GLA recurrence core on CUDA, chunked (C = 64) with bf16 tensor-core
 * products (mma.sync m16n8k16, fp32 accumulation), plus a fused one-token decode step.
 *
 * Holds: the chunked forward and backward of spec/gla.md §5 and the decode step of §4, for
 * K = V = 128. Does not hold: the layer around the core (projections, conv, gate, norm).
 *
 * Algorithm (per (sequence, head); b = within-chunk inclusive cumsum of gk in fp32, β = b at the
 * chunk's last row, S_n = state entering chunk n):
 *   o_i     = s (q_i ⊙ e^{b_i})ᵀ S_n + s Σ_{j≤i} (Σ_c q_i k_j e^{b_i−b_j}) v_j
 *   S_{n+1} = e^{β} ⊙ S_n + Σ_j (k_j ⊙ e^{β−b_j}) v_jᵀ
 * The chunk walk is split into segments of `cps` chunks so that enough CTAs run at once: a
 * pre-pass gives each segment's local state (from zero) and its total log decay, a scan over the
 * segments gives each segment's entering state, then one CTA per segment walks its chunks with the
 * state in registers (fp32). The backward walks segments in reverse carrying dS the same way and
 * reads the chunk-entry states S_n, materialized in bf16 by a forward walk (spec §5.4).
 *
 * Stability (spec §5.3, §7.1): every exponent is ≤ 0 except in the intra-chunk score matrix, which
 * on the fast path is factorized as (q ⊙ e^{b})(k ⊙ e^{−b})ᵀ. That is exact and overflow-free
 * while the chunk's total decay −β ≤ SPREAD_MAX (60) in every channel (the factors stay in
 * [e^{−60}, e^{60}], normal in bf16/fp32); realistic gates (FLA init, −β ≈ 3) always take it. A
 * chunk with a larger decay (α ≈ −2 per token or an isolated −100) takes the slow path, a
 * block-uniform branch that evaluates those terms directly as Σ_c x y e^{b_i−b_j} (exponents ≤ 0).
 *
 * Fragment conventions (PTX ISA, mma.m16n8k16 .bf16): lane l, g = l/4, t = l%4. A (16×16):
 * a0 (g, 2t..2t+1), a1 (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8). B (16×8, k × n): b0 (k 2t.., n g),
 * b1 (k 2t+8.., n g). C (16×8): c0 c1 (g, 2t..), c2 c3 (g+8, 2t..). Tiles in shared memory are
 * row-major bf16 with rows padded by 8 elements (16 B), so ldmatrix is bank-conflict free.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "gla_cuda.cuh"
#include "gla_cuda_lrgate.cuh"
#include "gla_cuda_math.cuh"

namespace {

typedef __nv_bfloat16 bf16;

constexpr int CH = 64;           /* chunk length                                              */
constexpr int D = 128;           /* K = V = 128                                               */
constexpr int LDT = D + 8;       /* padded row of a (64, 128) or (128, 128) bf16 tile           */
constexpr int LDP = CH + 8;      /* padded row of a (64, 64) bf16 tile                          */
constexpr int NTH = 256;         /* 8 warps                                                    */
constexpr float SPREAD_MAX = 60.f;

/* ---- PTX wrappers ------------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t su32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(su32(p)));
}
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(su32(p)));
}
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    gla_mma16816(c, a, b0, b1);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
__device__ __forceinline__ void cp16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(su32(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 0;\n" ::);
}
/* The v2 walks keep one group in flight across a chunk's compute: commit after issuing the next
 * chunk's copies, wait for everything at the top of the following iteration. */
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
/* Asks L2 to fetch `bytes` (a multiple of 16, 16-byte aligned) at global address p; no data moves
 * to the SM and nothing waits for it (sm_90 bulk prefetch). */
__device__ __forceinline__ void l2_prefetch(const void *p, uint32_t bytes) {
    asm volatile(
        "{\n .reg .u64 ga;\n cvta.to.global.u64 ga, %0;\n cp.async.bulk.prefetch.L2.global [ga], %1;\n}\n" ::"l"(p),
        "r"(bytes)
        : "memory");
}
__device__ __forceinline__ void ldsm2(uint32_t r[2], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(su32(p)));
}

/* Fragment addresses (lane l) of a 16×16 operand whose top-left is (r0, c0) in a tile with row
 * length ld. A_row: A stored [m][k]. A_trans: A[m][k] stored [k][m] (rows k). B_nmaj: B[k][n]
 * stored [n][k] (two n8 tiles: regs 0,1 tile n0; 2,3 tile n0+8). B_kmaj: B stored [k][n]. */
__device__ __forceinline__ const bf16 *a_row(const bf16 *t, int ld, int m0, int k0, int l) {
    return t + (m0 + (l & 15)) * ld + k0 + ((l >> 4) << 3);
}
__device__ __forceinline__ const bf16 *a_trans(const bf16 *t, int ld, int m0, int k0, int l) {
    return t + (k0 + (l & 7) + ((l >> 4) << 3)) * ld + m0 + (((l >> 3) & 1) << 3);
}
__device__ __forceinline__ const bf16 *b_nmaj(const bf16 *t, int ld, int k0, int n0, int l) {
    return t + (n0 + (l & 7) + ((l >> 4) << 3)) * ld + k0 + (((l >> 3) & 1) << 3);
}
__device__ __forceinline__ const bf16 *b_kmaj(const bf16 *t, int ld, int k0, int n0, int l) {
    return t + (k0 + (l & 7) + (((l >> 3) & 1) << 3)) * ld + n0 + ((l >> 4) << 3);
}

__device__ __forceinline__ float ld_g(const float *p) { return *p; }
__device__ __forceinline__ float ld_g(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st_g(float *p, float x) { *p = x; }
__device__ __forceinline__ void st_g(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }

/* ---- chunk staging ------------------------------------------------------------------------ */

/* (64, 128) bf16 rows t0.. of a (B, T, H, 128) tensor into a padded tile; rows ≥ T are zero. */
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t row0, int64_t rstride,
                                          int nvalid) {
    for (int u = threadIdx.x; u < CH * 16; u += NTH) {
        int r = u >> 4, c8 = (u & 15) << 3;
        bool ok = r < nvalid;
        cp16(dst + r * LDT + c8, ok ? src + (row0 + r) * rstride + c8 : src, ok);
    }
}
/* gk rows into fp32 g[64][128]. */
__device__ __forceinline__ void load_gate(float *g, const float *src, int64_t row0,
                                          int64_t rstride, int nvalid) {
    for (int u = threadIdx.x; u < CH * 32; u += NTH) {
        int r = u >> 5, c4 = (u & 31) << 2;
        bool ok = r < nvalid;
        cp16(g + r * D + c4, ok ? src + (row0 + r) * rstride + c4 : src, ok);
    }
}
__device__ __forceinline__ void load_gate(float *g, const bf16 *src, int64_t row0, int64_t rstride,
                                          int nvalid) {
    for (int u = threadIdx.x; u < CH * 16; u += NTH) {
        int r = u >> 4, c8 = (u & 15) << 3;
        float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
        if (r < nvalid) {
            uint4 x = *reinterpret_cast<const uint4 *>(src + (row0 + r) * rstride + c8);
            const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&x);
            float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
            float2 c = __bfloat1622float2(h[2]), d = __bfloat1622float2(h[3]);
            lo = make_float4(a.x, a.y, b.x, b.y);
            hi = make_float4(c.x, c.y, d.x, d.y);
        }
        *reinterpret_cast<float4 *>(g + r * D + c8) = lo;
        *reinterpret_cast<float4 *>(g + r * D + c8 + 4) = hi;
    }
}

/* In place: g[i][c] ← b_i[c] = Σ_{s≤i} gk_s[c] (fp32); beta[c] = b_63[c] (rows past the end are
 * 0, so this is b at the last valid row). Returns whether some channel's −β > SPREAD_MAX (the
 * same value in every thread). Contains the barriers it needs; g is visible afterwards. */
__device__ __forceinline__ bool chunk_cumsum(float *g, float *tot, float *beta) {
    int c = threadIdx.x & 127, hf = threadIdx.x >> 7;
    float *col = g + hf * 32 * D + c;
    float acc = 0.f;
#pragma unroll 8
    for (int i = 0; i < 32; i++) {
        acc += col[i * D];
        col[i * D] = acc;
    }
    tot[hf * D + c] = acc;
    __syncthreads();
    float bt = tot[c] + tot[D + c];
    if (hf) {
        float off = tot[c];
#pragma unroll 8
        for (int i = 0; i < 32; i++) col[i * D] += off;
    } else {
        beta[c] = bt;
    }
    return __syncthreads_or(-bt > SPREAD_MAX) != 0;
}

/* Scaled operand tiles, each element by the thread that owns its channel (in place is safe):
 *   qs ← qmul · q ⊙ e^{b}          (if qs)
 *   kt ← k ⊙ e^{−b}                (if kt; fast path only: it overflows on the slow path)
 *   ks ← k ⊙ e^{β−b}               (if ks; read from ks, so k must be loaded there)      */
__device__ __forceinline__ void scale_tiles(bf16 *qs, float qmul, bf16 *ks, bf16 *kt,
                                            const float *g, const float *beta) {
    int c = threadIdx.x & 127, hf = threadIdx.x >> 7;
    float bt = beta[c];
#pragma unroll 4
    for (int i = hf * 32; i < hf * 32 + 32; i++) {
        float b = g[i * D + c];
        if (qs) {
            float x = __bfloat162float(qs[i * LDT + c]);
            qs[i * LDT + c] = __float2bfloat16_rn(qmul * x * __expf(b));
        }
        if (ks) {
            float x = __bfloat162float(ks[i * LDT + c]);
            if (kt) kt[i * LDT + c] = __float2bfloat16_rn(x * __expf(-b));
            ks[i * LDT + c] = __float2bfloat16_rn(x * __expf(bt - b));
        }
    }
}

/* Slow path: Σ_c x_i[c] y_j[c] e^{b_i[c] − b_j[c]} for i ≥ j, x and y rows in global memory. */
__device__ float dot_decay(const bf16 *x, const bf16 *y, const float *gi, const float *gj) {
    float acc = 0.f;
    for (int c = 0; c < D; c++)
        acc += __bfloat162float(x[c]) * __bfloat162float(y[c]) * __expf(gi[c] - gj[c]);
    return acc;
}

/* ---- kernels ------------------------------------------------------------------------------ */

struct Geo {
    int64_t T, H;     /* sequence length, heads                                              */
    int NT, cps, nseg; /* chunks, chunks per segment, segments                               */
};

/* State walk over one segment of one (sequence, head); grid (nseg, B·H), 256 threads.
 * Forward (REV = false): X ← e^{β} X + (k ⊙ e^{β−b})ᵀ v, chunks in order, from init (or 0);
 *   writes, if states, the bf16 state entering every chunk n to states[bh][n] and the final one to
 *   states[bh][NT] (shape (B·H, NT+1, K, V)).
 * Reverse (REV = true): X ← e^{β} X + (umul · q ⊙ e^{b})ᵀ do, chunks in reverse (the gradient of the
 *   state entering each chunk, spec §5.4).
 * If loc: the segment's final X (fp32, (B·H, nseg, K, V)) and Σβ (gsum, (B·H, nseg, K)). */
template <typename GT, bool REV>
__global__ void __launch_bounds__(NTH, 2)
    k_state_walk(Geo G, const bf16 *__restrict__ u, const bf16 *__restrict__ w,
                 const GT *__restrict__ gk, float umul, const float *__restrict__ init,
                 int64_t init_sbh, int64_t init_sseg, bf16 *__restrict__ states, float *__restrict__ loc,
                 float *__restrict__ gsum) {
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *us = reinterpret_cast<bf16 *>(smem);
    bf16 *ws = us + CH * LDT;
    float *g = reinterpret_cast<float *>(ws + CH * LDT);
    float *tot = g + CH * D, *beta = tot + 2 * D;
    bf16 *stage = reinterpret_cast<bf16 *>(beta + D);

    const int seg = blockIdx.x, l = threadIdx.x & 31, wp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.y, bi = bh / G.H, h = bh % G.H;
    const int gq = l >> 2, t4 = l & 3, r0 = 16 * wp + gq;
    const int64_t rs = G.H * D; /* row stride of (B, T, H, 128) */
    const int n_lo = seg * G.cps, n_hi = min(G.NT, n_lo + G.cps);

    float X[16][4];
    {
        const float *p = init ? init + bh * init_sbh + seg * init_sseg : nullptr;
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            float2 a = p ? *reinterpret_cast<const float2 *>(p + r0 * D + e) : make_float2(0, 0);
            float2 b = p ? *reinterpret_cast<const float2 *>(p + (r0 + 8) * D + e)
                         : make_float2(0, 0);
            X[nt][0] = a.x, X[nt][1] = a.y, X[nt][2] = b.x, X[nt][3] = b.y;
        }
    }
    float gs = 0.f;

    for (int it = 0; it < n_hi - n_lo; it++) {
        const int n = REV ? n_hi - 1 - it : n_lo + it;
        const int64_t t0 = (int64_t)n * CH;
        const int nvalid = (int)(G.T - t0 < CH ? G.T - t0 : CH);
        const int64_t row0 = bi * G.T * G.H + t0 * G.H + h; /* row index in (B·T·H) units */
        __syncthreads();
        if (!REV && states) {
#pragma unroll
            for (int nt = 0; nt < 16; nt++) {
                int e = 8 * nt + 2 * t4;
                *reinterpret_cast<uint32_t *>(stage + r0 * LDT + e) = pack2(X[nt][0], X[nt][1]);
                *reinterpret_cast<uint32_t *>(stage + (r0 + 8) * LDT + e) =
                    pack2(X[nt][2], X[nt][3]);
            }
        }
        load_tile(us, u + row0 * D, 0, rs, nvalid);
        load_tile(ws, w + row0 * D, 0, rs, nvalid);
        load_gate(g, gk + row0 * D, 0, rs, nvalid);
        cp_wait();
        __syncthreads();
        if (!REV && states) {
            bf16 *dst = states + (bh * (G.NT + 1) + n) * D * D;
            for (int x = threadIdx.x; x < D * 16; x += NTH) {
                int r = x >> 4, c8 = (x & 15) << 3;
                *reinterpret_cast<uint4 *>(dst + r * D + c8) =
                    *reinterpret_cast<const uint4 *>(stage + r * LDT + c8);
            }
        }
        chunk_cumsum(g, tot, beta);
        if (REV)
            scale_tiles(us, umul, nullptr, nullptr, g, beta);
        else
            scale_tiles(nullptr, 0.f, us, nullptr, g, beta);
        if (threadIdx.x < D) gs += beta[threadIdx.x];
        __syncthreads();
        const float e0 = __expf(beta[r0]), e1 = __expf(beta[r0 + 8]);
#pragma unroll
        for (int nt = 0; nt < 16; nt++) X[nt][0] *= e0, X[nt][1] *= e0, X[nt][2] *= e1, X[nt][3] *= e1;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            ldsm4t(a, a_trans(us, LDT, 16 * wp, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 8; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kmaj(ws, LDT, 16 * kk, 16 * np, l));
                mma(X[2 * np], a, b[0], b[1]);
                mma(X[2 * np + 1], a, b[2], b[3]);
            }
        }
    }
    if (!REV && states && n_hi == G.NT) {
        bf16 *dst = states + (bh * (G.NT + 1) + G.NT) * D * D;
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            *reinterpret_cast<uint32_t *>(dst + r0 * D + e) = pack2(X[nt][0], X[nt][1]);
            *reinterpret_cast<uint32_t *>(dst + (r0 + 8) * D + e) = pack2(X[nt][2], X[nt][3]);
        }
    }
    if (loc) {
        float *p = loc + (bh * G.nseg + seg) * D * D;
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            *reinterpret_cast<float2 *>(p + r0 * D + e) = make_float2(X[nt][0], X[nt][1]);
            *reinterpret_cast<float2 *>(p + (r0 + 8) * D + e) = make_float2(X[nt][2], X[nt][3]);
        }
        if (threadIdx.x < D) gsum[(bh * G.nseg + seg) * D + threadIdx.x] = gs;
    }
}

/* Scan over segments, elementwise; grid (K·V/1024, B·H), 256 threads, one float4 each.
 * In place, L[s] (the local state of segment s) becomes the state entering segment s (forward)
 * or the gradient of the state leaving segment s (reverse); x0 (h0 or dht) may be NULL. */
template <bool REV>
__global__ void __launch_bounds__(NTH) k_scan(float *L, const float *gsum, int nseg,
                                              const float *x0) {
    const int64_t bh = blockIdx.y;
    const int idx = (blockIdx.x * NTH + threadIdx.x) * 4, c = idx / D;
    float4 x = x0 ? *reinterpret_cast<const float4 *>(x0 + bh * D * D + idx)
                  : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int it = 0; it < nseg; it++) {
        int s = REV ? nseg - 1 - it : it;
        float4 *p = reinterpret_cast<float4 *>(L + (bh * nseg + s) * D * D + idx);
        float4 y = *p;
        float d = __expf(gsum[(bh * nseg + s) * D + c]);
        *p = x;
        x.x = d * x.x + y.x, x.y = d * x.y + y.y, x.z = d * x.z + y.z, x.w = d * x.w + y.w;
    }
}

/* Σ_e S[c][e] dS[c][e] for the warp's rows r0, r0+8 (S bf16 with row length ld, generic
 * pointer: shared or global), written to rsum[c]. */
__device__ __forceinline__ void rowsum_sds(const bf16 *S, int ld, const float dS[16][4], int r0,
                                           int t4, float *rsum) {
    float a0 = 0.f, a1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < 16; nt++) {
        int e = 8 * nt + 2 * t4;
        float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(S + r0 * ld + e));
        float2 y =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(S + (r0 + 8) * ld + e));
        a0 += x.x * dS[nt][0] + x.y * dS[nt][1];
        a1 += y.x * dS[nt][2] + y.y * dS[nt][3];
    }
    a0 += __shfl_xor_sync(0xffffffffu, a0, 1);
    a0 += __shfl_xor_sync(0xffffffffu, a0, 2);
    a1 += __shfl_xor_sync(0xffffffffu, a1, 1);
    a1 += __shfl_xor_sync(0xffffffffu, a1, 2);
    if (t4 == 0) rsum[r0] = a0, rsum[r0 + 8] = a1;
}

/* Backward over one segment, chunks in reverse; grid (nseg, B·H), 256 threads, one CTA per SM.
 * Carries D = dS (gradient of the state leaving the current chunk), fp32, warp w rows [16w, +16).
 * Reads the chunk-entry states S_n (bf16, (B·H, NT+1, K, V)). do is pre-scaled by s in shared
 * memory, so dP = (s do) vᵀ carries the scale (spec §5.4, with s folded into do). */
template <typename GT>
__global__ void __launch_bounds__(NTH, 1)
    k_bwd(Geo G, const bf16 *__restrict__ q, const bf16 *__restrict__ k,
          const bf16 *__restrict__ v, const GT *__restrict__ gk, const bf16 *__restrict__ dout,
          float scale, const bf16 *__restrict__ states, const float *__restrict__ init,
          int64_t init_sbh, int64_t init_sseg, bf16 *__restrict__ dq, bf16 *__restrict__ dk,
          bf16 *__restrict__ dv, GT *__restrict__ dgk, float *__restrict__ dh0) {
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *qs = reinterpret_cast<bf16 *>(smem);
    bf16 *ks = qs + CH * LDT, *kt = ks + CH * LDT, *vs = kt + CH * LDT, *dos = vs + CH * LDT;
    bf16 *Sn = dos + CH * LDT, *dSb = Sn + D * LDT, *dPs = dSb + D * LDT, *As = dPs + CH * LDP;
    float *g = reinterpret_cast<float *>(As + CH * LDP);
    float *tot = g + CH * D, *beta = tot + 2 * D, *rsum = beta + D;

    const int seg = blockIdx.x, l = threadIdx.x & 31, wp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.y, bi = bh / G.H, h = bh % G.H;
    const int gq = l >> 2, t4 = l & 3, r0 = 16 * wp + gq;
    const int rb = wp & 3, chh = wp >> 2;
    const int64_t rs = G.H * D;
    const int n_lo = seg * G.cps, n_hi = min(G.NT, n_lo + G.cps);
    const bf16 *st = states + bh * (int64_t)(G.NT + 1) * D * D;

    float Dg[16][4];
    {
        const float *p = init ? init + bh * init_sbh + seg * init_sseg : nullptr;
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            float2 a = p ? *reinterpret_cast<const float2 *>(p + r0 * D + e) : make_float2(0, 0);
            float2 b = p ? *reinterpret_cast<const float2 *>(p + (r0 + 8) * D + e)
                         : make_float2(0, 0);
            Dg[nt][0] = a.x, Dg[nt][1] = a.y, Dg[nt][2] = b.x, Dg[nt][3] = b.y;
        }
    }
    rowsum_sds(st + (int64_t)n_hi * D * D, D, Dg, r0, t4, rsum);

    for (int n = n_hi - 1; n >= n_lo; n--) {
        const int64_t t0 = (int64_t)n * CH;
        const int nvalid = (int)(G.T - t0 < CH ? G.T - t0 : CH);
        const int64_t row0 = bi * G.T * G.H + t0 * G.H + h;
        __syncthreads();
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            *reinterpret_cast<uint32_t *>(dSb + r0 * LDT + e) = pack2(Dg[nt][0], Dg[nt][1]);
            *reinterpret_cast<uint32_t *>(dSb + (r0 + 8) * LDT + e) = pack2(Dg[nt][2], Dg[nt][3]);
        }
        load_tile(qs, q + row0 * D, 0, rs, nvalid);
        load_tile(ks, k + row0 * D, 0, rs, nvalid);
        load_tile(vs, v + row0 * D, 0, rs, nvalid);
        load_tile(dos, dout + row0 * D, 0, rs, nvalid);
        for (int x = threadIdx.x; x < D * 16; x += NTH) {
            int r = x >> 4, c8 = (x & 15) << 3;
            cp16(Sn + r * LDT + c8, st + (int64_t)n * D * D + r * D + c8, true);
        }
        load_gate(g, gk + row0 * D, 0, rs, nvalid);
        cp_wait();
        __syncthreads();
        const bool slow = chunk_cumsum(g, tot, beta);
        scale_tiles(qs, 1.f, ks, slow ? nullptr : kt, g, beta);
        for (int x = threadIdx.x; x < CH * 16; x += NTH) {
            int r = x >> 4, c8 = (x & 15) << 3;
            uint4 *p = reinterpret_cast<uint4 *>(dos + r * LDT + c8);
            uint4 y = *p;
            __nv_bfloat162 *hh = reinterpret_cast<__nv_bfloat162 *>(&y);
#pragma unroll
            for (int z = 0; z < 4; z++) {
                float2 f = __bfloat1622float2(hh[z]);
                hh[z] = __floats2bfloat162_rn(scale * f.x, scale * f.y);
            }
            *p = y;
        }
        __syncthreads();

        /* dP = (s do) vᵀ and A = q̃ k̃ᵀ (unscaled), masked j ≤ i: warp → rows 16rb, cols 32chh. */
        {
            float P[4][4], A[4][4];
#pragma unroll
            for (int x = 0; x < 4; x++)
#pragma unroll
                for (int y = 0; y < 4; y++) P[x][y] = A[x][y] = 0.f;
            const bool live = 32 * chh <= 16 * rb + 15;
            if (live) {
#pragma unroll
                for (int kk = 0; kk < 8; kk++) {
                    uint32_t a[4], b[4];
                    ldsm4(a, a_row(dos, LDT, 16 * rb, 16 * kk, l));
#pragma unroll
                    for (int np = 0; np < 2; np++) {
                        ldsm4(b, b_nmaj(vs, LDT, 16 * kk, 32 * chh + 16 * np, l));
                        mma(P[2 * np], a, b[0], b[1]);
                        mma(P[2 * np + 1], a, b[2], b[3]);
                    }
                    if (!slow) {
                        ldsm4(a, a_row(qs, LDT, 16 * rb, 16 * kk, l));
#pragma unroll
                        for (int np = 0; np < 2; np++) {
                            ldsm4(b, b_nmaj(kt, LDT, 16 * kk, 32 * chh + 16 * np, l));
                            mma(A[2 * np], a, b[0], b[1]);
                            mma(A[2 * np + 1], a, b[2], b[3]);
                        }
                    }
                }
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
#pragma unroll
                for (int x = 0; x < 4; x++) {
                    int i = 16 * rb + gq + 8 * (x >> 1), j = 32 * chh + 8 * nt + 2 * t4 + (x & 1);
                    if (live && slow && j <= i && i < nvalid)
                        A[nt][x] = dot_decay(q + (row0 + i * G.H) * D, k + (row0 + j * G.H) * D,
                                             g + i * D, g + j * D);
                    if (j > i) P[nt][x] = A[nt][x] = 0.f;
                }
                int i0 = 16 * rb + gq, j = 32 * chh + 8 * nt + 2 * t4;
                *reinterpret_cast<uint32_t *>(dPs + i0 * LDP + j) = pack2(P[nt][0], P[nt][1]);
                *reinterpret_cast<uint32_t *>(dPs + (i0 + 8) * LDP + j) = pack2(P[nt][2], P[nt][3]);
                *reinterpret_cast<uint32_t *>(As + i0 * LDP + j) = pack2(A[nt][0], A[nt][1]);
                *reinterpret_cast<uint32_t *>(As + (i0 + 8) * LDP + j) = pack2(A[nt][2], A[nt][3]);
            }
        }
        __syncthreads();

        /* dq, dk, dv: warp → rows [16rb, +16), columns [64chh, +64) (8 n8 tiles). dif collects
         * q ⊙ dq − k ⊙ dk for dgk. */
        float dif[8][4], acc[8][4];
        const int cbase = 64 * chh;
        /* dq = e^{b} ⊙ ((s do) S_nᵀ + dP k̃) */
#pragma unroll
        for (int x = 0; x < 8; x++) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; kk++) {
            uint32_t a[4];
            ldsm4(a, a_row(dos, LDT, 16 * rb, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4(b, b_nmaj(Sn, LDT, 16 * kk, cbase + 16 * np, l));
                mma(acc[2 * np], a, b[0], b[1]);
                mma(acc[2 * np + 1], a, b[2], b[3]);
            }
        }
        if (!slow) {
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk <= rb) {
                    uint32_t a[4];
                    ldsm4(a, a_row(dPs, LDP, 16 * rb, 16 * kk, l));
#pragma unroll
                    for (int np = 0; np < 4; np++) {
                        uint32_t b[4];
                        ldsm4t(b, b_kmaj(kt, LDT, 16 * kk, cbase + 16 * np, l));
                        mma(acc[2 * np], a, b[0], b[1]);
                        mma(acc[2 * np + 1], a, b[2], b[3]);
                    }
                }
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            float out[4];
#pragma unroll
            for (int x = 0; x < 4; x++) {
                int i = 16 * rb + gq + 8 * (x >> 1), c = cbase + 8 * nt + 2 * t4 + (x & 1);
                float b = g[i * D + c];
                float qt = __bfloat162float(qs[i * LDT + c]);
                float d = __expf(b) * acc[nt][x];
                dif[nt][x] = qt * acc[nt][x];
                if (slow && i < nvalid) {
                    float s = 0.f;
                    for (int j = 0; j <= i; j++)
                        s += __bfloat162float(dPs[i * LDP + j]) *
                             __bfloat162float(k[(row0 + j * G.H) * D + c]) *
                             __expf(b - g[j * D + c]);
                    d += s;
                    dif[nt][x] += __bfloat162float(q[(row0 + i * G.H) * D + c]) * s;
                }
                out[x] = d;
            }
            int i0 = 16 * rb + gq, c = cbase + 8 * nt + 2 * t4;
            if (i0 < nvalid)
                *reinterpret_cast<uint32_t *>(dq + (row0 + i0 * G.H) * D + c) = pack2(out[0], out[1]);
            if (i0 + 8 < nvalid)
                *reinterpret_cast<uint32_t *>(dq + (row0 + (i0 + 8) * G.H) * D + c) =
                    pack2(out[2], out[3]);
        }

        /* dk = e^{−b} ⊙ (dPᵀ q̃ + e^{β} ⊙ v dSᵀ) (fast), e^{β−b} ⊙ v dSᵀ + direct (slow) */
#pragma unroll
        for (int x = 0; x < 8; x++) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; kk++) {
            uint32_t a[4];
            ldsm4(a, a_row(vs, LDT, 16 * rb, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4(b, b_nmaj(dSb, LDT, 16 * kk, cbase + 16 * np, l));
                mma(acc[2 * np], a, b[0], b[1]);
                mma(acc[2 * np + 1], a, b[2], b[3]);
            }
        }
        if (!slow) {
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                int c = cbase + 8 * nt + 2 * t4;
                float e0 = __expf(beta[c]), e1 = __expf(beta[c + 1]);
                acc[nt][0] *= e0, acc[nt][1] *= e1, acc[nt][2] *= e0, acc[nt][3] *= e1;
            }
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                if (kk >= rb) {
                    uint32_t a[4];
                    ldsm4t(a, a_trans(dPs, LDP, 16 * rb, 16 * kk, l));
#pragma unroll
                    for (int np = 0; np < 4; np++) {
                        uint32_t b[4];
                        ldsm4t(b, b_kmaj(qs, LDT, 16 * kk, cbase + 16 * np, l));
                        mma(acc[2 * np], a, b[0], b[1]);
                        mma(acc[2 * np + 1], a, b[2], b[3]);
                    }
                }
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            float out[4];
#pragma unroll
            for (int x = 0; x < 4; x++) {
                int j = 16 * rb + gq + 8 * (x >> 1), c = cbase + 8 * nt + 2 * t4 + (x & 1);
                float b = g[j * D + c], d;
                if (!slow) {
                    d = __expf(-b) * acc[nt][x];
                    dif[nt][x] -= __bfloat162float(kt[j * LDT + c]) * acc[nt][x];
                } else {
                    d = __expf(beta[c] - b) * acc[nt][x];
                    dif[nt][x] -= __bfloat162float(ks[j * LDT + c]) * acc[nt][x];
                    if (j < nvalid) {
                        float s = 0.f;
                        for (int i = j; i < nvalid; i++)
                            s += __bfloat162float(dPs[i * LDP + j]) *
                                 __bfloat162float(q[(row0 + i * G.H) * D + c]) *
                                 __expf(g[i * D + c] - b);
                        d += s;
                        dif[nt][x] -= __bfloat162float(k[(row0 + j * G.H) * D + c]) * s;
                    }
                }
                out[x] = d;
            }
            int j0 = 16 * rb + gq, c = cbase + 8 * nt + 2 * t4;
            if (j0 < nvalid)
                *reinterpret_cast<uint32_t *>(dk + (row0 + j0 * G.H) * D + c) = pack2(out[0], out[1]);
            if (j0 + 8 < nvalid)
                *reinterpret_cast<uint32_t *>(dk + (row0 + (j0 + 8) * G.H) * D + c) =
                    pack2(out[2], out[3]);
        }

        /* dv = Aᵀ (s do) + k̂ dS */
#pragma unroll
        for (int x = 0; x < 8; x++) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            if (kk >= rb) {
                uint32_t a[4];
                ldsm4t(a, a_trans(As, LDP, 16 * rb, 16 * kk, l));
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t b[4];
                    ldsm4t(b, b_kmaj(dos, LDT, 16 * kk, cbase + 16 * np, l));
                    mma(acc[2 * np], a, b[0], b[1]);
                    mma(acc[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
#pragma unroll
        for (int kk = 0; kk < 8; kk++) {
            uint32_t a[4];
            ldsm4(a, a_row(ks, LDT, 16 * rb, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kmaj(dSb, LDT, 16 * kk, cbase + 16 * np, l));
                mma(acc[2 * np], a, b[0], b[1]);
                mma(acc[2 * np + 1], a, b[2], b[3]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            int j0 = 16 * rb + gq, c = cbase + 8 * nt + 2 * t4;
            if (j0 < nvalid)
                *reinterpret_cast<uint32_t *>(dv + (row0 + j0 * G.H) * D + c) =
                    pack2(acc[nt][0], acc[nt][1]);
            if (j0 + 8 < nvalid)
                *reinterpret_cast<uint32_t *>(dv + (row0 + (j0 + 8) * G.H) * D + c) =
                    pack2(acc[nt][2], acc[nt][3]);
        }

        /* dgk_t = Σ_{s ≥ t in chunk} (q ⊙ dq − k ⊙ dk)_s + rowsum(S_{n+1} ⊙ dS_{n+1}) */
        __syncthreads();
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            int i0 = 16 * rb + gq, c = cbase + 8 * nt + 2 * t4;
            *reinterpret_cast<float2 *>(g + i0 * D + c) = make_float2(dif[nt][0], dif[nt][1]);
            *reinterpret_cast<float2 *>(g + (i0 + 8) * D + c) = make_float2(dif[nt][2], dif[nt][3]);
        }
        __syncthreads();
        {
            int c = threadIdx.x & 127, hf = threadIdx.x >> 7;
            float *col = g + hf * 32 * D + c, a = 0.f;
#pragma unroll 8
            for (int i = 31; i >= 0; i--) {
                a += col[i * D];
                col[i * D] = a;
            }
            tot[hf * D + c] = a;
            __syncthreads();
            float off = rsum[c] + (hf ? 0.f : tot[D + c]);
            for (int i = 0; i < 32; i++) {
                int ii = hf * 32 + i;
                if (ii < nvalid) st_g(dgk + (row0 + ii * G.H) * D + c, col[i * D] + off);
            }
        }
        __syncthreads();

        /* D ← e^{β} D + q̃ᵀ (s do) = dS_n; then rowsum(S_n ⊙ dS_n) for the next (earlier) chunk */
        const float e0 = __expf(beta[r0]), e1 = __expf(beta[r0 + 8]);
#pragma unroll
        for (int nt = 0; nt < 16; nt++)
            Dg[nt][0] *= e0, Dg[nt][1] *= e0, Dg[nt][2] *= e1, Dg[nt][3] *= e1;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            ldsm4t(a, a_trans(qs, LDT, 16 * wp, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 8; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kmaj(dos, LDT, 16 * kk, 16 * np, l));
                mma(Dg[2 * np], a, b[0], b[1]);
                mma(Dg[2 * np + 1], a, b[2], b[3]);
            }
        }
        rowsum_sds(Sn, LDT, Dg, r0, t4, rsum);
    }
    if (dh0 && seg == 0) {
        float *p = dh0 + bh * D * D;
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            int e = 8 * nt + 2 * t4;
            *reinterpret_cast<float2 *>(p + r0 * D + e) = make_float2(Dg[nt][0], Dg[nt][1]);
            *reinterpret_cast<float2 *>(p + (r0 + 8) * D + e) = make_float2(Dg[nt][2], Dg[nt][3]);
        }
    }
}

/* Decode: one token, grid (B·H), 256 threads; thread → 4 columns e, warp → 16 rows c. */
template <typename GT>
__global__ void __launch_bounds__(NTH)
    k_decode(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
             const GT *__restrict__ gk, float scale, float *__restrict__ S, bf16 *__restrict__ o) {
    __shared__ float qv[D], kv[D], dec[D], part[8][D];
    const int64_t bh = blockIdx.x;
    const int tid = threadIdx.x, wp = tid >> 5, e = (tid & 31) * 4;
    if (tid < D) {
        qv[tid] = __bfloat162float(q[bh * D + tid]);
        kv[tid] = __bfloat162float(k[bh * D + tid]);
        dec[tid] = __expf(ld_g(gk + bh * D + tid));
    }
    __syncthreads();
    float v0 = __bfloat162float(v[bh * D + e]), v1 = __bfloat162float(v[bh * D + e + 1]);
    float v2 = __bfloat162float(v[bh * D + e + 2]), v3 = __bfloat162float(v[bh * D + e + 3]);
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    float *Sp = S + bh * D * D;
#pragma unroll 4
    for (int c = 16 * wp; c < 16 * wp + 16; c++) {
        float4 *p = reinterpret_cast<float4 *>(Sp + c * D + e);
        float4 s = *p;
        float d = dec[c], kc = kv[c], qc = qv[c];
        s.x = d * s.x + kc * v0, s.y = d * s.y + kc * v1;
        s.z = d * s.z + kc * v2, s.w = d * s.w + kc * v3;
        *p = s;
        acc.x += qc * s.x, acc.y += qc * s.y, acc.z += qc * s.z, acc.w += qc * s.w;
    }
    *reinterpret_cast<float4 *>(&part[wp][e]) = acc;
    __syncthreads();
    if (tid < D) {
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < 8; w++) s += part[w][tid];
        o[bh * D + tid] = __float2bfloat16_rn(scale * s);
    }
}


/* Decode on a V-first state Sᵀ (H, V, K) per sequence slot (the plugin's decode-state layout, FLA's
 * state_v_first): grid (B·H), 256 threads; warp → 16 rows e of Sᵀ, lane → columns c = lane + 32i,
 * so each row is read and written coalesced and o[e] = s Σ_c Sᵀ[e,c] q[c] is one warp sum. */
template <typename GT>
__global__ void __launch_bounds__(NTH)
    k_decode_vfirst(const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                    const GT *__restrict__ gk, float scale, float *__restrict__ S, int64_t slot_floats,
                    int H, bf16 *__restrict__ o) {
    const int64_t bh = blockIdx.x, b = bh / H, h = bh % H;
    const int tid = threadIdx.x, wp = tid >> 5, lane = tid & 31;
    float qc[4], kc[4], dc[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int c = lane + 32 * i;
        qc[i] = __bfloat162float(q[bh * D + c]);
        kc[i] = __bfloat162float(k[bh * D + c]);
        dc[i] = __expf(ld_g(gk + bh * D + c));
    }
    float *Sp = S + b * slot_floats + h * (int64_t)D * D;
    for (int e = 16 * wp; e < 16 * wp + 16; e++) {
        float ve = __bfloat162float(v[bh * D + e]), acc = 0.f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float *p = Sp + (int64_t)e * D + lane + 32 * i;
            float s = dc[i] * *p + ve * kc[i];
            *p = s;
            acc += qc[i] * s;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) o[bh * D + e] = __float2bfloat16_rn(scale * acc);
    }
}

/* ==== v2 chunk kernels: the forward (the host side says why the backward is v1's) =========== */

/* Segments and pieces. The output walk (k_fwd2) gives one CTA to each segment of `cps` chunks;
 * the pre-pass (k_walk2) gives one
 * CTA to each piece of `sub` chunks, `pps` pieces per segment (piece j = segment j / pps), so they
 * fill the GPU even where there are few segments. Pieces of the last segment may be empty (their
 * range is clipped at NT); an empty piece is the identity (X = 0, Σβ = 0) and writes no state. */
struct Geo2 {
    int64_t T, H;                    /* sequence length, heads                                    */
    int NT, cps, nseg, sub, pps, NP; /* chunks, chunks per segment, segments, chunks per piece,
                                        pieces per segment, pieces (nseg · pps)                   */
};

__device__ __forceinline__ void piece_range(const Geo2 &G, int j, int &lo, int &hi) {
    const int s = j / G.pps, p = j % G.pps;
    lo = min(s * G.cps + p * G.sub, G.NT);
    hi = min(s * G.cps + min((p + 1) * G.sub, G.cps), G.NT);
}

/* Chunk n of (sequence bi, head h): its first row in (B·T·H) units, its first token in (B·T)
 * units (rows of per-token tensors: the low-rank gate's lr, the norm's ĝ), and how many of its 64
 * rows exist (only the last chunk of a sequence is partial). */
struct ChunkRows {
    int64_t row0, tok0;
    int nvalid;
};
__device__ __forceinline__ ChunkRows chunk_rows(const Geo2 &G, int64_t bi, int64_t h, int n) {
    const int64_t t0 = (int64_t)n * CH;
    ChunkRows r;
    r.tok0 = bi * G.T + t0;
    r.row0 = r.tok0 * G.H + h;
    r.nvalid = (int)(G.T - t0 < CH ? G.T - t0 : CH);
    return r;
}

/* One (64, 128) rows-of-a-chunk block of a (B, T, H, 128) tensor into L2, rows < nvalid only
 * (prefetch is a hint, but an address past the tensor must not be named); thread tid takes row
 * tid % 64 of tensor tid / 64, so 64·NTENS threads cover NTENS tensors. */
__device__ __forceinline__ void l2_prefetch_row(const void *base, int64_t row, int bytes_per_row) {
    l2_prefetch(static_cast<const char *>(base) + row * bytes_per_row, (uint32_t)bytes_per_row);
}

/* gk rows of a chunk into a stage's gate area (64×128 fp32) without waiting. fp32: in place.
 * bf16: raw into the upper half of the area; widen_gate turns it into fp32 after the wait. */
__device__ __forceinline__ void stage_gate(float *g, const float *src, int64_t rs, int nvalid) {
    load_gate(g, src, 0, rs, nvalid);
}
__device__ __forceinline__ void stage_gate(float *g, const bf16 *src, int64_t rs, int nvalid) {
    bf16 *raw = reinterpret_cast<bf16 *>(g + CH * D / 2);
    for (int u = threadIdx.x; u < CH * 16; u += NTH) {
        int r = u >> 4, c8 = (u & 15) << 3;
        bool ok = r < nvalid;
        cp16(raw + r * D + c8, ok ? src + r * rs + c8 : src, ok);
    }
}
/* The gate's low-rank form (gla_cuda_args.gate_lr ...), what the v2 walks compute a chunk's gates
 * from when the layer gives it instead of gk. */
struct LrGate {
    const bf16 *lr, *w1, *bias; /* (B·T, 16), (H·128, 16), (H·128) or NULL */
    float inv_gamma;
};
/* The gated RMSNorm the output walk can apply as it stores o (gla_cuda_args.norm_gh ...): gh NULL
 * = store o itself. */
struct NormGate {
    const bf16 *gh, *w; /* ĝ (B·T rows ldg apart, head h at h·128), w_n (128) */
    int64_t ldg;
    float eps;
};

/* A chunk's gates into a stage's gate area (64×128 fp32; rows >= nvalid 0, as stage_gate leaves
 * them), computed instead of copied (gla_lr_gate_tile). Called where a copy into the stage would
 * be issued, so its L2 reads (lr: 2 KB a chunk, prefetched a chunk ahead; W1's 4 KB and the bias's
 * 256 B a head, L1-resident) overlap the stage's copies. Why: the fp32 gk was 268 MB written and
 * read twice at 1 x 32768 (the 1.7B shape), a 160 us kernel of its own. Float2 stores into
 * 512-byte rows conflict 4-way; ~1k shared wavefronts a chunk, against the ldmatrix traffic
 * several times that. */
__device__ __forceinline__ void lr_gate_chunk(float *g, const LrGate &L, const ChunkRows &r, int64_t h) {
    gla_lr_gate_tile(L.lr, L.w1, L.bias, L.inv_gamma, r.tok0, h * D, r.nvalid,
                     [&](int row, int c, bool valid, float, float, float g0, float g1) {
                         *reinterpret_cast<float2 *>(g + row * D + c) =
                             valid ? make_float2(g0, g1) : make_float2(0.f, 0.f);
                     });
}
/* A chunk's lr rows (2 KB, contiguous) into L2, by one thread: the prefetch lambdas' counterpart of
 * a gk row prefetch */
__device__ __forceinline__ void lr_prefetch_chunk(const LrGate &L, const ChunkRows &r) {
    l2_prefetch(L.lr + r.tok0 * 16, 32u * r.nvalid);
}
__device__ __forceinline__ void widen_gate(float *, const float *) {}
/* bf16 raw gates (upper half of g) → fp32 g. The fp32 rows overlap the raw ones, so every thread
 * reads its 32 values before any thread writes; contains its barriers. */
__device__ __forceinline__ void widen_gate(float *g, const bf16 *) {
    const uint4 *raw = reinterpret_cast<const uint4 *>(g + CH * D / 2);
    uint4 x[4];
#pragma unroll
    for (int j = 0; j < 4; j++) x[j] = raw[threadIdx.x + NTH * j];
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&x[j]);
        float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
        float2 c = __bfloat1622float2(h[2]), d = __bfloat1622float2(h[3]);
        float4 *dst = reinterpret_cast<float4 *>(g + 8 * (threadIdx.x + NTH * j));
        dst[0] = make_float4(a.x, a.y, b.x, b.y);
        dst[1] = make_float4(c.x, c.y, d.x, d.y);
    }
    __syncthreads();
}

/* The within-chunk gate cumsum in two passes over g (the raw gk values stay in place), with the
 * same sums in the same order as chunk_cumsum, so b and β are the bits v1 computes.
 * Pass 1: tot[hf][c] = Σ of half hf's 32 values of channel c; beta[c] = β = tot[0][c] + tot[1][c]
 * (= b_63, and = b at the last valid row since missing rows are 0), ebeta[c] = e^{β}. Returns
 * whether some channel's −β > SPREAD_MAX (the same in every thread); contains its barriers. */
__device__ __forceinline__ bool gate_totals(const float *g, float *tot, float *beta, float *ebeta) {
    const int c = threadIdx.x & 127, hf = threadIdx.x >> 7;
    const float *col = g + hf * 32 * D + c;
    float acc = 0.f;
#pragma unroll 8
    for (int i = 0; i < 32; i++) acc += col[i * D];
    tot[hf * D + c] = acc;
    __syncthreads();
    const float bt = tot[c] + tot[D + c];
    if (!hf) beta[c] = bt, ebeta[c] = __expf(bt);
    return __syncthreads_or(-bt > SPREAD_MAX) != 0;
}
/* Pass 2: f(i, c, b_i[c]) for the thread's channel c and its half's 32 rows, b_i being the running
 * sum of its half plus (second half) the first half's total. Needs gate_totals' tot. */
template <class F>
__device__ __forceinline__ void gate_rows(const float *g, const float *tot, F f) {
    const int c = threadIdx.x & 127, hf = threadIdx.x >> 7;
    const float off = hf ? tot[c] : 0.f;
    float acc = 0.f;
#pragma unroll 4
    for (int i = hf * 32; i < hf * 32 + 32; i++) {
        acc += g[i * D + c];
        f(i, c, acc + off);
    }
}

/* Output walk operands, in place on the stage (each element by the thread of its channel):
 *   qs ← q ⊙ e^{b};   ks ← k ⊙ e^{β−b};
 *   fast path: kt ← k ⊙ e^{−b} and ks = (k ⊙ e^{−b}) e^{β} (one exponential less per element);
 *   slow path: no kt (e^{−b} may overflow), ks directly, and g ← b for dot_decay. */
__device__ __forceinline__ void scale_fwd(bf16 *qs, bf16 *ks, bf16 *kt, float *g, const float *tot,
                                          const float *beta, const float *ebeta, bool slow) {
    const float bt = beta[threadIdx.x & 127], eb = ebeta[threadIdx.x & 127];
    gate_rows(g, tot, [&](int i, int c, float b) {
        const float x = __bfloat162float(qs[i * LDT + c]);
        qs[i * LDT + c] = __float2bfloat16_rn(x * __expf(b));
        const float y = __bfloat162float(ks[i * LDT + c]);
        if (!slow) {
            const float yt = y * __expf(-b);
            kt[i * LDT + c] = __float2bfloat16_rn(yt);
            ks[i * LDT + c] = __float2bfloat16_rn(yt * eb);
        } else {
            ks[i * LDT + c] = __float2bfloat16_rn(y * __expf(bt - b));
            g[i * D + c] = b;
        }
    });
}
/* State walk operand, in place: us ← u ⊙ e^{β−b} (scale_tiles' expression, so the same bits). */
__device__ __forceinline__ void scale_walk(bf16 *us, const float *g, const float *tot, const float *beta) {
    const float bt = beta[threadIdx.x & 127];
    gate_rows(g, tot, [&](int i, int c, float b) {
        const float x = __bfloat162float(us[i * LDT + c]);
        us[i * LDT + c] = __float2bfloat16_rn(x * __expf(bt - b));
    });
}

/* Warp wp's fragments of Sᵀ (rows e ∈ [16wp, 16wp+16), all 128 columns c, as mma C fragments:
 * X[nt][x] = Sᵀ[16wp + g + 8(x>>1)][8nt + 2t + (x&1)]) from / to a K-first fp32 state S[c][e]
 * (NULL: zero). Strided, but once per CTA. */
__device__ __forceinline__ void load_st(float X[16][4], const float *S, int wp, int l) {
    const int gq = l >> 2, t4 = l & 3;
#pragma unroll
    for (int nt = 0; nt < 16; nt++)
#pragma unroll
        for (int x = 0; x < 4; x++) {
            const int e = 16 * wp + gq + 8 * (x >> 1), c = 8 * nt + 2 * t4 + (x & 1);
            X[nt][x] = S ? S[c * D + e] : 0.f;
        }
}
__device__ __forceinline__ void store_st(float *S, const float X[16][4], int wp, int l) {
    const int gq = l >> 2, t4 = l & 3;
#pragma unroll
    for (int nt = 0; nt < 16; nt++)
#pragma unroll
        for (int x = 0; x < 4; x++) {
            const int e = 16 * wp + gq + 8 * (x >> 1), c = 8 * nt + 2 * t4 + (x & 1);
            S[c * D + e] = X[nt][x];
        }
}

/* Shared memory of the v2 walks: two stages of a chunk's tiles (padded bf16 rows, fp32 gates). */
constexpr int TILE_BYTES = CH * LDT * 2;                      /* (64, 128) bf16, padded    */
constexpr int GATE_BYTES = CH * D * 4;                        /* (64, 128) fp32            */
constexpr int STAGE_WALK = 2 * TILE_BYTES + GATE_BYTES;       /* u, w, g                   */
constexpr int STAGE_FWD = 3 * TILE_BYTES + GATE_BYTES;        /* q, k, v, g                */
constexpr int SMEM_WALK2 = 2 * STAGE_WALK + 4 * D * 4;        /* + tot, β, e^β             */
constexpr int SMEM_WALK1 = STAGE_WALK + 4 * D * 4;            /* one stage: two CTAs an SM */
constexpr int SMEM_FWD2 = 2 * STAGE_FWD + TILE_BYTES + CH * LDP * 2 + 4 * D * 4;
constexpr int SMEM_FWD1 = STAGE_FWD + TILE_BYTES + CH * LDP * 2 + 4 * D * 4; /* one stage: two CTAs an SM */
static_assert(2 * (SMEM_FWD1 + 1024) <= 228 * 1024, "two one-stage output walks an SM");

/* The forward's pre-pass over one piece (k_state_walk's forward walk, re-tiled); grid (pieces,
 * B·H), piece blockIdx.x, 256 threads (two CTAs an SM at NS = 1); warp w holds X rows c ∈ [16w, 16w+16)
 * (fp32). From X = 0, X ← e^{β} X + (k ⊙ e^{β−b})ᵀ v over the piece's chunks in order; writes the
 * piece's final X (fp32, (B·H, NP, K, V)) to loc and its Σβ to gsum ((B·H, NP, K)).
 * NS = 2 stages: chunk n+1's tiles stream into the other stage while chunk n is computed; chunk
 * n+2's rows are prefetched into L2. NS = 1 (the default; GRAFT_GLA_WALK_2CTA=0 runs NS = 2): one stage
 * (68 KB) and at most 128 registers, so two CTAs share an SM and each one's load waits are the
 * other's compute; chunk n+1 is prefetched into L2 during chunk n and copied in after it. Why: at
 * 1 x 8192 the walk ran 112 CTAs of 8 warps, ~5 us a chunk, against ~1 us of tensor-core work
 * (H100 trace, 2026-12-07): latency, not throughput (ncu: no eligible warp 67% of cycles). Measured
 * (bench/results/gla-core-occupancy-2026-12-07.md): 1 x 32768 layer 3.47 -> 3.39 ms, 8192 and
 * training unchanged. (Commit cbe677a also has a reverse walk and a state materialization here,
 * for a v2 backward that measured slower than v1's and was removed.) */
template <typename GT, int NS, bool LG>
__global__ void __launch_bounds__(NTH, NS == 1 ? 2 : 1)
    k_walk2(Geo2 G, const bf16 *__restrict__ u, const bf16 *__restrict__ w, const GT *__restrict__ gk,
            LrGate lg, float *__restrict__ loc, float *__restrict__ gsum) {
    extern __shared__ __align__(16) unsigned char smem[];
    float *tot = reinterpret_cast<float *>(smem + NS * STAGE_WALK), *beta = tot + 2 * D, *ebeta = beta + D;
    auto U = [&](int s) { return reinterpret_cast<bf16 *>(smem + (NS == 1 ? 0 : s) * STAGE_WALK); };
    auto W = [&](int s) { return U(s) + CH * LDT; };
    auto Gt = [&](int s) { return reinterpret_cast<float *>(smem + (NS == 1 ? 0 : s) * STAGE_WALK + 2 * TILE_BYTES); };

    const int j = blockIdx.x, l = threadIdx.x & 31, wp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.y, bi = bh / G.H, h = bh % G.H;
    const int gq = l >> 2, t4 = l & 3, r0 = 16 * wp + gq;
    const int64_t rs = G.H * D;
    int lo, hi;
    piece_range(G, j, lo, hi);
    const int cnt = hi - lo;
    auto issue = [&](int it) {
        const ChunkRows r = chunk_rows(G, bi, h, lo + it);
        load_tile(U(it & 1), u + r.row0 * D, 0, rs, r.nvalid);
        load_tile(W(it & 1), w + r.row0 * D, 0, rs, r.nvalid);
        if constexpr (LG) lr_gate_chunk(Gt(it & 1), lg, r, h);
        else stage_gate(Gt(it & 1), gk + r.row0 * D, rs, r.nvalid);
    };
    auto prefetch = [&](int it) {
        const ChunkRows r = chunk_rows(G, bi, h, lo + it);
        const int row = threadIdx.x & 63, t = threadIdx.x >> 6;
        if (row < r.nvalid && t < 3) {
            const int64_t at = r.row0 + row * G.H;
            if (t == 0) l2_prefetch_row(u, at, 2 * D);
            if (t == 1) l2_prefetch_row(w, at, 2 * D);
            if (t == 2) {
                if constexpr (LG) {
                    if (row == 0) lr_prefetch_chunk(lg, r);
                } else {
                    l2_prefetch_row(gk, at, (int)sizeof(GT) * D);
                }
            }
        }
    };

    if (cnt > 0) issue(0);
    cp_commit();
    if (cnt > 1) prefetch(1);
    float X[16][4];
#pragma unroll
    for (int nt = 0; nt < 16; nt++) X[nt][0] = X[nt][1] = X[nt][2] = X[nt][3] = 0.f;
    float gs = 0.f;

    for (int it = 0; it < cnt; it++) {
        const int cur = it & 1;
        cp_wait_all();
        __syncthreads(); /* chunk it's tiles visible; (NS = 2) stage cur^1 free */
        if constexpr (NS == 2) {
            if (it + 1 < cnt) issue(it + 1);
            cp_commit();
            if (it + 2 < cnt) prefetch(it + 2);
        } else if (it + 1 < cnt) {
            prefetch(it + 1); /* into L2 now; into the one stage once this chunk is done */
        }
        float *g = Gt(cur);
        widen_gate(g, (const GT *)nullptr);
        gate_totals(g, tot, beta, ebeta);
        scale_walk(U(cur), g, tot, beta);
        if (threadIdx.x < D) gs += beta[threadIdx.x];
        __syncthreads();
        const float e0 = ebeta[r0], e1 = ebeta[r0 + 8];
#pragma unroll
        for (int nt = 0; nt < 16; nt++)
            X[nt][0] *= e0, X[nt][1] *= e0, X[nt][2] *= e1, X[nt][3] *= e1;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            ldsm4t(a, a_trans(U(cur), LDT, 16 * wp, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 8; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kmaj(W(cur), LDT, 16 * kk, 16 * np, l));
                mma(X[2 * np], a, b[0], b[1]);
                mma(X[2 * np + 1], a, b[2], b[3]);
            }
        }
        if constexpr (NS == 1) {
            if (it + 1 < cnt) {
                __syncthreads(); /* every warp's mma operands read: the stage is free */
                issue(it + 1);
                cp_commit();
            }
        }
    }
    float *p = loc + (bh * G.NP + j) * D * D;
#pragma unroll
    for (int nt = 0; nt < 16; nt++) {
        int e = 8 * nt + 2 * t4;
        *reinterpret_cast<float2 *>(p + r0 * D + e) = make_float2(X[nt][0], X[nt][1]);
        *reinterpret_cast<float2 *>(p + (r0 + 8) * D + e) = make_float2(X[nt][2], X[nt][3]);
    }
    if (threadIdx.x < D) gsum[(bh * G.NP + j) * D + threadIdx.x] = gs;
}

/* Inclusive scan over pieces [0, NPF) of each (sequence, head), elementwise, in place; grid
 * (K·V/1024, B·H), 256 threads, one float4 each: L[j] becomes the state leaving piece j,
 * x ← e^{Σβ_j} x + L[j] from x0 (h0; NULL = 0). The loads of 8 pieces go out together (they do not
 * depend on x), so the chain waits on memory once per 8 pieces. */
__global__ void __launch_bounds__(NTH) k_scan2(float *L, const float *gsum, int NP, int NPF, const float *x0) {
    const int64_t bh = blockIdx.y;
    const int idx = (blockIdx.x * NTH + threadIdx.x) * 4, c = idx / D;
    float4 x = x0 ? *reinterpret_cast<const float4 *>(x0 + bh * D * D + idx)
                  : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int base = 0; base < NPF; base += 8) {
        float4 y[8];
        float d[8];
#pragma unroll
        for (int s = 0; s < 8; s++) {
            const int jj = base + s;
            if (jj < NPF) {
                y[s] = *reinterpret_cast<const float4 *>(L + (bh * NP + jj) * D * D + idx);
                d[s] = gsum[(bh * NP + jj) * D + c];
            }
        }
#pragma unroll
        for (int s = 0; s < 8; s++) {
            const int jj = base + s;
            if (jj < NPF) {
                const float e = __expf(d[s]);
                x.x = e * x.x + y[s].x, x.y = e * x.y + y[s].y;
                x.z = e * x.z + y[s].z, x.w = e * x.w + y[s].w;
                *reinterpret_cast<float4 *>(L + (bh * NP + jj) * D * D + idx) = x;
            }
        }
    }
}

/* Forward output over one segment, all 128 value columns; grid (nseg, B·H), 256 threads, one CTA
 * per SM (q, k and the gates are read once: v1's k_fwd_out, removed, read them once per 64-column
 * V tile).
 * Warp w holds Sᵀ rows e ∈ [16w, 16w+16) in fp32 C fragments (load_st), which are exactly the B
 * fragments of q̃ S for o's columns e ∈ [16w, 16w+16): the inter part needs no shared-memory copy
 * of the state. Per chunk (b, β, q̃ = q ⊙ e^{b}, k̃ = k ⊙ e^{−b}, k̂ = k ⊙ e^{β−b}):
 *   A = mask(q̃ k̃ᵀ) (bf16 in As; the 10 lower 16×16 blocks shared out over the 8 warps), then
 *   o[:, 16w..] = s (q̃ S + A v)[:, 16w..] (staged in the kt tile, stored coalesced next
 *   iteration), then Sᵀ ← e^{β} Sᵀ + vᵀ k̂.
 * The entering state: h0 for segment 0 (NULL = 0), else slots[bh][seg·pps − 1] (the scan's state
 * leaving the previous segment's last piece). NS = 2 stages: chunk n+1's tiles stream into the
 * other stage while chunk n is computed, chunk n+2's rows are prefetched into L2, and chunk n's o
 * is stored at the top of the next iteration. NS = 1 (the default; GRAFT_GLA_FWD_2CTA=0 runs
 * NS = 2): one stage (111 KB) and at most 128 registers, so two CTAs share an SM, each one's waits
 * the other's compute (ncu of NS = 2 at 1 x 8192, 2026-12-07: 8 warps an SM, no warp eligible 65%
 * of cycles, 5.8 cycles per issued instruction); chunk n+1 is prefetched into L2 during chunk n,
 * and o is stored and the next tiles copied in after it. Measured on an H100 (2026-12-08,
 * bench/results/gla-fwd-2cta-2026-12-08.md): the 1 x 32768 layer forward 3.33 -> 3.20 ms, the
 * kernel 576 -> 465 us; 1 x 8192 -10 us. */
template <typename GT, int NS, bool LG>
__global__ void __launch_bounds__(NTH, NS == 1 ? 2 : 1)
    k_fwd2(Geo2 G, const bf16 *__restrict__ q, const bf16 *__restrict__ k,
           const bf16 *__restrict__ v, const GT *__restrict__ gk, LrGate lg, NormGate ng, float scale,
           const float *__restrict__ h0, const float *__restrict__ slots, bf16 *__restrict__ o,
           float *__restrict__ ht) {
    extern __shared__ __align__(16) unsigned char smem[];
    auto Q = [&](int s) { return reinterpret_cast<bf16 *>(smem + (NS == 1 ? 0 : s) * STAGE_FWD); };
    auto K = [&](int s) { return Q(s) + CH * LDT; };
    auto V = [&](int s) { return Q(s) + 2 * CH * LDT; };
    auto Gt = [&](int s) { return reinterpret_cast<float *>(smem + (NS == 1 ? 0 : s) * STAGE_FWD + 3 * TILE_BYTES); };
    bf16 *kt = reinterpret_cast<bf16 *>(smem + NS * STAGE_FWD); /* k̃, then the o staging tile */
    bf16 *As = kt + CH * LDT;
    float *tot = reinterpret_cast<float *>(As + CH * LDP), *beta = tot + 2 * D, *ebeta = beta + D;

    const int seg = blockIdx.x, l = threadIdx.x & 31, wp = threadIdx.x >> 5;
    const int64_t bh = blockIdx.y, bi = bh / G.H, h = bh % G.H;
    const int gq = l >> 2, t4 = l & 3;
    const int64_t rs = G.H * D;
    const int n_lo = seg * G.cps, n_hi = min(G.NT, n_lo + G.cps), cnt = n_hi - n_lo;
    /* A's work: warp wp takes row block ib and ib+1 of its 2(ib+1) n8 column tiles; the two warps
     * of an SM sub-partition (wp, wp+4) get ib and 3−ib, so each pair does 5 tiles. */
    const int ib = wp < 4 ? wp : 7 - wp, acnt = ib + 1, aj0 = (wp >> 2) * acnt;

    auto issue = [&](int n) {
        const ChunkRows r = chunk_rows(G, bi, h, n);
        const int s = (n - n_lo) & 1;
        load_tile(Q(s), q + r.row0 * D, 0, rs, r.nvalid);
        load_tile(K(s), k + r.row0 * D, 0, rs, r.nvalid);
        load_tile(V(s), v + r.row0 * D, 0, rs, r.nvalid);
        if constexpr (LG) lr_gate_chunk(Gt(s), lg, r, h);
        else stage_gate(Gt(s), gk + r.row0 * D, rs, r.nvalid);
    };
    auto prefetch = [&](int n) {
        const ChunkRows r = chunk_rows(G, bi, h, n);
        const int row = threadIdx.x & 63, t = threadIdx.x >> 6;
        if (row < r.nvalid) {
            const int64_t at = r.row0 + row * G.H;
            if (t == 0) l2_prefetch_row(q, at, 2 * D);
            if (t == 1) l2_prefetch_row(k, at, 2 * D);
            if (t == 2) l2_prefetch_row(v, at, 2 * D);
            if (t == 3) {
                if constexpr (LG) {
                    if (row == 0) lr_prefetch_chunk(lg, r);
                } else {
                    l2_prefetch_row(gk, at, (int)sizeof(GT) * D);
                }
                if (ng.gh) l2_prefetch(ng.gh + (r.tok0 + row) * ng.ldg + h * D, 2 * D);
            }
        }
    };
    /* o's rows out of the staging tile kt: as they are, or (ng.gh) through the gated norm, a warp a
     * row as the layer's norm kernel (gated_rmsnorm128_lane: the same bits), rows wp + 8j, one at
     * a time (ĝ prefetched into L2 a chunk ahead): with the state's 64 registers live, loads of
     * four rows in flight spilled at the 128-register cap of two CTAs an SM */
    auto flush_o = [&](const ChunkRows &r) {
        if (std::is_same<GT, float>::value && ng.gh) { /* (the bf16-gate build spilled with it) */
#pragma unroll 1
            for (int i = wp; i < r.nvalid; i += 8) { /* warp-uniform: warp_sum sees all 32 lanes */
                const uint2 gr = *reinterpret_cast<const uint2 *>(ng.gh + (r.tok0 + i) * ng.ldg + h * D + 4 * l);
                const uint2 wr = *reinterpret_cast<const uint2 *>(ng.w + 4 * l);
                const uint2 orw = *reinterpret_cast<const uint2 *>(kt + i * LDT + 4 * l);
                const bf16 *oh = reinterpret_cast<const bf16 *>(&orw), *gh = reinterpret_cast<const bf16 *>(&gr),
                           *wh = reinterpret_cast<const bf16 *>(&wr);
                float ov[4], gv[4], wv[4], rs_;
#pragma unroll
                for (int e = 0; e < 4; e++)
                    ov[e] = __bfloat162float(oh[e]), gv[e] = __bfloat162float(gh[e]), wv[e] = __bfloat162float(wh[e]);
                *reinterpret_cast<uint2 *>(o + (r.row0 + i * G.H) * D + 4 * l) =
                    gated_rmsnorm128_lane(ov, gv, wv, ng.eps, &rs_);
            }
            return;
        }
        for (int x = threadIdx.x; x < CH * 16; x += NTH) {
            int i = x >> 4, c8 = (x & 15) << 3;
            if (i < r.nvalid)
                *reinterpret_cast<uint4 *>(o + (r.row0 + i * G.H) * D + c8) =
                    *reinterpret_cast<const uint4 *>(kt + i * LDT + c8);
        }
    };

    if (cnt > 0) issue(n_lo);
    cp_commit();
    if (cnt > 1) prefetch(n_lo + 1);
    float X[16][4]; /* Sᵀ rows e ∈ [16wp, +16): X[nt][x] = Sᵀ[16wp+gq+8(x>>1)][8nt+2t4+(x&1)] */
    load_st(X, seg == 0 ? (h0 ? h0 + bh * D * D : nullptr)
                        : slots + (bh * G.NP + seg * G.pps - 1) * D * D,
            wp, l);
    ChunkRows prev = {0, 0};

    for (int n = n_lo; n < n_hi; n++) {
        const int cur = (n - n_lo) & 1;
        const ChunkRows rr = chunk_rows(G, bi, h, n);
        bf16 *qs = Q(cur), *ks = K(cur), *vs = V(cur);
        float *g = Gt(cur);
        cp_wait_all();
        __syncthreads(); /* chunk n's tiles and (NS = 2) the previous o tile visible; stage cur^1 free */
        if constexpr (NS == 2) {
            if (n > n_lo) flush_o(prev);
            if (n + 1 < n_hi) issue(n + 1);
            cp_commit();
            if (n + 2 < n_hi) prefetch(n + 2);
        } else if (n + 1 < n_hi) {
            prefetch(n + 1); /* into L2 now; into the one stage once this chunk is done */
        }
        widen_gate(g, (const GT *)nullptr);
        const bool slow = gate_totals(g, tot, beta, ebeta);
        scale_fwd(qs, ks, kt, g, tot, beta, ebeta, slow);
        __syncthreads();

        /* A: rows [16ib, +16) × n8 tiles [aj0, aj0 + acnt), masked j ≤ i, into As (bf16). */
        {
            float Ac[4][4];
#pragma unroll
            for (int u = 0; u < 4; u++) Ac[u][0] = Ac[u][1] = Ac[u][2] = Ac[u][3] = 0.f;
            if (!slow) {
#pragma unroll
                for (int kk = 0; kk < 8; kk++) {
                    uint32_t a[4];
                    ldsm4(a, a_row(qs, LDT, 16 * ib, 16 * kk, l));
#pragma unroll
                    for (int u = 0; u < 4; u++) {
                        if (u < acnt) {
                            uint32_t b[2];
                            ldsm2(b, b_nmaj(kt, LDT, 16 * kk, 8 * (aj0 + u), l & 15));
                            mma(Ac[u], a, b[0], b[1]);
                        }
                    }
                }
            } else {
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    if (u < acnt) {
#pragma unroll
                        for (int x = 0; x < 4; x++) {
                            int i = 16 * ib + gq + 8 * (x >> 1), j = 8 * (aj0 + u) + 2 * t4 + (x & 1);
                            if (j <= i && i < rr.nvalid)
                                Ac[u][x] = dot_decay(q + (rr.row0 + i * G.H) * D,
                                                     k + (rr.row0 + j * G.H) * D, g + i * D, g + j * D);
                        }
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                if (u < acnt) {
                    int i0 = 16 * ib + gq, j = 8 * (aj0 + u) + 2 * t4;
                    float a0 = j <= i0 ? Ac[u][0] : 0.f, a1 = j + 1 <= i0 ? Ac[u][1] : 0.f;
                    float a2 = j <= i0 + 8 ? Ac[u][2] : 0.f, a3 = j + 1 <= i0 + 8 ? Ac[u][3] : 0.f;
                    *reinterpret_cast<uint32_t *>(As + i0 * LDP + j) = pack2(a0, a1);
                    *reinterpret_cast<uint32_t *>(As + (i0 + 8) * LDP + j) = pack2(a2, a3);
                }
            }
        }
        __syncthreads(); /* As complete; kt no longer read (it becomes the o staging tile) */

        /* o[:, 16wp..+16) = s (q̃ S + A v): B fragments of S from X (bf16), of v from vs. */
        {
            float O[4][2][4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) O[mt][hh][0] = O[mt][hh][1] = O[mt][hh][2] = O[mt][hh][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < 8; kk++) {
                const uint32_t b00 = pack2(X[2 * kk][0], X[2 * kk][1]);
                const uint32_t b01 = pack2(X[2 * kk + 1][0], X[2 * kk + 1][1]);
                const uint32_t b10 = pack2(X[2 * kk][2], X[2 * kk][3]);
                const uint32_t b11 = pack2(X[2 * kk + 1][2], X[2 * kk + 1][3]);
#pragma unroll
                for (int mt = 0; mt < 4; mt++) {
                    uint32_t a[4];
                    ldsm4(a, a_row(qs, LDT, 16 * mt, 16 * kk, l));
                    mma(O[mt][0], a, b00, b01);
                    mma(O[mt][1], a, b10, b11);
                }
            }
            uint32_t bv[4][4];
#pragma unroll
            for (int jb = 0; jb < 4; jb++) ldsm4t(bv[jb], b_kmaj(vs, LDT, 16 * jb, 16 * wp, l));
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int jb = 0; jb <= mt; jb++) {
                    uint32_t a[4];
                    ldsm4(a, a_row(As, LDP, 16 * mt, 16 * jb, l));
                    mma(O[mt][0], a, bv[jb][0], bv[jb][1]);
                    mma(O[mt][1], a, bv[jb][2], bv[jb][3]);
                }
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int i0 = 16 * mt + gq, e = 16 * wp + 8 * hh + 2 * t4;
                    *reinterpret_cast<uint32_t *>(kt + i0 * LDT + e) =
                        pack2(scale * O[mt][hh][0], scale * O[mt][hh][1]);
                    *reinterpret_cast<uint32_t *>(kt + (i0 + 8) * LDT + e) =
                        pack2(scale * O[mt][hh][2], scale * O[mt][hh][3]);
                }
        }

        /* Sᵀ ← e^{β} Sᵀ + vᵀ k̂ (β per column c of Sᵀ) */
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            const float2 d = *reinterpret_cast<const float2 *>(ebeta + 8 * nt + 2 * t4);
            X[nt][0] *= d.x, X[nt][1] *= d.y, X[nt][2] *= d.x, X[nt][3] *= d.y;
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            ldsm4t(a, a_trans(vs, LDT, 16 * wp, 16 * kk, l));
#pragma unroll
            for (int np = 0; np < 8; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kmaj(ks, LDT, 16 * kk, 16 * np, l));
                mma(X[2 * np], a, b[0], b[1]);
                mma(X[2 * np + 1], a, b[2], b[3]);
            }
        }
        if constexpr (NS == 1) {
            __syncthreads(); /* the o tile complete; every warp's operands read: the stage is free */
            flush_o(rr);
            if (n + 1 < n_hi) {
                issue(n + 1);
                cp_commit();
            }
        }
        prev = rr;
    }
    if (NS == 2 && cnt > 0) {
        __syncthreads();
        flush_o(prev);
    }
    if (ht && n_hi == G.NT) store_st(ht + bh * D * D, X, wp, l);
}

/* ---- host side ---------------------------------------------------------------------------- */

constexpr size_t SMEM_WALK = 2 * CH * LDT * 2 + CH * D * 4 + 3 * D * 4 + D * LDT * 2;
constexpr size_t SMEM_BWD =
    5 * CH * LDT * 2 + 2 * D * LDT * 2 + 2 * CH * LDP * 2 + CH * D * 4 + 4 * D * 4;

struct Plan {
    Geo G;
    int64_t BH;
    size_t off_loc, off_gsum, off_states, total;
};

int n_sm() {
    int dev = 0, n = 132;
    if (cudaGetDevice(&dev) == cudaSuccess)
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 132;
}

/* The backward's geometry and workspace (segment states and Σβ, then the bf16 chunk-entry states). */
Plan make_plan(const gla_cuda_args *a) {
    Plan p;
    p.BH = a->B * a->H;
    p.G.T = a->T;
    p.G.H = a->H;
    p.G.NT = (int)((a->T + CH - 1) / CH);
    int cps = a->chunks_per_seg;
    if (cps <= 0) {
        int64_t target = 2 * (int64_t)n_sm();
        int64_t work = (int64_t)p.G.NT * p.BH;
        cps = (int)((work + target - 1) / target);
        if (cps < 1) cps = 1;
    }
    if (p.G.NT > 0 && cps > p.G.NT) cps = p.G.NT;
    if (cps < 1) cps = 1;
    p.G.cps = cps;
    p.G.nseg = (p.G.NT + cps - 1) / cps;
    size_t c = 0;
    auto take = [&c](size_t bytes) {
        size_t o = c;
        c += (bytes + 255) & ~(size_t)255;
        return o;
    };
    p.off_loc = p.off_gsum = p.off_states = 0;
    if (p.G.nseg > 1) {
        p.off_loc = take((size_t)p.BH * p.G.nseg * D * D * 4);
        p.off_gsum = take((size_t)p.BH * p.G.nseg * D * 4);
    }
    p.off_states = take((size_t)p.BH * (p.G.NT + 1) * D * D * 2);
    p.total = c;
    return p;
}

/* The forward is v2 (below), by measurement (H100, 2026-12-07, bench/gla_cuda_bench, v1/v2/v1/v2 in
 * one call: B 1 x 32768 0.967 -> 0.886 ms, 1 x 8192 0.278 -> 0.238, 4 x 2048 0.282 -> 0.207; the v1
 * forward, k_fwd_out, was then removed, commit cbe677a has it). The backward is v1's: a v2 backward
 * (k_bwd2 over the v2 walks, also in cbe677a) was correct but 8-9% slower (4 x 2048: 1.050 -> 1.139
 * ms). The forward and the backward share nothing (the backward rebuilds its chunk-entry states),
 * so they mix freely. */
struct Plan2 {
    Geo2 G;
    int64_t BH;
    size_t off_loc, off_gsum, total;
};

/* CTAs a walk runs an SM: 2 for its one-stage build (twice the pieces or segments), 1 for the
 * two-stage one; the environment variable ("0" / "1") overrides the default, once per process. */
int ctas_per_sm(const char *var, int dflt, int *state) {
    if (*state < 0) {
        const char *e = getenv(var);
        *state = e && !strcmp(e, "1") ? 2 : e && !strcmp(e, "0") ? 1 : dflt;
    }
    return *state;
}
int walk_ctas_per_sm() { /* the pre-pass, k_walk2 */
    static int state = -1;
    return ctas_per_sm("GRAFT_GLA_WALK_2CTA", 2, &state); /* 2: 1 x 32768 forward -75 us (H100) */
}
int fwd_ctas_per_sm() { /* the output walk, k_fwd2 */
    static int state = -1;
    return ctas_per_sm("GRAFT_GLA_FWD_2CTA", 2, &state); /* 2: 1 x 32768 forward -120 us (H100) */
}

/* v2 geometry (the forward): one segment per output-walk CTA slot (fwd_ctas_per_sm() x n_sm / BH
 * segments per (sequence, head), or chunks_per_seg chunks each if given), and pieces small enough
 * that the pre-pass over all but the last segment still fills the GPU. The workspace holds each
 * piece's local state and Σβ. */
Plan2 make_plan2(const gla_cuda_args *a) {
    Plan2 p;
    Geo2 &G = p.G;
    const int64_t sms = n_sm();
    p.BH = a->B * a->H;
    G.T = a->T;
    G.H = a->H;
    G.NT = (int)((a->T + CH - 1) / CH);
    const int nt1 = G.NT > 1 ? G.NT : 1;
    int64_t cps = a->chunks_per_seg;
    if (cps <= 0) {
        int64_t nseg0 = fwd_ctas_per_sm() * sms / (p.BH > 1 ? p.BH : 1);
        nseg0 = nseg0 < 1 ? 1 : nseg0 > nt1 ? nt1 : nseg0;
        cps = (nt1 + nseg0 - 1) / nseg0;
    }
    cps = cps < 1 ? 1 : cps > nt1 ? nt1 : cps;
    G.cps = (int)cps;
    G.nseg = (G.NT + G.cps - 1) / G.cps;
    const int64_t need = (p.BH > 1 ? p.BH : 1) * (G.nseg > 1 ? G.nseg - 1 : 1);
    int64_t f = walk_ctas_per_sm() * sms / need;
    f = f < 1 ? 1 : f > cps ? cps : f;
    G.sub = (int)((cps + f - 1) / f);
    G.pps = (G.cps + G.sub - 1) / G.sub;
    G.NP = G.nseg * G.pps;
    size_t c = 0;
    auto take = [&c](size_t bytes) {
        size_t o = c;
        c += (bytes + 255) & ~(size_t)255;
        return o;
    };
    p.off_loc = p.off_gsum = 0;
    if (G.NP > 1) {
        p.off_loc = take((size_t)p.BH * G.NP * D * D * 4);
        p.off_gsum = take((size_t)p.BH * G.NP * D * 4);
    }
    p.total = c;
    return p;
}

graft_status check_args(const gla_cuda_args *a, int backward, graft_err *err) {
    if (!a) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla_cuda: args: NULL");
    if (a->B < 0 || a->T < 0 || a->H < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: shape: B=%lld T=%lld H=%lld, expected all >= 0",
                             (long long)a->B, (long long)a->T, (long long)a->H);
    if (a->K != D || a->V != D)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla_cuda: head dims: K=%lld V=%lld, expected K = V = 128 (the only "
                             "size the CUDA kernels are built for)",
                             (long long)a->K, (long long)a->V);
    if (a->B * a->H > 65535)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla_cuda: B*H = %lld, expected at most 65535",
                             (long long)(a->B * a->H));
    if (a->B == 0 || a->H == 0 || a->T == 0) return GRAFT_STATUS_OK;
    if (!a->q || !a->k || !a->v)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla_cuda: q, k, v: a NULL pointer");
    if (!a->gk == !a->gate_lr || (backward && a->gate_lr))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: gk %s, gate_lr %s: expected gk, or (forward only) gate_lr and "
                             "gate_w1 instead",
                             a->gk ? "set" : "NULL", a->gate_lr ? "set" : "NULL");
    if (a->gate_lr && (!a->gate_w1 || a->gk_bf16 || ((uintptr_t)a->gate_lr | (uintptr_t)a->gate_w1) % 16 ||
                       (uintptr_t)a->gate_bias % 4))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: gate_lr %p, gate_w1 %p, gate_bias %p (gk_bf16 %d): expected "
                             "gate_w1 set, lr and w1 16-byte aligned, the bias 4-byte aligned, gk_bf16 0",
                             a->gate_lr, a->gate_w1, a->gate_bias, a->gk_bf16);
    if (!backward && !a->o)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla_cuda: o: NULL");
    if (backward && (!a->dout || !a->dq || !a->dk || !a->dv || !a->dgk))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: dout, dq, dk, dv, dgk: a NULL pointer");
    if (a->norm_gh && (backward || a->gk_bf16 || !a->norm_w || a->norm_ldg < a->H * D || a->norm_ldg % 8 ||
                       (uintptr_t)a->norm_gh % 16 || (uintptr_t)a->norm_w % 8))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: norm_gh %p, norm_w %p, norm_ldg %lld: expected (a forward with an "
                             "fp32 gate only) norm_w set, norm_ldg >= H*128 and a multiple of 8, norm_gh 16-byte and "
                             "norm_w 8-byte aligned",
                             a->norm_gh, a->norm_w, (long long)a->norm_ldg);
    if (!(a->scale == a->scale))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla_cuda: scale: NaN");
    return GRAFT_STATUS_OK;
}

graft_status launched(graft_err *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla_cuda: %s: %s", what,
                             cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

template <typename GT>
graft_status backward_t(const gla_cuda_args *a, const Plan &p, cudaStream_t s, graft_err *err) {
    const bf16 *q = (const bf16 *)a->q, *k = (const bf16 *)a->k, *v = (const bf16 *)a->v;
    const bf16 *dout = (const bf16 *)a->dout;
    const GT *gk = (const GT *)a->gk;
    unsigned char *w = (unsigned char *)a->work;
    float *loc = p.G.nseg > 1 ? (float *)(w + p.off_loc) : nullptr;
    float *gsum = p.G.nseg > 1 ? (float *)(w + p.off_gsum) : nullptr;
    bf16 *states = (bf16 *)(w + p.off_states);
    cudaFuncSetAttribute(k_state_walk<GT, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)SMEM_WALK);
    cudaFuncSetAttribute(k_state_walk<GT, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)SMEM_WALK);
    cudaFuncSetAttribute(k_bwd<GT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM_BWD);
    const dim3 gw(p.G.nseg, (unsigned)p.BH), gs(D * D / (4 * NTH), (unsigned)p.BH);
    const int64_t DD = (int64_t)D * D;
    /* 1. chunk-entry states S_0..S_NT (bf16), from the segments' entering states */
    const float *init = a->h0;
    int64_t sbh = DD, sseg = 0;
    if (p.G.nseg > 1) {
        k_state_walk<GT, false><<<gw, NTH, SMEM_WALK, s>>>(p.G, k, v, gk, 0.f, nullptr, 0, 0,
                                                          nullptr, loc, gsum);
        k_scan<false><<<gs, NTH, 0, s>>>(loc, gsum, p.G.nseg, a->h0);
        init = loc;
        sbh = (int64_t)p.G.nseg * DD;
        sseg = DD;
    }
    k_state_walk<GT, false><<<gw, NTH, SMEM_WALK, s>>>(p.G, k, v, gk, 0.f, init, sbh, sseg,
                                                      states, nullptr, nullptr);
    /* 2. gradient of the state leaving each segment */
    const float *dinit = a->dht;
    int64_t dsbh = DD, dsseg = 0;
    if (p.G.nseg > 1) {
        k_state_walk<GT, true><<<gw, NTH, SMEM_WALK, s>>>(p.G, q, dout, gk, a->scale, nullptr, 0,
                                                         0, nullptr, loc, gsum);
        k_scan<true><<<gs, NTH, 0, s>>>(loc, gsum, p.G.nseg, a->dht);
        dinit = loc;
        dsbh = (int64_t)p.G.nseg * DD;
        dsseg = DD;
    }
    /* 3. the chunk gradients */
    k_bwd<GT><<<gw, NTH, SMEM_BWD, s>>>(p.G, q, k, v, gk, dout, a->scale, states, dinit, dsbh,
                                        dsseg, (bf16 *)a->dq, (bf16 *)a->dk, (bf16 *)a->dv,
                                        (GT *)a->dgk, a->dh0);
    return launched(err, "backward kernels");
}

/* v2 forward: pre-pass over the pieces of all segments but the last (their local states), scan
 * (the state leaving each of those pieces), then the output walk, one CTA per segment. */
template <typename GT, bool LG>
graft_status forward2_t(const gla_cuda_args *a, const Plan2 &p, cudaStream_t s, graft_err *err) {
    const bf16 *q = (const bf16 *)a->q, *k = (const bf16 *)a->k, *v = (const bf16 *)a->v;
    const GT *gk = (const GT *)a->gk;
    const LrGate lg = {(const bf16 *)a->gate_lr, (const bf16 *)a->gate_w1, (const bf16 *)a->gate_bias,
                       a->gate_inv_gamma};
    const NormGate ng = {(const bf16 *)a->norm_gh, (const bf16 *)a->norm_w, a->norm_ldg, a->norm_eps};
    const Geo2 &G = p.G;
    unsigned char *w = (unsigned char *)a->work;
    float *loc = G.NP > 1 ? (float *)(w + p.off_loc) : nullptr;
    float *gsum = G.NP > 1 ? (float *)(w + p.off_gsum) : nullptr;
    const int walk1 = walk_ctas_per_sm() == 2;
    if (walk1) cudaFuncSetAttribute(k_walk2<GT, 1, LG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_WALK1);
    else cudaFuncSetAttribute(k_walk2<GT, 2, LG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_WALK2);
    const int fwd1 = fwd_ctas_per_sm() == 2;
    const unsigned BH = (unsigned)p.BH;
    const int npf = (G.nseg - 1) * G.pps;
    if (npf > 0) {
        if (walk1) k_walk2<GT, 1, LG><<<dim3(npf, BH), NTH, SMEM_WALK1, s>>>(G, k, v, gk, lg, loc, gsum);
        else k_walk2<GT, 2, LG><<<dim3(npf, BH), NTH, SMEM_WALK2, s>>>(G, k, v, gk, lg, loc, gsum);
        k_scan2<<<dim3(D * D / (4 * NTH), BH), NTH, 0, s>>>(loc, gsum, G.NP, npf, a->h0);
    }
    const dim3 gf(G.nseg, BH);
    if (fwd1) {
        cudaFuncSetAttribute(k_fwd2<GT, 1, LG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_FWD1);
        /* 2 x (111 + 1) KB leaves no room for a carveout below the maximum */
        cudaFuncSetAttribute(k_fwd2<GT, 1, LG>, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
        k_fwd2<GT, 1, LG><<<gf, NTH, SMEM_FWD1, s>>>(G, q, k, v, gk, lg, ng, a->scale, a->h0, loc, (bf16 *)a->o, a->ht);
    } else {
        cudaFuncSetAttribute(k_fwd2<GT, 2, LG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_FWD2);
        k_fwd2<GT, 2, LG><<<gf, NTH, SMEM_FWD2, s>>>(G, q, k, v, gk, lg, ng, a->scale, a->h0, loc, (bf16 *)a->o, a->ht);
    }
    return launched(err, "forward kernels");
}

/* T == 0: the final state is the initial one (forward), dh0 = dht (backward). */
graft_status pass_state(const float *src, float *dst, int64_t BH, cudaStream_t s, graft_err *err) {
    if (!dst) return GRAFT_STATUS_OK;
    size_t bytes = (size_t)BH * D * D * 4;
    cudaError_t e = src ? cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s)
                        : cudaMemsetAsync(dst, 0, bytes, s);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla_cuda: state copy: %s",
                             cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

graft_status check_work(const gla_cuda_args *a, size_t total, graft_err *err) {
    if (total > 0 && (!a->work || a->work_bytes < total))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda: workspace: %zu bytes at %p, expected at least %zu "
                             "(gla_cuda_work_bytes)",
                             a->work_bytes, a->work, total);
    return GRAFT_STATUS_OK;
}

} /* namespace */

extern "C" {

gla_cuda_args gla_cuda_default_args(void) {
    gla_cuda_args a;
    memset(&a, 0, sizeof a);
    a.K = a.V = D;
    a.scale = 0.08838834764831845f;
    return a;
}

size_t gla_cuda_work_bytes(const gla_cuda_args *a, int backward) {
    if (!a) return 0;
    return backward ? make_plan(a).total : make_plan2(a).total;
}

graft_status gla_cuda_forward(const gla_cuda_args *a, void *stream, graft_err *err) {
    graft_status st = check_args(a, 0, err);
    if (st != GRAFT_STATUS_OK) return st;
    cudaStream_t s = (cudaStream_t)stream;
    if (a->B == 0 || a->H == 0) return GRAFT_STATUS_OK;
    if (a->T == 0) return pass_state(a->h0, a->ht, a->B * a->H, s, err);
    Plan2 p = make_plan2(a);
    if ((st = check_work(a, p.total, err)) != GRAFT_STATUS_OK) return st;
    if (a->gate_lr) return forward2_t<float, true>(a, p, s, err);
    return a->gk_bf16 ? forward2_t<bf16, false>(a, p, s, err) : forward2_t<float, false>(a, p, s, err);
}

graft_status gla_cuda_backward(const gla_cuda_args *a, void *stream, graft_err *err) {
    graft_status st = check_args(a, 1, err);
    if (st != GRAFT_STATUS_OK) return st;
    cudaStream_t s = (cudaStream_t)stream;
    if (a->B == 0 || a->H == 0) return GRAFT_STATUS_OK;
    if (a->T == 0) return pass_state(a->dht, a->dh0, a->B * a->H, s, err);
    Plan p = make_plan(a);
    if ((st = check_work(a, p.total, err)) != GRAFT_STATUS_OK) return st;
    return a->gk_bf16 ? backward_t<bf16>(a, p, s, err) : backward_t<float>(a, p, s, err);
}

graft_status gla_cuda_decode(int64_t B, int64_t H, int64_t K, int64_t V, const void *q,
                             const void *k, const void *v, const void *gk, int gk_bf16,
                             float scale, float *state, void *o, void *stream, graft_err *err) {
    if (B < 0 || H < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda_decode: shape: B=%lld H=%lld, expected >= 0", (long long)B,
                             (long long)H);
    if (K != D || V != D)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla_cuda_decode: head dims: K=%lld V=%lld, expected K = V = 128",
                             (long long)K, (long long)V);
    if (B * H == 0) return GRAFT_STATUS_OK;
    if (B * H > 2147483647LL)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "gla_cuda_decode: B*H too large");
    if (!q || !k || !v || !gk || !state || !o)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda_decode: q, k, v, gk, state, o: a NULL pointer");
    cudaStream_t s = (cudaStream_t)stream;
    if (gk_bf16)
        k_decode<bf16><<<(unsigned)(B * H), NTH, 0, s>>>((const bf16 *)q, (const bf16 *)k,
                                                         (const bf16 *)v, (const bf16 *)gk, scale,
                                                         state, (bf16 *)o);
    else
        k_decode<float><<<(unsigned)(B * H), NTH, 0, s>>>((const bf16 *)q, (const bf16 *)k,
                                                          (const bf16 *)v, (const float *)gk,
                                                          scale, state, (bf16 *)o);
    return launched(err, "decode kernel");
}

graft_status gla_cuda_decode_vfirst(int64_t B, int64_t H, int64_t K, int64_t V, const void *q,
                                    const void *k, const void *v, const void *gk, int gk_bf16,
                                    float scale, float *state, int64_t slot_floats, void *o,
                                    void *stream, graft_err *err) {
    if (B < 0 || H < 0 || slot_floats < H * K * V)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda_decode_vfirst: B=%lld H=%lld slot %lld floats, expected >= 0 and "
                             "a slot of at least H*K*V floats", (long long)B, (long long)H,
                             (long long)slot_floats);
    if (K != D || V != D)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla_cuda_decode_vfirst: head dims: K=%lld V=%lld, expected K = V = 128",
                             (long long)K, (long long)V);
    if (B * H == 0) return GRAFT_STATUS_OK;
    if (B * H > 2147483647LL)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "gla_cuda_decode_vfirst: B*H too large");
    if (!q || !k || !v || !gk || !state || !o)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda_decode_vfirst: q, k, v, gk, state, o: a NULL pointer");
    cudaStream_t s = (cudaStream_t)stream;
    if (gk_bf16)
        k_decode_vfirst<bf16><<<(unsigned)(B * H), NTH, 0, s>>>(
            (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)gk, scale, state,
            slot_floats, (int)H, (bf16 *)o);
    else
        k_decode_vfirst<float><<<(unsigned)(B * H), NTH, 0, s>>>(
            (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const float *)gk, scale, state,
            slot_floats, (int)H, (bf16 *)o);
    return launched(err, "decode (V-first) kernel");
}

} /* extern "C" */
