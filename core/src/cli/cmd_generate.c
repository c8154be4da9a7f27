/* cli/cmd_generate.c: `graft generate`: continue one or more text prompts with a Qwen3 or hybrid
 * model directory (graft_hybrid_load), with the decode state (generate.h): several prompts are
 * one batch, of any lengths. Prints each prompt and its continuation; timings on stderr.
 *
 *   graft generate --model DIR --prompt TEXT [--prompt TEXT ...] [--tokenizer PATH]
 *                  [--max-new N] [--greedy | --temperature X --top-k K --top-p P] [--seed S]
 *                  [--fixed-length] [--prefill-chunk N] [--threads N]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "commands.h"
#include "generate.h"
#include "hybrid.h"
#include "tokenizer.h"

#define MAX_PROMPTS 256

static int usage(FILE *o) {
    fprintf(o, "usage: graft generate --model DIR --prompt TEXT [--prompt TEXT ...] [options]\n"
               "  continues each prompt (several prompts are decoded together as one batch)\n"
               "  --model DIR        a Qwen3 or hybrid model directory (config.json + safetensors)\n"
               "  --tokenizer PATH   tokenizer.json or its directory (default: the model directory)\n"
               "  --prompt TEXT      a prompt; repeat for a batch (up to %d)\n"
               "  --max-new N        new tokens per prompt (default 32)\n"
               "  --greedy           argmax (the default unless a sampling option is given)\n"
               "  --temperature X    sample at temperature X > 0 (default 1)\n"
               "  --top-k K          sample among the K most likely ids (0 = off, default)\n"
               "  --top-p P          sample from the smallest set of mass >= P, in (0, 1] (default 1)\n"
               "  --seed S           sampling seed (default 0)\n"
               "  --fixed-length     always N new tokens (do not stop at the end-of-text id)\n"
               "  --prefill-chunk N  prompt tokens per sequence per prefill call, each continuing the decode\n"
               "                     state (bounds activation memory for long prompts); 0 = one call (default)\n"
               "  --threads N        CPU threads (default: all; also GRAFT_THREADS)\n"
               "  --device D         cpu (default), cuda or cuda:N (decode steps replay a CUDA graph)\n", MAX_PROMPTS);
    return o == stdout ? 0 : 2;
}

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || end == s || *end || v < lo) {
        fprintf(stderr, "graft generate: %s \"%s\": expected an integer >= %lld\n", opt, s, (long long)lo);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_f64(const char *opt, const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "graft generate: %s \"%s\": expected a number\n", opt, s);
        return 0;
    }
    *out = v;
    return 1;
}

int graft_cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *tok_path = NULL, *prompts[MAX_PROMPTS], *device = "cpu";
    int64_t n_prompts = 0, threads = 0, seed = 0;
    int greedy = -1, sampling = 0; /* greedy: -1 = not said */
    graft_generate_opts o = graft_generate_default_opts();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (!strcmp(a, "--greedy")) { greedy = 1; continue; }
        if (!strcmp(a, "--fixed-length")) { o.fixed_length = 1; continue; }
        if (a[0] != '-') {
            fprintf(stderr, "graft generate: unexpected argument \"%s\" (prompts go after --prompt)\n", a);
            return usage(stderr);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "graft generate: %s needs a value\n", a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--prompt")) {
            if (n_prompts == MAX_PROMPTS) {
                fprintf(stderr, "graft generate: more than %d prompts\n", MAX_PROMPTS);
                return 2;
            }
            prompts[n_prompts++] = v;
        } else if (!strcmp(a, "--max-new")) { if (!parse_i64(a, v, 1, &o.max_new_tokens)) return 2; }
        else if (!strcmp(a, "--prefill-chunk")) { if (!parse_i64(a, v, 0, &o.prefill_chunk)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!parse_i64(a, v, 0, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!parse_i64(a, v, 1, &threads)) return 2; }
        else if (!strcmp(a, "--top-k")) { if (!parse_i64(a, v, 0, &o.top_k)) return 2; sampling = 1; }
        else if (!strcmp(a, "--temperature")) {
            if (!parse_f64(a, v, &o.temperature)) return 2;
            if (!(o.temperature > 0)) {
                fprintf(stderr, "graft generate: --temperature %s: expected > 0 (use --greedy for argmax)\n", v);
                return 2;
            }
            sampling = 1;
        } else if (!strcmp(a, "--top-p")) {
            if (!parse_f64(a, v, &o.top_p)) return 2;
            if (!(o.top_p > 0 && o.top_p <= 1)) {
                fprintf(stderr, "graft generate: --top-p %s: expected in (0, 1]\n", v);
                return 2;
            }
            sampling = 1;
        } else {
            fprintf(stderr, "graft generate: unknown option \"%s\"\n", a);
            return usage(stderr);
        }
    }
    if (!model_dir || !n_prompts) {
        fprintf(stderr, "graft generate: missing %s\n", !model_dir ? "--model DIR" : "--prompt TEXT");
        return usage(stderr);
    }
    if (greedy == 1 && sampling) {
        fprintf(stderr, "graft generate: --greedy and sampling options (--temperature, --top-k, --top-p) exclude each other\n");
        return 2;
    }
    o.greedy = !sampling;
    o.seed = (uint64_t)seed;
    if (threads > 0) {
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)threads);
        setenv("GRAFT_THREADS", t, 1);
    }
    graft_err err = {0};
    graft_tokenizer_t *tok = NULL;
    graft_model_t *m = NULL;
    graft_ids ids[MAX_PROMPTS];
    memset(ids, 0, sizeof ids);
    int32_t *flat = NULL, *out = NULL;
    const int32_t *pp[MAX_PROMPTS];
    int64_t np[MAX_PROMPTS], n_out[MAX_PROMPTS];
    uint32_t *u = NULL;
    int rc = 1;
    if (!tok_path) tok_path = model_dir;
    const graft_backend *be = NULL; /* the device first: a bad --device costs no tokenizer load */
    if (graft_backend_open(device, "graft generate: --device", &be, &err)) goto fail;
    if (graft_tokenizer_load(tok_path, &tok, &err)) goto fail;
    if (graft_hybrid_load(model_dir, &m, &err)) goto fail;
    if (be->device != GRAFT_DEVICE_CPU && graft_model_set_backend(m, be, &err)) goto fail;
    int64_t V = graft_model_config(m)->vocab_size;
    if ((int64_t)graft_tokenizer_n_vocab(tok) > V) {
        graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "%s: %u ids, more than the model's vocab_size %lld (%s)", tok_path,
                      graft_tokenizer_n_vocab(tok), (long long)V, model_dir);
        goto fail;
    }
    size_t total = 0;
    for (int64_t i = 0; i < n_prompts; i++) {
        if (graft_tokenizer_encode(tok, NULL, prompts[i], strlen(prompts[i]), 0, &ids[i], &err)) goto fail;
        if (!ids[i].n) {
            graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "--prompt %lld (\"%s\"): encodes to no tokens, expected >= 1",
                          (long long)(i + 1), prompts[i]);
            goto fail;
        }
        total += ids[i].n;
    }
    flat = malloc(sizeof(int32_t) * total);
    out = malloc(sizeof(int32_t) * (size_t)(n_prompts * o.max_new_tokens));
    u = malloc(sizeof(uint32_t) * (size_t)o.max_new_tokens);
    if (!flat || !out || !u) {
        graft_err_set(&err, GRAFT_STATUS_NO_MEMORY, "out of memory");
        goto fail;
    }
    size_t k = 0;
    for (int64_t i = 0; i < n_prompts; i++) {
        pp[i] = flat + k;
        np[i] = (int64_t)ids[i].n;
        for (size_t j = 0; j < ids[i].n; j++) flat[k++] = (int32_t)ids[i].data[j];
    }
    uint32_t eot = graft_tokenizer_eot_id(tok);
    o.stop_id = eot == UINT32_MAX ? -1 : (int64_t)eot;
    graft_generate_stats gs;
    if (graft_generate_batch(m, pp, np, n_prompts, &o, out, n_out, &gs, &err)) goto fail;
    for (int64_t i = 0; i < n_prompts; i++) {
        size_t nu = 0;
        for (int64_t j = 0; j < n_out[i]; j++) /* ids past the tokenizer (a padded vocabulary) have no text */
            if ((uint32_t)out[i * o.max_new_tokens + j] < graft_tokenizer_n_vocab(tok))
                u[nu++] = (uint32_t)out[i * o.max_new_tokens + j];
        char *text = NULL;
        size_t len = 0;
        if (graft_tokenizer_decode(tok, u, nu, 0, &text, &len, &err)) goto fail;
        printf("[%lld] %s|%s\n", (long long)i, prompts[i], text);
        free(text);
    }
    fprintf(stderr, "graft generate: %lld sequence(s), %lld new tokens; state %.2f MiB; prefill %.1f ms; decode %.1f tok/s\n",
            (long long)n_prompts, (long long)gs.n_new, (double)gs.state_bytes / 1048576.0, 1e3 * gs.prefill_s,
            gs.decode_s > 0 ? (double)gs.n_decoded / gs.decode_s : 0.0);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "graft generate: %s\n", err.msg);
    for (int64_t i = 0; i < n_prompts; i++) graft_ids_free(&ids[i]);
    free(flat);
    free(out);
    free(u);
    graft_model_free(m);
    graft_tokenizer_free(tok);
    return rc;
}
