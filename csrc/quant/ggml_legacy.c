/* ggml_legacy.c: ggml's first block types, 32 values under one fp16 scale:
 * Q4_0 / Q5_0 (symmetric, 4 or 5 bits), Q4_1 / Q5_1 (scale and minimum),
 * Q8_0. Quantization follows quantize_row_*_ref of ggml-quants.c (see
 * ggml_blocks.h on bit-exactness). The low nibbles of a block hold values
 * 0..15, the high nibbles 16..31; Q5's fifth bits are a little-endian
 * 32-bit mask, bit j for value j. */
#include "quant/ggml_blocks.h"

#include <float.h>
#include <math.h>

void tlm_gg_dequant_q4_0(const void *src, int64_t nb, float *dst) {
    const gg_q4_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK) {
        const float d = gg_f16_to_f32(b[i].d);
        for (int j = 0; j < GG_QK / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + GG_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void tlm_gg_dequant_q4_1(const void *src, int64_t nb, float *dst) {
    const gg_q4_1 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK) {
        const float d = gg_f16_to_f32(b[i].d), m = gg_f16_to_f32(b[i].m);
        for (int j = 0; j < GG_QK / 2; j++) {
            dst[j] = (float)(b[i].qs[j] & 0x0f) * d + m;
            dst[j + GG_QK / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

void tlm_gg_dequant_q5_0(const void *src, int64_t nb, float *dst) {
    const gg_q5_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK) {
        const float d = gg_f16_to_f32(b[i].d);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < GG_QK / 2; j++) {
            int lo = (int)((b[i].qs[j] & 0x0f) | ((qh >> j) & 1u) << 4);
            int hi = (int)((b[i].qs[j] >> 4) | ((qh >> (j + GG_QK / 2)) & 1u) << 4);
            dst[j] = (float)(lo - 16) * d;
            dst[j + GG_QK / 2] = (float)(hi - 16) * d;
        }
    }
}

void tlm_gg_dequant_q5_1(const void *src, int64_t nb, float *dst) {
    const gg_q5_1 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK) {
        const float d = gg_f16_to_f32(b[i].d), m = gg_f16_to_f32(b[i].m);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < GG_QK / 2; j++) {
            int lo = (int)((b[i].qs[j] & 0x0f) | ((qh >> j) & 1u) << 4);
            int hi = (int)((b[i].qs[j] >> 4) | ((qh >> (j + GG_QK / 2)) & 1u) << 4);
            dst[j] = (float)lo * d + m;
            dst[j + GG_QK / 2] = (float)hi * d + m;
        }
    }
}

void tlm_gg_dequant_q8_0(const void *src, int64_t nb, float *dst) {
    const gg_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK) {
        const float d = gg_f16_to_f32(b[i].d);
        for (int j = 0; j < GG_QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

/* The value of largest magnitude, with its sign (the first of equals; NaNs
 * never win). Q4_0 / Q5_0 map it to the code -8 / -16, the one extra
 * negative step of a two's-complement range. */
static float signed_absmax(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < GG_QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void min_max(const float *x, float *min, float *max) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < GG_QK; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo;
    *max = hi;
}

/* Codes of the symmetric types: trunc(x * id + bias), at most top. ggml
 * converts through int8_t (so C's truncation), then compares as int; a
 * code cut to top is reported in *clip (when asked) for fake quantization. */
static inline uint8_t sym_code(float x, float id, float bias, int top, uint8_t *clip) {
    int q = (int8_t)gg_trunc_i32(x * id + bias);
    if (clip) *clip = q > top;
    return (uint8_t)(q < top ? q : top);
}

/* The asymmetric types' codes, trunc((x - min) * id + 0.5). */
static inline int min_code(float x, float min, float id) { return (int8_t)gg_trunc_i32((x - min) * id + 0.5f); }

/* clip + j: where value j of the block went, when clip is not NULL. */
#define CLIP_AT(clip, j) ((clip) ? (clip) + (j) : NULL)

void tlm_gg_quant_q4_0(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q4_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK, clip = CLIP_AT(clip, GG_QK)) {
        const float d = signed_absmax(x) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gg_f32_to_f16(d);
        for (int j = 0; j < GG_QK / 2; j++)
            b[i].qs[j] = (uint8_t)(sym_code(x[j], id, 8.5f, 15, CLIP_AT(clip, j)) |
                                   sym_code(x[j + GG_QK / 2], id, 8.5f, 15, CLIP_AT(clip, j + GG_QK / 2)) << 4);
    }
}

void tlm_gg_quant_q5_0(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q5_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK, clip = CLIP_AT(clip, GG_QK)) {
        const float d = signed_absmax(x) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gg_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < GG_QK / 2; j++) {
            uint8_t lo = sym_code(x[j], id, 16.5f, 31, CLIP_AT(clip, j));
            uint8_t hi = sym_code(x[j + GG_QK / 2], id, 16.5f, 31, CLIP_AT(clip, j + GG_QK / 2));
            b[i].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)((lo & 0x10) >> 4) << j | (uint32_t)((hi & 0x10) >> 4) << (j + GG_QK / 2);
        }
        for (int k = 0; k < 4; k++) b[i].qh[k] = (uint8_t)(qh >> (8 * k));
    }
}

void tlm_gg_quant_q4_1(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q4_1 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK, clip = CLIP_AT(clip, GG_QK)) {
        float min, max;
        min_max(x, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gg_f32_to_f16(d);
        b[i].m = gg_f32_to_f16(min);
        for (int j = 0; j < GG_QK / 2; j++) {
            int lo = min_code(x[j], min, id), hi = min_code(x[j + GG_QK / 2], min, id);
            if (clip) clip[j] = lo > 15, clip[j + GG_QK / 2] = hi > 15;
            b[i].qs[j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
        }
    }
}

void tlm_gg_quant_q5_1(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q5_1 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK, clip = CLIP_AT(clip, GG_QK)) {
        float min, max;
        min_max(x, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gg_f32_to_f16(d);
        b[i].m = gg_f32_to_f16(min);
        uint32_t qh = 0;
        for (int j = 0; j < GG_QK / 2; j++) {
            /* no clamp here in ggml: the code is a straight (uint8_t) conversion
             * of a value that cannot pass 31.5, so nothing clips */
            uint8_t lo = (uint8_t)gg_trunc_i32((x[j] - min) * id + 0.5f);
            uint8_t hi = (uint8_t)gg_trunc_i32((x[j + GG_QK / 2] - min) * id + 0.5f);
            if (clip) clip[j] = clip[j + GG_QK / 2] = 0;
            b[i].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            qh |= (uint32_t)((lo & 0x10) >> 4) << j | (uint32_t)((hi & 0x10) >> 4) << (j + GG_QK / 2);
        }
        for (int k = 0; k < 4; k++) b[i].qh[k] = (uint8_t)(qh >> (8 * k));
    }
}

void tlm_gg_quant_q8_0(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q8_0 *b = dst;
    if (clip) memset(clip, 0, (size_t)(nb * GG_QK)); /* |x| * 127 / amax rounds to at most 127: no clamp */
    for (int64_t i = 0; i < nb; i++, x += GG_QK) {
        float amax = 0.0f;
        for (int j = 0; j < GG_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gg_f32_to_f16(d);
        for (int j = 0; j < GG_QK; j++) b[i].qs[j] = (int8_t)gg_trunc_i32(roundf(x[j] * id));
    }
}
