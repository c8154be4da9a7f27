/* backend.c: choosing a backend by name ("cpu", "cuda", "cuda:N"), shared by the CLI and recipes,
 * and the CUDA opener's stand-in in a build without CUDA. The tables themselves live in
 * cpu/backend_cpu.c and cuda/backend_cuda.cu. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifndef GRAFT_HAVE_CUDA
graft_status graft_backend_cuda_open(int index, const graft_backend **out, graft_err *err) {
    *out = NULL;
    return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                         "cuda:%d: this graft was built without CUDA (no nvcc at configure time); "
                         "rebuild where nvcc is found, or use the CPU", index);
}
#endif

graft_status graft_backend_open(const char *spec, const char *what, const graft_backend **out, graft_err *err) {
    *out = NULL;
    if (!spec || !strcmp(spec, "cpu")) {
        *out = graft_backend_cpu();
        return GRAFT_STATUS_OK;
    }
    long idx = 0;
    if (!strcmp(spec, "cuda")) {
        idx = 0;
    } else if (!strncmp(spec, "cuda:", 5) && spec[5] >= '0' && spec[5] <= '9') {
        char *end = NULL;
        idx = strtol(spec + 5, &end, 10);
        if (*end || idx < 0 || idx > 1023)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: device \"%s\", expected cpu, cuda or cuda:N (N 0..1023)",
                                 what, spec);
    } else {
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: device \"%s\", expected cpu, cuda or cuda:N", what, spec);
    }
    graft_status st = graft_backend_cuda_open((int)idx, out, err);
    if (st) return graft_err_prefix(err, what);
    return GRAFT_STATUS_OK;
}
