/* softcap.c: Gemma 2's soft-capping, y = cap * tanh(x / cap): a smooth
 * clamp of attention scores and final logits to (-cap, cap). Written as
 * transformers computes it (divide, tanh, multiply). */
#include "ops/ops.h"

#include <math.h>

void tlm_softcap_forward(float *x, int64_t n, float cap) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

/* d/dx = 1 - tanh^2, and tanh = y / cap: the capped values are enough. */
void tlm_softcap_backward(float *dx, const float *y, int64_t n, float cap) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float t = y[i] / cap;
        dx[i] *= 1.0f - t * t;
    }
}
