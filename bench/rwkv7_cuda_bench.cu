/* bench/rwkv7_cuda_bench.cu: times graft's CUDA RWKV-7 core (plugins/rwkv7/rwkv7_cuda.cu) with CUDA
 * events (median of 20 after 3 warm-ups), for each lanes setting (threads per value column of the
 * sequential kernels) and the automatic choice, and prints the floors: bytes / measured copy
 * bandwidth and fp32 FMAs / fp32 peak (FP32_TFLOPS, default 67 = H100 SXM: 132 SMs · 128 FMA ·
 * 2 · ~1.98 GHz). bench/rwkv7_fla_bench.py times FLA's chunk_rwkv7 / fused_recurrent_rwkv7 on
 * the same shapes in the same device call; bench/results/ holds the comparisons.
 * Inputs as the layer makes them: r, k, v, do ~ U(±1.7); a = −κ with |κ_c| ~ 1/√128; b = −a ⊙ α;
 * w = −e^{−1/2} σ(z) (bf16).
 * Also the chunked forward (rwkv7_cuda_chunk.cu, GRAFT_RWKV7_CHUNK=1) with its floors: bytes /
 * copy bandwidth and tf32 tensor FLOPs / TF32_TFLOPS (default 494.7 = H100 SXM dense).
 * BENCH_CHUNK_ONLY=1: only the automatic lanes for the recurrent kernel (no sweep).
 * Output: "graft <shape> <pass> lanes=<n> <ms> ..." and "... CHUNK ..." lines.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "../plugins/rwkv7/rwkv7_cuda.cuh"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));           \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* mode 0: U(±1.7)·mul; 1: w = −c_w σ(z); 2: b = κα from a = −κ in `src` (α = hash in (0,1)) */
__global__ void fill(__nv_bfloat16 *x, size_t n, unsigned seed, float mul, int mode, const __nv_bfloat16 *src) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        float u = (h & 0xFFFFFF) / 16777216.0f;
        float z = (u * 2.f - 1.f) * 1.7f, y;
        if (mode == 1) y = -0.60653066f / (1.f + expf(-z));
        else if (mode == 2) y = -__bfloat162float(src[i]) * u;
        else y = z * mul;
        x[i] = __float2bfloat16_rn(y);
    }
}

template <class F> static float median_ms(F f) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) f();
    std::vector<float> t;
    for (int i = 0; i < 20; i++) {
        CK(cudaEventRecord(a));
        f();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main() {
    double peak = getenv("FP32_TFLOPS") ? atof(getenv("FP32_TFLOPS")) : 67.0;
    size_t cb = (size_t)1 << 30;
    void *x, *y;
    CK(cudaMalloc(&x, cb)); CK(cudaMalloc(&y, cb));
    CK(cudaMemset(x, 1, cb));
    float cms = median_ms([&] { CK(cudaMemcpyAsync(y, x, cb, cudaMemcpyDeviceToDevice)); });
    double bw = 2.0 * cb / (cms * 1e-3);
    printf("copy bandwidth %.2f TB/s (1 GiB D2D, read+write); fp32 peak used %.0f TFLOP/s\n", bw / 1e12, peak);
    CK(cudaFree(x)); CK(cudaFree(y));

    struct Shape { int B, T; bool bwd; } shapes[] = {{4, 2048, true}, {1, 32768, false}, {1, 8192, true}};
    const int H = 16, D = 128;
    for (auto sh : shapes) {
        size_t N = (size_t)sh.B * sh.T * H * D;
        __nv_bfloat16 *t[14];
        for (auto &p : t) CK(cudaMalloc(&p, N * 2));
        __nv_bfloat16 *r = t[0], *w = t[1], *k = t[2], *v = t[3], *a = t[4], *b = t[5], *o = t[6], *dout = t[7];
        fill<<<1024, 256>>>(r, N, 1, 1.f, 0, nullptr);
        fill<<<1024, 256>>>(w, N, 2, 1.f, 1, nullptr);
        fill<<<1024, 256>>>(k, N, 3, 1.f, 0, nullptr);
        fill<<<1024, 256>>>(v, N, 4, 1.f, 0, nullptr);
        fill<<<1024, 256>>>(a, N, 5, 0.0884f, 0, nullptr);
        fill<<<1024, 256>>>(b, N, 6, 0.f, 2, a);
        fill<<<1024, 256>>>(dout, N, 7, 1.f, 0, nullptr);
        CK(cudaGetLastError());
        rwkv7_cuda_args A = rwkv7_cuda_default_args();
        A.B = sh.B, A.T = sh.T, A.H = H, A.w_bf16 = 1;
        A.r = r, A.w = w, A.k = k, A.v = v, A.a = a, A.b = b, A.o = o, A.dout = dout;
        A.dr = t[8], A.dw = t[9], A.dk = t[10], A.dv = t[11], A.da = t[12], A.db = t[13];
        size_t wb = rwkv7_cuda_work_bytes(&A, 1);
        void *work;
        CK(cudaMalloc(&work, wb));
        graft_err err;
        /* fp32 FMAs: forward 5 per state element and token (aᵀS, update 3, Sᵀr); backward 15
         * (state gradient 5, key-side re-walk 10) plus the recomputed forward */
        double elems = (double)N * D;
        double fl_f = 2.0 * 5 * elems, fl_b = 2.0 * 15 * elems;
        double by_f = N * 7.0 * 2, by_b = N * 13.0 * 2;
        const bool sweep = !getenv("BENCH_CHUNK_ONLY");
        for (int lanes : {0, 4, 8, 16}) {
            if (!sweep && lanes) continue;
            A.lanes = lanes;
            auto fwd = [&](bool save) {
                A.work = save ? work : nullptr, A.work_bytes = save ? wb : 0;
                if (rwkv7_cuda_forward(&A, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
            };
            auto bwd = [&](int saved) {
                A.work = work, A.work_bytes = wb, A.saved = saved;
                if (rwkv7_cuda_backward(&A, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
            };
            float tf = median_ms([&] { fwd(false); });
            printf("graft B=%d T=%-6d fwd           lanes=%-2d %8.3f ms  floor_bw %.3f  floor_fp32 %.3f\n", sh.B,
                   sh.T, lanes, tf, by_f / bw * 1e3, fl_f / (peak * 1e12) * 1e3);
            if (sh.bwd) {
                float tfs = median_ms([&] { fwd(true); });
                fwd(true);
                float tbs = median_ms([&] { bwd(1); });
                float tbr = median_ms([&] { bwd(0); });
                float tfb = median_ms([&] { fwd(true); bwd(1); });
                printf("graft B=%d T=%-6d fwd+save      lanes=%-2d %8.3f ms\n", sh.B, sh.T, lanes, tfs);
                printf("graft B=%d T=%-6d bwd(saved)    lanes=%-2d %8.3f ms  floor_bw %.3f  floor_fp32 %.3f\n", sh.B,
                       sh.T, lanes, tbs, by_b / bw * 1e3, fl_b / (peak * 1e12) * 1e3);
                printf("graft B=%d T=%-6d bwd(recomp)   lanes=%-2d %8.3f ms\n", sh.B, sh.T, lanes, tbr);
                printf("graft B=%d T=%-6d fwd+bwd       lanes=%-2d %8.3f ms  floor_fp32 %.3f  (work %.0f MB)\n", sh.B,
                       sh.T, lanes, tfb, (fl_f + fl_b) / (peak * 1e12) * 1e3, wb / 1e6);
            }
            CK(cudaDeviceSynchronize());
        }
        {   /* the chunked forward (rwkv7_cuda_chunk.cu), GRAFT_RWKV7_CHUNK=1 */
            const double NCH = (double)sh.B * H * ((sh.T + 63) / 64);
            /* per (b, h, 64-token chunk): k_prep reads r, k, a, b, w (bf16), writes the images
             * (45,184 floats); k_scan reads the images once from DRAM (its 8 column slices share
             * them through L2), v, writes o. mma.m16n8k8 tf32 (2048 FLOP each, 3xTF32 counted 3x):
             * k_prep 80 A tiles x 16 k-steps x 3 + TA 20 x 8 x 3 + Wm 64 x 8 x 3 = 5,856; k_scan
             * 32 warps x (X 2 x (8x2 + 16x3) + O 2 x 32 + S 4 x (8x2 + 8x3)) = 11,264. */
            const double by_c = NCH * (5.0 * 64 * D * 2 + 2.0 * 45184 * 4 + 2.0 * 64 * D * 2);
            const double fl_c = NCH * (5856.0 + 11264.0) * 2048.0;
            const double tf32_peak = getenv("TF32_TFLOPS") ? atof(getenv("TF32_TFLOPS")) : 494.7;
            const size_t cw = rwkv7_cuda_chunk_work_bytes(&A);
            void *cwork;
            CK(cudaMalloc(&cwork, cw));
            rwkv7_cuda_chunk_enable(1);
            auto cfwd = [&](bool save, bool own) {
                A.work = save ? work : nullptr, A.work_bytes = save ? wb : 0;
                A.chunk_work = own ? nullptr : cwork, A.chunk_work_bytes = own ? 0 : cw;
                if (rwkv7_cuda_forward(&A, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
            };
            float tc = median_ms([&] { cfwd(false, false); });
            float tcs = median_ms([&] { cfwd(true, false); });
            float tcm = median_ms([&] { cfwd(false, true); });
            printf("graft B=%d T=%-6d fwd CHUNK               %8.3f ms  floor_bw %.3f  floor_tf32 %.3f  (images %.0f MB)\n",
                   sh.B, sh.T, tc, by_c / bw * 1e3, fl_c / (tf32_peak * 1e12) * 1e3, cw / 1e6);
            printf("graft B=%d T=%-6d fwd+save CHUNK          %8.3f ms\n", sh.B, sh.T, tcs);
            printf("graft B=%d T=%-6d fwd CHUNK cudaMallocAsync %6.3f ms\n", sh.B, sh.T, tcm);
            if (sh.bwd) {
                cfwd(true, false);
                A.work = work, A.work_bytes = wb, A.saved = 1;
                float tcb = median_ms([&] {
                    cfwd(true, false);
                    A.work = work, A.work_bytes = wb, A.saved = 1;
                    if (rwkv7_cuda_backward(&A, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
                });
                printf("graft B=%d T=%-6d fwd CHUNK+bwd(saved)    %8.3f ms\n", sh.B, sh.T, tcb);
            }
            rwkv7_cuda_chunk_enable(0);
            A.chunk_work = nullptr, A.chunk_work_bytes = 0, A.saved = 0;
            CK(cudaDeviceSynchronize());
            cudaFree(cwork);
        }
        for (auto p : t) cudaFree(p);
        cudaFree(work);
    }
    return 0;
}
