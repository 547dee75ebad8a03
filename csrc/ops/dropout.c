/* dropout.c: inverted dropout with a counter-based mask.
 *
 * Element i of call `key` is kept iff hash(seed, key, i) >= p, so backward
 * regenerates the forward's mask instead of storing it, and a resumed run
 * reproduces the masks of an uninterrupted one from (seed, key) alone. */
#include "ops/ops.h"

/* splitmix64's finaliser: a good 64-bit mix of a counter. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline int keep(uint64_t base, int64_t i, uint64_t threshold) {
    return mix64(base + (uint64_t)i * 0x9e3779b97f4a7c15ULL) >= threshold;
}

static uint64_t threshold_of(float p) { return (uint64_t)((double)p * 18446744073709551616.0); }

void tlm_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t key) {
    uint64_t base = mix64(seed ^ mix64(key)), threshold = threshold_of(p);
    float inv = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) out[i] = keep(base, i, threshold) ? x[i] * inv : 0.0f;
}

void tlm_dropout_backward_add(float *dx, const float *dout, int64_t n, float p, uint64_t seed, uint64_t key) {
    uint64_t base = mix64(seed ^ mix64(key)), threshold = threshold_of(p);
    float inv = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++)
        if (keep(base, i, threshold)) dx[i] += dout[i] * inv;
}
