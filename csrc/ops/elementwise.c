/* elementwise.c: residual add and axpy. */
#include "ops/ops.h"

void tlm_add(float *out, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void tlm_axpy(float *y, float alpha, const float *x, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
