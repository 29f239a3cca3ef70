/* Memory floor of the edge at many accounts: what one random cache line costs on this machine,
 * alone and overlapped. With a million accounts every event reads about three lines nobody has
 * touched for a while (its table slot, its record's header, the ring slot its push writes), so
 * these two figures bound bench_edge's 1M-account result from below: a dependent chain pays the
 * full latency per line, independent reads pay what the memory system sustains with many misses
 * in flight. The buffer is 2 MiB aligned with transparent huge pages asked for, like the edge's
 * record chunks, so TLB misses do not count against it.
 * Usage: bench_memory [MiB (default 512)] [reads (default 2000000)] */
#include "fmacros.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "bench_args.h"
#include "clock.h"

#define LINE 64
#define HUGE_PAGE (2u << 20)

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    long long mib = argc > 1 ? bench_arg_num(argv[1]) : 512;
    long long reads = argc > 2 ? bench_arg_num(argv[2]) : 2000000;
    if (mib < 1 || mib > 65536 || reads < 1) {
        fprintf(stderr, "usage: bench_memory [MiB 1-65536] [reads >= 1]\n");
        return 2;
    }
    size_t bytes = (size_t)mib << 20, lines = bytes / LINE;
    char *buf = NULL;
    if (posix_memalign((void **)&buf, HUGE_PAGE, bytes) != 0) {
        fprintf(stderr, "bench_memory: cannot allocate %lld MiB\n", mib);
        return 1;
    }
    (void)madvise(buf, bytes, MADV_HUGEPAGE);
    /* One random cycle through every line (Sattolo's shuffle): line i holds the next line's
     * index, so following it is a chain of dependent reads the CPU cannot overlap. */
    uint32_t *next = malloc(lines * sizeof *next);
    if (next == NULL) {
        fprintf(stderr, "bench_memory: cannot allocate the shuffle\n");
        return 1;
    }
    for (size_t i = 0; i < lines; i++)
        next[i] = (uint32_t)i;
    uint64_t rng = 88172645463325252ULL;
    for (size_t i = lines - 1; i > 0; i--) {
        size_t j = xorshift(&rng) % i;
        uint32_t t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        memcpy(buf + i * LINE, &next[i], sizeof next[i]);
    free(next);
    uint32_t at = 0;
    int64_t t0 = clock_mono_ns();
    for (long long i = 0; i < reads; i++)
        memcpy(&at, buf + (size_t)at * LINE, sizeof at);
    int64_t t1 = clock_mono_ns();
    /* Independent reads of random lines: the addresses come from the generator, not from memory,
     * so many misses are in flight at once. */
    uint64_t sum = 0;
    int64_t t2 = clock_mono_ns();
    for (long long i = 0; i < reads; i++)
        sum += (unsigned char)buf[(xorshift(&rng) % lines) * LINE];
    int64_t t3 = clock_mono_ns();
    printf("{\"benchmark\":\"memory\",\"mib\":%lld,\"reads\":%lld,\"dependent_ns_per_line\":%.1f,"
           "\"independent_ns_per_line\":%.1f,\"checksum\":%llu}\n",
           mib, reads, (double)(t1 - t0) / (double)reads, (double)(t3 - t2) / (double)reads,
           (unsigned long long)(sum + at));
    free(buf);
    return 0;
}
