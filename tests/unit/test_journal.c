/* Journal: round trips across rotations, from_seq filtering, callback stop, torn and corrupt
 * records (every byte of one record flipped in turn), truncate_before, reopening after replay
 * (including over a torn or stale segment), oversized and out-of-order records, a write that
 * fails part-way (RLIMIT_FSIZE), and the one-warn-line-per-bad-segment promise. Every case works
 * in its own fresh directory under a mkdtemp root. */
#include "journal.h"
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"
#include "tap.h"

#define PAYLOAD_LEN 12             /* "rec %08llu" */
#define REC_LEN (17 + PAYLOAD_LEN) /* header 13 + payload + CRC 4 */
#define MAX_SEEN 4096

static char root[] = "/tmp/aetheris-journal-XXXXXX";
static int case_no;

struct seen {
    uint64_t seqs[MAX_SEEN];
    int n;
    int bad;       /* records whose type or payload is not what put() wrote */
    uint64_t stop; /* return -42 when this seq arrives (0: never) */
};

static uint8_t type_of(uint64_t seq)
{
    return (uint8_t)(1 + seq % 3);
}

static int on_record(void *ctx, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    struct seen *s = ctx;
    char want[32];
    snprintf(want, sizeof want, "rec %08llu", (unsigned long long)seq);
    if (type != type_of(seq) || len != PAYLOAD_LEN || memcmp(data, want, len) != 0)
        s->bad++;
    if (s->n < MAX_SEEN)
        s->seqs[s->n++] = seq;
    return seq == s->stop ? -42 : 0;
}

static int put(struct journal *j, uint64_t seq)
{
    char rec[32];
    snprintf(rec, sizeof rec, "rec %08llu", (unsigned long long)seq);
    return journal_append(j, seq, type_of(seq), rec, PAYLOAD_LEN);
}

/* A fresh directory for one case. */
static void new_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/case%d", root, ++case_no);
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t first)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".jnl", dir, first);
}

static int exists(const char *dir, uint64_t first)
{
    char p[512];
    seg_path(p, sizeof p, dir, first);
    return access(p, F_OK) == 0;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Segments starting at each of starts[] (ascending), the last ending at last: records
 * starts[i] .. starts[i+1]-1. Returns 0 when everything succeeded. */
static int build(const char *dir, const uint64_t *starts, int nseg, uint64_t last)
{
    char err[256];
    int bad = 0;
    struct journal *j = journal_open(dir, starts[0], err, sizeof err);
    if (j == NULL)
        return -1;
    for (int s = 0; s < nseg; s++) {
        if (s > 0)
            bad |= journal_rotate(j, starts[s]);
        uint64_t end = s + 1 < nseg ? starts[s + 1] - 1 : last;
        for (uint64_t q = starts[s]; q <= end; q++)
            bad |= put(j, q);
    }
    journal_close(j);
    return bad;
}

static void flip(const char *path, long off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    uint8_t c = 0;
    if (pread(fd, &c, 1, off) != 1)
        c = 0;
    c ^= mask;
    if (pwrite(fd, &c, 1, off) != 1)
        ok(0, "pwrite failed");
    close(fd);
}

/* True when s holds exactly the seqs want[0..n). */
static int seqs_are(const struct seen *s, const uint64_t *want, int n)
{
    if (s->n != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (s->seqs[i] != want[i])
            return 0;
    return 1;
}

/* seqs lo..hi appended to out at *n. */
static void range(uint64_t *out, int *n, uint64_t lo, uint64_t hi)
{
    for (uint64_t q = lo; q <= hi; q++)
        out[(*n)++] = q;
}

/* ------------------------------------------------------------------------------------------ */
/* stderr capture, to count warn lines                                                          */

static int saved_stderr = -1;
static char capture_path[300];

static void capture_begin(void)
{
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", root);
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr and returns how many captured lines are warn-level log lines. */
static int capture_end_warns(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(capture_path, "r");
    char line[8192];
    int warns = 0;
    while (f && fgets(line, sizeof line, f))
        warns += strstr(line, "\"level\":\"warn\"") != NULL;
    if (f)
        fclose(f);
    return warns;
}

/* ------------------------------------------------------------------------------------------ */
/* Cases                                                                                        */

static void test_empty(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct seen s = {0};
    uint64_t next = 0;
    is_int(journal_replay(dir, 7, on_record, &s, &next), 0, "missing dir: nothing replayed");
    is_int(next, 7, "missing dir: next_seq is from_seq");
    is_int(journal_size(dir), 0, "missing dir: size 0");
    is_int(journal_truncate_before(dir, 100), 0, "missing dir: nothing to truncate");
    ok(mkdir(dir, 0700) == 0, "empty dir created");
    next = 0;
    is_int(journal_replay(dir, 1, on_record, &s, &next), 0, "empty dir: nothing replayed");
    is_int(next, 1, "empty dir: next_seq is from_seq");
    is_int(s.n, 0, "empty dir: no callback");
}

static void test_round_trip(void)
{
    char dir[300], err[256], p[512];
    new_dir(dir, sizeof dir);
    struct journal *j = journal_open(dir, 1, err, sizeof err);
    ok(j != NULL, "journal opens in a new directory (%s)", j ? "ok" : err);
    if (j == NULL)
        return;
    int rc = 0;
    for (uint64_t q = 1; q <= 10; q++)
        rc |= put(j, q);
    seg_path(p, sizeof p, dir, 1);
    is_int(file_size(p), 0, "appends stay in memory until the flush");
    is_int(journal_flush(j), 0, "flush");
    is_int(file_size(p), 10 * REC_LEN, "the flush wrote 10 records");
    is_int(journal_flush(j), 0, "an empty flush is fine");
    is_int(journal_rotate(j, 11), 0, "rotate at 11");
    for (uint64_t q = 11; q <= 20; q++)
        rc |= put(j, q);
    is_int(journal_rotate(j, 21), 0, "rotate at 21 (flushes 11..20)");
    for (uint64_t q = 21; q <= 25; q++)
        rc |= put(j, q);
    is_int(rc, 0, "every append succeeded");
    journal_close(j);
    ok(exists(dir, 1) && exists(dir, 11) && exists(dir, 21), "segments named by first seq");
    is_int(journal_size(dir), 25 * REC_LEN, "journal_size counts every record byte");

    uint64_t want[64], next = 0;
    int n = 0;
    range(want, &n, 1, 25);
    struct seen s = {0};
    is_int(journal_replay(dir, 1, on_record, &s, &next), 25, "all 25 records replay");
    ok(seqs_are(&s, want, n) && s.bad == 0, "in seq order, types and payloads intact");
    is_int(next, 26, "next_seq = highest + 1");

    s = (struct seen){0};
    n = 0;
    range(want, &n, 15, 25);
    is_int(journal_replay(dir, 15, on_record, &s, &next), 11, "from_seq 15 gives 15..25");
    ok(seqs_are(&s, want, n), "exactly 15..25");
    is_int(next, 26, "next_seq with from_seq inside the journal");

    s = (struct seen){0};
    n = 0;
    range(want, &n, 11, 25);
    is_int(journal_replay(dir, 11, on_record, &s, &next), 15, "from_seq at a segment start");
    ok(seqs_are(&s, want, n), "exactly 11..25");

    s = (struct seen){0};
    is_int(journal_replay(dir, 26, on_record, &s, &next), 0, "from_seq past the end: none");
    is_int(next, 26, "next_seq 26");
    is_int(journal_replay(dir, 1000, on_record, &s, &next), 0, "from_seq far past the end: none");
    is_int(next, 1000, "next_seq never falls below from_seq");
    is_int(s.n, 0, "no callback past the end");

    s = (struct seen){.stop = 13};
    is_int(journal_replay(dir, 1, on_record, &s, &next), -42, "callback error stops the replay");
    is_int(s.n, 13, "nothing delivered after the stop");
}

static const uint64_t three[] = {1, 11, 21}; /* 1..10 | 11..20 | 21..25 */

static void test_torn_tail(void)
{
    char dir[300], p[512];
    uint64_t want[64], next = 0;
    int n = 0;

    new_dir(dir, sizeof dir);
    is_int(build(dir, three, 3, 25), 0, "journal built");
    seg_path(p, sizeof p, dir, 21);
    ok(truncate(p, 5 * REC_LEN - 3) == 0, "cut 3 bytes off the last segment");
    struct seen s = {0};
    capture_begin();
    int64_t got = journal_replay(dir, 1, on_record, &s, &next);
    is_int(capture_end_warns(), 1, "one warn line for the torn segment");
    is_int(got, 24, "torn last record dropped");
    range(want, &n, 1, 24);
    ok(seqs_are(&s, want, n) && s.bad == 0, "1..24 delivered");
    is_int(next, 25, "next_seq after a torn tail reuses the torn seq");

    new_dir(dir, sizeof dir);
    build(dir, three, 3, 25);
    seg_path(p, sizeof p, dir, 11);
    ok(truncate(p, 10 * REC_LEN - 3) == 0, "cut 3 bytes off the middle segment");
    s = (struct seen){0};
    n = 0;
    range(want, &n, 1, 19);
    range(want, &n, 21, 25);
    is_int(journal_replay(dir, 1, on_record, &s, &next), 24, "24 records survive");
    ok(seqs_are(&s, want, n), "replay continues with the next segment");
    is_int(next, 26, "next_seq from the later segment");

    seg_path(p, sizeof p, dir, 21);
    ok(truncate(p, REC_LEN - 1) == 0, "last segment torn inside its first record");
    s = (struct seen){0};
    is_int(journal_replay(dir, 1, on_record, &s, &next), 19, "only 1..19 left");
    is_int(next, 20, "next_seq = 1 + highest valid seq");
}

static void test_flipped_bytes(void)
{
    char dir[300], p[512];
    uint64_t want[64], next = 0;
    int n = 0;
    new_dir(dir, sizeof dir);
    build(dir, three, 3, 25);
    seg_path(p, sizeof p, dir, 11);
    range(want, &n, 11, 12); /* record 13 is the third of segment 11 */
    range(want, &n, 21, 25);
    int good = 0, warned_once = 0;
    for (int b = 0; b < REC_LEN; b++) {
        flip(p, 2 * REC_LEN + b, 0x5a);
        struct seen s = {0};
        capture_begin();
        int64_t got = journal_replay(dir, 11, on_record, &s, &next);
        warned_once += capture_end_warns() == 1;
        good += got == n && seqs_are(&s, want, n) && s.bad == 0 && next == 26;
        flip(p, 2 * REC_LEN + b, 0x5a);
    }
    is_int(good, REC_LEN,
           "each flipped byte of a record (length, type, seq, payload, CRC) ends "
           "its segment there; the next segment still replays");
    is_int(warned_once, REC_LEN, "and each time exactly one warn line");

    flip(p, 2 * REC_LEN + 20, 0x01);
    seg_path(p, sizeof p, dir, 1);
    flip(p, 9 * REC_LEN + 15, 0x80); /* seq 10's payload */
    struct seen s = {0};
    n = 0;
    range(want, &n, 1, 9);
    range(want, &n, 11, 12);
    range(want, &n, 21, 25);
    is_int(journal_replay(dir, 1, on_record, &s, &next), n, "two damaged segments");
    ok(seqs_are(&s, want, n) && s.bad == 0, "everything before each bad record, nothing after");

    /* A valid record whose seq goes backwards (a stray copy) also ends its segment. */
    new_dir(dir, sizeof dir);
    build(dir, three, 1, 5);
    seg_path(p, sizeof p, dir, 1);
    uint8_t rec[REC_LEN];
    int fd = open(p, O_RDWR);
    ok(pread(fd, rec, REC_LEN, 0) == REC_LEN && pwrite(fd, rec, REC_LEN, 5 * REC_LEN) == REC_LEN,
       "a copy of record 1 appended after 5");
    close(fd);
    s = (struct seen){0};
    is_int(journal_replay(dir, 1, on_record, &s, &next), 5, "the out-of-order copy is refused");
    is_int(next, 6, "next_seq ignores it");
}

static void test_truncate_before(void)
{
    char dir[300];
    static const uint64_t four[] = {1, 11, 21, 31};
    new_dir(dir, sizeof dir);
    is_int(build(dir, four, 4, 35), 0, "four segments");
    is_int(journal_truncate_before(dir, 10), 0, "seq 10: segment 1 still holds 10");
    ok(exists(dir, 1), "segment 1 kept");
    is_int(journal_truncate_before(dir, 11), 1, "seq 11: segment 1 is all below");
    ok(!exists(dir, 1) && exists(dir, 11), "exactly segment 1 deleted");
    is_int(journal_truncate_before(dir, 20), 0, "seq 20: segment 11 still holds 20");
    is_int(journal_truncate_before(dir, 25), 1, "seq 25: segment 11 goes");
    ok(!exists(dir, 11) && exists(dir, 21) && exists(dir, 31), "21 and 31 kept");
    is_int(journal_truncate_before(dir, 1000), 1, "seq 1000: all but the newest");
    ok(!exists(dir, 21) && exists(dir, 31), "the newest segment is never deleted");
    is_int(journal_truncate_before(dir, 1000), 0, "nothing more to delete");
    struct seen s = {0};
    uint64_t next = 0, want[8];
    int n = 0;
    range(want, &n, 31, 35);
    is_int(journal_replay(dir, 31, on_record, &s, &next), 5, "the kept segment replays");
    ok(seqs_are(&s, want, n), "31..35");
    is_int(journal_size(dir), 5 * REC_LEN, "size counts the remaining segment only");
}

static void test_reopen(void)
{
    char dir[300], err[256], p[512];
    uint64_t next = 0, want[64];
    int n = 0;
    new_dir(dir, sizeof dir);
    build(dir, three, 3, 25);
    struct seen s = {0};
    journal_replay(dir, 1, on_record, &s, &next);
    struct journal *j = journal_open(dir, 21, err, sizeof err);
    ok(j == NULL && strstr(err, "already holds") != NULL,
       "opening over a segment with valid records is refused");
    journal_close(j);
    j = journal_open(dir, next, err, sizeof err);
    ok(j != NULL, "reopen at next_seq %" PRIu64, next);
    if (j == NULL)
        return;
    int rc = 0;
    for (uint64_t q = next; q <= 30; q++)
        rc |= put(j, q);
    is_int(rc, 0, "appends after reopen");
    journal_close(j);
    ok(exists(dir, 26), "a new segment at 26");
    s = (struct seen){0};
    range(want, &n, 1, 30);
    is_int(journal_replay(dir, 1, on_record, &s, &next), 30, "old and new records replay");
    ok(seqs_are(&s, want, n), "seq continues without gap or overlap");
    is_int(next, 31, "next_seq 31");

    /* A crash left segment 31 torn inside its first record, and an empty stale segment 40. */
    seg_path(p, sizeof p, dir, 31);
    FILE *f = fopen(p, "w");
    fputs("torn!", f);
    fclose(f);
    seg_path(p, sizeof p, dir, 40);
    f = fopen(p, "w");
    fclose(f);
    s = (struct seen){0};
    is_int(journal_replay(dir, 1, on_record, &s, &next), 30, "the torn segment gives nothing");
    is_int(next, 31, "next_seq still 31");
    j = journal_open(dir, next, err, sizeof err);
    ok(j != NULL, "open over a torn segment at next_seq");
    rc = 0;
    for (uint64_t q = 31; q <= 33; q++)
        rc |= put(j, q);
    journal_close(j);
    seg_path(p, sizeof p, dir, 31);
    char aside[600];
    snprintf(aside, sizeof aside, "%s.corrupt", p);
    ok(access(aside, F_OK) == 0 && file_size(p) == 3 * REC_LEN, "torn segment set aside");
    ok(!exists(dir, 40), "empty stale segment removed");
    s = (struct seen){0};
    n = 0;
    range(want, &n, 1, 33);
    is_int(journal_replay(dir, 1, on_record, &s, &next), 33, "records after the crash replay");
    ok(seqs_are(&s, want, n) && rc == 0, "1..33 in order");

    /* Rotating to the current segment's own seq before any record adds no file. */
    new_dir(dir, sizeof dir);
    j = journal_open(dir, 50, err, sizeof err);
    is_int(journal_rotate(j, 50), 0, "rotate to the same seq");
    is_int(journal_rotate(j, 49), ERR_INVAL, "rotate backwards refused");
    is_int(put(j, 49), ERR_INVAL, "a seq below the segment refused");
    is_int(put(j, 50), 0, "append 50");
    is_int(put(j, 50), ERR_INVAL, "a repeated seq refused");
    is_int(journal_rotate(j, 50), ERR_INVAL, "rotate to an appended seq refused");
    is_int(put(j, 52), 0, "gaps are fine");
    journal_close(j);
    s = (struct seen){0};
    is_int(journal_replay(dir, 1, on_record, &s, &next), 2, "50 and 52");
    is_int(next, 53, "next_seq 53");
}

static uint8_t big[JOURNAL_RECORD_MAX + 1];

static int on_big(void *ctx, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    int *good = ctx;
    *good += seq == 7 && type == 9 && len == JOURNAL_RECORD_MAX && memcmp(data, big, len) == 0;
    return 0;
}

static void test_large(void)
{
    char dir[300], err[256];
    new_dir(dir, sizeof dir);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    struct journal *j = journal_open(dir, 7, err, sizeof err);
    is_int(journal_append(j, 7, 9, big, sizeof big), ERR_RANGE, "64 KiB + 1 refused");
    is_int(journal_append(j, 7, 9, big, JOURNAL_RECORD_MAX), 0, "exactly 64 KiB accepted");
    journal_close(j);
    int good = 0;
    uint64_t next = 0;
    is_int(journal_replay(dir, 1, on_big, &good, &next), 1, "one record replays");
    is_int(good, 1, "the largest record round-trips byte for byte");
}

static void test_failed_write(void)
{
    char dir[300], err[256], p[512];
    new_dir(dir, sizeof dir);
    struct journal *j = journal_open(dir, 1, err, sizeof err);
    for (uint64_t q = 1; q <= 10; q++)
        put(j, q);
    is_int(journal_flush(j), 0, "first batch written");
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 10 * REC_LEN + 2 * REC_LEN + 5; /* room for 2.2 more records */
    signal(SIGXFSZ, SIG_IGN);
    ok(setrlimit(RLIMIT_FSIZE, &lim) == 0, "file size limit set");
    for (uint64_t q = 11; q <= 20; q++)
        put(j, q);
    int rv = journal_flush(j);
    setrlimit(RLIMIT_FSIZE, &old);
    is_int(rv, ERR_IO, "a write stopped part-way fails");
    seg_path(p, sizeof p, dir, 1);
    is_int(file_size(p), 10 * REC_LEN, "the partial batch was cut off the segment");
    for (uint64_t q = 21; q <= 25; q++)
        put(j, q);
    is_int(journal_flush(j), 0, "later flushes work again");
    journal_close(j);
    struct seen s = {0};
    uint64_t next = 0, want[32];
    int n = 0;
    range(want, &n, 1, 10);
    range(want, &n, 21, 25);
    capture_begin();
    int64_t got = journal_replay(dir, 1, on_record, &s, &next);
    is_int(capture_end_warns(), 0, "no corruption after the failed write");
    is_int(got, 15, "records after the failure are replayable");
    ok(seqs_are(&s, want, n), "1..10 and 21..25 (the failed batch is lost)");
}

int main(void)
{
    if (mkdtemp(root) == NULL)
        return 1;
    alarm(60); /* bound the test's time */
    test_empty();
    test_round_trip();
    test_torn_tail();
    test_flipped_bytes();
    test_truncate_before();
    test_reopen();
    test_large();
    test_failed_write();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
