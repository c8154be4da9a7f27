/* hybrid.h: hybrid models: a Qwen3 whose chosen layers carry another mixer (DESIGN "Hybrid
 * checkpoint", "Assembly preserves function").
 *
 * On disk a hybrid is an HF-style directory: config.json = the Qwen3 fields plus
 *   "layer_types": ["full_attention" | "<mixer plugin name>", ...]   (length num_hidden_layers)
 *   "graft_mixers": {"<mixer>": {"<setting>": "<value as text>", ...}, ...}
 * and safetensors whose grafted layers hold model.layers.{i}.mixer.* instead of self_attn.*.
 * A directory without non-attention layer_types is a plain Qwen3 and loads the same way.
 *
 * Not here: choosing the layers (select.c), training (stage1.c).
 */
#ifndef GRAFT_HYBRID_H
#define GRAFT_HYBRID_H

#include <stdint.h>

#include "graft/plugin.h"
#include "model.h"

/* What one layer of a hybrid is, and where a grafted layer's mixer weights come from. */
typedef struct graft_hybrid_layer {
    const char *mixer;      /* NULL or "softmax": the base model's attention                 */
    const graft_kv *kv;     /* the mixer's settings                                          */
    int64_t n_kv;
    const char *origin;     /* where the settings came from, for messages                   */
    const char *weights;    /* safetensors holding model.layers.{i}.mixer.* (a Stage 0
                               student), or NULL: the plugin's init (teacher-mapped)          */
} graft_hybrid_layer;

/* Builds a hybrid from `base`: every parameter the two share by name is copied from base; a grafted
 * layer's mixer starts from the plugin's init (seed), then takes every tensor its `weights` file
 * has. Parameters the file lacks keep their init and are listed in *note (caller frees; NULL when
 * none), e.g. an RWKV-7 consumer's v_lora, whose init closes the value-residual gate so the
 * assembled hybrid computes what each Stage 0 student computed. A weights file with a tensor the
 * layer does not have is refused. */
graft_status graft_hybrid_assemble(graft_model_t *base, const graft_hybrid_layer *layers, uint64_t seed,
                                   graft_model_t **out, char **note, graft_err *err);

/* Loads a hybrid (or plain Qwen3) directory: config.json (+ layer_types, graft_mixers) and weights. */
graft_status graft_hybrid_load(const char *dir, graft_model_t **out, graft_err *err);

/* Writes a model as a hybrid directory: config.json with layer_types and graft_mixers, weights as
 * F32 safetensors (sharded above 2 GB), the tokenizer copied from tokenizer_dir when non-NULL.
 * layers may be NULL for a plain Qwen3. Written into <dir>.tmp and renamed. */
graft_status graft_hybrid_save(graft_model_t *m, const graft_hybrid_layer *layers, const char *dir,
                               const char *tokenizer_dir, graft_err *err);

#endif
