/* fuzz_common.h: what the libFuzzer harnesses share. The parsers under test
 * read files by path, so each input is written to a scratch file in a
 * private folder under /dev/shm (memory, not disk) before it is parsed. */
#ifndef TLM_FUZZ_COMMON_H
#define TLM_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tlm.h"

/* The harness's scratch folder, made on first use. */
static inline const char *fuzz_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/tlm-fuzz-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

/* Writes data to fuzz_dir()/name and returns the path (static storage). */
static inline const char *fuzz_write(const char *name, const void *data, size_t n) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) { perror(path); abort(); }
    return path;
}

/* A failure must be one of the statuses a parser of files may return, with
 * a message: anything else is a bug the fuzzer should report. */
static inline void fuzz_expect_failure(tlm_status st, const char *what) {
    if (st == TLM_EFORMAT || st == TLM_EUNSUPPORTED || st == TLM_EIO || st == TLM_ENOMEM || st == TLM_EINVAL) {
        if (!tlm_last_error()[0]) { fprintf(stderr, "%s failed (status %d) with no message\n", what, st); abort(); }
        return;
    }
    fprintf(stderr, "%s returned unexpected status %d: %s\n", what, st, tlm_last_error());
    abort();
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as
 * Python's decoder: every string the core hands to Python must pass it. */
static inline int fuzz_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i], lo = 0x80, hi = 0xBF;
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || n - i < len) return 0;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (len > 1 && (u[i + 1] < lo || u[i + 1] > hi)) return 0;
        for (size_t k = 2; k < len; k++)
            if ((u[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

#endif
