/* intx_fake.c: torchao 0.18's integer fake quantizers, forward and
 * gradient, in its float32 arithmetic (op by op, in torch's order; true
 * division where torch divides, round half to even as torch.round):
 *
 *   int4 asymmetric (QATConfig(Int4WeightOnlyConfig(group_size=g)), its
 *     Int4WeightFakeQuantizer with bf16 activations), per group of g values:
 *       s = max(M - m, 1e-6) / 15, zp = m + 8 s,
 *       w_hat = (clamp(round((w - m) / s), 0, 15) - 8) s + zp
 *     with M, m the group's max and min. torchao computes s and zp under
 *     autograd, so the gradient flows through M and m as well (split evenly
 *     between tied extremes, as torch.amax/amin do).
 *   symmetric intx (IntxFakeQuantizeConfig(int<b>, group_size=g), the weights
 *     of Int8DynamicActivationIntxWeightConfig), per group:
 *       s = max(max(|M|, |m|) / ((qmax - qmin) / 2), FLT_MIN),
 *       w_hat = clamp(round(w * (1 / s)), qmin, qmax) * s
 *     with s detached (choose_qparams_affine runs without grad).
 *   int8 asymmetric per token (the activations of that config), per row:
 *       s = max((max(M, 0) - min(m, 0)) / 255, FLT_MIN),
 *       zp = clamp(-128 - round(min(m, 0) / s), -128, 127),
 *       x_hat = (clamp(round(x * (1 / s)) + zp, -128, 127) - zp) s, s detached.
 *
 * The straight-through gradient of the detached ones is (gy s) (1 / s),
 * zero where the clamp cut the code (torch's clamp passes its bounds). */
#include "quant/quant.h"

#include "core/internal.h"

#include <float.h>
#include <math.h>

/* torch.round on float32: half to even (the current rounding mode). */
static inline float round_even(float x) { return nearbyintf(x); }

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static void min_max(const float *x, int64_t n, float *min, float *max) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *min = lo;
    *max = hi;
}

/* ------------------------------------------------------- int4 asymmetric */

#define INT4_EPS 1e-6f /* torchao's clamp on max - min */

typedef struct {
    float min, max, s, zp;
    int s_live; /* max - min >= eps: the gradient of s reaches max and min */
} int4_group;

static int4_group int4_params(const float *w, int64_t g) {
    int4_group p;
    min_max(w, g, &p.min, &p.max);
    float range = p.max - p.min;
    p.s_live = range >= INT4_EPS;
    p.s = (p.s_live ? range : INT4_EPS) / 15.0f;
    p.zp = p.min + p.s * 8.0f;
    return p;
}

void tlm_fq_int4_forward(const float *w, int64_t rows, int64_t cols, int64_t g, float *w_hat, uint8_t *clip) {
    int64_t groups = rows * cols / g;
    #pragma omp parallel for schedule(static) if (groups > 64)
    for (int64_t k = 0; k < groups; k++) {
        const float *x = w + k * g;
        int4_group p = int4_params(x, g);
        for (int64_t i = 0; i < g; i++) {
            float r = round_even((x[i] - p.min) / p.s);
            if (clip) clip[k * g + i] = r < 0.0f || r > 15.0f;
            w_hat[k * g + i] = (clampf(r, 0.0f, 15.0f) - 8.0f) * p.s + p.zp;
        }
    }
}

/* Reverse mode through s, zp, the STE round and the clamp (see the top):
 *   gw_i = [kept] (gy_i s) / s
 *   gs   = sum gy_i (c_i - 8) + 8 sum gy_i - sum [kept] (gy_i s) (w_i - m) / (s s)
 *   gm   = sum gy_i - sum [kept] (gy_i s) / s - [s live] gs / 15
 *   gM   = [s live] gs / 15,
 * gM and gm shared by the group's tied maxima and minima. */
void tlm_fq_int4_backward(const float *w, const uint8_t *clip, const float *gy, int64_t rows, int64_t cols,
                          int64_t g, float *gw) {
    int64_t groups = rows * cols / g;
    #pragma omp parallel for schedule(static) if (groups > 64)
    for (int64_t k = 0; k < groups; k++) {
        const float *x = w + k * g, *dy = gy + k * g;
        const uint8_t *cut = clip + k * g;
        float *dx = gw + k * g;
        int4_group p = int4_params(x, g);
        float s2 = p.s * p.s, gs = 0.0f, gzp = 0.0f, gsub = 0.0f;
        int64_t n_max = 0, n_min = 0;
        for (int64_t i = 0; i < g; i++) {
            float c = clampf(round_even((x[i] - p.min) / p.s), 0.0f, 15.0f);
            float gu = cut[i] ? 0.0f : dy[i] * p.s;
            gs += dy[i] * (c - 8.0f) - gu * (x[i] - p.min) / s2;
            gzp += dy[i];
            gsub += gu / p.s;
            n_max += x[i] == p.max;
            n_min += x[i] == p.min;
        }
        gs += gzp * 8.0f;
        float g_range = p.s_live ? gs / 15.0f : 0.0f;
        float gmax = g_range, gmin = gzp - gsub - g_range;
        for (int64_t i = 0; i < g; i++) { /* dy is read before dx[i] is written: dx may be dy */
            float d = (cut[i] ? 0.0f : dy[i] * p.s) / p.s;
            if (x[i] == p.max) d += gmax / (float)n_max;
            if (x[i] == p.min) d += gmin / (float)n_min;
            dx[i] = d;
        }
    }
}

/* ------------------------------------------------------ symmetric intx */

static float sym_scale(const float *x, int64_t g, int bits) {
    float min, max;
    min_max(x, g, &min, &max);
    float neg = min < 0.0f ? min : 0.0f, pos = max > 0.0f ? max : 0.0f;
    float amax = -neg > pos ? -neg : pos;
    float half_range = (float)((1 << bits) - 1) / 2.0f; /* (qmax - qmin) / 2 */
    float s = amax / half_range;
    return s > FLT_MIN ? s : FLT_MIN;
}

void tlm_fq_intx_forward(const float *w, int64_t rows, int64_t cols, int64_t g, int bits, float *w_hat,
                         uint8_t *clip) {
    int64_t groups = rows * cols / g;
    float qmin = -(float)(1 << (bits - 1)), qmax = (float)((1 << (bits - 1)) - 1);
    #pragma omp parallel for schedule(static) if (groups > 64)
    for (int64_t k = 0; k < groups; k++) {
        const float *x = w + k * g;
        float s = sym_scale(x, g, bits), inv = 1.0f / s;
        for (int64_t i = 0; i < g; i++) {
            float r = round_even(x[i] * inv);
            if (clip) clip[k * g + i] = r < qmin || r > qmax;
            w_hat[k * g + i] = clampf(r, qmin, qmax) * s;
        }
    }
}

void tlm_fq_intx_backward(const float *w, const uint8_t *clip, const float *gy, int64_t rows, int64_t cols,
                          int64_t g, int bits, float *gw) {
    int64_t groups = rows * cols / g;
    #pragma omp parallel for schedule(static) if (groups > 64)
    for (int64_t k = 0; k < groups; k++) {
        float s = sym_scale(w + k * g, g, bits), inv = 1.0f / s;
        for (int64_t i = k * g; i < (k + 1) * g; i++) gw[i] = clip[i] ? 0.0f : gy[i] * s * inv;
    }
}

/* ------------------------------------------------ int8 per-token activations */

static void token_params(const float *x, int64_t n, float *s_out, float *zp_out) {
    float min, max;
    min_max(x, n, &min, &max);
    float neg = min < 0.0f ? min : 0.0f, pos = max > 0.0f ? max : 0.0f;
    float s = (pos - neg) / 255.0f;
    s = s > FLT_MIN ? s : FLT_MIN;
    *s_out = s;
    *zp_out = clampf(-128.0f - round_even(neg / s), -128.0f, 127.0f);
}

void tlm_fq_act_forward(const float *x, int64_t N, int64_t in, float *x_hat, uint8_t *clip) {
    #pragma omp parallel for schedule(static) if (N * in > 16384)
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * in;
        float s, zp;
        token_params(row, in, &s, &zp);
        float inv = 1.0f / s;
        for (int64_t i = 0; i < in; i++) {
            float q = round_even(row[i] * inv) + zp;
            if (clip) clip[n * in + i] = q < -128.0f || q > 127.0f;
            x_hat[n * in + i] = (clampf(q, -128.0f, 127.0f) - zp) * s;
        }
    }
}

void tlm_fq_act_backward(const float *x, const uint8_t *clip, const float *gy, int64_t N, int64_t in, float *gx,
                         float beta) {
    #pragma omp parallel for schedule(static) if (N * in > 16384)
    for (int64_t n = 0; n < N; n++) {
        float s, zp;
        token_params(x + n * in, in, &s, &zp);
        float inv = 1.0f / s;
        for (int64_t i = n * in; i < (n + 1) * in; i++) {
            float d = clip[i] ? 0.0f : gy[i] * s * inv;
            gx[i] = beta == 0.0f ? d : beta * gx[i] + d;
        }
    }
}
