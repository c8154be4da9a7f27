/* cuda/adamw.cu: AdamW step and global gradient norm over a plan of fixed chunks (adamw.cuh).
 * A chunk is (span, begin, end) with end - begin <= CHUNK; one 256-thread block per chunk, so the
 * grid covers every span in one launch and a small span costs one small block. */
#include <math.h>
#include <stdlib.h>
#include <vector>

#include "adamw.cuh"
#include "cuda_util.cuh"

#define THREADS 256
#define CHUNK 32768

typedef struct chunk {
    int64_t span, begin, end;
} chunk;

struct graft_cuda_adamw_plan {
    graft_cuda_adamw_span *spans; /* device (n_spans) */
    chunk *chunks;                /* device (n_chunks) */
    double *partials;             /* device (n_chunks) */
    int64_t n_spans, n_chunks;
};

graft_status graft_cuda_adamw_plan_init(graft_cuda_adamw_plan_t **out, const graft_cuda_adamw_span *spans,
                                        int64_t n_spans, graft_err *err) {
    *out = NULL;
    if (n_spans < 0 || (n_spans > 0 && !spans))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw plan: n_spans %lld, expected >= 0 with spans",
                             (long long)n_spans);
    std::vector<chunk> ch;
    for (int64_t i = 0; i < n_spans; i++) {
        const graft_cuda_adamw_span *s = &spans[i];
        if (s->n < 0)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw plan: span %lld: n %lld, expected >= 0",
                                 (long long)i, (long long)s->n);
        if (s->n > 0 && (!s->data || !s->grad || !s->m || !s->v))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw plan: span %lld: NULL data, grad, m or v",
                                 (long long)i);
        for (int64_t b = 0; b < s->n; b += CHUNK) ch.push_back({i, b, b + CHUNK < s->n ? b + CHUNK : s->n});
    }
    if ((int64_t)ch.size() > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda adamw plan: %zu chunks, expected <= %d", ch.size(),
                             INT32_MAX);
    graft_cuda_adamw_plan_t *p = (graft_cuda_adamw_plan_t *)calloc(1, sizeof *p);
    if (!p) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "cuda adamw plan: out of host memory");
    p->n_spans = n_spans;
    p->n_chunks = (int64_t)ch.size();
    cudaError_t e = cudaSuccess;
    if (n_spans > 0) e = cudaMalloc(&p->spans, (size_t)n_spans * sizeof *spans);
    if (!e && p->n_chunks > 0) e = cudaMalloc(&p->chunks, ch.size() * sizeof(chunk));
    if (!e && p->n_chunks > 0) e = cudaMalloc(&p->partials, ch.size() * sizeof(double));
    if (!e && n_spans > 0) e = cudaMemcpy(p->spans, spans, (size_t)n_spans * sizeof *spans, cudaMemcpyHostToDevice);
    if (!e && p->n_chunks > 0) e = cudaMemcpy(p->chunks, ch.data(), ch.size() * sizeof(chunk), cudaMemcpyHostToDevice);
    if (e) {
        graft_cuda_adamw_plan_free(p);
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda adamw plan: %zu chunks: %s", ch.size(), cudaGetErrorString(e));
    }
    *out = p;
    return GRAFT_STATUS_OK;
}

void graft_cuda_adamw_plan_free(graft_cuda_adamw_plan_t *p) {
    if (!p) return;
    cudaFree(p->spans);
    cudaFree(p->chunks);
    cudaFree(p->partials);
    free(p);
}

__global__ void norm_partial_kernel(double *partials, const chunk *chunks, const graft_cuda_adamw_span *spans) {
    __shared__ double sh[32];
    const chunk c = chunks[blockIdx.x];
    const float *g = spans[c.span].grad;
    double acc = 0.0;
    for (int64_t i = c.begin + threadIdx.x; i < c.end; i += THREADS) {
        double v = (double)g[i];
        acc += v * v;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void norm_final_kernel(double *norm, const double *partials, int64_t count) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) norm[0] = sqrt(acc);
}

graft_status graft_cuda_grad_norm(graft_cuda_adamw_plan_t *p, double *norm, void *stream, graft_err *err) {
    if (!p || !norm) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda grad_norm: plan or norm is NULL");
    cudaStream_t s = graft_stream(stream);
    if (p->n_chunks == 0) {
        GRAFT_CUDA_TRY(cudaMemsetAsync(norm, 0, sizeof(double), s));
        return GRAFT_STATUS_OK;
    }
    norm_partial_kernel<<<(unsigned)p->n_chunks, THREADS, 0, s>>>(p->partials, p->chunks, p->spans);
    GRAFT_CUDA_LAUNCHED("grad_norm partials");
    norm_final_kernel<<<1, 1024, 0, s>>>(norm, p->partials, p->n_chunks);
    GRAFT_CUDA_LAUNCHED("grad_norm final");
    return GRAFT_STATUS_OK;
}

struct adamw_consts {
    float b1, b2, one_b1, one_b2, step_size, inv_sqrt_bc2, eps, decay;
    const double *norm;
    double max_norm;
};

__global__ void adamw_kernel(const chunk *chunks, const graft_cuda_adamw_span *spans, adamw_consts k) {
    const chunk ch = chunks[blockIdx.x];
    const graft_cuda_adamw_span sp = spans[ch.span];
    float c = 1.0f;
    if (k.norm && k.max_norm > 0) {
        double coef = k.max_norm / (k.norm[0] + 1e-6);
        if (coef < 1.0) c = (float)coef;
    }
    const float decay = (sp.flags & GRAFT_CUDA_ADAMW_NO_DECAY) ? 1.0f : k.decay;
    bf16 *p16 = reinterpret_cast<bf16 *>(sp.data_bf16);
    for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += THREADS) {
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

graft_status graft_cuda_adamw_step(graft_cuda_adamw_plan_t *plan, const graft_cuda_adamw_params *p, int64_t t,
                                   double lr, const double *norm, double max_norm, void *stream, graft_err *err) {
    if (!plan || !p) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: plan or params is NULL");
    if (!(p->beta1 >= 0 && p->beta1 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: beta1: %g, expected 0 <= beta1 < 1", p->beta1);
    if (!(p->beta2 >= 0 && p->beta2 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: beta2: %g, expected 0 <= beta2 < 1", p->beta2);
    if (!(p->eps > 0)) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: eps: %g, expected > 0", p->eps);
    if (!(p->weight_decay >= 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: weight_decay: %g, expected >= 0", p->weight_decay);
    if (t < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda adamw: step t: %lld, expected >= 1", (long long)t);
    if (plan->n_chunks == 0) return GRAFT_STATUS_OK;
    adamw_consts k;
    k.b1 = (float)p->beta1;
    k.b2 = (float)p->beta2;
    /* 1 - beta in double first, as adamw.c: (1.0f - 0.999f) would lose digits of (1 - b2) */
    k.one_b1 = (float)(1.0 - p->beta1);
    k.one_b2 = (float)(1.0 - p->beta2);
    const double bc1 = 1.0 - pow(p->beta1, (double)t), bc2 = 1.0 - pow(p->beta2, (double)t);
    k.step_size = (float)(lr / bc1);
    k.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    k.eps = (float)p->eps;
    k.decay = (float)(1.0 - lr * p->weight_decay);
    k.norm = norm;
    k.max_norm = max_norm;
    adamw_kernel<<<(unsigned)plan->n_chunks, THREADS, 0, graft_stream(stream)>>>(plan->chunks, plan->spans, k);
    GRAFT_CUDA_LAUNCHED("adamw");
    return GRAFT_STATUS_OK;
}
