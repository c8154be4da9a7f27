/* plugins/rwkv7/rwkv7.h: the RWKV-7 layer object and the parameter order shared by rwkv7.c
 * (descriptor, config, init) and rwkv7_cpu.c (fp32 reference forward/backward). Internal to the
 * plugin; never installed, never included by the core. Math: README.md, spec/rwkv7.md §2.
 */
#ifndef GRAFT_RWKV7_H
#define GRAFT_RWKV7_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"

/* Parameter indices, in declared order. v_lora comes last so that a producer (which has none)
 * declares exactly the first RWKV7_N_COMMON tensors. */
enum {
    P_X_R, P_X_W, P_X_K, P_X_V, P_X_A, P_X_G, /* [1, 1, C] token-shift mix mu */
    P_K_K, P_K_A,                             /* [C] */
    P_R_K,                                    /* [H, K] bonus weight rho */
    P_R_PROJ, P_K_PROJ, P_V_PROJ, P_O_PROJ,   /* [C, C] [C, C] [Vt, C] [C, Vt] */
    P_W_L0, P_W_L2, P_W_B,                    /* [rw, C] [C, rw] [C] */
    P_A_L0, P_A_L2, P_A_B,                    /* [ra, C] [C, ra] [C] */
    P_G_L0, P_G_L2,                           /* [rg, C] [Vt, rg] */
    P_GN_W, P_GN_B,                           /* [Vt] [Vt] */
    RWKV7_N_COMMON,
    P_V_L0 = RWKV7_N_COMMON, P_V_L2, P_V_B,   /* consumer only: [rv, C] [Vt, rv] [Vt] */
    RWKV7_N_MAX
};

/* Checkpoint interval of the backward pass: the state before every RWKV7_CKPT-th token is kept,
 * and the states inside one interval are recomputed forward from it (never back-stepped). */
#define RWKV7_CKPT 32

typedef struct rwkv7_layer {
    const graft_host *host;
    int64_t C;          /* model width = key width D                                          */
    int64_t H, K, V;    /* heads, key head dim d, value head dim d_v                          */
    int64_t Vt;         /* value width H * V (= C: value_dim is null)                         */
    int64_t rw, ra, rv, rg; /* LoRA ranks: decay, in-context rate, value residual, gate       */
    int producer;       /* 1: writes v_first (no v_lora); 0: consumer (reads it, has v_lora) */
    double gn_eps;      /* GroupNorm eps = head_dim * norm_eps                                */
    int64_t layer_index, n_layer; /* l and L of FLA's init                                   */
    int64_t n_params;
    graft_param_spec spec[RWKV7_N_MAX];
} rwkv7_layer;

/* Bytes of the saved activations / scratch for one call (rwkv7_cpu.c). */
size_t rwkv7_saved_bytes(const rwkv7_layer *L, int64_t B, int64_t T);
size_t rwkv7_scratch_bytes(const rwkv7_layer *L, int64_t B, int64_t T);
/* Bytes of one sequence's decode state: S [H, K, V] then the token-shift tail [C], fp32. */
size_t rwkv7_state_bytes(const rwkv7_layer *L);

graft_status rwkv7_cpu_forward(const graft_mixer_io *io, graft_err *err);
graft_status rwkv7_cpu_backward(const graft_mixer_io *io, graft_err *err);

#ifdef GRAFT_PLUGIN_CUDA
/* The layer on CUDA (rwkv7_cuda_layer.cu): bf16 x / y / dx / dy / carry and parameters, fp32
 * dcarry, parameter gradients and decode state (the CPU's slot layout). */
graft_status rwkv7_cuda_workspace(const rwkv7_layer *L, int64_t B, int64_t T, size_t *saved_bytes,
                                  size_t *scratch_bytes, graft_err *err);
graft_status rwkv7_cuda_layer_forward(const rwkv7_layer *L, const graft_mixer_io *io, graft_err *err);
graft_status rwkv7_cuda_layer_backward(const rwkv7_layer *L, const graft_mixer_io *io, graft_err *err);
#endif

#endif
