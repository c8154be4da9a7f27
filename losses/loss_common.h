/* losses/loss_common.h: the small pieces every loss .so shares (static inline, no link): the host
 * check of graft_plugin_init, the graft_loss_io checks of compute(), an online log-sum-exp in
 * double, a grow-on-demand buffer owned by the loss object, and the deterministic row reduction.
 *
 * Not here: any loss's math (nmse.c, ce.c, topk_kl.c, kl.c; README.md has the formulas).
 *
 * Determinism: every loss computes its per-row values in parallel into a per-row buffer, then sums
 * them in row order on the calling thread, so loss_sum and count do not depend on the thread count.
 */
#ifndef GRAFT_LOSS_COMMON_H
#define GRAFT_LOSS_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "graft/kv.h"
#include "graft/plugin.h"
#include "graft/status.h"

/* True when the caller's graft_loss_io is long enough to hold member m (plugin.h: read a member
 * only if offsetof + sizeof <= struct_size). */
#define LOSS_IO_HAS(io, m) ((io)->struct_size >= offsetof(graft_loss_io, m) + sizeof((io)->m))

/* dstudent element: written (=), or added (+=) when the caller set the appended `accumulate`.
 * The add is one float addition, as a caller summing two gradients itself would do. */
static inline int loss_accumulates(const graft_loss_io *io) { return LOSS_IO_HAS(io, accumulate) && io->accumulate; }
static inline void loss_put(float *d, float v, int acc) { *d = acc ? *d + v : v; }

/* ---- online log-sum-exp, in double ---------------------------------------------------------- */

/* log(sum_i exp(x_i)) = m + log(s) with s = sum_i exp(x_i - m), m the running maximum. One exp per
 * element; the rescale exp(m_old - m_new) only when the maximum moves. -inf elements add nothing;
 * a NaN element makes the result NaN. */
typedef struct lse_acc {
    double m, s;
} lse_acc;

static inline void lse_init(lse_acc *a) {
    a->m = -INFINITY;
    a->s = 0.0;
}

static inline void lse_add(lse_acc *a, double x) {
    if (x <= a->m) {
        if (x != -INFINITY) a->s += exp(x - a->m);
    } else if (x == x) {
        a->s = a->s * exp(a->m - x) + 1.0; /* exp(-inf) = 0 on the first element */
        a->m = x;
    } else {
        a->m = x; /* NaN: poison */
        a->s = x;
    }
}

/* -inf for an empty (or all -inf) set. */
static inline double lse_value(const lse_acc *a) {
    return a->s > 0 ? a->m + log(a->s) : (a->s == 0 ? -INFINITY : a->s);
}

/* log(exp(a) + exp(b)) without overflow. */
static inline double lse2(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* ---- plugin entry and create() helpers ------------------------------------------------------ */

/* Refuses a host this plugin cannot serve: another ABI version, a table too short for the
 * services the losses use (alloc, free, parallel_for), or missing services. */
static inline graft_status loss_check_host(const graft_host *host, const char *name, graft_err *err) {
    if (!host)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "loss %s: host table is NULL", name);
    if (host->abi_version != GRAFT_ABI_VERSION)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "loss %s: host abi_version %u, this plugin speaks %u",
                             name, host->abi_version, GRAFT_ABI_VERSION);
    size_t need = offsetof(graft_host, parallel_for) + sizeof host->parallel_for;
    if (host->struct_size < need)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN,
                             "loss %s: host struct_size %u, expected at least %zu (up to parallel_for)", name,
                             host->struct_size, need);
    if (!host->alloc || !host->free || !host->parallel_for)
        return graft_err_set(err, GRAFT_STATUS_PLUGIN, "loss %s: host table lacks alloc, free or parallel_for",
                             name);
    return GRAFT_STATUS_OK;
}

/* Fills the members of graft_plugin that fit in out->struct_size (set by the loader). */
static inline graft_status loss_fill_plugin(const graft_host *host, graft_plugin *out, const graft_loss *desc,
                                            const char *version, graft_err *err) {
    graft_status st = loss_check_host(host, desc->name, err);
    if (st) return st;
    if (!out) return graft_err_set(err, GRAFT_STATUS_PLUGIN, "loss %s: graft_plugin out is NULL", desc->name);
#define LOSS_PLUGIN_FITS(m) (out->struct_size >= offsetof(graft_plugin, m) + sizeof out->m)
    out->abi_version = GRAFT_ABI_VERSION;
    if (LOSS_PLUGIN_FITS(kind)) out->kind = GRAFT_PLUGIN_LOSS;
    if (LOSS_PLUGIN_FITS(name)) out->name = desc->name;
    if (LOSS_PLUGIN_FITS(version)) out->version = version;
    if (LOSS_PLUGIN_FITS(mixer)) out->mixer = NULL;
    if (LOSS_PLUGIN_FITS(loss)) out->loss = desc;
#undef LOSS_PLUGIN_FITS
    return GRAFT_STATUS_OK;
}

/* ---- buffers owned by the loss object ------------------------------------------------------ */

/* Makes *buf hold at least `bytes` (host memory, grown by reallocation, never shrunk). The core
 * never calls two functions on one loss object at once (plugin.h), so the buffer needs no lock. */
static inline graft_status loss_buf_reserve(const graft_host *host, void **buf, size_t *cap, size_t bytes,
                                            const char *name, graft_err *err) {
    if (bytes <= *cap && *buf) return GRAFT_STATUS_OK;
    void *p = host->alloc(host->ctx, bytes ? bytes : 1);
    if (!p)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "loss %s: out of memory for %zu bytes of row buffers",
                             name, bytes);
    host->free(host->ctx, *buf);
    *buf = p;
    *cap = bytes;
    return GRAFT_STATUS_OK;
}

/* ---- compute() input checks ----------------------------------------------------------------- */

/* The checks every compute() shares: io long enough, CPU, sizes, the outputs present, the student
 * present, grad_scale finite. Tensors named in `need` ("target", "input", "labels", "topk") must
 * be non-NULL when N > 0. */
/* What compute() needs (LOSS_NEED_*) and serves beyond F32 on the CPU (LOSS_SERVES_*). */
enum {
    LOSS_NEED_TARGET = 1, LOSS_NEED_INPUT = 2, LOSS_NEED_LABELS = 4, LOSS_NEED_TOPK = 8,
    LOSS_SERVES_CUDA = 16, LOSS_SERVES_BF16 = 32, LOSS_SERVES_NORMALIZE = 64
};
/* The appended members, with what an older caller (shorter struct) means. */
static inline graft_dtype loss_dtype(const graft_loss_io *io) { return LOSS_IO_HAS(io, dtype) ? io->dtype : GRAFT_DTYPE_F32; }
static inline int loss_normalizes(const graft_loss_io *io) { return LOSS_IO_HAS(io, normalize) && io->normalize; }

static inline graft_status loss_check_io(const graft_loss_io *io, const char *name, unsigned need,
                                         graft_err *err) {
    if (!io) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: io is NULL", name);
    if (!LOSS_IO_HAS(io, count))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "loss %s: graft_loss_io struct_size %u, expected at least %zu (up to count)", name,
                             io->struct_size, offsetof(graft_loss_io, count) + sizeof io->count);
    if (!io->loss) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: io->loss is NULL (use create())", name);
    if (io->device != GRAFT_DEVICE_CPU && !(io->device == GRAFT_DEVICE_CUDA && (need & LOSS_SERVES_CUDA)))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "loss %s: device %d: only the CPU (0)%s is implemented",
                             name, (int)io->device, (need & LOSS_SERVES_CUDA) ? " and CUDA (1)" : "");
    if (loss_dtype(io) != GRAFT_DTYPE_F32 && !(loss_dtype(io) == GRAFT_DTYPE_BF16 && io->device != GRAFT_DEVICE_CPU &&
                                               (need & LOSS_SERVES_BF16)))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "loss %s: dtype %d on device %d: expected F32 (0)%s", name,
                             (int)loss_dtype(io), (int)io->device,
                             (need & LOSS_SERVES_BF16) ? ", or BF16 (1) on a device" : "");
    if (loss_normalizes(io) && !(need & LOSS_SERVES_NORMALIZE))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "loss %s: normalize = 1, but this loss has no denominator to divide by (give 0)", name);
    if (io->N < 0) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: N: %lld, expected >= 0", name, (long long)io->N);
    if (io->W < 1) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: W: %lld, expected >= 1", name, (long long)io->W);
    if (io->N > INT64_MAX / io->W)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: N*W: %lld*%lld overflows", name,
                             (long long)io->N, (long long)io->W);
    if (!io->loss_sum || !io->count)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: loss_sum and count outputs must not be NULL", name);
    if (!isfinite(io->grad_scale))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: grad_scale: %g, expected a finite number", name,
                             (double)io->grad_scale);
    if (io->N == 0) return GRAFT_STATUS_OK;
    if (!io->student) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: student is NULL", name);
    if ((need & LOSS_NEED_TARGET) && !io->target)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: target is NULL, expected (N, W) teacher outputs", name);
    if ((need & LOSS_NEED_INPUT) && !io->input)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: input is NULL, expected (N, W) layer inputs", name);
    if ((need & LOSS_NEED_LABELS) && !io->labels)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "loss %s: labels is NULL, expected (N) target ids", name);
    if ((need & LOSS_NEED_TOPK) && (!io->topk_ids || !io->topk_logp || !io->topk_mass))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "loss %s: topk_ids, topk_logp and topk_mass must all be given (the teacher's top-k)", name);
    return GRAFT_STATUS_OK;
}

/* Sums per-row values in row order (deterministic whatever the thread count). */
static inline double loss_sum_rows(const double *v, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    return s;
}

/* Whether row i is counted: labels absent, or labels[i] != ignore_index. */
static inline int loss_row_counted(const int32_t *labels, int64_t i, int64_t ignore_index) {
    return !labels || (int64_t)labels[i] != ignore_index;
}

#endif /* GRAFT_LOSS_COMMON_H */
