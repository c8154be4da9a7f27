/* graft/kv.h: parsing a mixer's or loss's graft_kv settings, for plugins (static inline, no link).
 *
 * Every helper refuses bad text with a message naming the key, its location (kv.where, else the
 * origin file) and what was expected, in STYLE.md's error form. Typical use in create():
 *
 *     static const char *const known[] = {"num_heads", "expand_k", NULL};
 *     if (graft_kv_check_known(kv, n_kv, known, origin, err)) return err->status;
 *     int64_t heads = 16;
 *     if (graft_kv_int(kv, n_kv, "num_heads", 1, 4096, &heads, origin, err)) return err->status;
 */
#ifndef GRAFT_KV_H
#define GRAFT_KV_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graft/plugin.h"
#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline const char *graft_kv_where_(const graft_kv *e, const char *origin) {
    return (e && e->where) ? e->where : (origin ? origin : "(mixer config)");
}

/* The last entry with this key, or NULL. */
static inline const graft_kv *graft_kv_find(const graft_kv *kv, int64_t n, const char *key) {
    const graft_kv *found = NULL;
    for (int64_t i = 0; i < n; i++)
        if (kv[i].key && strcmp(kv[i].key, key) == 0) found = &kv[i];
    return found;
}

/* Refuses any key not in the NULL-terminated list `known`, naming it and listing the known ones. */
static inline graft_status graft_kv_check_known(const graft_kv *kv, int64_t n,
                                                const char *const *known, const char *origin,
                                                graft_err *err) {
    for (int64_t i = 0; i < n; i++) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (kv[i].key && strcmp(kv[i].key, *k) == 0) ok = 1;
        if (!ok) {
            char list[600] = "";
            size_t len = 0;
            for (const char *const *k = known; *k && len + 64 < sizeof list; k++) {
                size_t kl = strlen(*k);
                if (len + kl + 3 >= sizeof list) break;
                if (len) { memcpy(list + len, ", ", 2); len += 2; }
                memcpy(list + len, *k, kl); len += kl; list[len] = 0;
            }
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: unknown key, expected one of: %s",
                                 graft_kv_where_(&kv[i], origin), kv[i].key ? kv[i].key : "(null)", list);
        }
    }
    return GRAFT_STATUS_OK;
}

/* Integer in [lo, hi]; *out keeps its default when the key is absent. */
static inline graft_status graft_kv_int(const graft_kv *kv, int64_t n, const char *key, int64_t lo,
                                        int64_t hi, int64_t *out, const char *origin, graft_err *err) {
    const graft_kv *e = graft_kv_find(kv, n, key);
    if (!e) return GRAFT_STATUS_OK;
    char *end = NULL;
    errno = 0;
    long long v = e->value ? strtoll(e->value, &end, 10) : 0;
    if (!e->value || end == e->value || *end != 0 || errno)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\", expected an integer",
                             graft_kv_where_(e, origin), key, e->value ? e->value : "(null)");
    if (v < lo || v > hi)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %lld, expected %lld..%lld",
                             graft_kv_where_(e, origin), key, v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return GRAFT_STATUS_OK;
}

/* Finite real number in [lo, hi]. */
static inline graft_status graft_kv_double(const graft_kv *kv, int64_t n, const char *key, double lo,
                                           double hi, double *out, const char *origin, graft_err *err) {
    const graft_kv *e = graft_kv_find(kv, n, key);
    if (!e) return GRAFT_STATUS_OK;
    char *end = NULL;
    errno = 0;
    double v = e->value ? strtod(e->value, &end) : 0;
    if (!e->value || end == e->value || *end != 0 || errno || !isfinite(v))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\", expected a number",
                             graft_kv_where_(e, origin), key, e->value ? e->value : "(null)");
    if (v < lo || v > hi)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %g, expected %g..%g",
                             graft_kv_where_(e, origin), key, v, lo, hi);
    *out = v;
    return GRAFT_STATUS_OK;
}

/* true/false (also 1/0, yes/no). */
static inline graft_status graft_kv_bool(const graft_kv *kv, int64_t n, const char *key, int *out,
                                         const char *origin, graft_err *err) {
    const graft_kv *e = graft_kv_find(kv, n, key);
    if (!e) return GRAFT_STATUS_OK;
    const char *v = e->value ? e->value : "";
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) { *out = 1; return GRAFT_STATUS_OK; }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) { *out = 0; return GRAFT_STATUS_OK; }
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\", expected true or false",
                         graft_kv_where_(e, origin), key, v);
}

/* One of the NULL-terminated `allowed` strings; *out is its index. */
static inline graft_status graft_kv_enum(const graft_kv *kv, int64_t n, const char *key,
                                         const char *const *allowed, int *out, const char *origin,
                                         graft_err *err) {
    const graft_kv *e = graft_kv_find(kv, n, key);
    if (!e) return GRAFT_STATUS_OK;
    for (int i = 0; allowed[i]; i++)
        if (e->value && !strcmp(e->value, allowed[i])) { *out = i; return GRAFT_STATUS_OK; }
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\" is not an allowed value",
                         graft_kv_where_(e, origin), key, e->value ? e->value : "(null)");
}

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_KV_H */
