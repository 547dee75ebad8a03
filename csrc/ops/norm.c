/* norm.c: the row normalisations of the decoders tinylm serves.
 *
 *   RMS    out = (x * rstd) * (w + w_offset)    rstd = 1/sqrt(mean(x^2) + eps)
 *   LAYER  out = ((x - mean) * rstd) * w + b    rstd = 1/sqrt(var(x) + eps), var biased
 *
 * RMS with w_offset 0 is Llama's RMSNorm, which rounds x*rstd before the
 * weight (w * (x * rstd)); with 1 it is Gemma's, x*rstd * (1 + w) with 1 + w
 * in f32. LAYER is torch.nn.functional.layer_norm. Rows of width D; row n
 * takes weight row n % groups (per-head q/k norms: N*H rows of width E,
 * groups H). */
#include "ops/ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Offset of row n's weight (and bias) row. */
static inline int64_t weight_row(const tlm_norm_desc *nd, int64_t n) {
    return nd->groups > 1 ? (n % nd->groups) * nd->ld : 0;
}

void tlm_norm_forward(const tlm_norm_desc *nd, float *out, float *stats, const float *x, const float *w,
                      const float *b, int64_t N, int64_t D) {
    const int layer = nd->kind == TLM_NORM_LAYER;
    const float off = layer ? 0.0f : nd->w_offset;
    #pragma omp parallel for schedule(static) if (N * D > 16384)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * D, *wr = w + weight_row(nd, n);
        float *yr = out + n * D;
        float mean = 0.0f;
        if (layer) {
            float s = 0.0f;
            #pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; d++) s += xr[d];
            mean = s / (float)D;
        }
        /* Two passes for LayerNorm: sum((x - mean)^2) keeps the digits that
         * mean(x^2) - mean^2 would cancel away. */
        float ss = 0.0f;
        #pragma omp simd reduction(+ : ss)
        for (int64_t d = 0; d < D; d++) ss += (xr[d] - mean) * (xr[d] - mean);
        float r = 1.0f / sqrtf(ss / (float)D + nd->eps);
        stats[2 * n] = mean;
        stats[2 * n + 1] = r;
        if (!layer) {
            for (int64_t d = 0; d < D; d++) yr[d] = (xr[d] * r) * (wr[d] + off);
        } else if (b) {
            const float *br = b + weight_row(nd, n);
            for (int64_t d = 0; d < D; d++) yr[d] = ((xr[d] - mean) * r) * wr[d] + br[d];
        } else {
            for (int64_t d = 0; d < D; d++) yr[d] = ((xr[d] - mean) * r) * wr[d];
        }
    }
}

/* Per thread: dw partial sums [groups, D], then db's [groups, D] (LAYER). */
int64_t tlm_norm_scratch_floats(const tlm_norm_desc *nd, int64_t D) {
    return (nd->kind == TLM_NORM_LAYER ? 2 : 1) * nd->groups * D;
}

/* With xh = (x - mean) * r (mean 0 for RMS) and g = dout * (w + offset):
 *   RMS    dx = r * (g - xh * mean(g * xh))
 *   LAYER  dx = r * (g - mean(g) - xh * mean(g * xh))
 * dw += dout * xh, db += dout. The weight sums go to per-thread partials in
 * scratch, reduced in thread order afterwards, so they are the same for a
 * given thread count (and differ across counts by rounding only). */
void tlm_norm_backward(const tlm_norm_desc *nd, float *dx, float beta, float *dw, float *db, const float *dout,
                       const float *x, const float *w, const float *stats, int64_t N, int64_t D, float *scratch) {
    const int layer = nd->kind == TLM_NORM_LAYER;
    const float off = layer ? 0.0f : nd->w_offset;
    const int64_t G = nd->groups, per_thread = tlm_norm_scratch_floats(nd, D);
    const int nthreads = omp_get_max_threads();
    if (!layer) db = NULL;
    if (dw || db) memset(scratch, 0, (size_t)nthreads * (size_t)per_thread * sizeof(float));
    #pragma omp parallel
    {
        float *dw_local = dw || db ? scratch + (int64_t)omp_get_thread_num() * per_thread : NULL;
        float *db_local = db ? dw_local + G * D : NULL;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * D, *gr = dout + n * D, *wr = w + weight_row(nd, n);
            const float mean = stats[2 * n], r = stats[2 * n + 1];
            if (dx) {
                float sum_g = 0.0f, dot = 0.0f;
                #pragma omp simd reduction(+ : sum_g, dot)
                for (int64_t d = 0; d < D; d++) {
                    float g = gr[d] * (wr[d] + off);
                    sum_g += g;
                    dot += g * (xr[d] - mean);
                }
                /* r * xh * mean(g * xh) = r * (x - mean) * c, c = r^2 mean(g (x - mean)) */
                float c = dot * r * r / (float)D, mg = layer ? sum_g / (float)D : 0.0f;
                float *dxr = dx + n * D;
                if (beta == 0.0f)
                    for (int64_t d = 0; d < D; d++) dxr[d] = r * (gr[d] * (wr[d] + off) - mg - (xr[d] - mean) * c);
                else
                    for (int64_t d = 0; d < D; d++)
                        dxr[d] = beta * dxr[d] + r * (gr[d] * (wr[d] + off) - mg - (xr[d] - mean) * c);
            }
            int64_t g0 = (n % G) * D;
            if (dw)
                for (int64_t d = 0; d < D; d++) dw_local[g0 + d] += gr[d] * ((xr[d] - mean) * r);
            if (db_local)
                for (int64_t d = 0; d < D; d++) db_local[g0 + d] += gr[d];
        }
    }
    for (int t = 0; (dw || db) && t < nthreads; t++) {
        const float *part = scratch + (int64_t)t * per_thread;
        for (int64_t g = 0; g < G; g++) {
            int64_t o = G > 1 ? g * nd->ld : 0;
            if (dw)
                for (int64_t d = 0; d < D; d++) dw[o + d] += part[g * D + d];
            if (db)
                for (int64_t d = 0; d < D; d++) db[o + d] += part[G * D + g * D + d];
        }
    }
}
