/* activation.c: the MLP's activation, gated (m = act(g) * u: SwiGLU,
 * GeGLU) or plain (m = act(g): Phi-2's fc1 -> gelu).
 *
 * Each function is written as PyTorch's CPU kernel computes it, so the
 * differences are those of exp/tanh/erf implementations:
 *   silu       g / (1 + exp(-g))
 *   gelu_tanh  0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))   torch gelu(approximate='tanh')
 *   gelu       0.5 g (1 + erf(g / sqrt(2)))                       torch gelu, exact
 * (tlm_expf clamps: for g < -88 silu's gate is ~1e-38 instead of ~0.) */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <math.h>

#define SQRT_2_OVER_PI 0.7978845608028654f   /* M_SQRT2 * M_2_SQRTPI * 0.5 */
#define GELU_KAPPA 0.044715f
#define INV_SQRT_2PI 0.3989422804014327f     /* M_2_SQRTPI * M_SQRT1_2 * 0.5 */

static inline float act_value(tlm_act act, float x) {
    switch (act) {
    case TLM_ACT_SILU: return x / (1.0f + tlm_expf(-x));
    case TLM_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_KAPPA * (x * x * x))));
    default: return x * 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    }
}

/* d act / dx:
 *   silu       s (1 + x (1 - s)),  s = sigmoid(x)
 *   gelu_tanh  0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t the tanh above
 *   gelu       Phi(x) + x phi(x) */
static inline float act_slope(tlm_act act, float x) {
    switch (act) {
    case TLM_ACT_SILU: {
        float s = 1.0f / (1.0f + tlm_expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case TLM_ACT_GELU_TANH: {
        float x2 = x * x, t = tanhf(SQRT_2_OVER_PI * (x + GELU_KAPPA * (x2 * x)));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * (SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_KAPPA * x2));
    }
    default: {
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)), pdf = tlm_expf(-0.5f * x * x) * INV_SQRT_2PI;
        return cdf + x * pdf;
    }
    }
}

/* The switch and the u test are loop-invariant: GCC unswitches them, and
 * silu's loop (no calls) vectorizes. */
void tlm_act_forward(tlm_act act, float *m, const float *g, const float *u, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) m[i] = act_value(act, g[i]) * (u ? u[i] : 1.0f);
}

void tlm_act_backward(tlm_act act, float *dg, float *du, const float *dm, const float *g, const float *u, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        if (u) du[i] = dm[i] * act_value(act, g[i]);
        dg[i] = dm[i] * (u ? u[i] : 1.0f) * act_slope(act, g[i]);
    }
}
