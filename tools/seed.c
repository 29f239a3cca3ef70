/* aetheris-seed: loads a transactions CSV (csvrow.h) into the store as account history (the
 * Auditor's evidence), without going through MQTT, the edge or the agents. The store is the one
 * the daemon's configuration selects (SQLite file, or MongoDB with mongodb_uri), so the same
 * options apply: --config FILE, AETHERIS_* variables, --sqlite-path=..., --mongodb-uri=...
 *
 * Each row is validated like aetheris-replay validates it, turned into the same event JSON,
 * validated again by the daemon's own event parser, and written with the row's position in the
 * file as its ingest time (so "newest" follows the file order). Writes are batches of
 * store_batch_max rows; a transactionId already stored is left as it is, so running the tool
 * twice, or over a file with repeated ids (the bundled dataset has 500), stores each id once.
 *
 * Output: one JSON summary line {"rows","stored_before","stored_after","bad","file"} on stdout.
 * Exit: 0 done, 1 store error, 2 usage or input error. */
#include "fmacros.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "buf.h"
#include "config.h"
#include "csvrow.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "store.h"
#include "xmalloc.h"

#define SEED_BAD_REPORTED 10
#define SEED_DEFAULT_FILE "data/transactions.csv"

struct pending { /* one batch of rows being built */
    struct store_txn *rows;
    char **docs;
    struct event *events;
    size_t n, cap;
};

static void pending_clear(struct pending *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->docs[i]);
    p->n = 0;
}

static int flush(struct store *s, struct pending *p)
{
    int rv = store_put_transactions(s, p->rows, p->n);
    pending_clear(p);
    return rv;
}

static void print_summary(long long rows, int64_t before, int64_t after, long long bad,
                          const char *file)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:s}", "rows", (json_int_t)rows, "stored_before",
                          (json_int_t)before, "stored_after", (json_int_t)after, "bad",
                          (json_int_t)bad, "file", file);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
}

/* Splits argv into the tool's --file and the configuration arguments. */
static const char *take_file(int *argc, char **argv)
{
    const char *file = SEED_DEFAULT_FILE;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], "--file=", 7) == 0)
            file = argv[i] + 7;
        else if (strcmp(argv[i], "--file") == 0 && i + 1 < *argc)
            file = argv[++i];
        else
            argv[out++] = argv[i];
    }
    *argc = out;
    return file;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: %s [--file CSV] [daemon options: --config FILE, --sqlite-path=...,\n"
                   "       --mongodb-uri=..., --store-batch-max=N, ...]\n\n"
                   "Loads the transactions CSV (default %s) into the store the daemon's\n"
                   "configuration selects, as account history; idempotent on transactionId.\n"
                   "Prints a JSON summary. Exit 0 done, 1 store error, 2 usage or input error.\n",
                   argv[0], SEED_DEFAULT_FILE);
            return 0;
        }
    }
    const char *file = take_file(&argc, argv);
    struct config cfg;
    char err[512];
    if (config_load(&cfg, argc, argv, NULL, err, sizeof err) != CONFIG_OK) {
        fprintf(stderr, "aetheris-seed: configuration error: %s\n", err);
        return 2;
    }
    log_init(LOG_WARN, "aetheris-seed");
    FILE *in = fopen(file, "r");
    if (in == NULL) {
        fprintf(stderr, "aetheris-seed: cannot open %s\n", file);
        return 2;
    }
    struct store *s = store_open(&cfg, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "aetheris-seed: %s\n", err);
        fclose(in);
        return 1;
    }
    int64_t before = store_count(s, "transactions");
    struct pending p = {0};
    p.cap = (size_t)cfg.store_batch_max;
    p.rows = xcalloc(p.cap, sizeof *p.rows);
    p.docs = xcalloc(p.cap, sizeof *p.docs);
    p.events = xcalloc(p.cap, sizeof *p.events);
    char *line = xmalloc(CSV_LINE_MAX);
    long long lineno = 0, rows = 0, bad = 0;
    int rv = 0, got;
    struct buf b;
    buf_init(&b, CSV_LINE_MAX * 8);
    while (rv == 0 && (got = csv_read_line(in, line, CSV_LINE_MAX)) != 0) {
        lineno++;
        if (lineno == 1 && got > 0 && strncmp(line, "TransactionID", 13) == 0)
            continue; /* the header row */
        struct csv_row r;
        const char *why = got < 0 ? "line too long" : csv_parse_row(line, &r);
        struct event *ev = &p.events[p.n];
        char detail[160];
        if (why == NULL)
            why = csv_row_event(&r, &b, ev, detail, sizeof detail);
        if (why != NULL) {
            if (bad++ < SEED_BAD_REPORTED)
                fprintf(stderr, "aetheris-seed: %s line %lld skipped: %s\n", file, lineno, why);
            continue;
        }
        rows++;
        json_t *doc = event_to_json(ev);
        p.docs[p.n] = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        p.rows[p.n] = (struct store_txn){ev->txid, ev->account, ev->amount, lineno, p.docs[p.n]};
        if (++p.n == p.cap)
            rv = flush(s, &p);
    }
    if (rv == 0 && p.n > 0)
        rv = flush(s, &p);
    pending_clear(&p);
    int64_t after = store_count(s, "transactions");
    if (rv != 0)
        fprintf(stderr, "aetheris-seed: store write failed (%s)\n", err_str(rv));
    else
        print_summary(rows, before, after, bad, file);
    buf_cleanup(&b);
    free(line);
    free(p.rows);
    free(p.docs);
    free(p.events);
    store_free(s);
    fclose(in);
    return rv == 0 ? 0 : 1;
}
