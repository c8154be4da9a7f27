/* plugins/gla/gla_cuda_side.cuh: a second stream for the GLA forward's elementwise kernels.
 *
 * The prefill forward is products (compute-bound, ~770 TFLOP/s on an H100) and elementwise kernels
 * (the gate from its low-rank middle, the short conv: latency-bound, ~2 TB/s). On one stream they
 * alternate, and each elementwise kernel holds the GPU alone. On the side stream the gate runs
 * during the q, k, v products and the conv during the g product: the same kernels, the same
 * inputs, so the same bits; only their order in time changes.
 *
 * GRAFT_GLA_OVERLAP=1 turns it on (read once per process). The side stream has the highest
 * priority, so the small kernels' blocks are placed as soon as a product's blocks retire. It is
 * created on first use and lives as long as the process (one per process: one host thread drives
 * the plugin, as everywhere in graft). A stream being captured into a graph, or a failure to create
 * the stream or its events, runs the forward on one stream as without the switch. */
#ifndef GRAFT_GLA_CUDA_SIDE_CUH
#define GRAFT_GLA_CUDA_SIDE_CUH

#include <cuda_runtime.h>

#include "graft/status.h"

/* The side stream for a forward on `main`, or NULL where it is off (see above). */
cudaStream_t gla_side_stream(cudaStream_t main);

/* side waits for everything enqueued on main so far */
graft_status gla_side_fork(cudaStream_t main, cudaStream_t side, graft_err *err);

/* main waits for everything enqueued on side so far */
graft_status gla_side_join(cudaStream_t main, cudaStream_t side, graft_err *err);

#endif
