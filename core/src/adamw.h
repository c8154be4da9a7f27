/* adamw.h: AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Alg. 2) with
 * exactly torch.optim.AdamW's update (amsgrad=False, maximize=False), and global-L2-norm gradient
 * clipping with torch.nn.utils.clip_grad_norm_'s semantics.
 *
 * For each parameter element, at optimizer step t (1-based, after incrementing):
 *   p <- p - lr * wd * p                         (decoupled decay, skipped for no-decay spans;
 *                                                 applied before the Adam update, as PyTorch)
 *   m <- b1 m + (1 - b1) g
 *   v <- b2 v + (1 - b2) g^2
 *   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * State (m, v) is fp32 and owned by the caller (arena); it starts at zero.
 *
 * Not here: the learning-rate schedule (lr_schedule.h), mixed precision (the CUDA path keeps fp32
 * master weights and calls the same math on the device).
 * Thread safety: a call touches only the spans passed; distinct span lists may be stepped at once.
 */
#ifndef GRAFT_ADAMW_H
#define GRAFT_ADAMW_H

#include <stdint.h>

#include "graft/status.h"

#define GRAFT_ADAMW_NO_DECAY 1u /* flags bit: no weight decay on this span (norms, biases) */

typedef struct graft_adamw_params {
    double beta1;        /* 0.9   */
    double beta2;        /* 0.999 */
    double eps;          /* 1e-8  */
    double weight_decay; /* 0.01 (torch's default) */
} graft_adamw_params;

/* One parameter tensor seen flat: n contiguous fp32 elements of data, grad, m and v. Not owned. */
typedef struct graft_adamw_span {
    float *data;
    float *grad;    /* written by graft_grad_clip */
    float *m;
    float *v;
    int64_t n;
    uint32_t flags; /* GRAFT_ADAMW_* bits */
} graft_adamw_span;

graft_adamw_params graft_adamw_default_params(void);

/* Refuses betas outside [0, 1), eps <= 0, weight_decay < 0 (naming the field). */
graft_status graft_adamw_check(const graft_adamw_params *p, graft_err *err);

/* One AdamW step t (1-based; the caller counts steps and stores t in its checkpoint) with
 * learning rate lr over n_spans spans. Refuses t < 1, a span with n < 0 or a NULL pointer with
 * n > 0 (naming the span index). */
graft_status graft_adamw_step(const graft_adamw_params *p, graft_adamw_span *spans, int64_t n_spans,
                              int64_t t, double lr, graft_err *err);

/* The global L2 norm of all gradients (accumulated in double). */
double graft_grad_norm(const graft_adamw_span *spans, int64_t n_spans);

/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): computes the global norm; when
 * max_norm / (norm + 1e-6) < 1, scales every gradient by that factor. Returns the norm before
 * clipping. max_norm <= 0 disables clipping (the norm is still returned). */
double graft_grad_clip(graft_adamw_span *spans, int64_t n_spans, double max_norm);

#endif
