/* conformance_cuda.c: the CUDA-vs-CPU part of the conformance suite, in-tree (ctest
 * conformance_cuda.<M>.<i>, cases in configs/cuda/<M>.txt). Loads the plugin with the core's
 * loader, opens the core's CUDA backend (which binds cuBLASLt to the host table's matmul) and runs
 * cuda_vs_cpu.c's checks. Exits 77 (skipped) when no CUDA device is present or the plugin has no
 * CUDA path in this build; 1 on any mismatch.
 *
 *   graft_conformance_cuda --plugin NAME --case 'key=value ...' [--seed N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cuda_vs_cpu.h"
#include "plugin_loader.h"

static const graft_backend *g_be;

static void *d_alloc(size_t bytes) { return g_be->alloc(g_be->ctx, bytes); }
static void d_free(void *p) { g_be->free(g_be->ctx, p); }
static int copy(void *dst, const void *src, size_t bytes, int kind) {
    graft_err err;
    memset(&err, 0, sizeof err);
    if (g_be->copy(g_be->ctx, dst, src, bytes, kind, &err) || g_be->sync(g_be->ctx, &err)) {
        fprintf(stderr, "copy: %s\n", err.msg);
        return 1;
    }
    return 0;
}
static int h2d(void *dst, const void *src, size_t bytes) { return copy(dst, src, bytes, GRAFT_COPY_H2D); }
static int d2h(void *dst, const void *src, size_t bytes) { return copy(dst, src, bytes, GRAFT_COPY_D2H); }
static int d_zero(void *dst, size_t bytes) {
    graft_err err;
    memset(&err, 0, sizeof err);
    if (g_be->zero(g_be->ctx, dst, bytes, &err)) {
        fprintf(stderr, "zero: %s\n", err.msg);
        return 1;
    }
    return 0;
}
static int d_sync(char *msg, size_t size) {
    graft_err err;
    memset(&err, 0, sizeof err);
    if (g_be->sync(g_be->ctx, &err)) {
        snprintf(msg, size, "%s", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *plugin = NULL, *case_text = "";
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--plugin") && i + 1 < argc) plugin = argv[++i];
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) case_text = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: graft_conformance_cuda --plugin NAME --case 'k=v ...' [--seed N]\n");
            return 2;
        }
    }
    if (!plugin) return 2;
    printf("graft_conformance_cuda --plugin %s --case '%s' --seed %llu\n", plugin, case_text,
           (unsigned long long)seed);
    graft_err err;
    memset(&err, 0, sizeof err);
    if (graft_backend_open("cuda", "conformance_cuda", &g_be, &err)) {
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    graft_loaded_plugin *lp = NULL;
    if (graft_plugin_load(plugin, GRAFT_PLUGIN_MIXER, &lp, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    const graft_mixer *m = graft_plugin_mixer(lp);
    if (!(m->caps & GRAFT_MIXER_CAP_CUDA)) {
        printf("skipped: %s has no CUDA path in this build (caps 0x%x)\n", m->name, m->caps);
        graft_plugin_unload(lp);
        return 77;
    }
    graft_mixer_cfg *cfg = NULL;
    int64_t B = 0, T = 0;
    cvc_case *c = cvc_case_parse(case_text, &cfg, &B, &T);
    if (!c) {
        graft_plugin_unload(lp);
        return 2;
    }
    cvc_env env = {graft_plugin_host(lp), d_alloc, d_free, h2d, d2h, d_zero, d_sync, g_be->stream};
    int fails = cvc_run(m, &env, cfg, B, T, seed);
    cvc_case_free(c);
    graft_plugin_unload(lp);
    printf("%s: %d failure(s)\n", fails ? "FAIL" : "OK", fails);
    return fails ? 1 : 0;
}
