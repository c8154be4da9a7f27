/* cuda/embedding.cuh: token embedding gather (bf16 table) and its scatter-add backward into an
 * fp32 table gradient (spec/qwen3.md §3, §5; CPU twin cpu/embedding.c).
 *
 * Backward is deterministic: the ids are sorted (stable radix sort of (id, position) pairs), and
 * one block per distinct id sums its rows in position order before adding once into dtable, so
 * the result does not depend on timing or on the GPU.
 *
 * Ids are validated where they enter graft (token shards refuse ids >= vocab at open); here an id
 * outside [0, V) reads nothing: forward writes a zero row, backward skips the row.
 * Thread safety: calls on different streams touch only the buffers passed.
 */
#ifndef GRAFT_CUDA_EMBEDDING_CUH
#define GRAFT_CUDA_EMBEDDING_CUH

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "cuda_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (N, C) bf16 = table (V, C) bf16 [ids (N) int32]. Device pointers. */
graft_status graft_cuda_embedding_fwd(graft_bf16 *out, const graft_bf16 *table, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, void *stream, graft_err *err);

/* Bytes of the workspace graft_cuda_embedding_bwd needs for N positions. */
graft_status graft_cuda_embedding_bwd_workspace(int64_t N, size_t *bytes, graft_err *err);

/* dtable (V, C) fp32 += dout (N, C) bf16 scattered by ids (N). workspace: device, at least
 * graft_cuda_embedding_bwd_workspace(N) bytes, contents undefined after the call. */
graft_status graft_cuda_embedding_bwd(float *dtable, const graft_bf16 *dout, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, void *workspace, size_t workspace_bytes, void *stream,
                                      graft_err *err);

#ifdef __cplusplus
}
#endif
#endif
