/* host.c: the core's graft_host (host.h): logging, F32 CPU matmul (OpenBLAS cblas_sgemm), aligned
 * zeroed memory, and parallel_for over a persistent pthread pool.
 *
 * CUDA products are forwarded to the handler the CUDA backend registers when it opens a device
 * (graft_host_set_cuda_matmul); without one (CPU-only build, or no device opened) they are refused.
 *
 * The pool: n-1 worker threads plus the caller. A job is (fn, arg, n, chunk); threads take chunks
 * from an atomic cursor. The caller returns only when every item is done AND every worker that
 * joined the job has left it, so a slow worker can never take chunks of the next job with the
 * previous job's fn.
 */
#include "host.h"

#include <cblas.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int graft_host_has_cuda(void) {
#ifdef GRAFT_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

/* ---- logging ---------------------------------------------------------------------------------- */

static atomic_int log_level = GRAFT_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void graft_host_set_log_level(int level) {
    if (level < GRAFT_LOG_DEBUG) level = GRAFT_LOG_DEBUG;
    if (level > GRAFT_LOG_ERROR) level = GRAFT_LOG_ERROR;
    atomic_store(&log_level, level);
}

int graft_host_log_level(void) { return atomic_load(&log_level); }

static void vlog(int level, const char *fmt, va_list ap) {
    if (level < atomic_load(&log_level)) return;
    if (level < GRAFT_LOG_DEBUG) level = GRAFT_LOG_DEBUG;
    if (level > GRAFT_LOG_ERROR) level = GRAFT_LOG_ERROR;
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t len = strlen(line);
    while (len && line[len - 1] == '\n') line[--len] = 0;
    flockfile(stderr);
    fprintf(stderr, "graft [%s] %s\n", level_names[level], line);
    funlockfile(stderr);
}

void graft_host_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

static void table_log(void *ctx, int level, const char *fmt, ...) {
    (void)ctx;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

/* ---- matmul ----------------------------------------------------------------------------------- */

static graft_status (*_Atomic cuda_matmul)(void *ctx, const graft_matmul_args *args, graft_err *err);
static void *_Atomic cuda_matmul_ctx;

void graft_host_set_cuda_matmul(graft_status (*fn)(void *ctx, const graft_matmul_args *args, graft_err *err),
                                void *ctx) {
    atomic_store(&cuda_matmul_ctx, ctx);
    atomic_store(&cuda_matmul, fn);
}

graft_status graft_host_matmul(const graft_matmul_args *a, graft_err *err) {
    if (!a) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "host matmul: args is NULL");
    size_t need = offsetof(graft_matmul_args, stride_c) + sizeof a->stride_c;
    if (a->struct_size < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "host matmul: struct_size %u, expected at least %zu", a->struct_size, need);
    if (a->device == GRAFT_DEVICE_CUDA) {
        graft_status (*fn)(void *, const graft_matmul_args *, graft_err *) = atomic_load(&cuda_matmul);
        if (!fn)
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "host matmul: device CUDA: no CUDA device is open in this process%s",
                                 graft_host_has_cuda() ? "" : " (this build is CPU only)");
        return fn(atomic_load(&cuda_matmul_ctx), a, err);
    }
    if (a->device != GRAFT_DEVICE_CPU)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "host matmul: device %d is not served by this build (CPU only)", (int)a->device);
    graft_dtype da, db, dc;
    graft_matmul_dtypes(a, &da, &db, &dc);
    if (da != GRAFT_DTYPE_F32 || db != GRAFT_DTYPE_F32 || dc != GRAFT_DTYPE_F32)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "host matmul: dtype %s on the CPU, expected F32 (A %s, B %s, C %s)",
                             graft_dtype_name(da), graft_dtype_name(da), graft_dtype_name(db), graft_dtype_name(dc));
    if ((a->trans_a != 0 && a->trans_a != 1) || (a->trans_b != 0 && a->trans_b != 1))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "host matmul: trans_a %d, trans_b %d, expected 0 or 1",
                             a->trans_a, a->trans_b);
    if (a->m < 0 || a->n < 0 || a->k < 0 || a->batch < 1 || a->m > INT_MAX || a->n > INT_MAX ||
        a->k > INT_MAX)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "host matmul: m %lld, n %lld, k %lld, batch %lld: expected 0..INT_MAX, batch >= 1",
                             (long long)a->m, (long long)a->n, (long long)a->k, (long long)a->batch);
    int64_t a_cols = a->trans_a ? a->m : a->k, b_cols = a->trans_b ? a->k : a->n;
    if (a->lda < (a_cols > 1 ? a_cols : 1) || a->ldb < (b_cols > 1 ? b_cols : 1) ||
        a->ldc < (a->n > 1 ? a->n : 1) || a->lda > INT_MAX || a->ldb > INT_MAX || a->ldc > INT_MAX)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "host matmul: lda %lld, ldb %lld, ldc %lld too small for m %lld, n %lld, k %lld",
                             (long long)a->lda, (long long)a->ldb, (long long)a->ldc, (long long)a->m,
                             (long long)a->n, (long long)a->k);
    if (a->m == 0 || a->n == 0) return GRAFT_STATUS_OK;
    if (!a->c || (a->k > 0 && (!a->a || !a->b)))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "host matmul: NULL operand");
    for (int64_t i = 0; i < a->batch; i++) {
        const float *pa = (const float *)a->a + i * a->stride_a;
        const float *pb = (const float *)a->b + i * a->stride_b;
        float *pc = (float *)a->c + i * a->stride_c;
        if (a->beta == 0.0f) /* C is not read: NaN in C must not propagate */
            for (int64_t r = 0; r < a->m; r++) memset(pc + r * a->ldc, 0, (size_t)a->n * sizeof(float));
        if (a->k == 0) {
            if (a->beta != 0.0f && a->beta != 1.0f)
                for (int64_t r = 0; r < a->m; r++)
                    for (int64_t c = 0; c < a->n; c++) pc[r * a->ldc + c] *= a->beta;
            continue;
        }
        cblas_sgemm(CblasRowMajor, a->trans_a ? CblasTrans : CblasNoTrans,
                    a->trans_b ? CblasTrans : CblasNoTrans, (int)a->m, (int)a->n, (int)a->k, a->alpha,
                    pa, (int)a->lda, pb, (int)a->ldb, a->beta == 0.0f ? 0.0f : a->beta, pc, (int)a->ldc);
    }
    return GRAFT_STATUS_OK;
}

static graft_status table_matmul(void *ctx, const graft_matmul_args *args, graft_err *err) {
    (void)ctx;
    return graft_host_matmul(args, err);
}

/* ---- memory ----------------------------------------------------------------------------------- */

void *graft_host_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void graft_host_free(void *ptr) { free(ptr); }

static void *table_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    return graft_host_alloc(bytes);
}

static void table_free(void *ctx, void *ptr) {
    (void)ctx;
    graft_host_free(ptr);
}

/* ---- thread pool ------------------------------------------------------------------------------ */

typedef struct pool {
    pthread_mutex_t mu;       /* guards everything below except the atomics                */
    pthread_cond_t wake;      /* workers wait here for a new generation or shutdown        */
    pthread_cond_t done;      /* the caller waits here for the job to drain                */
    pthread_mutex_t busy;     /* held by the one parallel_for using the pool               */
    pthread_t *threads;
    int n_workers;            /* started worker threads                                    */
    int started;
    int stop;
    uint64_t generation;
    uint64_t start_generation; /* the generation when the workers were created: a worker that
                                  first gets the lock after the job that started it was posted
                                  must still see that job as new                             */
    int active;               /* workers inside the current job                            */
    void (*fn)(void *, int64_t, int64_t);
    void *arg;
    int64_t n, chunk;
    atomic_llong next;        /* first item not yet taken                                  */
    atomic_llong finished;    /* items done                                                */
} pool;

static pool the_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .busy = PTHREAD_MUTEX_INITIALIZER,
};
static int64_t pool_threads = 0; /* decided once (GRAFT_THREADS or nproc) */
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static _Thread_local int in_pool_task = 0;

static void decide_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("GRAFT_THREADS");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end != env && *end == 0 && v >= 1 && v <= 1024) n = v;
        else graft_host_log(GRAFT_LOG_WARN, "GRAFT_THREADS=\"%s\": expected 1..1024, using %ld", env, n);
    }
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    pool_threads = n;
}

int64_t graft_host_n_threads(void) {
    pthread_once(&threads_once, decide_threads);
    return pool_threads;
}

/* Takes chunks of the current job until none is left. */
static void run_chunks(pool *p, void (*fn)(void *, int64_t, int64_t), void *arg, int64_t n, int64_t chunk) {
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, chunk);
        if (b >= n) break;
        int64_t e = b + chunk < n ? b + chunk : n;
        fn(arg, b, e);
        atomic_fetch_add(&p->finished, e - b);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    pool *p = &the_pool;
    in_pool_task = 1;
    pthread_mutex_lock(&p->mu);
    uint64_t seen = p->start_generation;
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        void (*fn)(void *, int64_t, int64_t) = p->fn;
        void *arg = p->arg;
        int64_t n = p->n, chunk = p->chunk;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p, fn, arg, n, chunk);
        pthread_mutex_lock(&p->mu);
        p->active--;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Called with p->mu held. */
static void pool_start(pool *p) {
    int want = (int)graft_host_n_threads() - 1;
    p->stop = 0;
    p->n_workers = 0;
    p->started = 1;
    p->start_generation = p->generation;
    if (want <= 0) return;
    p->threads = calloc((size_t)want, sizeof *p->threads);
    if (!p->threads) return;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, NULL) != 0) break;
        p->n_workers++;
    }
}

void graft_host_shutdown(void) {
    pool *p = &the_pool;
    pthread_mutex_lock(&p->busy);
    pthread_mutex_lock(&p->mu);
    if (!p->started) {
        pthread_mutex_unlock(&p->mu);
        pthread_mutex_unlock(&p->busy);
        return;
    }
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_lock(&p->mu);
    p->threads = NULL;
    p->n_workers = 0;
    p->started = 0;
    p->stop = 0;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->busy);
}

static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;
static void register_atexit(void) { atexit(graft_host_shutdown); }

void graft_host_parallel_for(int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end), void *arg) {
    if (n <= 0 || !fn) return;
    pool *p = &the_pool;
    if (n == 1 || in_pool_task || graft_host_n_threads() == 1 || pthread_mutex_trylock(&p->busy) != 0) {
        fn(arg, 0, n);
        return;
    }
    pthread_once(&atexit_once, register_atexit);
    pthread_mutex_lock(&p->mu);
    if (!p->started) pool_start(p);
    if (p->n_workers == 0) {
        pthread_mutex_unlock(&p->mu);
        pthread_mutex_unlock(&p->busy);
        fn(arg, 0, n);
        return;
    }
    /* a worker that picked up the previous job just before it drained may still be inside it:
     * resetting the cursor under it would hand it items of this job with the old fn */
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    int64_t parts = 4 * (int64_t)(p->n_workers + 1);
    int64_t chunk = (n + parts - 1) / parts;
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    atomic_store(&p->finished, 0);
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    in_pool_task = 1;
    run_chunks(p, fn, arg, n, chunk);
    in_pool_task = 0;

    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->finished) < n || p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->busy);
}

static void table_parallel_for(void *ctx, int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end),
                               void *arg) {
    (void)ctx;
    graft_host_parallel_for(n, fn, arg);
}

/* ---- the table -------------------------------------------------------------------------------- */

static graft_host host_table;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_init(void) {
    const char *lv = getenv("GRAFT_LOG_LEVEL");
    if (lv && *lv) {
        for (int i = 0; i < 4; i++)
            if (!strcmp(lv, level_names[i]) || (lv[0] == '0' + i && lv[1] == 0)) graft_host_set_log_level(i);
    }
    host_table.struct_size = (uint32_t)sizeof(graft_host);
    host_table.abi_version = GRAFT_ABI_VERSION;
    host_table.ctx = NULL;
    host_table.log = table_log;
    host_table.matmul = table_matmul;
    host_table.alloc = table_alloc;
    host_table.free = table_free;
    host_table.parallel_for = table_parallel_for;
}

const graft_host *graft_host_get(void) {
    pthread_once(&host_once, host_init);
    return &host_table;
}

double graft_host_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
