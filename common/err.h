/* Error codes shared by every module: functions return 0 on success or a negative enum err,
 * so positive values can carry counts (libuv convention). err_str() gives a stable short name.
 * Thread-safe: pure functions only. */
#ifndef AETHERIS_ERR_H
#define AETHERIS_ERR_H
#include "fmacros.h"

enum err {
    ERR_OK = 0,
    ERR_INVAL = -1,    /* bad argument or malformed input */
    ERR_IO = -2,       /* file or socket I/O failed */
    ERR_CONN = -3,     /* a dependency (broker, Redis, store) is unreachable */
    ERR_TIMEOUT = -4,  /* a deadline passed */
    ERR_NOTFOUND = -5, /* no such item */
    ERR_EXISTS = -6,   /* item already present (e.g. first decision wins) */
    ERR_FULL = -7,     /* a bounded container or buffer is at its cap */
    ERR_CLOSED = -8,   /* the queue or service was closed */
    ERR_PROTO = -9,    /* a peer answered something unexpected */
    ERR_RANGE = -10,   /* a value outside its documented bounds */
    ERR_INTERNAL = -11 /* a bug or an unexpected library failure */
};

/* Short stable name of an error code ("inval", "io", ...); "unknown" for anything else. */
const char *err_str(int code);

#endif
