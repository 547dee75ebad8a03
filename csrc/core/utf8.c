/* utf8.c: the UTF-8 check the file readers and writers share. */
#include "core/internal.h"

#include <string.h>

size_t tlm_utf8_sequence(const unsigned char *s, size_t left) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (left < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

int tlm_utf8_valid_n(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    while (n) {
        size_t len = *p < 0x80 ? 1 : tlm_utf8_sequence(p, n);
        if (!len) return 0;
        p += len;
        n -= len;
    }
    return 1;
}

int tlm_utf8_valid(const char *s) { return tlm_utf8_valid_n(s, strlen(s)); }
