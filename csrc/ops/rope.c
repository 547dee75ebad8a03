/* rope.c: rotary position embedding in Hugging Face's rotate-half layout
 * over the first R (rotary_dim) elements of each head of width E: element
 * i < R/2 pairs with element i + R/2, both rotated by angle
 * pos * inv_freq[i]; elements R..E-1 pass through (partial rotary: Phi,
 * StableLM). */
#include "ops/ops.h"
#include "tlm.h"

#include <math.h>

/* As transformers computes it, in f32 (modeling_rope_utils.py):
 *   default   inv_freq[i] = 1 / theta^(2i/R)
 *   linear    the default / factor
 *   llama3    low frequencies / factor, high ones kept, the band between blended
 *   longrope  1 / (ext[i] * theta^(2i/R)), ext the long or the short factors
 * theta^(2i/R) is `base ** (arange(0, R, 2).float() / R)`: the exponent
 * rounded to f32 first. */
void tlm_rope_inv_freq(float *inv_freq, int64_t R, const tlm_rope *rope, int use_long) {
    const float *ext = rope->type != TLM_ROPE_LONGROPE ? NULL : use_long ? rope->long_factor : rope->short_factor;
    for (int64_t i = 0; i < R / 2; i++) {
        float exponent = (float)(2 * i) / (float)R;
        float p = powf(rope->theta, exponent);
        inv_freq[i] = ext ? 1.0f / (ext[i] * p) : 1.0f / p;
    }
    if (rope->type == TLM_ROPE_LINEAR) {
        for (int64_t i = 0; i < R / 2; i++) inv_freq[i] /= rope->factor;
    } else if (rope->type == TLM_ROPE_LLAMA3) {
        float factor = rope->factor, low = rope->low_freq_factor, high = rope->high_freq_factor;
        float old_len = (float)rope->original_max_position;
        float low_wavelen = old_len / low, high_wavelen = old_len / high;
        for (int64_t i = 0; i < R / 2; i++) {
            float f = inv_freq[i];
            float wavelen = 2.0f * (float)M_PI / f;
            float scaled = wavelen > low_wavelen ? f / factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_len / wavelen - low) / (high - low);
                scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
    }
}

/* cos = cos(pos * inv_freq) * attention_scaling, sin likewise (transformers:
 * emb.cos() * attention_scaling; a scaling of 1 leaves them exact). */
void tlm_rope_tables(float *cos_t, float *sin_t, const int32_t *pos, const float *inv_freq, int64_t N, int64_t R,
                     float attention_scaling) {
    int64_t half = R / 2;
    #pragma omp parallel for schedule(static) if (N * half > 16384)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < half; i++) {
            float angle = (float)pos[n] * inv_freq[i];
            cos_t[n * half + i] = cosf(angle) * attention_scaling;
            sin_t[n * half + i] = sinf(angle) * attention_scaling;
        }
}

/* x [N, nh, E]: x1' = x1 c - x2 s, x2' = x2 c + x1 s (x * cos + rotate_half(x) * sin). */
void tlm_rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E, int64_t R) {
    int64_t half = R / 2;
    #pragma omp parallel for schedule(static) if (N * nh * R > 16384)
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

/* The transpose of the forward's linear map: g1' = g1 c + g2 s,
 * g2' = g2 c - g1 s (a rotation by -angle when attention_scaling is 1);
 * the pass-through elements' gradient is itself. */
void tlm_rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E,
                       int64_t R) {
    int64_t half = R / 2;
    #pragma omp parallel for schedule(static) if (N * nh * R > 16384)
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
