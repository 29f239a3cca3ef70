/* Edge snapshot (snapshot.h). The writer streams through stdio into path.tmp while keeping a
 * running CRC; the reader loads the file whole (its size is what we wrote, bounded by the state
 * held in memory), verifies magic, version and checksum, walks every section once to validate the
 * lengths, and only then walks them again calling the visitor. Doubles travel as IEEE-754 bit
 * patterns, so a window restores bit for bit. */
#include "snapshot.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32.h"
#include "err.h"
#include "log.h"
#include "xmalloc.h"

#define SNAP_MAGIC "AETHSNAP"
#define SNAP_VERSION 1u
#define SNAP_HEADER (8 + 4 + 8 + 4)
#define SNAP_PATH_MAX 1024
#define SNAP_FILE_MAX ((uint64_t)16 << 30) /* refuse to load anything larger than 16 GiB */

struct snapshot_writer {
    char path[SNAP_PATH_MAX];
    char tmp[SNAP_PATH_MAX + 8];
    FILE *f;
    uint32_t crc;
    int failed;
};

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

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void w_write(struct snapshot_writer *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    if (fwrite(p, 1, n, w->f) != n)
        w->failed = 1;
    w->crc = crc32_update(w->crc, p, n);
}

struct snapshot_writer *snapshot_begin(const char *path, uint64_t seq, uint32_t window, char *err,
                                       size_t errlen)
{
    if (strlen(path) >= SNAP_PATH_MAX) {
        snprintf(err, errlen, "snapshot path too long");
        return NULL;
    }
    struct snapshot_writer *w = xcalloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->f = fopen(w->tmp, "wb");
    if (w->f == NULL) {
        snprintf(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    uint8_t h[SNAP_HEADER];
    memcpy(h, SNAP_MAGIC, 8);
    put_le(h + 8, SNAP_VERSION, 4);
    put_le(h + 12, seq, 8);
    put_le(h + 20, window, 4);
    w_write(w, h, sizeof h);
    return w;
}

int snapshot_put_ids(struct snapshot_writer *w, const uint64_t *ids, size_t n)
{
    uint8_t h[9];
    h[0] = 'I';
    put_le(h + 1, n, 8);
    w_write(w, h, sizeof h);
    uint8_t chunk[8 * 512];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < 512 && i < n; k++, i++)
            put_le(chunk + 8 * k, ids[i], 8);
        w_write(w, chunk, 8 * k);
    }
    return w->failed ? ERR_IO : 0;
}

int snapshot_put_encoded(struct snapshot_writer *w, const void *data, size_t len)
{
    w_write(w, data, len);
    return w->failed ? ERR_IO : 0;
}

int snapshot_encode_account(struct buf *out, const char *account, const double *vals, uint32_t n,
                            double last_z)
{
    size_t klen = strlen(account);
    if (klen > 255)
        return ERR_INVAL;
    uint8_t h[2 + 255 + 4];
    h[0] = 'A';
    h[1] = (uint8_t)klen;
    memcpy(h + 2, account, klen);
    put_le(h + 2 + klen, n, 4);
    size_t mark = out->len;
    int rv = buf_append(out, h, 2 + klen + 4);
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        uint8_t b[8];
        put_le(b, dbits(vals[i]), 8);
        rv = buf_append(out, b, 8);
    }
    if (rv == 0) {
        uint8_t b[8];
        put_le(b, dbits(last_z), 8);
        rv = buf_append(out, b, 8);
    }
    if (rv != 0)
        out->len = mark;
    return rv;
}

/* fsync of the directory holding path, so the rename itself is durable. */
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

int snapshot_commit(struct snapshot_writer *w)
{
    uint8_t t[4];
    put_le(t, w->crc, 4);
    if (!w->failed && fwrite(t, 1, 4, w->f) != 4)
        w->failed = 1;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        w->failed = 1;
    if (fclose(w->f) != 0)
        w->failed = 1;
    int rv = 0;
    if (w->failed || rename(w->tmp, w->path) != 0) {
        log_error("snapshot.write", "cannot write %s: %s", w->path, strerror(errno));
        unlink(w->tmp);
        rv = ERR_IO;
    } else {
        sync_dir(w->path);
    }
    free(w);
    return rv;
}

void snapshot_abort(struct snapshot_writer *w)
{
    if (w == NULL)
        return;
    fclose(w->f);
    unlink(w->tmp);
    free(w);
}

/* Walks the sections after the header; with v == NULL only validates. */
static int walk(const uint8_t *p, size_t len, const struct snapshot_visitor *v)
{
    size_t pos = SNAP_HEADER;
    double *vals = NULL;
    uint64_t *ids = NULL;
    int rv = 0;
    while (pos < len && rv == 0) {
        uint8_t kind = p[pos++];
        if (kind == 'I') {
            if (len - pos < 8 || get_le(p + pos, 8) > (len - pos - 8) / 8) {
                rv = ERR_INVAL;
                break;
            }
            size_t n = (size_t)get_le(p + pos, 8);
            pos += 8;
            if (v) {
                ids = xrealloc(ids, (n ? n : 1) * sizeof *ids);
                for (size_t i = 0; i < n; i++)
                    ids[i] = get_le(p + pos + 8 * i, 8);
                rv = v->on_ids ? v->on_ids(v->ctx, ids, n) : 0;
            }
            pos += 8 * n;
        } else if (kind == 'A') {
            if (len - pos < 1 || len - pos - 1 < (size_t)p[pos] + 4) {
                rv = ERR_INVAL;
                break;
            }
            char key[256];
            size_t klen = p[pos];
            memcpy(key, p + pos + 1, klen);
            key[klen] = '\0';
            pos += 1 + klen;
            uint64_t n = get_le(p + pos, 4);
            pos += 4;
            if (n > (len - pos) / 8 || len - pos - 8 * n < 8 || klen == 0 ||
                memchr(key, '\0', klen)) {
                rv = ERR_INVAL;
                break;
            }
            if (v) {
                vals = xrealloc(vals, (n ? n : 1) * sizeof *vals);
                for (uint64_t i = 0; i < n; i++)
                    vals[i] = bitsd(get_le(p + pos + 8 * i, 8));
                double last_z = bitsd(get_le(p + pos + 8 * n, 8));
                rv = v->on_account ? v->on_account(v->ctx, key, vals, (uint32_t)n, last_z) : 0;
            }
            pos += 8 * n + 8;
        } else {
            rv = ERR_INVAL;
        }
    }
    free(vals);
    free(ids);
    return rv;
}

int snapshot_load(const char *path, const struct snapshot_visitor *v)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
    struct stat st;
    uint8_t *p = NULL;
    int rv = ERR_INVAL;
    if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size > SNAP_FILE_MAX ||
        st.st_size < SNAP_HEADER + 4)
        goto out;
    size_t len = (size_t)st.st_size;
    p = xmalloc(len);
    if (fread(p, 1, len, f) != len) {
        rv = ERR_IO;
        goto out;
    }
    len -= 4;
    if (memcmp(p, SNAP_MAGIC, 8) != 0 || get_le(p + 8, 4) != SNAP_VERSION ||
        crc32_update(0, p, len) != (uint32_t)get_le(p + len, 4) || walk(p, len, NULL) != 0) {
        log_error("snapshot.corrupt",
                  "%s is not a valid snapshot (magic, version, checksum or "
                  "lengths)",
                  path);
        goto out;
    }
    rv = v->on_header ? v->on_header(v->ctx, get_le(p + 12, 8), (uint32_t)get_le(p + 20, 4)) : 0;
    if (rv == 0)
        rv = walk(p, len, v);
out:
    free(p);
    fclose(f);
    return rv;
}
