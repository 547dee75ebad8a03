/* elementwise.c: residual add, axpy and SwiGLU. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <math.h>

void tlm_add(float *out, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void tlm_axpy(float *y, float alpha, const float *x, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* silu(g) = g * sigmoid(g), written g / (1 + exp(-g)) as PyTorch computes it.
 * (tlm_expf clamps: for g < -88 the gate is ~1e-38 instead of ~0.) */
void tlm_swiglu_forward(float *m, const float *g, const float *u, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) m[i] = g[i] / (1.0f + tlm_expf(-g[i])) * u[i];
}

/* d silu(g)/dg = s * (1 + g * (1 - s)), s = sigmoid(g). */
void tlm_swiglu_backward(float *dg, float *du, const float *dm, const float *g, const float *u, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + tlm_expf(-g[i]));
        float silu = g[i] * s;
        du[i] = dm[i] * silu;
        dg[i] = dm[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
