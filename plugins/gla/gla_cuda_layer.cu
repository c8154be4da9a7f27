/* plugins/gla/gla_cuda_layer.cu: the whole GLA mixer on CUDA (GRAFT_DEVICE_CUDA): forward,
 * backward and decode of spec/gla.md §2 / §4 / §5 with bf16 activations and weights, fp32 gates,
 * norms, states and parameter gradients.
 *
 * Composed of: the projections through host->matmul (cuBLASLt in the core; BF16 x BF16 -> BF16 for
 * activations, -> F32 with beta = 1 for parameter gradients and dx), the chunked recurrence core of
 * gla_cuda.cu (gla_cuda_forward / _backward, K-first states) and its V-first decode step
 * (gla_cuda_decode_vfirst), and here the small elementwise kernels around them: the short causal
 * conv + SiLU and its backward, the log-sigmoid gate, the per-head gated RMSNorm and its backward,
 * the state transposes and the conv-cache tails.
 *
 * Not here: the CPU reference (gla_cpu.c, the function this must agree with), config parsing and
 * the parameter table (gla.c), the chunk kernels (gla_cuda.cu).
 *
 * Served: dk = dv = 128 (the chunk kernels' size) and num_kv_heads = num_heads; anything else is
 * refused with UNSUPPORTED at the call (run that layer on the CPU).
 *
 * Decode state: one slot of state_bytes() per sequence, the SAME layout and dtype as the CPU
 * (README "Decode state"): S as [H, dv, dk] fp32 (V-first, FLA's layout) then the q, k, v conv
 * caches [width, W] fp32. A state written on one device reads the same on the other. The chunk
 * kernels want K-first (B, H, dk, dv): a prefill transposes once in and once out (1 MiB per sequence
 * and layer); a one-token step updates the V-first slot in place: with the short conv, as three
 * launches (the q|k|v|g product, gla_cuda_decode.cu's fused step from the gate's low-rank
 * products through the gated norm, the output product); without it, or with
 * GRAFT_GLA_FUSED_DECODE=0, through the separate kernels here and gla_cuda_decode_vfirst.
 *
 * Buffers (bf16 unless marked; token-major rows n = b*T + t; N = B*T; Kch = Kq + Kkv + Vkv):
 *   saved:   qt (N, Kq) | kt (N, Kkv) | vt (N, Vkv) | gh (N, Vq) | lr (N, r) | z (N, Kkv) f32, bias
 *            included | o (N, Vq) before the norm | rstd (N, H) f32 | hist (B, Kch, W) f32, the conv
 *            caches the call started from | h0 (B, H, dk, dv) f32, the state it started from
 *   scratch: [the saved layout, used when io->saved is NULL] | q, k, v after conv + SiLU | gk (N,
 *            Kkv) f32 | u (N, Vq) | hA, hB (B, H, dk, dv) f32 | the chunk kernels' work | backward:
 *            du (N, Vq) f32 | dgh, dout (N, Vq) | dq, dk, dv | dgk (N, Kkv) f32 | dzb (N, Kkv) |
 *            dlr (N, r) | dx (N, C) f32 | the parameter-gradient partials, f32 (graft/cuda_colsum.cuh: written
 *            per block, summed in a fixed order, so a rerun is bitwise identical): pwn (norm_bwd
 *            blocks, dv) | pdb (N/64 row blocks, Kkv) | pconv (B * T/64 token blocks, Kch * W)
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "gla.h"
#include "gla_cuda.cuh"
#include "gla_cuda_decode.cuh"
}
#include "gla_cuda_lrgate.cuh"
#include "gla_cuda_math.cuh"
#include "graft/cuda_colsum.cuh"

typedef __nv_bfloat16 bf16;

#define TRY(call)                                                                                  \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla: %s:%d: %s: %s", __FILE__,         \
                                 __LINE__, #call, cudaGetErrorString(e_));                         \
    } while (0)

/* ---- elementwise kernels ---------------------------------------------------------------------- */

/* E index i of channel c of sequence b: the conv's extended input [hist[0..W-1], in_0..in_{T-1}]
 * (input rows ld elements apart). */
__device__ __forceinline__ float conv_e(const float *hist, const bf16 *in, int64_t ld, int W,
                                        int64_t b, int64_t T, int64_t c, int64_t i) {
    return i < W ? hist[c * W + i] : __bfloat162float(in[(b * T + i - W) * ld + c]);
}

/* pre_t[c] = Σ_j w[c][j] E[t+1+j];  out = SiLU(pre), for the three short convs (q, k, v) in one
 * launch: blockIdx.y picks the conv, each block takes whole rows n (grid-stride), its threads the
 * channels. Why by row: the per-element version spent its time in the 64-bit `/` and `%` of the
 * flat index (three per element: n, c, b, t), ~70 instructions each, at 200M elements for T =
 * 32768; here one division per thread per row. Same sums in the same order as before. */
struct ConvSeg {
    bf16 *out;
    const bf16 *in, *w; /* in (N, width), rows ld_in apart; w (width, W) */
    int64_t width, hist_off, ld_in;
};
struct ConvArgs {
    ConvSeg seg[3];
    const float *hist; /* (B, Kch, W) at b * hist_bs; this conv's channels at hist_off */
    int64_t hist_bs, N, T;
    int W;
};

static __global__ void __launch_bounds__(256) conv_fwd_kernel(const __grid_constant__ ConvArgs a) {
    const ConvSeg &g = a.seg[blockIdx.y];
    const int W = a.W;
    for (int64_t n = blockIdx.x; n < a.N; n += gridDim.x) {
        const int64_t b = n / a.T, t = n - b * a.T;
        const float *h = a.hist + b * a.hist_bs + g.hist_off;
        for (int64_t c = threadIdx.x; c < g.width; c += blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j < W; j++)
                acc += __bfloat162float(g.w[c * W + j]) * conv_e(h, g.in, g.ld_in, W, b, a.T, c, t + 1 + j);
            g.out[n * g.width + c] = __float2bfloat16(silu_d(acc));
        }
    }
}

/* The 8 channels c0.. of a bf16 row as floats, and back */
static __device__ __forceinline__ void ld8(float *dst, const bf16 *src) {
    uint4 u = *reinterpret_cast<const uint4 *>(src);
    const bf16 *h = reinterpret_cast<const bf16 *>(&u);
#pragma unroll
    for (int ch = 0; ch < 8; ch++) dst[ch] = __bfloat162float(h[ch]);
}
/* ... and 4 channels (8 bytes) */
static __device__ __forceinline__ void ld4(float *dst, const bf16 *src) {
    uint2 u = *reinterpret_cast<const uint2 *>(src);
    const bf16 *h = reinterpret_cast<const bf16 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) dst[i] = __bfloat162float(h[i]);
}
static __device__ __forceinline__ void st8(bf16 *dst, const float *v) {
    uint4 u;
    bf16 *h = reinterpret_cast<bf16 *>(&u);
#pragma unroll
    for (int ch = 0; ch < 8; ch++) h[ch] = __float2bfloat16(v[ch]);
    *reinterpret_cast<uint4 *>(dst) = u;
}

/* What the vectorized conv kernels share. A thread owns 8 adjacent channels from c0 and the tokens
 * t0 .. t1-1 of sequence b, a run of at most RUN; threads are numbered channel group fastest.
 * false: a thread past the last run. */
template <int RUN, int CPT = 8>
static __device__ __forceinline__ bool conv_slice(int64_t width, int64_t B, int64_t T, int64_t &b, int64_t &c0,
                                                  int64_t &t0, int64_t &t1) {
    const int64_t groups = width / CPT, runs = (T + RUN - 1) / RUN, items = B * runs * groups;
    const int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= items) return false;
    if (items <= 0x7fffffff) { /* 32-bit division (~20 instructions against ~70 for 64-bit ones; with
                                  8 tokens a thread they were a fifth of its instructions) */
        const uint32_t it = (uint32_t)item, gr = (uint32_t)groups, ru = (uint32_t)runs, run = it / gr;
        b = run / ru;
        t0 = (int64_t)(run % ru) * RUN;
        c0 = (int64_t)(it % gr) * CPT;
    } else {
        const int64_t cg = item % groups, run = item / groups;
        b = run / runs;
        t0 = (run % runs) * RUN;
        c0 = cg * CPT;
    }
    t1 = t0 + RUN < T ? t0 + RUN : T;
    return true;
}

/* The window moves one token on: row k takes row k + 1 (the last is loaded next) */
template <int W, int CPT = 8>
static __device__ __forceinline__ void conv_window_shift(float (*e)[CPT]) {
#pragma unroll
    for (int k = 0; k < W - 1; k++)
#pragma unroll
        for (int ch = 0; ch < CPT; ch++) e[k][ch] = e[k + 1][ch];
}

/* E[i] of the 8 channels c0.. of sequence b (the conv's extended input, conv_e): the history h
 * (this sequence's, channel c at c * W) for i < W, else input row i - W (rows ld apart) */
template <int W, int CPT = 8>
static __device__ __forceinline__ void conv_e8(float *dst, const float *h, const bf16 *in, int64_t ld, int64_t b,
                                               int64_t T, int64_t c0, int64_t i) {
    if (i < W) {
#pragma unroll
        for (int ch = 0; ch < CPT; ch++) dst[ch] = h[(c0 + ch) * W + i];
    } else if (CPT == 8) {
        ld8(dst, in + (b * T + i - W) * ld + c0);
    } else {
        ld4(dst, in + (b * T + i - W) * ld + c0);
    }
}

/* The same convs, vectorized (what conv_forward runs where every width and row stride is a
 * multiple of 8 and the buffers 16-byte aligned): each thread owns 8 adjacent channels (16-byte
 * loads and stores, a warp covering 512 contiguous bytes of a row) and CONV_FWD_RUN consecutive
 * tokens of one sequence, so each input row is read about (CONV_FWD_RUN + W - 1) / CONV_FWD_RUN
 * times instead of W times, and the weights once per run.
 *
 * A run that starts at t0 >= W - 1 (no history) and is whole (every run but a sequence's first and
 * last) loads all its CONV_FWD_RUN + W - 1 input rows before it uses the first: 11 loads of 16
 * bytes in flight per thread. The window loop below (the first and last runs) has one: each token
 * waits a full DRAM round trip; when it served every run (16 tokens, 90 registers, 2 blocks an SM)
 * that was ~8 KB in flight per SM where the copy rate needs ~25 KB. Traced on an H100 at 1 x 8192 (2026-12-07) the window loop
 * alone (runs of 16) took 142 us for ~200 MB (1.4 TB/s), this kernel 100 us (2.0 TB/s; the 3 x 2048
 * conv outputs are 100 MB written). Both paths form the same sums in the same order (j = 0 .. W-1):
 * the same bits.
 * (bench/results/gla-conv-2026-11-24.md has the per-element kernel this replaced.) */
#define CONV_RUN 16
#define CONV_FWD_RUN 8
/* One output row of 8 channels, SiLU(Σ_j w[ch][j] x(j, ch)) summed j = 0 .. W-1 in that order, as
 * bf16: both paths below, so they give the same bits. x(j, ch) is tap j of channel ch's window. */
template <int CPT> struct ConvVec { using type = uint4; }; /* CPT bf16: 16 or 8 bytes */
template <> struct ConvVec<4> { using type = uint2; };
template <int W, int CPT = 8, typename Tap>
static __device__ __forceinline__ typename ConvVec<CPT>::type conv_row8(const float (&w)[CPT][W], Tap x) {
    typename ConvVec<CPT>::type o;
    bf16 *op = reinterpret_cast<bf16 *>(&o);
#pragma unroll
    for (int ch = 0; ch < CPT; ch++) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < W; j++) acc += w[ch][j] * x(j, ch);
        op[ch] = __float2bfloat16(silu_d(acc));
    }
    return o;
}
template <int W, int CPT>
static __global__ void __launch_bounds__(256, CPT == 8 ? 2 : 4) conv_fwd_vec_kernel(const __grid_constant__ ConvArgs a) {
    using V = typename ConvVec<CPT>::type;
    const ConvSeg &g = a.seg[blockIdx.y];
    int64_t b, c0, t0, t1;
    if (!conv_slice<CONV_FWD_RUN, CPT>(g.width, a.N / a.T, a.T, b, c0, t0, t1)) return;
    float w[CPT][W];
    {
        const V *wp = reinterpret_cast<const V *>(g.w + c0 * W); /* CPT W contiguous bf16 */
#pragma unroll
        for (int q = 0; q < W; q++) {
            V u = wp[q];
            const bf16 *h = reinterpret_cast<const bf16 *>(&u);
#pragma unroll
            for (int i = 0; i < CPT; i++) w[(q * CPT + i) / W][(q * CPT + i) % W] = __bfloat162float(h[i]);
        }
    }
    if (t0 >= W - 1 && t1 - t0 == CONV_FWD_RUN) {
        /* raw[i] = input row t0 + 1 - W + i; output t0 + u takes raw[u .. u + W - 1] */
        V raw[CONV_FWD_RUN + W - 1];
        const bf16 *base = g.in + (b * a.T + t0 + 1 - W) * g.ld_in + c0;
#pragma unroll
        for (int i = 0; i < CONV_FWD_RUN + W - 1; i++) raw[i] = *reinterpret_cast<const V *>(base + i * g.ld_in);
#pragma unroll
        for (int u = 0; u < CONV_FWD_RUN; u++)
            *reinterpret_cast<V *>(g.out + (b * a.T + t0 + u) * g.width + c0) = conv_row8<W, CPT>(
                w, [&](int j, int ch) { return __bfloat162float(reinterpret_cast<const bf16 *>(&raw[u + j])[ch]); });
        return;
    }
    float e[W][CPT]; /* e[k] = E[t + 1 + k], the window of output t */
    const float *hist = a.hist + b * a.hist_bs + g.hist_off;
    auto load = [&](float *dst, int64_t i) { conv_e8<W, CPT>(dst, hist, g.in, g.ld_in, b, a.T, c0, i); };
#pragma unroll
    for (int k = 0; k < W - 1; k++) load(e[k], t0 + 1 + k);
    for (int64_t t = t0; t < t1; t++) {
        load(e[W - 1], t + W);
        *reinterpret_cast<V *>(g.out + (b * a.T + t) * g.width + c0) =
            conv_row8<W, CPT>(w, [&](int j, int ch) { return e[j][ch]; });
        conv_window_shift<W, CPT>(e);
    }
}

/* conv_dsilu_kernel vectorized as conv_fwd_vec_kernel (8 channels x CONV_RUN tokens a thread, the
 * window in registers; same sums in the same order). One conv: in, g (N, width). */
template <int W>
static __global__ void __launch_bounds__(256) conv_dsilu_vec_kernel(bf16 *g, const bf16 *in, int64_t width,
                                                                    const float *hist, int64_t hist_bs, const bf16 *wt,
                                                                    int64_t B, int64_t T) {
    int64_t b, c0, t0, t1;
    if (!conv_slice<CONV_RUN>(width, B, T, b, c0, t0, t1)) return;
    float w[8 * W], e[W][8];
#pragma unroll
    for (int q = 0; q < W; q++) ld8(w + 8 * q, wt + c0 * W + 8 * q); /* w[ch * W + j] */
    const float *h = hist + b * hist_bs;
    auto load = [&](float *dst, int64_t i) { conv_e8<W>(dst, h, in, width, b, T, c0, i); };
#pragma unroll
    for (int k = 0; k < W - 1; k++) load(e[k], t0 + 1 + k);
    for (int64_t t = t0; t < t1; t++) {
        load(e[W - 1], t + W);
        bf16 *gr = g + (b * T + t) * width + c0;
        float gv[8];
        ld8(gv, gr);
#pragma unroll
        for (int ch = 0; ch < 8; ch++) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < W; j++) acc += w[ch * W + j] * e[j][ch];
            gv[ch] = gv[ch] * dsilu_d(acc);
        }
        st8(gr, gv);
        conv_window_shift<W>(e);
    }
}

/* conv_din_kernel vectorized the same way: din[t] takes g[t .. t+W-1] (a window sliding forward);
 * same terms, same order (j = 0 .. W-1, a term skipped where t+W-1-j >= T), same bits. */
template <int W>
static __global__ void __launch_bounds__(256) conv_din_vec_kernel(bf16 *din, const bf16 *g, int64_t width,
                                                                  const bf16 *wt, const float *dtail, int64_t tail_bs,
                                                                  int64_t B, int64_t T) {
    int64_t b, c0, t0, t1;
    if (!conv_slice<CONV_RUN>(width, B, T, b, c0, t0, t1)) return;
    float w[8 * W], f[W][8]; /* f[k] = g[t + k] (0 past the sequence: never added) */
#pragma unroll
    for (int q = 0; q < W; q++) ld8(w + 8 * q, wt + c0 * W + 8 * q);
    auto load = [&](float *dst, int64_t tt) {
        if (tt < T) ld8(dst, g + (b * T + tt) * width + c0);
    };
#pragma unroll
    for (int k = 0; k < W - 1; k++) load(f[k], t0 + k);
    for (int64_t t = t0; t < t1; t++) {
        load(f[W - 1], t + W - 1);
        const int64_t i = W + t;
        float acc[8];
#pragma unroll
        for (int ch = 0; ch < 8; ch++) acc[ch] = (dtail && i >= T) ? dtail[b * tail_bs + (c0 + ch) * W + (i - T)] : 0.0f;
#pragma unroll
        for (int j = 0; j < W; j++)
            if (t + W - 1 - j < T)
#pragma unroll
                for (int ch = 0; ch < 8; ch++) acc[ch] += w[ch * W + j] * f[W - 1 - j][ch];
        st8(din + (b * T + t) * width + c0, acc);
        conv_window_shift<W>(f);
    }
}

/* Backward through SiLU, in place: g = dq · SiLU'(pre), pre recomputed as in conv_fwd_kernel. */
static __global__ void conv_dsilu_kernel(bf16 *g, const bf16 *in, int64_t width, const float *hist,
                                         int64_t hist_bs, const bf16 *w, int W, int64_t B, int64_t T) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * T * width) return;
    int64_t n = idx / width, c = idx % width, b = n / T, t = n % T;
    const float *h = hist + b * hist_bs;
    float acc = 0.0f;
    for (int j = 0; j < W; j++)
        acc += __bfloat162float(w[c * W + j]) * conv_e(h, in, width, W, b, T, c, t + 1 + j);
    g[idx] = __float2bfloat16(__bfloat162float(g[idx]) * dsilu_d(acc));
}

/* dw[c][j] += Σ_t g[t][c] E[t+1+j]: grid (channel blocks, token blocks of 64 in one sequence),
 * one thread per channel. Each block writes its sums over its 64 tokens to part (gridDim.y rows,
 * width * W), which colsum_kernel adds onto dw in a fixed order (no atomics: deterministic). */
static __global__ void conv_dw_kernel(float *part, const bf16 *g, const bf16 *in, int64_t width,
                                      const float *hist, int64_t hist_bs, int W, int64_t B,
                                      int64_t T) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t nblk_t = (T + 63) / 64, b = blockIdx.y / nblk_t, t0 = (blockIdx.y % nblk_t) * 64;
    if (c >= width || b >= B) return;
    int64_t t1 = t0 + 64 < T ? t0 + 64 : T;
    const float *h = hist + b * hist_bs;
    for (int j = 0; j < W; j++) {
        float acc = 0.0f;
        for (int64_t t = t0; t < t1; t++)
            acc += __bfloat162float(g[(b * T + t) * width + c]) * conv_e(h, in, width, W, b, T, c, t + 1 + j);
        part[blockIdx.y * width * W + c * W + j] = acc;
    }
}

/* conv_dw_kernel vectorized: a thread owns 8 channels of one 64-token block (16-byte loads of g and
 * of the input, the W-row window in registers, each row read once instead of W times) and writes
 * the same partials row. Per (c, j) the same products in the same (increasing t) order: the same
 * bits. */
template <int W>
static __global__ void __launch_bounds__(128) conv_dw_vec_kernel(float *part, const bf16 *g, const bf16 *in,
                                                                 int64_t width, const float *hist, int64_t hist_bs,
                                                                 int64_t B, int64_t T) {
    const int64_t c0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    const int64_t nblk_t = (T + 63) / 64, b = blockIdx.y / nblk_t, t0 = (blockIdx.y % nblk_t) * 64;
    if (c0 >= width || b >= B) return;
    const int64_t t1 = t0 + 64 < T ? t0 + 64 : T;
    const float *h = hist + b * hist_bs;
    auto load = [&](float *dst, int64_t i) { conv_e8<W>(dst, h, in, width, b, T, c0, i); };
    float acc[8 * W], e[W][8]; /* acc[ch * W + j]; e[k] = E[t + 1 + k] */
#pragma unroll
    for (int i = 0; i < 8 * W; i++) acc[i] = 0.0f;
#pragma unroll
    for (int k = 0; k < W - 1; k++) load(e[k], t0 + 1 + k);
    for (int64_t t = t0; t < t1; t++) {
        load(e[W - 1], t + W);
        float gv[8];
        ld8(gv, g + (b * T + t) * width + c0);
#pragma unroll
        for (int ch = 0; ch < 8; ch++)
#pragma unroll
            for (int j = 0; j < W; j++) acc[ch * W + j] += gv[ch] * e[j][ch];
        conv_window_shift<W>(e);
    }
    float4 *dst = reinterpret_cast<float4 *>(part + blockIdx.y * width * W + c0 * W);
#pragma unroll
    for (int q = 0; q < 2 * W; q++) dst[q] = make_float4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
}

/* Gradient of the conv input token t (E index i = W + t):
 *   dE[i] = (i >= T ? dtail[i − T] : 0) + Σ_j w[j] g[i − 1 − j]   (0 <= i−1−j < T)
 * One thread per (n, c). dtail (B slots of tail_bs floats, channel block c*W) may be NULL. */
static __global__ void conv_din_kernel(bf16 *din, const bf16 *g, int64_t width, const bf16 *w, int W,
                                       const float *dtail, int64_t tail_bs, int64_t B, int64_t T) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * T * width) return;
    int64_t n = idx / width, c = idx % width, b = n / T, t = n % T, i = W + t;
    float acc = (dtail && i >= T) ? dtail[b * tail_bs + c * W + (i - T)] : 0.0f;
    for (int j = 0; j < W; j++) {
        int64_t tt = i - 1 - j;
        if (tt >= 0 && tt < T) acc += __bfloat162float(w[c * W + j]) * __bfloat162float(g[(b * T + tt) * width + c]);
    }
    din[idx] = __float2bfloat16(acc);
}

/* Gradient of the history entries i in [0, W) into dhist (may alias dtail: every tail entry of the
 * channel is read before any is written). One thread per (b, c). Runs after conv_din_kernel, which
 * also reads dtail. */
static __global__ void conv_dhist_kernel(float *dhist, const bf16 *g, int64_t width, const bf16 *w,
                                         int W, const float *dtail, int64_t bs, int64_t B, int64_t T) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * width) return;
    int64_t b = idx / width, c = idx % width;
    float dt[64]; /* W <= 64 (gla.c) */
    for (int j = 0; j < W; j++) dt[j] = dtail ? dtail[b * bs + c * W + j] : 0.0f;
    for (int64_t i = 0; i < W; i++) {
        float acc = i >= T ? dt[i - T] : 0.0f;
        for (int j = 0; j < W; j++) {
            int64_t tt = i - 1 - j;
            if (tt >= 0 && tt < T) acc += __bfloat162float(w[c * W + j]) * __bfloat162float(g[(b * T + tt) * width + c]);
        }
        dhist[b * bs + c * W + i] = acc;
    }
}

/* The state's conv tails after the call: E[T .. T+W−1] per (b, c), fp32, for the three convs in
 * one launch (blockIdx.y: the conv; blocks over sequences, threads over channels). The tail of
 * sequence b, conv g, channel c is at tail + b * tail_bs + g.hist_off + c * W, like the history. */
static __global__ void __launch_bounds__(256) conv_tail_kernel(float *tail, int64_t tail_bs,
                                                               const __grid_constant__ ConvArgs a) {
    const ConvSeg &g = a.seg[blockIdx.y];
    const int W = a.W;
    const int64_t B = a.N / a.T;
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *h = a.hist + b * a.hist_bs + g.hist_off;
        for (int64_t c = threadIdx.x; c < g.width; c += blockDim.x)
            for (int j = 0; j < W; j++)
                tail[b * tail_bs + g.hist_off + c * W + j] = conv_e(h, g.in, g.ld_in, W, b, a.T, c, a.T + j);
    }
}

/* gk = logsigmoid(z + bias) / γ (fp32, spec §6: α in fp32); with bias, z += bias is stored back so
 * the backward reads the logits. Whole rows per block (grid-stride), as conv_fwd_kernel. */
static __global__ void __launch_bounds__(256) gate_kernel(float *gk, float *z, const bf16 *bias, int64_t N,
                                                          int64_t width, float inv_gamma) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
        for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
            const int64_t idx = n * width + c;
            float v = z[idx];
            if (bias) {
                v += __bfloat162float(bias[c]);
                z[idx] = v;
            }
            gk[idx] = logsigm_d(v) * inv_gamma;
        }
}

/* gate_kernel with float4 loads and stores (widths in multiples of 4, 16-byte aligned rows): the
 * same arithmetic per element, so the same bits. */
static __global__ void __launch_bounds__(256) gate4_kernel(float *gk, float *z, const bf16 *bias, int64_t N,
                                                           int64_t width, float inv_gamma) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
        for (int64_t c = 4 * (int64_t)threadIdx.x; c < width; c += 4 * (int64_t)blockDim.x) {
            const int64_t idx = n * width + c;
            float4 v = *reinterpret_cast<const float4 *>(z + idx);
            if (bias) {
                float b[4];
                ld4(b, bias + c);
                v.x += b[0], v.y += b[1], v.z += b[2], v.w += b[3];
                *reinterpret_cast<float4 *>(z + idx) = v;
            }
            *reinterpret_cast<float4 *>(gk + idx) = make_float4(logsigm_d(v.x) * inv_gamma, logsigm_d(v.y) * inv_gamma,
                                                                logsigm_d(v.z) * inv_gamma, logsigm_d(v.w) * inv_gamma);
        }
}

/* The gate from its low-rank middle in one pass: gk = logsigmoid(lr W_gk1ᵀ + bias) / γ, i.e. the
 * second low-rank product and gate4_kernel fused. Unfused, that product writes z (N x width fp32)
 * and the gate reads it, adds the bias, writes it back and writes gk: 16 bytes an element, 1.1 GB
 * at 32768 tokens of the 1.7B shape (~0.35 ms on an H100) for R = 16 multiply-adds each. Here each
 * thread keeps the R weights of its 4 channels in registers across the rows it walks, reads the
 * row's R middles (one 16 or 32-byte broadcast) and writes gk, and z only where the backward will
 * read it (z non-NULL: a forward that saves). z is summed j = 0 .. R-1 in fp32, then + bias, then
 * the gate as gate_kernel: cuBLASLt's order for the product differs (fp32 reassociation only).
 * grid: x over 1024-channel spans (256 threads x 4), y over rows (grid-stride). */
template <int R>
static __device__ __forceinline__ void lowrank_gate_row(float *gk, float *z, const float (&w)[4][R], const float (&b)[4],
                                                        const float (&l)[R], bool bias, int64_t idx, float inv_gamma) {
    float v[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
        float acc = 0.f;
#pragma unroll
        for (int j = 0; j < R; j++) acc = fmaf(l[j], w[e][j], acc);
        v[e] = bias ? acc + b[e] : acc;
    }
    if (z) *reinterpret_cast<float4 *>(z + idx) = make_float4(v[0], v[1], v[2], v[3]);
    *reinterpret_cast<float4 *>(gk + idx) = make_float4(logsigm_d(v[0]) * inv_gamma, logsigm_d(v[1]) * inv_gamma,
                                                        logsigm_d(v[2]) * inv_gamma, logsigm_d(v[3]) * inv_gamma);
}
/* Rows are taken two at a time (both middles loaded before either is used): one row's loads and
 * serial FMA chains left the SM mostly waiting at 2 blocks an SM (96 registers). With the SFU
 * logsigmoid (gla_cuda_math.cuh) the kernel went from 83 to 61 us at 1 x 8192 on an H100
 * (bench/results/gla-prefill-elementwise-2026-12-07.md), still ~3x the 22 us its 67 MB of gk take. */
template <int R>
static __global__ void __launch_bounds__(256) lowrank_gate_kernel(float *gk, float *z, const bf16 *lr, const bf16 *w1,
                                                                  const bf16 *bias, int64_t N, int64_t width,
                                                                  float inv_gamma) {
    const int64_t c = 4 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= width) return;
    float w[4][R], b[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int e = 0; e < 4; e++)
#pragma unroll
        for (int j = 0; j < R; j += 4) ld4(&w[e][j], w1 + (c + e) * R + j);
    if (bias) ld4(b, bias + c);
    const int64_t step = gridDim.y;
    int64_t n = blockIdx.y;
    for (; n + step < N; n += 2 * step) {
        float l0[R], l1[R];
#pragma unroll
        for (int j = 0; j < R; j += 4) {
            ld4(&l0[j], lr + n * R + j);
            ld4(&l1[j], lr + (n + step) * R + j);
        }
        lowrank_gate_row<R>(gk, z, w, b, l0, bias != NULL, n * width + c, inv_gamma);
        lowrank_gate_row<R>(gk, z, w, b, l1, bias != NULL, (n + step) * width + c, inv_gamma);
    }
    if (n < N) {
        float l[R];
#pragma unroll
        for (int j = 0; j < R; j += 4) ld4(&l[j], lr + n * R + j);
        lowrank_gate_row<R>(gk, z, w, b, l, bias != NULL, n * width + c, inv_gamma);
    }
}

/* The one-pass gate with its rank-16 product on the tensor cores (gla_lr_gate_tile): a CTA per
 * 64-token x 128-channel tile, gk (and z where the backward reads it) stored as float2 pairs, a
 * warp's store filling the 32-byte sectors of 8 rows. Predicted near the store's byte time (268 MB
 * of gk at 1 x 32768: ~90 us against lowrank_gate_kernel's 160). GRAFT_GLA_GATE_MMA=1; off until
 * timed on a GPU. */
static __global__ void __launch_bounds__(256) lowrank_gate_mma_kernel(float *gk, float *z, const bf16 *lr,
                                                                      const bf16 *w1, const bf16 *bias, int64_t N,
                                                                      int64_t width, float inv_gamma) {
    const int64_t tok0 = (int64_t)blockIdx.y * 64, c0 = (int64_t)blockIdx.x * 128;
    const int nvalid = N - tok0 < 64 ? (int)(N - tok0) : 64;
    gla_lr_gate_tile(lr, w1, bias, inv_gamma, tok0, c0, nvalid,
                     [&](int row, int c, bool valid, float z0, float z1, float g0, float g1) {
                         if (!valid) return;
                         const int64_t at = (tok0 + row) * width + c0 + c;
                         if (z) *reinterpret_cast<float2 *>(z + at) = make_float2(z0, z1);
                         *reinterpret_cast<float2 *>(gk + at) = make_float2(g0, g1);
                     });
}

/* dz = dgk σ(−z)/γ -> dzb (bf16, for the products); the bias gradient's partials Σ_n dz per
 * 64-row block (blockIdx.y) into part (gridDim.y, width), NULL without gradients (colsum_kernel
 * adds them onto db). */
static __global__ void gate_bwd_kernel(bf16 *dzb, float *part, const float *dgk, const float *z, int64_t N,
                                       int64_t width, float inv_gamma) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t n0 = (int64_t)blockIdx.y * 64, n1 = n0 + 64 < N ? n0 + 64 : N;
    if (c >= width) return;
    float acc = 0.0f;
    for (int64_t n = n0; n < n1; n++) {
        int64_t i = n * width + c;
        float d = dgk[i] * sigm_d(-z[i]) * inv_gamma;
        dzb[i] = __float2bfloat16(d);
        acc += d;
    }
    if (part) part[blockIdx.y * width + c] = acc;
}

/* u = o / sqrt(mean_e o² + ε) ⊙ w_n ⊙ SiLU(ĝ), per (n, head) over dv (spec §2 step 6); one warp
 * per row, rows = N*H. rstd written when non-NULL. */
static __global__ void norm_gate_kernel(bf16 *u, float *rstd, const bf16 *o, const bf16 *gh, int64_t ldg,
                                        const bf16 *wn, int64_t rows, int H, int dv, float eps) {
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    /* gh rows (tokens) are ldg apart: H * dv, or the fused decode product's width */
    const bf16 *orow = o + row * dv, *grow = gh + (row / H) * ldg + (row % H) * dv;
    float ms = 0.0f;
    for (int e = lane; e < dv; e += 32) {
        float v = __bfloat162float(orow[e]);
        ms += v * v;
    }
    ms = warp_sum(ms);
    float r = rsqrtf(ms / (float)dv + eps);
    if (rstd && lane == 0) rstd[row] = r;
    for (int e = lane; e < dv; e += 32)
        u[row * dv + e] = __float2bfloat16(__bfloat162float(orow[e]) * r * __bfloat162float(wn[e]) *
                                           silu_d(__bfloat162float(grow[e])));
}

/* norm_gate_kernel for dv = 128 (every CUDA GLA layer) with 8-byte loads and stores: lane l holds
 * elements 4l .. 4l+3 of its row, o is read once. Measured on the H100 (bench/results/
 * gla-conv-2026-11-24.md): the scalar kernel moved its ~0.4 GB at 1 x 32768 in 0.24 ms. The mean
 * square adds each lane's four squares, then the warp sum: another order than norm_gate_kernel
 * (rounding-level differences; deterministic). */
static __global__ void norm_gate128_kernel(bf16 *u, float *rstd, const bf16 *o, const bf16 *gh, int64_t ldg,
                                           const bf16 *wn, int64_t rows, int H, float eps) {
    const int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31, e0 = 4 * lane;
    if (row >= rows) return;
    float ov[4], gv[4], wv[4], r;
    ld4(ov, o + row * 128 + e0);
    ld4(gv, gh + (row / H) * ldg + (row % H) * 128 + e0);
    ld4(wv, wn + e0);
    const uint2 out = gated_rmsnorm128_lane(ov, gv, wv, eps, &r);
    if (rstd && lane == 0) rstd[row] = r;
    *reinterpret_cast<uint2 *>(u + row * 128 + e0) = out;
}

/* Backward of norm_gate_kernel (ō = o·rstd):
 *   dw_n += du ⊙ ō ⊙ SiLU(ĝ);  dĝ = du ⊙ ō ⊙ w_n ⊙ SiLU'(ĝ);  dō = du ⊙ w_n ⊙ SiLU(ĝ)
 *   do = rstd (dō − ō mean_e(dō ⊙ ō))
 * One warp per row, grid-stride over rows; each lane keeps its dw_n partials (dv <= 128: 4 per
 * lane); at the end the block's NORM_BWD_WARPS warps add theirs in warp order and write one row
 * of part (gridDim.x, dv), NULL without gradients (colsum_kernel adds the rows onto dw_n). */
#define NORM_BWD_WARPS 8
static __global__ void __launch_bounds__(32 * NORM_BWD_WARPS)
norm_gate_bwd_kernel(bf16 *dout, bf16 *dgh, float *part, const float *du, const bf16 *o, const bf16 *gh,
                     const float *rstd, const bf16 *wn, int64_t rows, int dv) {
    __shared__ float sh[NORM_BWD_WARPS][128];
    int lane = threadIdx.x & 31;
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nwarp = ((int64_t)gridDim.x * blockDim.x) >> 5;
    float pw[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t row = warp; row < rows; row += nwarp) {
        float r = rstd[row], dob[4], obv[4], dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int e = lane + 32 * i;
            dob[i] = obv[i] = 0.0f;
            if (e >= dv) continue;
            int64_t k = row * dv + e;
            float ob = __bfloat162float(o[k]) * r, g = __bfloat162float(gh[k]), sg = silu_d(g);
            float d = du[k], w = __bfloat162float(wn[e]);
            pw[i] += d * ob * sg;
            dgh[k] = __float2bfloat16(d * ob * w * dsilu_d(g));
            dob[i] = d * w * sg;
            obv[i] = ob;
            dot += dob[i] * ob;
        }
        float mean = warp_sum(dot) / (float)dv;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int e = lane + 32 * i;
            if (e < dv) dout[row * dv + e] = __float2bfloat16(r * (dob[i] - obv[i] * mean));
        }
    }
    if (!part) return; /* the same for the whole grid: no thread is left at the barrier */
    const int wib = threadIdx.x >> 5;
#pragma unroll
    for (int i = 0; i < 4; i++)
        if (lane + 32 * i < dv) sh[wib][lane + 32 * i] = pw[i];
    __syncthreads();
    if ((int)threadIdx.x < dv) {
        float t = 0.0f;
        for (int w = 0; w < NORM_BWD_WARPS; w++) t += sh[w][threadIdx.x];
        part[(int64_t)blockIdx.x * dv + threadIdx.x] = t;
    }
}

/* dst[b][h] = src[b][h]ᵀ for D x D fp32 blocks (V-first <-> K-first); per-sequence strides in
 * floats (a state slot, or the packed (B, H, D, D) layout). Grid (D/32, D/32, B*H), block (32, 8). */
static __global__ void transpose_kernel(float *dst, int64_t dst_bs, const float *src, int64_t src_bs,
                                        int H, int D) {
    __shared__ float tile[32][33];
    int64_t b = blockIdx.z / H, h = blockIdx.z % H;
    const float *s = src + b * src_bs + h * (int64_t)D * D;
    float *d = dst + b * dst_bs + h * (int64_t)D * D;
    int x = blockIdx.x * 32 + threadIdx.x, y0 = blockIdx.y * 32;
    for (int j = threadIdx.y; j < 32; j += 8) tile[j][threadIdx.x] = s[(int64_t)(y0 + j) * D + x];
    __syncthreads();
    int xo = blockIdx.y * 32 + threadIdx.x, yo0 = blockIdx.x * 32;
    for (int j = threadIdx.y; j < 32; j += 8) d[(int64_t)(yo0 + j) * D + xo] = tile[threadIdx.x][j];
}

static __global__ void f32_to_bf16_kernel(bf16 *y, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16(x[i]);
}

/* ---- host side -------------------------------------------------------------------------------- */

static unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }
static unsigned row_blocks(int64_t N) { return (unsigned)(N < 65535 * 4 ? N : 65535 * 4); } /* grid-stride rows */
static unsigned capped(int64_t n, int per) {
    unsigned b = blocks_for(n, per);
    return b < 4096 ? (b ? b : 1) : 4096;
}
/* norm_gate_bwd_kernel's grid, one warp per row: at most 1024 blocks (a full H100 of warps), so
 * its dw_n partials stay at <= 1024 rows */
static unsigned norm_bwd_blocks(int64_t rows) {
    unsigned b = blocks_for(rows * 32, 32 * NORM_BWD_WARPS);
    return b < 1024 ? (b ? b : 1) : 1024;
}

static graft_status launched(const char *what, graft_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla: launch of %s: %s", what, cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

/* Prepends "gla: <what>: " to a callee's message. */
static graft_status prefixed(graft_err *err, const char *what) {
    char p[64];
    snprintf(p, sizeof p, "gla: %s", what);
    return graft_err_prefix(err, p);
}

/* C (m x n) = op(A) op(B) + beta C; A, B bf16; C bf16 or f32 (c_f32). */
static graft_status mm(const gla_layer *L, void *stream, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                       int64_t lda, const void *Bm, int64_t ldb, void *Cm, int64_t ldc, float beta, int c_f32,
                       graft_err *err) {
    return graft_host_matmul_bf16(L->host, stream, ta, tb, m, n, k, A, lda, Bm, ldb, Cm, ldc, beta, c_f32, err);
}

typedef struct cu_plan {
    /* saved */
    size_t qt, kt, vt, gh, lr, z, o, rstd, hist, h0, saved_bytes;
    /* scratch (offsets after the saved-layout copy at 0) */
    size_t q, k, v, gk, u, hA, hB, work, work_bytes;
    size_t du, dgh, dout, dq, dk, dv, dgk, dzb, dlr, dx;
    /* parameter-gradient partials (graft/cuda_colsum.cuh) and their row counts */
    size_t pwn, pdb, pconv, scratch_bytes;
    int64_t pwn_rows, pdb_rows, pconv_rows;
} cu_plan;

static size_t take(size_t *c, size_t bytes) {
    size_t o = *c;
    *c += (bytes + 255) & ~(size_t)255;
    return o;
}

static void plan_make(const gla_layer *L, int64_t B, int64_t T, cu_plan *p) {
    memset(p, 0, sizeof *p);
    size_t N = (size_t)(B * T), Kch = (size_t)(L->Kq + L->Kkv + L->Vkv), DD = (size_t)(L->dk * L->dv);
    size_t c = 0;
    p->qt = take(&c, 2 * N * L->Kq);
    p->kt = take(&c, 2 * N * L->Kkv);
    p->vt = take(&c, 2 * N * L->Vkv);
    p->gh = take(&c, 2 * N * L->Vq);
    p->lr = take(&c, 2 * N * L->r);
    p->z = take(&c, 4 * N * L->Kkv);
    p->o = take(&c, 2 * N * L->Vq);
    p->rstd = take(&c, 4 * N * L->H);
    p->hist = take(&c, 4 * (size_t)B * Kch * L->W);
    p->h0 = take(&c, 4 * (size_t)(B * L->H) * DD);
    p->saved_bytes = c;
    /* scratch starts with a copy of the saved layout */
    p->q = take(&c, 2 * N * L->Kq);
    p->k = take(&c, 2 * N * L->Kkv);
    p->v = take(&c, 2 * N * L->Vkv);
    p->gk = take(&c, 4 * N * L->Kkv);
    p->u = take(&c, 2 * N * L->Vq);
    p->hA = take(&c, 4 * (size_t)(B * L->H) * DD);
    p->hB = take(&c, 4 * (size_t)(B * L->H) * DD);
    gla_cuda_args a = gla_cuda_default_args();
    a.B = B;
    a.T = T;
    a.H = L->H;
    size_t wf = gla_cuda_work_bytes(&a, 0), wb = gla_cuda_work_bytes(&a, 1);
    p->work_bytes = wf > wb ? wf : wb;
    p->work = take(&c, p->work_bytes);
    p->du = take(&c, 4 * N * L->Vq);
    p->dgh = take(&c, 2 * N * L->Vq);
    p->dout = take(&c, 2 * N * L->Vq);
    p->dq = take(&c, 2 * N * L->Kq);
    p->dk = take(&c, 2 * N * L->Kkv);
    p->dv = take(&c, 2 * N * L->Vkv);
    p->dgk = take(&c, 4 * N * L->Kkv);
    p->dzb = take(&c, 2 * N * L->Kkv);
    p->dlr = take(&c, 2 * N * L->r);
    p->dx = take(&c, 4 * N * L->C);
    p->pwn_rows = norm_bwd_blocks(B * T * L->H);
    p->pdb_rows = blocks_for(B * T, 64);
    p->pconv_rows = B * ((T + 63) / 64);
    p->pwn = take(&c, 4 * (size_t)p->pwn_rows * L->dv);
    p->pdb = take(&c, 4 * (size_t)p->pdb_rows * L->Kkv);
    p->pconv = take(&c, L->use_conv ? 4 * (size_t)p->pconv_rows * Kch * L->W : 0);
    p->scratch_bytes = c;
}

static graft_status check_layer(const gla_layer *L, graft_err *err) {
    if (L->dk != 128 || L->dv != 128 || L->G != 1)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gla: CUDA: key dim %lld, value dim %lld, num_kv_heads %lld of num_heads %lld; "
                             "the CUDA path serves dk = dv = 128 and num_kv_heads = num_heads only (run this "
                             "layer on the CPU)", (long long)L->dk, (long long)L->dv, (long long)L->Hkv,
                             (long long)L->H);
    return GRAFT_STATUS_OK;
}

extern "C" graft_status gla_cuda_workspace(const gla_layer *L, int64_t B, int64_t T, size_t *saved_bytes,
                                           size_t *scratch_bytes, graft_err *err) {
    if (check_layer(L, err)) return err->status;
    cu_plan p;
    plan_make(L, B, T, &p);
    if (saved_bytes) *saved_bytes = p.saved_bytes;
    if (scratch_bytes) *scratch_bytes = p.scratch_bytes;
    return GRAFT_STATUS_OK;
}

static graft_status check_io(const gla_layer *L, const graft_mixer_io *io, int backward, graft_err *err) {
    if (check_layer(L, err)) return err->status;
    if (io->B < 1 || io->T < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: B=%lld T=%lld, expected B>=1 T>=0",
                             (long long)io->B, (long long)io->T);
    if (io->T > 0 && (!io->x || (!backward && !io->y) || (backward && (!io->dy || !io->dx)) || !io->scratch))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "gla: CUDA: x, %s or scratch is NULL",
                             backward ? "dy, dx" : "y");
    if (backward && io->T > 0 && !io->saved)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla: backward: saved is NULL, expected the buffer a training forward wrote");
    for (int64_t i = 0; i < L->n_params; i++) {
        const graft_tensor *t = &io->params[i];
        const graft_param_spec *s = &L->spec[i];
        int ok = t->dtype == GRAFT_DTYPE_BF16 && t->device == GRAFT_DEVICE_CUDA && t->data && t->ndim == s->ndim &&
                 graft_tensor_is_contiguous(t);
        for (int32_t d = 0; ok && d < s->ndim; d++) ok = t->shape[d] == s->shape[d];
        if (ok && backward && io->grads) {
            const graft_tensor *g = &io->grads[i];
            ok = g->dtype == GRAFT_DTYPE_F32 && g->device == GRAFT_DEVICE_CUDA && g->data &&
                 graft_tensor_is_contiguous(g);
        }
        if (!ok)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "gla: CUDA: %s: expected a contiguous BF16 CUDA tensor of the declared shape "
                                 "(and an F32 CUDA gradient), got %s", s->name, graft_dtype_name(t->dtype));
    }
    return GRAFT_STATUS_OK;
}

/* Views of one call's buffers. */
typedef struct cu_bufs {
    bf16 *qt, *kt, *vt, *gh, *lr, *o, *q, *k, *v, *u, *dgh, *dout, *dq, *dk, *dv, *dzb, *dlr;
    float *z, *rstd, *hist, *h0, *gk, *hA, *hB, *du, *dgk, *dx, *pwn, *pdb, *pconv;
    void *work;
    size_t work_bytes;
} cu_bufs;

static void carve(const gla_layer *L, const cu_plan *p, char *act, char *scr, cu_bufs *c) {
    c->qt = (bf16 *)(act + p->qt);
    c->kt = (bf16 *)(act + p->kt);
    c->vt = (bf16 *)(act + p->vt);
    c->gh = (bf16 *)(act + p->gh);
    c->lr = (bf16 *)(act + p->lr);
    c->z = (float *)(act + p->z);
    c->o = (bf16 *)(act + p->o);
    c->rstd = (float *)(act + p->rstd);
    c->hist = (float *)(act + p->hist);
    c->h0 = (float *)(act + p->h0);
    /* without the short conv, q, k, v are the projections themselves */
    c->q = L->use_conv ? (bf16 *)(scr + p->q) : c->qt;
    c->k = L->use_conv ? (bf16 *)(scr + p->k) : c->kt;
    c->v = L->use_conv ? (bf16 *)(scr + p->v) : c->vt;
    c->gk = (float *)(scr + p->gk);
    c->u = (bf16 *)(scr + p->u);
    c->hA = (float *)(scr + p->hA);
    c->hB = (float *)(scr + p->hB);
    c->work = scr + p->work;
    c->work_bytes = p->work_bytes;
    c->du = (float *)(scr + p->du);
    c->dgh = (bf16 *)(scr + p->dgh);
    c->dout = (bf16 *)(scr + p->dout);
    c->dq = (bf16 *)(scr + p->dq);
    c->dk = (bf16 *)(scr + p->dk);
    c->dv = (bf16 *)(scr + p->dv);
    c->dgk = (float *)(scr + p->dgk);
    c->dzb = (bf16 *)(scr + p->dzb);
    c->dlr = (bf16 *)(scr + p->dlr);
    c->dx = (float *)(scr + p->dx);
    c->pwn = (float *)(scr + p->pwn);
    c->pdb = (float *)(scr + p->pdb);
    c->pconv = (float *)(scr + p->pconv);
}

static const bf16 *PB(const gla_layer *L, const graft_mixer_io *io, int slot) {
    return (const bf16 *)io->params[L->slot[slot]].data;
}
static float *GF(const gla_layer *L, const graft_mixer_io *io, int slot) {
    return io->grads ? (float *)io->grads[L->slot[slot]].data : NULL;
}

/* Copies the S part of B slots (src may be NULL: zeros). */
static graft_status state_s_copy(float *dst, const float *src, size_t slot_floats, size_t s_floats, int64_t B,
                                 cudaStream_t s, graft_err *err) {
    if (dst == src) return GRAFT_STATUS_OK;
    if (src)
        TRY(cudaMemcpy2DAsync(dst, slot_floats * 4, src, slot_floats * 4, s_floats * 4, (size_t)B,
                              cudaMemcpyDeviceToDevice, s));
    else
        TRY(cudaMemset2DAsync(dst, slot_floats * 4, 0, s_floats * 4, (size_t)B, s));
    return GRAFT_STATUS_OK;
}

static graft_status transpose(const gla_layer *L, float *dst, int64_t dst_bs, const float *src, int64_t src_bs,
                              int64_t B, cudaStream_t s, graft_err *err) {
    dim3 g((unsigned)(L->dk / 32), (unsigned)(L->dk / 32), (unsigned)(B * L->H));
    transpose_kernel<<<g, dim3(32, 8), 0, s>>>(dst, dst_bs, src, src_bs, (int)L->H, (int)L->dk);
    return launched("transpose", err);
}

/* The three short convs' arguments: outputs q, k, v; inputs qt, kt, vt with rows ld apart (their
 * widths, or the fused decode product's); the history in c->hist. */
static ConvArgs conv_args(const gla_layer *L, const graft_mixer_io *io, const cu_bufs *c, int64_t N, int64_t T,
                          const int64_t ld[3]) {
    const int64_t W = L->W;
    ConvArgs a;
    memset(&a, 0, sizeof a);
    a.seg[0] = ConvSeg{c->q, c->qt, PB(L, io, GLA_P_QCONV), L->Kq, 0, ld[0]};
    a.seg[1] = ConvSeg{c->k, c->kt, PB(L, io, GLA_P_KCONV), L->Kkv, L->Kq * W, ld[1]};
    a.seg[2] = ConvSeg{c->v, c->vt, PB(L, io, GLA_P_VCONV), L->Vkv, (L->Kq + L->Kkv) * W, ld[2]};
    a.hist = c->hist;
    a.hist_bs = (L->Kq + L->Kkv + L->Vkv) * W;
    a.N = N;
    a.T = T;
    a.W = (int)W;
    return a;
}

/* q, k, v = SiLU(short conv of qt, kt, vt): one launch for the three */
/* gk = logsigmoid(z + bias) / γ: the float4 kernel where widths and rows allow, else per element */
static void gate_launch(float *gk, float *z, const bf16 *bias, int64_t N, int64_t width, float inv_gamma,
                        cudaStream_t s) {
    if (width % 4 == 0 && ((uintptr_t)gk | (uintptr_t)z) % 16 == 0 && (uintptr_t)bias % 8 == 0)
        gate4_kernel<<<row_blocks(N), 256, 0, s>>>(gk, z, bias, N, width, inv_gamma);
    else
        gate_kernel<<<row_blocks(N), 256, 0, s>>>(gk, z, bias, N, width, inv_gamma);
}

/* An environment switch, read once per process (*state: -1 until then): whether `var` equals
 * `val`. The layer's A/B switches (docs/cuda.md lists them) all go through it. */
static int env_is(const char *var, const char *val, int *state) {
    if (*state < 0) {
        const char *e = getenv(var);
        *state = e && !strcmp(e, val);
    }
    return *state;
}

/* gk (and z where z is non-NULL) from the gate's low-rank middle in one launch
 * (lowrank_gate_kernel) where it serves: rank 8 or 16, widths in multiples of 4, aligned rows, and
 * GRAFT_GLA_FUSED_GATE not "0" (that keeps the second low-rank product + gate_launch, for
 * comparison). Returns 0 without launching otherwise. */
static int lowrank_gate_launch(float *gk, float *z, const bf16 *lr, const bf16 *w1, const bf16 *bias, int64_t N,
                               int64_t width, int64_t r, float inv_gamma, cudaStream_t s) {
    static int unfused = -1, mma = -1;
    if (env_is("GRAFT_GLA_FUSED_GATE", "0", &unfused) || (r != 8 && r != 16) || width % 4 || N < 1 || ((uintptr_t)gk | (uintptr_t)z) % 16 ||
        ((uintptr_t)lr | (uintptr_t)w1 | (uintptr_t)bias) % 8)
        return 0;
    if (env_is("GRAFT_GLA_GATE_MMA", "1", &mma) && r == 16 && width % 128 == 0 && (N + 63) / 64 <= 65535 && ((uintptr_t)lr | (uintptr_t)w1) % 16 == 0) {
        lowrank_gate_mma_kernel<<<dim3((unsigned)(width / 128), (unsigned)((N + 63) / 64)), 256, 0, s>>>(
            gk, z, lr, w1, bias, N, width, inv_gamma);
        return 1;
    }
    /* about two blocks an SM in all (one wave): each block loads its 1024 channels' weights (32 KB
     * at R = 16) once, so it should walk many rows; with 1024 row blocks (8 rows each at 8192
     * tokens) the weight loads were as many L2 bytes as gk writes, and the kernel ran 61 us (H100).
     * This grid and the 32-bit conv split together: layer 1 x 8192 forward 0.951 -> 0.918 ms (H100,
     * 2026-12-07, bench/results/gla-core-occupancy-2026-12-07.md; same rows, same bits). */
    const unsigned gx = (unsigned)((width + 1023) / 1024), gy = gx >= 256 ? 1u : 256u / gx;
    const dim3 grid(gx, (unsigned)(N < (int64_t)gy ? N : (int64_t)gy));
    if (r == 8) lowrank_gate_kernel<8><<<grid, 256, 0, s>>>(gk, z, lr, w1, bias, N, width, inv_gamma);
    else lowrank_gate_kernel<16><<<grid, 256, 0, s>>>(gk, z, lr, w1, bias, N, width, inv_gamma);
    return 1;
}

/* Whether an inference forward's chunked core computes the gates itself from the low-rank
 * middles lr (gla_cuda_args.gate_lr) instead of reading the fp32 gk the one-pass gate kernel
 * writes: GRAFT_GLA_GATE_IN_CORE=1, rank 16 (the mma's k), aligned operands. Off by default:
 * compiled and its argument checks tested (tests/ops/gla/test_gla_cuda.cu), not yet run on a GPU
 * (2026-12-08: no device lent); the A/B is `sh bench/layer_ab.sh DIR gla GRAFT_GLA_GATE_IN_CORE=0,1`.
 * Training forwards keep gk: the backward reads it. */
static int gate_in_core_ok(const gla_layer *L, const graft_mixer_io *io, const bf16 *lr) {
    static int state = -1;
    const bf16 *w1 = PB(L, io, GLA_P_GK1), *bias = PB(L, io, GLA_P_GK1_BIAS);
    return env_is("GRAFT_GLA_GATE_IN_CORE", "1", &state) && L->r == 16 && ((uintptr_t)lr | (uintptr_t)w1) % 16 == 0 && (uintptr_t)bias % 4 == 0;
}

/* Whether an inference prefill's output walk applies the gated norm as it stores o
 * (gla_cuda_args.norm_gh) instead of the norm kernel reading o back: GRAFT_GLA_NORM_IN_CORE=1,
 * dv = 128, ĝ rows a multiple of 8 apart, aligned. The same arithmetic on the same bf16 o either
 * way; a training forward keeps o and rstd for the backward. Off by default: session 14 measured
 * this store slower at one CTA an SM (+15 us at 8192, +40 us at 32768, H100,
 * bench/results/gla-core-occupancy-2026-12-07.md); the output walk now runs two CTAs an SM, and
 * this build (one row at a time, ĝ prefetched a chunk ahead, 128 registers, no spills) is not
 * yet timed: `sh bench/layer_ab.sh DIR gla GRAFT_GLA_NORM_IN_CORE=0,1`. */
static int norm_in_core_ok(const gla_layer *L, const graft_mixer_io *io, const bf16 *gh, int64_t ldg, const bf16 *u) {
    static int state = -1;
    const bf16 *wn = PB(L, io, GLA_P_NORM);
    return env_is("GRAFT_GLA_NORM_IN_CORE", "1", &state) && L->dv == 128 && ldg % 8 == 0 && (uintptr_t)gh % 16 == 0 && (uintptr_t)wn % 8 == 0 &&
           (uintptr_t)u % 16 == 0;
}

/* u = RMSNorm(o) ⊙ w_n ⊙ SiLU(ĝ): the 8-byte kernel for dv = 128 with aligned rows, else per element */
static void norm_gate_launch(bf16 *u, float *rstd, const bf16 *o, const bf16 *gh, int64_t ldg, const bf16 *wn,
                             int64_t rows, int H, int dv, float eps, cudaStream_t s) {
    if (dv == 128 && ldg % 4 == 0 && ((uintptr_t)u | (uintptr_t)o | (uintptr_t)gh | (uintptr_t)wn) % 8 == 0)
        norm_gate128_kernel<<<blocks_for(rows * 32, 256), 256, 0, s>>>(u, rstd, o, gh, ldg, wn, rows, H, eps);
    else
        norm_gate_kernel<<<blocks_for(rows * 32, 256), 256, 0, s>>>(u, rstd, o, gh, ldg, wn, rows, H, dv, eps);
}

/* The vectorized conv kernels serve W in 2..4, widths (and row strides) in multiples of 8 channels
 * and 16-byte aligned rows; anything else runs the per-element kernels. */
static int conv_vec_ok(int64_t W, int64_t width, const void *p0, const void *p1, const void *p2, const void *p3) {
    return W >= 2 && W <= 4 && width % 8 == 0 &&
           ((uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3) % 16 == 0;
}

/* Channels a forward conv thread takes: 8 (16-byte rows, ~100 registers, two blocks an SM) or,
 * with GRAFT_GLA_CONV_CPT=4, 4 (8-byte rows, four blocks an SM: more warps to overlap one block's
 * loads with another's arithmetic; at 1 x 32768 the 8-channel kernel moved ~805 MB in 365 us,
 * 2.2 TB/s, H100). Same sums, same bits. */
static int conv_fwd_cpt(void) {
    static int state = -1;
    return env_is("GRAFT_GLA_CONV_CPT", "4", &state) ? 4 : 8;
}

static graft_status conv_forward(const gla_layer *L, const graft_mixer_io *io, const cu_bufs *c, int64_t N, int64_t T,
                                 const int64_t ld[3], cudaStream_t s, graft_err *err) {
    const ConvArgs a = conv_args(L, io, c, N, T, ld);
    int vec = 1;
    int64_t widest = 0;
    for (int i = 0; i < 3; i++) {
        const ConvSeg &g = a.seg[i];
        vec &= conv_vec_ok(L->W, g.width, g.in, g.out, g.w, NULL) && g.ld_in % 8 == 0;
        widest = g.width > widest ? g.width : widest;
    }
    if (vec) {
        const int cpt = conv_fwd_cpt();
        const int64_t items = N / T * ((T + CONV_FWD_RUN - 1) / CONV_FWD_RUN) * (widest / cpt);
        const dim3 grid(blocks_for(items, 256), 3);
        if (cpt == 4) {
            if (L->W == 2) conv_fwd_vec_kernel<2, 4><<<grid, 256, 0, s>>>(a);
            else if (L->W == 3) conv_fwd_vec_kernel<3, 4><<<grid, 256, 0, s>>>(a);
            else conv_fwd_vec_kernel<4, 4><<<grid, 256, 0, s>>>(a);
        } else {
            if (L->W == 2) conv_fwd_vec_kernel<2, 8><<<grid, 256, 0, s>>>(a);
            else if (L->W == 3) conv_fwd_vec_kernel<3, 8><<<grid, 256, 0, s>>>(a);
            else conv_fwd_vec_kernel<4, 8><<<grid, 256, 0, s>>>(a);
        }
    } else {
        conv_fwd_kernel<<<dim3(row_blocks(N), 3), 256, 0, s>>>(a);
    }
    return launched("conv", err);
}

/* The fused decode step's arguments: the layer input, the q|k|v|g product's rows (ld apart), the
 * weights it reads, the state slots, and the gated norm's output u. */
static gla_decode_args decode_args(const gla_layer *L, const graft_mixer_io *io, const bf16 *proj, int64_t ld,
                                   bf16 *u) {
    gla_decode_args d;
    memset(&d, 0, sizeof d);
    d.B = io->B;
    d.H = L->H;
    d.C = L->C;
    d.r = L->r;
    d.W = L->W;
    d.x = io->x;
    d.proj = proj;
    d.ld = ld;
    d.w_gk0 = PB(L, io, GLA_P_GK0);
    d.w_gk1 = PB(L, io, GLA_P_GK1);
    d.b_gk1 = PB(L, io, GLA_P_GK1_BIAS);
    d.w_conv[0] = PB(L, io, GLA_P_QCONV);
    d.w_conv[1] = PB(L, io, GLA_P_KCONV);
    d.w_conv[2] = PB(L, io, GLA_P_VCONV);
    d.w_norm = PB(L, io, GLA_P_NORM);
    d.inv_gamma = (float)(1.0 / L->gamma);
    d.scale = L->scale;
    d.eps = (float)L->eps;
    d.state_in = (const float *)io->state_in;
    d.state_out = (float *)io->state_out;
    d.slot_floats = (int64_t)gla_state_floats(L);
    d.hist_off = L->H * L->dk * L->dv;
    d.u = u;
    return d;
}

extern "C" graft_status gla_cuda_layer_forward(const gla_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 0, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, W = L->W;
    const int64_t Kch = L->Kq + L->Kkv + L->Vkv, DD = L->dk * L->dv;
    const size_t slot = gla_state_floats(L), sfl = (size_t)(H * DD);
    cudaStream_t s = (cudaStream_t)io->stream;
    const float *sin = (const float *)io->state_in;
    float *sout = (float *)io->state_out;
    if (T == 0) { /* the state passes through */
        if (sout && sin != sout) {
            if (sin) TRY(cudaMemcpyAsync(sout, sin, 4 * slot * (size_t)B, cudaMemcpyDeviceToDevice, s));
            else TRY(cudaMemsetAsync(sout, 0, 4 * slot * (size_t)B, s));
        }
        return GRAFT_STATUS_OK;
    }
    cu_plan p;
    plan_make(L, B, T, &p);
    cu_bufs c;
    char *scr = (char *)io->scratch;
    carve(L, &p, io->saved ? (char *)io->saved : scr, scr, &c);
    graft_status st;
    const void *x = io->x;

    /* a decode step reads the V-first slot in place: the K-first copy is for the chunked core
     * (and a training forward's saved h0) only, 2 x 1 MiB per sequence and layer saved per token */
    const int decode = T == 1 && sout && !io->saved;

    /* 1. projections. A decode step with the short conv streams q, k, v and g as ONE product when
     * their weights are adjacent (the core lays parameters out in declared order) and so are the
     * four output buffers: rows of qt | kt | vt | gh, wsum apart, which only the conv, its tail
     * and the gated norm read (with that stride; without the conv the recurrence would read them
     * as (N, width)). Otherwise four products into (N, width) buffers. A prefill could take the
     * one product too (x read once instead of four times); measured on an H100 on 2026-12-07 it
     * gained nothing at 8192 or 32768 tokens (the four products are compute-bound there) and was
     * removed (bench/results/gla-gate-rwkv7-gprod-2026-12-07.md; commit 7ae8878 has it). */
    const int64_t wsum = L->Kq + L->Kkv + L->Vkv + L->Vq;
    const bf16 *wq = PB(L, io, GLA_P_Q);
    const int fused = decode && L->use_conv &&
                      L->slot[GLA_P_G] == L->slot[GLA_P_Q] + 3 &&
                      graft_tensors_back_to_back(&io->params[L->slot[GLA_P_Q]], 4) &&
                      (char *)c.kt == (char *)c.qt + 2 * (size_t)(N * L->Kq) &&
                      (char *)c.vt == (char *)c.kt + 2 * (size_t)(N * L->Kkv) &&
                      (char *)c.gh == (char *)c.vt + 2 * (size_t)(N * L->Vkv);
    int64_t ld[3] = {L->Kq, L->Kkv, L->Vkv}, ldg = L->Vq;
    if (fused) {
        if ((st = mm(L, s, 0, 1, N, wsum, C, x, C, wq, C, c.qt, wsum, 0, 0, err))) return prefixed(err, "forward");
        c.kt = c.qt + L->Kq;
        c.vt = c.kt + L->Kkv;
        c.gh = c.vt + L->Vkv;
        ld[0] = ld[1] = ld[2] = ldg = wsum;
        /* a decode step: then everything up to the output product as one launch (gla_cuda_decode.cu) */
        if (decode && gla_cuda_decode_fused_enabled()) {
            gla_decode_args d = decode_args(L, io, c.qt, wsum, c.u);
            if (gla_cuda_decode_fused_usable(&d)) {
                if ((st = gla_cuda_decode_fused(&d, s, err))) return prefixed(err, "decode");
                if ((st = mm(L, s, 0, 1, N, C, L->Vq, c.u, L->Vq, PB(L, io, GLA_P_O), L->Vq, io->y, C, 0, 0, err)))
                    return prefixed(err, "forward");
                return GRAFT_STATUS_OK;
            }
        }
    } else if ((st = mm(L, s, 0, 1, N, L->Kq, C, x, C, PB(L, io, GLA_P_Q), C, c.qt, L->Kq, 0, 0, err)) ||
               (st = mm(L, s, 0, 1, N, L->Kkv, C, x, C, PB(L, io, GLA_P_K), C, c.kt, L->Kkv, 0, 0, err)) ||
               (st = mm(L, s, 0, 1, N, L->Vkv, C, x, C, PB(L, io, GLA_P_V), C, c.vt, L->Vkv, 0, 0, err)) ||
               (st = mm(L, s, 0, 1, N, L->Vq, C, x, C, PB(L, io, GLA_P_G), C, c.gh, L->Vq, 0, 0, err))) {
        return prefixed(err, "forward");
    }
    /* 3. gate (fp32): the second low-rank product and the gate in one pass where it serves; z is
     * written only for the backward. With GRAFT_GLA_GATE_IN_CORE=1 an inference prefill leaves the
     * second product and the gate to the chunk kernels (gate_in_core_ok). */
    if ((st = mm(L, s, 0, 1, N, L->r, C, x, C, PB(L, io, GLA_P_GK0), C, c.lr, L->r, 0, 0, err)))
        return prefixed(err, "forward");
    const int gate_in_core = !decode && !io->saved && gate_in_core_ok(L, io, c.lr);
    const int norm_in_core = !decode && !io->saved && norm_in_core_ok(L, io, c.gh, ldg, c.u);
    if (!gate_in_core && !lowrank_gate_launch(c.gk, io->saved ? c.z : NULL, c.lr, PB(L, io, GLA_P_GK1),
                                              PB(L, io, GLA_P_GK1_BIAS), N, L->Kkv, L->r,
                                              (float)(1.0 / L->gamma), s)) {
        if ((st = mm(L, s, 0, 1, N, L->Kkv, L->r, c.lr, L->r, PB(L, io, GLA_P_GK1), L->r, c.z, L->Kkv, 0, 1, err)))
            return prefixed(err, "forward");
        gate_launch(c.gk, c.z, PB(L, io, GLA_P_GK1_BIAS), N, L->Kkv, (float)(1.0 / L->gamma), s);
    }
    if ((st = launched("gate", err))) return st;

    /* the history and the state this call starts from (copied out first: state_in may be state_out) */
    if (L->use_conv) {
        if (sin)
            TRY(cudaMemcpy2DAsync(c.hist, (size_t)(Kch * W) * 4, sin + sfl, slot * 4, (size_t)(Kch * W) * 4,
                                  (size_t)B, cudaMemcpyDeviceToDevice, s));
        else
            TRY(cudaMemsetAsync(c.hist, 0, (size_t)(B * Kch * W) * 4, s));
    }
    if (decode) {
    } else if (sin) {
        if ((st = transpose(L, c.h0, H * DD, sin, (int64_t)slot, B, s, err))) return st;
    } else {
        TRY(cudaMemsetAsync(c.h0, 0, (size_t)(B * H * DD) * 4, s));
    }

    /* 2. short conv + SiLU */
    if (L->use_conv && (st = conv_forward(L, io, &c, N, T, ld, s, err))) return st;

    /* 5. the recurrence: a one-token step in place on the V-first slot, else the chunked core */
    if (decode) {
        if ((st = state_s_copy(sout, sin, slot, sfl, B, s, err))) return st;
        if ((st = gla_cuda_decode_vfirst(B, H, L->dk, L->dv, c.q, c.k, c.v, c.gk, 0, L->scale, sout,
                                         (int64_t)slot, c.o, s, err)))
            return prefixed(err, "decode");
    } else {
        gla_cuda_args a = gla_cuda_default_args();
        a.B = B;
        a.T = T;
        a.H = H;
        a.scale = L->scale;
        a.q = c.q;
        a.k = c.k;
        a.v = c.v;
        a.gk = gate_in_core ? NULL : c.gk;
        if (gate_in_core) {
            a.gate_lr = c.lr;
            a.gate_w1 = PB(L, io, GLA_P_GK1);
            a.gate_bias = PB(L, io, GLA_P_GK1_BIAS);
            a.gate_inv_gamma = (float)(1.0 / L->gamma);
        }
        a.h0 = sin ? c.h0 : NULL;
        a.o = norm_in_core ? c.u : c.o;
        if (norm_in_core) {
            a.norm_gh = c.gh;
            a.norm_ldg = ldg;
            a.norm_w = PB(L, io, GLA_P_NORM);
            a.norm_eps = (float)L->eps;
        }
        a.ht = sout ? c.hA : NULL;
        a.work = c.work;
        a.work_bytes = c.work_bytes;
        if ((st = gla_cuda_forward(&a, s, err))) return prefixed(err, "forward");
        if (sout && (st = transpose(L, sout, (int64_t)slot, c.hA, H * DD, B, s, err))) return st;
    }

    /* 6. gated norm (unless the core applied it), 7. output projection */
    if (!norm_in_core) {
        norm_gate_launch(c.u, c.rstd, c.o, c.gh, ldg, PB(L, io, GLA_P_NORM), N * H, (int)H, (int)L->dv,
                         (float)L->eps, s);
        if ((st = launched("norm_gate", err))) return st;
    }
    if ((st = mm(L, s, 0, 1, N, C, L->Vq, c.u, L->Vq, PB(L, io, GLA_P_O), L->Vq, io->y, C, 0, 0, err)))
        return prefixed(err, "forward");

    /* conv tails of the state (from the history copied above), the three in one launch */
    if (sout && L->use_conv) {
        conv_tail_kernel<<<dim3(row_blocks(B), 3), 256, 0, s>>>(sout + sfl, (int64_t)slot,
                                                                conv_args(L, io, &c, N, T, ld));
        if ((st = launched("conv_tail", err))) return st;
    }
    return GRAFT_STATUS_OK;
}

extern "C" graft_status gla_cuda_layer_backward(const gla_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 1, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, W = L->W;
    const int64_t Kch = L->Kq + L->Kkv + L->Vkv, DD = L->dk * L->dv;
    const size_t slot = gla_state_floats(L), sfl = (size_t)(H * DD);
    cudaStream_t s = (cudaStream_t)io->stream;
    const float *dso = (const float *)io->dstate_out;
    float *dsi = (float *)io->dstate_in;
    if (T == 0) { /* the state passed through: so does its gradient */
        if (dsi && dsi != dso) {
            if (dso) TRY(cudaMemcpyAsync(dsi, dso, 4 * slot * (size_t)B, cudaMemcpyDeviceToDevice, s));
            else TRY(cudaMemsetAsync(dsi, 0, 4 * slot * (size_t)B, s));
        }
        return GRAFT_STATUS_OK;
    }
    cu_plan p;
    plan_make(L, B, T, &p);
    cu_bufs c;
    carve(L, &p, (char *)io->saved, (char *)io->scratch, &c);
    graft_status st;
    const void *x = io->x, *dy = io->dy;
    const int64_t off[3] = {0, L->Kq * W, (L->Kq + L->Kkv) * W}, wid[3] = {L->Kq, L->Kkv, L->Vkv};
    const int cslots[3] = {GLA_P_QCONV, GLA_P_KCONV, GLA_P_VCONV};
    const bf16 *pre[3] = {c.qt, c.kt, c.vt};

    /* recompute q, k, v, the gate and u (the forward saved what these need) */
    const int64_t ld[3] = {L->Kq, L->Kkv, L->Vkv};
    if (L->use_conv && (st = conv_forward(L, io, &c, N, T, ld, s, err))) return st;
    gate_launch(c.gk, c.z, NULL, N, L->Kkv, (float)(1.0 / L->gamma), s);
    if ((st = launched("gate", err))) return st;
    norm_gate_launch(c.u, NULL, c.o, c.gh, L->Vq, PB(L, io, GLA_P_NORM), N * H, (int)H, (int)L->dv, (float)L->eps, s);
    if ((st = launched("norm_gate", err))) return st;

    /* o_proj: dWo += dyᵀ u; du = dy Wo (fp32) */
    if ((io->grads && (st = mm(L, s, 1, 0, C, L->Vq, N, dy, C, c.u, L->Vq, GF(L, io, GLA_P_O), L->Vq, 1, 1, err))) ||
        (st = mm(L, s, 0, 0, N, L->Vq, C, dy, C, PB(L, io, GLA_P_O), L->Vq, c.du, L->Vq, 0, 1, err)))
        return prefixed(err, "backward");
    norm_gate_bwd_kernel<<<norm_bwd_blocks(N * H), 32 * NORM_BWD_WARPS, 0, s>>>(
        c.dout, c.dgh, io->grads ? c.pwn : NULL, c.du, c.o, c.gh, c.rstd, PB(L, io, GLA_P_NORM), N * H, (int)L->dv);
    if ((st = launched("norm_gate_bwd", err))) return st;
    /* g_proj: dWg += dghᵀ x; dx = dgh Wg (the first write of dx) */
    if ((io->grads && (st = mm(L, s, 1, 0, L->Vq, C, N, c.dgh, L->Vq, x, C, GF(L, io, GLA_P_G), C, 1, 1, err))) ||
        (st = mm(L, s, 0, 0, N, C, L->Vq, c.dgh, L->Vq, PB(L, io, GLA_P_G), C, c.dx, C, 0, 1, err)))
        return prefixed(err, "backward");

    /* the recurrence (K-first state gradients in hA, hB) */
    if (dso && (st = transpose(L, c.hA, H * DD, dso, (int64_t)slot, B, s, err))) return st;
    gla_cuda_args a = gla_cuda_default_args();
    a.B = B;
    a.T = T;
    a.H = H;
    a.scale = L->scale;
    a.q = c.q;
    a.k = c.k;
    a.v = c.v;
    a.gk = c.gk;
    a.h0 = c.h0;
    a.dout = c.dout;
    a.dht = dso ? c.hA : NULL;
    a.dq = c.dq;
    a.dk = c.dk;
    a.dv = c.dv;
    a.dgk = c.dgk;
    a.dh0 = dsi ? c.hB : NULL;
    a.work = c.work;
    a.work_bytes = c.work_bytes;
    if ((st = gla_cuda_backward(&a, s, err))) return prefixed(err, "backward");
    if (dsi && (st = transpose(L, dsi, (int64_t)slot, c.hB, H * DD, B, s, err))) return st;

    /* gate: dz = dα σ(−z)/γ; z = lr W1ᵀ + b; lr = x W0ᵀ */
    gate_bwd_kernel<<<dim3(blocks_for(L->Kkv, 128), (unsigned)p.pdb_rows), 128, 0, s>>>(
        c.dzb, GF(L, io, GLA_P_GK1_BIAS) ? c.pdb : NULL, c.dgk, c.z, N, L->Kkv, (float)(1.0 / L->gamma));
    if ((st = launched("gate_bwd", err))) return st;
    if ((io->grads && (st = mm(L, s, 1, 0, L->Kkv, L->r, N, c.dzb, L->Kkv, c.lr, L->r, GF(L, io, GLA_P_GK1), L->r, 1,
                               1, err))) ||
        (st = mm(L, s, 0, 0, N, L->r, L->Kkv, c.dzb, L->Kkv, PB(L, io, GLA_P_GK1), L->r, c.dlr, L->r, 0, 0, err)) ||
        (io->grads && (st = mm(L, s, 1, 0, L->r, C, N, c.dlr, L->r, x, C, GF(L, io, GLA_P_GK0), C, 1, 1, err))) ||
        (st = mm(L, s, 0, 0, N, C, L->r, c.dlr, L->r, PB(L, io, GLA_P_GK0), C, c.dx, C, 1, 1, err)))
        return prefixed(err, "backward");

    /* short conv + SiLU backward: dq -> g (in place) -> d(pre-conv) into the q/k/v buffers */
    bf16 *dproj[3] = {c.dq, c.dk, c.dv};
    if (L->use_conv) {
        bf16 *dpre[3] = {c.q, c.k, c.v}; /* q, k, v are dead after the recurrence */
        for (int i = 0; i < 3; i++) {
            const bf16 *w = PB(L, io, cslots[i]);
            const int vec = conv_vec_ok(W, wid[i], dproj[i], pre[i], w, dpre[i]);
            const unsigned vblocks = blocks_for(B * ((T + CONV_RUN - 1) / CONV_RUN) * (wid[i] / 8), 256);
            const float *hi = c.hist + off[i];
            if (vec && W == 2) conv_dsilu_vec_kernel<2><<<vblocks, 256, 0, s>>>(dproj[i], pre[i], wid[i], hi, Kch * W, w, B, T);
            else if (vec && W == 3) conv_dsilu_vec_kernel<3><<<vblocks, 256, 0, s>>>(dproj[i], pre[i], wid[i], hi, Kch * W, w, B, T);
            else if (vec) conv_dsilu_vec_kernel<4><<<vblocks, 256, 0, s>>>(dproj[i], pre[i], wid[i], hi, Kch * W, w, B, T);
            else
                conv_dsilu_kernel<<<blocks_for(N * wid[i], 256), 256, 0, s>>>(dproj[i], pre[i], wid[i], c.hist + off[i],
                                                                              Kch * W, w, (int)W, B, T);
            if ((st = launched("conv_dsilu", err))) return st;
            if (io->grads) { /* partials of conv i at its channels' offset: rows x (wid[i] * W) */
                float *pc = c.pconv + p.pconv_rows * off[i];
                const dim3 gv(blocks_for(wid[i] / 8, 128), (unsigned)p.pconv_rows);
                if (vec && (uintptr_t)pc % 16 == 0 && W == 2)
                    conv_dw_vec_kernel<2><<<gv, 128, 0, s>>>(pc, dproj[i], pre[i], wid[i], hi, Kch * W, B, T);
                else if (vec && (uintptr_t)pc % 16 == 0 && W == 3)
                    conv_dw_vec_kernel<3><<<gv, 128, 0, s>>>(pc, dproj[i], pre[i], wid[i], hi, Kch * W, B, T);
                else if (vec && (uintptr_t)pc % 16 == 0)
                    conv_dw_vec_kernel<4><<<gv, 128, 0, s>>>(pc, dproj[i], pre[i], wid[i], hi, Kch * W, B, T);
                else
                    conv_dw_kernel<<<dim3(blocks_for(wid[i], 128), (unsigned)p.pconv_rows), 128, 0, s>>>(
                        pc, dproj[i], pre[i], wid[i], hi, Kch * W, (int)W, B, T);
                if ((st = launched("conv_dw", err))) return st;
            }
            const float *dtail = dso ? dso + sfl + off[i] : NULL;
            bf16 *di = dpre[i];
            if (vec && W == 2) conv_din_vec_kernel<2><<<vblocks, 256, 0, s>>>(di, dproj[i], wid[i], w, dtail, slot, B, T);
            else if (vec && W == 3) conv_din_vec_kernel<3><<<vblocks, 256, 0, s>>>(di, dproj[i], wid[i], w, dtail, slot, B, T);
            else if (vec) conv_din_vec_kernel<4><<<vblocks, 256, 0, s>>>(di, dproj[i], wid[i], w, dtail, slot, B, T);
            else
                conv_din_kernel<<<blocks_for(N * wid[i], 256), 256, 0, s>>>(dpre[i], dproj[i], wid[i], w, (int)W, dtail,
                                                                            (int64_t)slot, B, T);
            if ((st = launched("conv_din", err))) return st;
            if (dsi) {
                conv_dhist_kernel<<<blocks_for(B * wid[i], 128), 128, 0, s>>>(dsi + sfl + off[i], dproj[i], wid[i], w,
                                                                              (int)W, dtail, (int64_t)slot, B, T);
                if ((st = launched("conv_dhist", err))) return st;
            }
            dproj[i] = dpre[i];
        }
    }

    /* q/k/v projections */
    const int pslots[3] = {GLA_P_Q, GLA_P_K, GLA_P_V};
    for (int i = 0; i < 3; i++) {
        if ((io->grads && (st = mm(L, s, 1, 0, wid[i], C, N, dproj[i], wid[i], x, C, GF(L, io, pslots[i]), C, 1, 1,
                                   err))) ||
            (st = mm(L, s, 0, 0, N, C, wid[i], dproj[i], wid[i], PB(L, io, pslots[i]), C, c.dx, C, 1, 1, err)))
            return prefixed(err, "backward");
    }
    f32_to_bf16_kernel<<<capped(N * C, 256), 256, 0, s>>>((bf16 *)io->dx, c.dx, N * C);
    if ((st = launched("f32_to_bf16 (dx)", err))) return st;

    /* the per-channel parameter gradients: every block's partials added in a fixed order, one launch */
    if (!io->grads) return GRAFT_STATUS_OK;
    colsum_args cs;
    memset(&cs, 0, sizeof cs);
    colsum_add(&cs, GF(L, io, GLA_P_NORM), c.pwn, p.pwn_rows, L->dv);
    colsum_add(&cs, GF(L, io, GLA_P_GK1_BIAS), c.pdb, p.pdb_rows, L->Kkv);
    for (int i = 0; i < 3 && L->use_conv; i++)
        colsum_add(&cs, GF(L, io, cslots[i]), c.pconv + p.pconv_rows * off[i], p.pconv_rows, wid[i] * W);
    if (colsum_launch(&cs, s))
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "gla: backward: more than %d gradient segments",
                             COLSUM_MAX_SEGS);
    return launched("colsum", err);
}
