/* softmax_cuda_fwd_wgmma.cu: the causal GQA flash-attention forward on Hopper (sm_90a): wgmma
 * tensor-core products fed by the bulk tensor copy engine (TMA), warp-specialized. Same function,
 * arguments and epilogue as softmax_cuda.cu's mma.sync forward (FwdArgs, softmax_step, fwd_store in
 * softmax_cuda_common.cuh); sm_cuda_attn_fwd picks this one on a compute-capability-9 device when
 * the build has sm_90a code (SM_HAVE_WGMMA) and the driver has cuTensorMapEncodeTiled, unless
 * GRAFT_CUDA_ATTN_WGMMA=0.
 *
 * Reference: FlashAttention-3 (Shah et al., 2024) for the structure (producer warpgroup with TMA,
 * consumers with S = Q K^T from shared memory and P kept in registers as the A operand of P V, the
 * softmax of one tile overlapping the P V product of the previous one); graft's own code.
 * Measured on the H100 (bench/results/attention-wgmma-2026-11-24.md): 74.5% of the bf16 matmul rate
 * at T = 16384, against 39-49% for mma.sync and for wgmma kernels whose consumer threads load their
 * own tiles with cp.async behind a block barrier (three variants, removed).
 *
 * Block (384 threads): warpgroup 0 is the producer (one thread issues all copies), warpgroups 1
 * and 2 consume 64 query rows each (BM = 128). Key tiles of 128 keys pass through a 2-stage ring of
 * K and V buffers, each guarded by a "full" mbarrier (TMA transaction bytes) and an "empty" one
 * (one arrival per consumer warp once the products reading it have completed).
 *
 * Shared-memory tiles use the 128-byte swizzle (the canonical SW128 layouts of the PTX ISA, and
 * what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B): a tile of R rows x 128 bf16 is two column
 * halves [R][64]; 16-byte chunk c of row r of a half sits at r * 128 + ((c ^ (r & 7)) * 16), the
 * half's base 1024-byte aligned. Q and K are read K-major (the k16 slices 32 bytes apart inside the
 * swizzle atom, 8-row groups 1024 bytes apart); V is the same [key][d] tile read N-major
 * (transposed B: 8-key groups 1024 bytes apart, the two 64-wide d halves R * 128 bytes apart).
 */
#include <cuda.h> /* CUtensorMap and its enums only: the encoder is fetched at run time */
#include <cudaTypedefs.h>
#include <stdlib.h>
#include <string.h>

#include "softmax_cuda_common.cuh"

#define WG_BN 128 /* keys per tile */
#define WS_BM 128 /* query rows per block (two consumer warpgroups of 64) */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* the 64 accumulator operands of one m64n128 wgmma */
#define WG_ACC64 \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

/* ... and their constraints: a float d[16][4] read and written in place */
#define WG_OUT64(d) \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), \
    "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
    "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
    "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), \
    "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), \
    "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
    "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
    "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), \
    "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), \
    "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), \
    "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), \
    "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), \
    "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), \
    "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), \
    "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), \
    "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])

/* wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading byte offset
 * (used by the N-major V reads: the distance between the 64-wide halves), stride byte offset 1024
 * (8 rows of 128 bytes) */
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
/* keeps the compiler from moving reads of accumulators across the wait that completes them */
static __device__ __forceinline__ void reg_fence(float (*d)[4]) {
#pragma unroll
    for (int n = 0; n < 16; n++)
        asm volatile("" : "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])::"memory");
}

/* d (64 x 128, fp32) = (acc ? d : 0) + A B, A and B K-major in shared memory */
static __device__ __forceinline__ void wgmma_ss(float (*d)[4], uint64_t da, uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WG_ACC64 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : WG_OUT64(d)
                 : "l"(da), "l"(db), "r"(acc));
}

/* d (64 x 128, fp32) += A B, A (64 x 16 bf16) in registers, B N-major in shared memory */
static __device__ __forceinline__ void wgmma_rs_tb(float (*d)[4], const uint32_t *a, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WG_ACC64 "}, {%64, %65, %66, %67}, %68, p, "
                 "1, 1, 1;\n}\n"
                 : WG_OUT64(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

/* S = Q K^T for one warpgroup: 8 k16 steps over head_dim, both operands K-major; the Q tile has
 * WS_BM rows (its 64-wide halves WS_BM * 128 bytes apart) */
static __device__ __forceinline__ void issue_qk(float (*S)[4], uint32_t qbase, uint32_t kb) {
#pragma unroll
    for (int ks = 0; ks < 8; ks++)
        wgmma_ss(S, sw128_desc(qbase + (ks >> 2) * WS_BM * 128 + (ks & 3) * 32, 0),
                 sw128_desc(kb + (ks >> 2) * WG_BN * 128 + (ks & 3) * 32, 0), ks > 0);
}
/* O += P V: 8 k16 steps over the tile's keys, V read N-major */
static __device__ __forceinline__ void issue_pv(float (*O)[4], const uint32_t (*P)[4], uint32_t vb) {
#pragma unroll
    for (int kk = 0; kk < 8; kk++) wgmma_rs_tb(O, P[kk], sw128_desc(vb + kk * 16 * 128, WG_BN * 128));
}
static __device__ __forceinline__ void pack_p(uint32_t (*P)[4], const float (*S)[4]) {
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        P[kk][0] = pack2(S[2 * kk][0], S[2 * kk][1]);
        P[kk][1] = pack2(S[2 * kk][2], S[2 * kk][3]);
        P[kk][2] = pack2(S[2 * kk + 1][0], S[2 * kk + 1][1]);
        P[kk][3] = pack2(S[2 * kk + 1][2], S[2 * kk + 1][3]);
    }
}

/* mbarriers (shared::cta, 64-bit) and the bulk tensor copy that completes on them */
static __device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
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
/* one 64 (head_dim) x 128 (rows) box of a 4-d bf16 tensor map into an SW128 half tile; c0..c3
 * are the coordinates in the map's dimension order (innermost first) */
static __device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3,
                                                uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
                 "%5}], [%6];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}
/* the K or V tile of 128 keys from t0 (both 64-wide halves): from a (D, H, T, B) view of k / v,
 * or with CACHED from a (D, T, H, B) view of the cache */
template <bool CACHED>
static __device__ __forceinline__ void kv_load(uint32_t dst, const CUtensorMap *map, int hk, int t0, int b,
                                               uint32_t bar) {
    if (CACHED) {
        tma_load(dst, map, 0, t0, hk, b, bar);
        tma_load(dst + WG_BN * 128, map, 64, t0, hk, b, bar);
    } else {
        tma_load(dst, map, 0, hk, t0, b, bar);
        tma_load(dst + WG_BN * 128, map, 64, hk, t0, b, bar);
    }
}
/* 16 zero bytes at a shared-memory address */
static __device__ __forceinline__ void st_zero16(uint32_t addr) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0) : "memory");
}
#endif

/* grid (Hq, ceil(T/128), B), query blocks in reverse order (longest first), heads fastest so the
 * query heads of one kv group share K/V through L2 (as softmax_cuda.cu's forward).
 *
 * Consumer loop, per key tile j (FlashAttention-3's intra-warpgroup overlap): issue S_j = Q K_j^T
 * and O += P_{j-1} V_{j-1}; wait for S_j only, release K_j and run the softmax of S_j while the
 * tensor cores finish P V; then wait for it, release V_{j-1} and rescale O by the new maxima. P_j
 * goes into the next tile's product. Every consumer runs every key tile of the block (keys wholly in
 * a warpgroup's future are masked to P = 0), so the loop bounds stay block-uniform: ptxas
 * serializes wgmma issued on a thread-dependent path (C7520). setmaxnreg moves registers from the
 * producer (24) to the consumers (240).
 *
 * CACHED (sm_cuda_attn_fwd_cached, a prefill chunk continuing a KV cache): the T queries are new
 * tokens past[b] .. past[b] + T - 1 of their sequence, K and V come from the cache ((D, cap, Hkv,
 * B) maps), query row r attends keys 0 .. past[b] + r. The key tiles run to past[b] + T; rows of
 * the last tile beyond it lie inside the cache (stale or unwritten slots, possibly not finite:
 * P = 0 there, but 0 * inf is NaN), so the consumers zero them in the V tile before its P V.
 * Without a cache, rows beyond T are outside the map and TMA fills them with zeros. */
#define WS_STAGES 2
#define WS_THREADS 384
#define WS_SMEM (WS_BM * ROWB + 2 * WS_STAGES * WG_BN * ROWB + 1024 + 256)

struct WsMaps {
    CUtensorMap q, k, v; /* (D, H, T, B) views of q, k, v, boxes of 64 x 1 x 128 x 1; with CACHED
                          * k and v are (D, T, H, B) views of the caches, boxes of 64 x 128 x 1 x 1 */
};

template <bool CACHED>
__global__ void __launch_bounds__(WS_THREADS, 1) fwd_ws_kernel(const FwdArgs a, const __grid_constant__ WsMaps m) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint8_t smem_raw[];
    const int hq = blockIdx.x, mb = gridDim.y - 1 - blockIdx.y, b = blockIdx.z, hk = hq / a.n_rep;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wg = warp >> 2;
    const int T = a.T, m0 = mb * WS_BM;
    const int off = CACHED ? a.past[b] : 0, Tk = off + T; /* keys before the new tokens, keys in all */
    const int n_kb = min((off + m0 + WS_BM + WG_BN - 1) / WG_BN, (Tk + WG_BN - 1) / WG_BN);
    const uint32_t sQ = (smem_u32(smem_raw) + 1023u) & ~1023u, sK = sQ + WS_BM * ROWB,
                   sV = sK + WS_STAGES * WG_BN * ROWB, bars = sV + WS_STAGES * WG_BN * ROWB;
    /* bars: q_full, k_full[S], v_full[S], k_empty[S], v_empty[S], 8 bytes each */
    const uint32_t q_full = bars, k_full = bars + 8, v_full = k_full + 8 * WS_STAGES, k_empty = v_full + 8 * WS_STAGES,
                   v_empty = k_empty + 8 * WS_STAGES;
    if (tid == 0) {
        mbar_init(q_full, 1);
        for (int s = 0; s < WS_STAGES; s++) {
            mbar_init(k_full + 8 * s, 1);
            mbar_init(v_full + 8 * s, 1);
            mbar_init(k_empty + 8 * s, 8); /* one arrival per consumer warp */
            mbar_init(v_empty + 8 * s, 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) { /* producer */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        if (tid == 0) {
            mbar_expect_tx(q_full, WS_BM * ROWB);
            tma_load(sQ, &m.q, 0, hq, m0, b, q_full); /* (D, H, T, B) */
            tma_load(sQ + WS_BM * 128, &m.q, 64, hq, m0, b, q_full);
            for (int j = 0; j < n_kb; j++) {
                const int s = j % WS_STAGES;
                const uint32_t ph = ((j / WS_STAGES) + 1) & 1; /* parity of the consumers' previous release */
                const uint32_t kd = sK + s * WG_BN * ROWB, vd = sV + s * WG_BN * ROWB;
                if (j >= WS_STAGES) mbar_wait(k_empty + 8 * s, ph);
                mbar_expect_tx(k_full + 8 * s, WG_BN * ROWB);
                kv_load<CACHED>(kd, &m.k, hk, j * WG_BN, b, k_full + 8 * s);
                if (j >= WS_STAGES) mbar_wait(v_empty + 8 * s, ph);
                mbar_expect_tx(v_full + 8 * s, WG_BN * ROWB);
                kv_load<CACHED>(vd, &m.v, hk, j * WG_BN, b, v_full + 8 * s);
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
    const int cw = wg - 1, wi = warp & 3, g = lane >> 2, t4 = lane & 3;
    const int rmin = m0 + cw * 64 + wi * 16;
    float O[16][4], S[16][4], corr[2];
#pragma unroll
    for (int i = 0; i < 16; i++) O[i][0] = O[i][1] = O[i][2] = O[i][3] = S[i][0] = S[i][1] = S[i][2] = S[i][3] = 0.f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
    uint32_t P[8][4];
    const uint32_t qbase = sQ + cw * 64 * 128;
    mbar_wait(q_full, 0);
    for (int j = 0; j < n_kb; j++) {
        const int s = j % WS_STAGES, sp = (j + WS_STAGES - 1) % WS_STAGES;
        const uint32_t ph = (j / WS_STAGES) & 1, php = ((j - 1) / WS_STAGES) & 1;
        mbar_wait(k_full + 8 * s, ph);
        wg_fence();
        issue_qk(S, qbase, sK + s * WG_BN * ROWB);
        wg_commit();
        if (j > 0) {
            mbar_wait(v_full + 8 * sp, php);
            issue_pv(O, P, sV + sp * WG_BN * ROWB);
        }
        wg_commit();
        wg_wait<1>(); /* S_j done: K stage s is free */
        reg_fence(S);
        if (lane == 0) mbar_arrive(k_empty + 8 * s);
        softmax_step<16>(S, corr, mrow, lrow, j * WG_BN, rmin + off, Tk, a.sl, g, t4);
        wg_wait<0>();
        reg_fence(O);
        if (j > 0 && lane == 0) mbar_arrive(v_empty + 8 * sp);
        rescale_rows(O, corr);
        pack_p(P, S);
    }
    {
        const int sl_ = (n_kb - 1) % WS_STAGES, r0 = Tk - (n_kb - 1) * WG_BN;
        mbar_wait(v_full + 8 * sl_, ((n_kb - 1) / WS_STAGES) & 1);
        if (CACHED && r0 < WG_BN) { /* V rows r0.. of the last tile: past this sequence's keys */
            const uint32_t vb = sV + sl_ * WG_BN * ROWB;
            for (int i = tid - 128; i < (WG_BN - r0) * 16; i += 256) /* 16 chunks of 16 bytes a row */
                st_zero16(vb + ((i & 15) >> 3) * WG_BN * 128 + (r0 + (i >> 4)) * 128 + (i & 7) * 16);
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* visible to wgmma */
            asm volatile("bar.sync 1, 256;\n" ::: "memory");              /* both consumer warpgroups */
        }
        wg_fence();
        issue_pv(O, P, sV + sl_ * WG_BN * ROWB);
        wg_commit();
        wg_wait<0>();
        reg_fence(O);
    }
    fwd_store(a, O, mrow, lrow, b, hq, rmin, g, t4);
#endif
}

/* cuTensorMapEncodeTiled from the driver (the runtime hands out the entry point; graft links no
 * libcuda), looked up once */
static PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = NULL;
        return (PFN_cuTensorMapEncodeTiled_v12000)p;
    }();
    return fn;
}

/* a 4-d bf16 view (dims and byte strides innermost first), boxes of `box`, 128-byte swizzle */
static bool encode_view(CUtensorMap *map, const void *base, const cuuint64_t dims[4], const cuuint64_t strides[3],
                        const cuuint32_t box[4]) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = tensor_map_encoder();
    const cuuint32_t estr[4] = {1, 1, 1, 1};
    return enc && enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void *>(base), dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* the (D, H, T, B) view of a (B, T, H, D) bf16 tensor, boxes of 64 x 1 x rows x 1 */
static bool encode_map(CUtensorMap *map, const void *base, int B, int T, int H, int rows) {
    const cuuint64_t dims[4] = {(cuuint64_t)HD, (cuuint64_t)H, (cuuint64_t)T, (cuuint64_t)B};
    const cuuint64_t strides[3] = {(cuuint64_t)HD * 2, (cuuint64_t)H * HD * 2, (cuuint64_t)T * H * HD * 2};
    const cuuint32_t box[4] = {64, 1, (cuuint32_t)rows, 1};
    return encode_view(map, base, dims, strides, box);
}

/* the (D, T, H, B) view of a KV cache (element (d, u, h, b) at b * slot_stride + h * head_stride +
 * u * D + d, bf16, T = cap rows a head), boxes of 64 x rows x 1 x 1 */
static bool encode_cache_map(CUtensorMap *map, const void *base, int B, int64_t cap, int H, int64_t head_stride,
                             int64_t slot_stride, int rows) {
    const cuuint64_t dims[4] = {(cuuint64_t)HD, (cuuint64_t)cap, (cuuint64_t)H, (cuuint64_t)B};
    const cuuint64_t strides[3] = {(cuuint64_t)HD * 2, (cuuint64_t)head_stride * 2, (cuuint64_t)slot_stride * 2};
    const cuuint32_t box[4] = {64, (cuuint32_t)rows, 1, 1};
    return encode_view(map, base, dims, strides, box);
}

bool sm_cuda_fwd_wgmma_available(void) {
#if defined(SM_HAVE_WGMMA)
    const char *env = getenv("GRAFT_CUDA_ATTN_WGMMA");
    if (env && !strcmp(env, "0")) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
        return false;
    return major == 9 && tensor_map_encoder() != NULL;
#else
    return false;
#endif
}

graft_status sm_cuda_fwd_wgmma(const FwdArgs &a, int B, cudaStream_t stream, graft_err *err) {
    WsMaps m;
    if (!encode_map(&m.q, a.q, B, a.T, a.Hq, WS_BM) || !encode_map(&m.k, a.k, B, a.T, a.Hkv, WG_BN) ||
        !encode_map(&m.v, a.v, B, a.T, a.Hkv, WG_BN))
        return graft_err_set(err, GRAFT_STATUS_DEVICE,
                             "softmax_cuda_fwd_wgmma.cu: cuTensorMapEncodeTiled refused B %d, T %d, Hq %d, Hkv %d "
                             "(GRAFT_CUDA_ATTN_WGMMA=0 runs the mma.sync forward instead)",
                             B, a.T, a.Hq, a.Hkv);
    CU_CHECK(cudaFuncSetAttribute(fwd_ws_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM));
    dim3 grid((unsigned)a.Hq, (unsigned)((a.T + WS_BM - 1) / WS_BM), (unsigned)B);
    fwd_ws_kernel<false><<<grid, WS_THREADS, WS_SMEM, stream>>>(a, m);
    CU_CHECK(cudaGetLastError());
    return GRAFT_STATUS_OK;
}

graft_status sm_cuda_fwd_wgmma_cached(const FwdArgs &a, int B, int64_t cap, int64_t head_stride, int64_t slot_stride,
                                      cudaStream_t stream, graft_err *err) {
    WsMaps m;
    if (!encode_map(&m.q, a.q, B, a.T, a.Hq, WS_BM) ||
        !encode_cache_map(&m.k, a.k, B, cap, a.Hkv, head_stride, slot_stride, WG_BN) ||
        !encode_cache_map(&m.v, a.v, B, cap, a.Hkv, head_stride, slot_stride, WG_BN))
        return graft_err_set(err, GRAFT_STATUS_DEVICE,
                             "softmax_cuda_fwd_wgmma.cu: cuTensorMapEncodeTiled refused the cache view: B %d, T %d, "
                             "cap %lld, Hq %d, Hkv %d, head stride %lld, slot stride %lld (elements)",
                             B, a.T, (long long)cap, a.Hq, a.Hkv, (long long)head_stride, (long long)slot_stride);
    CU_CHECK(cudaFuncSetAttribute(fwd_ws_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM));
    dim3 grid((unsigned)a.Hq, (unsigned)((a.T + WS_BM - 1) / WS_BM), (unsigned)B);
    fwd_ws_kernel<true><<<grid, WS_THREADS, WS_SMEM, stream>>>(a, m);
    CU_CHECK(cudaGetLastError());
    return GRAFT_STATUS_OK;
}
