/* attention.c: causal grouped-query attention with a key padding mask,
 * optional soft-capping of the scores (Gemma 2) and an optional sliding
 * window.
 *
 * Each (batch, query head) is one task. Queries are processed in blocks of
 * QB rows; a block only looks at keys k0..(last row of the block), so the
 * upper triangle is never computed, and with a window W neither is anything
 * left of the window of the block's first row (k0 = i0 - W + 1). Forward
 * keeps the log-sum-exp of every row; backward recomputes the probabilities
 * from it, so the [T,T] matrix is never stored between the passes (as in
 * FlashAttention).
 *
 * The window is transformers' (masking_utils.sliding_window_overlay):
 * query i sees key j iff i - W < j <= i, its W most recent positions
 * itself included. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QB 128 /* query rows per block */

int64_t tlm_attention_scratch_floats(int64_t T) { return 2 * QB * T; }

/* First key query i may see (0 without a window). */
static inline int64_t first_key(const tlm_attn_desc *ad, int64_t i) {
    return ad->window > 0 && i - ad->window + 1 > 0 ? i - ad->window + 1 : 0;
}

/* S [rows, ld = i1 - k0] = scores of queries i0..i1-1 against keys k0..i1-1:
 * scale * Q K^T, then cap * tanh(s / cap) where a row may attend (the rest
 * of the row is never read). */
static void block_scores(const tlm_attn_desc *ad, float *S, const float *qb, const float *kb, int64_t i0, int64_t i1,
                         int64_t k0, int64_t E, int64_t ldq, int64_t ldk) {
    int64_t rows = i1 - i0, cols = i1 - k0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)E, ad->scale,
                qb + i0 * ldq, (blasint)ldq, kb + k0 * ldk, (blasint)ldk, 0.0f, S, (blasint)cols);
    if (ad->softcap > 0.0f) {
        const float cap = ad->softcap;
        for (int64_t i = i0; i < i1; i++) {
            float *row = S + (i - i0) * cols;
            for (int64_t j = first_key(ad, i) - k0; j <= i - k0; j++) row[j] = cap * tanhf(row[j] / cap);
        }
    }
}

/* Scores of rows i0..i1-1 (S, columns = keys k0..i1-1) become probabilities
 * in place, each row's log-sum-exp going to lse_rows[i]. Columns a row may
 * not attend are zeroed. */
static void block_probs(const tlm_attn_desc *ad, float *S, float *lse_rows, int64_t i0, int64_t i1, int64_t k0,
                        const int32_t *mask_b) {
    int64_t cols = i1 - k0;
    for (int64_t i = i0; i < i1; i++) {
        float *row = S + (i - i0) * cols;
        int64_t lo = first_key(ad, i) - k0, hi = i - k0; /* the row's keys: columns lo..hi */
        float mx = -INFINITY;
        int nan = 0;
        for (int64_t j = lo; j <= hi; j++) {
            if (mask_b && !mask_b[k0 + j]) continue;
            nan |= isnan(row[j]);
            if (row[j] > mx) mx = row[j];
        }
        if (nan) { /* a NaN score poisons the row, as in softmax: it must reach the loss */
            for (int64_t j = 0; j < cols; j++) row[j] = NAN;
            lse_rows[i] = NAN;
            continue;
        }
        if (mx == -INFINITY) { /* no key to attend to */
            memset(row, 0, (size_t)cols * sizeof(float));
            lse_rows[i] = -INFINITY;
            continue;
        }
        float sum = 0.0f;
        for (int64_t j = lo; j <= hi; j++) {
            float p = (mask_b && !mask_b[k0 + j]) ? 0.0f : tlm_expf(row[j] - mx);
            row[j] = p;
            sum += p;
        }
        float inv = 1.0f / sum;
        for (int64_t j = lo; j <= hi; j++) row[j] *= inv;
        for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
        for (int64_t j = hi + 1; j < cols; j++) row[j] = 0.0f;
        lse_rows[i] = mx + logf(sum);
    }
}

void tlm_attention_forward(const tlm_attn_desc *ad, float *out, float *lse, const float *q, const float *k,
                           const float *v, const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                           float *scratch) {
    const int64_t group = H / K, ldq = H * E, ldk = K * E;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t b = bh / H, h = bh % H, kh = h / group;
        float *P = scratch + (int64_t)omp_get_thread_num() * tlm_attention_scratch_floats(T);
        const float *qb = q + b * T * ldq + h * E;
        const float *kb = k + b * T * ldk + kh * E;
        const float *vb = v + b * T * ldk + kh * E;
        float *ob = out + b * T * ldq + h * E;
        float *lse_bh = lse + (b * H + h) * T;
        const int32_t *mask_b = mask ? mask + b * T : NULL;
        for (int64_t i0 = 0; i0 < T; i0 += QB) {
            int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0, k0 = first_key(ad, i0), cols = i1 - k0;
            block_scores(ad, P, qb, kb, i0, i1, k0, E, ldq, ldk);
            block_probs(ad, P, lse_bh, i0, i1, k0, mask_b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)cols, 1.0f, P,
                        (blasint)cols, vb + k0 * ldk, (blasint)ldk, 0.0f, ob + i0 * ldq, (blasint)ldq);
        }
    }
}

/* With P the probabilities, S the (capped) scores and dP = dO V^T:
 *   dS = P * (dP - rowsum(dO * O)), times 1 - (S / cap)^2 under a soft cap
 *        (d cap tanh(x / cap) / dx = 1 - tanh^2),
 *   dQ = scale dS K,  dK = scale dS^T Q,  dV = P^T dO.
 * P comes from the saved lse, so it is the forward's to rounding. Each
 * query head writes its own dK/dV share; the group's shares are summed
 * afterwards in head order, so the result does not depend on threads. */
void tlm_attention_backward(const tlm_attn_desc *ad, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                            float *dk_heads, float *dv_heads, float *scratch) {
    const int64_t group = H / K, ldq = H * E, ldk = K * E;
    const float cap = ad->softcap;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t b = bh / H, h = bh % H, kh = h / group;
        float *P = scratch + (int64_t)omp_get_thread_num() * tlm_attention_scratch_floats(T);
        float *dP = P + QB * T;
        const float *qb = q + b * T * ldq + h * E, *ob = out + b * T * ldq + h * E;
        const float *dob = dout + b * T * ldq + h * E;
        const float *kb = k + b * T * ldk + kh * E, *vb = v + b * T * ldk + kh * E;
        float *dqb = dq + b * T * ldq + h * E;
        float *dkb = dk_heads + b * T * ldq + h * E, *dvb = dv_heads + b * T * ldq + h * E;
        const float *lse_bh = lse + (b * H + h) * T;
        const int32_t *mask_b = mask ? mask + b * T : NULL;
        for (int64_t t = 0; t < T; t++) {
            memset(dkb + t * ldq, 0, (size_t)E * sizeof(float));
            memset(dvb + t * ldq, 0, (size_t)E * sizeof(float));
        }
        for (int64_t i0 = 0; i0 < T; i0 += QB) {
            int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0, k0 = first_key(ad, i0), cols = i1 - k0;
            block_scores(ad, P, qb, kb, i0, i1, k0, E, ldq, ldk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)E, 1.0f,
                        dob + i0 * ldq, (blasint)ldq, vb + k0 * ldk, (blasint)ldk, 0.0f, dP, (blasint)cols);
            for (int64_t i = i0; i < i1; i++) {
                float *s_row = P + (i - i0) * cols, *dp_row = dP + (i - i0) * cols;
                const float *o_row = ob + i * ldq, *do_row = dob + i * ldq;
                float l = lse_bh[i], di = 0.0f;
                for (int64_t e = 0; e < E; e++) di += do_row[e] * o_row[e];
                /* the row's keys: columns lo..hi; none when it attended nothing */
                int64_t lo = first_key(ad, i) - k0, hi = isinf(l) ? lo - 1 : i - k0;
                for (int64_t j = 0; j < cols; j++) {
                    float s = s_row[j], p = 0.0f, ds = 0.0f;
                    if (j >= lo && j <= hi && !(mask_b && !mask_b[k0 + j])) {
                        p = tlm_expf(s - l);
                        ds = p * (dp_row[j] - di);
                        if (cap > 0.0f) ds *= 1.0f - (s / cap) * (s / cap);
                    }
                    s_row[j] = p; /* now P */
                    dp_row[j] = ds; /* now dS */
                }
            }
            /* dV[k0:i1] += P^T dO[i0:i1];  dK[k0:i1] += scale dS^T Q[i0:i1];  dQ[i0:i1] = scale dS K[k0:i1] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)cols, (blasint)E, (blasint)rows, 1.0f, P,
                        (blasint)cols, dob + i0 * ldq, (blasint)ldq, 1.0f, dvb + k0 * ldq, (blasint)ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)cols, (blasint)E, (blasint)rows, ad->scale,
                        dP, (blasint)cols, qb + i0 * ldq, (blasint)ldq, 1.0f, dkb + k0 * ldq, (blasint)ldq);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)cols,
                        ad->scale, dP, (blasint)cols, kb + k0 * ldk, (blasint)ldk, 0.0f, dqb + i0 * ldq,
                        (blasint)ldq);
        }
    }
    /* Sum each kv head's query-head shares. */
    #pragma omp parallel for schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++)
        for (int64_t kh = 0; kh < K; kh++) {
            float *dkr = dk + bt * ldk + kh * E, *dvr = dv + bt * ldk + kh * E;
            memset(dkr, 0, (size_t)E * sizeof(float));
            memset(dvr, 0, (size_t)E * sizeof(float));
            for (int64_t g = 0; g < group; g++) {
                const float *sk = dk_heads + bt * ldq + (kh * group + g) * E;
                const float *sv = dv_heads + bt * ldq + (kh * group + g) * E;
                for (int64_t e = 0; e < E; e++) { dkr[e] += sk[e]; dvr[e] += sv[e]; }
            }
        }
}
