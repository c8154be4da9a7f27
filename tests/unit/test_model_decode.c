/* test_model_decode.c: decoding with the cache (graft_model_forward_state, one token at a time
 * and in uneven chunks) equals the full forward's logits at every position, for a tiny Qwen3
 * (softmax layers) and, when the plugins are built, hybrids with GLA and RWKV-7 layers. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "plugin_loader.h"
#include "test_util.h"

static graft_qwen3_config tiny(void) {
    graft_qwen3_config c = graft_qwen3_config_default();
    c.hidden_size = 48; c.intermediate_size = 80; c.n_layer = 3; c.n_head = 4; c.n_kv_head = 2;
    c.head_dim = 12; c.vocab_size = 97; c.rms_norm_eps = 1e-6; c.rope_theta = 10000;
    c.initializer_range = 0.2; c.tie_word_embeddings = 0; c.max_position_embeddings = 256;
    return c;
}

static void run_case(const char *name, const graft_layer_spec *specs) {
    graft_qwen3_config c = tiny();
    graft_err err = {0};
    graft_model_t *m = NULL;
    if (graft_model_create(&c, specs, &m, &err)) {
        fprintf(stderr, "%s: create: %s\n", name, err.msg);
        CHECK(0);
        return;
    }
    CHECK(graft_model_init_random(m, 7, &err) == GRAFT_STATUS_OK);
    int64_t B = 2, T = 11, V = c.vocab_size, cap = 16;
    int32_t ids[22];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % (int)V;
    float *full = malloc(sizeof(float) * (size_t)(B * T * V));
    CHECK(graft_model_forward(m, ids, B, T, full, NULL, 0, &err) == GRAFT_STATUS_OK);
    size_t sb = graft_model_state_bytes(m, B, cap);
    void *state = calloc(1, sb ? sb : 1);
    float *last = malloc(sizeof(float) * (size_t)(B * V));
    float *want = malloc(sizeof(float) * (size_t)(B * V));
    int64_t past[2] = {0, 0};
    /* prefill 4 tokens, then 1 at a time, then a chunk of 3, then singles */
    int64_t steps[] = {4, 1, 1, 3, 1, 1};
    int64_t t0 = 0;
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        int64_t n = steps[s];
        int32_t chunk[2 * 16];
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < n; t++) chunk[b * n + t] = ids[b * T + t0 + t];
        if (graft_model_forward_state(m, chunk, B, n, state, cap, t0 ? past : NULL, last, &err)) {
            fprintf(stderr, "%s: decode: %s\n", name, err.msg);
            CHECK(0);
            break;
        }
        t0 += n;
        for (int64_t b = 0; b < B; b++) {
            past[b] = t0;
            memcpy(want + b * V, full + (b * T + t0 - 1) * V, sizeof(float) * (size_t)V);
        }
        char what[96];
        snprintf(what, sizeof what, "%s: logits after %lld tokens", name, (long long)t0);
        check_close_f32(what, last, want, B * V, 1e-10);
    }
    /* the device greedy pick is refused on the CPU, naming the backend, with nothing run */
    int32_t next[2] = {-1, -1};
    memset(&err, 0, sizeof err);
    CHECK(!graft_model_picks_on_device(m));
    CHECK(graft_model_forward_state_greedy(m, ids, B, 1, state, cap, past, next, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK(strstr(err.msg, "cpu backend has no device greedy pick") != NULL);
    CHECK(next[0] == -1 && next[1] == -1);
    free(full); free(state); free(last); free(want);
    graft_model_free(m);
}

int main(void) {
    run_case("softmax", NULL);
    graft_loaded_plugin *p = NULL;
    graft_err err = {0};
    /* the plugins are part of the build: failing to load one is a failure, not a skip */
    CHECK(graft_plugin_load("gla", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    graft_plugin_unload(p);
    {
        graft_kv kv[] = {{"num_heads", "4", NULL}, {"gate_low_rank_dim", "4", NULL}};
        graft_layer_spec s[3] = {{"softmax", NULL, 0, NULL}, {"gla", kv, 2, NULL}, {"softmax", NULL, 0, NULL}};
        run_case("hybrid gla", s);
    }
    p = NULL;
    CHECK(graft_plugin_load("rwkv7", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    graft_plugin_unload(p);
    {
        graft_kv kv[] = {{"head_dim", "12", NULL}, {"decay_low_rank_dim", "4", NULL}, {"a_low_rank_dim", "4", NULL},
                         {"v_low_rank_dim", "2", NULL}, {"gate_low_rank_dim", "4", NULL}};
        graft_layer_spec s[3] = {{"rwkv7", kv, 5, NULL}, {"softmax", NULL, 0, NULL}, {"rwkv7", kv, 5, NULL}};
        run_case("hybrid rwkv7", s);
    }
    return test_finish("test_model_decode");
}
