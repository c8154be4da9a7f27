/* qwen3_init.h: writes a randomly initialized, HF-style Qwen3 checkpoint (config.json +
 * safetensors, single or sharded) for tests and demos (spec/qwen3.md §2.1, §8). Used by
 * `graft init --random`.
 *
 * Init: every projection and the embedding ~ Normal(0, initializer_range), every RMSNorm weight
 * = 1. Tensor k of the name-sorted list draws from graft_rng_make(seed, k), so each tensor is
 * reproducible on its own. Tensors are streamed to disk (never all in memory at once).
 * lm_head.weight is written only when tie_word_embeddings is false.
 */
#ifndef GRAFT_QWEN3_INIT_H
#define GRAFT_QWEN3_INIT_H

#include <stdint.h>

#include "config.h"
#include "graft/status.h"
#include "graft/tensor.h"

/* Writes config.json and the weights into out_dir (created if missing); dtype is F32 or BF16;
 * max_shard_bytes 0 means one model.safetensors. Every file goes through .tmp + rename, the
 * weights before config.json. Not thread-safe against another writer of the same directory. */
graft_status graft_qwen3_write_random(const graft_qwen3_config *c, uint64_t seed, graft_dtype dtype,
                                      const char *out_dir, uint64_t max_shard_bytes, graft_err *err);

#endif
