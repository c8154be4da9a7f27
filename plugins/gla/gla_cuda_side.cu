/* plugins/gla/gla_cuda_side.cu: the GLA forward's side stream (gla_cuda_side.cuh says why). */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "gla_cuda_side.cuh"
}

namespace {
struct Side {
    int state; /* -1 not yet read, 0 off (or failed), 1 on */
    cudaStream_t s;
    cudaEvent_t fork, join;
};
Side side = {-1, nullptr, nullptr, nullptr};

int side_open() {
    const char *e = getenv("GRAFT_GLA_OVERLAP");
    if (!(e && !strcmp(e, "1"))) return 0;
    int lo = 0, hi = 0;
    if (cudaDeviceGetStreamPriorityRange(&lo, &hi) != cudaSuccess ||
        cudaStreamCreateWithPriority(&side.s, cudaStreamNonBlocking, hi) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (cudaEventCreateWithFlags(&side.fork, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&side.join, cudaEventDisableTiming) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return 1;
}
} // namespace

extern "C" cudaStream_t gla_side_stream(cudaStream_t main) {
    if (side.state < 0) side.state = side_open();
    if (!side.state) return nullptr;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(main, &cs) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return cs == cudaStreamCaptureStatusNone ? side.s : nullptr;
}

static graft_status wait_on(cudaStream_t waiter, cudaStream_t from, cudaEvent_t ev, const char *what,
                            graft_err *err) {
    /* the wait refers to ev's most recent record when it is enqueued, so one event serves every fork */
    cudaError_t e = cudaEventRecord(ev, from);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(waiter, ev, 0);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gla: side stream %s: %s", what, cudaGetErrorString(e));
    return GRAFT_STATUS_OK;
}

extern "C" graft_status gla_side_fork(cudaStream_t main, cudaStream_t side_s, graft_err *err) {
    return wait_on(side_s, main, side.fork, "fork", err);
}

extern "C" graft_status gla_side_join(cudaStream_t main, cudaStream_t side_s, graft_err *err) {
    return wait_on(main, side_s, side.join, "join", err);
}
