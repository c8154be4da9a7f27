/* plugins/gla/gla_cuda.cuh: the GLA recurrence core on CUDA (spec/gla.md §2 step 5, §4, §5).
 *
 * Holds the host-callable entry points of gla_cuda.cu: the chunked forward and backward of
 *     S_t = Diag(e^{gk_t}) S_{t-1} + k_t v_tᵀ,     o_t = scale · S_tᵀ q_t
 * and a fused one-token decode step. Does not hold: projections, short conv, gate low-rank, the
 * gated norm (the layer around the core; gla_cpu.c has them on the CPU).
 *
 * Layouts (row-major, contiguous):
 *   q, k      (B, T, H, K)  bf16          gk  (B, T, H, K)  fp32 or bf16 (log decay, <= 0)
 *   v, o      (B, T, H, V)  bf16          h0, ht, dht, dh0 (B, H, K, V) fp32 (K-first: S, not Sᵀ;
 *                                          the plugin's decode state is V-first, FLA's layout)
 *   do, dq, dk, dv like o, q, k, v (bf16); dgk like gk (same dtype as gk, fp32 accumulation).
 * Supported head dims: K = V = 128 (anything else is refused with GRAFT_STATUS_UNSUPPORTED).
 * Every call is asynchronous on `stream` (a cudaStream_t; NULL = the legacy default stream) and
 * returns GRAFT_STATUS_OK once its kernels are queued; a bad argument returns BAD_INPUT and a
 * launch failure DEVICE, each with a message in err. Two threads may call at once on different
 * buffers. The workspace is owned by the caller (the core owns memory, DESIGN §3).
 */
#ifndef GRAFT_PLUGIN_GLA_CUDA_CUH
#define GRAFT_PLUGIN_GLA_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One call's tensors and sizes. Pointers are device pointers. Fill with gla_cuda_default_args. */
typedef struct gla_cuda_args {
    int64_t B, T, H, K, V;
    int gk_bf16;          /* 0: gk (and dgk) are fp32, 1: bf16 (the cumulative sums stay fp32)  */
    float scale;          /* usually K^-1/2                                                     */
    int chunks_per_seg;   /* 0 = choose (the chunk walk is split into segments of this many
                             64-token chunks; the segments' entering states come from a scan)   */
    /* forward */
    const void *q, *k, *v, *gk;
    const float *h0;      /* may be NULL (zero initial state)                                   */
    /* forward only, instead of gk (then NULL): the gate from its low-rank form, computed inside
     * the chunk kernels, gk = logsigmoid(lr W1ᵀ + bias) · gate_inv_gamma (fp32 arithmetic, bf16
     * operands): gate_lr (B·T, 16) bf16 rows 16 apart, gate_w1 (H·K, 16) bf16, gate_bias (H·K)
     * bf16 or NULL. Saves writing the fp32 gk and reading it twice (the layer's gate_in_core_ok,
     * gla_cuda_layer.cu, says when it is used). */
    const void *gate_lr, *gate_w1, *gate_bias;
    float gate_inv_gamma;
    /* forward only, optional: o receives the layer's gated RMSNorm of the output instead of the
     * output, u = o · rsqrt(mean o² + norm_eps) · norm_w · SiLU(ĝ) per (token, head) row, o rounded
     * to bf16 first (the same bits as the layer's norm kernel on a stored o): norm_gh (B·T rows
     * norm_ldg apart, head h at h·V) bf16, norm_w (V) bf16; NULL norm_gh = plain o. Saves o's
     * write and read. */
    const void *norm_gh, *norm_w;
    int64_t norm_ldg;
    float norm_eps;
    void *o;              /* forward: written (may be NULL in backward)                         */
    float *ht;            /* forward: final state, may be NULL                                  */
    /* backward (inputs q, k, v, gk, h0 as above) */
    const void *dout;     /* upstream gradient of o                                             */
    const float *dht;     /* upstream gradient of the final state, may be NULL                  */
    void *dq, *dk, *dv, *dgk;
    float *dh0;           /* may be NULL                                                        */
    void *work;           /* device workspace of at least gla_cuda_work_bytes(...) bytes         */
    size_t work_bytes;
} gla_cuda_args;

gla_cuda_args gla_cuda_default_args(void);

/* Workspace bytes that gla_cuda_forward (backward = 0) or gla_cuda_backward (backward = 1) needs
 * for these sizes (and chunks_per_seg, the number of SMs of the current device). */
size_t gla_cuda_work_bytes(const gla_cuda_args *a, int backward);

/* Chunked forward: writes o and (if ht) the final state. */
graft_status gla_cuda_forward(const gla_cuda_args *a, void *stream, graft_err *err);

/* Chunked backward: recomputes the states, writes dq, dk, dv, dgk and (if dh0) dh0. */
graft_status gla_cuda_backward(const gla_cuda_args *a, void *stream, graft_err *err);

/* One decode step for N = B·H heads: state (B, H, K, V) fp32 updated in place,
 *     S ← Diag(e^{gk}) S + k vᵀ,   o = scale · Sᵀ q
 * q, k, gk: (B, H, K) (gk fp32 or bf16 per gk_bf16), v, o: (B, H, V) bf16. */
graft_status gla_cuda_decode(int64_t B, int64_t H, int64_t K, int64_t V, const void *q,
                             const void *k, const void *v, const void *gk, int gk_bf16,
                             float scale, float *state, void *o, void *stream, graft_err *err);

/* The same step on the plugin's decode-state layout: per sequence b a slot of slot_floats floats
 * whose first H·V·K floats are Sᵀ (H, V, K) (V-first, FLA's state_v_first), updated in place.
 * q, k, gk: (B, H, K), v, o: (B, H, V). */
graft_status gla_cuda_decode_vfirst(int64_t B, int64_t H, int64_t K, int64_t V, const void *q,
                                    const void *k, const void *v, const void *gk, int gk_bf16,
                                    float scale, float *state, int64_t slot_floats, void *o,
                                    void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif

#endif
