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
 *     T = (I − A_ab)^{-1} (fp32 forward substitution, 4 lanes a column), TA = T A_ak, Wm = T (a 2^E)
 *     images (fp32, per chunk): Wm, rg = r 2^G, kt = k 2^{Λ−G}, bt = b 2^{Λ−G} (C × 128),
 *     TA, A_qk, A_qb (C × C), el = 2^Λ (128).
 *   k_scan (sequential over n; a cluster of 8 CTAs per (b, h), one per 16 value columns, 8 warps,
 *     S fp32 in mma accumulators; the image arrives by multicast bulk copies, see k_scan):
 *                     X = TA V + Wm S_n,  O = rg S_n + A_qk V + A_qb X,
 *                     S_{n+1} = Diag(el) S_n + ktᵀ V + btᵀ X.
 *   Needs compute capability 9.0 (clusters, cp.async.bulk): rwkv7_cuda_chunk_supported checks.
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
constexpr int STH = 256;  /* k_scan threads: 8 warps, one 16 × 8 tile of X and O, 16 rows of S each */
constexpr int LDX = 68;   /* k_prep smem row: 64 channels + 4 (row-major fragment reads conflict-free) */
constexpr int LDB = 24;   /* k_scan smem row: 16 columns + 8 (B-fragment reads conflict-free)    */
constexpr float LOG2E = 1.4426950408889634f;
/* O = rg S + A_qk V + A_qb X: false = one tf32 rounding of each operand, true = 3xTF32. o is bf16:
 * the reference gives o NMSE vs the fp32 recurrence 1.4e-6 (false) / 4e-9 (true), both far under
 * the 2e-4 conformance bound (bench/results/rwkv7-chunk-emulation-2026-12-07.md). */
constexpr bool OSPLIT = false;

/* image layout, floats, per (bh, chunk): three contiguous groups, one per k_scan phase, so each is
 * one bulk copy (G1 = TA, Wm for X; G2 = rg, A_qk, A_qb for O; G3 = ktᵀ, btᵀ, el for the state). Every
 * matrix is stored as the A operand of its k_scan product, fragment-major (frag_off): a warp reads a
 * 16 × 8 tile as one float4 per lane, conflict-free, with no index arithmetic. */
constexpr int OFF_TA = 0, OFF_WM = C * C, G1_END = OFF_WM + C * D;
constexpr int OFF_RG = G1_END, OFF_AQK = OFF_RG + C * D, OFF_AQB = OFF_AQK + C * C, G2_END = OFF_AQB + C * C;
constexpr int OFF_KT = G2_END, OFF_BT = OFF_KT + D * C, OFF_EL = OFF_BT + D * C, IMG = OFF_EL + D;
static_assert(IMG == 4 * C * D + 3 * C * C + D, "image size");

/* Offset of element (m, k) of an A operand with K = 8·KT columns, fragment-major: tile (m / 16,
 * k / 8) is 128 floats, lane g·4 + t holds its {a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)}. */
__device__ __forceinline__ int frag_off(int KT, int m, int k) {
    const int r = m & 15, c = k & 7;
    return (((m >> 4) * KT + (k >> 3)) * 32 + (r & 7) * 4 + (c & 3)) * 4 + (r >> 3) + 2 * (c >> 2);
}

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

/* The tf32 operands of one k step: hi = rna(x), and with SPLIT lo = rna(x − hi) (else 0). */
template <bool SPLIT, int N>
__device__ __forceinline__ void tf32_split(const float (&x)[N], uint32_t (&hi)[N], uint32_t (&lo)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
        hi[i] = tf32(x[i]);
        lo[i] = SPLIT ? tf32(x[i] - __uint_as_float(hi[i])) : 0u;
    }
}
/* One k step of A·B into three accumulators (pass the same one thrice for a single chain): lo·hi
 * (SA), hi·lo (SB), then hi·hi. */
template <bool SA, bool SB>
__device__ __forceinline__ void mma_step(float cm[4], float cxa[4], float cxb[4], const uint32_t ah[4],
                                         const uint32_t al[4], const float (&b)[2]) {
    uint32_t bh[2], bl[2];
    tf32_split<SB>(b, bh, bl);
    if (SA) mma8(cxa, al, bh);
    if (SB) mma8(cxb, ah, bl);
    mma8(cm, ah, bh);
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
        tf32_split<SA>(a, ah, al);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const float *Bj = B + 8 * j * bn;
            const float b[2] = {Bj[k * bk + g * bn], Bj[(k + 4) * bk + g * bn]};
            mma_step<SA, SB>(c[j], c[j], c[j], ah, al, b);
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

template <typename WT>
__global__ void __launch_bounds__(PTH) k_prep(Geo g, const bf16 *r, const WT *w, const bf16 *k,
                                              const bf16 *a, const bf16 *bb, float *img_all) {
    extern __shared__ float4 smem4[];
    float *xs = reinterpret_cast<float *>(smem4); /* 4 × [C][LDX]                                */
    float *Xr = xs, *Xk = xs + C * LDX, *Xa = xs + 2 * C * LDX, *Xb = xs + 3 * C * LDX;
    float *Gs = xs + 4 * C * LDX; /* [C][D]: inclusive cumsum of w over the chunk's rows (natural log) */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
    const int n = blockIdx.x;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H, NC = gridDim.x;
    const int64_t t0 = (int64_t)n * C;
    const int nv = g.T - t0 < C ? (int)(g.T - t0) : C;
    float *img = img_all + (bh * NC + n) * (int64_t)IMG;
    const int cl = tid & 63, q = tid >> 6; /* channel within the half, row quarter              */

    /* phase 0: the chunk's w into shared memory in one parallel pass, then each channel's cumsum
     * there. (Walking w from global memory row by row, a dependent chain of 64 loads per channel,
     * three times, was slow: with phase 3's change below, k_prep went from 1.47 to 0.97 ms at
     * B4 x 2048 on an H100.) Padded rows are 0, so the sum stays put. */
#pragma unroll 8
    for (int i = tid; i < C * D; i += PTH) {
        const int t = i / D, c = i % D;
        Gs[i] = t < nv ? ld1(w + rowoff(g, b, t0 + t, h) + c) : 0.f;
    }
    __syncthreads();
    if (tid < D) {
        float run = 0.f;
        for (int t = 0; t < C; t++) run += Gs[t * D + tid], Gs[t * D + tid] = run;
    }
    __syncthreads();

    /* phase 1: the four A's over two channel halves, accumulators in registers (10 tiles a warp:
     * tile s of warp w is idx = w + 8s of mat·20 + tri index; mat 0 A_qk, 1 A_qb, 2 A_ak, 3 A_ab) */
    float acc[10][1][4];
#pragma unroll
    for (int s = 0; s < 10; s++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[s][0][i] = 0.f;
    for (int hf = 0; hf < 2; hf++) {
        const int c = hf * 64 + cl;
        const float rho = Gs[31 * D + c] * LOG2E, lam = Gs[(C - 1) * D + c] * LOG2E;
#pragma unroll 4
        for (int u = 0; u < 16; u++) {
            const int t = 16 * q + u;
            const int64_t off = rowoff(g, b, t0 + t, h) + c;
            const float Ep = t ? Gs[(t - 1) * D + c] * LOG2E : 0.f, G = Gs[t * D + c] * LOG2E;
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
            img[OFF_RG + frag_off(D / 8, t, c)] = rv * exp2f(G);
            img[OFF_KT + frag_off(C / 8, c, t)] = kv * fl; /* ktᵀ */
            img[OFF_BT + frag_off(C / 8, c, t)] = bv * fl;
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

    /* phase 2: masked A's: A_qk, A_qb (j ≤ i) to the image, A_ak, A_ab (j < i) to smem, where the
     * entries no tile covers are zero. The image's tiles above the diagonal blocks are left
     * unwritten: k_scan stops its k loop before them (nks = 2·mt + 2), for TA too. */
    float *Sab = xs, *Sak = xs + C * LDX, *Ts = xs + 2 * C * LDX, *Se = xs + 3 * C * LDX;
    for (int i = tid; i < 2 * C * LDX; i += PTH) xs[i] = 0.f;
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
            if (mat == 0) img[OFF_AQK + frag_off(C / 8, row, col)] = v;
            else if (mat == 1) img[OFF_AQB + frag_off(C / 8, row, col)] = v;
            else if (mat == 2) Sak[row * LDX + col] = v;
            else Sab[row * LDX + col] = v;
        }
    }
    __syncthreads();

    /* phase 3: T = (I − A_ab)^{-1} by forward substitution, column m by the 4 lanes tid = 4m + q:
     * T[i][m] = Σ_{j<i} A_ab[i][j] T[j][m] (i > m), lane q summing j = m + q, m + q + 4, ... (fmaf,
     * j increasing), the four sums added as (p0 + p1) + (p2 + p3). One lane per column, a chain of
     * up to 2016 dependent fmaf, was the other change measured with phase 0's. */
    {
        const int m = tid >> 2, qq = tid & 3;
        for (int i = 0; i < C; i++) {
            float p = 0.f;
            for (int j = m + qq; j < i; j += 4) p = fmaf(Sab[i * LDX + j], Ts[j * LDX + m], p);
            p += __shfl_xor_sync(0xffffffffu, p, 1);
            p += __shfl_xor_sync(0xffffffffu, p, 2);
            if (qq == 0) Ts[i * LDX + m] = i < m ? 0.f : i == m ? 1.f : p;
            __syncwarp();
        }
    }
    __syncthreads();

    /* phase 4: TA = T A_ak (strictly lower: its 20 lower tiles) */
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
            img[OFF_TA + frag_off(C / 8, row, col)] = cta[0][e];
        }
    }

    /* phase 5: Wm = T (a 2^E), by channel halves (a 2^E staged in Se) */
    for (int hf = 0; hf < 2; hf++) {
        const int c = hf * 64 + cl;
#pragma unroll 4
        for (int u = 0; u < 16; u++) {
            const int t = 16 * q + u;
            const float Ep = t ? Gs[(t - 1) * D + c] * LOG2E : 0.f;
            const float av = t < nv ? __bfloat162float(a[rowoff(g, b, t0 + t, h) + c]) : 0.f;
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
                img[OFF_WM + frag_off(D / 8, row, col)] = cw[0][e];
            }
        }
        __syncthreads();
    }
}

/* f(j, e, row, col) over a warp's state fragments S[2][4] (the mma m16n8 C layout; warp w holds
 * rows 16w..16w+15): row of S (of 128) and column within the CTA's 16 value columns. */
template <class F>
__device__ __forceinline__ void s_frag_each(int warp, int gq, int tq, F f) {
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) f(j, e, 16 * warp + gq + (e >> 1) * 8, 8 * j + 2 * tq + (e & 1));
}

/* c[j] += A · B_j as mma_rows, A fragment-major in shared memory (frag_off; `A` points at the
 * warp's first tile of its 16-row block, consecutive k tiles 128 floats apart), over ks < nks.
 * The hi·hi products and the two 3xTF32 correction terms go to three separate accumulators, added
 * into c at the end: three independent mma chains instead of one three times as long (k_scan runs
 * one CTA per SM, so it is the mma latency, not the throughput, that sets its pace). */
template <int NT, bool SA, bool SB>
__device__ __forceinline__ void mma_frag(float (*c)[4], const float *A, int nks, const float *B, int bk) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float m[NT][4], xa[NT][4], xb[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) m[j][i] = xa[j][i] = xb[j][i] = 0.f;
#pragma unroll 2
    for (int ks = 0; ks < nks; ks++) {
        const float4 a4 = *reinterpret_cast<const float4 *>(A + ks * 128 + lane * 4);
        const float a[4] = {a4.x, a4.y, a4.z, a4.w};
        uint32_t ah[4], al[4];
        tf32_split<SA>(a, ah, al);
        const int k = ks * 8 + t;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const float b[2] = {B[k * bk + 8 * j + g], B[(k + 4) * bk + 8 * j + g]};
            mma_step<SA, SB>(m[j], xa[j], xb[j], ah, al, b);
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) c[j][i] += m[j][i] + (xa[j][i] + xb[j][i]);
}

/* ---- k_scan: sequential over chunks; a cluster of 8 CTAs per b·h, one per 16 value columns ----
 *
 * Every CTA of a head needs the whole chunk image (the A operands are shared by all value columns),
 * 176.5 KB per chunk. Read from global memory by each of the 8 CTAs, through scalar loads in the mma
 * loop, the first version of this kernel waited on L2 latency at every k step (39 µs per chunk at
 * B = 1, 20 ms at T = 32768) and read the image 8 times. Here each CTA fetches one eighth of each
 * group with a bulk copy multicast to the whole cluster, so L2 sends every byte once per SM, as
 * large transfers, and the copies of a group for chunk n + 1 overlap the other two phases of chunk
 * n: G1 (TA, Wm) is refilled once every CTA is done with X, G2 (rg, A_qk, A_qb) once every CTA is
 * done with O, G3 (ktᵀ, btᵀ, el) once every CTA is done with the state update. "Done" is the
 * cluster barrier (arrive after the phase, wait one phase later, so it rarely stalls); "filled" is
 * the group's mbarrier in each CTA, which the copies of all 8 CTAs complete.
 * Measured (H100, 2026-12-07; bench/results/rwkv7-chunk-cuda-2026-12-07.md): the whole chunked forward
 * at B1 x 32768 went from 20.2 ms (first version) to 14.1 (this scan, 4 warps) and 10.9 ms (8 warps,
 * three mma chains, k_prep's two changes): still no faster than the recurrent kernel (10.8 ms).
 * ncu at B4 x 2048: 1.38 ms, one 8-warp CTA per SM, 4.3 cycles per issued instruction, DRAM 9%,
 * L2 30%: neither bound; the likely cost is each group's single phase of lead time for a copy
 * from DRAM (a hypothesis). Hence group_fill's L2 prefetch one chunk ahead (RWKV7_CHUNK_L2_AHEAD,
 * default on): compiled, not yet run on a GPU; bench/rwkv7_chunk_ab.sh measures it against 0. */
constexpr int CLU = D / NVS; /* CTAs per cluster = value-column slices */
__host__ __device__ constexpr int g_beg(int g) { return g == 0 ? 0 : g == 1 ? G1_END : G2_END; }
__host__ __device__ constexpr int g_end(int g) { return g == 0 ? G1_END : g == 1 ? G2_END : IMG; }
constexpr size_t SCAN_SMEM = (size_t)(IMG + (D + 2 * C) * LDB) * 4 + 3 * 8;

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cluster_arrive() {
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
}
#ifndef RWKV7_CHUNK_L2_AHEAD
#define RWKV7_CHUNK_L2_AHEAD 1
#endif
/* One thread per CTA: expect group g's bytes on this CTA's barrier, and copy this CTA's eighth of
 * it (for chunk image `src`) into the same offset of every CTA of the cluster. With `ahead` (the
 * image of the chunk after, or NULL) the same eighth of that one is prefetched into L2: a group
 * has only one phase of lead time in shared memory, too short for a fetch from DRAM. */
__device__ __forceinline__ void group_fill(int g, float *sm, uint64_t *bar, const float *src, int rank,
                                           const float *ahead = nullptr) {
    const uint32_t bytes = (uint32_t)(g_end(g) - g_beg(g)) * 4, part = bytes / CLU;
    if (RWKV7_CHUNK_L2_AHEAD && ahead)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(reinterpret_cast<const char *>(ahead) +
                                                                       (uint32_t)g_beg(g) * 4 + (uint32_t)rank * part),
                     "r"(part)
                     : "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar + g)), "r"(bytes)
                 : "memory");
    const uint32_t off = (uint32_t)g_beg(g) * 4 + (uint32_t)rank * part;
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                 " [%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(sm) + off),
                 "l"(reinterpret_cast<const char *>(src) + off), "r"(part), "r"(smem_u32(bar + g)),
                 "h"((uint16_t)((1u << CLU) - 1))
                 : "memory");
}

__global__ void __cluster_dims__(CLU, 1, 1) __launch_bounds__(STH)
    k_scan(Geo g, int64_t NC, const float *img_all, const bf16 *v, const float *h0, bf16 *o, float *ht,
           float *ck, float *sa) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    static_assert(NVS * CLU == D && (G1_END * 4) % (16 * CLU) == 0 && ((G2_END - G1_END) * 4) % (16 * CLU) == 0 &&
                      ((IMG - G2_END) * 4) % (16 * CLU) == 0,
                  "each CTA's share of a group is a whole number of 16-byte units");
    extern __shared__ float4 sm4[];
    float *im = reinterpret_cast<float *>(sm4); /* the chunk image, IMG floats */
    float *Ss = im + IMG, *Xs = Ss + D * LDB, *Vs = Xs + C * LDB;
    uint64_t *bar = reinterpret_cast<uint64_t *>(Vs + C * LDB);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
    const int rank = blockIdx.x; /* == the rank in the cluster: the grid is one cluster wide */
    const int e0 = rank * NVS;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H;
    const float *img_bh = img_all + bh * NC * (int64_t)IMG;

    if (tid == 0) {
        for (int i = 0; i < 3; i++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar + i)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    cluster_arrive(); /* every CTA's barriers exist before any copy signals them */
    cluster_wait();
    if (tid == 0)
        for (int i = 0; i < 3; i++) group_fill(i, im, bar, img_bh, rank, NC > 1 ? img_bh + IMG : nullptr);

    float S[2][4];
    s_frag_each(warp, gq, tq, [&](int j, int e, int row, int col) {
        S[j][e] = h0 ? h0[(bh * D + row) * D + e0 + col] : 0.f;
    });
    /* V slice of a chunk: row tid / 4, 4 columns; fetched a chunk ahead */
    const int vrow = tid >> 2, vc4 = (tid & 3) * 4;
    auto v_fetch = [&](int64_t n) {
        uint2 x = make_uint2(0, 0);
        if (n < NC && n * C + vrow < g.T) x = *reinterpret_cast<const uint2 *>(v + rowoff(g, b, n * C + vrow, h) + e0 + vc4);
        return x;
    };
    uint2 vnext = v_fetch(0);
    /* X and O: warp w computes the 16 × 8 tile (row tile mt, column tile nt) */
    const int mt = warp >> 1, nt = warp & 1;

    for (int64_t n = 0; n < NC; n++) {
        const int64_t t0 = n * C;
        const int nv = g.T - t0 < C ? (int)(g.T - t0) : C;
        const uint32_t par = (uint32_t)(n & 1);
        __syncthreads(); /* the previous chunk is done with Ss, Xs, Vs */
        {
            const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&vnext);
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float2 u = __bfloat1622float2(p[i]);
                Vs[vrow * LDB + vc4 + 2 * i] = u.x, Vs[vrow * LDB + vc4 + 2 * i + 1] = u.y;
            }
        }
        s_frag_each(warp, gq, tq, [&](int j, int e, int row, int col) {
            Ss[row * LDB + col] = S[j][e];
            if (ck) ck[((bh * NC + n) * D + row) * D + e0 + col] = S[j][e];
        });
        __syncthreads();
        vnext = v_fetch(n + 1);

        /* X tile = TA V + Wm S; TA is strictly lower: k tiles < 2·mt + 2 */
        mbar_wait(bar + 0, par);
        float X[1][4] = {{0.f, 0.f, 0.f, 0.f}};
        mma_frag<1, true, false>(X, im + OFF_TA + mt * (C / 8) * 128, 2 * mt + 2, Vs + 8 * nt, LDB);
        mma_frag<1, true, true>(X, im + OFF_WM + mt * (D / 8) * 128, D / 8, Ss + 8 * nt, LDB);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = 16 * mt + gq + (e >> 1) * 8, col = 8 * nt + 2 * tq + (e & 1);
            Xs[row * LDB + col] = X[0][e];
            if (sa && row < nv) sa[rowoff(g, b, t0 + row, h) + e0 + col] = X[0][e];
        }
        __syncthreads();
        if (n > 0) {
            cluster_wait(); /* every CTA is done with G3 of chunk n − 1 */
            if (tid == 0) group_fill(2, im, bar, img_bh + n * (int64_t)IMG, rank, n + 1 < NC ? img_bh + (n + 1) * (int64_t)IMG : nullptr);
        }
        cluster_arrive(); /* done with G1 */

        /* O tile = rg S + A_qk V + A_qb X (A_qk, A_qb lower: k tiles < 2·mt + 2) */
        mbar_wait(bar + 1, par);
        float O[1][4] = {{0.f, 0.f, 0.f, 0.f}};
        mma_frag<1, OSPLIT, OSPLIT>(O, im + OFF_RG + mt * (D / 8) * 128, D / 8, Ss + 8 * nt, LDB);
        mma_frag<1, OSPLIT, false>(O, im + OFF_AQK + mt * (C / 8) * 128, 2 * mt + 2, Vs + 8 * nt, LDB);
        mma_frag<1, OSPLIT, OSPLIT>(O, im + OFF_AQB + mt * (C / 8) * 128, 2 * mt + 2, Xs + 8 * nt, LDB);
        if (o) {
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int row = 16 * mt + gq + hh * 8, col = e0 + 8 * nt + 2 * tq;
                if (row < nv)
                    *reinterpret_cast<__nv_bfloat162 *>(o + rowoff(g, b, t0 + row, h) + col) =
                        __floats2bfloat162_rn(O[0][2 * hh], O[0][2 * hh + 1]);
            }
        }
        cluster_wait(); /* every CTA is done with G1 of chunk n */
        if (tid == 0 && n + 1 < NC) group_fill(0, im, bar, img_bh + (n + 1) * (int64_t)IMG, rank, n + 2 < NC ? img_bh + (n + 2) * (int64_t)IMG : nullptr);
        cluster_arrive(); /* done with G2 */

        /* S ← Diag(el) S + ktᵀ V + btᵀ X (warp w: ktᵀ row tile w) */
        mbar_wait(bar + 2, par);
        {
            const float l0 = im[OFF_EL + 16 * warp + gq], l1 = im[OFF_EL + 16 * warp + gq + 8];
#pragma unroll
            for (int j = 0; j < 2; j++) S[j][0] *= l0, S[j][1] *= l0, S[j][2] *= l1, S[j][3] *= l1;
            mma_frag<2, true, false>(S, im + OFF_KT + warp * (C / 8) * 128, C / 8, Vs, LDB);
            mma_frag<2, true, true>(S, im + OFF_BT + warp * (C / 8) * 128, C / 8, Xs, LDB);
        }
        cluster_wait(); /* every CTA is done with G2 of chunk n */
        if (tid == 0 && n + 1 < NC) group_fill(1, im, bar, img_bh + (n + 1) * (int64_t)IMG, rank, n + 2 < NC ? img_bh + (n + 2) * (int64_t)IMG : nullptr);
        cluster_arrive(); /* done with G3 */
    }
    cluster_wait(); /* pairs the last arrive; no copy is in flight to any CTA of the cluster */
    if (ht)
        s_frag_each(warp, gq, tq, [&](int j, int e, int row, int col) {
            ht[(bh * D + row) * D + e0 + col] = S[j][e];
        });
#else
    __trap(); /* rwkv7_cuda_chunk_supported refuses devices below compute capability 9.0 */
#endif
}
constexpr size_t PREP_SMEM = (size_t)(4 * C * LDX + C * D) * 4;

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

/* k_scan uses thread-block clusters and multicast bulk copies: compute capability 9.0 and up */
static int chunk_device_ok(void) {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
}

int rwkv7_cuda_chunk_supported(const rwkv7_cuda_args *a) {
    return a && chunk_device_ok() && a->K == D && a->V == D && a->T > 0 && a->B * a->H > 0 &&
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
    cudaFuncSetAttribute(k_scan, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SCAN_SMEM);
    k_scan<<<dim3(CLU, (unsigned)(a->B * a->H)), STH, SCAN_SMEM, s>>>(g, NC, img, (const bf16 *)a->v, a->h0,
                                                                 (bf16 *)a->o, a->ht, ck, sa);
    cudaError_t e = cudaGetLastError();
    if (own) cudaFreeAsync(img, s);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7_cuda: chunked forward kernels: %s",
                             cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

} /* extern "C" */
