/* test_config.c: the three real Qwen3 configs (0.6B, 1.7B as released by 4.51.0, 8B re-saved by
 * 4.57.1), the 5.x spelling, the writer (byte-identical to the release files) and one test per
 * refusal of spec/qwen3.md §1.2, each asserting the message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "test_util.h"

#define CFG_DIR GRAFT_SOURCE_DIR "/../shared/data/qwen3-tokenizer/"

static char dir[256];

static char *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *b = malloc(1 << 16);
    *n = fread(b, 1, (1 << 16) - 1, fp);
    b[*n] = 0;
    fclose(fp);
    return b;
}

static void test_real(void) {
    graft_qwen3_config c;
    graft_err err;
    CHECK(graft_config_load(CFG_DIR "config-qwen3-0.6b.json", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.hidden_size == 1024 && c.intermediate_size == 3072 && c.n_layer == 28);
    CHECK(c.n_head == 16 && c.n_kv_head == 8 && c.head_dim == 128 && !c.head_dim_defaulted);
    CHECK(c.vocab_size == 151936 && c.tie_word_embeddings == 1 && c.max_position_embeddings == 40960);
    CHECK(c.rms_norm_eps == 1e-6 && c.rope_theta == 1000000.0 && c.initializer_range == 0.02);
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_token_ids[0] == 151645);
    CHECK(!strcmp(c.dtype, "bfloat16"));
    CHECK(graft_config_load(CFG_DIR "config-qwen3-1.7b.json", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.hidden_size == 2048 && c.intermediate_size == 6144 && c.n_layer == 28);
    CHECK(c.n_head == 16 && c.n_kv_head == 8 && c.head_dim == 128 && c.tie_word_embeddings == 1);
    CHECK(graft_config_load(CFG_DIR "config-qwen3-8b.json", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.hidden_size == 4096 && c.intermediate_size == 12288 && c.n_layer == 36);
    CHECK(c.n_head == 32 && c.n_kv_head == 8 && c.head_dim == 128 && c.tie_word_embeddings == 0);
    CHECK(!strcmp(c.dtype, "float32") && c.rope_theta == 1000000.0);

    /* the writer reproduces the 4.51.0 release files byte for byte */
    const char *names[2] = {"config-qwen3-0.6b.json", "config-qwen3-1.7b.json"};
    for (int i = 0; i < 2; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, CFG_DIR "%s", names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        CHECK(graft_config_load(src, &c, &err) == GRAFT_STATUS_OK);
        CHECK(graft_config_write(dst, &c, &err) == GRAFT_STATUS_OK);
        size_t na = 0, nb = 0;
        char *a = slurp(src, &na), *b = slurp(dst, &nb);
        CHECK(a && b && na == nb && !memcmp(a, b, na));
        free(a);
        free(b);
    }
    /* round trip of the 8B re-save: same values */
    graft_qwen3_config c2;
    char dst[512];
    snprintf(dst, sizeof dst, "%s/8b.json", dir);
    CHECK(graft_config_load(CFG_DIR "config-qwen3-8b.json", &c, &err) == GRAFT_STATUS_OK);
    CHECK(graft_config_write(dst, &c, &err) == GRAFT_STATUS_OK);
    CHECK(graft_config_load(dst, &c2, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(&c, &c2, sizeof c));
}

/* A tiny valid config with `extra` spliced in (extra overrides nothing: it adds keys; use
 * `drop` to leave out one required key). */
static const char *BASE[] = {
    "\"hidden_size\": 64", "\"intermediate_size\": 128", "\"num_hidden_layers\": 2",
    "\"num_attention_heads\": 4", "\"num_key_value_heads\": 2", "\"head_dim\": 16",
    "\"rms_norm_eps\": 1e-06", "\"vocab_size\": 100", "\"rope_theta\": 10000", NULL};

static graft_status load_text(const char *drop, const char *extra, graft_qwen3_config *c,
                              graft_err *err) {
    char path[512], text[4096];
    snprintf(path, sizeof path, "%s/t.json", dir);
    size_t o = (size_t)snprintf(text, sizeof text, "{");
    int first = 1;
    for (int i = 0; BASE[i]; i++) {
        if (drop && strstr(BASE[i], drop)) continue;
        o += (size_t)snprintf(text + o, sizeof text - o, "%s%s", first ? "" : ", ", BASE[i]);
        first = 0;
    }
    if (extra && *extra) o += (size_t)snprintf(text + o, sizeof text - o, ", %s", extra);
    snprintf(text + o, sizeof text - o, "}");
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    return graft_config_load(path, c, err);
}

static void bad(const char *drop, const char *extra, const char *want) {
    graft_qwen3_config c;
    graft_err err;
    CHECK(load_text(drop, extra, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "t.json");
    CHECK_CONTAINS(err.msg, want);
}

static void test_spellings(void) {
    graft_qwen3_config c;
    graft_err err;
    CHECK(load_text(NULL, "", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.tie_word_embeddings == 0 && c.bos_token_id == -1 && c.n_eos == 0 && c.dtype[0] == 0);
    /* 5.x: rope_parameters, dtype, pad null, layer_types, eos list */
    CHECK(load_text("rope_theta", "\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": "
                    "\"default\"}, \"dtype\": \"float16\", \"pad_token_id\": null, \"layer_types\": "
                    "[\"full_attention\", \"full_attention\"], \"eos_token_id\": [5, 6], "
                    "\"tie_word_embeddings\": true", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.rope_theta == 500000.0 && !strcmp(c.dtype, "float16") && c.n_eos == 2 &&
          c.eos_token_ids[1] == 6 && c.tie_word_embeddings == 1);
    CHECK(load_text("rope_theta", "\"rope_parameters\": {\"rope_theta\": 7}", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.rope_theta == 7.0);
    /* head_dim defaults to hidden / heads, flagged */
    CHECK(load_text("head_dim", "", &c, &err) == GRAFT_STATUS_OK);
    CHECK(c.head_dim == 16 && c.head_dim_defaulted == 1);
    /* writer: eos list and defaults round-trip */
    char dst[512];
    snprintf(dst, sizeof dst, "%s/w.json", dir);
    CHECK(load_text(NULL, "\"eos_token_id\": [5, 6]", &c, &err) == GRAFT_STATUS_OK);
    CHECK(graft_config_write(dst, &c, &err) == GRAFT_STATUS_OK);
    graft_qwen3_config c2;
    CHECK(graft_config_load(dst, &c2, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(&c, &c2, sizeof c));
}

static void test_refusals(void) {
    bad("hidden_size", "", "hidden_size: missing, expected an integer in 1..131072");
    bad("vocab_size", "", "vocab_size: missing");
    bad("rms_norm_eps", "", "rms_norm_eps: missing, expected a number");
    bad("rope_theta", "", "rope_theta: missing, expected a number");
    bad("hidden_size", "\"hidden_size\": \"64\"", "hidden_size: a string, expected an integer");
    bad("hidden_size", "\"hidden_size\": 64.0", "hidden_size: a real number, expected an integer");
    bad("hidden_size", "\"hidden_size\": 0", "hidden_size: 0, expected an integer in 1..131072");
    bad("hidden_size", "\"hidden_size\": -5", "hidden_size: -5, expected");
    bad("num_hidden_layers", "\"num_hidden_layers\": 100000", "num_hidden_layers: 100000, expected an integer in 1..1024");
    bad("vocab_size", "\"vocab_size\": 99999999999", "vocab_size: 99999999999, expected");
    bad("num_key_value_heads", "\"num_key_value_heads\": 3",
        "num_key_value_heads: 3, expected a divisor of num_attention_heads (4)");
    bad("head_dim", "\"head_dim\": 15", "head_dim: 15, expected an even number");
    bad(NULL, "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
        "rope_scaling.rope_type: \"yarn\", expected \"default\"");
    bad(NULL, "\"rope_scaling\": 3", "rope_scaling: an integer, expected null");
    bad("rope_theta", "\"rope_parameters\": {\"rope_theta\": 1e6, \"rope_type\": \"linear\"}",
        "rope_parameters.rope_type: \"linear\", expected \"default\"");
    bad(NULL, "\"use_sliding_window\": true", "use_sliding_window: true, expected false");
    bad(NULL, "\"attention_bias\": true", "attention_bias: true, expected false");
    bad(NULL, "\"attention_bias\": 1", "attention_bias: an integer, expected true or false");
    bad(NULL, "\"hidden_act\": \"gelu\"", "hidden_act: \"gelu\", expected \"silu\"");
    bad(NULL, "\"architectures\": [\"LlamaForCausalLM\"]",
        "architectures: [\"LlamaForCausalLM\"], expected [\"Qwen3ForCausalLM\"]");
    bad(NULL, "\"model_type\": \"qwen3_moe\"", "model_type: \"qwen3_moe\", expected \"qwen3\"");
    bad(NULL, "\"layer_types\": [\"full_attention\", \"sliding_attention\"]",
        "layer_types[1]: \"sliding_attention\", expected \"full_attention\"");
    bad(NULL, "\"layer_types\": [\"full_attention\"]", "layer_types: 1 entries, expected 2");
    bad(NULL, "\"eos_token_id\": \"x\"", "eos_token_id: a string, expected an id");
    bad(NULL, "\"pad_token_id\": \"x\"", "pad_token_id: a string, expected an integer or null");
    bad(NULL, "\"tie_word_embeddings\": \"yes\"", "tie_word_embeddings: a string, expected true or false");
    bad("rms_norm_eps", "\"rms_norm_eps\": 0", "rms_norm_eps: 0, expected a number in (0, 1)");
    bad(NULL, "\"hidden_size\": 64", "duplicate object key");
    /* not JSON at all */
    graft_qwen3_config c;
    graft_err err;
    char path[512];
    snprintf(path, sizeof path, "%s/broken.json", dir);
    FILE *fp = fopen(path, "w");
    fputs("{\"hidden_size\": ", fp);
    fclose(fp);
    CHECK(graft_config_load(path, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "broken.json:1:");
    CHECK(graft_config_load("/nonexistent/config.json", &c, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "/nonexistent/config.json: cannot open");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/graft_test_cfg_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_real();
    test_spellings();
    test_refusals();
    if (!test_failures_) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return test_finish("test_config");
}
