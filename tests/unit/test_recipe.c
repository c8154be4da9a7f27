/* test_recipe.c: recipe loading and validation (recipe.c): every shipped recipe loads, defaults
 * and path resolution, and one crafted file per refusal with its message asserted. */
#include <stdlib.h>
#include <unistd.h>

#include "recipe.h"
#include "test_util.h"

static const char *const known[] = {"softmax", "gla", "rwkv7", NULL};
static graft_err err;

static void path_of(char *buf, size_t size, const char *rel) {
    snprintf(buf, size, "%s/%s", GRAFT_SOURCE_DIR, rel);
}

static graft_recipe *load_ok(const char *rel) {
    char p[1024];
    path_of(p, sizeof p, rel);
    graft_recipe *r = NULL;
    err.msg[0] = 0;
    graft_status st = graft_recipe_load(p, known, &r, &err);
    if (st) fprintf(stderr, "%s: %s\n", rel, err.msg);
    CHECK(st == GRAFT_STATUS_OK && r != NULL);
    return r;
}

static void expect_bad(const char *rel, const char *needle1, const char *needle2) {
    char p[1024];
    path_of(p, sizeof p, rel);
    graft_recipe *r = NULL;
    err.msg[0] = 0;
    graft_status st = graft_recipe_load(p, known, &r, &err);
    CHECK(st == GRAFT_STATUS_BAD_INPUT);
    CHECK(r == NULL);
    CHECK_CONTAINS(err.msg, needle1);
    if (needle2) CHECK_CONTAINS(err.msg, needle2);
}

static void test_shipped(void) {
    static const char *const files[] = {"recipes/demo.yaml", "recipes/original-experiment/stage0.yaml",
                                        "recipes/original-experiment/select.yaml",
                                        "recipes/original-experiment/stage1.yaml",
                                        "recipes/tests/tiny-stage0.yaml",
                                        "recipes/tests/tiny-select-list.yaml", NULL};
    for (const char *const *f = files; *f; f++) {
        graft_recipe *r = load_ok(*f);
        if (r) CHECK(graft_recipe_check_layers(r, 28, &err) == GRAFT_STATUS_OK);
        graft_recipe_free(r);
    }
}

static void test_demo(void) {
    graft_recipe *r = load_ok("recipes/demo.yaml");
    if (!r) return;
    CHECK(r->model.random_init == 1 && r->model.seed == 1);
    CHECK_CONTAINS(r->model.config, "/recipes/models/demo-tiny.json");
    CHECK(r->model.config[0] == '/');
    CHECK(r->teacher_is_model == 1);
    CHECK(r->has_data && r->data.n_train == 1 && r->data.heldout_fraction == 0.05);
    CHECK(r->data.seed == 1234 && r->seed == 1234);
    CHECK(!strcmp(r->device, "cpu") && !r->device_cuda);
    CHECK(r->n_stages == 5);
    CHECK(graft_recipe_check_layers(r, 4, &err) == GRAFT_STATUS_OK);
    const graft_stage0_params *s0 = graft_stage_stage0(&r->stages[1]);
    CHECK(s0 && s0->layers.all && s0->n_mixers == 2);
    CHECK(s0 && !strcmp(s0->mixers[0].name, "gla") && s0->mixers[0].n_kv == 6);
    CHECK(s0 && !strcmp(s0->mixers[0].kv[0].key, "num_heads") &&
          !strcmp(s0->mixers[0].kv[0].value, "4"));
    CHECK_CONTAINS(s0 ? s0->mixers[0].kv[0].where : NULL, "recipes/demo.yaml:31:");
    CHECK(s0 && s0->init == GRAFT_STAGE0_INIT_TEACHER && s0->train_mixer && !s0->train_mlp);
    CHECK(s0 && !strcmp(s0->loss, "nmse"));
    CHECK(graft_stage_select(&r->stages[1]) == NULL);
    const graft_train_params *t0 = graft_stage_train(&r->stages[1]);
    CHECK(t0 && t0->steps == 100 && t0->accum == 1 && t0->lr == 2e-3 && t0->beta2 == 0.95);
    const graft_select_params *sel = graft_stage_select(&r->stages[2]);
    CHECK(sel && sel->policy == GRAFT_SELECT_PERCENTILE && sel->n_percentiles == 1 &&
          sel->percentiles[0] == 50 && sel->n_ranges == 2);
    const graft_stage1_params *s1 = graft_stage_stage1(&r->stages[3]);
    CHECK(s1 && s1->n_phases == 2 && s1->k == 32 && s1->alpha == 0.5 && s1->temperature == 4);
    CHECK(r->stages[3].train.steps == 160);
    CHECK_CONTAINS(s1 ? s1->spec : NULL, "runs/demo/hybrid.yaml"); /* the select output */
    const graft_eval_params *ev = graft_stage_eval(&r->stages[4]);
    CHECK(ev && ev->n_models == 2 && ev->models[1].kind == GRAFT_MODEL_CHOICE_HYBRID);
    CHECK_CONTAINS(ev ? ev->models[1].path : NULL, "runs/demo/hybrid");
    CHECK(ev && ev->has_generate && ev->generate.n_prompts == 2 &&
          ev->generate.max_new_tokens == 48 && ev->generate.top_p == 1.0);
    /* layer checks against a model with fewer layers: "all" is fine, the select ranges are not */
    CHECK(graft_recipe_check_layers(r, 1, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "stages[2].ranges.gla");
    graft_recipe_free(r);
}

static void test_original(void) {
    graft_recipe *r = load_ok("recipes/original-experiment/stage1.yaml");
    if (r) {
        const graft_stage1_params *s1 = graft_stage_stage1(&r->stages[0]);
        CHECK(!r->teacher_is_model);
        CHECK_CONTAINS(r->teacher.path, "models/Qwen3-8B");
        CHECK(s1 && s1->n_phases == 2 && s1->phases[0].steps == 3000 && s1->phases[0].batch == 8 &&
              s1->phases[0].seq_len == 512 && s1->phases[1].steps == 5000 &&
              s1->phases[1].batch == 4 && s1->phases[1].seq_len == 1024);
        CHECK(r->stages[0].train.lr == 5e-5 && r->stages[0].train.warmup == 200);
        CHECK(r->device_cuda && r->device_index == 0);
        const graft_bench_params *b = graft_stage_bench(&r->stages[2]);
        CHECK(b && b->n_contexts == 2 && b->contexts[1] == 3000 && b->gen_tokens == 150);
        CHECK(b && b->prefill_chunk == 0); /* the default: automatic */
    }
    graft_recipe_free(r);
    r = load_ok("recipes/original-experiment/select.yaml");
    if (r) {
        const graft_select_params *s = graft_stage_select(&r->stages[0]);
        char out[4096];
        CHECK(s && s->n_percentiles == 3 && s->n_ranges == 2);
        CHECK(s && s->ranges[1].layers.ranges[0].lo == 10 && s->ranges[1].layers.ranges[0].hi == 21);
        if (s) {
            graft_select_out_path(s, 25, out, sizeof out);
            CHECK_CONTAINS(out, "runs/original/top25.yaml");
        }
        CHECK(graft_recipe_check_layers(r, 28, &err) == GRAFT_STATUS_OK);
        CHECK(graft_recipe_check_layers(r, 20, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "select.yaml:13:15: stages[0].ranges.rwkv7[0]: 10-21, expected layers in 0..19");
    }
    graft_recipe_free(r);
    r = load_ok("recipes/original-experiment/stage0.yaml");
    if (r) {
        CHECK(graft_recipe_check_layers(r, 28, &err) == GRAFT_STATUS_OK);
        CHECK(graft_recipe_check_layers(r, 16, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "stage0.yaml:13:14: stages[0].layers[0]: 0-27, expected layers in 0..15");
        const graft_stage0_params *s0 = graft_stage_stage0(&r->stages[0]);
        CHECK(s0 && s0->n_mixers == 2 && s0->mixers[1].n_kv == 7);
    }
    graft_recipe_free(r);
}

static void test_refusals(void) {
    expect_bad("tests/data/recipes/bad-invalid-yaml.yaml", "bad-invalid-yaml.yaml:6:1: invalid YAML:", NULL);
    expect_bad("tests/data/recipes/bad-unknown-key.yaml",
               "bad-unknown-key.yaml:6:5: stages[0].stpes: unknown key (did you mean steps?)",
               "expected one of: kind, steps");
    expect_bad("tests/data/recipes/bad-wrong-type.yaml",
               "bad-wrong-type.yaml:9:9: stages[0].lr: fast, expected a number > 0", NULL);
    expect_bad("tests/data/recipes/bad-unknown-mixer.yaml",
               "bad-unknown-mixer.yaml:7:14: stages[0].mixers.glaa: unknown mixer \"glaa\" (did you "
               "mean gla?)", "softmax, gla, rwkv7");
    expect_bad("tests/data/recipes/bad-billion-laughs.yaml",
               "bad-billion-laughs.yaml:2:4: anchor &a: anchors are not allowed in recipes", NULL);
    expect_bad("tests/data/recipes/bad-deep-nesting.yaml", "nesting deeper than 32 levels", NULL);
    expect_bad("tests/data/recipes/bad-duplicate-key.yaml",
               "bad-duplicate-key.yaml:4:1: seed: duplicate key (first at 3:1)", NULL);
    expect_bad("tests/data/recipes/empty.yaml", "empty.yaml: empty file, expected a recipe", NULL);
    expect_bad("tests/data/recipes/bad-missing-stages.yaml",
               "bad-missing-stages.yaml:1:1: stages: missing, expected a non-empty list of stages", NULL);
    expect_bad("tests/data/recipes/bad-unknown-kind.yaml",
               "bad-unknown-kind.yaml:8:11: stages[1].kind: stage2 (did you mean stage0?), expected "
               "one of: pretrain, stage0, select, stage1, eval, bench", NULL);
    expect_bad("tests/data/recipes/bad-seq-len.yaml",
               "bad-seq-len.yaml:12:39: stages[0].phases[3].seq_len: -4, expected an integer >= 1", NULL);
    expect_bad("tests/data/recipes/bad-alpha.yaml",
               "bad-alpha.yaml:8:12: stages[0].alpha: 1.5, expected a number in [0, 1]", NULL);
    expect_bad("tests/data/recipes/bad-percentile-out.yaml",
               "stages[0].out: h.yaml, expected a path containing {p}", NULL);
    expect_bad("tests/data/recipes/bad-missing-data.yaml", "data: missing, expected a map", NULL);
    expect_bad("tests/data/recipes/bad-prefill-chunk.yaml",
               "bad-prefill-chunk.yaml:6:20: stages[0].prefill_chunk: -2, expected an integer >= -1", NULL);

    /* the bench's prefill chunk: a size, and -1 (never chunk) */
    graft_recipe *g = load_ok("tests/data/recipes/good-bench-chunk.yaml");
    if (g) {
        const graft_bench_params *b0 = graft_stage_bench(&g->stages[0]), *b1 = graft_stage_bench(&g->stages[1]);
        CHECK(b0 && b0->prefill_chunk == 2048 && b0->n_batches == 2);
        CHECK(b1 && b1->prefill_chunk == -1);
    }
    graft_recipe_free(g);

    /* layer out of range is checked once the model's layer count is known */
    graft_recipe *r = load_ok("tests/data/recipes/bad-layer-range.yaml");
    if (r) {
        CHECK(graft_recipe_check_layers(r, 6, &err) == GRAFT_STATUS_OK);
        CHECK(graft_recipe_check_layers(r, 4, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "bad-layer-range.yaml:6:17: stages[0].layers[1]: 2-5, expected "
                                "layers in 0..3 (0-based; the model has 4 layers)");
        int64_t l[8];
        CHECK(graft_layer_set_expand(&r->stages[0].as.stage0.layers, 6, l) == 5 && l[0] == 0 &&
              l[1] == 2 && l[4] == 5);
    }
    graft_recipe_free(r);

    /* no known mixer list: names are not checked */
    char p[1024];
    path_of(p, sizeof p, "tests/data/recipes/bad-unknown-mixer.yaml");
    CHECK(graft_recipe_load(p, NULL, &r, &err) == GRAFT_STATUS_OK);
    graft_recipe_free(r);

    /* huge file, missing file */
    char tmpl[] = "/tmp/graft-test-recipe-XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0);
    if (fd >= 0) {
        FILE *f = fdopen(fd, "wb");
        fputs("model: m\n", f);
        for (int i = 0; i < 70000; i++) fputs("# padding padding\n", f);
        fclose(f);
        CHECK(graft_recipe_load(tmpl, known, &r, &err) == GRAFT_STATUS_BAD_INPUT && r == NULL);
        CHECK_CONTAINS(err.msg, "file larger than 1 MiB");
        unlink(tmpl);
    }
    CHECK(graft_recipe_load("/nonexistent/recipe.yaml", known, &r, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "/nonexistent/recipe.yaml: cannot open");
}

int main(void) {
    test_shipped();
    test_demo();
    test_original();
    test_refusals();
    return test_finish("test_recipe");
}
