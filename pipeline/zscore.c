/* Exact rolling Z-score (zscore.h).
 *
 * Cents windows. Most amounts are whole numbers of cents. For those the ring holds uint32 cents
 * (half the memory of doubles) and the state is two exact integer sums, S1 = sum c and
 * S2 = sum c^2, updated in O(1) per push (add the new amount, subtract the evicted one). With
 * c <= zscore_cents_max(W), S2 fits in 64 bits, and n * S2 - S1^2 (= n^2 * variance in cents^2) is
 * computed exactly in 128 bits. The mean S1 / (100 n) and the std sqrt(n S2 - S1^2) / (100 n) are
 * then each within a few ulps of the exact values: no drift, no re-summation, and a window whose
 * amounts are all equal has n S2 - S1^2 = 0, so std is exactly 0. An amount is whole cents when
 * c = (uint64)(amount * 100 + 0.5) satisfies c / 100.0 == amount: the double nearest to c / 100
 * is then the amount itself, so the values read back (zwin_values, snapshots) are the amounts
 * that were pushed, bit for bit.
 *
 * Wide windows. At the first amount that is not whole cents (or is above the cents limit, or
 * negative, or not finite) the window becomes wide for good: the ring is rewritten as doubles and
 * the statistics are Welford's mean and M2, updated in O(1) when an amount is appended (window not
 * yet full) or replaces the oldest one (delta = new - old, mean' = mean + delta / n,
 * M2 += delta * (new - mean' + old - mean)). Each update errs by a few ulps of the magnitudes
 * involved, so between two exact re-summations (every W pushes, when the ring wraps: two passes
 * over the ring, amortized O(1)) the absolute error of the mean is at most about W * eps * peak
 * and that of M2 about 4 * W * eps * peak^2, where peak is the largest |amount| seen since the
 * last re-summation (kept as a float rounded up, which only makes the test below stricter).
 * Relative to the std those errors stay below the 1e-9 the contract promises as long as
 * peak / std is below ratio_limit(W) (about 1000 for W = 100: a spike leaving the window, or a
 * level far above the spread, exceeds it). When it is exceeded the window is ill-conditioned and
 * the statistics are recomputed exactly for that score, by the same two-pass summation, oldest
 * first, that a reference implementation uses, so the score is always within bounds (and
 * bit-identical to the reference where rounding matters most). A wide window whose amounts are
 * all equal has std exactly 0: `run` counts the newest equal amounts, so a constant window is
 * recognized in O(1) and its statistics are set exactly without touching the ring.
 *
 * A batch finishes its cents scores two at a time (zcents_finish_many): with SSE2 (every x86-64)
 * one instruction takes both square roots and one both divisions. IEEE square root and division
 * are correctly rounded in either form, so the results are the scalar code's, bit for bit.
 *
 * The rings are read and written with memcpy, so one storage can hold cents, then doubles, without
 * breaking aliasing rules. The hot path (zcore_update) allocates nothing. */
#include "zscore.h"
#include <float.h>
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Ring slot of the i-th amount (0 = oldest); head < window and i < window. */
static inline uint32_t slot(uint32_t head, uint32_t i, uint32_t window)
{
    uint32_t j = head + i;
    return j >= window ? j - window : j;
}

static inline uint32_t cents_at(const void *ring, uint32_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)ring + (size_t)i * sizeof v, sizeof v);
    return v;
}

static inline void cents_put(void *ring, uint32_t i, uint32_t v)
{
    memcpy((char *)ring + (size_t)i * sizeof v, &v, sizeof v);
}

static double double_at(const void *ring, uint32_t i)
{
    double v;
    memcpy(&v, (const char *)ring + (size_t)i * sizeof v, sizeof v);
    return v;
}

static void double_put(void *ring, uint32_t i, double v)
{
    memcpy((char *)ring + (size_t)i * sizeof v, &v, sizeof v);
}

/* The amount at ring slot i, as a double, in either representation. */
static double value_at(const struct zcore *c, const void *ring, uint32_t i)
{
    return c->wide ? double_at(ring, i) : (double)cents_at(ring, i) / 100.0;
}

uint64_t zscore_cents_max(uint32_t window)
{
    uint64_t limit = UINT64_MAX / (window ? window : 1);
    uint64_t r = (uint64_t)sqrt((double)limit);
    while (r > 0 && r > limit / r) /* the double square root may round up */
        r--;
    return r < UINT32_MAX ? r : UINT32_MAX;
}

/* *cents = the amount in cents when it is a whole number of cents in [0, cents_max]. */
static inline bool to_cents(double amount, uint64_t cents_max, uint64_t *cents)
{
    if (!(amount >= 0 && amount < 1e15))
        return false; /* also refuses NaN; below 1e15 the cents fit a uint64 */
    int64_t c = (int64_t)(amount * 100.0 + 0.5); /* signed: one instruction each way */
    *cents = (uint64_t)c;
    return (uint64_t)c <= cents_max && (double)c / 100.0 == amount;
}

/* True when peak / std is small enough for the running statistics to be trusted (see the file
 * comment): peak <= std * min(1e-9 / (4 W eps), 1000). The first bound covers the drift of the
 * running mean, the second (1000, a factor of a few under the 1e-9 contract) the cancellation in
 * M2 when a large amount leaves the window. Written without division; false for NaN. */
static bool well_conditioned(double peak, double std, uint32_t window)
{
    return std * 1000.0 >= peak && std * 1e-9 >= peak * (4.0 * window * DBL_EPSILON);
}

/* A float >= |x| (infinity beyond the float range). */
static float peak_of(double x)
{
    double a = fabs(x);
    if (!(a <= FLT_MAX))
        return INFINITY;
    float f = (float)a;
    return (double)f < a ? nextafterf(f, INFINITY) : f;
}

void zcore_init(struct zcore *c)
{
    memset(c, 0, sizeof *c);
}

void zwin_init(struct zwin *w, double *ring_storage)
{
    zcore_init(&w->core);
    w->ring = ring_storage;
}

/* Two-pass mean and M2 over the held amounts, oldest first; M2 is exactly 0 and the mean exact for
 * a constant window. *peak receives the largest |amount|. */
static void exact_m2(const struct zcore *c, const void *ring, uint32_t window, double *mean,
                     double *m2, double *peak)
{
    *mean = 0;
    *m2 = 0;
    *peak = 0;
    if (c->n == 0)
        return;
    double sum = 0, lo = value_at(c, ring, c->head), hi = lo;
    for (uint32_t i = 0; i < c->n; i++) {
        double x = value_at(c, ring, slot(c->head, i, window));
        sum += x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    *peak = fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi);
    if (lo == hi) {
        *mean = lo;
        return;
    }
    double m = sum / c->n, acc = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        double d = value_at(c, ring, slot(c->head, i, window)) - m;
        acc += d * d;
    }
    *mean = m;
    *m2 = acc;
}

/* Exact two-pass population mean and std of the n held amounts, oldest first; 0 and 0 when
 * empty. */
void zcore_exact_stats(const struct zcore *c, const void *ring, uint32_t window, double *mean,
                       double *std)
{
    double m2, peak;
    exact_m2(c, ring, window, mean, &m2, &peak);
    *std = c->n ? sqrt(m2 / c->n) : 0;
}

void zwin_exact_stats(const struct zwin *w, uint32_t window, double *mean, double *std)
{
    zcore_exact_stats(&w->core, w->ring, window, mean, std);
}

/* Wide window: replaces the running statistics by exact ones. */
static void resum(struct zcore *c, const void *ring, uint32_t window)
{
    double peak;
    exact_m2(c, ring, window, &c->st.d.mean, &c->st.d.m2, &peak);
    c->st.d.peak = peak_of(peak);
}

/* Wide window: the number of newest amounts equal to the newest one. */
static uint32_t count_run(const struct zcore *c, const void *ring, uint32_t window)
{
    uint32_t run = 0;
    if (c->n == 0)
        return 0;
    double last = double_at(ring, slot(c->head, c->n - 1, window));
    while (run < c->n && double_at(ring, slot(c->head, c->n - 1 - run, window)) == last)
        run++;
    return run;
}

/* Rewrites the cents of slots [0, count) as doubles into dst, from the last slot down, so that
 * dst may overlay the cents ring (double i covers cents 2i and 2i + 1, both already read). */
void zcore_widen(struct zcore *c, uint32_t window, const void *ring, double *dst)
{
    if (c->wide)
        return;
    uint32_t count = c->n < window ? c->n : window; /* a window not yet full has head 0 */
    for (uint32_t i = count; i > 0; i--)
        double_put(dst, i - 1, (double)cents_at(ring, i - 1) / 100.0);
    c->wide = 1;
    resum(c, dst, window);
    c->st.d.run = count_run(c, dst, window);
}

/* Cents window: appends c (evicting the oldest amount when full). */
static inline void push_cents(struct zcore *c, void *ring, uint32_t window, uint64_t cents)
{
    if (c->n < window) {
        cents_put(ring, c->n, (uint32_t)cents);
        c->n++;
    } else {
        uint64_t old = cents_at(ring, c->head);
        cents_put(ring, c->head, (uint32_t)cents);
        c->head = slot(c->head, 1, window);
        c->st.c.s1 -= old;
        c->st.c.s2 -= old * old;
    }
    c->st.c.s1 += cents;
    c->st.c.s2 += cents * cents;
}

/* Cents window: n S2 - S1^2 (n^2 times the variance in cents^2, computed exactly in 128 bits) as
 * a double; 0 for an empty window. */
static inline double cents_var(const struct zcents_score *sc)
{
    __extension__ typedef unsigned __int128 u128;
    u128 d = (u128)sc->n * sc->s2 - (u128)sc->s1 * sc->s1;
    uint64_t hi = (uint64_t)(d >> 64), lo = (uint64_t)d;
    return hi == 0 && lo <= INT64_MAX ? (double)(int64_t)lo /* the usual case, signed: cheaper */
                                      : (double)hi * 18446744073709551616.0 + (double)lo;
}

/* Cents window: z's numerator n c - S1, an exact integer, as a double. */
static inline double cents_num(const struct zcents_score *sc)
{
    return (double)((int64_t)((uint64_t)sc->n * sc->cents) - (int64_t)sc->s1);
}

/* Cents window (sc->n > 0): the z of sc->cents against the held amounts, and *root = sqrt(d).
 * With d = n S2 - S1^2 (exact, 128 bits), mean = S1 / 100n and std = sqrt(d) / 100n, so
 * (amount - mean) / std = (n c - S1) / sqrt(d): the numerator is an exact integer (|n c - S1| <=
 * 2^48, see zscore_cents_max) and z costs one square root and one division, both correctly
 * rounded, where the chain mean -> std -> z took three divisions. z is 0 when std is. */
static inline double cents_z(const struct zcents_score *sc, double *root)
{
    *root = sqrt(cents_var(sc));
    return *root > 0 ? cents_num(sc) / *root : 0;
}

/* Cents window (sc->n > 0): mean and std from cents_z's root, sharing the one reciprocal of 100n
 * (each within an ulp of the quotient). */
static inline void cents_mean_std(const struct zcents_score *sc, double root, double *mean,
                                  double *std)
{
    double inv_scale = 1.0 / (100.0 * sc->n);
    *mean = (double)(int64_t)sc->s1 * inv_scale; /* s1 < 2^49 */
    *std = root * inv_scale;
}

/* Wide window: appends x (evicting the oldest amount when full) and updates the running
 * statistics, re-summing exactly whenever the ring wraps (every W pushes). */
static void push_wide(struct zcore *c, void *ring, uint32_t window, double x)
{
    if (c->n > 0 && double_at(ring, slot(c->head, c->n - 1, window)) == x)
        c->st.d.run += c->st.d.run < window;
    else
        c->st.d.run = 1;
    if (c->n < window) {
        double_put(ring, c->n, x);
        c->n++;
        double delta = x - c->st.d.mean;
        c->st.d.mean += delta / c->n;
        c->st.d.m2 += delta * (x - c->st.d.mean);
    } else {
        double old = double_at(ring, c->head);
        double_put(ring, c->head, x);
        c->head = slot(c->head, 1, window);
        double delta = x - old;
        double mean = c->st.d.mean + delta / c->n;
        c->st.d.m2 += delta * (x - mean + old - c->st.d.mean);
        c->st.d.mean = mean;
    }
    if (c->st.d.m2 < 0)
        c->st.d.m2 = 0;
    if (fabs(x) > c->st.d.peak)
        c->st.d.peak = peak_of(x);
    if (c->n == window && c->head == 0)
        resum(c, ring, window);
}

/* Wide window: population mean and std as it is now, exact to the contract's bound: from the
 * running statistics when they are trusted, else re-summed first. */
static void wide_stats(struct zcore *c, const void *ring, uint32_t window, double *mean,
                       double *std)
{
    if (c->st.d.run >= c->n) { /* constant window: exact statistics for free */
        c->st.d.mean = double_at(ring, slot(c->head, c->n - 1, window));
        c->st.d.m2 = 0;
        c->st.d.peak = peak_of(c->st.d.mean);
        *mean = c->st.d.mean;
        *std = 0;
        return;
    }
    double s = sqrt(c->st.d.m2 / c->n);
    if (!well_conditioned(c->st.d.peak, s, window)) {
        resum(c, ring, window);
        s = sqrt(c->st.d.m2 / c->n);
    }
    *mean = c->st.d.mean;
    *std = s;
}

/* x rounded to an integer, halves away from zero, for |x| < 2^52 (round() without the libm call):
 * x - trunc(x) is exact there. */
static inline double round_half_away(double x)
{
    double a = fabs(x);
    double t = (double)(int64_t)a;
    t += a - t >= 0.5;
    return x < 0 ? -t : t;
}

/* round4(0.7 * min(|z|/6, 1) + 0.3 * min(amount/amount_scale, 1)), halves away from zero. */
static inline double suspicion(double z, double amount, double amount_scale)
{
    double zt = fabs(z) * (1.0 / 6.0); /* within an ulp of |z| / 6, one division shorter */
    double at = amount / amount_scale;
    double s = 0.7 * (zt < 1 ? zt : 1) + 0.3 * (at < 1 ? at : 1);
    double x = s * 10000.0;
    return (fabs(x) < 4503599627370496.0 ? round_half_away(x) : round(x)) / 10000.0;
}

double zscore_suspicion(double z, double amount, double amount_scale)
{
    return suspicion(z, amount, amount_scale);
}

/* The result of a score from the window's statistics before the push (z already 0 below
 * min_points). */
static inline void fill_result(const struct zscore_params *p, double amount, double z, double mean,
                               double std, uint32_t history_len, struct zscore_result *out)
{
    out->z = z;
    out->mean = mean;
    out->std = std;
    out->exception = fabs(z) > p->z_threshold;
    out->suspicion = out->exception ? suspicion(z, amount, p->amount_scale) : 0;
    out->immediate = out->exception && out->suspicion >= p->immediate_threshold;
    out->history_len = history_len;
}

/* Records what the score needs (the integer state before the push), then pushes. */
static inline bool push_cents_scored(struct zcore *c, void *ring, uint32_t window,
                                     uint64_t cents_max, double amount, struct zcents_score *sc)
{
    uint64_t cents;
    if (c->wide || !to_cents(amount, cents_max, &cents))
        return false;
    *sc = (struct zcents_score){c->st.c.s1, c->st.c.s2, cents, amount, c->n, 0};
    push_cents(c, ring, window, cents);
    sc->history_len = c->n;
    return true;
}

/* The result of a recorded cents score from its root and z (cents_z's, both 0 for an empty
 * window); mean and std only for an exception unless `full`. Returns z. */
static inline double finish_rooted(const struct zcents_score *sc, const struct zscore_params *p,
                                   bool full, double root, double z, struct zscore_result *out)
{
    double mean = 0, std = 0;
    if (sc->n < p->min_points)
        z = 0;
    if (sc->n > 0 && (full || fabs(z) > p->z_threshold))
        cents_mean_std(sc, root, &mean, &std);
    fill_result(p, sc->amount, z, mean, std, sc->history_len, out);
    return z;
}

/* The result of a recorded cents score; mean and std only for an exception unless `full`. */
static inline double finish_cents(const struct zcents_score *sc, const struct zscore_params *p,
                                  bool full, struct zscore_result *out)
{
    double root = 0, z = 0;
    if (sc->n > 0)
        z = cents_z(sc, &root);
    return finish_rooted(sc, p, full, root, z, out);
}

bool zcore_push_cents(struct zcore *c, void *ring, uint32_t window, uint64_t cents_max,
                      double amount, struct zcents_score *sc)
{
    return push_cents_scored(c, ring, window, cents_max, amount, sc);
}

/* Two scores at a time where SSE2 is there (every x86-64): cents_z's square root and division
 * for both in one instruction each, with the same IEEE correct rounding as the scalar ones (so
 * the results are bit-identical), z = 0 where the root is (also an empty window: 0 / 0 is masked
 * away); the scalar loop does the rest, and everything elsewhere. */
void zcents_finish_many(const struct zcents_score *sc, size_t n, const struct zscore_params *p,
                        struct zscore_result *const *out, double *z)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 2 <= n; i += 2) {
        __m128d root = _mm_sqrt_pd(_mm_set_pd(cents_var(&sc[i + 1]), cents_var(&sc[i])));
        __m128d q = _mm_div_pd(_mm_set_pd(cents_num(&sc[i + 1]), cents_num(&sc[i])), root);
        q = _mm_and_pd(q, _mm_cmpgt_pd(root, _mm_setzero_pd()));
        double r[2], zz[2];
        _mm_storeu_pd(r, root);
        _mm_storeu_pd(zz, q);
        z[i] = finish_rooted(&sc[i], p, false, r[0], zz[0], out[i]);
        z[i + 1] = finish_rooted(&sc[i + 1], p, false, r[1], zz[1], out[i + 1]);
    }
#endif
    for (; i < n; i++)
        z[i] = finish_cents(&sc[i], p, false, out[i]);
}

/* Scores amount against the window before the push (DESIGN.md 3.2), then pushes it; false (and
 * nothing done) when the window is in cents and amount is not whole cents. */
bool zcore_update(struct zcore *c, void *ring, const struct zscore_params *p, uint64_t cents_max,
                  double amount, struct zscore_result *out)
{
    if (!c->wide) {
        struct zcents_score sc;
        if (!push_cents_scored(c, ring, p->window, cents_max, amount, &sc))
            return false;
        c->last_z = finish_cents(&sc, p, true, out);
        return true;
    }
    double mean = 0, std = 0, z = 0;
    if (c->n > 0) {
        wide_stats(c, ring, p->window, &mean, &std);
        z = std == 0 ? 0 : (amount - mean) / std;
    }
    if (c->n < p->min_points)
        z = 0;
    push_wide(c, ring, p->window, amount);
    fill_result(p, amount, z, mean, std, c->n, out);
    c->last_z = z;
    return true;
}

/* The zwin's storage has room for W doubles, so it widens in place. */
void zscore_update(struct zwin *w, const struct zscore_params *p, double amount,
                   struct zscore_result *out)
{
    uint64_t cents_max = zscore_cents_max(p->window);
    if (!zcore_update(&w->core, w->ring, p, cents_max, amount, out)) {
        zcore_widen(&w->core, p->window, w->ring, w->ring);
        zcore_update(&w->core, w->ring, p, cents_max, amount, out);
    }
}

/* Copies the n held amounts, oldest first, into out. */
void zcore_values(const struct zcore *c, const void *ring, uint32_t window, double *out)
{
    for (uint32_t i = 0; i < c->n; i++)
        out[i] = value_at(c, ring, slot(c->head, i, window));
}

void zwin_values(const struct zwin *w, uint32_t window, double *out)
{
    zcore_values(&w->core, w->ring, window, out);
}

bool zcore_all_cents(const double *vals, uint32_t n, uint64_t cents_max)
{
    uint64_t cents;
    for (uint32_t i = 0; i < n; i++)
        if (!to_cents(vals[i], cents_max, &cents))
            return false;
    return true;
}

/* Loads the newest min(n, window) of vals (oldest first), with exact statistics. */
void zcore_load(struct zcore *c, void *ring, bool wide, uint32_t window, const double *vals,
                uint32_t n, double last_z)
{
    uint32_t skip = n > window ? n - window : 0;
    uint64_t cents_max = zscore_cents_max(window);
    zcore_init(c);
    c->wide = wide;
    for (uint32_t i = skip; i < n; i++) {
        uint64_t cents;
        if (wide) {
            double_put(ring, c->n++, vals[i]);
        } else if (to_cents(vals[i], cents_max, &cents)) {
            push_cents(c, ring, window, cents);
        }
    }
    if (wide) {
        resum(c, ring, window);
        c->st.d.run = count_run(c, ring, window);
    }
    c->last_z = last_z;
}

void zwin_load(struct zwin *w, uint32_t window, const double *vals, uint32_t n, double last_z)
{
    uint32_t skip = n > window ? n - window : 0;
    bool wide = n > skip && !zcore_all_cents(vals + skip, n - skip, zscore_cents_max(window));
    zcore_load(&w->core, w->ring, wide, window, vals, n, last_z);
}
