/* rmsnorm.c: Llama's RMSNorm, out = w * (x / sqrt(mean(x^2) + eps)). */
#include "ops/ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void tlm_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t D, float eps) {
    #pragma omp parallel for schedule(static) if (N * D > 16384)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * D;
        float *yr = out + n * D;
        float ss = 0.0f;
        #pragma omp simd reduction(+ : ss)
        for (int64_t d = 0; d < D; d++) ss += xr[d] * xr[d];
        float r = 1.0f / sqrtf(ss / (float)D + eps);
        rstd[n] = r;
        /* HF rounds x*r before multiplying by w; keep that order. */
        for (int64_t d = 0; d < D; d++) yr[d] = w[d] * (xr[d] * r);
    }
}

/* With xh = x*r and g = dout*w: dx = r * (g - xh * mean(g * xh)); dw += dout * xh.
 * dw is summed per thread in scratch, then reduced in thread order. */
void tlm_rmsnorm_backward(float *dx, float beta, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int64_t N, int64_t D, float *scratch) {
    int nthreads = omp_get_max_threads();
    if (dw) memset(scratch, 0, (size_t)nthreads * (size_t)D * sizeof(float));
    #pragma omp parallel
    {
        float *dw_local = dw ? scratch + (int64_t)omp_get_thread_num() * D : NULL;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * D, *gr = dout + n * D;
            float r = rstd[n];
            float dot = 0.0f;
            #pragma omp simd reduction(+ : dot)
            for (int64_t d = 0; d < D; d++) dot += gr[d] * w[d] * xr[d];
            float c = dot * r * r / (float)D;
            if (dx) {
                float *dxr = dx + n * D;
                if (beta == 0.0f)
                    for (int64_t d = 0; d < D; d++) dxr[d] = r * (gr[d] * w[d] - xr[d] * c);
                else
                    for (int64_t d = 0; d < D; d++) dxr[d] = beta * dxr[d] + r * (gr[d] * w[d] - xr[d] * c);
            }
            if (dw_local)
                for (int64_t d = 0; d < D; d++) dw_local[d] += gr[d] * (xr[d] * r);
        }
    }
    if (dw)
        for (int t = 0; t < nthreads; t++)
            for (int64_t d = 0; d < D; d++) dw[d] += scratch[(int64_t)t * D + d];
}
