/* Minimal TAP producer for the unit tests (picotest-like): ok(), is_int(), is_near(), and
 * done_testing() which prints the plan and returns the process exit code (non-zero on any
 * failure). Header-only; each test executable includes it once. */
#ifndef AETHERIS_TAP_H
#define AETHERIS_TAP_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failed;

__attribute__((format(printf, 2, 3))) static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    tap_count++;
    printf("%sok %d - ", cond ? "" : "not ", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond)
        tap_failed++;
    return cond;
}

#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!ok(g_ == w_, __VA_ARGS__))                                                            \
            printf("#   got %lld, want %lld\n", g_, w_);                                           \
    } while (0)

/* Strings equal (NULL equals only NULL). */
#define is_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int same_ = (g_ == NULL && w_ == NULL) || (g_ && w_ && strcmp(g_, w_) == 0);               \
        if (!ok(same_, __VA_ARGS__))                                                               \
            printf("#   got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");       \
    } while (0)

/* |got - want| <= tol * max(1, |want|) */
#define is_near(got, want, tol, ...)                                                               \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        double s_ = fabs(w_) > 1.0 ? fabs(w_) : 1.0;                                               \
        if (!ok(fabs(g_ - w_) <= (tol)*s_, __VA_ARGS__))                                           \
            printf("#   got %.17g, want %.17g\n", g_, w_);                                         \
    } while (0)

static int done_testing(void)
{
    printf("1..%d\n", tap_count);
    if (tap_failed)
        printf("# %d of %d failed\n", tap_failed, tap_count);
    return tap_failed ? 1 : 0;
}

#endif
