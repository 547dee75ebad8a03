/* attention.c: causal grouped-query attention with a key padding mask.
 *
 * Each (batch, query head) is one task. Queries are processed in blocks of
 * QB rows; a block only looks at keys 0..(last row of the block), so the
 * upper triangle is never computed. Forward keeps the log-sum-exp of every
 * row; backward recomputes the probabilities from it, so the [T,T] matrix is
 * never stored between the passes (as in FlashAttention). */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QB 128 /* query rows per block */

int64_t tlm_attention_scratch_floats(int64_t T) { return 2 * QB * T; }

/* Probabilities of rows i0..i1-1 over keys 0..i1-1 in P [rows, ld = i1]:
 * in forward from scores (sets lse), in backward from the saved lse. */
static void block_probs(float *P, float *lse_rows, int from_lse, int64_t i0, int64_t i1, const int32_t *mask_b) {
    int64_t cols = i1;
    for (int64_t i = i0; i < i1; i++) {
        float *row = P + (i - i0) * cols;
        int64_t last = i; /* causal: keys 0..i */
        if (from_lse) {
            float l = lse_rows[i];
            if (isinf(l)) { memset(row, 0, (size_t)cols * sizeof(float)); continue; }
            for (int64_t j = 0; j <= last; j++)
                row[j] = (mask_b && !mask_b[j]) ? 0.0f : tlm_expf(row[j] - l);
        } else {
            float mx = -INFINITY;
            int nan = 0;
            for (int64_t j = 0; j <= last; j++) {
                if (mask_b && !mask_b[j]) continue;
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
            for (int64_t j = 0; j <= last; j++) {
                float p = (mask_b && !mask_b[j]) ? 0.0f : tlm_expf(row[j] - mx);
                row[j] = p;
                sum += p;
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j <= last; j++) row[j] *= inv;
            lse_rows[i] = mx + logf(sum);
        }
        for (int64_t j = last + 1; j < cols; j++) row[j] = 0.0f;
    }
}

/* P[rows, i1] = scale * Q[i0:i1] K[0:i1]^T: scores of a block of queries
 * against every key it may see. */
static void block_scores(float *P, const float *qb, const float *kb, int64_t i0, int64_t i1, int64_t E,
                         int64_t ldq, int64_t ldk, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)(i1 - i0), (blasint)i1, (blasint)E, scale,
                qb + i0 * ldq, (blasint)ldq, kb, (blasint)ldk, 0.0f, P, (blasint)i1);
}

void tlm_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                           float *scratch) {
    const float scale = 1.0f / sqrtf((float)E);
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
            int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0;
            block_scores(P, qb, kb, i0, i1, E, ldq, ldk, scale);
            block_probs(P, lse_bh, 0, i0, i1, mask_b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)i1, 1.0f, P,
                        (blasint)i1, vb, (blasint)ldk, 0.0f, ob + i0 * ldq, (blasint)ldq);
        }
    }
}

/* With P the probabilities and dP = dO V^T:
 *   dS = P * (dP - rowsum(dO * O)),  dQ = scale dS K,  dK = scale dS^T Q,  dV = P^T dO.
 * Each query head writes its own dK/dV share; the group's shares are summed
 * afterwards in head order, so the result does not depend on threads. */
void tlm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const int32_t *mask, int64_t B,
                            int64_t T, int64_t H, int64_t K, int64_t E, float *dk_heads, float *dv_heads,
                            float *scratch) {
    const float scale = 1.0f / sqrtf((float)E);
    const int64_t group = H / K, ldq = H * E, ldk = K * E;
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
            int64_t i1 = i0 + QB < T ? i0 + QB : T, rows = i1 - i0;
            block_scores(P, qb, kb, i0, i1, E, ldq, ldk, scale);
            block_probs(P, (float *)lse_bh, 1, i0, i1, mask_b);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)i1, (blasint)E, 1.0f,
                        dob + i0 * ldq, (blasint)ldq, vb, (blasint)ldk, 0.0f, dP, (blasint)i1);
            for (int64_t i = i0; i < i1; i++) {
                const float *o_row = ob + i * ldq, *do_row = dob + i * ldq;
                float di = 0.0f;
                for (int64_t e = 0; e < E; e++) di += do_row[e] * o_row[e];
                float *p_row = P + (i - i0) * i1, *dp_row = dP + (i - i0) * i1;
                for (int64_t j = 0; j < i1; j++) dp_row[j] = p_row[j] * (dp_row[j] - di); /* now dS */
            }
            /* dV[0:i1] += P^T dO[i0:i1];  dK[0:i1] += scale dS^T Q[i0:i1];  dQ[i0:i1] = scale dS K[0:i1] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)i1, (blasint)E, (blasint)rows, 1.0f, P,
                        (blasint)i1, dob + i0 * ldq, (blasint)ldq, 1.0f, dvb, (blasint)ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)i1, (blasint)E, (blasint)rows, scale, dP,
                        (blasint)i1, qb + i0 * ldq, (blasint)ldq, 1.0f, dkb, (blasint)ldq);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)i1, scale, dP,
                        (blasint)i1, kb, (blasint)ldk, 0.0f, dqb + i0 * ldq, (blasint)ldq);
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
