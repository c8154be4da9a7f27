/* backend.h: the internal backend contract (never installed). A backend is a table of function
 * pointers plus a context; the model calls ops only through it, so no caller #ifdefs on the
 * device. CPU (cpu/, fp32, the reference) implements every op; the CUDA backend (cuda/) will
 * implement the same table. An op a backend lacks is NULL and graft_backend_supports() says so.
 *
 * Op convention (STYLE.md): outputs first, then inputs, then sizes. N = rows (B*T tokens),
 * C = width, I = MLP width, V = vocabulary. Gradients of parameters are ACCUMULATED (+=), gradients
 * of activations are WRITTEN (=) unless the op's comment says otherwise.
 *
 * Not here: attention and RoPE (they live in plugins/softmax, behind the mixer ABI), losses
 * (losses/ plugins).
 */
#ifndef GRAFT_BACKEND_H
#define GRAFT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"
#include "graft/status.h"

typedef struct graft_backend {
    const char *name;          /* "cpu", "cuda" */
    graft_device device;
    void *ctx;

    void *(*alloc)(void *ctx, size_t bytes);  /* zero-filled, 64-byte aligned; NULL on failure */
    void (*free)(void *ctx, void *ptr);

    /* out[n, :] = table[ids[n], :] */
    void (*embedding_fwd)(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C);
    /* dtable[ids[n], :] += dout[n, :] */
    void (*embedding_bwd)(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C);
    /* y = w * x * rstd, rstd[n] = 1/sqrt(mean(x[n]^2) + eps); rstd may be NULL (inference) */
    void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                        float eps);
    /* dx (+= when accumulate, else =), dw += (dw may be NULL: frozen) */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w,
                        const float *rstd, int64_t N, int64_t C, int accumulate);
    /* h = silu(g) * u over n elements */
    void (*swiglu_fwd)(float *h, const float *g, const float *u, int64_t n);
    /* dg = dh * u * silu'(g), du = dh * silu(g) */
    void (*swiglu_bwd)(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);
    /* y = a + b (y may alias a or b) */
    void (*add)(float *y, const float *a, const float *b, int64_t n);
    /* Row-major F32 product (graft_matmul_args semantics). */
    graft_status (*matmul)(void *ctx, const graft_matmul_args *args, graft_err *err);
} graft_backend;

/* The CPU backend (always available). */
const graft_backend *graft_backend_cpu(void);

#endif
