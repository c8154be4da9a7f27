/* cuda/prefetch.cu: L2 prefetch kernel for the decode step's side branch (prefetch.cuh says why). */
#include <stdlib.h>
#include <string.h>

#include "cuda_util.cuh"
#include "prefetch.cuh"

#define PF_THREADS 256
#define PF_LINE 128 /* bytes per prefetch: one L2 line */

struct pf_ranges {
    const char *p[4];
    size_t lines[4]; /* 128-byte lines of each range, from its line-aligned start */
    int n;
};

/* Grid-stride over the lines of every range in order; one prefetch per line and thread visit.
 * Prefetches do not hold the thread, so a block retires as soon as it has issued its share. */
template <bool LAST>
__global__ void __launch_bounds__(PF_THREADS) l2_prefetch_kernel(const __grid_constant__ pf_ranges r) {
    const size_t stride = (size_t)gridDim.x * PF_THREADS;
    for (int t = 0; t < r.n; t++)
        for (size_t i = (size_t)blockIdx.x * PF_THREADS + threadIdx.x; i < r.lines[t]; i += stride) {
            const char *a = r.p[t] + i * PF_LINE;
            if (LAST) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(a));
            else asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
        }
}

static long budget_mb = -1;
static int budget_last = 0;

extern "C" size_t graft_cuda_prefetch_budget(int *evict_last) {
    if (budget_mb < 0) {
        const char *e = getenv("GRAFT_CUDA_DECODE_L2");
        char *end = NULL;
        long v = e ? strtol(e, &end, 10) : 0;
        budget_mb = v > 0 && v <= 1024 ? v : 0;
        budget_last = budget_mb && end && (*end == 'L' || *end == 'l');
    }
    if (evict_last) *evict_last = budget_last;
    return (size_t)budget_mb << 20;
}

extern "C" graft_status graft_cuda_prefetch_l2(const void *const *p, const size_t *bytes, int n, int evict_last,
                                               void *stream, graft_err *err) {
    if (n < 1 || n > 4 || !p || !bytes)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "prefetch_l2: n = %d ranges, expected 1..4", n);
    pf_ranges r;
    memset(&r, 0, sizeof r);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!p[i] || !bytes[i]) continue;
        uintptr_t a0 = (uintptr_t)p[i] & ~(uintptr_t)(PF_LINE - 1), a1 = (uintptr_t)p[i] + bytes[i];
        r.p[r.n] = (const char *)a0;
        r.lines[r.n] = (a1 - a0 + PF_LINE - 1) / PF_LINE;
        total += r.lines[r.n++];
    }
    if (!r.n) return GRAFT_STATUS_OK;
    /* ~8 lines per thread: enough blocks to spread the issue over the SMs the attention chain
     * leaves idle, few enough to retire quickly */
    size_t blocks = (total + 8 * PF_THREADS - 1) / (8 * PF_THREADS);
    if (blocks > 264) blocks = 264;
    cudaStream_t s = graft_stream(stream);
    if (evict_last) l2_prefetch_kernel<true><<<(unsigned)blocks, PF_THREADS, 0, s>>>(r);
    else l2_prefetch_kernel<false><<<(unsigned)blocks, PF_THREADS, 0, s>>>(r);
    GRAFT_CUDA_LAUNCHED("l2_prefetch_kernel");
    return GRAFT_STATUS_OK;
}
