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

static inline float silu(float x) { return x / (1.0f + tlm_expf(-x)); }

/* s (1 + x (1 - s)), s = sigmoid(x) */
static inline float silu_slope(float x) {
    float s = 1.0f / (1.0f + tlm_expf(-x));
    return s * (1.0f + x * (1.0f - s));
}

static inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_KAPPA * (x * x * x))));
}

/* 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t the tanh above */
static inline float gelu_tanh_slope(float x) {
    float x2 = x * x, t = tanhf(SQRT_2_OVER_PI * (x + GELU_KAPPA * (x2 * x)));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * (SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_KAPPA * x2));
}

static inline float gelu(float x) { return x * 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)); }

/* Phi(x) + x phi(x) */
static inline float gelu_slope(float x) {
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)), pdf = tlm_expf(-0.5f * x * x) * INV_SQRT_2PI;
    return cdf + x * pdf;
}

/* One plain loop per activation and form, so GCC vectorizes silu's (no
 * calls; the gelus call tanhf or erff per element). */
#define ACT_FORWARD(f)                                                                                          \
    do {                                                                                                        \
        if (u) {                                                                                                \
            _Pragma("omp parallel for schedule(static) if (n > 16384)")                                         \
            for (int64_t i = 0; i < n; i++) m[i] = f(g[i]) * u[i];                                              \
        } else {                                                                                                \
            _Pragma("omp parallel for schedule(static) if (n > 16384)")                                         \
            for (int64_t i = 0; i < n; i++) m[i] = f(g[i]);                                                     \
        }                                                                                                       \
    } while (0)

#define ACT_BACKWARD(f, slope)                                                                                  \
    do {                                                                                                        \
        if (u) {                                                                                                \
            _Pragma("omp parallel for schedule(static) if (n > 16384)")                                         \
            for (int64_t i = 0; i < n; i++) {                                                                   \
                du[i] = dm[i] * f(g[i]);                                                                        \
                dg[i] = dm[i] * u[i] * slope(g[i]);                                                             \
            }                                                                                                   \
        } else {                                                                                                \
            _Pragma("omp parallel for schedule(static) if (n > 16384)")                                         \
            for (int64_t i = 0; i < n; i++) dg[i] = dm[i] * slope(g[i]);                                        \
        }                                                                                                       \
    } while (0)

void tlm_act_forward(tlm_act act, float *m, const float *g, const float *u, int64_t n) {
    switch (act) {
    case TLM_ACT_SILU: ACT_FORWARD(silu); break;
    case TLM_ACT_GELU_TANH: ACT_FORWARD(gelu_tanh); break;
    case TLM_ACT_GELU: ACT_FORWARD(gelu); break;
    }
}

void tlm_act_backward(tlm_act act, float *dg, float *du, const float *dm, const float *g, const float *u, int64_t n) {
    switch (act) {
    case TLM_ACT_SILU: ACT_BACKWARD(silu, silu_slope); break;
    case TLM_ACT_GELU_TANH: ACT_BACKWARD(gelu_tanh, gelu_tanh_slope); break;
    case TLM_ACT_GELU: ACT_BACKWARD(gelu, gelu_slope); break;
    }
}
