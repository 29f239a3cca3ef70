/* Exact rolling Z-score (zscore.h).
 *
 * The running statistics are Welford's mean and M2 (sum of squared deviations), updated in O(1)
 * when an amount is appended (window not yet full) or replaces the oldest one (window full). Such
 * updates drift by a few ulps per step, so every `window` pushes the statistics are recomputed
 * exactly from the ring (two passes, oldest first: amortized O(1)). The drift matters most when the
 * window is ill-conditioned, i.e. its std is tiny against |mean| (z then amplifies any error in the
 * mean by |mean|/std); below ILL_CONDITIONED the score uses an exact two-pass computation instead.
 * With drift bounded by W * eps * |mean| and the fallback below 1e-4, z agrees with a two-pass
 * reference to ~1e-11 relative, well inside the 1e-9 the contract promises.
 * A window whose amounts are all equal has std exactly 0 (two-pass detects min == max), so z = 0
 * as the contract says, rather than a huge z from rounding noise in the mean. */
#include "zscore.h"
#include <math.h>
#include <string.h>

#define ILL_CONDITIONED 1e-4 /* std / |mean| below this: compute exactly for this score */

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
    if (++w->pushes >= window) {
        exact_m2(w, window, &w->mean, &w->m2);
        w->pushes = 0;
    }
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
        mean = w->mean;
        std = sqrt(w->m2 / w->n);
        if (!(std >= ILL_CONDITIONED * fabs(mean)))
            zwin_exact_stats(w, p->window, &mean, &std);
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
    exact_m2(w, window, &w->mean, &w->m2);
    w->pushes = 0;
    w->last_z = last_z;
}
