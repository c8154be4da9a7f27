/* bench/qwen3_prefill.c: graft's prefill time to first token (TTFT) on a backend, for
 * bench/qwen3_vs_hf.py. For each T: B = 1 sequence of T token ids, one graft_model_forward_state
 * from an empty KV cache (the cache written, logits of the last position only, copied to the
 * host), timed by the wall clock around the call (it returns after the logits are on the host).
 * Warm-up calls first; prints one JSON line per T with the median and min over the repetitions.
 *
 *   graft_bench_prefill --model DIR [--device cuda] [--T 512,4096,16384] [--reps 5] [--warmup 2]
 *
 * Not here: HF transformers (the Python script times it in the same invocation), correctness
 * (qwen3_vs_hf.py compares full logits through `graft forward`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "model.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = NULL, *device = "cuda", *Ts = "512,4096,16384";
    int reps = 5, warmup = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--T")) Ts = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else { fprintf(stderr, "graft_bench_prefill: unknown option %s\n", argv[i]); return 2; }
    }
    if (!model || reps < 1 || reps > 100 || warmup < 0) {
        fprintf(stderr, "usage: graft_bench_prefill --model DIR [--device cuda] [--T 512,4096] [--reps 5] [--warmup 2]\n");
        return 2;
    }
    graft_err err = {0};
    const graft_backend *be = NULL;
    graft_model_t *m = NULL;
    if (graft_backend_open(device, "--device", &be, &err) || graft_model_load(model, &m, &err) ||
        graft_model_set_backend(m, be, &err)) {
        fprintf(stderr, "graft_bench_prefill: %s\n", err.msg);
        graft_model_free(m);
        return 1;
    }
    const graft_qwen3_config *c = graft_model_config(m);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", Ts);
    int rc = 0;
    for (char *tok = strtok(buf, ","); tok && !rc; tok = strtok(NULL, ",")) {
        int64_t T = atoll(tok);
        if (T < 1) continue;
        int32_t *ids = malloc((size_t)T * sizeof *ids);
        float *last = malloc((size_t)c->vocab_size * sizeof *last);
        size_t sb = graft_model_state_bytes(m, 1, T);
        void *state = be->alloc(be->ctx, sb);
        if (!ids || !last || !state) {
            fprintf(stderr, "graft_bench_prefill: T=%lld: out of memory (state %zu bytes)\n", (long long)T, sb);
            rc = 1;
        }
        for (int64_t i = 0; i < T && !rc; i++) ids[i] = (int32_t)((i * 7919 + 11) % c->vocab_size);
        double t_ms[100];
        for (int r = 0; r < warmup + reps && !rc; r++) {
            double t0 = now_ms();
            if (graft_model_forward_state(m, ids, 1, T, state, T, NULL, last, &err)) {
                fprintf(stderr, "graft_bench_prefill: T=%lld: %s\n", (long long)T, err.msg);
                rc = 1;
                break;
            }
            double t1 = now_ms();
            if (r >= warmup) t_ms[r - warmup] = t1 - t0;
        }
        if (!rc) {
            qsort(t_ms, (size_t)reps, sizeof *t_ms, cmp_d);
            printf("{\"T\": %lld, \"ttft_ms_median\": %.4f, \"ttft_ms_min\": %.4f, \"reps\": %d, \"device\": \"%s\"}\n",
                   (long long)T, t_ms[reps / 2], t_ms[0], reps, be->name);
            fflush(stdout);
        }
        if (state) be->free(be->ctx, state);
        free(ids);
        free(last);
    }
    graft_model_free(m);
    return rc;
}
