/* Structured JSON-lines logger (log.h). Each line is formatted into a stack buffer and written with
 * a single write(2) so lines from different threads never interleave. Strings are JSON-escaped;
 * over-long messages are truncated (a log line must never allocate or fail). */
#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096 /* longer lines are truncated; a log line is not a data channel */

static enum log_level min_level = LOG_INFO;
static char node[64] = "aetheris";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(enum log_level level, const char *node_id)
{
    min_level = level;
    if (node_id)
        snprintf(node, sizeof node, "%s", node_id);
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

/* Appends s JSON-escaped at out+*pos, never past cap-1. */
static void put_escaped(char *out, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)c;
        } else if (c < 0x20) {
            *pos += (size_t)snprintf(out + *pos, cap - *pos, "\\u%04x", c);
        } else {
            out[(*pos)++] = (char)c;
        }
    }
}

static void put_raw(char *out, size_t cap, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (n > cap - 3 - *pos)
        n = cap - 3 - *pos;
    memcpy(out + *pos, s, n);
    *pos += n;
}

static void emit(enum log_level level, const char *event, const char *msg, const char *data)
{
    char line[LOG_LINE_MAX];
    size_t pos = 0;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    pos += strftime(line, sizeof line, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    pos += (size_t)snprintf(line + pos, sizeof line - pos, ".%03ldZ\",\"level\":\"%s\",\"node\":\"",
                            ts.tv_nsec / 1000000L, level_names[level]);
    put_escaped(line, sizeof line, &pos, node);
    put_raw(line, sizeof line, &pos, "\",\"event\":\"");
    put_escaped(line, sizeof line, &pos, event);
    if (msg) {
        put_raw(line, sizeof line, &pos, "\",\"msg\":\"");
        put_escaped(line, sizeof line, &pos, msg);
    }
    put_raw(line, sizeof line, &pos, "\"");
    if (data && strlen(data) + pos + 12 < sizeof line) {
        put_raw(line, sizeof line, &pos, ",\"data\":");
        put_raw(line, sizeof line, &pos, data);
    }
    line[pos++] = '}';
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w; /* nowhere to report a failing stderr */
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[LOG_LINE_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, event, msg, NULL);
}

void log_json(enum log_level level, const char *event, const char *json_object_text)
{
    if (level < min_level)
        return;
    emit(level, event, NULL, json_object_text);
}
