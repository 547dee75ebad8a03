/* ggml_blocks.c: the table of ggml's tensor types (names and block sizes as
 * ggml.c's type_traits and ggml-common.h give them) and the entry points of
 * tlm.h's "ggml block types", which check their arguments and hand whole
 * blocks to the codec of the type (ggml_legacy.c, ggml_kquants.c, and the
 * float types here). */
#include "core/internal.h"
#include "quant/ggml_blocks.h"

typedef void (*dequant_fn)(const void *src, int64_t nb, float *dst);
typedef void (*quant_fn)(const float *src, int64_t nb, void *dst, uint8_t *clip);

static void dequant_f32(const void *src, int64_t n, float *dst) { memcpy(dst, src, (size_t)n * 4); }
/* The float types round (or copy) without a range clamp: nothing clips. */
static void quant_f32(const float *src, int64_t n, void *dst, uint8_t *clip) {
    memcpy(dst, src, (size_t)n * 4);
    if (clip) memset(clip, 0, (size_t)n);
}

static void dequant_f16(const void *src, int64_t n, float *dst) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = gg_f16_to_f32(h[i]);
}

static void quant_f16(const float *src, int64_t n, void *dst, uint8_t *clip) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = gg_f32_to_f16(src[i]);
    if (clip) memset(clip, 0, (size_t)n);
}

static void dequant_bf16(const void *src, int64_t n, float *dst) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = gg_bf16_to_f32(h[i]);
}

static void quant_bf16(const float *src, int64_t n, void *dst, uint8_t *clip) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = gg_f32_to_bf16(src[i]);
    if (clip) memset(clip, 0, (size_t)n);
}

/* Every type of ggml.h; a NULL codec is one tinylm does not implement (its
 * sizes are ggml-common.h's; tests check them against ggml and gguf). */
static const struct {
    const char *name;
    int64_t elems, bytes;
    dequant_fn dequant;
    quant_fn quant;
} TYPES[TLM_GGML_TYPE_COUNT] = {
    [TLM_GGML_F32] = {"f32", 1, 4, dequant_f32, quant_f32},
    [TLM_GGML_F16] = {"f16", 1, 2, dequant_f16, quant_f16},
    [TLM_GGML_BF16] = {"bf16", 1, 2, dequant_bf16, quant_bf16},
    [TLM_GGML_Q4_0] = {"q4_0", GG_QK, sizeof(gg_q4_0), tlm_gg_dequant_q4_0, tlm_gg_quant_q4_0},
    [TLM_GGML_Q4_1] = {"q4_1", GG_QK, sizeof(gg_q4_1), tlm_gg_dequant_q4_1, tlm_gg_quant_q4_1},
    [TLM_GGML_Q5_0] = {"q5_0", GG_QK, sizeof(gg_q5_0), tlm_gg_dequant_q5_0, tlm_gg_quant_q5_0},
    [TLM_GGML_Q5_1] = {"q5_1", GG_QK, sizeof(gg_q5_1), tlm_gg_dequant_q5_1, tlm_gg_quant_q5_1},
    [TLM_GGML_Q8_0] = {"q8_0", GG_QK, sizeof(gg_q8_0), tlm_gg_dequant_q8_0, tlm_gg_quant_q8_0},
    [TLM_GGML_Q8_1] = {"q8_1", 32, 36, NULL, NULL},
    [TLM_GGML_Q2_K] = {"q2_K", GG_QK_K, sizeof(gg_q2_K), tlm_gg_dequant_q2_K, tlm_gg_quant_q2_K},
    [TLM_GGML_Q3_K] = {"q3_K", GG_QK_K, sizeof(gg_q3_K), tlm_gg_dequant_q3_K, tlm_gg_quant_q3_K},
    [TLM_GGML_Q4_K] = {"q4_K", GG_QK_K, sizeof(gg_q4_K), tlm_gg_dequant_q4_K, tlm_gg_quant_q4_K},
    [TLM_GGML_Q5_K] = {"q5_K", GG_QK_K, sizeof(gg_q5_K), tlm_gg_dequant_q5_K, tlm_gg_quant_q5_K},
    [TLM_GGML_Q6_K] = {"q6_K", GG_QK_K, sizeof(gg_q6_K), tlm_gg_dequant_q6_K, tlm_gg_quant_q6_K},
    [TLM_GGML_Q8_K] = {"q8_K", GG_QK_K, sizeof(gg_q8_K), tlm_gg_dequant_q8_K, tlm_gg_quant_q8_K},
    [TLM_GGML_IQ2_XXS] = {"iq2_xxs", 256, 66, NULL, NULL},
    [TLM_GGML_IQ2_XS] = {"iq2_xs", 256, 74, NULL, NULL},
    [TLM_GGML_IQ3_XXS] = {"iq3_xxs", 256, 98, NULL, NULL},
    [TLM_GGML_IQ1_S] = {"iq1_s", 256, 50, NULL, NULL},
    [TLM_GGML_IQ4_NL] = {"iq4_nl", 32, 18, NULL, NULL},
    [TLM_GGML_IQ3_S] = {"iq3_s", 256, 110, NULL, NULL},
    [TLM_GGML_IQ2_S] = {"iq2_s", 256, 82, NULL, NULL},
    [TLM_GGML_IQ4_XS] = {"iq4_xs", 256, 136, NULL, NULL},
    [TLM_GGML_I8] = {"i8", 1, 1, NULL, NULL},
    [TLM_GGML_I16] = {"i16", 1, 2, NULL, NULL},
    [TLM_GGML_I32] = {"i32", 1, 4, NULL, NULL},
    [TLM_GGML_I64] = {"i64", 1, 8, NULL, NULL},
    [TLM_GGML_F64] = {"f64", 1, 8, NULL, NULL},
    [TLM_GGML_IQ1_M] = {"iq1_m", 256, 56, NULL, NULL},
    [TLM_GGML_TQ1_0] = {"tq1_0", 256, 54, NULL, NULL},
    [TLM_GGML_TQ2_0] = {"tq2_0", 256, 66, NULL, NULL},
    [TLM_GGML_MXFP4] = {"mxfp4", 32, 17, NULL, NULL},
    [TLM_GGML_NVFP4] = {"nvfp4", 64, 36, NULL, NULL},
    [TLM_GGML_Q1_0] = {"q1_0", 128, 18, NULL, NULL},
    [TLM_GGML_Q2_0] = {"q2_0", 64, 18, NULL, NULL},
};

static int known(int type) { return type >= 0 && type < TLM_GGML_TYPE_COUNT && TYPES[type].name; }

const char *tlm_ggml_type_name(int type) { return known(type) ? TYPES[type].name : NULL; }
int64_t tlm_ggml_block_elems(int type) { return known(type) ? TYPES[type].elems : 0; }
int64_t tlm_ggml_block_bytes(int type) { return known(type) ? TYPES[type].bytes : 0; }
int tlm_ggml_can_dequantize(int type) { return known(type) && TYPES[type].dequant; }
int tlm_ggml_can_quantize(int type) { return known(type) && TYPES[type].quant; }

tlm_status tlm_ggml_row_bytes(int type, int64_t n, int64_t *bytes) {
    if (!known(type)) return tlm_fail(TLM_EINVAL, "unknown ggml type id %d", type);
    if (n < 0 || n % TYPES[type].elems)
        return tlm_fail(TLM_EINVAL, "%lld values of ggml type %s: not a whole number of its %lld-value blocks",
                        (long long)n, TYPES[type].name, (long long)TYPES[type].elems);
    if (n / TYPES[type].elems > INT64_MAX / TYPES[type].bytes)
        return tlm_fail(TLM_EINVAL, "%lld values of ggml type %s: too many", (long long)n, TYPES[type].name);
    *bytes = n / TYPES[type].elems * TYPES[type].bytes;
    return TLM_OK;
}

tlm_status tlm_ggml_dequantize(int type, const void *src, int64_t n, float *dst) {
    int64_t bytes;
    TLM_TRY(tlm_ggml_row_bytes(type, n, &bytes));
    if (!TYPES[type].dequant)
        return tlm_fail(TLM_EUNSUPPORTED, "dequantizing ggml type %s is not implemented", TYPES[type].name);
    TYPES[type].dequant(src, n / TYPES[type].elems, dst);
    return TLM_OK;
}

static tlm_status check_quantize(int type, int64_t rows, int64_t n_per_row) {
    int64_t row_bytes;
    TLM_TRY(tlm_ggml_row_bytes(type, n_per_row, &row_bytes));
    if (rows < 0) return tlm_fail(TLM_EINVAL, "quantize to ggml type %s: %lld rows", TYPES[type].name, (long long)rows);
    if (!TYPES[type].quant)
        return tlm_fail(TLM_EUNSUPPORTED, "quantizing to ggml type %s is not implemented", TYPES[type].name);
    if (rows && (n_per_row > INT64_MAX / rows || row_bytes > INT64_MAX / rows))
        return tlm_fail(TLM_EINVAL, "quantize to ggml type %s: %lld x %lld values is too many", TYPES[type].name,
                        (long long)rows, (long long)n_per_row);
    return TLM_OK;
}

/* Without an importance matrix no block depends on another (not even on its
 * row), so the blocks of all rows split into chunks freely: CHUNK_VALUES per
 * chunk, 16 blocks of a K type. */
#define CHUNK_VALUES 4096

tlm_status tlm_ggml_quantize(int type, const float *src, int64_t rows, int64_t n_per_row, void *dst) {
    TLM_TRY(check_quantize(type, rows, n_per_row));
    const int64_t elems = TYPES[type].elems, bytes = TYPES[type].bytes, nb = rows * n_per_row / elems;
    const int64_t chunk = CHUNK_VALUES / elems;
    const quant_fn quant = TYPES[type].quant;
    #pragma omp parallel for schedule(static) if (nb > 4 * chunk)
    for (int64_t c = 0; c < nb; c += chunk)
        quant(src + c * elems, tlm_min_i64(chunk, nb - c), (uint8_t *)dst + c * bytes, NULL);
    return TLM_OK;
}

tlm_status tlm_ggml_fake_quantize(int type, const float *src, int64_t rows, int64_t n_per_row, float *dst,
                                  uint8_t *clip) {
    TLM_TRY(check_quantize(type, rows, n_per_row));
    const int64_t elems = TYPES[type].elems, nb = rows * n_per_row / elems;
    const int64_t chunk = CHUNK_VALUES / elems;
    const quant_fn quant = TYPES[type].quant;
    const dequant_fn dequant = TYPES[type].dequant;
    #pragma omp parallel for schedule(static) if (nb > 4 * chunk)
    for (int64_t c = 0; c < nb; c += chunk) {
        uint8_t blocks[CHUNK_VALUES * 4]; /* the widest type, f32, is 4 bytes a value */
        int64_t n = tlm_min_i64(chunk, nb - c);
        quant(src + c * elems, n, blocks, clip ? clip + c * elems : NULL);
        dequant(blocks, n, dst + c * elems); /* after quant has read the chunk: dst may be src */
    }
    return TLM_OK;
}
