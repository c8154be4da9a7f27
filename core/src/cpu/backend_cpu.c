/* cpu/backend_cpu.c: the CPU backend's vtable (backend.h) over the ops in this folder. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"

static void *cpu_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return p;
}

static void cpu_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

/* ---- the typed table on the CPU: F32 activations and weights, straight to the fp32 ops ---- */

static graft_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind, graft_err *err) {
    (void)ctx; (void)kind; (void)err;
    if (bytes) memmove(dst, src, bytes);
    return GRAFT_STATUS_OK;
}

static graft_status cpu_zero(void *ctx, void *dst, size_t bytes, graft_err *err) {
    (void)ctx; (void)err;
    if (bytes) memset(dst, 0, bytes);
    return GRAFT_STATUS_OK;
}

static graft_status cpu_sync(void *ctx, graft_err *err) {
    (void)ctx; (void)err;
    return GRAFT_STATUS_OK;
}

static graft_status t_embedding_fwd(void *ctx, void *out, const void *table, const int32_t *ids, int64_t N,
                                    int64_t C, int64_t V, graft_err *err) {
    (void)ctx; (void)V; (void)err;
    graft_cpu_embedding_fwd(out, table, ids, N, C);
    return GRAFT_STATUS_OK;
}

static graft_status t_rmsnorm_fwd(void *ctx, void *y, float *rstd, const void *x, const void *w, int64_t N,
                                  int64_t C, float eps, graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_rmsnorm_fwd(y, rstd, x, w, N, C, eps);
    return GRAFT_STATUS_OK;
}

static graft_status t_add_rmsnorm_fwd(void *ctx, void *sum, void *y, float *rstd, const void *a, const void *b,
                                      const void *w, int64_t N, int64_t C, float eps, graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_add(sum, a, b, N * C);
    graft_cpu_rmsnorm_fwd(y, rstd, sum, w, N, C, eps);
    return GRAFT_STATUS_OK;
}

static graft_status t_swiglu_fwd(void *ctx, void *h, const void *g, const void *u, int64_t N, int64_t I,
                                 graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_swiglu_fwd(h, g, u, N * I);
    return GRAFT_STATUS_OK;
}

static graft_status t_add(void *ctx, void *y, const void *a, const void *b, int64_t n, graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_add(y, a, b, n);
    return GRAFT_STATUS_OK;
}

static graft_status t_cast(void *ctx, void *dst, graft_dtype dst_dtype, const void *src, graft_dtype src_dtype,
                           int64_t n, graft_err *err) {
    (void)ctx;
    if (dst_dtype != GRAFT_DTYPE_F32 || src_dtype != GRAFT_DTYPE_F32)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cpu backend: cast %s -> %s, only F32 is served",
                             graft_dtype_name(src_dtype), graft_dtype_name(dst_dtype));
    if (n > 0) memmove(dst, src, (size_t)n * sizeof(float));
    return GRAFT_STATUS_OK;
}

static graft_status t_embedding_bwd(void *ctx, float *dtable, const void *dout, const int32_t *ids, int64_t N,
                                    int64_t C, int64_t V, graft_err *err) {
    (void)ctx; (void)V; (void)err;
    graft_cpu_embedding_bwd(dtable, dout, ids, N, C);
    return GRAFT_STATUS_OK;
}

static graft_status t_rmsnorm_bwd(void *ctx, void *dx, float *dw, const void *dy, const void *x, const void *w,
                                  const float *rstd, int64_t N, int64_t C, int accumulate, graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, C, accumulate);
    return GRAFT_STATUS_OK;
}

static graft_status t_swiglu_bwd(void *ctx, void *dg, void *du, const void *dh, const void *g, const void *u,
                                 int64_t N, int64_t I, graft_err *err) {
    (void)ctx; (void)err;
    graft_cpu_swiglu_bwd(dg, du, dh, g, u, N * I);
    return GRAFT_STATUS_OK;
}

static const graft_backend cpu_backend = {
    .name = "cpu",
    .device = GRAFT_DEVICE_CPU,
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .matmul = graft_cpu_matmul,
    .act_dtype = GRAFT_DTYPE_F32,
    .weight_dtype = GRAFT_DTYPE_F32,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .op = {.embedding_fwd = t_embedding_fwd, .rmsnorm_fwd = t_rmsnorm_fwd, .swiglu_fwd = t_swiglu_fwd,
           .add = t_add, .add_rmsnorm_fwd = t_add_rmsnorm_fwd, .cast = t_cast, .embedding_bwd = t_embedding_bwd, .rmsnorm_bwd = t_rmsnorm_bwd,
           .swiglu_bwd = t_swiglu_bwd},
};

const graft_backend *graft_backend_cpu(void) { return &cpu_backend; }
