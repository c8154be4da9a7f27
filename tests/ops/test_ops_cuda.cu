/* tests/ops/test_ops_cuda.cu: every CUDA op of core/src/cuda against the CPU reference, plus the
 * op; speed lives in bench/cuda_ops.cu.
 *
 * References: the CPU backend's own sources where they need no OpenBLAS (cpu/embedding.c,
 * cpu/rmsnorm.c, cpu/swiglu.c, adamw.c, and the loss plugins losses/ce.c and losses/topk_kl.c,
 * compiled in with their entry symbol renamed), naive loops in double for GEMMs, and a port of
 * plugins/softmax/softmax_cpu.c's norm_rope / norm_rope_bwd for the q/k norm + RoPE.
 * bf16 inputs are drawn on the host, rounded to bf16, and the reference sees the same values.
 *
 * Verdict: NMSE = ||ref - got||^2 / ||ref||^2 per output tensor, with two tolerances:
 *   TOL_BF16 1e-4  outputs stored in bf16 (one rounding alone is ~1e-6; the margin covers bf16
 *                  intermediates such as the lm_head's bf16 dlogits feeding its GEMMs)
 *   TOL_F32  1e-8  outputs kept in fp32 (rstd, dw, dtable, losses, AdamW state, fp32-C GEMMs:
 *                  fp32 accumulation order is the only difference, ~1e-13 expected)
 * plus NaN / unmatched Inf, guard bytes after every device buffer, and every refusal checked.
 * Exit 0 all good, 1 a failure, 77 no GPU (ctest SKIP_RETURN_CODE).
 *
 * Usage: test_ops_cuda [--list] [--only <case>[,<case>...]]
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include <algorithm>

extern "C" {
#include "adamw.h"
#include "cpu_ops.h"
}
#include "cuda/adamw.cuh"
#include "cuda/embedding.cuh"
#include "cuda/lmhead_loss.cuh"
#include "cuda/matmul.cuh"
#include "cuda/qk_norm_rope.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/swiglu.cuh"
#include "graft/plugin.h"

extern "C" graft_status graft_loss_ce_init(const graft_host *host, graft_plugin *out, graft_err *err);
extern "C" graft_status graft_loss_topk_kl_init(const graft_host *host, graft_plugin *out, graft_err *err);

#define TOL_BF16 1e-4
#define TOL_F32 1e-8

static int g_fail = 0;
static const char *g_case = "";

/* ---- random numbers ------------------------------------------------------------------------ */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0); }
static float normal(void) {
    double u = unif() + 1e-300, v = unif();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* host bf16 tensor: the bits and their exact fp32 values */
struct hb {
    std::vector<graft_bf16> b;
    std::vector<float> f;
};
static hb make_bf16(size_t n, float scale, float offset = 0.0f) {
    hb t;
    t.b.resize(n);
    t.f.resize(n);
    for (size_t i = 0; i < n; i++) {
        t.b[i] = graft_bf16_from_f32(offset + scale * normal());
        t.f[i] = graft_bf16_to_f32(t.b[i]);
    }
    return t;
}
static std::vector<float> make_f32(size_t n, float scale) {
    std::vector<float> v(n);
    for (auto &x : v) x = scale * normal();
    return v;
}

/* ---- device buffers with guard bytes ------------------------------------------------------- */
#define GUARD 256
struct dbuf {
    void *p;
    size_t bytes;
};
static std::vector<dbuf> g_bufs;

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *dalloc(size_t bytes) {
    void *p;
    CK(cudaMalloc(&p, bytes + GUARD));
    CK(cudaMemset((char *)p + bytes, 0xA5, GUARD));
    g_bufs.push_back({p, bytes});
    return p;
}
template <typename T> static T *dput(const std::vector<T> &v) {
    T *p = (T *)dalloc(v.size() * sizeof(T));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <typename T> static std::vector<T> dget(const T *p, size_t n) {
    std::vector<T> v(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}
static std::vector<float> dget_bf16(const graft_bf16 *p, size_t n) {
    std::vector<graft_bf16> b = dget(p, n);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = graft_bf16_to_f32(b[i]);
    return f;
}
/* checks and frees every buffer of the case */
static void release_all(void) {
    CK(cudaDeviceSynchronize());
    unsigned char g[GUARD];
    for (auto &b : g_bufs) {
        CK(cudaMemcpy(g, (char *)b.p + b.bytes, GUARD, cudaMemcpyDeviceToHost));
        for (int i = 0; i < GUARD; i++)
            if (g[i] != 0xA5) {
                printf("FAIL %s: guard byte %d after a %zu-byte buffer overwritten\n", g_case, i, b.bytes);
                g_fail = 1;
                break;
            }
        CK(cudaFree(b.p));
    }
    g_bufs.clear();
}

/* ---- verdicts ------------------------------------------------------------------------------ */
static void check_nmse(const char *name, const double *ref, const float *got, size_t n, double tol) {
    double num = 0, den = 0, maxd = 0;
    size_t at = 0, bad_at = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i], g = got[i];
        if (isnan(g) != isnan(r) || (isinf(r) || isinf(g)) && r != g) {
            if (bad_at == (size_t)-1) bad_at = i;
            continue;
        }
        if (isnan(r) || isinf(r)) continue;
        double d = fabs(r - g);
        num += d * d;
        den += r * r;
        if (d > maxd) maxd = d, at = i;
    }
    double nmse = den > 0 ? num / den : num;
    int ok = nmse <= tol && bad_at == (size_t)-1;
    printf("%-4s %-26s %-16s nmse %.3e (tol %.0e)  max|diff| %.3e at %zu  n %zu", ok ? "ok" : "FAIL", g_case, name,
           nmse, tol, maxd, at, n);
    if (bad_at != (size_t)-1) printf("  NaN/Inf mismatch first at %zu (ref %g got %g)", bad_at, ref[bad_at], (double)got[bad_at]);
    printf("\n");
    if (!ok) g_fail = 1;
}
static void check_nmse_f(const char *name, const std::vector<float> &ref, const std::vector<float> &got, double tol) {
    std::vector<double> r(ref.begin(), ref.end());
    check_nmse(name, r.data(), got.data(), got.size(), tol);
}
static void check_nmse_d(const char *name, const std::vector<double> &ref, const std::vector<float> &got, double tol) {
    check_nmse(name, ref.data(), got.data(), got.size(), tol);
}
static void expect(int cond, const char *what) {
    printf("%-4s %-26s %s\n", cond ? "ok" : "FAIL", g_case, what);
    if (!cond) g_fail = 1;
}
static void expect_status(graft_status st, graft_status want, const graft_err *e, const char *what) {
    int ok = st == want && (want == GRAFT_STATUS_OK || e->msg[0]);
    printf("%-4s %-26s refusal %s: status %d (want %d) \"%s\"\n", ok ? "ok" : "FAIL", g_case, what, (int)st, (int)want,
           st ? e->msg : "");
    if (!ok) g_fail = 1;
}
#define OKST(call)                                                                                 \
    do {                                                                                           \
        graft_err e_;                                                                              \
        e_.msg[0] = 0;                                                                             \
        graft_status s_ = (call);                                                                  \
        if (s_ != GRAFT_STATUS_OK) {                                                               \
            printf("FAIL %s: %s: status %d: %s\n", g_case, #call, (int)s_, e_.msg);                \
            g_fail = 1;                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define ERR (&e_)

/* ---- the naive GEMM reference (double, row-major graft_matmul_args semantics) ---------------
 * op(A) and op(B)^T are first copied to contiguous row-major float arrays (values are exact), so
 * every dot product runs over contiguous memory whatever the trans flags. */
static void ref_gemm(std::vector<double> &C, const float *A, const float *B, int ta, int tb, int64_t m, int64_t n,
                     int64_t k, int64_t lda, int64_t ldb, int64_t ldc, double alpha, double beta) {
    std::vector<float> a((size_t)(m * k)), bt((size_t)(n * k));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t q = 0; q < k; q++) a[i * k + q] = ta ? A[q * lda + i] : A[i * lda + q];
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < k; q++)
        for (int64_t j = 0; j < n; j++) bt[j * k + q] = tb ? B[j * ldb + q] : B[q * ldb + j];
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const float *ar = &a[i * k], *br = &bt[j * k];
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t q = 0;
            for (; q + 4 <= k; q += 4) {
                s0 += (double)ar[q] * br[q];
                s1 += (double)ar[q + 1] * br[q + 1];
                s2 += (double)ar[q + 2] * br[q + 2];
                s3 += (double)ar[q + 3] * br[q + 3];
            }
            for (; q < k; q++) s0 += (double)ar[q] * br[q];
            double s = (s0 + s1) + (s2 + s3);
            double c = beta == 0 ? 0 : beta * C[i * ldc + j];
            C[i * ldc + j] = alpha * s + c;
        }
}

static graft_cuda_blas_t *g_blas;

static graft_matmul_args margs(graft_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *a,
                               int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc, float alpha, float beta) {
    graft_matmul_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.device = GRAFT_DEVICE_CUDA;
    g.dtype = dt;
    g.trans_a = ta, g.trans_b = tb;
    g.m = m, g.n = n, g.k = k;
    g.alpha = alpha, g.beta = beta;
    g.a = a, g.lda = lda, g.b = b, g.ldb = ldb, g.c = c, g.ldc = ldc;
    g.batch = 1;
    return g;
}

/* one bf16 product, C bf16 or f32, optionally batched, against ref_gemm */
static void gemm_case(const char *name, int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t pad, int64_t batch,
                      graft_dtype cdt, float alpha, float beta) {
    g_case = name;
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int64_t ra = ta ? k : m, rb = tb ? n : k;
    int64_t sa = ra * lda + 3, sb = rb * ldb + 5, sc = m * ldc + 7;
    if (batch == 1) sa = ra * lda, sb = rb * ldb, sc = m * ldc;
    hb A = make_bf16((size_t)(sa * batch), 1.0f), B = make_bf16((size_t)(sb * batch), 1.0f);
    std::vector<float> C0 = make_f32((size_t)(sc * batch), 1.0f);
    hb C0b;
    if (cdt == GRAFT_DTYPE_BF16) {
        C0b.b.resize(C0.size());
        for (size_t i = 0; i < C0.size(); i++) C0b.b[i] = graft_bf16_from_f32(C0[i]), C0[i] = graft_bf16_to_f32(C0b.b[i]);
    }
    void *dc = cdt == GRAFT_DTYPE_BF16 ? (void *)dput(C0b.b) : (void *)dput(C0);
    graft_matmul_args g = margs(GRAFT_DTYPE_BF16, ta, tb, m, n, k, dput(A.b), lda, dput(B.b), ldb, dc, ldc, alpha, beta);
    g.batch = batch, g.stride_a = sa, g.stride_b = sb, g.stride_c = sc;
    OKST(graft_cuda_matmul(g_blas, &g, cdt, ERR));
    int plans = graft_cuda_blas_plan_count(g_blas);
    OKST(graft_cuda_matmul(g_blas, &g, cdt, ERR)); /* same shape twice: cached plan; beta applied twice */
    expect(graft_cuda_blas_plan_count(g_blas) == plans, "a repeated shape reuses its cached plan");
    std::vector<double> ref(C0.begin(), C0.end());
    for (int rep = 0; rep < 2; rep++)
        for (int64_t bi = 0; bi < batch; bi++) {
            std::vector<double> cb(ref.begin() + bi * sc, ref.begin() + bi * sc + m * ldc);
            ref_gemm(cb, A.f.data() + bi * sa, B.f.data() + bi * sb, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta);
            std::copy(cb.begin(), cb.end(), ref.begin() + bi * sc);
            if (cdt == GRAFT_DTYPE_BF16) /* the first product was stored in bf16 */
                for (int64_t i = bi * sc; i < bi * sc + m * ldc; i++)
                    ref[i] = graft_bf16_to_f32(graft_bf16_from_f32((float)ref[i]));
        }
    std::vector<float> got = cdt == GRAFT_DTYPE_BF16 ? dget_bf16((graft_bf16 *)dc, C0.size()) : dget((float *)dc, C0.size());
    check_nmse_d("C", ref, got, cdt == GRAFT_DTYPE_BF16 ? TOL_BF16 : TOL_F32);
    release_all();
}

static void case_gemm_proj(void) { gemm_case("gemm_qproj_bf16", 0, 1, 64, 2048, 2048, 0, 1, GRAFT_DTYPE_BF16, 1.0f, 0.0f); }
static void case_gemm_down(void) { gemm_case("gemm_down_f32c", 0, 1, 64, 2048, 6144, 0, 1, GRAFT_DTYPE_F32, 1.5f, 0.5f); }
static void case_gemm_dw(void) { gemm_case("gemm_dw_transa", 1, 0, 1024, 2048, 64, 0, 1, GRAFT_DTYPE_F32, 1.0f, 1.0f); }
static void case_gemm_dx(void) { gemm_case("gemm_dx_nn", 0, 0, 48, 2048, 6144, 0, 1, GRAFT_DTYPE_BF16, 1.0f, 0.0f); }
/* decode-step products (m <= 8 rows x bf16 weight^T: skinny.cu), incl. a k tail and the head's n */
static void case_gemm_skinny(void) {
    gemm_case("gemm_skinny_m1_bf16", 0, 1, 1, 2048, 2048, 0, 1, GRAFT_DTYPE_BF16, 1.0f, 0.0f);
    gemm_case("gemm_skinny_m3_ld_f32c", 0, 1, 3, 1001, 6144, 8, 1, GRAFT_DTYPE_F32, 1.5f, 0.0f);
    gemm_case("gemm_skinny_m5_ktail", 0, 1, 5, 40000, 136, 0, 1, GRAFT_DTYPE_BF16, 1.0f, 0.0f);
    gemm_case("gemm_skinny_m8_head", 0, 1, 8, 151936, 2048, 0, 1, GRAFT_DTYPE_F32, 1.0f, 0.0f);
    /* beta = 1 onto a bf16 c (the inference down product accumulating onto the residual) */
    gemm_case("gemm_skinny_m2_beta1_bf16", 0, 1, 2, 2048, 6144, 8, 1, GRAFT_DTYPE_BF16, 1.0f, 1.0f);
    /* the same at prefill size: cuBLASLt, c read and written in place */
    gemm_case("gemm_prefill_beta1_bf16", 0, 1, 96, 2048, 6144, 0, 1, GRAFT_DTYPE_BF16, 1.0f, 1.0f);
}
static void case_gemm_odd(void) { gemm_case("gemm_odd_batched_tt", 1, 1, 63, 17, 33, 7, 3, GRAFT_DTYPE_BF16, 0.75f, 0.25f); }
static void case_gemm_odd2(void) { gemm_case("gemm_odd_batched_nn", 0, 0, 1, 129, 65, 1, 5, GRAFT_DTYPE_F32, 1.0f, 1.0f); }

static void case_gemm_f32(void) {
    g_case = "gemm_f32_host_service";
    int64_t m = 65, n = 130, k = 257;
    std::vector<float> A = make_f32(m * k, 1), B = make_f32(n * k, 1), C0 = make_f32(m * n, 1);
    float *dc = dput(C0);
    graft_matmul_args g = margs(GRAFT_DTYPE_F32, 0, 1, m, n, k, dput(A), k, dput(B), k, dc, n, 1.0f, -0.5f);
    OKST(graft_cuda_host_matmul(g_blas, &g, ERR));
    std::vector<double> ref(C0.begin(), C0.end());
    ref_gemm(ref, A.data(), B.data(), 0, 1, m, n, k, k, k, n, 1.0, -0.5);
    check_nmse_d("C", ref, dget(dc, C0.size()), TOL_F32);
    /* bf16 through the host service: C bf16 too */
    hb Ab = make_bf16(m * k, 1), Bb = make_bf16(k * n, 1);
    graft_bf16 *dcb = (graft_bf16 *)dalloc(m * n * 2);
    std::vector<float> nan_c(m * n, NAN);
    CK(cudaMemset(dcb, 0xFF, m * n * 2)); /* NaN bits: beta = 0 must not read C */
    g = margs(GRAFT_DTYPE_BF16, 0, 0, m, n, k, dput(Ab.b), k, dput(Bb.b), n, dcb, n, 1.0f, 0.0f);
    OKST(graft_cuda_host_matmul(g_blas, &g, ERR));
    std::vector<double> ref2(m * n, 0.0);
    ref_gemm(ref2, Ab.f.data(), Bb.f.data(), 0, 0, m, n, k, k, n, n, 1.0, 0.0);
    check_nmse_d("C_bf16_beta0_nanC", ref2, dget_bf16(dcb, m * n), TOL_BF16);
    release_all();
}

static void case_gemm_k0(void) {
    g_case = "gemm_k0_and_refusals";
    int64_t m = 5, n = 9;
    std::vector<float> C0 = make_f32(m * n, 1);
    float *dc = dput(C0);
    graft_matmul_args g = margs(GRAFT_DTYPE_BF16, 0, 0, m, n, 0, NULL, 1, NULL, n, dc, n, 1.0f, 2.0f);
    OKST(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, ERR));
    std::vector<float> ref(C0);
    for (auto &x : ref) x *= 2.0f;
    check_nmse_f("C=2C", ref, dget(dc, C0.size()), TOL_F32);
    CK(cudaMemset(dc, 0xFF, m * n * 4));
    g.beta = 0.0f;
    OKST(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, ERR));
    std::vector<float> z(m * n, 0.0f);
    check_nmse_f("C=0_from_NaN", z, dget(dc, C0.size()), TOL_F32);
    graft_err e;
    g = margs(GRAFT_DTYPE_BF16, 0, 0, m, n, 4, dc, 3, dc, n, dc, n, 1.0f, 0.0f);
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, &e), GRAFT_STATUS_BAD_INPUT, &e, "lda < k");
    g.lda = 4;
    g.ldc = n - 1;
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, &e), GRAFT_STATUS_BAD_INPUT, &e, "ldc < n");
    g.ldc = n;
    g.dtype = GRAFT_DTYPE_F16;
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, &e), GRAFT_STATUS_UNSUPPORTED, &e, "F16");
    g.dtype = GRAFT_DTYPE_F32;
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_BF16, &e), GRAFT_STATUS_UNSUPPORTED, &e, "F32 x F32 -> BF16");
    g.dtype = GRAFT_DTYPE_BF16;
    g.device = GRAFT_DEVICE_CPU;
    expect_status(graft_cuda_host_matmul(g_blas, &g, &e), GRAFT_STATUS_UNSUPPORTED, &e, "CPU device");
    g.device = GRAFT_DEVICE_CUDA;
    g.batch = 0;
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, &e), GRAFT_STATUS_BAD_INPUT, &e, "batch 0");
    g.batch = 1;
    g.struct_size = 8;
    expect_status(graft_cuda_matmul(g_blas, &g, GRAFT_DTYPE_F32, &e), GRAFT_STATUS_BAD_INPUT, &e, "short struct_size");
    release_all();
}

/* ---- embedding ----------------------------------------------------------------------------- */
static void embedding_case(const char *name, int64_t N, int64_t C, int64_t V, int64_t pool, int zero_init) {
    g_case = name;
    hb table = make_bf16(V * C, 0.02f), dout = make_bf16(N * C, 1.0f);
    std::vector<int32_t> ids(N);
    std::vector<int32_t> pool_ids(pool);
    for (auto &p : pool_ids) p = (int32_t)(rnd64() % (uint64_t)V);
    for (auto &i : ids) i = pool_ids[rnd64() % (uint64_t)pool];
    ids[0] = (int32_t)(V - 1);
    const int64_t bad = zero_init ? 0 : 2; /* the odd case ends with ids -5 and V: read nothing */
    if (bad) ids[N - 2] = -5, ids[N - 1] = (int32_t)V;
    int32_t *dids = dput(ids);
    graft_bf16 *dtab = dput(table.b), *dout_d = dput(dout.b);
    graft_bf16 *dy = (graft_bf16 *)dalloc(N * C * 2);
    OKST(graft_cuda_embedding_fwd(dy, dtab, dids, N, C, V, NULL, ERR));
    std::vector<float> ref(N * C, 0.0f);
    graft_cpu_embedding_fwd(ref.data(), table.f.data(), ids.data(), N - bad, C);
    check_nmse_f("out", ref, dget_bf16(dy, N * C), TOL_BF16);
    std::vector<float> dtab0 = zero_init ? std::vector<float>(V * C, 0.0f) : make_f32(V * C, 1.0f);
    float *ddt = dput(dtab0);
    size_t ws = 0;
    OKST(graft_cuda_embedding_bwd_workspace(N, &ws, ERR));
    void *dws = dalloc(ws);
    OKST(graft_cuda_embedding_bwd(ddt, dout_d, dids, N, C, V, dws, ws, NULL, ERR));
    std::vector<float> got1 = dget(ddt, V * C);
    graft_cpu_embedding_bwd(dtab0.data(), dout.f.data(), ids.data(), N - bad, C);
    check_nmse_f("dtable", dtab0, got1, TOL_F32);
    /* determinism: a second run from the same start is bitwise equal */
    if (zero_init) {
        CK(cudaMemset(ddt, 0, V * C * 4));
        OKST(graft_cuda_embedding_bwd(ddt, dout_d, dids, N, C, V, dws, ws, NULL, ERR));
        std::vector<float> got2 = dget(ddt, V * C);
        expect(memcmp(got1.data(), got2.data(), got1.size() * 4) == 0, "dtable bitwise equal on a second run");
    }
    graft_err e;
    expect_status(graft_cuda_embedding_bwd(ddt, dout_d, dids, N, C, V, dws, ws - 1, NULL, &e), GRAFT_STATUS_BAD_INPUT, &e,
                  "short workspace");
    release_all();
}
static void case_embedding(void) { embedding_case("embedding_qwen_V", 1000, 2048, 151936, 300, 1); }
static void case_embedding_odd(void) { embedding_case("embedding_odd", 63, 7, 50, 11, 0); }

/* ---- rmsnorm ------------------------------------------------------------------------------- */
static void rmsnorm_case(const char *name, int64_t N, int64_t C, int fused, int accumulate) {
    g_case = name;
    const float eps = 1e-6f;
    hb x = make_bf16(N * C, 1.0f), w = make_bf16(C, 0.2f, 1.0f), delta = make_bf16(N * C, 0.5f), dy = make_bf16(N * C, 1.0f);
    graft_bf16 *dx_in = dput(x.b), *dw_ = dput(w.b), *ddelta = dput(delta.b), *ddy = dput(dy.b);
    graft_bf16 *dyo = (graft_bf16 *)dalloc(N * C * 2);
    float *drstd = (float *)dalloc(N * 4);
    std::vector<float> xr = x.f;
    if (fused) {
        OKST(graft_cuda_add_rmsnorm_fwd(dx_in, dyo, drstd, ddelta, dw_, N, C, eps, NULL, ERR));
        for (int64_t i = 0; i < N * C; i++) xr[i] = graft_bf16_to_f32(graft_bf16_from_f32(x.f[i] + delta.f[i]));
        check_nmse_f("x+=delta", xr, dget_bf16(dx_in, N * C), TOL_BF16);
        expect(memcmp(dget_bf16(dx_in, N * C).data(), xr.data(), xr.size() * 4) == 0, "x+=delta bitwise (one rounding)");
    } else {
        OKST(graft_cuda_rmsnorm_fwd(dyo, drstd, dx_in, dw_, N, C, eps, NULL, ERR));
    }
    std::vector<float> yref(N * C), rref(N);
    graft_cpu_rmsnorm_fwd(yref.data(), rref.data(), xr.data(), w.f.data(), N, C, eps);
    check_nmse_f("y", yref, dget_bf16(dyo, N * C), TOL_BF16);
    check_nmse_f("rstd", rref, dget(drstd, N), TOL_F32);
    /* backward, from the reference rstd (a saved activation) */
    hb dx0 = make_bf16(N * C, 1.0f);
    graft_bf16 *ddx = dput(dx0.b);
    std::vector<float> dw0 = make_f32(C, 1.0f);
    float *ddw = dput(dw0), *drr = dput(rref);
    size_t sb = graft_cuda_rmsnorm_bwd_scratch_bytes(N, C);
    void *scr = dalloc(sb);
    OKST(graft_cuda_rmsnorm_bwd(ddx, ddw, ddy, dx_in, dw_, drr, N, C, accumulate, scr, sb, NULL, ERR));
    std::vector<float> dxref = dx0.f, dwref = dw0;
    graft_cpu_rmsnorm_bwd(dxref.data(), dwref.data(), dy.f.data(), xr.data(), w.f.data(), rref.data(), N, C, accumulate);
    check_nmse_f(accumulate ? "dx(+=)" : "dx", dxref, dget_bf16(ddx, N * C), TOL_BF16);
    check_nmse_f("dw(+=)", dwref, dget(ddw, C), TOL_F32);
    std::vector<float> dw1 = dget(ddw, C);
    CK(cudaMemcpy(ddw, dw0.data(), C * 4, cudaMemcpyHostToDevice));
    OKST(graft_cuda_rmsnorm_bwd(ddx, ddw, ddy, dx_in, dw_, drr, N, C, 0, scr, sb, NULL, ERR));
    expect(memcmp(dw1.data(), dget(ddw, C).data(), C * 4) == 0, "dw bitwise equal on a second run");
    graft_err e;
    expect_status(graft_cuda_rmsnorm_bwd(ddx, ddw, ddy, dx_in, dw_, drr, N, C, 0, scr, sb - 4, NULL, &e),
                  GRAFT_STATUS_BAD_INPUT, &e, "short scratch");
    release_all();
}
static void case_rmsnorm(void) { rmsnorm_case("rmsnorm_C2048", 256, 2048, 0, 0); }
static void case_add_rmsnorm(void) { rmsnorm_case("add_rmsnorm_C2048", 300, 2048, 1, 1); }
static void case_rmsnorm_odd(void) { rmsnorm_case("rmsnorm_odd", 63, 1001, 0, 1); }
static void case_add_rmsnorm_odd(void) { rmsnorm_case("add_rmsnorm_T1_odd", 1, 37, 1, 0); }

/* ---- q/k norm + RoPE ----------------------------------------------------------------------- */
static std::vector<float> inv_freq_ref(int64_t D, double theta) {
    std::vector<float> inv(D / 2);
    float base = (float)theta;
    for (int64_t j = 0; j < D / 2; j++) inv[j] = 1.0f / powf(base, (float)(2 * j) / (float)D);
    return inv;
}
/* softmax_cpu.c norm_rope, per (token, head) */
static void ref_qk_fwd(std::vector<float> &y, std::vector<float> &rstd, const std::vector<float> &x,
                       const std::vector<float> &w, const std::vector<int32_t> &pos, int64_t N, int64_t T, int64_t H,
                       int64_t D, int64_t ldx, double theta, double eps) {
    std::vector<float> inv = inv_freq_ref(D, theta), cs(D / 2), sn(D / 2);
    int64_t h2 = D / 2;
    for (int64_t n = 0; n < N; n++) {
        float p = (float)(pos.empty() ? n % T : pos[n]);
        for (int64_t j = 0; j < h2; j++) cs[j] = cosf(p * inv[j]), sn[j] = sinf(p * inv[j]);
        for (int64_t h = 0; h < H; h++) {
            const float *xr = &x[n * ldx + h * D];
            double ss = 0;
            for (int64_t d = 0; d < D; d++) ss += (double)xr[d] * xr[d];
            float r = (float)(1.0 / sqrt(ss / (double)D + eps));
            rstd[n * H + h] = r;
            float *yr = &y[n * ldx + h * D];
            for (int64_t d = 0; d < h2; d++) {
                float a = w[d] * (xr[d] * r), b = w[d + h2] * (xr[d + h2] * r);
                yr[d] = a * cs[d] - b * sn[d];
                yr[d + h2] = b * cs[d] + a * sn[d];
            }
        }
    }
}
static void ref_qk_bwd(std::vector<float> &dx, std::vector<float> &dw, const std::vector<float> &g,
                       const std::vector<float> &x, const std::vector<float> &w, const std::vector<float> &rstd,
                       const std::vector<int32_t> &pos, int64_t N, int64_t T, int64_t H, int64_t D, int64_t ld,
                       double theta) {
    std::vector<float> inv = inv_freq_ref(D, theta), cs(D / 2), sn(D / 2), tmp(D);
    int64_t h2 = D / 2;
    for (int64_t n = 0; n < N; n++) {
        float p = (float)(pos.empty() ? n % T : pos[n]);
        for (int64_t j = 0; j < h2; j++) cs[j] = cosf(p * inv[j]), sn[j] = sinf(p * inv[j]);
        for (int64_t h = 0; h < H; h++) {
            const float *gr = &g[n * ld + h * D], *xr = &x[n * ld + h * D];
            float r = rstd[n * H + h];
            for (int64_t d = 0; d < h2; d++) {
                tmp[d] = gr[d] * cs[d] + gr[d + h2] * sn[d];
                tmp[d + h2] = -gr[d] * sn[d] + gr[d + h2] * cs[d];
            }
            double dot = 0;
            for (int64_t d = 0; d < D; d++) {
                dw[d] += tmp[d] * (xr[d] * r);
                dot += (double)tmp[d] * w[d] * xr[d];
            }
            float k3 = (float)((double)r * r * r * dot / (double)D);
            for (int64_t d = 0; d < D; d++) dx[n * ld + h * D + d] = r * (tmp[d] * w[d]) - xr[d] * k3;
        }
    }
}
static void qk_case(const char *name, int64_t B, int64_t T, int64_t H, int64_t D, int64_t extra_cols, int use_pos,
                    int inplace) {
    g_case = name;
    const int64_t N = B * T, ld = H * D + extra_cols;
    const double theta = 1e6;
    const float eps = 1e-6f;
    hb x = make_bf16(N * ld, 1.0f, 0.1f), w = make_bf16(D, 0.3f, 1.0f), dy = make_bf16(N * ld, 1.0f);
    std::vector<int32_t> pos;
    if (use_pos)
        for (int64_t n = 0; n < N; n++) pos.push_back((int32_t)(1000 * (n / T) + 37 + n % T));
    int32_t *dpos = use_pos ? dput(pos) : NULL;
    graft_bf16 *dxin = dput(x.b), *dw_ = dput(w.b), *ddy = dput(dy.b);
    graft_bf16 *dyo = dput(x.b); /* columns outside the heads keep x */
    float *drstd = (float *)dalloc(N * H * 4);
    OKST(graft_cuda_qk_norm_rope_fwd(dyo, drstd, inplace ? dyo : dxin, dw_, dpos, N, T, H, D, ld, ld, theta, eps, NULL,
                                     ERR));
    std::vector<float> yref(x.f), rref(N * H);
    ref_qk_fwd(yref, rref, x.f, w.f, pos, N, T, H, D, ld, theta, eps);
    std::vector<float> got = dget_bf16(dyo, N * ld);
    /* compare the head columns only (extra columns untouched: compare them too, they must equal x) */
    check_nmse_f(inplace ? "y(in place)" : "y", yref, got, TOL_BF16);
    check_nmse_f("rstd", rref, dget(drstd, N * H), TOL_F32);
    std::vector<float> dxref(x.f), dwref = make_f32(D, 1.0f);
    float *ddw = dput(dwref), *drr = dput(rref);
    graft_bf16 *ddx = inplace ? ddy : dput(x.b);
    size_t sb = graft_cuda_qk_norm_rope_bwd_scratch_bytes(N, H, D);
    void *scr = dalloc(sb);
    OKST(graft_cuda_qk_norm_rope_bwd(ddx, ddw, ddy, dxin, dw_, drr, dpos, N, T, H, D, ld, ld, ld, theta, scr, sb, NULL, ERR));
    if (inplace) dxref = dy.f;
    ref_qk_bwd(dxref, dwref, dy.f, x.f, w.f, rref, pos, N, T, H, D, ld, theta);
    check_nmse_f(inplace ? "dx(in place)" : "dx", dxref, dget_bf16(ddx, N * ld), TOL_BF16);
    check_nmse_f("dw(+=)", dwref, dget(ddw, D), TOL_F32);
    graft_err e;
    expect_status(graft_cuda_qk_norm_rope_fwd(dyo, drstd, dxin, dw_, dpos, N, T, H, D + 1, ld, ld, theta, eps, NULL, &e),
                  GRAFT_STATUS_BAD_INPUT, &e, "odd D");
    expect_status(graft_cuda_qk_norm_rope_fwd(dyo, drstd, dxin, dw_, dpos, N, T, H, D, H * D - 1, ld, theta, eps, NULL, &e),
                  GRAFT_STATUS_BAD_INPUT, &e, "ld_x < H*D");
    release_all();
}
static void case_qk(void) { qk_case("qk_norm_rope_q16_D128", 2, 300, 16, 128, 0, 0, 0); }
static void case_qk_fusedqkv(void) { qk_case("qk_norm_rope_k_in_qkv", 1, 4096, 8, 128, 3072, 0, 0); }
static void case_qk_odd(void) { qk_case("qk_norm_rope_odd_pos", 3, 63, 5, 70, 6, 1, 1); }
static void case_qk_t1(void) { qk_case("qk_norm_rope_T1_D256", 2, 1, 3, 256, 0, 1, 1); }

/* ---- swiglu -------------------------------------------------------------------------------- */
static void swiglu_case(const char *name, int64_t N, int64_t I, int fused) {
    g_case = name;
    const int64_t ld = fused ? 2 * I : I;
    hb g = make_bf16(N * ld, 2.0f), u = make_bf16(N * ld, 1.0f), dh = make_bf16(N * I, 1.0f);
    graft_bf16 *dg_ = dput(g.b), *du_ = fused ? dg_ + I : dput(u.b), *ddh = dput(dh.b);
    std::vector<float> gv(N * I), uv(N * I);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < I; i++) {
            gv[n * I + i] = g.f[n * ld + i];
            uv[n * I + i] = fused ? g.f[n * ld + I + i] : u.f[n * ld + i];
        }
    graft_bf16 *dhh = (graft_bf16 *)dalloc(N * I * 2);
    OKST(graft_cuda_swiglu_fwd(dhh, dg_, du_, N, I, ld, I, NULL, ERR));
    std::vector<float> href(N * I), dgr(N * I), dur(N * I);
    graft_cpu_swiglu_fwd(href.data(), gv.data(), uv.data(), N * I);
    check_nmse_f("h", href, dget_bf16(dhh, N * I), TOL_BF16);
    graft_bf16 *dgo = (graft_bf16 *)dalloc(N * ld * 2), *duo = fused ? dgo + I : (graft_bf16 *)dalloc(N * ld * 2);
    OKST(graft_cuda_swiglu_bwd(dgo, duo, ddh, dg_, du_, N, I, ld, I, NULL, ERR));
    graft_cpu_swiglu_bwd(dgr.data(), dur.data(), dh.f.data(), gv.data(), uv.data(), N * I);
    std::vector<float> a = dget_bf16(dgo, N * ld), b = dget_bf16(duo, N * ld - (fused ? I : 0)), ga(N * I), gb(N * I);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < I; i++) ga[n * I + i] = a[n * ld + i], gb[n * I + i] = b[n * ld + i];
    check_nmse_f("dg", dgr, ga, TOL_BF16);
    check_nmse_f("du", dur, gb, TOL_BF16);
    release_all();
}
static void case_swiglu(void) { swiglu_case("swiglu_fused_I6144", 64, 6144, 1); }
static void case_swiglu_odd(void) { swiglu_case("swiglu_odd", 7, 1001, 0); }

/* ---- lm_head + CE (+ top-k KL) ------------------------------------------------------------- */
static void *host_alloc(void *ctx, size_t n) {
    (void)ctx;
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (p) memset(p, 0, (n + 63) / 64 * 64);
    return p;
}
static void host_free(void *ctx, void *p) { (void)ctx, free(p); }
static void host_log(void *ctx, int level, const char *fmt, ...) { (void)ctx, (void)level, (void)fmt; }
static void host_pfor(void *ctx, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    (void)ctx;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) fn(arg, i, i + 1);
}
static graft_host g_host = {sizeof(graft_host), GRAFT_ABI_VERSION, NULL, host_log, NULL, host_alloc, host_free, host_pfor};

static void run_loss(graft_plugin_init_fn init, const graft_kv *kv, int64_t n_kv, graft_loss_io io) {
    graft_plugin pl;
    memset(&pl, 0, sizeof pl);
    pl.struct_size = sizeof pl;
    pl.abi_version = GRAFT_ABI_VERSION;
    graft_err e;
    void *obj = NULL;
    if (init(&g_host, &pl, &e) || pl.loss->create(&g_host, kv, n_kv, "test", &obj, &e)) {
        printf("FAIL %s: loss plugin init: %s\n", g_case, e.msg);
        g_fail = 1;
        return;
    }
    io.struct_size = sizeof io;
    io.loss = obj;
    io.device = GRAFT_DEVICE_CPU;
    if (pl.loss->compute(&io, &e)) {
        printf("FAIL %s: reference loss: %s\n", g_case, e.msg);
        g_fail = 1;
    }
    pl.loss->destroy(obj);
}

static void lmhead_case(const char *name, int64_t N, int64_t C, int64_t V, int64_t chunk, int64_t k, double T) {
    g_case = name;
    hb hid = make_bf16(N * C, 1.0f), W = make_bf16(V * C, 0.05f);
    std::vector<int32_t> labels(N);
    for (int64_t n = 0; n < N; n++) labels[n] = (n % 5 == 3) ? -100 : (int32_t)(rnd64() % (uint64_t)V);
    /* reference logits in double, then the fp32 values the CPU losses take */
    std::vector<double> zd(N * V, 0.0);
    ref_gemm(zd, hid.f.data(), W.f.data(), 0, 1, N, V, C, C, C, V, 1.0, 0.0);
    std::vector<float> z(zd.begin(), zd.end());
    /* teacher top-k: student logits + noise, top k ids, their log-probs and mass at T = 1 */
    std::vector<int32_t> ids(N * (k ? k : 1));
    std::vector<float> logp(N * (k ? k : 1)), mass(N);
    if (k) {
        std::vector<double> t(V);
        std::vector<int32_t> idx(V);
        for (int64_t n = 0; n < N; n++) {
            double m = -INFINITY, s = 0;
            for (int64_t i = 0; i < V; i++) t[i] = zd[n * V + i] + 0.5 * normal(), m = std::max(m, t[i]);
            for (int64_t i = 0; i < V; i++) s += exp(t[i] - m);
            double lse = m + log(s);
            for (int64_t i = 0; i < V; i++) idx[i] = (int32_t)i;
            std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return t[a] > t[b]; });
            double P = 0;
            for (int64_t j = 0; j < k; j++) {
                ids[n * k + j] = idx[j];
                logp[n * k + j] = (float)(t[idx[j]] - lse);
                P += exp(t[idx[j]] - lse);
            }
            mass[n] = (float)std::min(P, 1.0);
            if (n == 1) labels[n] = idx[2]; /* a label inside the top-k */
        }
    }
    int64_t count = 0;
    for (auto l : labels) count += l != -100;
    const float ce_scale = (k ? 0.5f : 1.0f) / (float)count, kl_scale = k ? 0.5f / (float)count : 0.0f;
    /* reference: losses/ce.c and losses/topk_kl.c on the fp32 logits */
    std::vector<float> dz_ce(N * V), dz_kl(N * V, 0.0f);
    double ce_sum = 0, ce_cnt = 0, kl_sum = 0, kl_cnt = 0, parts[2] = {0, 0};
    graft_loss_io io;
    memset(&io, 0, sizeof io);
    io.N = N, io.W = V, io.student = z.data(), io.labels = labels.data(), io.grad_scale = ce_scale;
    io.dstudent = dz_ce.data(), io.loss_sum = &ce_sum, io.count = &ce_cnt;
    run_loss(graft_loss_ce_init, NULL, 0, io);
    if (k) {
        char kb[32], tb[32];
        snprintf(kb, sizeof kb, "%lld", (long long)k);
        snprintf(tb, sizeof tb, "%g", T);
        graft_kv kv[2] = {{"k", kb, NULL}, {"temperature", tb, NULL}};
        io.k = k, io.topk_ids = ids.data(), io.topk_logp = logp.data(), io.topk_mass = mass.data();
        io.grad_scale = kl_scale, io.dstudent = dz_kl.data(), io.loss_sum = &kl_sum, io.count = &kl_cnt, io.parts = parts;
        run_loss(graft_loss_topk_kl_init, kv, 2, io);
    }
    std::vector<float> dz(N * V);
    for (int64_t i = 0; i < N * V; i++) dz[i] = dz_ce[i] + dz_kl[i];
    std::vector<double> dh_ref(N * C, 0.0), dw_ref(V * C);
    std::vector<float> dw0 = make_f32(V * C, 0.01f);
    for (int64_t i = 0; i < V * C; i++) dw_ref[i] = dw0[i];
    ref_gemm(dh_ref, dz.data(), W.f.data(), 0, 0, N, C, V, V, C, C, 1.0, 0.0);
    ref_gemm(dw_ref, dz.data(), hid.f.data(), 1, 0, V, C, N, V, C, C, 1.0, 1.0);

    graft_cuda_lmhead_loss_io g;
    memset(&g, 0, sizeof g);
    g.hidden = dput(hid.b), g.weight = dput(W.b), g.labels = dput(labels);
    g.N = N, g.C = C, g.V = V, g.ignore_index = -100, g.ce_scale = ce_scale;
    if (k) {
        g.topk_ids = dput(ids), g.topk_logp = dput(logp), g.topk_mass = dput(mass);
        g.k = k, g.temperature = (float)T, g.kl_scale = kl_scale;
    }
    g.dhidden = (graft_bf16 *)dalloc(N * C * 2);
    g.dweight = dput(dw0);
    g.sums = (double *)dalloc(4 * sizeof(double));
    g.chunk_rows = chunk;
    g.workspace_bytes = graft_cuda_lmhead_loss_workspace_bytes(N, V, chunk);
    g.workspace = dalloc(g.workspace_bytes);
    OKST(graft_cuda_lmhead_loss(g_blas, &g, ERR));
    std::vector<double> sums = dget(g.sums, 4);
    printf("     %-26s CE sum gpu %.9g ref %.9g | count %g/%g", g_case, sums[0], ce_sum, sums[1], ce_cnt);
    if (k) printf(" | bern %.9g/%.9g topk %.9g/%.9g", sums[2], parts[0], sums[3], parts[1]);
    printf("\n");
    {
        std::vector<double> r = {ce_sum, ce_cnt};
        std::vector<float> gg = {(float)sums[0], (float)sums[1]};
        check_nmse_d("ce_sum,count", r, gg, TOL_F32);
        if (k) {
            std::vector<double> r2 = {parts[0], parts[1]};
            std::vector<float> g2 = {(float)sums[2], (float)sums[3]};
            check_nmse_d("bern,topk sums", r2, g2, TOL_F32);
        }
    }
    check_nmse_d("dhidden", dh_ref, dget_bf16(g.dhidden, N * C), TOL_BF16);
    std::vector<float> dwg = dget(g.dweight, V * C);
    /* dW is fp32 storage but fed by bf16 dlogits: check the increment at the bf16 tolerance, and
       the whole accumulated tensor at fp32 */
    std::vector<double> inc(V * C);
    std::vector<float> incg(V * C);
    for (int64_t i = 0; i < V * C; i++) inc[i] = dw_ref[i] - dw0[i], incg[i] = dwg[i] - dw0[i];
    check_nmse_d("dW increment", inc, incg, TOL_BF16);
    graft_err e;
    graft_cuda_lmhead_loss_io bad = g;
    bad.workspace_bytes -= 1;
    expect_status(graft_cuda_lmhead_loss(g_blas, &bad, &e), GRAFT_STATUS_BAD_INPUT, &e, "short workspace");
    if (k) {
        bad = g;
        bad.k = GRAFT_CUDA_TOPK_MAX + 1;
        expect_status(graft_cuda_lmhead_loss(g_blas, &bad, &e), GRAFT_STATUS_BAD_INPUT, &e, "k too large");
        bad = g;
        bad.temperature = 0;
        expect_status(graft_cuda_lmhead_loss(g_blas, &bad, &e), GRAFT_STATUS_BAD_INPUT, &e, "temperature 0");
    }
    release_all();
}
static void case_ce(void) { lmhead_case("lmhead_ce_V151936", 32, 2048, 151936, 12, 0, 0); }
static void case_ce_kl(void) { lmhead_case("lmhead_ce_topk64_T4", 24, 2048, 151936, 10, 64, 4.0); }
static void case_ce_odd(void) { lmhead_case("lmhead_ce_odd", 7, 40, 1001, 3, 0, 0); }
static void case_kl_odd(void) { lmhead_case("lmhead_topk_odd_T1.5", 9, 24, 333, 4, 5, 1.5); }

/* ---- AdamW + grad norm --------------------------------------------------------------------- */
static void case_adamw(void) {
    g_case = "adamw_clip_3steps";
    const int64_t sizes[] = {1, 1001, 6149, (1 << 20) + 3, 128};
    const int ns = 5;
    graft_adamw_params cp = graft_adamw_default_params();
    cp.weight_decay = 0.1;
    graft_cuda_adamw_params gp = {cp.beta1, cp.beta2, cp.eps, cp.weight_decay};
    std::vector<std::vector<float>> p(ns), m(ns), v(ns), g(ns);
    std::vector<graft_cuda_adamw_span> ds(ns);
    std::vector<graft_adamw_span> hs(ns);
    for (int i = 0; i < ns; i++) {
        p[i] = make_f32(sizes[i], 0.5f);
        m[i].assign(sizes[i], 0.0f);
        v[i].assign(sizes[i], 0.0f);
        ds[i].data = dput(p[i]);
        ds[i].grad = (float *)dalloc(sizes[i] * 4);
        ds[i].m = dput(m[i]);
        ds[i].v = dput(v[i]);
        ds[i].data_bf16 = (graft_bf16 *)dalloc(sizes[i] * 2);
        ds[i].n = sizes[i];
        ds[i].flags = (i % 2) ? GRAFT_CUDA_ADAMW_NO_DECAY : 0;
    }
    graft_cuda_adamw_plan_t *plan = NULL;
    OKST(graft_cuda_adamw_plan_init(&plan, ds.data(), ns, ERR));
    double *dnorm = (double *)dalloc(8);
    for (int64_t t = 1; t <= 3; t++) {
        for (int i = 0; i < ns; i++) {
            g[i] = make_f32(sizes[i], t == 2 ? 1e-4f : 1.0f); /* step 2: norm below max_norm, no clip */
            CK(cudaMemcpy((void *)ds[i].grad, g[i].data(), sizes[i] * 4, cudaMemcpyHostToDevice));
            hs[i] = {p[i].data(), g[i].data(), m[i].data(), v[i].data(), sizes[i], (i % 2) ? GRAFT_ADAMW_NO_DECAY : 0u};
        }
        const double lr = 1e-3 * t, max_norm = 1.0;
        OKST(graft_cuda_grad_norm(plan, dnorm, NULL, ERR));
        OKST(graft_cuda_adamw_step(plan, &gp, t, lr, dnorm, max_norm, NULL, ERR));
        double ref_norm = graft_grad_clip(hs.data(), ns, max_norm);
        graft_err e;
        if (graft_adamw_step(&cp, hs.data(), ns, t, lr, &e)) printf("FAIL reference adamw: %s\n", e.msg), g_fail = 1;
        std::vector<double> gn = dget(dnorm, 1);
        std::vector<double> rn = {ref_norm};
        std::vector<float> gnf = {(float)gn[0]};
        char nm[32];
        snprintf(nm, sizeof nm, "grad_norm t%lld", (long long)t);
        check_nmse_d(nm, rn, gnf, TOL_F32);
    }
    std::vector<float> all_p, all_m, all_v, got_p, got_m, got_v, got_b, ref_b;
    for (int i = 0; i < ns; i++) {
        all_p.insert(all_p.end(), p[i].begin(), p[i].end());
        all_m.insert(all_m.end(), m[i].begin(), m[i].end());
        all_v.insert(all_v.end(), v[i].begin(), v[i].end());
        std::vector<float> a = dget(ds[i].data, sizes[i]), b = dget(ds[i].m, sizes[i]), c = dget(ds[i].v, sizes[i]);
        std::vector<float> d = dget_bf16(ds[i].data_bf16, sizes[i]);
        got_p.insert(got_p.end(), a.begin(), a.end());
        got_m.insert(got_m.end(), b.begin(), b.end());
        got_v.insert(got_v.end(), c.begin(), c.end());
        got_b.insert(got_b.end(), d.begin(), d.end());
    }
    /* the update itself (p_t - p_0) is what AdamW computes; compare it, not only p */
    check_nmse_f("p (master)", all_p, got_p, TOL_F32);
    check_nmse_f("m", all_m, got_m, TOL_F32);
    check_nmse_f("v", all_v, got_v, TOL_F32);
    check_nmse_f("p bf16 copy", all_p, got_b, TOL_BF16);
    graft_err e;
    graft_cuda_adamw_params bad = gp;
    bad.beta2 = 1.0;
    expect_status(graft_cuda_adamw_step(plan, &bad, 1, 1e-3, NULL, 0, NULL, &e), GRAFT_STATUS_BAD_INPUT, &e, "beta2 = 1");
    expect_status(graft_cuda_adamw_step(plan, &gp, 0, 1e-3, NULL, 0, NULL, &e), GRAFT_STATUS_BAD_INPUT, &e, "t = 0");
    graft_cuda_adamw_plan_free(plan);
    graft_cuda_adamw_plan_t *p2 = NULL;
    ds[2].m = NULL;
    expect_status(graft_cuda_adamw_plan_init(&p2, ds.data(), ns, &e), GRAFT_STATUS_BAD_INPUT, &e, "span with NULL m");
    release_all();
}

/* ---- the case table ------------------------------------------------------------------------ */
struct test_case {
    const char *name;
    void (*fn)(void);
};
static const test_case cases[] = {
    {"gemm_qproj_bf16", case_gemm_proj},
    {"gemm_down_f32c", case_gemm_down},
    {"gemm_dw_transa", case_gemm_dw},
    {"gemm_dx_nn", case_gemm_dx},
    {"gemm_skinny_decode", case_gemm_skinny},
    {"gemm_odd_batched_tt", case_gemm_odd},
    {"gemm_odd_batched_nn", case_gemm_odd2},
    {"gemm_f32_host_service", case_gemm_f32},
    {"gemm_k0_and_refusals", case_gemm_k0},
    {"embedding_qwen_V", case_embedding},
    {"embedding_odd", case_embedding_odd},
    {"rmsnorm_C2048", case_rmsnorm},
    {"add_rmsnorm_C2048", case_add_rmsnorm},
    {"rmsnorm_odd", case_rmsnorm_odd},
    {"add_rmsnorm_T1_odd", case_add_rmsnorm_odd},
    {"qk_norm_rope_q16_D128", case_qk},
    {"qk_norm_rope_k_in_qkv", case_qk_fusedqkv},
    {"qk_norm_rope_odd_pos", case_qk_odd},
    {"qk_norm_rope_T1_D256", case_qk_t1},
    {"swiglu_fused_I6144", case_swiglu},
    {"swiglu_odd", case_swiglu_odd},
    {"lmhead_ce_V151936", case_ce},
    {"lmhead_ce_topk64_T4", case_ce_kl},
    {"lmhead_ce_odd", case_ce_odd},
    {"lmhead_topk_odd_T1.5", case_kl_odd},
    {"adamw_clip_3steps", case_adamw},
};

/* name is one of the comma-separated names in list */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) list = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--list] [--only <case>]\n", argv[0]);
            return 2;
        }
    }
    if (list) {
        for (const auto &c : cases) printf("%s\n", c.name);
        printf("# (op, backend) pairs without a case: none (CUDA ops: matmul, embedding, rmsnorm, add_rmsnorm, "
               "qk_norm_rope, swiglu, lmhead_loss, adamw, grad_norm)\n");
        return 0;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    graft_err e;
    if (graft_cuda_blas_init(&g_blas, 0, &e)) {
        printf("FAIL blas init: %s\n", e.msg);
        return 1;
    }
    int ran = 0;
    for (const auto &c : cases)
        if (!only || listed(only, c.name)) {
            c.fn();
            if (!g_bufs.empty()) release_all();
            ran++;
        }
    if (!ran) {
        fprintf(stderr, "no case named %s (--list)\n", only);
        graft_cuda_blas_free(g_blas);
        return 2;
    }
    graft_cuda_blas_free(g_blas);
    cudaError_t last = cudaDeviceSynchronize();
    if (last != cudaSuccess) printf("FAIL: device error at exit: %s\n", cudaGetErrorString(last)), g_fail = 1;
    printf(g_fail ? "FAILED\n" : "ALL OK\n");
    return g_fail ? 1 : 0;
}
