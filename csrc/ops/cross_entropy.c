/* cross_entropy.c: LM head (h W^T) fused with cross-entropy, over vocabulary
 * chunks of Vc columns, so training never holds the [N, V] logits.
 *
 * Forward keeps a running max and sum per row across chunks (online
 * log-sum-exp) and picks up the target's logit in the chunk that holds it.
 * Backward recomputes each chunk's logits and turns them into
 * scale * (softmax - onehot) in place before the two GEMMs. */
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>

static void chunk_logits(float *chunk, const float *hv, const float *W, int64_t Nv, int64_t D, int64_t v0,
                         int64_t vc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)Nv, (blasint)vc, (blasint)D, 1.0f, hv, (blasint)D,
                W + v0 * D, (blasint)D, 0.0f, chunk, (blasint)vc);
}

double tlm_lmhead_ce_forward(float *lse, double *acc, const float *hv, const int32_t *tv, const float *W,
                             int64_t Nv, int64_t D, int64_t V, int64_t Vc, float *chunk) {
    /* lse holds the running max until the end; the sum of exponentials and
     * the target logit live in double accumulators per row. */
    double nll = 0.0;
    for (int64_t n = 0; n < Nv; n++) lse[n] = -INFINITY;
    double *sum = acc, *target_logit = acc + Nv;
    for (int64_t n = 0; n < Nv; n++) sum[n] = 0.0, target_logit[n] = 0.0;
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
        int64_t vc = v0 + Vc < V ? Vc : V - v0;
        chunk_logits(chunk, hv, W, Nv, D, v0, vc);
        #pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < Nv; n++) {
            const float *row = chunk + n * vc;
            float mx = lse[n];
            for (int64_t j = 0; j < vc; j++) mx = row[j] > mx ? row[j] : mx;
            double s = sum[n] * exp((double)lse[n] - (double)mx);
            if (lse[n] == -INFINITY) s = 0.0;
            float part = 0.0f;
            for (int64_t j = 0; j < vc; j++) part += expf(row[j] - mx);
            sum[n] = s + part;
            lse[n] = mx;
            int64_t t = tv[n];
            if (t >= v0 && t < v0 + vc) target_logit[n] = row[t - v0];
        }
    }
    for (int64_t n = 0; n < Nv; n++) {
        lse[n] = (float)((double)lse[n] + log(sum[n]));
        nll += (double)lse[n] - target_logit[n];
    }
    return nll;
}

void tlm_lmhead_ce_backward(float *dhv, float *dW, const float *hv, const int32_t *tv, const float *W,
                            const float *lse, float scale, int64_t Nv, int64_t D, int64_t V, int64_t Vc,
                            float *chunk) {
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
        int64_t vc = v0 + Vc < V ? Vc : V - v0;
        chunk_logits(chunk, hv, W, Nv, D, v0, vc);
        #pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < Nv; n++) {
            float *row = chunk + n * vc;
            for (int64_t j = 0; j < vc; j++) row[j] = scale * expf(row[j] - lse[n]);
            int64_t t = tv[n];
            if (t >= v0 && t < v0 + vc) row[t - v0] -= scale;
        }
        /* dh (+)= dlogits W_chunk;  dW_chunk += dlogits^T h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Nv, (blasint)D, (blasint)vc, 1.0f, chunk,
                    (blasint)vc, W + v0 * D, (blasint)D, v0 == 0 ? 0.0f : 1.0f, dhv, (blasint)D);
        if (dW)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)vc, (blasint)D, (blasint)Nv, 1.0f, chunk,
                        (blasint)vc, hv, (blasint)D, 1.0f, dW + v0 * D, (blasint)D);
    }
}
