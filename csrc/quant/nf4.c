/* nf4.c: 4-bit NormalFloat as bitsandbytes stores it: blocks of 64 over the
 * flattened weight, each scaled by its absmax into [-1, 1] and mapped to the
 * nearest of 16 codes (a value exactly between two codes takes the lower),
 * two codes a byte with the even element in the high nibble. */
#include "quant/quant.h"

#include <math.h>

const float TLM_NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

/* Number of midpoints strictly below v: the code index (ties go low). */
static inline uint8_t nf4_index(float v, const float *mid) {
    uint8_t q = 0;
    while (q < 15 && mid[q] < v) q++;
    return q;
}

static inline float clamp1(float v) { return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v; }

void tlm_nf4_quantize(const float *x, int64_t n, uint8_t *packed, float *absmax) {
    float mid[15];
    for (int i = 0; i < 15; i++) mid[i] = (TLM_NF4_CODE[i] + TLM_NF4_CODE[i + 1]) / 2.0f;
    int64_t blocks = (n + TLM_NF4_BLOCK - 1) / TLM_NF4_BLOCK, full = n / TLM_NF4_BLOCK;
    #pragma omp parallel for schedule(static) if (blocks > 256)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t i0 = b * TLM_NF4_BLOCK, i1 = i0 + TLM_NF4_BLOCK < n ? i0 + TLM_NF4_BLOCK : n;
        float am = 0.0f;
        for (int64_t i = i0; i < i1; i++) am = fmaxf(am, fabsf(x[i]));
        am = b < full ? am : fmaxf(am, 1e-38f); /* bitsandbytes stores the tail's absmax clamped */
        absmax[b] = am;
        am = fmaxf(am, 1e-38f);
        /* bitsandbytes multiplies full blocks by the reciprocal but divides the
         * last partial block; the rounding differs, so do the same. */
        float inv = 1.0f / am;
        for (int64_t i = i0; i < i1; i += 2) {
            float v0 = b < full ? x[i] * inv : x[i] / am;
            float v1 = i + 1 < i1 ? (b < full ? x[i + 1] * inv : x[i + 1] / am) : 0.0f;
            packed[i / 2] = (uint8_t)(nf4_index(clamp1(v0), mid) << 4 | nf4_index(clamp1(v1), mid));
        }
    }
}

void tlm_nf4_dequantize(const uint8_t *packed, const float *absmax, int64_t i0, int64_t i1, float *out) {
    #pragma omp parallel for schedule(static) if (i1 - i0 > 65536)
    for (int64_t i = i0; i < i1; i++) {
        uint8_t byte = packed[i >> 1];
        out[i - i0] = TLM_NF4_CODE[(i & 1) ? byte & 15 : byte >> 4] * absmax[i / TLM_NF4_BLOCK];
    }
}
