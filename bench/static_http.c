/* The HTTP ceiling of this machine for the REST and webhook benchmarks: the least work an HTTP/1.1
 * server can do per request. Each of THREADS threads has its own SO_REUSEPORT listener and epoll
 * set (the kernel spreads connections over them, no lock is shared), reads a request up to the
 * end of its headers, skips a Content-Length body, and writes one precomputed response with one
 * send(): a fixed body of BODY_BYTES for a GET, 204 for a POST (counted). Connections are kept
 * alive and pipelined requests are answered in order. There is no routing, no parsing beyond
 * finding the header end and Content-Length, no allocation per request: what is left is the
 * kernel's loopback and the client, which is what a daemon's figure is divided by.
 * It prints {"ready":true} when listening and the POST count on SIGTERM or SIGINT, so a webhook
 * benchmark can check nothing was lost.
 * Usage: static_http PORT BODY_BYTES [THREADS] */
#include "fmacros.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench_args.h"

#define CONN_BUF 65536 /* bytes of one connection's unanswered request data */
#define MAX_EVENTS 64

struct conn {
    int fd;
    size_t len;       /* bytes held in buf */
    size_t skip_body; /* body bytes of the current request still to discard */
    bool post;        /* the current request is a POST: answer it once its body is in */
    char buf[CONN_BUF];
};

static char *get_response; /* headers + body, sent whole */
static size_t get_response_len;
static const char post_response[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
static _Atomic long long posts;
static uint16_t listen_port;
static atomic_bool stopping;

/* Sends all of data on a non-blocking socket, retrying while its send buffer is full. */
static bool send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue; /* the receiving side is slow: a benchmark client reads promptly */
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* The Content-Length of a header block (0 when absent). */
static size_t content_length(const char *head, size_t len)
{
    static const char name[] = "\r\ncontent-length:";
    for (size_t i = 0; i + sizeof name - 1 < len; i++) {
        if (strncasecmp(head + i, name, sizeof name - 1) == 0)
            return (size_t)strtoull(head + i + sizeof name - 1, NULL, 10);
    }
    return 0;
}

static bool answer_post(struct conn *c)
{
    atomic_fetch_add(&posts, 1);
    return send_all(c->fd, post_response, sizeof post_response - 1);
}

/* Answers every complete request in c->buf; false when the connection should close. */
static bool serve(struct conn *c)
{
    size_t off = 0;
    while (off < c->len) {
        if (c->skip_body > 0) {
            size_t take = c->len - off < c->skip_body ? c->len - off : c->skip_body;
            off += take;
            c->skip_body -= take;
            if (c->skip_body > 0)
                break;
            if (c->post && !answer_post(c))
                return false;
            continue;
        }
        char *end = NULL;
        for (size_t i = off; i + 3 < c->len; i++) {
            if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) {
                end = c->buf + i + 4;
                break;
            }
        }
        if (end == NULL)
            break; /* headers incomplete */
        size_t head_len = (size_t)(end - (c->buf + off));
        c->post = strncmp(c->buf + off, "POST ", 5) == 0;
        c->skip_body = content_length(c->buf + off, head_len);
        off += head_len;
        if (!c->post && !send_all(c->fd, get_response, get_response_len))
            return false; /* any other method gets the body; what it sent is skipped */
        if (c->post && c->skip_body == 0 && !answer_post(c))
            return false;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return c->len < CONN_BUF; /* a header block larger than the buffer: give up on it */
}

static int listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "static_http: cannot listen on 127.0.0.1:%u: %s\n", listen_port,
                strerror(errno));
        exit(1);
    }
    return fd;
}

static void *worker(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[MAX_EVENTS];
    while (!atomic_load(&stopping)) {
        int n = epoll_wait(ep, events, MAX_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { /* the listener */
                int fd;
                while ((fd = accept(lfd, NULL, NULL)) >= 0) {
                    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            bool open = true;
            for (;;) {
                ssize_t got = recv(c->fd, c->buf + c->len, CONN_BUF - c->len, 0);
                if (got > 0) {
                    c->len += (size_t)got;
                    if (!serve(c)) {
                        open = false;
                        break;
                    }
                    continue;
                }
                if (got < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                open = false; /* closed by the peer, or an error */
                break;
            }
            if (!open) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
            }
        }
    }
    close(ep);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: static_http PORT BODY_BYTES [THREADS]\n");
        return 2;
    }
    listen_port = (uint16_t)bench_arg_num(argv[1]);
    size_t body_len = (size_t)bench_arg_num(argv[2]);
    int threads = argc > 3 ? (int)bench_arg_num(argv[3]) : 2;
    if (threads < 1)
        threads = 1;
    char head[160];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        body_len);
    get_response_len = (size_t)hlen + body_len;
    get_response = malloc(get_response_len);
    memcpy(get_response, head, (size_t)hlen);
    memset(get_response + hlen, 'x', body_len);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)listener());
    printf("{\"ready\":true}\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    atomic_store(&stopping, true);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    printf("{\"posts\":%lld}\n", atomic_load(&posts));
    free(t);
    free(get_response);
    return 0;
}
