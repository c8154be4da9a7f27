/* tests/plugins/rwkv7_dstate_conditioning.c: how far bf16-level noise in the inputs moves a mixer's
 * dstate_in (with --grads: every backward output) on the CPU, for the exact inputs of a CUDA
 * conformance case and seed (cvc_inputs_draw, the draw of cuda_vs_cpu.c). The CUDA-vs-CPU check
 * compares them by NMSE; where a draw makes one itself ill-conditioned, a CUDA path that rounds its
 * activations to bf16 fails that check without a bug. This program measures the conditioning, on
 * the CPU, no device needed:
 *
 *   ref      the CPU fp32 forward + backward on the case's inputs (as the conformance test's CPU side)
 *   perturb  the same with every input multiplied by (1 + u), u uniform in [-2^-9, 2^-9] (one
 *            bf16 rounding's worth), per group: all | weights | x (and carry) | dy (and dstate_out);
 *            NMSE against ref (mean and max over the draws), over the whole slot as the test
 *            compares, and over the state part (per head) and the token-shift tail
 *   parts    the backward is linear in (dy, dstate_out): dstate_in split into the share of its
 *            squared norm from dy at t = 0, dy at t = 1, dy at t >= 2 and dstate_out alone
 *   --grads  instead: every backward output the test compares (dstate_in, dx, a consumer's dcarry,
 *            every parameter gradient), the mean and max NMSE by which jittering every input moves
 *            the CPU's own value, over K draws from the stream the test draws from (with K = 3,
 *            max is the sensitivity the test's conditioning-aware check computes for that seed)
 *   --emulate E  instead: that check itself (cvc_cond) on the CPU, every CUDA output emulated by
 *            the CPU's own plus noise of NMSE E: prints the bound each output gets at the seed
 *
 *   rwkv7_dstate_conditioning --case 'key=value ...' [--draws K] [--grads | --emulate E] SEED...
 *
 * Built in-tree (tests/plugins/CMakeLists.txt, build/bin/rwkv7_dstate_conditioning; run with
 * GRAFT_PLUGIN_PATH=build/lib/graft/plugins), not a ctest test. Results and reasoning:
 * bench/results/rwkv7-dstate-conditioning-2026-12-07.md, rwkv7-grad-conditioning-2026-12-07.md. */
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

/* ---- every backward output (--grads, --emulate) -------------------------------------------- */

/* A case's inputs at one seed and the CPU's backward outputs on them (the conformance test's CPU
 * reference), numbered CVC_Q_*, each with its element count (0: absent, or not compared by the
 * test: a producer's dcarry is an input) and the name the test prints. */
typedef struct outputs {
    void *layer;
    cvc_inputs in;
    cvc_grads ref;
    int64_t nq, *n;
    char (*name)[160];
} outputs;

static void outputs_free(const graft_mixer *m, outputs *o) {
    for (int64_t i = 0; o->ref.params && i < o->in.n_params; i++) free(o->ref.params[i]);
    free(o->ref.params);
    free(o->ref.dstate_in);
    free(o->ref.dx);
    free(o->ref.dcarry);
    free(o->n);
    free(o->name);
    cvc_inputs_free(&o->in);
    if (o->layer) m->destroy(o->layer);
    memset(o, 0, sizeof *o);
}

static int outputs_make(const graft_mixer *m, const graft_host *host, const cvc_case *tc, uint64_t seed,
                        outputs *o) {
    graft_err err;
    memset(&err, 0, sizeof err);
    memset(o, 0, sizeof *o);
    if (m->create(host, cvc_case_cfg(tc), &o->layer, &err)) {
        fprintf(stderr, "create: %s\n", err.msg);
        return 1;
    }
    if (cvc_inputs_draw(m, o->layer, tc, seed, &o->in)) {
        m->destroy(o->layer);
        o->layer = NULL;
        return 1;
    }
    const cvc_inputs *in = &o->in;
    const int64_t np = in->n_params, N = in->B * in->T;
    o->nq = CVC_Q_PARAM + np;
    o->n = calloc((size_t)o->nq, sizeof *o->n);
    o->name = calloc((size_t)o->nq, sizeof *o->name);
    o->n[CVC_Q_DSTATE_IN] = (int64_t)(in->slot_bytes / 4) * in->B;
    o->n[CVC_Q_DX] = N * in->C;
    o->n[CVC_Q_DCARRY] = cvc_case_cfg(tc)->carry_role == GRAFT_CARRY_PRODUCER ? 0 : N * in->carry_width;
    snprintf(o->name[CVC_Q_DSTATE_IN], sizeof o->name[0], "dstate_in");
    snprintf(o->name[CVC_Q_DX], sizeof o->name[0], "dx");
    snprintf(o->name[CVC_Q_DCARRY], sizeof o->name[0], "dcarry (+= of the consumer)");
    o->ref.params = calloc((size_t)(np ? np : 1), sizeof *o->ref.params);
    for (int64_t i = 0; i < np; i++) {
        graft_param_spec sp;
        memset(&sp, 0, sizeof sp);
        sp.struct_size = sizeof sp;
        m->param(o->layer, i, &sp, &err);
        snprintf(o->name[CVC_Q_PARAM + i], sizeof o->name[0], "d %s", sp.name);
        o->n[CVC_Q_PARAM + i] = graft_tensor_numel(&in->params[i]);
        o->ref.params[i] = malloc((size_t)o->n[CVC_Q_PARAM + i] * 4);
    }
    o->ref.dstate_in = o->n[CVC_Q_DSTATE_IN] ? malloc((size_t)o->n[CVC_Q_DSTATE_IN] * 4) : NULL;
    o->ref.dx = malloc((size_t)o->n[CVC_Q_DX] * 4);
    o->ref.dcarry = o->n[CVC_Q_DCARRY] ? malloc((size_t)o->n[CVC_Q_DCARRY] * 4) : NULL;
    if (cvc_cpu_backward(m, o->layer, in, in->dy, in->dstate_out, &o->ref)) {
        outputs_free(m, o);
        return 1;
    }
    return 0;
}

/* --grads: per backward output, the mean and largest NMSE by which jittering every input
 * (CVC_JITTER_ALL) moves the CPU's own value over `draws` draws. The draws come from the stream of
 * the test's conditioning-aware check (CVC_COND_STREAM), so with --draws 3 "max" is the sensitivity
 * that check computes for this seed, where it computes one (on this machine's CPU products). */
static int grads_report(const graft_mixer *m, const graft_host *host, const cvc_case *tc, uint64_t seed, int draws) {
    outputs o;
    if (outputs_make(m, host, tc, seed, &o)) return 1;
    double *mx = calloc((size_t)o.nq, sizeof *mx), *mean = calloc((size_t)o.nq, sizeof *mean);
    graft_rng rng = graft_rng_make(seed, CVC_COND_STREAM);
    const int fail = cvc_cpu_sensitivity(m, o.layer, &o.in, &o.ref, CVC_JITTER_ALL, &rng, draws, mx, mean);
    if (!fail) {
        printf("seed %llu: NMSE by which jittering every input moves the CPU's own output (%d draws)\n",
               (unsigned long long)seed, draws);
        printf("  %-40s %-9s %-9s %s\n", "output", "mean", "max", "16 x max");
        for (int64_t q = 0; q < o.nq; q++)
            if (o.n[q]) printf("  %-40s %.3e %.3e %.3e\n", o.name[q], mean[q], mx[q], 16 * mx[q]);
    }
    free(mx);
    free(mean);
    outputs_free(m, &o);
    return fail;
}

/* --emulate E: the test's conditioning-aware comparison (cvc_cond, with the test's strict bounds:
 * 2e-3 for dstate_in, 5e-4 for the rest) run on the CPU, every backward output of "CUDA" emulated by
 * the CPU's own plus Gaussian noise scaled to NMSE exactly E. The verdict does not depend on how the
 * error is spread, only on E against each output's bound, so this shows the bound each output gets
 * at this seed. 0, or 1 when a CPU run fails (a failed comparison is the point, not a failure). */
static int emulate(const graft_mixer *m, const graft_host *host, const cvc_case *tc, uint64_t seed, double e) {
    outputs o;
    if (outputs_make(m, host, tc, seed, &o)) return 1;
    cvc_cond *cond = cvc_cond_init(m, o.layer, &o.in, &o.ref, seed);
    graft_rng rng = graft_rng_make(seed, 4242);
    int n = 0, n_fail = 0;
    printf("seed %llu: every backward output emulated as the CPU's plus noise of NMSE %.2e\n",
           (unsigned long long)seed, e);
    for (int64_t q = 0; q < o.nq; q++) {
        if (!o.n[q]) continue;
        const float *ref = q == CVC_Q_DSTATE_IN ? o.ref.dstate_in : q == CVC_Q_DX ? o.ref.dx
                         : q == CVC_Q_DCARRY ? o.ref.dcarry : o.ref.params[q - CVC_Q_PARAM];
        float *got = malloc((size_t)o.n[q] * 4);
        double nr = 0, nz = 0;
        for (int64_t i = 0; i < o.n[q]; i++) {
            got[i] = (float)graft_rng_normal(&rng);
            nr += (double)ref[i] * ref[i];
            nz += (double)got[i] * got[i];
        }
        const double scale = sqrt(e * nr / nz);
        for (int64_t i = 0; i < o.n[q]; i++) got[i] = (float)(ref[i] + scale * got[i]);
        n_fail += cvc_cond_compare(cond, (int)q, o.name[q], got, o.n[q], q == CVC_Q_DSTATE_IN ? 2e-3 : 5e-4);
        n++;
        free(got);
    }
    printf("  %d of %d outputs fail\n", n_fail, n);
    cvc_cond_free(cond);
    outputs_free(m, &o);
    return 0;
}

int main(int argc, char **argv) {
    const char *case_text = NULL;
    int draws = 4, fails = 0, grads = 0;
    double emulate_nmse = 0;
    uint64_t seeds[256];
    int n_seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--case") && i + 1 < argc) case_text = argv[++i];
        else if (!strcmp(argv[i], "--draws") && i + 1 < argc) draws = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--grads")) grads = 1;
        else if (!strcmp(argv[i], "--emulate") && i + 1 < argc) emulate_nmse = strtod(argv[++i], NULL);
        else if (n_seed < 256) seeds[n_seed++] = strtoull(argv[i], NULL, 10);
    }
    if (!case_text || !n_seed || draws < 1 || emulate_nmse < 0) {
        fprintf(stderr, "usage: rwkv7_dstate_conditioning --case 'key=value ...' [--draws K] [--grads | "
                        "--emulate NMSE] SEED...\n");
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
    const graft_mixer *m = graft_plugin_mixer(lp);
    const graft_host *host = graft_plugin_host(lp);
    if (emulate_nmse > 0) {
        printf("rwkv7 case '%s': the conditioning-aware check on emulated CUDA outputs\n", case_text);
        for (int s = 0; s < n_seed; s++) fails += emulate(m, host, tc, seeds[s], emulate_nmse);
    } else {
        printf("rwkv7 case '%s', %d draws%s, u ~ U[-2^-9, 2^-9] relative\n", case_text, draws,
               grads ? " of every input" : " per group");
        for (int s = 0; s < n_seed; s++)
            fails += grads ? grads_report(m, host, tc, seeds[s], draws) : study(m, host, tc, seeds[s], draws);
    }
    cvc_case_free(tc);
    graft_plugin_unload(lp);
    return fails ? 1 : 0;
}
