/* fastexp.h: an expf the compiler can vectorize (no calls, no branches): the
 * loops that exponentiate every logit or gate call it millions of times per
 * step, and glibc's expf runs one value at a time.
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in
 * two parts so r is exact), exp(r) by a degree-6 polynomial on |r| <= ln2/2
 * (Cephes' coefficients; about 1 ulp). Inputs are clamped to the range
 * where the result is a normal float; NaN stays NaN. Written without
 * branches or calls (and built with -fno-trapping-math) so GCC vectorizes
 * the loops that use it. */
#ifndef TLM_FASTEXP_H
#define TLM_FASTEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float tlm_expf(float x) {
    const float hi = 88.0f, lo = -87.3365447504f; /* 2^n stays a normal float */
    float nan_mask = x == x ? 1.0f : 0.0f;      /* 0 for NaN */
    float v = x == x ? x : 0.0f;
    v = v > hi ? hi : v;
    v = v < lo ? lo : v;
    float fx = v * 1.44269504088896341f + 0.5f;
    int32_t ni = (int32_t)(fx + 127.0f) - 127;  /* fx > -127 after the clamp: truncation is floor */
    float n = (float)ni;
    float r = v - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    uint32_t bits = (uint32_t)(ni + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float out = y * scale;
    return nan_mask == 1.0f ? out : x;
}

/* log sum_j exp(x[j]) over a row of n logits, stably (the row's maximum
 * taken out), summed in double: the CE and distillation heads' per-row
 * normaliser. */
static inline double tlm_row_logsumexp(const float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) sum += tlm_expf(x[j] - mx);
    return (double)mx + log(sum);
}

#endif
