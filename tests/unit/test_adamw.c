/* test_adamw.c: graft_adamw_step + graft_grad_clip against torch.optim.AdamW and
 * clip_grad_norm_ in float64 (tests/reference/adamw_ref.txt from adamw_ref.py), plus refusals and a
 * hand-computed single step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "test_util.h"

#define MAXS 8
#define MAXN 64
#define MAXSTEPS 16

static int read_doubles(FILE *f, double *out, int n) {
    for (int i = 0; i < n; i++)
        if (fscanf(f, "%lf", &out[i]) != 1) return 0;
    return 1;
}

static void test_reference(void) {
    const char *path = GRAFT_SOURCE_DIR "/tests/reference/adamw_ref.txt";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    double wd = 0, b1 = 0, b2 = 0, eps = 0, max_norm = 0;
    int steps = 0, ns = 0, sizes[MAXS] = {0}, nodecay[MAXS] = {0};
    double lr[MAXSTEPS], init[MAXS][MAXN], grad[MAXSTEPS][MAXS][MAXN], norm[MAXSTEPS], fin[MAXS][MAXN];
    char key[32];
    while (fscanf(f, "%31s", key) == 1) {
        int a, b;
        if (key[0] == '#') {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF) {}
        } else if (!strcmp(key, "config")) {
            CHECK(fscanf(f, "%lf %lf %lf %lf %lf %d %d", &wd, &b1, &b2, &eps, &max_norm, &steps, &ns) == 7);
            CHECK(steps <= MAXSTEPS && ns <= MAXS);
            for (int i = 0; i < ns; i++) {
                CHECK(fscanf(f, " span %d %d", &sizes[i], &nodecay[i]) == 2);
                CHECK(sizes[i] <= MAXN);
            }
        } else if (!strcmp(key, "lr")) {
            CHECK(read_doubles(f, lr, steps));
        } else if (!strcmp(key, "init")) {
            CHECK(fscanf(f, "%d", &a) == 1 && a < ns);
            CHECK(read_doubles(f, init[a], sizes[a]));
        } else if (!strcmp(key, "grad")) {
            CHECK(fscanf(f, "%d %d", &a, &b) == 2 && a < steps && b < ns);
            CHECK(read_doubles(f, grad[a][b], sizes[b]));
        } else if (!strcmp(key, "norm")) {
            CHECK(fscanf(f, "%d", &a) == 1 && a < steps);
            CHECK(read_doubles(f, &norm[a], 1));
        } else if (!strcmp(key, "final")) {
            CHECK(fscanf(f, "%d", &a) == 1 && a < ns);
            CHECK(read_doubles(f, fin[a], sizes[a]));
        } else {
            CHECK(!"unknown key in adamw_ref.txt");
            break;
        }
    }
    fclose(f);
    CHECK(steps > 0 && ns > 0);

    static float data[MAXS][MAXN], g[MAXS][MAXN], m[MAXS][MAXN], v[MAXS][MAXN], ref[MAXS][MAXN];
    graft_adamw_span spans[MAXS];
    for (int i = 0; i < ns; i++) {
        for (int j = 0; j < sizes[i]; j++) {
            data[i][j] = (float)init[i][j];
            m[i][j] = v[i][j] = 0;
            ref[i][j] = (float)fin[i][j];
        }
        spans[i] = (graft_adamw_span){data[i], g[i], m[i], v[i], sizes[i], nodecay[i] ? GRAFT_ADAMW_NO_DECAY : 0};
    }
    graft_adamw_params p = {b1, b2, eps, wd};
    graft_err err;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < ns; i++)
            for (int j = 0; j < sizes[i]; j++) g[i][j] = (float)grad[s][i][j];
        double n = graft_grad_clip(spans, ns, max_norm);
        if (fabs(n - norm[s]) > 1e-6 * norm[s]) {
            fprintf(stderr, "step %d: grad norm %.9g, torch %.9g\n", s, n, norm[s]);
            CHECK(0);
        }
        CHECK(graft_adamw_step(&p, spans, ns, s + 1, lr[s], &err) == GRAFT_STATUS_OK);
    }
    char name[32];
    for (int i = 0; i < ns; i++) {
        snprintf(name, sizeof name, "param %d", i);
        check_close_f32(name, data[i], ref[i], sizes[i], 1e-9);
    }
}

/* One step by hand: t = 1, m = (1-b1) g, v = (1-b2) g^2, so m_hat/sqrt(v_hat) = sign(g). */
static void test_single_step(void) {
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f}, m[2] = {0}, v[2] = {0};
    graft_adamw_span sp = {p, g, m, v, 2, 0};
    graft_adamw_params hp = graft_adamw_default_params();
    hp.eps = 1e-12;
    graft_err err;
    CHECK(graft_adamw_step(&hp, &sp, 1, 1, 0.1, &err) == GRAFT_STATUS_OK);
    CHECK(fabsf(p[0] - (1.0f * (1 - 0.1f * 0.01f) - 0.1f)) < 1e-6f);
    CHECK(fabsf(p[1] - (-2.0f * (1 - 0.1f * 0.01f) + 0.1f)) < 1e-6f);
    CHECK(fabsf(m[0] - 0.05f) < 1e-7f && fabsf(v[0] - 0.001f * 0.25f) < 1e-9f);
    /* no-decay flag: the same step without the decay term */
    float q = 1.0f, gq = 0.5f, mq = 0, vq = 0;
    graft_adamw_span sq = {&q, &gq, &mq, &vq, 1, GRAFT_ADAMW_NO_DECAY};
    CHECK(graft_adamw_step(&hp, &sq, 1, 1, 0.1, &err) == GRAFT_STATUS_OK);
    CHECK(fabsf(q - 0.9f) < 1e-6f);
}

static void test_clip(void) {
    float g[2] = {3.0f, 4.0f};
    graft_adamw_span sp = {g, g, NULL, NULL, 2, 0};
    CHECK(fabs(graft_grad_clip(&sp, 1, 10.0) - 5.0) < 1e-12);
    CHECK(g[0] == 3.0f && g[1] == 4.0f); /* under max_norm: untouched */
    CHECK(fabs(graft_grad_clip(&sp, 1, 1.0) - 5.0) < 1e-12);
    CHECK(fabsf(g[0] - 0.6f) < 1e-6f && fabsf(g[1] - 0.8f) < 1e-6f);
    CHECK(fabs(graft_grad_clip(&sp, 1, 0.0) - 1.0) < 1e-6); /* disabled: norm only */
}

static void test_refusals(void) {
    float p = 0, g = 0, m = 0, v = 0;
    graft_adamw_span sp = {&p, &g, &m, &v, 1, 0};
    graft_adamw_params hp = graft_adamw_default_params();
    graft_err err;
    CHECK(graft_adamw_step(&hp, &sp, 1, 0, 0.1, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "step t");
    hp.beta2 = 1.0;
    CHECK(graft_adamw_step(&hp, &sp, 1, 1, 0.1, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "beta2");
    hp = graft_adamw_default_params();
    sp.m = NULL;
    CHECK(graft_adamw_step(&hp, &sp, 1, 1, 0.1, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "span 0");
}

int main(void) {
    test_reference();
    test_single_step();
    test_clip();
    test_refusals();
    return test_finish("test_adamw");
}
