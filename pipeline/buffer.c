/* Redis Streams helpers (buffer.h). Every command goes through rconn in argv form. Replies are
 * checked for their exact shape: anything unexpected is ERR_PROTO (logged once at this boundary)
 * rather than a crash, since Redis is a dependency we do not control. */
#include "buffer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

static const char *const lane_names[LANE__COUNT] = {"immediate", "batch"};

const char *lane_name(enum lane lane)
{
    return lane_names[lane];
}

void buffer_keys_init(const struct config *cfg, struct buffer_keys *k)
{
    for (int l = 0; l < LANE__COUNT; l++)
        snprintf(k->stream[l], sizeof k->stream[l], "%sstream:%s", cfg->redis_prefix,
                 lane_names[l]);
    snprintf(k->deadletter, sizeof k->deadletter, "%sstream:deadletter", cfg->redis_prefix);
    snprintf(k->deadletter_max, sizeof k->deadletter_max, "%d", cfg->deadletter_keep);
    snprintf(k->lock_prefix, sizeof k->lock_prefix, "%saccount:lock:", cfg->redis_prefix);
    snprintf(k->group, sizeof k->group, "%s", cfg->consumer_group);
    snprintf(k->consumer, sizeof k->consumer, "%s", cfg->node_id);
}

/* NULL reply -> ERR_CONN; error reply -> ERR_PROTO (or ERR_NOTFOUND for NOGROUP). */
static int reply_status(const redisReply *r)
{
    if (r == NULL) {
        metrics_inc(M_REDIS_ERRORS);
        return ERR_CONN;
    }
    if (r->type == REDIS_REPLY_ERROR)
        return strncmp(r->str, "NOGROUP", 7) == 0 ? ERR_NOTFOUND : ERR_PROTO;
    return 0;
}

int buffer_ensure_groups(struct rconn *rc, const struct buffer_keys *k)
{
    for (int l = 0; l < LANE__COUNT; l++) {
        redisReply *r = rconn_cmd(rc, "XGROUP", "CREATE", k->stream[l], k->group, "0", "MKSTREAM",
                                  (char *)NULL);
        int st = reply_status(r);
        if (st == ERR_PROTO && strncmp(r->str, "BUSYGROUP", 9) == 0)
            st = 0;
        if (st == ERR_PROTO)
            log_error("redis.group_create", "XGROUP CREATE %s: %s", k->stream[l], r->str);
        if (r)
            freeReplyObject(r);
        if (st != 0)
            return st;
    }
    return 0;
}

int buffer_add(struct rconn *rc, const struct buffer_keys *k, size_t n, const char *const *payloads,
               const size_t *lens, const enum lane *lanes, const double *suspicion)
{
    if (n == 0)
        return 0;
    struct rcmd *cmds = xcalloc(n, sizeof *cmds);
    redisReply **replies = xcalloc(n, sizeof *replies);
    char(*sus)[32] = xcalloc(n, sizeof *sus);
    int rv = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(sus[i], sizeof sus[i], "%.4f", suspicion[i]);
        rcmd_add(&cmds[i], "XADD");
        rcmd_add(&cmds[i], k->stream[lanes[i]]);
        rcmd_add(&cmds[i], "*");
        rcmd_add(&cmds[i], "payload");
        rcmd_addb(&cmds[i], payloads[i], lens[i]);
        rcmd_add(&cmds[i], "suspicion");
        rcmd_add(&cmds[i], sus[i]);
    }
    rv = rconn_pipeline(rc, n, cmds, replies);
    if (rv != 0) {
        metrics_inc(M_REDIS_ERRORS);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (replies[i]->type != REDIS_REPLY_STRING) {
            if (rv == 0)
                log_error("redis.xadd", "XADD failed: %s",
                          replies[i]->type == REDIS_REPLY_ERROR ? replies[i]->str : "bad reply");
            rv = ERR_PROTO;
        }
        freeReplyObject(replies[i]);
    }
    if (rv == 0)
        metrics_add(M_STREAM_ADDED, n);
out:
    free(cmds);
    free(replies);
    free(sus);
    return rv;
}

static enum lane lane_of_key(const struct buffer_keys *k, const char *key)
{
    return strcmp(key, k->stream[LANE_BATCH]) == 0 ? LANE_BATCH : LANE_IMMEDIATE;
}

/* Parses one [id, [field, value, ...]] entry; returns 1 when it carried a payload, 0 for a
 * deleted entry (nil fields), ERR_PROTO for anything else. */
static int parse_entry(const redisReply *e, enum lane lane, struct stream_entry *out)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= BUFFER_ID_MAX)
        return ERR_PROTO;
    memset(out, 0, sizeof *out);
    out->lane = lane;
    out->deliveries = 1;
    memcpy(out->id, e->element[0]->str, e->element[0]->len);
    const redisReply *f = e->element[1];
    if (f->type == REDIS_REPLY_NIL)
        return 0;
    if (f->type != REDIS_REPLY_ARRAY)
        return ERR_PROTO;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *name = f->element[i], *val = f->element[i + 1];
        if (name->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING &&
            strcmp(name->str, "payload") == 0) {
            out->payload = xstrndup(val->str, val->len);
            out->len = val->len;
            return 1;
        }
    }
    out->payload = xstrdup("");
    return 1;
}

int buffer_read(struct rconn *rc, const struct buffer_keys *k, const enum lane *lanes,
                size_t nlanes, const char *start_id, int count, int block_ms,
                struct stream_entry *out, size_t max)
{
    struct rcmd c = {0};
    char count_s[16], block_s[16];
    snprintf(count_s, sizeof count_s, "%d", count);
    snprintf(block_s, sizeof block_s, "%d", block_ms);
    rcmd_add(&c, "XREADGROUP");
    rcmd_add(&c, "GROUP");
    rcmd_add(&c, k->group);
    rcmd_add(&c, k->consumer);
    rcmd_add(&c, "COUNT");
    rcmd_add(&c, count_s);
    if (block_ms > 0) {
        rcmd_add(&c, "BLOCK");
        rcmd_add(&c, block_s);
    }
    rcmd_add(&c, "STREAMS");
    for (size_t i = 0; i < nlanes; i++)
        rcmd_add(&c, k->stream[lanes[i]]);
    for (size_t i = 0; i < nlanes; i++)
        rcmd_add(&c, start_id);
    redisReply *r = rconn_command(rc, c.argc, c.argv, c.lens);
    int st = reply_status(r);
    if (st != 0) {
        if (st == ERR_PROTO)
            log_error("redis.xreadgroup", "XREADGROUP: %s", r->str);
        goto out;
    }
    size_t got = 0;
    if (r->type == REDIS_REPLY_NIL)
        goto done;
    if (r->type != REDIS_REPLY_ARRAY) {
        st = ERR_PROTO;
        goto out;
    }
    for (size_t s = 0; s < r->elements; s++) {
        const redisReply *sr = r->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 ||
            sr->element[0]->type != REDIS_REPLY_STRING ||
            sr->element[1]->type != REDIS_REPLY_ARRAY) {
            st = ERR_PROTO;
            goto out;
        }
        enum lane lane = lane_of_key(k, sr->element[0]->str);
        for (size_t e = 0; e < sr->element[1]->elements && got < max; e++) {
            int pr = parse_entry(sr->element[1]->element[e], lane, &out[got]);
            if (pr < 0) {
                st = pr;
                goto out;
            }
            got += (size_t)pr;
        }
    }
done:
    st = (int)got;
out:
    if (r)
        freeReplyObject(r);
    return st;
}

int buffer_ack(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
               const char *const *ids, size_t n)
{
    size_t done = 0;
    while (done < n) {
        struct rcmd c = {0};
        rcmd_add(&c, "XACK");
        rcmd_add(&c, k->stream[lane]);
        rcmd_add(&c, k->group);
        while (done < n && c.argc < RCONN_MAX_ARGS)
            rcmd_add(&c, ids[done++]);
        redisReply *r = rconn_command(rc, c.argc, c.argv, c.lens);
        int st = reply_status(r);
        if (r)
            freeReplyObject(r);
        if (st != 0)
            return st;
    }
    return 0;
}

/* Fills deliveries for claimed entries from XPENDING <stream> <group> <id> <id> 1. */
static void fill_deliveries(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                            struct stream_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *r = rconn_cmd(rc, "XPENDING", k->stream[lane], k->group, e[i].id, e[i].id, "1",
                                  (char *)NULL);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 4 &&
            r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
            e[i].deliveries = r->element[0]->element[3]->integer;
        if (r)
            freeReplyObject(r);
    }
}

int buffer_autoclaim(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                     int64_t min_idle_ms, char *cursor, struct stream_entry *out, size_t max)
{
    char idle_s[24], count_s[16];
    snprintf(idle_s, sizeof idle_s, "%lld", (long long)min_idle_ms);
    snprintf(count_s, sizeof count_s, "%zu", max);
    redisReply *r = rconn_cmd(rc, "XAUTOCLAIM", k->stream[lane], k->group, k->consumer, idle_s,
                              cursor, "COUNT", count_s, (char *)NULL);
    int st = reply_status(r);
    size_t got = 0;
    if (st != 0)
        goto out;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= BUFFER_ID_MAX ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        st = ERR_PROTO;
        goto out;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    cursor[r->element[0]->len] = '\0';
    for (size_t e = 0; e < r->element[1]->elements && got < max; e++) {
        int pr = parse_entry(r->element[1]->element[e], lane, &out[got]);
        if (pr < 0) {
            st = pr;
            goto out;
        }
        got += (size_t)pr;
    }
    fill_deliveries(rc, k, lane, out, got);
    metrics_add(M_STREAM_RECLAIMED, got);
    st = (int)got;
out:
    if (st < 0)
        stream_entries_cleanup(out, got);
    if (r)
        freeReplyObject(r);
    return st;
}

int buffer_deadletter(struct rconn *rc, const struct buffer_keys *k, const struct stream_entry *e,
                      const char *reason)
{
    struct rcmd c = {0};
    rcmd_add(&c, "XADD");
    rcmd_add(&c, k->deadletter);
    rcmd_add(&c, "MAXLEN");
    rcmd_add(&c, "~");
    rcmd_add(&c, k->deadletter_max);
    rcmd_add(&c, "*");
    rcmd_add(&c, "lane");
    rcmd_add(&c, lane_name(e->lane));
    rcmd_add(&c, "id");
    rcmd_add(&c, e->id);
    rcmd_add(&c, "reason");
    rcmd_add(&c, reason);
    rcmd_add(&c, "payload");
    rcmd_addb(&c, e->payload ? e->payload : "", e->len);
    redisReply *r = rconn_command(rc, c.argc, c.argv, c.lens);
    int st = reply_status(r);
    if (r)
        freeReplyObject(r);
    if (st != 0)
        return st;
    const char *ids[1] = {e->id};
    st = buffer_ack(rc, k, e->lane, ids, 1);
    if (st == 0)
        metrics_inc(M_STREAM_DEADLETTERED);
    return st;
}

/* Integer or string field `name` of a flat [name, value, ...] reply (XINFO GROUPS entry). */
static const redisReply *map_field(const redisReply *map, const char *name)
{
    for (size_t i = 0; map->type == REDIS_REPLY_ARRAY && i + 1 < map->elements; i += 2) {
        const redisReply *key = map->element[i];
        if ((key->type == REDIS_REPLY_STRING || key->type == REDIS_REPLY_STATUS) &&
            strcmp(key->str, name) == 0)
            return map->element[i + 1];
    }
    return NULL;
}

/* Fills the group part of *st from an XINFO GROUPS reply; false when the group is absent. */
static bool read_group(const redisReply *groups, const char *group, struct lane_state *st)
{
    for (size_t i = 0; groups->type == REDIS_REPLY_ARRAY && i < groups->elements; i++) {
        const redisReply *g = groups->element[i];
        const redisReply *name = map_field(g, "name"), *last = map_field(g, "last-delivered-id");
        if (name == NULL || name->type != REDIS_REPLY_STRING || strcmp(name->str, group) != 0)
            continue;
        const redisReply *consumers = map_field(g, "consumers"), *lag = map_field(g, "lag");
        st->consumers =
            consumers && consumers->type == REDIS_REPLY_INTEGER ? consumers->integer : 0;
        st->lag = lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer : -1;
        if (last && last->type == REDIS_REPLY_STRING)
            snprintf(st->last_delivered, sizeof st->last_delivered, "%s", last->str);
        return true;
    }
    return false;
}

int buffer_lane_state(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                      struct lane_state *st)
{
    memset(st, 0, sizeof *st);
    struct rcmd cmds[3] = {0};
    rcmd_add(&cmds[0], "XLEN");
    rcmd_add(&cmds[0], k->stream[lane]);
    rcmd_add(&cmds[1], "XINFO");
    rcmd_add(&cmds[1], "GROUPS");
    rcmd_add(&cmds[1], k->stream[lane]);
    rcmd_add(&cmds[2], "XPENDING");
    rcmd_add(&cmds[2], k->stream[lane]);
    rcmd_add(&cmds[2], k->group);
    redisReply *r[3] = {0};
    if (rconn_pipeline(rc, 3, cmds, r) != 0)
        return ERR_CONN;
    st->length = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    st->group = read_group(r[1], k->group, st); /* an error reply: no stream, so no group */
    const redisReply *p = r[2];
    if (st->group && p->type == REDIS_REPLY_ARRAY && p->elements >= 2 &&
        p->element[0]->type == REDIS_REPLY_INTEGER && p->element[0]->integer > 0 &&
        p->element[1]->type == REDIS_REPLY_STRING) {
        st->pending = p->element[0]->integer;
        snprintf(st->oldest_pending, sizeof st->oldest_pending, "%s", p->element[1]->str);
    }
    for (int i = 0; i < 3; i++)
        freeReplyObject(r[i]);
    return 0;
}

int64_t buffer_id_ms(const char *id)
{
    char *end = NULL;
    long long ms = strtoll(id, &end, 10);
    return (end != id && *end == '-' && ms >= 0) ? (int64_t)ms : -1;
}

/* Stream id order: "ms-seq" compared numerically. */
static int id_cmp(const char *a, const char *b)
{
    unsigned long long ams = strtoull(a, NULL, 10), bms = strtoull(b, NULL, 10);
    if (ams != bms)
        return ams < bms ? -1 : 1;
    const char *ad = strchr(a, '-'), *bd = strchr(b, '-');
    unsigned long long aseq = ad ? strtoull(ad + 1, NULL, 10) : 0;
    unsigned long long bseq = bd ? strtoull(bd + 1, NULL, 10) : 0;
    return aseq < bseq ? -1 : aseq > bseq;
}

int buffer_trim(struct rconn *rc, const struct buffer_keys *k, enum lane lane, int64_t now_ms,
                int64_t keep_ms)
{
    /* Reading the group's state and trimming are two steps, which is safe: between them the
     * pending list can only shrink and last-delivered only grow, so the bound computed here
     * only becomes more conservative. */
    struct lane_state st;
    int rv = buffer_lane_state(rc, k, lane, &st);
    if (rv != 0) {
        metrics_inc(M_REDIS_ERRORS);
        return rv;
    }
    if (!st.group || st.last_delivered[0] == '\0')
        return ERR_NOTFOUND;
    char bound[BUFFER_ID_MAX];
    snprintf(bound, sizeof bound, "%s", st.last_delivered);
    if (st.pending > 0 && id_cmp(st.oldest_pending, bound) < 0)
        snprintf(bound, sizeof bound, "%s", st.oldest_pending);
    char aged[BUFFER_ID_MAX];
    snprintf(aged, sizeof aged, "%lld-0", (long long)(now_ms - keep_ms));
    if (now_ms - keep_ms >= 0 && id_cmp(aged, bound) < 0)
        snprintf(bound, sizeof bound, "%s", aged);
    redisReply *t = rconn_cmd(rc, "XTRIM", k->stream[lane], "MINID", bound, (char *)NULL);
    int st_rv = reply_status(t);
    long long trimmed = (st_rv == 0 && t->type == REDIS_REPLY_INTEGER) ? t->integer : 0;
    if (t)
        freeReplyObject(t);
    return st_rv != 0 ? st_rv : (int)(trimmed > INT32_MAX ? INT32_MAX : trimmed);
}

void stream_entries_cleanup(struct stream_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].payload);
        e[i].payload = NULL;
    }
}
