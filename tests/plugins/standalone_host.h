/* tests/plugins/standalone_host.h: a minimal graft_host for programs built on a GPU machine without
 * graft's dependencies (tests/plugins/cuda_standalone.sh): F32 CPU products as plain loops, CUDA
 * products through the core's cuBLASLt wrapper (core/src/cuda/matmul.cu, compiled alone), host
 * memory from aligned_alloc, parallel_for run serially, plugins opened with dlopen. Not used by the
 * in-tree build, which has the real host (core/src/host.c) and loader. */
#ifndef GRAFT_TESTS_STANDALONE_HOST_H
#define GRAFT_TESTS_STANDALONE_HOST_H

#include "graft/plugin.h"

/* Opens device 0, a stream and cuBLASLt; returns the host table (valid until exit) or NULL with a
 * message printed. *stream receives the cudaStream_t. */
const graft_host *sh_open(void **stream);
/* dlopens a plugin .so and runs its entry; NULL with a message printed on failure. */
const graft_mixer *sh_load(const char *path);

#endif
