/* fuzz_cache.c: tlm_cache_open on arbitrary bytes (the HDF5 token cache),
 * then every accessor of a cache it accepts and a read of every example, so
 * that any length or offset the validation let through is used.
 *
 * With FUZZ_CACHE_RESEAL=1 each input is sealed before it is opened, so the
 * mutated bytes get past the seal (csrc/io/cache_seal.c) into libhdf5: that
 * fuzzes libhdf5 itself, which is not hardened (docs/reliability.md), and is
 * not part of `make fuzz`. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "io/cache_seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("cache.h5", data, size);
    static int reseal = -1;
    if (reseal < 0) reseal = getenv("FUZZ_CACHE_RESEAL") && atoi(getenv("FUZZ_CACHE_RESEAL"));
    if (reseal && size >= SEAL_BYTES && tlm_cache_seal("token cache", path) != TLM_OK) abort();
    tlm_cache *c;
    tlm_status st = tlm_cache_open(path, &c);
    if (st != TLM_OK) {
        fuzz_expect_failure(st, "tlm_cache_open");
        return 0;
    }
    int64_t n = tlm_cache_count(c);
    const int64_t *offs = tlm_cache_offsets(c);
    volatile int64_t sink = tlm_cache_lines(c)[n ? n - 1 : 0] * 0;
    for (int64_t i = 0; i < tlm_cache_attr_count(c); i++) {
        const char *k, *v;
        if (tlm_cache_attr_get(c, i, &k, &v) != TLM_OK) abort();
        sink += (int64_t)(strlen(k) + strlen(v));
    }
    for (int64_t i = 0; i < n; i++) {
        size_t len = (size_t)(offs[i + 1] - offs[i]);
        int32_t *ids = malloc(len * sizeof *ids + 1);
        uint8_t *mask = malloc(len + 1);
        st = tlm_cache_read(c, i, 1, ids, mask);
        if (st != TLM_OK) fuzz_expect_failure(st, "tlm_cache_read");
        free(ids);
        free(mask);
        if (st != TLM_OK) break;
    }
    tlm_cache_close(c);
    return 0;
}
