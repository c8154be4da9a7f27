/* bench.c: timing generation of a control and hybrids in one process (bench.h). */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"

void graft_bench_prompt(int64_t V, int64_t b, int64_t T, int32_t *ids) {
    for (int64_t t = 0; t < T; t++)
        ids[t] = V > 1 ? (int32_t)(1 + (7919 * t + 104729 * b) % (V - 1)) : 0;
}

int64_t graft_bench_prefill_chunk(int64_t batch, int64_t context, int64_t requested) {
    if (requested > 0) return requested < context ? requested : 0;
    if (requested < 0 || batch < 1 || context <= GRAFT_BENCH_PREFILL_TOKENS / batch) return 0;
    int64_t chunk = GRAFT_BENCH_PREFILL_TOKENS / batch;
    return chunk > 1 ? chunk : 1;
}

/* ---- peak resident memory (Linux): VmHWM, reset by writing "5" to /proc/self/clear_refs ---- */

static int peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0) && ok;
}

static int64_t peak_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtoll(line + 6, NULL, 10);
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (NaNs sort as they fall; n >= 1). */
static double median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

graft_status graft_bench_measure(graft_model_t *m, int64_t context, int64_t batch, int64_t gen_tokens,
                                 int64_t prefill_chunk, int64_t repeat, graft_bench_point *out, graft_err *err) {
    memset(out, 0, sizeof *out);
    out->context = context;
    out->batch = batch;
    out->gen_tokens = gen_tokens;
    out->prefill_chunk = prefill_chunk < context ? prefill_chunk : 0;
    if (context < 1 || batch < 1 || gen_tokens < 1 || repeat < 1 || repeat > 1000 || context > INT64_MAX / batch)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "bench: context %lld, batch %lld, gen_tokens %lld, repeat %lld: "
                             "expected >= 1 each (repeat <= 1000)", (long long)context, (long long)batch,
                             (long long)gen_tokens, (long long)repeat);
    if (prefill_chunk < 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "bench: prefill_chunk %lld, expected >= 0 (0 = the whole "
                             "prompt in one call)", (long long)prefill_chunk);
    int64_t V = graft_model_config(m)->vocab_size;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(context * batch));
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)(gen_tokens * batch));
    int64_t *n_prompt = malloc(sizeof(int64_t) * (size_t)batch), *n_out = malloc(sizeof(int64_t) * (size_t)batch);
    const int32_t **prompts = malloc(sizeof(int32_t *) * (size_t)batch);
    double *ttft = malloc(sizeof(double) * (size_t)(2 * repeat)), *tok_s = ttft ? ttft + repeat : NULL;
    graft_status st = GRAFT_STATUS_OK;
    if (!ids || !gen || !n_prompt || !n_out || !prompts || !ttft) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bench: out of memory for %lld x %lld prompt ids",
                           (long long)batch, (long long)context);
        goto done;
    }
    /* warm-up length: 16 tokens and 2 new ones on the CPU (thread pool, first allocations); on a
     * device the whole context and all gen_tokens new ones: the first product of a new shape builds
     * its cuBLASLt plan, and the decode step is captured into a CUDA graph keyed by the batch, the
     * state's capacity (context + new tokens) and its address. With the timed runs' capacity the
     * warm-up leaves the graph they replay (where the state is allocated at the same address again,
     * as cudaMalloc does for a block just freed); with 2 new tokens, as before, each measurement's
     * first timed run also paid an eager step and the capture, which --repeat 2 averaged in. */
    const int full_warmup = graft_model_backend(m)->device != GRAFT_DEVICE_CPU;
    for (int64_t b = 0; b < batch; b++) {
        graft_bench_prompt(V, b, context, ids + b * context);
        prompts[b] = ids + b * context;
        n_prompt[b] = full_warmup || context < 16 ? context : 16;
    }
    /* the warm-up prefills in the same chunks, so the timed runs build no new shapes */
    graft_generate_opts o = graft_generate_default_opts();
    o.greedy = 1;
    o.fixed_length = 1;
    o.max_new_tokens = full_warmup || gen_tokens < 2 ? gen_tokens : 2; /* gen holds gen_tokens a sequence */
    o.prefill_chunk = out->prefill_chunk;
    graft_generate_stats gs;
    if ((st = graft_generate_batch(m, prompts, n_prompt, batch, &o, gen, n_out, &gs, err))) goto done;
    for (int64_t b = 0; b < batch; b++) n_prompt[b] = context;
    o.max_new_tokens = gen_tokens;
    const graft_backend *be = graft_model_backend(m);
    int reset = be->mem_peak ? (be->mem_peak(be->ctx, 1), 1) : peak_reset();
    for (int64_t r = 0; r < repeat; r++) {
        if ((st = graft_generate_batch(m, prompts, n_prompt, batch, &o, gen, n_out, &gs, err))) goto done;
        ttft[r] = 1e3 * gs.prefill_s;
        tok_s[r] = gs.n_decoded > 0 && gs.decode_s > 0 ? (double)gs.n_decoded / gs.decode_s : NAN;
    }
    out->peak_bytes = be->mem_peak ? be->mem_peak(be->ctx, 0) : reset ? peak_bytes() : -1;
    out->ttft_ms = median(ttft, repeat);
    out->decode_tok_s = median(tok_s, repeat);
    out->state_bytes = (int64_t)gs.state_bytes;
done:
    free(ttft);
    free(ids);
    free(gen);
    free(n_prompt);
    free(n_out);
    free(prompts);
    return st;
}

static double ratio(double a, double b) { return (b > 0 && isfinite(a) && isfinite(b)) ? a / b : NAN; }

graft_status graft_bench_run(const graft_bench_plan *p, char *summary, size_t summary_size, graft_err *err) {
    int64_t n_pts = p->n_contexts * p->n_batches;
    graft_bench_point *pts = calloc((size_t)(p->n_models * n_pts), sizeof *pts);
    if (!pts) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bench: out of memory");
    graft_status st = GRAFT_STATUS_OK;
    size_t k = 0;
    if (summary && summary_size) summary[0] = 0;
    if (p->prefill_chunk < -1) {
        free(pts);
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "bench: prefill_chunk %lld, expected >= -1 (0 = automatic, "
                             "-1 = never chunk)", (long long)p->prefill_chunk);
    }
    /* chunk: prompt tokens per sequence per prefill call, "-" for the whole prompt in one call */
    fprintf(p->out, "  %-24s %7s %5s %6s %11s %12s %12s %12s\n", "model", "context", "batch", "chunk", "ttft_ms",
            "decode_tok/s", "state_MiB", "peak_MiB");
    /* Each model is loaded once and measured at every point, then freed before the next is
     * loaded (a load can take a minute at 1.7B, and a peak never includes another model). */
    for (int64_t i = 0; i < p->n_models && !st; i++) {
        graft_model_t *m = NULL;
        if ((st = p->load(p->load_ctx, i, &m, err))) break;
        for (int64_t ic = 0; ic < p->n_contexts && !st; ic++)
            for (int64_t ib = 0; ib < p->n_batches && !st; ib++) {
                int64_t ctx = p->contexts[ic], batch = p->batches[ib];
                int64_t chunk = graft_bench_prefill_chunk(batch, ctx, p->prefill_chunk);
                graft_bench_point *q = &pts[i * n_pts + ic * p->n_batches + ib];
                st = graft_bench_measure(m, ctx, batch, p->gen_tokens, chunk, p->repeat > 0 ? p->repeat : 1, q, err);
                if (st) {
                    char where[160];
                    snprintf(where, sizeof where, "bench: %s at context %lld, batch %lld", p->names[i], (long long)ctx,
                             (long long)batch);
                    graft_err_prefix(err, where);
                    break;
                }
                char chunk_text[24] = "-";
                if (q->prefill_chunk) snprintf(chunk_text, sizeof chunk_text, "%lld", (long long)q->prefill_chunk);
                fprintf(p->out, "  %-24s %7lld %5lld %6s %11.2f %12.1f %12.3f %12.1f\n", p->names[i], (long long)ctx,
                        (long long)batch, chunk_text, q->ttft_ms, q->decode_tok_s, (double)q->state_bytes / 1048576.0,
                        q->peak_bytes < 0 ? NAN : (double)q->peak_bytes / 1048576.0);
                fflush(p->out);
                if (p->log) {
                    graft_bench_row row = {p->names[i], ctx, batch, q->prefill_chunk, q->ttft_ms, q->decode_tok_s,
                                           q->state_bytes, q->peak_bytes};
                    st = graft_runlog_append_bench(p->log, p->stage, &row, err);
                }
            }
        graft_model_free(m);
    }
    for (int64_t ic = 0; ic < p->n_contexts && !st; ic++)
        for (int64_t ib = 0; ib < p->n_batches; ib++) {
            int64_t ctx = p->contexts[ic], batch = p->batches[ib], j = ic * p->n_batches + ib;
            const graft_bench_point *base = &pts[p->baseline * n_pts + j];
            for (int64_t i = 0; i < p->n_models; i++) {
                if (i == p->baseline) continue;
                const graft_bench_point *q = &pts[i * n_pts + j];
                double s_ttft = ratio(base->ttft_ms, q->ttft_ms), s_dec = ratio(q->decode_tok_s, base->decode_tok_s);
                double s_state = ratio((double)q->state_bytes, (double)base->state_bytes);
                fprintf(p->out, "    -> %s vs %s at context %lld, batch %lld: TTFT %.2fx faster, decode %.2fx, "
                                "state %.3fx the bytes\n", p->names[i], p->names[p->baseline], (long long)ctx,
                        (long long)batch, s_ttft, s_dec, s_state);
                if (summary && k + 1 < summary_size)
                    k += (size_t)snprintf(summary + k, summary_size - k, "%sbench: %s vs %s ctx %lld x%lld: TTFT %.2fx, "
                                          "decode %.2fx, state %.3fx", k ? "\n" : "", p->names[i], p->names[p->baseline],
                                          (long long)ctx, (long long)batch, s_ttft, s_dec, s_state);
                if (summary && k >= summary_size) k = summary_size - 1;
            }
        }
    free(pts);
    return st;
}
