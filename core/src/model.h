/* model.h: the Qwen3 decoder (spec/qwen3.md §3) with one token mixer per layer behind the plugin
 * ABI (softmax attention by default; GLA, RWKV-7 or any plugin in hybrids), on a backend,
 * forward to logits and hand-written backward to every parameter's gradient.
 *
 * Parameters are fp32 on the CPU backend, each a named view into one weights arena; gradients a
 * second arena of the same layout (allocated on the first training forward). Activations for
 * backward live in a third arena sized for the largest (B, T) seen.
 *
 * Not here: loading from disk (model_load.c), losses, optimizer, data. Thread safety: a model
 * object is used by one thread at a time (ops use the backend's threads internally).
 */
#ifndef GRAFT_MODEL_H
#define GRAFT_MODEL_H

#include <stdint.h>

#include "adamw.h"
#include "backend.h"
#include "config.h"
#include "graft/plugin.h"

typedef struct graft_model graft_model_t;

/* What mixer layer i uses. mixer == NULL or "softmax" is Qwen3's own attention. */
typedef struct graft_layer_spec {
    const char *mixer;
    const graft_kv *kv;
    int64_t n_kv;
    const char *origin;
} graft_layer_spec;

/* One parameter: an HF name ("model.layers.3.mlp.up_proj.weight"), its data and gradient. */
typedef struct graft_model_param {
    const char *name;
    int32_t ndim;
    int64_t shape[GRAFT_MAX_DIMS];
    int64_t numel;
    float *data;        /* host F32: what loaders, init, the optimizer and checkpoints use    */
    float *grad;        /* F32 in the BACKEND's memory (device memory on CUDA); NULL until the
                           first training forward and after a backend move                    */
    void *work;         /* what the backend's ops read: == data on the CPU; on CUDA a BF16
                           device copy, refreshed from data by graft_model_upload()          */
    uint32_t flags;     /* GRAFT_PARAM_* */
    int64_t layer;      /* -1 outside the layers */
} graft_model_param;

/* Builds a model of this config with zero weights. layers: n_layer specs or NULL (all softmax). */
graft_status graft_model_create(const graft_qwen3_config *cfg, const graft_layer_spec *layers,
                                graft_model_t **out, graft_err *err);
void graft_model_free(graft_model_t *m);

const graft_qwen3_config *graft_model_config(const graft_model_t *m);
int64_t graft_model_n_params(const graft_model_t *m);
graft_model_param *graft_model_param_at(graft_model_t *m, int64_t i);
graft_model_param *graft_model_param_find(graft_model_t *m, const char *name);
/* Parameter count in elements (the tied embedding counted once). */
int64_t graft_model_numel(const graft_model_t *m);

/* Random initialization (qwen3.md §8): every non-mixer matrix ~ Normal(0, cfg.initializer_range),
 * RMSNorm weights 1; each mixer's parameters from its plugin's own init. Deterministic in seed:
 * parameter i draws from graft_rng_make(seed, i). */
graft_status graft_model_init_random(graft_model_t *m, uint64_t seed, graft_err *err);

/* Loads weights from an HF checkpoint (dir, .safetensors or index) into a created model: every
 * expected tensor must be present with its shape, nothing unexpected may be (qwen3.md §2.2 for
 * the tied lm_head copy: accepted, compared, warned about when different). */
graft_status graft_model_load_weights(graft_model_t *m, const char *path, graft_err *err);

/* config.json + weights of an HF directory, all layers softmax. */
graft_status graft_model_load(const char *dir, graft_model_t **out, graft_err *err);

/* Forward of ids (B, T) (0 <= id < V) to logits (B, T, V) (NULL: skip the head). train = 1 keeps
 * what backward needs. hidden, when non-NULL, receives the residual stream after the embedding
 * and after every layer: (L + 1, B, T, C). */
graft_status graft_model_forward(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                 float *logits, float *hidden, int train, graft_err *err);

/* The residual stream h[0..L] of the last forward ((L + 1, B, T, C), the backend's act_dtype, in its
 * memory: F32 host on the CPU, BF16 device memory on CUDA), valid until the next call on m. What
 * Stage 0 reads on every backend without a copy (the host `hidden` of graft_model_forward is F32). */
graft_status graft_model_hidden_device(graft_model_t *m, const void **hidden, graft_err *err);
/* The head of the last forward (run with logits == NULL) on a device backend: F32 logits (B*T, V)
 * in the backend's memory, valid until the next call (a teacher's logits that need not cross the
 * bus). UNSUPPORTED on the CPU. */
graft_status graft_model_head_device(graft_model_t *m, const float **logits, graft_err *err);

/* Teacher-forced layers (inference): layer l runs on hidden_in[l] (hidden_in is (L + 1, B, T, C),
 * e.g. another model's residual stream from graft_model_forward) and writes out[l] ((L, B, T, C)).
 * Carried streams flow between layers as in a forward. This is how Stage 0 sees a layer, so it
 * checks that a hybrid reproduces each Stage 0 student (DESIGN "Assembly preserves function"). */
graft_status graft_model_forward_layers(graft_model_t *m, const float *hidden_in, int64_t B, int64_t T,
                                        float *out, graft_err *err);
/* Backward of the last training forward, given dlogits (B, T, V). Parameter gradients ACCUMULATE.
 * CPU only (UNSUPPORTED on a device: use graft_model_backward_loss). */
graft_status graft_model_backward(graft_model_t *m, const float *dlogits, graft_err *err);

/* The loss of a training step, all arrays on the HOST. Rows with labels[n] == ignore_index are
 * not counted. dlogits = ce_scale * d(CE sum) + kl_scale * d(Bernoulli + top-k sum) (losses/README.md),
 * e.g. ce_scale = alpha / rows. topk_ids == NULL: CE only. */
typedef struct graft_model_loss {
    const int32_t *labels;        /* (B*T) */
    int32_t ignore_index;         /* -100 */
    float ce_scale;
    const int32_t *topk_ids;      /* (B*T, k) teacher top-k (distinct per row), or NULL */
    const float *topk_logp;       /* (B*T, k) teacher log-probs at temperature 1 */
    const float *topk_mass;       /* (B*T) */
    int64_t k;
    float temperature, kl_scale;
} graft_model_loss;

/* Head + loss + backward of the last training forward (run with logits == NULL: no logits are
 * needed). On a device backend the lm_head projection is fused with the loss (cuda/lmhead_loss.cuh:
 * fp32 logits exist one chunk of rows at a time, never on the host); on the CPU it computes the
 * logits, the CE in double and calls graft_model_backward (top-k KL: UNSUPPORTED there, train.c
 * uses the loss plugins). Gradients ACCUMULATE. sums (host, may be NULL): CE sum, counted rows,
 * Bernoulli sum, top-k sum. */
graft_status graft_model_backward_loss(graft_model_t *m, const graft_model_loss *loss, double sums[4],
                                       graft_err *err);

/* One AdamW step t >= 1 over every parameter (adamw.h math), with global-norm clipping to max_norm
 * (<= 0: none; *grad_norm, when non-NULL, gets the norm before clipping). The moments (and, on a
 * device, an F32 master copy of the weights uploaded from the host weights at the first step) live
 * in the backend's memory, allocated at the first call; on a device the step refreshes the bf16
 * working copy and leaves the host weights stale until graft_model_download. A backend move drops
 * this state (and the gradients). */
graft_status graft_model_opt_step(graft_model_t *m, const graft_adamw_params *p, int64_t t, double lr,
                                  double max_norm, double *grad_norm, graft_err *err);
/* The AdamW moments in the layout of a training checkpoint (train.c): parameter i's first moment
 * at float offset sum_{j<i} numel_j of `mom`, its second moment at graft_model_numel(m) plus that
 * offset (mom holds 2 * graft_model_numel(m) floats, host memory, the caller's).
 * get: copies them out (zeros before the first graft_model_opt_step).
 * set: creates the optimizer state first if there is none (needs the gradients of a training
 * forward; on a device the F32 masters are taken from the HOST weights then, so load those and
 * graft_model_upload before), then copies the moments in. This is how a device run checkpoints
 * and resumes. */
graft_status graft_model_opt_moments_get(graft_model_t *m, float *mom, graft_err *err);
graft_status graft_model_opt_moments_set(graft_model_t *m, const float *mom, graft_err *err);
/* Copies the device F32 masters back into the host weights (checkpoints, evaluation on the CPU);
 * nothing to do on the CPU or before the first device step. */
graft_status graft_model_download(graft_model_t *m, graft_err *err);

/* Decoding. A decode state holds, per layer, B slots of that layer's mixer state for up to
 * `capacity` tokens (KV cache for softmax layers, recurrent state and tails for linear ones; DESIGN
 * "Decode state"). Bytes for (B, capacity); the caller allocates them zero-filled (zero = empty). */
size_t graft_model_state_bytes(const graft_model_t *m, int64_t B, int64_t capacity);

/* Runs T new tokens per sequence (ids (B, T)) through the model continuing `state` (updated in
 * place), where sequence b already holds past_len[b] tokens (NULL: all 0), and writes the logits
 * of the last new position of each sequence to last_logits (B, V). Generating with this equals
 * a full recompute (tests/model). last_logits NULL: no head at all (a prefill chunk before the
 * last, whose logits nobody reads): the call queues the layers and returns without waiting for
 * the device.
 *
 * On CUDA, a single-token step (T = 1, past_len given) whose mixers all declare
 * GRAFT_MIXER_CAP_CUDA_GRAPH runs as a CUDA graph: the first such call with a given (B, state,
 * capacity) runs eagerly, the second is captured, later ones replay it (one launch instead of
 * hundreds), the lengths travelling in device memory. GRAFT_CUDA_GRAPHS=0 turns this off. */
graft_status graft_model_forward_state(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                       void *state, int64_t capacity, const int64_t *past_len,
                                       float *last_logits, graft_err *err);

/* graft_model_forward_state for greedy decoding on a device: next (B) gets each sequence's argmax
 * id (the first index of the largest logit, as generate.c's greedy pick) instead of its logits:
 * the argmax runs on the device and B int32 come back instead of B x V fp32 (600 KB per sequence
 * at Qwen3's vocabulary, copied and scanned on the host while the GPU idles). UNSUPPORTED, with
 * nothing run, where graft_model_picks_on_device says no (the CPU: its logits are already host
 * memory). */
int graft_model_picks_on_device(const graft_model_t *m);
graft_status graft_model_forward_state_greedy(graft_model_t *m, const int32_t *ids, int64_t B, int64_t T,
                                              void *state, int64_t capacity, const int64_t *past_len, int32_t *next,
                                              graft_err *err);

/* Moves the model's compute to `be` (the CPU backend, or one from graft_backend_open): frees the
 * activations, and on a device backend allocates the working copy of the weights there
 * (be->weight_dtype) and uploads it from the host F32 weights. The host weights stay the master.
 * Every mixer must have GRAFT_MIXER_CAP_CUDA for CUDA (else UNSUPPORTED naming the layer). On
 * failure the model is back on the CPU. After a device move, forward (inference and training),
 * forward_state, graft_model_backward_loss and graft_model_opt_step run there (hidden-state
 * output comes back cast to F32); forward_layers and graft_model_backward (host dlogits) are
 * refused with UNSUPPORTED.
 * forward_state's `state` must then be memory of the backend (be->alloc: zero-filled). Gradients
 * and optimizer state are dropped by a move (download first to keep trained weights). */
graft_status graft_model_set_backend(graft_model_t *m, const graft_backend *be, graft_err *err);
/* Copies the host F32 weights into the working copy again (after the host weights changed). */
graft_status graft_model_upload(graft_model_t *m, graft_err *err);
const graft_backend *graft_model_backend(const graft_model_t *m);

/* Copies sequence b_src's slot of every layer from `src` (a state of B_src slots) into slot b_dst
 * of `dst` (B_dst slots); both states hold `capacity` tokens per slot. This is how sequences
 * prefilled apart (prompts of different lengths) join one batched state. */
graft_status graft_model_state_copy_slot(const graft_model_t *m, void *dst, int64_t B_dst, int64_t b_dst,
                                         const void *src, int64_t B_src, int64_t b_src, int64_t capacity,
                                         graft_err *err);
/* How many decode steps replayed a captured CUDA graph since the last graft_model_set_backend. */
int64_t graft_model_graph_launches(const graft_model_t *m);
/* Sets every gradient to zero (on the backend's stream). */
void graft_model_zero_grad(graft_model_t *m);

#endif
