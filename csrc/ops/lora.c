/* lora.c: the low-rank path of a LoRA-adapted linear layer,
 *   y += scale * (x A^T) B^T,   A [R,In], B [Out,R],
 * with x already passed through dropout by the caller.
 *
 * One dimension of every product here is the rank R (8-64). OpenBLAS's own
 * threading handles such skinny shapes poorly, so each product is split
 * along a dimension that needs no reduction (rows of x, or columns of A or
 * B) across our OpenMP threads, each calling single-threaded BLAS. */
#include "ops/ops.h"

#include <cblas.h>
#include <omp.h>

typedef enum { SPLIT_M, SPLIT_N } split_dim;

/* cblas_sgemm (row-major) with the M rows or N columns of C shared out. */
static void gemm_split(split_dim dim, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t len = dim == SPLIT_M ? M : N;
        int64_t i0 = len * t / nt, i1 = len * (t + 1) / nt;
        if (i1 > i0) {
            const float *a = A, *b = B;
            float *c = C;
            int64_t m = M, n = N;
            if (dim == SPLIT_M) {
                a = ta == CblasNoTrans ? A + i0 * lda : A + i0;
                c = C + i0 * ldc;
                m = i1 - i0;
            } else {
                b = tb == CblasNoTrans ? B + i0 : B + i0 * ldb;
                c = C + i0;
                n = i1 - i0;
            }
            cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)K, alpha, a, (blasint)lda, b,
                        (blasint)ldb, beta, c, (blasint)ldc);
        }
    }
}

void tlm_lora_forward(float *y, float *xa, const float *x, const float *A, const float *B, float scale, int64_t N,
                      int64_t In, int64_t Out, int64_t R) {
    gemm_split(SPLIT_M, CblasNoTrans, CblasTrans, N, R, In, 1.0f, x, In, A, In, 0.0f, xa, R);
    gemm_split(SPLIT_M, CblasNoTrans, CblasTrans, N, Out, R, scale, xa, R, B, R, 1.0f, y, Out);
}

/* t = dy B;  dB += scale dy^T xa;  dA += scale t^T x;  dx = dx_beta dx + scale t A. */
void tlm_lora_backward(float *dx, float dx_beta, float *dA, float *dB, const float *dy, const float *x,
                       const float *xa, const float *A, const float *B, float scale, int64_t N, int64_t In,
                       int64_t Out, int64_t R, float *t) {
    gemm_split(SPLIT_M, CblasNoTrans, CblasNoTrans, N, R, Out, 1.0f, dy, Out, B, R, 0.0f, t, R);
    if (dB) gemm_split(SPLIT_M, CblasTrans, CblasNoTrans, Out, R, N, scale, dy, Out, xa, R, 1.0f, dB, R);
    if (dA) gemm_split(SPLIT_N, CblasTrans, CblasNoTrans, R, In, N, scale, t, R, x, In, 1.0f, dA, In);
    if (dx) gemm_split(SPLIT_M, CblasNoTrans, CblasNoTrans, N, In, R, scale, t, R, A, In, dx_beta, dx, In);
}

/* Columns per pass of merge_rows: a [R, MERGE_COLS] panel of A stays in cache. */
#define MERGE_COLS 512

/* Each element is W + scale * (sum over r in order of B A), whatever the
 * tile of rows or thread count, so the rows fake quantization sees during
 * training are the rows of the merged weight save_gguf quantizes. */
void tlm_lora_merge_rows(float *out, const float *W, const float *A, const float *B, float scale, int64_t rows,
                         int64_t In, int64_t R) {
    #pragma omp parallel for schedule(static) if (rows * In * R > 65536)
    for (int64_t o = 0; o < rows; o++) {
        float acc[MERGE_COLS];
        for (int64_t i0 = 0; i0 < In; i0 += MERGE_COLS) {
            int64_t n = In - i0 < MERGE_COLS ? In - i0 : MERGE_COLS;
            for (int64_t i = 0; i < n; i++) acc[i] = 0.0f;
            for (int64_t r = 0; r < R; r++) {
                const float b = B[o * R + r], *a = A + r * In + i0;
                for (int64_t i = 0; i < n; i++) acc[i] += b * a[i];
            }
            for (int64_t i = 0; i < n; i++) out[o * In + i0 + i] = W[o * In + i0 + i] + scale * acc[i];
        }
    }
}

void tlm_lora_merge_weight(float *W, const float *A, const float *B, float scale, int64_t Out, int64_t In, int64_t R) {
    tlm_lora_merge_rows(W, W, A, B, scale, Out, In, R);
}

void tlm_lora_merged_grads(float *dA, float *dB, const float *dM, const float *A, const float *B, float scale,
                           int64_t rows, int64_t In, int64_t R) {
    if (dB) gemm_split(SPLIT_M, CblasNoTrans, CblasTrans, rows, R, In, scale, dM, In, A, In, 1.0f, dB, R);
    if (dA) gemm_split(SPLIT_N, CblasTrans, CblasNoTrans, R, In, rows, scale, B, R, dM, In, 1.0f, dA, In);
}
