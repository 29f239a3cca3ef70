/* Structured logging: one JSON object per line on stderr, e.g.
 *   {"ts":"2026-11-22T11:00:00.123Z","level":"info","event":"mqtt.connected","msg":"..."}
 * `event` is a stable dotted name operators can grep and alert on; `msg` is free text.
 * Lines below the configured level are dropped before formatting. Thread-safe: each line is
 * written with one write(2). */
#ifndef AETHERIS_LOG_H
#define AETHERIS_LOG_H
#include "fmacros.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Sets the minimum level and the node id added to every line. Call once before threads start. */
void log_init(enum log_level min_level, const char *node_id);
/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *name);
/* Writes one line if level >= the minimum. `event` must be a literal-like stable name. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes one line whose "data" member is the given pre-serialized JSON object text. */
void log_json(enum log_level level, const char *event, const char *json_object_text);

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
