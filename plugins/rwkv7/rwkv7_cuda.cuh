/* plugins/rwkv7/rwkv7_cuda.cuh: the RWKV-7 recurrence core on CUDA (spec/rwkv7.md §2 step 11, §4,
 * §6.1), the generalized delta rule with a diagonal-plus-low-rank transition:
 *     S_t = Diag(e^{w_t}) S_{t-1} + b_t (a_tᵀ S_{t-1}) + k_t v_tᵀ,      o_t = S_tᵀ r_t  (scale 1)
 * (the layer passes a = −κ, b = κ ⊙ α). Forward, backward and a one-token decode step. Does not
 * hold: token shift, projections, LoRAs, key normalization, GroupNorm, bonus term, gate (the layer
 * around the core; rwkv7_cpu.c has them on the CPU).
 *
 * Layouts (row-major, contiguous):
 *   r, k, a, b  (B, T, H, K) bf16         w (B, T, H, K) fp32 or bf16: the natural-log decay (≤ 0;
 *   v, o        (B, T, H, V) bf16           the state is multiplied by e^{w}, FLA's convention)
 *   h0, ht, dht, dh0  (B, H, K, V) fp32 (K-first, FLA's layout)
 *   dout, dr, dk, dv, da, db like o, r, k, v, a, b (bf16); dw like w (same dtype).
 * Supported head dims: K = V = 128 (anything else: GRAFT_STATUS_UNSUPPORTED).
 * Arithmetic: state, decay factors e^{w} and every reduction in fp32; only loads and the final
 * stores are bf16. No exponent is ever positive, so gates near 0 or near 1 cannot overflow.
 * Every call is asynchronous on `stream` (a cudaStream_t; NULL = the legacy default stream) and
 * returns GRAFT_STATUS_OK once its kernels are queued; a bad argument returns BAD_INPUT and a
 * launch failure DEVICE, each with a message in err. The workspace is owned by the caller.
 */
#ifndef GRAFT_PLUGIN_RWKV7_CUDA_CUH
#define GRAFT_PLUGIN_RWKV7_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One call's tensors and sizes. Pointers are device pointers. Fill with rwkv7_cuda_default_args. */
typedef struct rwkv7_cuda_args {
    int64_t B, T, H, K, V;
    int w_bf16;           /* 0: w (and dw) are fp32, 1: bf16                                    */
    int lanes;            /* threads per value column in the sequential kernels: 4, 8, 16;
                             0 = choose from B·H and the device                                */
    /* forward */
    const void *r, *w, *k, *v, *a, *b;
    const float *h0;      /* may be NULL (zero initial state)                                   */
    void *o;              /* forward: written                                                   */
    float *ht;            /* forward: final state, may be NULL                                  */
    /* backward (inputs r, w, k, v, a, b, h0 as above) */
    const void *dout;     /* upstream gradient of o                                             */
    const float *dht;     /* upstream gradient of the final state, may be NULL                  */
    void *dr, *dw, *dk, *dv, *da, *db;
    float *dh0;           /* may be NULL                                                        */
    int saved;            /* backward: 1 = `work` still holds what rwkv7_cuda_forward saved there
                             for these same inputs (skips the recomputation), 0 = recompute     */
    void *work;           /* device workspace: forward: NULL (saves nothing) or at least
                             rwkv7_cuda_work_bytes(a, 0) bytes; backward: at least (a, 1) bytes */
    size_t work_bytes;
    /* -- appended -- backward with saved = 1: where the forward saved its part (a buffer of
       rwkv7_cuda_work_bytes(a, 0) bytes, e.g. in the layer's saved activations), or NULL = the
       start of `work`. When set, `work` needs only rwkv7_cuda_work_bytes(a, 1) − (a, 0) bytes. */
    const void *fwd_work;
    /* -- appended -- the chunked forward (GRAFT_RWKV7_CHUNK=1, rwkv7_cuda_chunk.cu): its scratch of
       rwkv7_cuda_chunk_work_bytes(a) bytes, or NULL = cudaMallocAsync / cudaFreeAsync on the stream
       inside the call. Ignored by the recurrent kernels. */
    void *chunk_work;
    size_t chunk_work_bytes;
} rwkv7_cuda_args;

rwkv7_cuda_args rwkv7_cuda_default_args(void);

/* Workspace bytes: backward = 0: what the forward saves for the backward (the state every 64
 * tokens and the pseudo-values aᵀS, fp32); backward = 1: that plus the backward's own scratch. */
size_t rwkv7_cuda_work_bytes(const rwkv7_cuda_args *a, int backward);

/* Forward: writes o, (if ht) the final state and (if work) the saved states. */
graft_status rwkv7_cuda_forward(const rwkv7_cuda_args *a, void *stream, graft_err *err);

/* Backward: writes dr, dw, dk, dv, da, db and (if dh0) dh0. */
graft_status rwkv7_cuda_backward(const rwkv7_cuda_args *a, void *stream, graft_err *err);

/* The chunked forward of rwkv7_cuda_chunk.cu (spec §5, C = 64, tensor cores), an A/B alternative to
 * the recurrent forward with the same outputs; rwkv7_cuda_forward takes it when
 * rwkv7_cuda_chunk_enabled() (env GRAFT_RWKV7_CHUNK=1) and rwkv7_cuda_chunk_supported(a). It
 * assumes the layer's bounded log-decay w ≥ −e^{−1/2} (spec §5, safe_gate). ck, sa: where the saved
 * states and pseudo-values go (the layout of rwkv7_cuda_work_bytes(a, 0)), or NULL. */
int rwkv7_cuda_chunk_enabled(void);
/* Turns the chunked forward on or off for this process (tests and benches compare both). */
void rwkv7_cuda_chunk_enable(int on);
int rwkv7_cuda_chunk_supported(const rwkv7_cuda_args *a);
size_t rwkv7_cuda_chunk_work_bytes(const rwkv7_cuda_args *a);
graft_status rwkv7_cuda_chunk_forward(const rwkv7_cuda_args *a, float *ck, float *sa, void *stream,
                                      graft_err *err);

/* One decode step for N = B·H heads: state (B, H, K, V) fp32 updated in place,
 *     S ← Diag(e^{w}) S + b (aᵀ S) + k vᵀ,   o = Sᵀ r
 * r, w, k, a, b: (B, H, K) (w fp32 or bf16 per w_bf16, the rest bf16), v, o: (B, H, V) bf16. */
graft_status rwkv7_cuda_decode(int64_t B, int64_t H, int64_t K, int64_t V, const void *r,
                               const void *w, int w_bf16, const void *k, const void *v,
                               const void *a, const void *b, float *state, void *o, void *stream,
                               graft_err *err);

/* The same step on states inside per-sequence slots: sequence b's (H, K, V) state starts at
 * state + b · state_bs floats (state_bs >= H·K·V; the layer's decode slots, which hold the
 * token-shift tail after the state). Launches one kernel, reads nothing on the host: capturable
 * into a CUDA graph. */
graft_status rwkv7_cuda_decode_strided(int64_t B, int64_t H, int64_t K, int64_t V, const void *r,
                                       const void *w, int w_bf16, const void *k, const void *v,
                                       const void *a, const void *b, float *state, int64_t state_bs,
                                       void *o, void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif

#endif
