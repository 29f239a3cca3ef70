/* Test helpers that run real dependencies for integration-style unit tests: redis-server and
 * mosquitto on free loopback ports, each in its own temporary directory (config, persistence,
 * server log). Header-only static inline functions (unused ones cost nothing); include once per
 * test.
 *
 * A free port is found by binding 127.0.0.1:0 and reading the port back; the small window before
 * the server binds it is accepted (tests run in parallel only across executables, and a clash
 * makes the start fail loudly, not silently). Servers are children of the test: they get
 * PR_SET_PDEATHSIG so an aborted test (alarm, crash) does not leave them running, and their
 * output goes to server.log in their directory, kept out of the TAP stream. srv_restart() brings
 * a server back on the same port with the same directory (so mosquitto's persistence survives).
 *
 * Usage: srv_find_binary() returns NULL when the server is not installed; the test then prints a
 * TAP skip and exits 0. Everything is bounded in time: starting waits at most 10 s for the port,
 * stopping sends SIGTERM, waits at most 5 s, then SIGKILLs. */
#ifndef AETHERIS_TEST_SERVERS_H
#define AETHERIS_TEST_SERVERS_H
#include "fmacros.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define SRV_START_TIMEOUT_MS 10000
#define SRV_STOP_TIMEOUT_MS 5000

enum srv_kind { SRV_REDIS, SRV_MOSQUITTO };

struct test_server {
    enum srv_kind kind;
    pid_t pid;         /* 0 when not running */
    int port;          /* kept across srv_restart() */
    char bin[512];     /* absolute path of the server binary */
    char dir[256];     /* temporary directory owned by the server */
    char password[64]; /* redis --requirepass; "" = none */
};

static inline void srv_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static inline long long srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Searches PATH, then the sbin directories Debian uses for daemons (mosquitto is in /usr/sbin,
 * which a non-root PATH often lacks). Writes the absolute path into out; false if not found. */
static inline bool srv_find_binary(const char *name, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/usr/local/bin",
             path ? path : "");
    char *p = dirs;
    while (p && *p) {
        char *colon = strchr(p, ':');
        if (colon)
            *colon = '\0';
        int n = *p ? snprintf(out, outlen, "%s/%s", p, name) : -1;
        if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0)
            return true;
        p = colon ? colon + 1 : NULL;
    }
    return false;
}

/* A currently free TCP port on 127.0.0.1, or -1. */
static inline int srv_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* True when something accepts TCP connections on 127.0.0.1:port. */
static inline bool srv_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool open = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return open;
}

/* Waits until the server accepts on its port: true, or false when it exited or timeout_ms
 * passed. */
static inline bool srv_wait_port(struct test_server *s, int timeout_ms)
{
    long long deadline = srv_now_ms() + timeout_ms;
    while (srv_now_ms() < deadline) {
        if (s->pid > 0) {
            int st;
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                s->pid = 0;
                return false;
            }
        }
        if (srv_port_open(s->port))
            return true;
        srv_sleep_ms(20);
    }
    return false;
}

/* Prints the tail of the server log as TAP comments (diagnostics after a failed start). */
static inline void srv_dump_log(const struct test_server *s)
{
    char path[320];
    snprintf(path, sizeof path, "%s/server.log", s->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        printf("#   %s%s", line, strchr(line, '\n') ? "" : "\n");
    fclose(f);
}

static inline bool srv_write_mosquitto_conf(const struct test_server *s, char *conf, size_t conflen)
{
    snprintf(conf, conflen, "%s/mosquitto.conf", s->dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        return false;
    fprintf(f, "listener %d 127.0.0.1\n", s->port);
    fprintf(f, "allow_anonymous true\n");
    fprintf(f, "persistence true\n");
    fprintf(f, "persistence_location %s/\n", s->dir);
    /* as the e2e broker and docs/operations.md: the default (1000) drops QoS 1 messages queued
     * for a subscriber that a loaded machine slows down */
    fprintf(f, "max_queued_messages 0\n");
    fprintf(f, "log_dest stderr\n");
    fprintf(f, "log_type error\nlog_type warning\nlog_type notice\n");
    if (geteuid() == 0)
        fprintf(f, "user root\n"); /* otherwise mosquitto drops to a user that cannot use dir */
    return fclose(f) == 0;
}

/* Forks and execs the server for s->kind on s->port; waits for the port. True on success. */
static inline bool srv_spawn(struct test_server *s)
{
    char port[16], conf[320], logpath[320];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(logpath, sizeof logpath, "%s/server.log", s->dir);
    if (s->kind == SRV_MOSQUITTO && !srv_write_mosquitto_conf(s, conf, sizeof conf))
        return false;
    const char *argv[20];
    int n = 0;
    if (s->kind == SRV_REDIS) {
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = s->dir;
        if (s->password[0]) {
            argv[n++] = "--requirepass";
            argv[n++] = s->password;
        }
    } else {
        argv[n++] = "mosquitto";
        argv[n++] = "-c";
        argv[n++] = conf;
    }
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (chdir(s->dir) != 0)
            _exit(127);
        execv(s->bin, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    if (!srv_wait_port(s, SRV_START_TIMEOUT_MS)) {
        printf("# %s did not start on port %d; its log:\n", s->bin, s->port);
        srv_dump_log(s);
        return false;
    }
    return true;
}

/* Sends sig to the server and reaps it: SIGTERM is followed by SIGKILL after 5 s. */
static inline void srv_kill(struct test_server *s, int sig)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, sig);
    long long deadline = srv_now_ms() + SRV_STOP_TIMEOUT_MS;
    int st;
    while (waitpid(s->pid, &st, WNOHANG) == 0) {
        if (srv_now_ms() >= deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        srv_sleep_ms(10);
    }
    s->pid = 0;
}

/* Graceful stop (SIGTERM; mosquitto writes its persistence file on the way out). */
static inline void srv_stop(struct test_server *s)
{
    srv_kill(s, SIGTERM);
}

/* Starts the server again on the same port and directory. True when it accepts again. */
static inline bool srv_restart(struct test_server *s)
{
    srv_stop(s);
    return srv_spawn(s);
}

/* Starts a fresh server of kind in a new temporary directory on a free port. password is redis
 * --requirepass (NULL or "" = none; ignored for mosquitto). False when the binary is missing
 * (s->bin is then ""), or the server does not come up. */
static inline bool srv_start(struct test_server *s, enum srv_kind kind, const char *password)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    const char *name = kind == SRV_REDIS ? "redis-server" : "mosquitto";
    if (!srv_find_binary(name, s->bin, sizeof s->bin)) {
        s->bin[0] = '\0';
        return false;
    }
    if (password)
        snprintf(s->password, sizeof s->password, "%s", password);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/aetheris-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp",
             kind == SRV_REDIS ? "redis" : "mosq");
    if (mkdtemp(s->dir) == NULL) {
        s->dir[0] = '\0';
        return false;
    }
    for (int attempt = 0; attempt < 3; attempt++) { /* a port stolen meanwhile: try another */
        s->port = srv_free_port();
        if (s->port > 0 && srv_spawn(s))
            return true;
        srv_stop(s);
    }
    return false;
}

/* rm -rf path (bounded depth: our directories are two levels deep at most). */
static inline void srv_rmtree(const char *path, int depth)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && depth < 8) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char child[1024];
                int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
                if (n > 0 && (size_t)n < sizeof child)
                    srv_rmtree(child, depth + 1);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Stops the server and removes its directory. Safe on a server that never started. */
static inline void srv_cleanup(struct test_server *s)
{
    srv_stop(s);
    if (s->dir[0])
        srv_rmtree(s->dir, 0);
    s->dir[0] = '\0';
}

/* Creates a fresh temporary directory (for a test's own files, e.g. a key file) in
 * out; true on success. Remove it with srv_rmtree(out, 0). */
static inline bool srv_tempdir(const char *tag, char *out, size_t outlen)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, outlen, "%s/aetheris-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    return mkdtemp(out) != NULL;
}

/* Starts the server a test cannot run without. When its binary is not installed: prints a TAP
 * skip and exits 0 (counted as skipped, never as passed). When it does not start: prints a
 * failing TAP plan and exits 1. Otherwise returns with the server running. */
static inline void srv_start_or_exit(struct test_server *s, enum srv_kind kind,
                                     const char *password)
{
    if (srv_start(s, kind, password))
        return;
    const char *name = kind == SRV_REDIS ? "redis-server" : "mosquitto";
    if (s->bin[0] == '\0') {
        printf("ok 1 # SKIP %s not installed\n1..1\n", name);
        exit(0);
    }
    printf("not ok 1 - %s starts\n1..1\n", name);
    srv_cleanup(s);
    exit(1);
}

#endif
