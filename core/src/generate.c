/* generate.c: greedy and sampled generation over the decode state (generate.h). */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graft/rng.h"

graft_generate_opts graft_generate_default_opts(void) {
    graft_generate_opts o = {.max_new_tokens = 32, .greedy = 1, .temperature = 1.0, .top_k = 0, .top_p = 1.0,
                             .seed = 0, .stop_id = -1};
    return o;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct scored {
    float logit;
    int32_t id;
} scored;

static int by_logit_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, so the order is deterministic */
}

/* Picks the next id from logits (V). `work` has V entries. */
static int32_t pick(const float *logits, int64_t V, const graft_generate_opts *o, graft_rng *rng, scored *work) {
    if (o->greedy) {
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        return (int32_t)best;
    }
    for (int64_t v = 0; v < V; v++) work[v] = (scored){logits[v], (int32_t)v};
    qsort(work, (size_t)V, sizeof *work, by_logit_desc);
    int64_t n = V;
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    /* probabilities of the kept candidates at the temperature, in double */
    double mx = work[0].logit, total = 0;
    double *p = malloc(sizeof(double) * (size_t)n);
    if (!p) return work[0].id;
    for (int64_t i = 0; i < n; i++) total += p[i] = exp(((double)work[i].logit - mx) / o->temperature);
    if (o->top_p < 1.0) { /* the smallest prefix whose mass reaches top_p */
        double c = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            c += p[i] / total;
            if (c >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = 0;
        for (int64_t i = 0; i < n; i++) total += p[i];
    }
    double u = graft_rng_uniform(rng) * total, c = 0;
    int32_t id = work[n - 1].id;
    for (int64_t i = 0; i < n; i++) {
        c += p[i];
        if (u < c) {
            id = work[i].id;
            break;
        }
    }
    free(p);
    return id;
}

graft_status graft_generate(graft_model_t *m, const int32_t *prompt, int64_t n_prompt,
                            const graft_generate_opts *o, int32_t *out, graft_generate_stats *stats,
                            graft_err *err) {
    memset(stats, 0, sizeof *stats);
    if (n_prompt < 1 || o->max_new_tokens < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: %lld prompt tokens, %lld new tokens: expected >= 1 each",
                             (long long)n_prompt, (long long)o->max_new_tokens);
    if (!o->greedy && !(o->temperature > 0) )
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: temperature %g, expected > 0", o->temperature);
    int64_t V = graft_model_config(m)->vocab_size, cap = n_prompt + o->max_new_tokens;
    size_t bytes = graft_model_state_bytes(m, 1, cap);
    void *state = calloc(1, bytes ? bytes : 1);
    float *logits = malloc(sizeof(float) * (size_t)V);
    scored *work = malloc(sizeof(scored) * (size_t)V);
    graft_status st = GRAFT_STATUS_OK;
    if (!state || !logits || !work) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "generate: cannot allocate %zu bytes of decode state", bytes);
        goto done;
    }
    graft_rng rng = graft_rng_make(o->seed, 0x67656eull);
    double t0 = now_s();
    if ((st = graft_model_forward_state(m, prompt, 1, n_prompt, state, cap, NULL, logits, err))) goto done;
    stats->prefill_s = now_s() - t0;
    t0 = now_s();
    for (int64_t i = 0; i < o->max_new_tokens; i++) {
        int32_t id = pick(logits, V, o, &rng, work);
        out[stats->n_new++] = id;
        if (id == o->stop_id || i + 1 == o->max_new_tokens) break;
        int64_t past = n_prompt + i;
        if ((st = graft_model_forward_state(m, &id, 1, 1, state, cap, &past, logits, err))) goto done;
    }
    stats->decode_s = now_s() - t0;
done:
    free(state);
    free(logits);
    free(work);
    return st;
}
