/* cuda/lmhead_loss.cu: chunked lm_head + cross-entropy + decoupled top-k KL (lmhead_loss.cuh).
 *
 * Row kernel (one 1024-thread block per row of the chunk), z = the row's fp32 logits:
 *   - top-k present: z_S (k values) and the teacher's log-probs go to shared memory, then z[S] is
 *     overwritten with -inf, so the single online pass over the row yields L_C = LSE over the
 *     complement directly (never log(e^L - e^{L_S}), which would lose 1 - Q near Q = 1);
 *     L_S, Lq = LSE(z_S / T), Lp = LSE(l / T) come from shared memory, L = lse2(L_S, L_C).
 *     Without top-k the pass gives L itself.
 *   - CE = L - z_y (z_y read before masking).
 *   - Bern, TopK and Q - P in double exactly as losses/topk_kl.c (README: "Numerical safety").
 *   - gradient pass: tile of 4 * blockDim fp32 elements loaded into registers, __syncthreads, then
 *     stored as bf16 at the same element index of the row viewed as bf16: the bf16 element i lives in
 *     fp32 element i/2 <= i, already read (this tile or an earlier one), so nothing unread is lost.
 *     Elements of S read -inf and get 0 there; a final step writes the S entries with
 *       ce_scale (softmax_i - [i = y]) + kl_scale ((Q - P) e^{z_i - L_S} + T P (q_i - p_i))
 *     and the complement got ce_scale (softmax_i - [i = y]) - kl_scale (Q - P) e^{z_i - L_C}.
 */
#include <math.h>
#include <string.h>

#include "cuda_util.cuh"
#include "lmhead_loss.cuh"

#define ROW_THREADS 1024

static size_t round256(size_t x) { return (x + 255) & ~(size_t)255; }

size_t graft_cuda_lmhead_loss_workspace_bytes(int64_t N, int64_t V, int64_t chunk_rows) {
    if (N < 0 || V < 1 || chunk_rows < 1) return 0;
    return round256((size_t)N * 4 * sizeof(double)) + (size_t)chunk_rows * (size_t)V * sizeof(float);
}

__device__ __forceinline__ double lse2d(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

struct row_args {
    float *logits;            /* (R, V) of this chunk */
    int64_t row0, V, k;
    const int32_t *labels, *topk_ids;
    const float *topk_logp, *topk_mass;
    int32_t ignore_index;
    float ce_scale, kl_scale, T;
    int want_grad;
    double *rowout;           /* (N, 4) */
};

__global__ void __launch_bounds__(ROW_THREADS) row_kernel(row_args a) {
    __shared__ float zS[GRAFT_CUDA_TOPK_MAX], lpS[GRAFT_CUDA_TOPK_MAX];
    __shared__ int32_t idS[GRAFT_CUDA_TOPK_MAX];
    __shared__ lse_pair shp[32];
    __shared__ float stat[8]; /* L, L_C, L_S, Lq, Lp, c, P, valid */
    __shared__ int bad;
    const int64_t r = blockIdx.x, n = a.row0 + r, V = a.V;
    float *z = a.logits + r * V;
    bf16 *dz = reinterpret_cast<bf16 *>(z);
    const int tid = threadIdx.x;
    const int32_t y = a.labels[n];
    const int counted = y != a.ignore_index;
    const int kl = a.topk_ids != NULL;
    const int64_t k = kl ? a.k : 0;

    if (tid == 0) bad = counted && (y < 0 || y >= V);
    __syncthreads();
    if (counted && kl)
        for (int64_t j = tid; j < k; j += blockDim.x) {
            int32_t id = a.topk_ids[n * k + j];
            idS[j] = id;
            if (id < 0 || id >= V) bad = 1;
            else {
                zS[j] = z[id];
                lpS[j] = a.topk_logp[n * k + j];
            }
        }
    __syncthreads();
    if (!counted || bad) {
        if (tid == 0) {
            double v = counted ? NAN : 0.0;
            a.rowout[n * 4 + 0] = v;
            a.rowout[n * 4 + 1] = counted ? 1.0 : 0.0;
            a.rowout[n * 4 + 2] = kl ? v : 0.0;
            a.rowout[n * 4 + 3] = kl ? v : 0.0;
        }
        if (a.want_grad) /* no reads of this row remain: zeros can go anywhere in its bf16 view */
            for (int64_t i = tid; i < V; i += blockDim.x) dz[i] = f2b(0.0f);
        return;
    }
    const float zy = z[y]; /* every thread reads it before the masking below */
    __syncthreads();
    if (kl) {
        for (int64_t j = tid; j < k; j += blockDim.x) z[idS[j]] = -INFINITY;
        __syncthreads();
    }
    lse_pair acc = {-INFINITY, 0.0f};
    if ((V & 3) == 0) {
        const float4 *z4 = reinterpret_cast<const float4 *>(z);
        for (int64_t i = tid; i < V / 4; i += blockDim.x) {
            float4 q = z4[i];
            lse_push(acc, q.x);
            lse_push(acc, q.y);
            lse_push(acc, q.z);
            lse_push(acc, q.w);
        }
    } else {
        for (int64_t i = tid; i < V; i += blockDim.x) lse_push(acc, z[i]);
    }
    acc = block_lse(acc, shp);
    if (tid == 0) {
        const double Lrest = acc.s > 0 ? (double)acc.m + log((double)acc.s) : -INFINITY;
        double L = Lrest, bern = 0.0, topk = 0.0, c = 0.0, LS = -INFINITY, Lq = -INFINITY, Lp = -INFINITY, P = 0.0;
        const double T = a.T, invT = 1.0 / T;
        if (kl) {
            double mS = -INFINITY, mq = -INFINITY, mp = -INFINITY;
            for (int64_t j = 0; j < k; j++) {
                mS = fmax(mS, (double)zS[j]);
                mq = fmax(mq, (double)zS[j] * invT);
                mp = fmax(mp, (double)lpS[j] * invT);
            }
            double sS = 0, sq = 0, sp = 0;
            for (int64_t j = 0; j < k; j++) {
                sS += exp((double)zS[j] - mS);
                sq += exp((double)zS[j] * invT - mq);
                if (lpS[j] != -INFINITY) sp += exp((double)lpS[j] * invT - mp);
            }
            LS = mS + log(sS);
            Lq = mq + log(sq);
            Lp = mp + log(sp);
            L = lse2d(LS, Lrest);
            P = (double)a.topk_mass[n];
            if (k < V) {
                const double logQ = LS - L, log1mQ = Lrest - L;
                if (P > 0.0) bern += P * (log(P) - logQ);
                if (P < 1.0) bern += (1.0 - P) * (log1p(-P) - log1mQ);
                const double Q = exp(logQ);
                c = Q <= 0.5 ? Q - P : (1.0 - P) - exp(log1mQ);
            }
            double d = 0.0;
            for (int64_t j = 0; j < k; j++) {
                const double lpj = (double)lpS[j] * invT - Lp, lqj = (double)zS[j] * invT - Lq;
                const double p = exp(lpj);
                if (p > 0) d += p * (lpj - lqj);
            }
            topk = T * T * P * d;
        }
        a.rowout[n * 4 + 0] = L - (double)zy;
        a.rowout[n * 4 + 1] = 1.0;
        a.rowout[n * 4 + 2] = bern;
        a.rowout[n * 4 + 3] = topk;
        stat[0] = (float)L;
        stat[1] = (float)Lrest;
        stat[2] = (float)LS;
        stat[3] = (float)Lq;
        stat[4] = (float)Lp;
        stat[5] = (float)c;
        stat[6] = (float)P;
    }
    __syncthreads();
    if (!a.want_grad) return;
    const float L = stat[0], LC = stat[1], cs = a.ce_scale, ks = a.kl_scale * stat[5];
    const int64_t tile = 4 * (int64_t)blockDim.x;
    const int vec = (V & 3) == 0;
    for (int64_t base = 0; base < V; base += tile) {
        const int64_t i0 = base + (int64_t)tid * 4;
        float v[4];
        if (vec && i0 < V) {
            float4 q4 = *reinterpret_cast<const float4 *>(z + i0);
            v[0] = q4.x, v[1] = q4.y, v[2] = q4.z, v[3] = q4.w;
        } else {
#pragma unroll
            for (int q = 0; q < 4; q++) v[q] = i0 + q < V ? z[i0 + q] : -INFINITY;
        }
        __syncthreads(); /* the whole tile is in registers before any bf16 lands on it */
        float g[4];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            g[q] = cs * expf(v[q] - L);
            if (kl) g[q] -= ks * expf(v[q] - LC);
            if (i0 + q == y) g[q] -= cs;
        }
        if (vec && i0 < V) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(g[0], g[1]), hi = __floats2bfloat162_rn(g[2], g[3]);
            uint2 w;
            w.x = *reinterpret_cast<uint32_t *>(&lo);
            w.y = *reinterpret_cast<uint32_t *>(&hi);
            *reinterpret_cast<uint2 *>(dz + i0) = w;
        } else {
#pragma unroll
            for (int q = 0; q < 4; q++)
                if (i0 + q < V) dz[i0 + q] = f2b(g[q]);
        }
    }
    if (!kl) return;
    __syncthreads();
    const float LS = stat[2], Lq = stat[3], Lp = stat[4], P = stat[6], T = a.T, invT = 1.0f / T;
    for (int64_t j = tid; j < k; j += blockDim.x) {
        const float zj = zS[j];
        const float q = expf(zj * invT - Lq), p = expf(lpS[j] * invT - Lp);
        float g = cs * expf(zj - L) + a.kl_scale * (stat[5] * expf(zj - LS) + T * P * (q - p));
        if (idS[j] == y) g -= cs;
        dz[idS[j]] = f2b(g);
    }
}

/* sums[0..3] = per-row values summed in row order (fixed thread stride, then block_sum). */
__global__ void sum_rows_kernel(double *sums, const double *rowout, int64_t N) {
    __shared__ double sh[32];
    for (int q = 0; q < 4; q++) {
        double acc = 0.0;
        for (int64_t n = threadIdx.x; n < N; n += blockDim.x) acc += rowout[n * 4 + q];
        acc = block_sum(acc, sh);
        if (threadIdx.x == 0) sums[q] = acc;
    }
}

static graft_matmul_args mm(void *stream, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                            const void *B, int64_t ldb, void *C, int64_t ldc, float beta) {
    graft_matmul_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = sizeof g;
    g.device = GRAFT_DEVICE_CUDA;
    g.stream = stream;
    g.dtype = GRAFT_DTYPE_BF16;
    g.trans_a = ta;
    g.trans_b = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.alpha = 1.0f;
    g.beta = beta;
    g.a = A;
    g.lda = lda;
    g.b = B;
    g.ldb = ldb;
    g.c = C;
    g.ldc = ldc;
    g.batch = 1;
    return g;
}

static graft_status prefixed(graft_status st, graft_err *err, const char *what) {
    if (err) graft_err_prefix(err, what);
    return st;
}

graft_status graft_cuda_lmhead_loss(graft_cuda_blas_t *blas, const graft_cuda_lmhead_loss_io *io, graft_err *err) {
    if (!blas || !io) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: blas or io is NULL");
    if (io->N < 0 || io->C < 1 || io->V < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: N %lld C %lld V %lld, expected N >= 0, C, V >= 1",
                             (long long)io->N, (long long)io->C, (long long)io->V);
    if (io->chunk_rows < 1 || io->chunk_rows > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: chunk_rows %lld, expected 1..%d",
                             (long long)io->chunk_rows, INT32_MAX);
    if (!io->sums) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: sums is NULL");
    if (io->N > 0 && (!io->hidden || !io->weight || !io->labels))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: hidden, weight or labels is NULL");
    if (io->topk_ids) {
        if (io->k < 1 || io->k > GRAFT_CUDA_TOPK_MAX || io->k > io->V)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: k %lld, expected 1..%lld",
                                 (long long)io->k, (long long)(io->V < GRAFT_CUDA_TOPK_MAX ? io->V : GRAFT_CUDA_TOPK_MAX));
        if (!(io->temperature > 0.0f) || isinf(io->temperature))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: temperature %g, expected > 0",
                                 (double)io->temperature);
        if (!io->topk_logp || !io->topk_mass)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: topk_ids given but topk_logp or topk_mass is NULL");
    }
    if (!isfinite(io->ce_scale) || !isfinite(io->kl_scale))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda lmhead_loss: ce_scale %g kl_scale %g, expected finite",
                             (double)io->ce_scale, (double)io->kl_scale);
    cudaStream_t s = graft_stream(io->stream);
    if (io->N == 0) {
        GRAFT_CUDA_TRY(cudaMemsetAsync(io->sums, 0, 4 * sizeof(double), s));
        return GRAFT_STATUS_OK;
    }
    const int64_t R = io->chunk_rows < io->N ? io->chunk_rows : io->N;
    const size_t need = graft_cuda_lmhead_loss_workspace_bytes(io->N, io->V, R);
    if (!io->workspace || io->workspace_bytes < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "cuda lmhead_loss: workspace %zu bytes, expected >= %zu (N %lld, V %lld, chunk_rows %lld)",
                             io->workspace ? io->workspace_bytes : (size_t)0, need, (long long)io->N, (long long)io->V,
                             (long long)R);
    double *rowout = (double *)io->workspace;
    float *logits = (float *)((char *)io->workspace + round256((size_t)io->N * 4 * sizeof(double)));
    const int want_grad = io->dhidden || io->dweight;
    graft_status st;
    const int64_t C = io->C, V = io->V;
    for (int64_t r0 = 0; r0 < io->N; r0 += R) {
        const int64_t rows = io->N - r0 < R ? io->N - r0 : R;
        const graft_bf16 *h = io->hidden + r0 * C;
        graft_matmul_args g = mm(io->stream, 0, 1, rows, V, C, h, C, io->weight, C, logits, V, 0.0f);
        if ((st = graft_cuda_matmul(blas, &g, GRAFT_DTYPE_F32, err))) return prefixed(st, err, "cuda lmhead_loss: logits");
        row_args ra;
        ra.logits = logits;
        ra.row0 = r0;
        ra.V = V;
        ra.k = io->k;
        ra.labels = io->labels;
        ra.topk_ids = io->topk_ids;
        ra.topk_logp = io->topk_logp;
        ra.topk_mass = io->topk_mass;
        ra.ignore_index = io->ignore_index;
        ra.ce_scale = io->ce_scale;
        ra.kl_scale = io->kl_scale;
        ra.T = io->temperature;
        ra.want_grad = want_grad;
        ra.rowout = rowout;
        row_kernel<<<(unsigned)rows, ROW_THREADS, 0, s>>>(ra);
        GRAFT_CUDA_LAUNCHED("lmhead_loss rows");
        if (io->dhidden) {
            g = mm(io->stream, 0, 0, rows, C, V, logits, 2 * V, io->weight, C, io->dhidden + r0 * C, C, 0.0f);
            if ((st = graft_cuda_matmul(blas, &g, GRAFT_DTYPE_BF16, err))) return prefixed(st, err, "cuda lmhead_loss: dhidden");
        }
        if (io->dweight) {
            g = mm(io->stream, 1, 0, V, C, rows, logits, 2 * V, h, C, io->dweight, C, 1.0f);
            if ((st = graft_cuda_matmul(blas, &g, GRAFT_DTYPE_F32, err))) return prefixed(st, err, "cuda lmhead_loss: dweight");
        }
    }
    sum_rows_kernel<<<1, 256, 0, s>>>(io->sums, rowout, io->N);
    GRAFT_CUDA_LAUNCHED("lmhead_loss sum");
    return GRAFT_STATUS_OK;
}
