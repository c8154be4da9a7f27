/* graft/status.h: status codes and the caller-owned error buffer.
 *
 * Every fallible call in graft, in the core and in plugins, returns a graft_status and takes a
 * graft_err * that the CALLER owns. On failure the callee writes a one-line message into it with
 * graft_err_set(). The error path needs no allocation and no link against the core: the helpers
 * below are static inline, so a plugin that includes this header links only libc.
 *
 * Message form (STYLE.md): "<path>[:<line>:<col> | @ byte <n>]: <field>: <found>, expected <allowed>".
 *
 * Thread safety: a graft_err belongs to one thread at a time.
 */
#ifndef GRAFT_STATUS_H
#define GRAFT_STATUS_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum graft_status {
    GRAFT_STATUS_OK = 0,
    GRAFT_STATUS_BAD_INPUT = 1,   /* a file, recipe, config or argument is malformed          */
    GRAFT_STATUS_IO = 2,          /* open/read/write/rename failed                              */
    GRAFT_STATUS_NO_MEMORY = 3,   /* an allocation failed                                       */
    GRAFT_STATUS_UNSUPPORTED = 4, /* valid input that this build cannot serve (dtype, device)  */
    GRAFT_STATUS_DEVICE = 5,      /* a CUDA / cuBLAS call failed                                */
    GRAFT_STATUS_PLUGIN = 6,      /* a plugin was refused or failed                             */
    GRAFT_STATUS_INTERNAL = 7     /* a broken internal invariant (a bug in graft)               */
} graft_status;

#define GRAFT_ERR_MSG_BYTES 1024

/* Filled by the callee on failure; cleared (msg[0] = 0) by nobody in particular: only read it
 * after a call returned something other than GRAFT_STATUS_OK. */
typedef struct graft_err {
    graft_status status;
    char msg[GRAFT_ERR_MSG_BYTES];
} graft_err;

/* Writes a printf-style message into err (may be NULL) and returns status, so a failing path
 * reads `return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: ...", path);`. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline graft_status graft_err_set(graft_err *err, graft_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* Prepends "prefix: " to the message already in err (used to add a file or field name as an
 * error travels outwards). Returns err->status (or GRAFT_STATUS_INTERNAL when err is NULL). */
static inline graft_status graft_err_prefix(graft_err *err, const char *prefix) {
    if (!err) return GRAFT_STATUS_INTERNAL;
    char tmp[GRAFT_ERR_MSG_BYTES];
    size_t p = strlen(prefix), m = 0;
    while (m < sizeof err->msg && err->msg[m]) m++;
    if (p > sizeof tmp - 3) p = sizeof tmp - 3;
    memcpy(tmp, prefix, p);
    tmp[p] = ':';
    tmp[p + 1] = ' ';
    if (m > sizeof tmp - p - 3) m = sizeof tmp - p - 3; /* keep the terminating NUL */
    memcpy(tmp + p + 2, err->msg, m);
    tmp[p + 2 + m] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
    return err->status;
}

/* A short constant name for a status ("bad input", ...). */
static inline const char *graft_status_name(graft_status s) {
    switch (s) {
    case GRAFT_STATUS_OK: return "ok";
    case GRAFT_STATUS_BAD_INPUT: return "bad input";
    case GRAFT_STATUS_IO: return "i/o error";
    case GRAFT_STATUS_NO_MEMORY: return "out of memory";
    case GRAFT_STATUS_UNSUPPORTED: return "unsupported";
    case GRAFT_STATUS_DEVICE: return "device error";
    case GRAFT_STATUS_PLUGIN: return "plugin error";
    case GRAFT_STATUS_INTERNAL: return "internal error";
    }
    return "unknown status";
}

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_STATUS_H */
