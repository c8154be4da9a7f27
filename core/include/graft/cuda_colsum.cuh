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
 *   the rows in groups of at most COLSUM_GROUP_ROWS (G = ceil(rows / COLSUM_GROUP_ROWS) groups of
 *   ceil(rows / G) rows), each group in COLSUM_SLICES contiguous slices summed in increasing row
 *   order, then the slice sums in slice order; with G > 1 a second launch (colsum_groups_kernel)
 *   adds the G group sums in group order. The total is added once onto the gradient (dst +=
 *   total: parameter gradients accumulate).
 * Same inputs, same bits, whatever the timing. Why groups: a tall, narrow partials matrix (the
 * softmax layer's q/k-norm rows, N x heads rows of 128 columns) gave one block per 32 columns, 8
 * blocks for 100 MB at 8192 tokens (153 us, 4% of a training step, bench/results/
 * colsum-2026-11-24.md); G row groups make G times as many blocks. The group sums are written over
 * the first row of their group: the partials are scratch, consumed by the reduction.
 * One launch serves a whole group of gradients (one segment each, blockIdx.y), so a layer backward
 * pays one (or two) launches, not one per gradient.
 *
 * Not here: the kernels that write the partials (each plugin's own), the scratch layout.
 */
#ifndef GRAFT_CUDA_COLSUM_CUH
#define GRAFT_CUDA_COLSUM_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#define COLSUM_SLICES 32        /* threadIdx.y: row slices per column (of a group)          */
#define COLSUM_GROUP_ROWS 1024  /* rows of a group at most (blockIdx.z: the group)            */
#define COLSUM_MAX_SEGS 16

/* One gradient: dst (cols) += the column sums of part (rows, cols), row-major; part is scratch
 * (its group rows are overwritten). */
struct colsum_seg {
    float *dst;
    float *part;
    int64_t rows, cols;
};

/* The groups of a segment of `rows` rows: their count, and the rows of each (the last may be short) */
static __host__ __device__ inline int64_t colsum_groups(int64_t rows) {
    return rows > COLSUM_GROUP_ROWS ? (rows + COLSUM_GROUP_ROWS - 1) / COLSUM_GROUP_ROWS : 1;
}
static __host__ __device__ inline int64_t colsum_group_rows(int64_t rows) {
    const int64_t G = colsum_groups(rows);
    return (rows + G - 1) / G;
}
struct colsum_args {
    colsum_seg seg[COLSUM_MAX_SEGS];
    int n, full; /* full: a segment did not fit (colsum_launch refuses) */
};

/* Grid (column blocks of 32, segments, groups), block (32, COLSUM_SLICES); coalesced: a warp reads
 * 32 adjacent columns of one row. One group: the total goes onto dst; several: the group's sum
 * goes over the group's first row, for colsum_groups_kernel. */
static __global__ void __launch_bounds__(32 * COLSUM_SLICES) colsum_kernel(const __grid_constant__ colsum_args a) {
    __shared__ float sh[COLSUM_SLICES][33];
    const colsum_seg &g = a.seg[blockIdx.y];
    const int64_t G = colsum_groups(g.rows), grows = colsum_group_rows(g.rows);
    /* the whole block: a narrower segment, or one with fewer groups */
    if ((int64_t)blockIdx.x * 32 >= g.cols || (int64_t)blockIdx.z >= G) return;
    const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t g0 = (int64_t)blockIdx.z * grows, g1 = g0 + grows < g.rows ? g0 + grows : g.rows;
    const int64_t per = (g1 - g0 + COLSUM_SLICES - 1) / COLSUM_SLICES, r0 = g0 + threadIdx.y * per;
    const int64_t r1 = r0 + per < g1 ? r0 + per : g1;
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
        if (G == 1) g.dst[j] += t;
        else g.part[g0 * g.cols + j] = t; /* row g0 was read above, by this block only */
    }
}

/* The group sums of the segments with G > 1, in group order, onto dst. Grid (column blocks of
 * 256, segments). */
static __global__ void __launch_bounds__(256) colsum_groups_kernel(const __grid_constant__ colsum_args a) {
    const colsum_seg &g = a.seg[blockIdx.y];
    const int64_t G = colsum_groups(g.rows), grows = colsum_group_rows(g.rows);
    const int64_t j = (int64_t)blockIdx.x * 256 + threadIdx.x;
    if (G == 1 || j >= g.cols) return;
    float t = 0.0f;
    for (int64_t k = 0; k < G; k++) t += g.part[k * grows * g.cols + j];
    g.dst[j] += t;
}

/* Appends a segment to a (zero-initialized by the caller). dst NULL (no gradient wanted) or an
 * empty part: skipped. */
static inline void colsum_add(colsum_args *a, float *dst, float *part, int64_t rows, int64_t cols) {
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
    int64_t cols = 0, G = 1;
    for (int i = 0; i < a->n; i++) {
        if (a->seg[i].cols > cols) cols = a->seg[i].cols;
        if (colsum_groups(a->seg[i].rows) > G) G = colsum_groups(a->seg[i].rows);
    }
    if (!a->n) return 0;
    colsum_kernel<<<dim3((unsigned)((cols + 31) / 32), (unsigned)a->n, (unsigned)G), dim3(32, COLSUM_SLICES), 0, s>>>(
        *a);
    if (G > 1) colsum_groups_kernel<<<dim3((unsigned)((cols + 255) / 256), (unsigned)a->n), 256, 0, s>>>(*a);
    return 0;
}

/* dst (cols) += the column sums of part (rows, cols): one segment, launched on s */
static inline void colsum_one(float *dst, float *part, int64_t rows, int64_t cols, cudaStream_t s) {
    colsum_args a;
    memset(&a, 0, sizeof a);
    colsum_add(&a, dst, part, rows, cols);
    colsum_launch(&a, s);
}

#endif
