/* cuda/adamw.cu: AdamW step and global gradient norm over a device table of spans (adamw.cuh).
 * Grids are (blocks, n_spans): blockIdx.y picks the span, the x blocks stride over it; spans
 * smaller than the grid leave blocks idle (they exit at once). */
#include <math.h>

#include "adamw.cuh"
#include "cuda_util.cuh"

#define THREADS 256

__global__ void norm_partial_kernel(double *partials, const graft_cuda_adamw_span *spans) {
    __shared__ double sh[32];
    const graft_cuda_adamw_span sp = spans[blockIdx.y];
    double acc = 0.0;
    for (int64_t i = blockIdx.x * (int64_t)THREADS + threadIdx.x; i < sp.n; i += (int64_t)GRAFT_CUDA_NORM_BLOCKS * THREADS) {
        double g = (double)sp.grad[i];
        acc += g * g;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) partials[blockIdx.y * GRAFT_CUDA_NORM_BLOCKS + blockIdx.x] = acc;
}

__global__ void norm_final_kernel(double *norm, const double *partials, int64_t count) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) norm[0] = sqrt(acc);
}

graft_status graft_cuda_grad_norm(double *norm, double *partials, const graft_cuda_adamw_span *spans,
                                  int64_t n_spans, int64_t max_n, void *stream, graft_err *err) {
    if (n_spans < 0 || n_spans > 65535 || !norm || (n_spans > 0 && (!partials || !spans)))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "cuda grad_norm: n_spans %lld (expected 0..65535) or a NULL buffer", (long long)n_spans);
    cudaStream_t s = graft_stream(stream);
    if (n_spans == 0) {
        GRAFT_CUDA_TRY(cudaMemsetAsync(norm, 0, sizeof(double), s));
        return GRAFT_STATUS_OK;
    }
    (void)max_n; /* the partial grid is fixed so the sum order never depends on sizes */
    norm_partial_kernel<<<dim3(GRAFT_CUDA_NORM_BLOCKS, (unsigned)n_spans), THREADS, 0, s>>>(partials, spans);
    GRAFT_CUDA_LAUNCHED("grad_norm partials");
    norm_final_kernel<<<1, 1024, 0, s>>>(norm, partials, n_spans * GRAFT_CUDA_NORM_BLOCKS);
    GRAFT_CUDA_LAUNCHED("grad_norm final");
    return GRAFT_STATUS_OK;
}

struct adamw_consts {
    float b1, b2, one_b1, one_b2, step_size, inv_sqrt_bc2, eps, decay;
    const double *norm;
    double max_norm;
};

__global__ void adamw_kernel(const graft_cuda_adamw_span *spans, adamw_consts k) {
    const graft_cuda_adamw_span sp = spans[blockIdx.y];
    float c = 1.0f;
    if (k.norm && k.max_norm > 0) {
        double coef = k.max_norm / (k.norm[0] + 1e-6);
        if (coef < 1.0) c = (float)coef;
    }
    const float decay = (sp.flags & GRAFT_CUDA_ADAMW_NO_DECAY) ? 1.0f : k.decay;
    bf16 *p16 = reinterpret_cast<bf16 *>(sp.data_bf16);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < sp.n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = sp.grad[i];
        if (c != 1.0f) g *= c;
        float pj = sp.data[i] * decay;
        float m = k.b1 * sp.m[i] + k.one_b1 * g;
        float v = k.b2 * sp.v[i] + k.one_b2 * g * g;
        sp.m[i] = m;
        sp.v[i] = v;
        pj = pj - k.step_size * m / (sqrtf(v) * k.inv_sqrt_bc2 + k.eps);
        sp.data[i] = pj;
        if (p16) p16[i] = f2b(pj);
    }
}

graft_status graft_cuda_adamw_step(const graft_cuda_adamw_params *p, const graft_cuda_adamw_span *spans,
                                   int64_t n_spans, int64_t max_n, int64_t t, double lr, const double *norm,
                                   double max_norm, void *stream, graft_err *err) {
    if (!p) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: params is NULL");
    if (!(p->beta1 >= 0 && p->beta1 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: beta1: %g, expected 0 <= beta1 < 1", p->beta1);
    if (!(p->beta2 >= 0 && p->beta2 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: beta2: %g, expected 0 <= beta2 < 1", p->beta2);
    if (!(p->eps > 0)) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: eps: %g, expected > 0", p->eps);
    if (!(p->weight_decay >= 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: weight_decay: %g, expected >= 0", p->weight_decay);
    if (t < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: step t: %lld, expected >= 1", (long long)t);
    if (n_spans < 0 || n_spans > 65535 || (n_spans > 0 && !spans))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: n_spans %lld (expected 0..65535) or spans NULL",
                             (long long)n_spans);
    if (n_spans == 0 || max_n <= 0) return GRAFT_STATUS_OK;
    adamw_consts k;
    k.b1 = (float)p->beta1;
    k.b2 = (float)p->beta2;
    k.one_b1 = (float)(1.0 - p->beta1);
    k.one_b2 = (float)(1.0 - p->beta2);
    const double bc1 = 1.0 - pow(p->beta1, (double)t), bc2 = 1.0 - pow(p->beta2, (double)t);
    k.step_size = (float)(lr / bc1);
    k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    k.eps = (float)p->eps;
    k.decay = (float)(1.0 - lr * p->weight_decay);
    k.norm = norm;
    k.max_norm = max_norm;
    unsigned gx = grid_for(max_n, THREADS * 4, 1024);
    adamw_kernel<<<dim3(gx, (unsigned)n_spans), THREADS, 0, graft_stream(stream)>>>(spans, k);
    GRAFT_CUDA_LAUNCHED("adamw");
    return GRAFT_STATUS_OK;
}
