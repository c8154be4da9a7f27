/* cuda/prefetch.cuh: pulling weights into L2 on a side branch while a decode step's latency-bound
 * kernels run (the backend's op.prefetch; cuda/prefetch.cu).
 *
 * Why: at batch 1 a decode layer's attention chain (q/k norm + RoPE, split-K attention, merge)
 * leaves the DRAM idle for ~9-11 us of a ~57 us layer (bench/results/decode-cuda-2026-11-24.md),
 * while the MLP products that follow stream 75 MB at the copy rate. Prefetching the first part of
 * the gate and up weights during that window, from a kernel on a second stream forked from the
 * main one (a parallel branch of the captured CUDA graph), lets the MLP find them in L2. An earlier
 * try issued bulk prefetches from the attention's own 24 CTAs and made decode 3x slower: those
 * CTAs waited for their copies (bench/results/decode-l2-prefetch-2026-12-07.md); here no kernel of
 * the main chain waits for the branch until the step's end.
 *
 * GRAFT_CUDA_DECODE_L2=MB[L] sets the bytes prefetched per call (0 or unset: off, the default until
 * a same-run measurement says otherwise), split evenly over the tensors named; a trailing L marks
 * the lines evict_last. A prefetch never changes a result.
 */
#ifndef GRAFT_CUDA_PREFETCH_CUH
#define GRAFT_CUDA_PREFETCH_CUH

#include <stddef.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes to prefetch per call and whether as evict_last, from GRAFT_CUDA_DECODE_L2 (read once). */
size_t graft_cuda_prefetch_budget(int *evict_last);

/* Queues on `stream` one kernel issuing L2 prefetches of the first bytes[i] of p[i], i < n <= 4
 * (16-byte aligned or not; whole 128-byte lines around them). */
graft_status graft_cuda_prefetch_l2(const void *const *p, const size_t *bytes, int n, int evict_last, void *stream,
                                    graft_err *err);

#ifdef __cplusplus
}
#endif

#endif
