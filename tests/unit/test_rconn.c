/* rconn against a real redis-server on a free loopback port (started by the test): URL parsing
 * (the .c is included to see the parsed fields), commands, binary safety, pipelining, error
 * replies, SELECT, AUTH, and the outage cycle: Redis killed -> fast failures during backoff with
 * one log line, Redis restarted on the same port -> calls succeed again. */
#include "../../common/rconn.c"
#include <signal.h>
#include <unistd.h>
#include "servers.h"
#include "tap.h"

#define TIMEOUT_MS 300

static char url_buf[128];

static const char *url_for(const struct test_server *s, const char *auth, const char *path)
{
    snprintf(url_buf, sizeof url_buf, "redis://%s%s127.0.0.1:%d%s", auth ? auth : "",
             auth ? "@" : "", s->port, path ? path : "");
    return url_buf;
}

static void test_urls(void)
{
    static const char *const bad[] = {
        "",
        "http://h:6379",
        "redis://",
        "redis://:6379",
        "redis://h:",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:abc",
        "redis://h:12x",
        "redis://h: 80",
        "redis://h:-1",
        "redis://h:+1",
        "redis://h/abc",
        "redis://h/1/2",
        "redis://h/-1",
        "redis://h x",
        "redis://pw@",
        "redis://h:1:2",
        "redis://h:99999999999",
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        struct rconn *rc = rconn_new(bad[i], 100, err, sizeof err);
        ok(rc == NULL && err[0] != '\0', "malformed url '%s' rejected (%s)", bad[i], err);
        rconn_free(rc);
    }
    ok(rconn_new(NULL, 100, err, sizeof err) == NULL, "NULL url rejected");

    struct rconn *rc = rconn_new("redis://cache.local", 0, err, sizeof err);
    ok(rc && strcmp(rc->host, "cache.local") == 0 && rc->port == 6379 && rc->db == 0 &&
           rc->password[0] == '\0' && rc->timeout_ms == RCONN_DEFAULT_TIMEOUT_MS,
       "defaults: port 6379, db 0, no password, default timeout");
    rconn_free(rc);
    rc = rconn_new("redis://:s3cr@t@10.0.0.1:7000/5", 100, err, sizeof err);
    ok(rc && strcmp(rc->host, "10.0.0.1") == 0 && rc->port == 7000 && rc->db == 5 &&
           strcmp(rc->password, "s3cr@t") == 0 && rc->user[0] == '\0',
       "password with '@', port and db parsed");
    rconn_free(rc);
    rc = rconn_new("redis://alice:pw@h/", 100, err, sizeof err);
    ok(rc && strcmp(rc->user, "alice") == 0 && strcmp(rc->password, "pw") == 0 && rc->db == 0 &&
           rc->port == 6379,
       "user:password@ and a trailing slash accepted");
    rconn_free(rc);
    rconn_free(NULL);
}

static void test_commands(const struct test_server *srv)
{
    char err[256];
    struct rconn *rc = rconn_new(url_for(srv, NULL, NULL), TIMEOUT_MS, err, sizeof err);
    ok(rc != NULL, "rconn_new on the live server");
    ok(!rconn_is_up(rc), "not up before the first call (lazy connect)");
    is_int(rconn_ping(rc), 0, "PING succeeds");
    ok(rconn_is_up(rc), "up after a successful call");

    redisReply *r = rconn_cmd(rc, "SET", "greeting", "hello", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0, "SET returns OK");
    freeReplyObject(r);
    r = rconn_cmd(rc, "GET", "greeting", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STRING && r->len == 5 && memcmp(r->str, "hello", 5) == 0,
       "GET returns the value");
    freeReplyObject(r);

    unsigned char bin[256];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)i; /* starts with a NUL byte and contains every byte value */
    const char *argv[3] = {"SET", "bin\0key", (const char *)bin};
    size_t lens[3] = {3, 7, sizeof bin};
    r = rconn_command(rc, 3, argv, lens);
    ok(r && r->type == REDIS_REPLY_STATUS, "SET of a binary key and value with NUL bytes");
    freeReplyObject(r);
    const char *gargv[2] = {"GET", "bin\0key"};
    size_t glens[2] = {3, 7};
    r = rconn_command(rc, 2, gargv, glens);
    ok(r && r->type == REDIS_REPLY_STRING && r->len == sizeof bin &&
           memcmp(r->str, bin, sizeof bin) == 0,
       "binary value read back intact (256 bytes)");
    freeReplyObject(r);
    r = rconn_cmd(rc, "EXISTS", "bin", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0,
       "the key is not truncated at its NUL byte");
    freeReplyObject(r);

    enum { N = 1000 };
    static struct rcmd cmds[N];
    static redisReply *reps[N];
    for (int i = 0; i < N; i++) {
        memset(&cmds[i], 0, sizeof cmds[i]);
        rcmd_add(&cmds[i], "INCR");
        rcmd_addb(&cmds[i], "counter", 7);
    }
    is_int(rconn_pipeline(rc, N, cmds, reps), 0, "pipeline of 1000 INCR succeeds");
    int in_order = 0;
    for (int i = 0; i < N; i++) {
        if (reps[i] && reps[i]->type == REDIS_REPLY_INTEGER && reps[i]->integer == i + 1)
            in_order++;
        freeReplyObject(reps[i]);
    }
    is_int(in_order, N, "1000 replies, in order, 1..1000");
    r = rconn_cmd(rc, "GET", "counter", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1000") == 0, "counter is 1000");
    freeReplyObject(r);

    r = rconn_cmd(rc, "NOSUCHCOMMAND", "x", (char *)NULL);
    ok(r != NULL && r->type == REDIS_REPLY_ERROR, "unknown command gives an error reply, not NULL");
    freeReplyObject(r);
    r = rconn_cmd(rc, "INCR", "greeting", (char *)NULL);
    ok(r != NULL && r->type == REDIS_REPLY_ERROR && strstr(r->str, "not an integer"),
       "INCR of a string gives the Redis error text");
    freeReplyObject(r);
    ok(rconn_is_up(rc), "an error reply leaves the connection up");

    struct rcmd mixed[3] = {{0}};
    rcmd_add(&mixed[0], "SET");
    rcmd_add(&mixed[0], "a");
    rcmd_add(&mixed[0], "1");
    rcmd_add(&mixed[1], "INCR");
    rcmd_add(&mixed[1], "greeting");
    rcmd_add(&mixed[2], "INCR");
    rcmd_add(&mixed[2], "a");
    redisReply *mr[3];
    is_int(rconn_pipeline(rc, 3, mixed, mr), 0, "pipeline with an error in the middle returns 0");
    ok(mr[0] && mr[0]->type == REDIS_REPLY_STATUS && mr[1] && mr[1]->type == REDIS_REPLY_ERROR &&
           mr[2] && mr[2]->type == REDIS_REPLY_INTEGER && mr[2]->integer == 2,
       "its replies are OK, ERROR, 2");
    for (int i = 0; i < 3; i++)
        freeReplyObject(mr[i]);
    is_int(rconn_pipeline(rc, 0, NULL, NULL), 0, "empty pipeline is a no-op");

    struct rcmd halves[2] = {{0}};
    rcmd_add(&halves[0], "SET");
    rcmd_add(&halves[0], "sent");
    rcmd_add(&halves[0], "before-recv");
    rcmd_add(&halves[1], "INCR");
    rcmd_add(&halves[1], "a");
    is_int(rconn_send(rc, 2, halves), 0, "rconn_send writes two commands");
    struct rconn *other = rconn_new(url_for(srv, NULL, NULL), TIMEOUT_MS, err, sizeof err);
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) { /* Redis runs them without anyone reading replies */
        r = rconn_cmd(other, "GET", "sent", (char *)NULL);
        seen = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "before-recv") == 0;
        freeReplyObject(r);
        if (!seen)
            srv_sleep_ms(5);
    }
    ok(seen, "another connection sees the SET before its reply is read");
    rconn_free(other);
    redisReply *hr[2];
    is_int(rconn_recv(rc, 2, hr), 0, "rconn_recv reads the two replies");
    ok(hr[0] && hr[0]->type == REDIS_REPLY_STATUS && hr[1] && hr[1]->type == REDIS_REPLY_INTEGER &&
           hr[1]->integer == 3,
       "in order: OK, then 3");
    for (int i = 0; i < 2; i++)
        freeReplyObject(hr[i]);
    r = rconn_cmd(rc, "GET", "a", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "3") == 0,
       "and the connection goes on in step");
    freeReplyObject(r);

    struct rconn *rc3 = rconn_new(url_for(srv, NULL, "/3"), TIMEOUT_MS, err, sizeof err);
    r = rconn_cmd(rc3, "SET", "only-in-db3", "x", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STATUS, "SET through a /3 url");
    freeReplyObject(r);
    r = rconn_cmd(rc, "EXISTS", "only-in-db3", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0, "the key is not in db 0");
    freeReplyObject(r);
    r = rconn_cmd(rc3, "EXISTS", "only-in-db3", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "the key is in db 3 (SELECT ran)");
    freeReplyObject(r);
    rconn_free(rc3);
    rconn_free(rc);
}

static void test_auth(void)
{
    struct test_server srv;
    if (!srv_start(&srv, SRV_REDIS, "t0ps3cret")) {
        ok(0, "second redis-server with --requirepass starts");
        srv_cleanup(&srv);
        return;
    }
    char err[256];
    struct rconn *rc = rconn_new(url_for(&srv, NULL, NULL), TIMEOUT_MS, err, sizeof err);
    redisReply *r = rconn_cmd(rc, "GET", "k", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_ERROR && strstr(r->str, "NOAUTH"),
       "without a password commands get NOAUTH");
    freeReplyObject(r);
    is_int(rconn_ping(rc), ERR_CONN, "rconn_ping reports ERR_CONN on NOAUTH");
    rconn_free(rc);

    rc = rconn_new(url_for(&srv, ":wrong", NULL), TIMEOUT_MS, err, sizeof err);
    ok(rconn_cmd(rc, "PING", (char *)NULL) == NULL && !rconn_is_up(rc),
       "a wrong password: AUTH fails, call returns NULL, not up");
    rconn_free(rc);

    rc = rconn_new(url_for(&srv, ":t0ps3cret", NULL), TIMEOUT_MS, err, sizeof err);
    r = rconn_cmd(rc, "SET", "k", "v", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STATUS, "':password@' authenticates");
    freeReplyObject(r);
    rconn_free(rc);

    rc = rconn_new(url_for(&srv, "default:t0ps3cret", "/2"), TIMEOUT_MS, err, sizeof err);
    r = rconn_cmd(rc, "SET", "k2", "v", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STATUS, "'default:password@' authenticates (AUTH user pass)");
    freeReplyObject(r);
    rconn_free(rc);

    rc = rconn_new(url_for(&srv, "nobody:t0ps3cret", NULL), TIMEOUT_MS, err, sizeof err);
    ok(rconn_cmd(rc, "PING", (char *)NULL) == NULL, "an unknown ACL user is refused");
    rconn_free(rc);
    srv_cleanup(&srv);
}

/* Listens on port without ever accepting or reading: connects may complete in the kernel but
 * every command times out, so each real connection attempt costs about TIMEOUT_MS. */
static int black_hole(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Redirects stderr (where log lines go) to a temp file; returns the saved stderr fd. */
static int capture_stderr(char *path, size_t pathlen)
{
    snprintf(path, pathlen, "/tmp/aetheris-rconn-log-XXXXXX");
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static int count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    int n = 0;
    char line[2048];
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    if (f)
        fclose(f);
    return n;
}

static void test_outage(struct test_server *srv)
{
    char err[256], logpath[64];
    struct rconn *rc = rconn_new(url_for(srv, NULL, NULL), TIMEOUT_MS, err, sizeof err);
    is_int(rconn_ping(rc), 0, "outage test: connected");
    int saved = capture_stderr(logpath, sizeof logpath);

    srv_kill(srv, SIGKILL);
    int64_t t0 = clock_mono_ms();
    redisReply *r = rconn_cmd(rc, "PING", (char *)NULL);
    int64_t first_ms = clock_mono_ms() - t0;
    ok(r == NULL && !rconn_is_up(rc), "after the kill the call on the old connection fails");
    ok(first_ms < TIMEOUT_MS, "and it fails fast (%lld ms)", (long long)first_ms);
    struct rcmd ping = {0};
    rcmd_add(&ping, "PING");
    redisReply *owed = (redisReply *)&ping; /* any non-NULL: recv must clear it */
    is_int(rconn_send(rc, 1, &ping), ERR_CONN, "rconn_send while redis is down fails");
    is_int(rconn_recv(rc, 1, &owed), ERR_CONN, "and rconn_recv then fails without reading");
    ok(owed == NULL, "leaving the reply NULL");

    int hole = black_hole(srv->port);
    ok(hole >= 0, "a black-hole listener holds the port while redis is down");
    int calls = 0, slow = 0, nonnull = 0, up = 0;
    int64_t max_fast = 0, end = clock_mono_ms() + 1500;
    while (clock_mono_ms() < end) {
        int64_t s = clock_mono_ms();
        r = rconn_cmd(rc, "PING", (char *)NULL);
        int64_t d = clock_mono_ms() - s;
        calls++;
        if (r)
            nonnull++;
        freeReplyObject(r);
        if (rconn_is_up(rc))
            up++;
        if (d >= TIMEOUT_MS / 2)
            slow++;
        else if (d > max_fast)
            max_fast = d;
        srv_sleep_ms(1);
    }
    is_int(nonnull, 0, "every call while redis is down returns NULL (%d calls)", calls);
    is_int(up, 0, "rconn_is_up stays false");
    ok(slow >= 1 && slow <= 5, "only the backoff-spaced attempts pay the timeout (%d of %d)", slow,
       calls);
    /* A call in backoff returns without touching the network, so nearly every call is fast; the
     * bound is loose so that a loaded machine (fewer loop turns in 1.5 s) cannot fail it. */
    ok(calls - slow >= 20 && max_fast < TIMEOUT_MS / 2,
       "calls in backoff return at once (%d of %d, max %lld ms)", calls - slow, calls,
       (long long)max_fast);
    close(hole);

    bool restarted = srv_restart(srv);
    ok(restarted, "redis restarted on the same port %d", srv->port);
    int64_t deadline = clock_mono_ms() + 5000, t1 = clock_mono_ms();
    bool back = false;
    while (clock_mono_ms() < deadline && !back) {
        back = rconn_ping(rc) == 0;
        if (!back)
            srv_sleep_ms(20);
    }
    ok(back && rconn_is_up(rc), "calls succeed again after the restart (%lld ms)",
       (long long)(clock_mono_ms() - t1));
    r = rconn_cmd(rc, "SET", "after", "restart", (char *)NULL);
    ok(r && r->type == REDIS_REPLY_STATUS, "SET works on the new connection");
    freeReplyObject(r);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    is_int(count_in_file(logpath, "\"redis.down\""), 1,
           "exactly one redis.down line for the outage");
    is_int(count_in_file(logpath, "\"redis.connected\""), 1, "exactly one redis.connected line");
    unlink(logpath);
    rconn_free(rc);
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    struct test_server srv;
    srv_start_or_exit(&srv, SRV_REDIS, NULL);
    test_urls();
    test_commands(&srv);
    test_auth();
    test_outage(&srv);
    struct rcmd c = {0};
    for (int i = 0; i < RCONN_MAX_ARGS; i++)
        rcmd_add(&c, "x");
    is_int(c.argc, RCONN_MAX_ARGS, "rcmd holds RCONN_MAX_ARGS arguments");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        rcmd_add(&c, "one too many");
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "one argument too many aborts");
    srv_cleanup(&srv);
    return done_testing();
}
