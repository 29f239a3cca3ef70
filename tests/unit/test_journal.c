/* Journal and snapshot files: round trips across segments, from_seq filtering, torn and corrupt
 * tails, truncation, oversized records; snapshots bit-exact, corrupt files rejected with no
 * callback run, atomic replacement. */
#include "journal.h"
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"
#include "snapshot.h"
#include "tap.h"

struct seen {
    uint64_t seqs[1000];
    int n;
    int bad_payload;
};

static int on_record(void *ctx, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    struct seen *s = ctx;
    char want[64];
    snprintf(want, sizeof want, "record %llu", (unsigned long long)seq);
    if (type != 1 || len != strlen(want) || memcmp(data, want, len) != 0)
        s->bad_payload++;
    if (s->n < 1000)
        s->seqs[s->n++] = seq;
    return 0;
}

static void put(struct journal *j, uint64_t seq)
{
    char rec[64];
    snprintf(rec, sizeof rec, "record %llu", (unsigned long long)seq);
    journal_append(j, seq, 1, rec, strlen(rec));
}

static int count_files(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/*.jnl 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

struct snapctx {
    uint64_t seq;
    uint32_t window;
    size_t nids, accounts, calls;
    uint64_t first_id, last_id;
    double v0, vlast, z;
};

static int s_header(void *c, uint64_t seq, uint32_t window)
{
    struct snapctx *x = c;
    x->seq = seq;
    x->window = window;
    x->calls++;
    return 0;
}
static int s_ids(void *c, const uint64_t *ids, size_t n)
{
    struct snapctx *x = c;
    x->nids = n;
    x->first_id = n ? ids[0] : 0;
    x->last_id = n ? ids[n - 1] : 0;
    x->calls++;
    return 0;
}
static int s_account(void *c, const char *account, const double *vals, uint32_t n, double z)
{
    struct snapctx *x = c;
    if (strcmp(account, "acct-7") == 0) {
        x->v0 = vals[0];
        x->vlast = vals[n - 1];
        x->z = z;
    }
    x->accounts++;
    x->calls++;
    return 0;
}

int main(void)
{
    char dir[] = "/tmp/aetheris-journal-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char jdir[300], err[256];
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    struct seen s = {0};
    uint64_t next = 0;
    is_int(journal_replay(jdir, 1, on_record, &s, &next), 0, "a missing journal is empty");
    is_int((long long)next, 1, "next seq of an empty journal");

    struct journal *j = journal_open(jdir, 1, err, sizeof err);
    ok(j != NULL, "journal opens");
    for (uint64_t q = 1; q <= 10; q++)
        put(j, q);
    is_int(journal_flush(j), 0, "flush");
    is_int(journal_rotate(j, 11), 0, "rotate at 11");
    for (uint64_t q = 11; q <= 20; q++)
        put(j, q);
    journal_rotate(j, 21);
    for (uint64_t q = 21; q <= 25; q++)
        put(j, q);
    char big[JOURNAL_RECORD_MAX + 1];
    memset(big, 'x', sizeof big);
    is_int(journal_append(j, 26, 1, big, sizeof big), ERR_RANGE, "oversized record refused");
    journal_close(j);
    is_int(count_files(jdir), 3, "three segments");

    s = (struct seen){0};
    is_int(journal_replay(jdir, 1, on_record, &s, &next), 25, "all 25 records replay");
    ok(s.seqs[0] == 1 && s.seqs[24] == 25 && s.bad_payload == 0, "in order, payloads intact");
    is_int((long long)next, 26, "next seq after the highest");
    s = (struct seen){0};
    is_int(journal_replay(jdir, 15, on_record, &s, &next), 11, "from_seq 15 gives 15..25");
    is_int((long long)s.seqs[0], 15, "first replayed is 15");

    /* Torn tail in the middle segment: cut 3 bytes off its last record. */
    char seg[400];
    snprintf(seg, sizeof seg, "%s/%020d.jnl", jdir, 11);
    struct stat st;
    stat(seg, &st);
    ok(truncate(seg, st.st_size - 3) == 0, "tear the middle segment");
    s = (struct seen){0};
    is_int(journal_replay(jdir, 1, on_record, &s, &next), 24, "torn record skipped, rest kept");
    ok(s.seqs[18] == 19 && s.seqs[19] == 21, "replay continues with the next segment");
    /* Flip a byte in the first segment's third record payload. */
    int fd = open(seg, O_RDWR);
    char c;
    pread(fd, &c, 1, 40);
    c ^= 0x40;
    pwrite(fd, &c, 1, 40);
    close(fd);
    s = (struct seen){0};
    int64_t n = journal_replay(jdir, 1, on_record, &s, &next);
    ok(n < 24 && s.bad_payload == 0,
       "a corrupt record ends its segment; nothing corrupt is "
       "delivered (%lld records)",
       (long long)n);

    is_int(journal_truncate_before(jdir, 21), 2, "truncate before 21 deletes two segments");
    is_int(count_files(jdir), 1, "one segment left");
    is_int(journal_truncate_before(jdir, 1000), 0, "the last segment is never deleted");

    /* Snapshots */
    char snap[300];
    snprintf(snap, sizeof snap, "%s/edge.snap", dir);
    struct snapctx x = {0};
    struct snapshot_visitor v = {&x, s_header, s_ids, s_account};
    is_int(snapshot_load(snap, &v), ERR_NOTFOUND, "no snapshot yet");
    struct snapshot_writer *w = snapshot_begin(snap, 4242, 100, err, sizeof err);
    enum { NIDS = 100000, NACC = 10000 };
    uint64_t *ids = malloc(NIDS * sizeof *ids);
    for (size_t i = 0; i < NIDS; i++)
        ids[i] = i * 7919;
    ids[NIDS - 1] = UINT64_MAX;
    snapshot_put_ids(w, ids, NIDS);
    struct buf b;
    buf_init(&b, (size_t)1 << 30);
    double vals[100];
    for (int a = 0; a < NACC; a++) {
        char key[32];
        snprintf(key, sizeof key, "acct-%d", a);
        for (int i = 0; i < 100; i++)
            vals[i] = i == 0 ? -0.0 : i == 1 ? 4.9e-324 : i == 99 ? 1e300 : a * 1.5 + i;
        snapshot_encode_account(&b, key, vals, 100, -3.25);
    }
    snapshot_put_encoded(w, b.data, b.len);
    is_int(snapshot_commit(w), 0, "snapshot commits");
    is_int(snapshot_load(snap, &v), 0, "snapshot loads");
    ok(x.seq == 4242 && x.window == 100 && x.nids == NIDS && x.accounts == NACC,
       "header, ids and accounts all there");
    ok(x.last_id == UINT64_MAX && x.first_id == 0, "ids exact");
    ok(signbit(x.v0) && x.v0 == 0 && x.vlast == 1e300 && x.z == -3.25, "doubles bit-exact");

    /* Corruption: a flipped byte anywhere or a truncation -> ERR_INVAL, no callback. */
    stat(snap, &st);
    int rejected = 0, tries = 0;
    for (off_t off = 0; off < st.st_size; off += st.st_size / 37 + 1) {
        fd = open(snap, O_RDWR);
        pread(fd, &c, 1, off);
        char flipped = (char)(c ^ 0x10);
        pwrite(fd, &flipped, 1, off);
        x = (struct snapctx){0};
        rejected += snapshot_load(snap, &v) == ERR_INVAL && x.calls == 0;
        tries++;
        pwrite(fd, &c, 1, off);
        close(fd);
    }
    is_int(rejected, tries, "every flipped byte is detected before any callback");
    ok(truncate(snap, st.st_size - 1) == 0, "truncate the snapshot");
    x = (struct snapctx){0};
    ok(snapshot_load(snap, &v) == ERR_INVAL && x.calls == 0, "a truncated snapshot is rejected");

    w = snapshot_begin(snap, 1, 100, err, sizeof err);
    snapshot_abort(w);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", snap);
    ok(access(tmp, F_OK) != 0, "abort leaves no temporary file");
    buf_cleanup(&b);
    free(ids);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
