/* cross_entropy.c: LM head (h W^T + bias, optionally soft-capped) fused
 * with cross-entropy, a chunk of rows at a time, so training never holds
 * the [N, V] logits.
 *
 * A chunk's logits [rows, V] give each row's log-sum-exp and loss; when a
 * gradient is wanted they are turned in place into the gradient of the
 * uncapped logits, (softmax - onehot) * (1 - (y / cap)^2) with y the capped
 * logits (just softmax - onehot without a cap), and multiplied back at once
 * (dh = dlogits W, dW += dlogits^T h, dbias += column sums). The logits are
 * computed once per step: nothing is recomputed in backward. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>

/* Rows of logits per chunk. The head GEMM packs all of W for every chunk, so
 * chunks below ~512 rows lose up to a third of its speed; 512 rows is the
 * aim, within 128 MB of logits, and small vocabularies take 32 MB worth. */
int64_t tlm_lmhead_ce_rows(int64_t V) {
    const int64_t rows_32mb = ((int64_t)1 << 23) / V, rows_128mb = ((int64_t)1 << 25) / V;
    int64_t rows = rows_128mb < 512 ? rows_128mb : 512;
    if (rows < rows_32mb) rows = rows_32mb;
    return rows < 16 ? 16 : rows;
}

double tlm_lmhead_ce(const float *hv, const int32_t *tv, const float *W, const float *bias, float softcap,
                     int64_t Nv, int64_t D, int64_t V, float *chunk, float *dhv, float *dW, float *dbias) {
    const int64_t step = tlm_lmhead_ce_rows(V);
    double nll = 0.0;
    for (int64_t r0 = 0; r0 < Nv; r0 += step) {
        int64_t rows = r0 + step < Nv ? step : Nv - r0;
        const float *h = hv + r0 * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)V, (blasint)D, 1.0f, h,
                    (blasint)D, W, (blasint)D, 0.0f, chunk, (blasint)V);
        double part = 0.0;
        #pragma omp parallel for schedule(static) reduction(+ : part)
        for (int64_t n = 0; n < rows; n++) {
            float *row = chunk + n * V;
            if (bias)
                for (int64_t j = 0; j < V; j++) row[j] += bias[j];
            if (softcap > 0.0f) /* as transformers: logits / softcap, tanh, * softcap */
                for (int64_t j = 0; j < V; j++) row[j] = softcap * tanhf(row[j] / softcap);
            double lse = tlm_row_logsumexp(row, V);
            int32_t t = tv[r0 + n];
            part += lse - (double)row[t];
            if (dhv) { /* d(nll)/dlogits = softmax - onehot, through the softcap */
                float l = (float)lse;
                if (softcap > 0.0f) {
                    float yt = row[t] / softcap;
                    #pragma omp simd
                    for (int64_t j = 0; j < V; j++) {
                        float y = row[j] / softcap;
                        row[j] = tlm_expf(row[j] - l) * (1.0f - y * y);
                    }
                    row[t] -= 1.0f - yt * yt;
                } else {
                    #pragma omp simd
                    for (int64_t j = 0; j < V; j++) row[j] = tlm_expf(row[j] - l);
                    row[t] -= 1.0f;
                }
            }
        }
        nll += part;
        if (dhv) tlm_lmhead_chunk_backward(chunk, h, W, rows, D, V, dhv + r0 * D, dW, dbias);
    }
    return nll;
}

void tlm_lmhead_chunk_backward(const float *dlogits, const float *h, const float *W, int64_t rows, int64_t D,
                               int64_t V, float *dh, float *dW, float *dbias) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)D, (blasint)V, 1.0f, dlogits,
                (blasint)V, W, (blasint)D, 0.0f, dh, (blasint)D);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)V, (blasint)D, (blasint)rows, 1.0f, dlogits,
                    (blasint)V, h, (blasint)D, 1.0f, dW, (blasint)D);
    if (!dbias) return;
    /* Threads own column blocks; rows are summed in order. */
    #pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < V; j0 += 64) {
        int64_t j1 = j0 + 64 < V ? j0 + 64 : V;
        for (int64_t n = 0; n < rows; n++)
            for (int64_t j = j0; j < j1; j++) dbias[j] += dlogits[n * V + j];
    }
}
