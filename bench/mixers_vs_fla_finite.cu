/* bench/mixers_vs_fla_finite.cu: the finiteness run of a mixer layer on CUDA in bf16 (issue #8:
 * "RWKV-7 must stay finite in long bf16 training"), through its plugin .so the way the core calls
 * it (host->matmul = cuBLASLt, bf16 activations and weights, fp32 gradients and master weights).
 *
 *   mixers_vs_fla_finite PLUGIN.so NAME [STEPS [--init]]   (NAME: rwkv7 (producer) | gla; C = 2048, 16 heads)
 *
 * 1. One training forward + backward at B = 1, T = 32768 on random x, dy: y, dx and every
 *    parameter gradient finite (and their RMS printed).
 * 2. STEPS (default 2000) consecutive training forward/backward calls at B = 1, T = 2048, fresh
 *    random x each step, loss = mean (y - x)^2 (learn the identity through the mixer), each
 *    followed by an AdamW update (lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 except
 *    NO_DECAY parameters) of fp32 master weights and their bf16 copy. The loss is printed every 100
 *    steps; any non-finite loss, output or parameter fails (exit 1).
 * The parameters start random like mixers_vs_fla_driver's (matrices N(0, 0.02^2), 1-D N(0, 0.1^2),
 * norm weights near 1); --init uses the plugin's own init instead (rwkv7: FLA's scheme, whose
 * Gram-Schmidt orthogonal matrices take about a minute on the CPU at C = 2048). Built by
 * tests/plugins/cuda_standalone.sh with the standalone host.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "graft/rng.h"
#include "standalone_host.h"
}

typedef __nv_bfloat16 bf16;

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Approximately N(0, 1) from a counter hash (sum of 4 uniforms, rescaled). */
__device__ float hnorm(uint64_t seed, uint64_t i) {
    float s = 0.0f;
    for (int k = 0; k < 4; k++) {
        uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 4 + k + 1;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        s += (float)(z >> 40) / 16777216.0f;
    }
    return (s - 2.0f) * 1.7320508f;
}
__global__ void gen_kernel(bf16 *x, int64_t n, uint64_t seed) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __float2bfloat16(hnorm(seed, (uint64_t)i));
}
/* dy = 2 (y - x) / n; loss += sum (y - x)^2 / n; nonfinite counts y entries that are not finite */
__global__ void loss_kernel(bf16 *dy, const bf16 *y, const bf16 *x, int64_t n, float *loss, int *nonfinite) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float d = 0.0f;
    if (i < n) {
        float yv = __bfloat162float(y[i]);
        if (!isfinite(yv)) atomicAdd(nonfinite, 1);
        d = yv - __bfloat162float(x[i]);
        dy[i] = __float2bfloat16(2.0f * d / (float)n * 1e4f); /* x 1e4: keeps bf16 dy well above underflow */
    }
    float s = d * d / (float)n;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(loss, s);
}
__global__ void adamw_kernel(float *p, float *g, float *m, float *v, bf16 *pb, int64_t n, float lr, float wd,
                             float bc1, float bc2, int *nonfinite) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * 1e-4f; /* undo the dy scale */
    m[i] = 0.9f * m[i] + 0.1f * gi;
    v[i] = 0.95f * v[i] + 0.05f * gi * gi;
    float pi = p[i] * (1.0f - lr * wd) - lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + 1e-8f);
    if (!isfinite(pi) || !isfinite(gi)) atomicAdd(nonfinite, 1);
    p[i] = pi;
    pb[i] = __float2bfloat16(pi);
    g[i] = 0.0f;
}
__global__ void count_nonfinite_bf16(const bf16 *x, int64_t n, int *bad) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && !isfinite(__bfloat162float(x[i]))) atomicAdd(bad, 1);
}
__global__ void stats_f32(const float *x, int64_t n, int *bad, double *ss) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (!isfinite(x[i])) atomicAdd(bad, 1);
    else atomicAdd(ss, (double)x[i] * x[i]);
}

static unsigned nb(int64_t n) { return (unsigned)((n + 255) / 256); }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: mixers_vs_fla_finite PLUGIN.so rwkv7|gla [STEPS [--init]]\n");
        return 2;
    }
    const int steps = argc > 3 ? atoi(argv[3]) : 2000;
    const int use_init = argc > 4 && !strcmp(argv[4], "--init");
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines survive a timeout */
    void *stream = NULL;
    const graft_host *host = sh_open(&stream);
    if (!host) return 77;
    cudaStream_t s = (cudaStream_t)stream;
    const graft_mixer *m = sh_load(argv[1]);
    if (!m) return 1;
    const char *name = argv[2];
    graft_kv kv_gla[] = {{"num_heads", "16", NULL}};
    graft_kv kv_rwkv[] = {{"decay_low_rank_dim", "64", NULL}, {"a_low_rank_dim", "64", NULL},
                          {"v_low_rank_dim", "16", NULL}, {"gate_low_rank_dim", "128", NULL}};
    graft_mixer_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.n_embd = 2048;
    cfg.n_head = 16;
    cfg.n_kv_head = 8;
    cfg.head_dim = 128;
    cfg.n_layer = 28;
    cfg.rope_theta = 1000000.0;
    cfg.norm_eps = 1e-6;
    cfg.origin = "mixers_vs_fla_finite";
    if (!strcmp(name, "gla")) cfg.kv = kv_gla, cfg.n_kv = 1;
    if (!strcmp(name, "rwkv7")) cfg.kv = kv_rwkv, cfg.n_kv = 4, cfg.carry_role = GRAFT_CARRY_PRODUCER;
    graft_err err;
    memset(&err, 0, sizeof err);
    void *layer = NULL;
    if (m->create(host, &cfg, &layer, &err)) {
        fprintf(stderr, "create: %s\n", err.msg);
        return 1;
    }
    const int64_t np = m->n_params(layer), C = cfg.n_embd;
    graft_tensor *Pc = (graft_tensor *)calloc((size_t)np, sizeof *Pc), *P = (graft_tensor *)calloc((size_t)np, sizeof *P),
                 *G = (graft_tensor *)calloc((size_t)np, sizeof *G);
    float **master = (float **)calloc((size_t)np, sizeof(float *)), **mm_ = (float **)calloc((size_t)np, sizeof(float *)),
          **vv = (float **)calloc((size_t)np, sizeof(float *));
    int64_t *numel = (int64_t *)calloc((size_t)np, sizeof(int64_t));
    int *nodecay = (int *)calloc((size_t)np, sizeof(int));
    graft_param_spec *spec = (graft_param_spec *)calloc((size_t)np, sizeof *spec);
    for (int64_t i = 0; i < np; i++) {
        spec[i].struct_size = sizeof spec[i];
        m->param(layer, i, &spec[i], &err);
        int64_t n = 1;
        for (int d = 0; d < spec[i].ndim; d++) n *= spec[i].shape[d];
        numel[i] = n;
        nodecay[i] = (spec[i].flags & GRAFT_PARAM_NO_DECAY) != 0;
        Pc[i] = graft_tensor_make(calloc((size_t)n, 4), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, spec[i].ndim, spec[i].shape);
    }
    if (use_init && m->init(layer, Pc, 1234, NULL, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        return 1;
    }
    if (!use_init) {
        graft_rng rng = graft_rng_make(7, 1);
        for (int64_t i = 0; i < np; i++) {
            float *h = (float *)Pc[i].data;
            int norm = spec[i].ndim == 1 && strstr(spec[i].name, "norm.weight");
            for (int64_t j = 0; j < numel[i]; j++)
                h[j] = (float)((norm ? 1.0 : 0.0) + (spec[i].ndim == 1 ? 0.1 : 0.02) * graft_rng_normal(&rng));
        }
    }
    for (int64_t i = 0; i < np; i++) {
        int64_t n = numel[i];
        void *pb, *g;
        CK(cudaMalloc(&master[i], (size_t)n * 4));
        CK(cudaMalloc(&mm_[i], (size_t)n * 4));
        CK(cudaMalloc(&vv[i], (size_t)n * 4));
        CK(cudaMalloc(&pb, (size_t)n * 2));
        CK(cudaMalloc(&g, (size_t)n * 4));
        CK(cudaMemcpy(master[i], Pc[i].data, (size_t)n * 4, cudaMemcpyHostToDevice));
        CK(cudaMemset(mm_[i], 0, (size_t)n * 4));
        CK(cudaMemset(vv[i], 0, (size_t)n * 4));
        CK(cudaMemset(g, 0, (size_t)n * 4));
        P[i] = graft_tensor_make(pb, GRAFT_DTYPE_BF16, GRAFT_DEVICE_CUDA, spec[i].ndim, spec[i].shape);
        G[i] = graft_tensor_make(g, GRAFT_DTYPE_F32, GRAFT_DEVICE_CUDA, spec[i].ndim, spec[i].shape);
    }
    int *d_bad;
    float *d_loss;
    double *d_ss;
    CK(cudaMalloc(&d_bad, 4));
    CK(cudaMalloc(&d_loss, 4));
    CK(cudaMalloc(&d_ss, 8));
    /* bf16 copies from the masters (lr 0, no decay: the adamw kernel with zero grads and lr 0) */
    for (int64_t i = 0; i < np; i++)
        adamw_kernel<<<nb(numel[i]), 256, 0, s>>>(master[i], (float *)G[i].data, mm_[i], vv[i], (bf16 *)P[i].data,
                                                  numel[i], 0.0f, 0.0f, 1.0f, 1.0f, d_bad);
    int failures = 0;
    for (int phase = 0; phase < 2; phase++) {
        const int64_t B = 1, T = phase == 0 ? 32768 : 2048, N = B * T;
        const int nstep = phase == 0 ? 1 : steps;
        size_t sv = 0, sc = 0;
        if (m->workspace(layer, GRAFT_DEVICE_CUDA, B, T, &sv, &sc, &err)) {
            fprintf(stderr, "workspace: %s\n", err.msg);
            return 1;
        }
        void *x, *y, *dy, *dx, *saved, *scr, *carry = NULL, *dcarry = NULL;
        CK(cudaMalloc(&x, (size_t)N * C * 2));
        CK(cudaMalloc(&y, (size_t)N * C * 2));
        CK(cudaMalloc(&dy, (size_t)N * C * 2));
        CK(cudaMalloc(&dx, (size_t)N * C * 2));
        CK(cudaMalloc(&saved, sv + 256));
        CK(cudaMalloc(&scr, sc + 256));
        int64_t cw = m->carry_name ? m->carry_width(layer) : 0;
        if (cw) {
            CK(cudaMalloc(&carry, (size_t)N * cw * 2));
            CK(cudaMalloc(&dcarry, (size_t)N * cw * 4));
            CK(cudaMemset(dcarry, 0, (size_t)N * cw * 4));
        }
        graft_mixer_io io;
        memset(&io, 0, sizeof io);
        io.struct_size = sizeof io;
        io.layer = layer;
        io.device = GRAFT_DEVICE_CUDA;
        io.stream = stream;
        io.B = B;
        io.T = T;
        io.params = P;
        io.x = x;
        io.y = y;
        io.saved = saved;
        io.scratch = scr;
        io.carry = carry;
        graft_mixer_io bio = io;
        bio.y = NULL;
        bio.grads = G;
        bio.dy = dy;
        bio.dx = dx;
        bio.dcarry = dcarry;
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        CK(cudaEventRecord(e0, s));
        for (int step = 1; step <= nstep; step++) {
            gen_kernel<<<nb(N * C), 256, 0, s>>>((bf16 *)x, N * C, (uint64_t)(phase * 100000 + step));
            CK(cudaMemsetAsync(d_loss, 0, 4, s));
            CK(cudaMemsetAsync(d_bad, 0, 4, s));
            if (m->forward(&io, &err)) {
                fprintf(stderr, "forward (T=%lld, step %d): %s\n", (long long)T, step, err.msg);
                return 1;
            }
            if (phase == 0) gen_kernel<<<nb(N * C), 256, 0, s>>>((bf16 *)dy, N * C, 777);
            else loss_kernel<<<nb(N * C), 256, 0, s>>>((bf16 *)dy, (const bf16 *)y, (const bf16 *)x, N * C, d_loss, d_bad);
            if (phase == 0) count_nonfinite_bf16<<<nb(N * C), 256, 0, s>>>((const bf16 *)y, N * C, d_bad);
            if (m->backward(&bio, &err)) {
                fprintf(stderr, "backward (T=%lld, step %d): %s\n", (long long)T, step, err.msg);
                return 1;
            }
            count_nonfinite_bf16<<<nb(N * C), 256, 0, s>>>((const bf16 *)dx, N * C, d_bad);
            if (phase == 0) {
                int bad = 0;
                CK(cudaMemcpyAsync(&bad, d_bad, 4, cudaMemcpyDeviceToHost, s));
                CK(cudaStreamSynchronize(s));
                printf("T=%lld fwd+bwd: %d non-finite entries in y and dx\n", (long long)T, bad);
                failures += bad != 0;
                for (int64_t i = 0; i < np; i++) {
                    double ss = 0;
                    CK(cudaMemsetAsync(d_bad, 0, 4, s));
                    CK(cudaMemsetAsync(d_ss, 0, 8, s));
                    stats_f32<<<nb(numel[i]), 256, 0, s>>>((const float *)G[i].data, numel[i], d_bad, d_ss);
                    CK(cudaMemcpyAsync(&bad, d_bad, 4, cudaMemcpyDeviceToHost, s));
                    CK(cudaMemcpyAsync(&ss, d_ss, 8, cudaMemcpyDeviceToHost, s));
                    CK(cudaStreamSynchronize(s));
                    printf("  d %-32s rms %.3e%s\n", spec[i].name, sqrt(ss / (double)numel[i]),
                           bad ? "  NON-FINITE" : "");
                    failures += bad != 0;
                    CK(cudaMemsetAsync(G[i].data, 0, (size_t)numel[i] * 4, s));
                }
                continue;
            }
            const float bc1 = 1.0f - powf(0.9f, (float)step), bc2 = 1.0f - powf(0.95f, (float)step);
            for (int64_t i = 0; i < np; i++)
                adamw_kernel<<<nb(numel[i]), 256, 0, s>>>(master[i], (float *)G[i].data, mm_[i], vv[i],
                                                          (bf16 *)P[i].data, numel[i], 1e-3f,
                                                          nodecay[i] ? 0.0f : 0.1f, bc1, bc2, d_bad);
            if (step % 100 == 0 || step == 1) {
                float loss = 0;
                int bad = 0;
                CK(cudaMemcpyAsync(&loss, d_loss, 4, cudaMemcpyDeviceToHost, s));
                CK(cudaMemcpyAsync(&bad, d_bad, 4, cudaMemcpyDeviceToHost, s));
                CK(cudaStreamSynchronize(s));
                printf("step %5d loss %.5f non-finite %d\n", step, loss, bad);
                fflush(stdout);
                if (!isfinite(loss) || bad) {
                    failures++;
                    break;
                }
            }
        }
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        printf("phase T=%lld: %d step(s) in %.1f ms\n", (long long)T, nstep, ms);
        cudaFree(x), cudaFree(y), cudaFree(dy), cudaFree(dx), cudaFree(saved), cudaFree(scr);
        if (carry) cudaFree(carry), cudaFree(dcarry);
    }
    printf("%s\n", failures ? "FINITENESS: FAIL" : "FINITENESS: OK");
    return failures ? 1 : 0;
}
