/* softmax_cuda.cuh: host-callable entry points of the softmax plugin's CUDA attention kernels
 * (softmax_cuda.cu): causal GQA flash attention forward, its FlashAttention-2 style backward, and
 * split-K decode over a KV cache. Plain C (extern "C"), no CUDA types: a stream is a void *.
 *
 * Math (spec/qwen3.md §3.2, §5; plugins/softmax/README.md):
 *   o[t, hq] = sum_{u <= t} softmax_u(scale * q[t,hq] . k[u,hk]) v[u,hk],   hk = hq / (Hq/Hkv)
 *   lse[t, hq] = log sum_{u <= t} exp(scale * q[t,hq] . k[u,hk])   (natural log, fp32)
 * All buffers are device memory, contiguous, row-major, owned by the caller. The kernels serve
 * head_dim D == 128 (Qwen3); any other D is refused with GRAFT_STATUS_UNSUPPORTED. Every call is
 * asynchronous on `stream` and returns GRAFT_STATUS_DEVICE with the CUDA error text when a launch
 * fails. Different calls may run from different threads on different streams.
 */
#ifndef GRAFT_SOFTMAX_CUDA_CUH
#define GRAFT_SOFTMAX_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forward. q (B, T, Hq, D), k and v (B, T, Hkv, D) bf16; writes o (B, T, Hq, D) bf16 and
 * lse (B, T, Hq) fp32 (lse MAY be NULL when no backward follows). Causal from position 0. */
graft_status sm_cuda_attn_fwd(void *o, float *lse, const void *q, const void *k, const void *v, int64_t B,
                              int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float scale, void *stream,
                              graft_err *err);

/* Forward of a prefill chunk continuing a KV cache: q (B, T, Hq, D) bf16 holds T new tokens of
 * each sequence, whose keys and values the caller has already written into the cache at
 * positions past_dev[b] .. past_dev[b] + T - 1. Token t of sequence b attends keys 0 .. past[b] +
 * t. Key u of kv head hk of sequence b is at kcache + b * slot_stride + hk * head_stride + u * D
 * (bf16 elements; head_stride >= cap * D), likewise vcache; past_dev: B int32 in DEVICE memory,
 * past[b] + T <= cap (the caller checks: the kernel cannot refuse). Writes o (B, T, Hq, D) bf16.
 * The Hopper kernel only (softmax_cuda_fwd_wgmma.cu): where sm_cuda_attn_fwd_cached_available()
 * is 0 it returns GRAFT_STATUS_UNSUPPORTED, writing nothing, and the caller runs one
 * sm_cuda_attn_decode per token instead. */
int sm_cuda_attn_fwd_cached_available(void);
graft_status sm_cuda_attn_fwd_cached(void *o, const void *q, const void *kcache, const void *vcache,
                                     int64_t slot_stride, int64_t head_stride, int64_t cap, const int32_t *past_dev,
                                     int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                     void *stream, graft_err *err);

/* Bytes of the scratch sm_cuda_attn_bwd needs (the rows' D_i = rowsum(dO * O), fp32). */
size_t sm_cuda_attn_bwd_scratch_bytes(int64_t B, int64_t T, int64_t Hq);

/* Backward of sm_cuda_attn_fwd. Inputs as in the forward plus o, lse from it and dout (B, T, Hq,
 * D) bf16. Writes (=) dq (B, T, Hq, D), dk and dv (B, T, Hkv, D) in fp32; dk/dv are summed over
 * the query heads of each kv group. Deterministic (no atomics): dK/dV are accumulated by one
 * block per key block and kv head, dQ by one block per query block and head. */
graft_status sm_cuda_attn_bwd(float *dq, float *dk, float *dv, const void *q, const void *k, const void *v,
                              const void *o, const float *lse, const void *dout, int64_t B, int64_t T,
                              int64_t Hq, int64_t Hkv, int64_t D, float scale, void *scratch,
                              size_t scratch_bytes, void *stream, graft_err *err);

/* Bytes of the scratch sm_cuda_attn_decode needs for these sizes (split-K partial results). */
size_t sm_cuda_attn_decode_scratch_bytes(int64_t B, int64_t Hq, int64_t D, int64_t max_len);

/* Decode: one query token per sequence over a KV cache that already holds the token's own key.
 * q (B, Hq, D) bf16 (post-norm, post-RoPE); writes o (B, Hq, D) bf16. Sequence b attends
 * kv_len[b] >= 1 keys (kv_len is HOST memory, B entries). Key u of kv head hk of sequence b is at
 * kcache + b * slot_stride + hk * head_stride + u * D (bf16 elements), likewise vcache. The
 * context is split into chunks processed in parallel (split-K) and merged by their logsumexp. */
graft_status sm_cuda_attn_decode(void *o, const void *q, const void *kcache, const void *vcache,
                                 int64_t slot_stride, int64_t head_stride, const int64_t *kv_len, int64_t B,
                                 int64_t Hq, int64_t Hkv, int64_t D, float scale, void *scratch,
                                 size_t scratch_bytes, void *stream, graft_err *err);

/* The same with the lengths in DEVICE memory, for CUDA-graph capture: sequence b attends
 * past_dev[b] + len_add keys (past_dev: B int32, read by the kernels when they run, so one captured
 * launch serves every later length); max_len (>= every length: the cache capacity) alone fixes the
 * split and the scratch (sm_cuda_attn_decode_scratch_bytes(B, Hq, D, max_len)). Neither reads host
 * memory nor synchronizes. */
graft_status sm_cuda_attn_decode_dev(void *o, const void *q, const void *kcache, const void *vcache,
                                     int64_t slot_stride, int64_t head_stride, const int32_t *past_dev, int len_add,
                                     int64_t max_len, int64_t B, int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                     void *scratch, size_t scratch_bytes, void *stream, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_SOFTMAX_CUDA_CUH */
