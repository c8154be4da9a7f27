/* generate.c: greedy and sampled generation over the decode state, one or B sequences of
 * different prompt lengths (generate.h says how the lengths are handled). */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

graft_generate_opts graft_generate_default_opts(void) {
    graft_generate_opts o = {.max_new_tokens = 32, .greedy = 1, .temperature = 1.0, .top_k = 0, .top_p = 1.0,
                             .seed = 0, .stop_id = -1, .fixed_length = 0, .prefill_chunk = 0};
    return o;
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

size_t graft_generate_pick_work_bytes(int64_t V) {
    return (size_t)V * (sizeof(scored) + sizeof(double));
}

/* Picks the next id from logits (V): argmax, or a draw from the kept candidates (top-k, then the
 * smallest prefix of mass >= top_p) at the temperature. `work`: scored[V] then double[V]. */
int32_t graft_generate_pick(const float *logits, int64_t V, const graft_generate_opts *o, graft_rng *rng,
                            void *work) {
    if (o->greedy) {
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        return (int32_t)best;
    }
    scored *w = work;
    double *p = (double *)(void *)(w + V);
    for (int64_t v = 0; v < V; v++) w[v] = (scored){logits[v], (int32_t)v};
    qsort(w, (size_t)V, sizeof *w, by_logit_desc);
    int64_t n = V;
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    /* probabilities of the kept candidates at the temperature, in double */
    double mx = w[0].logit, total = 0;
    for (int64_t i = 0; i < n; i++) total += p[i] = exp(((double)w[i].logit - mx) / o->temperature);
    if (o->top_p < 1.0) {
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
    for (int64_t i = 0; i < n; i++) {
        c += p[i];
        if (u < c) return w[i].id;
    }
    return w[n - 1].id;
}

static graft_status bad_chunk(int64_t chunk, graft_err *err) {
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: prefill_chunk %lld, expected >= 0 (0 = each prompt "
                         "in one call)", (long long)chunk);
}

/* Runs the n tokens of each of the B prompts (all n long) into `state` in calls of at most
 * `chunk` tokens per sequence (0: one call); each call after the first continues the state where
 * the calls before it left it (past_len = the tokens done). The last call's logits are the
 * first-token logits. ids: B x min(n, chunk) scratch, where a chunk of every prompt is gathered
 * (the prompts are separate arrays); past: B. */
static graft_status prefill_chunks(graft_model_t *m, const int32_t *const *prompts, int64_t B, int64_t n,
                                   int64_t chunk, void *state, int64_t capacity, int32_t *ids, int64_t *past,
                                   float *logits, int64_t *steps, graft_err *err) {
    int64_t c = chunk > 0 && chunk < n ? chunk : n;
    for (int64_t t0 = 0; t0 < n; t0 += c) {
        int64_t T = n - t0 < c ? n - t0 : c;
        for (int64_t b = 0; b < B; b++) {
            memcpy(ids + b * T, prompts[b] + t0, sizeof(int32_t) * (size_t)T);
            past[b] = t0;
        }
        /* only the last chunk's logits are read: the others skip the head (and its copy back) */
        graft_status st = graft_model_forward_state(m, ids, B, T, state, capacity, t0 ? past : NULL,
                                                    t0 + T < n ? NULL : logits, err);
        (*steps)++;
        if (st) return st;
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_generate_prefill(graft_model_t *m, const int32_t *const *prompts, const int64_t *n_prompt,
                                    int64_t B, int64_t chunk, void *state, int64_t capacity, float *logits,
                                    int64_t *steps, graft_err *err) {
    if (chunk < 0) return bad_chunk(chunk, err);
    if (B < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: %lld sequences, expected >= 1", (long long)B);
    int64_t P = INT64_MAX, Lmax = 0;
    for (int64_t b = 0; b < B; b++) {
        if (n_prompt[b] < 1)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: prompt %lld has %lld tokens, expected >= 1",
                                 (long long)b, (long long)n_prompt[b]);
        if (n_prompt[b] < P) P = n_prompt[b];
        if (n_prompt[b] > Lmax) Lmax = n_prompt[b];
    }
    if (Lmax > capacity)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: a prompt of %lld tokens, state capacity %lld",
                             (long long)Lmax, (long long)capacity);
    /* the gathered chunk: (B, min(P, chunk)) together, or (1, min(n_prompt[b], chunk)) alone */
    int64_t per = chunk > 0 && chunk < Lmax ? chunk : Lmax;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * per));
    int64_t *past = malloc(sizeof(int64_t) * (size_t)B);
    graft_status st = GRAFT_STATUS_OK;
    if (!ids || !past) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "generate: out of memory for %lld x %lld prompt ids",
                           (long long)B, (long long)per);
    } else if (P == Lmax) { /* equal lengths: all sequences together */
        st = prefill_chunks(m, prompts, B, P, chunk, state, capacity, ids, past, logits, steps, err);
    } else { /* each prompt prefilled alone into a one-slot state, then moved into slot b */
        const graft_backend *be = graft_model_backend(m);
        int64_t V = graft_model_config(m)->vocab_size;
        size_t one = graft_model_state_bytes(m, 1, capacity);
        void *tmp = be->alloc(be->ctx, one ? one : 1);
        if (!tmp)
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "generate: cannot allocate %zu bytes of decode state", one);
        for (int64_t b = 0; b < B && !st; b++) {
            st = be->zero(be->ctx, tmp, one ? one : 1, err);
            if (!st)
                st = prefill_chunks(m, &prompts[b], 1, n_prompt[b], chunk, tmp, capacity, ids, past, logits + b * V,
                                    steps, err);
            if (!st) st = graft_model_state_copy_slot(m, state, B, b, tmp, 1, 0, capacity, err);
        }
        if (tmp) be->free(be->ctx, tmp);
    }
    free(ids);
    free(past);
    return st;
}

graft_status graft_generate(graft_model_t *m, const int32_t *prompt, int64_t n_prompt,
                            const graft_generate_opts *o, int32_t *out, graft_generate_stats *stats,
                            graft_err *err) {
    int64_t n_out = 0;
    return graft_generate_batch(m, &prompt, &n_prompt, 1, o, out, &n_out, stats, err);
}

graft_status graft_generate_batch(graft_model_t *m, const int32_t *const *prompts, const int64_t *n_prompt,
                                  int64_t B, const graft_generate_opts *o, int32_t *out, int64_t *n_out,
                                  graft_generate_stats *stats, graft_err *err) {
    memset(stats, 0, sizeof *stats);
    int64_t V = graft_model_config(m)->vocab_size, N = o->max_new_tokens;
    if (B < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: %lld sequences, expected >= 1", (long long)B);
    if (N < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: max_new_tokens %lld, expected >= 1", (long long)N);
    if (!o->greedy && !(o->temperature > 0 && isfinite(o->temperature)))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: temperature %g, expected > 0", o->temperature);
    if (!o->greedy && !(o->top_p > 0 && o->top_p <= 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: top_p %g, expected in (0, 1]", o->top_p);
    if (!o->greedy && o->top_k < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: top_k %lld, expected >= 0 (0 = off)",
                             (long long)o->top_k);
    if (o->prefill_chunk < 0) return bad_chunk(o->prefill_chunk, err);
    int64_t Lmax = 0;
    for (int64_t b = 0; b < B; b++) {
        if (n_prompt[b] < 1)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: prompt %lld has %lld tokens, expected >= 1",
                                 (long long)b, (long long)n_prompt[b]);
        for (int64_t t = 0; t < n_prompt[b]; t++)
            if (prompts[b][t] < 0 || prompts[b][t] >= V)
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "generate: prompt %lld: token id %d at position %lld, expected 0..%lld", (long long)b,
                                     prompts[b][t], (long long)t, (long long)(V - 1));
        if (n_prompt[b] > Lmax) Lmax = n_prompt[b];
    }
    if (Lmax > INT64_MAX / 2 - N || B > INT64_MAX / (Lmax + N) || B > (int64_t)(SIZE_MAX / sizeof(float)) / V)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "generate: %lld sequences of up to %lld + %lld tokens: too large",
                             (long long)B, (long long)Lmax, (long long)N);
    int64_t cap = Lmax + N;
    size_t bytes = graft_model_state_bytes(m, B, cap);
    /* the decode state lives where the model computes (device memory on CUDA), zero = empty */
    const graft_backend *be = graft_model_backend(m);
    void *state = be->alloc(be->ctx, bytes ? bytes : 1);
    float *logits = malloc(sizeof(float) * (size_t)(B * V));
    void *work = o->greedy ? NULL : malloc(graft_generate_pick_work_bytes(V));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B);
    int64_t *past = malloc(sizeof(int64_t) * (size_t)B);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    graft_rng *rng = malloc(sizeof(graft_rng) * (size_t)B);
    unsigned char *done = calloc((size_t)B, 1);
    graft_status st = GRAFT_STATUS_OK;
    if (!state || !logits || (!o->greedy && !work) || !ids || !past || !next || !rng || !done) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "generate: cannot allocate %zu bytes of decode state for %lld "
                           "sequences of %lld tokens", bytes, (long long)B, (long long)cap);
        goto fail;
    }
    stats->state_bytes = bytes;
    for (int64_t b = 0; b < B; b++) {
        n_out[b] = 0;
        rng[b] = graft_rng_make(o->seed, GRAFT_GENERATE_STREAM + (uint64_t)b);
    }
    /* greedy decode steps bring their ids back in next[] where the model picks on its device */
    const int device_pick = o->greedy && graft_model_picks_on_device(m);
    double t0 = graft_host_now_s(), t_first;
    if ((st = graft_generate_prefill(m, prompts, n_prompt, B, o->prefill_chunk, state, cap, logits, &stats->steps,
                                     err)))
        goto fail;
    t_first = graft_host_now_s();
    stats->prefill_s = t_first - t0;
    /* every sequence now has the logits of its first new token; decode step k feeds each its
     * latest token at position n_prompt[b] + k */
    for (int64_t k = 0;; k++) {
        int64_t n_done = 0;
        for (int64_t b = 0; b < B; b++) {
            if (!done[b]) {
                int32_t id = device_pick && k > 0 ? next[b] : graft_generate_pick(logits + b * V, V, o, &rng[b], work);
                out[b * N + n_out[b]++] = id;
                if (k > 0) stats->n_decoded++;
                if (n_out[b] == N || (!o->fixed_length && id == o->stop_id)) done[b] = 1;
            }
            ids[b] = out[b * N + n_out[b] - 1];
            past[b] = n_prompt[b] + k;
            n_done += done[b];
        }
        if (n_done == B) break;
        if (device_pick) st = graft_model_forward_state_greedy(m, ids, B, 1, state, cap, past, next, err);
        else st = graft_model_forward_state(m, ids, B, 1, state, cap, past, logits, err);
        if (st) goto fail;
        stats->steps++;
    }
    stats->decode_s = graft_host_now_s() - t_first;
    for (int64_t b = 0; b < B; b++) stats->n_new += n_out[b];
fail:
    if (state) be->free(be->ctx, state);
    free(logits);
    free(work);
    free(ids);
    free(past);
    free(next);
    free(rng);
    free(done);
    return st;
}
