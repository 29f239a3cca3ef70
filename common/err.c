/* Names of the shared error codes (err.h). */
#include "err.h"

const char *err_str(int code)
{
    switch (code) {
    case ERR_OK:
        return "ok";
    case ERR_INVAL:
        return "inval";
    case ERR_IO:
        return "io";
    case ERR_CONN:
        return "conn";
    case ERR_TIMEOUT:
        return "timeout";
    case ERR_NOTFOUND:
        return "notfound";
    case ERR_EXISTS:
        return "exists";
    case ERR_FULL:
        return "full";
    case ERR_CLOSED:
        return "closed";
    case ERR_PROTO:
        return "proto";
    case ERR_RANGE:
        return "range";
    case ERR_INTERNAL:
        return "internal";
    default:
        return "unknown";
    }
}
