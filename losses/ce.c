/* losses/ce.c: token cross-entropy over logit rows as a loss .so.
 *
 *   row r counted iff labels[r] != ignore_index (setting, default -100)
 *   L_r      = log sum_i exp(z_ri)                      (online log-sum-exp, double)
 *   loss_sum = sum_{counted r} (L_r - z_r,y_r)          count = number of counted rows
 *   dstudent = grad_scale * (softmax(z_r) - onehot(y_r)) for counted rows, 0 for ignored rows
 *
 * Rows are processed one at a time (two passes over W: statistics, then the gradient), so no
 * (N, W) temporary exists; the vocabulary is 151,936 for Qwen3. A label outside [0, W) that is not
 * ignore_index is refused with its row named. README.md has the derivation.
 *
 * Not here: label smoothing, temperature (not needed by the recipes), the division by count.
 */
#include <stdint.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "loss_common.h"

typedef struct ce_loss {
    const graft_host *host;
    int64_t ignore_index;
    void *rows; /* (N) doubles: per-row loss */
    size_t rows_cap;
} ce_loss;

static graft_status ce_create(const graft_host *host, const graft_kv *kv, int64_t n_kv, const char *origin,
                              void **out, graft_err *err) {
    static const char *const known[] = {"ignore_index", NULL};
    graft_status st = loss_check_host(host, "ce", err);
    if (st) return st;
    if (graft_kv_check_known(kv, n_kv, known, origin, err)) return err->status;
    int64_t ignore_index = -100;
    if (graft_kv_int(kv, n_kv, "ignore_index", INT32_MIN, INT32_MAX, &ignore_index, origin, err))
        return err->status;
    ce_loss *l = host->alloc(host->ctx, sizeof *l);
    if (!l) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss ce: out of memory");
    l->host = host;
    l->ignore_index = ignore_index;
    *out = l;
    return GRAFT_STATUS_OK;
}

static void ce_destroy(void *p) {
    ce_loss *l = p;
    if (!l) return;
    const graft_host *h = l->host;
    h->free(h->ctx, l->rows);
    h->free(h->ctx, l);
}

typedef struct ce_job {
    const graft_loss_io *io;
    int64_t ignore_index;
    double *row_loss; /* (N) */
} ce_job;

static void ce_rows(void *arg, int64_t begin, int64_t end) {
    const ce_job *j = arg;
    const graft_loss_io *io = j->io;
    const int64_t W = io->W;
    const double g = (double)io->grad_scale;
    const int add = loss_accumulates(io);
    for (int64_t r = begin; r < end; r++) {
        const float *z = io->student + r * W;
        float *dz = io->dstudent ? io->dstudent + r * W : NULL;
        if (!loss_row_counted(io->labels, r, j->ignore_index)) {
            j->row_loss[r] = 0.0;
            if (dz)
                for (int64_t i = 0; i < W; i++) loss_put(&dz[i], 0.0f, add);
            continue;
        }
        const int64_t y = io->labels[r];
        lse_acc acc;
        lse_init(&acc);
        for (int64_t i = 0; i < W; i++) lse_add(&acc, (double)z[i]);
        const double L = lse_value(&acc);
        j->row_loss[r] = L - (double)z[y];
        if (dz) {
            for (int64_t i = 0; i < W; i++)
                if (i != y) loss_put(&dz[i], (float)(g * exp((double)z[i] - L)), add);
            loss_put(&dz[y], (float)(g * (exp((double)z[y] - L) - 1.0)), add);
        }
    }
}

static graft_status ce_compute(const graft_loss_io *io, graft_err *err) {
    graft_status st = loss_check_io(io, "ce", LOSS_NEED_LABELS, err);
    if (st) return st;
    ce_loss *l = io->loss;
    *io->loss_sum = 0.0;
    *io->count = 0.0;
    if (io->N == 0) return GRAFT_STATUS_OK;
    /* Validate every label before touching an output, and count rows, on this thread: the
     * first bad row is the one named, whatever the thread count. */
    int64_t counted = 0;
    for (int64_t r = 0; r < io->N; r++) {
        int64_t y = io->labels[r];
        if (y == l->ignore_index) continue;
        if (y < 0 || y >= io->W)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "loss ce: labels[%lld] (row %lld): %lld, expected 0..%lld or ignore_index %lld",
                                 (long long)r, (long long)r, (long long)y, (long long)(io->W - 1),
                                 (long long)l->ignore_index);
        counted++;
    }
    st = loss_buf_reserve(l->host, &l->rows, &l->rows_cap, (size_t)io->N * sizeof(double), "ce", err);
    if (st) return st;
    ce_job job = {io, l->ignore_index, (double *)l->rows};
    l->host->parallel_for(l->host->ctx, io->N, ce_rows, &job);
    *io->loss_sum = loss_sum_rows(job.row_loss, io->N);
    *io->count = (double)counted;
    return GRAFT_STATUS_OK;
}

static const graft_loss ce_desc = {
    .struct_size = sizeof(graft_loss),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "ce",
    .caps = GRAFT_MIXER_CAP_CPU,
    .n_parts = 0,
    .part_names = NULL,
    .create = ce_create,
    .destroy = ce_destroy,
    .compute = ce_compute,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    return loss_fill_plugin(host, out, &ce_desc, "0.1.0", err);
}
