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

#define CSV_LINE_MAX 4096  /* longer lines are bad rows (a real row is ~100 bytes) */
#define CSV_ACCOUNT_MAX 64 /* the daemon refuses longer account ids */
#define CSV_DATE_MAX 40    /* the daemon refuses longer dates */

struct csv_row { /* fields of a validated row, borrowed from its line */
    const char *txid, *origin, *dest, *type, *amount, *date, *branch, *description;
};

/* Validates a CSV line (trailing LF/CR removed in place) into r. NULL when valid, else a short
 * reason for a bad-row report. */
const char *csv_parse_row(char *line, struct csv_row *r);
/* Appends the event JSON of a validated row to b. */
void csv_row_json(const struct csv_row *r, struct buf *b);
/* Reads one line into line[cap]: 1 for a line, 0 at EOF, -1 for a line longer than cap (the rest
 * of it is consumed). */
int csv_read_line(FILE *in, char *line, size_t cap);

#endif
