/* aetheris-backtest: scores a transactions CSV offline with the daemon's own edge code, so
 * thresholds can be tuned on history before they go live.
 *
 * Same code, same options: the configuration is loaded by the daemon's config_load (defaults,
 * --config FILE, AETHERIS_* variables, --name=value flags: --z-threshold, --window-size,
 * --detector, ... mean exactly what they mean to aetherisd), the scoring parameters come from
 * detector_config, every row becomes an event through the daemon's event parser (csv_row_event,
 * as aetheris-seed does), repeated transactionIds are dropped by the daemon's dedupe module with
 * the same dedupe_capacity, and each event is scored by edge_shard_score. One shard holds every
 * account: the daemon's sharding only spreads accounts over threads, and one account's events
 * are scored in arrival order either way, so the result equals the daemon's for the same rows in
 * the same order (tests/e2e/test_backtest.py checks it against a live daemon).
 *
 * Input: the original file (header optional) or, with --txid-col/--account-col/--amount-col/
 * --time-col, any comma-separated file whose header names those columns (csvrow.h). Output:
 * per-row scores (--out, CSV or NDJSON), a JSON summary line (rows, accounts, exceptions by
 * priority, a threshold sweep) on stdout (on stderr when the rows go to stdout), and a readable
 * table on stderr. With --labels (an aetheris-gen labels file: transaction_id,kind,episode, one
 * line per data row in the same order) it also measures precision, recall and F1.
 *
 * Memory is bounded by the accounts (one window each) and dedupe_capacity, not by the rows.
 * Exit: 0 done, 1 output error, 2 usage or input error. */
#include "fmacros.h"
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "csvrow.h"
#include "dedupe.h"
#include "detector.h"
#include "edge.h"
#include "event.h"
#include "log.h"
#include "xmalloc.h"

#define BT_DEFAULT_FILE "data/transactions.csv"
#define BT_BAD_REPORTED 10 /* bad rows described on stderr; the rest are only counted */
#define BT_SWEEP_MAX 32    /* thresholds in a sweep: a table still readable on a terminal */
/* Around every detector's default threshold (2.5, 3, 3.5) and out to the saturation of
 * suspicion's score term (6) and beyond. */
#define BT_DEFAULT_SWEEP "1.5,2,2.5,3,3.5,4,4.5,5,6,8"
#define BT_KINDS_MAX 16 /* distinct label kinds (aetheris-gen writes 4 and none) */
#define BT_LABEL_MAX 32 /* bytes of a kind name, NUL included */

struct opts {
    const char *file, *out, *labels, *sweep;
    struct csv_names names;
    bool mapped; /* a --*-col flag was given: the header is required */
    bool ndjson, exceptions_only, quiet;
};

struct sweep_row {
    double threshold;
    long long flagged, immediate, tp;
};

struct kind_stats {
    char name[BT_LABEL_MAX];
    long long rows, flagged, episodes, episodes_detected;
};

struct labels {
    FILE *in;
    long long lineno;
    struct kind_stats kinds[BT_KINDS_MAX];
    int nkinds;
    long long normal_rows, normal_flagged;
    uint8_t *seen;       /* bit per episode id: counted */
    uint8_t *detected;   /* bit per episode id: some row flagged */
    uint64_t bits;       /* capacity of both bitmaps */
    int64_t max_episode; /* ids above this are refused (bounded memory) */
};

struct stats {
    long long rows, scored, duplicates, bad, exceptions, immediate;
    struct sweep_row sweep[BT_SWEEP_MAX];
    int nsweep;
};

/* ---------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: aetheris-backtest [options] [daemon options]\n"
        "Scores a transactions CSV offline with the daemon's own edge code and configuration.\n\n"
        "  --file CSV           input (default " BT_DEFAULT_FILE "); the original format, header\n"
        "                       optional, or any comma-separated file with a header (below)\n"
        "  --txid-col NAME      column of the transaction id (default TransactionID)\n"
        "  --account-col NAME   column of the account (default AccountOriginID)\n"
        "  --amount-col NAME    column of the amount (default Amount)\n"
        "  --time-col NAME      column of the time, copied to the output (default\n"
        "                       TransactionDate; absent = empty)\n"
        "  --out FILE           per-row scores to FILE ('-' = stdout; default: none)\n"
        "  --format csv|ndjson  per-row format (default csv)\n"
        "  --exceptions-only    write only the rows that are exceptions\n"
        "  --labels FILE        aetheris-gen labels (transaction_id,kind,episode per data row):\n"
        "                       adds precision, recall and F1 to the summary\n"
        "  --sweep LIST         thresholds of the sweep table (default " BT_DEFAULT_SWEEP ")\n"
        "  --quiet              no table and no bad-row reports on stderr\n"
        "  --help               this help\n\n"
        "Daemon options are read exactly as aetherisd reads them (defaults, --config FILE,\n"
        "AETHERIS_* variables, --name=value; `aetherisd --help` lists them all); the scoring\n"
        "ones: --detector=zscore|mad|ewma, --window-size, --min-points, --z-threshold,\n"
        "--mad-threshold, --ewma-alpha, --ewma-threshold, --amount-scale,\n"
        "--immediate-threshold, --dedupe-capacity.\n\n"
        "Per-row CSV columns: transaction_id,account,time,amount,z,mean,std,history,suspicion,\n"
        "anomaly,priority[,label] (z, mean, std: the detector's score, center and scale;\n"
        "priority empty unless anomaly is 1). NDJSON uses the exception payload's names.\n"
        "Repeated transaction ids are skipped as the daemon skips them, bad rows reported.\n"
        "The JSON summary goes to stdout (to stderr with --out -), the table to stderr.\n"
        "Exit status: 0 done, 1 output error, 2 usage or input error.\n");
}

/* Takes the tool's own arguments out of argv (the rest are daemon options); false after a usage
 * error (reported). */
static bool take_opts(int *argc, char **argv, struct opts *o)
{
    static const struct {
        const char *flag;
        size_t off;
    } values[] = {
        {"--file", offsetof(struct opts, file)},
        {"--out", offsetof(struct opts, out)},
        {"--labels", offsetof(struct opts, labels)},
        {"--sweep", offsetof(struct opts, sweep)},
        {"--txid-col", offsetof(struct opts, names.txid)},
        {"--account-col", offsetof(struct opts, names.origin)},
        {"--amount-col", offsetof(struct opts, names.amount)},
        {"--time-col", offsetof(struct opts, names.date)},
    };
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *value = NULL;
        size_t k = 0, nv = sizeof values / sizeof values[0];
        for (; k < nv; k++) {
            size_t n = strlen(values[k].flag);
            if (strncmp(a, values[k].flag, n) == 0 && (a[n] == '=' || a[n] == '\0'))
                break;
        }
        if (k < nv) {
            size_t n = strlen(values[k].flag);
            if (a[n] == '=') {
                value = a + n + 1;
            } else if (i + 1 < *argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "aetheris-backtest: %s needs a value\n", a);
                return false;
            }
            *(const char **)(void *)((char *)o + values[k].off) = value;
            o->mapped |= strstr(values[k].flag, "-col") != NULL;
        } else if (strcmp(a, "--format") == 0 || strncmp(a, "--format=", 9) == 0) {
            value = a[8] == '=' ? a + 9 : (i + 1 < *argc ? argv[++i] : "");
            if (strcmp(value, "csv") != 0 && strcmp(value, "ndjson") != 0) {
                fprintf(stderr, "aetheris-backtest: --format: '%s' is not csv or ndjson\n", value);
                return false;
            }
            o->ndjson = strcmp(value, "ndjson") == 0;
        } else if (strcmp(a, "--exceptions-only") == 0) {
            o->exceptions_only = true;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    return true;
}

/* Parses the sweep list into st; false (reported) on a bad entry. */
static bool parse_sweep(const char *list, struct stats *st)
{
    const char *p = list;
    st->nsweep = 0;
    while (*p != '\0') {
        char *end;
        errno = 0;
        double t = strtod(p, &end);
        if (end == p || errno != 0 || !isfinite(t) || t < 0 || (*end != ',' && *end != '\0') ||
            st->nsweep == BT_SWEEP_MAX) {
            fprintf(stderr,
                    "aetheris-backtest: --sweep: '%s' must be at most %d comma-separated "
                    "thresholds >= 0\n",
                    list, BT_SWEEP_MAX);
            return false;
        }
        st->sweep[st->nsweep++].threshold = t;
        p = *end == ',' ? end + 1 : end;
    }
    return true;
}

/* ---------------------------------------------------------------- labels */

/* The label of the next data row: kind index (-1 = none) and episode id. 0, or -1 (reported)
 * when the file ends early, is malformed or names another transaction than txid (NULL: a bad
 * row, whose id is not checked). */
static int label_next(struct labels *l, const char *txid, int *kind, int64_t *episode)
{
    char line[256];
    int got = csv_read_line(l->in, line, sizeof line);
    l->lineno++;
    if (got == 1 && l->lineno == 1 && strncmp(line, "transaction_id,", 15) == 0) {
        got = csv_read_line(l->in, line, sizeof line);
        l->lineno++;
    }
    line[strcspn(line, "\r\n")] = '\0';
    char *c1 = got == 1 ? strchr(line, ',') : NULL;
    char *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (c2 == NULL) {
        fprintf(stderr,
                "aetheris-backtest: labels line %lld: expected transaction_id,kind,episode\n",
                l->lineno);
        return -1;
    }
    *c1 = *c2 = '\0';
    char *end;
    errno = 0;
    long long ep = strtoll(c2 + 1, &end, 10);
    if ((txid && strcmp(line, txid) != 0) || *end != '\0' || errno != 0 || ep < 0 ||
        ep > l->max_episode || strlen(c1 + 1) >= BT_LABEL_MAX || c1[1] == '\0') {
        fprintf(stderr,
                "aetheris-backtest: labels line %lld does not label transaction %s with a kind "
                "and an episode 0..%lld\n",
                l->lineno, txid ? txid : "(bad row)", (long long)l->max_episode);
        return -1;
    }
    if (c1[1 + strspn(c1 + 1, "abcdefghijklmnopqrstuvwxyz0123456789_")] != '\0') {
        fprintf(stderr,
                "aetheris-backtest: labels line %lld: kind '%s' is not lower-case letters, digits "
                "and '_'\n",
                l->lineno, c1 + 1);
        return -1;
    }
    *episode = ep;
    *kind = -1;
    if (strcmp(c1 + 1, "none") == 0)
        return 0;
    for (int k = 0; k < l->nkinds; k++)
        if (strcmp(l->kinds[k].name, c1 + 1) == 0)
            *kind = k;
    if (*kind < 0 && l->nkinds == BT_KINDS_MAX) {
        fprintf(stderr, "aetheris-backtest: labels: more than %d kinds\n", BT_KINDS_MAX);
        return -1;
    }
    if (*kind < 0) {
        *kind = l->nkinds++;
        snprintf(l->kinds[*kind].name, BT_LABEL_MAX, "%s", c1 + 1);
    }
    return 0;
}

static bool bit_get(const uint8_t *bits, uint64_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

static void bit_set(uint8_t *bits, uint64_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Records one scored row's outcome against its label. */
static void label_count(struct labels *l, int kind, int64_t episode, bool flagged)
{
    if (kind < 0) {
        l->normal_rows++;
        l->normal_flagged += flagged;
        return;
    }
    struct kind_stats *k = &l->kinds[kind];
    k->rows++;
    k->flagged += flagged;
    if (episode <= 0)
        return;
    if ((uint64_t)episode >= l->bits) {
        uint64_t nbits = l->bits ? l->bits : 1024;
        while (nbits <= (uint64_t)episode)
            nbits *= 2;
        l->seen = xrealloc(l->seen, nbits / 8);
        l->detected = xrealloc(l->detected, nbits / 8);
        memset(l->seen + l->bits / 8, 0, (nbits - l->bits) / 8);
        memset(l->detected + l->bits / 8, 0, (nbits - l->bits) / 8);
        l->bits = nbits;
    }
    if (!bit_get(l->seen, (uint64_t)episode)) {
        bit_set(l->seen, (uint64_t)episode);
        k->episodes++;
    }
    if (flagged && !bit_get(l->detected, (uint64_t)episode)) {
        bit_set(l->detected, (uint64_t)episode);
        k->episodes_detected++;
    }
}

/* ---------------------------------------------------------------- output */

/* Shortest "%.*g" text of x that reads back as x. */
static void fmt_double(char *out, size_t cap, double x)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        if (strtod(out, NULL) == x)
            return;
    }
}

static void write_row(FILE *out, const struct opts *o, const struct csv_row *row,
                      const struct event *ev, const struct zscore_result *r, const char *label)
{
    char z[32], mean[32], std[32], amount[32];
    fmt_double(z, sizeof z, r->z);
    fmt_double(mean, sizeof mean, r->mean);
    fmt_double(std, sizeof std, r->std);
    fmt_double(amount, sizeof amount, ev->amount);
    const char *priority = !r->exception ? "" : r->immediate ? "immediate" : "batch";
    if (!o->ndjson) {
        fprintf(out, "%s,%s,%s,%s,%s,%s,%s,%u,%.4f,%d,%s", row->txid, ev->account, row->date,
                amount, z, mean, std, r->history_len, r->suspicion, r->exception ? 1 : 0, priority);
        if (label)
            fprintf(out, ",%s", label);
        fputc('\n', out);
        return;
    }
    /* account and date are JSON-safe: csvrow refuses quotes, backslashes, control bytes */
    fprintf(out,
            "{\"transactionId\":%s,\"accountOrigin\":\"%s\",\"date\":\"%s\",\"amount\":%s,"
            "\"zScore\":%s,\"mean\":%s,\"std\":%s,\"accountHistoryLength\":%u,"
            "\"suspicion\":%.4f,\"anomaly\":%s,\"priority\":",
            row->txid, ev->account, row->date, amount, z, mean, std, r->history_len, r->suspicion,
            r->exception ? "true" : "false");
    if (r->exception)
        fprintf(out, "\"%s\"", priority);
    else
        fputs("null", out);
    if (label)
        fprintf(out, ",\"label\":\"%s\"", label);
    fputs("}\n", out);
}

static double ratio(long long num, long long den)
{
    return den > 0 ? (double)num / (double)den : 0;
}

static double f1(double p, double r)
{
    return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

static json_t *summary_json(const struct opts *o, const struct stats *st, const struct labels *l,
                            const struct detector_params *dp, const struct zscore_params *zp,
                            size_t accounts, double seconds)
{
    long long labelled = 0, labelled_flagged = 0;
    if (l) {
        for (int k = 0; k < l->nkinds; k++) {
            labelled += l->kinds[k].rows;
            labelled_flagged += l->kinds[k].flagged;
        }
    }
    json_t *sweep = json_array();
    for (int i = 0; i < st->nsweep; i++) {
        const struct sweep_row *s = &st->sweep[i];
        json_t *row = json_pack("{s:f, s:I, s:I}", "threshold", s->threshold, "exceptions",
                                (json_int_t)s->flagged, "immediate", (json_int_t)s->immediate);
        if (l) {
            double p = ratio(s->tp, s->flagged), r = ratio(s->tp, labelled);
            json_object_set_new(row, "true_positives", json_integer(s->tp));
            json_object_set_new(row, "precision", json_real(p));
            json_object_set_new(row, "recall", json_real(r));
            json_object_set_new(row, "f1", json_real(f1(p, r)));
        }
        json_array_append_new(sweep, row);
    }
    json_t *root =
        json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:o, s:f}", "file",
                  o->file, "detector", detector_name(dp->kind), "threshold",
                  detector_threshold(dp, zp), "rows", (json_int_t)st->rows, "scored",
                  (json_int_t)st->scored, "duplicates", (json_int_t)st->duplicates, "bad_rows",
                  (json_int_t)st->bad, "accounts", (json_int_t)accounts, "exceptions", "total",
                  (json_int_t)st->exceptions, "immediate", (json_int_t)st->immediate, "batch",
                  (json_int_t)(st->exceptions - st->immediate), "sweep", sweep, "seconds", seconds);
    if (l == NULL)
        return root;
    double p = ratio(labelled_flagged, labelled_flagged + l->normal_flagged);
    double r = ratio(labelled_flagged, labelled);
    json_t *kinds = json_object();
    for (int k = 0; k < l->nkinds; k++) {
        const struct kind_stats *ks = &l->kinds[k];
        double kp = ratio(ks->flagged, ks->flagged + l->normal_flagged);
        double kr = ratio(ks->flagged, ks->rows);
        json_object_set_new(kinds, ks->name,
                            json_pack("{s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:f}", "rows",
                                      (json_int_t)ks->rows, "flagged", (json_int_t)ks->flagged,
                                      "precision", kp, "recall", kr, "f1", f1(kp, kr), "episodes",
                                      (json_int_t)ks->episodes, "episodes_detected",
                                      (json_int_t)ks->episodes_detected, "episode_recall",
                                      ratio(ks->episodes_detected, ks->episodes)));
    }
    json_object_set_new(
        root, "quality",
        json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o}", "labelled_rows", (json_int_t)labelled,
                  "labelled_flagged", (json_int_t)labelled_flagged, "normal_rows",
                  (json_int_t)l->normal_rows, "normal_flagged", (json_int_t)l->normal_flagged,
                  "precision", p, "recall", r, "f1", f1(p, r), "kinds", kinds));
    return root;
}

static void print_table(FILE *out, const struct stats *st, const struct labels *l,
                        const struct detector_params *dp, const struct zscore_params *zp,
                        size_t accounts)
{
    fprintf(out,
            "rows %lld, scored %lld, duplicates %lld, bad %lld, accounts %zu\n"
            "detector %s, threshold %g: exceptions %lld (immediate %lld, batch %lld)\n\n",
            st->rows, st->scored, st->duplicates, st->bad, accounts, detector_name(dp->kind),
            detector_threshold(dp, zp), st->exceptions, st->immediate,
            st->exceptions - st->immediate);
    long long labelled = 0;
    for (int k = 0; l && k < l->nkinds; k++)
        labelled += l->kinds[k].rows;
    fprintf(out, "threshold  exceptions  immediate  rate%s\n",
            l ? "     precision  recall  f1" : "");
    for (int i = 0; i < st->nsweep; i++) {
        const struct sweep_row *s = &st->sweep[i];
        fprintf(out, "%9g  %10lld  %9lld  %6.3f%%", s->threshold, s->flagged, s->immediate,
                100.0 * ratio(s->flagged, st->scored));
        if (l) {
            double p = ratio(s->tp, s->flagged), r = ratio(s->tp, labelled);
            fprintf(out, "  %9.3f  %6.3f  %5.3f", p, r, f1(p, r));
        }
        fputc('\n', out);
    }
}

/* ---------------------------------------------------------------- main */

static void count_row(struct stats *st, const struct zscore_result *r, double immediate_threshold,
                      bool labelled)
{
    double a = fabs(r->z);
    st->scored++;
    st->exceptions += r->exception;
    st->immediate += r->immediate;
    for (int i = 0; i < st->nsweep; i++) {
        struct sweep_row *s = &st->sweep[i];
        if (a > s->threshold) {
            s->flagged++;
            s->immediate += r->suspicion >= immediate_threshold;
            s->tp += labelled;
        }
    }
}

/* True when the first line is a header: its first field is not a number. */
static bool looks_like_header(const char *line)
{
    return line[0] < '0' || line[0] > '9' || line[strspn(line, "0123456789")] != ',';
}

static bool is_original_header(const char *line)
{
    static const char original[] = "TransactionID,AccountOriginID,AccountDestinationID,"
                                   "TransactionTypeID,Amount,TransactionDate,BranchID,Description";
    size_t n = sizeof original - 1;
    return strncmp(line, original, n) == 0 && strspn(line + n, "\r\n") == strlen(line + n);
}

struct run {
    const struct opts *o;
    FILE *in, *out;
    struct labels *labels;
    struct edge_shard *shard;
    struct dedupe *dedupe;
    double immediate_threshold;
    double amount_scale;
};

/* Scores every data row of r->in; 0, 1 on an output error, 2 on an input error. */
static int score_file(struct run *run, struct stats *st)
{
    const struct opts *o = run->o;
    char *line = xmalloc(CSV_LINE_MAX);
    struct buf scratch;
    buf_init(&scratch, CSV_LINE_MAX * 8);
    struct csv_columns cols;
    bool mapped = false;
    long long lineno = 0;
    int got, rv = 0;
    while (rv == 0 && (got = csv_read_line(run->in, line, CSV_LINE_MAX)) != 0) {
        lineno++;
        if (lineno == 1 && got > 0 && (o->mapped || looks_like_header(line))) {
            if (is_original_header(line) && !o->mapped)
                continue; /* the original file: the strict parser, as replay reads it */
            char why[256];
            if (csv_map_header(line, &o->names, &cols, why, sizeof why) != 0) {
                fprintf(stderr, "aetheris-backtest: %s: %s\n", o->file, why);
                rv = 2;
                break;
            }
            mapped = true;
            continue;
        }
        st->rows++;
        struct csv_row row;
        struct event ev;
        char detail[160];
        const char *why = got < 0  ? "line too long"
                          : mapped ? csv_parse_mapped(line, &cols, &row)
                                   : csv_parse_row(line, &row);
        if (why == NULL)
            why = csv_row_event(&row, &scratch, &ev, detail, sizeof detail);
        int kind = -1;
        int64_t episode = 0;
        if (run->labels &&
            label_next(run->labels, why == NULL ? row.txid : NULL, &kind, &episode) != 0) {
            rv = 2;
            break;
        }
        if (why != NULL) {
            if (st->bad++ < BT_BAD_REPORTED && !o->quiet)
                fprintf(stderr, "aetheris-backtest: %s line %lld skipped: %s\n", o->file, lineno,
                        why);
            continue;
        }
        if (dedupe_check_insert(run->dedupe, ev.txid)) {
            st->duplicates++;
            continue;
        }
        struct zscore_result r;
        edge_shard_score(run->shard, ev.account, ev.amount, &r);
        if (!r.exception) /* the edge leaves it 0; the rows and the sweep show it for every row */
            r.suspicion = zscore_suspicion(r.z, ev.amount, run->amount_scale);
        count_row(st, &r, run->immediate_threshold, kind >= 0);
        if (run->labels)
            label_count(run->labels, kind, episode, r.exception);
        if (run->out && (r.exception || !o->exceptions_only))
            write_row(run->out, o, &row, &ev, &r,
                      run->labels ? (kind >= 0 ? run->labels->kinds[kind].name : "none") : NULL);
        if (run->out && ferror(run->out))
            rv = 1;
    }
    if (rv == 0 && ferror(run->in)) {
        fprintf(stderr, "aetheris-backtest: reading %s failed\n", o->file);
        rv = 2;
    }
    if (rv == 0 && run->labels && csv_read_line(run->labels->in, line, CSV_LINE_MAX) != 0) {
        fprintf(stderr, "aetheris-backtest: %s has more labels than %s has rows\n", o->labels,
                o->file);
        rv = 2;
    }
    buf_cleanup(&scratch);
    free(line);
    return rv;
}

static void write_header(FILE *out, const struct opts *o, bool labels)
{
    if (!o->ndjson)
        fprintf(out,
                "transaction_id,account,time,amount,z,mean,std,history,suspicion,anomaly,"
                "priority%s\n",
                labels ? ",label" : "");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    struct opts o = {.file = BT_DEFAULT_FILE, .sweep = BT_DEFAULT_SWEEP};
    struct stats st = {0};
    if (!take_opts(&argc, argv, &o) || !parse_sweep(o.sweep, &st))
        return 2;
    struct config cfg;
    char err[512];
    if (config_load(&cfg, argc, argv, NULL, err, sizeof err) != CONFIG_OK) {
        fprintf(stderr, "aetheris-backtest: configuration error: %s\n", err);
        return 2;
    }
    log_init(LOG_WARN, "aetheris-backtest");
    struct zscore_params zp;
    struct detector_params dp;
    detector_config(&cfg, &zp, &dp);

    int rv = 2;
    /* episode ids up to 2^31: the two bitmaps then stay under 512 MiB even for a hostile file */
    struct labels lab = {.max_episode = INT32_MAX};
    struct run run = {
        .o = &o, .immediate_threshold = zp.immediate_threshold, .amount_scale = zp.amount_scale};
    run.in = fopen(o.file, "r");
    if (run.in == NULL) {
        fprintf(stderr, "aetheris-backtest: cannot open %s: %s\n", o.file, strerror(errno));
        goto out;
    }
    if (o.labels) {
        lab.in = fopen(o.labels, "r");
        if (lab.in == NULL) {
            fprintf(stderr, "aetheris-backtest: cannot open %s: %s\n", o.labels, strerror(errno));
            goto out;
        }
        run.labels = &lab;
    }
    if (o.out && strcmp(o.out, "-") == 0) {
        run.out = stdout;
    } else if (o.out) {
        run.out = fopen(o.out, "w");
        if (run.out == NULL) {
            fprintf(stderr, "aetheris-backtest: cannot create %s: %s\n", o.out, strerror(errno));
            goto out;
        }
    }
    if (run.out)
        write_header(run.out, &o, run.labels != NULL);
    run.shard = edge_shard_new(&zp);
    edge_shard_set_detector(run.shard, &dp);
    run.dedupe = dedupe_new((size_t)cfg.dedupe_capacity);
    int64_t t0 = clock_mono_ms();
    rv = score_file(&run, &st);
    bool rows_to_stdout = run.out == stdout;
    if (run.out && !rows_to_stdout && fclose(run.out) != 0 && rv == 0)
        rv = 1;
    run.out = NULL;
    if (rows_to_stdout && fflush(stdout) != 0 && rv == 0)
        rv = 1;
    if (rv == 1)
        fprintf(stderr, "aetheris-backtest: writing %s failed\n", o.out);
    if (rv != 0)
        goto out;
    size_t accounts = edge_shard_accounts(run.shard);
    double seconds = (double)(clock_mono_ms() - t0) / 1000.0;
    if (!o.quiet)
        print_table(stderr, &st, run.labels, &dp, &zp, accounts);
    json_t *sum = summary_json(&o, &st, run.labels, &dp, &zp, accounts, seconds);
    char *text = json_dumps(sum, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fprintf(rows_to_stdout ? stderr : stdout, "%s\n", text ? text : "{}");
    free(text);
    json_decref(sum);
out:
    if (run.out && run.out != stdout)
        fclose(run.out);
    dedupe_free(run.dedupe);
    edge_shard_free(run.shard);
    if (run.in)
        fclose(run.in);
    if (lab.in)
        fclose(lab.in);
    free(lab.seen);
    free(lab.detected);
    return rv;
}
