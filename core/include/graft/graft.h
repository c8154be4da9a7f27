/* graft/graft.h: the umbrella header of graft's public API and its version.
 *
 * graft grafts linear-attention mixers into pretrained Qwen3 models (DESIGN.md). The public
 * surface is deliberately small: status and errors, tensor descriptors, the deterministic RNG and
 * the plugin ABI. Everything else (model, stages, recipes) is driven through the `graft` binary.
 */
#ifndef GRAFT_GRAFT_H
#define GRAFT_GRAFT_H

#include "graft/plugin.h"
#include "graft/rng.h"
#include "graft/status.h"
#include "graft/tensor.h"

#define GRAFT_VERSION_MAJOR 0
#define GRAFT_VERSION_MINOR 1
#define GRAFT_VERSION_PATCH 0
#define GRAFT_VERSION_STRING "0.1.0"

#endif /* GRAFT_GRAFT_H */
