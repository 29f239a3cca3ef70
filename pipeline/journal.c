/* Write-ahead journal (journal.h). Nothing but the segment files is stored: the segment list is
 * the sorted directory listing, so a crash between any two syscalls leaves a journal that replays
 * correctly, at worst with a torn tail record that the CRC catches.
 *
 * Writing keeps the byte size of the current segment; when a write fails part-way the segment is
 * truncated back to that size, because a torn record in the middle of a segment would hide every
 * later record of it from replay. If even the truncation fails, the segment is abandoned and the
 * next flush starts a new one named by its first record, which keeps the naming invariant (a
 * segment's name is <= its seqs, and < the seqs of later segments) that truncate_before relies on.
 *
 * Replay streams each segment through a fixed read buffer, so memory stays bounded however large a
 * segment grew while snapshots were failing. */
#include "journal.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "buf.h"
#include "crc32.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "xmalloc.h"

#define JOURNAL_HEAD 13                         /* u32 length + u8 type + u64 seq */
#define JOURNAL_TAIL 4                          /* u32 CRC */
#define JOURNAL_BATCH_MAX ((size_t)64 << 20)    /* a 1000-event payload is ~1 MiB; 64x headroom */
#define JOURNAL_DIR_MAX 1024                    /* same bound as fs_mkdirs */
#define JOURNAL_PATH_MAX (JOURNAL_DIR_MAX + 32) /* dir + "/" + 20 digits + ".jnl" */
#define JOURNAL_NAME_LEN 24                     /* 20 digits + ".jnl" */
#define JOURNAL_READ_BUF ((size_t)1 << 20)      /* > one whole record; amortizes read(2) */

struct journal {
    char dir[JOURNAL_DIR_MAX];
    int fd;                 /* current segment, O_APPEND; -1 after a failed open or truncation */
    uint64_t seg_seq;       /* name (first seq) of the current or next segment */
    off_t seg_size;         /* bytes of whole records in the current segment */
    bool have_last;         /* a record was appended since open */
    uint64_t last_seq;      /* highest appended seq, when have_last */
    uint64_t pending_first; /* seq of the first record in pending, when pending.len > 0 */
    struct buf pending;     /* encoded records not yet written */
    bool failing;           /* a failure was logged and recovery not yet */
};

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                     */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void segment_path(char *out, size_t cap, const char *dir, uint64_t first_seq)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".jnl", dir, first_seq);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorted first seqs of the segment files in dir; a missing dir has none. Caller frees *out. */
static int list_segments(const char *dir, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        log_error("journal.list", "cannot list %s: %s", dir, strerror(errno));
        return ERR_IO;
    }
    size_t cap = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strlen(name) != JOURNAL_NAME_LEN || strcmp(name + 20, ".jnl") != 0 ||
            strspn(name, "0123456789") != 20)
            continue;
        errno = 0;
        char *end = NULL;
        unsigned long long v = strtoull(name, &end, 10);
        if (errno != 0 || end != name + 20)
            continue; /* 20 digits can exceed UINT64_MAX: not one of ours */
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = (uint64_t)v;
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_u64);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Segment reader                                                                               */

struct reader {
    int fd;
    uint8_t *buf; /* JOURNAL_READ_BUF bytes */
    size_t start; /* first unconsumed byte in buf */
    size_t end;   /* one past the last valid byte in buf */
    uint64_t off; /* file offset of buf[start] */
    bool eof;
};

/* Makes at least need bytes available at buf + start unless the file ends first. Returns the
 * number available (may be < need only at end of file), or ERR_IO. */
static int64_t reader_fill(struct reader *r, size_t need)
{
    while (r->end - r->start < need && !r->eof) {
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        ssize_t got = read(r->fd, r->buf + r->end, JOURNAL_READ_BUF - r->end);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return ERR_IO;
        if (got == 0)
            r->eof = true;
        r->end += (size_t)got;
    }
    return (int64_t)(r->end - r->start);
}

struct record {
    uint8_t type;
    uint64_t seq;
    const uint8_t *data; /* borrowed from the reader's buffer until the next reader call */
    size_t len;
};

enum read_status { REC_OK, REC_END, REC_TORN, REC_BADLEN, REC_BADCRC, REC_BADSEQ };

static const char *const read_status_names[] = {"ok",         "end",          "torn",
                                                "bad-length", "bad-checksum", "out-of-order"};

/* Decodes the next record. Returns an enum read_status, or ERR_IO. */
static int reader_next(struct reader *r, struct record *rec)
{
    int64_t have = reader_fill(r, JOURNAL_HEAD);
    if (have < 0)
        return (int)have;
    if (have == 0)
        return REC_END;
    if (have < JOURNAL_HEAD)
        return REC_TORN;
    const uint8_t *p = r->buf + r->start;
    size_t len = get_u32(p);
    if (len > JOURNAL_RECORD_MAX)
        return REC_BADLEN;
    size_t total = JOURNAL_HEAD + len + JOURNAL_TAIL;
    have = reader_fill(r, total);
    if (have < 0)
        return (int)have;
    if ((size_t)have < total)
        return REC_TORN;
    p = r->buf + r->start; /* the fill may have moved the bytes */
    uint32_t crc = crc32_update(0, p + 4, JOURNAL_HEAD - 4 + len);
    if (crc != get_u32(p + JOURNAL_HEAD + len))
        return REC_BADCRC;
    rec->type = p[4];
    rec->seq = get_u64(p + 5);
    rec->data = p + JOURNAL_HEAD;
    rec->len = len;
    r->start += total;
    r->off += total;
    return REC_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                      */

/* Opens (creating) segment first_seq for appending. An existing file is only reused when empty:
 * appending after old bytes could put records behind a torn one. */
static int open_segment(struct journal *j, uint64_t first_seq)
{
    char path[JOURNAL_PATH_MAX];
    segment_path(path, sizeof path, j->dir, first_seq);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        int saved = errno;
        log_error("journal.open", "cannot open %s: %s", path, strerror(saved));
        errno = saved;
        return ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size != 0) {
        log_error("journal.open", "%s is not a new empty segment", path);
        close(fd);
        errno = EEXIST;
        return ERR_IO;
    }
    j->fd = fd;
    j->seg_seq = first_seq;
    j->seg_size = 0;
    return 0;
}

/* Inspects the existing segment first_seq >= the seq a new journal starts at. Empty files are
 * removed (except the one the journal will reuse), files whose first record replay would refuse
 * are set aside; ERR_EXISTS when the segment holds a replayable record. */
static int clear_stale_segment(const char *dir, uint64_t first_seq, uint64_t next_seq)
{
    char path[JOURNAL_PATH_MAX], aside[JOURNAL_PATH_MAX + 8];
    segment_path(path, sizeof path, dir, first_seq);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : ERR_IO;
    struct reader r = {.fd = fd, .buf = xmalloc(JOURNAL_READ_BUF)};
    struct record rec = {0};
    int st = reader_next(&r, &rec);
    close(fd);
    free(r.buf);
    if (st < 0)
        return st;
    if (st == REC_OK && rec.seq >= first_seq)
        return ERR_EXISTS;
    if (st == REC_OK)
        st = REC_BADSEQ; /* replay would refuse it too */
    if (st == REC_END) {
        if (first_seq == next_seq || unlink(path) == 0 || errno == ENOENT)
            return 0;
        return ERR_IO;
    }
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    log_warn("journal.set_aside", "%s has no replayable record (%s); renamed to %s", path,
             read_status_names[st], aside);
    return rename(path, aside) == 0 ? 0 : ERR_IO;
}

struct journal *journal_open(const char *dir, uint64_t next_seq, char *err, size_t errlen)
{
    uint64_t *segs = NULL;
    size_t n = 0;
    struct journal *j = NULL;
    if (strlen(dir) >= JOURNAL_DIR_MAX) {
        snprintf(err, errlen, "journal directory path too long (max %d bytes)",
                 JOURNAL_DIR_MAX - 1);
        goto out;
    }
    if (fs_mkdirs(dir) != 0) {
        snprintf(err, errlen, "cannot create journal directory %s: %s", dir, strerror(errno));
        goto out;
    }
    if (list_segments(dir, &segs, &n) != 0) {
        snprintf(err, errlen, "cannot list journal directory %s", dir);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (segs[i] < next_seq)
            continue;
        int rv = clear_stale_segment(dir, segs[i], next_seq);
        if (rv == ERR_EXISTS) {
            snprintf(err, errlen,
                     "journal %s already holds records in segment %020" PRIu64
                     " at or after seq %" PRIu64 "; replay it and open at its next seq",
                     dir, segs[i], next_seq);
            goto out;
        }
        if (rv != 0) {
            snprintf(err, errlen, "cannot clear stale journal segment %020" PRIu64 " in %s: %s",
                     segs[i], dir, strerror(errno));
            goto out;
        }
    }
    j = xcalloc(1, sizeof *j);
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    j->fd = -1;
    buf_init(&j->pending, JOURNAL_BATCH_MAX);
    if (open_segment(j, next_seq) != 0) {
        snprintf(err, errlen, "cannot start journal segment %020" PRIu64 " in %s", next_seq, dir);
        buf_cleanup(&j->pending);
        free(j);
        j = NULL;
    }
out:
    free(segs);
    return j;
}

void journal_close(struct journal *j)
{
    if (j == NULL)
        return;
    journal_flush(j);
    if (j->fd >= 0)
        close(j->fd);
    buf_cleanup(&j->pending);
    free(j);
}

int journal_append(struct journal *j, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    if (len > JOURNAL_RECORD_MAX)
        return ERR_RANGE;
    if (seq < j->seg_seq || (j->have_last && seq <= j->last_seq))
        return ERR_INVAL;
    size_t total = JOURNAL_HEAD + len + JOURNAL_TAIL;
    if (j->pending.len + total > JOURNAL_BATCH_MAX && journal_flush(j) != 0)
        return ERR_IO;
    uint8_t head[JOURNAL_HEAD], tail[JOURNAL_TAIL];
    put_u32(head, (uint32_t)len);
    head[4] = type;
    put_u64(head + 5, seq);
    uint32_t crc = crc32_update(0, head + 4, JOURNAL_HEAD - 4);
    put_u32(tail, crc32_update(crc, data, len));
    if (j->pending.len == 0)
        j->pending_first = seq;
    /* Cannot fail: the batch was flushed above if this record did not fit under its cap. */
    buf_append(&j->pending, head, sizeof head);
    buf_append(&j->pending, data, len);
    buf_append(&j->pending, tail, sizeof tail);
    j->have_last = true;
    j->last_seq = seq;
    return 0;
}

/* Logs the first failure of an outage only. */
static void note_failure(struct journal *j, const char *what, int errnum)
{
    if (!j->failing)
        log_error("journal.write",
                  "journal %s failed in %s: %s; records are dropped from the "
                  "journal until it recovers",
                  what, j->dir, strerror(errnum));
    j->failing = true;
}

int journal_flush(struct journal *j)
{
    int rv = 0;
    if (j->pending.len == 0)
        return 0;
    if (j->fd < 0 && open_segment(j, j->pending_first) != 0) {
        note_failure(j, "segment open", errno);
        rv = ERR_IO;
        goto out;
    }
    const uint8_t *p = (const uint8_t *)j->pending.data;
    size_t off = 0;
    while (off < j->pending.len) {
        ssize_t w = write(j->fd, p + off, j->pending.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int saved = w < 0 ? errno : EIO;
            note_failure(j, "write", saved);
            rv = ERR_IO;
            break;
        }
        off += (size_t)w;
    }
    if (rv == 0) {
        j->seg_size += (off_t)off;
    } else if (off > 0 && ftruncate(j->fd, j->seg_size) != 0) {
        log_error("journal.write",
                  "cannot cut a partial write off segment %020" PRIu64
                  " in %s: %s; the next flush starts a new segment",
                  j->seg_seq, j->dir, strerror(errno));
        close(j->fd);
        j->fd = -1;
    }
    if (rv == 0 && j->failing) {
        log_info("journal.recovered", "journal writes in %s work again", j->dir);
        j->failing = false;
    }
out:
    buf_reset(&j->pending);
    return rv;
}

int journal_rotate(struct journal *j, uint64_t seq)
{
    if (seq < j->seg_seq || (j->have_last && seq <= j->last_seq))
        return ERR_INVAL;
    int rv = journal_flush(j);
    if (seq == j->seg_seq && j->fd >= 0)
        return rv;
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    j->seg_seq = seq;
    int orv = open_segment(j, seq);
    if (orv != 0)
        note_failure(j, "segment open", errno);
    return rv != 0 ? rv : orv;
}

/* ------------------------------------------------------------------------------------------ */
/* Directory operations                                                                         */

int journal_truncate_before(const char *dir, uint64_t seq)
{
    uint64_t *segs;
    size_t n;
    if (list_segments(dir, &segs, &n) != 0)
        return ERR_IO;
    int deleted = 0;
    for (size_t i = 0; i + 1 < n && segs[i + 1] <= seq; i++) {
        char path[JOURNAL_PATH_MAX];
        segment_path(path, sizeof path, dir, segs[i]);
        if (unlink(path) == 0) {
            deleted++;
        } else if (errno != ENOENT) {
            log_error("journal.truncate", "cannot delete %s: %s", path, strerror(errno));
            deleted = ERR_IO;
            break;
        }
    }
    free(segs);
    return deleted;
}

/* Replays one segment, adding the records delivered to *delivered. Returns 0, non-zero from fn,
 * or ERR_IO. */
static int replay_segment(const char *dir, uint64_t first_seq, uint64_t from_seq,
                          journal_record_fn fn, void *ctx, uint8_t *rbuf, uint64_t *next_seq,
                          int64_t *delivered)
{
    char path[JOURNAL_PATH_MAX];
    segment_path(path, sizeof path, dir, first_seq);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0; /* deleted by a concurrent truncate_before: nothing left to replay */
    if (fd < 0) {
        log_error("journal.replay", "cannot open %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    struct reader r = {.fd = fd, .buf = rbuf};
    int rv = 0;
    bool have_prev = false;
    uint64_t prev = 0;
    for (;;) {
        struct record rec = {0};
        uint64_t at = r.off;
        int st = reader_next(&r, &rec);
        if (st < 0) {
            log_error("journal.replay", "cannot read %s: %s", path, strerror(errno));
            rv = ERR_IO;
            break;
        }
        if (st == REC_END)
            break;
        if (st != REC_OK) {
            log_warn("journal.corrupt",
                     "%s: %s record at offset %" PRIu64 "; the rest of this segment is skipped",
                     path, read_status_names[st], at);
            break;
        }
        if (rec.seq < first_seq || (have_prev && rec.seq <= prev)) {
            log_warn("journal.corrupt",
                     "%s: record at offset %" PRIu64 " has seq %" PRIu64
                     " out of order; the rest of this segment is skipped",
                     path, at, rec.seq);
            break;
        }
        have_prev = true;
        prev = rec.seq;
        if (rec.seq >= *next_seq && rec.seq != UINT64_MAX)
            *next_seq = rec.seq + 1;
        if (rec.seq < from_seq)
            continue;
        rv = fn(ctx, rec.seq, rec.type, rec.data, rec.len);
        if (rv != 0)
            break;
        (*delivered)++;
    }
    close(fd);
    return rv;
}

int64_t journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx,
                       uint64_t *next_seq)
{
    uint64_t *segs;
    size_t n;
    uint64_t next = from_seq;
    int64_t delivered = 0;
    int rv = list_segments(dir, &segs, &n);
    if (rv != 0)
        return rv;
    uint8_t *rbuf = xmalloc(JOURNAL_READ_BUF);
    for (size_t s = 0; s < n && rv == 0; s++) {
        if (s + 1 < n && segs[s + 1] <= from_seq)
            continue; /* every record here is < from_seq, so it cannot raise next either */
        rv = replay_segment(dir, segs[s], from_seq, fn, ctx, rbuf, &next, &delivered);
    }
    free(rbuf);
    free(segs);
    *next_seq = next;
    return rv != 0 ? rv : delivered;
}

int64_t journal_size(const char *dir)
{
    uint64_t *segs;
    size_t n;
    if (list_segments(dir, &segs, &n) != 0)
        return ERR_IO;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char path[JOURNAL_PATH_MAX];
        struct stat st;
        segment_path(path, sizeof path, dir, segs[i]);
        if (stat(path, &st) == 0)
            total += st.st_size;
    }
    free(segs);
    return total;
}
