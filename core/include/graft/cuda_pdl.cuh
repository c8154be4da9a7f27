/* graft/cuda_pdl.cuh: programmatic dependent launch (PDL, sm_90+) as the core's decode products
 * (cuda/skinny.cu, cuda/rmsnorm.cu) and the plugins' fused decode steps (plugins/rwkv7) use it:
 * one switch (GRAFT_CUDA_PDL=0 turns it off everywhere), one launch helper, one pair of device
 * calls. Header-only CUDA C++, as graft/cuda_colsum.cuh: each library keeps its own copy, no link,
 * no ABI.
 *
 * A kernel launched with graft_launch_pdl may start while the kernel before it on the stream still
 * runs, once every block of that one has called graft_pdl_trigger() or exited; it must call
 * graft_pdl_wait() before it reads anything the earlier kernel writes (it returns when that grid
 * has completed and its writes are visible). So graft_pdl_trigger() early in a kernel lets the next
 * kernel's blocks become resident and prefetch their weights meanwhile; it changes nothing for a
 * successor launched the ordinary way. Both are no-ops below sm_90.
 */
#ifndef GRAFT_CUDA_PDL_CUH
#define GRAFT_CUDA_PDL_CUH

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

static __device__ __forceinline__ void graft_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void graft_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* GRAFT_CUDA_PDL != "0" and a device of compute capability 9.0 or more; decided once per library */
static inline int graft_pdl_enabled(void) {
    static int state = -1;
    if (state < 0) {
        const char *e = getenv("GRAFT_CUDA_PDL");
        int dev = 0, major = 0;
        state = !(e && !strcmp(e, "0")) && cudaGetDevice(&dev) == cudaSuccess &&
                cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
    }
    return state;
}

/* kernel<<<grid, block, smem, s>>>(args...), with programmatic stream serialization where
 * graft_pdl_enabled() says so */
template <typename... KA, typename... A>
static cudaError_t graft_launch_pdl(void (*kernel)(KA...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                    A... args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = graft_pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

#endif
