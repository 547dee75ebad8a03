/* kd_full.c: a row's divergence over the whole vocabulary, and the
 * log-softmax normaliser every KD path starts from.
 *
 * Passes over the row's V entries, none storing anything: each side's
 * normaliser (its max, then its sum of exponentials), the loss with
 * C = sum_j h_j, then the gradient as kd_row.h derives it,
 * dL/da_j = h_j - q_j C. The last pass recomputes h_j rather than keep
 * [V] floats of it: it reads s_j before it writes ds_j, so ds may be s. */
#include "objectives/kd_row.h"

kd_norm kd_normaliser(const float *x, int64_t V, float T) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    /* Division is monotone, so max(x / T) is max(x) / T exactly. */
    kd_norm n = {mx / T, 0.0};
    double sum = 0.0; /* a wide vocabulary's sum in f32 would lose digits */
    #pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) sum += tlm_expf(x[j] / T - n.max);
    n.sum = sum;
    return n;
}

/* The row for one kind, a constant once inlined (kd_term). */
static inline __attribute__((always_inline)) double full_row(const kd_div *d, tlm_kd_loss kind, float T,
                                                             const float *s, const float *t, int64_t V, float *ds,
                                                             float g) {
    const kd_div dv = *d; /* a local copy: loads through d, which ds might alias, block vectorizing */
    kd_norm ns = kd_normaliser(s, V, T), nt = kd_normaliser(t, V, T);
    const float lse_q = (float)((double)ns.max + log(ns.sum)), lse_p = (float)((double)nt.max + log(nt.sum));
    double loss = 0.0, c = 0.0;
    #pragma omp simd reduction(+ : loss, c)
    for (int64_t j = 0; j < V; j++) {
        float h;
        loss += kd_term(&dv, kind, t[j] / T - lse_p, s[j] / T - lse_q, &h);
        c += h;
    }
    if (ds) {
        const float cf = (float)c;
        #pragma omp simd
        for (int64_t j = 0; j < V; j++) {
            float h, logq = s[j] / T - lse_q;
            kd_term(&dv, kind, t[j] / T - lse_p, logq, &h);
            ds[j] = g * (h - kd_prob(logq) * cf);
        }
    }
    return loss;
}

double kd_full_row(const kd_div *d, float T, const float *s, const float *t, int64_t V, float *ds, float g) {
    switch (d->loss) {
    case TLM_KD_FORWARD_KL: return full_row(d, TLM_KD_FORWARD_KL, T, s, t, V, ds, g);
    case TLM_KD_REVERSE_KL: return full_row(d, TLM_KD_REVERSE_KL, T, s, t, V, ds, g);
    default: return full_row(d, TLM_KD_JSD, T, s, t, V, ds, g);
    }
}
