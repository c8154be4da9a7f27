/* cuda/matmul.cuh: matrix products on the GPU through cuBLASLt, with graft_matmul_args' row-major
 * semantics (graft/plugin.h): C[m, n] = alpha * op(A) op(B) + beta * C, trans flags, batch and
 * element strides, beta == 0 never reads C. Storage: A and B are BF16 (or both F32); C is BF16 or
 * F32; accumulation is always fp32 (CUBLAS_COMPUTE_32F: an F32 product is a true fp32 SGEMM, no
 * TF32).
 *
 * A graft_cuda_blas_t holds the cuBLASLt handle, one workspace (32 MiB by default) and a cache of
 * plans (operation and layout descriptors plus the heuristic's first algorithm) keyed by the whole
 * problem: dtypes, trans flags, sizes, leading dimensions, batch, strides and the 16..256-byte
 * alignment of each pointer. A repeated shape costs no heuristic query.
 *
 * Thread safety: a blas object is used by one host thread and one stream at a time (the workspace
 * and the cache are shared by its calls). Different objects are independent.
 */
#ifndef GRAFT_CUDA_MATMUL_CUH
#define GRAFT_CUDA_MATMUL_CUH

#include <stddef.h>

#include "graft/plugin.h"
#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct graft_cuda_blas graft_cuda_blas_t;

/* Creates a blas object on the current device with workspace_bytes of device workspace (0: 32
 * MiB). *out is owned by the caller (graft_cuda_blas_free). DEVICE on a CUDA/cuBLAS failure. */
graft_status graft_cuda_blas_init(graft_cuda_blas_t **out, size_t workspace_bytes, graft_err *err);

/* Frees the plans, the workspace and the handle; accepts NULL. Call when no product is in flight. */
void graft_cuda_blas_free(graft_cuda_blas_t *blas);

/* One product (batched when args->batch > 1) on args->stream. args->dtype is the dtype of A and B
 * (BF16 or F32); c_dtype that of C (BF16 or F32; F32 when A and B are F32). a, b, c are device
 * pointers. Refuses (BAD_INPUT, with the member named) negative sizes, batch < 1, leading
 * dimensions too small for the shape, and a device other than CUDA; UNSUPPORTED for other dtypes
 * or a problem cuBLASLt has no algorithm for. Asynchronous: returns before the product is done. */
graft_status graft_cuda_matmul(graft_cuda_blas_t *blas, const graft_matmul_args *args,
                               graft_dtype c_dtype, graft_err *err);

/* The host table's matmul service for plugins on GRAFT_DEVICE_CUDA: ctx is a graft_cuda_blas_t *.
 * Dtypes by graft_matmul_dtypes(): A and B one dtype (BF16 or F32), C BF16 or F32 (mixed_dtypes
 * = 1 gives BF16 x BF16 -> F32, e.g. with beta = 1 for fp32 parameter gradients); otherwise C has
 * args->dtype. Same refusals as graft_cuda_matmul, and UNSUPPORTED when B's dtype differs from A's. */
graft_status graft_cuda_host_matmul(void *ctx, const graft_matmul_args *args, graft_err *err);

/* Number of plans in the cache (for tests: a repeated shape must not add one). */
int graft_cuda_blas_plan_count(const graft_cuda_blas_t *blas);

#ifdef __cplusplus
}
#endif
#endif
