/* cuda/skinny.cu: C (m x n) = alpha * A (m x k) . W^T for m <= 8 rows and a bf16 weight W (n x k,
 * row-major): the product of a decode step (one token per sequence) against every weight matrix.
 *
 * Why not cuBLASLt: at m = 1 the product is a stream of W through the SMs (2 bytes per 2 FLOPs), so
 * its speed is the memory bandwidth; cuBLASLt's heuristics pick GEMM tiles for it that reach about
 * 60% of the copy bandwidth on an H100 (bench/results/cudamodel-2026-11-23.md), and decode is ~90% such
 * products. Here one warp owns RPW consecutive rows of W, each lane streams 16-byte chunks of them
 * with four or eight chunks per row in flight before the first use, the m rows of A (a few KiB)
 * come from L1/L2, every product accumulates in fp32, and a warp shuffle sums the lanes. Rows of
 * W are read exactly once whatever m is, so m = 8 costs about what m = 1 does.
 *
 * Called by graft_cuda_matmul (matmul.cu) when the arguments fit (graft_cuda_skinny_fits);
 * GRAFT_CUDA_SKINNY=0 sends everything to cuBLASLt (for comparisons).
 *
 * Not here: a persistent variant whose warps walk several units with the next batch of weights in
 * flight (commit e6b5063). Same bits, but 5% slower at batch-1 decode on an H100
 * (bench/results/decode-skinny-stream-2026-12-07.md).
 */
#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.cuh"
#include "skinny.cuh"
#include "graft/cuda_skinny.cuh"

typedef __nv_bfloat16 bf16;

#define SK_THREADS 256
/* chunks per lane and row in flight: graft/cuda_skinny.cuh. ncu on an H100 (2026-11-24) timed the
 * decode products at 4: 1.1-1.7 TB/s for the 2048-wide ones, round trips in series; 8 where the
 * registers allow made a 2048-wide row one round trip. */
#define SK_UNROLL GRAFT_SKINNY_UNROLL(R, RPW)

static __device__ __forceinline__ void store(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store(bf16 *p, float v) { *p = __float2bfloat16(v); }

/* What a warp does with its finished dot products (lane 0, per row r < m):
 *   EPI_STORE:  c[r, j] = alpha * acc                       (RPW output rows j per warp)
 *   EPI_RESID:  c[r, j] = resid[r, j] + alpha * acc         (one rounding; resid may be c itself:
 *               a product with beta = 1, and the block's residual add fused into the down product)
 *   EPI_SWIGLU: RPW = 2 weight rows, row j of w (gate) and row j of w2 (up), one output row j:
 *               c[r, j] = silu(g) * u with g, u the bf16-rounded products
 * Each rounds exactly where the unfused ops (a product stored in bf16 then swiglu_fwd; the down
 * product with beta = 1 onto the residual) round, so a fused decode step is bit-identical to the
 * unfused one. */
enum { EPI_STORE, EPI_RESID, EPI_SWIGLU };

static __device__ __forceinline__ float sigm(float z) { return 1.0f / (1.0f + expf(-z)); } /* as swiglu.cu */
static __device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

/* A warp's finished unit: the lanes' partial sums reduced by shuffles (every lane ends with the
 * sum), then lane 0 applies the epilogue to output row(s) n0 (EPI_SWIGLU: row n0 of c from the
 * gate row and the up row; else rows n0 .. n0 + RPW - 1). */
template <int R, int RPW, typename TC, int EPI>
static __device__ __forceinline__ void sk_finish(float (&acc)[RPW][R], int lane, int64_t n0, TC *c, int64_t ldc, int m,
                                                 int64_t n, float alpha, const bf16 *resid, int64_t ldr) {
    graft_skinny_reduce<R, RPW>(acc);
    if (lane != 0) return;
    if constexpr (EPI == EPI_SWIGLU) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            float g = round_bf16(alpha * acc[0][r]), u = round_bf16(alpha * acc[1][r]);
            if (r < m) store(c + (int64_t)r * ldc + n0, g * sigm(g) * u);
        }
    } else {
#pragma unroll
        for (int j = 0; j < RPW; j++)
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (n0 + j >= n || r >= m) continue;
                if (EPI == EPI_RESID)
                    store(c + (int64_t)r * ldc + n0 + j,
                          __bfloat162float(resid[(int64_t)r * ldr + n0 + j]) + alpha * acc[j][r]);
                else store(c + (int64_t)r * ldc + n0 + j, alpha * acc[j][r]);
            }
    }
}

/* grid: ceil(n / (rows per warp * warps per block)); R >= m rows of A are computed (rows >= m
 * repeat row m - 1 and are not written). kc = k / 8 chunks of 16 bytes per row. */
template <int R, int RPW, typename TC, int EPI>
__global__ void __launch_bounds__(SK_THREADS) skinny_kernel(TC *c, int64_t ldc, const bf16 *__restrict__ a,
                                                            int64_t lda, const bf16 *__restrict__ w,
                                                            const bf16 *__restrict__ w2, int64_t ldw, int m, int64_t n,
                                                            int64_t kc, float alpha, const bf16 *resid,
                                                            int64_t ldr) {
    const int lane = threadIdx.x & 31;
    const int64_t warp = (int64_t)blockIdx.x * (SK_THREADS / 32) + (threadIdx.x >> 5);
    const int64_t n0 = EPI == EPI_SWIGLU ? warp : warp * RPW;
    if (n0 >= n) return;
    const uint4 *wr[RPW];
#pragma unroll
    for (int j = 0; j < RPW; j++)
        wr[j] = EPI == EPI_SWIGLU ? reinterpret_cast<const uint4 *>((j ? w2 : w) + n0 * ldw)
                                  : reinterpret_cast<const uint4 *>(w + min(n0 + j, n - 1) * ldw);
    const uint4 *ar[R];
#pragma unroll
    for (int r = 0; r < R; r++) ar[r] = reinterpret_cast<const uint4 *>(a + (int64_t)min(r, m - 1) * lda);
    float acc[RPW][R];
#pragma unroll
    for (int j = 0; j < RPW; j++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[j][r] = 0.f;
    graft_pdl_trigger();
    /* Before waiting for the kernel this one may overlap (PDL, graft/cuda_pdl.cuh): the first
     * chunks of this warp's weight rows into L2. */
    graft_skinny_prefetch<RPW, SK_UNROLL>(wr, lane, kc);
    graft_pdl_wait();
    graft_skinny_dot<R, RPW, SK_UNROLL>(acc, wr, ar, lane, kc);
    sk_finish<R, RPW, TC, EPI>(acc, lane, n0, c, ldc, m, n, alpha, resid, ldr);
}

static int skinny_state = -1; /* decided once per process (GRAFT_CUDA_SKINNY), or by enable() */

static int skinny_enabled(void) {
    if (skinny_state < 0) {
        const char *e = getenv("GRAFT_CUDA_SKINNY");
        skinny_state = !(e && !strcmp(e, "0"));
    }
    return skinny_state;
}

extern "C" void graft_cuda_skinny_enable(int on) {
    skinny_enabled();
    skinny_state = on != 0;
}

extern "C" int graft_cuda_skinny_fits(const graft_matmul_args *a, graft_dtype c_dtype) {
    graft_dtype da, db, dc;
    graft_matmul_dtypes(a, &da, &db, &dc);
    return skinny_enabled() && da == GRAFT_DTYPE_BF16 && db == GRAFT_DTYPE_BF16 &&
           (c_dtype == GRAFT_DTYPE_BF16 || c_dtype == GRAFT_DTYPE_F32) && !a->trans_a && a->trans_b &&
           a->batch == 1 && (a->beta == 0.0f || (a->beta == 1.0f && c_dtype == GRAFT_DTYPE_BF16)) && a->m >= 1 &&
           a->m <= 8 && a->k >= 8 && a->k % 8 == 0 &&
           a->lda % 8 == 0 && a->ldb % 8 == 0 && ((uintptr_t)a->a & 15u) == 0 && ((uintptr_t)a->b & 15u) == 0;
}

/* One product's launch: the weight rows (w, and w2 for EPI_SWIGLU), the epilogue's residual. */
typedef struct sk_call {
    void *c;
    int64_t ldc;
    const bf16 *a, *w, *w2, *resid;
    int64_t lda, ldw, ldr, n, k;
    int m;
    float alpha;
} sk_call;

/* Launched with programmatic stream serialization (PDL) where the device has it: the blocks may
 * become resident while the kernel before them finishes (it triggers early: rmsnorm.cu, this
 * kernel), prefetch their weights and wait in graft_pdl_wait (graft/cuda_pdl.cuh). Decode is a chain of ~250 small kernels
 * per token, so the launch gap each one hides adds up. */
template <int R, int RPW, typename TC, int EPI>
static cudaError_t launch_rpw(const sk_call *k, cudaStream_t s) {
    const unsigned rows_per_block = (EPI == EPI_SWIGLU ? 1 : RPW) * SK_THREADS / 32;
    const unsigned g = (unsigned)((k->n + rows_per_block - 1) / rows_per_block);
    return graft_launch_pdl(skinny_kernel<R, RPW, TC, EPI>, dim3(g), dim3(SK_THREADS), 0, s, (TC *)k->c, k->ldc, k->a,
                            k->lda, k->w, k->w2, k->ldw, k->m, k->n, k->k / 8, k->alpha, k->resid, k->ldr);
}

/* enough warps to keep every SM's loads in flight: one row per warp up to 16K rows, then 2, 4
 * (EPI_SWIGLU: always the gate row and the up row) */
template <int R, typename TC, int EPI>
static cudaError_t launch_r(const sk_call *k, cudaStream_t s) {
    if constexpr (EPI == EPI_SWIGLU) return launch_rpw<R, 2, TC, EPI>(k, s);
    else if (k->n <= 16384) return launch_rpw<R, 1, TC, EPI>(k, s);
    else if (k->n <= 65536) return launch_rpw<R, 2, TC, EPI>(k, s);
    else return launch_rpw<R, 4, TC, EPI>(k, s);
}

template <typename TC, int EPI>
static cudaError_t launch(const sk_call *k, cudaStream_t s) {
    if (k->m == 1) return launch_r<1, TC, EPI>(k, s);
    if (k->m == 2) return launch_r<2, TC, EPI>(k, s);
    if (k->m <= 4) return launch_r<4, TC, EPI>(k, s);
    return launch_r<8, TC, EPI>(k, s);
}

extern "C" graft_status graft_cuda_skinny_matmul(const graft_matmul_args *a, graft_dtype c_dtype, graft_err *err) {
    cudaStream_t s = graft_stream(a->stream);
    const int acc = a->beta == 1.0f; /* c += alpha A B^T (bf16 c only, graft_cuda_skinny_fits) */
    sk_call k = {a->c, a->ldc, (const bf16 *)a->a, (const bf16 *)a->b, NULL, acc ? (const bf16 *)a->c : NULL,
                 a->lda, a->ldb, acc ? a->ldc : 0, a->n, a->k, (int)a->m, a->alpha};
    cudaError_t e = c_dtype == GRAFT_DTYPE_F32 ? launch<float, EPI_STORE>(&k, s)
                    : acc                      ? launch<bf16, EPI_RESID>(&k, s)
                                               : launch<bf16, EPI_STORE>(&k, s);
    GRAFT_CUDA_TRY_NAMED(e, "matmul skinny (m <= 8)");
    return GRAFT_STATUS_OK;
}


extern "C" graft_status graft_cuda_mlp_small(void *out, void *act, const void *hmid, const void *m, const void *gate,
                                             const void *up, const void *down, int64_t N, int64_t C, int64_t I,
                                             void *stream, graft_err *err) {
    if (!skinny_enabled() || N < 1 || N > 8 || C % 8 || I % 8 || !aligned16(m) || !aligned16(act) ||
        !aligned16(gate) || !aligned16(up) || !aligned16(down))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "mlp_small: N=%lld C=%lld I=%lld: not served",
                             (long long)N, (long long)C, (long long)I);
    cudaStream_t s = graft_stream(stream);
    sk_call in = {act, I, (const bf16 *)m, (const bf16 *)gate, (const bf16 *)up, NULL, C, C, 0, I, C, (int)N, 1.0f};
    cudaError_t e = launch<bf16, EPI_SWIGLU>(&in, s);
    GRAFT_CUDA_TRY_NAMED(e, "mlp_small: gate/up + swiglu");
    sk_call o = {out, C, (const bf16 *)act, (const bf16 *)down, NULL, (const bf16 *)hmid, I, I, C, C, I, (int)N, 1.0f};
    e = launch<bf16, EPI_RESID>(&o, s);
    GRAFT_CUDA_TRY_NAMED(e, "mlp_small: down + residual");
    return GRAFT_STATUS_OK;
}
