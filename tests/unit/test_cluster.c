/* Unit tests for pipeline/cluster.c: the assignment (balance, determinism, few moves when a
 * member joins or leaves), and the leases against a real redis-server: two members share the
 * partitions, a stopped member hands its share over, a member whose leases were taken loses
 * them, an expired lease nobody took is taken again by its holder, and a saved partition is
 * written only by the lease holder. */
#include "cluster.h"
#include <stdio.h>
#include <string.h>
#include "config.h"
#include "servers.h"
#include "tap.h"

static void test_assign(void)
{
    const char *three[] = {"a", "b", "c"}, *two[] = {"a", "b"}, *four[] = {"a", "b", "c", "d"};
    int32_t o3[16], o3b[16], o2[16], o4[16];
    cluster_assign(three, 3, 16, o3);
    cluster_assign(three, 3, 16, o3b);
    ok(memcmp(o3, o3b, sizeof o3) == 0, "the same members give the same assignment");
    int count[4] = {0};
    int valid = 1;
    for (int k = 0; k < 16; k++) {
        if (o3[k] < 0 || o3[k] > 2)
            valid = 0;
        else
            count[o3[k]]++;
    }
    ok(valid, "every partition has an owner among the members");
    ok(count[0] <= 6 && count[1] <= 6 && count[2] <= 6, "at most ceil(16/3) = 6 each (%d %d %d)",
       count[0], count[1], count[2]);
    cluster_assign(two, 2, 16, o2);
    int kept = 0, moved_between_survivors = 0;
    for (int k = 0; k < 16; k++) {
        if (o3[k] != 2 && o2[k] == o3[k])
            kept++;
        if (o3[k] != 2 && o2[k] != o3[k])
            moved_between_survivors++;
    }
    ok(kept >= 16 - count[2] - 2, "c leaving moves c's partitions and at most 2 others (%d kept)",
       kept);
    printf("# moved between survivors: %d\n", moved_between_survivors);
    cluster_assign(four, 4, 16, o4);
    int c4[4] = {0};
    for (int k = 0; k < 16; k++)
        c4[o4[k]]++;
    ok(c4[0] == 4 && c4[1] == 4 && c4[2] == 4 && c4[3] == 4, "16 over 4: exactly 4 each");
    int32_t none[4];
    cluster_assign(NULL, 0, 4, none);
    ok(none[0] == -1 && none[3] == -1, "no members: no owners");
    const char *one[] = {"solo"};
    int32_t o1[5];
    cluster_assign(one, 1, 5, o1);
    ok(o1[0] == 0 && o1[4] == 0, "one member owns everything");
}

/* ---------------------------------------------------------------- leases against Redis */

struct member {
    struct config cfg;
    struct cluster *c;
    int acquired, released, saved_releases;
};

static int on_acquire(void *ctx, uint32_t k)
{
    struct member *m = ctx;
    (void)k;
    m->acquired++;
    return 0;
}

static void on_release(void *ctx, uint32_t k, bool save)
{
    struct member *m = ctx;
    (void)k;
    m->released++;
    m->saved_releases += save;
}

static void member_init(struct member *m, const char *node, int port)
{
    memset(m, 0, sizeof *m);
    config_defaults(&m->cfg);
    char err[256], url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    config_set(&m->cfg, "redis_url", url, err, sizeof err);
    config_set(&m->cfg, "node_id", node, err, sizeof err);
    config_set(&m->cfg, "cluster_partitions", "4", err, sizeof err);
    config_set(&m->cfg, "cluster_lease_ms", "1000", err, sizeof err);
    struct cluster_hooks h = {m, on_acquire, on_release};
    m->c = cluster_new(&m->cfg, &h, err, sizeof err);
}

static int owned(const struct member *m)
{
    int n = 0;
    for (uint32_t k = 0; k < 4; k++)
        n += cluster_owns(m->c, k);
    return n;
}

/* Waits up to timeout_ms for a's and b's owned counts to be na and nb. */
static bool wait_owned(const struct member *a, int na, const struct member *b, int nb,
                       int timeout_ms)
{
    long long end = srv_now_ms() + timeout_ms;
    while (srv_now_ms() < end) {
        if (owned(a) == na && (b == NULL || owned(b) == nb))
            return true;
        srv_sleep_ms(20);
    }
    return false;
}

static void test_leases(int port)
{
    struct member a, b;
    member_init(&a, "node-a", port);
    member_init(&b, "node-b", port);
    ok(a.c != NULL && b.c != NULL, "members created");
    ok(cluster_start(a.c) == 0, "a started");
    ok(wait_owned(&a, 4, NULL, 0, 3000), "a alone owns all 4 partitions");
    struct rconn *rc = rconn_new(a.cfg.redis_url, 1000, NULL, 0);
    is_int(cluster_save_partition(rc, a.c, 0, 7, "img", 3), 1, "the holder saves partition 0");
    is_int(cluster_save_partition(rc, b.c, 0, 8, "bad", 3), 0, "another member's save is refused");
    char key[256];
    cluster_key_snap(&a.cfg, 0, key, sizeof key);
    redisReply *r = rconn_cmd(rc, "HGET", key, "image", NULL);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "img") == 0, "the saved image stays");
    if (r)
        freeReplyObject(r);

    ok(cluster_start(b.c) == 0, "b started");
    ok(wait_owned(&a, 2, &b, 2, 5000), "b joins: 2 and 2");
    ok(a.saved_releases == 2, "a handed 2 partitions over with a save (%d)", a.saved_releases);
    bool disjoint = true;
    for (uint32_t k = 0; k < 4; k++)
        if (cluster_owns(a.c, k) && cluster_owns(b.c, k))
            disjoint = false;
    ok(disjoint, "no partition owned by both");

    /* Someone else takes a's leases (as a new owner would after a's leases expired): a notices
     * at its next renewal and gives them up without a save. */
    int before = a.saved_releases;
    for (uint32_t k = 0; k < 4; k++) {
        if (!cluster_owns(a.c, k))
            continue;
        cluster_key_lease(&a.cfg, k, key, sizeof key);
        r = rconn_cmd(rc, "SET", key, "intruder|1", "PX", "60000", NULL);
        if (r)
            freeReplyObject(r);
    }
    ok(wait_owned(&a, 0, NULL, 0, 3000), "a gives up leases held by another");
    is_int(a.saved_releases, before, "without saving state it no longer owns");
    for (uint32_t k = 0; k < 4; k++) { /* the intruder goes away */
        cluster_key_lease(&a.cfg, k, key, sizeof key);
        r = rconn_cmd(rc, "EVAL",
                      "if redis.call('GET', KEYS[1]) == 'intruder|1' then "
                      "return redis.call('DEL', KEYS[1]) end return 0",
                      "1", key, NULL);
        if (r)
            freeReplyObject(r);
    }
    ok(wait_owned(&a, 2, &b, 2, 5000), "the freed partitions are taken back: 2 and 2");

    /* a's leases expire (as after a stall longer than the lease) and nobody takes them: a's
     * next renewal takes them again instead of giving the partitions up. */
    int released = a.released;
    for (uint32_t k = 0; k < 4; k++) {
        if (!cluster_owns(a.c, k))
            continue;
        cluster_key_lease(&a.cfg, k, key, sizeof key);
        r = rconn_cmd(rc, "DEL", key, NULL);
        if (r)
            freeReplyObject(r);
    }
    /* Renewal ticks come every third of the 1000 ms lease; under load a tick can come late, so
     * the leases get up to 5 s to hold a's token again. */
    bool retaken = false;
    for (long long end = srv_now_ms() + 5000; !retaken && srv_now_ms() < end;) {
        srv_sleep_ms(50);
        retaken = true;
        for (uint32_t k = 0; k < 4; k++) {
            if (!cluster_owns(a.c, k))
                continue;
            cluster_key_lease(&a.cfg, k, key, sizeof key);
            r = rconn_cmd(rc, "GET", key, NULL);
            retaken = retaken && r && r->type == REDIS_REPLY_STRING &&
                      strcmp(r->str, cluster_token(a.c)) == 0;
            if (r)
                freeReplyObject(r);
        }
    }
    is_int(owned(&a), 2, "a still owns its 2 partitions after its leases expired");
    is_int(a.released, released, "without any release");
    ok(retaken, "the leases hold a's token again");

    cluster_stop(a.c);
    is_int(owned(&a), 0, "a stopped owns nothing");
    ok(wait_owned(&b, 4, NULL, 0, 5000), "b takes a's share once a left");
    cluster_free(a.c);
    cluster_free(b.c);
    rconn_free(rc);
}

int main(void)
{
    test_assign();
    struct test_server srv;
    srv_start_or_exit(&srv, SRV_REDIS, NULL);
    test_leases(srv.port);
    srv_cleanup(&srv);
    return done_testing();
}
