/* bench/cuda_ops.cu: rates of the CUDA ops (core/src/cuda) on the device they run on, each printed
 * beside its physical floor measured in the same run:
 *   - GEMMs: bf16 TFLOP/s (fp32 accumulate) at 8192^3 and at the Qwen3-1.7B projection shapes for
 *     M = 4096 tokens (forward Y = X W^T, backward dX = dY W and dW += dY^T X), vs the 8192^3 rate
 *   - memory-bound ops: achieved GB/s (bytes each op must move at least, counted per op below) vs
 *     the device-to-device copy bandwidth (cudaMemcpyAsync, read + write counted)
 *   - the fused lm_head + CE (+ top-k KL) at N = 4096: time vs its three GEMMs run alone
 * Timing: CUDA events around `iters` launches after `warm` warm-up launches; the median of 5 such
 * runs is printed. Output: a markdown table on stdout. No reference checks here (tests/ops does).
 *
 * Usage: bench_cuda_ops [--quick]
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <functional>
#include <vector>

#include "cuda/adamw.cuh"
#include "cuda/embedding.cuh"
#include "cuda/lmhead_loss.cuh"
#include "cuda/skinny.cuh"
#include "cuda/matmul.cuh"
#include "cuda/qk_norm_rope.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/swiglu.cuh"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static graft_err g_e;
#define OK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != GRAFT_STATUS_OK) {                                                           \
            fprintf(stderr, "%s: %s\n", #call, g_e.msg);                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int g_iters = 20;

/* median over 5 runs of the mean ms per call */
static double time_ms(const std::function<void()> &f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) f();
    std::vector<double> r;
    for (int rep = 0; rep < 5; rep++) {
        CK(cudaEventRecord(a));
        for (int i = 0; i < g_iters; i++) f();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        r.push_back(ms / g_iters);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(r.begin(), r.end());
    return r[2];
}

static void *dmalloc(size_t bytes) {
    void *p;
    CK(cudaMalloc(&p, bytes));
    return p;
}

/* fills a bf16 buffer with small random values (a cheap LCG on the device) */
__global__ void fill_kernel(graft_bf16 *p, size_t n, float scale, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u + seed;
        x ^= x >> 13;
        x *= 0x5bd1e995u;
        x ^= x >> 15;
        float f = ((float)(x & 0xffff) / 65536.0f - 0.5f) * scale;
        p[i] = (graft_bf16)(__float_as_uint(f) >> 16);
    }
}
static graft_bf16 *bf16_rand(size_t n, float scale) {
    graft_bf16 *p = (graft_bf16 *)dmalloc(n * 2);
    fill_kernel<<<1024, 256>>>(p, n, scale, (uint32_t)n);
    CK(cudaGetLastError());
    return p;
}

static graft_cuda_blas_t *blas;

static double gemm_tflops(int ta, int tb, int64_t m, int64_t n, int64_t k, graft_dtype cdt, float beta) {
    graft_bf16 *A = bf16_rand((size_t)m * k, 1.0f), *B = bf16_rand((size_t)k * n, 1.0f);
    void *C = dmalloc((size_t)m * n * (cdt == GRAFT_DTYPE_F32 ? 4 : 2));
    CK(cudaMemset(C, 0, (size_t)m * n * (cdt == GRAFT_DTYPE_F32 ? 4 : 2)));
    graft_matmul_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.device = GRAFT_DEVICE_CUDA;
    g.dtype = GRAFT_DTYPE_BF16;
    g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = 1.0f, g.beta = beta;
    g.a = A, g.lda = ta ? m : k, g.b = B, g.ldb = tb ? k : n, g.c = C, g.ldc = n, g.batch = 1;
    double ms = time_ms([&] { OK(graft_cuda_matmul(blas, &g, cdt, &g_e)); });
    CK(cudaFree(A));
    CK(cudaFree(B));
    CK(cudaFree(C));
    return 2.0 * m * n * k / (ms * 1e-3) / 1e12;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (quick) g_iters = 5;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("# graft CUDA ops bench\n\ndevice: %s, %d SMs, %.1f GiB\n\n", prop.name, prop.multiProcessorCount,
           prop.totalGlobalMem / 1073741824.0);
    OK(graft_cuda_blas_init(&blas, 0, &g_e));

    /* copy bandwidth: the floor for every memory-bound op */
    size_t cb = (size_t)1 << 30;
    void *s0 = dmalloc(cb), *s1 = dmalloc(cb);
    CK(cudaMemset(s0, 1, cb));
    double cms = time_ms([&] { CK(cudaMemcpyAsync(s1, s0, cb, cudaMemcpyDeviceToDevice)); });
    const double copy_gbs = 2.0 * cb / (cms * 1e-3) / 1e9;
    CK(cudaFree(s0));
    CK(cudaFree(s1));
    printf("copy bandwidth (D2D 1 GiB, read + write): %.0f GB/s\n\n", copy_gbs);

    /* GEMMs */
    const int64_t M = 4096, C = 2048, I = 6144, V = 151936, QD = 2048, KVD = 1024;
    printf("## bf16 GEMM (fp32 accumulate), cuBLASLt through graft_cuda_matmul\n\n");
    printf("| shape | m | n | k | C dtype | TFLOP/s |\n|---|---|---|---|---|---|\n");
    struct gs {
        const char *name;
        int ta, tb;
        int64_t m, n, k;
        graft_dtype c;
        float beta;
    } shapes[] = {
        {"square 8192^3", 0, 1, 8192, 8192, 8192, GRAFT_DTYPE_BF16, 0},
        {"q_proj / o_proj fwd", 0, 1, M, QD, C, GRAFT_DTYPE_BF16, 0},
        {"k_proj / v_proj fwd", 0, 1, M, KVD, C, GRAFT_DTYPE_BF16, 0},
        {"fused qkv fwd", 0, 1, M, QD + 2 * KVD, C, GRAFT_DTYPE_BF16, 0},
        {"fused gate_up fwd", 0, 1, M, 2 * I, C, GRAFT_DTYPE_BF16, 0},
        {"down_proj fwd", 0, 1, M, C, I, GRAFT_DTYPE_BF16, 0},
        {"lm_head fwd (fp32 logits)", 0, 1, M, V, C, GRAFT_DTYPE_F32, 0},
        {"gate_up dX = dY W", 0, 0, M, C, 2 * I, GRAFT_DTYPE_BF16, 0},
        {"gate_up dW += dY^T X (fp32)", 1, 0, 2 * I, C, M, GRAFT_DTYPE_F32, 1},
        {"down dW += dY^T X (fp32)", 1, 0, C, I, M, GRAFT_DTYPE_F32, 1},
        {"qkv dW += dY^T X (fp32)", 1, 0, QD + 2 * KVD, C, M, GRAFT_DTYPE_F32, 1},
    };
    for (const auto &s : shapes) {
        if (quick && s.m == 8192) continue;
        double tf = gemm_tflops(s.ta, s.tb, s.m, s.n, s.k, s.c, s.beta);
        printf("| %s | %lld | %lld | %lld | %s | %.0f |\n", s.name, (long long)s.m, (long long)s.n, (long long)s.k,
               graft_dtype_name(s.c), tf);
        fflush(stdout);
    }

    /* decode products: m rows x a bf16 weight^T, skinny.cu vs cuBLASLt, as bandwidth of the weight */
    printf("\n## decode products (m rows . W^T, bf16 W), weight GB/s vs copy %.0f GB/s\n\n", copy_gbs);
    printf("| m | n x k | C | skinny us | skinny GB/s | of copy | cuBLASLt us | cuBLASLt GB/s | of copy |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    {
        struct { int64_t m, n, k; graft_dtype c; } ds[] = {
            {1, QD, C, GRAFT_DTYPE_BF16}, {1, KVD, C, GRAFT_DTYPE_BF16}, {1, I, C, GRAFT_DTYPE_BF16},
            {1, C, I, GRAFT_DTYPE_BF16}, {1, V, C, GRAFT_DTYPE_F32}, {8, I, C, GRAFT_DTYPE_BF16},
            {8, C, I, GRAFT_DTYPE_BF16}, {8, V, C, GRAFT_DTYPE_F32}};
        for (auto &d : ds) {
            graft_bf16 *A = bf16_rand((size_t)(d.m * d.k), 1.0f), *W = bf16_rand((size_t)(d.n * d.k), 1.0f);
            void *Cm = dmalloc((size_t)(d.m * d.n) * 4);
            graft_matmul_args g;
            memset(&g, 0, sizeof g);
            g.struct_size = sizeof g, g.device = GRAFT_DEVICE_CUDA, g.dtype = GRAFT_DTYPE_BF16;
            g.trans_b = 1, g.m = d.m, g.n = d.n, g.k = d.k, g.alpha = 1.0f, g.beta = 0.0f;
            g.a = A, g.lda = d.k, g.b = W, g.ldb = d.k, g.c = Cm, g.ldc = d.n, g.batch = 1;
            double bytes = 2.0 * d.n * d.k;
            graft_cuda_skinny_enable(1);
            double ms1 = time_ms([&] { OK(graft_cuda_matmul(blas, &g, d.c, &g_e)); });
            graft_cuda_skinny_enable(0);
            double ms2 = time_ms([&] { OK(graft_cuda_matmul(blas, &g, d.c, &g_e)); });
            graft_cuda_skinny_enable(1);
            double g1 = bytes / (ms1 * 1e-3) / 1e9, g2 = bytes / (ms2 * 1e-3) / 1e9;
            printf("| %lld | %lld x %lld | %s | %.1f | %.0f | %.0f%% | %.1f | %.0f | %.0f%% |\n", (long long)d.m,
                   (long long)d.n, (long long)d.k, graft_dtype_name(d.c), ms1 * 1e3, g1, 100 * g1 / copy_gbs, ms2 * 1e3,
                   g2, 100 * g2 / copy_gbs);
            fflush(stdout);
            CK(cudaFree(A)); CK(cudaFree(W)); CK(cudaFree(Cm));
        }
    }

    /* memory-bound ops at Qwen3-1.7B widths, N = 4096 tokens */
    printf("\n## memory-bound ops (N = %lld tokens), GB/s vs copy %.0f GB/s\n\n", (long long)M, copy_gbs);
    printf("| op | shape | bytes moved (min) | time (us) | GB/s | of copy |\n|---|---|---|---|---|---|\n");
    auto row = [&](const char *op, const char *shape, double bytes, double ms) {
        double gbs = bytes / (ms * 1e-3) / 1e9;
        printf("| %s | %s | %.1f MB | %.1f | %.0f | %.0f%% |\n", op, shape, bytes / 1e6, ms * 1e3, gbs, 100 * gbs / copy_gbs);
        fflush(stdout);
    };
    {
        graft_bf16 *x = bf16_rand(M * C, 2), *d = bf16_rand(M * C, 1), *w = bf16_rand(C, 1), *y = bf16_rand(M * C, 1);
        graft_bf16 *dy = bf16_rand(M * C, 1), *dx = bf16_rand(M * C, 1);
        float *rstd = (float *)dmalloc(M * 4), *dw = (float *)dmalloc(C * 4);
        size_t sb = graft_cuda_rmsnorm_bwd_scratch_bytes(M, C);
        void *scr = dmalloc(sb);
        double ms = time_ms([&] { OK(graft_cuda_rmsnorm_fwd(y, rstd, x, w, M, C, 1e-6f, NULL, &g_e)); });
        row("rmsnorm_fwd", "4096 x 2048", 4.0 * M * C + 4.0 * M, ms);
        ms = time_ms([&] { OK(graft_cuda_add_rmsnorm_fwd(x, y, rstd, d, w, M, C, 1e-6f, NULL, &g_e)); });
        row("add_rmsnorm_fwd", "4096 x 2048", 8.0 * M * C + 4.0 * M, ms);
        ms = time_ms([&] { OK(graft_cuda_rmsnorm_bwd(dx, dw, dy, x, w, rstd, M, C, 1, scr, sb, NULL, &g_e)); });
        row("rmsnorm_bwd (dx +=, dw)", "4096 x 2048", 8.0 * M * C, ms);
        CK(cudaFree(x)); CK(cudaFree(d)); CK(cudaFree(w)); CK(cudaFree(y)); CK(cudaFree(dy)); CK(cudaFree(dx));
        CK(cudaFree(rstd)); CK(cudaFree(dw)); CK(cudaFree(scr));
    }
    {
        const int64_t H = 16, D = 128;
        graft_bf16 *x = bf16_rand(M * H * D, 2), *w = bf16_rand(D, 1), *y = bf16_rand(M * H * D, 1);
        graft_bf16 *dy = bf16_rand(M * H * D, 1), *dx = bf16_rand(M * H * D, 1);
        float *rstd = (float *)dmalloc(M * H * 4), *dw = (float *)dmalloc(D * 4);
        size_t sb = graft_cuda_qk_norm_rope_bwd_scratch_bytes(M, H, D);
        void *scr = dmalloc(sb);
        double ms = time_ms([&] {
            OK(graft_cuda_qk_norm_rope_fwd(y, rstd, x, w, NULL, M, M, H, D, H * D, H * D, 1e6, 1e-6f, NULL, &g_e));
        });
        row("qk_norm_rope_fwd (q)", "4096 x 16 x 128", 4.0 * M * H * D + 4.0 * M * H, ms);
        ms = time_ms([&] {
            OK(graft_cuda_qk_norm_rope_bwd(dx, dw, dy, x, w, rstd, NULL, M, M, H, D, H * D, H * D, H * D, 1e6, scr, sb,
                                           NULL, &g_e));
        });
        row("qk_norm_rope_bwd (q)", "4096 x 16 x 128", 6.0 * M * H * D + 4.0 * M * H, ms);
        CK(cudaFree(x)); CK(cudaFree(w)); CK(cudaFree(y)); CK(cudaFree(dy)); CK(cudaFree(dx));
        CK(cudaFree(rstd)); CK(cudaFree(dw)); CK(cudaFree(scr));
    }
    {
        graft_bf16 *gu = bf16_rand(M * 2 * I, 2), *h = bf16_rand(M * I, 1), *dh = bf16_rand(M * I, 1);
        graft_bf16 *dgu = bf16_rand(M * 2 * I, 1);
        double ms = time_ms([&] { OK(graft_cuda_swiglu_fwd(h, gu, gu + I, M, I, 2 * I, I, NULL, &g_e)); });
        row("swiglu_fwd (fused gate_up)", "4096 x 6144", 6.0 * M * I, ms);
        ms = time_ms([&] { OK(graft_cuda_swiglu_bwd(dgu, dgu + I, dh, gu, gu + I, M, I, 2 * I, I, NULL, &g_e)); });
        row("swiglu_bwd (fused gate_up)", "4096 x 6144", 10.0 * M * I, ms);
        CK(cudaFree(gu)); CK(cudaFree(h)); CK(cudaFree(dh)); CK(cudaFree(dgu));
    }
    {
        graft_bf16 *table = bf16_rand((size_t)V * C, 1), *out = bf16_rand(M * C, 1);
        float *dtable = (float *)dmalloc((size_t)V * C * 4);
        CK(cudaMemset(dtable, 0, (size_t)V * C * 4));
        std::vector<int32_t> ids(M);
        for (int64_t i = 0; i < M; i++) ids[i] = (int32_t)((i * 7919) % 50000);
        int32_t *dids = (int32_t *)dmalloc(M * 4);
        CK(cudaMemcpy(dids, ids.data(), M * 4, cudaMemcpyHostToDevice));
        size_t ws;
        OK(graft_cuda_embedding_bwd_workspace(M, &ws, &g_e));
        void *w = dmalloc(ws);
        double ms = time_ms([&] { OK(graft_cuda_embedding_fwd(out, table, dids, M, C, V, NULL, &g_e)); });
        row("embedding_fwd", "4096 x 2048", 4.0 * M * C, ms);
        ms = time_ms([&] { OK(graft_cuda_embedding_bwd(dtable, out, dids, M, C, V, w, ws, NULL, &g_e)); });
        row("embedding_bwd (sort + sum)", "4096 x 2048", 2.0 * M * C + 8.0 * M * C, ms);
        CK(cudaFree(table)); CK(cudaFree(out)); CK(cudaFree(dtable)); CK(cudaFree(dids)); CK(cudaFree(w));
    }
    {
        const int64_t n = (int64_t)1 << 28; /* 268M parameters, one span */
        graft_cuda_adamw_span sp;
        memset(&sp, 0, sizeof sp);
        sp.data = (float *)dmalloc(n * 4), sp.grad = (float *)dmalloc(n * 4), sp.m = (float *)dmalloc(n * 4);
        sp.v = (float *)dmalloc(n * 4), sp.data_bf16 = (graft_bf16 *)dmalloc(n * 2), sp.n = n;
        CK(cudaMemset(sp.data, 0, n * 4)); CK(cudaMemset((void *)sp.grad, 0, n * 4));
        CK(cudaMemset(sp.m, 0, n * 4)); CK(cudaMemset(sp.v, 0, n * 4));
        graft_cuda_adamw_plan_t *plan;
        OK(graft_cuda_adamw_plan_init(&plan, &sp, 1, &g_e));
        double *norm = (double *)dmalloc(8);
        graft_cuda_adamw_params p = {0.9, 0.999, 1e-8, 0.01};
        double ms = time_ms([&] { OK(graft_cuda_grad_norm(plan, norm, NULL, &g_e)); });
        row("grad_norm", "268M fp32", 4.0 * n, ms);
        ms = time_ms([&] { OK(graft_cuda_adamw_step(plan, &p, 1, 1e-4, norm, 1.0, NULL, &g_e)); });
        row("adamw_step (+bf16 copy)", "268M params", 30.0 * n, ms);
        CK(cudaFree(sp.data)); CK(cudaFree((void *)sp.grad)); CK(cudaFree(sp.m)); CK(cudaFree(sp.v));
        CK(cudaFree(sp.data_bf16)); CK(cudaFree(norm));
        graft_cuda_adamw_plan_free(plan);
    }

    /* the fused lm_head loss vs its GEMMs alone */
    printf("\n## lm_head + loss, N = %lld, C = %lld, V = %lld\n\n", (long long)M, (long long)C, (long long)V);
    {
        const int64_t chunk = 1024, k = 32;
        graft_bf16 *hid = bf16_rand(M * C, 2), *W = bf16_rand((size_t)V * C, 0.1f), *dh = bf16_rand(M * C, 1);
        float *dW = (float *)dmalloc((size_t)V * C * 4);
        CK(cudaMemset(dW, 0, (size_t)V * C * 4));
        std::vector<int32_t> lab(M), ids(M * k);
        std::vector<float> lp(M * k, -5.0f), mass(M, 0.5f);
        for (int64_t i = 0; i < M; i++) {
            lab[i] = (int32_t)((i * 104729) % V);
            for (int64_t j = 0; j < k; j++) ids[i * k + j] = (int32_t)((i * 31 + j * 4099) % V);
        }
        int32_t *dl = (int32_t *)dmalloc(M * 4), *di = (int32_t *)dmalloc(M * k * 4);
        float *dlp = (float *)dmalloc(M * k * 4), *dm = (float *)dmalloc(M * 4);
        CK(cudaMemcpy(dl, lab.data(), M * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(di, ids.data(), M * k * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dlp, lp.data(), M * k * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dm, mass.data(), M * 4, cudaMemcpyHostToDevice));
        graft_cuda_lmhead_loss_io io;
        memset(&io, 0, sizeof io);
        io.hidden = hid, io.weight = W, io.labels = dl, io.N = M, io.C = C, io.V = V, io.ignore_index = -100;
        io.ce_scale = 1.0f / M, io.dhidden = dh, io.dweight = dW, io.sums = (double *)dmalloc(32);
        io.chunk_rows = chunk, io.workspace_bytes = graft_cuda_lmhead_loss_workspace_bytes(M, V, chunk);
        io.workspace = dmalloc(io.workspace_bytes);
        int it = g_iters;
        g_iters = 3;
        double gemm3 = 0;
        {
            /* the three GEMMs of one chunk, alone, times the chunk count */
            graft_matmul_args g;
            memset(&g, 0, sizeof g);
            g.struct_size = sizeof g, g.device = GRAFT_DEVICE_CUDA, g.dtype = GRAFT_DTYPE_BF16, g.batch = 1, g.alpha = 1;
            float *logits = (float *)io.workspace + 4 * M * 2;
            double t = time_ms([&] {
                g.trans_a = 0, g.trans_b = 1, g.m = chunk, g.n = V, g.k = C, g.a = hid, g.lda = C, g.b = W, g.ldb = C;
                g.c = logits, g.ldc = V, g.beta = 0;
                OK(graft_cuda_matmul(blas, &g, GRAFT_DTYPE_F32, &g_e));
                g.trans_b = 0, g.m = chunk, g.n = C, g.k = V, g.a = logits, g.lda = 2 * V, g.b = W, g.ldb = C, g.c = dh;
                g.ldc = C;
                OK(graft_cuda_matmul(blas, &g, GRAFT_DTYPE_BF16, &g_e));
                g.trans_a = 1, g.m = V, g.n = C, g.k = chunk, g.a = logits, g.lda = 2 * V, g.b = hid, g.ldb = C, g.c = dW;
                g.ldc = C, g.beta = 1;
                OK(graft_cuda_matmul(blas, &g, GRAFT_DTYPE_F32, &g_e));
            });
            gemm3 = t * (M / chunk);
        }
        const double flops = 3.0 * 2.0 * M * V * C;
        printf("| variant | time (ms) | TFLOP/s (3 GEMMs' flops) | vs GEMMs alone |\n|---|---|---|---|\n");
        printf("| the 3 GEMMs alone (chunk %lld) | %.2f | %.0f | 1.00 |\n", (long long)chunk, gemm3, flops / (gemm3 * 1e-3) / 1e12);
        double ms = time_ms([&] { OK(graft_cuda_lmhead_loss(blas, &io, &g_e)); });
        printf("| CE, fwd + bwd | %.2f | %.0f | %.2f |\n", ms, flops / (ms * 1e-3) / 1e12, ms / gemm3);
        io.topk_ids = di, io.topk_logp = dlp, io.topk_mass = dm, io.k = k, io.temperature = 4.0f, io.kl_scale = 0.5f / M;
        ms = time_ms([&] { OK(graft_cuda_lmhead_loss(blas, &io, &g_e)); });
        printf("| CE + top-32 KL, fwd + bwd | %.2f | %.0f | %.2f |\n", ms, flops / (ms * 1e-3) / 1e12, ms / gemm3);
        io.dhidden = NULL, io.dweight = NULL, io.topk_ids = NULL;
        ms = time_ms([&] { OK(graft_cuda_lmhead_loss(blas, &io, &g_e)); });
        printf("| CE, forward only (eval) | %.2f | %.0f (1 GEMM) | - |\n", ms, flops / 3 / (ms * 1e-3) / 1e12);
        g_iters = it;
    }
    CK(cudaDeviceSynchronize());
    graft_cuda_blas_free(blas);
    return 0;
}
