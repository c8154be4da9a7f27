/* plugins/gla/gla_cuda_decode.cuh: the fused one-token GLA decode step on CUDA (spec/gla.md §2
 * steps 2-6 and §4 for T = 1), what gla_cuda_layer.cu runs between the q|k|v|g input product and
 * the output product of a decode step.
 *
 * One launch does, per (sequence, head): the gate's low-rank products lr = x·W_gk0ᵀ and
 * z = lr·W_gk1ᵀ + bias, gk = logsigmoid(z)/γ; the three short convs + SiLU from the conv caches and
 * the caches' shift; the recurrent step S = Diag(e^{gk}) S + k vᵀ, o = scale·Sᵀq on the V-first
 * state; the gated RMSNorm u = RMSNorm(o) ⊙ w_n ⊙ SiLU(ĝ). The unfused path (GRAFT_GLA_FUSED_DECODE=0)
 * runs these as nine launches; both round the same intermediates to bf16 (lr, the conv outputs,
 * o), so they agree to fp32 summation order.
 *
 * Served: dk = dv = 128, num_kv_heads = num_heads, the short conv on (W in 1..8), gate rank r <= 128,
 * C a multiple of 8 with 16-byte aligned rows, compute capability 9.0 (a cluster of 8 CTAs per head);
 * gla_cuda_decode_fused_usable says whether a call qualifies, and the layer keeps the unfused path
 * otherwise. Graph capturable: no host sync, allocation or branch on lengths.
 */
#ifndef GRAFT_PLUGIN_GLA_CUDA_DECODE_CUH
#define GRAFT_PLUGIN_GLA_CUDA_DECODE_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One decode step's tensors (device pointers, bf16 unless marked). */
typedef struct gla_decode_args {
    int64_t B, H, C, r, W;   /* sequences, heads (of 128), model width, gate rank, conv size      */
    const void *x;           /* (B, C) the layer input                                           */
    const void *proj;        /* (B, ld): q̃ (H·128) | k̃ (H·128) | ṽ (H·128) | ĝ (H·128) per row   */
    int64_t ld;
    const void *w_gk0;       /* (r, C)                                                           */
    const void *w_gk1;       /* (H·128, r)                                                       */
    const void *b_gk1;       /* (H·128)                                                          */
    const void *w_conv[3];   /* q, k, v conv weights (H·128, W)                                  */
    const void *w_norm;      /* (128)                                                            */
    float inv_gamma, scale, eps;
    const float *state_in;   /* slots of slot_floats (NULL: zeros): S [H, 128, 128] V-first, then
                                the q, k, v conv caches [H·128, W] each, at hist_off             */
    float *state_out;        /* may equal state_in (in place)                                    */
    int64_t slot_floats, hist_off;
    void *u;                 /* (B, H·128) the gated norm's output                               */
} gla_decode_args;

/* GRAFT_GLA_FUSED_DECODE=0 turns the fused step off (read once; default on). */
int gla_cuda_decode_fused_enabled(void);

/* 1 when this call can take the fused step (shapes, alignment, device), else 0. */
int gla_cuda_decode_fused_usable(const gla_decode_args *a);

/* Queues the fused step on `stream`; BAD_INPUT when gla_cuda_decode_fused_usable says no, DEVICE
 * when the launch fails. */
graft_status gla_cuda_decode_fused(const gla_decode_args *a, void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif

#endif
