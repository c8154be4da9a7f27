/* losses/kl.c: the full-vocabulary KL(p_teacher || q_student) as a loss .so, for ablations
 * against the decoupled top-k KL (topk_kl.c).
 *
 *   a = t / T, b = z / T             (t teacher logits = io->target, z student logits, T = temperature)
 *   p = softmax(a), q = softmax(b)
 *   loss_r   = T^2 * sum_i p_i (log p_i - log q_i)        (0 log 0 = 0)
 *   dstudent = grad_scale * T * (q - p)
 *   count    = rows counted (all rows, or those whose label != ignore_index when labels are given)
 *
 * Rows one at a time, two passes over W (both log-sum-exps, then KL and gradient), double
 * accumulation, no (N, W) temporary. README.md has the derivation.
 */
#include <stdint.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "loss_common.h"

typedef struct kl_loss {
    const graft_host *host;
    double T;
    int64_t ignore_index;
    void *rows; /* (N) doubles */
    size_t rows_cap;
} kl_loss;

static graft_status kl_create(const graft_host *host, const graft_kv *kv, int64_t n_kv, const char *origin,
                              void **out, graft_err *err) {
    static const char *const known[] = {"temperature", "ignore_index", NULL};
    graft_status st = loss_check_host(host, "kl", err);
    if (st) return st;
    if (graft_kv_check_known(kv, n_kv, known, origin, err)) return err->status;
    double T = 1.0;
    int64_t ignore_index = -100;
    if (graft_kv_double(kv, n_kv, "temperature", 1e-3, 1e3, &T, origin, err)) return err->status;
    if (graft_kv_int(kv, n_kv, "ignore_index", INT32_MIN, INT32_MAX, &ignore_index, origin, err))
        return err->status;
    kl_loss *l = host->alloc(host->ctx, sizeof *l);
    if (!l) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss kl: out of memory");
    l->host = host;
    l->T = T;
    l->ignore_index = ignore_index;
    *out = l;
    return GRAFT_STATUS_OK;
}

static void kl_destroy(void *p) {
    kl_loss *l = p;
    if (!l) return;
    const graft_host *h = l->host;
    h->free(h->ctx, l->rows);
    h->free(h->ctx, l);
}

typedef struct kl_job {
    const graft_loss_io *io;
    const kl_loss *l;
    double *row_loss; /* (N) */
} kl_job;

static void kl_rows(void *arg, int64_t begin, int64_t end) {
    const kl_job *j = arg;
    const graft_loss_io *io = j->io;
    const int64_t W = io->W;
    const double T = j->l->T, invT = 1.0 / T;
    const double gT = (double)io->grad_scale * T;
    const int acc = loss_accumulates(io);
    for (int64_t r = begin; r < end; r++) {
        const float *z = io->student + r * W, *t = io->target + r * W;
        float *dz = io->dstudent ? io->dstudent + r * W : NULL;
        if (!loss_row_counted(io->labels, r, j->l->ignore_index)) {
            j->row_loss[r] = 0.0;
            if (dz)
                for (int64_t i = 0; i < W; i++) loss_put(&dz[i], 0.0f, acc);
            continue;
        }
        lse_acc ta, sa;
        lse_init(&ta);
        lse_init(&sa);
        for (int64_t i = 0; i < W; i++) {
            lse_add(&ta, (double)t[i] * invT);
            lse_add(&sa, (double)z[i] * invT);
        }
        const double La = lse_value(&ta), Lb = lse_value(&sa);
        double kl = 0.0;
        for (int64_t i = 0; i < W; i++) {
            const double lp = (double)t[i] * invT - La, lq = (double)z[i] * invT - Lb;
            const double p = exp(lp);
            if (p > 0) kl += p * (lp - lq);
            if (dz) loss_put(&dz[i], (float)(gT * (exp(lq) - p)), acc);
        }
        j->row_loss[r] = T * T * kl;
    }
}

static graft_status kl_compute(const graft_loss_io *io, graft_err *err) {
    graft_status st = loss_check_io(io, "kl", LOSS_NEED_TARGET, err);
    if (st) return st;
    kl_loss *l = io->loss;
    *io->loss_sum = 0.0;
    *io->count = 0.0;
    if (io->N == 0) return GRAFT_STATUS_OK;
    int64_t counted = 0;
    for (int64_t r = 0; r < io->N; r++) counted += loss_row_counted(io->labels, r, l->ignore_index);
    st = loss_buf_reserve(l->host, &l->rows, &l->rows_cap, (size_t)io->N * sizeof(double), "kl", err);
    if (st) return st;
    kl_job job = {io, l, (double *)l->rows};
    l->host->parallel_for(l->host->ctx, io->N, kl_rows, &job);
    *io->loss_sum = loss_sum_rows(job.row_loss, io->N);
    *io->count = (double)counted;
    return GRAFT_STATUS_OK;
}

static const graft_loss kl_desc = {
    .struct_size = sizeof(graft_loss),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "kl",
    .caps = GRAFT_MIXER_CAP_CPU,
    .n_parts = 0,
    .part_names = NULL,
    .create = kl_create,
    .destroy = kl_destroy,
    .compute = kl_compute,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    return loss_fill_plugin(host, out, &kl_desc, "0.1.0", err);
}
