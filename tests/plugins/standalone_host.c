/* tests/plugins/standalone_host.c: see standalone_host.h. */
#include "standalone_host.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/matmul.cuh"

static graft_cuda_blas_t *g_blas;

static void sh_log(void *ctx, int level, const char *fmt, ...) {
    (void)ctx;
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Row-major C = alpha op(A) op(B) + beta C in fp32 (double accumulation), graft_matmul_args rules. */
static graft_status cpu_mm(const graft_matmul_args *a, graft_err *err) {
    if (a->dtype != GRAFT_DTYPE_F32)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "standalone host: CPU dtype %d", (int)a->dtype);
    for (int64_t bi = 0; bi < a->batch; bi++) {
        const float *A = (const float *)a->a + bi * a->stride_a, *B = (const float *)a->b + bi * a->stride_b;
        float *C = (float *)a->c + bi * a->stride_c;
#pragma omp parallel for
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++) {
                double acc = 0;
                for (int64_t k = 0; k < a->k; k++) {
                    double x = a->trans_a ? A[k * a->lda + i] : A[i * a->lda + k];
                    double y = a->trans_b ? B[j * a->ldb + k] : B[k * a->ldb + j];
                    acc += x * y;
                }
                float v = (float)(a->alpha * acc);
                C[i * a->ldc + j] = a->beta == 0.0f ? v : v + a->beta * C[i * a->ldc + j];
            }
    }
    return GRAFT_STATUS_OK;
}

static graft_status sh_matmul(void *ctx, const graft_matmul_args *a, graft_err *err) {
    (void)ctx;
    if (a->device == GRAFT_DEVICE_CUDA) return graft_cuda_host_matmul(g_blas, a, err);
    return cpu_mm(a, err);
}

static void *sh_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) memset(p, 0, n ? n : 64);
    return p;
}
static void sh_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}
static void sh_pfor(void *ctx, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    (void)ctx;
    if (n > 0) fn(arg, 0, n);
}

static graft_host g_host;

const graft_host *sh_open(void **stream) {
    graft_err err;
    memset(&err, 0, sizeof err);
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "no CUDA device\n");
        return NULL;
    }
    cudaStream_t s;
    if (cudaSetDevice(0) != cudaSuccess || cudaStreamCreate(&s) != cudaSuccess) return NULL;
    if (graft_cuda_blas_init(&g_blas, 0, &err)) {
        fprintf(stderr, "cuBLASLt: %s\n", err.msg);
        return NULL;
    }
    *stream = s;
    g_host.struct_size = sizeof g_host;
    g_host.abi_version = GRAFT_ABI_VERSION;
    g_host.ctx = NULL;
    g_host.log = sh_log;
    g_host.matmul = sh_matmul;
    g_host.alloc = sh_alloc;
    g_host.free = sh_free;
    g_host.parallel_for = sh_pfor;
    return &g_host;
}

const graft_mixer *sh_load(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "%s: %s\n", path, dlerror());
        return NULL;
    }
    graft_plugin_init_fn init;
    *(void **)(&init) = dlsym(h, GRAFT_PLUGIN_ENTRY);
    if (!init) {
        fprintf(stderr, "%s: no %s\n", path, GRAFT_PLUGIN_ENTRY);
        return NULL;
    }
    graft_plugin p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.abi_version = GRAFT_ABI_VERSION;
    graft_err err;
    memset(&err, 0, sizeof err);
    if (init(&g_host, &p, &err)) {
        fprintf(stderr, "%s: init: %s\n", path, err.msg);
        return NULL;
    }
    return p.mixer;
}
