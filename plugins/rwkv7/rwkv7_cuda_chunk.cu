/* plugins/rwkv7/rwkv7_cuda_chunk.cu: the chunked (WY / DPLR, spec/rwkv7.md §5) forward of the
 * RWKV-7 core on tensor cores, an A/B alternative to the recurrent k_fwd of rwkv7_cuda.cu, selected
 * by rwkv7_cuda_forward when GRAFT_RWKV7_CHUNK=1. Same arguments, same outputs (o, ht, and when
 * `work` is given the states S_n every 64 tokens and the pseudo-values sa_t = S_{t−1}ᵀ a_t that the
 * recurrent backward reads). Not here: the backward (stays recurrent), decode.
 * CPU reference of exactly this algorithm and its rounding: tests/ops/rwkv7/chunk_reference.c.
 *
 * Per (sequence, head) and chunk n of C = 64 tokens (local rows i, j; padded rows of a partial last
 * chunk have r = k = a = b = v = 0 and w = 0), with G = log2(e)·(inclusive cumsum of w) in fp32,
 * E_i = G_{i−1}, Λ = G_63, ρ = G_31:
 *   k_prep (parallel over (b, h, n), 8 warps):
 *     r̂ = r 2^{G−ρ}, k̂ = k 2^{ρ−G}, b̂ = b 2^{ρ−G}, â = a 2^{E−ρ}       (fp32; |exponent| ≤ 32·0.61·
 *                                                                        log2 e ≈ 28: w ≥ −c_w only)
 *     A_qk = r̂ k̂ᵀ, A_qb = r̂ b̂ᵀ (j ≤ i), A_ak = â k̂ᵀ, A_ab = â b̂ᵀ (j < i)  (3xTF32 mma)
 *     T = (I − A_ab)^{-1} (fp32 forward substitution), TA = T A_ak, Wm = T (a 2^E)   (3xTF32)
 *     images (fp32, per chunk): Wm, rg = r 2^G, kt = k 2^{Λ−G}, bt = b 2^{Λ−G} (C × 128),
 *     TA, A_qk, A_qb (C × C), el = 2^Λ (128).
 *   k_scan (sequential over n, one CTA per (b, h, 16 value columns), 4 warps, S fp32 in mma
 *     accumulators):  X = TA V + Wm S_n,  O = rg S_n + A_qk V + A_qb X,
 *                     S_{n+1} = Diag(el) S_n + ktᵀ V + btᵀ X.
 * "3xTF32": an fp32 operand x enters as tf32 hi = rna(x) plus lo = rna(x − hi); a·b ≈ hi·hi +
 * hi·lo + lo·hi (~fp32 accuracy). bf16 inputs (v) are exact in tf32 and are not split. The O
 * products use OSPLIT terms (see below): o is stored in bf16 anyway.
 * The exponent split is the spec's safe_gate form: valid for w ≥ −c_w·(1+ε) (the layer's w =
 * −c_w σ(·)); an unbounded w (below about −2.7) would overflow 2^{ρ−G} — the recurrent kernel has no
 * such limit, which is why this path is opt-in.
 * Workspace: the images, 180.7 KB per (b, h, chunk), from a->chunk_work when given (test, bench),
 * else from cudaMallocAsync on the stream (freed on the stream after the scan).
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rwkv7_cuda.cuh"

namespace {

typedef __nv_bfloat16 bf16;

constexpr int D = 128;    /* K = V = 128                                                           */
constexpr int C = 64;     /* chunk: equals rwkv7_cuda.cu's checkpoint interval CK                 */
constexpr int PTH = 256;  /* k_prep threads                                                       */
constexpr int NVS = 16;   /* value columns per k_scan CTA                                         */
constexpr int STH = 128;  /* k_scan threads                                                       */
constexpr int LDX = 68;   /* k_prep smem row: 64 channels + 4 (row-major fragment reads conflict-free) */
constexpr int LDB = 24;   /* k_scan smem row: 16 columns + 8 (B-fragment reads conflict-free)    */
constexpr float LOG2E = 1.4426950408889634f;
/* O = rg S + A_qk V + A_qb X: false = one tf32 rounding of each operand, true = 3xTF32. o is bf16:
 * the reference gives o NMSE vs the fp32 recurrence 1.4e-6 (false) / 4e-9 (true), both far under
 * the 2e-4 conformance bound (bench/results/rwkv7-chunk-emulation-2026-12-07.md). */
constexpr bool OSPLIT = false;

/* image layout, floats, per (bh, chunk) */
constexpr int OFF_WM = 0, OFF_RG = C * D, OFF_KT = 2 * C * D, OFF_BT = 3 * C * D;
constexpr int OFF_TA = 4 * C * D, OFF_AQK = OFF_TA + C * C, OFF_AQB = OFF_AQK + C * C;
constexpr int OFF_EL = OFF_AQB + C * C, IMG = OFF_EL + D;

struct Geo {
    int64_t T, H;
};
__device__ __forceinline__ int64_t rowoff(const Geo &g, int64_t b, int64_t t, int64_t h) {
    return ((b * g.T + t) * g.H + h) * D;
}
__device__ __forceinline__ float ld1(const float *p) { return *p; }
__device__ __forceinline__ float ld1(const bf16 *p) { return __bfloat162float(*p); }

__device__ __forceinline__ uint32_t tf32(float x) {
    uint32_t u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
    return u;
}
__device__ __forceinline__ void mma8(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* c[j] += A · B_j for NT 16 × 8 output tiles of one warp, over K = 8·KS:
 *   A(m, k) = A[m·am + k·ak] (16 rows), B_j(k, n) = B[k·bk + (8j + n)·bn].
 * Fragments of mma.m16n8k8.tf32 (g = lane / 4, t = lane % 4): a0 (g, t), a1 (g+8, t), a2 (g, t+4),
 * a3 (g+8, t+4); b0 (t, g), b1 (t+4, g); c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
 * SA / SB: split that operand into tf32 hi + lo (3 products when both, 2 when one, else 1). */
template <int KS, int NT, bool SA, bool SB>
__device__ __forceinline__ void mma_rows(float (*c)[4], const float *A, int am, int ak, const float *B,
                                         int bk, int bn) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll 2 /* full unrolling hoists every load: 255 registers and spills */
    for (int ks = 0; ks < KS; ks++) {
        const int k = ks * 8 + t;
        const float a[4] = {A[g * am + k * ak], A[(g + 8) * am + k * ak], A[g * am + (k + 4) * ak],
                            A[(g + 8) * am + (k + 4) * ak]};
        uint32_t ah[4], al[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            ah[i] = tf32(a[i]);
            al[i] = SA ? tf32(a[i] - __uint_as_float(ah[i])) : 0u;
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const float *Bj = B + 8 * j * bn;
            const float b[2] = {Bj[k * bk + g * bn], Bj[(k + 4) * bk + g * bn]};
            uint32_t bh[2], bl[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                bh[i] = tf32(b[i]);
                bl[i] = SB ? tf32(b[i] - __uint_as_float(bh[i])) : 0u;
            }
            if (SA) mma8(c[j], al, bh);
            if (SB) mma8(c[j], ah, bl);
            mma8(c[j], ah, bh);
        }
    }
}

/* Lower-triangular 64 × 64 tile list: row tile I (16 rows), column tile J (8 columns), J ≤ 2I + 1:
 * 2 + 4 + 6 + 8 = 20 tiles. */
__device__ __forceinline__ void tri_tile(int idx, int &I, int &J) {
    I = idx < 2 ? 0 : idx < 6 ? 1 : idx < 12 ? 2 : 3;
    J = idx - (I == 0 ? 0 : I == 1 ? 2 : I == 2 ? 6 : 12);
}
/* Warp `warp`'s s-th (of 10) tile of the four A matrices (80 tiles over 8 warps): which matrix
 * (0 A_qk, 1 A_qb, 2 A_ak, 3 A_ab: idx / 20) and its (I, J) */
__device__ __forceinline__ void warp_tile(int warp, int s, int &mat, int &I, int &J) {
    const int idx = warp + 8 * s;
    mat = idx / 20;
    tri_tile(idx % 20, I, J);
}

/* ---- k_prep: one CTA per (chunk, b·h) ------------------------------------------------------- */

/* Inclusive log2 cumsum of w for one channel over the chunk's rows (padded rows w = 0): ρ = G_31,
 * Λ = G_63. Summed in natural-log units in fp32, then scaled (the reference does the same). */
template <typename WT>
__device__ __forceinline__ void gate_ends(const WT *w, const Geo &g, int64_t b, int64_t h, int64_t t0,
                                          int nv, int c, float &rho, float &lam) {
    float acc = 0.f;
    rho = 0.f;
    for (int t = 0; t < C; t++) {
        if (t < nv) acc += ld1(w + rowoff(g, b, t0 + t, h) + c);
        if (t == 31) rho = acc * LOG2E;
    }
    lam = acc * LOG2E;
}

template <typename WT>
__global__ void __launch_bounds__(PTH) k_prep(Geo g, const bf16 *r, const WT *w, const bf16 *k,
                                              const bf16 *a, const bf16 *bb, float *img_all) {
    extern __shared__ float4 smem4[];
    float *xs = reinterpret_cast<float *>(smem4); /* 4 × [C][LDX]                                */
    float *Xr = xs, *Xk = xs + C * LDX, *Xa = xs + 2 * C * LDX, *Xb = xs + 3 * C * LDX;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
    const int n = blockIdx.x;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H, NC = gridDim.x;
    const int64_t t0 = (int64_t)n * C;
    const int nv = g.T - t0 < C ? (int)(g.T - t0) : C;
    float *img = img_all + (bh * NC + n) * (int64_t)IMG;
    const int cl = tid & 63, q = tid >> 6; /* channel within the half, row quarter              */

    /* phase 1: the four A's over two channel halves, accumulators in registers (10 tiles a warp:
     * tile s of warp w is idx = w + 8s of mat·20 + tri index; mat 0 A_qk, 1 A_qb, 2 A_ak, 3 A_ab) */
    float acc[10][1][4];
#pragma unroll
    for (int s = 0; s < 10; s++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[s][0][i] = 0.f;
    for (int hf = 0; hf < 2; hf++) {
        const int c = hf * 64 + cl;
        float rho, lam;
        gate_ends(w, g, b, h, t0, nv, c, rho, lam);
        float run = 0.f;
        for (int t = 0; t < C; t++) {
            const int64_t off = rowoff(g, b, t0 + t, h) + c;
            const float Ep = run * LOG2E;
            if (t < nv) run += ld1(w + off);
            const float G = run * LOG2E;
            if ((t >> 4) != q) continue;
            float rv = 0.f, kv = 0.f, av = 0.f, bv = 0.f;
            if (t < nv) {
                rv = __bfloat162float(r[off]), kv = __bfloat162float(k[off]);
                av = __bfloat162float(a[off]), bv = __bfloat162float(bb[off]);
            }
            const float fk = exp2f(rho - G), fl = exp2f(lam - G);
            Xr[t * LDX + cl] = rv * exp2f(G - rho);
            Xk[t * LDX + cl] = kv * fk;
            Xb[t * LDX + cl] = bv * fk;
            Xa[t * LDX + cl] = av * exp2f(Ep - rho);
            img[OFF_RG + t * D + c] = rv * exp2f(G);
            img[OFF_KT + t * D + c] = kv * fl;
            img[OFF_BT + t * D + c] = bv * fl;
        }
        if (q == 0) img[OFF_EL + c] = exp2f(lam);
        __syncthreads();
#pragma unroll
        for (int s = 0; s < 10; s++) {
            int mat, I, J;
            warp_tile(warp, s, mat, I, J);
            const float *L = (mat < 2 ? Xr : Xa) + 16 * I * LDX;
            const float *R = ((mat & 1) ? Xb : Xk) + 8 * J * LDX;
            mma_rows<8, 1, true, true>(acc[s], L, LDX, 1, R, 1, LDX);
        }
        __syncthreads();
    }

    /* phase 2: masked A's: A_qk, A_qb (j ≤ i) to the image, A_ak, A_ab (j < i) to smem; the
     * entries no tile covers are zero */
    float *Sab = xs, *Sak = xs + C * LDX, *Ts = xs + 2 * C * LDX, *Se = xs + 3 * C * LDX;
    for (int i = tid; i < 2 * C * LDX; i += PTH) xs[i] = 0.f;
    for (int i = tid; i < C * C; i += PTH) {
        const int row = i / C, col = i % C;
        if (col / 8 > 2 * (row / 16) + 1) img[OFF_AQK + i] = 0.f, img[OFF_AQB + i] = 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int s = 0; s < 10; s++) {
        int mat, I, J;
        warp_tile(warp, s, mat, I, J);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = 16 * I + gq + (e >> 1) * 8, col = 8 * J + 2 * tq + (e & 1);
            const bool keep = mat < 2 ? col <= row : col < row;
            const float v = keep ? acc[s][0][e] : 0.f;
            if (mat == 0) img[OFF_AQK + row * C + col] = v;
            else if (mat == 1) img[OFF_AQB + row * C + col] = v;
            else if (mat == 2) Sak[row * LDX + col] = v;
            else Sab[row * LDX + col] = v;
        }
    }
    __syncthreads();

    /* phase 3: T = (I − A_ab)^{-1}, column m by forward substitution (j increasing, fmaf) */
    if (tid < C) {
        const int m = tid;
        for (int i = 0; i < C; i++) {
            float s = i == m ? 1.f : 0.f;
            for (int j = 0; j < i; j++) s = fmaf(Sab[i * LDX + j], Ts[j * LDX + m], s);
            Ts[i * LDX + m] = i < m ? 0.f : s;
        }
    }
    __syncthreads();

    /* phase 4: TA = T A_ak (strictly lower; upper tiles zero) */
    for (int i = tid; i < C * C; i += PTH) {
        const int row = i / C, col = i % C;
        if (col / 8 > 2 * (row / 16) + 1) img[OFF_TA + i] = 0.f;
    }
    for (int s = 0; s < 3; s++) {
        const int idx = warp + 8 * s;
        if (idx >= 20) break;
        int I, J;
        tri_tile(idx, I, J);
        float cta[1][4] = {{0.f, 0.f, 0.f, 0.f}};
        mma_rows<8, 1, true, true>(cta, Ts + 16 * I * LDX, LDX, 1, Sak + 8 * J, LDX, 1);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = 16 * I + gq + (e >> 1) * 8, col = 8 * J + 2 * tq + (e & 1);
            img[OFF_TA + row * C + col] = cta[0][e];
        }
    }

    /* phase 5: Wm = T (a 2^E), by channel halves (a 2^E staged in Se) */
    for (int hf = 0; hf < 2; hf++) {
        const int c = hf * 64 + cl;
        float run = 0.f;
        for (int t = 0; t < C; t++) {
            const int64_t off = rowoff(g, b, t0 + t, h) + c;
            const float Ep = run * LOG2E;
            if (t < nv) run += ld1(w + off);
            if ((t >> 4) != q) continue;
            const float av = t < nv ? __bfloat162float(a[off]) : 0.f;
            Se[t * LDX + cl] = av * exp2f(Ep);
        }
        __syncthreads();
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int idx = warp + 8 * s, I = idx >> 3, J = idx & 7;
            float cw[1][4] = {{0.f, 0.f, 0.f, 0.f}};
            mma_rows<8, 1, true, true>(cw, Ts + 16 * I * LDX, LDX, 1, Se + 8 * J, LDX, 1);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = 16 * I + gq + (e >> 1) * 8, col = hf * 64 + 8 * J + 2 * tq + (e & 1);
                img[OFF_WM + row * D + col] = cw[0][e];
            }
        }
        __syncthreads();
    }
}

/* f(rr, j, e, row, col) over a warp's state fragments S[2][2][4] (the mma m16n8 C layout): row of
 * S (of 128) and column within the CTA's 16 value columns. */
template <class F>
__device__ __forceinline__ void s_frag_each(int warp, int gq, int tq, F f) {
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) f(rr, j, e, 32 * warp + 16 * rr + gq + (e >> 1) * 8, 8 * j + 2 * tq + (e & 1));
}

/* ---- k_scan: one CTA per (16 value columns, b·h), sequential over chunks --------------------- */

__global__ void __launch_bounds__(STH) k_scan(Geo g, int64_t NC, const float *img_all, const bf16 *v,
                                              const float *h0, bf16 *o, float *ht, float *ck,
                                              float *sa) {
    __shared__ float4 sm4[(D + 2 * C) * LDB / 4];
    float *Ss = reinterpret_cast<float *>(sm4), *Xs = Ss + D * LDB, *Vs = Xs + C * LDB;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
    const int e0 = blockIdx.x * NVS;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H;

    /* S rows 32·warp + 16·rr + gq (+8), columns e0 + 8j + 2tq (+1) */
    float S[2][2][4];
    s_frag_each(warp, gq, tq, [&](int rr, int j, int e, int row, int col) {
        S[rr][j][e] = h0 ? h0[(bh * D + row) * D + e0 + col] : 0.f;
    });

    for (int64_t n = 0; n < NC; n++) {
        const float *img = img_all + (bh * NC + n) * (int64_t)IMG;
        const int64_t t0 = n * C;
        const int nv = g.T - t0 < C ? (int)(g.T - t0) : C;
        __syncthreads(); /* the previous chunk is done with Ss, Xs, Vs */
        {   /* V slice: row tid / 2, 8 columns */
            const int row = tid >> 1, c8 = (tid & 1) * 8;
            float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            if (row < nv) {
                uint4 x = *reinterpret_cast<const uint4 *>(v + rowoff(g, b, t0 + row, h) + e0 + c8);
                const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&x);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 u = __bfloat1622float2(p[i]);
                    f[2 * i] = u.x, f[2 * i + 1] = u.y;
                }
            }
#pragma unroll
            for (int i = 0; i < 8; i++) Vs[row * LDB + c8 + i] = f[i];
        }
        s_frag_each(warp, gq, tq, [&](int rr, int j, int e, int row, int col) {
            Ss[row * LDB + col] = S[rr][j][e];
            if (ck) ck[((bh * NC + n) * D + row) * D + e0 + col] = S[rr][j][e];
        });
        __syncthreads();

        /* X rows 16·warp.. (2 column tiles) = TA V + Wm S */
        float X[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        mma_rows<8, 2, true, false>(X, img + OFF_TA + 16 * warp * C, C, 1, Vs, LDB, 1);
        mma_rows<16, 2, true, true>(X, img + OFF_WM + 16 * warp * D, D, 1, Ss, LDB, 1);
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = 16 * warp + gq + (e >> 1) * 8, col = 8 * j + 2 * tq + (e & 1);
                Xs[row * LDB + col] = X[j][e];
                if (sa && row < nv) sa[rowoff(g, b, t0 + row, h) + e0 + col] = X[j][e];
            }
        __syncthreads();

        /* O rows 16·warp.. = rg S + A_qk V + A_qb X */
        float O[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        mma_rows<16, 2, OSPLIT, OSPLIT>(O, img + OFF_RG + 16 * warp * D, D, 1, Ss, LDB, 1);
        mma_rows<8, 2, OSPLIT, false>(O, img + OFF_AQK + 16 * warp * C, C, 1, Vs, LDB, 1);
        mma_rows<8, 2, OSPLIT, OSPLIT>(O, img + OFF_AQB + 16 * warp * C, C, 1, Xs, LDB, 1);
        if (o) {
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    const int row = 16 * warp + gq + hh * 8, col = e0 + 8 * j + 2 * tq;
                    if (row < nv)
                        *reinterpret_cast<__nv_bfloat162 *>(o + rowoff(g, b, t0 + row, h) + col) =
                            __floats2bfloat162_rn(O[j][2 * hh], O[j][2 * hh + 1]);
                }
        }

        /* S ← Diag(el) S + ktᵀ V + btᵀ X: A(m = c, k = j) = kt[j][c] */
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int r0 = 32 * warp + 16 * rr;
            const float l0 = img[OFF_EL + r0 + gq], l1 = img[OFF_EL + r0 + gq + 8];
#pragma unroll
            for (int j = 0; j < 2; j++) {
                S[rr][j][0] *= l0, S[rr][j][1] *= l0, S[rr][j][2] *= l1, S[rr][j][3] *= l1;
            }
            mma_rows<8, 2, true, false>(S[rr], img + OFF_KT + r0, 1, D, Vs, LDB, 1);
            mma_rows<8, 2, true, true>(S[rr], img + OFF_BT + r0, 1, D, Xs, LDB, 1);
        }
    }
    if (ht)
        s_frag_each(warp, gq, tq, [&](int rr, int j, int e, int row, int col) {
            ht[(bh * D + row) * D + e0 + col] = S[rr][j][e];
        });
}

constexpr size_t PREP_SMEM = (size_t)4 * C * LDX * 4;

template <typename WT> void launch_prep(const rwkv7_cuda_args *a, int64_t NC, float *img, cudaStream_t s) {
    cudaFuncSetAttribute(k_prep<WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)PREP_SMEM);
    Geo g{a->T, a->H};
    k_prep<WT><<<dim3((unsigned)NC, (unsigned)(a->B * a->H)), PTH, PREP_SMEM, s>>>(
        g, (const bf16 *)a->r, (const WT *)a->w, (const bf16 *)a->k, (const bf16 *)a->a,
        (const bf16 *)a->b, img);
}

} /* namespace */

extern "C" {

static int chunk_state = -1; /* GRAFT_RWKV7_CHUNK=1 (read once), or rwkv7_cuda_chunk_enable */

int rwkv7_cuda_chunk_enabled(void) {
    if (chunk_state < 0) {
        const char *e = getenv("GRAFT_RWKV7_CHUNK");
        chunk_state = e && e[0] == '1' && e[1] == 0;
    }
    return chunk_state;
}

void rwkv7_cuda_chunk_enable(int on) { chunk_state = on != 0; }

int rwkv7_cuda_chunk_supported(const rwkv7_cuda_args *a) {
    return a && a->K == D && a->V == D && a->T > 0 && a->B * a->H > 0 &&
           (a->T + C - 1) / C <= 2147483647LL && a->B * a->H <= 65535;
}

size_t rwkv7_cuda_chunk_work_bytes(const rwkv7_cuda_args *a) {
    if (!a || a->B < 0 || a->T < 0 || a->H < 0) return 0;
    return (size_t)(a->B * a->H) * (size_t)((a->T + C - 1) / C) * IMG * sizeof(float);
}

graft_status rwkv7_cuda_chunk_forward(const rwkv7_cuda_args *a, float *ck, float *sa, void *stream,
                                      graft_err *err) {
    cudaStream_t s = (cudaStream_t)stream;
    const int64_t NC = (a->T + C - 1) / C;
    const size_t need = rwkv7_cuda_chunk_work_bytes(a);
    float *img = (float *)a->chunk_work;
    const bool own = img == nullptr;
    if (!own && a->chunk_work_bytes < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7_cuda_forward (chunked): chunk_work: %zu bytes, expected at least %zu "
                             "(rwkv7_cuda_chunk_work_bytes) or NULL",
                             a->chunk_work_bytes, need);
    if (own) {
        cudaError_t e = cudaMallocAsync((void **)&img, need, s);
        if (e != cudaSuccess)
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7_cuda (chunked): cudaMallocAsync %zu bytes: %s",
                                 need, cudaGetErrorString(e));
    }
    if (a->w_bf16) launch_prep<bf16>(a, NC, img, s);
    else launch_prep<float>(a, NC, img, s);
    Geo g{a->T, a->H};
    k_scan<<<dim3(D / NVS, (unsigned)(a->B * a->H)), STH, 0, s>>>(g, NC, img, (const bf16 *)a->v, a->h0,
                                                                 (bf16 *)a->o, a->ht, ck, sa);
    cudaError_t e = cudaGetLastError();
    if (own) cudaFreeAsync(img, s);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7_cuda: chunked forward kernels: %s",
                             cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

} /* extern "C" */
