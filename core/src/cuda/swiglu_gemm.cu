/* cuda/swiglu_gemm.cu: the inference MLP's gate and up products with SwiGLU in the epilogue, on
 * Hopper (sm_90a): act (N x I) = silu(g) * u, g = bf16(x gate^T), u = bf16(x up^T), in one pass.
 *
 * Why: unfused, the two products write g and u (N x 2I bf16) and swiglu_fwd reads them back to
 * write act: at a 16384-token prefill of the Qwen3-1.7B shape that is 0.6 GB a layer, 5.8 ms of the
 * 138 ms (CUPTI timeline, bench/results/prefill-fused-2026-11-24.md), the largest piece outside the
 * products and the attention. cuBLASLt has no gated epilogue, so this is graft's own GEMM. It
 * rounds g and u to bf16 before the activation, exactly where the unfused path stores them, and
 * computes silu as swiglu.cu does (graft_sigmoid); only the products' fp32 summation order may
 * differ from cuBLASLt's (test_ops_cuda: bit-identical at every shape it tries but N = 1).
 *
 * Structure (FlashAttention-3 / CUTLASS "warp-specialized persistent" style; graft's own code):
 *   - a tile is 128 rows x 128 act columns: the 128 gate rows and the 128 up rows of those columns
 *     stacked into one 256-row B operand, so one wgmma m64n256k16 per k16 step and consumer yields
 *     g in accumulator columns 0..127 and u in 128..255 of the same thread (the accumulator layout
 *     repeats every 8 columns), and the epilogue needs no data exchange;
 *   - warpgroup 0 is the producer: one thread streams x, gate and up boxes of 64 k-columns through
 *     a 4-stage ring with TMA (128-byte swizzle), each stage guarded by a "full" mbarrier
 *     (transaction bytes) and an "empty" one (one arrival per consumer warp);
 *   - warpgroups 1 and 2 each own 64 of the 128 rows (128 fp32 accumulators a thread);
 *   - persistent: one block per SM walks tiles t = blockIdx.x, + gridDim.x, ...; the producer runs
 *     ahead into the next tile while the consumers finish the epilogue, so the ring never drains;
 *   - tiles in groups of SG_GROUP_M row blocks: the blocks in flight share a few x row blocks and a
 *     few weight column blocks, which stay in L2 (x alone is 64 MB at 16384 x 2048).
 *
 * Used by block.c through op.gate_up_swiglu for inference only (training keeps g and u for the
 * backward). GRAFT_CUDA_SWIGLU_GEMM=0 turns it off (the unfused path then runs: an A/B switch).
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_util.cuh"
#include "graft/cuda_hopper.cuh"
#include "swiglu_gemm.cuh"

#define SG_BM 128 /* rows per tile (two consumer warpgroups of 64) */
#define SG_BN 128 /* act columns per tile: 128 gate + 128 up weight rows */
#define SG_BK 64  /* k columns per stage: one 128-byte swizzle row */
#define SG_STAGES 4
#define SG_THREADS 384
#define SG_GROUP_M 16
#define SG_A_BYTES (SG_BM * SG_BK * 2)
#define SG_B_BYTES (2 * SG_BN * SG_BK * 2)
#define SG_STAGE_BYTES (SG_A_BYTES + SG_B_BYTES)
#define SG_SMEM (SG_STAGES * SG_STAGE_BYTES + 1024 + 2 * SG_STAGES * 8)

struct SgMaps {
    CUtensorMap x, gate, up; /* 2-d (k, row) views, boxes of 64 x 128 */
};

/* tile t -> (row block, column block): groups of SG_GROUP_M row blocks, row block fastest */
static __device__ __forceinline__ void sg_tile(int t, int ntm, int ntn, int &mb, int &nb) {
    const int per_group = SG_GROUP_M * ntn, first = (t / per_group) * SG_GROUP_M;
    const int rows = min(SG_GROUP_M, ntm - first), r = t % per_group;
    mb = first + r % rows;
    nb = r / rows;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

/* the 128 accumulator operands of one m64n256 wgmma, and their constraints (float d[32][4]) */
#define SG_ACC128 \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define SG_OUT4(d, j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define SG_OUT128(d) \
    SG_OUT4(d, 0), SG_OUT4(d, 1), SG_OUT4(d, 2), SG_OUT4(d, 3), SG_OUT4(d, 4), SG_OUT4(d, 5), SG_OUT4(d, 6), \
    SG_OUT4(d, 7), SG_OUT4(d, 8), SG_OUT4(d, 9), SG_OUT4(d, 10), SG_OUT4(d, 11), SG_OUT4(d, 12), SG_OUT4(d, 13), \
    SG_OUT4(d, 14), SG_OUT4(d, 15), SG_OUT4(d, 16), SG_OUT4(d, 17), SG_OUT4(d, 18), SG_OUT4(d, 19), \
    SG_OUT4(d, 20), SG_OUT4(d, 21), SG_OUT4(d, 22), SG_OUT4(d, 23), SG_OUT4(d, 24), SG_OUT4(d, 25), \
    SG_OUT4(d, 26), SG_OUT4(d, 27), SG_OUT4(d, 28), SG_OUT4(d, 29), SG_OUT4(d, 30), SG_OUT4(d, 31)

/* d (64 x 256, fp32) = (acc ? d : 0) + A B, A (64 x 16) and B (256 x 16) K-major in shared memory */
static __device__ __forceinline__ void wgmma_n256(float (*d)[4], uint64_t da, uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" SG_ACC128 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : SG_OUT128(d)
                 : "l"(da), "l"(db), "r"(acc));
}

/* keeps the compiler from reading accumulators before the wait that completes them */
static __device__ __forceinline__ void sg_reg_fence(float (*d)[4]) {
#pragma unroll
    for (int n = 0; n < 32; n++)
        asm volatile("" : "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])::"memory");
}

static __device__ __forceinline__ float sg_silu_mul(float g, float u) {
    g = __bfloat162float(__float2bfloat16(g)); /* where the unfused path stores g and u */
    u = __bfloat162float(__float2bfloat16(u));
    return g * graft_sigmoid(g) * u; /* swiglu.cu's arithmetic */
}

/* a consumer warp's release of a stage: an arrival on that stage's empty barrier in this CTA and,
 * in a pair, in the peer (both producers write into it) */
static __device__ __forceinline__ void sg_release(uint32_t bar, int cl, uint32_t rank) {
    mbar_arrive(bar);
    if (cl == 2) mbar_arrive_cluster(bar, rank ^ 1u);
}

#endif

/* CL = 1: one CTA per tile. CL = 2: clusters of two CTAs on adjacent row blocks of the same column
 * block; each loads its own x box and one of the two weight boxes (rank 0 gate, rank 1 up),
 * multicast into both, so the weights cross L2 once per pair: a 128 x 256 tile needs 48 KB from L2
 * per 64-deep k step, 8 TB/s at 700 TFLOP/s, over what L2 delivers; the pair needs 32 KB a CTA. A
 * stage is then refilled only when the consumers of both CTAs have released it (the empty barrier
 * counts 8 warps x CL CTAs, remote arrivals included). */
template <int CL>
__global__ void __launch_bounds__(SG_THREADS, 1)
    swiglu_gemm_kernel(bf16 *act, int64_t ld_act, int M, int I, int K, const __grid_constant__ SgMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint8_t smem_raw[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wg = warp >> 2;
    const uint32_t ring = (hp_smem_u32(smem_raw) + 1023u) & ~1023u, bars = ring + SG_STAGES * SG_STAGE_BYTES;
    const uint32_t full = bars, empty = bars + 8 * SG_STAGES; /* 8 bytes per barrier */
    const uint32_t rank = CL > 1 ? cluster_rank() : 0;
    const int ntm = (M + SG_BM - 1) / SG_BM, ntp = (ntm + CL - 1) / CL, ntn = I / SG_BN, ntiles = ntp * ntn;
    const int nk = K / SG_BK, first = blockIdx.x / CL, step = gridDim.x / CL;
    if (tid == 0) {
        for (int s = 0; s < SG_STAGES; s++) {
            mbar_init(full + 8 * s, 1);
            mbar_init(empty + 8 * s, 8 * CL); /* one arrival per consumer warp of the cluster */
        }
        mbar_init_fence();
    }
    if (CL > 1) cluster_sync(); /* the peer's barriers exist before anything arrives on them */
    else __syncthreads();

    if (wg == 0) { /* producer */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        if (tid == 0) {
            int it = 0;
            for (int t = first; t < ntiles; t += step) {
                int mp, nb;
                sg_tile(t, ntp, ntn, mp, nb);
                const int mb = mp * CL + (int)rank; /* may pass ntm: x rows beyond M load as zeros */
                for (int kt = 0; kt < nk; kt++, it++) {
                    const int s = it % SG_STAGES;
                    if (it >= SG_STAGES) mbar_wait(empty + 8 * s, ((it / SG_STAGES) + 1) & 1);
                    const uint32_t a = ring + s * SG_STAGE_BYTES, b = a + SG_A_BYTES, bar = full + 8 * s;
                    mbar_expect_tx(bar, SG_STAGE_BYTES);
                    tma_load_2d(a, &maps.x, kt * SG_BK, mb * SG_BM, bar);
                    if (CL == 1) {
                        tma_load_2d(b, &maps.gate, kt * SG_BK, nb * SG_BN, bar);
                        tma_load_2d(b + SG_B_BYTES / 2, &maps.up, kt * SG_BK, nb * SG_BN, bar);
                    } else {
                        tma_load_2d_multicast(b + rank * (SG_B_BYTES / 2), rank ? &maps.up : &maps.gate, kt * SG_BK,
                                              nb * SG_BN, bar, (uint16_t)((1u << CL) - 1));
                    }
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
        const int cw = wg - 1, wi = warp & 3, g8 = lane >> 2, t4 = lane & 3;
        float d[32][4];
#pragma unroll
        for (int j = 0; j < 32; j++) d[j][0] = d[j][1] = d[j][2] = d[j][3] = 0.f;
        int it = 0;
        for (int t = first; t < ntiles; t += step) {
            int mp, nb;
            sg_tile(t, ntp, ntn, mp, nb);
            const int mb = mp * CL + (int)rank;
            for (int kt = 0; kt < nk; kt++, it++) {
                const int s = it % SG_STAGES;
                mbar_wait(full + 8 * s, (it / SG_STAGES) & 1);
                const uint32_t a = ring + s * SG_STAGE_BYTES + cw * 64 * 128, b = ring + s * SG_STAGE_BYTES + SG_A_BYTES;
                wg_fence();
#pragma unroll
                for (int ks = 0; ks < 4; ks++)
                    wgmma_n256(d, sw128_desc(a + ks * 32, 0), sw128_desc(b + ks * 32, 0), kt > 0 || ks > 0);
                wg_commit();
                if (kt > 0) { /* the previous stage's products are done: hand it back, to every CTA */
                    wg_wait<1>();
                    if (lane == 0) sg_release(empty + 8 * ((it - 1) % SG_STAGES), CL, rank);
                }
            }
            wg_wait<0>();
            sg_reg_fence(d);
            if (lane == 0) sg_release(empty + 8 * ((it - 1) % SG_STAGES), CL, rank);
            /* epilogue: thread (warp wi, lane) holds rows r0 and r0 + 8, columns 8 j + 2 t4 + {0, 1}:
             * gate in d[j], up in d[j + 16] */
            const int r0 = mb * SG_BM + cw * 64 + wi * 16 + g8;
            bf16 *row0 = act + (int64_t)r0 * ld_act + nb * SG_BN + 2 * t4, *row1 = row0 + 8 * ld_act;
#pragma unroll
            for (int j = 0; j < 16; j++) {
                if (r0 < M)
                    *reinterpret_cast<__nv_bfloat162 *>(row0 + 8 * j) = __floats2bfloat162_rn(
                        sg_silu_mul(d[j][0], d[j + 16][0]), sg_silu_mul(d[j][1], d[j + 16][1]));
                if (r0 + 8 < M)
                    *reinterpret_cast<__nv_bfloat162 *>(row1 + 8 * j) = __floats2bfloat162_rn(
                        sg_silu_mul(d[j][2], d[j + 16][2]), sg_silu_mul(d[j][3], d[j + 16][3]));
            }
        }
    }
    if (CL > 1) cluster_sync(); /* no CTA leaves while its peer may still write into it */
#endif
}

/* cuTensorMapEncodeTiled from the driver (the runtime hands out the entry point; graft links no
 * libcuda), looked up once */
static PFN_cuTensorMapEncodeTiled_v12000 sg_encoder(void) {
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

/* the (k, row) view of a row-major (rows x k) bf16 matrix with row stride ld, boxes of 64 x 128 */
static bool sg_map(CUtensorMap *map, const void *base, int64_t rows, int64_t k, int64_t ld) {
    cuuint64_t dims[2] = {(cuuint64_t)k, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)ld * 2};
    cuuint32_t box[2] = {SG_BK, 128}, estr[2] = {1, 1};
    return sg_encoder()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(base), dims, strides, box, estr,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* Decided once per process: 0 when the kernel does not serve this build or device, else the CTAs
 * per cluster (GRAFT_CUDA_SWIGLU_GEMM: "0" off, "1" single CTAs, default pairs). */
static int sg_state = -1, sg_sm_count = 0;

static int sg_cluster(void) {
    if (sg_state < 0) {
        sg_state = 0;
#if defined(SM_HAVE_WGMMA)
        const char *e = getenv("GRAFT_CUDA_SWIGLU_GEMM");
        int dev = 0, major = 0;
        if (!(e && !strcmp(e, "0")) && cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&sg_sm_count, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && major == 9 &&
            sg_encoder() &&
            cudaFuncSetAttribute(swiglu_gemm_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, SG_SMEM) ==
                cudaSuccess &&
            cudaFuncSetAttribute(swiglu_gemm_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, SG_SMEM) ==
                cudaSuccess)
            sg_state = e && !strcmp(e, "1") ? 1 : 2;
#endif
    }
    return sg_state;
}

extern "C" graft_status graft_cuda_gate_up_swiglu(graft_bf16 *act, const graft_bf16 *x, const graft_bf16 *gate,
                                                  const graft_bf16 *up, int64_t N, int64_t C, int64_t I, void *stream,
                                                  graft_err *err) {
    const int cl = sg_cluster();
    if (!cl || N < 1 || N > INT32_MAX / 2 || C % SG_BK || C < SG_BK || C > INT32_MAX || I % SG_BN ||
        I > INT32_MAX || !aligned16(act) || !aligned16(x) || !aligned16(gate) || !aligned16(up))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "gate_up_swiglu: N=%lld C=%lld I=%lld: not served (sm_90a, C %% 64, I %% 128, 16-byte "
                             "aligned, GRAFT_CUDA_SWIGLU_GEMM != 0)",
                             (long long)N, (long long)C, (long long)I);
    SgMaps maps;
    if (!sg_map(&maps.x, x, N, C, C) || !sg_map(&maps.gate, gate, I, C, C) || !sg_map(&maps.up, up, I, C, C))
        return graft_err_set(err, GRAFT_STATUS_DEVICE, "gate_up_swiglu: cuTensorMapEncodeTiled refused N=%lld C=%lld I=%lld",
                             (long long)N, (long long)C, (long long)I);
    const int64_t ntm = (N + SG_BM - 1) / SG_BM, tiles = ((ntm + cl - 1) / cl) * (I / SG_BN);
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.blockDim = dim3(SG_THREADS);
    cfg.dynamicSmemBytes = SG_SMEM;
    cfg.stream = graft_stream(stream);
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)cl;
    attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    /* Persistent: exactly the clusters that can be resident at once. Pairs need both SMs in one
     * GPC, and the H100's GPCs have odd SM counts, so that is fewer than SMs / 2; a grid of
     * SMs / 2 pairs left the last few to run after the others, doubling the time. */
    static int resident[3] = {0, 0, 0};
    if (!resident[cl]) {
        cfg.gridDim = dim3((unsigned)(cl * (sg_sm_count / cl)));
        int n = 0;
        cudaError_t oe = cl == 2 ? cudaOccupancyMaxActiveClusters(&n, swiglu_gemm_kernel<2>, &cfg)
                                 : cudaOccupancyMaxActiveClusters(&n, swiglu_gemm_kernel<1>, &cfg);
        resident[cl] = oe == cudaSuccess && n > 0 ? n : sg_sm_count / cl;
    }
    cfg.gridDim = dim3((unsigned)(cl * (tiles < resident[cl] ? tiles : resident[cl])));
    cudaError_t e = cl == 2 ? cudaLaunchKernelEx(&cfg, swiglu_gemm_kernel<2>, (bf16 *)act, (int64_t)I, (int)N, (int)I,
                                                 (int)C, maps)
                            : cudaLaunchKernelEx(&cfg, swiglu_gemm_kernel<1>, (bf16 *)act, (int64_t)I, (int)N, (int)I,
                                                 (int)C, maps);
    GRAFT_CUDA_TRY_NAMED(e, "swiglu_gemm_kernel");
    return GRAFT_STATUS_OK;
}
