/* plugins/gla/gla.h: the GLA layer object shared by gla.c (descriptor, config, params, init) and
 * gla_cpu.c (fp32 reference forward/backward). Internal to the plugin; never installed.
 *
 * The math is spec/gla.md §2 (FLA's GatedLinearAttention); README.md in this folder states it,
 * the parameter names, the decode-state layout and the workspace layout.
 */
#ifndef GRAFT_PLUGIN_GLA_H
#define GRAFT_PLUGIN_GLA_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"

/* Parameter slots, in declaration order (FLA's registration order). The conv slots exist only when
 * use_short_conv; gla_layer.slot[] maps a slot to its index in the declared list, or -1. */
enum {
    GLA_P_Q = 0, GLA_P_K, GLA_P_V, GLA_P_G,
    GLA_P_QCONV, GLA_P_KCONV, GLA_P_VCONV,
    GLA_P_GK0, GLA_P_GK1, GLA_P_GK1_BIAS,
    GLA_P_O, GLA_P_NORM,
    GLA_P_COUNT
};

/* Tokens between two saved recurrent-state checkpoints (backward recomputes S_t inside a chunk
 * from the checkpoint; it never back-steps S, spec/gla.md §5.4). */
#define GLA_CKPT 32

typedef struct gla_layer {
    const graft_host *host;
    int64_t C;          /* model width (hidden_size)                                         */
    int64_t H, Hkv, G;  /* heads, key/value heads, G = H / Hkv                               */
    int64_t Kq, Kkv;    /* key widths: q (= H*dk) and k/gate (= Hkv*dk)                      */
    int64_t Vq, Vkv;    /* value widths: g/o (= H*dv) and v (= Hkv*dv)                       */
    int64_t dk, dv;     /* per-head dims                                                     */
    int64_t W;          /* conv_size                                                         */
    int64_t r;          /* gate_low_rank_dim                                                 */
    int use_conv;
    double gamma;       /* gate_logit_normalizer                                             */
    double eps;         /* norm_eps of the gated RMSNorm                                     */
    float scale;        /* dk^-1/2                                                           */
    int64_t t_nq, t_nkv, t_D; /* the replaced Qwen3 attention (cfg n_head, n_kv_head, head_dim) */
    int64_t n_params;
    int slot[GLA_P_COUNT];           /* slot -> declared index, -1 when absent                */
    graft_param_spec spec[GLA_P_COUNT]; /* declared order                                    */
} gla_layer;

/* Float offsets of the activation region (what a training forward saves) for (B, T). */
typedef struct gla_plan {
    int64_t B, T, N, nck;
    /* activation region (saved) */
    size_t qt, kt, vt;     /* (N, Kq) (N, Kkv) (N, Vkv): projections before the conv            */
    size_t hist;           /* (B, Kq+Kkv+Vkv, W): conv cache the forward started from (0 if none)*/
    size_t cq, ck, cv;     /* conv outputs before SiLU (only with use_short_conv)               */
    size_t gh;             /* (N, Vq): g_proj output                                            */
    size_t lr;             /* (N, r): gk_proj.0 output                                          */
    size_t z;              /* (N, Kkv): gate logits                                             */
    size_t o;              /* (N, Vq): recurrence output before the norm                        */
    size_t rstd;           /* (N, H)                                                            */
    size_t ckpt;           /* (B, H, nck, dv, dk): state entering each GLA_CKPT-token chunk     */
    size_t act_floats;
    /* work region (scratch, after a copy-sized activation region) */
    size_t qa, ka, va;     /* SiLU'd conv outputs = q, k, v (aliases of qt.. without conv)      */
    size_t alpha;          /* (N, Kkv) log decay                                                */
    size_t u;              /* (N, Vq) gated-norm output                                         */
    size_t du, dgh, dout;  /* (N, Vq)                                                           */
    size_t dq, dke, dve, dae; /* (N, Kq) (N, H*dk) (N, H*dv) (N, H*dk): per q-head grads        */
    size_t dk, dv, dz;     /* (N, Kkv) (N, Vkv) (N, Kkv): summed over the G heads sharing a kv  */
    size_t dqt, dkt, dvt;  /* grads of the pre-conv projections                                 */
    size_t dlr;            /* (N, r)                                                            */
    size_t sbuf;           /* (B*H, GLA_CKPT, dv, dk): states recomputed inside one chunk      */
    size_t dsb;            /* (B*H, dv, dk): running state gradient                            */
    size_t dec;            /* (B*H, dk): e^{α_t} of the current token                          */
    size_t work_floats;
} gla_plan;

void gla_plan_make(const gla_layer *L, int64_t B, int64_t T, gla_plan *p);

/* Floats of one decode-state slot: S [H, dv, dk] (V-first, FLA's layout) then, with the short
 * conv, the q, k, v conv caches [Kq, W], [Kkv, W], [Vkv, W] (oldest first, FLA's layout). */
size_t gla_state_floats(const gla_layer *L);

graft_status gla_cpu_forward(const gla_layer *L, const graft_mixer_io *io, graft_err *err);
graft_status gla_cpu_backward(const gla_layer *L, const graft_mixer_io *io, graft_err *err);

/* CUDA (gla_cuda_layer.cu; only in a .so built with GRAFT_PLUGIN_CUDA): bf16 activations and
 * weights, F32 parameter gradients, the decode state in the CPU's layout and dtype (fp32, S
 * V-first). Serves dk = dv = 128 and num_kv_heads = num_heads; refuses the rest (UNSUPPORTED). */
graft_status gla_cuda_workspace(const gla_layer *L, int64_t B, int64_t T, size_t *saved_bytes,
                                size_t *scratch_bytes, graft_err *err);
graft_status gla_cuda_layer_forward(const gla_layer *L, const graft_mixer_io *io, graft_err *err);
graft_status gla_cuda_layer_backward(const gla_layer *L, const graft_mixer_io *io, graft_err *err);

#endif
