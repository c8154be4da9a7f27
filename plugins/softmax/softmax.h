/* softmax.h: the softmax layer object shared by softmax.c (descriptor, config, params, init) and
 * softmax_cpu.c (the CPU fp32 forward/backward). Internal to the plugin; never installed. */
#ifndef GRAFT_SOFTMAX_H
#define GRAFT_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "graft/plugin.h"

enum { P_Q, P_K, P_V, P_O, P_QNORM, P_KNORM, N_PARAMS };

typedef struct sm_layer {
    const graft_host *host;
    int64_t C, nq, nkv, D, n_rep;
    double eps;        /* rms_norm_eps, added inside the sqrt */
    float scale;       /* fp32(D^-0.5) */
    float *inv_freq;   /* (D/2) built in fp32 as transformers does (spec/qwen3.md §3.4) */
    void *inv_freq_dev; /* its CUDA copy, made by the first CUDA forward (graph replays read it) */
} sm_layer;

#ifdef GRAFT_PLUGIN_CUDA
/* Frees what the CUDA path attached to the layer (softmax_cuda_layer.cu). */
void sm_cuda_release(sm_layer *l);
#endif

/* Floats per token of the saved activations: q_raw, qr, o (nq*D each), k_raw, kr, v (nkv*D each),
 * lse (nq), rstd_q (nq), rstd_k (nkv). */
int64_t sm_saved_floats_per_token(const sm_layer *l);
/* Floats of scratch for a call with B, T (forward without saved, and backward). */
int64_t sm_scratch_floats(const sm_layer *l, int64_t B, int64_t T);


graft_status sm_forward_cpu(const graft_mixer_io *io, graft_err *err);
graft_status sm_backward_cpu(const graft_mixer_io *io, graft_err *err);

/* CUDA (softmax_cuda_layer.cu; only in a .so built with GRAFT_PLUGIN_CUDA): bf16 activations and
 * weights, F32 gradients, bf16 KV cache inside the state slot. */
graft_status sm_workspace_cuda(const sm_layer *l, int64_t B, int64_t T, size_t *saved_bytes, size_t *scratch_bytes,
                               graft_err *err);
graft_status sm_forward_cuda(const graft_mixer_io *io, graft_err *err);
graft_status sm_backward_cuda(const graft_mixer_io *io, graft_err *err);

#endif
