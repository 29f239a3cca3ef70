/* CRC-32: the check value of "123456789", and agreement with a bit-at-a-time reference for every
 * length 0..199 at every alignment 0..8 (the 8-byte steps and the byte tail), and continuation
 * (the CRC of a + b is the CRC of b continued from the CRC of a). */
#include "crc32.h"
#include <string.h>
#include "tap.h"

static uint32_t reference(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

int main(void)
{
    unsigned char b[256];
    for (int i = 0; i < 256; i++)
        b[i] = (unsigned char)(i * 131 + 7);
    ok(crc32_update(0, "123456789", 9) == 0xCBF43926u, "check value of \"123456789\"");
    int bad = 0;
    for (size_t n = 0; n < 200; n++)
        for (size_t o = 0; o < 9; o++)
            bad += crc32_update(0x12345678u, b + o, n) != reference(0x12345678u, b + o, n);
    is_int(bad, 0, "matches the bitwise reference at every length and alignment");
    int split = 0;
    for (size_t cut = 0; cut <= 100; cut++)
        split +=
            crc32_update(crc32_update(0, b, cut), b + cut, 100 - cut) != crc32_update(0, b, 100);
    is_int(split, 0, "continuing a CRC equals one pass over the whole");
    return done_testing();
}
