/* test_generate.c: batch generation with the decode state (generate.c) equals a full recompute
 * token for token: B = 3 prompts of different lengths (7, 3, 12 tokens), greedy and sampled
 * (temperature, top-k, top-p), with and without an early stop, for a softmax model and hybrids
 * with GLA and RWKV-7 layers. The reference re-runs graft_model_forward over the whole sequence
 * for every new token of every sequence alone and picks with the same sampler and stream. Also:
 * the fixed-length mode, batch 1 equal to the batch's sequence, the stats, prefill chunks (1, 3, 7
 * tokens per call against one call, equal and different lengths) and the refusals. */
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "plugin_loader.h"
#include "test_util.h"

enum { B = 3, N_NEW = 9, MAX_LEN = 12 + N_NEW };

static graft_qwen3_config tiny(void) {
    graft_qwen3_config c = graft_qwen3_config_default();
    c.hidden_size = 48; c.intermediate_size = 80; c.n_layer = 3; c.n_head = 4; c.n_kv_head = 2;
    c.head_dim = 12; c.vocab_size = 97; c.rms_norm_eps = 1e-6; c.rope_theta = 10000;
    c.initializer_range = 0.2; c.tie_word_embeddings = 0; c.max_position_embeddings = 256;
    return c;
}

static const int64_t lens[B] = {7, 3, 12};

/* The continuation of one prompt by full recompute: every step runs the whole sequence. */
static int64_t recompute(graft_model_t *m, const int32_t *prompt, int64_t n, const graft_generate_opts *o,
                         uint64_t stream, int32_t *out) {
    int64_t V = graft_model_config(m)->vocab_size;
    int32_t seq[MAX_LEN];
    float *logits = malloc(sizeof(float) * (size_t)(MAX_LEN * V));
    void *work = malloc(graft_generate_pick_work_bytes(V));
    graft_rng rng = graft_rng_make(o->seed, GRAFT_GENERATE_STREAM + stream);
    graft_err err = {0};
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)n);
    int64_t k = 0;
    while (k < o->max_new_tokens) {
        if (graft_model_forward(m, seq, 1, n + k, logits, NULL, 0, &err)) {
            fprintf(stderr, "recompute: %s\n", err.msg);
            CHECK(0);
            break;
        }
        int32_t id = graft_generate_pick(logits + (n + k - 1) * V, V, o, &rng, work);
        out[k] = seq[n + k] = id;
        k++;
        if (!o->fixed_length && id == o->stop_id) break;
    }
    free(logits);
    free(work);
    return k;
}

static void check_case(const char *name, graft_model_t *m, const int32_t *const *prompts, const graft_generate_opts *o) {
    int32_t out[B * N_NEW], want[N_NEW];
    int64_t n_out[B];
    graft_generate_stats gs;
    graft_err err = {0};
    if (graft_generate_batch(m, prompts, lens, B, o, out, n_out, &gs, &err)) {
        fprintf(stderr, "%s: generate: %s\n", name, err.msg);
        CHECK(0);
        return;
    }
    int64_t total = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = recompute(m, prompts[b], lens[b], o, (uint64_t)b, want);
        total += n_out[b];
        int same = n == n_out[b] && !memcmp(want, out + b * N_NEW, sizeof(int32_t) * (size_t)n);
        if (!same) {
            fprintf(stderr, "%s: sequence %lld: cached %lld tokens, recompute %lld; first ids", name, (long long)b,
                    (long long)n_out[b], (long long)n);
            for (int64_t i = 0; i < n && i < n_out[b]; i++) fprintf(stderr, " %d/%d", out[b * N_NEW + i], want[i]);
            fprintf(stderr, "\n");
        }
        CHECK(same);
    }
    CHECK(gs.n_new == total);
    CHECK(gs.state_bytes == graft_model_state_bytes(m, B, 12 + N_NEW));
    CHECK(gs.prefill_s >= 0 && gs.decode_s >= 0);
    /* each of the 3 prompts (7, 3, 12 tokens) prefilled alone, then one call per new token */
    if (o->fixed_length || o->stop_id < 0) CHECK(gs.steps == 3 + N_NEW - 1);
}

/* The worst first-token logit difference of a chunked prefill against one call, all models. */
static double chunk_worst_diff = 0, chunk_worst_rel = 0, chunk_worst_nmse = 0;

/* One prompt set prefilled in chunks of 1, 3 and 7 tokens per sequence against one call
 * (graft_generate_prefill, then graft_generate_batch): first-token logits within NMSE 1e-10 (the
 * tolerance of test_model_decode's chunked decode: the product shapes differ, so the sums round
 * differently), the same greedy tokens as one call and as a full recompute, and one step per
 * forward call. */
static void check_chunks(const char *name, graft_model_t *m, const int32_t *const *prompts, const int64_t *n) {
    static const int64_t chunks[] = {0, 1, 3, 7};
    int64_t V = graft_model_config(m)->vocab_size, Lmax = 0, P = INT64_MAX;
    for (int64_t b = 0; b < B; b++) {
        if (n[b] > Lmax) Lmax = n[b];
        if (n[b] < P) P = n[b];
    }
    const graft_backend *be = graft_model_backend(m);
    size_t bytes = graft_model_state_bytes(m, B, Lmax);
    float *ref = malloc(sizeof(float) * (size_t)(B * V)), *got = malloc(sizeof(float) * (size_t)(B * V));
    int32_t want[B * N_NEW], out[B * N_NEW], one[N_NEW];
    int64_t n_out[B];
    graft_generate_opts o = graft_generate_default_opts();
    o.max_new_tokens = N_NEW;
    graft_generate_stats gs;
    graft_err err = {0};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        int64_t c = chunks[i], calls = 0, steps = 0;
        char what[160];
        snprintf(what, sizeof what, "%s: prefill chunk %lld: first-token logits", name, (long long)c);
        void *state = be->alloc(be->ctx, bytes ? bytes : 1);
        CHECK(state != NULL);
        if (!state) break;
        graft_status st = graft_generate_prefill(m, prompts, n, B, c, state, Lmax, c ? got : ref, &steps, &err);
        be->free(be->ctx, state);
        if (st) fprintf(stderr, "%s: %s\n", what, err.msg);
        CHECK(st == GRAFT_STATUS_OK);
        if (P == Lmax) calls = c ? (P + c - 1) / c : 1; /* equal lengths: all sequences together */
        else
            for (int64_t b = 0; b < B; b++) calls += c ? (n[b] + c - 1) / c : 1;
        CHECK(steps == calls);
        if (c) {
            check_close_f32(what, got, ref, B * V, 1e-10);
            double d = 0, r = 0, num = 0, den = 0;
            for (int64_t k = 0; k < B * V; k++) {
                double e = (double)got[k] - ref[k];
                if (fabs(e) > d) d = fabs(e);
                if (fabs((double)ref[k]) > r) r = fabs((double)ref[k]);
                num += e * e;
                den += (double)ref[k] * ref[k];
            }
            if (d > chunk_worst_diff) chunk_worst_diff = d;
            if (r > 0 && d / r > chunk_worst_rel) chunk_worst_rel = d / r;
            if (den > 0 && num / den > chunk_worst_nmse) chunk_worst_nmse = num / den;
        }
        o.prefill_chunk = c;
        st = graft_generate_batch(m, prompts, n, B, &o, c ? out : want, n_out, &gs, &err);
        if (st) fprintf(stderr, "%s: prefill chunk %lld: generate: %s\n", name, (long long)c, err.msg);
        CHECK(st == GRAFT_STATUS_OK);
        CHECK(gs.steps == calls + N_NEW - 1);
        if (!c) {
            for (int64_t b = 0; b < B; b++) {
                int64_t k = recompute(m, prompts[b], n[b], &o, (uint64_t)b, one);
                CHECK(k == N_NEW && n_out[b] == N_NEW && !memcmp(one, want + b * N_NEW, sizeof one));
            }
        } else if (memcmp(out, want, sizeof out)) {
            fprintf(stderr, "%s: prefill chunk %lld: greedy tokens differ from one call\n", name, (long long)c);
            CHECK(0);
        }
    }
    free(ref);
    free(got);
}

static void run_model(const char *name, const graft_layer_spec *specs) {
    graft_qwen3_config c = tiny();
    graft_err err = {0};
    graft_model_t *m = NULL;
    if (graft_model_create(&c, specs, &m, &err)) {
        fprintf(stderr, "%s: create: %s\n", name, err.msg);
        CHECK(0);
        return;
    }
    CHECK(graft_model_init_random(m, 7, &err) == GRAFT_STATUS_OK);
    int32_t p[B][12];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < 12; t++) p[b][t] = (int32_t)((t * 37 + b * 11 + 5) % c.vocab_size);
    const int32_t *prompts[B] = {p[0], p[1], p[2]};
    char what[96];
    graft_generate_opts o = graft_generate_default_opts();
    o.max_new_tokens = N_NEW;
    snprintf(what, sizeof what, "%s greedy", name);
    check_case(what, m, prompts, &o);

    o.greedy = 0;
    o.temperature = 0.9;
    o.top_k = 20;
    o.top_p = 0.9;
    o.seed = 42;
    snprintf(what, sizeof what, "%s sampled", name);
    check_case(what, m, prompts, &o);

    /* an early stop: the id sequence 0 emits third in the greedy run stops it there */
    graft_generate_opts g = graft_generate_default_opts();
    g.max_new_tokens = N_NEW;
    int32_t first[N_NEW];
    recompute(m, prompts[0], lens[0], &g, 0, first);
    g.stop_id = first[2];
    snprintf(what, sizeof what, "%s greedy stop", name);
    check_case(what, m, prompts, &g);
    int32_t out[B * N_NEW];
    int64_t n_out[B];
    graft_generate_stats gs;
    CHECK(graft_generate_batch(m, prompts, lens, B, &g, out, n_out, &gs, &err) == GRAFT_STATUS_OK);
    CHECK(n_out[0] <= 3 && out[n_out[0] - 1] == g.stop_id);
    g.fixed_length = 1;
    snprintf(what, sizeof what, "%s greedy fixed length", name);
    check_case(what, m, prompts, &g);
    CHECK(graft_generate_batch(m, prompts, lens, B, &g, out, n_out, &gs, &err) == GRAFT_STATUS_OK);
    CHECK(n_out[0] == N_NEW && n_out[1] == N_NEW && n_out[2] == N_NEW && gs.n_new == B * N_NEW);

    /* batch 1 (graft_generate) gives sequence 0 of the batch */
    int32_t one[N_NEW];
    o.max_new_tokens = N_NEW;
    CHECK(graft_generate(m, prompts[0], lens[0], &o, one, &gs, &err) == GRAFT_STATUS_OK);
    CHECK(graft_generate_batch(m, prompts, lens, B, &o, out, n_out, &gs, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(one, out, sizeof one));

    /* prefill chunks: equal lengths (10 tokens: 3 and 7 do not divide it) and different ones */
    static const int64_t equal[B] = {10, 10, 10}, uneven[B] = {5, 9, 12};
    snprintf(what, sizeof what, "%s equal lengths", name);
    check_chunks(what, m, prompts, equal);
    snprintf(what, sizeof what, "%s lengths 5, 9, 12", name);
    check_chunks(what, m, prompts, uneven);
    graft_model_free(m);
}

static void refusals(void) {
    graft_qwen3_config c = tiny();
    graft_err err = {0};
    graft_model_t *m = NULL;
    CHECK(graft_model_create(&c, NULL, &m, &err) == GRAFT_STATUS_OK);
    int32_t ok[3] = {1, 2, 3}, bad[3] = {1, 97, 3};
    const int32_t *pr[2] = {ok, bad};
    int64_t n[2] = {3, 3}, n_out[2];
    int32_t out[8];
    graft_generate_stats gs;
    graft_generate_opts o = graft_generate_default_opts();
    o.max_new_tokens = 4;
    CHECK(graft_generate_batch(m, pr, n, 2, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "prompt 1: token id 97 at position 1, expected 0..96") != NULL);
    n[0] = 0;
    CHECK(graft_generate_batch(m, pr, n, 1, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "prompt 0 has 0 tokens") != NULL);
    n[0] = 3;
    CHECK(graft_generate_batch(m, pr, n, 0, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    o.max_new_tokens = 0;
    CHECK(graft_generate_batch(m, pr, n, 1, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "max_new_tokens 0") != NULL);
    o.max_new_tokens = 4;
    o.greedy = 0;
    o.temperature = 0;
    CHECK(graft_generate_batch(m, pr, n, 1, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "temperature 0") != NULL);
    o.temperature = 1;
    o.top_p = 1.5;
    CHECK(graft_generate_batch(m, pr, n, 1, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "top_p 1.5") != NULL);
    o.top_p = 1;
    o.prefill_chunk = -1;
    CHECK(graft_generate_batch(m, pr, n, 1, &o, out, n_out, &gs, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "generate: prefill_chunk -1, expected >= 0 (0 = each prompt in one call)") != NULL);
    float logits[97];
    int64_t steps = 0;
    char state[8];
    CHECK(graft_generate_prefill(m, pr, n, 1, -1, state, 3, logits, &steps, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(strstr(err.msg, "prefill_chunk -1") != NULL && steps == 0);
    graft_model_free(m);
}

int main(void) {
    run_model("softmax", NULL);
    graft_loaded_plugin *p = NULL;
    graft_err err = {0};
    /* the plugins are part of the build: failing to load one is a failure, not a skip */
    CHECK(graft_plugin_load("gla", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    graft_plugin_unload(p);
    {
        graft_kv kv[] = {{"num_heads", "4", NULL}, {"gate_low_rank_dim", "4", NULL}};
        graft_layer_spec s[3] = {{"softmax", NULL, 0, NULL}, {"gla", kv, 2, NULL}, {"gla", kv, 2, NULL}};
        run_model("hybrid gla", s);
    }
    p = NULL;
    CHECK(graft_plugin_load("rwkv7", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    graft_plugin_unload(p);
    {
        graft_kv kv[] = {{"head_dim", "12", NULL}, {"decay_low_rank_dim", "4", NULL}, {"a_low_rank_dim", "4", NULL},
                         {"v_low_rank_dim", "2", NULL}, {"gate_low_rank_dim", "4", NULL}};
        graft_layer_spec s[3] = {{"rwkv7", kv, 5, NULL}, {"softmax", NULL, 0, NULL}, {"rwkv7", kv, 5, NULL}};
        run_model("hybrid rwkv7", s);
    }
    refusals();
    printf("test_generate: chunked vs one-call prefill, first-token logits, worst case: max |diff| %.3e, relative to "
           "max |logit| %.3e, NMSE %.3e\n", chunk_worst_diff, chunk_worst_rel, chunk_worst_nmse);
    return test_finish("test_generate");
}
