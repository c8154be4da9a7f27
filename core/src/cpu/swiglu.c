/* cpu/swiglu.c: the SwiGLU activation of the Qwen3 MLP (qwen3.md §3.3, §5):
 *   h = silu(g) * u, silu(z) = z * sigmoid(z);  silu'(z) = s * (1 + z * (1 - s)). */
#include <math.h>

#include "cpu_ops.h"

static inline float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

void graft_cpu_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * sigmoidf_(g[i]) * u[i];
}

void graft_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf_(g[i]);
        float silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
