/* Account -> edge worker mapping (shard.h).
 *
 * 64-bit FNV-1a: for each byte, xor it into the hash, then multiply by the FNV prime. It is tiny,
 * has no seed (so the mapping is the same on every run, host and restart, which publishers and
 * snapshots rely on), and spreads short digit strings such as "200000".."201650" evenly. It is not
 * a defence against adversarial keys; a hot account only ever loads its own worker. */
#include "shard.h"
#include <string.h>

#define FNV64_OFFSET 14695981039346656037ULL /* FNV-1a 64-bit offset basis */
#define FNV64_PRIME 1099511628211ULL         /* FNV 64-bit prime, 2^40 + 2^8 + 0xb3 */

/* 64-bit FNV-1a of key[0..len); key may be NULL only when len is 0. */
uint64_t shard_hash(const char *key, size_t len)
{
    uint64_t h = FNV64_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint64_t)(unsigned char)key[i];
        h *= FNV64_PRIME;
    }
    return h;
}

/* shard_hash(account) % nshards; nshards 0 is treated as 1 so a misconfiguration cannot divide
 * by zero. */
uint32_t shard_of(const char *account, uint32_t nshards)
{
    if (nshards <= 1)
        return 0;
    return (uint32_t)(shard_hash(account, strlen(account)) % nshards);
}

/* The mixed hash, so the partition does not repeat the worker choice (the raw hash modulo the
 * worker count) even when the two counts share factors; npartitions 0 is treated as 1. */
uint32_t partition_of(const char *account, uint32_t npartitions)
{
    if (npartitions <= 1)
        return 0;
    return (uint32_t)(shard_mix(shard_hash(account, strlen(account))) % npartitions);
}
