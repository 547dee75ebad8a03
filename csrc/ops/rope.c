/* rope.c: rotary position embedding in Hugging Face's rotate-half layout:
 * element i of a head pairs with element i + E/2, both rotated by angle
 * pos * inv_freq[i]. */
#include "ops/ops.h"
#include "tlm.h"

#include <math.h>

/* As transformers computes it, in f32: inv_freq[i] = 1 / theta^(2i/E), then
 * the rope_type's rescaling. llama3 divides low frequencies by `factor`,
 * keeps high ones, and blends the band between. */
void tlm_rope_inv_freq(float *inv_freq, int64_t E, float theta, int rope_type, float factor, float low_freq_factor,
                       float high_freq_factor, int64_t original_max_position) {
    for (int64_t i = 0; i < E / 2; i++) {
        float exponent = (float)(2 * i) / (float)E;
        inv_freq[i] = 1.0f / powf(theta, exponent);
    }
    if (rope_type == TLM_ROPE_LINEAR) {
        for (int64_t i = 0; i < E / 2; i++) inv_freq[i] /= factor;
    } else if (rope_type == TLM_ROPE_LLAMA3) {
        float old_len = (float)original_max_position;
        float low_wavelen = old_len / low_freq_factor, high_wavelen = old_len / high_freq_factor;
        for (int64_t i = 0; i < E / 2; i++) {
            float f = inv_freq[i];
            float wavelen = 2.0f * (float)M_PI / f;
            float scaled = wavelen > low_wavelen ? f / factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
    }
}

void tlm_rope_tables(float *cos_t, float *sin_t, const int32_t *pos, const float *inv_freq, int64_t N, int64_t E) {
    int64_t half = E / 2;
    #pragma omp parallel for schedule(static) if (N * half > 16384)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < half; i++) {
            float angle = (float)pos[n] * inv_freq[i];
            cos_t[n * half + i] = cosf(angle);
            sin_t[n * half + i] = sinf(angle);
        }
}

void tlm_rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E) {
    int64_t half = E / 2;
    #pragma omp parallel for schedule(static) if (N * nh * E > 16384)
    for (int64_t n = 0; n < N; n++) {
        const float *c = cos_t + n * half, *s = sin_t + n * half;
        for (int64_t h = 0; h < nh; h++) {
            float *a = x + (n * nh + h) * E, *b = a + half;
            for (int64_t i = 0; i < half; i++) {
                float x1 = a[i], x2 = b[i];
                a[i] = x1 * c[i] - x2 * s[i];
                b[i] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

/* The transpose of the rotation: rotate by -angle. */
void tlm_rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E) {
    int64_t half = E / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *c = cos_t + n * half, *s = sin_t + n * half;
        for (int64_t h = 0; h < nh; h++) {
            float *a = dx + (n * nh + h) * E, *b = a + half;
            for (int64_t i = 0; i < half; i++) {
                float g1 = a[i], g2 = b[i];
                a[i] = g1 * c[i] + g2 * s[i];
                b[i] = g2 * c[i] - g1 * s[i];
            }
        }
    }
}
