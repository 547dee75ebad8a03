/* head_distill.c: cross-entropy plus a distillation divergence from final
 * hidden states, a chunk of rows at a time (as cross_entropy.c does CE
 * alone), so neither the student's nor the teacher's [Nv, V] logits are
 * ever held.
 *
 * Per chunk: the student's logits (and, online, the teacher's through its
 * own head) are computed once; each row's CE comes from its log-sum-exp, the
 * KD kernel (objectives/kd.c) gives the divergence and its gradient, and the
 * two gradients are combined into the chunk, which is then multiplied back
 * (dh = dlogits W, dW += dlogits^T h, dbias += column sums). */
#include "objectives/head.h"
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

void tlm_head_logits(const tlm_head *hd, const float *h, int64_t rows, float *out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)hd->V, (blasint)hd->D, 1.0f, h,
                (blasint)hd->D, hd->W, (blasint)hd->D, 0.0f, out, (blasint)hd->V);
    int64_t V = hd->V;
    if (!hd->bias && !(hd->softcap > 0.0f)) return;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < rows; n++) {
        float *row = out + n * V;
        if (hd->bias)
            for (int64_t j = 0; j < V; j++) row[j] += hd->bias[j];
        if (hd->softcap > 0.0f) /* as transformers: logits / softcap, tanh, * softcap */
            for (int64_t j = 0; j < V; j++) row[j] = hd->softcap * tanhf(row[j] / hd->softcap);
    }
}

double tlm_head_distill(const tlm_kd_desc *kd, const tlm_head *student, const tlm_head *teacher, const float *hv,
                        const float *hv_t, const int32_t *topk_ids, const float *topk_logp, int64_t k,
                        float topk_temperature, const int32_t *tv, int64_t Nv, float ce_weight, float kd_weight,
                        float *chunk, float *tchunk, float *dkd, float *kd_scratch, float *dhv, float *dW, float *db,
                        double *ce_sum, double *kd_sum) {
    const int64_t V = student->V, D = student->D, step = tlm_lmhead_ce_rows(V);
    const float cap = student->softcap;
    double ce = 0.0, div = 0.0;
    for (int64_t r0 = 0; r0 < Nv; r0 += step) {
        int64_t rows = r0 + step < Nv ? step : Nv - r0;
        const float *h = hv + r0 * D;
        tlm_head_logits(student, h, rows, chunk);
        /* the divergence and its gradient, kd_weight * d/d(student logits), into dkd */
        float *ds = dhv ? dkd : NULL;
        if (teacher) {
            tlm_head_logits(teacher, hv_t + r0 * teacher->D, rows, tchunk);
            div += tlm_kd_rows(kd, chunk, tchunk, rows, V, ds, kd_weight, kd_scratch);
        } else {
            div += tlm_kd_topk_rows(kd, chunk, topk_ids + r0 * k, topk_logp + r0 * k, NULL, topk_temperature, rows, V,
                                    k, ds, kd_weight, kd_scratch);
        }
        double part = 0.0;
        #pragma omp parallel for schedule(static) reduction(+ : part)
        for (int64_t n = 0; n < rows; n++) {
            float *row = chunk + n * V;
            double lse = tlm_row_logsumexp(row, V);
            int32_t t = tv[r0 + n];
            part += lse - (double)row[t];
            if (!dhv) continue;
            /* ce_weight (softmax - onehot) + the KD gradient, both with respect
             * to the capped logits; then through the cap: 1 - (y / cap)^2 */
            float l = (float)lse;
            const float *g = dkd + n * V;
            float yt = cap > 0.0f ? row[t] / cap : 0.0f;
            for (int64_t j = 0; j < V; j++) {
                float y = row[j];
                float grad = ce_weight * tlm_expf(y - l) + g[j];
                row[j] = cap > 0.0f ? grad * (1.0f - (y / cap) * (y / cap)) : grad;
            }
            row[t] -= cap > 0.0f ? ce_weight * (1.0f - yt * yt) : ce_weight;
        }
        ce += part;
        if (dhv) tlm_lmhead_chunk_backward(chunk, h, student->W, rows, D, V, dhv + r0 * D, dW, db);
    }
    *ce_sum = ce;
    *kd_sum = div;
    return (double)ce_weight * ce + (double)kd_weight * div;
}
