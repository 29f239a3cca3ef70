/* Write-ahead journal (journal.h). Segments are listed by scanning the directory and sorting the
 * names numerically; nothing else is stored, so a crash between any two syscalls leaves a journal
 * that replays correctly (at worst with a torn tail record, which the CRC catches). */
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
#include "log.h"
#include "xmalloc.h"

#define JOURNAL_HEADER 13                    /* u32 len + u8 type + u64 seq */
#define JOURNAL_TRAILER 4                    /* u32 crc */
#define JOURNAL_BATCH_MAX ((size_t)64 << 20) /* one payload's records: 1000 x 64 KiB max */
#define JOURNAL_PATH_MAX 1024

struct journal {
    char dir[JOURNAL_PATH_MAX];
    int fd;
    struct buf pending;
    bool failing; /* a write failed and has been logged */
};

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

static int open_segment(struct journal *j, uint64_t first_seq)
{
    char path[JOURNAL_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%020" PRIu64 ".jnl", j->dir, first_seq);
    j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        log_error("journal.open", "cannot open %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    return 0;
}

struct journal *journal_open(const char *dir, uint64_t next_seq, char *err, size_t errlen)
{
    if (strlen(dir) >= JOURNAL_PATH_MAX) {
        snprintf(err, errlen, "journal directory path too long");
        return NULL;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create journal directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct journal *j = xcalloc(1, sizeof *j);
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    buf_init(&j->pending, JOURNAL_BATCH_MAX);
    if (open_segment(j, next_seq) != 0) {
        snprintf(err, errlen, "cannot open a journal segment in %s: %s", dir, strerror(errno));
        buf_cleanup(&j->pending);
        free(j);
        return NULL;
    }
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
    uint8_t head[JOURNAL_HEADER], tail[JOURNAL_TRAILER];
    put_u32(head, (uint32_t)len);
    head[4] = type;
    put_u64(head + 5, seq);
    uint32_t crc = crc32_update(0, head + 4, JOURNAL_HEADER - 4);
    crc = crc32_update(crc, data, len);
    put_u32(tail, crc);
    size_t mark = j->pending.len;
    if (buf_append(&j->pending, head, sizeof head) != 0 ||
        buf_append(&j->pending, data, len) != 0 ||
        buf_append(&j->pending, tail, sizeof tail) != 0) {
        j->pending.len = mark; /* keep whole records only */
        return ERR_FULL;
    }
    return 0;
}

int journal_flush(struct journal *j)
{
    size_t off = 0;
    int rv = 0;
    while (off < j->pending.len) {
        ssize_t w = j->fd >= 0 ? write(j->fd, j->pending.data + off, j->pending.len - off) : -1;
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            if (!j->failing)
                log_error("journal.write", "journal write failed: %s", strerror(errno));
            j->failing = true;
            rv = ERR_IO;
            break;
        }
        off += (size_t)w;
    }
    if (rv == 0 && j->failing) {
        log_info("journal.write", "journal writes recovered");
        j->failing = false;
    }
    buf_reset(&j->pending);
    return rv;
}

int journal_rotate(struct journal *j, uint64_t seq)
{
    int rv = journal_flush(j);
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    int orv = open_segment(j, seq);
    return rv ? rv : orv;
}

/* Sorted list of segment start sequence numbers in dir. Caller frees *out. */
static int list_segments(const char *dir, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : ERR_IO;
    size_t cap = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != 24 || strcmp(e->d_name + 20, ".jnl") != 0)
            continue;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(e->d_name, &end, 10);
        if (errno != 0 || end != e->d_name + 20)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = (uint64_t)v;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) /* insertion sort: a handful of segments */
        for (size_t k = i; k > 0 && (*out)[k - 1] > (*out)[k]; k--) {
            uint64_t t = (*out)[k];
            (*out)[k] = (*out)[k - 1];
            (*out)[k - 1] = t;
        }
    return 0;
}

int journal_truncate_before(const char *dir, uint64_t seq)
{
    uint64_t *segs;
    size_t n;
    if (list_segments(dir, &segs, &n) != 0)
        return ERR_IO;
    int deleted = 0;
    for (size_t i = 0; i + 1 < n && segs[i + 1] <= seq; i++) {
        char path[JOURNAL_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%020" PRIu64 ".jnl", dir, segs[i]);
        if (unlink(path) == 0)
            deleted++;
    }
    free(segs);
    return deleted;
}

/* Reads a whole segment file. Caller frees *data. */
static int read_file(const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ERR_IO;
    struct stat st;
    int rv = ERR_IO;
    if (fstat(fd, &st) != 0)
        goto out;
    *data = xmalloc((size_t)st.st_size + 1);
    while (*len < (size_t)st.st_size) {
        ssize_t r = read(fd, *data + *len, (size_t)st.st_size - *len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        *len += (size_t)r;
    }
    rv = 0;
out:
    close(fd);
    return rv;
}

int64_t journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx,
                       uint64_t *next_seq)
{
    uint64_t *segs;
    size_t n;
    *next_seq = from_seq;
    if (list_segments(dir, &segs, &n) != 0)
        return ERR_IO;
    int64_t delivered = 0;
    for (size_t s = 0; s < n; s++) {
        if (s + 1 < n && segs[s + 1] <= from_seq)
            continue; /* every record here is before from_seq */
        char path[JOURNAL_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%020" PRIu64 ".jnl", dir, segs[s]);
        uint8_t *data;
        size_t len, pos = 0;
        if (read_file(path, &data, &len) != 0) {
            free(segs);
            return ERR_IO;
        }
        while (pos < len) {
            if (len - pos < JOURNAL_HEADER + JOURNAL_TRAILER ||
                get_u32(data + pos) > JOURNAL_RECORD_MAX ||
                len - pos - JOURNAL_HEADER - JOURNAL_TRAILER < get_u32(data + pos)) {
                log_warn("journal.torn", "%s: torn record at offset %zu; rest of segment skipped",
                         path, pos);
                break;
            }
            size_t plen = get_u32(data + pos);
            uint32_t crc = crc32_update(0, data + pos + 4, JOURNAL_HEADER - 4 + plen);
            if (crc != get_u32(data + pos + JOURNAL_HEADER + plen)) {
                log_warn("journal.corrupt",
                         "%s: checksum mismatch at offset %zu; rest of "
                         "segment skipped",
                         path, pos);
                break;
            }
            uint8_t type = data[pos + 4];
            uint64_t seq = get_u64(data + pos + 5);
            if (seq + 1 > *next_seq)
                *next_seq = seq + 1;
            if (seq >= from_seq) {
                int rv = fn(ctx, seq, type, data + pos + JOURNAL_HEADER, plen);
                if (rv != 0) {
                    free(data);
                    free(segs);
                    return rv;
                }
                delivered++;
            }
            pos += JOURNAL_HEADER + plen + JOURNAL_TRAILER;
        }
        free(data);
    }
    free(segs);
    return delivered;
}

int64_t journal_size(const char *dir)
{
    uint64_t *segs;
    size_t n;
    if (list_segments(dir, &segs, &n) != 0)
        return ERR_IO;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char path[JOURNAL_PATH_MAX + 32];
        struct stat st;
        snprintf(path, sizeof path, "%s/%020" PRIu64 ".jnl", dir, segs[i]);
        if (stat(path, &st) == 0)
            total += st.st_size;
    }
    free(segs);
    return total;
}
