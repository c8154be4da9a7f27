/* cuda/argmax.cu: the first index of each row's largest value (argmax.cuh states the contract).
 * One block of 1024 threads per row: each thread scans a strided slice keeping (value, index) with
 * the smaller index on ties, then warp shuffles and one shared-memory round combine the threads'
 * bests under the same order. A row of V = 151,936 fp32 is 600 KB: at ~3 TB/s a few microseconds. */
#include <math.h>

#include "argmax.cuh"
#include "cuda_util.cuh"

#define AM_THREADS 1024

/* (v, i) beats (w, j): larger value, or equal value and smaller index; NaN (v != v) never beats. */
static __device__ __forceinline__ bool beats(float v, int64_t i, float w, int64_t j) {
    return v > w || (v == w && i < j) || (w != w && v == v);
}

static __global__ void __launch_bounds__(AM_THREADS) argmax_rows_kernel(int32_t *ids, const float *x, int64_t V) {
    const float *row = x + (int64_t)blockIdx.x * V;
    float best = NAN;
    int64_t at = V; /* no candidate yet */
    for (int64_t v = threadIdx.x; v < V; v += AM_THREADS) {
        float z = row[v];
        if (at == V || beats(z, v, best, at)) best = z, at = v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oa = __shfl_xor_sync(0xffffffffu, at, o);
        if (oa != V && (at == V || beats(ob, oa, best, at))) best = ob, at = oa;
    }
    __shared__ float sb[AM_THREADS / 32];
    __shared__ int64_t sa[AM_THREADS / 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sb[warp] = best, sa[warp] = at;
    __syncthreads();
    if (warp) return;
    best = lane < AM_THREADS / 32 ? sb[lane] : NAN;
    at = lane < AM_THREADS / 32 ? sa[lane] : V;
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oa = __shfl_xor_sync(0xffffffffu, at, o);
        if (oa != V && (at == V || beats(ob, oa, best, at))) best = ob, at = oa;
    }
    if (lane == 0) ids[blockIdx.x] = row[0] != row[0] || best != best ? 0 : (int32_t)at;
}

extern "C" graft_status graft_cuda_argmax_rows(int32_t *ids, const float *x, int64_t rows, int64_t V, void *stream,
                                               graft_err *err) {
    if (rows < 1 || rows > 65535 || V < 1 || V > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "argmax_rows: rows %lld, V %lld: expected 1..65535, 1..2^31-1",
                             (long long)rows, (long long)V);
    argmax_rows_kernel<<<(unsigned)rows, AM_THREADS, 0, graft_stream(stream)>>>(ids, x, V);
    GRAFT_CUDA_LAUNCHED("argmax_rows");
    return GRAFT_STATUS_OK;
}
