/* graft/rng.h: the one deterministic random generator of graft, shared by the core (graft init,
 * data shuffling, dropout-free training) and plugins (their own parameter init), so that a seed
 * means the same numbers everywhere and no plugin needs a mutable global.
 *
 * splitmix64 (Steele, Lea, Flood 2014) for uniform 64-bit words; Box-Muller for normals. It is a
 * value type: copy it to fork a stream. Not cryptographic. Thread safety: one graft_rng per thread.
 */
#ifndef GRAFT_RNG_H
#define GRAFT_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct graft_rng {
    uint64_t state;
} graft_rng;

/* A generator for (seed, stream): different streams of one seed are independent sequences
 * (a plugin uses stream = its parameter index, say). */
static inline graft_rng graft_rng_make(uint64_t seed, uint64_t stream) {
    graft_rng r;
    r.state = seed * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xD1B54A32D192ED03ull;
    return r;
}

static inline uint64_t graft_rng_next(graft_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1): never 0, so log() is safe. */
static inline double graft_rng_uniform(graft_rng *r) {
    return ((double)(graft_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal (one Box-Muller draw per call; the second value is discarded for simplicity
 * and reproducibility under forking). */
static inline double graft_rng_normal(graft_rng *r) {
    double u1 = graft_rng_uniform(r), u2 = graft_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_RNG_H */
