/* test_lr_schedule.c: exact values of the warmup + cosine schedule (lr_schedule.h). */
#include <math.h>

#include "lr_schedule.h"
#include "test_util.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-15 * (fabs(b) + 1e-300) + 1e-18; }

int main(void) {
    graft_lr_schedule p = {1e-3, 1e-5, 10, 110};
    graft_err err;
    CHECK(graft_lr_schedule_check(&p, &err) == GRAFT_STATUS_OK);
    CHECK(graft_lr_schedule_at(&p, 0) == 0.0);
    CHECK(graft_lr_schedule_at(&p, -5) == 0.0);
    CHECK(near(graft_lr_schedule_at(&p, 1), 1e-4));
    CHECK(near(graft_lr_schedule_at(&p, 5), 5e-4));
    CHECK(graft_lr_schedule_at(&p, 10) == 1e-3);
    /* halfway through the cosine: (lr_peak + lr_min) / 2 */
    CHECK(near(graft_lr_schedule_at(&p, 60), (1e-3 + 1e-5) / 2));
    /* a quarter: lr_min + (peak - min) (1 + cos(pi/4)) / 2 */
    CHECK(near(graft_lr_schedule_at(&p, 35), 1e-5 + (1e-3 - 1e-5) * (1 + sqrt(0.5)) / 2));
    CHECK(graft_lr_schedule_at(&p, 110) == 1e-5);
    CHECK(graft_lr_schedule_at(&p, 1000) == 1e-5);
    /* monotone after warmup */
    for (int64_t s = 11; s <= 110; s++) CHECK(graft_lr_schedule_at(&p, s) <= graft_lr_schedule_at(&p, s - 1));

    graft_lr_schedule nw = {2.0, 0.0, 0, 4}; /* no warmup: step 1 is already on the cosine */
    CHECK(near(graft_lr_schedule_at(&nw, 1), 1.0 + cos(3.14159265358979323846 / 4)));
    CHECK(near(graft_lr_schedule_at(&nw, 2), 1.0));
    CHECK(graft_lr_schedule_at(&nw, 4) == 0.0);

    graft_lr_schedule wo = {1.0, 0.5, 8, 4}; /* warmup longer than the run: warmup only */
    CHECK(graft_lr_schedule_at(&wo, 2) == 0.25);
    CHECK(graft_lr_schedule_at(&wo, 20) == 1.0);

    graft_lr_schedule bad = p;
    bad.lr_min = 1.0;
    CHECK(graft_lr_schedule_check(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "lr_min");
    bad = p;
    bad.total_steps = 0;
    CHECK(graft_lr_schedule_check(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "total_steps");
    bad = p;
    bad.warmup_steps = -1;
    CHECK(graft_lr_schedule_check(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "warmup_steps");
    return test_finish("test_lr_schedule");
}
