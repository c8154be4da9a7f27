/* bench/qwen3_train.c: graft's full-parameter training step and teacher forward throughput on a
 * backend, for bench/qwen3_vs_hf.py (issue #7).
 *
 *   graft_bench_train (--model DIR | --config CFG.json) [--device cuda] [--mode train|forward]
 *                     [--B 4] [--T 1024] [--steps 5] [--warmup 2]
 *
 * train:   one step = zero grads, training forward (bf16 activations saved), fused lm_head + CE
 *          loss and backward (graft_model_backward_loss), AdamW on the fp32 masters with global-norm
 *          clipping 1.0 (graft_model_opt_step), the bf16 working copy refreshed; the loss comes
 *          back to the host each step (one sync), as a training loop needs it.
 * forward: inference forward of B x T tokens and the F32 logits left on the device
 *          (graft_model_head_device), as a distillation teacher would produce them.
 * Timed by the wall clock around each step after a stream sync; prints one JSON line: median and
 * min step ms, tokens/s, and the GPU memory in use after the steps (cudaMemGetInfo: graft
 * allocates its arenas once and never frees during a step, so this is its peak, CUDA context
 * included).
 *
 * --config: the weights are filled by a fast uniform generator (values in +-initializer_range *
 * sqrt(3), the std of the Normal init) instead of graft init's Normal draws: an 8B-shaped model's
 * 8e9 Normal draws would take minutes of single-core time; speed does not depend on the values
 * (they are not zeros). --model: the weights of a checkpoint (e.g. `graft init --random`, so HF
 * runs on the same ones).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef GRAFT_BENCH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "backend.h"
#include "config.h"
#include "graft/rng.h"
#include "model.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fast_fill(graft_model_t *m, uint64_t seed) {
    const graft_qwen3_config *c = graft_model_config(m);
    float a = (float)(c->initializer_range * 1.7320508);
    for (int64_t i = 0; i < graft_model_n_params(m); i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        if (p->ndim == 1) {
            for (int64_t j = 0; j < p->numel; j++) p->data[j] = 1.0f;
            continue;
        }
        uint64_t x = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull + 1;
        for (int64_t j = 0; j < p->numel; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17; /* xorshift64 */
            p->data[j] = a * ((float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f);
        }
    }
}

int main(int argc, char **argv) {
    const char *model = NULL, *config = NULL, *device = "cuda", *mode = "train";
    int64_t B = 4, T = 1024;
    int steps = 5, warmup = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--config")) config = argv[i + 1];
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
        else if (!strcmp(argv[i], "--B")) B = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else { fprintf(stderr, "graft_bench_train: unknown option %s\n", argv[i]); return 2; }
    }
    int train = !strcmp(mode, "train");
    if ((!model == !config) || steps < 1 || steps > 100 || warmup < 0 || B < 1 || T < 1 ||
        (!train && strcmp(mode, "forward"))) {
        fprintf(stderr, "usage: graft_bench_train (--model DIR | --config CFG.json) [--device cuda] "
                        "[--mode train|forward] [--B 4] [--T 1024] [--steps 5] [--warmup 2]\n");
        return 2;
    }
    graft_err err = {0};
    const graft_backend *be = NULL;
    graft_model_t *m = NULL;
    double t0 = now_ms();
    graft_status st = graft_backend_open(device, "--device", &be, &err);
    if (!st && model) st = graft_model_load(model, &m, &err);
    if (!st && config) {
        graft_qwen3_config cfg;
        st = graft_config_load(config, &cfg, &err);
        if (!st) st = graft_model_create(&cfg, NULL, &m, &err);
        if (!st) fast_fill(m, 1);
    }
    if (!st) st = graft_model_set_backend(m, be, &err);
    if (st) {
        fprintf(stderr, "graft_bench_train: %s\n", err.msg);
        graft_model_free(m);
        return 1;
    }
    fprintf(stderr, "graft_bench_train: model ready in %.1f s\n", (now_ms() - t0) * 1e-3);
    const graft_qwen3_config *c = graft_model_config(m);
    int64_t N = B * T, V = c->vocab_size;
    int32_t *ids = malloc((size_t)N * sizeof *ids), *labels = malloc((size_t)N * sizeof *labels);
    if (!ids || !labels) return 1;
    graft_rng r = graft_rng_make(3, 0);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)(graft_rng_next(&r) % (uint64_t)V);
    for (int64_t i = 0; i < N; i++) labels[i] = (i % T == T - 1) ? -100 : ids[i + 1];
    int64_t rows = N - B;
    graft_adamw_params ap = graft_adamw_default_params();
    ap.weight_decay = 0.1;
    ap.beta2 = 0.95;
    graft_model_loss loss = {.labels = labels, .ignore_index = -100, .ce_scale = (float)(1.0 / (double)rows)};
    double t_ms[100], first_loss = 0, last_loss = 0;
    int rc = 0;
    for (int s = 0; s < warmup + steps && !rc; s++) {
        double sums[4] = {0};
        double a = now_ms();
        if (train) {
            graft_model_zero_grad(m);
            st = graft_model_forward(m, ids, B, T, NULL, NULL, 1, &err);
            if (!st) st = graft_model_backward_loss(m, &loss, sums, &err);
            if (!st) st = graft_model_opt_step(m, &ap, s + 1, 1e-4, 1.0, NULL, &err);
        } else {
            const float *lg = NULL;
            st = graft_model_forward(m, ids, B, T, NULL, NULL, 0, &err);
            if (!st) st = graft_model_head_device(m, &lg, &err);
        }
        if (!st) st = be->sync(be->ctx, &err);
        double b = now_ms();
        if (st) {
            fprintf(stderr, "graft_bench_train: step %d: %s\n", s, err.msg);
            rc = 1;
            break;
        }
        if (train) {
            last_loss = sums[0] / sums[1];
            if (s == 0) first_loss = last_loss;
            fprintf(stderr, "graft_bench_train: step %d: %.1f ms, loss %.5f\n", s, b - a, last_loss);
        } else {
            fprintf(stderr, "graft_bench_train: forward %d: %.1f ms\n", s, b - a);
        }
        if (s >= warmup) t_ms[s - warmup] = b - a;
    }
    double used_gb = -1;
#ifdef GRAFT_BENCH_CUDA
    size_t fr = 0, tot = 0;
    if (be->device == GRAFT_DEVICE_CUDA && cudaMemGetInfo(&fr, &tot) == cudaSuccess) used_gb = (double)(tot - fr) / 1e9;
#endif
    if (!rc) {
        qsort(t_ms, (size_t)steps, sizeof *t_ms, cmp_d);
        printf("{\"mode\": \"%s\", \"B\": %lld, \"T\": %lld, \"step_ms_median\": %.3f, \"step_ms_min\": %.3f, "
               "\"tokens_per_s\": %.1f, \"steps\": %d, \"gpu_mem_used_gb\": %.2f, \"loss_first\": %.5f, "
               "\"loss_last\": %.5f, \"device\": \"%s\"}\n",
               mode, (long long)B, (long long)T, t_ms[steps / 2], t_ms[0], (double)N / (t_ms[steps / 2] * 1e-3), steps,
               used_gb, first_loss, last_loss, be->name);
    }
    free(ids);
    free(labels);
    graft_model_free(m);
    return rc;
}
