/* Exact rolling Z-score per account (DESIGN.md 3.2). A window holds the last W amounts of an
 * account in a ring, in one of two representations:
 *   cents   every amount is a whole number of cents in [0, zscore_cents_max(W)]: the ring holds
 *           uint32 cents and the sums of the cents and of their squares are kept as exact
 *           integers, so mean and std come from exact arithmetic (4 bytes per amount);
 *   wide    any other amount: the ring holds doubles with a running mean and sum of squared
 *           deviations (Welford's sliding update), re-summed exactly from the ring every W pushes
 *           and whenever the rounding error of the running values could exceed the contract.
 * A window starts in cents and becomes wide (for good) at its first amount that is not a whole
 * number of cents; either way results agree with a two-pass computation to 1e-9 relative. The
 * score of an amount is taken against the window *before* the amount is pushed. Value type; not
 * thread-safe (one account is only ever touched by the edge worker that owns it).
 *
 * Two layers: struct zcore is the state without its storage (what the edge shard keeps per
 * account next to its ring, zcore_*), and struct zwin is a zcore with a pointer to storage for W
 * doubles, which is always room enough for either representation (zwin_*). */
#ifndef AETHERIS_ZSCORE_H
#define AETHERIS_ZSCORE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zscore_params {
    uint32_t window;            /* W, >= 2 */
    uint32_t min_points;        /* below this many amounts, z = 0 */
    double z_threshold;         /* exception when |z| > this */
    double amount_scale;        /* suspicion amount term saturates here */
    double immediate_threshold; /* suspicion >= this -> immediate priority */
};

/* The members of struct zcore, also reachable directly in struct zwin (w->n, w->last_z). Only n
 * and last_z are public. */
#define ZCORE_MEMBERS                                                                              \
    union {                                                                                        \
        struct {                                                                                   \
            uint64_t s1; /* cents: sum of the held amounts in cents */                             \
            uint64_t s2; /* cents: sum of their squares */                                         \
        } c;                                                                                       \
        struct {                                                                                   \
            double mean;  /* wide: running mean of the ring */                                     \
            double m2;    /* wide: running sum of squared deviations */                            \
            float peak;   /* wide: >= the largest |amount| since the last exact re-summation */    \
            uint32_t run; /* wide: how many of the newest amounts are equal */                     \
        } d;                                                                                       \
    } st;                                                                                          \
    double last_z;      /* z of the most recent scored amount */                                   \
    uint32_t n;         /* amounts held, <= window */                                              \
    uint32_t head : 31; /* index of the oldest amount */                                           \
    uint32_t wide : 1   /* 1: the ring holds doubles, 0: uint32 cents */

struct zcore {
    ZCORE_MEMBERS;
};

struct zwin {
    union {
        struct zcore core;
        struct {
            ZCORE_MEMBERS;
        };
    };
    void *ring; /* private: storage for params.window doubles, owned by the caller */
};

struct zscore_result {
    double z;             /* 0 when n < min_points or std == 0 */
    double mean;          /* population mean of the window before the push (0 if empty) */
    double std;           /* population std of the window before the push (0 if empty) */
    double suspicion;     /* of an exception, rounded to 4 decimals; 0 otherwise (nothing
                           * after the edge reads it; zscore_suspicion computes it for any z) */
    uint32_t history_len; /* window length after the push */
    bool exception;       /* |z| > z_threshold */
    bool immediate;       /* exception && suspicion >= immediate_threshold */
};

/* Largest amount in cents a cents window of `window` amounts holds exactly: min(2^32 - 1,
 * floor(sqrt((2^64 - 1) / window))), so the sum of squares cannot overflow. */
uint64_t zscore_cents_max(uint32_t window);

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

/* The same operations on a bare zcore and its ring: `ring` holds W uint32 cents while the window
 * is in cents (c->wide == 0), W doubles once it is wide. cents_max is zscore_cents_max(W). */
void zcore_init(struct zcore *c);
/* Converts a cents window into a wide one: its amounts are written as doubles into dst (room for
 * W doubles; dst may be the cents ring itself when that has room for W doubles). */
void zcore_widen(struct zcore *c, uint32_t window, const void *ring, double *dst);
/* zscore_update on a zcore. Returns false, having changed nothing, when the window is in cents and
 * amount is not a whole number of cents in [0, cents_max]: widen it then and call again. */
bool zcore_update(struct zcore *c, void *ring, const struct zscore_params *p, uint64_t cents_max,
                  double amount, struct zscore_result *out);
/* A cents score taken apart, so that a batch can push a run of events first and do the floating
 * point of their scores afterwards, in a loop whose divisions overlap: zcore_push_cents records
 * the window's integer state before the push and pushes; zcents_finish_many computes the results
 * from those records. Together they equal zcore_update on a cents window, bit for bit, except
 * that zcents_finish_many returns each z instead of storing it in last_z (the caller stores it)
 * and leaves mean and std 0 for a score that is not an exception. */
struct zcents_score {
    uint64_t s1, s2;      /* the window's sums before the push */
    uint64_t cents;       /* the amount in cents */
    double amount;        /* the amount */
    uint32_t n;           /* amounts held before the push */
    uint32_t history_len; /* after the push */
};
/* Pushes amount into a cents window, filling *sc; false, having changed nothing, when the window
 * is wide or amount is not a whole number of cents in [0, cents_max] (use zcore_update then). */
bool zcore_push_cents(struct zcore *c, void *ring, uint32_t window, uint64_t cents_max,
                      double amount, struct zcents_score *sc);
/* The scores recorded in sc[0..n) into *out[i], each z into z[i] (for the windows' last_z). Lean:
 * mean, std and suspicion are filled for an exception only (0 otherwise), which is all a batch
 * needs. Two at a time where the CPU has double-precision SIMD (SSE2), with the same results. */
void zcents_finish_many(const struct zcents_score *sc, size_t n, const struct zscore_params *p,
                        struct zscore_result *const *out, double *z);
/* zwin_values on a zcore. */
void zcore_values(const struct zcore *c, const void *ring, uint32_t window, double *out);
/* True when every one of vals[0..n) is a whole number of cents in [0, cents_max]. */
bool zcore_all_cents(const double *vals, uint32_t n, uint64_t cents_max);
/* zwin_load on a zcore: ring is W uint32 cents when `wide` is false (then every value must be
 * whole cents, see zcore_all_cents), W doubles when it is true. */
void zcore_load(struct zcore *c, void *ring, bool wide, uint32_t window, const double *vals,
                uint32_t n, double last_z);
/* zwin_exact_stats on a zcore. */
void zcore_exact_stats(const struct zcore *c, const void *ring, uint32_t window, double *mean,
                       double *std);

#endif
