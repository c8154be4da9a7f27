/* cuda_small_model.h: the small Qwen3 the CUDA model tests share (test_model_cuda.c,
 * test_generate_cuda.c): 2 layers, hidden 256, 4 q / 2 kv heads of 128 (the head width the CUDA
 * attention serves), vocabulary 1000; and the bf16 rounding that gives the CPU reference the
 * weights the GPU sees. */
#ifndef GRAFT_TEST_CUDA_SMALL_MODEL_H
#define GRAFT_TEST_CUDA_SMALL_MODEL_H

#include "config.h"
#include "cuda/cuda_types.h"

static inline graft_qwen3_config cuda_small_config(void) {
    graft_qwen3_config c = graft_qwen3_config_default();
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = 2;
    c.head_dim = 128;
    c.vocab_size = 1000;
    c.max_position_embeddings = 4096;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 1000000.0;
    c.initializer_range = 0.02;
    c.tie_word_embeddings = 1;
    return c;
}

static inline void round_bf16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = graft_bf16_to_f32(graft_bf16_from_f32(x[i]));
}

#endif
