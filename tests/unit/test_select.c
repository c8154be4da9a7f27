/* test_select.c: the selection policies (select.c) against the original experiment's published
 * choices, the CSV readers' refusals, and the hybrid spec (hybrid_spec.c) write/read round trip. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "hybrid_spec.h"
#include "select.h"
#include "test_util.h"

static graft_err err;

static void data(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/tests/data/recipes/%s", GRAFT_SOURCE_DIR, name);
}

static int same(const graft_selection *s, const char *mixer, const int64_t *want, int64_t n) {
    int64_t got[64];
    int64_t k = graft_selection_layers(s, mixer, got);
    if (k != n) {
        fprintf(stderr, "%s: %lld layers, expected %lld\n", mixer, (long long)k, (long long)n);
        return 0;
    }
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "%s: layer %lld at %lld, expected %lld\n", mixer, (long long)got[i],
                    (long long)i, (long long)want[i]);
            return 0;
        }
    return 1;
}

static graft_layer_range R(int64_t lo, int64_t hi) {
    graft_layer_range r;
    memset(&r, 0, sizeof r);
    r.lo = lo;
    r.hi = hi;
    return r;
}

static void test_original(void) {
    char p[1024];
    data(p, sizeof p, "stage0-losses.csv");
    graft_stage0_table t;
    CHECK(graft_stage0_table_load_csv(p, &t, &err) == GRAFT_STATUS_OK);
    CHECK(t.n == 34);
    graft_layer_range gla = R(0, 9), rwkv = R(10, 21);
    graft_mixer_layers ranges[2];
    memset(ranges, 0, sizeof ranges);
    ranges[0].mixer = "gla";
    ranges[0].layers.ranges = &gla;
    ranges[0].layers.n_ranges = 1;
    ranges[1].mixer = "rwkv7";
    ranges[1].layers.ranges = &rwkv;
    ranges[1].layers.n_ranges = 1;
    graft_select_request q;
    memset(&q, 0, sizeof q);
    q.policy = GRAFT_SELECT_PERCENTILE;
    q.ranges = ranges;
    q.n_ranges = 2;
    q.n_layer = 28;
    graft_selection s;

    static const int64_t g10[] = {2}, r10[] = {20};
    static const int64_t g25[] = {2, 8}, r25[] = {19, 20, 21};
    static const int64_t g50[] = {2, 6, 7, 8, 9}, r50[] = {16, 17, 18, 19, 20, 21};
    q.percentile = 10;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_OK);
    CHECK(same(&s, "gla", g10, 1) && same(&s, "rwkv7", r10, 1));
    CHECK(s.loss[2] == 0.0003 && isnan(s.loss[0]) && s.mixer[0][0] == 0);
    graft_selection_free(&s);
    q.percentile = 25;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_OK);
    CHECK(same(&s, "gla", g25, 2) && same(&s, "rwkv7", r25, 3));
    graft_selection_free(&s);
    q.percentile = 50;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_OK);
    CHECK(same(&s, "gla", g50, 5) && same(&s, "rwkv7", r50, 6));

    /* the spec of top50, written and read back */
    graft_kv gkv[] = {{"num_heads", "16", NULL}, {"norm_eps", "1e-6", NULL}};
    graft_recipe_mixer mixers[2];
    memset(mixers, 0, sizeof mixers);
    mixers[0].name = "gla";
    mixers[0].kv = gkv;
    mixers[0].n_kv = 2;
    mixers[1].name = "rwkv7";
    graft_hybrid_spec *spec = NULL, *back = NULL;
    CHECK(graft_hybrid_spec_from_selection(&s, mixers, 2, "stage0", &spec, &err) == GRAFT_STATUS_OK);
    graft_selection_free(&s);
    char tmpl[] = "/tmp/graft-test-spec-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (spec && dir) {
        char sp[1024];
        snprintf(sp, sizeof sp, "%s/top50.yaml", dir);
        CHECK(graft_hybrid_spec_write(spec, sp, &err) == GRAFT_STATUS_OK);
        CHECK(graft_hybrid_spec_load(sp, &back, &err) == GRAFT_STATUS_OK);
        if (back) {
            CHECK(back->n_layer == 28 && back->n_mixers == 2);
            CHECK(!strcmp(back->layer_types[2], "gla") && !strcmp(back->layer_types[16], "rwkv7"));
            CHECK(!strcmp(back->layer_types[0], "full_attention"));
            CHECK(back->mixers[0].n_kv == 2 && !strcmp(back->mixers[0].kv[1].value, "1e-6"));
            CHECK_CONTAINS(back->mixers[0].kv[0].where, "top50.yaml:");
            char want[1100];
            snprintf(want, sizeof want, "%s/stage0/layer2-gla.safetensors", dir);
            CHECK(back->weights[2] && !strcmp(back->weights[2], want));
            CHECK(back->weights[0] == NULL);
        }
        char tmpf[1100];
        snprintf(tmpf, sizeof tmpf, "%s.tmp", sp);
        CHECK(access(tmpf, F_OK) != 0); /* renamed, not left behind */
        unlink(sp);
        rmdir(dir);
    }
    graft_hybrid_spec_free(spec);
    graft_hybrid_spec_free(back);

    /* a range past the table's layers: no Stage 0 row */
    rwkv = R(10, 25);
    q.percentile = 10;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "rwkv7 layer 22 has no Stage 0 loss");
    rwkv = R(10, 30);
    q.n_layer = 28;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    graft_stage0_table_free(&t);
}

static void test_plain_and_policies(void) {
    char p[1024];
    data(p, sizeof p, "plain-table.csv");
    graft_stage0_table t;
    CHECK(graft_stage0_table_load_csv(p, &t, &err) == GRAFT_STATUS_OK && t.n == 8);
    graft_select_request q;
    memset(&q, 0, sizeof q);
    q.n_layer = 4;
    graft_selection s;
    /* count 2, all layers, both mixers: gla best {1, 2}, rwkv7 best {2, 1}; conflicts go to the
     * lower loss: layer 2 -> rwkv7 (0.05 < 0.3), layer 1 -> gla (0.1 < 0.2) */
    q.policy = GRAFT_SELECT_COUNT;
    q.count = 2;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_OK);
    static const int64_t g[] = {1}, r[] = {2};
    CHECK(same(&s, "gla", g, 1) && same(&s, "rwkv7", r, 1));
    graft_selection_free(&s);

    /* budget: walk by loss 0.05 rwkv7@2 (2ms), 0.1 gla@1 (1ms), 0.2 rwkv7@1 (taken), 0.3 gla@2
     * (taken), 0.4 rwkv7@0 (2ms) -> 5ms reached */
    graft_cost_table c;
    data(p, sizeof p, "cost.csv");
    CHECK(graft_cost_table_load_csv(p, &c, &err) == GRAFT_STATUS_OK && c.n == 8);
    q.policy = GRAFT_SELECT_BUDGET;
    q.cost = &c;
    q.budget = 4.5;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_OK);
    static const int64_t br[] = {0, 2};
    CHECK(same(&s, "gla", g, 1) && same(&s, "rwkv7", br, 2) && s.saved_ms == 5.0);
    graft_selection_free(&s);
    q.budget = 100;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "budget: 100 ms, expected at most 7 ms");
    graft_cost_table_free(&c);

    /* list, with a layer given twice */
    graft_layer_range a = R(0, 1), b = R(1, 1);
    graft_mixer_layers list[2];
    memset(list, 0, sizeof list);
    list[0].mixer = "gla";
    list[0].layers.ranges = &a;
    list[0].layers.n_ranges = 1;
    list[1].mixer = "rwkv7";
    list[1].layers.ranges = &b;
    list[1].layers.n_ranges = 1;
    q.policy = GRAFT_SELECT_LIST;
    q.list = list;
    q.n_list = 1;
    CHECK(graft_select_run(NULL, &q, &s, &err) == GRAFT_STATUS_OK);
    static const int64_t gl[] = {0, 1};
    CHECK(same(&s, "gla", gl, 2) && isnan(s.loss[0]));
    graft_selection_free(&s);
    q.n_list = 2;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "layer 1 is also listed for gla");

    /* a table whose layers exceed the model */
    q.policy = GRAFT_SELECT_COUNT;
    q.n_layer = 3;
    CHECK(graft_select_run(&t, &q, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "layer 3, expected layers in 0..2");
    graft_stage0_table_free(&t);
}

static void test_bad_tables(void) {
    char p[1024];
    graft_stage0_table t;
    data(p, sizeof p, "bad-dup-table.csv");
    CHECK(graft_stage0_table_load_csv(p, &t, &err) == GRAFT_STATUS_BAD_INPUT && t.rows == NULL);
    CHECK_CONTAINS(err.msg, "bad-dup-table.csv:3: gla layer 0: a second row");
    data(p, sizeof p, "bad-nan-table.csv");
    CHECK(graft_stage0_table_load_csv(p, &t, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "bad-nan-table.csv:2: normalized_loss: \"nan\", expected a finite number");
    data(p, sizeof p, "cost.csv");
    CHECK(graft_stage0_table_load_csv(p, &t, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "cost.csv:1: header: no column normalized_loss");
    CHECK(graft_stage0_table_load_csv("/nonexistent.csv", &t, &err) == GRAFT_STATUS_IO);
}

static void test_spec_files(void) {
    char p[1024];
    graft_hybrid_spec *s = NULL;
    data(p, sizeof p, "good-spec.yaml");
    CHECK(graft_hybrid_spec_load(p, &s, &err) == GRAFT_STATUS_OK);
    if (s) {
        CHECK(s->n_layer == 3 && s->n_mixers == 2 && !strcmp(s->layer_types[2], "rwkv7"));
        CHECK_CONTAINS(s->weights[1], "tests/data/recipes/w/layer1-gla.safetensors");
    }
    graft_hybrid_spec_free(s);
    data(p, sizeof p, "bad-spec-weights.yaml");
    CHECK(graft_hybrid_spec_load(p, &s, &err) == GRAFT_STATUS_BAD_INPUT && s == NULL);
    CHECK_CONTAINS(err.msg, "bad-spec-weights.yaml:5:11: weights.2: 2, expected weights only for "
                            "grafted layers");
    data(p, sizeof p, "bad-unknown-key.yaml"); /* a recipe is not a spec */
    CHECK(graft_hybrid_spec_load(p, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "bad-unknown-key.yaml:1:1: model: unknown key");
    CHECK(graft_hybrid_spec_init(0, &s, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(graft_hybrid_spec_init(2, &s, &err) == GRAFT_STATUS_OK);
    if (s) {
        CHECK(graft_hybrid_spec_add_mixer(s, "full_attention", NULL, 0, &err) != 0);
        CHECK(graft_hybrid_spec_set_layer(s, 1, "gla", NULL, &err) != 0);
        CHECK_CONTAINS(err.msg, "expected full_attention or an added mixer");
    }
    graft_hybrid_spec_free(s);
}

int main(void) {
    test_original();
    test_plain_and_policies();
    test_bad_tables();
    test_spec_files();
    return test_finish("test_select");
}
