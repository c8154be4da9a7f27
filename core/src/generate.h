/* generate.h: text generation with the decode state (DESIGN "Decode state"): the prompts run
 * through graft_model_forward_state, then one token at a time continues the same state (KV cache
 * for softmax layers, recurrent state for linear ones), so the cost per new token does not grow
 * with a full recompute. Greedy or sampled (temperature, top-k, top-p), batch 1 or B sequences
 * of different prompt lengths decoded together, with an early stop or a fixed length.
 *
 * Prompts of different lengths (graft_generate_batch): the B sequences share one decode state of
 * B slots. Equal lengths are prefilled together (B, P). Different lengths are prefilled one
 * sequence at a time into a one-slot state, which graft_model_state_copy_slot moves into slot b;
 * then every call is one token per sequence (B, 1), sequence b at position n_prompt[b] + k (the
 * model takes a past length per sequence). Each sequence therefore sees exactly its own prompt and
 * continuation, as a full recompute does (tests/unit/test_generate.c). A sequence that has
 * finished keeps being fed (its last token); its output is not extended.
 *
 * Prefill chunks (o->prefill_chunk): the model's activation arena holds every layer's hidden state
 * for all tokens of one call, so one (B, P) call needs activations for B x P tokens (16 x 32768
 * at Qwen3-1.7B does not fit on an 80 GB GPU). With a chunk c, the prompts go through in calls of
 * (B, c) tokens, each continuing the decode state the previous one left (past_len = tokens done),
 * so activations are bounded at B x c tokens, while the decode state still holds the whole
 * context. The last call's logits are the first-token logits; the result equals one call up to
 * the rounding of different product shapes. Different lengths are chunked the same way, each
 * prompt alone.
 *
 * Sampling streams: sequence b draws from graft_rng_make(seed, GRAFT_GENERATE_STREAM + b), and
 * only when it picks a token, so its continuation does not depend on the other sequences.
 *
 * Not here: tokenization (the caller encodes and decodes), the timing tables (bench.c).
 * Thread safety: one model per thread.
 */
#ifndef GRAFT_GENERATE_H
#define GRAFT_GENERATE_H

#include <stdint.h>

#include "graft/rng.h"
#include "model.h"

#define GRAFT_GENERATE_STREAM 0x67656eull

typedef struct graft_generate_opts {
    int64_t max_new_tokens;   /* >= 1, per sequence                                          */
    int greedy;               /* 1: argmax (temperature, top_k, top_p ignored)                */
    double temperature;       /* > 0                                                          */
    int64_t top_k;            /* 0: off                                                       */
    double top_p;             /* (0, 1]; 1: off                                               */
    uint64_t seed;            /* sampling streams                                             */
    int64_t stop_id;          /* stop after emitting this id (it is kept); -1: never stop     */
    int fixed_length;         /* 1: always max_new_tokens per sequence, stop_id ignored (bench) */
    int64_t prefill_chunk;    /* > 0: prompts go through the model in calls of at most this many
                                 tokens per sequence, each continuing the state; 0: one call   */
} graft_generate_opts;

/* 32 tokens, greedy, T 1, no stop, each prompt prefilled in one call */
graft_generate_opts graft_generate_default_opts(void);

/* What one generation measured. */
typedef struct graft_generate_stats {
    int64_t n_new;            /* tokens written, all sequences                                 */
    int64_t n_decoded;        /* of those, tokens picked after every sequence had its first    */
    double prefill_s;         /* the prompts' forward(s) until every sequence has the logits of
                                 its first new token, seconds (time to first token)            */
    double decode_s;          /* the single-token steps after that, seconds                    */
    int64_t steps;            /* forward calls, the prefill included                          */
    size_t state_bytes;       /* the decode state allocated (KV cache + recurrent state)      */
} graft_generate_stats;

/* Generates up to o->max_new_tokens ids after `prompt` (n_prompt >= 1 ids) into out (capacity
 * max_new_tokens); stats->n_new says how many. graft_generate_batch with B = 1. */
graft_status graft_generate(graft_model_t *m, const int32_t *prompt, int64_t n_prompt,
                            const graft_generate_opts *o, int32_t *out, graft_generate_stats *stats,
                            graft_err *err);

/* B >= 1 sequences: prompts[b] holds n_prompt[b] >= 1 ids (each in 0..V-1). Sequence b's new ids
 * go to out + b * o->max_new_tokens, n_out[b] of them (all pointers caller-owned). The decode
 * state (B slots of max(n_prompt) + max_new_tokens tokens) and the logits are allocated here and
 * freed before returning. Errors: BAD_INPUT (empty prompt, id out of range, bad options),
 * NO_MEMORY, or a mixer's failure. */
graft_status graft_generate_batch(graft_model_t *m, const int32_t *const *prompts, const int64_t *n_prompt,
                                  int64_t B, const graft_generate_opts *o, int32_t *out, int64_t *n_out,
                                  graft_generate_stats *stats, graft_err *err);

/* The prefill of graft_generate_batch, for tests that compare chunk sizes: runs the B prompts
 * (as there) into `state`, B slots of `capacity` >= max(n_prompt) tokens in the backend's memory,
 * zero-filled (be->alloc), in calls of at most `chunk` >= 0 tokens per sequence (0: one call per
 * prompt, or one for all when the lengths are equal), and writes each sequence's first-token
 * logits to logits (B, V; host, caller-owned). *steps (caller-owned) is increased by the forward
 * calls made. Errors: BAD_INPUT (chunk < 0, an empty prompt, an id out of range, a prompt
 * longer than capacity), NO_MEMORY, or a mixer's failure. */
graft_status graft_generate_prefill(graft_model_t *m, const int32_t *const *prompts, const int64_t *n_prompt,
                                    int64_t B, int64_t chunk, void *state, int64_t capacity, float *logits,
                                    int64_t *steps, graft_err *err);

/* The sampler, for tests that pick from recomputed logits the way generation does. `work` holds
 * graft_generate_pick_work_bytes(V) bytes (caller-owned, reused between calls). */
size_t graft_generate_pick_work_bytes(int64_t V);
int32_t graft_generate_pick(const float *logits, int64_t V, const graft_generate_opts *o, graft_rng *rng,
                            void *work);

#endif
