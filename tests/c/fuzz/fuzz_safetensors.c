/* fuzz_safetensors.c: tlm_st_open on arbitrary bytes (header length, JSON
 * header, dtypes, shapes, data_offsets), then every accessor of a file it
 * accepts, reading every byte of every tensor so ASan sees any pointer the
 * validation let past the end of the mapping. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.safetensors", data, size);
    tlm_st_file *f;
    tlm_status st = tlm_st_open(path, &f);
    if (st != TLM_OK) {
        fuzz_expect_failure(st, "tlm_st_open");
        return 0;
    }
    volatile unsigned char sink = 0; /* reads ASan checks, kept by volatile */
    for (int64_t i = 0; i < tlm_st_count(f); i++) {
        tlm_st_tensor t, again;
        if (tlm_st_get(f, i, &t) != TLM_OK || tlm_st_find(f, t.name, &again) != TLM_OK || again.data != t.data) abort();
        const unsigned char *p = t.data;
        for (uint64_t b = 0; b < t.nbytes; b++) sink ^= p[b];
        float first;
        if (t.nbytes >= tlm_dtype_size(t.dtype) && (t.dtype == TLM_F32 || t.dtype == TLM_BF16 || t.dtype == TLM_F16))
            tlm_to_f32(t.data, t.dtype, 1, &first);
    }
    for (int64_t i = 0; i < tlm_st_metadata_count(f); i++) {
        const char *k, *v;
        if (tlm_st_metadata_get(f, i, &k, &v) != TLM_OK) abort();
        sink ^= (unsigned char)(strlen(k) + strlen(v));
    }
    tlm_st_close(f);
    return 0;
}
