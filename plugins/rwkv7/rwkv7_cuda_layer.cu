/* plugins/rwkv7/rwkv7_cuda_layer.cu: the whole RWKV-7 mixer on CUDA (GRAFT_DEVICE_CUDA): forward,
 * backward (parameter gradients, dx, the v_first gradient, the decode-state gradient) and decode
 * of spec/rwkv7.md §2 / §4 / §6 with bf16 activations and weights, fp32 gates, norms, states and
 * parameter gradients.
 *
 * Composed of: the projections and LoRAs through host->matmul (cuBLASLt in the core; BF16 x BF16
 * -> BF16 for activations, -> F32 for the LoRA pre-activations, parameter gradients and dx), the
 * recurrence core of rwkv7_cuda.cu (rwkv7_cuda_forward / _backward, K-first (B, H, K, V) states;
 * rwkv7_cuda_decode_strided for one token in place in the decode slots), and here the small
 * kernels around them: token shift and its backward, the key/value preparation (decay, in-context
 * rate, key update, key normalization κ, value residual) and its backward, GroupNorm + bonus term +
 * gate and its backward.
 *
 * Not here: the CPU reference (rwkv7_cpu.c, the function this must agree with), config parsing,
 * parameter table and init (rwkv7.c), the recurrence kernels (rwkv7_cuda.cu).
 *
 * Served: head_dim 128 (the recurrence kernels' size); anything else is refused with UNSUPPORTED
 * at the call (run that layer on the CPU).
 *
 * Dtypes of the call: x, y, dy, dx and carry (v_first) bf16; dcarry fp32 (it accumulates the
 * gradients of every consumer layer, up to 27 in Qwen3-1.7B: fp32 so the sum does not drift).
 *
 * Decode state: the CPU layout and dtype (README "Decode state"): S [H, K, V] fp32 then the
 * token-shift tail [C] fp32 per sequence. A one-token step (T = 1, state_out set, no saved buffer)
 * updates S in place and reads nothing of past_len: the step is CUDA graph capturable (no host
 * sync, no host memory, no allocation, no branch on lengths). It is the fused decode step
 * (fdec_kernel below: shift, the first-stage products, one cluster kernel per head for the LoRA
 * second stages, preparation, recurrence, GroupNorm and gate, then o_proj: 9-10 launches instead of
 * 18-20; the unfused step's bits wherever its LoRA products take the core's skinny kernel, i.e.
 * B <= 8) wherever it serves the layer (compute capability 9.0, LoRA ranks multiples of 8);
 * GRAFT_RWKV7_FUSED_DECODE=0 (read once per process) selects the unfused step: the token-parallel
 * kernels, with rwkv7_cuda_decode_strided for the recurrence.
 *
 * Buffers (token-major rows n = b*T + t; N = B*T; C = Vt):
 *   saved:   hist (B, C) f32, the shift tail the call started from | h0 (B, H, K, V) f32, the state
 *            it started from | r, k0, v0 (N, C) bf16 | zw, za (N, C) f32 LoRA outputs before bias
 *            | znu (N, C) f32 (consumer) | hw, ha, hg, hv LoRA middles bf16 (after tanh / σ) | g
 *            (N, C) bf16 | o (N, C) bf16 before the norm | mean, rstd (N, H) f32 | the recurrence
 *            core's saved states (rwkv7_cuda_work_bytes(, 0))
 *   scratch: [the saved layout, used when io->saved is NULL] | xb[6] (N, C) bf16 | w f32, k, a, b,
 *            v bf16 (N, C) | og (N, C) bf16 | hA, hB (B, H, K, V) f32 | the core's backward work
 *            (from here on backward only; a forward puts the chunked core's images here) |
 *            backward: dof f32, dO, dg, dr, dk, dv, da, db bf16, dw, drb, dkb, dvb f32, dznu bf16,
 *            dh f32 and dhb bf16 (N, max rank), dxt, A, Bm (N, C) f32 | the parameter-gradient
 *            partials, f32 (graft/cuda_colsum.cuh: written per warp or block, summed in a fixed order, so a
 *            rerun is bitwise identical): pout (3, nwarp, 128) r_k, gn_w, gn_b | pprep (5, nwarp,
 *            128) k_a, k_k, w bias, a bias, v bias | pshift (6, N/64 row blocks, C) the mixes mu
 */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "rwkv7.h"
#include "rwkv7_cuda.cuh"
}
#include "graft/cuda_colsum.cuh"
#include "graft/cuda_dot.cuh"
#include "graft/cuda_skinny.cuh"
#include "graft/cuda_pdl.cuh"

typedef __nv_bfloat16 bf16;

#define CW 0.6065306597126334f /* exp(-1/2): w = -CW * sigmoid(z) */
#define L2_EPS 1e-6f

#define TRY(call)                                                                                  \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7: %s:%d: %s: %s", __FILE__,       \
                                 __LINE__, #call, cudaGetErrorString(e_));                         \
    } while (0)

__device__ __forceinline__ float bf(const bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float sigm_d(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- per-channel arithmetic shared by the token-parallel kernels and the fused decode step -------
 * One definition each, so the fused decode step (fdec_kernel) rounds and contracts exactly as the
 * kernels of the unfused path do: same inputs, same bits. */

/* x^box = x + delta * mu, rounded to bf16 (delta = x_{t-1} - x_t). */
__device__ __forceinline__ bf16 shift_mix(float xv, float d, float mu) { return __float2bfloat16(xv + d * mu); }

/* Spec §2 steps 5-9 for one channel: w = -e^{-1/2} sigmoid(zw + b_w), alpha = sigmoid(za + b_a),
 * k = k0 (1 + (alpha - 1) k_a), a = -kappa, b = kappa alpha with kappa = u inv (u = k0 k_k). */
__device__ __forceinline__ void prep_one(float k0, float u, float inv, float zw, float za, float bw, float ba,
                                         float ka, float *w, bf16 *k, bf16 *a, bf16 *b) {
    float al = sigm_d(za + ba);
    *w = -CW * sigm_d(zw + bw);
    *k = __float2bfloat16(k0 * (1.0f + (al - 1.0f) * ka));
    float kap = u * inv;
    *a = __float2bfloat16(-kap);
    *b = __float2bfloat16(kap * al);
}

/* A consumer's value residual (spec §2 step 10): v = lerp(v0, v_first, sigmoid(znu + b_v)). */
__device__ __forceinline__ bf16 value_mix(float v0, float znu, float bv, float vf) {
    float nu = sigm_d(znu + bv);
    return __float2bfloat16(v0 + nu * (vf - v0));
}

/* One term of the bonus beta = sum_i r_i k_i r_k,i of a head. */
__device__ __forceinline__ float bonus_add(float bt, float r, float k, float rk) { return bt + r * k * rk; }

/* GroupNorm statistics of one head from a warp holding its 128 outputs, 4 a lane (lane + 32 j). */
__device__ __forceinline__ void gn_stats(const float ov[4], float eps, float *m, float *rs) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) s += ov[j];
    const float mm = warp_sum(s) / 128.0f;
    float var = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) var += (ov[j] - mm) * (ov[j] - mm);
    var = warp_sum(var) / 128.0f;
    *m = mm;
    *rs = rsqrtf(var + eps);
}

/* (GroupNorm + bonus) of one channel: ((o - mean) rstd gn_w + gn_b + beta v), before the gate. */
__device__ __forceinline__ float gn_out(float ov, float m, float rs, float gw, float gb, float bt, float v) {
    return (ov - m) * rs * gw + gb + bt * v;
}

/* ---- token shift ------------------------------------------------------------------------------ */

/* delta = x_{t-1} - x_t (x_{-1} = hist[b]), xb[box] = x + delta * mu_box. One thread per (n, c). */
static __global__ void shift_kernel(bf16 *xb, int64_t box_stride, const bf16 *x, const float *hist,
                                    const bf16 *mu0, const bf16 *mu1, const bf16 *mu2, const bf16 *mu3,
                                    const bf16 *mu4, const bf16 *mu5, int64_t N, int64_t T, int64_t C) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C) return;
    int64_t n = idx / C, c = idx % C, t = n % T, b = n / T;
    float xv = bf(x[idx]);
    float prev = t > 0 ? bf(x[idx - C]) : hist[b * C + c];
    float d = prev - xv;
    const bf16 *mu[6] = {mu0, mu1, mu2, mu3, mu4, mu5};
#pragma unroll
    for (int k = 0; k < 6; k++) xb[k * box_stride + idx] = shift_mix(xv, d, bf(mu[k][c]));
}

/* shift_kernel by rows (GRAFT_RWKV7_SHIFT_VEC=1): blocks take rows n (grid-stride, two at a time so
 * four 16-byte loads are in flight a thread), threads 8 adjacent channels (16-byte loads and
 * stores); n's sequence and position by one division per row and thread instead of the four
 * 64-bit divisions of the flat index per element (n, c, t, b: ~70 instructions each, which the GLA
 * conv's per-element kernel spent its time on, bench/results/gla-conv-2026-11-24.md). At 1 x 32768
 * (1.7B shape) the per-element kernel issues ~170 instructions for each of 67M elements (~0.4-0.8
 * ms) for ~940 MB of traffic (~0.3 ms). Same shift_mix per element: the same bits. Needs C % 8 == 0
 * and 16-byte aligned rows; off until timed on a GPU. */
static __device__ __forceinline__ void ld8_bf(float *dst, const bf16 *src) {
    const uint4 u = *reinterpret_cast<const uint4 *>(src);
    const bf16 *h = reinterpret_cast<const bf16 *>(&u);
#pragma unroll
    for (int i = 0; i < 8; i++) dst[i] = bf(h[i]);
}
static __device__ __forceinline__ void shift_row8(bf16 *xb, int64_t box_stride, const bf16 *const (&mu)[6],
                                                  const float *xv, const float *pv, int64_t at, int64_t c0) {
#pragma unroll
    for (int k = 0; k < 6; k++) {
        float m[8];
        ld8_bf(m, mu[k] + c0);
        uint4 o;
        bf16 *op = reinterpret_cast<bf16 *>(&o);
#pragma unroll
        for (int i = 0; i < 8; i++) op[i] = shift_mix(xv[i], pv[i] - xv[i], m[i]);
        *reinterpret_cast<uint4 *>(xb + k * box_stride + at) = o;
    }
}
static __global__ void __launch_bounds__(256) shift_vec_kernel(bf16 *xb, int64_t box_stride, const bf16 *x,
                                                               const float *hist, const bf16 *mu0, const bf16 *mu1,
                                                               const bf16 *mu2, const bf16 *mu3, const bf16 *mu4,
                                                               const bf16 *mu5, int64_t N, int64_t T, int64_t C) {
    const int64_t c0 = 8 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (c0 >= C) return;
    const bf16 *const mu[6] = {mu0, mu1, mu2, mu3, mu4, mu5};
    auto prev = [&](float *pv, int64_t n) { /* x_{t-1} of row n, the history at t = 0 */
        const int64_t b = n / T, t = n - b * T;
        if (t > 0) {
            ld8_bf(pv, x + (n - 1) * C + c0);
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) pv[i] = hist[b * C + c0 + i];
        }
    };
    const int64_t step = gridDim.y;
    int64_t n = blockIdx.y;
    for (; n + step < N; n += 2 * step) {
        float x0[8], p0[8], x1[8], p1[8];
        ld8_bf(x0, x + n * C + c0);
        ld8_bf(x1, x + (n + step) * C + c0);
        prev(p0, n);
        prev(p1, n + step);
        shift_row8(xb, box_stride, mu, x0, p0, n * C + c0, c0);
        shift_row8(xb, box_stride, mu, x1, p1, (n + step) * C + c0, c0);
    }
    if (n < N) {
        float x0[8], p0[8];
        ld8_bf(x0, x + n * C + c0);
        prev(p0, n);
        shift_row8(xb, box_stride, mu, x0, p0, n * C + c0, c0);
    }
}

/* dx_kernel by rows, as shift_vec_kernel (GRAFT_RWKV7_SHIFT_VEC=1): 8 channels a thread, one
 * division per row; the same sums. */
static __global__ void __launch_bounds__(256) dx_vec_kernel(bf16 *dx, const float *A, const float *Bm,
                                                            const float *dso, int64_t slot, int64_t soff, int64_t N,
                                                            int64_t T, int64_t C) {
    const int64_t c0 = 8 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (c0 >= C) return;
    for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
        const int64_t b = n / T, t = n - b * T, at = n * C + c0;
        float v[8];
        const float4 a0 = *reinterpret_cast<const float4 *>(A + at), a1 = *reinterpret_cast<const float4 *>(A + at + 4);
        v[0] = a0.x, v[1] = a0.y, v[2] = a0.z, v[3] = a0.w, v[4] = a1.x, v[5] = a1.y, v[6] = a1.z, v[7] = a1.w;
        if (t + 1 < T) {
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] += Bm[at + C + i];
        } else if (dso) {
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] += dso[b * slot + soff + c0 + i];
        }
        uint4 o;
        bf16 *op = reinterpret_cast<bf16 *>(&o);
#pragma unroll
        for (int i = 0; i < 8; i++) op[i] = __float2bfloat16(v[i]);
        *reinterpret_cast<uint4 *>(dx + at) = o;
    }
}

/* Whether the token shift's forward and dx run by rows (shift_vec_kernel, dx_vec_kernel):
 * GRAFT_RWKV7_SHIFT_VEC=1, C a multiple of 8, 16-byte aligned rows. */
static int shift_vec_ok(int64_t C, const void *p0, const void *p1) {
    static int state = -1;
    if (state < 0) {
        const char *e = getenv("GRAFT_RWKV7_SHIFT_VEC");
        state = e && !strcmp(e, "1");
    }
    return state && C % 8 == 0 && ((uintptr_t)p0 | (uintptr_t)p1) % 16 == 0;
}
/* Row blocks of the by-row kernels: 1056 blocks in all (8 an SM on an H100's 132), each walking
 * many rows; on other GPUs it only changes how many rows a block walks. */
static dim3 shift_vec_grid(int64_t N, int64_t C) {
    const unsigned gx = (unsigned)((C / 8 + 255) / 256), gy = (unsigned)(1056 / gx < 1 ? 1 : 1056 / gx);
    return dim3(gx, (unsigned)(N < (int64_t)gy ? N : (int64_t)gy));
}

/* Token-shift backward for one mix (box): d = dxt (the gradient of x^box), A += (1-mu) d,
 * Bm += mu d (Bm of row n belongs to x_{n-1}), dmu[c] += sum_n d * delta. Grid (C/256, row blocks
 * of 64 rows); each block writes its sums to part (gridDim.y, C), NULL without parameter gradients
 * (colsum_kernel adds them onto dmu in a fixed order). */
static __global__ void shift_bwd_kernel(float *A, float *Bm, float *part, const float *dxt, const bf16 *x,
                                        const float *hist, const bf16 *mu, int64_t N, int64_t T, int64_t C) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t n0 = (int64_t)blockIdx.y * 64, n1 = n0 + 64 < N ? n0 + 64 : N;
    if (c >= C) return;
    float m = bf(mu[c]), acc = 0.0f;
    for (int64_t n = n0; n < n1; n++) {
        int64_t i = n * C + c, t = n % T;
        float d = dxt[i];
        float prev = t > 0 ? bf(x[i - C]) : hist[(n / T) * C + c];
        A[i] += (1.0f - m) * d;
        Bm[i] += m * d;
        acc += d * (prev - bf(x[i]));
    }
    if (part) part[blockIdx.y * C + c] = acc;
}

/* dx_t = A_t + Bm_{t+1} (t + 1 < T) or the gradient of the final shift tail (t = T-1). */
static __global__ void dx_kernel(bf16 *dx, const float *A, const float *Bm, const float *dso, int64_t slot,
                                 int64_t soff, int64_t N, int64_t T, int64_t C) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C) return;
    int64_t n = idx / C, c = idx % C, t = n % T, b = n / T;
    float v = A[idx];
    if (t + 1 < T) v += Bm[idx + C];
    else if (dso) v += dso[b * slot + soff + c];
    dx[idx] = __float2bfloat16(v);
}

/* Per (b, c): the gradient of the initial shift tail (Bm of the first row) into dstate_in. */
static __global__ void dtail_kernel(float *dsi, int64_t slot, int64_t soff, const float *Bm, int64_t B, int64_t T,
                                    int64_t C) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    int64_t b = idx / C, c = idx % C;
    dsi[b * slot + soff + c] = Bm[b * T * C + c];
}

/* Per (b, c): the state's shift tail after the call = the last x. */
static __global__ void tail_kernel(float *sout, int64_t slot, int64_t soff, const bf16 *x, int64_t B, int64_t T,
                                   int64_t C) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    int64_t b = idx / C, c = idx % C;
    sout[b * slot + soff + c] = bf(x[(b * T + T - 1) * C + c]);
}

/* ---- LoRA middles ---------------------------------------------------------------------------- */

/* In place: kind 0 tanh, 1 sigmoid. */
static __global__ void act_kernel(bf16 *p, int64_t n, int kind) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = bf(p[i]);
    p[i] = __float2bfloat16(kind == 0 ? tanhf(v) : sigm_d(v));
}

/* dhb = dh * (1 - h^2) (tanh) or dh * h (1 - h) (sigmoid), h the saved middle. */
static __global__ void act_bwd_kernel(bf16 *dhb, const float *dh, const bf16 *h, int64_t n, int kind) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float hv = bf(h[i]);
    dhb[i] = __float2bfloat16(dh[i] * (kind == 0 ? 1.0f - hv * hv : hv * (1.0f - hv)));
}

/* ---- key / value preparation (spec §2 steps 4-10) -------------------------------------------- */

struct prep_p {
    const bf16 *k0, *v0, *bw, *ba, *ka, *kk, *bv;
    const float *zw, *za, *znu;
    bf16 *carry; /* producer forward: written (v_first = v0); consumer: read */
    int write_carry, producer;
    float *w;
    bf16 *k, *a, *b, *v;
    int64_t rows, H;
};

/* One warp per (n, h) row of 128 channels, 4 per lane. */
static __global__ void prep_kernel(prep_p p) {
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= p.rows) return;
    const int64_t h = row % p.H, base = row * 128;
    float k0[4], u[4], ss = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t i = base + lane + 32 * j, ch = h * 128 + lane + 32 * j;
        k0[j] = bf(p.k0[i]);
        u[j] = k0[j] * bf(p.kk[ch]);
        ss += u[j] * u[j];
    }
    float inv = rsqrtf(warp_sum(ss) + L2_EPS);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t i = base + lane + 32 * j, ch = h * 128 + lane + 32 * j;
        prep_one(k0[j], u[j], inv, p.zw[i], p.za[i], bf(p.bw[ch]), bf(p.ba[ch]), bf(p.ka[ch]), &p.w[i], &p.k[i],
                 &p.a[i], &p.b[i]);
        float v0 = bf(p.v0[i]);
        if (p.producer) {
            p.v[i] = p.v0[i];
            if (p.write_carry) p.carry[i] = p.v0[i];
        } else {
            p.v[i] = value_mix(v0, p.znu[i], bf(p.bv[ch]), bf(p.carry[i]));
        }
    }
}

/* ---- GroupNorm + bonus + gate (spec §2 steps 12-14) ------------------------------------------- */

/* og = ((o - mean) rstd gn_w + gn_b + beta v) * g, beta = sum_i r k r_k per head. One warp per
 * (n, h); stats = 1 computes and writes mean / rstd, else reads them. */
static __global__ void out_kernel(bf16 *og, float *mean, float *rstd, int stats, const bf16 *o, const bf16 *r,
                                  const bf16 *k, const bf16 *v, const bf16 *g, const bf16 *rk, const bf16 *gw,
                                  const bf16 *gb, int64_t rows, int64_t H, float eps) {
    int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int64_t h = row % H, base = row * 128;
    float ov[4], bt = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t i = base + lane + 32 * j;
        ov[j] = bf(o[i]);
        bt = bonus_add(bt, bf(r[i]), bf(k[i]), bf(rk[h * 128 + lane + 32 * j]));
    }
    float m, rs;
    bt = warp_sum(bt);
    if (stats) {
        gn_stats(ov, eps, &m, &rs);
        if (lane == 0) mean[row] = m, rstd[row] = rs;
    } else {
        m = mean[row];
        rs = rstd[row];
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t i = base + lane + 32 * j, ch = h * 128 + lane + 32 * j;
        og[i] = __float2bfloat16(gn_out(ov[j], m, rs, bf(gw[ch]), bf(gb[ch]), bt, bf(v[i])) * bf(g[i]));
    }
}

/* Warps of the "fixed head" kernels below: grid-stride over rows n*H + h with a warp count that is
 * a multiple of H, so one warp always sees the same head and keeps its per-channel parameter
 * gradient partials in registers. At the end warp w writes them to row w of its partials, (nwarp,
 * 128) per gradient: element w * 128 + e is row w / H, channel (w % H) * 128 + e of an
 * (nwarp / H, C) matrix, which colsum_kernel sums in a fixed order (no atomics). */
static int64_t fixed_warps(int64_t rows, int64_t H) {
    int64_t m = 4096 / H;
    if (m < 1) m = 1;
    if (m * H > rows) m = (rows + H - 1) / H;
    return m * H;
}

struct outb_p {
    const float *dof, *mean, *rstd;
    const bf16 *o, *r, *k, *v, *g, *rk, *gw, *gb;
    bf16 *dg, *dO;
    float *dvb, *drb, *dkb;
    float *part; /* (3, nwarp, 128): r_k, gn_w, gn_b partials; NULL without parameter gradients */
    int64_t rows, H, nwarp;
};

/* Backward through the gate, the bonus term and the GroupNorm (spec §6.3): d = dof * g,
 * dg = dof * ohat, dbeta = d . v, dv_b = beta d, dr_b = dbeta k r_k, dk_b = dbeta r r_k,
 * dO = rstd (dxh - mean(dxh) - xh mean(dxh xh)), dxh = d gn_w; r_k, gn_w, gn_b gradients. */
static __global__ void out_bwd_kernel(outb_p p) {
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= p.nwarp) return;
    const int64_t h = warp % p.H;
    float prk[4] = {0, 0, 0, 0}, pgw[4] = {0, 0, 0, 0}, pgb[4] = {0, 0, 0, 0}, rkv[4], gwv[4], gbv[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t ch = h * 128 + lane + 32 * j;
        rkv[j] = bf(p.rk[ch]), gwv[j] = bf(p.gw[ch]), gbv[j] = bf(p.gb[ch]);
    }
    for (int64_t row = warp; row < p.rows; row += p.nwarp) {
        const int64_t base = row * 128;
        const float m = p.mean[row], rs = p.rstd[row];
        float rv[4], kv[4], vv[4], xh[4], d[4], bt = 0.0f, db = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            rv[j] = bf(p.r[i]), kv[j] = bf(p.k[i]), vv[j] = bf(p.v[i]);
            bt += rv[j] * kv[j] * rkv[j];
        }
        bt = warp_sum(bt);
        float m1 = 0.0f, m2 = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            xh[j] = (bf(p.o[i]) - m) * rs;
            float dof = p.dof[i], gv = bf(p.g[i]);
            float ohat = xh[j] * gwv[j] + gbv[j] + bt * vv[j];
            p.dg[i] = __float2bfloat16(dof * ohat);
            d[j] = dof * gv;
            db += d[j] * vv[j];
            float dxh = d[j] * gwv[j];
            m1 += dxh;
            m2 += dxh * xh[j];
            pgw[j] += d[j] * xh[j];
            pgb[j] += d[j];
        }
        db = warp_sum(db);
        m1 = warp_sum(m1) / 128.0f;
        m2 = warp_sum(m2) / 128.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            p.dvb[i] = bt * d[j];
            p.drb[i] = db * kv[j] * rkv[j];
            p.dkb[i] = db * rv[j] * rkv[j];
            prk[j] += db * rv[j] * kv[j];
            p.dO[i] = __float2bfloat16(rs * (d[j] * gwv[j] - m1 - xh[j] * m2));
        }
    }
    if (!p.part) return;
    float *pt = p.part + warp * 128 + lane;
    const int64_t seg = p.nwarp * 128;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        pt[32 * j] = prk[j];
        pt[seg + 32 * j] = pgw[j];
        pt[2 * seg + 32 * j] = pgb[j];
    }
}

struct prepb_p {
    const bf16 *k0, *v0, *bw, *ba, *ka, *kk, *bv, *carry;
    const float *zw, *za, *znu, *dw, *drb, *dkb, *dvb;
    float *dcarry;
    bf16 *dr, *dk, *dv, *da, *db; /* in: the core's gradients; out (in place): d(r), d(k0), d(v0),
                                     d(zw), d(za) for the products */
    bf16 *dznu;
    float *part; /* (5, nwarp, 128): k_a, k_k, w bias, a bias, v bias (consumer) partials; NULL
                    without parameter gradients */
    int producer;
    int64_t rows, H, nwarp;
};

/* Backward through the key update, the key normalization, the sigmoids and the value residual
 * (spec §6.3); a = -kappa, b = kappa alpha: d(kappa) = -da + alpha db, d(alpha) = kappa db + ... */
static __global__ void prep_bwd_kernel(prepb_p p) {
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= p.nwarp) return;
    const int64_t h = warp % p.H;
    float pka[4] = {0, 0, 0, 0}, pkk[4] = {0, 0, 0, 0}, pwb[4] = {0, 0, 0, 0}, pab[4] = {0, 0, 0, 0},
          pvb[4] = {0, 0, 0, 0};
    float kkv[4], kav[4], bwv[4], bav[4], bvv[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t ch = h * 128 + lane + 32 * j;
        kkv[j] = bf(p.kk[ch]), kav[j] = bf(p.ka[ch]), bwv[j] = bf(p.bw[ch]), bav[j] = bf(p.ba[ch]);
        bvv[j] = p.producer ? 0.0f : bf(p.bv[ch]);
    }
    for (int64_t row = warp; row < p.rows; row += p.nwarp) {
        const int64_t base = row * 128;
        float k0[4], u[4], al[4], dkap[4], dk[4], ss = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            k0[j] = bf(p.k0[i]);
            u[j] = k0[j] * kkv[j];
            ss += u[j] * u[j];
        }
        const float nrm2 = warp_sum(ss) + L2_EPS, inv = rsqrtf(nrm2);
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            al[j] = sigm_d(p.za[i] + bav[j]);
            float kap = u[j] * inv;
            float da = bf(p.da[i]), db = bf(p.db[i]);
            dkap[j] = -da + al[j] * db;
            dk[j] = bf(p.dk[i]) + p.dkb[i];
            float dal = kap * db + dk[j] * k0[j] * kav[j];
            pka[j] += dk[j] * k0[j] * (al[j] - 1.0f);
            float dza = dal * al[j] * (1.0f - al[j]);
            p.db[i] = __float2bfloat16(dza);
            pab[j] += dza;
            float s = sigm_d(p.zw[i] + bwv[j]);
            float dzw = -CW * s * (1.0f - s) * p.dw[i];
            p.da[i] = __float2bfloat16(dzw);
            pwb[j] += dzw;
            p.dr[i] = __float2bfloat16(bf(p.dr[i]) + p.drb[i]);
            dot += u[j] * dkap[j];
        }
        dot = warp_sum(dot);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t i = base + lane + 32 * j;
            /* kappa = u / nrm: du = dkap / nrm - u (u . dkap) / nrm^3 */
            float du = dkap[j] * inv - u[j] * dot * inv * inv * inv;
            pkk[j] += du * k0[j];
            p.dk[i] = __float2bfloat16(dk[j] * (1.0f + (al[j] - 1.0f) * kav[j]) + du * kkv[j]);
            float dv = bf(p.dv[i]) + p.dvb[i];
            if (p.producer) {
                p.dv[i] = __float2bfloat16(dv + (p.dcarry ? p.dcarry[i] : 0.0f));
            } else {
                float nu = sigm_d(p.znu[i] + bvv[j]), v0 = bf(p.v0[i]), vf = bf(p.carry[i]);
                p.dv[i] = __float2bfloat16(dv * (1.0f - nu));
                p.dcarry[i] += dv * nu;
                float dz = dv * (vf - v0) * nu * (1.0f - nu);
                p.dznu[i] = __float2bfloat16(dz);
                pvb[j] += dz;
            }
        }
    }
    if (!p.part) return;
    float *pt = p.part + warp * 128 + lane;
    const int64_t seg = p.nwarp * 128;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        pt[32 * j] = pka[j];
        pt[seg + 32 * j] = pkk[j];
        pt[2 * seg + 32 * j] = pwb[j];
        pt[3 * seg + 32 * j] = pab[j];
        if (!p.producer) pt[4 * seg + 32 * j] = pvb[j];
    }
}

/* ---- the fused decode step (T = 1, in the decode slots) ---------------------------------------
 *
 * The unfused step launches 18 (producer) or 20 (consumer) kernels per layer and token: the tail
 * copy, the shift, the products (r, k, v, both stages of each LoRA, o: 10 or 12), tanh, sigmoid,
 * prep, decode, out and tail; at batch 1 each costs a few µs of launch ramp and tail however
 * little it computes. The fused step is the shift (which also writes the new tail, below), the six
 * or seven first-stage products (they read the whole width C: one grouped launch, gprod_kernel
 * below, or through host->matmul one by one), fdec_kernel for everything per head between them and
 * the o product, and the o product: 4 launches (9 for a producer, 10 for a consumer with the
 * products apart).
 *
 * fdec_kernel: a cluster of FD_CL = 8 CTAs per (sequence, head) (16 CTAs at the 1.7B shape would
 * leave most SMs idle at batch 1; 8 x 16 = 128 fill an H100), CTA q owning the head's channels
 * [16 q, 16 q + 16) on both sides: key channels (LoRA second stages, w / k / a / b) and value
 * columns (state columns, v, the gated output). Phases, in order:
 *   1. loads: CTA q's 16 rows of each second-stage weight (cp.async, one contiguous block each),
 *      warp 0's 16 state columns into registers, the LoRA middles (tanh / sigmoid applied and
 *      rounded to bf16 as act_kernel does), r of all 128 key channels.
 *   2. the second stages of its 16 channels (zw, za, g, znu), each a dot of length rank summed in
 *      skinny_kernel's order (core/src/cuda/skinny.cu, which serves these products at m = 1 in the
 *      unfused step): 32 virtual lanes take chunks of 8 in turn, each lane's sum in chunk order,
 *      then the lanes by the butterfly 16, 8, 4, 2, 1 (8 threads a dot, 4 virtual lanes each: the
 *      levels 16 and 8 in registers, 4, 2, 1 by shuffles).
 *   3. the key norm 1/|u| of the head (every CTA: it needs only k0 and k_k), then w, k, a, b of its
 *      16 key channels (prep_one), written into every CTA of the cluster (distributed shared
 *      memory), v of its value columns (and the producer's carry); cluster barrier.
 *   4. warp 0: the recurrence of its 16 columns exactly as k_decode orders it (rwkv7_cuda.cu),
 *      two lanes a column: lane parity p holds rows c = 2 i + p, so its two accumulators of
 *      a^T S are k_decode's q_p and q_{p+2} and its o sum is k_decode's y_p; the state goes back to
 *      the slot; o (bf16) into every CTA. Warp 1 meanwhile: the bonus beta of the head. Cluster
 *      barrier.
 *   5. warp 0: GroupNorm statistics of the head from the 128 o values, gn_out and the gate for its
 *      16 columns -> og.
 * Every reduction is done in a fixed order by one warp or thread group (the 128-wide ones
 * redundantly in each CTA that needs them, from identical inputs): no atomics, a rerun gives the
 * same bits. Same order, same roundings and the shared per-channel helpers above: the fused step
 * gives the unfused step's bits, wherever skinny_kernel served the unfused step's second-stage products (B <= 8,
 * ranks multiples of 8, GRAFT_CUDA_SKINNY not 0; cuBLASLt sums zw, za, g, znu in another order,
 * which moves them by fp32 rounding and what depends on them by up to a bf16 rounding).
 *
 * Launch: programmatic stream serialization (PDL, GRAFT_CUDA_PDL=0 turns it off like the core's
 * products): the CTAs may start while the product before them finishes; they prefetch their
 * weight rows and state columns into L2 (a prefetch cannot return stale data), then wait for that
 * grid (griddepcontrol.wait: it and everything before it done and visible) before touching any
 * memory, and let the o product's blocks start right away (they wait for this grid the same way
 * before reading og). */
constexpr int FD_D = 128;            /* head dim K = V                                          */
constexpr int FD_CL = 8;             /* CTAs per head: a cluster                                */
constexpr int FD_NC = FD_D / FD_CL;  /* channels (and value columns) per CTA                    */
constexpr int FD_NT = 128;           /* threads per CTA                                         */
constexpr int FD_SMEM_MAX = 40 << 10; /* dynamic shared memory (middles + weight rows), bytes  */
static_assert(FD_NT == FD_D && FD_NT == FD_CL * FD_NC && FD_NC == 16 && FD_NT % 32 == 0,
              "one thread per key channel of the head; 16 threads per destination CTA in phase 3; "
              "16 value columns = 32 lanes of warp 0 in phase 4");

/* The decode step's token shift: the six mixes as shift_kernel (T = 1, the previous x from the
 * slot's tail, zeros without state_in), and the new tail (x) into state_out's slot by the thread
 * that read the old one, so in place is safe. One thread per (b, c). */
static __global__ void shift_dec_kernel(bf16 *xb, int64_t box_stride, const bf16 *x, const float *sin,
                                        float *sout, int64_t slot, int64_t soff, const bf16 *mu0, const bf16 *mu1,
                                        const bf16 *mu2, const bf16 *mu3, const bf16 *mu4, const bf16 *mu5,
                                        int64_t B, int64_t C) {
    graft_pdl_wait();
    graft_pdl_trigger();
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * C) return;
    int64_t b = idx / C, c = idx % C;
    float xv = bf(x[idx]);
    float prev = sin ? sin[b * slot + soff + c] : 0.0f;
    float d = prev - xv;
    const bf16 *mu[6] = {mu0, mu1, mu2, mu3, mu4, mu5};
#pragma unroll
    for (int k = 0; k < 6; k++) xb[k * box_stride + idx] = shift_mix(xv, d, bf(mu[k][c]));
    sout[b * slot + soff + c] = xv;
}

/* The decode step's first-stage products (r, k, v and the first stage of every LoRA: six, or seven
 * for a consumer) in ONE launch instead of six or seven through host->matmul. Each reads its own
 * mix of x, so they cannot be one product as GLA's q|k|v|g is; at batch 1 the LoRA stages are
 * 16-128 rows each, so most of their launch is ramp and tail. A warp owns one output row of one
 * product and computes it as the core's skinny kernel does at RPW = 1 (graft/cuda_skinny.cuh: the
 * same chunk order, unroll and butterfly), so r, k, v and the middles are the bits the separate
 * products give wherever host->matmul served them by that kernel (B <= 8; GRAFT_CUDA_SKINNY not
 * 0). Groups are told apart by the cumulative warp counts in first[]: selected by compile-time
 * indices (no local-memory copy of the parameter block). */
constexpr int GP_MAX = 7;   /* r, k, v, w_lora, a_lora, g_lora, v_lora */
constexpr int GP_NT = 256;  /* 8 warps a block, as skinny_kernel     */

struct gprod_p {
    const bf16 *a[GP_MAX];   /* (m, C) mix rows, row stride C */
    const bf16 *w[GP_MAX];   /* (n, C) weight rows            */
    bf16 *c[GP_MAX];         /* (m, n) outputs                */
    int n[GP_MAX];
    int first[GP_MAX];       /* first warp of each group */
    int warps, ng, m;        /* warps in all groups */
    int64_t C;
};

template <int R>
static __global__ void __launch_bounds__(GP_NT) gprod_kernel(gprod_p p) {
    constexpr int U = GRAFT_SKINNY_UNROLL(R, 1);
    const int lane = threadIdx.x & 31;
    const int warp = (int)blockIdx.x * (GP_NT / 32) + (int)(threadIdx.x >> 5);
    if (warp >= p.warps) return;
    const bf16 *a = p.a[0], *w = p.w[0];
    bf16 *c = p.c[0];
    int first = 0, n = p.n[0];
#pragma unroll
    for (int q = 1; q < GP_MAX; q++)
        if (q < p.ng && warp >= p.first[q]) {
            a = p.a[q];
            w = p.w[q];
            c = p.c[q];
            first = p.first[q];
            n = p.n[q];
        }
    const int row = warp - first;
    const int64_t kc = p.C / 8;
    const uint4 *wr[1] = {reinterpret_cast<const uint4 *>(w + (int64_t)row * p.C)};
    const uint4 *ar[R];
#pragma unroll
    for (int r = 0; r < R; r++) ar[r] = reinterpret_cast<const uint4 *>(a + (int64_t)min(r, p.m - 1) * p.C);
    float acc[1][R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[0][r] = 0.f;
    graft_pdl_trigger();
    graft_skinny_prefetch<1, U>(wr, lane, kc); /* weights only: the mixes are the shift's output */
    graft_pdl_wait();
    graft_skinny_dot<R, 1, U>(acc, wr, ar, lane, kc);
    graft_skinny_reduce<R, 1>(acc);
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (r < p.m) c[(int64_t)r * n + row] = __float2bfloat16(acc[0][r]);
}

struct fdec_p {
    const bf16 *r, *k0, *v0;        /* (B, C) products of the step                               */
    const bf16 *h[4];               /* LoRA middles before the activation, (B, rank): w, a, g, v */
    const bf16 *l2[4];              /* second-stage weights (C, rank): w, a, g, v                */
    int rank[4], moff[4], soff[4];  /* ranks; bf16 offsets of each middle / weight block in the
                                       dynamic shared memory                                     */
    int nl, producer;               /* LoRAs in use: 3 (producer: no v_lora) or 4                */
    const bf16 *bw, *ba, *ka, *kk, *bv, *rk, *gw, *gb;
    bf16 *carry;                    /* (B, C) v_first: the producer writes v0, a consumer reads  */
    const float *sin;               /* slots (stride slot floats), S [H, K, V] first; NULL = 0    */
    float *sout;
    int64_t slot, H, C;
    bf16 *og;                       /* (B, C) gated GroupNorm output, the o product's input       */
    float eps;
};

static __global__ void __cluster_dims__(FD_CL, 1, 1) __launch_bounds__(FD_NT) fdec_kernel(fdec_p p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    __shared__ float kv[5][FD_D];  /* r, e^w, k, a, b of the head's key channels (k_decode's staging) */
    __shared__ float ob[FD_D];     /* o of the head's value columns, bf16-rounded                     */
    __shared__ float z[4][FD_NC];  /* this CTA's zw, za (f32), g (bf16-rounded), znu (f32)            */
    __shared__ float vown[FD_NC];  /* v of this CTA's value columns                                  */
    __shared__ float red[2];       /* the head's key norm 1/|u| and bonus beta                       */
    extern __shared__ uint4 fd_dyn[];
    bf16 *dyn = reinterpret_cast<bf16 *>(fd_dyn);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int q = (int)cl.block_rank(), cq = q * FD_NC;
    const int64_t bh = blockIdx.y, b = bh / p.H, h = bh % p.H, hb = h * FD_D, xr = b * p.C + hb;
    const float *S0 = p.sin ? p.sin + b * p.slot + hb * FD_D : nullptr;
    float *S1 = p.sout + b * p.slot + hb * FD_D;
    /* this CTA runs (pairs with the wait before the first write into another CTA) */
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");

    /* 1. loads. L2 prefetches may precede the wait for the previous grid; nothing else does. */
    if (S0) asm volatile("prefetch.global.L2 [%0];" ::"l"(S0 + tid * FD_D + cq));
    for (int l = 0; l < p.nl; l++) {
        const char *w = reinterpret_cast<const char *>(p.l2[l] + (hb + cq) * p.rank[l]);
        for (int i = tid; i * 128 < 32 * p.rank[l]; i += FD_NT)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(w + 128 * i));
    }
    graft_pdl_wait();
    graft_pdl_trigger();
    for (int l = 0; l < p.nl; l++) { /* rows cq .. cq + 15: 32 rank bytes, 16-byte units */
        const bf16 *src = p.l2[l] + (hb + cq) * p.rank[l];
        bf16 *dst = dyn + p.soff[l];
        for (int i = tid; i < 2 * p.rank[l]; i += FD_NT)
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
                             (uint32_t)__cvta_generic_to_shared(dst + 8 * i)),
                         "l"(src + 8 * i)
                         : "memory");
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    const int el = lane >> 1, par = lane & 1; /* warp 0: value column cq + el, rows 2 i + par */
    float s[FD_D / 2];
    if (warp == 0) {
        if (S0) {
#pragma unroll
            for (int i = 0; i < FD_D / 2; i++) s[i] = S0[(2 * i + par) * FD_D + cq + el];
        } else {
#pragma unroll
            for (int i = 0; i < FD_D / 2; i++) s[i] = 0.0f;
        }
    }
    for (int l = 0; l < p.nl; l++)
        for (int i = tid; i < p.rank[l]; i += FD_NT) {
            float v = bf(p.h[l][b * p.rank[l] + i]);
            if (l == 0) v = tanhf(v);
            else if (l == 2) v = sigm_d(v);
            dyn[p.moff[l] + i] = __float2bfloat16(v);
        }
    kv[0][tid] = bf(p.r[xr + tid]);
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();

    /* 2. the second LoRA stages of channels cq .. cq + 15: dot u = (LoRA l, channel j) by the 8
     * threads of group g; thread t holds virtual lanes t, t + 8, t + 16, t + 24 */
    {
        const int g = tid >> 3, t = tid & 7;
        for (int u = g; u < p.nl * FD_NC; u += FD_NT / 8) {
            const int l = u / FD_NC, j = u % FD_NC, kc = p.rank[l] >> 3;
            const uint4 *w = reinterpret_cast<const uint4 *>(dyn + p.soff[l] + j * p.rank[l]);
            const uint4 *x = reinterpret_cast<const uint4 *>(dyn + p.moff[l]);
            float a4[4];
#pragma unroll
            for (int vl = 0; vl < 4; vl++) {
                float acc = 0.0f;
                for (int i = t + 8 * vl; i < kc; i += 32) graft_fma8(acc, w[i], x[i]);
                a4[vl] = acc;
            }
            float v = (a4[0] + a4[2]) + (a4[1] + a4[3]); /* butterfly levels 16, 8 */
            v += __shfl_xor_sync(0xffffffffu, v, 4);
            v += __shfl_xor_sync(0xffffffffu, v, 2);
            v += __shfl_xor_sync(0xffffffffu, v, 1);
            if (t == 0) z[l][j] = l == 2 ? bf(__float2bfloat16(v)) : v;
        }
    }
    /* 3. key norm (as prep_kernel), then w, k, a, b of this CTA's channels into every CTA:
     * thread tid computes channel cq + tid % 16 for CTA tid / 16 */
    if (warp == 0) {
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int c = lane + 32 * j;
            float u = bf(p.k0[xr + c]) * bf(p.kk[hb + c]);
            ss += u * u;
        }
        float inv = rsqrtf(warp_sum(ss) + L2_EPS);
        if (lane == 0) red[0] = inv;
    }
    __syncthreads();
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); /* every CTA of the cluster runs */
    {
        const int j = tid % FD_NC, dst = tid / FD_NC, c = cq + j;
        const int64_t ch = hb + c, i = xr + c;
        const float k0 = bf(p.k0[i]);
        float w;
        bf16 kb, ab, bb;
        prep_one(k0, k0 * bf(p.kk[ch]), red[0], z[0][j], z[1][j], bf(p.bw[ch]), bf(p.ba[ch]), bf(p.ka[ch]), &w, &kb,
                 &ab, &bb);
        float *kvd = cl.map_shared_rank(&kv[0][0], (unsigned)dst);
        kvd[FD_D + c] = expf(w);
        kvd[2 * FD_D + c] = bf(kb);
        kvd[3 * FD_D + c] = bf(ab);
        kvd[4 * FD_D + c] = bf(bb);
        if (dst == q) {
            if (p.producer) {
                vown[j] = bf(p.v0[i]);
                p.carry[i] = p.v0[i];
            } else {
                vown[j] = bf(value_mix(bf(p.v0[i]), z[3][j], bf(p.bv[ch]), bf(p.carry[i])));
            }
        }
    }
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");

    /* 4. warp 0: S <- Diag(e^w) S + b (a^T S) + k v^T, o = S^T r for columns cq .. cq + 15 */
    if (warp == 0) {
        const int e = cq + el;
        const float vv = vown[el];
        float qe = 0.0f, qo = 0.0f; /* k_decode's q_par and q_{par+2} */
#pragma unroll
        for (int i = 0; i < FD_D / 2; i += 2) {
            qe = fmaf(kv[3][2 * i + par], s[i], qe);
            qo = fmaf(kv[3][2 * i + 2 + par], s[i + 1], qo);
        }
        const float qe1 = __shfl_xor_sync(0xffffffffu, qe, 1), qo1 = __shfl_xor_sync(0xffffffffu, qo, 1);
        const float sa = (qe + qe1) + (qo + qo1);
        float y = 0.0f; /* k_decode's y_par */
#pragma unroll
        for (int i = 0; i < FD_D / 2; i++) {
            const int c = 2 * i + par;
            s[i] = fmaf(kv[1][c], s[i], fmaf(kv[4][c], sa, kv[2][c] * vv));
            y = fmaf(kv[0][c], s[i], y);
            S1[c * FD_D + e] = s[i];
        }
        const float o = bf(__float2bfloat16_rn(y + __shfl_xor_sync(0xffffffffu, y, 1)));
#pragma unroll
        for (int k = 0; k < FD_CL / 2; k++) cl.map_shared_rank(ob, (unsigned)(FD_CL / 2 * par + k))[e] = o;
    } else if (warp == 1) { /* the bonus beta = sum_c r k r_k, as out_kernel */
        float bt = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int c = lane + 32 * j;
            bt = bonus_add(bt, kv[0][c], kv[2][c], bf(p.rk[hb + c]));
        }
        bt = warp_sum(bt);
        if (lane == 0) red[1] = bt;
    }
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");

    /* 5. GroupNorm + bonus + gate of columns cq .. cq + 15 (no shared memory of another CTA is
     * touched after the barrier above, so the CTAs may exit in any order) */
    if (warp == 0) {
        float ov[4], m, rs;
#pragma unroll
        for (int j = 0; j < 4; j++) ov[j] = ob[lane + 32 * j];
        gn_stats(ov, p.eps, &m, &rs);
        if (lane < FD_NC) {
            const int c = cq + lane;
            const int64_t ch = hb + c;
            p.og[xr + c] =
                __float2bfloat16(gn_out(ob[c], m, rs, bf(p.gw[ch]), bf(p.gb[ch]), red[1], vown[lane]) * z[2][lane]);
        }
    }
#else
    __trap(); /* fdec_fits refuses devices below compute capability 9.0 */
#endif
}

/* ---- host side -------------------------------------------------------------------------------- */

static unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

static graft_status launched(const char *what, graft_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7: launch of %s: %s", what, cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

/* Prepends "rwkv7: <what>: " to a callee's message. */
static graft_status prefixed(graft_err *err, const char *what) {
    char p[64];
    snprintf(p, sizeof p, "rwkv7: %s", what);
    return graft_err_prefix(err, p);
}

/* C (m x n) = op(A) op(B) + beta C; A, B bf16; C bf16 or f32 (c_f32). */
static graft_status mm(const rwkv7_layer *L, void *stream, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                       int64_t lda, const void *Bm, int64_t ldb, void *Cm, int64_t ldc, float beta, int c_f32,
                       graft_err *err) {
    return graft_host_matmul_bf16(L->host, stream, ta, tb, m, n, k, A, lda, Bm, ldb, Cm, ldc, beta, c_f32, err);
}

/* Y (N, out) = X (N, in) W^T */
static graft_status lin(const rwkv7_layer *L, void *s, void *Y, int f32, const void *X, const void *W, int64_t N,
                        int64_t in, int64_t out, graft_err *err) {
    return mm(L, s, 0, 1, N, out, in, X, in, W, in, Y, out, 0.0f, f32, err);
}
/* dX (N, in) = dY (N, out) W (+ beta dX), f32 or bf16 */
static graft_status lin_dx(const rwkv7_layer *L, void *s, void *dX, int f32, const void *dY, const void *W,
                           int64_t N, int64_t in, int64_t out, float beta, graft_err *err) {
    return mm(L, s, 0, 0, N, in, out, dY, out, W, in, dX, in, beta, f32, err);
}
/* dW (out, in) += dY^T X (f32; skipped without grads) */
static graft_status lin_dw(const rwkv7_layer *L, void *s, float *dW, const void *dY, const void *X, int64_t N,
                           int64_t in, int64_t out, graft_err *err) {
    if (!dW) return GRAFT_STATUS_OK;
    return mm(L, s, 1, 0, out, in, N, dY, out, X, in, dW, in, 1.0f, 1, err);
}

typedef struct cu_plan {
    /* saved */
    size_t hist, h0, r, k0, v0, zw, za, znu, hw, ha, hg, hv, g, o, mean, rstd, kfw, kfw_bytes, saved_bytes;
    /* scratch (after the saved-layout copy at 0) */
    size_t xb, w, k, a, b, v, og, hA, hB, kbw, kbw_bytes;
    size_t dof, dO, dg, dr, dk, dv, da, db, dw, drb, dkb, dvb, dznu, dh, dhb, dxt, A, Bm;
    /* parameter-gradient partials (graft/cuda_colsum.cuh): nwarp of the fixed-head kernels, shift row blocks */
    size_t pout, pprep, pshift, scratch_bytes;
    int64_t nwarp, pshift_rows;
} cu_plan;

static size_t take(size_t *c, size_t bytes) {
    size_t o = *c;
    *c += (bytes + 255) & ~(size_t)255;
    return o;
}

static rwkv7_cuda_args core_args(const rwkv7_layer *L, int64_t B, int64_t T) {
    rwkv7_cuda_args a = rwkv7_cuda_default_args();
    a.B = B;
    a.T = T;
    a.H = L->H;
    a.K = L->K;
    a.V = L->V;
    a.w_bf16 = 0;
    return a;
}

static void plan_make(const rwkv7_layer *L, int64_t B, int64_t T, cu_plan *p) {
    memset(p, 0, sizeof *p);
    const size_t N = (size_t)(B * T), C = (size_t)L->C, H = (size_t)L->H, KV = (size_t)(L->K * L->V);
    size_t rmax = (size_t)L->rw;
    if ((size_t)L->ra > rmax) rmax = (size_t)L->ra;
    if ((size_t)L->rv > rmax) rmax = (size_t)L->rv;
    if ((size_t)L->rg > rmax) rmax = (size_t)L->rg;
    size_t c = 0;
    p->hist = take(&c, 4 * (size_t)B * C);
    p->h0 = take(&c, 4 * (size_t)B * H * KV);
    p->r = take(&c, 2 * N * C);
    p->k0 = take(&c, 2 * N * C);
    p->v0 = take(&c, 2 * N * C);
    p->zw = take(&c, 4 * N * C);
    p->za = take(&c, 4 * N * C);
    p->znu = take(&c, L->producer ? 0 : 4 * N * C);
    p->hw = take(&c, 2 * N * (size_t)L->rw);
    p->ha = take(&c, 2 * N * (size_t)L->ra);
    p->hg = take(&c, 2 * N * (size_t)L->rg);
    p->hv = take(&c, L->producer ? 0 : 2 * N * (size_t)L->rv);
    p->g = take(&c, 2 * N * C);
    p->o = take(&c, 2 * N * C);
    p->mean = take(&c, 4 * N * H);
    p->rstd = take(&c, 4 * N * H);
    rwkv7_cuda_args a = core_args(L, B, T);
    p->kfw_bytes = rwkv7_cuda_work_bytes(&a, 0);
    p->kfw = take(&c, p->kfw_bytes);
    p->saved_bytes = c;
    /* scratch starts with a copy of the saved layout */
    p->xb = take(&c, 6 * 2 * N * C);
    p->w = take(&c, 4 * N * C);
    p->k = take(&c, 2 * N * C);
    p->a = take(&c, 2 * N * C);
    p->b = take(&c, 2 * N * C);
    p->v = take(&c, 2 * N * C);
    p->og = take(&c, 2 * N * C);
    p->hA = take(&c, 4 * (size_t)B * H * KV);
    p->hB = take(&c, 4 * (size_t)B * H * KV);
    p->kbw_bytes = rwkv7_cuda_work_bytes(&a, 1) - p->kfw_bytes;
    p->kbw = take(&c, p->kbw_bytes);
    p->dof = take(&c, 4 * N * C);
    p->dO = take(&c, 2 * N * C);
    p->dg = take(&c, 2 * N * C);
    p->dr = take(&c, 2 * N * C);
    p->dk = take(&c, 2 * N * C);
    p->dv = take(&c, 2 * N * C);
    p->da = take(&c, 2 * N * C);
    p->db = take(&c, 2 * N * C);
    p->dw = take(&c, 4 * N * C);
    p->drb = take(&c, 4 * N * C);
    p->dkb = take(&c, 4 * N * C);
    p->dvb = take(&c, 4 * N * C);
    p->dznu = take(&c, L->producer ? 0 : 2 * N * C);
    p->dh = take(&c, 4 * N * rmax);
    p->dhb = take(&c, 2 * N * rmax);
    p->dxt = take(&c, 4 * N * C);
    p->A = take(&c, 4 * N * C);
    p->Bm = take(&c, 4 * N * C);
    p->nwarp = fixed_warps(B * T * L->H, L->H);
    p->pshift_rows = (B * T + 63) / 64;
    p->pout = take(&c, 4 * 3 * (size_t)p->nwarp * 128);
    p->pprep = take(&c, 4 * 5 * (size_t)p->nwarp * 128);
    p->pshift = take(&c, 4 * 6 * (size_t)p->pshift_rows * C);
    p->scratch_bytes = c;
}

static graft_status check_layer(const rwkv7_layer *L, int64_t B, graft_err *err) {
    if (L->K != 128 || L->V != 128)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "rwkv7: CUDA: head_dim %lld; the CUDA path serves head_dim = 128 only (run this layer "
                             "on the CPU)", (long long)L->K);
    if (B * L->H > 65535)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "rwkv7: CUDA: B * heads = %lld, at most 65535",
                             (long long)(B * L->H));
    return GRAFT_STATUS_OK;
}

static int fdec_enabled(void);

extern "C" graft_status rwkv7_cuda_workspace(const rwkv7_layer *L, int64_t B, int64_t T, size_t *saved_bytes,
                                             size_t *scratch_bytes, graft_err *err) {
    if (check_layer(L, B, err)) return err->status;
    (void)fdec_enabled(); /* the device questions are asked here, before any step could be captured */
    cu_plan p;
    plan_make(L, B, T, &p);
    if (saved_bytes) *saved_bytes = p.saved_bytes;
    if (scratch_bytes) *scratch_bytes = p.scratch_bytes;
    return GRAFT_STATUS_OK;
}

static graft_status check_io(const rwkv7_layer *L, const graft_mixer_io *io, int backward, graft_err *err) {
    if (check_layer(L, io->B, err)) return err->status;
    if (io->B < 1 || io->T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "rwkv7: B=%lld T=%lld, expected B>=1 T>=1",
                             (long long)io->B, (long long)io->T);
    if (!io->x || !io->carry || (!backward && !io->y) || (backward && (!io->dy || !io->dx)) || !io->scratch)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "rwkv7: CUDA: x, carry, %s or scratch is NULL",
                             backward ? "dy, dx" : "y");
    if (backward && !io->saved)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "rwkv7: backward: saved is NULL, expected the buffer a training forward wrote");
    if (backward && !L->producer && !io->dcarry)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "rwkv7: backward: consumer without dcarry");
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
                                 "rwkv7: CUDA: %s: expected a contiguous BF16 CUDA tensor of the declared shape "
                                 "(and an F32 CUDA gradient), got %s", s->name, graft_dtype_name(t->dtype));
    }
    return GRAFT_STATUS_OK;
}

/* Views of one call's buffers. */
typedef struct cu_bufs {
    float *hist, *h0, *zw, *za, *znu, *mean, *rstd, *w, *hA, *hB;
    bf16 *r, *k0, *v0, *hw, *ha, *hg, *hv, *g, *o, *xb, *k, *a, *b, *v, *og;
    void *kfw, *kbw;
    float *dof, *dw, *drb, *dkb, *dvb, *dh, *dxt, *A, *Bm, *pout, *pprep, *pshift;
    bf16 *dO, *dg, *dr, *dk, *dv, *da, *db, *dznu, *dhb;
} cu_bufs;

static void carve(const cu_plan *p, char *act, char *scr, cu_bufs *c) {
    c->hist = (float *)(act + p->hist);
    c->h0 = (float *)(act + p->h0);
    c->r = (bf16 *)(act + p->r);
    c->k0 = (bf16 *)(act + p->k0);
    c->v0 = (bf16 *)(act + p->v0);
    c->zw = (float *)(act + p->zw);
    c->za = (float *)(act + p->za);
    c->znu = (float *)(act + p->znu);
    c->hw = (bf16 *)(act + p->hw);
    c->ha = (bf16 *)(act + p->ha);
    c->hg = (bf16 *)(act + p->hg);
    c->hv = (bf16 *)(act + p->hv);
    c->g = (bf16 *)(act + p->g);
    c->o = (bf16 *)(act + p->o);
    c->mean = (float *)(act + p->mean);
    c->rstd = (float *)(act + p->rstd);
    c->kfw = act + p->kfw;
    c->xb = (bf16 *)(scr + p->xb);
    c->w = (float *)(scr + p->w);
    c->k = (bf16 *)(scr + p->k);
    c->a = (bf16 *)(scr + p->a);
    c->b = (bf16 *)(scr + p->b);
    c->v = (bf16 *)(scr + p->v);
    c->og = (bf16 *)(scr + p->og);
    c->hA = (float *)(scr + p->hA);
    c->hB = (float *)(scr + p->hB);
    c->kbw = scr + p->kbw;
    c->dof = (float *)(scr + p->dof);
    c->dO = (bf16 *)(scr + p->dO);
    c->dg = (bf16 *)(scr + p->dg);
    c->dr = (bf16 *)(scr + p->dr);
    c->dk = (bf16 *)(scr + p->dk);
    c->dv = (bf16 *)(scr + p->dv);
    c->da = (bf16 *)(scr + p->da);
    c->db = (bf16 *)(scr + p->db);
    c->dw = (float *)(scr + p->dw);
    c->drb = (float *)(scr + p->drb);
    c->dkb = (float *)(scr + p->dkb);
    c->dvb = (float *)(scr + p->dvb);
    c->dznu = (bf16 *)(scr + p->dznu);
    c->dh = (float *)(scr + p->dh);
    c->dhb = (bf16 *)(scr + p->dhb);
    c->dxt = (float *)(scr + p->dxt);
    c->A = (float *)(scr + p->A);
    c->Bm = (float *)(scr + p->Bm);
    c->pout = (float *)(scr + p->pout);
    c->pprep = (float *)(scr + p->pprep);
    c->pshift = (float *)(scr + p->pshift);
}

static const bf16 *PB(const graft_mixer_io *io, int i) { return (const bf16 *)io->params[i].data; }
static float *GF(const graft_mixer_io *io, int i) { return io->grads ? (float *)io->grads[i].data : NULL; }

/* Copies the S part of B slots between the slot layout (stride slot floats) and a packed
 * (B, H, K, V) buffer; src NULL: zeros. */
static graft_status copy_s(float *dst, size_t dst_bs, const float *src, size_t src_bs, size_t s_floats, int64_t B,
                           cudaStream_t s, graft_err *err) {
    if (dst == src) return GRAFT_STATUS_OK;
    if (src)
        TRY(cudaMemcpy2DAsync(dst, dst_bs * 4, src, src_bs * 4, s_floats * 4, (size_t)B, cudaMemcpyDeviceToDevice, s));
    else
        TRY(cudaMemset2DAsync(dst, dst_bs * 4, 0, s_floats * 4, (size_t)B, s));
    return GRAFT_STATUS_OK;
}

/* The projections and LoRAs of one call, from the mixes in c->xb (N = B T rows). full = 1: both
 * stages of every LoRA with their activations between (tanh for w, sigmoid for g); full = 0: the
 * first stages alone, raw (the fused decode step takes them from there, per head). */
static graft_status products(const rwkv7_layer *L, const graft_mixer_io *io, cu_bufs *c, int full, graft_err *err) {
    const int64_t N = io->B * io->T, C = L->C;
    void *s = io->stream;
    graft_status st;
    bf16 *xb[6];
    for (int i = 0; i < 6; i++) xb[i] = c->xb + (size_t)i * N * C;
    if ((st = lin(L, s, c->r, 0, xb[0], PB(io, P_R_PROJ), N, C, C, err)) ||
        (st = lin(L, s, c->k0, 0, xb[2], PB(io, P_K_PROJ), N, C, C, err)) ||
        (st = lin(L, s, c->v0, 0, xb[3], PB(io, P_V_PROJ), N, C, C, err)) ||
        (st = lin(L, s, c->hw, 0, xb[1], PB(io, P_W_L0), N, C, L->rw, err)))
        return prefixed(err, "forward");
    if (full) {
        act_kernel<<<blocks_for(N * L->rw, 256), 256, 0, (cudaStream_t)s>>>(c->hw, N * L->rw, 0);
        if ((st = launched("tanh", err))) return st;
        if ((st = lin(L, s, c->zw, 1, c->hw, PB(io, P_W_L2), N, L->rw, C, err))) return prefixed(err, "forward");
    }
    if ((st = lin(L, s, c->ha, 0, xb[4], PB(io, P_A_L0), N, C, L->ra, err)) ||
        (full && (st = lin(L, s, c->za, 1, c->ha, PB(io, P_A_L2), N, L->ra, C, err))) ||
        (st = lin(L, s, c->hg, 0, xb[5], PB(io, P_G_L0), N, C, L->rg, err)))
        return prefixed(err, "forward");
    if (full) {
        act_kernel<<<blocks_for(N * L->rg, 256), 256, 0, (cudaStream_t)s>>>(c->hg, N * L->rg, 1);
        if ((st = launched("sigmoid", err))) return st;
        if ((st = lin(L, s, c->g, 0, c->hg, PB(io, P_G_L2), N, L->rg, C, err))) return prefixed(err, "forward");
    }
    if (!L->producer && ((st = lin(L, s, c->hv, 0, xb[3], PB(io, P_V_L0), N, C, L->rv, err)) ||
                         (full && (st = lin(L, s, c->znu, 1, c->hv, PB(io, P_V_L2), N, L->rv, C, err)))))
        return prefixed(err, "forward");
    return GRAFT_STATUS_OK;
}

/* The token shift, projections, LoRAs and key/value preparation shared by forward and the
 * backward's recomputation (which passes write_all = 0: the saved tensors are not rewritten). */
static graft_status front(const rwkv7_layer *L, const graft_mixer_io *io, cu_bufs *c, int write_all, graft_err *err) {
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C;
    void *s = io->stream;
    graft_status st;
    if (shift_vec_ok(C, c->xb, io->x) && (N * C * 2) % 16 == 0) /* each box 16-byte aligned too */
        shift_vec_kernel<<<shift_vec_grid(N, C), 256, 0, (cudaStream_t)s>>>(
            c->xb, N * C, (const bf16 *)io->x, c->hist, PB(io, P_X_R), PB(io, P_X_W), PB(io, P_X_K),
            PB(io, P_X_V), PB(io, P_X_A), PB(io, P_X_G), N, T, C);
    else
        shift_kernel<<<blocks_for(N * C, 256), 256, 0, (cudaStream_t)s>>>(
            c->xb, N * C, (const bf16 *)io->x, c->hist, PB(io, P_X_R), PB(io, P_X_W), PB(io, P_X_K), PB(io, P_X_V),
            PB(io, P_X_A), PB(io, P_X_G), N, T, C);
    if ((st = launched("shift", err))) return st;
    if (write_all && (st = products(L, io, c, 1, err))) return st;
    prep_p pp;
    memset(&pp, 0, sizeof pp);
    pp.k0 = c->k0;
    pp.v0 = c->v0;
    pp.bw = PB(io, P_W_B);
    pp.ba = PB(io, P_A_B);
    pp.ka = PB(io, P_K_A);
    pp.kk = PB(io, P_K_K);
    pp.bv = L->producer ? NULL : PB(io, P_V_B);
    pp.zw = c->zw;
    pp.za = c->za;
    pp.znu = c->znu;
    pp.carry = (bf16 *)io->carry;
    pp.write_carry = write_all;
    pp.producer = L->producer;
    pp.w = c->w;
    pp.k = c->k;
    pp.a = c->a;
    pp.b = c->b;
    pp.v = c->v;
    pp.rows = N * L->H;
    pp.H = L->H;
    prep_kernel<<<blocks_for(N * L->H * 32, 256), 256, 0, (cudaStream_t)s>>>(pp);
    return launched("prep", err);
}

/* ---- the fused decode step: switches, fit, launch ---------------------------------------------- */

static int fdec_switch = -1; /* GRAFT_RWKV7_FUSED_DECODE, read once: "0" = the unfused step */
static int fdec_device = -1; /* compute capability >= 9.0 (clusters, griddepcontrol) and room for
                                one 8-CTA cluster at the largest shared memory: asked once */

static int fdec_enabled(void) {
    if (fdec_switch < 0) {
        const char *e = getenv("GRAFT_RWKV7_FUSED_DECODE");
        fdec_switch = !(e && !strcmp(e, "0"));
    }
    if (fdec_device < 0) {
        int dev = 0, major = 0, clusters = 0;
        fdec_device = cudaGetDevice(&dev) == cudaSuccess &&
                      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                      major >= 9;
        if (fdec_device) {
            cudaLaunchConfig_t cfg;
            memset(&cfg, 0, sizeof cfg);
            cfg.gridDim = dim3(FD_CL, 1);
            cfg.blockDim = dim3(FD_NT);
            cfg.dynamicSmemBytes = FD_SMEM_MAX;
            cudaError_t e = cudaOccupancyMaxActiveClusters(&clusters, fdec_kernel, &cfg);
            if (e != cudaSuccess) (void)cudaGetLastError(); /* not left for the next launch check to find */
            fdec_device = e == cudaSuccess && clusters > 0;
        }
    }
    return fdec_switch && fdec_device;
}

/* Whether the fused step serves this layer: every rank in use a multiple of 8 (16-byte chunks, as
 * skinny_kernel reads them) with 16-byte aligned second-stage weights (cp.async), the middles and
 * weight rows within FD_SMEM_MAX. Otherwise the unfused step runs (never a refusal). */
static int fdec_fits(const rwkv7_layer *L, const graft_mixer_io *io, fdec_p *p, size_t *smem) {
    if (!fdec_enabled() || L->K != FD_D || L->V != FD_D || L->C != L->H * FD_D) return 0;
    const int64_t ranks[4] = {L->rw, L->ra, L->rg, L->rv};
    const int l2[4] = {P_W_L2, P_A_L2, P_G_L2, P_V_L2};
    const int nl = L->producer ? 3 : 4;
    int64_t tot = 0;
    for (int l = 0; l < nl; l++) {
        if (ranks[l] < 8 || ranks[l] % 8 || ranks[l] > FD_SMEM_MAX || ((uintptr_t)io->params[l2[l]].data & 15u))
            return 0;
        tot += ranks[l];
    }
    if ((size_t)tot * 34 > (size_t)FD_SMEM_MAX) return 0; /* 2 bytes a middle, 16 x 2 a weight row */
    memset(p, 0, sizeof *p);
    int64_t moff = 0, soff = tot;
    for (int l = 0; l < nl; l++) {
        p->rank[l] = (int)ranks[l];
        p->moff[l] = (int)moff;
        p->soff[l] = (int)soff;
        p->l2[l] = PB(io, l2[l]);
        moff += ranks[l];
        soff += FD_NC * ranks[l];
    }
    p->nl = nl;
    *smem = (size_t)tot * 34;
    return 1;
}

/* The first-stage products of a decode step as one gprod_kernel launch, when it fits: batch <= 8
 * (the rows skinny_kernel serves), C a multiple of 8, every operand 16-byte aligned (its 16-byte
 * chunks). GRAFT_RWKV7_GROUPED_PROD=0: the separate products through host->matmul (for
 * comparison). Returns 0 when it did not launch, so the caller takes the separate products. */
static int gprod_switch = -1;

static int gprod_launch(const rwkv7_layer *L, const graft_mixer_io *io, cu_bufs *c, graft_status *st, graft_err *err) {
    if (gprod_switch < 0) {
        const char *e = getenv("GRAFT_RWKV7_GROUPED_PROD");
        gprod_switch = !(e && !strcmp(e, "0"));
    }
    const int64_t B = io->B, C = L->C;
    if (!gprod_switch || io->T != 1 || B < 1 || B > 8 || C % 8) return 0;
    gprod_p p;
    memset(&p, 0, sizeof p);
    const bf16 *xb[6];
    for (int i = 0; i < 6; i++) xb[i] = c->xb + (size_t)i * B * C;
    const struct { const bf16 *a; int w; bf16 *c; int64_t n; } g[GP_MAX] = {
        {xb[0], P_R_PROJ, c->r, C}, {xb[2], P_K_PROJ, c->k0, C}, {xb[3], P_V_PROJ, c->v0, C},
        {xb[1], P_W_L0, c->hw, L->rw}, {xb[4], P_A_L0, c->ha, L->ra}, {xb[5], P_G_L0, c->hg, L->rg},
        {xb[3], P_V_L0, c->hv, L->rv}};
    const int ng = L->producer ? 6 : 7;
    int64_t warps = 0;
    for (int i = 0; i < ng; i++) {
        const bf16 *w = PB(io, g[i].w);
        if (((uintptr_t)g[i].a | (uintptr_t)w) & 15u) return 0;
        p.a[i] = g[i].a;
        p.w[i] = w;
        p.c[i] = g[i].c;
        p.n[i] = (int)g[i].n;
        p.first[i] = (int)warps;
        warps += g[i].n;
    }
    p.warps = (int)warps;
    p.ng = ng;
    p.m = (int)B;
    p.C = C;
    const dim3 grid((unsigned)((warps + GP_NT / 32 - 1) / (GP_NT / 32)));
    cudaStream_t s = (cudaStream_t)io->stream;
    cudaError_t e = B == 1   ? graft_launch_pdl(gprod_kernel<1>, grid, dim3(GP_NT), 0, s, p)
                    : B == 2 ? graft_launch_pdl(gprod_kernel<2>, grid, dim3(GP_NT), 0, s, p)
                    : B <= 4 ? graft_launch_pdl(gprod_kernel<4>, grid, dim3(GP_NT), 0, s, p)
                             : graft_launch_pdl(gprod_kernel<8>, grid, dim3(GP_NT), 0, s, p);
    *st = e == cudaSuccess ? GRAFT_STATUS_OK
                           : graft_err_set(err, GRAFT_STATUS_DEVICE, "rwkv7: decode: launch of the grouped products: %s",
                                           cudaGetErrorString(e));
    return 1;
}

/* One token per sequence, in the decode slots (state_in may be state_out or NULL): shift (and
 * the new tail), the first-stage products (one grouped launch where gprod_launch fits),
 * fdec_kernel, o_proj. p comes from fdec_fits. */
static graft_status decode_fused(const rwkv7_layer *L, const graft_mixer_io *io, cu_bufs *c, fdec_p *p, size_t smem,
                                 graft_err *err) {
    const int64_t B = io->B, C = L->C, H = L->H;
    const int64_t slot = (int64_t)(rwkv7_state_bytes(L) / 4), sfl = H * L->K * L->V;
    cudaStream_t s = (cudaStream_t)io->stream;
    graft_status st;
    TRY(graft_launch_pdl(shift_dec_kernel, dim3(blocks_for(B * C, 256)), dim3(256), 0, s, c->xb, B * C, (const bf16 *)io->x,
                   (const float *)io->state_in, (float *)io->state_out, slot, sfl, PB(io, P_X_R), PB(io, P_X_W),
                   PB(io, P_X_K), PB(io, P_X_V), PB(io, P_X_A), PB(io, P_X_G), B, C));
    if (gprod_launch(L, io, c, &st, err)) {
        if (st) return st;
    } else if ((st = products(L, io, c, 0, err)))
        return st;
    p->r = c->r;
    p->k0 = c->k0;
    p->v0 = c->v0;
    p->h[0] = c->hw;
    p->h[1] = c->ha;
    p->h[2] = c->hg;
    p->h[3] = c->hv;
    p->producer = L->producer;
    p->bw = PB(io, P_W_B);
    p->ba = PB(io, P_A_B);
    p->ka = PB(io, P_K_A);
    p->kk = PB(io, P_K_K);
    p->bv = L->producer ? NULL : PB(io, P_V_B);
    p->rk = PB(io, P_R_K);
    p->gw = PB(io, P_GN_W);
    p->gb = PB(io, P_GN_B);
    p->carry = (bf16 *)io->carry;
    p->sin = (const float *)io->state_in;
    p->sout = (float *)io->state_out;
    p->slot = slot;
    p->H = H;
    p->C = C;
    p->og = c->og;
    p->eps = (float)L->gn_eps;
    TRY(graft_launch_pdl(fdec_kernel, dim3(FD_CL, (unsigned)(B * H)), dim3(FD_NT), smem, s, *p));
    if ((st = lin(L, io->stream, io->y, 0, c->og, PB(io, P_O_PROJ), B, C, C, err))) return prefixed(err, "decode");
    return GRAFT_STATUS_OK;
}

extern "C" graft_status rwkv7_cuda_layer_forward(const rwkv7_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 0, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, KV = L->K * L->V;
    const size_t slot = rwkv7_state_bytes(L) / 4, sfl = (size_t)(H * KV);
    cudaStream_t s = (cudaStream_t)io->stream;
    const float *sin = (const float *)io->state_in;
    float *sout = (float *)io->state_out;
    cu_plan p;
    plan_make(L, B, T, &p);
    cu_bufs c;
    char *scr = (char *)io->scratch;
    carve(&p, io->saved ? (char *)io->saved : scr, scr, &c);
    graft_status st;

    /* a one-token step in the slots: the fused step where it serves the layer */
    fdec_p fp;
    size_t fsmem = 0;
    if (T == 1 && sout && !io->saved && fdec_fits(L, io, &fp, &fsmem)) return decode_fused(L, io, &c, &fp, fsmem, err);

    /* the shift tail this call starts from (copied first: state_in may be state_out) */
    if (sin)
        TRY(cudaMemcpy2DAsync(c.hist, (size_t)C * 4, sin + sfl, slot * 4, (size_t)C * 4, (size_t)B,
                              cudaMemcpyDeviceToDevice, s));
    else
        TRY(cudaMemsetAsync(c.hist, 0, (size_t)(B * C) * 4, s));
    if ((st = front(L, io, &c, 1, err))) return st;

    /* the recurrence: a one-token step in place in the slots, else the core on packed states */
    const int decode = T == 1 && sout && !io->saved;
    if (decode) {
        if ((st = copy_s(sout, slot, sin, slot, sfl, B, s, err))) return st;
        if ((st = rwkv7_cuda_decode_strided(B, H, L->K, L->V, c.r, c.w, 0, c.k, c.v, c.a, c.b, sout,
                                            (int64_t)slot, c.o, s, err)))
            return prefixed(err, "decode");
    } else {
        rwkv7_cuda_args a = core_args(L, B, T);
        a.r = c.r;
        a.w = c.w;
        a.k = c.k;
        a.v = c.v;
        a.a = c.a;
        a.b = c.b;
        a.o = c.o;
        if (sin || io->saved) { /* the backward reads h0 from saved: zeros when there is no state_in */
            if ((st = copy_s(c.h0, sfl, sin, slot, sfl, B, s, err))) return st;
            a.h0 = c.h0;
        }
        a.ht = sout ? c.hA : NULL;
        if (io->saved) {
            a.work = c.kfw;
            a.work_bytes = p.kfw_bytes;
        }
        /* The chunked core's images (GRAFT_RWKV7_CHUNK=1) go to the backward-only part of scratch
         * (from kbw on), dead during a forward: the images take 22 bytes a token and channel, that
         * part at least 46, so they fit unless padding the last chunk to 64 tokens dominates (short
         * T); then the core allocates them itself (cudaMallocAsync, which measured +0.45 ms at
         * B4 x 2048 and +1.2-1.9 ms at B1 x 32768 on an H100). */
        if (rwkv7_cuda_chunk_work_bytes(&a) <= p.scratch_bytes - p.kbw) {
            a.chunk_work = scr + p.kbw;
            a.chunk_work_bytes = p.scratch_bytes - p.kbw;
        }
        if ((st = rwkv7_cuda_forward(&a, s, err))) return prefixed(err, "forward");
        if (sout && (st = copy_s(sout, slot, c.hA, sfl, sfl, B, s, err))) return st;
    }

    out_kernel<<<blocks_for(N * H * 32, 256), 256, 0, s>>>(c.og, c.mean, c.rstd, 1, c.o, c.r, c.k, c.v, c.g,
                                                           PB(io, P_R_K), PB(io, P_GN_W), PB(io, P_GN_B), N * H, H,
                                                           (float)L->gn_eps);
    if ((st = launched("out", err))) return st;
    if ((st = lin(L, io->stream, io->y, 0, c.og, PB(io, P_O_PROJ), N, C, C, err))) return prefixed(err, "forward");
    if (sout) {
        tail_kernel<<<blocks_for(B * C, 256), 256, 0, s>>>(sout, (int64_t)slot, (int64_t)sfl, (const bf16 *)io->x, B,
                                                           T, C);
        if ((st = launched("tail", err))) return st;
    }
    return GRAFT_STATUS_OK;
}

extern "C" graft_status rwkv7_cuda_layer_backward(const rwkv7_layer *L, const graft_mixer_io *io, graft_err *err) {
    if (check_io(L, io, 1, err)) return err->status;
    const int64_t B = io->B, T = io->T, N = B * T, C = L->C, H = L->H, KV = L->K * L->V;
    const size_t slot = rwkv7_state_bytes(L) / 4, sfl = (size_t)(H * KV);
    cudaStream_t s = (cudaStream_t)io->stream;
    void *sv = io->stream;
    const float *dso = (const float *)io->dstate_out;
    float *dsi = (float *)io->dstate_in;
    cu_plan p;
    plan_make(L, B, T, &p);
    cu_bufs c;
    carve(&p, (char *)io->saved, (char *)io->scratch, &c);
    graft_status st;
    const void *dy = io->dy;
    bf16 *xb[6];
    for (int i = 0; i < 6; i++) xb[i] = c.xb + (size_t)i * N * C;

    /* recompute the mixes, w, k, a, b, v and og (the forward saved what these need) */
    if ((st = front(L, io, &c, 0, err))) return st;
    out_kernel<<<blocks_for(N * H * 32, 256), 256, 0, s>>>(c.og, c.mean, c.rstd, 0, c.o, c.r, c.k, c.v, c.g,
                                                           PB(io, P_R_K), PB(io, P_GN_W), PB(io, P_GN_B), N * H, H,
                                                           (float)L->gn_eps);
    if ((st = launched("out", err))) return st;

    /* o_proj: dWo += dy^T og; dof = dy Wo (f32) */
    if ((st = lin_dw(L, sv, GF(io, P_O_PROJ), dy, c.og, N, C, C, err)) ||
        (st = lin_dx(L, sv, c.dof, 1, dy, PB(io, P_O_PROJ), N, C, C, 0.0f, err)))
        return prefixed(err, "backward");
    outb_p ob;
    memset(&ob, 0, sizeof ob);
    ob.dof = c.dof;
    ob.mean = c.mean;
    ob.rstd = c.rstd;
    ob.o = c.o;
    ob.r = c.r;
    ob.k = c.k;
    ob.v = c.v;
    ob.g = c.g;
    ob.rk = PB(io, P_R_K);
    ob.gw = PB(io, P_GN_W);
    ob.gb = PB(io, P_GN_B);
    ob.dg = c.dg;
    ob.dO = c.dO;
    ob.dvb = c.dvb;
    ob.drb = c.drb;
    ob.dkb = c.dkb;
    ob.part = io->grads ? c.pout : NULL;
    ob.rows = N * H;
    ob.H = H;
    ob.nwarp = p.nwarp;
    out_bwd_kernel<<<blocks_for(ob.nwarp * 32, 256), 256, 0, s>>>(ob);
    if ((st = launched("out_bwd", err))) return st;

    /* the recurrence (K-first state gradients in hA, hB) */
    if (dso && (st = copy_s(c.hA, sfl, dso, slot, sfl, B, s, err))) return st;
    rwkv7_cuda_args a = core_args(L, B, T);
    a.r = c.r;
    a.w = c.w;
    a.k = c.k;
    a.v = c.v;
    a.a = c.a;
    a.b = c.b;
    a.h0 = c.h0;
    a.dout = c.dO;
    a.dht = dso ? c.hA : NULL;
    a.dr = c.dr;
    a.dw = c.dw;
    a.dk = c.dk;
    a.dv = c.dv;
    a.da = c.da;
    a.db = c.db;
    a.dh0 = dsi ? c.hB : NULL;
    a.saved = 1;
    a.fwd_work = c.kfw;
    a.work = c.kbw;
    a.work_bytes = p.kbw_bytes;
    if ((st = rwkv7_cuda_backward(&a, s, err))) return prefixed(err, "backward");
    if (dsi && (st = copy_s(dsi, slot, c.hB, sfl, sfl, B, s, err))) return st;

    prepb_p pb;
    memset(&pb, 0, sizeof pb);
    pb.k0 = c.k0;
    pb.v0 = c.v0;
    pb.bw = PB(io, P_W_B);
    pb.ba = PB(io, P_A_B);
    pb.ka = PB(io, P_K_A);
    pb.kk = PB(io, P_K_K);
    pb.bv = L->producer ? NULL : PB(io, P_V_B);
    pb.carry = (const bf16 *)io->carry;
    pb.zw = c.zw;
    pb.za = c.za;
    pb.znu = c.znu;
    pb.dw = c.dw;
    pb.drb = c.drb;
    pb.dkb = c.dkb;
    pb.dvb = c.dvb;
    pb.dcarry = (float *)io->dcarry;
    pb.dr = c.dr;
    pb.dk = c.dk;
    pb.dv = c.dv;
    pb.da = c.da;
    pb.db = c.db;
    pb.dznu = c.dznu;
    pb.part = io->grads ? c.pprep : NULL;
    pb.producer = L->producer;
    pb.rows = N * H;
    pb.H = H;
    pb.nwarp = p.nwarp;
    prep_bwd_kernel<<<blocks_for(pb.nwarp * 32, 256), 256, 0, s>>>(pb);
    if ((st = launched("prep_bwd", err))) return st;

    /* the products, box by box; each box's input gradient goes through the shift backward */
    TRY(cudaMemsetAsync(c.A, 0, (size_t)(N * C) * 4, s));
    TRY(cudaMemsetAsync(c.Bm, 0, (size_t)(N * C) * 4, s));
    dim3 gsb(blocks_for(C, 256), (unsigned)p.pshift_rows);
#define SHIFT_BWD(box)                                                                                          \
    do {                                                                                                        \
        float *part_ = io->grads ? c.pshift + (box) * p.pshift_rows * C : NULL;                                 \
        shift_bwd_kernel<<<gsb, 256, 0, s>>>(c.A, c.Bm, part_, c.dxt, (const bf16 *)io->x, c.hist,               \
                                             PB(io, P_X_R + (box)), N, T, C);                                   \
        if ((st = launched("shift_bwd", err))) return st;                                                       \
    } while (0)
    /* r (box 0) */
    if ((st = lin_dw(L, sv, GF(io, P_R_PROJ), c.dr, xb[0], N, C, C, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dr, PB(io, P_R_PROJ), N, C, C, 0.0f, err)))
        return prefixed(err, "backward");
    SHIFT_BWD(0);
    /* k (box 2) */
    if ((st = lin_dw(L, sv, GF(io, P_K_PROJ), c.dk, xb[2], N, C, C, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dk, PB(io, P_K_PROJ), N, C, C, 0.0f, err)))
        return prefixed(err, "backward");
    SHIFT_BWD(2);
    /* v (box 3): v_proj, and the value-residual LoRA of a consumer */
    if ((st = lin_dw(L, sv, GF(io, P_V_PROJ), c.dv, xb[3], N, C, C, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dv, PB(io, P_V_PROJ), N, C, C, 0.0f, err)))
        return prefixed(err, "backward");
    if (!L->producer && ((st = lin_dw(L, sv, GF(io, P_V_L2), c.dznu, c.hv, N, L->rv, C, err)) ||
                         (st = lin_dx(L, sv, c.dhb, 0, c.dznu, PB(io, P_V_L2), N, L->rv, C, 0.0f, err)) ||
                         (st = lin_dw(L, sv, GF(io, P_V_L0), c.dhb, xb[3], N, C, L->rv, err)) ||
                         (st = lin_dx(L, sv, c.dxt, 1, c.dhb, PB(io, P_V_L0), N, C, L->rv, 1.0f, err))))
        return prefixed(err, "backward");
    SHIFT_BWD(3);
    /* w (box 1): decay LoRA, tanh middle; da holds d(zw) */
    if ((st = lin_dw(L, sv, GF(io, P_W_L2), c.da, c.hw, N, L->rw, C, err)) ||
        (st = lin_dx(L, sv, c.dh, 1, c.da, PB(io, P_W_L2), N, L->rw, C, 0.0f, err)))
        return prefixed(err, "backward");
    act_bwd_kernel<<<blocks_for(N * L->rw, 256), 256, 0, s>>>(c.dhb, c.dh, c.hw, N * L->rw, 0);
    if ((st = launched("tanh_bwd", err))) return st;
    if ((st = lin_dw(L, sv, GF(io, P_W_L0), c.dhb, xb[1], N, C, L->rw, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dhb, PB(io, P_W_L0), N, C, L->rw, 0.0f, err)))
        return prefixed(err, "backward");
    SHIFT_BWD(1);
    /* a (box 4): in-context rate LoRA, identity middle; db holds d(za) */
    if ((st = lin_dw(L, sv, GF(io, P_A_L2), c.db, c.ha, N, L->ra, C, err)) ||
        (st = lin_dx(L, sv, c.dhb, 0, c.db, PB(io, P_A_L2), N, L->ra, C, 0.0f, err)) ||
        (st = lin_dw(L, sv, GF(io, P_A_L0), c.dhb, xb[4], N, C, L->ra, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dhb, PB(io, P_A_L0), N, C, L->ra, 0.0f, err)))
        return prefixed(err, "backward");
    SHIFT_BWD(4);
    /* g (box 5): gate LoRA, sigmoid middle */
    if ((st = lin_dw(L, sv, GF(io, P_G_L2), c.dg, c.hg, N, L->rg, C, err)) ||
        (st = lin_dx(L, sv, c.dh, 1, c.dg, PB(io, P_G_L2), N, L->rg, C, 0.0f, err)))
        return prefixed(err, "backward");
    act_bwd_kernel<<<blocks_for(N * L->rg, 256), 256, 0, s>>>(c.dhb, c.dh, c.hg, N * L->rg, 1);
    if ((st = launched("sigmoid_bwd", err))) return st;
    if ((st = lin_dw(L, sv, GF(io, P_G_L0), c.dhb, xb[5], N, C, L->rg, err)) ||
        (st = lin_dx(L, sv, c.dxt, 1, c.dhb, PB(io, P_G_L0), N, C, L->rg, 0.0f, err)))
        return prefixed(err, "backward");
    SHIFT_BWD(5);
#undef SHIFT_BWD

    /* dx (reads dstate_out's tail), then dstate_in's tail (dstate_in may alias dstate_out) */
    if (shift_vec_ok(C, io->dx, c.A) && ((uintptr_t)c.Bm % 16) == 0)
        dx_vec_kernel<<<shift_vec_grid(N, C), 256, 0, s>>>((bf16 *)io->dx, c.A, c.Bm, dso, (int64_t)slot,
                                                           (int64_t)sfl, N, T, C);
    else
        dx_kernel<<<blocks_for(N * C, 256), 256, 0, s>>>((bf16 *)io->dx, c.A, c.Bm, dso, (int64_t)slot, (int64_t)sfl,
                                                         N, T, C);
    if ((st = launched("dx", err))) return st;
    if (dsi) {
        dtail_kernel<<<blocks_for(B * C, 256), 256, 0, s>>>(dsi, (int64_t)slot, (int64_t)sfl, c.Bm, B, T, C);
        if ((st = launched("dtail", err))) return st;
    }

    /* the per-channel parameter gradients: every warp's / block's partials added in a fixed order,
     * one launch for the 14 (a producer has no v bias) */
    if (!io->grads) return GRAFT_STATUS_OK;
    colsum_args cs;
    memset(&cs, 0, sizeof cs);
    const int64_t m = p.nwarp / H, po = p.nwarp * 128; /* rows of the fixed-head partials; one gradient's */
    const int out_g[3] = {P_R_K, P_GN_W, P_GN_B}, prep_g[5] = {P_K_A, P_K_K, P_W_B, P_A_B, P_V_B};
    for (int i = 0; i < 3; i++) colsum_add(&cs, GF(io, out_g[i]), c.pout + i * po, m, C);
    for (int i = 0; i < 5 - L->producer; i++) colsum_add(&cs, GF(io, prep_g[i]), c.pprep + i * po, m, C);
    for (int box = 0; box < 6; box++)
        colsum_add(&cs, GF(io, P_X_R + box), c.pshift + box * p.pshift_rows * C, p.pshift_rows, C);
    if (colsum_launch(&cs, s))
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "rwkv7: backward: more than %d gradient segments",
                             COLSUM_MAX_SEGS);
    return launched("colsum", err);
}
