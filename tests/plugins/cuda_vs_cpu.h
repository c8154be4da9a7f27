/* tests/plugins/cuda_vs_cpu.h: a mixer plugin on GRAFT_DEVICE_CUDA against the same plugin on the
 * CPU (its fp32 reference). Shared by the in-tree test (conformance_cuda.c: the core's loader and
 * CUDA backend) and the standalone device build (cuda_standalone.c: dlopen and a minimal host), so
 * the check itself is written once. It reaches device memory only through cvc_env. */
#ifndef GRAFT_TESTS_CUDA_VS_CPU_H
#define GRAFT_TESTS_CUDA_VS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"

typedef struct cvc_env {
    const graft_host *host;              /* serves F32 CPU and BF16 CUDA products              */
    void *(*dalloc)(size_t bytes);       /* device memory; NULL on failure                     */
    void (*dfree)(void *p);
    int (*h2d)(void *dst, const void *src, size_t bytes); /* 0 on success, synchronous       */
    int (*d2h)(void *dst, const void *src, size_t bytes);
    int (*dzero)(void *dst, size_t bytes);
    int (*sync)(char *msg, size_t size);  /* waits for the stream; 0 or a message             */
    void *stream;                         /* the stream the mixer is called on                */
} cvc_env;

/* Runs the CUDA-vs-CPU checks for one case (cfg, B, T) with inputs drawn from seed. Prints one line
 * per comparison (name, NMSE, tolerance) and returns the number of failures (a refusal of the case
 * by the CUDA path, UNSUPPORTED, counts as a failure: cases are chosen to be served).
 * random_state_in (case key state_in=random; mixers with GRAFT_MIXER_CAP_STATE_GRAD): the
 * forward/backward comparison starts every sequence from a random fp32 state instead of the empty
 * one (the decode check always starts empty). */
int cvc_run(const graft_mixer *m, const cvc_env *env, const graft_mixer_cfg *cfg, int64_t B, int64_t T,
            uint64_t seed, int random_state_in);

/* Parses a conformance case line (tests/plugins/configs) into cfg/B/T; kv storage lives in the
 * returned opaque object, freed with cvc_case_free. NULL on a bad line (message printed). */
typedef struct cvc_case cvc_case;
cvc_case *cvc_case_parse(const char *text, graft_mixer_cfg **cfg, int64_t *B, int64_t *T);
void cvc_case_free(cvc_case *c);
/* Whether the case line asked for state_in=random. */
int cvc_case_random_state_in(const cvc_case *c);

#endif
