/* cuda/backend_cuda.cu: the CUDA backend's table (backend.h): device memory, transfers on one
 * stream, the typed forward ops over the per-op entry points of this folder (bf16 activations and
 * weights, fp32 statistics), cuBLASLt products, and the two small kernels no op file holds
 * (elementwise add and dtype casts).
 *
 * One backend object per device index, created on first open and kept for the process (the host
 * table's CUDA matmul points at its blas object, and plugins may hold that table). Every op runs
 * asynchronously on the backend's stream; copy(D2H) and sync() wait.
 *
 * The backward ops' scratch (rmsnorm dw partials, the embedding id sort, the fused head's logits
 * chunk) is one buffer of the backend, grown (never shrunk) when a call needs more: the ops run one
 * after another on the backend's stream, so they can share it.
 *
 * Not here: the fp32 reference ops (NULL in this table: CPU-only code uses them), attention
 * (plugins/softmax).
 */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.cuh"
#include "argmax.cuh"
#include "cuda_util.cuh"
#include "embedding.cuh"
#include "lmhead_loss.cuh"
#include "skinny.cuh"
#include "matmul.cuh"
#include "rmsnorm.cuh"
#include "swiglu.cuh"

extern "C" {
#include "backend.h"
#include "host.h"
}

#define MAX_DEVICES 16

#define LIVE_SLOTS 4096 /* live allocations tracked for the peak (open addressing by pointer) */

struct cuda_backend {
    graft_backend be;
    graft_cuda_blas_t *blas;
    cudaStream_t stream;
    int index;
    void *ws;          /* shared scratch of the backward ops */
    size_t ws_bytes;
    /* what graft allocated through this table, for mem_peak: live pointers and their sizes */
    void *live_ptr[LIVE_SLOTS];
    size_t live_bytes[LIVE_SLOTS];
    int64_t now_bytes, peak_bytes;
};

static cuda_backend *g_backends[MAX_DEVICES];

static cuda_backend *cb(void *ctx) { return (cuda_backend *)ctx; }

static size_t live_slot(const cuda_backend *c, const void *p) {
    return (size_t)(((uintptr_t)p >> 8) * 0x9E3779B97F4A7C15ull >> 52) % LIVE_SLOTS;
}

#define LIVE_GONE ((void *)1) /* a freed slot: probes continue past it, inserts reuse it */

static void live_add(cuda_backend *c, void *p, size_t bytes) {
    c->now_bytes += (int64_t)bytes;
    if (c->now_bytes > c->peak_bytes) c->peak_bytes = c->now_bytes;
    for (size_t i = live_slot(c, p), k = 0; k < LIVE_SLOTS; k++, i = (i + 1) % LIVE_SLOTS)
        if (!c->live_ptr[i] || c->live_ptr[i] == LIVE_GONE) {
            c->live_ptr[i] = p;
            c->live_bytes[i] = bytes;
            return;
        }
    /* table full: the bytes still count now, they are just not subtracted on free */
}

static void live_remove(cuda_backend *c, void *p) {
    for (size_t i = live_slot(c, p), k = 0; k < LIVE_SLOTS && c->live_ptr[i]; k++, i = (i + 1) % LIVE_SLOTS)
        if (c->live_ptr[i] == p) {
            c->now_bytes -= (int64_t)c->live_bytes[i];
            c->live_ptr[i] = LIVE_GONE;
            return;
        }
}

static int64_t cu_mem_peak(void *ctx, int reset) {
    cuda_backend *c = cb(ctx);
    int64_t p = c->peak_bytes;
    if (reset) c->peak_bytes = c->now_bytes;
    return p;
}

static void *cu_alloc(void *ctx, size_t bytes) {
    void *p = NULL;
    if (cudaSetDevice(cb(ctx)->index) != cudaSuccess) return NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free allocation error */
        return NULL;
    }
    /* Zeroed BEFORE returning: a plain cudaMemset is queued on the legacy stream, which does not
     * order with our non-blocking stream, so a kernel or upload queued next on that stream could
     * run first and then be wiped (seen: Stage 0's first hidden states, flaky conformance
     * gradients). The legacy stream, not ours, so that an allocation during a graph capture of
     * our stream stays legal. */
    if (cudaMemsetAsync(p, 0, bytes ? bytes : 64, cudaStreamLegacy) != cudaSuccess ||
        cudaStreamSynchronize(cudaStreamLegacy) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    live_add(cb(ctx), p, bytes ? bytes : 64);
    return p;
}

static void cu_free(void *ctx, void *p) {
    if (!p) return;
    live_remove(cb(ctx), p);
    cudaFree(p);
}

static graft_status cu_copy(void *ctx, void *dst, const void *src, size_t bytes, int kind, graft_err *err) {
    if (!bytes) return GRAFT_STATUS_OK;
    cudaMemcpyKind k = kind == GRAFT_COPY_H2D ? cudaMemcpyHostToDevice
                       : kind == GRAFT_COPY_D2H ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
    GRAFT_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, k, cb(ctx)->stream));
    if (kind == GRAFT_COPY_D2H) GRAFT_CUDA_TRY(cudaStreamSynchronize(cb(ctx)->stream));
    return GRAFT_STATUS_OK;
}

static graft_status cu_zero(void *ctx, void *dst, size_t bytes, graft_err *err) {
    if (bytes) GRAFT_CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, cb(ctx)->stream));
    return GRAFT_STATUS_OK;
}

static graft_status cu_sync(void *ctx, graft_err *err) {
    GRAFT_CUDA_TRY(cudaStreamSynchronize(cb(ctx)->stream));
    GRAFT_CUDA_TRY(cudaGetLastError());
    return GRAFT_STATUS_OK;
}

/* Relaxed capture: cuBLASLt may query the device while being captured; everything the model
 * queues is kernels, cuBLASLt calls and device-to-device copies, which a graph replays exactly. */
static graft_status cu_graph_begin(void *ctx, graft_err *err) {
    GRAFT_CUDA_TRY(cudaStreamBeginCapture(cb(ctx)->stream, cudaStreamCaptureModeRelaxed));
    return GRAFT_STATUS_OK;
}

static graft_status cu_graph_end(void *ctx, void **exec, graft_err *err) {
    cudaGraph_t g = NULL;
    *exec = NULL;
    GRAFT_CUDA_TRY(cudaStreamEndCapture(cb(ctx)->stream, &g));
    cudaGraphExec_t x = NULL;
    cudaError_t e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess)
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda: cudaGraphInstantiate: %s", cudaGetErrorString(e));
    *exec = x;
    return GRAFT_STATUS_OK;
}

static graft_status cu_graph_launch(void *ctx, void *exec, graft_err *err) {
    GRAFT_CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)exec, cb(ctx)->stream));
    return GRAFT_STATUS_OK;
}

static void cu_graph_free(void *ctx, void *exec) {
    (void)ctx;
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

static graft_status cu_matmul(void *ctx, const graft_matmul_args *a, graft_err *err) {
    return graft_cuda_host_matmul(cb(ctx)->blas, a, err);
}

/* ---- typed ops ------------------------------------------------------------------------------ */

static graft_status t_embedding_fwd(void *ctx, void *out, const void *table, const int32_t *ids, int64_t N,
                                    int64_t C, int64_t V, graft_err *err) {
    return graft_cuda_embedding_fwd((graft_bf16 *)out, (const graft_bf16 *)table, ids, N, C, V, cb(ctx)->stream, err);
}

static graft_status t_rmsnorm_fwd(void *ctx, void *y, float *rstd, const void *x, const void *w, int64_t N,
                                  int64_t C, float eps, graft_err *err) {
    return graft_cuda_rmsnorm_fwd((graft_bf16 *)y, rstd, (const graft_bf16 *)x, (const graft_bf16 *)w, N, C, eps,
                                  cb(ctx)->stream, err);
}

static graft_status t_add_rmsnorm_fwd(void *ctx, void *sum, void *y, float *rstd, const void *a, const void *b,
                                      const void *w, int64_t N, int64_t C, float eps, graft_err *err) {
    return graft_cuda_add_rmsnorm_out((graft_bf16 *)sum, (graft_bf16 *)y, rstd, (const graft_bf16 *)a,
                                      (const graft_bf16 *)b, (const graft_bf16 *)w, N, C, eps, cb(ctx)->stream, err);
}

static graft_status t_swiglu_fwd(void *ctx, void *h, const void *g, const void *u, int64_t N, int64_t I,
                                 graft_err *err) {
    return graft_cuda_swiglu_fwd((graft_bf16 *)h, (const graft_bf16 *)g, (const graft_bf16 *)u, N, I, I, I,
                                 cb(ctx)->stream, err);
}

static graft_status t_mlp_small(void *ctx, void *out, void *act, const void *hmid, const void *m, const void *gate,
                                const void *up, const void *down, int64_t N, int64_t C, int64_t I, graft_err *err) {
    return graft_cuda_mlp_small(out, act, hmid, m, gate, up, down, N, C, I, cb(ctx)->stream, err);
}

static graft_status t_argmax_rows(void *ctx, int32_t *ids, const float *x, int64_t rows, int64_t V, graft_err *err) {
    return graft_cuda_argmax_rows(ids, x, rows, V, cb(ctx)->stream, err);
}

/* y = bf16(fp32(a) + fp32(b)): one rounding, as the CPU's fp32 add followed by storage in bf16. */
static __global__ void add_kernel(bf16 *y, const bf16 *a, const bf16 *b, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = f2b(b2f(a[i]) + b2f(b[i]));
}

static __global__ void add8_kernel(bf16 *y, const bf16 *a, const bf16 *b, int64_t n8) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        float x[8], z[8];
        load8(a + 8 * i, x);
        load8(b + 8 * i, z);
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] += z[j];
        store8(y + 8 * i, x);
    }
}

static graft_status t_add(void *ctx, void *y, const void *a, const void *b, int64_t n, graft_err *err) {
    if (n <= 0) return GRAFT_STATUS_OK;
    cudaStream_t s = cb(ctx)->stream;
    if (n % 8 == 0 && aligned16(y) && aligned16(a) && aligned16(b)) {
        add8_kernel<<<grid_for(n / 8, 256, 132 * 16), 256, 0, s>>>((bf16 *)y, (const bf16 *)a, (const bf16 *)b, n / 8);
        GRAFT_CUDA_LAUNCHED("add8_kernel");
    } else {
        add_kernel<<<grid_for(n, 256, 132 * 16), 256, 0, s>>>((bf16 *)y, (const bf16 *)a, (const bf16 *)b, n);
        GRAFT_CUDA_LAUNCHED("add_kernel");
    }
    return GRAFT_STATUS_OK;
}

static __global__ void f32_to_bf16_kernel(bf16 *y, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = f2b(x[i]);
}

static __global__ void bf16_to_f32_kernel(float *y, const bf16 *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = b2f(x[i]);
}

static graft_status t_cast(void *ctx, void *dst, graft_dtype dd, const void *src, graft_dtype sd, int64_t n,
                           graft_err *err) {
    if (n <= 0) return GRAFT_STATUS_OK;
    cudaStream_t s = cb(ctx)->stream;
    unsigned grid = grid_for(n, 256, 132 * 16);
    if (dd == sd) {
        GRAFT_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)n * graft_dtype_size(dd), cudaMemcpyDeviceToDevice, s));
    } else if (dd == GRAFT_DTYPE_BF16 && sd == GRAFT_DTYPE_F32) {
        f32_to_bf16_kernel<<<grid, 256, 0, s>>>((bf16 *)dst, (const float *)src, n);
        GRAFT_CUDA_LAUNCHED("f32_to_bf16_kernel");
    } else if (dd == GRAFT_DTYPE_F32 && sd == GRAFT_DTYPE_BF16) {
        bf16_to_f32_kernel<<<grid, 256, 0, s>>>((float *)dst, (const bf16 *)src, n);
        GRAFT_CUDA_LAUNCHED("bf16_to_f32_kernel");
    } else {
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda backend: cast %s -> %s", graft_dtype_name(sd),
                             graft_dtype_name(dd));
    }
    return GRAFT_STATUS_OK;
}

/* ---- backward ops --------------------------------------------------------------------------- */

/* The shared scratch, at least `bytes` (grown by 1/8 more so sizes creeping up do not regrow each
 * call). cudaFree waits for the device, so work still reading the old buffer has finished. */
static graft_status scratch(cuda_backend *c, size_t bytes, void **out, graft_err *err) {
    if (bytes > c->ws_bytes) {
        if (c->ws) GRAFT_CUDA_TRY(cudaFree(c->ws));
        c->ws = NULL;
        c->ws_bytes = 0;
        size_t want = bytes + bytes / 8;
        cudaError_t e = cudaMalloc(&c->ws, want);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: cannot allocate %zu bytes of backward scratch (%s)",
                                 c->be.name, want, cudaGetErrorString(e));
        }
        c->ws_bytes = want;
    }
    *out = c->ws;
    return GRAFT_STATUS_OK;
}

static graft_status t_embedding_bwd(void *ctx, float *dtable, const void *dout, const int32_t *ids, int64_t N,
                                    int64_t C, int64_t V, graft_err *err) {
    size_t need = 0;
    void *w = NULL;
    graft_status st = graft_cuda_embedding_bwd_workspace(N, &need, err);
    if (!st) st = scratch(cb(ctx), need, &w, err);
    if (st) return st;
    return graft_cuda_embedding_bwd(dtable, (const graft_bf16 *)dout, ids, N, C, V, w, cb(ctx)->ws_bytes,
                                    cb(ctx)->stream, err);
}

static graft_status t_rmsnorm_bwd(void *ctx, void *dx, float *dw, const void *dy, const void *x, const void *w,
                                  const float *rstd, int64_t N, int64_t C, int accumulate, graft_err *err) {
    void *s = NULL;
    graft_status st = scratch(cb(ctx), graft_cuda_rmsnorm_bwd_scratch_bytes(N, C), &s, err);
    if (st) return st;
    return graft_cuda_rmsnorm_bwd((graft_bf16 *)dx, dw, (const graft_bf16 *)dy, (const graft_bf16 *)x,
                                  (const graft_bf16 *)w, rstd, N, C, accumulate, s, cb(ctx)->ws_bytes, cb(ctx)->stream,
                                  err);
}

static graft_status t_swiglu_bwd(void *ctx, void *dg, void *du, const void *dh, const void *g, const void *u,
                                 int64_t N, int64_t I, graft_err *err) {
    return graft_cuda_swiglu_bwd((graft_bf16 *)dg, (graft_bf16 *)du, (const graft_bf16 *)dh, (const graft_bf16 *)g,
                                 (const graft_bf16 *)u, N, I, I, I, cb(ctx)->stream, err);
}

/* Rows of fp32 logits per chunk of the fused head: up to ~2.5 GB of them (4096 rows at Qwen3's
 * V = 151,936: one chunk for a 4 x 1024 batch, so dW is read and written once). */
static int64_t loss_chunk_rows(int64_t N, int64_t V) {
    int64_t r = (int64_t)(((size_t)5 << 29) / ((size_t)V * 4));
    if (r < 1) r = 1;
    return r < N ? r : (N > 0 ? N : 1);
}

static graft_status t_lmhead_loss(void *ctx, const graft_backend_loss_io *in, graft_err *err) {
    graft_cuda_lmhead_loss_io io;
    memset(&io, 0, sizeof io);
    io.hidden = (const graft_bf16 *)in->hidden;
    io.weight = (const graft_bf16 *)in->weight;
    io.labels = in->labels;
    io.N = in->N;
    io.C = in->C;
    io.V = in->V;
    io.ignore_index = in->ignore_index;
    io.ce_scale = in->ce_scale;
    io.topk_ids = in->topk_ids;
    io.topk_logp = in->topk_logp;
    io.topk_mass = in->topk_mass;
    io.k = in->k;
    io.temperature = in->temperature;
    io.kl_scale = in->kl_scale;
    io.dhidden = (graft_bf16 *)in->dhidden;
    io.dweight = in->dweight;
    io.sums = in->sums;
    io.chunk_rows = loss_chunk_rows(in->N, in->V);
    io.stream = cb(ctx)->stream;
    graft_status st = scratch(cb(ctx), graft_cuda_lmhead_loss_workspace_bytes(in->N, in->V, io.chunk_rows),
                              &io.workspace, err);
    if (st) return st;
    io.workspace_bytes = cb(ctx)->ws_bytes;
    return graft_cuda_lmhead_loss(cb(ctx)->blas, &io, err);
}

/* ---- AdamW ---------------------------------------------------------------------------------- */

struct cuda_adamw {
    graft_cuda_adamw_plan_t *plan;
    double *norm; /* device */
};

static graft_status t_adamw_init(void *ctx, void **out, const graft_backend_adamw_span *spans, int64_t n,
                                 graft_err *err) {
    *out = NULL;
    GRAFT_CUDA_TRY(cudaSetDevice(cb(ctx)->index));
    graft_cuda_adamw_span *cs = (graft_cuda_adamw_span *)calloc((size_t)(n > 0 ? n : 1), sizeof *cs);
    cuda_adamw *a = (cuda_adamw *)calloc(1, sizeof *a);
    if (!cs || !a) {
        free(cs);
        free(a);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: adamw: out of host memory", cb(ctx)->be.name);
    }
    for (int64_t i = 0; i < n; i++) {
        cs[i].data = spans[i].data;
        cs[i].grad = spans[i].grad;
        cs[i].m = spans[i].m;
        cs[i].v = spans[i].v;
        cs[i].data_bf16 = (graft_bf16 *)spans[i].work;
        cs[i].n = spans[i].n;
        cs[i].flags = spans[i].no_decay ? GRAFT_CUDA_ADAMW_NO_DECAY : 0u;
    }
    graft_status st = graft_cuda_adamw_plan_init(&a->plan, cs, n, err);
    free(cs);
    if (!st && cudaMalloc(&a->norm, sizeof(double)) != cudaSuccess) {
        cudaGetLastError();
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: adamw: cannot allocate the norm", cb(ctx)->be.name);
    }
    if (st) {
        graft_cuda_adamw_plan_free(a->plan);
        free(a);
        return st;
    }
    *out = a;
    return GRAFT_STATUS_OK;
}

static graft_status t_adamw_step(void *ctx, void *plan, double beta1, double beta2, double eps, double wd, int64_t t,
                                 double lr, double max_norm, double *norm_host, graft_err *err) {
    cuda_adamw *a = (cuda_adamw *)plan;
    graft_cuda_adamw_params p = {beta1, beta2, eps, wd};
    cudaStream_t s = cb(ctx)->stream;
    graft_status st = graft_cuda_grad_norm(a->plan, a->norm, s, err);
    if (!st) st = graft_cuda_adamw_step(a->plan, &p, t, lr, max_norm > 0 ? a->norm : NULL, max_norm, s, err);
    if (st) return st;
    if (norm_host) {
        GRAFT_CUDA_TRY(cudaMemcpyAsync(norm_host, a->norm, sizeof(double), cudaMemcpyDeviceToHost, s));
        GRAFT_CUDA_TRY(cudaStreamSynchronize(s));
    }
    return GRAFT_STATUS_OK;
}

static void t_adamw_free(void *ctx, void *plan) {
    (void)ctx;
    cuda_adamw *a = (cuda_adamw *)plan;
    if (!a) return;
    graft_cuda_adamw_plan_free(a->plan);
    cudaFree(a->norm);
    free(a);
}

/* ---- opening ------------------------------------------------------------------------------- */

extern "C" graft_status graft_backend_cuda_open(int index, const graft_backend **out, graft_err *err) {
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "0 devices";
        cudaGetLastError();
        return graft_err_set(err, GRAFT_STATUS_DEVICE,
                             "cuda:%d: no CUDA device is available (cudaGetDeviceCount: %s); use device cpu", index,
                             why);
    }
    if (index < 0 || index >= count || index >= MAX_DEVICES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda:%d: this machine has %d CUDA device(s), expected 0..%d",
                             index, count, count - 1);
    if (g_backends[index]) {
        *out = &g_backends[index]->be;
        GRAFT_CUDA_TRY(cudaSetDevice(index));
        graft_host_set_cuda_matmul(graft_cuda_host_matmul, g_backends[index]->blas);
        return GRAFT_STATUS_OK;
    }
    GRAFT_CUDA_TRY(cudaSetDevice(index));
    cuda_backend *c = (cuda_backend *)calloc(1, sizeof *c);
    if (!c) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "cuda:%d: out of memory", index);
    c->index = index;
    e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(c);
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "cuda:%d: cudaStreamCreate: %s", index, cudaGetErrorString(e));
    }
    graft_status st = graft_cuda_blas_init(&c->blas, 0, err);
    if (st) {
        cudaStreamDestroy(c->stream);
        free(c);
        return st;
    }
    static char names[MAX_DEVICES][16];
    snprintf(names[index], sizeof names[index], "cuda:%d", index);
    graft_backend *b = &c->be;
    b->name = names[index];
    b->device = GRAFT_DEVICE_CUDA;
    b->ctx = c;
    b->alloc = cu_alloc;
    b->free = cu_free;
    b->matmul = cu_matmul;
    b->act_dtype = GRAFT_DTYPE_BF16;
    b->weight_dtype = GRAFT_DTYPE_BF16;
    b->device_index = index;
    b->stream = c->stream;
    b->copy = cu_copy;
    b->zero = cu_zero;
    b->sync = cu_sync;
    b->graph_begin = cu_graph_begin;
    b->graph_end = cu_graph_end;
    b->graph_launch = cu_graph_launch;
    b->graph_free = cu_graph_free;
    b->mem_peak = cu_mem_peak;
    b->op.embedding_fwd = t_embedding_fwd;
    b->op.rmsnorm_fwd = t_rmsnorm_fwd;
    b->op.swiglu_fwd = t_swiglu_fwd;
    b->op.add = t_add;
    b->op.add_rmsnorm_fwd = t_add_rmsnorm_fwd;
    b->op.mlp_small = t_mlp_small;
    b->op.argmax_rows = t_argmax_rows;
    b->op.cast = t_cast;
    b->op.embedding_bwd = t_embedding_bwd;
    b->op.rmsnorm_bwd = t_rmsnorm_bwd;
    b->op.swiglu_bwd = t_swiglu_bwd;
    b->op.lmhead_loss = t_lmhead_loss;
    b->op.adamw_init = t_adamw_init;
    b->op.adamw_step = t_adamw_step;
    b->op.adamw_free = t_adamw_free;
    g_backends[index] = c;
    /* Plugins reach cuBLASLt through the host table: the blas object is bound to this stream's
     * thread-of-use (one model thread), see matmul.cuh. */
    graft_host_set_cuda_matmul(graft_cuda_host_matmul, c->blas);
    *out = b;
    return GRAFT_STATUS_OK;
}
