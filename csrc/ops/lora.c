/* lora.c: the low-rank path of a LoRA-adapted linear layer,
 *   y += scale * (x A^T) B^T,   A [R,In], B [Out,R],
 * with x already passed through dropout by the caller. */
#include "ops/ops.h"

#include <cblas.h>

void tlm_lora_forward(float *y, float *xa, const float *x, const float *A, const float *B, float scale, int64_t N,
                      int64_t In, int64_t Out, int64_t R) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)R, (blasint)In, 1.0f, x, (blasint)In,
                A, (blasint)In, 0.0f, xa, (blasint)R);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)Out, (blasint)R, scale, xa, (blasint)R,
                B, (blasint)R, 1.0f, y, (blasint)Out);
}

/* t = dy B;  dB += scale dy^T xa;  dA += scale t^T x;  dx = dx_beta dx + scale t A. */
void tlm_lora_backward(float *dx, float dx_beta, float *dA, float *dB, const float *dy, const float *x,
                       const float *xa, const float *A, const float *B, float scale, int64_t N, int64_t In,
                       int64_t Out, int64_t R, float *t) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)R, (blasint)Out, 1.0f, dy,
                (blasint)Out, B, (blasint)R, 0.0f, t, (blasint)R);
    if (dB)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)Out, (blasint)R, (blasint)N, scale, dy,
                    (blasint)Out, xa, (blasint)R, 1.0f, dB, (blasint)R);
    if (dA)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)R, (blasint)In, (blasint)N, scale, t,
                    (blasint)R, x, (blasint)In, 1.0f, dA, (blasint)In);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)In, (blasint)R, scale, t,
                    (blasint)R, A, (blasint)In, dx_beta, dx, (blasint)In);
}

/* W [Out,In] += scale * B [Out,R] A [R,In] */
void tlm_lora_merge_weight(float *W, const float *A, const float *B, float scale, int64_t Out, int64_t In, int64_t R) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)Out, (blasint)In, (blasint)R, scale, B,
                (blasint)R, A, (blasint)In, 1.0f, W, (blasint)In);
}
