/* cuda/cuda_types.h: the C-visible types shared by the CUDA ops' entry points (cuda/<op>.cuh).
 *
 * The entry points are called from the C core (gcc, C11), so their headers carry no CUDA types:
 * a stream is a void * (cudaStream_t), and a bf16 tensor is a graft_bf16 *, the raw 16 bits of
 * one bfloat16 (the top half of an IEEE fp32, round-to-nearest-even). Device pointers are plain
 * pointers; every entry point says which of its pointers live on the device.
 *
 * Not here: kernels and device helpers (cuda_util.cuh, C++ only).
 */
#ifndef GRAFT_CUDA_TYPES_H
#define GRAFT_CUDA_TYPES_H

#include <stdint.h>

/* One bfloat16 value as stored (not a number type in C: convert with the helpers below). */
typedef uint16_t graft_bf16;

/* Host-side conversions, for tests and loaders: fp32 -> bf16 rounds to nearest even (NaN stays
 * NaN), bf16 -> fp32 is exact. */
static inline graft_bf16 graft_bf16_from_f32(float f) {
    union { float f; uint32_t u; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (graft_bf16)((v.u >> 16) | 0x40u);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (graft_bf16)(v.u >> 16);
}

static inline float graft_bf16_to_f32(graft_bf16 h) {
    union { float f; uint32_t u; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

#endif
