/* cuda/matmul.cu: graft_matmul_args products through cuBLASLt (matmul.cuh).
 *
 * Row-major to column-major: cuBLAS sees a row-major (m x n) C as a column-major (n x m) matrix
 * C', so C' = op(B)' op(A)' with the operands swapped: A' = B (a column-major (n x k) matrix with
 * ld = ldb when B is not transposed, (k x n) stored and transposed otherwise), B' = A likewise,
 * M' = n, N' = m. Nothing is copied. k == 0 is served by a small kernel (C = beta * C, beta == 0
 * writes zeros), since cuBLASLt refuses an empty reduction, and products of at most 8 rows against
 * a bf16 weight by skinny.cu (decode steps, at memory bandwidth).
 *
 * Reference: cuBLASLt documentation, cublasLtMatmul and cublasLtMatmulAlgoGetHeuristic.
 */
#include <cublasLt.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.cuh"
#include "matmul.cuh"
#include "skinny.cuh"

#define PLAN_SLOTS 128
#define DEFAULT_WORKSPACE (32u << 20)

#define LT_TRY(call)                                                                               \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__,    \
                                 #call, cublasLtGetStatusString(s_));                                \
    } while (0)

typedef struct plan_key {
    int32_t ab_dtype, c_dtype, trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc, batch, stride_a, stride_b, stride_c;
    int32_t align_a, align_b, align_c, pad;
} plan_key;

typedef struct plan {
    plan_key key;
    int used;
    uint64_t last_use;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} plan;

struct graft_cuda_blas {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    uint64_t tick;
    plan plans[PLAN_SLOTS];
};

static void plan_release(plan *p) {
    if (!p->used) return;
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->op);
    p->used = 0;
}

graft_status graft_cuda_blas_init(graft_cuda_blas_t **out, size_t workspace_bytes, graft_err *err) {
    *out = NULL;
    graft_cuda_blas_t *b = (graft_cuda_blas_t *)calloc(1, sizeof *b);
    if (!b) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "cuda blas: out of host memory");
    b->workspace_bytes = workspace_bytes ? workspace_bytes : DEFAULT_WORKSPACE;
    cublasStatus_t s = cublasLtCreate(&b->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda blas: cublasLtCreate: %s", cublasLtGetStatusString(s));
    }
    cudaError_t e = cudaMalloc(&b->workspace, b->workspace_bytes);
    if (e != cudaSuccess) {
        cublasLtDestroy(b->lt);
        free(b);
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda blas: workspace of %zu bytes: cudaMalloc: %s",
                             workspace_bytes, cudaGetErrorString(e));
    }
    *out = b;
    return GRAFT_STATUS_OK;
}

void graft_cuda_blas_free(graft_cuda_blas_t *b) {
    if (!b) return;
    for (int i = 0; i < PLAN_SLOTS; i++) plan_release(&b->plans[i]);
    cudaFree(b->workspace);
    cublasLtDestroy(b->lt);
    free(b);
}

int graft_cuda_blas_plan_count(const graft_cuda_blas_t *b) {
    int n = 0;
    for (int i = 0; b && i < PLAN_SLOTS; i++) n += b->plans[i].used;
    return n;
}

static int32_t align_of(const void *p) {
    uintptr_t u = (uintptr_t)p;
    int32_t a = 256;
    while (a > 2 && (u & (uintptr_t)(a - 1))) a >>= 1;
    return a;
}

static cudaDataType_t cuda_type(graft_dtype d) { return d == GRAFT_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

static graft_status plan_build(graft_cuda_blas_t *b, plan *p, const plan_key *k, graft_err *err) {
    memset(p, 0, sizeof *p);
    p->key = *k;
    cudaDataType_t tab = cuda_type((graft_dtype)k->ab_dtype), tc = cuda_type((graft_dtype)k->c_dtype);
    LT_TRY(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    /* swapped operands: A' = B, B' = A (file comment) */
    cublasOperation_t opa = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s;
    if ((s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa)) ||
        (s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb))) {
        cublasLtMatmulDescDestroy(p->op);
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda matmul: descriptor: %s", cublasLtGetStatusString(s));
    }
    uint64_t ra = k->trans_b ? k->k : k->n, ca = k->trans_b ? k->n : k->k;
    uint64_t rb = k->trans_a ? k->m : k->k, cb = k->trans_a ? k->k : k->m;
    s = cublasLtMatrixLayoutCreate(&p->la, tab, ra, ca, k->ldb);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->lb, tab, rb, cb, k->lda);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->lc, tc, (uint64_t)k->n, (uint64_t)k->m, k->ldc);
    if (!s && k->batch > 1) {
        int32_t bc = (int32_t)k->batch;
        int64_t sa = k->stride_b, sb = k->stride_a, sc = k->stride_c;
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc);
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa);
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb);
        if (!s) s = cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc);
    }
    cublasLtMatmulPreference_t pref = NULL;
    if (!s) s = cublasLtMatmulPreferenceCreate(&pref);
    uint64_t ws = b->workspace_bytes;
    uint32_t aa = (uint32_t)k->align_b, ab = (uint32_t)k->align_a, ac = (uint32_t)k->align_c;
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (!s) s = cublasLtMatmulAlgoGetHeuristic(b->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (s || !found) {
        if (p->la) cublasLtMatrixLayoutDestroy(p->la);
        if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
        if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
        cublasLtMatmulDescDestroy(p->op);
        if (s)
            return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda matmul: cuBLASLt plan: %s", cublasLtGetStatusString(s));
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "cuda matmul: cuBLASLt has no algorithm for %s x %s -> %s, m %lld n %lld k %lld, "
                             "trans %d/%d, ld %lld/%lld/%lld, batch %lld",
                             graft_dtype_name((graft_dtype)k->ab_dtype), graft_dtype_name((graft_dtype)k->ab_dtype),
                             graft_dtype_name((graft_dtype)k->c_dtype), (long long)k->m, (long long)k->n,
                             (long long)k->k, k->trans_a, k->trans_b, (long long)k->lda, (long long)k->ldb,
                             (long long)k->ldc, (long long)k->batch);
    }
    p->algo = res.algo;
    p->used = 1;
    return GRAFT_STATUS_OK;
}

/* C = beta * C over (batch, m, n) with ldc (k == 0: the empty sum). */
template <typename T>
__global__ void scale_c_kernel(T *c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch,
                               float beta) {
    int64_t total = batch * m * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t bi = i / (m * n), r = (i / n) % m, col = i % n;
        T *p = c + bi * stride_c + r * ldc + col;
        *p = beta == 0.0f ? (T)0.0f : (T)(beta * (float)*p);
    }
}

static graft_status check_args(const graft_matmul_args *a, graft_dtype c_dtype, graft_err *err) {
    if (!a || a->struct_size < offsetof(graft_matmul_args, stride_c) + sizeof a->stride_c)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: args missing or struct_size %u too small",
                             a ? a->struct_size : 0u);
    if (a->device != GRAFT_DEVICE_CUDA)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda matmul: device %d, expected CUDA (%d)",
                             (int)a->device, (int)GRAFT_DEVICE_CUDA);
    if (!((a->dtype == GRAFT_DTYPE_BF16 && (c_dtype == GRAFT_DTYPE_BF16 || c_dtype == GRAFT_DTYPE_F32)) ||
          (a->dtype == GRAFT_DTYPE_F32 && c_dtype == GRAFT_DTYPE_F32)))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "cuda matmul: dtypes A/B %s, C %s, expected BF16/BF16 or BF16/F32 or F32/F32",
                             graft_dtype_name(a->dtype), graft_dtype_name(c_dtype));
    if (a->m < 0 || a->n < 0 || a->k < 0 || a->batch < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: m %lld n %lld k %lld batch %lld, expected >= 0 (batch >= 1)",
                             (long long)a->m, (long long)a->n, (long long)a->k, (long long)a->batch);
    if (a->batch > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda matmul: batch %lld, expected <= %d", (long long)a->batch,
                             INT32_MAX);
    int64_t need_a = a->trans_a ? a->m : a->k, need_b = a->trans_b ? a->k : a->n;
    if (a->m > 0 && a->n > 0 && a->k > 0) {
        if (a->lda < (need_a > 1 ? need_a : 1))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: lda %lld, expected >= %lld (trans_a %d)",
                                 (long long)a->lda, (long long)need_a, a->trans_a);
        if (a->ldb < (need_b > 1 ? need_b : 1))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: ldb %lld, expected >= %lld (trans_b %d)",
                                 (long long)a->ldb, (long long)need_b, a->trans_b);
        if (!a->a || !a->b)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: a or b is NULL");
    }
    if (a->m > 0 && a->n > 0) {
        if (a->ldc < (a->n > 1 ? a->n : 1))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: ldc %lld, expected >= n %lld",
                                 (long long)a->ldc, (long long)a->n);
        if (!a->c) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: c is NULL");
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_matmul(graft_cuda_blas_t *b, const graft_matmul_args *a, graft_dtype c_dtype,
                               graft_err *err) {
    if (!b) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: blas object is NULL");
    graft_status st = check_args(a, c_dtype, err);
    if (st) return st;
    if (a->m == 0 || a->n == 0) return GRAFT_STATUS_OK;
    cudaStream_t stream = graft_stream(a->stream);
    if (a->k == 0) {
        unsigned grid = grid_for(a->batch * a->m * a->n, 256, 4096);
        if (c_dtype == GRAFT_DTYPE_F32)
            scale_c_kernel<float><<<grid, 256, 0, stream>>>((float *)a->c, a->m, a->n, a->ldc, a->stride_c, a->batch, a->beta);
        else
            scale_c_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)a->c, a->m, a->n, a->ldc, a->stride_c, a->batch, a->beta);
        GRAFT_CUDA_LAUNCHED("matmul scale_c (k = 0)");
        return GRAFT_STATUS_OK;
    }
    if (graft_cuda_skinny_fits(a, c_dtype)) return graft_cuda_skinny_matmul(a, c_dtype, err); /* decode rows */
    plan_key k;
    memset(&k, 0, sizeof k);
    k.ab_dtype = a->dtype;
    k.c_dtype = c_dtype;
    k.trans_a = a->trans_a != 0;
    k.trans_b = a->trans_b != 0;
    k.m = a->m; k.n = a->n; k.k = a->k;
    k.lda = a->lda; k.ldb = a->ldb; k.ldc = a->ldc;
    k.batch = a->batch;
    if (a->batch > 1) {
        k.stride_a = a->stride_a;
        k.stride_b = a->stride_b;
        k.stride_c = a->stride_c;
    }
    k.align_a = align_of(a->a);
    k.align_b = align_of(a->b);
    k.align_c = align_of(a->c);
    plan *p = NULL, *victim = &b->plans[0];
    for (int i = 0; i < PLAN_SLOTS; i++) {
        plan *q = &b->plans[i];
        if (q->used && memcmp(&q->key, &k, sizeof k) == 0) {
            p = q;
            break;
        }
        if (!q->used) victim = q;
        else if (victim->used && q->last_use < victim->last_use) victim = q;
    }
    if (!p) {
        plan_release(victim);
        if ((st = plan_build(b, victim, &k, err))) return st;
        p = victim;
    }
    p->last_use = ++b->tick;
    const float alpha = a->alpha, beta = a->beta;
    /* swapped operands: A' = b, B' = a */
    LT_TRY(cublasLtMatmul(b->lt, p->op, &alpha, a->b, p->la, a->a, p->lb, &beta, a->c, p->lc, a->c, p->lc, &p->algo,
                          b->workspace, b->workspace_bytes, stream));
    return GRAFT_STATUS_OK;
}

graft_status graft_cuda_host_matmul(void *ctx, const graft_matmul_args *args, graft_err *err) {
    if (!args) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: args is NULL");
    if (args->struct_size < offsetof(graft_matmul_args, stride_c) + sizeof args->stride_c)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda matmul: struct_size %u too small", args->struct_size);
    graft_dtype da, db, dc;
    graft_matmul_dtypes(args, &da, &db, &dc);
    if (db != da)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "cuda matmul: dtypes A %s, B %s, C %s: A and B must have one dtype (BF16 or F32)",
                             graft_dtype_name(da), graft_dtype_name(db), graft_dtype_name(dc));
    return graft_cuda_matmul((graft_cuda_blas_t *)ctx, args, dc, err);
}
