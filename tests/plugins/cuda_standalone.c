/* tests/plugins/cuda_standalone.c: the CUDA-vs-CPU checks of cuda_vs_cpu.c for a GPU machine
 * without graft's dependencies (built by cuda_standalone.sh; the in-tree test is
 * conformance_cuda.c). Runs every case line of a configs/cuda/<M>.txt file.
 *
 *   cuda_conformance PLUGIN.so CASES.txt [--seed N|random]
 *
 * Each case draws its inputs from the seed printed on its line: by default cvc_case_seed of the
 * plugin's name and the case text (the seed graft_conformance_cuda uses, fixed across runs, so two
 * runs that differ in a switch compare line for line); with --seed N, case k (from 0) uses N + k;
 * --seed random takes N from the clock.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_vs_cpu.h"
#include "standalone_host.h"

static cudaStream_t g_s;
static void *d_alloc(size_t b) {
    void *p = NULL;
    return cudaMalloc(&p, b ? b : 1) == cudaSuccess ? p : NULL;
}
static void d_free(void *p) { cudaFree(p); }
static int h2d(void *d, const void *s, size_t b) {
    return cudaMemcpyAsync(d, s, b, cudaMemcpyHostToDevice, g_s) != cudaSuccess || cudaStreamSynchronize(g_s) != cudaSuccess;
}
static int d2h(void *d, const void *s, size_t b) {
    return cudaMemcpyAsync(d, s, b, cudaMemcpyDeviceToHost, g_s) != cudaSuccess || cudaStreamSynchronize(g_s) != cudaSuccess;
}
static int d_zero(void *d, size_t b) {
    return cudaMemsetAsync(d, 0, b, g_s) != cudaSuccess || cudaStreamSynchronize(g_s) != cudaSuccess;
}
static int d_sync(char *msg, size_t size) {
    cudaError_t e = cudaStreamSynchronize(g_s);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) snprintf(msg, size, "%s", cudaGetErrorString(e));
    return e != cudaSuccess;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--seed"))) {
        fprintf(stderr, "usage: cuda_conformance PLUGIN.so CASES.txt [--seed N|random]\n");
        return 2;
    }
    int fixed = argc == 5; /* one seed N for the file: case k draws from N + k */
    uint64_t seed = 0;
    if (fixed && cvc_seed_arg("cuda_conformance", argv[4], &seed)) return 2;
    void *stream = NULL;
    const graft_host *host = sh_open(&stream);
    if (!host) return 77;
    g_s = (cudaStream_t)stream;
    const graft_mixer *m = sh_load(argv[1]);
    if (!m) return 1;
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    cvc_env env = {host, d_alloc, d_free, h2d, d2h, d_zero, d_sync, stream};
    char line[1024];
    int fails = 0, cases = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        cvc_case *c = cvc_case_parse(line);
        if (!c) {
            fails++;
            continue;
        }
        const uint64_t cs = fixed ? seed + (uint64_t)cases : cvc_case_seed(m->name, line);
        printf("%s case '%s' seed %llu\n", m->name, line, (unsigned long long)cs);
        int fl = cvc_run(m, &env, c, cs);
        printf("  -> %s\n", fl ? "FAIL" : "ok");
        fails += fl;
        cases++;
        cvc_case_free(c);
    }
    fclose(f);
    printf("%s %s: %d case(s), %d failure(s)\n", fails ? "FAIL" : "OK", m->name, cases, fails);
    return fails ? 1 : 0;
}
