/* hybrid_spec.h: the hybrid spec file (YAML) that select writes and stage1 / the model loader
 * read: which layer keeps full attention and which gets which mixer, each mixer's settings, and
 * where each grafted layer's weights come from. Format in docs/recipes.md "Hybrid spec":
 *
 *     format: graft-hybrid-spec/1
 *     n_layer: 4
 *     layer_types: ["full_attention", "gla", "full_attention", "rwkv7"]
 *     mixers:
 *       "gla": {"num_heads": "4"}
 *       "rwkv7": {}
 *     weights:
 *       1: "stage1-stage0/layer1-gla.safetensors"
 *
 * Writing is atomic (<path>.tmp, fsync, rename). Reading validates everything with file:line:col.
 * Relative weight paths are resolved against the spec file's directory when read.
 * Thread safety: no globals; a spec object belongs to one thread at a time.
 */
#ifndef GRAFT_HYBRID_SPEC_H
#define GRAFT_HYBRID_SPEC_H

#include <stdint.h>

#include "graft/plugin.h"
#include "graft/status.h"
#include "select.h"

#define GRAFT_HYBRID_SPEC_FORMAT "graft-hybrid-spec/1"
#define GRAFT_FULL_ATTENTION "full_attention"

typedef struct graft_spec_mixer {
    char *name;
    graft_kv *kv;            /* settings as text; where = "spec.yaml:L:C" after a load       */
    int64_t n_kv;
} graft_spec_mixer;

typedef struct graft_hybrid_spec {
    int64_t n_layer;
    char **layer_types;      /* n_layer: GRAFT_FULL_ATTENTION or a name in mixers            */
    graft_spec_mixer *mixers;
    int64_t n_mixers;
    char **weights;          /* n_layer: a path, or NULL (none given for that layer)          */
} graft_hybrid_spec;

/* A spec of n_layer full-attention layers (1 <= n_layer <= 1024). Free with graft_hybrid_spec_free. */
graft_status graft_hybrid_spec_init(int64_t n_layer, graft_hybrid_spec **out, graft_err *err);

/* Adds mixer `name` with its settings (copied; kv[i].where is not kept). Refuses a name that is
 * empty, "full_attention", already present, or not [A-Za-z0-9_.-]. */
graft_status graft_hybrid_spec_add_mixer(graft_hybrid_spec *spec, const char *name,
                                         const graft_kv *kv, int64_t n_kv, graft_err *err);

/* Sets layer `layer` to `type` (GRAFT_FULL_ATTENTION or an added mixer) with weights path
 * `weights` (copied; may be NULL). */
graft_status graft_hybrid_spec_set_layer(graft_hybrid_spec *spec, int64_t layer, const char *type,
                                         const char *weights, graft_err *err);

/* The spec of a selection: every mixer used in `sel` must be among `mixers` (their settings, as
 * in a stage0 recipe stage), unused mixers are left out. When weights_dir is not NULL, layer l
 * grafted with mixer m gets weights "<weights_dir>/layer<l>-<m>.safetensors" (the Stage 0
 * checkpoint naming). */
graft_status graft_hybrid_spec_from_selection(const graft_selection *sel,
                                              const graft_recipe_mixer *mixers, int64_t n_mixers,
                                              const char *weights_dir, graft_hybrid_spec **out,
                                              graft_err *err);

/* Writes the spec to `path` atomically. */
graft_status graft_hybrid_spec_write(const graft_hybrid_spec *spec, const char *path,
                                     graft_err *err);

/* Reads and validates a spec file. On failure *out is NULL. */
graft_status graft_hybrid_spec_load(const char *path, graft_hybrid_spec **out, graft_err *err);

/* Frees a spec. NULL is a no-op. */
void graft_hybrid_spec_free(graft_hybrid_spec *spec);

#endif
