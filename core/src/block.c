/* block.c: one decoder layer, forward and hand-written backward (block.h; qwen3.md §3, §5). */
#include "block.h"

#include <stdio.h>
#include <string.h>

#define A64(x) ((((size_t)(x)) + 63) & ~(size_t)63) /* every view 64-byte aligned */

/* es: bytes of one activation element (act_dtype); `da` is F32-sized whatever it is (the backward
 * sums d m through it in F32, graft_block_backward) */
size_t graft_block_saved_bytes(const graft_block *b, int64_t N, size_t mixer_saved_bytes) {
    size_t es = graft_dtype_size(b->be->act_dtype);
    return A64(N * b->C * es) * 3 + A64(N * b->I * es) * 2 + A64(N * 4) * 2 + A64(mixer_saved_bytes);
}

size_t graft_block_scratch_bytes(const graft_block *b, int64_t N, size_t mixer_scratch_bytes) {
    size_t es = graft_dtype_size(b->be->act_dtype), ef = es > 4 ? es : 4;
    return A64(N * b->C * es) * 3 + A64(N * b->C * ef) + A64(N * b->I * es) * 3 + A64(mixer_scratch_bytes);
}

void graft_block_ws_bind(graft_block_ws *ws, const graft_block *b, int64_t N, void *saved,
                         size_t mixer_saved_bytes, void *scratch) {
    size_t es = graft_dtype_size(b->be->act_dtype), ef = es > 4 ? es : 4;
    char *p = saved;
    ws->a = p; p += A64(N * b->C * es);
    ws->hmid = p; p += A64(N * b->C * es);
    ws->m = p; p += A64(N * b->C * es);
    ws->g = p; p += A64(N * b->I * es);
    ws->u = p; p += A64(N * b->I * es);
    ws->rstd1 = (float *)(void *)p; p += A64(N * 4);
    ws->rstd2 = (float *)(void *)p; p += A64(N * 4);
    ws->saved = mixer_saved_bytes ? (void *)p : NULL;
    p = scratch;
    ws->mo = p; p += A64(N * b->C * es);
    ws->tmpC = p; p += A64(N * b->C * es);
    ws->dmid = p; p += A64(N * b->C * es);
    ws->da = p; p += A64(N * b->C * ef);
    ws->act = p; p += A64(N * b->I * es);
    ws->dg = p; p += A64(N * b->I * es);
    ws->du = p; p += A64(N * b->I * es);
    ws->scratch = p;
}

/* y (N x out) = x (N x in) . W^T + beta y, W is (out x in); activations and weights of the
 * backend's dtypes */
static graft_status linear_beta(const graft_block *b, void *y, const void *x, const void *W, int64_t N, int64_t in,
                                int64_t out, float beta, graft_err *err) {
    const graft_backend *be = b->be;
    graft_matmul_args a = {.struct_size = sizeof a, .device = be->device, .stream = be->stream,
                           .dtype = be->act_dtype, .trans_b = 1, .m = N, .n = out, .k = in, .alpha = 1,
                           .beta = beta, .a = x, .lda = in, .b = W, .ldb = in, .c = y, .ldc = out, .batch = 1,
                           .mixed_dtypes = 1, .dtype_b = be->weight_dtype, .dtype_c = be->act_dtype};
    return be->matmul(be->ctx, &a, err);
}

static graft_status linear(const graft_block *b, void *y, const void *x, const void *W, int64_t N,
                           int64_t in, int64_t out, graft_err *err) {
    return linear_beta(b, y, x, W, N, in, out, 0.0f, err);
}

/* dx (N x in) = (or += when dx_beta = 1) dy (N x out) . W, dx of dtype dx_dtype (F32 or act);
 * dW (F32) += dy^T x (skipped when NULL). dy, x of the activation dtype, W of the weight dtype. */
static graft_status linear_bwd(const graft_block *b, void *dx, graft_dtype dx_dtype, float dx_beta, float *dW,
                               const void *dy, const void *x, const void *W, int64_t N, int64_t in, int64_t out,
                               graft_err *err) {
    const graft_backend *be = b->be;
    graft_matmul_args a = {.struct_size = sizeof a, .device = be->device, .stream = be->stream,
                           .dtype = be->act_dtype, .m = N, .n = in, .k = out, .alpha = 1, .beta = dx_beta,
                           .a = dy, .lda = out, .b = W, .ldb = in, .c = dx, .ldc = in, .batch = 1,
                           .mixed_dtypes = 1, .dtype_b = be->weight_dtype, .dtype_c = dx_dtype};
    graft_status st = be->matmul(be->ctx, &a, err);
    if (st || !dW) return st;
    graft_matmul_args g = {.struct_size = sizeof g, .device = be->device, .stream = be->stream,
                           .dtype = be->act_dtype, .trans_a = 1, .m = out, .n = in, .k = N, .alpha = 1, .beta = 1,
                           .a = dy, .lda = out, .b = x, .ldb = in, .c = dW, .ldc = in, .batch = 1,
                           .mixed_dtypes = 1, .dtype_b = be->act_dtype, .dtype_c = GRAFT_DTYPE_F32};
    return be->matmul(be->ctx, &g, err);
}

static void mixer_io(const graft_block *b, graft_block_ws *ws, int64_t B, int64_t T, graft_mixer_io *io) {
    memset(io, 0, sizeof *io);
    io->struct_size = sizeof *io;
    io->layer = b->ml;
    io->device = b->be->device;
    io->stream = b->be->stream;
    io->B = B;
    io->T = T;
    io->params = b->mp;
    io->saved = ws->saved;
    io->scratch = ws->scratch;
    io->carry = b->carry;
    io->dcarry = b->dcarry;
}

static graft_status mixer_failed(const graft_block *b, const char *what, graft_err *err) {
    char where[96];
    snprintf(where, sizeof where, "mixer \"%s\": %s", b->mx->name, what);
    return graft_err_prefix(err, where);
}

static graft_status block_forward(const graft_block *b, graft_block_ws *ws, void *out, const void *h,
                                  int64_t B, int64_t T, int train, void *state, int64_t capacity,
                                  const int64_t *past_len, const int32_t *past_len_dev, graft_err *err) {
    const graft_backend *be = b->be;
    int64_t N = B * T, C = b->C, I = b->I;
    graft_status st;
    if ((st = be->op.rmsnorm_fwd(be->ctx, ws->a, ws->rstd1, h, b->ln1, N, C, b->eps, err))) return st;
    graft_mixer_io io;
    mixer_io(b, ws, B, T, &io);
    io.x = ws->a;
    io.y = ws->mo;
    if (!train) io.saved = NULL;
    if (state) {
        io.state_capacity = capacity;
        io.state_in = past_len ? state : NULL;
        io.state_out = state;
        io.past_len = past_len;
        io.past_len_dev = past_len ? past_len_dev : NULL;
    }
    if ((st = b->mx->forward(&io, err))) return mixer_failed(b, "forward", err);
    /* Inference keeps nothing for a backward: the mid-layer residual goes straight into `out` (never
     * h: callers pass distinct buffers) and the down product accumulates onto it (beta = 1), which
     * saves the separate residual add (a full read-read-write pass over N x C) */
    void *hmid = train ? ws->hmid : out;
    if ((st = be->op.add_rmsnorm_fwd(be->ctx, hmid, ws->m, ws->rstd2, h, ws->mo, b->ln2, N, C, b->eps, err)))
        return st;
    if (!train && be->op.mlp_small) { /* a decode step: the MLP in two launches (nothing to save) */
        st = be->op.mlp_small(be->ctx, out, ws->act, hmid, ws->m, b->gate, b->up, b->down, N, C, I, err);
        if (st != GRAFT_STATUS_UNSUPPORTED) return st;
    }
    if ((st = linear(b, ws->g, ws->m, b->gate, N, C, I, err))) return st;
    if ((st = linear(b, ws->u, ws->m, b->up, N, C, I, err))) return st;
    if ((st = be->op.swiglu_fwd(be->ctx, ws->act, ws->g, ws->u, N, I, err))) return st;
    if (!train) return linear_beta(b, out, ws->act, b->down, N, I, C, 1.0f, err);
    if ((st = linear(b, ws->tmpC, ws->act, b->down, N, I, C, err))) return st;
    return be->op.add(be->ctx, out, ws->hmid, ws->tmpC, N * C, err);
}

graft_status graft_block_forward(const graft_block *b, graft_block_ws *ws, void *out, const void *h,
                                 int64_t B, int64_t T, int train, graft_err *err) {
    return block_forward(b, ws, out, h, B, T, train, NULL, 0, NULL, NULL, err);
}

graft_status graft_block_forward_state(const graft_block *b, graft_block_ws *ws, void *out, const void *h,
                                       int64_t B, int64_t T, void *state, int64_t capacity,
                                       const int64_t *past_len, const int32_t *past_len_dev, graft_err *err) {
    return block_forward(b, ws, out, h, B, T, 0, state, capacity, past_len, past_len_dev, err);
}

graft_status graft_block_backward(const graft_block *b, graft_block_ws *ws, void *dh, const void *dout,
                                  const void *h, int64_t B, int64_t T, graft_err *err) {
    const graft_backend *be = b->be;
    int64_t N = B * T, C = b->C, I = b->I;
    graft_dtype ad = be->act_dtype;
    size_t es = graft_dtype_size(ad);
    graft_status st;
    if (!be->op.swiglu_bwd || !be->op.rmsnorm_bwd)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "block backward: the %s backend has no backward ops",
                             be->name);
    /* MLP: out = hmid + down(act), act = silu(g) * u (recomputed rather than stored) */
    if ((st = be->op.swiglu_fwd(be->ctx, ws->act, ws->g, ws->u, N, I, err))) return st;
    if ((st = linear_bwd(b, ws->dg, ad, 0, b->d_down, dout, ws->act, b->down, N, I, C, err))) return st;
    if ((st = be->op.swiglu_bwd(be->ctx, ws->dg, ws->du, ws->dg, ws->g, ws->u, N, I, err))) return st; /* dg held d act */
    /* d m = dg . W_gate + du . W_up, summed in F32 and rounded once: straight into tmpC on the CPU
     * (F32 activations), through the F32-sized `da` view (free until the mixer's backward) on a
     * device with narrower activations. */
    void *dm = ad == GRAFT_DTYPE_F32 ? ws->tmpC : ws->da;
    if ((st = linear_bwd(b, dm, GRAFT_DTYPE_F32, 0, b->d_gate, ws->dg, ws->m, b->gate, N, C, I, err))) return st;
    if ((st = linear_bwd(b, dm, GRAFT_DTYPE_F32, 1, b->d_up, ws->du, ws->m, b->up, N, C, I, err))) return st;
    if (dm != ws->tmpC && (st = be->op.cast(be->ctx, ws->tmpC, ad, dm, GRAFT_DTYPE_F32, N * C, err))) return st;
    /* d hmid = d out + rmsnorm_bwd(d m) */
    if ((st = be->copy(be->ctx, ws->dmid, dout, (size_t)(N * C) * es, GRAFT_COPY_D2D, err))) return st;
    if ((st = be->op.rmsnorm_bwd(be->ctx, ws->dmid, b->d_ln2, ws->tmpC, ws->hmid, b->ln2, ws->rstd2, N, C, 1, err)))
        return st;
    /* mixer: hmid = h + mixer(a) */
    graft_mixer_io io;
    mixer_io(b, ws, B, T, &io);
    io.x = ws->a;
    io.dy = ws->dmid;
    io.dx = ws->da;
    io.grads = b->mg;
    if ((st = b->mx->backward(&io, err))) return mixer_failed(b, "backward", err);
    /* d h = d hmid + rmsnorm_bwd(d a) */
    if ((st = be->copy(be->ctx, dh, ws->dmid, (size_t)(N * C) * es, GRAFT_COPY_D2D, err))) return st;
    return be->op.rmsnorm_bwd(be->ctx, dh, b->d_ln1, ws->da, h, b->ln1, ws->rstd1, N, C, 1, err);
}
