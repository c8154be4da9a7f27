/* bench.h: the generation benchmark shared by the bench stage of `graft run` (run_bench.c) and
 * `graft bench` (cli/cmd_bench.c): several models (a control and hybrids) timed in one process on
 * one device, each model loaded once and measured at every (context, batch), and each model's
 * speedup over the baseline printed from the same run (DESIGN principle 7).
 *
 * One measurement (graft_bench_measure) of model m at (context, batch, gen_tokens, prefill chunk):
 *   prompts   synthetic ids, so no tokenizer is needed: sequence b, position t holds
 *             1 + (7919 t + 104729 b) mod (V - 1)   (graft_bench_prompt)
 *   warm-up   an untimed generation of min(context, 16) tokens (CPU: thread pool, first
 *             allocations; on a device the whole context: cuBLASLt plans of the new shapes) and 2
 *             new ones at the same batch and prefill chunk
 *   timed     `repeat` times: greedy, fixed length (no early stop): prefill of `context` tokens
 *             for the batch (in calls of prefill_chunk tokens per sequence, each continuing the
 *             decode state, or in one call), then gen_tokens - 1 single-token steps (generate.h)
 *   ttft_ms        prefill of the batch up to its first token, milliseconds (median of repeats)
 *   decode_tok_s   batch * (gen_tokens - 1) / the decode steps' seconds (median of repeats; NaN
 *                  when gen_tokens = 1)
 *   state_bytes    the decode state: KV cache + recurrent state for context + gen_tokens tokens
 *   peak_bytes     CUDA: the most device memory graft held through the backend during the timed
 *                  generations (weights, arenas, logits, decode state; backend mem_peak). CPU: the
 *                  process's peak resident memory during the timed generations (Linux
 *                  VmHWM, reset before it through /proc/self/clear_refs), so the loaded model's
 *                  weights and arenas are included; -1 where that reset is not allowed
 *
 * Models are loaded one at a time through the caller's loader and freed after each measurement,
 * so a peak never includes another model. Not here: choosing or loading models (the callers).
 * Thread safety: one benchmark per process (the peak counter is the process's).
 */
#ifndef GRAFT_BENCH_H
#define GRAFT_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "runlog.h"

typedef struct graft_bench_point {
    int64_t context, batch, gen_tokens;
    int64_t prefill_chunk; /* prompt tokens per sequence per prefill call used; 0: one call     */
    double ttft_ms;
    double decode_tok_s;
    int64_t state_bytes;
    int64_t peak_bytes;   /* -1: not measurable here */
} graft_bench_point;

/* The synthetic prompt of sequence b: T ids in 0..V-1 (see above). */
void graft_bench_prompt(int64_t V, int64_t b, int64_t T, int32_t *ids);

/* The automatic prefill chunk: a call of more than this many tokens (batch x chunk) is split.
 * The inference arena holds every layer's hidden state and one layer's working buffers for all
 * tokens of a call: at the Qwen3-1.7B shape on CUDA (bf16 activations, 28 layers, width 2048, MLP
 * 6144, 16/8 heads of 128) about 300 KB per token (model.c ensure_activations with the block's
 * and the softmax plugin's workspace), so a 65536-token call needs about 20 GB beside the weights
 * and the decode state. That state is not bounded by chunking: a 16 x 32768 control's KV cache
 * alone is 60 GB, so on an 80 GB GPU that row needs a smaller chunk than this rule gives (4096
 * tokens per sequence: 20 GB of activations). */
#define GRAFT_BENCH_PREFILL_TOKENS 65536

/* The prefill chunk used at (batch >= 1, context >= 1): prompt tokens per sequence per call, 0
 * meaning the whole prompt in one call. `requested` (graft_bench_plan.prefill_chunk, >= -1):
 * > 0 that chunk (0 where it is >= context: one call anyway); -1 never chunk; 0 automatic: one
 * call while batch x context <= GRAFT_BENCH_PREFILL_TOKENS, else max(1, that / batch). */
int64_t graft_bench_prefill_chunk(int64_t batch, int64_t context, int64_t requested);

/* Measures m at (context >= 1, batch >= 1, gen_tokens >= 1), the prompts prefilled in calls of
 * prefill_chunk >= 0 tokens per sequence (0: one call; a resolved chunk, see above), repeat >= 1
 * timed runs, into *out. */
graft_status graft_bench_measure(graft_model_t *m, int64_t context, int64_t batch, int64_t gen_tokens,
                                 int64_t prefill_chunk, int64_t repeat, graft_bench_point *out, graft_err *err);

/* Loads model i (0 <= i < n_models) into *out; the benchmark frees it with graft_model_free. */
typedef graft_status (*graft_bench_load_fn)(void *ctx, int64_t i, graft_model_t **out, graft_err *err);

typedef struct graft_bench_plan {
    const char *const *names;      /* n_models display names (<= 63 bytes in the run log)      */
    int64_t n_models;
    graft_bench_load_fn load;
    void *load_ctx;
    int64_t baseline;              /* the model speedups are relative to (the control)         */
    const int64_t *contexts;       /* n_contexts prompt lengths                                */
    int64_t n_contexts;
    const int64_t *batches;
    int64_t n_batches;
    int64_t gen_tokens;
    int64_t prefill_chunk;         /* >= -1: 0 automatic, > 0 that chunk, -1 never chunk
                                      (graft_bench_prefill_chunk)                              */
    int64_t repeat;                /* timed runs per measurement, >= 1                          */
    FILE *out;                     /* the table and the speedups are printed here              */
    graft_runlog_t *log;           /* rows go to its `bench` table of stage `stage`; NULL: none */
    int32_t stage;
} graft_bench_plan;

/* Runs every (context, batch) for every model; prints one line per measurement and, per
 * (context, batch), each model's TTFT and decode speedup and state ratio against the baseline.
 * When summary != NULL, a short version of the speedups is written there (NUL-terminated). */
graft_status graft_bench_run(const graft_bench_plan *p, char *summary, size_t summary_size, graft_err *err);

#endif
