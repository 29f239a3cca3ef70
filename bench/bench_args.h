/* Command-line numbers for the benchmark programs: one strict parser instead of a copy in each.
 * Header-only (static inline) because every benchmark is a single-file program. */
#ifndef AETHERIS_BENCH_ARGS_H
#define AETHERIS_BENCH_ARGS_H
#include <stdio.h>
#include <stdlib.h>

/* A decimal command-line number >= 0; exits with status 2 and a usage error when it is not one. */
static inline long long bench_arg_num(const char *s)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 0) {
        fprintf(stderr, "not a number: %s\n", s);
        exit(2);
    }
    return v;
}

#endif
