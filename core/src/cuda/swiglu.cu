/* cuda/swiglu.cu: SwiGLU elementwise kernels (swiglu.cuh). Grid-stride over N * I / VEC with
 * 16-byte vectors when I, the leading dimensions and the pointers allow it, scalar otherwise.
 * sigmoid is 1 / (1 + expf(-z)) as in the CPU reference (expf, not the fast __expf). */
#include "cuda_util.cuh"
#include "swiglu.cuh"

__device__ __forceinline__ float sigm(float z) { return 1.0f / (1.0f + expf(-z)); }

template <int VEC>
__global__ void swiglu_fwd_kernel(bf16 *h, const bf16 *g, const bf16 *u, int64_t N, int64_t I, int64_t ldgu,
                                  int64_t ldh) {
    const int64_t per = I / VEC, total = N * per;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / per, c = (i % per) * VEC;
        float gv[VEC], uv[VEC];
        if (VEC == 8) {
            load8(g + n * ldgu + c, gv);
            load8(u + n * ldgu + c, uv);
        } else {
            gv[0] = b2f(g[n * ldgu + c]);
            uv[0] = b2f(u[n * ldgu + c]);
        }
#pragma unroll
        for (int j = 0; j < VEC; j++) gv[j] = gv[j] * sigm(gv[j]) * uv[j];
        if (VEC == 8) store8(h + n * ldh + c, gv);
        else h[n * ldh + c] = f2b(gv[0]);
    }
}

template <int VEC>
__global__ void swiglu_bwd_kernel(bf16 *dg, bf16 *du, const bf16 *dh, const bf16 *g, const bf16 *u, int64_t N,
                                  int64_t I, int64_t ldgu, int64_t ldh) {
    const int64_t per = I / VEC, total = N * per;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / per, c = (i % per) * VEC;
        float gv[VEC], uv[VEC], hv[VEC], dgv[VEC], duv[VEC];
        if (VEC == 8) {
            load8(g + n * ldgu + c, gv);
            load8(u + n * ldgu + c, uv);
            load8(dh + n * ldh + c, hv);
        } else {
            gv[0] = b2f(g[n * ldgu + c]);
            uv[0] = b2f(u[n * ldgu + c]);
            hv[0] = b2f(dh[n * ldh + c]);
        }
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            float s = sigm(gv[j]);
            duv[j] = hv[j] * (gv[j] * s);
            dgv[j] = hv[j] * uv[j] * s * (1.0f + gv[j] * (1.0f - s));
        }
        if (VEC == 8) {
            store8(dg + n * ldgu + c, dgv);
            store8(du + n * ldgu + c, duv);
        } else {
            dg[n * ldgu + c] = f2b(dgv[0]);
            du[n * ldgu + c] = f2b(duv[0]);
        }
    }
}

static graft_status check(int64_t N, int64_t I, int64_t ld_gu, int64_t ld_h, const char *name, graft_err *err) {
    if (N < 0 || I < 1 || ld_gu < I || ld_h < I)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "cuda %s: N %lld I %lld ld_gu %lld ld_h %lld, expected N >= 0, I >= 1, ld >= I", name,
                             (long long)N, (long long)I, (long long)ld_gu, (long long)ld_h);
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_swiglu_fwd(graft_bf16 *h, const graft_bf16 *g, const graft_bf16 *u, int64_t N, int64_t I,
                                   int64_t ld_gu, int64_t ld_h, void *stream, graft_err *err) {
    graft_status st = check(N, I, ld_gu, ld_h, "swiglu_fwd", err);
    if (st || N == 0) return st;
    cudaStream_t s = graft_stream(stream);
    int vec8 = I % 8 == 0 && ld_gu % 8 == 0 && ld_h % 8 == 0 && aligned16(h) && aligned16(g) && aligned16(u);
    if (vec8)
        swiglu_fwd_kernel<8><<<grid_for(N * I / 8, 256, 8192), 256, 0, s>>>((bf16 *)h, (const bf16 *)g, (const bf16 *)u,
                                                                          N, I, ld_gu, ld_h);
    else
        swiglu_fwd_kernel<1><<<grid_for(N * I, 256, 8192), 256, 0, s>>>((bf16 *)h, (const bf16 *)g, (const bf16 *)u, N,
                                                                      I, ld_gu, ld_h);
    GRAFT_CUDA_LAUNCHED("swiglu_fwd");
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_swiglu_bwd(graft_bf16 *dg, graft_bf16 *du, const graft_bf16 *dh, const graft_bf16 *g,
                                   const graft_bf16 *u, int64_t N, int64_t I, int64_t ld_gu, int64_t ld_h,
                                   void *stream, graft_err *err) {
    graft_status st = check(N, I, ld_gu, ld_h, "swiglu_bwd", err);
    if (st || N == 0) return st;
    cudaStream_t s = graft_stream(stream);
    int vec8 = I % 8 == 0 && ld_gu % 8 == 0 && ld_h % 8 == 0 && aligned16(dg) && aligned16(du) && aligned16(dh) &&
               aligned16(g) && aligned16(u);
    if (vec8)
        swiglu_bwd_kernel<8><<<grid_for(N * I / 8, 256, 8192), 256, 0, s>>>(
            (bf16 *)dg, (bf16 *)du, (const bf16 *)dh, (const bf16 *)g, (const bf16 *)u, N, I, ld_gu, ld_h);
    else
        swiglu_bwd_kernel<1><<<grid_for(N * I, 256, 8192), 256, 0, s>>>(
            (bf16 *)dg, (bf16 *)du, (const bf16 *)dh, (const bf16 *)g, (const bf16 *)u, N, I, ld_gu, ld_h);
    GRAFT_CUDA_LAUNCHED("swiglu_bwd");
    return GRAFT_STATUS_OK;
}
