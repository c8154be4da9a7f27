/* test_assembly.c: DESIGN "Assembly preserves function". A tiny random Qwen3 runs a short
 * Stage 0 (GLA on layer 0, RWKV-7 on layers 1 and 2); then
 *  1. for every student, a hybrid grafted at that layer alone, run teacher-forced on the
 *     teacher's residual stream (graft_model_forward_layers), gives the same held-out normalized
 *     loss as Stage 0 reported for the student (so the saved, reloaded student is what trained);
 *  2. the full hybrid (GLA at 0, RWKV-7 producer at 1, RWKV-7 consumer at 2 whose v_first gate
 *     starts closed) computes, teacher-forced, each grafted layer's output exactly as the
 *     single-layer hybrid of its student does: the hybrid Stage 1 starts from is the students;
 *  3. the assembly note lists the consumer's gate parameters as keeping their init. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"
#include "hybrid.h"
#include "model.h"
#include "shard.h"
#include "stage0.h"
#include "test_util.h"

static graft_qwen3_config tiny(void) {
    graft_qwen3_config c = graft_qwen3_config_default();
    c.hidden_size = 32; c.intermediate_size = 64; c.n_layer = 3; c.n_head = 4; c.n_kv_head = 2;
    c.head_dim = 8; c.vocab_size = 61; c.rms_norm_eps = 1e-6; c.rope_theta = 10000;
    c.initializer_range = 0.2; c.tie_word_embeddings = 1; c.max_position_embeddings = 256;
    return c;
}

static const graft_kv gla_kv[] = {{"num_heads", "4", "test"}};
static const graft_kv rwkv_kv[] = {{"head_dim", "8", "test"}, {"decay_low_rank_dim", "4", "test"},
                                   {"gate_low_rank_dim", "4", "test"}, {"a_low_rank_dim", "4", "test"},
                                   {"v_low_rank_dim", "4", "test"}};

/* sum ||out - target||^2 and sum ||input - target||^2 over n floats */
static void sums(const float *out, const float *in, const float *target, int64_t n, double *num, double *den) {
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - target[i], e = (double)in[i] - target[i];
        *num += d * d;
        *den += e * e;
    }
}

int main(void) {
    graft_err err = {0};
    char dir[] = "/tmp/graft-assembly-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char shard[256], out[256];
    snprintf(shard, sizeof shard, "%s/train.tok", dir);
    snprintf(out, sizeof out, "%s/stage0", dir);
    graft_qwen3_config c = tiny();
    /* data: a noisy repeating pattern, so the students have something to learn */
    graft_shard_writer_t *w = NULL;
    CHECK(graft_shard_writer_open(shard, (uint64_t)c.vocab_size, 1, 0, &w, &err) == GRAFT_STATUS_OK);
    uint64_t x = 12345;
    for (int i = 0; i < 6000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t id = (uint32_t)((i * 7 + (int)((x >> 33) % 5)) % (c.vocab_size - 1)) + 1;
        CHECK(graft_shard_writer_append(w, &id, 1, &err) == GRAFT_STATUS_OK);
    }
    CHECK(graft_shard_writer_close(w, &err) == GRAFT_STATUS_OK);

    graft_model_t *teacher = NULL;
    CHECK(graft_model_create(&c, NULL, &teacher, &err) == GRAFT_STATUS_OK);
    CHECK(graft_model_init_random(teacher, 3, &err) == GRAFT_STATUS_OK);
    int64_t B = 2, T = 16, C = c.hidden_size, L = c.n_layer, N = B * T;
    graft_data_params dp = graft_data_default_params();
    dp.B = B; dp.T = T; dp.seed = 9; dp.holdout_fraction = 0.1; dp.max_vocab = (uint64_t)c.vocab_size;
    const char *paths[] = {shard};
    graft_data_t *data = NULL;
    if (graft_data_open(paths, 1, &dp, &data, &err)) {
        fprintf(stderr, "data: %s\n", err.msg);
        return 1;
    }
    graft_stage0_pair pairs[3] = {{0, "gla", gla_kv, 1, "test"}, {1, "rwkv7", rwkv_kv, 5, "test"},
                                  {2, "rwkv7", rwkv_kv, 5, "test"}};
    graft_stage0_opts o = graft_stage0_default_opts();
    o.steps = 6; o.batch = B; o.seq_len = T; o.lr = 3e-3; o.warmup = 1; o.eval_batches = 3; o.seed = 5;
    o.out_dir = out;
    graft_stage0_result res[3];
    if (graft_stage0_run(teacher, data, pairs, 3, &o, NULL, res, &err)) {
        fprintf(stderr, "stage0: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < 3; i++) CHECK(res[i].heldout_nloss > 0 && res[i].heldout_nloss < 10);

    /* teacher hidden states of the held-out batches Stage 0 evaluated on */
    int64_t n_eval = 3;
    float *hidden = malloc(sizeof(float) * (size_t)(n_eval * (L + 1) * N * C));
    float *single = malloc(sizeof(float) * (size_t)(n_eval * 3 * L * N * C)); /* per pair, per batch */
    float *full = malloc(sizeof(float) * (size_t)(L * N * C));
    float *delta_a = malloc(sizeof(float) * (size_t)(N * C)), *delta_b = malloc(sizeof(float) * (size_t)(N * C));
    uint32_t win[2 * 17];
    int32_t ids[2 * 16];
    int64_t rows[3] = {0};
    for (int64_t e = 0; e < n_eval; e++) {
        CHECK(graft_data_eval_batch(data, (uint64_t)e, win, &rows[e], &err) == GRAFT_STATUS_OK);
        CHECK(rows[e] == B);
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t < T; t++) ids[r * T + t] = (int32_t)win[r * (T + 1) + t];
        CHECK(graft_model_forward(teacher, ids, B, T, NULL, hidden + e * (L + 1) * N * C, 0, &err) == GRAFT_STATUS_OK);
    }
    /* 1: each student alone */
    for (int i = 0; i < 3; i++) {
        graft_hybrid_layer hl[3] = {{0}};
        hl[pairs[i].layer] = (graft_hybrid_layer){pairs[i].mixer, pairs[i].kv, pairs[i].n_kv, "test", res[i].checkpoint};
        graft_model_t *h = NULL;
        if (graft_hybrid_assemble(teacher, hl, 77, &h, NULL, &err)) {
            fprintf(stderr, "assemble %d: %s\n", i, err.msg);
            CHECK(0);
            continue;
        }
        double num = 0, den = 0;
        int64_t l = pairs[i].layer;
        for (int64_t e = 0; e < n_eval; e++) {
            float *dst = single + ((int64_t)i * n_eval + e) * L * N * C;
            const float *he = hidden + e * (L + 1) * N * C;
            CHECK(graft_model_forward_layers(h, he, B, T, dst, &err) == GRAFT_STATUS_OK);
            sums(dst + l * N * C, he + l * N * C, he + (l + 1) * N * C, N * C, &num, &den);
        }
        double nloss = num / den, rel = fabs(nloss - res[i].heldout_nloss) / res[i].heldout_nloss;
        printf("student layer %lld %s: Stage 0 held-out nloss %.9f, single-layer hybrid %.9f (rel diff %.2e)\n",
               (long long)l, pairs[i].mixer, res[i].heldout_nloss, nloss, rel);
        CHECK(rel < 1e-6);
        graft_model_free(h);
    }
    /* 2 and 3: the full hybrid, RWKV-7 at 1 (producer) and 2 (consumer) */
    graft_hybrid_layer hl[3] = {{"gla", gla_kv, 1, "test", res[0].checkpoint},
                                {"rwkv7", rwkv_kv, 5, "test", res[1].checkpoint},
                                {"rwkv7", rwkv_kv, 5, "test", res[2].checkpoint}};
    graft_model_t *h = NULL;
    char *note = NULL;
    if (graft_hybrid_assemble(teacher, hl, 77, &h, &note, &err)) {
        fprintf(stderr, "assemble full: %s\n", err.msg);
        return 1;
    }
    printf("assembly note:\n%s", note ? note : "(none)\n");
    CHECK_CONTAINS(note, "model.layers.2.mixer.v_lora");
    CHECK(!note || !strstr(note, "model.layers.1.")); /* the producer takes everything from its file */
    for (int64_t e = 0; e < n_eval; e++) {
        CHECK(graft_model_forward_layers(h, hidden + e * (L + 1) * N * C, B, T, full, &err) == GRAFT_STATUS_OK);
        for (int i = 0; i < 3; i++) {
            int64_t l = pairs[i].layer;
            char what[96];
            snprintf(what, sizeof what, "full hybrid layer %lld (%s) vs its student, batch %lld", (long long)l,
                     pairs[i].mixer, (long long)e);
            /* compare what the layer adds to the residual stream, not the stream itself */
            const float *in = hidden + e * (L + 1) * N * C + l * N * C;
            const float *a = full + l * N * C, *b = single + ((int64_t)i * n_eval + e) * L * N * C + l * N * C;
            for (int64_t j = 0; j < N * C; j++) {
                delta_a[j] = a[j] - in[j];
                delta_b[j] = b[j] - in[j];
            }
            check_close_f32(what, delta_a, delta_b, N * C, 1e-12);
        }
    }
    /* the untouched attention of a hybrid: a model with no grafted layer reproduces the teacher */
    graft_hybrid_layer none[3] = {{0}};
    graft_model_t *same = NULL;
    CHECK(graft_hybrid_assemble(teacher, none, 1, &same, NULL, &err) == GRAFT_STATUS_OK);
    CHECK(graft_model_forward_layers(same, hidden, B, T, full, &err) == GRAFT_STATUS_OK);
    for (int64_t l = 0; l < L; l++) check_close_f32("no-graft hybrid layer", full + l * N * C, hidden + (l + 1) * N * C, N * C, 0);
    graft_model_free(same);
    free(note);
    graft_model_free(h);
    graft_model_free(teacher);
    graft_data_close(data);
    free(hidden);
    free(single);
    free(full);
    free(delta_a);
    free(delta_b);
    graft_err e2;
    graft_fs_remove_tree(dir, &e2);
    return test_finish("test_assembly");
}
