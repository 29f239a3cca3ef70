/* Edge snapshot (snapshot.h). The writer encodes into a 1 MiB buffer that it writes to path.tmp
 * with plain write(2) calls while keeping a running CRC, so the checksum costs no second pass.
 * Errors are sticky: after the first failed write every later call returns ERR_IO and commit
 * removes the temporary file.
 *
 * The reader loads the file whole (it is bounded by the state we held in memory, and capped),
 * checks magic, version and checksum, walks every section once to validate all lengths, and only
 * then walks again calling the visitor: a corrupt file never reaches a callback. */
#include "snapshot.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "xmalloc.h"

_Static_assert(SNAPSHOT_ACCOUNT_MAX >= EVENT_ACCOUNT_MAX, "every valid account must be storable");
_Static_assert(SNAPSHOT_ACCOUNT_MAX <= 255, "the key length is stored in one byte");

#define SNAP_MAGIC "AETHSNAP"
#define SNAP_VERSION 1u
#define SNAP_HEADER (8 + 4 + 8 + 4)        /* magic + version + seq + window */
#define SNAP_TRAILER 4                     /* CRC-32 */
#define SNAP_PATH_MAX 1024                 /* path.tmp must fit too */
#define SNAP_FILE_MAX ((uint64_t)8 << 30)  /* ~10 M accounts x 100 amounts; refuse beyond */
#define SNAP_WBUF ((size_t)1 << 20)        /* write(2) granularity */
#define SNAP_ACCOUNT_FIXED (1 + 1 + 4 + 8) /* 'A' + key length + n + last_z */

struct snapshot_writer {
    char path[SNAP_PATH_MAX];
    char tmp[SNAP_PATH_MAX + 8];
    int fd;
    uint8_t *wbuf; /* SNAP_WBUF bytes of pending output */
    size_t wlen;   /* bytes used in wbuf */
    uint32_t crc;  /* CRC-32 of everything appended so far */
    bool failed;   /* a write failed (logged) */
};

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                     */

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int snapshot_encode_account(struct buf *out, const char *account, const double *vals, uint32_t n,
                            double last_z)
{
    size_t klen = strlen(account);
    if (klen == 0 || klen > SNAPSHOT_ACCOUNT_MAX)
        return ERR_INVAL;
    size_t mark = out->len;
    uint8_t h[2 + SNAPSHOT_ACCOUNT_MAX + 4];
    h[0] = 'A';
    h[1] = (uint8_t)klen;
    memcpy(h + 2, account, klen);
    put_le(h + 2 + klen, n, 4);
    int rv = buf_append(out, h, 2 + klen + 4);
    uint8_t chunk[8 * 64];
    for (uint32_t i = 0; i < n && rv == 0;) {
        size_t k = 0;
        for (; k < 64 && i < n; k++, i++)
            put_le(chunk + 8 * k, double_bits(vals[i]), 8);
        rv = buf_append(out, chunk, 8 * k);
    }
    if (rv == 0) {
        put_le(chunk, double_bits(last_z), 8);
        rv = buf_append(out, chunk, 8);
    }
    if (rv != 0)
        out->len = mark; /* whole records only */
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                       */

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return ERR_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void fail(struct snapshot_writer *w, const char *what)
{
    if (!w->failed)
        log_error("snapshot.write", "%s of %s failed: %s", what, w->tmp, strerror(errno));
    w->failed = true;
}

static void w_drain(struct snapshot_writer *w)
{
    if (!w->failed && w->wlen > 0 && write_all(w->fd, w->wbuf, w->wlen) != 0)
        fail(w, "write");
    w->wlen = 0;
}

/* Appends bytes to the file through the buffer; large blocks bypass it. */
static void w_put(struct snapshot_writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    w->crc = crc32_update(w->crc, p, n);
    if (w->wlen + n > SNAP_WBUF)
        w_drain(w);
    if (n >= SNAP_WBUF) {
        if (!w->failed && write_all(w->fd, p, n) != 0)
            fail(w, "write");
        return;
    }
    memcpy(w->wbuf + w->wlen, p, n);
    w->wlen += n;
}

struct snapshot_writer *snapshot_begin(const char *path, uint64_t seq, uint32_t window, char *err,
                                       size_t errlen)
{
    if (strlen(path) >= SNAP_PATH_MAX || path[0] == '\0') {
        snprintf(err, errlen, "snapshot path empty or too long (max %d bytes)", SNAP_PATH_MAX - 1);
        return NULL;
    }
    struct snapshot_writer *w = xcalloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    w->wbuf = xmalloc(SNAP_WBUF);
    uint8_t h[SNAP_HEADER];
    memcpy(h, SNAP_MAGIC, 8);
    put_le(h + 8, SNAP_VERSION, 4);
    put_le(h + 12, seq, 8);
    put_le(h + 20, window, 4);
    w_put(w, h, sizeof h);
    return w;
}

int snapshot_put_ids(struct snapshot_writer *w, const uint64_t *ids, size_t n)
{
    uint8_t chunk[8 * 512];
    chunk[0] = 'I';
    put_le(chunk + 1, n, 8);
    w_put(w, chunk, 9);
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < 512 && i < n; k++, i++)
            put_le(chunk + 8 * k, ids[i], 8);
        w_put(w, chunk, 8 * k);
    }
    return w->failed ? ERR_IO : 0;
}

int snapshot_put_encoded(struct snapshot_writer *w, const void *data, size_t len)
{
    w_put(w, data, len);
    return w->failed ? ERR_IO : 0;
}

/* fsync of the directory holding path, so that the rename itself is durable. */
static int sync_dir(const char *path)
{
    char copy[SNAP_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ERR_IO;
    int rv = fsync(fd) == 0 ? 0 : ERR_IO;
    close(fd);
    return rv;
}

static void writer_free(struct snapshot_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->wbuf);
    free(w);
}

int snapshot_commit(struct snapshot_writer *w)
{
    int rv = ERR_IO;
    uint8_t t[SNAP_TRAILER];
    put_le(t, w->crc, 4);
    w_put(w, t, sizeof t);
    w_drain(w);
    if (!w->failed && fsync(w->fd) != 0)
        fail(w, "fsync");
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0)
        fail(w, "close");
    if (w->failed) {
        unlink(w->tmp);
        goto out;
    }
    if (rename(w->tmp, w->path) != 0) {
        log_error("snapshot.write", "cannot rename %s over %s: %s", w->tmp, w->path,
                  strerror(errno));
        unlink(w->tmp);
        goto out;
    }
    if (sync_dir(w->path) != 0) {
        log_error("snapshot.write", "cannot fsync the directory of %s: %s", w->path,
                  strerror(errno));
        goto out;
    }
    rv = 0;
out:
    writer_free(w);
    return rv;
}

void snapshot_abort(struct snapshot_writer *w)
{
    if (w == NULL)
        return;
    unlink(w->tmp);
    writer_free(w);
}

/* ------------------------------------------------------------------------------------------ */
/* Reader                                                                                       */

/* Walks the sections of p[SNAP_HEADER..len). With v == NULL it only validates: ERR_INVAL at the
 * first bad section. With v it calls back; the bytes must already have been validated. */
static int walk(const uint8_t *p, size_t len, const struct snapshot_visitor *v)
{
    size_t pos = SNAP_HEADER;
    double *vals = NULL;
    uint64_t *ids = NULL;
    int rv = 0;
    while (pos < len && rv == 0) {
        uint8_t kind = p[pos++];
        size_t left = len - pos;
        if (kind == 'I') {
            if (left < 8 || get_le(p + pos, 8) > (left - 8) / 8) {
                rv = ERR_INVAL;
                break;
            }
            size_t n = (size_t)get_le(p + pos, 8);
            pos += 8;
            if (v != NULL && v->on_ids != NULL) {
                ids = xrealloc(ids, (n ? n : 1) * sizeof *ids);
                for (size_t i = 0; i < n; i++)
                    ids[i] = get_le(p + pos + 8 * i, 8);
                rv = v->on_ids(v->ctx, ids, n);
            }
            pos += 8 * n;
        } else if (kind == 'A') {
            size_t klen = left >= 1 ? p[pos] : 0;
            if (klen == 0 || klen > SNAPSHOT_ACCOUNT_MAX || left - 1 < klen + 4 ||
                memchr(p + pos + 1, '\0', klen) != NULL) {
                rv = ERR_INVAL;
                break;
            }
            char key[SNAPSHOT_ACCOUNT_MAX + 1];
            memcpy(key, p + pos + 1, klen);
            key[klen] = '\0';
            pos += 1 + klen;
            uint32_t n = (uint32_t)get_le(p + pos, 4);
            pos += 4;
            left = len - pos;
            if (left < 8 || n > (left - 8) / 8) {
                rv = ERR_INVAL;
                break;
            }
            if (v != NULL && v->on_account != NULL) {
                vals = xrealloc(vals, (n ? n : 1) * sizeof *vals);
                for (uint32_t i = 0; i < n; i++)
                    vals[i] = bits_double(get_le(p + pos + 8 * (size_t)i, 8));
                double last_z = bits_double(get_le(p + pos + 8 * (size_t)n, 8));
                rv = v->on_account(v->ctx, key, vals, n, last_z);
            }
            pos += 8 * (size_t)n + 8;
        } else {
            rv = ERR_INVAL;
        }
    }
    free(vals);
    free(ids);
    return rv;
}

/* Reads the whole file: 0, ERR_NOTFOUND, ERR_INVAL (too small or too large) or ERR_IO. */
static int read_whole(const char *path, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
    struct stat st;
    int rv = ERR_IO;
    if (fstat(fd, &st) != 0)
        goto out;
    rv = ERR_INVAL;
    if (st.st_size < SNAP_HEADER + SNAP_TRAILER || (uint64_t)st.st_size > SNAP_FILE_MAX) {
        log_warn("snapshot.corrupt", "%s has an impossible size (%lld bytes)", path,
                 (long long)st.st_size);
        goto out;
    }
    size_t len = (size_t)st.st_size, got = 0;
    *out = xmalloc(len);
    while (got < len) {
        ssize_t r = read(fd, *out + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got != len) {
        log_warn("snapshot.read", "%s: read %zu of %zu bytes", path, got, len);
        rv = ERR_IO;
        goto out;
    }
    *outlen = len;
    rv = 0;
out:
    close(fd);
    if (rv != 0) {
        free(*out);
        *out = NULL;
    }
    return rv;
}

/* Checks and visits a whole snapshot image; `what` names it in the log. */
static int parse_image(const uint8_t *p, size_t len, const char *what,
                       const struct snapshot_visitor *v)
{
    const char *why = NULL;
    size_t body = len >= SNAP_TRAILER ? len - SNAP_TRAILER : 0;
    if (len < SNAP_HEADER + SNAP_TRAILER || (uint64_t)len > SNAP_FILE_MAX)
        why = "impossible size";
    else if (memcmp(p, SNAP_MAGIC, 8) != 0)
        why = "bad magic";
    else if (get_le(p + 8, 4) != SNAP_VERSION)
        why = "unsupported version";
    else if (crc32_update(0, p, body) != (uint32_t)get_le(p + body, 4))
        why = "checksum mismatch";
    else if (walk(p, body, NULL) != 0)
        why = "bad section lengths";
    if (why != NULL) {
        log_warn("snapshot.corrupt", "%s is not a valid snapshot: %s", what, why);
        return ERR_INVAL;
    }
    if (v == NULL)
        return 0;
    int rv = 0;
    if (v->on_header != NULL)
        rv = v->on_header(v->ctx, get_le(p + 12, 8), (uint32_t)get_le(p + 20, 4));
    return rv == 0 ? walk(p, body, v) : rv;
}

int snapshot_load(const char *path, const struct snapshot_visitor *v)
{
    uint8_t *p;
    size_t len;
    int rv = read_whole(path, &p, &len);
    if (rv != 0)
        return rv;
    rv = parse_image(p, len, path, v);
    free(p);
    return rv;
}

int snapshot_parse(const void *data, size_t len, const char *what, const struct snapshot_visitor *v)
{
    return parse_image(data, len, what, v);
}

int snapshot_format(struct buf *out, uint64_t seq, uint32_t window, const uint64_t *ids,
                    size_t nids, const void *accounts, size_t len)
{
    size_t mark = out->len;
    uint8_t h[SNAP_HEADER];
    memcpy(h, SNAP_MAGIC, 8);
    put_le(h + 8, SNAP_VERSION, 4);
    put_le(h + 12, seq, 8);
    put_le(h + 20, window, 4);
    int rv = buf_append(out, h, sizeof h);
    if (rv == 0 && ids != NULL) {
        uint8_t sec[9] = {'I'};
        put_le(sec + 1, nids, 8);
        rv = buf_append(out, sec, sizeof sec);
        for (size_t i = 0; i < nids && rv == 0; i++) {
            uint8_t id[8];
            put_le(id, ids[i], 8);
            rv = buf_append(out, id, sizeof id);
        }
    }
    if (rv == 0 && len > 0)
        rv = buf_append(out, accounts, len);
    if (rv == 0) {
        uint8_t t[SNAP_TRAILER];
        put_le(t, crc32_update(0, (const uint8_t *)out->data + mark, out->len - mark), 4);
        rv = buf_append(out, t, sizeof t);
    }
    if (rv != 0)
        out->len = mark;
    return rv;
}
