/* cache_seal.c: the seal of tinylm's HDF5 files (token and teacher caches),
 * so that libhdf5 only ever parses files tinylm finished writing.
 *
 * libhdf5 is not hardened against corrupt or hostile files: fed mutated
 * caches (tests/c/fuzz/fuzz_cache.c, docs/reliability.md) it asked for
 * petabyte allocations and leaked within seconds, and its history has many
 * crashes on malformed files. A cache is tinylm's own file, so the writer
 * reserves HDF5's user block (the first SEAL_BYTES, which libhdf5 skips)
 * and, once the file is complete, writes there a magic line, the file's
 * length and a 64-bit checksum of every byte after the block. The reader
 * checks all three with plain reads before libhdf5 sees the file, so
 * truncation, bit rot and files that are no tinylm cache are TLM_EFORMAT
 * (the caller rebuilds the cache). The checksum detects corruption, not
 * forgery: a cache folder is as trusted as the code that reads it. */
#include "io/cache_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_MAGIC "tinylm token cache seal 1\n"
#define CHUNK (1u << 20) /* bytes read at a time; a multiple of 8 */

static uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w * UINT64_C(0x9E3779B97F4A7C15);
    h = h << 29 | h >> 35;
    return h * UINT64_C(0xBF58476D1CE4E5B9);
}

/* Reads up to n bytes, short only at the end of the file; -1 on error. */
static ssize_t read_full(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The checksum of everything from SEAL_BYTES to the end of fd's file,
 * eight bytes at a time (little-endian), the tail and the length last. */
static int checksum_after_seal(int fd, uint64_t *out) {
    unsigned char *buf = malloc(CHUNK);
    if (!buf) return -1;
    uint64_t h = 0, total = 0;
    ssize_t got;
    if (lseek(fd, SEAL_BYTES, SEEK_SET) < 0) { free(buf); return -1; }
    while ((got = read_full(fd, buf, CHUNK)) > 0) {
        size_t words = (size_t)got / 8;
        for (size_t i = 0; i < words; i++) {
            uint64_t w = 0;
            for (int b = 7; b >= 0; b--) w = w << 8 | buf[8 * i + (size_t)b];
            h = mix(h, w);
        }
        uint64_t tail = 0;
        for (size_t b = (size_t)got; b-- > 8 * words;) tail = tail << 8 | buf[b];
        if ((size_t)got % 8) h = mix(h, tail);
        total += (uint64_t)got;
        if ((size_t)got < CHUNK) break;
    }
    free(buf);
    if (got < 0) return -1;
    *out = mix(h, total);
    return 0;
}

tlm_status tlm_cache_seal(const char *kind, const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    uint64_t sum;
    char seal[SEAL_BYTES] = {0};
    int ok = fd >= 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_size >= SEAL_BYTES && checksum_after_seal(fd, &sum) == 0;
    if (ok) {
        snprintf(seal, sizeof seal, SEAL_MAGIC "length %" PRIu64 "\nchecksum %016" PRIx64 "\n", (uint64_t)sb.st_size,
                 sum);
        /* the data must be on disk before the name points at it */
        ok = pwrite(fd, seal, sizeof seal, 0) == (ssize_t)sizeof seal && fsync(fd) == 0;
    }
    int err = errno;
    if (fd >= 0) close(fd);
    return ok ? TLM_OK : tlm_fail(TLM_EIO, "%s %s: cannot seal: %s", kind, path, strerror(err));
}

tlm_status tlm_cache_check_seal(const char *kind, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tlm_fail(TLM_EIO, "%s %s: %s", kind, path, strerror(errno));
    struct stat sb;
    unsigned char seal[SEAL_BYTES + 1] = {0};
    uint64_t length = 0, want = 0, sum = 0;
    int n = 0;
    tlm_status st = TLM_OK;
    if (fstat(fd, &sb) != 0 || read_full(fd, seal, SEAL_BYTES) < 0)
        st = tlm_fail(TLM_EIO, "%s %s: cannot read: %s", kind, path, strerror(errno));
    else if (memcmp(seal, SEAL_MAGIC, sizeof SEAL_MAGIC - 1) != 0 ||
             sscanf((const char *)seal + sizeof SEAL_MAGIC - 1, "length %" SCNu64 "\nchecksum %" SCNx64 "\n%n", &length,
                    &want, &n) != 2 || n == 0)
        st = tlm_fail(TLM_EFORMAT, "%s %s: no tinylm seal in its first %d bytes (not a finished tinylm "
                      "cache)", kind, path, SEAL_BYTES);
    else if (length != (uint64_t)sb.st_size)
        st = tlm_fail(TLM_EFORMAT, "%s %s: the seal says %" PRIu64 " bytes but the file has %lld "
                      "(truncated or appended to)", kind, path, length, (long long)sb.st_size);
    else if (checksum_after_seal(fd, &sum) != 0)
        st = tlm_fail(TLM_EIO, "%s %s: cannot read: %s", kind, path, strerror(errno));
    else if (sum != want)
        st = tlm_fail(TLM_EFORMAT, "%s %s: checksum %016" PRIx64 " does not match the seal's %016" PRIx64
                      " (the file is corrupt)", kind, path, sum, want);
    close(fd);
    return st;
}
