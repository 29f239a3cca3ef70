/* Event parsing benchmark: ns per event through event_parse_payload (the fast path for the plain
 * shape) and through event_parse_payload_jansson (the general path it falls back to), on the
 * payloads aetheris-replay publishes: one event per message, and arrays of 10 and 100; and the
 * sink's stored document of a transaction, event_json_append against jansson's dump. Both sides are
 * measured in the same run, so their ratio holds on a busy machine. Prints one JSON object.
 * Usage: bench_parse [events (default 1000000)] */
#include "fmacros.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "buf.h"
#include "clock.h"
#include "event.h"

static void count(void *ctx, const struct event *ev)
{
    (*(long long *)ctx) += ev->txid != 0;
}

typedef int (*parse_fn)(const char *, size_t, size_t, event_valid_fn, event_invalid_fn, void *);

/* ns per event for `events` events delivered by fn on payload p (holding per_msg events). */
static double run(parse_fn fn, const struct buf *p, long long per_msg, long long events)
{
    long long seen = 0;
    int64_t t0 = clock_mono_ns();
    for (long long i = 0; i < events; i += per_msg)
        fn(p->data, p->len, 1000, count, NULL, &seen);
    int64_t t1 = clock_mono_ns();
    if (seen < events) {
        fprintf(stderr, "bench_parse: only %lld of %lld events delivered\n", seen, events);
        exit(1);
    }
    return (double)(t1 - t0) / (double)seen;
}

int main(int argc, char **argv)
{
    long long events = 1000000;
    if (argc > 1) {
        char *end = NULL;
        events = strtoll(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || events <= 0) {
            fprintf(stderr, "usage: bench_parse [events]\n");
            return 2;
        }
    }
    static const long long sizes[] = {1, 10, 100};
    printf("{\"benchmark\":\"event_parse\",\"events\":%lld", events);
    for (int k = 0; k < 3; k++) {
        struct buf p;
        buf_init(&p, 1 << 20);
        if (sizes[k] > 1)
            buf_append(&p, "[", 1);
        for (long long i = 0; i < sizes[k]; i++)
            buf_printf(
                &p,
                "%s{\"transactionId\":%lld,\"accountOrigin\":\"%lld\",\"accountDestination\":"
                "\"200868\",\"amount\":%lld.%02lld,\"type\":2,\"branch\":41,\"date\":"
                "\"2023-04-20 02:00:00.000000\",\"description\":\"bench\"}",
                i ? "," : "", 10000000 + i, 100000 + i * 7 % 20000, 10 + i * 13 % 490, i % 100);
        if (sizes[k] > 1)
            buf_append(&p, "]", 1);
        double fast = run(event_parse_payload, &p, sizes[k], events);
        double slow = run(event_parse_payload_jansson, &p, sizes[k], events);
        printf(",\"per_message_%lld\":{\"ns_per_event\":%.1f,\"jansson_ns_per_event\":%.1f,"
               "\"speedup\":%.2f}",
               sizes[k], fast, slow, slow / fast);
        buf_cleanup(&p);
    }
    /* The sink's stored document of each transaction: event_json_append against jansson's dump. */
    struct event ev = {.txid = 10000001,
                       .amount = 855.17,
                       .type = 2,
                       .branch = 41,
                       .has_type = true,
                       .has_branch = true};
    snprintf(ev.account, sizeof ev.account, "201164");
    snprintf(ev.account_dest, sizeof ev.account_dest, "200868");
    snprintf(ev.date, sizeof ev.date, "2023-04-20 02:00:00.000000");
    snprintf(ev.description, sizeof ev.description, "bench");
    long long docs = events / 4 + 1;
    int64_t t0 = clock_mono_ns();
    struct buf text;
    buf_init(&text, 1 << 16);
    for (long long i = 0; i < docs; i++) {
        buf_reset(&text);
        event_json_append(&ev, &text);
    }
    buf_cleanup(&text);
    int64_t t1 = clock_mono_ns();
    for (long long i = 0; i < docs; i++) {
        json_t *doc = event_to_json(&ev);
        free(json_dumps(doc, JSON_COMPACT));
        json_decref(doc);
    }
    int64_t t2 = clock_mono_ns();
    printf(",\"transaction_document\":{\"ns\":%.1f,\"jansson_ns\":%.1f,\"speedup\":%.2f}}\n",
           (double)(t1 - t0) / (double)docs, (double)(t2 - t1) / (double)docs,
           (double)(t2 - t1) / (double)(t1 - t0));
    return 0;
}
