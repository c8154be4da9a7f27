/* cuda/embedding.cu: embedding gather and deterministic scatter-add (embedding.cuh).
 *
 * Backward in three steps, all on the stream:
 *   1. pos = 0..N-1, keys = ids (bad ids -> V); cub::DeviceRadixSort::SortPairs(keys -> sorted_ids,
 *      pos -> sorted_pos) over the low ceil(log2(V + 1)) bits: stable, so positions of one id stay
 *      ascending.
 *   2. one block per sorted index i; the block where sorted_ids[i] starts a run sums the run's rows
 *      dout[sorted_pos[j]] in order (fp32), and adds the sum into dtable[id] once.
 * Workspace: sorted_ids, pos, sorted_pos, keys (N int32 each, 256-byte aligned) | cub temp storage.
 */
#include <cub/device/device_radix_sort.cuh>

#include "cuda_util.cuh"
#include "embedding.cuh"

template <int VEC>
__global__ void embedding_fwd_kernel(bf16 *out, const bf16 *table, const int32_t *ids, int64_t N, int64_t C,
                                     int64_t V) {
    const int64_t per_row = C / VEC, total = N * per_row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n = i / per_row, c = (i % per_row) * VEC;
        int64_t id = ids[n];
        bf16 *dst = out + n * C + c;
        if (VEC == 8) {
            bf16x8 w;
            if (id >= 0 && id < V) w = *reinterpret_cast<const bf16x8 *>(table + id * C + c);
            else
                for (int j = 0; j < 8; j++) w.v[j] = f2b(0.0f);
            *reinterpret_cast<bf16x8 *>(dst) = w;
        } else {
            *dst = (id >= 0 && id < V) ? table[id * C + c] : f2b(0.0f);
        }
    }
}

graft_status graft_cuda_embedding_fwd(graft_bf16 *out, const graft_bf16 *table, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, void *stream, graft_err *err) {
    if (N < 0 || C < 1 || V < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda embedding_fwd: N %lld C %lld V %lld, expected N >= 0, C, V >= 1",
                             (long long)N, (long long)C, (long long)V);
    if (N == 0) return GRAFT_STATUS_OK;
    cudaStream_t s = graft_stream(stream);
    if (C % 8 == 0 && aligned16(out) && aligned16(table)) {
        embedding_fwd_kernel<8><<<grid_for(N * C / 8, 256, 8192), 256, 0, s>>>((bf16 *)out, (const bf16 *)table, ids, N, C, V);
    } else {
        embedding_fwd_kernel<1><<<grid_for(N * C, 256, 8192), 256, 0, s>>>((bf16 *)out, (const bf16 *)table, ids, N, C, V);
    }
    GRAFT_CUDA_LAUNCHED("embedding_fwd");
    return GRAFT_STATUS_OK;
}

static size_t round256(size_t x) { return (x + 255) & ~(size_t)255; }

static size_t cub_bytes(int64_t N) {
    size_t t = 0;
    cub::DeviceRadixSort::SortPairs(NULL, t, (const int32_t *)NULL, (int32_t *)NULL, (const int32_t *)NULL,
                                    (int32_t *)NULL, (int)N);
    return t;
}

graft_status graft_cuda_embedding_bwd_workspace(int64_t N, size_t *bytes, graft_err *err) {
    if (N < 0 || N > INT32_MAX)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda embedding_bwd: N %lld, expected 0..%d", (long long)N,
                             INT32_MAX);
    *bytes = 4 * round256((size_t)N * sizeof(int32_t)) + round256(cub_bytes(N));
    return GRAFT_STATUS_OK;
}

/* pos = 0..N-1; keys = ids with every id outside [0, V) replaced by V, so the sort needs only the
 * low bits of [0, V] and bad ids form one run at the end that the sum kernel skips. */
__global__ void keys_kernel(int32_t *keys, int32_t *pos, const int32_t *ids, int64_t N, int64_t V) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x) {
        int32_t id = ids[i];
        keys[i] = (id >= 0 && id < V) ? id : (int32_t)V;
        pos[i] = (int32_t)i;
    }
}

/* One block per sorted index; only the first index of each run of equal ids works. */
__global__ void embedding_bwd_kernel(float *dtable, const bf16 *dout, const int32_t *sid, const int32_t *spos,
                                     int64_t N, int64_t C, int64_t V) {
    const int64_t i = blockIdx.x;
    const int32_t id = sid[i];
    if ((i > 0 && sid[i - 1] == id) || id < 0 || id >= V) return;
    int64_t end = i + 1;
    while (end < N && sid[end] == id) end++;
    float *row = dtable + (int64_t)id * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t j = i; j < end; j++) acc += b2f(dout[(int64_t)spos[j] * C + c]);
        row[c] += acc;
    }
}

graft_status graft_cuda_embedding_bwd(float *dtable, const graft_bf16 *dout, const int32_t *ids, int64_t N,
                                      int64_t C, int64_t V, void *workspace, size_t workspace_bytes, void *stream,
                                      graft_err *err) {
    if (C < 1 || V < 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda embedding_bwd: C %lld V %lld, expected >= 1",
                             (long long)C, (long long)V);
    size_t need = 0;
    graft_status st = graft_cuda_embedding_bwd_workspace(N, &need, err);
    if (st) return st;
    if (N == 0) return GRAFT_STATUS_OK;
    if (!workspace || workspace_bytes < need)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "cuda embedding_bwd: workspace %zu bytes, expected >= %zu",
                             workspace ? workspace_bytes : (size_t)0, need);
    cudaStream_t s = graft_stream(stream);
    char *w = (char *)workspace;
    size_t arr = round256((size_t)N * sizeof(int32_t));
    int32_t *sid = (int32_t *)w, *pos = (int32_t *)(w + arr), *spos = (int32_t *)(w + 2 * arr);
    int32_t *keys = (int32_t *)(w + 3 * arr);
    void *tmp = w + 4 * arr;
    size_t tmp_bytes = need - 4 * arr;
    if (V > INT32_MAX - 1)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "cuda embedding_bwd: V %lld, expected < %d", (long long)V,
                             INT32_MAX);
    int end_bit = 1;
    while (end_bit < 31 && ((int64_t)1 << end_bit) <= V) end_bit++;
    keys_kernel<<<grid_for(N, 256, 1024), 256, 0, s>>>(keys, pos, ids, N, V);
    GRAFT_CUDA_LAUNCHED("embedding_bwd keys");
    GRAFT_CUDA_TRY(cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, keys, sid, pos, spos, (int)N, 0, end_bit, s));
    embedding_bwd_kernel<<<(unsigned)N, C >= 256 ? 256 : 128, 0, s>>>(dtable, (const bf16 *)dout, sid, spos, N, C, V);
    GRAFT_CUDA_LAUNCHED("embedding_bwd");
    return GRAFT_STATUS_OK;
}
