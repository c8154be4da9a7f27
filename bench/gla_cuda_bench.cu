/* bench/gla_cuda_bench.cu: times graft's CUDA GLA core (plugins/gla/gla_cuda.cu) with CUDA events
 * (median of 20 after 3 warm-ups) and prints each figure beside its floor: bytes / measured copy
 * bandwidth and FLOPs / bf16 peak (PEAK_TFLOPS, default 780). bench/gla_fla_bench.py times FLA's
 * chunk_gla on the same shapes in the same device call; bench/results/ holds the comparisons.
 * Usage: gla_cuda_bench [cps]   (cps: chunks per segment, 0 = the default heuristic)
 * Output: one line per (shape, pass, gate dtype): "graft <name> <ms> floor_bw <ms> floor_fl <ms>".
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "../plugins/gla/gla_cuda.cuh"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));           \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

__global__ void fill(__nv_bfloat16 *x, size_t n, unsigned seed, float mul, float add, int lsig) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        float u = (h & 0xFFFFFF) / 16777216.0f * 2.f - 1.f;
        float z = u * 1.7f;
        float y = lsig ? (fminf(z, 0.f) - log1pf(expf(-fabsf(z)))) / 16.f : z * mul + add;
        x[i] = __float2bfloat16_rn(y);
    }
}
__global__ void fillf(float *x, size_t n, unsigned seed) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        float z = ((h & 0xFFFFFF) / 16777216.0f * 2.f - 1.f) * 1.7f;
        x[i] = (fminf(z, 0.f) - log1pf(expf(-fabsf(z)))) / 16.f;
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

int main(int argc, char **argv) {
    int cps = argc > 1 ? atoi(argv[1]) : 0;
    double peak = getenv("PEAK_TFLOPS") ? atof(getenv("PEAK_TFLOPS")) : 780.0;
    /* copy bandwidth (bytes read + written) */
    size_t cb = (size_t)1 << 30;
    void *x, *y;
    CK(cudaMalloc(&x, cb)); CK(cudaMalloc(&y, cb));
    CK(cudaMemset(x, 1, cb));
    float cms = median_ms([&] { CK(cudaMemcpyAsync(y, x, cb, cudaMemcpyDeviceToDevice)); });
    double bw = 2.0 * cb / (cms * 1e-3);
    printf("copy bandwidth %.2f TB/s (1 GiB D2D, read+write); bf16 peak used %.0f TFLOP/s\n",
           bw / 1e12, peak);
    CK(cudaFree(x)); CK(cudaFree(y));

    struct Shape { int B, T; bool bwd; } shapes[] = {{4, 2048, true}, {1, 8192, false}, {1, 32768, false}};
    const int H = 16, D = 128;
    for (auto sh : shapes) {
        for (int gb = 0; gb < 2; gb++) {
            size_t N = (size_t)sh.B * sh.T * H * D;
            __nv_bfloat16 *q, *k, *v, *o, *dout, *dq, *dk, *dv;
            void *g, *dg;
            size_t gsz = gb ? 2 : 4;
            CK(cudaMalloc(&q, N * 2)); CK(cudaMalloc(&k, N * 2)); CK(cudaMalloc(&v, N * 2));
            CK(cudaMalloc(&o, N * 2)); CK(cudaMalloc(&dout, N * 2)); CK(cudaMalloc(&dq, N * 2));
            CK(cudaMalloc(&dk, N * 2)); CK(cudaMalloc(&dv, N * 2));
            CK(cudaMalloc(&g, N * gsz)); CK(cudaMalloc(&dg, N * gsz));
            fill<<<1024, 256>>>(q, N, 1, 1.f, 0.f, 0);
            fill<<<1024, 256>>>(k, N, 2, 1.f, 0.f, 0);
            fill<<<1024, 256>>>(v, N, 3, 1.f, 0.f, 0);
            fill<<<1024, 256>>>(dout, N, 4, 1.f, 0.f, 0);
            if (gb) fill<<<1024, 256>>>((__nv_bfloat16 *)g, N, 5, 0.f, 0.f, 1);
            else fillf<<<1024, 256>>>((float *)g, N, 5);
            CK(cudaGetLastError());
            gla_cuda_args a = gla_cuda_default_args();
            a.B = sh.B, a.T = sh.T, a.H = H, a.gk_bf16 = gb, a.chunks_per_seg = cps;
            a.q = q, a.k = k, a.v = v, a.gk = g, a.o = o, a.dout = dout;
            a.dq = dq, a.dk = dk, a.dv = dv, a.dgk = dg;
            size_t wb = gla_cuda_work_bytes(&a, sh.bwd);
            void *work = nullptr;
            if (wb) CK(cudaMalloc(&work, wb));
            a.work = work, a.work_bytes = wb;
            graft_err err;
            auto fwd = [&] {
                if (gla_cuda_forward(&a, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
            };
            auto bwd = [&] {
                if (gla_cuda_backward(&a, nullptr, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
            };
            double chunks = (double)sh.B * H * ((sh.T + 63) / 64);
            double fl_f = chunks * (4.0 * 64 * D * D + 2.0 * 64 * 64 * D);       /* qS, kᵀv, A (half), Av (half) */
            double fl_b = chunks * (10.0 * 64 * D * D + 6.0 * 64 * 64 * D);      /* states, dq, dk, dv, dS, dP/A */
            double by_f = N * (4.0 * 2 + gsz);
            double by_b = N * (7.0 * 2 + 2.0 * gsz);
            if (getenv("GLA_ONCE")) { /* one forward + backward, for a profiler */
                fwd();
                bwd();
                CK(cudaDeviceSynchronize());
                return 0;
            }
            float tf = median_ms(fwd);
            char nm[64];
            snprintf(nm, sizeof nm, "B=%d T=%d gk=%s fwd", sh.B, sh.T, gb ? "bf16" : "fp32");
            printf("graft %-28s %8.3f ms  floor_bw %.3f ms  floor_fl %.3f ms  (cps=%d, work %.1f MB)\n", nm, tf,
                   by_f / bw * 1e3, fl_f / (peak * 1e12) * 1e3, cps, wb / 1e6);
            if (sh.bwd) {
                float tb = median_ms(bwd);
                float tfb = median_ms([&] { fwd(); bwd(); });
                snprintf(nm, sizeof nm, "B=%d T=%d gk=%s bwd", sh.B, sh.T, gb ? "bf16" : "fp32");
                printf("graft %-28s %8.3f ms  floor_bw %.3f ms  floor_fl %.3f ms\n", nm, tb,
                       by_b / bw * 1e3, fl_b / (peak * 1e12) * 1e3);
                snprintf(nm, sizeof nm, "B=%d T=%d gk=%s fwd+bwd", sh.B, sh.T, gb ? "bf16" : "fp32");
                printf("graft %-28s %8.3f ms  floor_bw %.3f ms  floor_fl %.3f ms\n", nm, tfb,
                       (by_f + by_b) / bw * 1e3, (fl_f + fl_b) / (peak * 1e12) * 1e3);
            }
            CK(cudaDeviceSynchronize());
            cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o), cudaFree(dout), cudaFree(dq);
            cudaFree(dk), cudaFree(dv), cudaFree(g), cudaFree(dg);
            if (work) cudaFree(work);
        }
    }
    return 0;
}
