/* lr_schedule.c: linear warmup + cosine decay (formula in lr_schedule.h; the cosine half is
 * Loshchilov & Hutter 2017, SGDR eq. 5 without restarts). */
#include "lr_schedule.h"

#include <math.h>

graft_lr_schedule graft_lr_schedule_default_params(void) {
    graft_lr_schedule p = {1e-3, 1e-5, 100, 1000};
    return p;
}

graft_status graft_lr_schedule_check(const graft_lr_schedule *p, graft_err *err) {
    if (!(p->lr_peak >= 0) || !isfinite(p->lr_peak))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "lr_peak: %g, expected a finite value >= 0", p->lr_peak);
    if (!(p->lr_min >= 0) || !(p->lr_min <= p->lr_peak))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "lr_min: %g, expected 0..lr_peak (%g)", p->lr_min,
                             p->lr_peak);
    if (p->warmup_steps < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "warmup_steps: %lld, expected >= 0",
                             (long long)p->warmup_steps);
    if (p->total_steps < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "total_steps: %lld, expected >= 1",
                             (long long)p->total_steps);
    return GRAFT_STATUS_OK;
}

double graft_lr_schedule_at(const graft_lr_schedule *p, int64_t step) {
    const int64_t W = p->warmup_steps, N = p->total_steps;
    if (step <= 0) return 0.0;
    if (W >= N) return p->lr_peak * (double)(step < W ? step : W) / (double)(W > 0 ? W : 1);
    if (step <= W) return p->lr_peak * (double)step / (double)W;
    if (step >= N) return p->lr_min;
    const double pi = 3.14159265358979323846;
    double t = (double)(step - W) / (double)(N - W);
    return p->lr_min + (p->lr_peak - p->lr_min) * 0.5 * (1.0 + cos(pi * t));
}
