/* Exact rolling Z-score per account (DESIGN.md 3.2). A zwin is a ring of the last W amounts with a
 * running mean and sum of squared deviations (Welford's sliding update), re-summed exactly from
 * the ring every W pushes and whenever the rounding error of the running values could exceed the
 * contract (the largest amount seen is too large against the std: see zscore.c), so results agree
 * with a two-pass computation to 1e-9 relative. The score of an amount is taken against the window
 * *before* the amount is pushed. Value type; not thread-safe (one account is only ever touched by
 * the edge worker that owns it). */
#ifndef AETHERIS_ZSCORE_H
#define AETHERIS_ZSCORE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stdint.h>

struct zscore_params {
    uint32_t window;            /* W, >= 2 */
    uint32_t min_points;        /* below this many amounts, z = 0 */
    double z_threshold;         /* exception when |z| > this */
    double amount_scale;        /* suspicion amount term saturates here */
    double immediate_threshold; /* suspicion >= this -> immediate priority */
};

struct zwin {
    double *ring;    /* private: capacity = params.window, owned by the caller */
    uint32_t head;   /* private: index of the oldest amount */
    uint32_t n;      /* amounts held, <= window */
    uint32_t pushes; /* private: pushes since the last exact re-summation */
    uint32_t run;    /* private: how many of the newest amounts are equal (constant window test) */
    double mean;     /* private: running mean of the ring */
    double m2;       /* private: running sum of squared deviations */
    double peak;     /* private: largest |amount| since the last exact re-summation */
    double last_z;   /* z of the most recent scored amount */
};

struct zscore_result {
    double z;             /* 0 when n < min_points or std == 0 */
    double mean;          /* population mean of the window before the push (0 if empty) */
    double std;           /* population std of the window before the push (0 if empty) */
    double suspicion;     /* rounded to 4 decimals */
    uint32_t history_len; /* window length after the push */
    bool exception;       /* |z| > z_threshold */
    bool immediate;       /* exception && suspicion >= immediate_threshold */
};

/* Initializes an empty window over caller-provided storage of params->window doubles. */
void zwin_init(struct zwin *w, double *ring_storage);
/* Scores amount against the window, then pushes it (evicting the oldest when full). */
void zscore_update(struct zwin *w, const struct zscore_params *p, double amount,
                   struct zscore_result *out);
/* round4(0.7 * min(|z|/6, 1) + 0.3 * min(amount/amount_scale, 1)). */
double zscore_suspicion(double z, double amount, double amount_scale);
/* Copies the window's amounts, oldest first, into out (room for w->n values). */
void zwin_values(const struct zwin *w, uint32_t window, double *out);
/* Replaces the window's content with vals (oldest first; only the newest `window` are kept) and
 * recomputes the statistics exactly. */
void zwin_load(struct zwin *w, uint32_t window, const double *vals, uint32_t n, double last_z);
/* Exact two-pass population mean and std of the window (reference and fallback path). */
void zwin_exact_stats(const struct zwin *w, uint32_t window, double *mean, double *std);

#endif
