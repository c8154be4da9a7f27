/* graft/cuda_hopper.cuh: the Hopper (sm_90a) building blocks graft's warp-specialized kernels share,
 * header-only device code for the core (cuda/swiglu_gemm.cu) and the plugins
 * (plugins/softmax/softmax_cuda_fwd_wgmma.cu), which link nothing of the core but may include its
 * headers (STYLE.md "The plugin ABI").
 *
 * - mbarriers (shared::cta, 64-bit): init, arrive, arrive with expected transaction bytes, wait
 *   on a phase parity;
 * - bulk tensor copies (TMA) of 2-d and 4-d boxes that complete on an mbarrier, and the 2-d
 *   multicast to the CTAs of a cluster; cluster rank, remote arrival, cluster barrier;
 * - wgmma: the shared-memory matrix descriptor for the 128-byte swizzle, fence/commit/wait.
 *
 * Shared-memory tiles use the 128-byte swizzle (the canonical SW128 layouts of the PTX ISA, what
 * TMA writes with CU_TENSOR_MAP_SWIZZLE_128B): a tile of R rows x 64 bf16 (128 bytes a row),
 * 16-byte chunk c of row r at r * 128 + ((c ^ (r & 7)) * 16), its base 1024-byte aligned. K-major
 * operands step k16 slices 32 bytes apart inside the swizzle atom, 8-row groups 1024 bytes apart.
 *
 * Everything here compiles to nothing outside sm_90a device code (__CUDA_ARCH_FEAT_SM90_ALL), so
 * the files that include it build for any architecture list; callers pick these kernels at run time
 * on compute capability 9 devices only.
 */
#ifndef GRAFT_CUDA_HOPPER_CUH
#define GRAFT_CUDA_HOPPER_CUH

#include <cuda.h> /* CUtensorMap */
#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

static __device__ __forceinline__ uint32_t hp_smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* makes the initialized barriers visible to the async proxy (TMA) before first use */
static __device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
static __device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n.reg .pred P1;\nLAB_WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
                 "@!P1 bra LAB_WAIT;\n}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}

/* box (c0 innermost, c1) of a 2-d tensor map into shared memory at dst; completes on bar */
static __device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
                 "[%4];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}
/* ... of a 4-d one (c0 innermost) */
static __device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3,
                                                   uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
                 "%5}], [%6];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}

/* ... multicast: the same box lands at offset dst of every CTA of the cluster in cta_mask, each
 * completing on its own mbarrier at offset bar */
static __device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap *map, int c0, int c1,
                                                             uint32_t bar, uint16_t cta_mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], "
                 "[%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar), "h"(cta_mask)
                 : "memory");
}

/* thread-block clusters: this CTA's rank, an arrival on the mbarrier at offset bar of CTA `rank`,
 * and a barrier over every thread of the cluster. The arrival has the default CTA-scope release:
 * it only says "my reads of that stage are done" (wgmma_wait already completed them); a
 * cluster-scope release fence per arrival made a consumer warp wait ~1 us each time (measured:
 * the swiglu_gemm pairs ran at half speed with it). */
static __device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
static __device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(bar), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}
static __device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

/* wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading byte offset
 * (only N-major reads use it: the distance between 64-wide halves), stride byte offset 1024 (8 rows
 * of 128 bytes) */
static __device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           (1ull << 62);
}

static __device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
static __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */

#endif /* GRAFT_CUDA_HOPPER_CUH */
