/* test_attention_cuda.cu: the softmax plugin's CUDA attention kernels (plugins/softmax/softmax_cuda.cu)
 * against a plain C reference (fp32 products, fp64 softmax sums) on random bf16-rounded inputs.
 *
 * Cases: forward (o, lse) and backward (dq, dk, dv) for T in {1, 63, 128, 1000, 4096} with the
 * Qwen3-1.7B (Hq 16, Hkv 8) and Qwen3-8B (32, 8) heads; the cached forward (a prefill chunk
 * continuing a KV cache, per-sequence offsets); decode over a KV cache for B sequences of
 * different lengths (1 .. 32768). Each case reports the NMSE ||a - ref||^2 / ||ref||^2 of every
 * output and fails above 1e-4 (bf16 inputs and outputs, bf16 P and dS in the products: expected
 * 1e-6 .. 1e-5), on any NaN (outputs are poisoned with NaN bytes before each call; cache entries
 * beyond a sequence's length are NaN too, so a read past kv_len shows), and when two backward runs
 * differ in a single bit. Standalone: build with nvcc (tests/ops/attention/run.sh).
 *   test_attention_cuda [--small]   (--small: the short cases, for compute-sanitizer)
 */
#include <cuda_runtime.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "softmax_cuda.cuh"

#define D 128
#define TOL 1e-4

static int failures = 0;

#define CK(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)
#define GK(call)                                                         \
    do {                                                                 \
        graft_err e_;                                                    \
        e_.msg[0] = 0;                                                   \
        if ((call) != GRAFT_STATUS_OK) {                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, e_.msg); \
            exit(2);                                                     \
        }                                                                \
    } while (0)

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state;
static double urand(void) {
    rng_state += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

/* n random bf16 values of standard deviation sd: bits in h, their float values in f */
static void fill(uint16_t *h, float *f, size_t n, float sd) {
    for (size_t i = 0; i < n; i++) {
        h[i] = f2bf(sd * nrand());
        f[i] = bf2f(h[i]);
    }
}

static double nmse_f(const float *a, const float *ref, size_t n, int *nan) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) { *nan = 1; continue; }
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    /* The denominator is floored at 1e-6 per element: at T = 1, dq and dk are exactly zero (P = 1,
     * dS = P (dP - D) = 0) and both sides hold only rounding noise (~1e-8). */
    double floor_ = 1e-6 * (double)n;
    return num / (den > floor_ ? den : floor_);
}
static double nmse_bf(const uint16_t *a, const float *ref, size_t n, int *nan) {
    float *f = (float *)malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = bf2f(a[i]);
    double r = nmse_f(f, ref, n, nan);
    free(f);
    return r;
}
static void report(const char *cse, const char *name, double e, int nan) {
    int bad = nan || !(e < TOL);
    printf("%-44s %-4s nmse %.3e%s\n", cse, name, e, nan ? "  NaN/Inf!" : bad ? "  FAIL" : "");
    failures += bad;
}

/* 8 independent partial sums: vectorizes without -ffast-math and stays deterministic */
static float dotf(const float *a, const float *b) {
    float s[8] = {0};
    for (int d = 0; d < D; d += 8)
        for (int i = 0; i < 8; i++) s[i] += a[d + i] * b[d + i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* reference forward + backward; q (B,T,Hq,D), k/v (B,T,Hkv,D); dkh/dvh (B,Hq,T,D) per query head */
static void ref_attn(int B, int T, int Hq, int Hkv, float scale, const float *q, const float *k, const float *v,
                     const float *dO, float *o, float *lse, float *dq, float *dk, float *dv) {
    int nr = Hq / Hkv;
    float *dkh = (float *)calloc((size_t)B * Hq * T * D, sizeof(float));
    float *dvh = (float *)calloc((size_t)B * Hq * T * D, sizeof(float));
#pragma omp parallel
    {
        double *p = (double *)malloc((size_t)T * sizeof(double));
        double acc[D];
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < B * Hq; task++) {
            int b = task / Hq, h = task % Hq, hk = h / nr;
            float *dkt = dkh + (size_t)task * T * D, *dvt = dvh + (size_t)task * T * D;
            for (int t = 0; t < T; t++) {
                const float *qt = q + (((size_t)b * T + t) * Hq + h) * D;
                double m = -INFINITY, l = 0;
                for (int u = 0; u <= t; u++) {
                    p[u] = scale * (double)dotf(qt, k + (((size_t)b * T + u) * Hkv + hk) * D);
                    if (p[u] > m) m = p[u];
                }
                for (int d = 0; d < D; d++) acc[d] = 0;
                for (int u = 0; u <= t; u++) {
                    p[u] = exp(p[u] - m);
                    l += p[u];
                    const float *vu = v + (((size_t)b * T + u) * Hkv + hk) * D;
                    for (int d = 0; d < D; d++) acc[d] += p[u] * vu[d];
                }
                float *ot = o + (((size_t)b * T + t) * Hq + h) * D;
                for (int d = 0; d < D; d++) ot[d] = (float)(acc[d] / l);
                lse[((size_t)b * T + t) * Hq + h] = (float)(m + log(l));
                /* backward of row t */
                const float *dot_ = dO + (((size_t)b * T + t) * Hq + h) * D;
                double delta = 0;
                for (int d = 0; d < D; d++) delta += (double)dot_[d] * ot[d];
                for (int d = 0; d < D; d++) acc[d] = 0;
                for (int u = 0; u <= t; u++) {
                    const float *ku = k + (((size_t)b * T + u) * Hkv + hk) * D;
                    const float *vu = v + (((size_t)b * T + u) * Hkv + hk) * D;
                    double pu = p[u] / l;
                    float ds = (float)(pu * ((double)dotf(dot_, vu) - delta) * scale);
                    float pf = (float)pu;
                    float *dku = dkt + (size_t)u * D, *dvu = dvt + (size_t)u * D;
                    for (int d = 0; d < D; d++) {
                        acc[d] += ds * ku[d];
                        dku[d] += ds * qt[d];
                        dvu[d] += pf * dot_[d];
                    }
                }
                float *dqt = dq + (((size_t)b * T + t) * Hq + h) * D;
                for (int d = 0; d < D; d++) dqt[d] = (float)acc[d];
            }
        }
        free(p);
    }
    /* sum each kv group's query heads */
#pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        for (int hk = 0; hk < Hkv; hk++) {
            float *dkr = dk + ((size_t)bt * Hkv + hk) * D, *dvr = dv + ((size_t)bt * Hkv + hk) * D;
            for (int d = 0; d < D; d++) dkr[d] = dvr[d] = 0.f;
            for (int r = 0; r < nr; r++) {
                size_t off = (((size_t)b * Hq + hk * nr + r) * T + t) * D;
                for (int d = 0; d < D; d++) {
                    dkr[d] += dkh[off + d];
                    dvr[d] += dvh[off + d];
                }
            }
        }
    }
    free(dkh);
    free(dvh);
}

static void *dalloc(size_t bytes) {
    void *p;
    CK(cudaMalloc(&p, bytes));
    CK(cudaMemset(p, 0xff, bytes)); /* NaN poison */
    return p;
}

static void case_prefill(int B, int T, int Hq, int Hkv) {
    char name[96];
    snprintf(name, sizeof name, "prefill B=%d T=%d Hq=%d Hkv=%d", B, T, Hq, Hkv);
    size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D, nl = (size_t)B * T * Hq;
    float scale = 1.0f / sqrtf((float)D);
    uint16_t *hq = (uint16_t *)malloc(nq * 2), *hk = (uint16_t *)malloc(nk * 2), *hv = (uint16_t *)malloc(nk * 2),
             *hd = (uint16_t *)malloc(nq * 2), *ho = (uint16_t *)malloc(nq * 2);
    float *fq = (float *)malloc(nq * 4), *fk = (float *)malloc(nk * 4), *fv = (float *)malloc(nk * 4),
          *fd = (float *)malloc(nq * 4);
    fill(hq, fq, nq, 1.5f); /* scores of sd ~1.5: neither flat nor one-hot */
    fill(hk, fk, nk, 1.0f);
    fill(hv, fv, nk, 1.0f);
    fill(hd, fd, nq, 1.0f);
    float *ro = (float *)malloc(nq * 4), *rl = (float *)malloc(nl * 4), *rdq = (float *)malloc(nq * 4),
          *rdk = (float *)malloc(nk * 4), *rdv = (float *)malloc(nk * 4);
    double t0 = omp_get_wtime();
    ref_attn(B, T, Hq, Hkv, scale, fq, fk, fv, fd, ro, rl, rdq, rdk, rdv);
    double tref = omp_get_wtime() - t0;

    void *dq_in = dalloc(nq * 2), *dk_in = dalloc(nk * 2), *dv_in = dalloc(nk * 2), *ddo = dalloc(nq * 2),
         *dout = dalloc(nq * 2);
    float *dlse = (float *)dalloc(nl * 4), *gdq = (float *)dalloc(nq * 4), *gdk = (float *)dalloc(nk * 4),
          *gdv = (float *)dalloc(nk * 4);
    size_t sb = sm_cuda_attn_bwd_scratch_bytes(B, T, Hq);
    void *scr = dalloc(sb);
    CK(cudaMemcpy(dq_in, hq, nq * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk_in, hk, nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv_in, hv, nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(ddo, hd, nq * 2, cudaMemcpyHostToDevice));
    GK(sm_cuda_attn_fwd(dout, dlse, dq_in, dk_in, dv_in, B, T, Hq, Hkv, D, scale, 0, &e_));
    GK(sm_cuda_attn_bwd(gdq, gdk, gdv, dq_in, dk_in, dv_in, dout, dlse, ddo, B, T, Hq, Hkv, D, scale, scr, sb, 0,
                        &e_));
    CK(cudaDeviceSynchronize());
    float *gq = (float *)malloc(nq * 4), *gk = (float *)malloc(nk * 4), *gv = (float *)malloc(nk * 4),
          *gl = (float *)malloc(nl * 4);
    CK(cudaMemcpy(ho, dout, nq * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gl, dlse, nl * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gq, gdq, nq * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gk, gdk, nk * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gv, gdv, nk * 4, cudaMemcpyDeviceToHost));
    int nan = 0;
    report(name, "o", nmse_bf(ho, ro, nq, &nan), nan);
    nan = 0;
    report(name, "lse", nmse_f(gl, rl, nl, &nan), nan);
    nan = 0;
    report(name, "dq", nmse_f(gq, rdq, nq, &nan), nan);
    nan = 0;
    report(name, "dk", nmse_f(gk, rdk, nk, &nan), nan);
    nan = 0;
    report(name, "dv", nmse_f(gv, rdv, nk, &nan), nan);
    /* determinism: a second backward (outputs poisoned again) must match bit for bit */
    CK(cudaMemset(gdq, 0xff, nq * 4));
    CK(cudaMemset(gdk, 0xff, nk * 4));
    CK(cudaMemset(gdv, 0xff, nk * 4));
    GK(sm_cuda_attn_bwd(gdq, gdk, gdv, dq_in, dk_in, dv_in, dout, dlse, ddo, B, T, Hq, Hkv, D, scale, scr, sb, 0,
                        &e_));
    CK(cudaDeviceSynchronize());
    float *g2 = (float *)malloc(nq * 4);
    int same = 1;
    CK(cudaMemcpy(g2, gdq, nq * 4, cudaMemcpyDeviceToHost));
    same &= !memcmp(g2, gq, nq * 4);
    CK(cudaMemcpy(g2, gdk, nk * 4, cudaMemcpyDeviceToHost));
    same &= !memcmp(g2, gk, nk * 4);
    CK(cudaMemcpy(g2, gdv, nk * 4, cudaMemcpyDeviceToHost));
    same &= !memcmp(g2, gv, nk * 4);
    printf("%-44s bwd deterministic: %s (reference %.1f s)\n", name, same ? "yes" : "NO", tref);
    failures += !same;
    free(g2);
    free(hq); free(hk); free(hv); free(hd); free(ho); free(fq); free(fk); free(fv); free(fd);
    free(ro); free(rl); free(rdq); free(rdk); free(rdv); free(gq); free(gk); free(gv); free(gl);
    CK(cudaFree(dq_in)); CK(cudaFree(dk_in)); CK(cudaFree(dv_in)); CK(cudaFree(ddo)); CK(cudaFree(dout));
    CK(cudaFree(dlse)); CK(cudaFree(gdq)); CK(cudaFree(gdk)); CK(cudaFree(gdv)); CK(cudaFree(scr));
}

/* B cache slots of the plugin's decode layout (per slot K (Hkv, cap, D) then V (Hkv, cap, D),
 * bf16 in hc, the same values in fc): random entries, and NaN past each sequence's valid[b] keys
 * (a stale or unwritten slot), so a kernel that reads past a sequence's end shows */
static void fill_cache(uint16_t *hc, float *fc, int B, int Hkv, int64_t cap, const int64_t *valid) {
    const size_t slot = (size_t)2 * Hkv * cap * D;
    fill(hc, fc, (size_t)B * slot, 1.0f);
    for (int b = 0; b < B; b++)
        for (int kv = 0; kv < 2 * Hkv; kv++)
            for (int64_t u = valid[b]; u < cap; u++)
                for (int d = 0; d < D; d++) hc[b * slot + ((size_t)kv * cap + u) * D + d] = 0x7fc0;
}

/* decode: B sequences with lens[b] keys in a cache of capacity cap (plugin layout: per slot
 * K (Hkv, cap, D) then V (Hkv, cap, D), bf16); entries past each length are NaN */
static void case_decode(int B, const int64_t *lens, int Hq, int Hkv) {
    int64_t cap = 0;
    for (int b = 0; b < B; b++) cap = lens[b] > cap ? lens[b] : cap;
    cap += 8;
    char name[96];
    snprintf(name, sizeof name, "decode B=%d len=%lld..%lld Hq=%d Hkv=%d", B, (long long)lens[0],
             (long long)lens[B - 1], Hq, Hkv);
    size_t slot = (size_t)2 * Hkv * cap * D, nq = (size_t)B * Hq * D;
    uint16_t *hc = (uint16_t *)malloc((size_t)B * slot * 2), *hq = (uint16_t *)malloc(nq * 2),
             *ho = (uint16_t *)malloc(nq * 2);
    float *fc = (float *)malloc((size_t)B * slot * 4), *fq = (float *)malloc(nq * 4), *ro = (float *)malloc(nq * 4);
    fill_cache(hc, fc, B, Hkv, cap, lens);
    fill(hq, fq, nq, 1.5f);
    float scale = 1.0f / sqrtf((float)D);
    int nr = Hq / Hkv;
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < B * Hq; task++) {
        int b = task / Hq, h = task % Hq, hk = h / nr;
        const float *K = fc + b * slot + (size_t)hk * cap * D, *V = K + (size_t)Hkv * cap * D;
        const float *qv = fq + (size_t)task * D;
        double m = -INFINITY, l = 0, acc[D] = {0};
        double *p = (double *)malloc((size_t)lens[b] * sizeof(double));
        for (int64_t u = 0; u < lens[b]; u++) {
            p[u] = scale * (double)dotf(qv, K + u * D);
            if (p[u] > m) m = p[u];
        }
        for (int64_t u = 0; u < lens[b]; u++) {
            double w = exp(p[u] - m);
            l += w;
            for (int d = 0; d < D; d++) acc[d] += w * V[u * D + d];
        }
        for (int d = 0; d < D; d++) ro[(size_t)task * D + d] = (float)(acc[d] / l);
        free(p);
    }
    void *dc = dalloc((size_t)B * slot * 2), *dq = dalloc(nq * 2), *dout = dalloc(nq * 2);
    size_t sb = sm_cuda_attn_decode_scratch_bytes(B, Hq, D, cap);
    void *scr = dalloc(sb ? sb : 4);
    CK(cudaMemcpy(dc, hc, (size_t)B * slot * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, hq, nq * 2, cudaMemcpyHostToDevice));
    const uint16_t *kc = (const uint16_t *)dc, *vc = kc + (size_t)Hkv * cap * D;
    GK(sm_cuda_attn_decode(dout, dq, kc, vc, (int64_t)slot, cap * D, lens, B, Hq, Hkv, D, scale, scr, sb, 0, &e_));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(ho, dout, nq * 2, cudaMemcpyDeviceToHost));
    int nan = 0;
    report(name, "o", nmse_bf(ho, ro, nq, &nan), nan);
    free(hc); free(hq); free(ho); free(fc); free(fq); free(ro);
    CK(cudaFree(dc)); CK(cudaFree(dq)); CK(cudaFree(dout)); CK(cudaFree(scr));
}

/* cached forward (a prefill chunk continuing a cache): B sequences with past[b] keys already in a
 * cache of the decode layout, T new tokens each whose keys are written at past[b] .. past[b]+T-1;
 * token t attends keys 0 .. past[b] + t. Cache rows past each sequence's end are NaN (a stale or
 * unwritten slot): the kernel must not let them reach the output. */
static void case_cached(int B, const int *past, int T, int Hq, int Hkv) {
    int64_t cap = 0;
    for (int b = 0; b < B; b++) cap = past[b] + T > cap ? past[b] + T : cap;
    cap += 136; /* rows past the last key inside the cache, beyond one 128-key tile */
    char name[96];
    snprintf(name, sizeof name, "cached fwd B=%d past=%d..%d T=%d Hq=%d/%d", B, past[0], past[B - 1], T, Hq, Hkv);
    size_t slot = (size_t)2 * Hkv * cap * D, nq = (size_t)B * T * Hq * D;
    uint16_t *hc = (uint16_t *)malloc((size_t)B * slot * 2), *hq = (uint16_t *)malloc(nq * 2),
             *ho = (uint16_t *)malloc(nq * 2);
    float *fc = (float *)malloc((size_t)B * slot * 4), *fq = (float *)malloc(nq * 4), *ro = (float *)malloc(nq * 4);
    int64_t valid[64];
    for (int b = 0; b < B; b++) valid[b] = past[b] + T;
    fill_cache(hc, fc, B, Hkv, cap, valid);
    fill(hq, fq, nq, 1.5f);
    float scale = 1.0f / sqrtf((float)D);
    int nr = Hq / Hkv;
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < B * T * Hq; task++) {
        int b = task / (T * Hq), t = task / Hq % T, h = task % Hq, hk = h / nr;
        const float *K = fc + b * slot + (size_t)hk * cap * D, *V = K + (size_t)Hkv * cap * D;
        const float *qv = fq + (size_t)task * D;
        const int64_t n = past[b] + t + 1;
        double m = -INFINITY, l = 0, acc[D] = {0};
        double *p = (double *)malloc((size_t)n * sizeof(double));
        for (int64_t u = 0; u < n; u++) {
            p[u] = scale * (double)dotf(qv, K + u * D);
            if (p[u] > m) m = p[u];
        }
        for (int64_t u = 0; u < n; u++) {
            double w = exp(p[u] - m);
            l += w;
            for (int d = 0; d < D; d++) acc[d] += w * V[u * D + d];
        }
        for (int d = 0; d < D; d++) ro[(size_t)task * D + d] = (float)(acc[d] / l);
        free(p);
    }
    int32_t hp[64];
    for (int b = 0; b < B; b++) hp[b] = past[b];
    void *dc = dalloc((size_t)B * slot * 2), *dq = dalloc(nq * 2), *dout = dalloc(nq * 2), *dp = dalloc(256);
    CK(cudaMemcpy(dc, hc, (size_t)B * slot * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, hq, nq * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dp, hp, (size_t)B * 4, cudaMemcpyHostToDevice));
    const uint16_t *kc = (const uint16_t *)dc, *vc = kc + (size_t)Hkv * cap * D;
    graft_err e;
    graft_status st = sm_cuda_attn_fwd_cached(dout, dq, kc, vc, (int64_t)slot, cap * D, cap, (const int32_t *)dp, B, T,
                                              Hq, Hkv, D, scale, 0, &e);
    if (!sm_cuda_attn_fwd_cached_available()) { /* not Hopper (or GRAFT_CUDA_ATTN_WGMMA=0): must refuse */
        printf("%-44s refused without the Hopper kernel: %s\n", name,
               st == GRAFT_STATUS_UNSUPPORTED ? "ok" : "FAIL (expected GRAFT_STATUS_UNSUPPORTED)");
        failures += st != GRAFT_STATUS_UNSUPPORTED;
    } else if (st) {
        printf("%-44s FAIL: %s\n", name, e.msg);
        failures++;
    } else {
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(ho, dout, nq * 2, cudaMemcpyDeviceToHost));
        int nan = 0;
        report(name, "o", nmse_bf(ho, ro, nq, &nan), nan);
    }
    free(hc); free(hq); free(ho); free(fc); free(fq); free(ro);
    CK(cudaFree(dc)); CK(cudaFree(dq)); CK(cudaFree(dout)); CK(cudaFree(dp));
}

/* refusals: each bad argument gets a status and a message, never a crash */
static void case_refusals(void) {
    graft_err e;
    int ok = 1;
    e.msg[0] = 0;
    ok &= sm_cuda_attn_fwd((void *)16, NULL, (void *)16, (void *)16, (void *)16, 1, 8, 4, 2, 64, 0.1f, 0, &e) ==
          GRAFT_STATUS_UNSUPPORTED;
    printf("refusal: %s\n", e.msg);
    ok &= sm_cuda_attn_fwd((void *)16, NULL, (void *)16, (void *)16, (void *)16, 1, 8, 6, 4, 128, 0.1f, 0, &e) ==
          GRAFT_STATUS_BAD_INPUT;
    printf("refusal: %s\n", e.msg);
    int64_t bad_len[2] = {5, 0};
    ok &= sm_cuda_attn_decode((void *)16, (void *)16, (void *)16, (void *)16, 1024, 1024, bad_len, 2, 4, 2, 128,
                              0.1f, NULL, 0, 0, &e) == GRAFT_STATUS_BAD_INPUT;
    printf("refusal: %s\n", e.msg);
    int32_t *no_past = NULL;
    ok &= sm_cuda_attn_fwd_cached((void *)16, (void *)16, (void *)16, (void *)16, 1 << 20, 1 << 14, 100, no_past, 2,
                                  8, 4, 2, 128, 0.1f, 0, &e) == GRAFT_STATUS_BAD_INPUT;
    printf("refusal: %s\n", e.msg);
    ok &= sm_cuda_attn_fwd_cached((void *)16, (void *)16, (void *)16, (void *)16, 1 << 20, 1 << 14, 100,
                                  (const int32_t *)16, 2, 200, 4, 2, 128, 0.1f, 0, &e) == GRAFT_STATUS_BAD_INPUT;
    printf("refusal: %s\n", e.msg);
    printf("refusals: %s\n", ok ? "ok" : "FAIL");
    failures += !ok;
}

int main(int argc, char **argv) {
    int small = argc > 1 && !strcmp(argv[1], "--small");
    rng_state = 12345;
    case_refusals();
    {   /* CI has nvcc but no GPU: ctest reports exit 77 as skipped */
        int n_dev = 0;
        if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
            printf("SKIP: no CUDA device\n");
            return 77;
        }
    }
    const int heads[2][2] = {{16, 8}, {32, 8}};
    const int Ts[5] = {1, 63, 128, 1000, 4096};
    for (int hi = 0; hi < 2; hi++)
        for (int ti = 0; ti < 5; ti++) {
            int T = Ts[ti];
            if (small && (T > 128 || hi)) continue;
            case_prefill(T >= 4096 ? 1 : 2, T, heads[hi][0], heads[hi][1]);
        }
    {
        int64_t l3[3] = {1, 77, 513};
        case_decode(3, l3, 16, 8);
    }
    {
        const int p3[3] = {0, 5, 130};
        case_cached(3, p3, 70, 16, 8);
    }
    if (!small) {
        const int p3[3] = {0, 5, 300}, p1[1] = {4000}, p2[2] = {1, 8191}, p4[4] = {128, 1, 1000, 2048};
        case_cached(3, p3, 200, 16, 8);
        case_cached(1, p1, 1000, 16, 8);
        case_cached(2, p2, 129, 32, 8);
        case_cached(4, p4, 512, 16, 4);
        int64_t l1[1] = {32768};
        case_decode(1, l1, 16, 8);
        int64_t l2[2] = {20000, 32768};
        case_decode(2, l2, 32, 8);
        int64_t l16[16];
        for (int b = 0; b < 16; b++) l16[b] = 1 + (int64_t)(urand() * 8191);
        l16[0] = 1;
        l16[15] = 8192;
        case_decode(16, l16, 32, 8);
        int64_t l1b[1] = {512};
        case_decode(1, l1b, 32, 8);
        int64_t l5[5] = {3, 4095, 1, 2047, 600};
        case_decode(5, l5, 16, 4); /* n_rep 4 */
        int64_t lr[2] = {300, 1000};
        case_decode(2, lr, 24, 8); /* n_rep 3: one query head per block */
    }
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
