/* tests/plugins/rwkv7_dstate_conditioning.c: how far bf16-level noise in the inputs moves a mixer's
 * dstate_in on the CPU, for the exact inputs of a CUDA conformance case and seed (cvc_inputs_draw,
 * the draw of cuda_vs_cpu.c). The CUDA-vs-CPU check compares dstate_in by NMSE; where a draw makes
 * dstate_in itself ill-conditioned, a CUDA path that rounds its activations to bf16 fails that check
 * without a bug. This program measures the conditioning, on the CPU, no device needed:
 *
 *   ref      the CPU fp32 forward + backward on the case's inputs (as the conformance test's CPU side)
 *   perturb  the same with every input multiplied by (1 + u), u uniform in [-2^-9, 2^-9] (one
 *            bf16 rounding's worth), per group: all | weights | x (and carry) | dy (and dstate_out);
 *            NMSE against ref (mean and max over the draws), over the whole slot as the test
 *            compares, and over the state part (per head) and the token-shift tail
 *   parts    the backward is linear in (dy, dstate_out): dstate_in split into the share of its
 *            squared norm from dy at t = 0, dy at t = 1, dy at t >= 2 and dstate_out alone
 *
 *   rwkv7_dstate_conditioning --case 'key=value ...' [--draws K] SEED...
 *
 * Built in-tree (tests/plugins/CMakeLists.txt, build/bin/rwkv7_dstate_conditioning; run with
 * GRAFT_PLUGIN_PATH=build/lib/graft/plugins), not a ctest test. Results and reasoning:
 * bench/results/rwkv7-dstate-conditioning-2026-12-07.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_vs_cpu.h"
#include "graft/rng.h"
#include "plugin_loader.h"

/* ---- perturbation ------------------------------------------------------------------------------ */

/* the input groups perturbed in turn (cvc_inputs_jittered) */
enum { N_GROUP = 4 };
static const unsigned group_bits[N_GROUP] = {CVC_JITTER_ALL, CVC_JITTER_WEIGHTS, CVC_JITTER_X, CVC_JITTER_DY};
static const char *group_name[N_GROUP] = {"all", "weights", "x", "dy"};

/* ---- norms over parts of the slots --------------------------------------------------------------- */

/* Sums over the B slots of the floats [lo, hi) of each slot: sum a^2 (and sum (a - b)^2 when b). */
static double sq(const float *a, const float *b, int64_t B, int64_t slot, int64_t lo, int64_t hi) {
    double s = 0;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t i = lo; i < hi; i++) {
            const double d = b ? (double)a[bb * slot + i] - b[bb * slot + i] : a[bb * slot + i];
            s += d * d;
        }
    return s;
}

/* ---- one seed ---------------------------------------------------------------------------------- */

static int study(const graft_mixer *m, const graft_host *host, const cvc_case *tc, uint64_t seed, int draws) {
    graft_err err;
    memset(&err, 0, sizeof err);
    void *layer = NULL;
    if (m->create(host, cvc_case_cfg(tc), &layer, &err)) {
        fprintf(stderr, "create: %s\n", err.msg);
        return 1;
    }
    cvc_inputs in;
    if (cvc_inputs_draw(m, layer, tc, seed, &in)) {
        m->destroy(layer);
        return 1;
    }
    if (!in.slot_bytes) {
        fprintf(stderr, "%s has no state gradient (CAP_STATE_GRAD)\n", m->name);
        cvc_inputs_free(&in);
        m->destroy(layer);
        return 1;
    }
    const int64_t B = in.B, T = in.T, C = in.C, N = B * T, slot = (int64_t)(in.slot_bytes / 4), ns = slot * B;
    const int64_t H = cvc_case_cfg(tc)->n_head, KV = (slot - C) / H; /* rwkv7 slot: H states of K x V, then C */
    float *ref = malloc((size_t)ns * 4), *got = malloc((size_t)ns * 4), *dyp = calloc((size_t)(N * C), 4);
    float *zero = calloc((size_t)ns, 4);
    const cvc_grads out_ref = {ref, NULL, NULL, NULL}, out = {got, NULL, NULL, NULL};
    int fail = cvc_cpu_backward(m, layer, &in, in.dy, in.dstate_out, &out_ref);

    /* scale: ||dstate_in|| against ||dstate_out|| (what flows in at T), per part */
    const double n_ref = sq(ref, NULL, B, slot, 0, slot), n_dso = sq(in.dstate_out, NULL, B, slot, 0, slot);
    printf("seed %llu: |dstate_in| %.3e (state %.3e, shift %.3e), |dstate_out| %.3e, ratio %.3f; "
           "rms dy %.3f\n", (unsigned long long)seed, sqrt(n_ref), sqrt(sq(ref, NULL, B, slot, 0, H * KV)),
           sqrt(sq(ref, NULL, B, slot, H * KV, slot)), sqrt(n_dso), sqrt(n_ref / n_dso),
           sqrt(sq(in.dy, NULL, 1, N * C, 0, N * C) / (double)(N * C)));

    /* the linear split of dstate_in: dy at t = 0, t = 1, t >= 2, dstate_out */
    const char *part_name[4] = {"dy t=0", "dy t=1", "dy t>=2", "dstate_out"};
    printf("  share of |dstate_in|^2 (state part | per head) by source:");
    for (int part = 0; part < 4 && !fail; part++) {
        memset(dyp, 0, (size_t)(N * C) * 4);
        for (int64_t b = 0; b < B && part < 3; b++)
            for (int64_t t = 0; t < T; t++)
                if ((part == 0 && t == 0) || (part == 1 && t == 1) || (part == 2 && t >= 2))
                    memcpy(dyp + (b * T + t) * C, in.dy + (b * T + t) * C, (size_t)C * 4);
        fail |= cvc_cpu_backward(m, layer, &in, dyp, part == 3 ? in.dstate_out : zero, &out);
        printf("%s  %s %.3f |", part ? "" : "\n   ", part_name[part],
               sq(got, NULL, B, slot, 0, H * KV) / sq(ref, NULL, B, slot, 0, H * KV));
        for (int64_t h = 0; h < H; h++)
            printf(" %.3f", sq(got, NULL, B, slot, h * KV, (h + 1) * KV) / sq(ref, NULL, B, slot, h * KV, (h + 1) * KV));
    }
    printf("\n  per head: share of |dstate_in|^2:");
    for (int64_t h = 0; h < H; h++) printf(" %.3f", sq(ref, NULL, B, slot, h * KV, (h + 1) * KV) / n_ref);
    printf(", shift tail %.3f\n", sq(ref, NULL, B, slot, H * KV, slot) / n_ref);

    /* bf16-level perturbation of each input group */
    graft_rng rng = graft_rng_make(seed, 777);
    for (int g = 0; g < N_GROUP && !fail; g++) {
        double mean = 0, mx = 0, head[64] = {0}, shift = 0;
        for (int d = 0; d < draws && !fail; d++) {
            cvc_inputs p = cvc_inputs_jittered(&in, group_bits[g], &rng);
            fail |= cvc_cpu_backward(m, layer, &p, p.dy, p.dstate_out, &out);
            cvc_inputs_unshare(&p, &in);
            const double e = sq(got, ref, B, slot, 0, slot) / n_ref;
            mean += e / draws;
            mx = e > mx ? e : mx;
            for (int64_t h = 0; h < H && h < 64; h++)
                head[h] += sq(got, ref, B, slot, h * KV, (h + 1) * KV) /
                           sq(ref, NULL, B, slot, h * KV, (h + 1) * KV) / draws;
            shift += sq(got, ref, B, slot, H * KV, slot) / sq(ref, NULL, B, slot, H * KV, slot) / draws;
        }
        printf("  perturb %-7s NMSE(dstate_in) mean %.2e max %.2e | per head", group_name[g], mean, mx);
        for (int64_t h = 0; h < H && h < 64; h++) printf(" %.1e", head[h]);
        printf(" | shift %.1e\n", shift);
    }
    free(ref);
    free(got);
    free(dyp);
    free(zero);
    cvc_inputs_free(&in);
    m->destroy(layer);
    return fail;
}

int main(int argc, char **argv) {
    const char *case_text = NULL;
    int draws = 4, fails = 0;
    uint64_t seeds[256];
    int n_seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--case") && i + 1 < argc) case_text = argv[++i];
        else if (!strcmp(argv[i], "--draws") && i + 1 < argc) draws = atoi(argv[++i]);
        else if (n_seed < 256) seeds[n_seed++] = strtoull(argv[i], NULL, 10);
    }
    if (!case_text || !n_seed || draws < 1) {
        fprintf(stderr, "usage: rwkv7_dstate_conditioning --case 'key=value ...' [--draws K] SEED...\n");
        return 2;
    }
    graft_err err;
    memset(&err, 0, sizeof err);
    graft_loaded_plugin *lp = NULL;
    if (graft_plugin_load("rwkv7", GRAFT_PLUGIN_MIXER, &lp, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    cvc_case *tc = cvc_case_parse(case_text);
    if (!tc) {
        graft_plugin_unload(lp);
        return 2;
    }
    printf("rwkv7 case '%s', %d draws per group, u ~ U[-2^-9, 2^-9] relative\n", case_text, draws);
    for (int s = 0; s < n_seed; s++) fails += study(graft_plugin_mixer(lp), graft_plugin_host(lp), tc, seeds[s], draws);
    cvc_case_free(tc);
    graft_plugin_unload(lp);
    return fails ? 1 : 0;
}
