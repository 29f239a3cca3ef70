/* Feature-test macros for the whole project, set in one place (Redis fmacros.h).
 * Every .c file includes this first (through its own header's include chain or directly).
 * POSIX.1-2008 gives us clock_gettime, strndup, pthread, getline, fdatasync. */
#ifndef AETHERIS_FMACROS_H
#define AETHERIS_FMACROS_H
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif
#endif
