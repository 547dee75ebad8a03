/* ggml_kquants.c: ggml's K block types, super-blocks of 256 values whose
 * sub-block scales (and mins) are themselves quantized under one or two fp16
 * super-scales. Quantization is quantize_row_*_ref of ggml-quants.c, whose
 * searches for the best scale compare float sums: each sum and product below
 * is the one ggml forms, in its order (see ggml_blocks.h), or a code moves.
 *
 * Layouts (value v of a super-block, h = v / 128, r = v % 128):
 *   Q2_K / Q3_K: 2 low bits at qs[32h + v%32] >> 2(r/32); Q3_K's third bit
 *     is hmask[v%32] bit 4h + r/32 (set: no offset; clear: minus 4).
 *     Scales per 16 values: Q2_K one byte each, scale low nibble, min high;
 *     Q3_K 6 bits each (low nibbles in bytes 0..7, top two bits in 8..11).
 *   Q4_K / Q5_K: per 64 values c = v / 64, the low nibble of qs[32c + v%32]
 *     for the first 32, the high one for the next; Q5_K's fifth bit is
 *     qh[v%32] bit 2c (first 32) or 2c+1. 6-bit scale and min per 32 values
 *     (gg_scale_min_k4).
 *   Q6_K: per 32 values q = r / 32, 4 low bits in the low (q even) or high
 *     nibble of ql[64h + 32(q%2) + v%32], 2 high bits at qh[32h + v%32]
 *     >> 2q; an int8 scale per 16 values. */
#include "quant/ggml_blocks.h"

#include <math.h>

#define GROUP_MAX_EPS 1e-15f /* ggml's "this group is all zero" threshold */

static inline int clamp_i(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The final codes of a K type, against the scales as stored: v clamped to
 * [lo, hi], and (clip not NULL) whether the clamp cut it, which fake
 * quantization turns into a zero gradient. A sub-block whose stored scale is
 * 0 keeps its search codes and clips nothing. */
static inline int clamp_code(int v, int lo, int hi, uint8_t *clip, int j) {
    if (clip) clip[j] = v < lo || v > hi;
    return clamp_i(v, lo, hi);
}

/* Where a super-block's clip flags go; NULL stays NULL. */
static inline uint8_t *clip_block(uint8_t *clip, int64_t i) {
    if (!clip) return NULL;
    memset(clip + i * GG_QK_K, 0, GG_QK_K);
    return clip + i * GG_QK_K;
}

/* ------------------------------------------------------------ dequantize */

void tlm_gg_dequant_q2_K(const void *src, int64_t nb, float *dst) {
    const gg_q2_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K) {
        const float d = gg_f16_to_f32(b[i].d), dmin = gg_f16_to_f32(b[i].dmin);
        for (int s = 0; s < GG_QK_K / 16; s++) {
            const float dl = d * (float)(b[i].scales[s] & 0x0f), ml = dmin * (float)(b[i].scales[s] >> 4);
            const uint8_t *q = b[i].qs + 32 * (s / 8) + 16 * (s % 2);
            const int shift = 2 * ((s % 8) / 2);
            for (int l = 0; l < 16; l++) dst[16 * s + l] = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

/* The 6-bit scale of sub-block j (0..15) of a Q3_K block, minus its offset 32. */
static inline int q3_scale(const uint8_t *sc, int j) {
    int low = j < 8 ? sc[j] & 0x0f : sc[j - 8] >> 4;
    int high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | high << 4) - 32;
}

void tlm_gg_dequant_q3_K(const void *src, int64_t nb, float *dst) {
    const gg_q3_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K) {
        const float d = gg_f16_to_f32(b[i].d);
        for (int s = 0; s < GG_QK_K / 16; s++) {
            const float dl = d * (float)q3_scale(b[i].scales, s);
            const int h = s / 8, part = (s % 8) / 2, half = 16 * (s % 2);
            const uint8_t *q = b[i].qs + 32 * h + half, *hm = b[i].hmask + half;
            const uint8_t bit = (uint8_t)(1u << (4 * h + part));
            for (int l = 0; l < 16; l++)
                dst[16 * s + l] = dl * (float)(((q[l] >> (2 * part)) & 3) - ((hm[l] & bit) ? 0 : 4));
        }
    }
}

void tlm_gg_dequant_q4_K(const void *src, int64_t nb, float *dst) {
    const gg_q4_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K) {
        const float d = gg_f16_to_f32(b[i].d), dmin = gg_f16_to_f32(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t sc, m;
            gg_scale_min_k4(2 * c, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            gg_scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t *q = b[i].qs + 32 * c;
            float *y = dst + 64 * c;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void tlm_gg_dequant_q5_K(const void *src, int64_t nb, float *dst) {
    const gg_q5_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K) {
        const float d = gg_f16_to_f32(b[i].d), dmin = gg_f16_to_f32(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t sc, m;
            gg_scale_min_k4(2 * c, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            gg_scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t *q = b[i].qs + 32 * c, *qh = b[i].qh;
            float *y = dst + 64 * c;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)((q[l] & 0x0f) | ((qh[l] >> (2 * c)) & 1) << 4) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)((q[l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4) - m2;
        }
    }
}

void tlm_gg_dequant_q6_K(const void *src, int64_t nb, float *dst) {
    const gg_q6_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K) {
        const float d = gg_f16_to_f32(b[i].d);
        for (int s = 0; s < GG_QK_K / 16; s++) {
            const int h = s / 8, part = (s % 8) / 2, half = 16 * (s % 2);
            const uint8_t *ql = b[i].ql + 64 * h + 32 * (part & 1) + half, *qh = b[i].qh + 32 * h + half;
            const int lshift = 4 * (part >> 1), hshift = 2 * part;
            const float ds = d * (float)b[i].scales[s]; /* (d * scale) * q, ggml's order */
            for (int l = 0; l < 16; l++)
                dst[16 * s + l] = ds * (float)((((ql[l] >> lshift) & 0x0f) | ((qh[l] >> hshift) & 3) << 4) - 32);
        }
    }
}

void tlm_gg_dequant_q8_K(const void *src, int64_t nb, float *dst) {
    const gg_q8_K *b = src;
    for (int64_t i = 0; i < nb; i++, dst += GG_QK_K)
        for (int j = 0; j < GG_QK_K; j++) dst[j] = b[i].d * (float)b[i].qs[j];
}

/* --------------------------------------------------- scale searches (ggml) */

/* make_qkx2_quants: codes L in [0, nmax] and a (scale, min) pair for
 * x ~ scale * L - the_min, minimising the weighted squared (or, use_mad,
 * absolute) error over nstep + 1 trial scales (rmin + rdelta * is + nmax)
 * / (max - min) with a least-squares fit of scale and min at each. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_i(gg_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_i(gg_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* The value of largest magnitude with its sign (first of equals). */
static float signed_absmax(int n, const float *x, float *amax_out) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    *amax_out = amax;
    return max;
}

/* make_qx_quants with rmse_type 1 and no importance (Q6_K): codes L in
 * [0, 2 nmax) for x ~ scale * (L - nmax), weights x^2, trying 19 scales
 * -(nmax + 0.1 is) / max. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float amax, max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_i(gg_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_i(gg_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clamp_i(gg_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* make_q3_quants with do_rmse (Q3_K): codes L in [0, 2 nmax), starting from
 * -nmax / max and then moving single codes while the weighted fit improves
 * (at most 5 passes). */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax, max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_i(gg_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = clamp_i(gg_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* 2-bit codes of 4 runs of 32 values per 128, as Q2_K and Q3_K store them. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < GG_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* -------------------------------------------------------------- quantize */

void tlm_gg_quant_q2_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q2_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t *cl = clip_block(clip, i);
        uint8_t L[GG_QK_K], Laux[16];
        float w[16], mins[GG_QK_K / 16], scales[GG_QK_K / 16], max_scale = 0, max_min = 0;
        for (int j = 0; j < GG_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = 15.0f / max_scale;
            for (int j = 0; j < GG_QK_K / 16; j++) b[i].scales[j] = (uint8_t)gg_nearest_int(iscale * scales[j]);
            b[i].d = gg_f32_to_f16(max_scale / 15.0f);
        } else {
            for (int j = 0; j < GG_QK_K / 16; j++) b[i].scales[j] = 0;
            b[i].d = gg_f32_to_f16(0.0f);
        }
        if (max_min > 0) {
            float iscale = 15.0f / max_min;
            for (int j = 0; j < GG_QK_K / 16; j++)
                b[i].scales[j] |= (uint8_t)((unsigned)gg_nearest_int(iscale * mins[j]) << 4);
            b[i].dmin = gg_f32_to_f16(max_min / 15.0f);
        } else {
            b[i].dmin = gg_f32_to_f16(0.0f);
        }
        for (int j = 0; j < GG_QK_K / 16; j++) {
            const float d = gg_f16_to_f32(b[i].d) * (float)(b[i].scales[j] & 0x0f);
            if (d == 0) continue; /* keeps the codes of the search */
            const float dm = gg_f16_to_f32(b[i].dmin) * (float)(b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clamp_code(gg_nearest_int((x[16 * j + l] + dm) / d), 0, 3, cl, 16 * j + l);
        }
        pack_2bit(L, b[i].qs);
    }
}

void tlm_gg_quant_q3_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q3_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t *cl = clip_block(clip, i);
        int8_t L[GG_QK_K];
        float scales[GG_QK_K / 16], max_scale = 0, amax = 0;
        for (int j = 0; j < GG_QK_K / 16; j++) {
            scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(b[i].scales, 0, sizeof b[i].scales);
        if (max_scale != 0) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < GG_QK_K / 16; j++) {
                int8_t l = (int8_t)gg_nearest_int(iscale * scales[j]);
                l = (int8_t)(clamp_i(l, -32, 31) + 32);
                if (j < 8)
                    b[i].scales[j] = (uint8_t)(l & 0x0f);
                else
                    b[i].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                b[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            b[i].d = gg_f32_to_f16(1 / iscale);
        } else {
            b[i].d = gg_f32_to_f16(0.0f);
        }
        for (int j = 0; j < GG_QK_K / 16; j++) {
            const float d = gg_f16_to_f32(b[i].d) * (float)q3_scale(b[i].scales, j);
            if (d == 0) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clamp_code(gg_nearest_int(x[16 * j + l] / d), -4, 3, cl, 16 * j + l) + 4);
        }
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        uint8_t low[GG_QK_K];
        for (int j = 0; j < GG_QK_K; j++) {
            int l = L[j];
            if (l > 3) {
                b[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                l -= 4;
            }
            low[j] = (uint8_t)l;
        }
        pack_2bit(low, b[i].qs);
    }
}

/* The scale search of Q4_K and Q5_K per 32 values (weights: the block's
 * rms plus |x|), then 6-bit scales and mins under fp16 d and dmin, then the
 * codes again against the scales as stored. */
static void quant_k_scale_min(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                              uint8_t packed[12], uint8_t L[GG_QK_K], uint8_t *clip) {
    uint8_t Laux[32];
    float w[32], mins[GG_QK_K / 32], scales[GG_QK_K / 32], max_scale = 0, max_min = 0;
    for (int j = 0; j < GG_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < GG_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)gg_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)gg_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0x0f) | (lm & 0x0f) << 4);
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = gg_f32_to_f16(max_scale / 63.0f);
    *dmin_out = gg_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < GG_QK_K / 32; j++) {
        uint8_t sc, m;
        gg_scale_min_k4(j, packed, &sc, &m);
        const float d = gg_f16_to_f32(*d_out) * (float)sc;
        if (d == 0) continue;
        const float dm = gg_f16_to_f32(*dmin_out) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clamp_code(gg_nearest_int((x[32 * j + l] + dm) / d), 0, nmax, clip, 32 * j + l);
    }
}

void tlm_gg_quant_q4_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q4_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t L[GG_QK_K];
        quant_k_scale_min(x, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, L, clip_block(clip, i));
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void tlm_gg_quant_q5_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q5_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t L[GG_QK_K];
        quant_k_scale_min(x, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L, clip_block(clip, i));
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
                b[i].qs[32 * c + l] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            }
    }
}

void tlm_gg_quant_q6_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q6_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t *cl = clip_block(clip, i);
        int8_t L[GG_QK_K];
        float scales[GG_QK_K / 16], max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < GG_QK_K / 16; j++) {
            scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        b[i].d = gg_f32_to_f16(1 / iscale);
        for (int j = 0; j < GG_QK_K / 16; j++) {
            int s = gg_nearest_int(iscale * scales[j]);
            b[i].scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < GG_QK_K / 16; j++) {
            const float d = gg_f16_to_f32(b[i].d) * (float)b[i].scales[j];
            if (d == 0) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clamp_code(gg_nearest_int(x[16 * j + l] / d), -32, 31, cl, 16 * j + l) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | (Lh[l + 64] & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | (Lh[l + 96] & 0x0f) << 4);
                qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                                  (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}

void tlm_gg_quant_q8_K(const float *x, int64_t nb, void *dst, uint8_t *clip) {
    gg_q8_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += GG_QK_K) {
        uint8_t *cl = clip_block(clip, i);
        float amax, max = signed_absmax(GG_QK_K, x, &amax);
        if (amax == 0) { /* ggml leaves bsums unwritten here; they are the sums of zeros */
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < GG_QK_K; j++) {
            int v = gg_nearest_int(iscale * x[j]); /* ggml caps only the top */
            if (cl) cl[j] = v > 127;
            b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < GG_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}
