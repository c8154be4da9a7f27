/* adamw.c: the AdamW update and global-norm clipping (math in adamw.h; mirrors
 * torch/optim/adamw.py _single_tensor_adamw and torch/nn/utils/clip_grad.py). Plain loops: this is
 * the CPU reference. Bias corrections are computed in double once per step. */
#include "adamw.h"

#include <math.h>

graft_adamw_params graft_adamw_default_params(void) {
    graft_adamw_params p = {0.9, 0.999, 1e-8, 0.01};
    return p;
}

graft_status graft_adamw_check(const graft_adamw_params *p, graft_err *err) {
    if (!(p->beta1 >= 0 && p->beta1 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "beta1: %g, expected 0 <= beta1 < 1", p->beta1);
    if (!(p->beta2 >= 0 && p->beta2 < 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "beta2: %g, expected 0 <= beta2 < 1", p->beta2);
    if (!(p->eps > 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "eps: %g, expected > 0", p->eps);
    if (!(p->weight_decay >= 0))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "weight_decay: %g, expected >= 0", p->weight_decay);
    return GRAFT_STATUS_OK;
}

static graft_status check_spans(const graft_adamw_span *s, int64_t n_spans, int need_state, graft_err *err) {
    for (int64_t i = 0; i < n_spans; i++) {
        if (s[i].n < 0)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "adamw span %lld: n %lld, expected >= 0",
                                 (long long)i, (long long)s[i].n);
        if (s[i].n > 0 && (!s[i].data || !s[i].grad || (need_state && (!s[i].m || !s[i].v))))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "adamw span %lld: NULL buffer", (long long)i);
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_adamw_step(const graft_adamw_params *p, graft_adamw_span *spans, int64_t n_spans,
                              int64_t t, double lr, graft_err *err) {
    graft_status s = graft_adamw_check(p, err);
    if (s) return s;
    if (t < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "adamw step t: %lld, expected >= 1", (long long)t);
    if ((s = check_spans(spans, n_spans, 1, err))) return s;
    const float b1 = (float)p->beta1, b2 = (float)p->beta2;
    /* 1 - beta in double first: (1.0f - 0.999f) would lose 4 digits of (1 - b2). */
    const float one_b1 = (float)(1.0 - p->beta1), one_b2 = (float)(1.0 - p->beta2);
    const double bc1 = 1.0 - pow(p->beta1, (double)t);
    const double bc2 = 1.0 - pow(p->beta2, (double)t);
    /* torch: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps; p -= step_size * m / denom */
    const float step_size = (float)(lr / bc1);
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    const float eps = (float)p->eps;
    for (int64_t i = 0; i < n_spans; i++) {
        graft_adamw_span *sp = &spans[i];
        const float decay = (sp->flags & GRAFT_ADAMW_NO_DECAY) ? 1.0f : (float)(1.0 - lr * p->weight_decay);
        for (int64_t j = 0; j < sp->n; j++) {
            float g = sp->grad[j];
            float pj = sp->data[j] * decay;
            float m = b1 * sp->m[j] + one_b1 * g;
            float v = b2 * sp->v[j] + one_b2 * g * g;
            sp->m[j] = m;
            sp->v[j] = v;
            sp->data[j] = pj - step_size * m / (sqrtf(v) * inv_sqrt_bc2 + eps);
        }
    }
    return GRAFT_STATUS_OK;
}

double graft_grad_norm(const graft_adamw_span *spans, int64_t n_spans) {
    double ss = 0;
    for (int64_t i = 0; i < n_spans; i++)
        for (int64_t j = 0; j < spans[i].n; j++) ss += (double)spans[i].grad[j] * spans[i].grad[j];
    return sqrt(ss);
}

double graft_grad_clip(graft_adamw_span *spans, int64_t n_spans, double max_norm) {
    double norm = graft_grad_norm(spans, n_spans);
    if (max_norm <= 0) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (int64_t i = 0; i < n_spans; i++) {
            float *g = spans[i].grad;
            for (int64_t j = 0; j < spans[i].n; j++) g[j] *= c;
        }
    }
    return norm;
}
