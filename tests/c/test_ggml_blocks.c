/* test_ggml_blocks.c: ggml's block codecs under ASan/UBSan (and
 * -fsanitize=float-cast-overflow). Block bytes come from files, so every
 * type decodes random bytes (any fp16 scale, NaN and inf included) without a
 * memory error or undefined behaviour; quantizing inputs with inf, NaN,
 * subnormals and overflowing values stays defined too, and its blocks decode
 * again. The values themselves are checked against gguf and llama.cpp in
 * tests/test_ggml_blocks.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tlm.h"

#define N 4096 /* values per case: 16 super-blocks, 128 legacy blocks */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t next_u32(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1du) >> 32);
}

/* A float of any class: random bits (NaNs, infs, subnormals), or one of the
 * values that stress a quantizer. */
static float any_float(void) {
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -1e-40f, 3e38f, -3e38f,
                                    1e20f, 65504.0f, 65520.0f, 0.5f, -8.0f, 1.0f};
    uint32_t r = next_u32();
    if (r % 4 == 0) return special[(r >> 8) % (sizeof special / sizeof special[0])];
    uint32_t bits = next_u32();
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int main(void) {
    static uint8_t bytes[N * 8], again[N * 8]; /* 8: the widest element, i64 and f64 */
    static float x[N], y[N];
    for (int type = -1; type <= TLM_GGML_TYPE_COUNT; type++) {
        const char *name = tlm_ggml_type_name(type);
        check_case = name ? name : "unknown id";
        int64_t row_bytes;
        if (!name) {
            CHECK(tlm_ggml_block_elems(type) == 0 && tlm_ggml_block_bytes(type) == 0);
            CHECK(tlm_ggml_row_bytes(type, N, &row_bytes) == TLM_EINVAL);
            CHECK(tlm_ggml_dequantize(type, bytes, N, y) == TLM_EINVAL);
            CHECK(tlm_ggml_quantize(type, x, 1, N, bytes) == TLM_EINVAL);
            continue;
        }
        const int64_t elems = tlm_ggml_block_elems(type);
        CHECK(tlm_ggml_row_bytes(type, N, &row_bytes) == TLM_OK && row_bytes <= (int64_t)sizeof bytes);
        CHECK(tlm_ggml_row_bytes(type, -elems, &row_bytes) == TLM_EINVAL);
        if (elems > 1) CHECK(tlm_ggml_row_bytes(type, N + 1, &row_bytes) == TLM_EINVAL);
        if (!tlm_ggml_can_dequantize(type)) {
            CHECK(tlm_ggml_dequantize(type, bytes, N, y) == TLM_EUNSUPPORTED && strstr(tlm_last_error(), name));
            CHECK(tlm_ggml_quantize(type, x, 1, N, bytes) == TLM_EUNSUPPORTED && strstr(tlm_last_error(), name));
            continue;
        }
        for (int round = 0; round < 20; round++) {
            for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)next_u32();
            CHECK(tlm_ggml_dequantize(type, bytes, N, y) == TLM_OK);
            if (!tlm_ggml_can_quantize(type)) continue;
            for (int i = 0; i < N; i++) x[i] = any_float();
            CHECK(tlm_ggml_quantize(type, x, 2, N / 2, bytes) == TLM_OK);
            CHECK(tlm_ggml_dequantize(type, bytes, N, y) == TLM_OK);
            /* finite, ordinary inputs come back within their block's range */
            for (int i = 0; i < N; i++) x[i] = (float)((int)(next_u32() % 2001) - 1000) / 256.0f;
            CHECK(tlm_ggml_quantize(type, x, 4, N / 4, again) == TLM_OK);
            CHECK(tlm_ggml_dequantize(type, again, N, y) == TLM_OK);
            int near = 1;
            for (int i = 0; i < N; i++) near &= fabsf(y[i] - x[i]) <= 8.0f;
            CHECK(near);
        }
    }
    return check_summary();
}
