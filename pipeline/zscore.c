/* Exact rolling Z-score (zscore.h).
 *
 * The running statistics are Welford's mean and M2 (sum of squared deviations), updated in O(1)
 * when an amount is appended (window not yet full) or replaces the oldest one (window full:
 * delta = new - old, mean' = mean + delta / n, M2 += delta * (new - mean' + old - mean)). Each
 * update errs by a few ulps of the magnitudes involved, so between two exact re-summations (every
 * `window` pushes: two passes over the ring, amortized O(1)) the absolute error of the mean is at
 * most about W * eps * peak and that of M2 about 4 * W * eps * peak^2, where peak is the largest
 * |amount| seen since the last re-summation. Relative to the std those errors stay below the 1e-9
 * the contract promises as long as peak / std is below ratio_limit(W) (about 1000 for W = 100:
 * a spike leaving the window, or a level far above the spread, exceeds it). When it is exceeded
 * the window is ill-conditioned and the statistics are recomputed exactly for that score, by the
 * same two-pass summation, oldest first, that a reference implementation uses, so the score is
 * always within bounds (and bit-identical to the reference where rounding matters most).
 *
 * A window whose amounts are all equal has std exactly 0, so z = 0 as the contract says, rather
 * than a huge z from rounding noise in the mean. Such windows are common (recurring payments of
 * one amount), and their std is 0 so they would fail the ratio test on every event: `run` counts
 * the newest equal amounts, so a constant window is recognized in O(1) and its statistics are set
 * exactly (mean = the amount, M2 = 0) without touching the ring.
 *
 * The hot path (zscore_update) allocates nothing and divides only where the formulas do. */
#include "zscore.h"
#include <float.h>
#include <math.h>
#include <string.h>

/* Ring slot of the i-th amount (0 = oldest); head < window and i < window. */
static uint32_t slot(uint32_t head, uint32_t i, uint32_t window)
{
    uint32_t j = head + i;
    return j >= window ? j - window : j;
}

/* True when peak / std is small enough for the running statistics to be trusted (see the file
 * comment): peak <= std * min(1e-9 / (4 W eps), 1000). The first bound covers the drift of the
 * running mean, the second (1000, a factor of a few under the 1e-9 contract) the cancellation in
 * M2 when a large amount leaves the window. Written without division; false for NaN. */
static bool well_conditioned(double peak, double std, uint32_t window)
{
    return std * 1000.0 >= peak && std * 1e-9 >= peak * (4.0 * window * DBL_EPSILON);
}

void zwin_init(struct zwin *w, double *ring_storage)
{
    memset(w, 0, sizeof *w);
    w->ring = ring_storage;
}

/* Sum, min and max of ring[from, to) added into the accumulators, in index order. */
static void scan_sum(const double *ring, uint32_t from, uint32_t to, double *sum, double *lo,
                     double *hi)
{
    double s = *sum, l = *lo, h = *hi;
    for (uint32_t i = from; i < to; i++) {
        double x = ring[i];
        s += x;
        l = x < l ? x : l;
        h = x > h ? x : h;
    }
    *sum = s;
    *lo = l;
    *hi = h;
}

/* Sum of squared deviations from mean over ring[from, to), added into acc in index order. */
static double scan_sq(const double *ring, uint32_t from, uint32_t to, double mean, double acc)
{
    for (uint32_t i = from; i < to; i++) {
        double d = ring[i] - mean;
        acc += d * d;
    }
    return acc;
}

/* Two-pass mean and M2 over the ring, oldest first (the held amounts are ring[head, end1) then,
 * when they wrap, ring[0, end2)); M2 is exactly 0 and the mean exact for a constant window.
 * *peak receives the largest |amount|. */
static void exact_m2(const struct zwin *w, uint32_t window, double *mean, double *m2, double *peak)
{
    *mean = 0;
    *m2 = 0;
    *peak = 0;
    if (w->n == 0)
        return;
    uint32_t end = w->head + w->n;
    uint32_t end1 = end > window ? window : end;
    uint32_t end2 = end > window ? end - window : 0;
    double sum = 0, lo = w->ring[w->head], hi = lo;
    scan_sum(w->ring, w->head, end1, &sum, &lo, &hi);
    scan_sum(w->ring, 0, end2, &sum, &lo, &hi);
    *peak = fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi);
    if (lo == hi) {
        *mean = lo;
        return;
    }
    double m = sum / w->n;
    double acc = scan_sq(w->ring, w->head, end1, m, 0);
    *mean = m;
    *m2 = scan_sq(w->ring, 0, end2, m, acc);
}

/* Exact two-pass population mean and std of the n held amounts, oldest first; 0 and 0 when
 * empty. */
void zwin_exact_stats(const struct zwin *w, uint32_t window, double *mean, double *std)
{
    double m2, peak;
    exact_m2(w, window, mean, &m2, &peak);
    *std = w->n ? sqrt(m2 / w->n) : 0;
}

/* Replaces the running statistics by exact ones and restarts the error accounting. */
static void resum(struct zwin *w, uint32_t window)
{
    exact_m2(w, window, &w->mean, &w->m2, &w->peak);
    w->pushes = 0;
}

/* Appends x (evicting the oldest amount when full) and updates the running statistics. */
static void push(struct zwin *w, uint32_t window, double x)
{
    if (w->n > 0 && w->ring[slot(w->head, w->n - 1, window)] == x)
        w->run += w->run < window;
    else
        w->run = 1;
    if (w->n < window) {
        w->ring[slot(w->head, w->n, window)] = x;
        w->n++;
        double delta = x - w->mean;
        w->mean += delta / w->n;
        w->m2 += delta * (x - w->mean);
    } else {
        double old = w->ring[w->head];
        w->ring[w->head] = x;
        w->head = slot(w->head, 1, window);
        double delta = x - old;
        double mean = w->mean + delta / w->n;
        w->m2 += delta * (x - mean + old - w->mean);
        w->mean = mean;
    }
    if (w->m2 < 0)
        w->m2 = 0;
    if (fabs(x) > w->peak)
        w->peak = fabs(x);
    if (++w->pushes >= window)
        resum(w, window);
}

/* round4(0.7 * min(|z|/6, 1) + 0.3 * min(amount/amount_scale, 1)), halves away from zero. */
double zscore_suspicion(double z, double amount, double amount_scale)
{
    double zt = fabs(z) / 6.0;
    double at = amount / amount_scale;
    double s = 0.7 * (zt < 1 ? zt : 1) + 0.3 * (at < 1 ? at : 1);
    return round(s * 10000.0) / 10000.0;
}

/* Population mean and std of the window as it is now, exact to the contract's bound: from the
 * running statistics when they are trusted, else re-summed first. */
static void window_stats(struct zwin *w, uint32_t window, double *mean, double *std)
{
    *mean = 0;
    *std = 0;
    if (w->n == 0)
        return;
    if (w->run >= w->n) { /* constant window: exact statistics for free */
        w->mean = w->ring[slot(w->head, w->n - 1, window)];
        w->m2 = 0;
        w->peak = fabs(w->mean);
        w->pushes = 0;
        *mean = w->mean;
        return;
    }
    double s = sqrt(w->m2 / w->n);
    if (!well_conditioned(w->peak, s, window)) {
        resum(w, window);
        s = sqrt(w->m2 / w->n);
    }
    *mean = w->mean;
    *std = s;
}

/* Scores amount against the window before the push (DESIGN.md 3.2), then pushes it. */
void zscore_update(struct zwin *w, const struct zscore_params *p, double amount,
                   struct zscore_result *out)
{
    double mean, std;
    window_stats(w, p->window, &mean, &std);
    double z = (w->n < p->min_points || std == 0) ? 0 : (amount - mean) / std;
    out->z = z;
    out->mean = mean;
    out->std = std;
    out->suspicion = zscore_suspicion(z, amount, p->amount_scale);
    out->exception = fabs(z) > p->z_threshold;
    out->immediate = out->exception && out->suspicion >= p->immediate_threshold;
    push(w, p->window, amount);
    out->history_len = w->n;
    w->last_z = z;
}

/* Copies the n held amounts, oldest first, into out. */
void zwin_values(const struct zwin *w, uint32_t window, double *out)
{
    for (uint32_t i = 0; i < w->n; i++)
        out[i] = w->ring[slot(w->head, i, window)];
}

/* Loads the newest min(n, window) of vals (oldest first), then re-sums exactly. */
void zwin_load(struct zwin *w, uint32_t window, const double *vals, uint32_t n, double last_z)
{
    uint32_t skip = n > window ? n - window : 0;
    w->head = 0;
    w->n = n - skip;
    w->run = 0;
    if (w->n > 0)
        memcpy(w->ring, vals + skip, (size_t)w->n * sizeof *vals);
    for (uint32_t i = w->n; i > 0 && w->ring[i - 1] == w->ring[w->n - 1]; i--)
        w->run++;
    resum(w, window);
    w->last_z = last_z;
}
