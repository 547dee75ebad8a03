/* int8.c: per-output-channel (row) absmax int8, as bitsandbytes'
 * int8_vectorwise_quant: q = round(x * (127 / absmax_row)), half to even. */
#include "quant/quant.h"

#include <math.h>

void tlm_int8_rows_quantize(const float *x, int64_t rows, int64_t cols, int8_t *q, float *absmax) {
    #pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float am = 0.0f;
        for (int64_t c = 0; c < cols; c++) am = fmaxf(am, fabsf(xr[c]));
        absmax[r] = am;
        float s = am > 0.0f ? 127.0f / am : 0.0f; /* an all-zero row stays zero */
        for (int64_t c = 0; c < cols; c++) q[r * cols + c] = (int8_t)nearbyintf(xr[c] * s);
    }
}

void tlm_int8_rows_dequantize(const int8_t *q, const float *absmax, int64_t r0, int64_t r1, int64_t cols,
                              float *out) {
    #pragma omp parallel for schedule(static) if ((r1 - r0) * cols > 65536)
    for (int64_t r = r0; r < r1; r++) {
        float s = absmax[r] / 127.0f;
        for (int64_t c = 0; c < cols; c++) out[(r - r0) * cols + c] = (float)q[r * cols + c] * s;
    }
}
