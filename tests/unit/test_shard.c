/* Unit tests for pipeline/shard.c: published FNV-1a 64 test vectors, stability, the spread of the
 * dataset's account range over 2 and 8 workers, and the single-worker case. */
#include "shard.h"
#include <stdio.h>
#include <string.h>
#include "tap.h"

static void test_vectors(void)
{
    static const struct {
        const char *in;
        uint64_t want;
    } v[] = {
        {"", 0xcbf29ce484222325ULL},
        {"a", 0xaf63dc4c8601ec8cULL},
        {"foobar", 0x85944171f73967e8ULL},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint64_t got = shard_hash(v[i].in, strlen(v[i].in));
        ok(got == v[i].want, "fnv1a64(\"%s\") = %016llx (want %016llx)", v[i].in,
           (unsigned long long)got, (unsigned long long)v[i].want);
    }
    /* only len bytes count, and bytes above 0x7f hash as unsigned */
    ok(shard_hash("foobarXYZ", 6) == 0x85944171f73967e8ULL, "hash reads exactly len bytes");
    ok(shard_hash("\xff", 1) != shard_hash("\x7f", 1), "high bytes hashed as unsigned");
    ok(shard_hash("\xff", 1) == ((0xcbf29ce484222325ULL ^ 0xffULL) * 1099511628211ULL),
       "one high byte matches the definition");
}

static void test_stability(void)
{
    int same = 1;
    char key[24];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "acct-%d", i);
        if (shard_hash(key, strlen(key)) != shard_hash(key, strlen(key)) ||
            shard_of(key, 7) != shard_of(key, 7) ||
            shard_of(key, 7) != (uint32_t)(shard_hash(key, strlen(key)) % 7))
            same = 0;
    }
    ok(same, "same key -> same hash and shard; shard_of == hash %% n");
    is_int(shard_of("200430", 8), (int)(shard_hash("200430", 6) % 8), "shard_of for 200430");
}

static void test_distribution(uint32_t nshards)
{
    int counts[8] = {0};
    const int nkeys = 1651; /* the dataset's accounts: 200000..201650 */
    double mean = (double)nkeys / nshards;
    int in_range = 1;
    int worst = 0;
    char key[24];

    for (int a = 200000; a <= 201650; a++) {
        uint32_t s;
        snprintf(key, sizeof(key), "%d", a);
        s = shard_of(key, nshards);
        if (s >= nshards) {
            in_range = 0;
            continue;
        }
        counts[s]++;
    }
    ok(in_range, "%u shards: every index < n", nshards);
    for (uint32_t s = 0; s < nshards; s++) {
        if (counts[s] < 0.75 * mean || counts[s] > 1.25 * mean)
            worst = 1;
    }
    ok(!worst, "%u shards: each within +-25%% of the mean %.1f", nshards, mean);
    for (uint32_t s = 0; s < nshards; s++)
        printf("#   shard %u: %d\n", s, counts[s]);
}

static void test_single(void)
{
    int zero = 1;
    char key[24];

    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "%d", 200000 + i);
        if (shard_of(key, 1) != 0 || shard_of(key, 0) != 0)
            zero = 0;
    }
    ok(zero, "nshards 1 (and 0) -> always 0");
    is_int(shard_of("", 4), (int)(0xcbf29ce484222325ULL % 4), "empty key is hashed too");
}

/* The worked example of the README and the spread of the dataset's accounts over 16 partitions,
 * and that a partition's accounts still use both of two workers (partition and worker are
 * drawn independently). */
static void test_partitions(void)
{
    ok(shard_mix(0x7039a455becc9593ULL) == 0xe1217d45bcc4bcfeULL, "fmix64 of fnv1a64(\"201164\")");
    is_int((int)partition_of("201164", 16), 14, "201164 -> partition 14 of 16 (README example)");
    is_int((int)partition_of("200430", 16), 8, "200430 -> partition 8 of 16");
    is_int((int)partition_of("200430", 1), 0, "one partition -> 0");
    is_int((int)partition_of("200430", 0), 0, "zero partitions treated as one");
    int counts[16] = {0}, worker0[16] = {0};
    char key[24];
    for (int a = 200000; a <= 201650; a++) {
        snprintf(key, sizeof key, "%d", a);
        uint32_t p = partition_of(key, 16);
        counts[p]++;
        worker0[p] += shard_of(key, 2) == 0;
    }
    int spread = 1, both = 1;
    for (int p = 0; p < 16; p++) {
        if (counts[p] < 0.75 * 1651 / 16 || counts[p] > 1.25 * 1651 / 16)
            spread = 0;
        if (worker0[p] < 0.3 * counts[p] || worker0[p] > 0.7 * counts[p])
            both = 0;
    }
    ok(spread, "16 partitions: each within +-25%% of the mean");
    ok(both, "each partition's accounts split 30..70%% over two workers");
}

int main(void)
{
    test_partitions();
    test_vectors();
    test_stability();
    test_distribution(2);
    test_distribution(8);
    test_single();
    return done_testing();
}
