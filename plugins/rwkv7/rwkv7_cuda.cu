/* plugins/rwkv7/rwkv7_cuda.cu: the RWKV-7 recurrence core on CUDA (rwkv7_cuda.cuh), recurrent
 * form with the fp32 state in registers, for K = V = 128.
 *
 * Why recurrent and not the chunked WY form (spec §5): the recurrence needs ~5 fp32 FMAs per state
 * element and token (sa = aᵀS, the update, o = Sᵀr), i.e. 10.7 GFMA for B·T = 8192 tokens of 16
 * heads — 0.36 ms on an H100's fp32 units — with no exponent of either sign and no triangular
 * solve, so gates near 0 or 1 are harmless and the state never leaves fp32. The chunked form
 * trades that for tensor-core products, but needs bf16 chunk states, e^{±20} split factors and
 * the inverse (I − A_ab)^{-1}; its floor is lower, its constant and its error are not.
 *
 * Kernels (S_n = state entering 64-token chunk n; "column" = one value index e, "row" = one key
 * index c):
 *   k_fwd    sequential over T, one CTA per (b, h, 128/LN value columns), LN threads per column
 *            each holding KP = 128/LN state entries of it: sa = aᵀS and o = Sᵀr reduce over the
 *            column's LN lanes by shuffles. Writes o, S_n (every 64 tokens) and sa_t (fp32).
 *   k_dstate the same layout walking t downwards: the gradient G of the state (never needs S):
 *            G_t = dS + r_t do_tᵀ, dv_t = G_tᵀ k_t, dsa_t = G_tᵀ b_t, dS ← Diag(e^{w_t}) G_t + a_t dsa_tᵀ.
 *            Writes dv, dsa_t (fp32), the incoming gradient D_n at every chunk end, dh0.
 *   k_grad   parallel over chunks, row layout (4 lanes per key row): re-walks S forward from S_n
 *            (row-local, since sa_t is saved) for dr_t = S_t do_t and da_t = S_{t−1} dsa_t, then G
 *            backward from D_n for dk_t = G_t v_t and db_t = G_t sa_t, and dw by the identity of
 *            spec §6.2: dw_t = Σ_{s≥t}(r dr − k dk − b db)_s + Σ_{s>t}(a da)_s + rowsum(S_end ⊙ D_n).
 * Nothing is ever back-stepped; states inside a chunk are recomputed forward from S_n.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "rwkv7_cuda.cuh"

namespace {

typedef __nv_bfloat16 bf16;

constexpr int D = 128;   /* K = V = 128                                                        */
constexpr int CK = 64;   /* checkpoint interval (tokens per chunk of k_grad)                    */
constexpr int TS = 16;   /* tokens staged in shared memory at once                              */
constexpr int NTH = 128; /* threads of k_fwd / k_dstate                                         */
constexpr int LR = 4;    /* k_grad: lanes per key row                                           */
constexpr int VP = D / LR;
constexpr int GTH = 256; /* k_grad threads                                                      */
constexpr int GROWS = GTH / LR;
constexpr int RS2 = D + 4 * LR; /* padded row of a staged value vector in k_grad                */
static_assert(TS == 16 && CK % TS == 0, "the staging index arithmetic assumes 16-token tiles");

__device__ __forceinline__ float ld1(const float *p) { return *p; }
__device__ __forceinline__ float ld1(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st1(float *p, float x) { *p = x; }
__device__ __forceinline__ void st1(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }

__device__ __forceinline__ void unpack8(uint4 x, float f[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&x);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x, f[2 * i + 1] = t.y;
    }
}

template <int LN> __device__ __forceinline__ float lane_sum(float x) {
#pragma unroll
    for (int o = LN / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

struct Geo {
    int64_t T, H;
};
/* Element offset of (b, t, h, 0) in a (B, T, H, 128) tensor. */
__device__ __forceinline__ int64_t rowoff(const Geo &g, int64_t b, int64_t t, int64_t h) {
    return ((b * g.T + t) * g.H + h) * D;
}

/* ---- staging for the sequential kernels ----------------------------------------------------
 * Per token, five key vectors in shared memory as fp32: slot 0 r, 1 e^{w}, 2 k, 3 a, 4 b, each
 * 128 entries stored part by part (part p = the KP entries one lane holds) with a 4-float pad
 * between parts, so the LN lanes of a column read LN different bank groups. One value-column
 * vector (v in the forward, do in k_dstate) for the CTA's columns. The next tile is loaded into
 * registers while the current one is computed. */
struct Ops4 { /* r, k, a, b */
    const bf16 *p[4];
    __device__ __forceinline__ const bf16 *operator[](int i) const { return p[i]; }
};
template <int LN, typename WT> struct Stage {
    static constexpr int KP = D / LN, NCOL = NTH / LN, RS = D + 4 * LN;
    static constexpr int NW = sizeof(WT) == 4 ? 4 : 2; /* w loads per thread (float4 / uint4)   */
    static constexpr int NVEC = TS * NCOL / 8;          /* uint4 loads of the column vector      */
    uint4 x[8];
    uint4 wv[NW];
    uint4 cv;

    __device__ __forceinline__ void load(const Ops4 &kv, const WT *w, const bf16 *vec,
                                         const Geo &g, int64_t b, int64_t h, int64_t t0, int e0) {
        const int tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < 8; i++) { /* operand i/2 (compile-time), its 256 uint4 over 2 rounds */
            int u = tid + NTH * (i & 1), t = u >> 4, c8 = (u & 15) << 3;
            x[i] = make_uint4(0, 0, 0, 0);
            if (t0 + t < g.T) x[i] = *reinterpret_cast<const uint4 *>(kv[i >> 1] + rowoff(g, b, t0 + t, h) + c8);
        }
#pragma unroll
        for (int i = 0; i < NW; i++) {
            int u = tid + NTH * i;
            wv[i] = make_uint4(0, 0, 0, 0);
            if (sizeof(WT) == 4) {
                int t = u >> 5, c4 = (u & 31) << 2;
                if (t0 + t < g.T) wv[i] = *reinterpret_cast<const uint4 *>(w + rowoff(g, b, t0 + t, h) + c4);
            } else {
                int t = u >> 4, c8 = (u & 15) << 3;
                if (t0 + t < g.T) wv[i] = *reinterpret_cast<const uint4 *>(w + rowoff(g, b, t0 + t, h) + c8);
            }
        }
        cv = make_uint4(0, 0, 0, 0);
        if (tid < NVEC) {
            int t = tid / (NCOL / 8), c8 = (tid % (NCOL / 8)) * 8;
            if (t0 + t < g.T) cv = *reinterpret_cast<const uint4 *>(vec + rowoff(g, b, t0 + t, h) + e0 + c8);
        }
    }
    static __device__ __forceinline__ int pos(int c) { return (c / KP) * (KP + 4) + c % KP; }
    /* Writes the registers into ops[TS][5][RS] and vs[TS][NCOL]. e^{w} in fp32 (expf: accurate
     * near w = 0, where the decay is close to 1). */
    __device__ __forceinline__ void store(float *ops, float *vs) const {
        const int tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int u = tid + NTH * (i & 1), t = u >> 4, c8 = (u & 15) << 3, q = i >> 1;
            float f[8];
            unpack8(x[i], f);
            float *d = ops + (t * 5 + (q == 0 ? 0 : q + 1)) * RS + pos(c8);
            *reinterpret_cast<float4 *>(d) = make_float4(f[0], f[1], f[2], f[3]);
            *reinterpret_cast<float4 *>(d + 4) = make_float4(f[4], f[5], f[6], f[7]);
        }
#pragma unroll
        for (int i = 0; i < NW; i++) {
            int u = tid + NTH * i;
            if (sizeof(WT) == 4) {
                int t = u >> 5, c4 = (u & 31) << 2;
                const float *f = reinterpret_cast<const float *>(&wv[i]);
                *reinterpret_cast<float4 *>(ops + (t * 5 + 1) * RS + pos(c4)) =
                    make_float4(expf(f[0]), expf(f[1]), expf(f[2]), expf(f[3]));
            } else {
                int t = u >> 4, c8 = (u & 15) << 3;
                float f[8];
                unpack8(wv[i], f);
                float *d = ops + (t * 5 + 1) * RS + pos(c8);
                *reinterpret_cast<float4 *>(d) = make_float4(expf(f[0]), expf(f[1]), expf(f[2]), expf(f[3]));
                *reinterpret_cast<float4 *>(d + 4) = make_float4(expf(f[4]), expf(f[5]), expf(f[6]), expf(f[7]));
            }
        }
        if (tid < NVEC) {
            int t = tid / (NCOL / 8), c8 = (tid % (NCOL / 8)) * 8;
            float f[8];
            unpack8(cv, f);
#pragma unroll
            for (int j = 0; j < 8; j++) vs[t * NCOL + c8 + j] = f[j];
        }
    }
};

/* ---- forward ------------------------------------------------------------------------------- */

template <int LN, typename WT>
__global__ void __launch_bounds__(NTH) k_fwd(Geo g, const bf16 *r, const WT *w, const bf16 *k,
                                             const bf16 *v, const bf16 *a, const bf16 *bb,
                                             const float *h0, bf16 *o, float *ht, float *ck,
                                             float *sa_out) {
    typedef Stage<LN, WT> St;
    constexpr int KP = St::KP, NCOL = St::NCOL, RS = St::RS;
    extern __shared__ float4 smem4[];
    float *ops = reinterpret_cast<float *>(smem4), *vs = ops + TS * 5 * RS;
    const int tid = threadIdx.x, p = tid % LN, cl = tid / LN;
    const int e0 = blockIdx.x * NCOL, e = e0 + cl;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H;
    const int64_t NC = (g.T + CK - 1) / CK;
    const Ops4 kv{{r, k, a, bb}};

    float s[KP];
#pragma unroll
    for (int j = 0; j < KP; j++) s[j] = h0 ? h0[(bh * D + p * KP + j) * D + e] : 0.f;

    St st;
    st.load(kv, w, v, g, b, h, 0, e0);
    for (int64_t t0 = 0; t0 < g.T; t0 += TS) {
        __syncthreads();
        st.store(ops, vs);
        __syncthreads();
        if (t0 + TS < g.T) st.load(kv, w, v, g, b, h, t0 + TS, e0);
        if (ck && t0 % CK == 0) {
            float *dst = ck + ((bh * NC + t0 / CK) * D + p * KP) * D + e;
#pragma unroll
            for (int j = 0; j < KP; j++) dst[j * D] = s[j];
        }
        const int nt = g.T - t0 < TS ? (int)(g.T - t0) : TS;
        for (int tt = 0; tt < nt; tt++) {
            const float *op = ops + tt * 5 * RS + p * (KP + 4);
            float q0 = 0.f, q1 = 0.f, q2 = 0.f, q3 = 0.f;
#pragma unroll
            for (int j = 0; j < KP; j += 4) {
                float4 av = *reinterpret_cast<const float4 *>(op + 3 * RS + j);
                q0 = fmaf(av.x, s[j], q0), q1 = fmaf(av.y, s[j + 1], q1);
                q2 = fmaf(av.z, s[j + 2], q2), q3 = fmaf(av.w, s[j + 3], q3);
            }
            const float sa = lane_sum<LN>((q0 + q1) + (q2 + q3));
            const float vv = vs[tt * NCOL + cl];
            float y0 = 0.f, y1 = 0.f, y2 = 0.f, y3 = 0.f;
#pragma unroll
            for (int j = 0; j < KP; j += 4) {
                float4 ew = *reinterpret_cast<const float4 *>(op + RS + j);
                float4 kk = *reinterpret_cast<const float4 *>(op + 2 * RS + j);
                float4 bv = *reinterpret_cast<const float4 *>(op + 4 * RS + j);
                float4 rr = *reinterpret_cast<const float4 *>(op + j);
                s[j] = fmaf(ew.x, s[j], fmaf(bv.x, sa, kk.x * vv));
                s[j + 1] = fmaf(ew.y, s[j + 1], fmaf(bv.y, sa, kk.y * vv));
                s[j + 2] = fmaf(ew.z, s[j + 2], fmaf(bv.z, sa, kk.z * vv));
                s[j + 3] = fmaf(ew.w, s[j + 3], fmaf(bv.w, sa, kk.w * vv));
                y0 = fmaf(rr.x, s[j], y0), y1 = fmaf(rr.y, s[j + 1], y1);
                y2 = fmaf(rr.z, s[j + 2], y2), y3 = fmaf(rr.w, s[j + 3], y3);
            }
            const float y = lane_sum<LN>((y0 + y1) + (y2 + y3));
            if (p == 0) {
                const int64_t off = rowoff(g, b, t0 + tt, h) + e;
                if (o) o[off] = __float2bfloat16_rn(y);
                if (sa_out) sa_out[off] = sa;
            }
        }
    }
    if (ht) {
#pragma unroll
        for (int j = 0; j < KP; j++) ht[(bh * D + p * KP + j) * D + e] = s[j];
    }
}

/* ---- backward 1: the state gradient, sequential ------------------------------------------- */

template <int LN, typename WT>
__global__ void __launch_bounds__(NTH) k_dstate(Geo g, const bf16 *r, const WT *w, const bf16 *k,
                                                const bf16 *dout, const bf16 *a, const bf16 *bb,
                                                const float *dht, bf16 *dv, float *dsa_out,
                                                float *dck, float *dh0) {
    typedef Stage<LN, WT> St;
    constexpr int KP = St::KP, NCOL = St::NCOL, RS = St::RS;
    extern __shared__ float4 smem4[];
    float *ops = reinterpret_cast<float *>(smem4), *vs = ops + TS * 5 * RS;
    const int tid = threadIdx.x, p = tid % LN, cl = tid / LN;
    const int e0 = blockIdx.x * NCOL, e = e0 + cl;
    const int64_t bh = blockIdx.y, b = bh / g.H, h = bh % g.H;
    const int64_t NC = (g.T + CK - 1) / CK;
    const Ops4 kv{{r, k, a, bb}};

    float ds[KP];
#pragma unroll
    for (int j = 0; j < KP; j++) ds[j] = dht ? dht[(bh * D + p * KP + j) * D + e] : 0.f;

    const int64_t last = (g.T - 1) / TS * TS;
    St st;
    st.load(kv, w, dout, g, b, h, last, e0);
    for (int64_t t0 = last; t0 >= 0; t0 -= TS) {
        __syncthreads();
        st.store(ops, vs);
        __syncthreads();
        if (t0 > 0) st.load(kv, w, dout, g, b, h, t0 - TS, e0);
        const int nt = g.T - t0 < TS ? (int)(g.T - t0) : TS;
        /* The tile's last token ends a chunk (CK is a multiple of TS): keep the gradient that
         * reaches S_{end} from later tokens, before this token's own r do ᵀ. */
        {
            const int64_t tl = t0 + nt - 1;
            if ((tl + 1) % CK == 0 || tl == g.T - 1) {
                float *dst = dck + ((bh * NC + tl / CK) * D + p * KP) * D + e;
#pragma unroll
                for (int j = 0; j < KP; j++) dst[j * D] = ds[j];
            }
        }
        for (int tt = nt - 1; tt >= 0; tt--) {
            const float *op = ops + tt * 5 * RS + p * (KP + 4);
            const float dov = vs[tt * NCOL + cl];
            float q0 = 0.f, q1 = 0.f, q2 = 0.f, q3 = 0.f;
            float u0 = 0.f, u1 = 0.f, u2 = 0.f, u3 = 0.f;
#pragma unroll
            for (int j = 0; j < KP; j += 4) {
                float4 rr = *reinterpret_cast<const float4 *>(op + j);
                float4 kk = *reinterpret_cast<const float4 *>(op + 2 * RS + j);
                float4 bv = *reinterpret_cast<const float4 *>(op + 4 * RS + j);
                ds[j] = fmaf(rr.x, dov, ds[j]), ds[j + 1] = fmaf(rr.y, dov, ds[j + 1]);
                ds[j + 2] = fmaf(rr.z, dov, ds[j + 2]), ds[j + 3] = fmaf(rr.w, dov, ds[j + 3]);
                q0 = fmaf(bv.x, ds[j], q0), q1 = fmaf(bv.y, ds[j + 1], q1);
                q2 = fmaf(bv.z, ds[j + 2], q2), q3 = fmaf(bv.w, ds[j + 3], q3);
                u0 = fmaf(kk.x, ds[j], u0), u1 = fmaf(kk.y, ds[j + 1], u1);
                u2 = fmaf(kk.z, ds[j + 2], u2), u3 = fmaf(kk.w, ds[j + 3], u3);
            }
            const float dsa = lane_sum<LN>((q0 + q1) + (q2 + q3));
            const float dvv = lane_sum<LN>((u0 + u1) + (u2 + u3));
#pragma unroll
            for (int j = 0; j < KP; j += 4) {
                float4 ew = *reinterpret_cast<const float4 *>(op + RS + j);
                float4 av = *reinterpret_cast<const float4 *>(op + 3 * RS + j);
                ds[j] = fmaf(ew.x, ds[j], av.x * dsa), ds[j + 1] = fmaf(ew.y, ds[j + 1], av.y * dsa);
                ds[j + 2] = fmaf(ew.z, ds[j + 2], av.z * dsa), ds[j + 3] = fmaf(ew.w, ds[j + 3], av.w * dsa);
            }
            if (p == 0) {
                const int64_t off = rowoff(g, b, t0 + tt, h) + e;
                dv[off] = __float2bfloat16_rn(dvv);
                dsa_out[off] = dsa;
            }
        }
    }
    if (dh0) {
#pragma unroll
        for (int j = 0; j < KP; j++) dh0[(bh * D + p * KP + j) * D + e] = ds[j];
    }
}

/* ---- backward 2: key-side gradients, parallel over chunks ----------------------------------- */

/* Stages tokens [t0, t0 + TS) ∩ [tc0, tc1) of one head: value vectors vv[TS][4][RS2] (sa, v, do,
 * dsa; parts of VP entries padded by 4 floats) and the CTA's key rows rs[TS][5][GROWS] (r, e^{w},
 * k, a, b). Tokens past tc1 are zero. */
template <typename WT>
__device__ __forceinline__ void grad_stage(float *vv, float *rs, const Geo &g, int64_t b, int64_t h,
                                           int64_t t0, int64_t tc1, int row0, const float *sa,
                                           const bf16 *v, const bf16 *dout, const float *dsa,
                                           const bf16 *r, const WT *w, const bf16 *k, const bf16 *a,
                                           const bf16 *bb) {
    const int tid = threadIdx.x;
    for (int u = tid; u < 2 * TS * 32; u += GTH) { /* sa, dsa (fp32) */
        int q = u / (TS * 32), t = (u / 32) % TS, c4 = (u % 32) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (t0 + t < tc1)
            x = *reinterpret_cast<const float4 *>((q ? dsa : sa) + rowoff(g, b, t0 + t, h) + c4);
        *reinterpret_cast<float4 *>(vv + (t * 4 + (q ? 3 : 0)) * RS2 + (c4 / VP) * (VP + 4) + c4 % VP) = x;
    }
    for (int u = tid; u < 2 * TS * 16; u += GTH) { /* v, do (bf16) */
        int q = u / (TS * 16), t = (u / 16) % TS, c8 = (u % 16) * 8;
        float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (t0 + t < tc1)
            unpack8(*reinterpret_cast<const uint4 *>((q ? dout : v) + rowoff(g, b, t0 + t, h) + c8), f);
        float *d = vv + (t * 4 + 1 + q) * RS2 + (c8 / VP) * (VP + 4) + c8 % VP;
        *reinterpret_cast<float4 *>(d) = make_float4(f[0], f[1], f[2], f[3]);
        *reinterpret_cast<float4 *>(d + 4) = make_float4(f[4], f[5], f[6], f[7]);
    }
    for (int u = tid; u < 4 * TS * (GROWS / 8); u += GTH) { /* key rows r, k, a, b */
        int q = u / (TS * (GROWS / 8)), t = (u / (GROWS / 8)) % TS, c8 = (u % (GROWS / 8)) * 8;
        const bf16 *src = q == 0 ? r : q == 1 ? k : q == 2 ? a : bb;
        float f[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (t0 + t < tc1)
            unpack8(*reinterpret_cast<const uint4 *>(src + rowoff(g, b, t0 + t, h) + row0 + c8), f);
        float *d = rs + (t * 5 + (q == 0 ? 0 : q + 1)) * GROWS + c8;
        *reinterpret_cast<float4 *>(d) = make_float4(f[0], f[1], f[2], f[3]);
        *reinterpret_cast<float4 *>(d + 4) = make_float4(f[4], f[5], f[6], f[7]);
    }
    for (int u = tid; u < TS * GROWS; u += GTH) { /* e^{w} */
        int t = u / GROWS, c = u % GROWS;
        rs[(t * 5 + 1) * GROWS + c] = t0 + t < tc1 ? expf(ld1(w + rowoff(g, b, t0 + t, h) + row0 + c)) : 0.f;
    }
}

template <typename WT>
__global__ void __launch_bounds__(GTH) k_grad(Geo g, const bf16 *r, const WT *w, const bf16 *k,
                                              const bf16 *v, const bf16 *a, const bf16 *bb,
                                              const bf16 *dout, const float *ck, const float *sa,
                                              const float *dck, const float *dsa, bf16 *dr, WT *dw,
                                              bf16 *dk, bf16 *da, bf16 *db) {
    extern __shared__ float4 smem4[];
    float *vv = reinterpret_cast<float *>(smem4), *rs = vv + TS * 4 * RS2, *z = rs + TS * 5 * GROWS;
    const int tid = threadIdx.x, p = tid % LR, rl = tid / LR;
    const int64_t n = blockIdx.x, bh = blockIdx.y, b = bh / g.H, h = bh % g.H;
    const int row0 = blockIdx.z * GROWS, c = row0 + rl;
    const int64_t NC = (g.T + CK - 1) / CK, tc0 = n * CK, tc1 = tc0 + CK < g.T ? tc0 + CK : g.T;
    const int nloc = (int)(tc1 - tc0);

    float s[VP];
    {
        const float *src = ck + ((bh * NC + n) * D + c) * D + p * VP;
#pragma unroll
        for (int j = 0; j < VP; j += 4) {
            float4 x = *reinterpret_cast<const float4 *>(src + j);
            s[j] = x.x, s[j + 1] = x.y, s[j + 2] = x.z, s[j + 3] = x.w;
        }
    }
    /* forward walk: dr_t = S_t do_t, da_t = S_{t-1} dsa_t; z_t = (r dr)_t + (a da)_{t+1} */
    for (int t0 = 0; t0 < nloc; t0 += TS) {
        __syncthreads();
        grad_stage<WT>(vv, rs, g, b, h, tc0 + t0, tc1, row0, sa, v, dout, dsa, r, w, k, a, bb);
        __syncthreads();
        const int nt = nloc - t0 < TS ? nloc - t0 : TS;
        for (int tt = 0; tt < nt; tt++) {
            const float *vp = vv + tt * 4 * RS2 + p * (VP + 4);
            const float *rp = rs + tt * 5 * GROWS + rl;
            const float rr = rp[0], ew = rp[GROWS], kk = rp[2 * GROWS], aa = rp[3 * GROWS], bv = rp[4 * GROWS];
            float q0 = 0.f, q1 = 0.f, y0 = 0.f, y1 = 0.f;
#pragma unroll
            for (int j = 0; j < VP; j += 4) {
                float4 xs = *reinterpret_cast<const float4 *>(vp + j);
                float4 xv = *reinterpret_cast<const float4 *>(vp + RS2 + j);
                float4 xo = *reinterpret_cast<const float4 *>(vp + 2 * RS2 + j);
                float4 xd = *reinterpret_cast<const float4 *>(vp + 3 * RS2 + j);
                q0 = fmaf(s[j], xd.x, q0), q1 = fmaf(s[j + 1], xd.y, q1);
                q0 = fmaf(s[j + 2], xd.z, q0), q1 = fmaf(s[j + 3], xd.w, q1);
                s[j] = fmaf(ew, s[j], fmaf(bv, xs.x, kk * xv.x));
                s[j + 1] = fmaf(ew, s[j + 1], fmaf(bv, xs.y, kk * xv.y));
                s[j + 2] = fmaf(ew, s[j + 2], fmaf(bv, xs.z, kk * xv.z));
                s[j + 3] = fmaf(ew, s[j + 3], fmaf(bv, xs.w, kk * xv.w));
                y0 = fmaf(s[j], xo.x, y0), y1 = fmaf(s[j + 1], xo.y, y1);
                y0 = fmaf(s[j + 2], xo.z, y0), y1 = fmaf(s[j + 3], xo.w, y1);
            }
            const float dav = lane_sum<LR>(q0 + q1), drv = lane_sum<LR>(y0 + y1);
            const int tl = t0 + tt;
            if (p == 0) {
                const int64_t off = rowoff(g, b, tc0 + tl, h) + c;
                dr[off] = __float2bfloat16_rn(drv);
                da[off] = __float2bfloat16_rn(dav);
                z[tl * GROWS + rl] = rr * drv;
                if (tl > 0) z[(tl - 1) * GROWS + rl] += aa * dav;
            }
        }
    }
    /* S_end ⊙ D_n row sum, then the backward walk */
    float ds[VP], acc;
    {
        const float *src = dck + ((bh * NC + n) * D + c) * D + p * VP;
        float q0 = 0.f, q1 = 0.f;
#pragma unroll
        for (int j = 0; j < VP; j += 4) {
            float4 x = *reinterpret_cast<const float4 *>(src + j);
            ds[j] = x.x, ds[j + 1] = x.y, ds[j + 2] = x.z, ds[j + 3] = x.w;
            q0 = fmaf(s[j], x.x, q0), q1 = fmaf(s[j + 1], x.y, q1);
            q0 = fmaf(s[j + 2], x.z, q0), q1 = fmaf(s[j + 3], x.w, q1);
        }
        acc = lane_sum<LR>(q0 + q1);
    }
    for (int t0 = (nloc - 1) / TS * TS; t0 >= 0; t0 -= TS) {
        __syncthreads(); /* also orders the z writes of the forward walk before these reads */
        grad_stage<WT>(vv, rs, g, b, h, tc0 + t0, tc1, row0, sa, v, dout, dsa, r, w, k, a, bb);
        __syncthreads();
        const int nt = nloc - t0 < TS ? nloc - t0 : TS;
        for (int tt = nt - 1; tt >= 0; tt--) {
            const float *vp = vv + tt * 4 * RS2 + p * (VP + 4);
            const float *rp = rs + tt * 5 * GROWS + rl;
            const float rr = rp[0], ew = rp[GROWS], kk = rp[2 * GROWS], aa = rp[3 * GROWS], bv = rp[4 * GROWS];
            float q0 = 0.f, q1 = 0.f, y0 = 0.f, y1 = 0.f;
#pragma unroll
            for (int j = 0; j < VP; j += 4) {
                float4 xs = *reinterpret_cast<const float4 *>(vp + j);
                float4 xv = *reinterpret_cast<const float4 *>(vp + RS2 + j);
                float4 xo = *reinterpret_cast<const float4 *>(vp + 2 * RS2 + j);
                float4 xd = *reinterpret_cast<const float4 *>(vp + 3 * RS2 + j);
                float g0 = fmaf(rr, xo.x, ds[j]), g1 = fmaf(rr, xo.y, ds[j + 1]);
                float g2 = fmaf(rr, xo.z, ds[j + 2]), g3 = fmaf(rr, xo.w, ds[j + 3]);
                q0 = fmaf(g0, xv.x, q0), q1 = fmaf(g1, xv.y, q1);
                q0 = fmaf(g2, xv.z, q0), q1 = fmaf(g3, xv.w, q1);
                y0 = fmaf(g0, xs.x, y0), y1 = fmaf(g1, xs.y, y1);
                y0 = fmaf(g2, xs.z, y0), y1 = fmaf(g3, xs.w, y1);
                ds[j] = fmaf(ew, g0, aa * xd.x), ds[j + 1] = fmaf(ew, g1, aa * xd.y);
                ds[j + 2] = fmaf(ew, g2, aa * xd.z), ds[j + 3] = fmaf(ew, g3, aa * xd.w);
            }
            const float dkv = lane_sum<LR>(q0 + q1), dbv = lane_sum<LR>(y0 + y1);
            const int tl = t0 + tt;
            acc += z[tl * GROWS + rl] - kk * dkv - bv * dbv;
            if (p == 0) {
                const int64_t off = rowoff(g, b, tc0 + tl, h) + c;
                dk[off] = __float2bfloat16_rn(dkv);
                db[off] = __float2bfloat16_rn(dbv);
                st1(dw + off, acc);
            }
        }
    }
}

/* ---- decode ------------------------------------------------------------------------------ */

/* One CTA per (b, h), thread e holds column e of S (128 fp32 registers). */
template <typename WT>
__global__ void __launch_bounds__(D) k_decode(const bf16 *r, const WT *w, const bf16 *k,
                                              const bf16 *v, const bf16 *a, const bf16 *bb,
                                              float *state, int64_t H, int64_t sbs, bf16 *o) {
    __shared__ float4 sh4[5 * D / 4];
    float *sh = reinterpret_cast<float *>(sh4);
    const int e = threadIdx.x;
    const int64_t bh = blockIdx.x, off = bh * D;
    sh[e] = __bfloat162float(r[off + e]);
    sh[D + e] = expf(ld1(w + off + e));
    sh[2 * D + e] = __bfloat162float(k[off + e]);
    sh[3 * D + e] = __bfloat162float(a[off + e]);
    sh[4 * D + e] = __bfloat162float(bb[off + e]);
    float *S = state + (bh / H) * sbs + (bh % H) * D * D + e;
    float s[D];
#pragma unroll
    for (int c = 0; c < D; c++) s[c] = S[c * D];
    __syncthreads();
    float q0 = 0.f, q1 = 0.f, q2 = 0.f, q3 = 0.f;
#pragma unroll
    for (int c = 0; c < D; c += 4) {
        float4 x = sh4[3 * D / 4 + c / 4];
        q0 = fmaf(x.x, s[c], q0), q1 = fmaf(x.y, s[c + 1], q1);
        q2 = fmaf(x.z, s[c + 2], q2), q3 = fmaf(x.w, s[c + 3], q3);
    }
    const float sa = (q0 + q1) + (q2 + q3), vv = __bfloat162float(v[off + e]);
    float y0 = 0.f, y1 = 0.f;
#pragma unroll
    for (int c = 0; c < D; c++) {
        s[c] = fmaf(sh[D + c], s[c], fmaf(sh[4 * D + c], sa, sh[2 * D + c] * vv));
        if (c & 1) y1 = fmaf(sh[c], s[c], y1);
        else y0 = fmaf(sh[c], s[c], y0);
        S[c * D] = s[c];
    }
    o[off + e] = __float2bfloat16_rn(y0 + y1);
}

/* ---- host side ---------------------------------------------------------------------------- */

struct Plan {
    int64_t BH, NC;
    size_t off_ck, off_sa, off_dck, off_dsa, fwd_total, total;
};

size_t al256(size_t x) { return (x + 255) & ~(size_t)255; }

Plan make_plan(const rwkv7_cuda_args *a) {
    Plan p;
    p.BH = a->B * a->H;
    p.NC = (a->T + CK - 1) / CK;
    size_t ckb = al256((size_t)p.BH * (size_t)p.NC * D * D * 4);
    size_t vb = al256((size_t)a->B * (size_t)a->T * (size_t)a->H * D * 4);
    p.off_ck = 0;
    p.off_sa = ckb;
    p.fwd_total = ckb + vb;
    p.off_dck = p.fwd_total;
    p.off_dsa = p.off_dck + ckb;
    p.total = p.off_dsa + vb;
    return p;
}

graft_status check_args(const rwkv7_cuda_args *a, int bwd, graft_err *err) {
    const char *fn = bwd ? "rwkv7_cuda_backward" : "rwkv7_cuda_forward";
    if (!a) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: args: NULL", fn);
    if (a->B < 0 || a->T < 0 || a->H < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: shape: B=%lld T=%lld H=%lld, expected all >= 0", fn,
                             (long long)a->B, (long long)a->T, (long long)a->H);
    if (a->K != D || a->V != D)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "%s: head dims: K=%lld V=%lld, expected K = V = 128", fn,
                             (long long)a->K, (long long)a->V);
    if (a->B * a->H > 65535)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s: B*H = %lld, at most 65535", fn,
                             (long long)(a->B * a->H));
    if (a->lanes != 0 && a->lanes != 4 && a->lanes != 8 && a->lanes != 16)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: lanes: %d, expected 0, 4, 8 or 16",
                             fn, a->lanes);
    if (a->B * a->H * a->T == 0) return GRAFT_STATUS_OK;
    if (!a->r || !a->w || !a->k || !a->v || !a->a || !a->b)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: r, w, k, v, a, b: a NULL pointer", fn);
    if (!bwd && !a->o) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: o: NULL", fn);
    if (bwd && (!a->dout || !a->dr || !a->dw || !a->dk || !a->dv || !a->da || !a->db))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: dout, dr, dw, dk, dv, da, db: a NULL pointer", fn);
    return GRAFT_STATUS_OK;
}

graft_status launched(graft_err *err, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7_cuda: %s: %s", what, cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

/* Lanes per column of the sequential kernels: enough threads to give every SM some warps, but as
 * few lanes as that allows (fewer shuffles, more state per thread). */
int pick_lanes(const rwkv7_cuda_args *a) {
    if (a->lanes) return a->lanes;
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const int64_t cols = a->B * a->H * D;
    /* measured on an H100 (bench/results/rwkv7-cuda-2026-11-23.md): B·H = 64 → 4 lanes (1.62 ms
     * fwd vs 1.81 with 8 and 2.77 with 16), B·H = 16 → 8 lanes (2.75 vs 4.00 and 2.99) */
    if (cols * 4 >= (int64_t)sms * 192) return 4;
    if (cols * 8 >= (int64_t)sms * 96) return 8;
    return 16;
}

template <int LN, typename WT> size_t seq_smem() {
    typedef Stage<LN, WT> St;
    return (size_t)(TS * 5 * St::RS + TS * St::NCOL) * 4;
}
constexpr size_t GRAD_SMEM = (size_t)(TS * 4 * RS2 + TS * 5 * GROWS + CK * GROWS) * 4;

template <int LN, typename WT>
void launch_fwd(const rwkv7_cuda_args *a, cudaStream_t s, float *ck, float *sa, bool write_o) {
    const size_t sm = seq_smem<LN, WT>();
    cudaFuncSetAttribute(k_fwd<LN, WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    Geo g{a->T, a->H};
    k_fwd<LN, WT><<<dim3(D / Stage<LN, WT>::NCOL, (unsigned)(a->B * a->H)), NTH, sm, s>>>(
        g, (const bf16 *)a->r, (const WT *)a->w, (const bf16 *)a->k, (const bf16 *)a->v,
        (const bf16 *)a->a, (const bf16 *)a->b, a->h0, write_o ? (bf16 *)a->o : nullptr,
        write_o ? a->ht : nullptr, ck, sa);
}

template <int LN, typename WT>
void launch_dstate(const rwkv7_cuda_args *a, cudaStream_t s, float *dsa, float *dck) {
    const size_t sm = seq_smem<LN, WT>();
    cudaFuncSetAttribute(k_dstate<LN, WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    Geo g{a->T, a->H};
    k_dstate<LN, WT><<<dim3(D / Stage<LN, WT>::NCOL, (unsigned)(a->B * a->H)), NTH, sm, s>>>(
        g, (const bf16 *)a->r, (const WT *)a->w, (const bf16 *)a->k, (const bf16 *)a->dout,
        (const bf16 *)a->a, (const bf16 *)a->b, a->dht, (bf16 *)a->dv, dsa, dck, a->dh0);
}

template <typename WT> void run_fwd(const rwkv7_cuda_args *a, int ln, cudaStream_t s, float *ck, float *sa, bool wo) {
    if (ln == 4) launch_fwd<4, WT>(a, s, ck, sa, wo);
    else if (ln == 8) launch_fwd<8, WT>(a, s, ck, sa, wo);
    else launch_fwd<16, WT>(a, s, ck, sa, wo);
}

template <typename WT> graft_status backward_t(const rwkv7_cuda_args *a, const Plan &p, cudaStream_t s, graft_err *err) {
    unsigned char *wk = (unsigned char *)a->work;
    float *ck = (float *)(wk + p.off_ck), *sa = (float *)(wk + p.off_sa);
    float *dck = (float *)(wk + p.off_dck), *dsa = (float *)(wk + p.off_dsa);
    if (a->saved && a->fwd_work) { /* the forward's part lives elsewhere; work holds the rest */
        unsigned char *fw = (unsigned char *)a->fwd_work;
        ck = (float *)(fw + p.off_ck), sa = (float *)(fw + p.off_sa);
        dck = (float *)(wk + (p.off_dck - p.fwd_total)), dsa = (float *)(wk + (p.off_dsa - p.fwd_total));
    }
    const int ln = pick_lanes(a);
    if (!a->saved) run_fwd<WT>(a, ln, s, ck, sa, false);
    if (ln == 4) launch_dstate<4, WT>(a, s, dsa, dck);
    else if (ln == 8) launch_dstate<8, WT>(a, s, dsa, dck);
    else launch_dstate<16, WT>(a, s, dsa, dck);
    cudaFuncSetAttribute(k_grad<WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)GRAD_SMEM);
    Geo g{a->T, a->H};
    k_grad<WT><<<dim3((unsigned)p.NC, (unsigned)p.BH, D / GROWS), GTH, GRAD_SMEM, s>>>(
        g, (const bf16 *)a->r, (const WT *)a->w, (const bf16 *)a->k, (const bf16 *)a->v,
        (const bf16 *)a->a, (const bf16 *)a->b, (const bf16 *)a->dout, ck, sa, dck, dsa,
        (bf16 *)a->dr, (WT *)a->dw, (bf16 *)a->dk, (bf16 *)a->da, (bf16 *)a->db);
    return launched(err, "backward kernels");
}

/* T == 0: the final state is the initial one (forward), dh0 = dht (backward). */
graft_status pass_state(const float *src, float *dst, int64_t BH, cudaStream_t s, graft_err *err) {
    if (!dst) return GRAFT_STATUS_OK;
    size_t bytes = (size_t)BH * D * D * 4;
    cudaError_t e = src ? cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s)
                        : cudaMemsetAsync(dst, 0, bytes, s);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7_cuda: state copy: %s", cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

} /* namespace */

extern "C" {

rwkv7_cuda_args rwkv7_cuda_default_args(void) {
    rwkv7_cuda_args a;
    memset(&a, 0, sizeof a);
    a.K = a.V = D;
    return a;
}

size_t rwkv7_cuda_work_bytes(const rwkv7_cuda_args *a, int backward) {
    if (!a || a->B < 0 || a->T < 0 || a->H < 0) return 0;
    Plan p = make_plan(a);
    return backward ? p.total : p.fwd_total;
}

graft_status rwkv7_cuda_forward(const rwkv7_cuda_args *a, void *stream, graft_err *err) {
    graft_status st = check_args(a, 0, err);
    if (st != GRAFT_STATUS_OK) return st;
    cudaStream_t s = (cudaStream_t)stream;
    if (a->B == 0 || a->H == 0) return GRAFT_STATUS_OK;
    if (a->T == 0) return pass_state(a->h0, a->ht, a->B * a->H, s, err);
    Plan p = make_plan(a);
    float *ck = nullptr, *sa = nullptr;
    if (a->work) {
        if (a->work_bytes < p.fwd_total)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "rwkv7_cuda_forward: workspace: %zu bytes, expected at least %zu "
                                 "(rwkv7_cuda_work_bytes(a, 0)) or NULL",
                                 a->work_bytes, p.fwd_total);
        ck = (float *)((unsigned char *)a->work + p.off_ck);
        sa = (float *)((unsigned char *)a->work + p.off_sa);
    }
    /* A/B: the chunked tensor-core forward (rwkv7_cuda_chunk.cu), same outputs and saved states */
    if (rwkv7_cuda_chunk_enabled() && rwkv7_cuda_chunk_supported(a))
        return rwkv7_cuda_chunk_forward(a, ck, sa, stream, err);
    const int ln = pick_lanes(a);
    if (a->w_bf16) run_fwd<bf16>(a, ln, s, ck, sa, true);
    else run_fwd<float>(a, ln, s, ck, sa, true);
    return launched(err, "forward kernel");
}

graft_status rwkv7_cuda_backward(const rwkv7_cuda_args *a, void *stream, graft_err *err) {
    graft_status st = check_args(a, 1, err);
    if (st != GRAFT_STATUS_OK) return st;
    cudaStream_t s = (cudaStream_t)stream;
    if (a->B == 0 || a->H == 0) return GRAFT_STATUS_OK;
    if (a->T == 0) return pass_state(a->dht, a->dh0, a->B * a->H, s, err);
    Plan p = make_plan(a);
    const size_t need = a->saved && a->fwd_work ? p.total - p.fwd_total : p.total;
    if (!a->work || a->work_bytes < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7_cuda_backward: workspace: %zu bytes at %p, expected at least %zu "
                             "(rwkv7_cuda_work_bytes(a, 1)%s)",
                             a->work_bytes, a->work, need, need < p.total ? " - (a, 0), fwd_work given" : "");
    return a->w_bf16 ? backward_t<bf16>(a, p, s, err) : backward_t<float>(a, p, s, err);
}

graft_status rwkv7_cuda_decode_strided(int64_t B, int64_t H, int64_t K, int64_t V, const void *r,
                                       const void *w, int w_bf16, const void *k, const void *v,
                                       const void *a, const void *b, float *state, int64_t state_bs,
                                       void *o, void *stream, graft_err *err) {
    if (B < 0 || H < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7_cuda_decode: shape: B=%lld H=%lld, expected >= 0", (long long)B,
                             (long long)H);
    if (K != D || V != D)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "rwkv7_cuda_decode: head dims: K=%lld V=%lld, expected K = V = 128",
                             (long long)K, (long long)V);
    if (B * H == 0) return GRAFT_STATUS_OK;
    if (B * H > 2147483647LL)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "rwkv7_cuda_decode: B*H too large");
    if (state_bs < H * D * D)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7_cuda_decode: state stride %lld floats, expected >= H*K*V = %lld",
                             (long long)state_bs, (long long)(H * D * D));
    if (!r || !w || !k || !v || !a || !b || !state || !o)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7_cuda_decode: r, w, k, v, a, b, state, o: a NULL pointer");
    cudaStream_t s = (cudaStream_t)stream;
    if (w_bf16)
        k_decode<bf16><<<(unsigned)(B * H), D, 0, s>>>((const bf16 *)r, (const bf16 *)w, (const bf16 *)k,
                                                       (const bf16 *)v, (const bf16 *)a, (const bf16 *)b,
                                                       state, H, state_bs, (bf16 *)o);
    else
        k_decode<float><<<(unsigned)(B * H), D, 0, s>>>((const bf16 *)r, (const float *)w, (const bf16 *)k,
                                                        (const bf16 *)v, (const bf16 *)a, (const bf16 *)b,
                                                        state, H, state_bs, (bf16 *)o);
    return launched(err, "decode kernel");
}

graft_status rwkv7_cuda_decode(int64_t B, int64_t H, int64_t K, int64_t V, const void *r,
                               const void *w, int w_bf16, const void *k, const void *v,
                               const void *a, const void *b, float *state, void *o, void *stream,
                               graft_err *err) {
    return rwkv7_cuda_decode_strided(B, H, K, V, r, w, w_bf16, k, v, a, b, state, H * K * V, o, stream, err);
}

} /* extern "C" */
