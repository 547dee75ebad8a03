/* linear.c: y = x W^T + b with OpenBLAS GEMMs (W is [out, in] as in PyTorch). */
#include "ops/ops.h"

#include <cblas.h>

/* Rows up to which a matrix-vector product per row beats one GEMM: OpenBLAS'
 * GEMM packs all of W even for a single row, which makes a decoding step (one
 * token per sequence) several times slower than GEMV's one pass over W. */
#define GEMV_MAX_ROWS 2

void tlm_gemm_xwt(float *y, int64_t ldy, const float *x, const float *W, int64_t N, int64_t In, int64_t rows) {
    if (N <= GEMV_MAX_ROWS) {
        for (int64_t n = 0; n < N; n++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)In, 1.0f, W, (blasint)In, x + n * In, 1,
                        0.0f, y + n * ldy, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)rows, (blasint)In, 1.0f, x,
                (blasint)In, W, (blasint)In, 0.0f, y, (blasint)ldy);
}

void tlm_gemm_dyw(float *dx, float beta, const float *dy, int64_t ldy, const float *W, int64_t N, int64_t In,
                  int64_t rows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)In, (blasint)rows, 1.0f, dy,
                (blasint)ldy, W, (blasint)In, beta, dx, (blasint)In);
}

void tlm_gemm_dytx(float *dW, const float *dy, int64_t ldy, const float *x, int64_t N, int64_t In, int64_t rows) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)rows, (blasint)In, (blasint)N, 1.0f, dy,
                (blasint)ldy, x, (blasint)In, 0.0f, dW, (blasint)In);
}

void tlm_add_bias(float *y, const float *b, int64_t N, int64_t Out) {
    #pragma omp parallel for schedule(static) if (N * Out > 16384)
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < Out; o++) y[n * Out + o] += b[o];
}

void tlm_linear_forward(float *y, const float *x, const float *W, const float *b, int64_t N, int64_t In, int64_t Out) {
    tlm_gemm_xwt(y, Out, x, W, N, In, Out);
    if (b) tlm_add_bias(y, b, N, Out);
}

void tlm_linear_backward(float *dx, float beta, float *dW, float *db, const float *dy, const float *x,
                         const float *W, int64_t N, int64_t In, int64_t Out) {
    if (dx) tlm_gemm_dyw(dx, beta, dy, Out, W, N, In, Out);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)Out, (blasint)In, (blasint)N, 1.0f, dy,
                    (blasint)Out, x, (blasint)In, 1.0f, dW, (blasint)In);
    if (db) {
        /* Threads own column blocks; rows are summed in order. */
        #pragma omp parallel for schedule(static)
        for (int64_t o0 = 0; o0 < Out; o0 += 64) {
            int64_t o1 = o0 + 64 < Out ? o0 + 64 : Out;
            for (int64_t n = 0; n < N; n++)
                for (int64_t o = o0; o < o1; o++) db[o] += dy[n * Out + o];
        }
    }
}
