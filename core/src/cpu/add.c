/* cpu/add.c: elementwise sum for residual connections. */
#include "cpu_ops.h"

void graft_cpu_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
