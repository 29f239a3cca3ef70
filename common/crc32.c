/* CRC-32 (crc32.h), slicing by 8: eight tables, where table[k][b] is the CRC of byte b followed by
 * k zero bytes, let the loop fold 8 input bytes per step with eight independent lookups instead of
 * a chain of eight dependent ones (the journal checksums every record on the ingest path). The
 * bytes are combined one by one, so the result does not depend on the machine's byte order; the
 * tail (< 8 bytes) goes byte at a time with table[0], the classic algorithm. */
#include "crc32.h"
#include <pthread.h>

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            table[k][i] = table[0][table[k - 1][i] & 0xff] ^ (table[k - 1][i] >> 8);
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&table_once, build_table);
    const uint8_t *p = data;
    crc = ~crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^
              table[0][p[7]];
    }
    for (; len > 0; p++, len--)
        crc = table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return ~crc;
}
