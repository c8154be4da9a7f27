/* cpu/backend_cpu.c: the CPU backend's vtable (backend.h) over the ops in this folder. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"

static void *cpu_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return p;
}

static void cpu_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static const graft_backend cpu_backend = {
    .name = "cpu",
    .device = GRAFT_DEVICE_CPU,
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .embedding_fwd = graft_cpu_embedding_fwd,
    .embedding_bwd = graft_cpu_embedding_bwd,
    .rmsnorm_fwd = graft_cpu_rmsnorm_fwd,
    .rmsnorm_bwd = graft_cpu_rmsnorm_bwd,
    .swiglu_fwd = graft_cpu_swiglu_fwd,
    .swiglu_bwd = graft_cpu_swiglu_bwd,
    .add = graft_cpu_add,
    .matmul = graft_cpu_matmul,
};

const graft_backend *graft_backend_cpu(void) { return &cpu_backend; }
