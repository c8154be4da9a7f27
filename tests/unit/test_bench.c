/* test_bench.c: the generation benchmark's prefill chunk (bench.c): the automatic rule and an
 * explicit chunk resolved by graft_bench_prefill_chunk, the chunk a measurement records, the table
 * column, and the refusals. Timings are not checked beyond being positive (speed belongs to
 * bench/). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "test_util.h"

static graft_qwen3_config tiny(void) {
    graft_qwen3_config c = graft_qwen3_config_default();
    c.hidden_size = 48; c.intermediate_size = 80; c.n_layer = 2; c.n_head = 4; c.n_kv_head = 2;
    c.head_dim = 12; c.vocab_size = 97; c.rms_norm_eps = 1e-6; c.rope_theta = 10000;
    c.initializer_range = 0.2; c.tie_word_embeddings = 0; c.max_position_embeddings = 256;
    return c;
}

static void test_rule(void) {
    const int64_t T = GRAFT_BENCH_PREFILL_TOKENS;
    /* automatic: one call up to T tokens per call, then T / batch tokens per sequence */
    CHECK(graft_bench_prefill_chunk(1, 128, 0) == 0);
    CHECK(graft_bench_prefill_chunk(1, T, 0) == 0);
    CHECK(graft_bench_prefill_chunk(1, T + 1, 0) == T);
    CHECK(graft_bench_prefill_chunk(16, T / 16, 0) == 0);
    CHECK(graft_bench_prefill_chunk(16, T / 16 + 1, 0) == T / 16);
    CHECK(graft_bench_prefill_chunk(16, 32768, 0) == 4096);
    CHECK(graft_bench_prefill_chunk(3, 32768, 0) == T / 3);
    CHECK(graft_bench_prefill_chunk(T * 2, 2, 0) == 1); /* never below one token */
    CHECK(graft_bench_prefill_chunk(INT64_MAX, INT64_MAX, 0) == 1); /* no overflow in batch x context */
    /* an explicit chunk, 0 where it covers the whole prompt */
    CHECK(graft_bench_prefill_chunk(16, 32768, 1024) == 1024);
    CHECK(graft_bench_prefill_chunk(1, 100, 99) == 99);
    CHECK(graft_bench_prefill_chunk(1, 100, 100) == 0);
    CHECK(graft_bench_prefill_chunk(1, 100, 5000) == 0);
    /* never chunk */
    CHECK(graft_bench_prefill_chunk(16, 32768, -1) == 0);
    CHECK(graft_bench_prefill_chunk(1, 1, -1) == 0);
}

static graft_status load_tiny(void *ctx, int64_t i, graft_model_t **out, graft_err *err) {
    (void)ctx;
    graft_qwen3_config c = tiny();
    graft_status st = graft_model_create(&c, NULL, out, err);
    if (!st) st = graft_model_init_random(*out, 7 + (uint64_t)i, err);
    return st;
}

static void test_measure(void) {
    graft_model_t *m = NULL;
    graft_err err = {0};
    CHECK(load_tiny(NULL, 0, &m, &err) == GRAFT_STATUS_OK);
    if (!m) return;
    graft_bench_point q;
    CHECK(graft_bench_measure(m, 10, 2, 3, 3, 1, &q, &err) == GRAFT_STATUS_OK);
    CHECK(q.context == 10 && q.batch == 2 && q.gen_tokens == 3 && q.prefill_chunk == 3);
    CHECK(q.ttft_ms > 0 && q.state_bytes == (int64_t)graft_model_state_bytes(m, 2, 13));
    /* a chunk of the whole prompt or more is one call, recorded as 0 */
    CHECK(graft_bench_measure(m, 10, 2, 3, 10, 1, &q, &err) == GRAFT_STATUS_OK && q.prefill_chunk == 0);
    CHECK(graft_bench_measure(m, 10, 2, 3, 0, 1, &q, &err) == GRAFT_STATUS_OK && q.prefill_chunk == 0);
    CHECK(graft_bench_measure(m, 10, 2, 3, -1, 1, &q, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "bench: prefill_chunk -1, expected >= 0 (0 = the whole prompt in one call)");
    /* one new token: nothing decoded after the prefill (tok/s NaN), and the warm-up writes no more
     * tokens than gen holds (it wrote 2 a sequence into room for 1 before 2026-12-07: ASan) */
    CHECK(graft_bench_measure(m, 10, 2, 1, 0, 1, &q, &err) == GRAFT_STATUS_OK);
    CHECK(q.gen_tokens == 1 && q.ttft_ms > 0 && isnan(q.decode_tok_s));
    graft_model_free(m);
}

/* The table names the chunk of every row ("-": one call); a plan chunk below -1 is refused. */
static void test_run(void) {
    static const char *const names[] = {"control"};
    static const int64_t contexts[] = {10}, batches[] = {1, 2};
    graft_err err = {0};
    char text[4096] = {0};
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    graft_bench_plan p = {.names = names, .n_models = 1, .load = load_tiny, .baseline = 0, .contexts = contexts,
                          .n_contexts = 1, .batches = batches, .n_batches = 2, .gen_tokens = 2,
                          .prefill_chunk = 4, .repeat = 1, .out = f};
    CHECK(graft_bench_run(&p, NULL, 0, &err) == GRAFT_STATUS_OK);
    p.prefill_chunk = 0; /* automatic: 10 or 20 tokens fit one call */
    CHECK(graft_bench_run(&p, NULL, 0, &err) == GRAFT_STATUS_OK);
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    CHECK_CONTAINS(text, " chunk ");
    CHECK_CONTAINS(text, "      10     1      4 ");
    CHECK_CONTAINS(text, "      10     2      4 ");
    CHECK_CONTAINS(text, "      10     2      - ");
    p.prefill_chunk = -2;
    p.out = stdout;
    CHECK(graft_bench_run(&p, NULL, 0, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "bench: prefill_chunk -2, expected >= -1 (0 = automatic, -1 = never chunk)");
}

int main(void) {
    test_rule();
    test_measure();
    test_run();
    return test_finish("test_bench");
}
