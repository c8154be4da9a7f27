/* cuda/argmax.cuh: the greedy pick of a decode step on the device (backend op argmax_rows), so a
 * greedy step returns B int32 ids instead of B x 151,936 fp32 logits (~600 KB per sequence, plus
 * the host's scan of them) between two graph launches. Plain C11 header.
 *
 * ids[r] = the first index of the largest value of row r of x (rows, V), exactly as the host scan
 * `if (x[v] > x[best]) best = v` of generate.c picks it: NaN values are never chosen, except that a
 * row starting with NaN yields 0 (the scan's `>` against a NaN best is always false).
 */
#ifndef GRAFT_CUDA_ARGMAX_CUH
#define GRAFT_CUDA_ARGMAX_CUH

#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ids (rows) device int32; x (rows, V) device fp32; queued on stream (asynchronous). */
graft_status graft_cuda_argmax_rows(int32_t *ids, const float *x, int64_t rows, int64_t V, void *stream,
                                    graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
