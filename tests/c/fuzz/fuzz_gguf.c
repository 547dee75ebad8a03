/* fuzz_gguf.c: tlm_gguf_open on arbitrary bytes (header, counts, every
 * value type, strings, tensor infos, alignment, offsets), then every
 * accessor of a file it accepts: each key/value's bytes and strings, each
 * tensor's bytes (so ASan sees any pointer the validation let past the end
 * of the mapping), and a dequantization of each tensor's first row. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.gguf", data, size);
    tlm_gguf_file *f;
    tlm_status st = tlm_gguf_open(path, &f);
    if (st != TLM_OK) {
        fuzz_expect_failure(st, "tlm_gguf_open");
        return 0;
    }
    volatile unsigned char sink = 0; /* reads ASan checks, kept by volatile */
    for (int64_t i = 0; i < tlm_gguf_kv_count(f); i++) {
        tlm_gguf_kv kv;
        if (tlm_gguf_kv_get(f, i, &kv) != TLM_OK || tlm_gguf_kv_find(f, kv.key) != i) abort();
        if (kv.strs) {
            for (uint64_t j = 0; j < kv.n; j++)
                for (uint64_t b = 0; b < kv.strs[j].len; b++) sink ^= (unsigned char)kv.strs[j].ptr[b];
        } else {
            const unsigned char *p = kv.data;
            for (uint64_t b = 0; b < kv.n * tlm_gguf_value_size(kv.elem_type); b++) sink ^= p[b];
        }
    }
    float row[4096];
    for (int64_t i = 0; i < tlm_gguf_tensor_count(f); i++) {
        tlm_gguf_tensor t, again;
        if (tlm_gguf_tensor_get(f, i, &t) != TLM_OK || tlm_gguf_tensor_find(f, t.name, &again) != TLM_OK ||
            again.data != t.data)
            abort();
        const unsigned char *p = t.data;
        for (uint64_t b = 0; b < t.nbytes; b++) sink ^= p[b];
        if (t.nbytes && t.ne[0] <= (int64_t)(sizeof row / sizeof row[0]))
            (void)tlm_ggml_dequantize(t.type, t.data, t.ne[0], row);
    }
    tlm_gguf_close(f);
    return 0;
}
