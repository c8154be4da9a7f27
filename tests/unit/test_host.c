/* test_host.c: the core's host table (host.c): matmul against a naive product (transposes,
 * leading dimensions, batch, beta == 0 ignoring NaN in C), refusals of other dtypes/devices,
 * aligned zeroed alloc, parallel_for covering every index exactly once, repeatedly, and the very
 * first parallel_for of the process using the pool's worker (it used to miss that job). */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graft/rng.h"
#include "host.h"
#include "test_util.h"

static void naive(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            c[i * ldc + j] = (float)(alpha * s + (beta != 0 ? beta * c[i * ldc + j] : 0));
        }
}

/* Which thread ran each of 16 slow items (2 ms each, so a started worker cannot miss them all). */
static pthread_t who[16];
static void slow_item(void *arg, int64_t b, int64_t e) {
    (void)arg;
    for (int64_t i = b; i < e; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        who[i] = pthread_self();
    }
}

static atomic_int hits[10007];
static void mark(void *arg, int64_t b, int64_t e) {
    (void)arg;
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&hits[i], 1);
}

int main(void) {
    /* first: the pool starts with this job, 2 threads whatever the machine */
    setenv("GRAFT_THREADS", "2", 1);
    graft_host_parallel_for(16, slow_item, NULL);
    int distinct = 0;
    for (int i = 0; i < 16; i++) distinct |= !pthread_equal(who[i], who[0]);
    CHECK(distinct); /* the worker created for the first job took part in it */
    const graft_host *h = graft_host_get();
    CHECK(h->struct_size == sizeof(graft_host) && h->abi_version == GRAFT_ABI_VERSION);
    CHECK(h->log && h->matmul && h->alloc && h->free && h->parallel_for);
    graft_rng r = graft_rng_make(1, 2);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int beta_i = 0; beta_i < 2; beta_i++) {
                int64_t m = 7, n = 13, k = 5, batch = 3;
                int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
                int64_t sa = (ta ? k : m) * lda, sb = (tb ? n : k) * ldb, sc = m * ldc;
                float *a = malloc(sizeof(float) * (size_t)(sa * batch)), *b = malloc(sizeof(float) * (size_t)(sb * batch));
                float *c = malloc(sizeof(float) * (size_t)(sc * batch)), *c2 = malloc(sizeof(float) * (size_t)(sc * batch));
                for (int64_t i = 0; i < sa * batch; i++) a[i] = (float)graft_rng_normal(&r);
                for (int64_t i = 0; i < sb * batch; i++) b[i] = (float)graft_rng_normal(&r);
                for (int64_t i = 0; i < sc * batch; i++) c[i] = c2[i] = beta_i ? (float)graft_rng_normal(&r) : NAN;
                float beta = beta_i ? 0.5f : 0.0f;
                graft_matmul_args g;
                memset(&g, 0, sizeof g);
                g.struct_size = sizeof g; g.device = GRAFT_DEVICE_CPU; g.dtype = GRAFT_DTYPE_F32;
                g.trans_a = ta; g.trans_b = tb; g.m = m; g.n = n; g.k = k; g.alpha = 1.5f; g.beta = beta;
                g.a = a; g.lda = lda; g.b = b; g.ldb = ldb; g.c = c; g.ldc = ldc;
                g.batch = batch; g.stride_a = sa; g.stride_b = sb; g.stride_c = sc;
                graft_err err;
                CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_OK);
                for (int64_t q = 0; q < batch; q++)
                    naive(ta, tb, m, n, k, 1.5f, a + q * sa, lda, b + q * sb, ldb, beta, c2 + q * sc, ldc);
                for (int64_t q = 0; q < batch; q++)
                    for (int64_t i = 0; i < m; i++) {
                        char nm[64];
                        snprintf(nm, sizeof nm, "matmul ta%d tb%d beta%d batch %lld row %lld", ta, tb, beta_i,
                                 (long long)q, (long long)i);
                        check_close_f32(nm, c + q * sc + i * ldc, c2 + q * sc + i * ldc, n, 1e-12);
                    }
                free(a); free(b); free(c); free(c2);
            }
    graft_matmul_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g; g.dtype = GRAFT_DTYPE_BF16; g.m = g.n = g.k = 1; g.lda = g.ldb = g.ldc = 1; g.batch = 1;
    graft_err err;
    CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "dtype BF16 on the CPU, expected F32");
    g.dtype = GRAFT_DTYPE_F32; g.device = GRAFT_DEVICE_CUDA;
    CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "device CUDA");
    /* mixed dtypes (appended members): F32 A with a BF16 C is refused on the CPU and named */
    g.device = GRAFT_DEVICE_CPU; g.dtype = GRAFT_DTYPE_F32;
    g.mixed_dtypes = 1; g.dtype_b = GRAFT_DTYPE_F32; g.dtype_c = GRAFT_DTYPE_BF16;
    CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "C BF16");
    /* ... and an all-F32 mixed call is served like an unmixed one */
    float one_a = 2, one_b = 3, one_c = 0;
    g.dtype_c = GRAFT_DTYPE_F32; g.a = &one_a; g.b = &one_b; g.c = &one_c; g.alpha = 1;
    CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_OK && one_c == 6);
    /* a caller built before the mixed members (short struct_size) keeps the one-dtype meaning,
     * whatever lies beyond its struct */
    g.struct_size = (uint32_t)offsetof(graft_matmul_args, mixed_dtypes); g.dtype_c = GRAFT_DTYPE_BF16; one_c = 0;
    CHECK(h->matmul(h->ctx, &g, &err) == GRAFT_STATUS_OK && one_c == 6);
    g.struct_size = sizeof g; g.mixed_dtypes = 0;

    void *p = h->alloc(h->ctx, 100);
    CHECK(p && ((uintptr_t)p % 64) == 0);
    int zero = 1;
    for (int i = 0; i < 100; i++) zero &= ((unsigned char *)p)[i] == 0;
    CHECK(zero);
    h->free(h->ctx, p);
    h->free(h->ctx, NULL);

    for (int rep = 0; rep < 200; rep++) {
        int64_t n = 1 + (rep * 37) % 10007;
        for (int64_t i = 0; i < n; i++) atomic_store(&hits[i], 0);
        h->parallel_for(h->ctx, n, mark, NULL);
        int ok = 1;
        for (int64_t i = 0; i < n; i++) ok &= atomic_load(&hits[i]) == 1;
        CHECK(ok);
    }
    h->log(h->ctx, GRAFT_LOG_DEBUG, "dropped at the default level %d", 1);
    CHECK(graft_host_n_threads() >= 1);
    graft_host_shutdown();
    h->parallel_for(h->ctx, 10, mark, NULL); /* restarts the pool */
    return test_finish("test_host");
}
