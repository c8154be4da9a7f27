/* cuda/rmsnorm.cu: RMSNorm kernels (rmsnorm.cuh).
 *
 * Forward: one block per row; pass 1 sums squares (fp32, block_sum in a fixed order), pass 2
 * rereads the row (L1/L2-resident) and writes y. VEC = 8 (16-byte loads) when C % 8 == 0 and the
 * pointers are 16-byte aligned, else scalar loads for odd widths; rows up to 8192 (forward) or
 * 4096 (backward) wide are held in registers between the passes (the *_cached kernels).
 * Backward: a fixed grid of R = min(N, 512) blocks; block b takes rows b, b + R, ...; its dw partial
 * (C floats) stays in shared memory (each column owned by one thread, so no races) and is written
 * to scratch (R, C); a second kernel adds the R partials in order into dw. Both orders are fixed,
 * so dw is bitwise reproducible.
 */
#include "cuda_util.cuh"
#include "rmsnorm.cuh"

#define BWD_ROW_BLOCKS 512
#define MAX_C 12288

template <int VEC>
__global__ void rmsnorm_fwd_kernel(bf16 *y, float *rstd, bf16 *x, const bf16 *xin, const bf16 *delta, const bf16 *w,
                                   int64_t C, float eps) {
    graft_pdl_trigger(); /* the next product may start prefetching its weights (graft/cuda_pdl.cuh) */
    __shared__ float sh[32];
    const int64_t n = blockIdx.x;
    bf16 *xr = x + n * C;
    const bf16 *xs = (xin ? xin : x) + n * C; /* the sum's first operand (xin: out of place) */
    const bf16 *dr = delta ? delta + n * C : NULL;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x * VEC; c < C; c += (int64_t)blockDim.x * VEC) {
        float v[VEC];
        if (VEC == 8) load8(xs + c, v);
        else v[0] = b2f(xs[c]);
        if (dr) {
            float d[VEC];
            if (VEC == 8) load8(dr + c, d);
            else d[0] = b2f(dr[c]);
#pragma unroll
            for (int j = 0; j < VEC; j++) v[j] = b2f(f2b(v[j] + d[j]));
            if (VEC == 8) store8(xr + c, v);
            else xr[c] = f2b(v[0]);
        }
#pragma unroll
        for (int j = 0; j < VEC; j++) ss += v[j] * v[j];
    }
    ss = block_sum(ss, sh);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (rstd && threadIdx.x == 0) rstd[n] = r;
    bf16 *yr = y + n * C;
    for (int64_t c = threadIdx.x * VEC; c < C; c += (int64_t)blockDim.x * VEC) {
        float v[VEC], wv[VEC];
        if (VEC == 8) {
            load8(xr + c, v);
            load8(w + c, wv);
        } else {
            v[0] = b2f(xr[c]);
            wv[0] = b2f(w[c]);
        }
#pragma unroll
        for (int j = 0; j < VEC; j++) v[j] = wv[j] * (v[j] * r);
        if (VEC == 8) store8(yr + c, v);
        else yr[c] = f2b(v[0]);
    }
}

/* The same two kernels for the common case (C % 8 == 0, aligned, C <= 8 * 256 * CH): each thread
 * keeps its CH 16-byte chunks of the row in registers between the passes, so the row is read from
 * memory once. */
template <int CH>
__global__ void rmsnorm_fwd_cached(bf16 *y, float *rstd, bf16 *x, const bf16 *xin, const bf16 *delta, const bf16 *w,
                                   int64_t C, float eps) {
    graft_pdl_trigger(); /* the next product may start prefetching its weights (graft/cuda_pdl.cuh) */
    __shared__ float sh[32];
    const int64_t n = blockIdx.x;
    bf16 *xr = x + n * C;
    const bf16 *xs = (xin ? xin : x) + n * C;
    const bf16 *dr = delta ? delta + n * C : NULL;
    float v[CH][8], ss = 0.0f;
#pragma unroll
    for (int ch = 0; ch < CH; ch++) {
        const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
        if (c < C) {
            load8(xs + c, v[ch]);
            if (dr) {
                float d[8];
                load8(dr + c, d);
#pragma unroll
                for (int j = 0; j < 8; j++) v[ch][j] = b2f(f2b(v[ch][j] + d[j]));
                store8(xr + c, v[ch]);
            }
#pragma unroll
            for (int j = 0; j < 8; j++) ss += v[ch][j] * v[ch][j];
        }
    }
    ss = block_sum(ss, sh);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (rstd && threadIdx.x == 0) rstd[n] = r;
    bf16 *yr = y + n * C;
#pragma unroll
    for (int ch = 0; ch < CH; ch++) {
        const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
        if (c < C) {
            float wv[8];
            load8(w + c, wv);
#pragma unroll
            for (int j = 0; j < 8; j++) v[ch][j] = wv[j] * (v[ch][j] * r);
            store8(yr + c, v[ch]);
        }
    }
}

template <int CH>
__global__ void rmsnorm_bwd_cached(bf16 *dx, float *partial, const bf16 *dy, const bf16 *x, const bf16 *w,
                                   const float *rstd, int64_t N, int64_t C, int accumulate) {
    __shared__ float sh[32];
    float wv[CH][8], dwp[CH][8];
#pragma unroll
    for (int ch = 0; ch < CH; ch++) {
        const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
        if (c < C) load8(w + c, wv[ch]);
#pragma unroll
        for (int j = 0; j < 8; j++) dwp[ch][j] = 0.0f;
    }
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const bf16 *xr = x + n * C, *gr = dy + n * C;
        const float r = rstd[n];
        float xv[CH][8], gv[CH][8], dot = 0.0f;
#pragma unroll
        for (int ch = 0; ch < CH; ch++) {
            const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
            if (c < C) {
                load8(xr + c, xv[ch]);
                load8(gr + c, gv[ch]);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    dot += gv[ch][j] * wv[ch][j] * xv[ch][j];
                    dwp[ch][j] += gv[ch][j] * (xv[ch][j] * r);
                }
            }
        }
        dot = block_sum(dot, sh);
        const float k = r * r * r * dot / (float)C;
        bf16 *dr = dx + n * C;
#pragma unroll
        for (int ch = 0; ch < CH; ch++) {
            const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
            if (c < C) {
                float o[8];
                if (accumulate) load8(dr + c, o);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float v = r * (gv[ch][j] * wv[ch][j]) - xv[ch][j] * k;
                    o[j] = accumulate ? o[j] + v : v;
                }
                store8(dr + c, o);
            }
        }
    }
    if (!partial) return;
#pragma unroll
    for (int ch = 0; ch < CH; ch++) {
        const int64_t c = ((int64_t)threadIdx.x + (int64_t)ch * blockDim.x) * 8;
        if (c < C)
#pragma unroll
            for (int j = 0; j < 8; j++) partial[blockIdx.x * C + c + j] = dwp[ch][j];
    }
}

static graft_status fwd(bf16 *y, float *rstd, bf16 *x, const bf16 *xin, const bf16 *delta, const bf16 *w, int64_t N,
                        int64_t C, float eps, void *stream, const char *name, graft_err *err) {
    if (N < 0 || C < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda %s: N %lld C %lld, expected N >= 0, C >= 1", name,
                             (long long)N, (long long)C);
    if (!(eps >= 0.0f))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda %s: eps %g, expected >= 0", name, (double)eps);
    if (N == 0) return GRAFT_STATUS_OK;
    if (N > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda %s: N %lld rows, expected <= %d", name, (long long)N,
                             INT32_MAX);
    cudaStream_t s = graft_stream(stream);
    int vec8 = C % 8 == 0 && aligned16(y) && aligned16(x) && aligned16(w) && (!delta || aligned16(delta)) &&
               (!xin || aligned16(xin));
    int threads = vec8 ? (C / 8 >= 256 ? 256 : (int)((C / 8 + 31) / 32 * 32)) : (C >= 256 ? 256 : (int)((C + 31) / 32 * 32));
    const int64_t chunks = vec8 ? (C / 8 + threads - 1) / threads : 0;
    if (vec8 && chunks == 1) rmsnorm_fwd_cached<1><<<(unsigned)N, threads, 0, s>>>(y, rstd, x, xin, delta, w, C, eps);
    else if (vec8 && chunks == 2) rmsnorm_fwd_cached<2><<<(unsigned)N, threads, 0, s>>>(y, rstd, x, xin, delta, w, C, eps);
    else if (vec8 && chunks <= 4) rmsnorm_fwd_cached<4><<<(unsigned)N, threads, 0, s>>>(y, rstd, x, xin, delta, w, C, eps);
    else if (vec8) rmsnorm_fwd_kernel<8><<<(unsigned)N, threads, 0, s>>>(y, rstd, x, xin, delta, w, C, eps);
    else rmsnorm_fwd_kernel<1><<<(unsigned)N, threads, 0, s>>>(y, rstd, x, xin, delta, w, C, eps);
    GRAFT_CUDA_LAUNCHED(name);
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_rmsnorm_fwd(graft_bf16 *y, float *rstd, const graft_bf16 *x, const graft_bf16 *w, int64_t N,
                                    int64_t C, float eps, void *stream, graft_err *err) {
    /* x is only read when delta is NULL */
    return fwd((bf16 *)y, rstd, (bf16 *)x, NULL, NULL, (const bf16 *)w, N, C, eps, stream, "rmsnorm_fwd", err);
}

graft_status graft_cuda_add_rmsnorm_fwd(graft_bf16 *x, graft_bf16 *y, float *rstd, const graft_bf16 *delta,
                                        const graft_bf16 *w, int64_t N, int64_t C, float eps, void *stream,
                                        graft_err *err) {
    return fwd((bf16 *)y, rstd, (bf16 *)x, NULL, (const bf16 *)delta, (const bf16 *)w, N, C, eps, stream,
               "add_rmsnorm_fwd", err);
}

graft_status graft_cuda_add_rmsnorm_out(graft_bf16 *sum, graft_bf16 *y, float *rstd, const graft_bf16 *a,
                                        const graft_bf16 *b, const graft_bf16 *w, int64_t N, int64_t C, float eps,
                                        void *stream, graft_err *err) {
    if (!a || !b)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda add_rmsnorm_out: a and b must be non-NULL");
    return fwd((bf16 *)y, rstd, (bf16 *)sum, (const bf16 *)a, (const bf16 *)b, (const bf16 *)w, N, C, eps, stream,
               "add_rmsnorm_out", err);
}

size_t graft_cuda_rmsnorm_bwd_scratch_bytes(int64_t N, int64_t C) {
    int64_t R = N < BWD_ROW_BLOCKS ? N : BWD_ROW_BLOCKS;
    return (size_t)(R > 0 ? R : 0) * (size_t)(C > 0 ? C : 0) * sizeof(float);
}

template <int VEC>
__global__ void rmsnorm_bwd_kernel(bf16 *dx, float *partial, const bf16 *dy, const bf16 *x, const bf16 *w,
                                   const float *rstd, int64_t N, int64_t C, int accumulate) {
    extern __shared__ float dwp[]; /* (C) this block's dw partial, or unused when partial is NULL */
    __shared__ float sh[32];
    if (partial)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dwp[c] = 0.0f;
    /* each thread's columns are the same in every row: the dwp entries it touches are its own */
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const bf16 *xr = x + n * C, *gr = dy + n * C;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int64_t c = threadIdx.x * VEC; c < C; c += (int64_t)blockDim.x * VEC) {
            float xv[VEC], gv[VEC], wv[VEC];
            if (VEC == 8) {
                load8(xr + c, xv);
                load8(gr + c, gv);
                load8(w + c, wv);
            } else {
                xv[0] = b2f(xr[c]);
                gv[0] = b2f(gr[c]);
                wv[0] = b2f(w[c]);
            }
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                dot += gv[j] * wv[j] * xv[j];
                if (partial) dwp[c + j] += gv[j] * (xv[j] * r);
            }
        }
        dot = block_sum(dot, sh);
        const float k = r * r * r * dot / (float)C;
        bf16 *dr = dx + n * C;
        for (int64_t c = threadIdx.x * VEC; c < C; c += (int64_t)blockDim.x * VEC) {
            float xv[VEC], gv[VEC], wv[VEC], o[VEC];
            if (VEC == 8) {
                load8(xr + c, xv);
                load8(gr + c, gv);
                load8(w + c, wv);
                if (accumulate) load8(dr + c, o);
            } else {
                xv[0] = b2f(xr[c]);
                gv[0] = b2f(gr[c]);
                wv[0] = b2f(w[c]);
                if (accumulate) o[0] = b2f(dr[c]);
            }
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                float v = r * (gv[j] * wv[j]) - xv[j] * k;
                o[j] = accumulate ? o[j] + v : v;
            }
            if (VEC == 8) store8(dr + c, o);
            else dr[c] = f2b(o[0]);
        }
    }
    if (partial) {
        __syncthreads();
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) partial[blockIdx.x * C + c] = dwp[c];
    }
}

graft_status graft_cuda_rmsnorm_bwd(graft_bf16 *dx, float *dw, const graft_bf16 *dy, const graft_bf16 *x,
                                    const graft_bf16 *w, const float *rstd, int64_t N, int64_t C, int accumulate,
                                    void *scratch, size_t scratch_bytes, void *stream, graft_err *err) {
    if (N < 0 || C < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda rmsnorm_bwd: N %lld C %lld, expected N >= 0, C >= 1",
                             (long long)N, (long long)C);
    if (C > MAX_C)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda rmsnorm_bwd: C %lld, expected <= %d", (long long)C,
                             MAX_C);
    if (N == 0) return GRAFT_STATUS_OK;
    size_t need = dw ? graft_cuda_rmsnorm_bwd_scratch_bytes(N, C) : 0;
    if (dw && (!scratch || scratch_bytes < need))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda rmsnorm_bwd: scratch %zu bytes, expected >= %zu",
                             scratch ? scratch_bytes : (size_t)0, need);
    cudaStream_t s = graft_stream(stream);
    int64_t R = N < BWD_ROW_BLOCKS ? N : BWD_ROW_BLOCKS;
    size_t smem = dw ? (size_t)C * sizeof(float) : 0;
    float *partial = dw ? (float *)scratch : NULL;
    int vec8 = C % 8 == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(w);
    int threads = vec8 ? (C / 8 >= 256 ? 256 : (int)((C / 8 + 31) / 32 * 32)) : (C >= 256 ? 256 : (int)((C + 31) / 32 * 32));
    const int64_t chunks = vec8 ? (C / 8 + threads - 1) / threads : 0;
    if (vec8 && chunks == 1)
        rmsnorm_bwd_cached<1><<<(unsigned)R, threads, 0, s>>>((bf16 *)dx, partial, (const bf16 *)dy, (const bf16 *)x,
                                                              (const bf16 *)w, rstd, N, C, accumulate);
    else if (vec8 && chunks == 2)
        rmsnorm_bwd_cached<2><<<(unsigned)R, threads, 0, s>>>((bf16 *)dx, partial, (const bf16 *)dy, (const bf16 *)x,
                                                              (const bf16 *)w, rstd, N, C, accumulate);
    else if (vec8)
        rmsnorm_bwd_kernel<8><<<(unsigned)R, threads, smem, s>>>((bf16 *)dx, partial, (const bf16 *)dy,
                                                                 (const bf16 *)x, (const bf16 *)w, rstd, N, C, accumulate);
    else
        rmsnorm_bwd_kernel<1><<<(unsigned)R, threads, smem, s>>>((bf16 *)dx, partial, (const bf16 *)dy,
                                                                 (const bf16 *)x, (const bf16 *)w, rstd, N, C, accumulate);
    GRAFT_CUDA_LAUNCHED("rmsnorm_bwd");
    if (dw) {
        colsum_one(dw, partial, R, C, s);
        GRAFT_CUDA_LAUNCHED("rmsnorm_bwd dw");
    }
    return GRAFT_STATUS_OK;
}
