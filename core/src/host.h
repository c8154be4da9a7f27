/* host.h: the core's graft_host, the service table handed to every plugin (plugin.h): logging to
 * stderr with a level filter, F32 CPU matmul through OpenBLAS, 64-byte aligned zeroed memory and
 * parallel_for over a small persistent pthread pool. Core code may call the services directly
 * through the graft_host_* functions below; plugins only ever see the table.
 *
 * CUDA products go to the handler the CUDA backend registers (graft_host_set_cuda_matmul).
 * Not here: arenas.
 *
 * Thread safety: every function may be called from any thread. parallel_for calls from several
 * threads at once are served one at a time by the pool; a call that finds the pool busy (or is
 * made from inside a pool task) runs its whole range on the calling thread.
 */
#ifndef GRAFT_HOST_H
#define GRAFT_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"

/* The process-wide host table (filled on first use; never freed: it outlives every plugin). The
 * log level comes from GRAFT_LOG_LEVEL (debug|info|warn|error or 0..3; default info) and the pool
 * size from GRAFT_THREADS (default: the number of online CPUs). */
const graft_host *graft_host_get(void);

/* Messages below `level` (a graft_log_level) are dropped. */
void graft_host_set_log_level(int level);
int graft_host_log_level(void);

/* Threads parallel_for uses (the caller counts as one). */
int64_t graft_host_n_threads(void);

/* Seconds on the monotonic clock (for durations: tokens/s, step times). */
double graft_host_now_s(void);

/* The services themselves, for core code (same semantics as the table members). */
void graft_host_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
graft_status graft_host_matmul(const graft_matmul_args *args, graft_err *err);
void *graft_host_alloc(size_t bytes);
void graft_host_free(void *ptr);
void graft_host_parallel_for(int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end), void *arg);

/* Registers the handler of matmul calls with device == GRAFT_DEVICE_CUDA (the CUDA backend does,
 * when it opens a device; NULL unregisters). Until then they are refused with UNSUPPORTED. */
void graft_host_set_cuda_matmul(graft_status (*fn)(void *ctx, const graft_matmul_args *args, graft_err *err),
                                void *ctx);
/* 1 when this build has the CUDA backend compiled in. */
int graft_host_has_cuda(void);

/* Joins the pool's threads (a later parallel_for starts them again). Registered with atexit. */
void graft_host_shutdown(void);

#endif /* GRAFT_HOST_H */
