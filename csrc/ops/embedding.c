/* embedding.c: token embedding lookup, times a scale (1, or Gemma's
 * sqrt(D) normalizer, applied in f32 as transformers does), and its
 * scatter-add backward. */
#include "ops/ops.h"

void tlm_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t D, float scale) {
    #pragma omp parallel for schedule(static) if (N * D > 16384)
    for (int64_t n = 0; n < N; n++) {
        const float *src = table + (int64_t)ids[n] * D;
        float *dst = out + n * D;
        for (int64_t d = 0; d < D; d++) dst[d] = scale * src[d]; /* exact for scale 1 */
    }
}

/* Threads split the columns, not the rows: a token repeated in the batch
 * then never has two threads adding to the same row, and the sum order is
 * fixed (rows in order) whatever the thread count. */
void tlm_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t D, float scale) {
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < D; c0 += 64) {
            int64_t c1 = c0 + 64 < D ? c0 + 64 : D;
            for (int64_t n = 0; n < N; n++) {
                float *dst = dtable + (int64_t)ids[n] * D;
                const float *src = dout + n * D;
                for (int64_t c = c0; c < c1; c++) dst[c] += scale * src[c];
            }
        }
    }
}
