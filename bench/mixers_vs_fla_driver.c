/* bench/mixers_vs_fla_driver.c: times graft's mixer layers on CUDA through their plugin .so, the way
 * the core calls them (host->matmul = cuBLASLt, bf16 activations and weights, fp32 gradients), for
 * bench/mixers_vs_fla.py, which times the peers (FLA's GatedLinearAttention, transformers'
 * Qwen3Attention with SDPA) at the same shapes and prints the table.
 *
 *   mixers_vs_fla_driver PLUGIN.so NAME [PASS:T]   (NAME: gla | softmax | rwkv7; Qwen3-1.7B-sized
 *                                                 layer; PASS:T, e.g. fwd:32768, times that shape only,
 *                                                 for a kernel timeline of one shape)
 *
 * Prints one line per shape: "RESULT <name> <pass> B=<B> T=<T> <median ms> <min ms>". Passes:
 * fwdbwd (a training forward that saves activations, then the backward with parameter gradients,
 * B=4 T=2048) and fwd (an inference forward, no saved activations, B=1 T=8192 and T=32768).
 * CUDA events around each repetition; median of 20 after 3 warm-ups; random inputs (never zeros).
 * Built by tests/plugins/cuda_standalone.sh together with the standalone host.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graft/rng.h"
#include "standalone_host.h"

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void *dev_random(int64_t n, graft_rng *r, double scale) {
    uint16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = to_bf16((float)(scale * graft_rng_normal(r)));
    void *d = NULL;
    CK(cudaMalloc(&d, (size_t)n * 2));
    CK(cudaMemcpy(d, h, (size_t)n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: mixers_vs_fla_driver PLUGIN.so gla|softmax|rwkv7\n");
        return 2;
    }
    void *stream = NULL;
    const graft_host *host = sh_open(&stream);
    if (!host) return 77;
    cudaStream_t s = (cudaStream_t)stream;
    const graft_mixer *m = sh_load(argv[1]);
    if (!m) return 1;
    const char *name = argv[2];
    graft_kv kv_gla[] = {{"num_heads", "16", NULL}, {"expand_k", "1", NULL}, {"expand_v", "1", NULL},
                         {"conv_size", "4", NULL}, {"use_short_conv", "true", NULL}};
    graft_mixer_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.n_embd = 2048;
    cfg.n_head = 16;
    cfg.n_kv_head = 8; /* Qwen3-1.7B */
    cfg.head_dim = 128;
    cfg.n_layer = 28;
    cfg.rope_theta = 1000000.0;
    cfg.norm_eps = 1e-6;
    cfg.origin = "mixers_vs_fla_driver";
    if (!strcmp(name, "gla")) {
        cfg.kv = kv_gla;
        cfg.n_kv = 5;
    }
    if (!strcmp(name, "rwkv7")) cfg.carry_role = GRAFT_CARRY_PRODUCER;
    graft_err err;
    memset(&err, 0, sizeof err);
    void *layer = NULL;
    if (m->create(host, &cfg, &layer, &err)) {
        fprintf(stderr, "create: %s\n", err.msg);
        return 1;
    }
    graft_rng rng = graft_rng_make(7, 1);
    int64_t np = m->n_params(layer);
    graft_tensor *P = calloc((size_t)np, sizeof *P), *G = calloc((size_t)np, sizeof *G);
    for (int64_t i = 0; i < np; i++) {
        graft_param_spec sp;
        memset(&sp, 0, sizeof sp);
        sp.struct_size = sizeof sp;
        m->param(layer, i, &sp, &err);
        int64_t n = 1;
        for (int d = 0; d < sp.ndim; d++) n *= sp.shape[d];
        /* 1-D parameters (norm weights, biases) near 1 and 0; matrices N(0, 0.02²), FLA's init */
        void *d = dev_random(n, &rng, sp.ndim == 1 ? 0.1 : 0.02);
        if (sp.ndim == 1 && strstr(sp.name, "norm")) {
            uint16_t *h = malloc((size_t)n * 2);
            for (int64_t j = 0; j < n; j++) h[j] = to_bf16(1.0f + 0.1f * (float)graft_rng_normal(&rng));
            CK(cudaMemcpy(d, h, (size_t)n * 2, cudaMemcpyHostToDevice));
            free(h);
        }
        P[i] = graft_tensor_make(d, GRAFT_DTYPE_BF16, GRAFT_DEVICE_CUDA, sp.ndim, sp.shape);
        void *g = NULL;
        CK(cudaMalloc(&g, (size_t)n * 4));
        CK(cudaMemset(g, 0, (size_t)n * 4));
        G[i] = graft_tensor_make(g, GRAFT_DTYPE_F32, GRAFT_DEVICE_CUDA, sp.ndim, sp.shape);
    }
    struct { const char *pass; int64_t B, T; } shapes[] = {{"fwdbwd", 4, 2048}, {"fwd", 1, 8192}, {"fwd", 1, 32768}};
    for (int si = 0; si < 3; si++) {
        char want[64];
        snprintf(want, sizeof want, "%s:%lld", shapes[si].pass, (long long)shapes[si].T);
        if (argc > 3 && strcmp(argv[3], want)) continue;
        int64_t B = shapes[si].B, T = shapes[si].T, N = B * T, C = cfg.n_embd;
        int train = !strcmp(shapes[si].pass, "fwdbwd");
        size_t sv = 0, sc = 0;
        if (m->workspace(layer, GRAFT_DEVICE_CUDA, B, T, &sv, &sc, &err)) {
            fprintf(stderr, "workspace: %s\n", err.msg);
            return 1;
        }
        void *x = dev_random(N * C, &rng, 1.0), *dy = dev_random(N * C, &rng, 1.0), *y, *dx, *saved = NULL, *scr,
             *carry = NULL, *dcarry = NULL;
        CK(cudaMalloc(&y, (size_t)N * C * 2));
        CK(cudaMalloc(&dx, (size_t)N * C * 2));
        CK(cudaMalloc(&scr, sc + 256));
        if (train) CK(cudaMalloc(&saved, sv + 256));
        int64_t cw = m->carry_name ? m->carry_width(layer) : 0;
        if (cw) {
            CK(cudaMalloc(&carry, (size_t)N * cw * 2));
            /* carry bf16 (an activation), dcarry fp32 (accumulated over consumers; rwkv7's CUDA ABI) */
            CK(cudaMalloc(&dcarry, (size_t)N * cw * 4));
            CK(cudaMemset(dcarry, 0, (size_t)N * cw * 4));
        }
        graft_mixer_io io;
        memset(&io, 0, sizeof io);
        io.struct_size = sizeof io;
        io.layer = layer;
        io.device = GRAFT_DEVICE_CUDA;
        io.stream = stream;
        io.B = B;
        io.T = T;
        io.params = P;
        io.x = x;
        io.y = y;
        io.saved = saved;
        io.scratch = scr;
        io.carry = carry;
        graft_mixer_io bio = io;
        bio.y = NULL;
        bio.grads = G;
        bio.dy = dy;
        bio.dx = dx;
        bio.dcarry = dcarry;
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        float t[20];
        for (int rep = -3; rep < 20; rep++) {
            CK(cudaEventRecord(e0, s));
            if (m->forward(&io, &err) || (train && m->backward(&bio, &err))) {
                fprintf(stderr, "%s %s B=%lld T=%lld: %s\n", name, shapes[si].pass, (long long)B, (long long)T, err.msg);
                return 1;
            }
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            CK(cudaGetLastError());
            if (rep >= 0) CK(cudaEventElapsedTime(&t[rep], e0, e1));
        }
        qsort(t, 20, sizeof t[0], cmp);
        printf("RESULT %s %s B=%lld T=%lld %.4f %.4f\n", name, shapes[si].pass, (long long)B, (long long)T,
               0.5 * (t[9] + t[10]), t[0]);
        fflush(stdout);
        cudaFree(x), cudaFree(dy), cudaFree(y), cudaFree(dx), cudaFree(scr);
        if (saved) cudaFree(saved);
        if (carry) cudaFree(carry), cudaFree(dcarry);
    }
    return 0;
}
