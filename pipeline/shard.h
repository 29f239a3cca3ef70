/* Deterministic account -> edge worker mapping: 64-bit FNV-1a of the account key, modulo the
 * worker count. Stable across runs, platforms and restarts (documented for publishers), so one
 * account is always scored by one worker. Also the account -> cluster partition mapping that
 * publishers compute to pick the partitioned topic (README "Running several instances"): the
 * same hash passed through the MurmurHash3 64-bit finalizer, modulo the partition count. The
 * finalizer matters: FNV-1a's high bits barely move over short digit strings, and without it the
 * partition would repeat the worker choice, so an instance owning a few partitions would use
 * only some of its workers. Pure; thread-safe. */
#ifndef AETHERIS_SHARD_H
#define AETHERIS_SHARD_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a of len bytes. */
uint64_t shard_hash(const char *key, size_t len);
/* Worker index in [0, nshards) for a NUL-terminated account key; nshards >= 1. */
uint32_t shard_of(const char *account, uint32_t nshards);
/* MurmurHash3's fmix64 finalizer (a bijection that mixes every input bit into every output bit;
 * public domain): two xor-shift-multiply rounds. Inline: the edge table and the dedupe set hash
 * with it on every event. */
static inline uint64_t shard_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}
/* Cluster partition in [0, npartitions) of a NUL-terminated account key:
 * shard_mix(shard_hash(account)) % npartitions; npartitions 0 is treated as 1. */
uint32_t partition_of(const char *account, uint32_t npartitions);

#endif
