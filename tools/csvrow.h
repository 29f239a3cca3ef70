/* The original Aetheris transactions CSV:
 *   TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,TransactionDate,
 *   BranchID,Description
 * (LF line ends, unquoted fields). A row is valid with 8 fields, digit-only ids (accounts at most
 * CSV_ACCOUNT_MAX characters, the daemon's limit), a plain decimal amount a double can hold, a
 * date of at most CSV_DATE_MAX bytes and valid UTF-8 text. Its event JSON (DESIGN.md 3.1) copies
 * the numbers as text (only redundant leading zeros dropped, "5." and ".5" completed, an amount
 * integer too long for int64 given a ".0"), leaves empty optional fields out, and writes a
 * transactionId above INT64_MAX as a digit string.
 * Pure functions: thread-safe. */
#ifndef AETHERIS_CSVROW_H
#define AETHERIS_CSVROW_H
#include "fmacros.h"
#include <stdio.h>
#include "buf.h"
#include "event.h"

#define CSV_LINE_MAX 4096  /* longer lines are bad rows (a real row is ~100 bytes) */
#define CSV_ACCOUNT_MAX 64 /* the daemon refuses longer account ids */
#define CSV_DATE_MAX 40    /* the daemon refuses longer dates */

struct csv_row { /* fields of a validated row, borrowed from its line */
    const char *txid, *origin, *dest, *type, *amount, *date, *branch, *description;
};

/* Validates a CSV line (trailing LF/CR removed in place) into r. NULL when valid, else a short
 * reason for a bad-row report. */
const char *csv_parse_row(char *line, struct csv_row *r);

/* Other CSV files: a header line names the columns and struct csv_names says which column holds
 * which field (NULL = the original name; the optional fields may also be absent from the file).
 * A mapped row must have as many fields as the header; transactionId is an integer in
 * 0..2^64-1, the account 1..64 bytes of printable text without '"' or '\', the amount a plain
 * decimal; absent optional fields are empty. The original file is mapped like any other. */
#define CSV_FIELDS_MAX 64 /* columns a header may have */
struct csv_names {
    const char *txid, *origin, *dest, *type, *amount, *date, *branch, *description;
};
struct csv_columns { /* column index of each field, -1 = absent */
    int txid, origin, dest, type, amount, date, branch, description;
    int nfields; /* columns in the header */
};
/* Maps the header line (trailing LF/CR removed in place) with names. 0, or -1 with err naming
 * the missing or repeated column. */
int csv_map_header(char *header, const struct csv_names *names, struct csv_columns *cols, char *err,
                   size_t errlen);
/* Validates a data line of a mapped file into r (fields borrowed from line). NULL when valid,
 * else a short reason. */
const char *csv_parse_mapped(char *line, const struct csv_columns *cols, struct csv_row *r);
/* Appends the event JSON of a validated row to b. */
void csv_row_json(const struct csv_row *r, struct buf *b);
/* The event the daemon would make of a validated row: its event JSON (built in scratch) parsed
 * and validated by the daemon's own event_from_json. NULL with *ev filled, else the reason
 * (detail, detail_len bytes). */
const char *csv_row_event(const struct csv_row *r, struct buf *scratch, struct event *ev,
                          char *detail, size_t detail_len);
/* Reads one line into line[cap]: 1 for a line, 0 at EOF, -1 for a line longer than cap (the rest
 * of it is consumed). */
int csv_read_line(FILE *in, char *line, size_t cap);

#endif
