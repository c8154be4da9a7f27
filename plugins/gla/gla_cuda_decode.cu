/* plugins/gla/gla_cuda_decode.cu: the fused one-token GLA decode step (gla_cuda_decode.cuh says
 * what it computes and serves).
 *
 * Why fused: at batch 1 a decode step is bound by weight reads and by per-launch ramp and tail;
 * the unfused step spends nine small launches per layer between its two products (the gate's two
 * low-rank products, gate, conv-cache copy, conv, state copy, recurrence, gated norm, cache tails),
 * ~25 us a layer above its bytes on an H100 (docs/cuda.md), which made the all-GLA hybrid decode
 * slower than the softmax control it replaces although it reads fewer bytes per token.
 *
 * Shape of the launch: a cluster of CL = 8 CTAs per (sequence, head), 128 threads each, so batch 1
 * at the 1.7B shape (16 heads) runs 128 CTAs instead of 16 and each CTA streams 1/8 of the head's
 * 64 KiB fp32 state (16 of the 128 value rows). CTA ρ of a head owns:
 *   - channels 16ρ .. 16ρ+15 of q, k and v: their conv + SiLU and their conv-cache shift (each cache
 *     entry is read and written by one thread, so the step may run in place);
 *   - rows j ≡ ρ (mod 8) of lr = x·W_gk0ᵀ (a block reduction over C each);
 *   - value rows e = 16ρ .. 16ρ+15 of S, o and u (v's channels are exactly its value rows).
 * After one cluster barrier every CTA reads the whole head's q, k and lr from the other CTAs'
 * shared memory (DSMEM), evaluates the head's 128 gates itself (r multiply-adds each: cheaper than
 * another barrier) and steps its 16 rows; a second barrier exchanges the 8 partial sums of o² for
 * the RMSNorm, added in rank order by every CTA (the same bits in each, and on every rerun); a
 * third keeps each CTA's shared memory alive until the others have read it.
 *
 * Rounding: lr, the conv outputs and o are rounded to bf16 where the unfused path stores them as
 * bf16 activations; z, gk, S and the norm stay fp32. The dot products are summed in another order
 * than cuBLASLt's and the unfused kernels' (fp32 reassociation only).
 */
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "gla_cuda_decode.cuh"
}
#include "gla_cuda_math.cuh"

namespace cg = cooperative_groups;

namespace {

typedef __nv_bfloat16 bf16;

constexpr int D = 128;       /* dk = dv                                                         */
constexpr int CL = 8;        /* CTAs per head (cluster size)                                    */
constexpr int ROWS = D / CL; /* value rows (and q, k, v channels) per CTA                      */
constexpr int NT = 128;      /* threads per CTA: 4 warps of ROWS / 4 value rows each           */
constexpr int RMAX = 128;    /* largest gate rank served                                        */
constexpr int WMAX = 8;      /* largest conv size served                                        */

struct Args {
    const bf16 *x, *proj, *w_gk0, *w_gk1, *b_gk1, *w_conv[3], *w_norm;
    const float *sin;
    float *sout;
    bf16 *u;
    int64_t ld, slot, hist_off;
    int H, C, r, W;
    float inv_gamma, scale, eps;
};

__device__ __forceinline__ float bf16r(float v) { return __bfloat162float(__float2bfloat16(v)); }

/* Σ_i x[i] w[i] over C (multiple of 8, 16-byte aligned rows) by the whole CTA: each thread adds its
 * 8-element slices in order, then the warps' sums, then the 4 warps in order (red: 4 floats). */
__device__ float block_dot(const bf16 *x, const bf16 *w, int C, float *red) {
    const int tid = threadIdx.x;
    float acc = 0.f;
    for (int i = 8 * tid; i < C; i += 8 * NT) {
        uint4 xa = *reinterpret_cast<const uint4 *>(x + i), wa = *reinterpret_cast<const uint4 *>(w + i);
        const bf16 *xs = reinterpret_cast<const bf16 *>(&xa), *ws = reinterpret_cast<const bf16 *>(&wa);
#pragma unroll
        for (int j = 0; j < 8; j++) acc += __bfloat162float(xs[j]) * __bfloat162float(ws[j]);
    }
    acc = warp_sum(acc);
    __syncthreads(); /* red may still be read from the previous call */
    if ((tid & 31) == 0) red[tid >> 5] = acc;
    __syncthreads();
    return (red[0] + red[1]) + (red[2] + red[3]);
}

__global__ void __cluster_dims__(CL, 1, 1) __launch_bounds__(NT) k_decode_fused(const __grid_constant__ Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    const int rho = (int)cluster.block_rank();
    const int64_t bh = blockIdx.x / CL, b = bh / a.H, h = bh % a.H;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t HD = (int64_t)a.H * D;

    __shared__ float lr_mine[RMAX / CL], q_mine[ROWS], k_mine[ROWS], ssq_mine;
    __shared__ float lr[RMAX], q[D], k[D], dec[D], v[ROWS], o[ROWS], red[4];

    /* 1. this CTA's channels of the three convs (+ SiLU, bf16 like the unfused path's q, k, v) and
     *    their cache shift: E = [cache[0..W-1], x̃]; out = Σ_j w[j] E[1+j]; the new cache is E[1..W] */
    if (tid < 3 * ROWS) {
        const int seg = tid / ROWS, i = tid % ROWS;
        const int64_t c = h * D + rho * ROWS + i, W = a.W;
        const float *hin = a.sin ? a.sin + b * a.slot + a.hist_off + (seg * HD + c) * W : nullptr;
        float *hout = a.sout + b * a.slot + a.hist_off + (seg * HD + c) * W;
        const float xin = __bfloat162float(a.proj[b * a.ld + seg * HD + c]);
        const bf16 *w = a.w_conv[seg] + c * W;
        float e[WMAX], acc = 0.f; /* unrolled with guards: e stays in registers */
#pragma unroll
        for (int j = 0; j < WMAX; j++)
            if (j < W) {
                e[j] = j + 1 < W ? (hin ? hin[j + 1] : 0.f) : xin;
                acc += __bfloat162float(w[j]) * e[j];
            }
#pragma unroll
        for (int j = 0; j < WMAX; j++)
            if (j < W) hout[j] = e[j];
        const float y = bf16r(silu_d(acc));
        if (seg == 0) q_mine[i] = y;
        else if (seg == 1) k_mine[i] = y;
        else v[i] = y;
    }
    /* 2. this CTA's rows of lr = x W_gk0ᵀ (bf16, as the unfused product stores it) */
    const bf16 *xb = a.x + b * a.C;
    for (int j = rho; j < a.r; j += CL) {
        float s = block_dot(xb, a.w_gk0 + (int64_t)j * a.C, a.C, red);
        if (tid == 0) lr_mine[j / CL] = bf16r(s);
    }
    cluster.sync();

    /* 3. the head's q, k and lr from the cluster; then its 128 gates: z = lr W_gk1ᵀ + bias,
     *    gk = logsigmoid(z) / γ, the decay e^{gk} */
    {
        const int src = tid / ROWS;
        q[tid] = *cluster.map_shared_rank(&q_mine[tid % ROWS], src);
        k[tid] = *cluster.map_shared_rank(&k_mine[tid % ROWS], src);
        if (tid < a.r) lr[tid] = *cluster.map_shared_rank(&lr_mine[tid / CL], tid % CL);
    }
    __syncthreads();
    {
        const int64_t c = h * D + tid;
        const bf16 *w = a.w_gk1 + c * a.r;
        float z = 0.f;
        for (int j = 0; j < a.r; j++) z += lr[j] * __bfloat162float(w[j]);
        z += __bfloat162float(a.b_gk1[c]);
        dec[tid] = __expf(logsigm_d(z) * a.inv_gamma);
    }
    __syncthreads();

    /* 4. the recurrence on value rows e of this CTA: warp w takes 4 rows, lane l channels 4l..4l+3
     *    of each (16-byte state loads, the 4 rows' loads issued before any use) */
    {
        const int k0 = 4 * lane;
        const float4 qv = make_float4(q[k0], q[k0 + 1], q[k0 + 2], q[k0 + 3]);
        const float4 kv = make_float4(k[k0], k[k0 + 1], k[k0 + 2], k[k0 + 3]);
        const float4 dv = make_float4(dec[k0], dec[k0 + 1], dec[k0 + 2], dec[k0 + 3]);
        const int e0 = warp * (ROWS / 4);
        const int64_t srow = b * a.slot + (h * D + rho * ROWS + e0) * (int64_t)D + k0;
        float4 s[ROWS / 4];
#pragma unroll
        for (int i = 0; i < ROWS / 4; i++)
            s[i] = a.sin ? *reinterpret_cast<const float4 *>(a.sin + srow + i * D) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int i = 0; i < ROWS / 4; i++) {
            const float ve = v[e0 + i];
            float4 t;
            t.x = dv.x * s[i].x + ve * kv.x;
            t.y = dv.y * s[i].y + ve * kv.y;
            t.z = dv.z * s[i].z + ve * kv.z;
            t.w = dv.w * s[i].w + ve * kv.w;
            *reinterpret_cast<float4 *>(a.sout + srow + i * D) = t;
            float acc = warp_sum(((qv.x * t.x + qv.y * t.y) + qv.z * t.z) + qv.w * t.w);
            if (lane == 0) o[e0 + i] = bf16r(a.scale * acc);
        }
    }
    __syncthreads();

    /* 5. the gated RMSNorm over the head's 128 values: this CTA's Σ o², the 8 partials in rank order */
    if (warp == 0) {
        float sq = lane < ROWS ? o[lane] * o[lane] : 0.f;
        sq = warp_sum(sq);
        if (lane == 0) ssq_mine = sq;
    }
    cluster.sync();
    if (tid < ROWS) {
        float ms = 0.f;
#pragma unroll
        for (int src = 0; src < CL; src++) ms += *cluster.map_shared_rank(&ssq_mine, src);
        const float rs = rsqrtf(ms / (float)D + a.eps);
        const int e = rho * ROWS + tid;
        const float g = __bfloat162float(a.proj[b * a.ld + 3 * HD + h * D + e]);
        a.u[b * HD + h * D + e] = __float2bfloat16(o[tid] * rs * __bfloat162float(a.w_norm[e]) * silu_d(g));
    }
    cluster.sync(); /* no CTA leaves while another may still read its shared memory */
#endif
}

int fused_state = -1;  /* GRAFT_GLA_FUSED_DECODE (read once) */
int device_state = -1; /* compute capability >= 9.0 (clusters, DSMEM): asked once */

bool device_ok() {
    if (device_state < 0) {
        int dev = 0, major = 0;
        device_state = cudaGetDevice(&dev) == cudaSuccess &&
                       cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                       major >= 9;
    }
    return device_state;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

} /* namespace */

extern "C" {

int gla_cuda_decode_fused_enabled(void) {
    if (fused_state < 0) {
        const char *e = getenv("GRAFT_GLA_FUSED_DECODE");
        fused_state = !(e && e[0] == '0' && e[1] == 0);
    }
    return fused_state;
}

int gla_cuda_decode_fused_usable(const gla_decode_args *a) {
    if (!a || a->B < 1 || a->H < 1 || a->B * a->H * CL > 2147483647LL || a->r < 1 || a->r > RMAX || a->W < 1 ||
        a->W > WMAX || a->C < 8 || a->C % 8 || a->C > 2147483647LL || !a->x || !a->proj || !a->w_gk0 || !a->w_gk1 ||
        !a->b_gk1 || !a->w_conv[0] || !a->w_conv[1] || !a->w_conv[2] || !a->w_norm || !a->state_out || !a->u ||
        a->ld < 4 * a->H * D || a->hist_off < a->H * D * D || a->slot_floats < a->hist_off + 3 * a->H * D * a->W)
        return 0;
    /* 16-byte rows: x and W_gk0 for the vector loads, the state's rows for float4 */
    if (!aligned16(a->x) || !aligned16(a->w_gk0) || !aligned16(a->state_out) ||
        (a->state_in && !aligned16(a->state_in)) || a->slot_floats % 4)
        return 0;
    return device_ok();
}

graft_status gla_cuda_decode_fused(const gla_decode_args *a, void *stream, graft_err *err) {
    if (!gla_cuda_decode_fused_usable(a))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "gla_cuda_decode_fused: this call does not qualify (gla_cuda_decode.cuh: dk = dv = "
                             "128, r <= %d, W <= %d, C a multiple of 8, aligned rows, compute capability 9.0)",
                             RMAX, WMAX);
    Args k;
    k.x = (const bf16 *)a->x;
    k.proj = (const bf16 *)a->proj;
    k.w_gk0 = (const bf16 *)a->w_gk0;
    k.w_gk1 = (const bf16 *)a->w_gk1;
    k.b_gk1 = (const bf16 *)a->b_gk1;
    for (int i = 0; i < 3; i++) k.w_conv[i] = (const bf16 *)a->w_conv[i];
    k.w_norm = (const bf16 *)a->w_norm;
    k.sin = a->state_in;
    k.sout = a->state_out;
    k.u = (bf16 *)a->u;
    k.ld = a->ld;
    k.slot = a->slot_floats;
    k.hist_off = a->hist_off;
    k.H = (int)a->H;
    k.C = (int)a->C;
    k.r = (int)a->r;
    k.W = (int)a->W;
    k.inv_gamma = a->inv_gamma;
    k.scale = a->scale;
    k.eps = a->eps;
    k_decode_fused<<<(unsigned)(a->B * a->H * CL), NT, 0, (cudaStream_t)stream>>>(k);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla_cuda_decode_fused: launch: %s", cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

} /* extern "C" */
