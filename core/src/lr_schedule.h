/* lr_schedule.h: the learning-rate schedule of every training stage: linear warmup then cosine
 * decay.
 *
 * For step s (1-based: the first optimizer step is s = 1), warmup W >= 0, total steps N >= 1:
 *   s <= W:        lr(s) = lr_peak * s / W                       (PyTorch LinearLR-style from 0;
 *                                                                 the first step already moves)
 *   W < s <= N:    lr(s) = lr_min + (lr_peak - lr_min) * (1 + cos(pi * (s - W) / (N - W))) / 2
 *   s > N:         lr(s) = lr_min
 * so lr(W) = lr_peak, lr(N) = lr_min exactly (the last step runs at lr_min), and s <= 0 gives 0.
 * When W >= N the schedule is warmup only: lr(s) = lr_peak * min(s, W) / W.
 *
 * Pure function of (params, step): the "schedule position" a checkpoint stores is just the step.
 * Thread safety: all functions are pure.
 */
#ifndef GRAFT_LR_SCHEDULE_H
#define GRAFT_LR_SCHEDULE_H

#include <stdint.h>

#include "graft/status.h"

typedef struct graft_lr_schedule {
    double lr_peak;       /* reached at step warmup                                 */
    double lr_min;        /* reached at step total_steps                            */
    int64_t warmup_steps; /* W >= 0                                                 */
    int64_t total_steps;  /* N >= 1                                                 */
} graft_lr_schedule;

/* lr_peak 1e-3, lr_min 1e-5, warmup 100, total 1000. */
graft_lr_schedule graft_lr_schedule_default_params(void);

/* Refuses negative/NaN rates, lr_min > lr_peak, W < 0 or N < 1, naming the field. */
graft_status graft_lr_schedule_check(const graft_lr_schedule *p, graft_err *err);

/* The learning rate of optimizer step `step` (1-based), per the formula above. */
double graft_lr_schedule_at(const graft_lr_schedule *p, int64_t step);

#endif
