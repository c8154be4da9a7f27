/* test_runlog.c: every table of the run log written through the C API, row counts read back,
 * resume truncation, and refusals. Values are read back by h5py in tests/runlog/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "runlog.h"
#include "test_util.h"

static void fill_stage0(graft_runlog_t *log, int32_t stage, int64_t from, int64_t to) {
    graft_err err;
    for (int64_t s = from; s <= to; s++) {
        graft_train_row r = {s, (int32_t)(s / 5), 2.0 / (double)s, 1.0, NAN, 1e-3, 0.5, 128 * s, 1000.0, 0.1 * (double)s};
        CHECK(graft_runlog_append_train(log, stage, &r, &err) == GRAFT_STATUS_OK);
        graft_stage0_pair_row p = {s, 3, "gla", 1.0 / (double)s, s % 2 ? NAN : 0.5};
        CHECK(graft_runlog_append_stage0_pair(log, stage, &p, &err) == GRAFT_STATUS_OK);
    }
}

int main(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/test_runlog_%d.h5", GRAFT_BUILD_DIR, (int)getpid());
    graft_runlog_meta meta = graft_runlog_default_meta();
    meta.recipe_text = "stages:\n  - kind: stage0\n";
    meta.device = "cpu";
    meta.git_hash = "0123abcd";
    meta.command_line = "graft run recipe.yaml";
    graft_runlog_t *log = NULL;
    graft_err err;
    CHECK(graft_runlog_open(path, &meta, 0, &log, &err) == GRAFT_STATUS_OK);
    if (!log) {
        fprintf(stderr, "%s\n", err.msg);
        return test_finish("test_runlog");
    }
    CHECK(graft_runlog_stage_begin(log, 0, "stage0", &err) == GRAFT_STATUS_OK);
    fill_stage0(log, 0, 1, 10);
    graft_stage0_result_row res = {3, "gla", 0.25, 4096};
    CHECK(graft_runlog_append_stage0_result(log, 0, &res, &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_stage_end(log, 0, "done", &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_stage_begin(log, 1, "select", &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_set_text(log, 1, "hybrid_spec", "layer_types: [gla, softmax]\n", &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_set_text(log, 1, "hybrid_spec", "layer_types: [rwkv7, softmax]\n", &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_stage_end(log, 1, "done", &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_stage_begin(log, 2, "eval", &err) == GRAFT_STATUS_OK);
    graft_eval_row ev = {"hybrid", "ppl", 12.5, 1000, -1};
    CHECK(graft_runlog_append_eval(log, 2, &ev, &err) == GRAFT_STATUS_OK);
    graft_bench_row b = {"control", 2048, 1, 0, 35.0, 120.0, 1 << 20, 1 << 30};
    CHECK(graft_runlog_append_bench(log, 2, &b, &err) == GRAFT_STATUS_OK);
    graft_generation_row gen = {"hybrid", "Once upon", " a time"};
    CHECK(graft_runlog_append_generation(log, 2, &gen, &err) == GRAFT_STATUS_OK);
    CHECK(graft_runlog_rows(log, 0, "train", &err) == 10);
    CHECK(graft_runlog_rows(log, 0, "stage0_pairs", &err) == 10);
    CHECK(graft_runlog_rows(log, 0, "stage0_results", &err) == 1);
    CHECK(graft_runlog_rows(log, 2, "eval", &err) == 1);
    CHECK(graft_runlog_rows(log, 2, "bench", &err) == 1);
    CHECK(graft_runlog_rows(log, 2, "generations", &err) == 1);

    /* refusals, each naming the file and the field */
    CHECK(graft_runlog_stage_begin(log, 3, "Bad-Kind", &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "kind");
    CHECK(graft_runlog_stage_begin(log, 0, "eval", &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "the log has \"stage0\"");
    graft_stage0_pair_row longp = {1, 0, "a_mixer_name_longer_than_16", 0, 0};
    CHECK(graft_runlog_append_stage0_pair(log, 0, &longp, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "stage0_pairs.mixer");
    graft_train_row r = {0};
    CHECK(graft_runlog_append_train(log, 7, &r, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "stage 7: not begun");
    CHECK(graft_runlog_set_text(log, 1, "train", "x", &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(graft_runlog_rows(log, 0, "nope", &err) == -1);
    CHECK_CONTAINS(err.msg, "/stages/0_stage0/nope");
    graft_runlog_close(log);

    /* resume inside stage 0 after step 6: stage 0 keeps steps 1..6, loses its result rows, later
     * stages vanish; appending 7..10 again gives the same table as an uninterrupted run */
    meta.resume_stage = 0;
    meta.resume_step = 6;
    log = NULL;
    CHECK(graft_runlog_open(path, &meta, 1, &log, &err) == GRAFT_STATUS_OK);
    if (log) {
        CHECK(graft_runlog_stage_begin(log, 0, "stage0", &err) == GRAFT_STATUS_OK);
        CHECK(graft_runlog_rows(log, 0, "train", &err) == 6);
        CHECK(graft_runlog_rows(log, 0, "stage0_pairs", &err) == 6);
        CHECK(graft_runlog_rows(log, 0, "stage0_results", &err) == 0);
        CHECK(graft_runlog_rows(log, 2, "eval", &err) == -1); /* stage 2 is gone */
        fill_stage0(log, 0, 7, 10);
        CHECK(graft_runlog_rows(log, 0, "train", &err) == 10);
        CHECK(graft_runlog_stage_end(log, 0, "done", &err) == GRAFT_STATUS_OK);
        graft_runlog_close(log);
    }

    /* a missing file on resume, an unwritable path on create */
    log = NULL;
    CHECK(graft_runlog_open("/nonexistent/dir/run.h5", &meta, 1, &log, &err) != GRAFT_STATUS_OK);
    CHECK_CONTAINS(err.msg, "/nonexistent/dir/run.h5");
    CHECK(log == NULL);
    CHECK(graft_runlog_open("/nonexistent/dir/run.h5", &meta, 0, &log, &err) != GRAFT_STATUS_OK);
    CHECK_CONTAINS(err.msg, "/nonexistent/dir/run.h5");
    graft_runlog_close(NULL);
    if (!test_failures_) unlink(path);
    return test_finish("test_runlog");
}
