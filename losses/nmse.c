/* losses/nmse.c: the normalized MSE of Stage 0 (DESIGN "Normalized loss") as a loss .so.
 *
 *   loss_sum = sum_rows ||s - t||^2      count = sum_rows ||x - t||^2
 *   d(loss_sum)/ds = 2 (s - t)           dstudent = grad_scale * 2 (s - t)
 *
 * s = student(h[l-1]), t = h[l] (target), x = h[l-1] (input), rows of width W = C. The normalized
 * loss of a pair is a RATIO OF SUMS: summing loss_sum and count over micro-batches or held-out
 * batches and dividing once gives it exactly (never a mean of per-batch ratios). The training
 * objective of one step is loss_sum / count of that step's batch; the caller passes
 * grad_scale = 1 / count so that dstudent is its gradient, or sets normalize = 1 and the loss
 * divides by the count it has just computed (dstudent = float(grad_scale 2 (s - t)) * float(1 /
 * count): the same floats as the caller scaling afterwards). README.md has the derivation.
 *
 * Devices: the CPU (F32) here; CUDA (F32 or BF16 rows, fp32 sums per thread, double per row and
 * across rows in a fixed order) in nmse_cuda.cu when the plugin is built with nvcc.
 * Not here: the division of loss_sum by count (the caller's, after summing batches).
 */
#include <stdint.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "loss_common.h"
#ifdef GRAFT_PLUGIN_CUDA
#include "nmse_cuda.h"
#endif

typedef struct nmse_loss {
    const graft_host *host;
    void *rows;       /* (2, N) doubles: per-row numerator then denominator */
    size_t rows_cap;
    void *dev;        /* CUDA: the partial sums (nmse_cuda.h), allocated on first use */
} nmse_loss;

static graft_status nmse_create(const graft_host *host, const graft_kv *kv, int64_t n_kv, const char *origin,
                                void **out, graft_err *err) {
    static const char *const known[] = {NULL};
    graft_status st = loss_check_host(host, "nmse", err);
    if (st) return st;
    if (graft_kv_check_known(kv, n_kv, known, origin, err)) return err->status;
    nmse_loss *l = host->alloc(host->ctx, sizeof *l);
    if (!l) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss nmse: out of memory");
    l->host = host;
    *out = l;
    return GRAFT_STATUS_OK;
}

static void nmse_destroy(void *p) {
    nmse_loss *l = p;
    if (!l) return;
    const graft_host *h = l->host;
#ifdef GRAFT_PLUGIN_CUDA
    nmse_cuda_free(l->dev);
#endif
    h->free(h->ctx, l->rows);
    h->free(h->ctx, l);
}

typedef struct nmse_job {
    const graft_loss_io *io;
    double *num, *den; /* (N) */
    float scale;       /* 1 / count of the whole batch (normalize), else 1 */
} nmse_job;

static void nmse_sums(void *arg, int64_t begin, int64_t end) {
    const nmse_job *j = arg;
    const graft_loss_io *io = j->io;
    const int64_t W = io->W;
    for (int64_t r = begin; r < end; r++) {
        const float *s = io->student + r * W, *t = io->target + r * W, *x = io->input + r * W;
        double num = 0.0, den = 0.0;
        for (int64_t i = 0; i < W; i++) {
            double e = (double)s[i] - (double)t[i], d = (double)x[i] - (double)t[i];
            num += e * e;
            den += d * d;
        }
        j->num[r] = num;
        j->den[r] = den;
    }
}

static void nmse_grad(void *arg, int64_t begin, int64_t end) {
    const nmse_job *j = arg;
    const graft_loss_io *io = j->io;
    const int64_t W = io->W;
    const double g2 = 2.0 * (double)io->grad_scale;
    const int acc = loss_accumulates(io), scaled = j->scale != 1.0f;
    for (int64_t r = begin; r < end; r++) {
        const float *s = io->student + r * W, *t = io->target + r * W;
        float *ds = io->dstudent + r * W;
        for (int64_t i = 0; i < W; i++) {
            float g = (float)(g2 * ((double)s[i] - (double)t[i]));
            loss_put(&ds[i], scaled ? g * j->scale : g, acc);
        }
    }
}

static graft_status nmse_compute(const graft_loss_io *io, graft_err *err) {
    graft_status st = loss_check_io(io, "nmse", LOSS_NEED_TARGET | LOSS_NEED_INPUT | LOSS_SERVES_NORMALIZE
#ifdef GRAFT_PLUGIN_CUDA
                                    | LOSS_SERVES_CUDA | LOSS_SERVES_BF16
#endif
                                    , err);
    if (st) return st;
    nmse_loss *l = io->loss;
    *io->loss_sum = 0.0;
    *io->count = 0.0;
    if (io->N == 0) return GRAFT_STATUS_OK;
#ifdef GRAFT_PLUGIN_CUDA
    if (io->device == GRAFT_DEVICE_CUDA)
        return nmse_cuda_compute(io, loss_dtype(io) == GRAFT_DTYPE_BF16, loss_accumulates(io), loss_normalizes(io),
                                 &l->dev, err);
#endif
    st = loss_buf_reserve(l->host, &l->rows, &l->rows_cap, 2 * (size_t)io->N * sizeof(double), "nmse", err);
    if (st) return st;
    nmse_job job = {io, (double *)l->rows, (double *)l->rows + io->N, 1.0f};
    l->host->parallel_for(l->host->ctx, io->N, nmse_sums, &job);
    *io->loss_sum = loss_sum_rows(job.num, io->N);
    *io->count = loss_sum_rows(job.den, io->N);
    if (io->dstudent) {
        if (loss_normalizes(io)) job.scale = *io->count > 0 ? (float)(1.0 / *io->count) : 0.0f;
        l->host->parallel_for(l->host->ctx, io->N, nmse_grad, &job);
    }
    return GRAFT_STATUS_OK;
}

static const graft_loss nmse_desc = {
    .struct_size = sizeof(graft_loss),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "nmse",
#ifdef GRAFT_PLUGIN_CUDA
    .caps = GRAFT_MIXER_CAP_CPU | GRAFT_MIXER_CAP_CUDA,
#else
    .caps = GRAFT_MIXER_CAP_CPU,
#endif
    .n_parts = 0,
    .part_names = NULL,
    .create = nmse_create,
    .destroy = nmse_destroy,
    .compute = nmse_compute,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    return loss_fill_plugin(host, out, &nmse_desc, "0.1.0", err);
}
