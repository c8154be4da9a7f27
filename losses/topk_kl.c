/* losses/topk_kl.c: the decoupled top-k KL of Stage 1 (DESIGN "Decoupled top-k KL"; the seed's
 * report, section on Stage 1) as a loss .so. Per counted row, with S the teacher's top-k ids,
 * P = topk_mass (teacher top-k mass at temperature 1), l_j = topk_logp (teacher log-probs at
 * temperature 1), z the student logits and T the temperature:
 *
 *   Q     = sum_{i in S} softmax(z)_i                     student top-k mass at temperature 1
 *   Bern  = P log(P/Q) + (1-P) log((1-P)/(1-Q))           (0 log 0 = 0; 0 when k = W)
 *   p_j   = softmax_j(l / T)     q_j = softmax_j(z_S / T) both renormalized over S
 *   TopK  = T^2 * rho_T * KL(p || q),  rho_T = P           (the report's rho_T: T = Teacher)
 *   loss_r = Bern + TopK                 parts = {sum Bern, sum TopK}
 *
 * Gradient (README.md derives it), with L_S, L_C the log-sum-exps of z over S and over the rest:
 *   i in S:      grad_scale * ((Q - P) exp(z_i - L_S) + T P (q_i - p_i))
 *   i not in S:  grad_scale * (-(Q - P) exp(z_i - L_C))
 * Q, log Q and log(1-Q) all come from L_S and L_C, so mass near 0 or 1 needs no epsilon.
 *
 * alpha (the CE / KL mix) is the caller's: this loss returns the KL part alone.
 * Memory: per-row doubles (N) and the sorted top-k ids (N, k) in the loss object; no (N, W)
 * temporary. Not here: the CUDA path, the mixing with CE.
 */
#include <stdint.h>
#include <stdlib.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "loss_common.h"

typedef struct topk_kl_loss {
    const graft_host *host;
    int64_t k;
    double T;
    int64_t ignore_index;
    void *rows; /* (2, N) doubles: Bernoulli part, top-k part */
    size_t rows_cap;
    void *sorted; /* (N, k) int32: each row's ids, ascending */
    size_t sorted_cap;
} topk_kl_loss;

static const char *const part_names[] = {"bernoulli", "topk"};

static graft_status topk_create(const graft_host *host, const graft_kv *kv, int64_t n_kv, const char *origin,
                                void **out, graft_err *err) {
    static const char *const known[] = {"k", "temperature", "ignore_index", NULL};
    graft_status st = loss_check_host(host, "topk_kl", err);
    if (st) return st;
    if (graft_kv_check_known(kv, n_kv, known, origin, err)) return err->status;
    int64_t k = 32, ignore_index = -100;
    double T = 4.0;
    if (graft_kv_int(kv, n_kv, "k", 1, INT32_MAX, &k, origin, err)) return err->status;
    if (graft_kv_double(kv, n_kv, "temperature", 1e-3, 1e3, &T, origin, err)) return err->status;
    if (graft_kv_int(kv, n_kv, "ignore_index", INT32_MIN, INT32_MAX, &ignore_index, origin, err))
        return err->status;
    topk_kl_loss *l = host->alloc(host->ctx, sizeof *l);
    if (!l) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss topk_kl: out of memory");
    l->host = host;
    l->k = k;
    l->T = T;
    l->ignore_index = ignore_index;
    *out = l;
    return GRAFT_STATUS_OK;
}

static void topk_destroy(void *p) {
    topk_kl_loss *l = p;
    if (!l) return;
    const graft_host *h = l->host;
    h->free(h->ctx, l->rows);
    h->free(h->ctx, l->sorted);
    h->free(h->ctx, l);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void sort_ids(int32_t *v, int64_t k) {
    if (k > 64) {
        qsort(v, (size_t)k, sizeof *v, cmp_i32);
        return;
    }
    for (int64_t i = 1; i < k; i++) {
        int32_t x = v[i];
        int64_t j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Checks one counted row and writes its sorted ids: mass in [0, 1], log-probs not NaN or +inf
 * with at least one finite, ids in [0, W) and distinct. */
static graft_status check_row(const graft_loss_io *io, int64_t r, int64_t k, int32_t *srt, graft_err *err) {
    const int32_t *ids = io->topk_ids + r * k;
    const float *lp = io->topk_logp + r * k;
    const float P = io->topk_mass[r];
    if (!(P >= 0.0f && P <= 1.0f))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss topk_kl: topk_mass[%lld] (row %lld): %g, expected 0..1",
                             (long long)r, (long long)r, (double)P);
    int finite = 0;
    for (int64_t j = 0; j < k; j++) {
        if (lp[j] != lp[j] || lp[j] == INFINITY)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "loss topk_kl: topk_logp[%lld, %lld] (row %lld): %g, expected a log-probability",
                                 (long long)r, (long long)j, (long long)r, (double)lp[j]);
        finite |= lp[j] != -INFINITY;
        if (ids[j] < 0 || ids[j] >= io->W)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "loss topk_kl: topk_ids[%lld, %lld] (row %lld): %d, expected 0..%lld",
                                 (long long)r, (long long)j, (long long)r, (int)ids[j], (long long)(io->W - 1));
        srt[j] = ids[j];
    }
    if (!finite)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "loss topk_kl: topk_logp row %lld: all -inf, expected at least one finite log-probability",
                             (long long)r);
    sort_ids(srt, k);
    for (int64_t j = 1; j < k; j++)
        if (srt[j] == srt[j - 1])
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "loss topk_kl: topk_ids row %lld: id %d appears twice, expected distinct ids",
                                 (long long)r, (int)srt[j]);
    return GRAFT_STATUS_OK;
}

typedef struct topk_job {
    const graft_loss_io *io;
    const topk_kl_loss *l;
    const int32_t *sorted; /* (N, k) */
    double *bern, *topk;   /* (N) each */
} topk_job;

static void topk_rows(void *arg, int64_t begin, int64_t end) {
    const topk_job *jb = arg;
    const graft_loss_io *io = jb->io;
    const int64_t W = io->W, k = jb->l->k;
    const double T = jb->l->T, invT = 1.0 / T, g = (double)io->grad_scale;
    const int acc = loss_accumulates(io);
    for (int64_t r = begin; r < end; r++) {
        const float *z = io->student + r * W;
        float *dz = io->dstudent ? io->dstudent + r * W : NULL;
        if (!loss_row_counted(io->labels, r, jb->l->ignore_index)) {
            jb->bern[r] = jb->topk[r] = 0.0;
            if (dz)
                for (int64_t i = 0; i < W; i++) loss_put(&dz[i], 0.0f, acc);
            continue;
        }
        const int32_t *ids = io->topk_ids + r * k, *srt = jb->sorted + r * k;
        const float *lp = io->topk_logp + r * k;
        const double P = (double)io->topk_mass[r];

        /* Log-sum-exps at temperature 1 over S and over its complement (segments between the
         * sorted ids), and at temperature T over S for student and teacher. */
        lse_acc aS, aC, aq, ap;
        lse_init(&aS);
        lse_init(&aC);
        lse_init(&aq);
        lse_init(&ap);
        for (int64_t j = 0; j < k; j++) {
            lse_add(&aS, (double)z[ids[j]]);
            lse_add(&aq, (double)z[ids[j]] * invT);
            lse_add(&ap, (double)lp[j] * invT);
        }
        int64_t prev = 0;
        for (int64_t j = 0; j < k; j++) {
            for (int64_t i = prev; i < srt[j]; i++) lse_add(&aC, (double)z[i]);
            prev = (int64_t)srt[j] + 1;
        }
        for (int64_t i = prev; i < W; i++) lse_add(&aC, (double)z[i]);
        const double LS = lse_value(&aS), LC = lse_value(&aC), Lq = lse_value(&aq), Lp = lse_value(&ap);

        /* Bernoulli KL on the mass. log Q and log(1-Q) straight from the log-sum-exps; c = Q - P
         * formed from whichever of Q, 1-Q is small, so it keeps its digits near either end. */
        double bern = 0.0, c = 0.0;
        if (k < W) {
            const double L = lse2(LS, LC), logQ = LS - L, log1mQ = LC - L;
            if (P > 0.0) bern += P * (log(P) - logQ);
            if (P < 1.0) bern += (1.0 - P) * (log1p(-P) - log1mQ);
            const double Q = exp(logQ);
            c = Q <= 0.5 ? Q - P : (1.0 - P) - exp(log1mQ);
        }
        /* KL of the renormalized top-k distributions at temperature T. */
        double kl = 0.0;
        for (int64_t j = 0; j < k; j++) {
            const double lpj = (double)lp[j] * invT - Lp, lqj = (double)z[ids[j]] * invT - Lq;
            const double p = exp(lpj);
            if (p > 0) kl += p * (lpj - lqj);
        }
        jb->bern[r] = bern;
        jb->topk[r] = T * T * P * kl;

        if (!dz) continue;
        prev = 0;
        for (int64_t j = 0; j <= k; j++) {
            const int64_t stop = j < k ? (int64_t)srt[j] : W;
            for (int64_t i = prev; i < stop; i++) loss_put(&dz[i], (float)(-g * c * exp((double)z[i] - LC)), acc);
            prev = stop + 1;
        }
        for (int64_t j = 0; j < k; j++) {
            const double zj = (double)z[ids[j]];
            const double p = exp((double)lp[j] * invT - Lp), q = exp(zj * invT - Lq);
            loss_put(&dz[ids[j]], (float)(g * (c * exp(zj - LS) + T * P * (q - p))), acc);
        }
    }
}

static graft_status topk_compute(const graft_loss_io *io, graft_err *err) {
    graft_status st = loss_check_io(io, "topk_kl", LOSS_NEED_TOPK, err);
    if (st) return st;
    topk_kl_loss *l = io->loss;
    if (io->k != l->k)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "loss topk_kl: io k: %lld, expected the k setting %lld (the teacher cache's width)",
                             (long long)io->k, (long long)l->k);
    if (l->k > io->W)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss topk_kl: k: %lld, expected 1..%lld (W, the vocabulary)",
                             (long long)l->k, (long long)io->W);
    *io->loss_sum = 0.0;
    *io->count = 0.0;
    const int want_parts = LOSS_IO_HAS(io, parts) && io->parts;
    if (want_parts) io->parts[0] = io->parts[1] = 0.0;
    if (io->N == 0) return GRAFT_STATUS_OK;
    if ((size_t)io->N > SIZE_MAX / sizeof(int32_t) / (size_t)l->k)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss topk_kl: N*k overflows");
    st = loss_buf_reserve(l->host, &l->sorted, &l->sorted_cap, (size_t)io->N * (size_t)l->k * sizeof(int32_t),
                          "topk_kl", err);
    if (st) return st;
    st = loss_buf_reserve(l->host, &l->rows, &l->rows_cap, 2 * (size_t)io->N * sizeof(double), "topk_kl", err);
    if (st) return st;
    int32_t *sorted = l->sorted;
    int64_t counted = 0;
    for (int64_t r = 0; r < io->N; r++) {
        if (!loss_row_counted(io->labels, r, l->ignore_index)) continue;
        st = check_row(io, r, l->k, sorted + r * l->k, err);
        if (st) return st;
        counted++;
    }
    topk_job job = {io, l, sorted, (double *)l->rows, (double *)l->rows + io->N};
    l->host->parallel_for(l->host->ctx, io->N, topk_rows, &job);
    double bern = 0.0, topk = 0.0, sum = 0.0;
    for (int64_t r = 0; r < io->N; r++) {
        bern += job.bern[r];
        topk += job.topk[r];
        sum += job.bern[r] + job.topk[r];
    }
    *io->loss_sum = sum;
    *io->count = (double)counted;
    if (want_parts) {
        io->parts[0] = bern;
        io->parts[1] = topk;
    }
    return GRAFT_STATUS_OK;
}

static const graft_loss topk_desc = {
    .struct_size = sizeof(graft_loss),
    .abi_version = GRAFT_ABI_VERSION,
    .name = "topk_kl",
    .caps = GRAFT_MIXER_CAP_CPU,
    .n_parts = 2,
    .part_names = part_names,
    .create = topk_create,
    .destroy = topk_destroy,
    .compute = topk_compute,
};

GRAFT_PLUGIN_EXPORT graft_status graft_plugin_init(const graft_host *host, graft_plugin *out, graft_err *err) {
    return loss_fill_plugin(host, out, &topk_desc, "0.1.0", err);
}
