/* losses/nmse_cuda.h: the normalized MSE on CUDA (nmse_cuda.cu), called by nmse.c's compute() when
 * io->device is CUDA. Same math and outputs as the CPU path (nmse.c): loss_sum = sum ||s - t||^2,
 * count = sum ||x - t||^2, dstudent = float(grad_scale 2 (s - t)) [* float(1 / count) when
 * normalize], written or (accumulate) added.
 *
 * Reduction: each row's sums in fp32 per thread, then double across the threads of the row and
 * across rows, in an order fixed by the sizes alone (a fixed grid of partial sums, summed in
 * order), so the result does not change from run to run. The rows of io (student, target, input,
 * dstudent) are device memory of F32 or (bf16 = 1) BF16; everything is queued on io->stream and
 * the call waits for it once, to return loss_sum and count on the host.
 *
 * *dev is the loss object's small device buffer (partial sums), allocated at the first call and
 * released by nmse_cuda_free.
 */
#ifndef GRAFT_LOSS_NMSE_CUDA_H
#define GRAFT_LOSS_NMSE_CUDA_H

#include "graft/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

graft_status nmse_cuda_compute(const graft_loss_io *io, int bf16, int accumulate, int normalize, void **dev,
                               graft_err *err);
void nmse_cuda_free(void *dev);

#ifdef __cplusplus
}
#endif

#endif
