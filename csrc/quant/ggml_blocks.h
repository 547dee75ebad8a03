/* ggml_blocks.h: what the codecs of ggml's block types share (not public):
 * the block layouts of ggml-common.h, ggml's scalar conversions and rounding,
 * and the per-type entry points the table in ggml_blocks.c dispatches to.
 *
 * Every codec works on whole blocks: dequantize nb blocks from src into
 * nb * block_elems floats; quantize nb * block_elems floats into nb blocks
 * and, when clip is not NULL, set clip[v] to 1 where value v's code was cut
 * by the type's range clamp (0 elsewhere): fake quantization's gradient mask.
 * Bit-exactness with ggml-quants.c rests on doing each float operation it
 * does, in its order and precision: the core is built with -std=c11, which
 * keeps GCC from contracting a*b+c into an FMA, and no -ffast-math, so
 * vectorised loops round exactly as scalar ones. */
#ifndef TLM_GGML_BLOCKS_H
#define TLM_GGML_BLOCKS_H

#include <stdint.h>
#include <string.h>

#define GG_QK 32   /* values per block of the legacy types (Q4_0 .. Q8_0) */
#define GG_QK_K 256 /* values per super-block of the K types */

/* ggml-common.h's layouts; fp16 fields are raw IEEE binary16 bits. */
typedef struct { uint16_t d; uint8_t qs[GG_QK / 2]; } gg_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[GG_QK / 2]; } gg_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[GG_QK / 2]; } gg_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[GG_QK / 2]; } gg_q5_1;
typedef struct { uint16_t d; int8_t qs[GG_QK]; } gg_q8_0;
typedef struct { uint8_t scales[GG_QK_K / 16]; uint8_t qs[GG_QK_K / 4]; uint16_t d, dmin; } gg_q2_K;
typedef struct { uint8_t hmask[GG_QK_K / 8]; uint8_t qs[GG_QK_K / 4]; uint8_t scales[12]; uint16_t d; } gg_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[GG_QK_K / 2]; } gg_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[GG_QK_K / 8]; uint8_t qs[GG_QK_K / 2]; } gg_q5_K;
typedef struct { uint8_t ql[GG_QK_K / 2]; uint8_t qh[GG_QK_K / 4]; int8_t scales[GG_QK_K / 16]; uint16_t d; } gg_q6_K;
typedef struct { float d; int8_t qs[GG_QK_K]; int16_t bsums[GG_QK_K / 16]; } gg_q8_K;

_Static_assert(sizeof(gg_q4_0) == 18 && sizeof(gg_q4_1) == 20 && sizeof(gg_q5_0) == 22 && sizeof(gg_q5_1) == 24 &&
               sizeof(gg_q8_0) == 34, "legacy block layouts");
_Static_assert(sizeof(gg_q2_K) == 84 && sizeof(gg_q3_K) == 110 && sizeof(gg_q4_K) == 144 && sizeof(gg_q5_K) == 176 &&
               sizeof(gg_q6_K) == 210 && sizeof(gg_q8_K) == 292, "K block layouts");

static inline uint32_t gg_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float gg_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* binary16 -> float, exact. NaNs come out quiet, payload kept, as ggml's
 * conversion (a float multiply) leaves them. Branch-free so loops vectorise. */
static inline float gg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu;
    uint32_t normal = (em << 13) + 0x38000000u;                    /* rebias the exponent, 15 -> 127 */
    uint32_t special = (em << 13) | 0x7f800000u | (em > 0x7c00u ? 0x00400000u : 0u); /* inf, quiet NaN */
    uint32_t sub = gg_bits((float)em * 0x1p-24f);                  /* subnormal (or zero): em units of 2^-24 */
    return gg_float(sign | (em >= 0x7c00u ? special : em >= 0x0400u ? normal : sub));
}

/* float -> binary16, round to nearest even (as numpy's astype(float16) and
 * ggml_compute_fp32_to_fp16); every NaN becomes ggml's quiet NaN 0x7e00
 * with the sign kept (numpy would keep part of the payload). */
static inline uint16_t gg_f32_to_f16(float f) {
    uint32_t x = gg_bits(f), a = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    if (a > 0x7f800000u) return sign | 0x7e00u;
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* from 65520 (half-way past 65504) up: inf */
    if (a >= 0x38800000u) {                      /* a normal half: drop 13 mantissa bits, ties to even */
        uint32_t r = a - 0x38000000u;
        r += 0x0fffu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    if (a < 0x33000000u) return sign;            /* below 2^-25, half the smallest subnormal: zero */
    uint32_t m = (a & 0x007fffffu) | 0x00800000u;
    int shift = 126 - (int)(a >> 23);            /* to units of 2^-24, the half subnormal step: 14..24 */
    uint32_t k = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    k += rem > half || (rem == half && (k & 1u));
    return sign | (uint16_t)k;                   /* k == 0x400 is the smallest normal, as it should be */
}

static inline float gg_bf16_to_f32(uint16_t h) { return gg_float((uint32_t)h << 16); }

/* float -> bfloat16 as ggml_compute_fp32_to_bf16: round to nearest even; a
 * NaN keeps its sign and top payload bits and is made quiet. */
static inline uint16_t gg_f32_to_bf16(float f) {
    uint32_t x = gg_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ggml's nearest_int: add 1.5 * 2^23 so the float adder rounds to an integer
 * (half to even) and read it from the mantissa. ggml only asserts
 * |f| <= 2^22 - 1 in debug builds; a release build returns the same bits for
 * any input (inf or NaN give -2^22 or 0), and so does this. */
static inline int gg_nearest_int(float f) {
    float v = f + 12582912.0f;
    return (int)(gg_bits(v) & 0x007fffffu) - 0x00400000;
}

/* C's float -> integer conversion, with x86's answer where C leaves it
 * undefined (NaN, out of range: INT32_MIN, which (int8_t) or (uint8_t)
 * then wraps to 0), so what ggml's compiled code gives on those inputs is
 * defined here on every vector width. */
static inline int32_t gg_trunc_i32(float f) {
    return f > -2147483904.0f && f < 2147483648.0f ? (int32_t)f : INT32_MIN;
}

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void gg_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ggml_legacy.c */
void tlm_gg_dequant_q4_0(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q4_1(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q5_0(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q5_1(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q8_0(const void *src, int64_t nb, float *dst);
void tlm_gg_quant_q4_0(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q4_1(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q5_0(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q5_1(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q8_0(const float *src, int64_t nb, void *dst, uint8_t *clip);

/* ggml_kquants.c */
void tlm_gg_dequant_q2_K(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q3_K(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q4_K(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q5_K(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q6_K(const void *src, int64_t nb, float *dst);
void tlm_gg_dequant_q8_K(const void *src, int64_t nb, float *dst);
void tlm_gg_quant_q2_K(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q3_K(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q4_K(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q5_K(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q6_K(const float *src, int64_t nb, void *dst, uint8_t *clip);
void tlm_gg_quant_q8_K(const float *src, int64_t nb, void *dst, uint8_t *clip);

#endif
