/* test_train_state.c: checkpoint round trip, crash safety by failure injection at every
 * file-system step of a save (each leaves the old or the new complete checkpoint), and refusals of
 * truncated / mismatched checkpoints naming the file. Also covers fsutil.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "test_util.h"
#include "train_state.h"

static float w0[6], w1[3], m0[6], v0[6];
static int64_t cursor[3];
static uint64_t rng[2];
static graft_named_tensor weights[2], ms[1], vs[1];

static graft_train_state make(float base, int64_t step) {
    for (int i = 0; i < 6; i++) {
        w0[i] = base + (float)i;
        m0[i] = base * 0.5f - (float)i;
        v0[i] = base * 0.25f + (float)i;
    }
    for (int i = 0; i < 3; i++) w1[i] = -base * (float)i;
    weights[0] = (graft_named_tensor){"model.layers.0.mixer.q_proj.weight", w0, 6, 2, {2, 3}};
    weights[1] = (graft_named_tensor){"model.norm.weight", w1, 3, 1, {3}};
    ms[0] = (graft_named_tensor){"model.layers.0.mixer.q_proj.weight", m0, 6, 2, {2, 3}};
    vs[0] = (graft_named_tensor){"model.layers.0.mixer.q_proj.weight", v0, 6, 2, {2, 3}};
    cursor[0] = step * 7;
    cursor[1] = -1;
    cursor[2] = INT64_MAX;
    rng[0] = UINT64_MAX - (uint64_t)step;
    rng[1] = 42;
    graft_train_state st;
    memset(&st, 0, sizeof st);
    st.weights = weights;
    st.n_weights = 2;
    st.m = ms;
    st.v = vs;
    st.n_opt = 1;
    st.step = step;
    st.phase = 1;
    st.stage = 2;
    st.lr_step = step;
    st.data_cursor = cursor;
    st.n_cursor = 3;
    st.rng_state = rng;
    st.n_rng = 2;
    snprintf(st.recipe_hash, sizeof st.recipe_hash, "abc%lld", (long long)step);
    return st;
}

/* 1 when the checkpoint at dir is exactly make(base, step). */
static int equals(const char *dir, float base, int64_t step, int verbose) {
    graft_train_state want = make(base, step), got;
    graft_err err;
    if (graft_train_state_load(dir, &got, &err)) {
        if (verbose) fprintf(stderr, "load: %s\n", err.msg);
        return 0;
    }
    int ok = got.step == step && got.phase == 1 && got.stage == 2 && got.lr_step == step && got.n_weights == 2 &&
             got.n_opt == 1 && got.n_cursor == 3 && got.n_rng == 2 && !strcmp(got.recipe_hash, want.recipe_hash) &&
             got.format_version == GRAFT_TRAIN_STATE_FORMAT &&
             !memcmp(got.data_cursor, cursor, sizeof cursor) && !memcmp(got.rng_state, rng, sizeof rng);
    for (int i = 0; ok && i < 2; i++) {
        const graft_named_tensor *w = NULL;
        for (int j = 0; j < 2; j++)
            if (!strcmp(got.weights[j].name, weights[i].name)) w = &got.weights[j];
        ok = w && w->numel == weights[i].numel && w->ndim == weights[i].ndim &&
             !memcmp(w->shape, weights[i].shape, sizeof(int64_t) * (size_t)w->ndim) &&
             !memcmp(w->data, weights[i].data, sizeof(float) * (size_t)w->numel);
    }
    ok = ok && !strcmp(got.m[0].name, ms[0].name) && !memcmp(got.m[0].data, m0, sizeof m0) &&
         !memcmp(got.v[0].data, v0, sizeof v0) && got.m[0].shape[1] == 3;
    graft_train_state_free(&got);
    return ok;
}

static void copy_file(const char *from, const char *to, long truncate_to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[4096];
    size_t n, total = 0;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) {
        if (truncate_to >= 0 && total + n > (size_t)truncate_to) n = (size_t)truncate_to - total;
        fwrite(buf, 1, n, b);
        total += n;
    }
    if (a) fclose(a);
    if (b) fclose(b);
}

int main(void) {
    char root[400], dir[500], bad[600], p1[700], p2[700];
    graft_err err;
    snprintf(root, sizeof root, "%s/test_train_state_%d", GRAFT_BUILD_DIR, (int)getpid());
    snprintf(dir, sizeof dir, "%s/ckpt/stage1", root);
    graft_fs_remove_tree(root, &err);

    graft_train_state a = make(1.0f, 10);
    CHECK(graft_train_state_save(dir, &a, &err) == GRAFT_STATUS_OK);
    CHECK(equals(dir, 1.0f, 10, 1));

    /* a crash at each step of a save leaves A or B, never a mix; afterwards a save succeeds */
    int saw_old = 0, saw_new = 0, k;
    for (k = 1; k < 100; k++) {
        graft_train_state b = make(2.0f, 20);
        graft_fs_test_fail_at(k);
        graft_status s = graft_train_state_save(dir, &b, &err);
        graft_fs_test_fail_at(0);
        if (s == GRAFT_STATUS_OK) break;
        CHECK_CONTAINS(err.msg, "injected failure");
        int old = equals(dir, 1.0f, 10, 0), neu = equals(dir, 2.0f, 20, 0);
        if (!old && !neu) fprintf(stderr, "crash at step %d left neither checkpoint\n", k);
        CHECK(old || neu);
        saw_old += old;
        saw_new += neu;
        graft_train_state a2 = make(1.0f, 10); /* restore A for the next round */
        CHECK(graft_train_state_save(dir, &a2, &err) == GRAFT_STATUS_OK);
    }
    CHECK(k > 5 && k < 100);
    CHECK(saw_old > 0 && saw_new > 0); /* crashes before and after the publication point */
    CHECK(equals(dir, 2.0f, 20, 1));

    /* a crash between the fallback renames leaves <dir>.old, which load uses */
    snprintf(bad, sizeof bad, "%s.old", dir);
    CHECK(rename(dir, bad) == 0);
    CHECK(equals(dir, 2.0f, 20, 1));
    CHECK(rename(bad, dir) == 0);

    /* refusals name the file */
    snprintf(bad, sizeof bad, "%s/bad", root);
    graft_train_state b = make(3.0f, 30);
    CHECK(graft_train_state_save(bad, &b, &err) == GRAFT_STATUS_OK);
    snprintf(p1, sizeof p1, "%s/weights.safetensors", bad);
    snprintf(p2, sizeof p2, "%s/w.copy", root);
    copy_file(p1, p2, -1);
    copy_file(p2, p1, 100);
    graft_train_state got;
    CHECK(graft_train_state_load(bad, &got, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "weights.safetensors");
    CHECK(got.weights == NULL);
    copy_file(p2, p1, -1);
    CHECK(equals(bad, 3.0f, 30, 1));
    snprintf(p1, sizeof p1, "%s/state.json", bad);
    FILE *f = fopen(p1, "w");
    if (f) {
        fputs("{\"format_version\": 99}", f);
        fclose(f);
    }
    CHECK(graft_train_state_load(bad, &got, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "state.json: format_version");
    snprintf(p1, sizeof p1, "%s/nothing_here", root);
    CHECK(graft_train_state_load(p1, &got, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "nothing_here");

    /* inconsistent input is refused before anything is written */
    graft_train_state c = make(4.0f, 40);
    vs[0].numel = 5;
    CHECK(graft_train_state_save(bad, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "model.layers.0.mixer.q_proj.weight");
    c = make(4.0f, 40);
    weights[1].name = weights[0].name;
    CHECK(graft_train_state_save(bad, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "duplicate");

    graft_train_state_free(NULL);
    if (!test_failures_) graft_fs_remove_tree(root, &err);
    return test_finish("test_train_state");
}
