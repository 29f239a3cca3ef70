/* The HTTP ceiling of this machine for the REST and webhook benchmarks: libmicrohttpd (the
 * library aetherisd serves with) in the same threading mode (internal epoll, a thread pool)
 * answering every GET with a fixed body of the given size and every POST with 204 after reading
 * its body. It counts POSTs and prints the count on stdout when SIGTERM or SIGINT arrives, so a
 * webhook benchmark can check nothing was lost.
 * Usage: static_http PORT BODY_BYTES [THREADS] */
#include "fmacros.h"
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>

/* A decimal command-line number; exits with a usage error when it is not one. */
static long long arg_num(const char *s)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 0) {
        fprintf(stderr, "not a number: %s\n", s);
        exit(2);
    }
    return v;
}

static char *body;
static size_t body_len;
static _Atomic long long posts;

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **state)
{
    (void)cls;
    (void)url;
    (void)version;
    (void)data;
    if (strcmp(method, "POST") == 0) {
        if (*state == NULL) { /* first call: headers only */
            *state = conn;
            return MHD_YES;
        }
        if (*data_size > 0) { /* a chunk of the body: consume it */
            *data_size = 0;
            return MHD_YES;
        }
        atomic_fetch_add(&posts, 1);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ok = MHD_queue_response(conn, 204, r);
        MHD_destroy_response(r);
        return ok;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body_len, body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: static_http PORT BODY_BYTES [THREADS]\n");
        return 2;
    }
    body_len = (size_t)arg_num(argv[2]);
    body = malloc(body_len + 1);
    memset(body, 'x', body_len);
    unsigned threads = argc > 3 ? (unsigned)(int)arg_num(argv[3]) : 4;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
                                            (uint16_t)(int)arg_num(argv[1]), NULL, NULL, answer,
                                            NULL, MHD_OPTION_THREAD_POOL_SIZE, threads,
                                            MHD_OPTION_CONNECTION_LIMIT, 4096, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "static_http: cannot listen on %s\n", argv[1]);
        return 1;
    }
    printf("{\"ready\":true}\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    printf("{\"posts\":%lld}\n", atomic_load(&posts));
    free(body);
    return 0;
}
