/* cli/cmd_bench.c: `graft bench`: the bench stage without a recipe (bench.h). A control and
 * hybrids timed in this process, every (context, batch), fixed generation length, synthetic
 * prompts; each hybrid's speedup over the control printed from the same run.
 *
 *   graft bench --contexts 128,512 [--batch 1,4] [--gen-tokens 128] [--prefill-chunk N] [--repeat N] [--threads N]
 *               [--run-log F.h5]
 *               (--model DIR [--model DIR ...]          the first is the control
 *               | --config C.json [--seed S] [--spec HYBRID.yaml ...])
 *
 * With --config the models are random: the control is Qwen3 from C.json (seed S), and each spec
 * (the hybrid spec format of docs/recipes.md) is that control with the spec's layers grafted
 * (graft_hybrid_assemble: a mixer's weights from the spec's file, else its plugin's init), so a
 * shape can be timed before any training. --run-log writes one stage group "0_bench".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "commands.h"
#include "config.h"
#include "hybrid.h"
#include "backend.h"
#include "hybrid_spec.h"
#include "runlog.h"

#define MAX_MODELS 16
#define MAX_LIST 64

static int usage(FILE *o) {
    fprintf(o, "usage: graft bench --contexts N[,N...] [--batch N[,N...]] [--gen-tokens N] [--prefill-chunk N] [--repeat N]\n"
               "                   [--threads N] [--device D] [--run-log FILE.h5] (--model DIR [--model DIR ...]\n"
               "                   | --config C.json [--seed S] [--spec HYBRID.yaml ...])\n"
               "  times generation (prefill = time to first token, decode tokens/s, KV + state bytes, peak\n"
               "  memory) of every model at every (context, batch), in this process, with synthetic prompts\n"
               "  and a fixed number of new tokens; prints each model's speedup over the first (the control)\n"
               "  --model DIR     a Qwen3 or hybrid directory; the first is the control\n"
               "  --config C      a random Qwen3 from this config.json is the control (seed --seed, default 1)\n"
               "  --spec S        with --config: a hybrid spec grafted onto that control (mixers' own init\n"
               "                  unless the spec names weights); repeat for several hybrids\n"
               "  --contexts L    prompt lengths (required)\n"
               "  --batch L       batch sizes (default 1)\n"
               "  --gen-tokens N  new tokens per sequence (default 128)\n"
               "  --prefill-chunk N  prompt tokens per sequence per prefill call, each call continuing the\n"
               "                  decode state (bounds activation memory); 0 (default): one call while batch x\n"
               "                  context <= %d tokens, else max(1, %d / batch); -1: never chunk\n"
               "  --repeat N      timed runs per measurement, the median reported (default 1)\n"
               "  --threads N     CPU threads (default: all; also GRAFT_THREADS)\n"
               "  --device D      cpu (default), cuda or cuda:N; on CUDA decode steps replay a CUDA graph\n"
               "                  (GRAFT_CUDA_GRAPHS=0 turns that off, for comparison)\n"
               "  --run-log F     also write the rows to the bench table of run log F (docs/runlog.md)\n",
            GRAFT_BENCH_PREFILL_TOKENS, GRAFT_BENCH_PREFILL_TOKENS);
    return o == stdout ? 0 : 2;
}

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || end == s || *end || v < lo) {
        fprintf(stderr, "graft bench: %s \"%s\": expected an integer >= %lld\n", opt, s, (long long)lo);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_list(const char *opt, const char *s, int64_t *v, int64_t *n) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST) {
            fprintf(stderr, "graft bench: %s: more than %d values\n", opt, MAX_LIST);
            return 0;
        }
        if (!parse_i64(opt, t, 1, &v[(*n)++])) return 0;
    }
    if (!*n) {
        fprintf(stderr, "graft bench: %s \"%s\": expected a comma-separated list of integers >= 1\n", opt, s);
        return 0;
    }
    return 1;
}

typedef struct models {
    const char *dirs[MAX_MODELS];            /* --model mode */
    graft_qwen3_config cfg;                  /* --config mode */
    uint64_t seed;
    graft_hybrid_spec *specs[MAX_MODELS];    /* specs[i] for model i >= 1 */
    const char *spec_paths[MAX_MODELS];
    const graft_backend *be;                 /* --device: where every model is moved after loading */
} models;

static graft_status load_host(void *ctx, int64_t i, graft_model_t **out, graft_err *err);

static graft_status load(void *ctx, int64_t i, graft_model_t **out, graft_err *err) {
    models *ms = ctx;
    graft_status st = load_host(ctx, i, out, err);
    if (st || !ms->be || ms->be->device == GRAFT_DEVICE_CPU) return st;
    if ((st = graft_model_set_backend(*out, ms->be, err))) {
        graft_model_free(*out);
        *out = NULL;
    }
    return st;
}

static graft_status load_host(void *ctx, int64_t i, graft_model_t **out, graft_err *err) {
    models *ms = ctx;
    if (ms->dirs[0]) return graft_hybrid_load(ms->dirs[i], out, err);
    graft_model_t *base = NULL;
    graft_status st = graft_model_create(&ms->cfg, NULL, &base, err);
    if (!st) st = graft_model_init_random(base, ms->seed, err);
    if (st || i == 0) {
        if (st) graft_model_free(base);
        else *out = base;
        return st;
    }
    const graft_hybrid_spec *spec = ms->specs[i];
    graft_hybrid_layer *layers = calloc((size_t)spec->n_layer, sizeof *layers);
    if (!layers) {
        graft_model_free(base);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bench: out of memory");
    }
    for (int64_t l = 0; l < spec->n_layer; l++) {
        if (!strcmp(spec->layer_types[l], GRAFT_FULL_ATTENTION)) continue;
        layers[l].mixer = spec->layer_types[l];
        layers[l].origin = ms->spec_paths[i];
        layers[l].weights = spec->weights[l];
        for (int64_t k = 0; k < spec->n_mixers; k++)
            if (!strcmp(spec->mixers[k].name, spec->layer_types[l])) {
                layers[l].kv = spec->mixers[k].kv;
                layers[l].n_kv = spec->mixers[k].n_kv;
            }
    }
    char *note = NULL;
    st = graft_hybrid_assemble(base, layers, ms->seed, out, &note, err);
    free(note);
    free(layers);
    graft_model_free(base);
    return st;
}

/* "dir/name.yaml" -> "name"; a directory -> its path, or its last part when longer than 63 bytes. */
static void model_name(const char *path, int strip_ext, char *buf, size_t size) {
    const char *s = path;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') n--;
    if (strip_ext || n >= size) {
        const char *slash = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == '/') slash = s + i;
        if (slash && slash + 1 < s + n) {
            n -= (size_t)(slash + 1 - s);
            s = slash + 1;
        }
    }
    if (strip_ext) {
        const char *dot = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == '.') dot = s + i;
        if (dot && dot > s) n = (size_t)(dot - s);
    }
    if (n >= size) n = size - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
}

int graft_cmd_bench(int argc, char **argv) {
    models ms;
    memset(&ms, 0, sizeof ms);
    ms.seed = 1;
    const char *config = NULL, *run_log = NULL, *device = "cpu";
    int64_t n_dirs = 0, n_specs = 0, contexts[MAX_LIST], batches[MAX_LIST] = {1}, n_ctx = 0, n_batch = 1;
    int64_t gen_tokens = 128, prefill_chunk = 0, threads = 0, seed = 1, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (a[0] != '-') {
            fprintf(stderr, "graft bench: unexpected argument \"%s\"\n", a);
            return usage(stderr);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "graft bench: %s needs a value\n", a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model") || !strcmp(a, "--spec")) {
            if (n_dirs + n_specs + 1 >= MAX_MODELS) {
                fprintf(stderr, "graft bench: more than %d models\n", MAX_MODELS);
                return 2;
            }
            if (a[2] == 'm') ms.dirs[n_dirs++] = v;
            else ms.spec_paths[1 + n_specs++] = v;
        } else if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--run-log")) run_log = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--contexts")) { if (!parse_list(a, v, contexts, &n_ctx)) return 2; }
        else if (!strcmp(a, "--batch")) { if (!parse_list(a, v, batches, &n_batch)) return 2; }
        else if (!strcmp(a, "--gen-tokens")) { if (!parse_i64(a, v, 1, &gen_tokens)) return 2; }
        else if (!strcmp(a, "--prefill-chunk")) { if (!parse_i64(a, v, -1, &prefill_chunk)) return 2; }
        else if (!strcmp(a, "--repeat")) { if (!parse_i64(a, v, 1, &repeat) || repeat > 1000) return 2; }
        else if (!strcmp(a, "--threads")) { if (!parse_i64(a, v, 1, &threads)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!parse_i64(a, v, 0, &seed)) return 2; }
        else {
            fprintf(stderr, "graft bench: unknown option \"%s\"\n", a);
            return usage(stderr);
        }
    }
    if (!n_ctx) {
        fprintf(stderr, "graft bench: missing --contexts\n");
        return usage(stderr);
    }
    if ((n_dirs > 0) == (config != NULL)) {
        fprintf(stderr, "graft bench: give either --model DIR (one or more) or --config C.json, %s\n",
                n_dirs ? "not both" : "none was given");
        return usage(stderr);
    }
    if (n_dirs && n_specs) {
        fprintf(stderr, "graft bench: --spec goes with --config (a hybrid directory is given with --model)\n");
        return 2;
    }
    if (threads > 0) {
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)threads);
        setenv("GRAFT_THREADS", t, 1);
    }
    ms.seed = (uint64_t)seed;
    graft_err err = {0};
    if (graft_backend_open(device, "graft bench: --device", &ms.be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    graft_runlog_t *log = NULL;
    int64_t n = n_dirs ? n_dirs : 1 + n_specs;
    char names[MAX_MODELS][64];
    const char *ptrs[MAX_MODELS];
    int rc = 1;
    if (config) {
        if (graft_config_load(config, &ms.cfg, &err)) goto fail;
        snprintf(names[0], sizeof names[0], "control");
        for (int64_t i = 1; i < n; i++) {
            if (graft_hybrid_spec_load(ms.spec_paths[i], &ms.specs[i], &err)) goto fail;
            if (ms.specs[i]->n_layer != ms.cfg.n_layer) {
                graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "%s: n_layer %lld, but %s has %lld layers", ms.spec_paths[i],
                              (long long)ms.specs[i]->n_layer, config, (long long)ms.cfg.n_layer);
                goto fail;
            }
            model_name(ms.spec_paths[i], 1, names[i], sizeof names[i]);
        }
    } else {
        for (int64_t i = 0; i < n; i++) model_name(ms.dirs[i], 0, names[i], sizeof names[i]);
    }
    for (int64_t i = 0; i < n; i++) ptrs[i] = names[i];
    /* a bad model directory or spec is refused before anything is timed (host only: a random
     * --config control is checked once, not built per model) */
    if (!config) {
        graft_model_t *m = NULL;
        for (int64_t i = 0; i < n; i++) {
            if (load(&ms, i, &m, &err)) goto fail;
            graft_model_free(m);
            m = NULL;
        }
    }
    if (run_log) {
        char cmd[4096];
        size_t k = (size_t)snprintf(cmd, sizeof cmd, "graft");
        for (int i = 0; i < argc && k + 2 < sizeof cmd; i++) k += (size_t)snprintf(cmd + k, sizeof cmd - k, " %s", argv[i]);
        graft_runlog_meta meta = graft_runlog_default_meta();
        meta.device = ms.be->name;
        meta.command_line = cmd;
        if (graft_runlog_open(run_log, &meta, 0, &log, &err) || graft_runlog_stage_begin(log, 0, "bench", &err)) goto fail;
    }
    printf("graft bench: %lld model(s), contexts", (long long)n);
    for (int64_t i = 0; i < n_ctx; i++) printf("%s%lld", i ? "," : " ", (long long)contexts[i]);
    printf(", batch");
    for (int64_t i = 0; i < n_batch; i++) printf("%s%lld", i ? "," : " ", (long long)batches[i]);
    printf(", %lld new tokens per sequence (fixed), median of %lld run(s), synthetic prompts, device %s%s\n",
           (long long)gen_tokens, (long long)repeat, ms.be->name,
           ms.be->device != GRAFT_DEVICE_CPU && getenv("GRAFT_CUDA_GRAPHS") && !strcmp(getenv("GRAFT_CUDA_GRAPHS"), "0")
               ? " (CUDA graphs off)" : "");
    graft_bench_plan p = {.names = ptrs, .n_models = n, .load = load, .load_ctx = &ms, .baseline = 0,
                          .contexts = contexts, .n_contexts = n_ctx, .batches = batches, .n_batches = n_batch,
                          .gen_tokens = gen_tokens, .prefill_chunk = prefill_chunk, .repeat = repeat, .out = stdout,
                          .log = log, .stage = 0};
    graft_status st = graft_bench_run(&p, NULL, 0, &err);
    if (log) {
        graft_err e2;
        graft_runlog_stage_end(log, 0, st ? "failed" : "done", &e2);
    }
    if (st) goto fail;
    if (run_log) printf("run log: %s (tools/plot_run.py %s OUTDIR draws the bench plot)\n", run_log, run_log);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "graft bench: %s\n", err.msg);
    graft_runlog_close(log);
    for (int64_t i = 0; i < MAX_MODELS; i++) graft_hybrid_spec_free(ms.specs[i]);
    return rc;
}
