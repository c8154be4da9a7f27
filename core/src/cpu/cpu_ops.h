/* cpu/cpu_ops.h: the fp32 reference ops of the CPU backend, one per file in cpu/. Plain loops,
 * written to be read; OpenBLAS for matrix products (matmul.c). Declarations match backend.h. */
#ifndef GRAFT_CPU_OPS_H
#define GRAFT_CPU_OPS_H

#include <stdint.h>

#include "graft/plugin.h"

void graft_cpu_embedding_fwd(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C);
void graft_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C);
void graft_cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                           float eps);
void graft_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int64_t C, int accumulate);
void graft_cpu_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
void graft_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);
void graft_cpu_add(float *y, const float *a, const float *b, int64_t n);
graft_status graft_cpu_matmul(void *ctx, const graft_matmul_args *args, graft_err *err);

#endif
