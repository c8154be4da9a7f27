/* config.h: the Qwen3 config.json (spec/qwen3.md §1): reader accepting every transformers
 * spelling (4.51 / 4.57 / 5.x), validation before anything is allocated, and the writer.
 *
 * Refused, naming the field: missing required fields, wrong JSON types, sizes <= 0 or absurd
 * (over the caps below), nq % nkv != 0, odd head_dim, rope scaling other than default, sliding
 * windows, attention_bias, hidden_act != silu, and layer_types entries other than
 * "full_attention" (hybrid layer types are parsed by the hybrid module, not here).
 */
#ifndef GRAFT_CONFIG_H
#define GRAFT_CONFIG_H

#include <stdint.h>

#include "graft/status.h"

#define GRAFT_MAX_EOS 8

/* Caps that no real Qwen3 exceeds; beyond them a config is "absurd" and refused before any
 * allocation is sized from it. */
#define GRAFT_CFG_MAX_WIDTH (1 << 17)
#define GRAFT_CFG_MAX_LAYERS 1024
#define GRAFT_CFG_MAX_HEADS 1024
#define GRAFT_CFG_MAX_VOCAB (1 << 22)

typedef struct graft_qwen3_config {
    int64_t hidden_size;         /* C */
    int64_t intermediate_size;   /* I */
    int64_t n_layer;             /* L */
    int64_t n_head;              /* nq */
    int64_t n_kv_head;           /* nkv */
    int64_t head_dim;            /* D */
    int64_t vocab_size;          /* V */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    double initializer_range;
    int tie_word_embeddings;
    int64_t bos_token_id;        /* -1 when absent */
    int64_t eos_token_ids[GRAFT_MAX_EOS];
    int n_eos;
    char dtype[16];              /* the torch_dtype / dtype hint, "" when absent */
    int head_dim_defaulted;      /* 1 when head_dim was missing and set to C / nq (warn) */
} graft_qwen3_config;

/* The Qwen3 defaults for fields a file may omit (not for the required ones). */
graft_qwen3_config graft_qwen3_config_default(void);

/* Reads and validates `path` (a config.json). */
graft_status graft_config_load(const char *path, graft_qwen3_config *out, graft_err *err);

/* The same for a hybrid's config.json, whose layer_types may name mixer plugins (hybrid.h reads
 * which; every other rule is unchanged). */
graft_status graft_config_load_hybrid(const char *path, graft_qwen3_config *out, graft_err *err);

/* Validates an in-memory config (what graft_config_load runs after parsing). `origin` names the
 * source in messages. */
graft_status graft_config_validate(const graft_qwen3_config *c, const char *origin, graft_err *err);

/* Writes an HF-style config.json (4.51 spelling, sorted keys, 2-space indent) via .tmp + rename. */
graft_status graft_config_write(const char *path, const graft_qwen3_config *c, graft_err *err);

#endif
