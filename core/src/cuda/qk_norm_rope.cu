/* cuda/qk_norm_rope.cu: fused q/k RMSNorm + RoPE kernels (qk_norm_rope.cuh).
 *
 * Fallback kernels (D % 4 != 0 or odd strides): one warp per (token, head) vector; lane l holds the rotary pairs (j, j + half) for
 * j = l, l + 32, ... (up to 4 pairs: D <= 256), so the whole vector is in registers and y may
 * overwrite x. inv_freq is built once per block in shared memory with the CPU's fp32 formula
 * (computed through double pow and rounded, which equals a correctly rounded powf).
 * Backward: a fixed grid (at most 1024 blocks of 8 warps, each warp striding over vectors in a fixed
 * pattern) keeps each lane's dw partial in registers, reduces the 8 warps of a block in warp
 * order in shared memory, writes (blocks, D) partials, and a second kernel sums them in block order:
 * dw is bitwise reproducible.
 */
#include "cuda_util.cuh"
#include "qk_norm_rope.cuh"

#define WARPS 8
#define MAX_PAIRS 4 /* D/2 <= 128 */
#define BWD_BLOCKS 1024

__device__ __forceinline__ void build_inv_freq(float *inv, int64_t D, double theta) {
    for (int j = threadIdx.x; j < D / 2; j += blockDim.x) {
        float e = (float)(2 * j) / (float)D;
        float p = (float)pow((double)(float)theta, (double)e);
        inv[j] = 1.0f / p;
    }
    __syncthreads();
}

__global__ void qk_fwd_kernel(bf16 *y, float *rstd, const bf16 *x, const bf16 *w, const int32_t *pos, int64_t N,
                              int64_t T, int64_t H, int64_t D, int64_t ldx, int64_t ldy, double theta, float eps) {
    __shared__ float inv[128];
    build_inv_freq(inv, D, theta);
    const int lane = threadIdx.x & 31, half = (int)(D / 2);
    const int64_t nvec = N * H;
    for (int64_t v = blockIdx.x * (int64_t)WARPS + (threadIdx.x >> 5); v < nvec; v += (int64_t)gridDim.x * WARPS) {
        const int64_t n = v / H, h = v % H;
        const bf16 *xr = x + n * ldx + h * D;
        float a[MAX_PAIRS], b[MAX_PAIRS], ss = 0.0f;
#pragma unroll
        for (int i = 0; i < MAX_PAIRS; i++) {
            int j = lane + 32 * i;
            a[i] = j < half ? b2f(xr[j]) : 0.0f;
            b[i] = j < half ? b2f(xr[j + half]) : 0.0f;
            ss += a[i] * a[i] + b[i] * b[i];
        }
        ss = warp_sum(ss);
        const float r = 1.0f / sqrtf(ss / (float)D + eps);
        if (rstd && lane == 0) rstd[v] = r;
        const float p = (float)(pos ? pos[n] : n % T);
        bf16 *yr = y + n * ldy + h * D;
#pragma unroll
        for (int i = 0; i < MAX_PAIRS; i++) {
            int j = lane + 32 * i;
            if (j < half) {
                float sn, cs;
                sincosf(p * inv[j], &sn, &cs);
                float an = b2f(w[j]) * (a[i] * r), bn = b2f(w[j + half]) * (b[i] * r);
                yr[j] = f2b(an * cs - bn * sn);
                yr[j + half] = f2b(bn * cs + an * sn);
            }
        }
    }
}

/* The common layout (D % 4 == 0, even leading dimensions, 4-byte aligned pointers): one warp per
 * TOKEN walks its H heads, so each lane computes the cos/sin of its rotary pairs once per token
 * instead of once per head, and loads pairs of neighbours (bf16x2): lane l holds
 * j = 2l + 64i + {0, 1} (i < 2, D <= 256) and j + half. */
#define VPAIRS 2
__device__ __forceinline__ float2 ld2(const bf16 *p) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}
__device__ __forceinline__ void st2(bf16 *p, float a, float b) {
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(a, b);
}

__global__ void qk_fwd_tok_kernel(bf16 *y, float *rstd, const bf16 *x, const bf16 *w, const int32_t *pos, int64_t N,
                                  int64_t T, int64_t H, int64_t D, int64_t ldx, int64_t ldy, double theta, float eps) {
    __shared__ float inv[128];
    build_inv_freq(inv, D, theta);
    const int lane = threadIdx.x & 31, half = (int)(D / 2);
    float wa[VPAIRS][2], wb[VPAIRS][2];
#pragma unroll
    for (int i = 0; i < VPAIRS; i++) {
        const int j = 2 * lane + 64 * i;
        float2 a = j < half ? ld2(w + j) : make_float2(0.f, 0.f), b = j < half ? ld2(w + j + half) : make_float2(0.f, 0.f);
        wa[i][0] = a.x, wa[i][1] = a.y, wb[i][0] = b.x, wb[i][1] = b.y;
    }
    for (int64_t n = blockIdx.x * (int64_t)WARPS + (threadIdx.x >> 5); n < N; n += (int64_t)gridDim.x * WARPS) {
        const float p = (float)(pos ? pos[n] : n % T);
        float cs[VPAIRS][2], sn[VPAIRS][2];
#pragma unroll
        for (int i = 0; i < VPAIRS; i++)
#pragma unroll
            for (int q = 0; q < 2; q++) {
                const int j = 2 * lane + 64 * i + q;
                cs[i][q] = 1.0f, sn[i][q] = 0.0f;
                if (j < half) sincosf(p * inv[j], &sn[i][q], &cs[i][q]);
            }
        for (int64_t h = 0; h < H; h++) {
            const bf16 *xr = x + n * ldx + h * D;
            float a[VPAIRS][2], b[VPAIRS][2], ss = 0.0f;
#pragma unroll
            for (int i = 0; i < VPAIRS; i++) {
                const int j = 2 * lane + 64 * i;
                float2 u = j < half ? ld2(xr + j) : make_float2(0.f, 0.f);
                float2 v = j < half ? ld2(xr + j + half) : make_float2(0.f, 0.f);
                a[i][0] = u.x, a[i][1] = u.y, b[i][0] = v.x, b[i][1] = v.y;
                ss += u.x * u.x + u.y * u.y + v.x * v.x + v.y * v.y;
            }
            ss = warp_sum(ss);
            const float r = 1.0f / sqrtf(ss / (float)D + eps);
            if (rstd && lane == 0) rstd[n * H + h] = r;
            bf16 *yr = y + n * ldy + h * D;
#pragma unroll
            for (int i = 0; i < VPAIRS; i++) {
                const int j = 2 * lane + 64 * i;
                if (j < half) {
                    float o1[2], o2[2];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        float an = wa[i][q] * (a[i][q] * r), bn = wb[i][q] * (b[i][q] * r);
                        o1[q] = an * cs[i][q] - bn * sn[i][q];
                        o2[q] = bn * cs[i][q] + an * sn[i][q];
                    }
                    st2(yr + j, o1[0], o1[1]);
                    st2(yr + j + half, o2[0], o2[1]);
                }
            }
        }
    }
}

__global__ void qk_bwd_tok_kernel(bf16 *dx, float *partial, const bf16 *dy, const bf16 *x, const bf16 *w,
                                  const float *rstd, const int32_t *pos, int64_t N, int64_t T, int64_t H, int64_t D,
                                  int64_t ldx, int64_t ldg, int64_t ldd, double theta) {
    __shared__ float inv[128];
    __shared__ float wsum[WARPS][256];
    build_inv_freq(inv, D, theta);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = (int)(D / 2);
    float wa[VPAIRS][2], wb[VPAIRS][2], dwa[VPAIRS][2], dwb[VPAIRS][2];
#pragma unroll
    for (int i = 0; i < VPAIRS; i++) {
        const int j = 2 * lane + 64 * i;
        float2 a = j < half ? ld2(w + j) : make_float2(0.f, 0.f), b = j < half ? ld2(w + j + half) : make_float2(0.f, 0.f);
        wa[i][0] = a.x, wa[i][1] = a.y, wb[i][0] = b.x, wb[i][1] = b.y;
        dwa[i][0] = dwa[i][1] = dwb[i][0] = dwb[i][1] = 0.0f;
    }
    for (int64_t n = blockIdx.x * (int64_t)WARPS + warp; n < N; n += (int64_t)gridDim.x * WARPS) {
        const float p = (float)(pos ? pos[n] : n % T);
        float cs[VPAIRS][2], sn[VPAIRS][2];
#pragma unroll
        for (int i = 0; i < VPAIRS; i++)
#pragma unroll
            for (int q = 0; q < 2; q++) {
                const int j = 2 * lane + 64 * i + q;
                cs[i][q] = 1.0f, sn[i][q] = 0.0f;
                if (j < half) sincosf(p * inv[j], &sn[i][q], &cs[i][q]);
            }
        for (int64_t h = 0; h < H; h++) {
            const bf16 *xr = x + n * ldx + h * D, *gr = dy + n * ldg + h * D;
            const float r = rstd[n * H + h];
            float ta[VPAIRS][2], tb[VPAIRS][2], xa[VPAIRS][2], xb[VPAIRS][2], dot = 0.0f;
#pragma unroll
            for (int i = 0; i < VPAIRS; i++) {
                const int j = 2 * lane + 64 * i;
                const bool in = j < half;
                float2 ga = in ? ld2(gr + j) : make_float2(0.f, 0.f), gb = in ? ld2(gr + j + half) : make_float2(0.f, 0.f);
                float2 u = in ? ld2(xr + j) : make_float2(0.f, 0.f), v = in ? ld2(xr + j + half) : make_float2(0.f, 0.f);
                const float g1[2] = {ga.x, ga.y}, g2[2] = {gb.x, gb.y};
                xa[i][0] = u.x, xa[i][1] = u.y, xb[i][0] = v.x, xb[i][1] = v.y;
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    ta[i][q] = g1[q] * cs[i][q] + g2[q] * sn[i][q];
                    tb[i][q] = -g1[q] * sn[i][q] + g2[q] * cs[i][q];
                    dwa[i][q] += ta[i][q] * (xa[i][q] * r);
                    dwb[i][q] += tb[i][q] * (xb[i][q] * r);
                    dot += ta[i][q] * wa[i][q] * xa[i][q] + tb[i][q] * wb[i][q] * xb[i][q];
                }
            }
            dot = warp_sum(dot);
            const float k3 = r * r * r * dot / (float)D;
            bf16 *dr = dx + n * ldd + h * D;
#pragma unroll
            for (int i = 0; i < VPAIRS; i++) {
                const int j = 2 * lane + 64 * i;
                if (j < half) {
                    st2(dr + j, r * (ta[i][0] * wa[i][0]) - xa[i][0] * k3, r * (ta[i][1] * wa[i][1]) - xa[i][1] * k3);
                    st2(dr + j + half, r * (tb[i][0] * wb[i][0]) - xb[i][0] * k3,
                        r * (tb[i][1] * wb[i][1]) - xb[i][1] * k3);
                }
            }
        }
    }
    if (!partial) return;
#pragma unroll
    for (int i = 0; i < VPAIRS; i++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int j = 2 * lane + 64 * i + q;
            if (j < half) {
                wsum[warp][j] = dwa[i][q];
                wsum[warp][j + half] = dwb[i][q];
            }
        }
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int q = 0; q < WARPS; q++) acc += wsum[q][d];
        partial[blockIdx.x * D + d] = acc;
    }
}

static int tok_path(int64_t D, int64_t ld1, int64_t ld2, int64_t ld3, const void *p1, const void *p2, const void *p3,
                    const void *p4) {
    return D % 4 == 0 && ld1 % 2 == 0 && ld2 % 2 == 0 && ld3 % 2 == 0 && !((uintptr_t)p1 & 3) && !((uintptr_t)p2 & 3) &&
           !((uintptr_t)p3 & 3) && !((uintptr_t)p4 & 3);
}

static graft_status check(int64_t N, int64_t T, int64_t H, int64_t D, int64_t ld1, int64_t ld2, int64_t ld3,
                          const int32_t *pos, const char *name, graft_err *err) {
    if (N < 0 || H < 1 || D < 2 || D % 2 || D > 2 * 32 * MAX_PAIRS)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "cuda %s: N %lld H %lld D %lld, expected N >= 0, H >= 1, D even in 2..%d", name,
                             (long long)N, (long long)H, (long long)D, 2 * 32 * MAX_PAIRS);
    if (!pos && T < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda %s: T %lld with pos NULL, expected >= 1", name,
                             (long long)T);
    if (ld1 < H * D || ld2 < H * D || ld3 < H * D)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda %s: leading dimensions %lld/%lld/%lld, expected >= H*D %lld",
                             name, (long long)ld1, (long long)ld2, (long long)ld3, (long long)(H * D));
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_qk_norm_rope_fwd(graft_bf16 *y, float *rstd, const graft_bf16 *x, const graft_bf16 *w,
                                         const int32_t *pos, int64_t N, int64_t T, int64_t H, int64_t D,
                                         int64_t ld_x, int64_t ld_y, double theta, float eps, void *stream,
                                         graft_err *err) {
    graft_status st = check(N, T, H, D, ld_x, ld_y, ld_y, pos, "qk_norm_rope_fwd", err);
    if (st) return st;
    if (!(theta > 0) || !(eps >= 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda qk_norm_rope_fwd: theta %g eps %g, expected > 0, >= 0",
                             theta, (double)eps);
    if (N == 0) return GRAFT_STATUS_OK;
    if (tok_path(D, ld_x, ld_y, ld_y, x, y, w, w))
        qk_fwd_tok_kernel<<<grid_for(N, WARPS, 65535), 32 * WARPS, 0, graft_stream(stream)>>>(
            (bf16 *)y, rstd, (const bf16 *)x, (const bf16 *)w, pos, N, T, H, D, ld_x, ld_y, theta, eps);
    else
        qk_fwd_kernel<<<grid_for(N * H, WARPS, 65535), 32 * WARPS, 0, graft_stream(stream)>>>(
        (bf16 *)y, rstd, (const bf16 *)x, (const bf16 *)w, pos, N, T, H, D, ld_x, ld_y, theta, eps);
    GRAFT_CUDA_LAUNCHED("qk_norm_rope_fwd");
    return GRAFT_STATUS_OK;
}

size_t graft_cuda_qk_norm_rope_bwd_scratch_bytes(int64_t N, int64_t H, int64_t D) {
    return (size_t)grid_for(N * H, WARPS, BWD_BLOCKS) * (size_t)(D > 0 ? D : 0) * sizeof(float);
}

__global__ void qk_bwd_kernel(bf16 *dx, float *partial, const bf16 *dy, const bf16 *x, const bf16 *w,
                              const float *rstd, const int32_t *pos, int64_t N, int64_t T, int64_t H, int64_t D,
                              int64_t ldx, int64_t ldg, int64_t ldd, double theta) {
    __shared__ float inv[128];
    __shared__ float wsum[WARPS][256];
    build_inv_freq(inv, D, theta);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = (int)(D / 2);
    float dwa[MAX_PAIRS], dwb[MAX_PAIRS];
#pragma unroll
    for (int i = 0; i < MAX_PAIRS; i++) dwa[i] = dwb[i] = 0.0f;
    const int64_t nvec = N * H;
    for (int64_t v = blockIdx.x * (int64_t)WARPS + warp; v < nvec; v += (int64_t)gridDim.x * WARPS) {
        const int64_t n = v / H, h = v % H;
        const bf16 *xr = x + n * ldx + h * D, *gr = dy + n * ldg + h * D;
        const float r = rstd[v];
        const float p = (float)(pos ? pos[n] : n % T);
        float ta[MAX_PAIRS], tb[MAX_PAIRS], xa[MAX_PAIRS], xb[MAX_PAIRS], wa[MAX_PAIRS], wb[MAX_PAIRS];
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < MAX_PAIRS; i++) {
            int j = lane + 32 * i;
            ta[i] = tb[i] = xa[i] = xb[i] = wa[i] = wb[i] = 0.0f;
            if (j < half) {
                float sn, cs;
                sincosf(p * inv[j], &sn, &cs);
                float ga = b2f(gr[j]), gb = b2f(gr[j + half]);
                ta[i] = ga * cs + gb * sn;
                tb[i] = -ga * sn + gb * cs;
                xa[i] = b2f(xr[j]);
                xb[i] = b2f(xr[j + half]);
                wa[i] = b2f(w[j]);
                wb[i] = b2f(w[j + half]);
                dwa[i] += ta[i] * (xa[i] * r);
                dwb[i] += tb[i] * (xb[i] * r);
                dot += ta[i] * wa[i] * xa[i] + tb[i] * wb[i] * xb[i];
            }
        }
        dot = warp_sum(dot);
        const float k3 = r * r * r * dot / (float)D;
        bf16 *dr = dx + n * ldd + h * D;
#pragma unroll
        for (int i = 0; i < MAX_PAIRS; i++) {
            int j = lane + 32 * i;
            if (j < half) {
                dr[j] = f2b(r * (ta[i] * wa[i]) - xa[i] * k3);
                dr[j + half] = f2b(r * (tb[i] * wb[i]) - xb[i] * k3);
            }
        }
    }
    if (!partial) return;
#pragma unroll
    for (int i = 0; i < MAX_PAIRS; i++) {
        int j = lane + 32 * i;
        if (j < half) {
            wsum[warp][j] = dwa[i];
            wsum[warp][j + half] = dwb[i];
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int q = 0; q < WARPS; q++) acc += wsum[q][d];
        partial[blockIdx.x * D + d] = acc;
    }
}

graft_status graft_cuda_qk_norm_rope_bwd(graft_bf16 *dx, float *dw, const graft_bf16 *dy, const graft_bf16 *x,
                                         const graft_bf16 *w, const float *rstd, const int32_t *pos, int64_t N,
                                         int64_t T, int64_t H, int64_t D, int64_t ld_x, int64_t ld_dy,
                                         int64_t ld_dx, double theta, void *scratch, size_t scratch_bytes,
                                         void *stream, graft_err *err) {
    graft_status st = check(N, T, H, D, ld_x, ld_dy, ld_dx, pos, "qk_norm_rope_bwd", err);
    if (st) return st;
    if (!(theta > 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda qk_norm_rope_bwd: theta %g, expected > 0", theta);
    if (N == 0) return GRAFT_STATUS_OK;
    size_t need = dw ? graft_cuda_qk_norm_rope_bwd_scratch_bytes(N, H, D) : 0;
    if (dw && (!scratch || scratch_bytes < need))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda qk_norm_rope_bwd: scratch %zu bytes, expected >= %zu",
                             scratch ? scratch_bytes : (size_t)0, need);
    cudaStream_t s = graft_stream(stream);
    const int tok = tok_path(D, ld_x, ld_dy, ld_dx, x, dy, dx, w);
    unsigned R = tok ? grid_for(N, WARPS, BWD_BLOCKS) : grid_for(N * H, WARPS, BWD_BLOCKS);
    float *partial = dw ? (float *)scratch : NULL;
    if (tok)
        qk_bwd_tok_kernel<<<R, 32 * WARPS, 0, s>>>((bf16 *)dx, partial, (const bf16 *)dy, (const bf16 *)x,
                                                   (const bf16 *)w, rstd, pos, N, T, H, D, ld_x, ld_dy, ld_dx, theta);
    else
        qk_bwd_kernel<<<R, 32 * WARPS, 0, s>>>((bf16 *)dx, partial, (const bf16 *)dy, (const bf16 *)x, (const bf16 *)w,
                                           rstd, pos, N, T, H, D, ld_x, ld_dy, ld_dx, theta);
    GRAFT_CUDA_LAUNCHED("qk_norm_rope_bwd");
    if (dw) {
        colsum_one(dw, partial, R, D, s);
        GRAFT_CUDA_LAUNCHED("qk_norm_rope_bwd dw");
    }
    return GRAFT_STATUS_OK;
}
