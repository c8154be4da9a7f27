/* runlog_writer.c: a stand-in for a training run, used by test_runlog_swmr.py: appends rows slowly
 * so a reader can follow the file live, and resumes a killed run.
 *
 *   runlog_writer PATH new    N SLEEP_MS
 *   runlog_writer PATH resume N SLEEP_MS RESUME_STEP
 *
 * Stage 0 (stage0) gets train + stage0_pairs rows for steps 1..N (2 layers x 2 mixers, held-out
 * loss every 10th step), then its result table; stage 1 (select) the hybrid spec; stage 2 (eval)
 * eval, bench and generation rows. Every value is a function of the step, so the reader can check
 * it (expected values: test_runlog_swmr.py). Prints "ready" once the file is in SWMR mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runlog.h"

static const char *const mixers[2] = {"gla", "rwkv7"};

static int fail(const graft_err *err) {
    fprintf(stderr, "runlog_writer: %s\n", err->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5 || (strcmp(argv[2], "new") && strcmp(argv[2], "resume")) ||
        (!strcmp(argv[2], "resume") && argc < 6)) {
        fprintf(stderr, "usage: runlog_writer PATH new|resume N SLEEP_MS [RESUME_STEP]\n");
        return 2;
    }
    const char *path = argv[1];
    int resume = !strcmp(argv[2], "resume");
    int64_t n = atoll(argv[3]);
    long sleep_ms = atol(argv[4]);
    graft_runlog_meta meta = graft_runlog_default_meta();
    meta.recipe_text = "model: tiny\nstages:\n  - kind: stage0\n  - kind: select\n  - kind: eval\n";
    meta.device = "cpu";
    meta.git_hash = "deadbeef";
    meta.command_line = "runlog_writer";
    meta.resume_stage = 0;
    meta.resume_step = resume ? atoll(argv[5]) : -1;
    graft_runlog_t *log;
    graft_err err;
    if (graft_runlog_open(path, &meta, resume, &log, &err)) return fail(&err);
    if (graft_runlog_stage_begin(log, 0, "stage0", &err)) return fail(&err);
    printf("ready\n");
    fflush(stdout);
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    for (int64_t s = resume ? meta.resume_step + 1 : 1; s <= n; s++) {
        graft_train_row r = {s, (int32_t)(s > n / 2), 1.0 / (double)s, 0.5 / (double)s, 0.25 / (double)s,
                             1e-3 * (double)s / (double)n, 2.0, 64 * s, 6400.0, 0.01 * (double)s};
        if (graft_runlog_append_train(log, 0, &r, &err)) return fail(&err);
        for (int32_t layer = 0; layer < 2; layer++)
            for (int m = 0; m < 2; m++) {
                double base = 1.0 / (double)(1 + layer + 2 * m);
                graft_stage0_pair_row p = {s, layer, mixers[m], base + 1.0 / (double)s,
                                           s % 10 == 0 ? base + 0.5 / (double)s : NAN};
                if (graft_runlog_append_stage0_pair(log, 0, &p, &err)) return fail(&err);
            }
        if (sleep_ms > 0) nanosleep(&ts, NULL);
    }
    for (int32_t layer = 0; layer < 2; layer++)
        for (int m = 0; m < 2; m++) {
            graft_stage0_result_row rr = {layer, mixers[m], 1.0 / (double)(1 + layer + 2 * m), 1000};
            if (graft_runlog_append_stage0_result(log, 0, &rr, &err)) return fail(&err);
        }
    if (graft_runlog_stage_end(log, 0, "done", &err)) return fail(&err);
    if (graft_runlog_stage_begin(log, 1, "select", &err)) return fail(&err);
    if (graft_runlog_set_text(log, 1, "hybrid_spec", "layer_types: [gla, softmax]\n", &err)) return fail(&err);
    if (graft_runlog_stage_end(log, 1, "done", &err)) return fail(&err);
    if (graft_runlog_stage_begin(log, 2, "eval", &err)) return fail(&err);
    graft_eval_row e1 = {"control", "ppl", 10.5, 2048, -1}, e2 = {"hybrid", "ppl", 11.25, 2048, -1};
    if (graft_runlog_append_eval(log, 2, &e1, &err) || graft_runlog_append_eval(log, 2, &e2, &err))
        return fail(&err);
    graft_bench_row b = {"hybrid", 4096, 2, 1024, 12.5, 850.0, 123456, 987654321};
    if (graft_runlog_append_bench(log, 2, &b, &err)) return fail(&err);
    graft_generation_row g = {"hybrid", "The capital of France is", " Paris."};
    if (graft_runlog_append_generation(log, 2, &g, &err)) return fail(&err);
    if (graft_runlog_stage_end(log, 2, "done", &err)) return fail(&err);
    graft_runlog_close(log);
    return 0;
}
