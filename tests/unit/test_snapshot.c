/* Snapshot files: a 10k-account, 100k-id round trip checked bit for bit (-0.0, denormals, 1e300,
 * infinities, a NaN payload); every truncation and every single-bit flip of a small file rejected
 * with no callback run; well-checksummed files with bad magic, version or lengths rejected;
 * callback errors returned; abort, atomic replacement and a failing commit leave no temp file. */
#include "snapshot.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32.h"
#include "err.h"
#include "tap.h"

#define NACC 10000
#define NIDS 100000
#define WINDOW 100
#define NSHARDS 4

static char root[] = "/tmp/aetheris-snapshot-XXXXXX";

static uint64_t bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* The k-th amount of account a: special values first, then ordinary ones. */
static double amount(int a, uint32_t k)
{
    switch (k) {
    case 0:
        return -0.0;
    case 1:
        return 4.9e-324; /* smallest denormal */
    case 2:
        return 1e300;
    case 3:
        return -1.1125369292536007e-308; /* negative denormal */
    case 4:
        return from_bits(0x7ff8000000000123ull); /* NaN with a payload */
    case 5:
        return -INFINITY;
    default:
        return (a * 131 + (int)k) * 0.37 - 1000.0;
    }
}

static uint32_t count_of(int a)
{
    return (uint32_t)(a % (WINDOW + 1)); /* 0..100 amounts */
}

static double last_z_of(int a)
{
    return a == 0 ? -0.0 : a * -0.001;
}

static uint64_t id_of(size_t i)
{
    return i == NIDS - 1 ? UINT64_MAX : (uint64_t)i * 0x9E3779B97F4A7C15ull;
}

struct check {
    int calls;
    int order_bad; /* a callback before on_header, or the header twice */
    uint64_t seq;
    uint32_t window;
    size_t nids;
    int ids_bad;
    int accounts;
    int accounts_bad;
    unsigned char seen[NACC];
    int stop_account; /* return -42 at this many accounts (0: never) */
    int header_rv;
};

static int c_header(void *ctx, uint64_t seq, uint32_t window)
{
    struct check *c = ctx;
    c->order_bad += c->calls != 0;
    c->calls++;
    c->seq = seq;
    c->window = window;
    return c->header_rv;
}

static int c_ids(void *ctx, const uint64_t *ids, size_t n)
{
    struct check *c = ctx;
    c->order_bad += c->calls == 0;
    c->calls++;
    c->nids = n;
    for (size_t i = 0; i < n; i++)
        c->ids_bad += ids[i] != id_of(i);
    return 0;
}

static int c_account(void *ctx, const char *account, const double *vals, uint32_t n, double z)
{
    struct check *c = ctx;
    c->order_bad += c->calls == 0;
    c->calls++;
    c->accounts++;
    int a = -1;
    if (sscanf(account, "acct-%d", &a) != 1 || a < 0 || a >= NACC || c->seen[a]++ ||
        n != count_of(a) || bits(z) != bits(last_z_of(a))) {
        c->accounts_bad++;
        return c->accounts == c->stop_account ? -42 : 0;
    }
    for (uint32_t k = 0; k < n; k++)
        if (bits(vals[k]) != bits(amount(a, k))) {
            c->accounts_bad++;
            break;
        }
    return c->accounts == c->stop_account ? -42 : 0;
}

static const struct snapshot_visitor visitor_template = {NULL, c_header, c_ids, c_account};

static int load(const char *path, struct check *c)
{
    struct snapshot_visitor v = visitor_template;
    v.ctx = c;
    return snapshot_load(path, &v);
}

static int read_bytes(const char *path, uint8_t *out, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    *len = fread(out, 1, cap, f);
    fclose(f);
    return 0;
}

static void write_bytes(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len)
        ok(0, "cannot write %s", path);
    if (f)
        fclose(f);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------------------------------ */

static void test_encode(void)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    double v[2] = {1, 2};
    is_int(snapshot_encode_account(&b, "", v, 2, 0), ERR_INVAL, "empty account refused");
    char key[SNAPSHOT_ACCOUNT_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    is_int(snapshot_encode_account(&b, key, v, 2, 0), ERR_INVAL, "65-byte account refused");
    is_int(b.len, 0, "nothing appended for refused accounts");
    key[SNAPSHOT_ACCOUNT_MAX] = '\0';
    is_int(snapshot_encode_account(&b, key, v, 2, 0), 0, "64-byte account accepted");
    is_int(b.len, 1 + 1 + 64 + 4 + 2 * 8 + 8, "encoded size: kind, length, key, n, values, z");
    buf_cleanup(&b);
    buf_init(&b, 40);
    is_int(snapshot_encode_account(&b, "acct", v, 2, 0), 0, "fits a 40-byte buffer");
    size_t used = b.len;
    is_int(snapshot_encode_account(&b, "acct", v, 2, 0), ERR_FULL, "a full buffer refuses");
    is_int(b.len, used, "and keeps whole records only");
    buf_cleanup(&b);
}

static void test_round_trip(void)
{
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/edge.snap", root);
    struct check *c = calloc(1, sizeof *c);
    is_int(load(path, c), ERR_NOTFOUND, "missing snapshot: ERR_NOTFOUND");
    is_int(c->calls, 0, "no callback for a missing file");

    struct snapshot_writer *w = snapshot_begin(path, 4242, WINDOW, err, sizeof err);
    ok(w != NULL, "snapshot begins");
    if (w == NULL) {
        free(c);
        return;
    }
    uint64_t *ids = malloc(NIDS * sizeof *ids);
    for (size_t i = 0; i < NIDS; i++)
        ids[i] = id_of(i);
    is_int(snapshot_put_ids(w, ids, NIDS), 0, "ids written");
    struct buf shard[NSHARDS];
    double vals[WINDOW];
    int rc = 0;
    for (int s = 0; s < NSHARDS; s++)
        buf_init(&shard[s], (size_t)64 << 20);
    for (int a = 0; a < NACC; a++) {
        char key[32];
        snprintf(key, sizeof key, "acct-%d", a);
        for (uint32_t k = 0; k < count_of(a); k++)
            vals[k] = amount(a, k);
        rc |= snapshot_encode_account(&shard[a % NSHARDS], key, vals, count_of(a), last_z_of(a));
    }
    is_int(rc, 0, "every account encoded");
    for (int s = 0; s < NSHARDS; s++) {
        rc |= snapshot_put_encoded(w, shard[s].data, shard[s].len);
        buf_cleanup(&shard[s]);
    }
    is_int(rc, 0, "shards copied in");
    is_int(snapshot_commit(w), 0, "snapshot commits");
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ok(!exists(tmp), "no temporary file after commit");

    is_int(load(path, c), 0, "snapshot loads");
    ok(c->seq == 4242 && c->window == WINDOW, "header seq and window");
    ok(c->order_bad == 0, "on_header comes first, once");
    is_int(c->nids, NIDS, "100k ids");
    is_int(c->ids_bad, 0, "every id exact, in order (0 and UINT64_MAX included)");
    is_int(c->accounts, NACC, "10k accounts");
    is_int(c->accounts_bad, 0,
           "every window bit-exact (-0.0, denormals, 1e300, -inf, NaN payload)");
    int once = 1;
    for (int a = 0; a < NACC; a++)
        once &= c->seen[a] == 1;
    ok(once, "each account exactly once");

    memset(c, 0, sizeof *c);
    c->stop_account = 3;
    is_int(load(path, c), -42, "a callback error is returned");
    is_int(c->accounts, 3, "and stops the visit");
    memset(c, 0, sizeof *c);
    c->header_rv = ERR_RANGE;
    is_int(load(path, c), ERR_RANGE, "an on_header error is returned");
    is_int(c->calls, 1, "no section visited after it");
    is_int(snapshot_load(path, NULL), 0, "validate-only load");
    free(ids);
    free(c);
}

/* A small valid snapshot file; returns its bytes in out. */
static size_t small_snapshot(const char *path, uint8_t *out, size_t cap)
{
    char err[256];
    struct snapshot_writer *w = snapshot_begin(path, 77, 3, err, sizeof err);
    uint64_t ids[3] = {id_of(0), id_of(1), id_of(2)};
    snapshot_put_ids(w, ids, 3);
    struct buf b;
    buf_init(&b, 4096);
    double v[3] = {amount(1, 0), amount(1, 1), amount(1, 2)};
    snapshot_encode_account(&b, "acct-1", v, count_of(1), last_z_of(1));
    snapshot_encode_account(&b, "acct-0", v, count_of(0), last_z_of(0));
    snapshot_put_encoded(w, b.data, b.len);
    buf_cleanup(&b);
    snapshot_commit(w);
    size_t len = 0;
    read_bytes(path, out, cap, &len);
    return len;
}

/* Rewrites the trailing CRC so that only the deliberate defect remains. */
static void reseal(uint8_t *p, size_t len)
{
    uint32_t crc = crc32_update(0, p, len - 4);
    for (int i = 0; i < 4; i++)
        p[len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static void test_corrupt(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/small.snap", root);
    uint8_t orig[512], p[520];
    size_t len = small_snapshot(path, orig, sizeof orig);
    ok(len > 24 + 4 && len < sizeof orig, "small snapshot of %zu bytes", len);
    struct check c = {0};
    is_int(load(path, &c), 0, "the small snapshot loads");
    ok(c.accounts == 2 && c.nids == 3 && c.accounts_bad == 0 && c.ids_bad == 0, "and is right");

    int rejected = 0;
    for (size_t cut = 0; cut < len; cut++) {
        write_bytes(path, orig, cut);
        c = (struct check){0};
        rejected += load(path, &c) == ERR_INVAL && c.calls == 0;
    }
    is_int(rejected, len, "every truncation rejected, no callback");

    rejected = 0;
    for (size_t off = 0; off < len; off++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(p, orig, len);
            p[off] ^= (uint8_t)(1u << bit);
            write_bytes(path, p, len);
            c = (struct check){0};
            rejected += load(path, &c) == ERR_INVAL && c.calls == 0;
        }
    is_int(rejected, 8 * len, "every single-bit flip anywhere rejected, no callback");

    memcpy(p, orig, len);
    p[len] = 0;
    write_bytes(path, p, len + 1);
    c = (struct check){0};
    ok(load(path, &c) == ERR_INVAL && c.calls == 0, "a trailing extra byte rejected");

    /* Defects behind a valid checksum: only the structural checks can catch these. */
    struct {
        size_t off;
        uint8_t val;
        const char *what;
    } defects[] = {
        {0, 'X', "bad magic"},
        {8, 2, "unsupported version"},
        {24, 'Z', "unknown section kind"},
        {25, 0xff, "id count past the end"},
        {32, 0x80, "id count overflowing 8 x count"},
        {24 + 9 + 24 + 1, 0, "zero-length account"},
        {24 + 9 + 24 + 1, 65, "65-byte account"},
        {24 + 9 + 24 + 2 + 6, 0xff, "amount count past the end"},
        {24 + 9 + 24 + 3, 0, "NUL inside an account"},
    };
    size_t nd = sizeof defects / sizeof defects[0];
    for (size_t i = 0; i < nd; i++) {
        memcpy(p, orig, len);
        p[defects[i].off] = defects[i].val;
        reseal(p, len);
        write_bytes(path, p, len);
        c = (struct check){0};
        int rv = load(path, &c);
        if (!ok(rv == ERR_INVAL && c.calls == 0, "resealed defect rejected: %s", defects[i].what))
            printf("#   got %d after %d calls\n", rv, c.calls);
    }
    memcpy(p, orig, len);
    reseal(p, len);
    write_bytes(path, p, len);
    is_int(load(path, &c), 0, "control: resealing alone changes nothing");
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    const struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_replace_and_abort(void)
{
    char dir[300], path[320], tmp[360], err[256];
    snprintf(dir, sizeof dir, "%s/replace", root);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/edge.snap", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    uint8_t before[512], after[512];
    size_t blen = small_snapshot(path, before, sizeof before), alen = 0;

    struct snapshot_writer *w = snapshot_begin(path, 78, 5, err, sizeof err);
    uint64_t id = 9;
    snapshot_put_ids(w, &id, 1);
    struct check c = {0};
    ok(exists(tmp), "the new snapshot goes to path.tmp");
    ok(load(path, &c) == 0 && c.seq == 77, "until commit, readers see the old snapshot");
    is_int(snapshot_commit(w), 0, "commit");
    c = (struct check){0};
    ok(load(path, &c) == 0 && c.seq == 78 && c.window == 5 && c.nids == 1,
       "after commit, the new one");
    ok(!exists(tmp) && count_entries(dir) == 1, "one file in the directory, no temp");

    small_snapshot(path, before, sizeof before);
    w = snapshot_begin(path, 79, 5, err, sizeof err);
    snapshot_put_ids(w, &id, 1);
    snapshot_abort(w);
    snapshot_abort(NULL);
    read_bytes(path, after, sizeof after, &alen);
    ok(!exists(tmp), "abort leaves no temporary file");
    ok(alen == blen && memcmp(before, after, blen) == 0, "and the old snapshot untouched");

    /* A commit that cannot rename (path is a non-empty directory) fails cleanly. */
    char blocker[340], inside[360];
    snprintf(blocker, sizeof blocker, "%s/blocked", dir);
    snprintf(inside, sizeof inside, "%s/x", blocker);
    mkdir(blocker, 0700);
    write_bytes(inside, before, 1);
    w = snapshot_begin(blocker, 1, 1, err, sizeof err);
    ok(w != NULL, "begin next to a directory");
    is_int(snapshot_commit(w), ERR_IO, "commit over a directory fails");
    snprintf(tmp, sizeof tmp, "%s.tmp", blocker);
    ok(!exists(tmp), "a failed commit removes its temporary file");

    char missing[340];
    snprintf(missing, sizeof missing, "%s/no/such/dir/edge.snap", root);
    err[0] = '\0';
    w = snapshot_begin(missing, 1, 1, err, sizeof err);
    ok(w == NULL && strstr(err, "cannot create") != NULL, "begin in a missing dir: NULL + err");
}

struct image_check {
    uint64_t seq;
    uint32_t window;
    size_t nids, accounts;
    int ids_ok, account_ok;
};

static int img_header(void *ctx, uint64_t seq, uint32_t window)
{
    struct image_check *g = ctx;
    g->seq = seq;
    g->window = window;
    return 0;
}

static int img_ids(void *ctx, const uint64_t *ids, size_t n)
{
    struct image_check *g = ctx;
    g->nids = n;
    g->ids_ok = n == 2 && ids[0] == 7 && ids[1] == 1ULL << 63;
    return 0;
}

static int img_account(void *ctx, const char *account, const double *vals, uint32_t n, double z)
{
    struct image_check *g = ctx;
    g->accounts++;
    g->account_ok = strcmp(account, "acct-1") == 0 && n == 3 && bits(vals[0]) == bits(1.5) &&
                    bits(vals[1]) == bits(-0.0) && bits(vals[2]) == bits(1e300) &&
                    bits(z) == bits(0.25);
    return 0;
}

/* The in-memory image (cluster partitions): snapshot_format then snapshot_parse gives the same
 * windows bit for bit, the same file as the writer would produce, and corruption is refused. */
static void test_image(void)
{
    struct buf acc, img;
    buf_init(&acc, 1 << 20);
    buf_init(&img, 1 << 20);
    double v[3] = {1.5, -0.0, 1e300};
    ok(snapshot_encode_account(&acc, "acct-1", v, 3, 0.25) == 0, "one account encoded");
    uint64_t ids[2] = {7, 1ULL << 63};
    ok(snapshot_format(&img, 99, 100, ids, 2, acc.data, acc.len) == 0, "image formatted");
    struct image_check got = {0};
    struct snapshot_visitor vis = {&got, img_header, img_ids, img_account};
    ok(snapshot_parse(img.data, img.len, "image", &vis) == 0, "the image is valid");
    ok(got.seq == 99 && got.window == 100, "header: seq 99, window 100");
    ok(got.nids == 2 && got.ids_ok, "ids 7 and 2^63 in order");
    ok(got.accounts == 1 && got.account_ok, "the account's window and z, bit for bit");
    char path[300];
    snprintf(path, sizeof path, "%s/image.snap", root);
    write_bytes(path, (const uint8_t *)img.data, img.len);
    is_int(snapshot_load(path, NULL), 0, "and loads as a snapshot file");
    img.data[img.len - 1] ^= 1;
    is_int(snapshot_parse(img.data, img.len, "image", NULL), ERR_INVAL, "a flipped bit: refused");
    is_int(snapshot_parse(img.data, 10, "image", NULL), ERR_INVAL, "a truncated image: refused");
    buf_reset(&img);
    ok(snapshot_format(&img, 5, 100, NULL, 0, NULL, 0) == 0, "an empty image (no ids section)");
    is_int(snapshot_parse(img.data, img.len, "empty", NULL), 0, "is valid");
    is_int(img.len, 8 + 4 + 8 + 4 + 4, "and is header plus checksum only");
    struct buf tiny;
    buf_init(&tiny, 16);
    is_int(snapshot_format(&tiny, 5, 100, NULL, 0, NULL, 0), ERR_FULL, "a small cap: ERR_FULL");
    is_int(tiny.len, 0, "and nothing appended");
    buf_cleanup(&tiny);
    buf_cleanup(&acc);
    buf_cleanup(&img);
}

int main(void)
{
    if (mkdtemp(root) == NULL)
        return 1;
    alarm(120); /* bound the test's time */
    test_encode();
    test_round_trip();
    test_corrupt();
    test_replace_and_abort();
    test_image();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
