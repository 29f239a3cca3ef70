/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): detects torn and corrupted records in the
 * journal and the snapshot. Table-driven; the table is built once (pthread_once). Thread-safe. */
#ifndef AETHERIS_CRC32_H
#define AETHERIS_CRC32_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

/* Continues a CRC over len bytes: start with crc = 0; crc32("123456789") == 0xCBF43926. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
