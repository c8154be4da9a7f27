/* generate.h: text generation with the decode state (DESIGN "Decode state"): the prompt runs once
 * through graft_model_forward_state, then one token at a time continues the same state, so the
 * cost per new token does not grow with a full recompute. Greedy or sampled (temperature, top-k,
 * top-p), batch 1.
 *
 * Not here: tokenization (the caller encodes and decodes), batching prompts of different lengths
 * (the CUDA generation of issue #8). Thread safety: one model per thread.
 */
#ifndef GRAFT_GENERATE_H
#define GRAFT_GENERATE_H

#include <stdint.h>

#include "model.h"

typedef struct graft_generate_opts {
    int64_t max_new_tokens;   /* >= 1                                                        */
    int greedy;               /* 1: argmax (temperature, top_k, top_p ignored)                */
    double temperature;       /* > 0                                                          */
    int64_t top_k;            /* 0: off                                                       */
    double top_p;             /* (0, 1]; 1: off                                               */
    uint64_t seed;            /* sampling stream                                              */
    int64_t stop_id;          /* stop after emitting this id (it is kept); -1: never stop     */
} graft_generate_opts;

graft_generate_opts graft_generate_default_opts(void); /* 32 tokens, greedy, T 1, no stop */

/* What one generation measured. */
typedef struct graft_generate_stats {
    int64_t n_new;            /* tokens written to out                                        */
    double prefill_s;         /* the prompt's forward, seconds (time to first token)          */
    double decode_s;          /* the following single-token steps, seconds                    */
} graft_generate_stats;

/* Generates up to o->max_new_tokens ids after `prompt` (n_prompt >= 1 ids) into out (capacity
 * max_new_tokens). The decode state is allocated here for n_prompt + max_new_tokens tokens. */
graft_status graft_generate(graft_model_t *m, const int32_t *prompt, int64_t n_prompt,
                            const graft_generate_opts *o, int32_t *out, graft_generate_stats *stats,
                            graft_err *err);

#endif
