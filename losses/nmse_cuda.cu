/* losses/nmse_cuda.cu: the normalized MSE of Stage 0 on CUDA (nmse_cuda.h has the contract).
 *
 * Three launches on io->stream: row_sums (one block per row at a time, a fixed grid of NMSE_GRID
 * blocks striding over the rows, each writing its (num, den) partial in double), total (one block
 * sums the NMSE_GRID partials in order into totals[2]), grad (dstudent from s - t and, with
 * normalize, 1 / totals[1] read on the device: no host round trip before the gradient). Then one
 * copy of totals to the host and a stream sync. Traffic: s, t, x read once for the sums, s, t once
 * more and dstudent written for the gradient; a Stage 0 student's layer costs thousands of times
 * more, so nothing here is tuned beyond coalesced rows.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "nmse_cuda.h"

#define NMSE_GRID 264     /* blocks of partial sums: fixed, so the summation order is the same on any GPU */
#define NMSE_THREADS 256

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(float *p, int64_t i, float v, int acc) { p[i] = acc ? p[i] + v : v; }
__device__ __forceinline__ void st(bf16 *p, int64_t i, float v, int acc) {
    p[i] = __float2bfloat16(acc ? __bfloat162float(p[i]) + v : v);
}

/* Block-wide sum of one double per thread (NMSE_THREADS), result valid in thread 0. */
__device__ double block_sum(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double s = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < NMSE_THREADS / 32; w++) s += sh[w];
    return s;
}

template <typename T>
__global__ void row_sums(double *partial, const T *s, const T *t, const T *x, int64_t N, int64_t W) {
    __shared__ double sh[NMSE_THREADS / 32];
    double num = 0.0, den = 0.0;
    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        float fn = 0.0f, fd = 0.0f;
        for (int64_t i = threadIdx.x; i < W; i += blockDim.x) {
            float tv = ld(t, r * W + i), e = ld(s, r * W + i) - tv, d = ld(x, r * W + i) - tv;
            fn += e * e;
            fd += d * d;
        }
        num += (double)fn;
        den += (double)fd;
    }
    double bn = block_sum(num, sh), bd = block_sum(den, sh);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = bn;
        partial[2 * blockIdx.x + 1] = bd;
    }
}

__global__ void total(double *totals, const double *partial, int n) {
    if (threadIdx.x != 0) return;
    double a = 0.0, b = 0.0;
    for (int i = 0; i < n; i++) {
        a += partial[2 * i];
        b += partial[2 * i + 1];
    }
    totals[0] = a;
    totals[1] = b;
}

template <typename T>
__global__ void grad(T *ds, const T *s, const T *t, const double *totals, int64_t n, float g2, int normalize,
                     int acc) {
    float scale = 1.0f;
    if (normalize) scale = totals[1] > 0.0 ? (float)(1.0 / totals[1]) : 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = g2 * (ld(s, i) - ld(t, i));
        st(ds, i, normalize ? g * scale : g, acc);
    }
}

template <typename T>
static void launch(const graft_loss_io *io, double *buf, int normalize, int acc, cudaStream_t stream) {
    row_sums<T><<<NMSE_GRID, NMSE_THREADS, 0, stream>>>(buf, (const T *)io->student, (const T *)io->target,
                                                        (const T *)io->input, io->N, io->W);
    total<<<1, 32, 0, stream>>>(buf + 2 * NMSE_GRID, buf, NMSE_GRID);
    if (io->dstudent)
        grad<T><<<1024, 256, 0, stream>>>((T *)io->dstudent, (const T *)io->student, (const T *)io->target,
                                          buf + 2 * NMSE_GRID, io->N * io->W, 2.0f * io->grad_scale, normalize, acc);
}

extern "C" graft_status nmse_cuda_compute(const graft_loss_io *io, int bf16_rows, int accumulate, int normalize,
                                          void **dev, graft_err *err) {
    cudaStream_t stream = (cudaStream_t)io->stream;
    cudaError_t e = cudaSuccess;
    if (!*dev && (e = cudaMalloc(dev, (2 * NMSE_GRID + 2) * sizeof(double))) != cudaSuccess) {
        *dev = NULL;
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "loss nmse: cudaMalloc of the partial sums: %s",
                             cudaGetErrorString(e));
    }
    double *buf = (double *)*dev, totals[2];
    if (bf16_rows) launch<bf16>(io, buf, normalize, accumulate, stream);
    else launch<float>(io, buf, normalize, accumulate, stream);
    if ((e = cudaGetLastError()) != cudaSuccess ||
        (e = cudaMemcpyAsync(totals, buf + 2 * NMSE_GRID, sizeof totals, cudaMemcpyDeviceToHost, stream)) != cudaSuccess ||
        (e = cudaStreamSynchronize(stream)) != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "loss nmse: CUDA (N=%lld W=%lld): %s", (long long)io->N,
                             (long long)io->W, cudaGetErrorString(e));
    *io->loss_sum = totals[0];
    *io->count = totals[1];
    return GRAFT_STATUS_OK;
}

extern "C" void nmse_cuda_free(void *dev) {
    if (dev) cudaFree(dev);
}
