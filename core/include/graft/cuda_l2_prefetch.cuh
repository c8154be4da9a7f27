/* graft/cuda_l2_prefetch.cuh: asks the L2 cache to fetch byte ranges of device memory ahead of
 * their use, from inside a kernel that is waiting on latency rather than bandwidth. Header-only
 * CUDA C++ (each library its own static copy, as cuda_colsum.cuh).
 *
 * Why: a batch-1 decode step streams ~100 MB of weights a layer through ~9 short kernels. The
 * products run at the memory bandwidth, but between them the attention chain (q/k norm + RoPE,
 * split-K attention, its merge: ~11 us a layer on an H100) reads almost nothing, so the DRAM sits
 * idle for a fifth of the step (bench/results/prefill-2026-11-24.md §4). Issuing the next
 * products' weights as L2 prefetches at the start of that chain fills the idle time; the products
 * then find part of their weights in L2. The bytes read from DRAM per token are the same.
 *
 * cp.async.bulk.prefetch.L2 (sm_90): one instruction hands the copy engine a whole range, so a few
 * threads cover tens of MB without holding registers or waiting. A prefetch never changes what a
 * later load returns (L2 is the point of coherence), so it is always safe; before sm_90 it is
 * skipped (a hint). Ranges must be 16-byte aligned; the tail under 16 bytes is not prefetched.
 */
#ifndef GRAFT_CUDA_L2_PREFETCH_CUH
#define GRAFT_CUDA_L2_PREFETCH_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#define L2_PREFETCH_CHUNK (64u << 10) /* bytes one instruction asks for */

/* Thread `t` of `nt` cooperating threads issues its share of [p, p + bytes) in chunks of
 * L2_PREFETCH_CHUNK (chunk c goes to thread c % nt). p NULL or bytes 0: nothing. */
static __device__ __forceinline__ void l2_prefetch_range(const void *p, size_t bytes, unsigned t, unsigned nt) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (!p || ((uintptr_t)p & 15u)) return;
    const char *base = (const char *)p;
    const size_t n = (bytes + L2_PREFETCH_CHUNK - 1) / L2_PREFETCH_CHUNK;
    for (size_t c = t; c < n; c += nt) {
        const size_t off = c * L2_PREFETCH_CHUNK;
        size_t len = bytes - off < L2_PREFETCH_CHUNK ? bytes - off : L2_PREFETCH_CHUNK;
        len &= ~(size_t)15;
        if (len)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(base + off), "r"((uint32_t)len)
                         : "memory");
    }
#else
    (void)p;
    (void)bytes;
    (void)t;
    (void)nt;
#endif
}

#endif
