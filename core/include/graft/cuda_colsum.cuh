/* graft/cuda_colsum.cuh: the fixed-order column sum behind every CUDA parameter gradient reduced
 * over rows: the core's norms (cuda/rmsnorm.cu, cuda/qk_norm_rope.cu) and the plugins' layers
 * (softmax's q/k norms, GLA, RWKV-7). Header-only CUDA C++: each library gets its own static copy,
 * so a plugin links nothing of the core and the plugin ABI is untouched (STYLE.md).
 *
 * Why: a per-channel gradient summed over tokens by many blocks or warps with float atomicAdd
 * adds its partials in whatever order they arrive, so two runs of the same step differ in the last
 * bits and a resumed training run drifts from the uninterrupted one (tests/e2e/test_stage0_cuda.py).
 * Instead each block / warp writes its partial sums to a partials buffer (fp32, rows = the block or
 * warp, cols = the gradient's elements, in the plugin's scratch), and colsum_kernel adds each
 * column in an order fixed by the shape alone:
 *   the rows in COLSUM_SLICES contiguous slices, each summed in increasing row order,
 *   then the slice sums in slice order, by one thread per column, and that total added once onto
 *   the gradient (dst += total: parameter gradients accumulate).
 * Same inputs, same bits, whatever the timing. One launch serves a whole group of gradients (one
 * segment each, blockIdx.y), so a layer backward pays one launch, not one per gradient.
 *
 * Not here: the kernels that write the partials (each plugin's own), the scratch layout.
 */
#ifndef GRAFT_CUDA_COLSUM_CUH
#define GRAFT_CUDA_COLSUM_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#define COLSUM_SLICES 32 /* threadIdx.y: row slices per column */
#define COLSUM_MAX_SEGS 16

/* One gradient: dst (cols) += the column sums of part (rows, cols), row-major. */
struct colsum_seg {
    float *dst;
    const float *part;
    int64_t rows, cols;
};
struct colsum_args {
    colsum_seg seg[COLSUM_MAX_SEGS];
    int n, full; /* full: a segment did not fit (colsum_launch refuses) */
};

/* Grid (column blocks of 32, segments), block (32, COLSUM_SLICES); coalesced: a warp reads 32
 * adjacent columns of one row. */
static __global__ void __launch_bounds__(32 * COLSUM_SLICES) colsum_kernel(const __grid_constant__ colsum_args a) {
    __shared__ float sh[COLSUM_SLICES][33];
    const colsum_seg &g = a.seg[blockIdx.y];
    if ((int64_t)blockIdx.x * 32 >= g.cols) return; /* the whole block: a narrower segment */
    const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t per = (g.rows + COLSUM_SLICES - 1) / COLSUM_SLICES, r0 = threadIdx.y * per;
    const int64_t r1 = r0 + per < g.rows ? r0 + per : g.rows;
    float acc = 0.0f;
    if (j < g.cols) {
#pragma unroll 4 /* loads in flight; the adds keep their order (no fast-math reassociation) */
        for (int64_t r = r0; r < r1; r++) acc += g.part[r * g.cols + j];
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < g.cols) {
        float t = 0.0f;
        for (int k = 0; k < COLSUM_SLICES; k++) t += sh[k][threadIdx.x];
        g.dst[j] += t;
    }
}

/* Appends a segment to a (zero-initialized by the caller). dst NULL (no gradient wanted) or an
 * empty part: skipped. */
static inline void colsum_add(colsum_args *a, float *dst, const float *part, int64_t rows, int64_t cols) {
    if (!dst || rows < 1 || cols < 1) return;
    if (a->n >= COLSUM_MAX_SEGS) {
        a->full = 1;
        return;
    }
    a->seg[a->n].dst = dst;
    a->seg[a->n].part = part;
    a->seg[a->n].rows = rows;
    a->seg[a->n].cols = cols;
    a->n++;
}

/* Launches the reduction of every segment of a on stream s (none: no launch). Returns -1 without
 * launching when a segment did not fit (a bug of the caller's grouping), else 0; the caller then
 * checks the launch (cudaGetLastError) as after any of its kernels. */
static inline int colsum_launch(const colsum_args *a, cudaStream_t s) {
    if (a->full) return -1;
    int64_t cols = 0;
    for (int i = 0; i < a->n; i++)
        if (a->seg[i].cols > cols) cols = a->seg[i].cols;
    if (a->n)
        colsum_kernel<<<dim3((unsigned)((cols + 31) / 32), (unsigned)a->n), dim3(32, COLSUM_SLICES), 0, s>>>(*a);
    return 0;
}

/* dst (cols) += the column sums of part (rows, cols): one segment, launched on s */
static inline void colsum_one(float *dst, const float *part, int64_t rows, int64_t cols, cudaStream_t s) {
    colsum_args a;
    memset(&a, 0, sizeof a);
    colsum_add(&a, dst, part, rows, cols);
    colsum_launch(&a, s);
}

#endif
