/* Deterministic account -> edge worker mapping: 64-bit FNV-1a of the account key, modulo the
 * worker count. Stable across runs, platforms and restarts (documented for publishers), so one
 * account is always scored by one worker. Pure; thread-safe. */
#ifndef AETHERIS_SHARD_H
#define AETHERIS_SHARD_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a of len bytes. */
uint64_t shard_hash(const char *key, size_t len);
/* Worker index in [0, nshards) for a NUL-terminated account key; nshards >= 1. */
uint32_t shard_of(const char *account, uint32_t nshards);

#endif
