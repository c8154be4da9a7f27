/* cpu/matmul.c: row-major F32 matrix products through OpenBLAS (graft_matmul_args semantics in
 * graft/plugin.h). Also the host table's matmul service for plugins on the CPU. */
#include <cblas.h>

#include "cpu_ops.h"

graft_status graft_cpu_matmul(void *ctx, const graft_matmul_args *a, graft_err *err) {
    (void)ctx;
    if (!a || a->struct_size < sizeof(graft_matmul_args))
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "matmul: args struct_size too small");
    graft_dtype da, db, dc;
    graft_matmul_dtypes(a, &da, &db, &dc);
    if (a->device != GRAFT_DEVICE_CPU || da != GRAFT_DTYPE_F32 || db != GRAFT_DTYPE_F32 || dc != GRAFT_DTYPE_F32)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "matmul: the CPU backend multiplies F32 on the CPU, got A %s, B %s, C %s on device %d",
                             graft_dtype_name(da), graft_dtype_name(db), graft_dtype_name(dc), (int)a->device);
    if (a->m < 0 || a->n < 0 || a->k < 0 || a->batch < 1)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "matmul: negative size");
    if (a->m == 0 || a->n == 0) return GRAFT_STATUS_OK;
    for (int64_t i = 0; i < a->batch; i++) {
        const float *A = (const float *)a->a + i * a->stride_a;
        const float *B = (const float *)a->b + i * a->stride_b;
        float *Cm = (float *)a->c + i * a->stride_c;
        if (a->k == 0) { /* C = beta*C: BLAS may not touch C at all for k = 0 */
            for (int64_t r = 0; r < a->m; r++)
                for (int64_t c = 0; c < a->n; c++)
                    Cm[r * a->ldc + c] = a->beta == 0.0f ? 0.0f : a->beta * Cm[r * a->ldc + c];
            continue;
        }
        cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans,
                    a->trans_b ? CblasTrans : CblasNoTrans, (blasint)a->m, (blasint)a->n,
                    (blasint)a->k, a->alpha, A, (blasint)a->lda, B, (blasint)a->ldb, a->beta, Cm,
                    (blasint)a->ldc);
    }
    return GRAFT_STATUS_OK;
}
