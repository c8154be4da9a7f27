/* tests/test_util.h: the few helpers every C test uses. A test's exit status is its verdict
 * (STYLE.md): CHECK failures are counted and main returns test_finish(). On a numeric mismatch
 * the helpers print the tensor name, max |diff|, NMSE and the first bad index. */
#ifndef GRAFT_TEST_UTIL_H
#define GRAFT_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int test_failures_ = 0;
static int test_checks_ = 0;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        test_checks_++;                                                                          \
        if (!(cond)) {                                                                           \
            test_failures_++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                                        \
    } while (0)

/* CHECK that `haystack` contains `needle` (for asserting error messages). */
#define CHECK_CONTAINS(haystack, needle)                                                         \
    do {                                                                                         \
        test_checks_++;                                                                          \
        const char *h_ = (haystack), *n_ = (needle);                                             \
        if (!h_ || !strstr(h_, n_)) {                                                            \
            test_failures_++;                                                                    \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,          \
                    h_ ? h_ : "(null)", n_);                                                     \
        }                                                                                        \
    } while (0)

/* NMSE = ||a - ref||^2 / max(||ref||^2, n ref_ms) (an all-zero ref and ref_ms 0 compare absolute
 * ||a||^2). ref_ms > 0 judges a slice against the mean square of the tensor it comes from: a
 * slice whose own values nearly cancel (a mixer's first position can be 1e-11 where the rest is
 * 1e-1) would otherwise turn rounding into a large relative error. NaN or an unmatched Inf fails.
 * Returns 1 when nmse <= tol. */
static inline int check_close_f32_scaled(const char *name, const float *a, const float *ref, int64_t n, double tol,
                                         double ref_ms) {
    double num = 0, den = 0, maxd = 0;
    int64_t first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        if (!isfinite(a[i]) || !isfinite(ref[i])) {
            if (!(isinf(a[i]) && a[i] == ref[i]) && first_bad < 0) first_bad = i;
            continue;
        }
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > maxd) maxd = fabs(d);
        if (first_bad < 0 && fabs(d) > 1e-3 * (fabs(ref[i]) + 1e-3)) first_bad = i;
    }
    if (den < (double)n * ref_ms) den = (double)n * ref_ms;
    double nmse = den > 0 ? num / den : num;
    test_checks_++;
    int nonfinite = 0;
    for (int64_t i = 0; i < n; i++)
        if (isnan(a[i]) || isnan(ref[i])) nonfinite = 1;
    if (nonfinite || !(nmse <= tol)) {
        test_failures_++;
        fprintf(stderr, "MISMATCH %s: n=%lld max|diff|=%.3e nmse=%.3e (tol %.1e) first bad index %lld%s\n",
                name, (long long)n, maxd, nmse, tol, (long long)first_bad, nonfinite ? " (NaN)" : "");
        return 0;
    }
    return 1;
}

/* NMSE = ||a - ref||^2 / ||ref||^2 (check_close_f32_scaled without a scale) */
static inline int check_close_f32(const char *name, const float *a, const float *ref, int64_t n, double tol) {
    return check_close_f32_scaled(name, a, ref, n, tol, 0.0);
}

static inline int test_finish(const char *name) {
    if (test_failures_) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, test_failures_, test_checks_);
        return 1;
    }
    printf("%s: %d checks passed\n", name, test_checks_);
    return 0;
}

#endif
