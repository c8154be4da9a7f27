/* graft/plugin.h: the plugin ABI. This header is the specification of the contract between the
 * graft core and a plugin .so (a token mixer such as softmax attention, GLA or RWKV-7, or a loss
 * module). A researcher who writes a new mixer reads this file and docs/plugins.md, nothing else.
 *
 * Shape of the contract (DESIGN.md, STYLE.md "The plugin ABI"):
 *  - A plugin .so exports exactly one symbol, graft_plugin_init (GRAFT_PLUGIN_ENTRY). Everything
 *    else is hidden (-fvisibility=hidden) and the .so links with -Wl,--no-undefined against libc,
 *    libm (and the CUDA runtime when it has kernels), never against the core.
 *  - Host table in, descriptor out. The core fills a graft_host (services: logging, matmul,
 *    memory, threads) and passes it to graft_plugin_init and to every create(). The plugin returns
 *    a pointer to a constant descriptor that lives in the .so.
 *  - Every struct crossing the boundary starts with struct_size (and, for the top-level ones,
 *    abi_version). A reader MUST read a member only if offsetof(member) + sizeof(member) <=
 *    struct_size. Members are only ever appended: each struct carries a banner saying so.
 *    GRAFT_ABI_VERSION changes only for a breaking change; a plugin MUST refuse a host whose
 *    abi_version it cannot serve, and the loader refuses a plugin whose abi_version it cannot serve.
 *  - Every call returns graft_status and fills the caller-owned graft_err on failure. Plugins
 *    MUST NOT print, exit, abort or assert on input, and MUST NOT hold mutable globals: all state
 *    lives in the layer object returned by create().
 *  - The core owns memory: a plugin declares its parameters (param()), its saved activations and
 *    scratch (workspace()) and its per-sequence decode state (state_bytes()), and the core
 *    allocates them. Small bookkeeping (the layer object itself) comes from host->alloc.
 *
 * Thread safety: the core never calls two functions on the same layer object at once. Different
 * layer objects of one plugin may be used from different threads concurrently.
 */
#ifndef GRAFT_PLUGIN_H
#define GRAFT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "graft/status.h"
#include "graft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this ABI. Bumped only for a breaking change (a member removed, moved or retyped). */
#define GRAFT_ABI_VERSION 1u

/* Name of the one symbol a plugin .so exports. */
#define GRAFT_PLUGIN_ENTRY "graft_plugin_init"

#if defined(__GNUC__)
#define GRAFT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define GRAFT_PLUGIN_EXPORT
#endif

/* ------------------------------------------------------------------------------------------- */
/* Host services                                                                                */
/* ------------------------------------------------------------------------------------------- */

typedef enum graft_log_level {
    GRAFT_LOG_DEBUG = 0,
    GRAFT_LOG_INFO = 1,
    GRAFT_LOG_WARN = 2,
    GRAFT_LOG_ERROR = 3
} graft_log_level;

/* Arguments of host->matmul. Row-major semantics:
 *     C[m, n] = alpha * sum_k op(A)[m, k] * op(B)[k, n] + beta * C[m, n]
 * with op(A) = A (A is m x k, leading dimension lda >= k) or, when trans_a, A^T (A stored k x m,
 * lda >= m); likewise B. Accumulation is fp32 or better whatever the storage dtype. For batch > 1
 * the i-th product uses a + i*stride_a, b + i*stride_b, c + i*stride_c (strides in elements).
 * beta == 0 means C is not read (NaN in C does not propagate). */
/* ---- graft_matmul_args: members are only appended; never reorder. ---- */
typedef struct graft_matmul_args {
    uint32_t struct_size;      /* sizeof(graft_matmul_args) of the caller                       */
    graft_device device;       /* where a, b, c live                                            */
    void *stream;              /* cudaStream_t on CUDA, NULL on the CPU                         */
    graft_dtype dtype;         /* storage dtype of a, b and c                                   */
    int32_t trans_a, trans_b;  /* 0 or 1                                                        */
    int64_t m, n, k;
    float alpha, beta;
    const void *a; int64_t lda;
    const void *b; int64_t ldb;
    void *c; int64_t ldc;
    int64_t batch;             /* >= 1                                                          */
    int64_t stride_a, stride_b, stride_c;
    /* -- appended (mixed dtypes). A reader MUST treat a caller whose struct_size does not cover
     *    dtype_c as mixed_dtypes == 0. --
     * mixed_dtypes == 0: a, b and c all have `dtype` (the original meaning; a zero-filled args
     * struct keeps it). mixed_dtypes == 1: a has `dtype`, b has dtype_b and c has dtype_c, e.g.
     * BF16 x BF16 -> F32 with beta = 1 to accumulate fp32 parameter gradients from bf16
     * activations. Use graft_matmul_dtypes() to read the three. Combinations a host MUST serve:
     * F32/F32/F32 on the CPU; on CUDA additionally BF16/BF16/BF16 and BF16/BF16/F32. Any other
     * combination MAY be refused with GRAFT_STATUS_UNSUPPORTED naming the three dtypes. */
    uint32_t mixed_dtypes;
    graft_dtype dtype_b, dtype_c;
} graft_matmul_args;

/* The storage dtypes of A, B and C of a product, honoring struct_size and mixed_dtypes. */
static inline void graft_matmul_dtypes(const graft_matmul_args *a, graft_dtype *da, graft_dtype *db,
                                       graft_dtype *dc) {
    *da = *db = *dc = a->dtype;
    if (a->struct_size >= offsetof(graft_matmul_args, dtype_c) + sizeof a->dtype_c && a->mixed_dtypes) {
        *db = a->dtype_b;
        *dc = a->dtype_c;
    }
}

/* The host table. Filled by the core; plugins only read it. Valid for the lifetime of every layer
 * object created with it.
 * ---- graft_host: members are only appended; never reorder. ---- */
typedef struct graft_host {
    uint32_t struct_size;      /* sizeof(graft_host) in the core that filled it                 */
    uint32_t abi_version;      /* GRAFT_ABI_VERSION of that core                                */
    void *ctx;                 /* first argument of every service below                         */
    /* Log one message. level is a graft_log_level. MAY be called from any thread. */
    void (*log)(void *ctx, int level, const char *fmt, ...);
    /* Matrix product (see graft_matmul_args). MUST be supported for F32 on the CPU. */
    graft_status (*matmul)(void *ctx, const graft_matmul_args *args, graft_err *err);
    /* Host memory for small bookkeeping (layer objects, parsed configs): 64-byte aligned and
     * zero-filled; NULL when out of memory. free(ctx, NULL) is a no-op. */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *ptr);
    /* Runs fn(arg, begin, end) over disjoint ranges covering [0, n) on the core's CPU threads and
     * returns when all are done. fn MUST NOT call parallel_for itself. */
    void (*parallel_for)(void *ctx, int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end),
                         void *arg);
} graft_host;

/* A plugin's row-major product through the host: C (m x n) = op(A) op(B) + beta C, alpha 1, one
 * batch. The shared form of what every layer calls for its projections; the two wrappers below
 * fill in the device and dtypes. */
static inline graft_matmul_args graft_matmul_args_make(graft_device device, void *stream, int trans_a, int trans_b,
                                                       int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                                                       const void *b, int64_t ldb, void *c, int64_t ldc, float beta) {
    graft_matmul_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.device = device;
    g.stream = stream;
    g.trans_a = trans_a;
    g.trans_b = trans_b;
    g.m = m;
    g.n = n;
    g.k = k;
    g.alpha = 1.0f;
    g.beta = beta;
    g.a = a;
    g.lda = lda;
    g.b = b;
    g.ldb = ldb;
    g.c = c;
    g.ldc = ldc;
    g.batch = 1;
    return g;
}

/* On the CPU, everything F32 (OpenBLAS behind the host). */
static inline graft_status graft_host_matmul_f32(const graft_host *h, int trans_a, int trans_b, int64_t m, int64_t n,
                                                 int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,
                                                 float *c, int64_t ldc, float beta, graft_err *err) {
    graft_matmul_args g = graft_matmul_args_make(GRAFT_DEVICE_CPU, NULL, trans_a, trans_b, m, n, k, a, lda, b, ldb, c,
                                                 ldc, beta);
    g.dtype = GRAFT_DTYPE_F32;
    return h->matmul(h->ctx, &g, err);
}

/* On CUDA: A and B BF16 device tensors, C BF16, or F32 when c_f32 (beta = 1 then accumulates an
 * fp32 parameter gradient from bf16 activations). */
static inline graft_status graft_host_matmul_bf16(const graft_host *h, void *stream, int trans_a, int trans_b,
                                                  int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                                                  const void *b, int64_t ldb, void *c, int64_t ldc, float beta,
                                                  int c_f32, graft_err *err) {
    graft_matmul_args g = graft_matmul_args_make(GRAFT_DEVICE_CUDA, stream, trans_a, trans_b, m, n, k, a, lda, b, ldb, c,
                                                 ldc, beta);
    g.dtype = GRAFT_DTYPE_BF16;
    g.mixed_dtypes = 1;
    g.dtype_b = GRAFT_DTYPE_BF16;
    g.dtype_c = c_f32 ? GRAFT_DTYPE_F32 : GRAFT_DTYPE_BF16;
    return h->matmul(h->ctx, &g, err);
}

/* ------------------------------------------------------------------------------------------- */
/* Mixers                                                                                       */
/* ------------------------------------------------------------------------------------------- */

/* One configuration entry of a mixer, as written in a recipe or a hybrid config.json. `where` is
 * a location for messages ("recipes/x.yaml:12:7" or "run/hybrid/config.json: layer 3"); it MAY be
 * NULL. Values are text; the plugin parses them and refuses what it cannot use. */
typedef struct graft_kv {
    const char *key;
    const char *value;
    const char *where;
} graft_kv;

/* Role of a layer in the mixer's carried stream (see graft_mixer.carry_name). */
typedef enum graft_carry_role {
    GRAFT_CARRY_NONE = 0,      /* the mixer has no carried stream                              */
    GRAFT_CARRY_PRODUCER = 1,  /* first layer of the model using the stream: writes it         */
    GRAFT_CARRY_CONSUMER = 2   /* a later layer: reads it                                      */
} graft_carry_role;

/* What a mixer layer is asked to be.
 * ---- graft_mixer_cfg: members are only appended; never reorder. ---- */
typedef struct graft_mixer_cfg {
    uint32_t struct_size;
    int64_t n_embd;            /* C: width of the residual stream (x and y are (B, T, C))      */
    int64_t layer_index;       /* 0-based index of the layer in its model                      */
    int64_t n_layer;           /* layers in the model                                          */
    /* The Qwen3 attention this layer has (softmax) or replaces (others): */
    int64_t n_head, n_kv_head, head_dim;
    double rope_theta;
    double norm_eps;           /* the model's rms_norm_eps                                     */
    const graft_kv *kv;        /* the mixer's own settings; n_kv entries                       */
    int64_t n_kv;
    const char *origin;        /* file the settings came from, for messages; MAY be NULL       */
    graft_carry_role carry_role; /* decided by the core from the model's layer order           */
} graft_mixer_cfg;

/* Parameter flags. */
#define GRAFT_PARAM_NO_DECAY 1u  /* AdamW applies no weight decay (norm weights, biases, ...)   */

/* One parameter a layer declares. `name` is relative to "model.layers.{i}." (for example
 * "self_attn.q_proj.weight" or "mixer.q_proj.weight"; DESIGN: grafted mixers live under
 * "mixer.") and is a static string valid until the .so is unloaded. Parameters are F32 on the
 * CPU; the core converts dtypes at load and save. */
/* ---- graft_param_spec: members are only appended; never reorder. ---- */
typedef struct graft_param_spec {
    uint32_t struct_size;
    const char *name;
    int32_t ndim;
    int64_t shape[GRAFT_MAX_DIMS];
    uint32_t flags;
} graft_param_spec;

/* The weights of a Qwen3 self-attention, for `init: teacher` (shapes as in spec/qwen3.md §2):
 * q_proj [nq*D, C], k_proj [nkv*D, C], v_proj [nkv*D, C], o_proj [C, nq*D], q_norm [D], k_norm [D]. */
typedef struct graft_attention_weights {
    uint32_t struct_size;
    const graft_tensor *q_proj, *k_proj, *v_proj, *o_proj, *q_norm, *k_norm;
} graft_attention_weights;

/* One call of forward or backward. Unless a member says otherwise, buffers are contiguous,
 * row-major, of the descriptor's device, F32 on the CPU, and owned by the core.
 *
 * Decoding: the per-sequence state (KV cache, recurrent state, convolution / token-shift tails)
 * is B slots of state_bytes(layer, state_capacity) bytes each, laid out by the plugin. A forward
 * with state_in == NULL starts every sequence from the empty state; with state_in != NULL it
 * continues sequence b after past_len[b] tokens. When state_out != NULL the forward writes the
 * state after its T tokens. state_in and state_out MAY be the same buffer (an in-place update):
 * one decode step is a forward with T = 1 and state_in == state_out.
 *
 * Carried stream (graft_mixer.carry_name != NULL): carry is (B, T, carry_width). A PRODUCER's
 * forward writes it; a CONSUMER's forward reads it. In backward, the core zeroes dcarry before
 * the last layer; every CONSUMER accumulates (+=) its gradient into dcarry, and the PRODUCER
 * (which runs last, since backward goes in reverse layer order) reads it.
 * ---- graft_mixer_io: members are only appended; never reorder. ---- */
typedef struct graft_mixer_io {
    uint32_t struct_size;
    void *layer;                 /* from create()                                              */
    graft_device device;
    void *stream;                /* cudaStream_t on CUDA, NULL on the CPU                      */
    int64_t B, T;                /* T >= 1                                                      */
    const graft_tensor *params;  /* n_params() tensors, in declared order (the core places them
                                    back to back where alignment allows:
                                    graft_tensors_back_to_back says when)                      */
    graft_tensor *grads;         /* backward: same order; ACCUMULATED (+=). NULL in forward.   */
    const void *x;               /* (B, T, C) input (the normed residual stream)               */
    void *y;                     /* forward: (B, T, C) output, written (=)                     */
    const void *dy;              /* backward: (B, T, C) gradient of y                          */
    void *dx;                    /* backward: (B, T, C) gradient of x, written (=)             */
    void *saved;                 /* workspace saved_bytes: forward writes it when non-NULL (a
                                    training forward); backward reads what forward wrote       */
    void *scratch;               /* workspace scratch_bytes; contents undefined between calls  */
    int64_t state_capacity;      /* tokens a state slot can hold (softmax KV cache length)      */
    const void *state_in;        /* B slots or NULL (empty state)                              */
    void *state_out;             /* B slots or NULL (state not wanted)                         */
    const int64_t *past_len;     /* (B) tokens already in state_in per sequence; NULL = zeros  */
    const void *dstate_out;      /* backward: gradient of the final state, B slots, or NULL    */
    void *dstate_in;             /* backward: gradient of state_in (written =), or NULL        */
    void *carry;                 /* (B, T, carry_width) or NULL when the mixer has none        */
    void *dcarry;                /* backward: (B, T, carry_width) or NULL                      */
    /* ---- appended (read only when struct_size covers it) ---- */
    const int32_t *past_len_dev; /* CUDA decode: past_len as (B) int32 in DEVICE memory, or NULL.
                                    When set (only by a core that checked GRAFT_MIXER_CAP_CUDA_GRAPH,
                                    with T = 1 and state_in == state_out), the call may be captured
                                    into a CUDA graph and replayed with other lengths: kernels must
                                    take lengths from it, and the host code must not branch on
                                    past_len's values, synchronize, read host memory asynchronously
                                    or allocate. past_len stays valid for validation.            */
} graft_mixer_io;

/* Mixer capabilities (graft_mixer.caps). */
#define GRAFT_MIXER_CAP_CPU 1u            /* forward/backward on GRAFT_DEVICE_CPU, F32          */
#define GRAFT_MIXER_CAP_CUDA 2u           /* forward/backward on GRAFT_DEVICE_CUDA             */
#define GRAFT_MIXER_CAP_TEACHER_INIT 4u   /* init() accepts teacher attention weights           */
#define GRAFT_MIXER_CAP_STATE_GRAD 8u     /* backward() fills dstate_in / reads dstate_out      */
#define GRAFT_MIXER_CAP_CUDA_GRAPH 16u    /* CUDA decode honours graft_mixer_io.past_len_dev    */

/* A mixer: a constant descriptor owned by the .so, valid until it is unloaded.
 * ---- graft_mixer: members are only appended; never reorder. ---- */
typedef struct graft_mixer {
    uint32_t struct_size;        /* sizeof(graft_mixer) in the plugin                           */
    uint32_t abi_version;        /* GRAFT_ABI_VERSION the plugin was built with                 */
    const char *name;            /* "softmax", "gla", "rwkv7": what recipes call it             */
    const char *carry_name;      /* name of the carried stream between layers, or NULL          */
    uint32_t caps;               /* GRAFT_MIXER_CAP_* bits                                      */

    /* Parses and validates cfg (every unknown key, bad value or inconsistent size is refused
     * with a message naming the key and cfg->origin / kv.where) and returns a new layer object
     * in *layer. The host pointer stays valid for the layer's lifetime. */
    graft_status (*create)(const graft_host *host, const graft_mixer_cfg *cfg, void **layer,
                           graft_err *err);
    /* Frees a layer object; accepts NULL. */
    void (*destroy)(void *layer);
    /* Number of parameter tensors, and the spec of the i-th (0 <= i < n_params). */
    int64_t (*n_params)(const void *layer);
    graft_status (*param)(const void *layer, int64_t i, graft_param_spec *out, graft_err *err);
    /* Fills params (n_params tensors, shapes as declared, on the CPU, F32) with the plugin's
     * initialization drawn from seed, or, when teacher != NULL, from a Qwen3 attention
     * (refused with a message when the plugin cannot map it). Deterministic in (seed, cfg). */
    graft_status (*init)(void *layer, const graft_tensor *params, uint64_t seed,
                         const graft_attention_weights *teacher, graft_err *err);
    /* Bytes of the saved-activation and scratch buffers for a call with this B and T. */
    graft_status (*workspace)(const void *layer, graft_device device, int64_t B, int64_t T,
                              size_t *saved_bytes, size_t *scratch_bytes, graft_err *err);
    /* Bytes of one sequence's decode state holding up to `capacity` tokens (0: stateless). */
    size_t (*state_bytes)(const void *layer, int64_t capacity);
    /* Width of the carried stream (0 when carry_name is NULL). */
    int64_t (*carry_width)(const void *layer);
    graft_status (*forward)(const graft_mixer_io *io, graft_err *err);
    graft_status (*backward)(const graft_mixer_io *io, graft_err *err);
    /* ---- appended (the core reads it only when struct_size covers it) ---- */
    /* Bytes of one sequence's decode state on `device` (a CUDA state may store bf16 where the
     * CPU's is fp32); NULL: state_bytes on every device. */
    size_t (*state_bytes_on)(const void *layer, graft_device device, int64_t capacity);
} graft_mixer;

/* ------------------------------------------------------------------------------------------- */
/* Losses                                                                                       */
/* ------------------------------------------------------------------------------------------- */

/* One call of a loss. Rows are N positions of width W (the hidden size for nmse, the vocabulary
 * for ce/kl). The loss returns the SUM over counted rows of its per-row value in *loss_sum and the
 * number of counted rows in *count (so a caller can form exact means across micro-batches), and,
 * when dstudent != NULL, writes (=) grad_scale * d(loss_sum)/d(student).
 * ---- graft_loss_io: members are only appended; never reorder. ---- */
typedef struct graft_loss_io {
    uint32_t struct_size;
    void *loss;                   /* from create()                                             */
    graft_device device;
    void *stream;
    int64_t N, W;
    const float *student;         /* (N, W) student outputs (hidden states or logits)          */
    const float *target;          /* (N, W) teacher outputs, or NULL when the loss needs none   */
    const float *input;           /* (N, W) the layer input h[l-1] (nmse's denominator) or NULL */
    const int32_t *labels;        /* (N) target ids (ce); ignore_index entries are not counted  */
    int64_t k;                    /* top-k width of the teacher tensors below                    */
    const int32_t *topk_ids;      /* (N, k) the teacher's top-k ids                            */
    const float *topk_logp;       /* (N, k) the teacher's log-probabilities at temperature 1   */
    const float *topk_mass;       /* (N) teacher probability mass in the top-k at temperature 1*/
    float grad_scale;
    float *dstudent;              /* (N, W) or NULL                                            */
    double *loss_sum;             /* out                                                       */
    double *count;                /* out: counted rows (or the denominator of a ratio loss)    */
    double *parts;                /* out, may be NULL: loss-specific components (n_parts)       */
    /* ---- appended (read only when struct_size covers it) ---- */
    uint32_t accumulate;          /* 1: dstudent += the gradient (a second loss on the same
                                     logits adds into the first's gradient, no extra buffer)  */
    /* ---- appended ---- */
    graft_dtype dtype;            /* of student, target, input and dstudent: F32 (0, what an
                                     older caller means) or BF16 (a device backend's
                                     activations); a loss refuses what it does not serve      */
    uint32_t normalize;           /* 1: dstudent is the gradient of loss_sum / count, not of
                                     loss_sum: grad_scale * d(loss_sum)/ds * (1 / count), for a
                                     ratio loss (nmse) whose denominator is known only after
                                     the pass, without a second pass over dstudent by the
                                     caller; a loss without a denominator refuses it          */
} graft_loss_io;

/* ---- graft_loss: members are only appended; never reorder. ---- */
typedef struct graft_loss {
    uint32_t struct_size;
    uint32_t abi_version;
    const char *name;             /* "nmse", "ce", "topk_kl", "kl"                              */
    uint32_t caps;                /* GRAFT_MIXER_CAP_CPU / _CUDA bits                           */
    int32_t n_parts;              /* entries written to io->parts                              */
    const char *const *part_names;
    graft_status (*create)(const graft_host *host, const graft_kv *kv, int64_t n_kv,
                           const char *origin, void **loss, graft_err *err);
    void (*destroy)(void *loss);
    graft_status (*compute)(const graft_loss_io *io, graft_err *err);
} graft_loss;

/* ------------------------------------------------------------------------------------------- */
/* The entry point                                                                              */
/* ------------------------------------------------------------------------------------------- */

typedef enum graft_plugin_kind {
    GRAFT_PLUGIN_MIXER = 1,
    GRAFT_PLUGIN_LOSS = 2
} graft_plugin_kind;

/* Filled by graft_plugin_init. The loader sets struct_size and abi_version to its own before
 * the call; the plugin MUST overwrite abi_version with the version it was built for and fill the
 * members below that fit in struct_size.
 * ---- graft_plugin: members are only appended; never reorder. ---- */
typedef struct graft_plugin {
    uint32_t struct_size;
    uint32_t abi_version;
    graft_plugin_kind kind;
    const char *name;             /* equals mixer->name or loss->name                          */
    const char *version;          /* the plugin's own version text                             */
    const graft_mixer *mixer;     /* kind == GRAFT_PLUGIN_MIXER                                */
    const graft_loss *loss;       /* kind == GRAFT_PLUGIN_LOSS                                 */
} graft_plugin;

/* The one exported symbol. Checks host->abi_version and host->struct_size, fills *out, and
 * returns GRAFT_STATUS_OK, or a status and a message saying what it could not serve. */
typedef graft_status (*graft_plugin_init_fn)(const graft_host *host, graft_plugin *out,
                                             graft_err *err);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_PLUGIN_H */
