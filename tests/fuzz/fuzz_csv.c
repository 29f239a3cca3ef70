/* libFuzzer target: the transactions CSV reader (tools/csvrow.c) that aetheris-replay and
 * aetheris-seed share. The input is a CSV file; it is read line by line exactly as the tools
 * read it (csv_read_line from a FILE), every line is validated, and every row accepted as valid
 * must become event JSON that the daemon's own parser (event_parse_payload) accepts as one valid
 * event with the same transaction id and account: a row the tool sends must never be refused or
 * changed by the daemon. Any mismatch aborts (a finding). */
#include "csvrow.h"
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_JSON_MAX (CSV_LINE_MAX * 8) /* as aetheris-seed: \\u00XX escapes grow a byte to 6 */

static void fail(const char *what, const char *row)
{
    fprintf(stderr, "fuzz_csv: %s: %s\n", what, row);
    abort();
}

struct expect {
    const struct csv_row *row;
    const char *json;
    int valid;
};

static void on_valid(void *ctx, const struct event *ev)
{
    struct expect *e = ctx;
    e->valid++;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, ev->txid);
    const char *want = e->row->txid;
    while (want[0] == '0' && want[1] != '\0')
        want++;
    if (strcmp(id, want) != 0 || strcmp(ev->account, e->row->origin) != 0)
        fail("the daemon read another transaction than the row", e->json);
}

static void on_invalid(void *ctx, enum event_invalid reason, const char *detail, const char *text,
                       size_t text_len)
{
    struct expect *e = ctx;
    (void)text;
    (void)text_len;
    fprintf(stderr, "fuzz_csv: refused as %s: %s\n", event_invalid_name(reason), detail);
    fail("the daemon refuses a row the CSV reader accepted", e->json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *in = fmemopen((void *)data, size, "r");
    if (in == NULL)
        return 0;
    char *line = malloc(CSV_LINE_MAX);
    int rc;
    while ((rc = csv_read_line(in, line, CSV_LINE_MAX)) != 0) {
        struct csv_row row;
        if (rc < 0 || csv_parse_row(line, &row) != NULL)
            continue;
        struct buf b;
        buf_init(&b, FUZZ_JSON_MAX);
        csv_row_json(&row, &b);
        if (b.data == NULL)
            fail("a valid row has no JSON", line);
        struct expect e = {&row, b.data, 0};
        event_parse_payload(b.data, b.len, 1, on_valid, on_invalid, &e);
        if (e.valid != 1)
            fail("a valid row is not one event", b.data);
        buf_cleanup(&b);
    }
    free(line);
    fclose(in);
    return 0;
}
