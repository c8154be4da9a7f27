/* cpu/rmsnorm.c: RMSNorm forward and backward (qwen3.md §3.1, §5).
 *   r = 1/sqrt(mean(x^2) + eps);  y = w * (x * r)
 *   dw += dy * x * r (skipped when dw is NULL: a frozen weight);  dx = r * (dy*w) - x * r^3 * mean(dy*w*x)
 * Statistics in double: the reference should not lose accuracy to long sums. */
#include <math.h>

#include "cpu_ops.h"

void graft_cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                           float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        if (rstd) rstd[n] = r;
        float *yr = y + n * C;
        for (int64_t c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * r);
    }
}

void graft_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int64_t C, int accumulate) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *gr = dy + n * C;
        double r = rstd[n], dot = 0;
        for (int64_t c = 0; c < C; c++) {
            dot += (double)gr[c] * w[c] * xr[c];
            if (dw) dw[c] += (float)((double)gr[c] * xr[c] * r);
        }
        double k = r * r * r * dot / (double)C;
        float *dr = dx + n * C;
        for (int64_t c = 0; c < C; c++) {
            float v = (float)(r * gr[c] * w[c] - xr[c] * k);
            dr[c] = accumulate ? dr[c] + v : v;
        }
    }
}
