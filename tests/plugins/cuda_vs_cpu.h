/* tests/plugins/cuda_vs_cpu.h: a mixer plugin on GRAFT_DEVICE_CUDA against the same plugin on the
 * CPU (its fp32 reference). Shared by the in-tree test (conformance_cuda.c: the core's loader and
 * CUDA backend) and the standalone device build (cuda_standalone.c: dlopen and a minimal host), so
 * the check itself is written once. It reaches device memory only through cvc_env. */
#ifndef GRAFT_TESTS_CUDA_VS_CPU_H
#define GRAFT_TESTS_CUDA_VS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"
#include "graft/rng.h"

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

/* A conformance case line (tests/plugins/configs/cuda/<M>.txt): the mixer's config, B, T and the
 * harness's own keys (state_in, reruns, below). Opaque; parsed by cvc_case_parse, freed by
 * cvc_case_free. */
typedef struct cvc_case cvc_case;

/* Parses a case line: key=value pairs. The harness keys: B, T, the graft_mixer_cfg members
 * (n_embd, n_head, ...), carry_role, state_in=zero|random, reruns=N, chunk=L; every other key goes to the
 * plugin's config. NULL on a bad line (message printed). */
cvc_case *cvc_case_parse(const char *text);
void cvc_case_free(cvc_case *c);

/* A case's default seed: FNV-1a of "PLUGIN CASE_TEXT", so a case draws the same weights and inputs
 * on every run and in both programs (conformance_cuda.c, cuda_standalone.c), and two runs that
 * differ only in a switch (e.g. a fused path on and off) can be compared line for line. */
uint64_t cvc_case_seed(const char *plugin, const char *case_text);

/* A --seed argument: a decimal integer, or "random" (from the clock). 0 with *seed set; -1 (a
 * message naming prog printed on stderr) for anything else. */
int cvc_seed_arg(const char *prog, const char *arg, uint64_t *seed);

/* Runs the CUDA-vs-CPU checks for one case with inputs drawn from seed. Prints one line per
 * comparison (name, NMSE, tolerance) and returns the number of failures (a refusal of the case
 * by the CUDA path, UNSUPPORTED, counts as a failure: cases are chosen to be served).
 * Case keys read here:
 *   state_in=random (mixers with GRAFT_MIXER_CAP_STATE_GRAD): the forward/backward comparison
 *     starts every sequence from a random fp32 state instead of the empty one (the decode check
 *     always starts empty);
 *   reruns=N: after the comparison, the CUDA backward runs N more times on the same inputs (the
 *     gradients zeroed, dcarry reset first) and every parameter gradient, dx, dstate_in and dcarry
 *     must be bitwise equal to the first run's (a fixed-order reduction, not atomics; what a
 *     killed and resumed training run relies on);
 *   chunk=L: after the decode check, sequence b prefills T/2 - (b % 3) tokens alone, then all
 *     continue together in calls of up to L tokens from their own lengths (state buffer NaN-poisoned
 *     first); the outputs must equal the CUDA full forward's (the prefill-in-chunks path of
 *     generate and bench). */
int cvc_run(const graft_mixer *m, const cvc_env *env, const cvc_case *c, uint64_t seed);

/* The mixer config of a parsed case (owned by c), to create a layer for cvc_inputs_draw. */
const graft_mixer_cfg *cvc_case_cfg(const cvc_case *c);

/* The host inputs of a case as cvc_run draws them from seed (one generator, in this order): the
 * plugin's init of the parameters plus 0.3 N(0,1) on 1-D tensors and 0.01 N(0,1) on the others,
 * x and dy ~ N(0,1), a consumer's carry ~ N(0,1), dcarry ~ N(0,0.1), with CAP_STATE_GRAD
 * dstate_out ~ N(0,0.1), and with state_in=random the initial state ~ N(0,0.1). Every array but
 * dcarry and state_in is rounded to bf16, the values the CUDA path stores. Each pointer is malloc'ed
 * and owned by the struct (cvc_inputs_free); the optional ones are NULL when absent. For programs
 * that study a case's CPU reference (rwkv7_dstate_conditioning.c). */
typedef struct cvc_inputs {
    int64_t B, T, C, n_params;
    int64_t carry_width;      /* 0 without a carried stream                                  */
    size_t slot_bytes;        /* the CPU state slot (state_bytes at capacity T); 0 without     */
                              /* CAP_STATE_GRAD                                                */
    graft_tensor *params;     /* n_params fp32 CPU tensors, in the plugin's declared order      */
    float *x, *dy;            /* (B, T, C)                                                      */
    float *carry, *dcarry;    /* (B, T, carry_width): read (a producer's is zero and written),  */
                              /* the dcarry before the backward; NULL without a carried stream  */
    float *dstate_out;        /* B slots; NULL without CAP_STATE_GRAD                           */
    float *state_in;          /* B slots; NULL unless state_in=random                           */
} cvc_inputs;

/* Draws the inputs of case c for layer (created by m->create from cvc_case_cfg(c); its init runs
 * on out->params). Returns 0, or 1 with a message printed (out then holds nothing). */
int cvc_inputs_draw(const graft_mixer *m, void *layer, const cvc_case *c, uint64_t seed, cvc_inputs *out);
/* Frees what in holds and zeroes it; NULL is accepted. */
void cvc_inputs_free(cvc_inputs *in);

/* Input groups of cvc_inputs_jittered. */
enum {
    CVC_JITTER_WEIGHTS = 1, /* the parameters                  */
    CVC_JITTER_X = 2,       /* x, carry, state_in              */
    CVC_JITTER_DY = 4,      /* dy, dstate_out                  */
    CVC_JITTER_ALL = 7
};
/* A copy of in whose arrays in `groups` are multiplied elementwise by 1 + u, u ~ U[-2^-9, 2^-9]
 * (one bf16 rounding's worth), drawn from rng in a fixed order (parameters in declared order, x,
 * carry, state_in, dy, dstate_out); the other arrays are shared with in. Free with
 * cvc_inputs_unshare(&copy, in). */
cvc_inputs cvc_inputs_jittered(const cvc_inputs *in, unsigned groups, graft_rng *rng);
void cvc_inputs_unshare(cvc_inputs *copy, const cvc_inputs *in);

/* The outputs of one backward on the host, fp32; in cvc_cpu_backward each NULL = not wanted:
 * dstate_in (B slots; CAP_STATE_GRAD only), dx (B, T, C), dcarry (B, T, carry_width) after the
 * backward (in's dcarry, plus a consumer's +=), and params[i], parameter i's gradient (numel
 * floats; params itself NULL: no parameter gradient wanted). */
typedef struct cvc_grads {
    float *dstate_in, *dx, *dcarry;
    float **params;
} cvc_grads;

/* The CPU forward then backward of layer on in, with dy and dstate_out given apart (the backward
 * is linear in them, so a caller can split dstate_in by source); writes the outputs out asks for
 * (the parameter gradients from zero, not added to). Its own buffers for the rest; in is not
 * written. 0, or 1 with a message printed. */
int cvc_cpu_backward(const graft_mixer *m, void *layer, const cvc_inputs *in, const float *dy, const float *dso,
                     const cvc_grads *out);

/* The backward outputs, numbered as cvc_cond and cvc_cpu_sensitivity number them: dstate_in, dx,
 * dcarry, then parameter i as CVC_Q_PARAM + i (CVC_Q_PARAM + n_params in all). */
enum { CVC_Q_DSTATE_IN, CVC_Q_DX, CVC_Q_DCARRY, CVC_Q_PARAM };

/* How far bf16-level input jitter moves the CPU's own backward outputs: draws CPU forward +
 * backward runs on cvc_inputs_jittered(in, groups, rng) copies, and per quantity q the largest
 * (max[q]) and the mean (mean[q]; mean may be NULL) NMSE against ref[q], ref being the CPU's
 * outputs on in. A quantity ref lacks gets 0. 0, or 1 with a message printed. */
int cvc_cpu_sensitivity(const graft_mixer *m, void *layer, const cvc_inputs *in, const cvc_grads *ref,
                        unsigned groups, graft_rng *rng, int draws, double *max, double *mean);
/* The stream, graft_rng_make(seed, CVC_COND_STREAM), that cvc_run's conditioning-aware check
 * draws its jitter from. */
#define CVC_COND_STREAM 0xc0dd

/* The conditioning-aware comparison of the backward outputs (cuda_vs_cpu.c's header says why):
 * quantity q of got against ref's within strict; when it misses, within max(strict, COND_FACTOR x
 * the largest NMSE by which COND_DRAWS CPU runs on jittered inputs (CVC_JITTER_ALL, drawn from
 * seed) move the CPU's own value. Those runs happen once, at the first miss, and serve every
 * quantity. in and ref are held, not copied, and MUST outlive the cvc_cond; ref MUST be the
 * CPU's outputs on in, the values got is compared with. cvc_cond_free frees it (NULL accepted). */
typedef struct cvc_cond cvc_cond;
cvc_cond *cvc_cond_init(const graft_mixer *m, void *layer, const cvc_inputs *in, const cvc_grads *ref,
                        uint64_t seed);
void cvc_cond_free(cvc_cond *c);
/* Compares got (n floats) with quantity q of the reference as above, printing one line per
 * comparison (and one explaining a widened bound); 0 = within, 1 = not (or a failed CPU run). */
int cvc_cond_compare(cvc_cond *c, int q, const char *name, const float *got, int64_t n, double strict);

#endif
