/* softmax_cuda_layer.cu: the softmax mixer's forward, backward and KV-cache decode on CUDA
 * (GRAFT_DEVICE_CUDA; bf16 activations and weights, fp32 statistics and parameter gradients),
 * composed from host->matmul (cuBLASLt in the core), the flash-attention kernels of
 * softmax_cuda.cu and, here, the per-head q/k RMSNorm + RoPE and its backward.
 *
 * Why the norm + RoPE kernel lives here and not in the core's cuda/qk_norm_rope.cu: a plugin links
 * against nothing of the core (STYLE.md "The plugin ABI": -Wl,--no-undefined, no core library),
 * and the host table offers matmul only. The two kernels share the math and its fp32 conventions
 * (spec/qwen3.md §3.2, §3.4; inv_freq comes from the layer's host table built as softmax_cpu.c
 * does), and tests/model/test_model_cuda.c checks this path against the CPU reference.
 *
 * Buffers (bf16 unless marked; token-major, n = b*T + t; NQ = N*nq*D, NK = N*nkv*D):
 *   saved: q_raw NQ | qr NQ | o NQ | k_raw NK | kr NK | v NK | lse (N, nq) f32 | rq (N, nq) f32
 *          | rk (N, nkv) f32            (q_raw/k_raw before the norm, qr/kr after norm + RoPE)
 *   scratch: [saved layout when io->saved is NULL] | inv_freq (D/2) f32 | past (B) i32
 *          | decode: qt, ot (B, nq, D), (T = 1) qkv (B, (nq + 2 nkv) D) and the split-K partials
 *          | backward: dO NQ | dq NQ f32 | dk NK f32 | dv NK f32 | attn-bwd rows (N, nq) f32
 *            | dqr NQ | dkr NK | dvb NK | dx (N, C) f32
 *   decode state, one slot of state_bytes_on(CUDA, cap): K (nkv, cap, D) bf16 then V (nkv, cap, D)
 *   bf16, post-norm post-RoPE keys.
 *
 * Not here: the attention kernels (softmax_cuda.cu), the CPU reference (softmax_cpu.c).
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "softmax.h"
}
#include "graft/cuda_colsum.cuh"
#include "softmax_cuda_common.cuh" /* bf16, HD, CU_CHECK */

static size_t r256(size_t b) { return (b + 255) & ~(size_t)255; }

typedef struct cu_bufs {
    bf16 *q_raw, *qr, *o, *k_raw, *kr, *v;
    float *lse, *rq, *rk;
    float *inv_freq;
    int32_t *past;
    bf16 *qt, *ot;
    bf16 *qkv; /* T = 1 only: a decode step's q | k | v rows (B, nq D + 2 nkv D) */
    void *dec;
    size_t dec_bytes;
    bf16 *dO;
    float *dq, *dk, *dv, *rows;
    size_t rows_bytes;
    bf16 *dqr, *dkr, *dvb;
    float *dx;
} cu_bufs;

static size_t saved_bytes(const sm_layer *l, int64_t N) {
    int64_t NQ = N * l->nq * l->D, NK = N * l->nkv * l->D;
    return 3 * r256((size_t)NQ * 2) + 3 * r256((size_t)NK * 2) + 2 * r256((size_t)(N * l->nq) * 4) +
           r256((size_t)(N * l->nkv) * 4);
}

static void carve_saved(cu_bufs *c, const sm_layer *l, int64_t N, char *p) {
    int64_t NQ = N * l->nq * l->D, NK = N * l->nkv * l->D;
    c->q_raw = (bf16 *)p; p += r256((size_t)NQ * 2);
    c->qr = (bf16 *)p; p += r256((size_t)NQ * 2);
    c->o = (bf16 *)p; p += r256((size_t)NQ * 2);
    c->k_raw = (bf16 *)p; p += r256((size_t)NK * 2);
    c->kr = (bf16 *)p; p += r256((size_t)NK * 2);
    c->v = (bf16 *)p; p += r256((size_t)NK * 2);
    c->lse = (float *)p; p += r256((size_t)(N * l->nq) * 4);
    c->rq = (float *)p; p += r256((size_t)(N * l->nq) * 4);
    c->rk = (float *)p;
}

/* Carves the scratch after the (optional) saved copy; returns the bytes it needs. */
static size_t carve_scratch(cu_bufs *c, const sm_layer *l, int64_t B, int64_t T, char *p, int with_saved) {
    int64_t N = B * T, NQ = N * l->nq * l->D, NK = N * l->nkv * l->D;
    char *p0 = p;
    if (with_saved) {
        if (c) carve_saved(c, l, N, p);
        p += saved_bytes(l, N);
    }
    size_t dec = sm_cuda_attn_decode_scratch_bytes(B, l->nq, l->D, (int64_t)1 << 20);
    size_t rows = sm_cuda_attn_bwd_scratch_bytes(B, T, l->nq);
#define TAKE(field, type, bytes)                                                                       \
    do {                                                                                               \
        if (c) c->field = (type)(void *)p;                                                             \
        p += r256(bytes);                                                                              \
    } while (0)
    TAKE(inv_freq, float *, (size_t)(l->D / 2) * 4);
    TAKE(past, int32_t *, (size_t)B * 4);
    TAKE(qt, bf16 *, (size_t)(B * l->nq * l->D) * 2);
    TAKE(ot, bf16 *, (size_t)(B * l->nq * l->D) * 2);
    if (T == 1) TAKE(qkv, bf16 *, (size_t)(B * (l->nq + 2 * l->nkv) * l->D) * 2);
    TAKE(dec, void *, dec);
    TAKE(dO, bf16 *, (size_t)NQ * 2);
    TAKE(dq, float *, (size_t)NQ * 4);
    TAKE(dk, float *, (size_t)NK * 4);
    TAKE(dv, float *, (size_t)NK * 4);
    TAKE(rows, float *, rows);
    TAKE(dqr, bf16 *, (size_t)NQ * 2);
    TAKE(dkr, bf16 *, (size_t)NK * 2);
    TAKE(dvb, bf16 *, (size_t)NK * 2);
    TAKE(dx, float *, (size_t)(N * l->C) * 4);
#undef TAKE
    if (c) {
        c->dec_bytes = dec;
        c->rows_bytes = rows;
    }
    return (size_t)(p - p0);
}

extern "C" graft_status sm_workspace_cuda(const sm_layer *l, int64_t B, int64_t T, size_t *saved, size_t *scratch,
                                          graft_err *err) {
    (void)err;
    if (saved) *saved = saved_bytes(l, B * T);
    if (scratch) *scratch = carve_scratch(NULL, l, B, T, NULL, 1);
    return GRAFT_STATUS_OK;
}

/* ---- q/k RMSNorm + RoPE --------------------------------------------------------------------- */

static unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* One warp (the decode step's kernel): the D values of one head row xr normalized (rstd over D,
 * eps) and scaled by w, then rotated at position pos, written to yr; returns the row's rstd. */
static __device__ __forceinline__ float norm_rope_row(bf16 *yr, const bf16 *xr, const bf16 *w, const float *inv_freq,
                                                      float pos, int D, float eps, int lane) {
    float ss = 0.0f;
    for (int d = lane; d < D; d += 32) {
        float v = __bfloat162float(xr[d]);
        ss += v * v;
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    float r = 1.0f / sqrtf(ss / (float)D + eps);
    int half = D / 2;
    for (int j = lane; j < half; j += 32) {
        float a = __bfloat162float(w[j]) * (__bfloat162float(xr[j]) * r);
        float c2 = __bfloat162float(w[j + half]) * (__bfloat162float(xr[j + half]) * r);
        float ang = pos * inv_freq[j], cs = cosf(ang), sn = sinf(ang);
        yr[j] = __float2bfloat16(a * cs - c2 * sn);
        yr[j + half] = __float2bfloat16(c2 * cs + a * sn);
    }
    return r;
}

/* The q or k norm + RoPE of N tokens x H heads (x, y (N, H*D) bf16; rstd (N, H) f32; position
 * past[b] + t, past NULL: t), for head_dim D (a multiple of 16): D/16 lanes per (token, head) row,
 * each holding 8 values of each half in one 16-byte load (the pairs (j, j + D/2) rotate together),
 * the sum of squares reduced over the row's lanes. The one-warp-per-row kernel it replaces read 2
 * bytes per lane, twice: 0.9 TB/s at a 16384-token prefill (ncu,
 * bench/results/attention-wgmma-2026-11-24.md). */
template <int D>
static __global__ void norm_rope_fwd_kernel(bf16 *y, float *rstd, const bf16 *x, const bf16 *w, const float *inv_freq,
                                            const int32_t *past, int64_t N, int64_t T, int H, float eps) {
    constexpr int L = D / 16, HALF = D / 2;
    const int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / L;
    const int j0 = (int)(threadIdx.x % L) * 8;
    const bool ok = row < N * H;
    const int64_t r = ok ? row : 0; /* out-of-range lanes still take part in the shuffles */
    const int64_t n = r / H, t = n % T, b = n / T;
    const float pos = (float)((past ? past[b] : 0) + t);
    uint4 xa = *reinterpret_cast<const uint4 *>(x + r * D + j0);
    uint4 xb = *reinterpret_cast<const uint4 *>(x + r * D + HALF + j0);
    uint4 wa = *reinterpret_cast<const uint4 *>(w + j0), wb = *reinterpret_cast<const uint4 *>(w + HALF + j0);
    const bf16 *xap = reinterpret_cast<const bf16 *>(&xa), *xbp = reinterpret_cast<const bf16 *>(&xb);
    const bf16 *wap = reinterpret_cast<const bf16 *>(&wa), *wbp = reinterpret_cast<const bf16 *>(&wb);
    float a[8], c[8], ss = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        a[i] = __bfloat162float(xap[i]);
        c[i] = __bfloat162float(xbp[i]);
        ss += a[i] * a[i] + c[i] * c[i];
    }
#pragma unroll
    for (int o = L / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float rs = 1.0f / sqrtf(ss / (float)D + eps);
    uint4 ya, yb;
    bf16 *yap = reinterpret_cast<bf16 *>(&ya), *ybp = reinterpret_cast<bf16 *>(&yb);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float av = __bfloat162float(wap[i]) * (a[i] * rs), cv = __bfloat162float(wbp[i]) * (c[i] * rs);
        float sn, cs;
        sincosf(pos * inv_freq[j0 + i], &sn, &cs);
        yap[i] = __float2bfloat16(av * cs - cv * sn);
        ybp[i] = __float2bfloat16(cv * cs + av * sn);
    }
    if (!ok) return;
    *reinterpret_cast<uint4 *>(y + r * D + j0) = ya;
    *reinterpret_cast<uint4 *>(y + r * D + HALF + j0) = yb;
    if (j0 == 0 && rstd) rstd[r] = rs;
}

/* head_dim 128 (the CUDA path refuses any other, sm_forward_cuda) */
static void norm_rope_fwd(bf16 *y, float *rstd, const bf16 *x, const bf16 *w, const float *inv_freq,
                          const int32_t *past, int64_t N, int64_t T, int H, float eps, cudaStream_t s) {
    norm_rope_fwd_kernel<HD><<<blocks_for(N * H * 8, 256), 256, 0, s>>>(y, rstd, x, w, inv_freq, past, N, T, H, eps);
}

/* The rows of a T-token forward after the q, k and v products, in ONE launch (the separate q norm,
 * k norm and cache write passes read and wrote k twice and q once more than needed: ~50 us a
 * layer at a 16384-token prefill on an H100). Row r of N x (nq + 2 nkv) is (token n, head h):
 *   q heads: normalized + rotated into qr (rstd into rq when set);
 *   k heads: normalized + rotated into kr when set, and into the cache slot at past[b] + t when
 *            cache is set (a prefill with a KV cache attends the keys from there: no kr at all);
 *   v heads: copied into the cache slot when cache is set (else nothing: attention reads v).
 * 8 lanes a row, the arithmetic of norm_rope_fwd_kernel lane for lane: the same bits. */
struct QkvRows {
    const bf16 *q, *k, *v;      /* (N, nq D), (N, nkv D), (N, nkv D): the products' outputs     */
    bf16 *qr, *kr;              /* (N, nq D), (N, nkv D) or NULL                                 */
    float *rq, *rk;             /* (N, nq), (N, nkv) or NULL                                     */
    bf16 *cache;                /* B slots of slot_elems (K (nkv, cap, D) then V) or NULL        */
    const bf16 *wq, *wk;        /* q_norm, k_norm weights (D)                                    */
    const float *inv_freq;      /* (D / 2)                                                       */
    const int32_t *past;        /* (B) tokens before these T, device; NULL = 0                   */
    int64_t N, T, cap, slot_elems;
    int nq, nkv;
    float eps;
};

template <int D>
static __global__ void qkv_rows_kernel(const QkvRows a) {
    constexpr int L = D / 16, HALF = D / 2;
    const int H = a.nq + 2 * a.nkv;
    const int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / L;
    const int j0 = (int)(threadIdx.x % L) * 8;
    const bool ok = row < a.N * H;
    const int64_t r = ok ? row : 0; /* out-of-range lanes still take part in the shuffles */
    const int64_t n = r / H, t = n % a.T, b = n / a.T;
    const int h = (int)(r % H);
    const int kind = h < a.nq ? 0 : h < a.nq + a.nkv ? 1 : 2; /* q, k, v */
    const int hh = kind == 0 ? h : kind == 1 ? h - a.nq : h - a.nq - a.nkv;
    const int64_t u = (a.past ? a.past[b] : 0) + t;
    const bf16 *x = kind == 0 ? a.q + (n * a.nq + hh) * D : (kind == 1 ? a.k : a.v) + (n * a.nkv + hh) * D;
    const uint4 xa = *reinterpret_cast<const uint4 *>(x + j0), xb = *reinterpret_cast<const uint4 *>(x + HALF + j0);
    bf16 *K = a.cache ? a.cache + b * a.slot_elems : NULL;
    const bf16 *w = kind == 0 ? a.wq : a.wk; /* v rows compute a throwaway norm: the shuffles are warp-wide */
    uint4 wa = *reinterpret_cast<const uint4 *>(w + j0), wb = *reinterpret_cast<const uint4 *>(w + HALF + j0);
    const bf16 *xap = reinterpret_cast<const bf16 *>(&xa), *xbp = reinterpret_cast<const bf16 *>(&xb);
    const bf16 *wap = reinterpret_cast<const bf16 *>(&wa), *wbp = reinterpret_cast<const bf16 *>(&wb);
    float av[8], cv[8], ss = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        av[i] = __bfloat162float(xap[i]);
        cv[i] = __bfloat162float(xbp[i]);
        ss += av[i] * av[i] + cv[i] * cv[i];
    }
#pragma unroll
    for (int o = L / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (!ok) return;
    if (kind == 2) { /* v: into the cache as it is */
        if (K) {
            bf16 *V = K + (int64_t)a.nkv * a.cap * D + ((int64_t)hh * a.cap + u) * D;
            *reinterpret_cast<uint4 *>(V + j0) = xa;
            *reinterpret_cast<uint4 *>(V + HALF + j0) = xb;
        }
        return;
    }
    const float rs = 1.0f / sqrtf(ss / (float)D + a.eps);
    const float pos = (float)u;
    uint4 ya, yb;
    bf16 *yap = reinterpret_cast<bf16 *>(&ya), *ybp = reinterpret_cast<bf16 *>(&yb);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float x0 = __bfloat162float(wap[i]) * (av[i] * rs), x1 = __bfloat162float(wbp[i]) * (cv[i] * rs);
        float sn, cs;
        sincosf(pos * a.inv_freq[j0 + i], &sn, &cs);
        yap[i] = __float2bfloat16(x0 * cs - x1 * sn);
        ybp[i] = __float2bfloat16(x1 * cs + x0 * sn);
    }
    bf16 *y = NULL;
    float *rstd = NULL;
    int64_t ri = 0;
    if (kind == 0) {
        y = a.qr + (n * a.nq + hh) * D, rstd = a.rq, ri = n * a.nq + hh;
    } else {
        y = a.kr ? a.kr + (n * a.nkv + hh) * D : NULL, rstd = a.rk, ri = n * a.nkv + hh;
        if (K) {
            bf16 *Kr = K + ((int64_t)hh * a.cap + u) * D;
            *reinterpret_cast<uint4 *>(Kr + j0) = ya;
            *reinterpret_cast<uint4 *>(Kr + HALF + j0) = yb;
        }
    }
    if (y) {
        *reinterpret_cast<uint4 *>(y + j0) = ya;
        *reinterpret_cast<uint4 *>(y + HALF + j0) = yb;
    }
    if (j0 == 0 && rstd) rstd[ri] = rs;
}

/* GRAFT_CUDA_QKV_ROWS=0: the separate q norm, k norm and cache-write launches (A/B only) */
static bool qkv_rows_fused(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("GRAFT_CUDA_QKV_ROWS");
        on = !(e && !strcmp(e, "0"));
    }
    return on != 0;
}

/* A decode step's q/k/v rows after the fused q|k|v product, in one launch (one warp per
 * (b, head) of nq + 2 nkv): q heads normalized + rotated into qr (B, nq, D); k heads normalized
 * + rotated straight into the cache slot at past[b]; v heads copied there. The same arithmetic as
 * norm_rope_fwd_kernel + cache_write_kernel. qkv row b: q (nq D) | k (nkv D) | v (nkv D). */
static __global__ void decode_qkv_kernel(bf16 *qr, bf16 *state, const bf16 *qkv, const bf16 *wq, const bf16 *wk,
                                         const float *inv_freq, const int32_t *past, int64_t B, int nq, int nkv, int D,
                                         int64_t cap, int64_t slot_elems, float eps) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31, H = nq + 2 * nkv;
    if (row >= B * H) return;
    int64_t b = row / H;
    int h = (int)(row % H);
    const bf16 *xr = qkv + row * D;
    int64_t u = past[b];
    if (h < nq) {
        norm_rope_row(qr + (b * nq + h) * D, xr, wq, inv_freq, (float)u, D, eps, lane);
        return;
    }
    bf16 *K = state + b * slot_elems;
    if (h < nq + nkv) {
        norm_rope_row(K + ((int64_t)(h - nq) * cap + u) * D, xr, wk, inv_freq, (float)u, D, eps, lane);
        return;
    }
    bf16 *V = K + (int64_t)nkv * cap * D + ((int64_t)(h - nq - nkv) * cap + u) * D;
    for (int d = lane; d < D; d += 32) V[d] = xr[d];
}

/* Backward, one warp per (n, h): g = dy (f32, (N, H*D)); t = rope^T(g); dx = r (t w) - x r^3
 * mean(t w x) written bf16; the row's dw contribution t * x * r overwrites g (f32) for the
 * deterministic column sum below. */
static __global__ void norm_rope_bwd_kernel(bf16 *dx, float *g, const bf16 *x, const bf16 *w, const float *rstd,
                                            const float *inv_freq, int64_t N, int64_t T, int H, int D) {
    int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= N * H) return;
    int64_t t = (row / H) % T;
    float r = rstd[row], pos = (float)t;
    int half = D / 2;
    const bf16 *xr = x + row * D;
    float *gr = g + row * D;
    float dot = 0.0f;
    for (int j = lane; j < half; j += 32) {
        float ang = pos * inv_freq[j], cs = cosf(ang), sn = sinf(ang);
        float g0 = gr[j], g1 = gr[j + half];
        float t0 = g0 * cs + g1 * sn, t1 = -g0 * sn + g1 * cs;
        float x0 = __bfloat162float(xr[j]), x1 = __bfloat162float(xr[j + half]);
        float w0 = __bfloat162float(w[j]), w1 = __bfloat162float(w[j + half]);
        dot += t0 * w0 * x0 + t1 * w1 * x1;
        gr[j] = t0; /* keep t for the second pass */
        gr[j + half] = t1;
    }
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    float mean = dot / (float)D;
    bf16 *dr = dx + row * D;
    for (int d = lane; d < D; d += 32) {
        float tv = gr[d], xv = __bfloat162float(xr[d]), wv = __bfloat162float(w[d]);
        dr[d] = __float2bfloat16(r * (tv * wv) - xv * r * r * r * mean);
        gr[d] = tv * xv * r;
    }
}

static __global__ void f32_to_bf16(bf16 *y, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16(x[i]);
}

/* Writes this call's keys and values (N rows of (nkv, D)) into the caches of B slots at
 * positions past[b] + t. One warp per (n, kv head): 16-byte copies, the K row then the V row
 * (D a multiple of 8: rows of 16-byte chunks). */
static __global__ void cache_write_kernel(bf16 *state, const bf16 *kr, const bf16 *v, const int32_t *past, int64_t T,
                                          int nkv, int D, int64_t cap, int64_t slot_elems, int64_t N) {
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= N * nkv) return;
    const int64_t n = w / nkv;
    const int hk = (int)(w % nkv), chunks = D / 8;
    const int64_t b = n / T, t = n % T, u = (past ? past[b] : 0) + t;
    bf16 *K = state + b * slot_elems + ((int64_t)hk * cap + u) * D;
    bf16 *V = K + (int64_t)nkv * cap * D;
    for (int c = lane; c < 2 * chunks; c += 32) {
        const bool isv = c >= chunks;
        const int cc = isv ? c - chunks : c;
        *reinterpret_cast<uint4 *>((isv ? V : K) + cc * 8) =
            *reinterpret_cast<const uint4 *>((isv ? v : kr) + w * D + cc * 8);
    }
}

static graft_status launched(const char *what, graft_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "softmax: launch of %s: %s", what, cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

/* ---- products through the host ------------------------------------------------------------- */

/* C (m x n) = alpha op(A) op(B) + beta C; A, B bf16; C bf16 or f32 (c_f32). */
static graft_status mm(const sm_layer *l, void *stream, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                       int64_t lda, const void *Bm, int64_t ldb, void *Cm, int64_t ldc, float beta, int c_f32,
                       graft_err *err) {
    return graft_host_matmul_bf16(l->host, stream, ta, tb, m, n, k, A, lda, Bm, ldb, Cm, ldc, beta, c_f32, err);
}

static graft_status check_cuda_io(const graft_mixer_io *io, int backward, graft_err *err) {
    const sm_layer *l = (const sm_layer *)io->layer;
    if (l->D != 128)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax: CUDA: head_dim %lld, the attention kernels serve 128 only (run on the CPU)",
                             (long long)l->D);
    if (!io->x || (!backward && !io->y) || (backward && (!io->dy || !io->dx)) || !io->scratch)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: CUDA: x, %s or scratch is NULL",
                             backward ? "dy, dx" : "y");
    for (int i = 0; i < N_PARAMS; i++) {
        const graft_tensor *p = &io->params[i];
        if (p->dtype != GRAFT_DTYPE_BF16 || p->device != GRAFT_DEVICE_CUDA || !p->data)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: CUDA: param %d: expected a BF16 CUDA tensor, got %s",
                                 i, graft_dtype_name(p->dtype));
        if (backward && io->grads &&
            (io->grads[i].dtype != GRAFT_DTYPE_F32 || io->grads[i].device != GRAFT_DEVICE_CUDA))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: CUDA: grad %d: expected an F32 CUDA tensor", i);
    }
    return GRAFT_STATUS_OK;
}

extern "C" void sm_cuda_release(sm_layer *l) {
    if (l && l->inv_freq_dev) cudaFree(l->inv_freq_dev);
    if (l) l->inv_freq_dev = NULL;
}

/* One new token per sequence continuing its cache, everything on the stream and every length read
 * from io->past_len_dev (plugin.h): q/k/v projections (one product when the weights are adjacent),
 * norm + RoPE at position past[b], the new key and value written at past[b] (one launch), split-K
 * attention over past[b] + 1 keys (split fixed by the capacity), the output projection. With T = 1 the (B, 1, nq, D) rows are already the decode
 * kernel's (B, nq, D) layout: no copies. */
static graft_status forward_decode_graph(const graft_mixer_io *io, const sm_layer *l, cu_bufs *cb, graft_err *err) {
    const cu_bufs &c = *cb;
    int64_t B = io->B, N = B, C = l->C, D = l->D, nq = l->nq, nkv = l->nkv, qd = nq * D, kd = nkv * D;
    int64_t cap = io->state_capacity;
    cudaStream_t s = (cudaStream_t)io->stream;
    const int32_t *past = io->past_len_dev;
    graft_status st;
    size_t slot_bytes = (size_t)(2 * kd * cap) * sizeof(bf16); /* sm_state_bytes_on */
    /* q, k and v in one weight stream when the core placed the three matrices back to back, then
     * their norms, RoPE and the cache writes in one launch. */
    const void *wq = io->params[P_Q].data, *wk = io->params[P_K].data, *wv = io->params[P_V].data;
    if (c.qkv && graft_tensors_back_to_back(&io->params[P_Q], 3)) {
        if ((st = mm(l, s, 0, 1, N, qd + 2 * kd, C, io->x, C, wq, C, c.qkv, qd + 2 * kd, 0.0f, 0, err)))
            return graft_err_prefix(err, "softmax: decode");
        decode_qkv_kernel<<<blocks_for(N * (nq + 2 * nkv), 8), 256, 0, s>>>(
            c.qr, (bf16 *)io->state_out, c.qkv, (const bf16 *)io->params[P_QNORM].data,
            (const bf16 *)io->params[P_KNORM].data, c.inv_freq, past, N, (int)nq, (int)nkv, (int)D, cap,
            (int64_t)(slot_bytes / 2), (float)l->eps);
        if ((st = launched("decode_qkv", err))) return st;
    } else {
        if ((st = mm(l, s, 0, 1, N, qd, C, io->x, C, wq, C, c.q_raw, qd, 0.0f, 0, err)) ||
            (st = mm(l, s, 0, 1, N, kd, C, io->x, C, wk, C, c.k_raw, kd, 0.0f, 0, err)) ||
            (st = mm(l, s, 0, 1, N, kd, C, io->x, C, wv, C, c.v, kd, 0.0f, 0, err)))
            return graft_err_prefix(err, "softmax: decode");
        norm_rope_fwd(c.qr, c.rq, c.q_raw, (const bf16 *)io->params[P_QNORM].data, c.inv_freq,
                      past, N, 1, (int)nq, (float)l->eps, s);
        if ((st = launched("norm_rope_fwd (q)", err))) return st;
        norm_rope_fwd(c.kr, c.rk, c.k_raw, (const bf16 *)io->params[P_KNORM].data, c.inv_freq,
                      past, N, 1, (int)nkv, (float)l->eps, s);
        if ((st = launched("norm_rope_fwd (k)", err))) return st;
        cache_write_kernel<<<blocks_for(N * nkv * 32, 256), 256, 0, s>>>((bf16 *)io->state_out, c.kr, c.v, past, 1,
                                                                         (int)nkv, (int)D, cap,
                                                                         (int64_t)(slot_bytes / 2), N);
        if ((st = launched("cache_write", err))) return st;
    }
    const char *K0 = (const char *)io->state_out;
    if ((st = sm_cuda_attn_decode_dev(c.o, c.qr, K0, (const bf16 *)K0 + kd * cap, (int64_t)(slot_bytes / 2), cap * D,
                                      past, 1, cap, B, nq, nkv, D, l->scale, c.dec, c.dec_bytes, s, err)))
        return graft_err_prefix(err, "softmax: decode");
    if ((st = mm(l, s, 0, 1, N, C, qd, c.o, qd, io->params[P_O].data, qd, io->y, C, 0.0f, 0, err)))
        return graft_err_prefix(err, "softmax: decode");
    return GRAFT_STATUS_OK;
}

extern "C" graft_status sm_forward_cuda(const graft_mixer_io *io, graft_err *err) {
    if (check_cuda_io(io, 0, err)) return err->status;
    const sm_layer *l = (const sm_layer *)io->layer;
    int64_t B = io->B, T = io->T, N = B * T, C = l->C, D = l->D, nq = l->nq, nkv = l->nkv, qd = nq * D, kd = nkv * D;
    int64_t cap = io->state_capacity;
    cudaStream_t s = (cudaStream_t)io->stream;
    int continuing = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t past = io->past_len ? io->past_len[b] : 0;
        if (past < 0 || (past > 0 && !io->state_in))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "softmax: past_len[%lld] = %lld %s", (long long)b,
                                 (long long)past, past < 0 ? "is negative" : "but state_in is NULL (no cache to continue)");
        if ((io->state_in || io->state_out) && past + T > cap)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "softmax: sequence %lld: past_len %lld + T %lld exceeds the KV cache capacity %lld",
                                 (long long)b, (long long)past, (long long)T, (long long)cap);
        if (io->state_in && past > 0) continuing = 1;
    }
    if (continuing && !io->state_out)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax: CUDA: continuing a KV cache needs state_out (the new keys are attended from it)");
    /* Graph-capturable decode (plugin.h past_len_dev): lengths only from the device, no host copy. */
    const int graph = io->struct_size >= offsetof(graft_mixer_io, past_len_dev) + sizeof(io->past_len_dev) &&
                      io->past_len_dev && T == 1 && io->state_out && io->state_in == io->state_out;
    cu_bufs c;
    memset(&c, 0, sizeof c);
    char *scratch = (char *)io->scratch;
    carve_scratch(&c, l, B, T, scratch, 1); /* the saved layout first, used when io->saved is NULL */
    if (io->saved) carve_saved(&c, l, N, (char *)io->saved);
    if (!l->inv_freq_dev) { /* once per layer, before any capture (the core captures no first call) */
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        CU_CHECK(cudaStreamIsCapturing(s, &cs));
        if (cs != cudaStreamCaptureStatusNone)
            return graft_err_set(err, GRAFT_STATUS_INTERNAL, "softmax: CUDA: first call of a layer inside a graph capture");
        void *p = NULL;
        CU_CHECK(cudaMalloc(&p, (size_t)(D / 2) * 4));
        if (cudaMemcpy(p, l->inv_freq, (size_t)(D / 2) * 4, cudaMemcpyHostToDevice) != cudaSuccess) {
            cudaFree(p);
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "softmax: CUDA: uploading inv_freq failed");
        }
        ((sm_layer *)l)->inv_freq_dev = p;
    }
    c.inv_freq = (float *)l->inv_freq_dev;
    if (graph) return forward_decode_graph(io, l, &c, err);
    int32_t *past_dev = NULL;
    if (continuing) {
        int32_t pl[256];
        for (int64_t b0 = 0; b0 < B; b0 += 256) {
            int64_t bn = B - b0 < 256 ? B - b0 : 256;
            for (int64_t i = 0; i < bn; i++) pl[i] = (int32_t)io->past_len[b0 + i];
            CU_CHECK(cudaMemcpyAsync(c.past + b0, pl, (size_t)bn * 4, cudaMemcpyHostToDevice, s));
            CU_CHECK(cudaStreamSynchronize(s)); /* pl is reused */
        }
        past_dev = c.past;
    }
    graft_status st;
    if ((st = mm(l, s, 0, 1, N, qd, C, io->x, C, io->params[P_Q].data, C, c.q_raw, qd, 0.0f, 0, err)) ||
        (st = mm(l, s, 0, 1, N, kd, C, io->x, C, io->params[P_K].data, C, c.k_raw, kd, 0.0f, 0, err)) ||
        (st = mm(l, s, 0, 1, N, kd, C, io->x, C, io->params[P_V].data, C, c.v, kd, 0.0f, 0, err)))
        return graft_err_prefix(err, "softmax: forward");
    size_t slot_bytes = (size_t)(2 * kd * cap) * sizeof(bf16); /* sm_state_bytes_on */
    if (io->state_out && io->state_in && io->state_in != io->state_out)
        CU_CHECK(cudaMemcpyAsync(io->state_out, io->state_in, (size_t)B * slot_bytes, cudaMemcpyDeviceToDevice, s));
    /* A fresh prefill into a KV cache on Hopper attends its keys from the cache (the cached kernel
     * with every past length 0: the same bits as reading kr and v), so kr is never written. */
    const bool fresh_from_cache = !continuing && io->state_out && !io->saved && qkv_rows_fused() &&
                                  sm_cuda_attn_fwd_cached_available();
    if (qkv_rows_fused()) {
        QkvRows qa;
        memset(&qa, 0, sizeof qa);
        qa.q = c.q_raw, qa.k = c.k_raw, qa.v = c.v, qa.qr = c.qr, qa.kr = fresh_from_cache ? NULL : c.kr;
        qa.rq = io->saved ? c.rq : NULL, qa.rk = io->saved ? c.rk : NULL;
        qa.cache = (bf16 *)io->state_out;
        qa.wq = (const bf16 *)io->params[P_QNORM].data, qa.wk = (const bf16 *)io->params[P_KNORM].data;
        qa.inv_freq = c.inv_freq, qa.past = past_dev;
        qa.N = N, qa.T = T, qa.cap = cap, qa.slot_elems = (int64_t)(slot_bytes / 2);
        qa.nq = (int)nq, qa.nkv = (int)nkv, qa.eps = (float)l->eps;
        qkv_rows_kernel<HD><<<blocks_for(N * (nq + 2 * nkv) * (HD / 16), 256), 256, 0, s>>>(qa);
        if ((st = launched("qkv_rows", err))) return st;
    } else {
        norm_rope_fwd(c.qr, c.rq, c.q_raw, (const bf16 *)io->params[P_QNORM].data, c.inv_freq,
                      past_dev, N, T, (int)nq, (float)l->eps, s);
        if ((st = launched("norm_rope_fwd (q)", err))) return st;
        norm_rope_fwd(c.kr, c.rk, c.k_raw, (const bf16 *)io->params[P_KNORM].data, c.inv_freq,
                      past_dev, N, T, (int)nkv, (float)l->eps, s);
        if ((st = launched("norm_rope_fwd (k)", err))) return st;
        if (io->state_out) {
            cache_write_kernel<<<blocks_for(N * nkv * 32, 256), 256, 0, s>>>((bf16 *)io->state_out, c.kr, c.v,
                                                                             past_dev, T, (int)nkv, (int)D, cap,
                                                                             (int64_t)(slot_bytes / 2), N);
            if ((st = launched("cache_write", err))) return st;
        }
    }
    if (fresh_from_cache) {
        CU_CHECK(cudaMemsetAsync(c.past, 0, (size_t)B * sizeof(int32_t), s));
        const bf16 *cache = (const bf16 *)io->state_out;
        if ((st = sm_cuda_attn_fwd_cached(c.o, c.qr, cache, cache + kd * cap, (int64_t)(slot_bytes / 2), cap * D, cap,
                                          c.past, B, T, nq, nkv, D, l->scale, s, err)))
            return graft_err_prefix(err, "softmax: forward");
    } else if (!continuing) {
        if ((st = sm_cuda_attn_fwd(c.o, io->saved ? c.lse : NULL, c.qr, c.kr, c.v, B, T, nq, nkv, D, l->scale, s, err)))
            return graft_err_prefix(err, "softmax: forward");
    } else if (T > 1 && sm_cuda_attn_fwd_cached_available()) {
        /* Continuing a cache: token t of every sequence attends its cache up to past[b] + t (the
         * new keys were written above). A prefill chunk on Hopper: one flash-attention launch
         * reading the cache (it costs what the same tokens cost in a fresh prefill). */
        const bf16 *cache = (const bf16 *)io->state_out;
        if ((st = sm_cuda_attn_fwd_cached(c.o, c.qr, cache, cache + kd * cap, (int64_t)(slot_bytes / 2), cap * D, cap,
                                          past_dev, B, T, nq, nkv, D, l->scale, s, err)))
            return graft_err_prefix(err, "softmax: forward");
    } else {
        /* Continuing a cache, one split-K decode per t: for T = 1 the decode kernel the CUDA graph
         * path runs too (eager and graph decode steps agree to fp32 reassociation); for T > 1 only
         * without the Hopper kernel (correct, slow). */
        int64_t kv_len[256];
        for (int64_t t = 0; t < T; t++) {
            for (int64_t b0 = 0; b0 < B; b0 += 256) {
                int64_t bn = B - b0 < 256 ? B - b0 : 256;
                for (int64_t i = 0; i < bn; i++) kv_len[i] = io->past_len[b0 + i] + t + 1;
                const bf16 *q = c.qr + ((b0 * T) + t) * qd;
                CU_CHECK(cudaMemcpy2DAsync(c.qt, (size_t)qd * 2, q, (size_t)(T * qd) * 2, (size_t)qd * 2, (size_t)bn,
                                      cudaMemcpyDeviceToDevice, s));
                const char *K0 = (const char *)io->state_out + (size_t)b0 * slot_bytes;
                if ((st = sm_cuda_attn_decode(c.ot, c.qt, K0, (const bf16 *)K0 + kd * cap, (int64_t)(slot_bytes / 2),
                                              cap * D, kv_len, bn, nq, nkv, D, l->scale, c.dec, c.dec_bytes, s, err)))
                    return graft_err_prefix(err, "softmax: decode");
                CU_CHECK(cudaMemcpy2DAsync(c.o + ((b0 * T) + t) * qd, (size_t)(T * qd) * 2, c.ot, (size_t)qd * 2,
                                      (size_t)qd * 2, (size_t)bn, cudaMemcpyDeviceToDevice, s));
            }
        }
    }
    if ((st = mm(l, s, 0, 1, N, C, qd, c.o, qd, io->params[P_O].data, qd, io->y, C, 0.0f, 0, err)))
        return graft_err_prefix(err, "softmax: forward");
    return GRAFT_STATUS_OK;
}

extern "C" graft_status sm_backward_cuda(const graft_mixer_io *io, graft_err *err) {
    if (check_cuda_io(io, 1, err)) return err->status;
    const sm_layer *l = (const sm_layer *)io->layer;
    if (io->state_in || io->dstate_out || io->dstate_in || !io->saved)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "softmax: backward needs the saved activations of a training forward and no KV cache");
    int64_t B = io->B, T = io->T, N = B * T, C = l->C, D = l->D, nq = l->nq, nkv = l->nkv, qd = nq * D, kd = nkv * D;
    cudaStream_t s = (cudaStream_t)io->stream;
    cu_bufs c;
    memset(&c, 0, sizeof c);
    carve_scratch(&c, l, B, T, (char *)io->scratch, 1);
    carve_saved(&c, l, N, (char *)io->saved);
    CU_CHECK(cudaMemcpyAsync(c.inv_freq, l->inv_freq, (size_t)(D / 2) * 4, cudaMemcpyHostToDevice, s));
    const graft_tensor *G = io->grads;
    graft_status st;
    /* y = o Wo^T: dO = dy Wo; dWo += dy^T o */
    if ((st = mm(l, s, 0, 0, N, qd, C, io->dy, C, io->params[P_O].data, qd, c.dO, qd, 0.0f, 0, err)) ||
        (G && (st = mm(l, s, 1, 0, C, qd, N, io->dy, C, c.o, qd, G[P_O].data, qd, 1.0f, 1, err))))
        return graft_err_prefix(err, "softmax: backward");
    if ((st = sm_cuda_attn_bwd(c.dq, c.dk, c.dv, c.qr, c.kr, c.v, c.o, c.lse, c.dO, B, T, nq, nkv, D, l->scale, c.rows,
                               c.rows_bytes, s, err)))
        return graft_err_prefix(err, "softmax: backward");
    norm_rope_bwd_kernel<<<blocks_for(N * nq, 8), 256, 0, s>>>(c.dqr, c.dq, c.q_raw, (const bf16 *)io->params[P_QNORM].data,
                                                               c.rq, c.inv_freq, N, T, (int)nq, (int)D);
    if ((st = launched("norm_rope_bwd (q)", err))) return st;
    norm_rope_bwd_kernel<<<blocks_for(N * nkv, 8), 256, 0, s>>>(c.dkr, c.dk, c.k_raw, (const bf16 *)io->params[P_KNORM].data,
                                                                c.rk, c.inv_freq, N, T, (int)nkv, (int)D);
    if ((st = launched("norm_rope_bwd (k)", err))) return st;
    if (G) { /* both norms' weight gradients in one fixed-order launch */
        colsum_args cs;
        memset(&cs, 0, sizeof cs);
        colsum_add(&cs, (float *)G[P_QNORM].data, c.dq, N * nq, D);
        colsum_add(&cs, (float *)G[P_KNORM].data, c.dk, N * nkv, D);
        colsum_launch(&cs, s);
        if ((st = launched("colsum (q_norm, k_norm)", err))) return st;
    }
    f32_to_bf16<<<blocks_for(N * kd, 256) < 4096 ? blocks_for(N * kd, 256) : 4096, 256, 0, s>>>(c.dvb, c.dv, N * kd);
    if ((st = launched("f32_to_bf16 (dv)", err))) return st;
    /* dx = dqr Wq + dkr Wk + dv Wv, accumulated in fp32, rounded once */
    if ((st = mm(l, s, 0, 0, N, C, qd, c.dqr, qd, io->params[P_Q].data, C, c.dx, C, 0.0f, 1, err)) ||
        (st = mm(l, s, 0, 0, N, C, kd, c.dkr, kd, io->params[P_K].data, C, c.dx, C, 1.0f, 1, err)) ||
        (st = mm(l, s, 0, 0, N, C, kd, c.dvb, kd, io->params[P_V].data, C, c.dx, C, 1.0f, 1, err)))
        return graft_err_prefix(err, "softmax: backward");
    f32_to_bf16<<<blocks_for(N * C, 256) < 4096 ? blocks_for(N * C, 256) : 4096, 256, 0, s>>>((bf16 *)io->dx, c.dx, N * C);
    if ((st = launched("f32_to_bf16 (dx)", err))) return st;
    if (G && ((st = mm(l, s, 1, 0, qd, C, N, c.dqr, qd, io->x, C, G[P_Q].data, C, 1.0f, 1, err)) ||
              (st = mm(l, s, 1, 0, kd, C, N, c.dkr, kd, io->x, C, G[P_K].data, C, 1.0f, 1, err)) ||
              (st = mm(l, s, 1, 0, kd, C, N, c.dvb, kd, io->x, C, G[P_V].data, C, 1.0f, 1, err))))
        return graft_err_prefix(err, "softmax: backward");
    return GRAFT_STATUS_OK;
}
