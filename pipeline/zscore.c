/* Exact rolling Z-score (zscore.h).
 *
 * The running statistics are Welford's mean and M2 (sum of squared deviations), updated in O(1)
 * when an amount is appended (window not yet full) or replaces the oldest one (window full). Each
 * update errs by a few ulps of the magnitudes involved, so between two exact re-summations (every
 * `window` pushes: two passes over the ring, amortized O(1)) the absolute error of the mean is at
 * most about W * eps * peak and that of M2 about 4 * W * eps * peak^2, where peak is the largest
 * |amount| seen since the last re-summation. Relative to the std those errors stay below the 1e-9
 * the contract promises as long as peak / std is below ratio_limit(W) (about 1000 for W = 100:
 * a spike leaving the window, or a level far above the spread, exceeds it). When it is exceeded
 * the statistics are recomputed exactly on the spot, so the score is always within bounds.
 * A window whose amounts are all equal has std exactly 0 (two-pass detects min == max), so z = 0
 * as the contract says, rather than a huge z from rounding noise in the mean. */
#include "zscore.h"
#include <math.h>
#include <string.h>

#include <float.h>

/* The largest peak/std for which the running statistics are trusted (see the header comment):
 * min over the mean bound (1e-9 / (4 W eps)) and the M2 bound (1000, with a safety factor). */
static double ratio_limit(uint32_t window)
{
    double mean_bound = 1e-9 / (4.0 * window * DBL_EPSILON);
    return mean_bound < 1000.0 ? mean_bound : 1000.0;
}

void zwin_init(struct zwin *w, double *ring_storage)
{
    memset(w, 0, sizeof *w);
    w->ring = ring_storage;
}

/* Two-pass mean and M2 over the ring, oldest first; M2 is exactly 0 for a constant window. */
static void exact_m2(const struct zwin *w, uint32_t window, double *mean, double *m2)
{
    if (w->n == 0) {
        *mean = 0;
        *m2 = 0;
        return;
    }
    double sum = 0, lo = w->ring[w->head], hi = lo;
    for (uint32_t i = 0; i < w->n; i++) {
        double x = w->ring[(w->head + i) % window];
        sum += x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    if (lo == hi) {
        *mean = lo;
        *m2 = 0;
        return;
    }
    double m = sum / w->n, acc = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        double d = w->ring[(w->head + i) % window] - m;
        acc += d * d;
    }
    *mean = m;
    *m2 = acc;
}

void zwin_exact_stats(const struct zwin *w, uint32_t window, double *mean, double *std)
{
    double m2;
    exact_m2(w, window, mean, &m2);
    *std = w->n ? sqrt(m2 / w->n) : 0;
}

/* Replaces the running statistics by exact ones and restarts the error accounting. */
static void resum(struct zwin *w, uint32_t window)
{
    exact_m2(w, window, &w->mean, &w->m2);
    w->pushes = 0;
    w->peak = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        double a = fabs(w->ring[(w->head + i) % window]);
        w->peak = a > w->peak ? a : w->peak;
    }
}

static void push(struct zwin *w, uint32_t window, double x)
{
    if (w->n < window) {
        w->ring[(w->head + w->n) % window] = x;
        w->n++;
        double delta = x - w->mean;
        w->mean += delta / w->n;
        w->m2 += delta * (x - w->mean);
    } else {
        double old = w->ring[w->head];
        w->ring[w->head] = x;
        w->head = (w->head + 1) % window;
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

double zscore_suspicion(double z, double amount, double amount_scale)
{
    double zt = fabs(z) / 6.0;
    double at = amount / amount_scale;
    double s = 0.7 * (zt < 1 ? zt : 1) + 0.3 * (at < 1 ? at : 1);
    return round(s * 10000.0) / 10000.0;
}

void zscore_update(struct zwin *w, const struct zscore_params *p, double amount,
                   struct zscore_result *out)
{
    double mean = 0, std = 0;
    if (w->n > 0) {
        std = sqrt(w->m2 / w->n);
        if (!(std * ratio_limit(p->window) >= w->peak)) { /* also catches NaN */
            resum(w, p->window);
            std = sqrt(w->m2 / w->n);
        }
        mean = w->mean;
    }
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

void zwin_values(const struct zwin *w, uint32_t window, double *out)
{
    for (uint32_t i = 0; i < w->n; i++)
        out[i] = w->ring[(w->head + i) % window];
}

void zwin_load(struct zwin *w, uint32_t window, const double *vals, uint32_t n, double last_z)
{
    uint32_t skip = n > window ? n - window : 0;
    w->head = 0;
    w->n = n - skip;
    memcpy(w->ring, vals + skip, (size_t)w->n * sizeof *vals);
    resum(w, window);
    w->last_z = last_z;
}
