/* adamw.c: AdamW (decoupled weight decay, bias correction) and global-norm
 * gradient clipping, over the model's trainable parameters.
 *
 * The moments live in two blocks laid out like the gradient block, allocated
 * at the first step (and again only if the trainable set changes). */
#include "core/internal.h"
#include "model/params.h"

#include <math.h>

static tlm_status ensure_moments(tlm_model *m) {
    if (!m->grads_planned || !m->grad_block)
        return tlm_fail(TLM_EINVAL, "optimizer step before any backward(): there are no gradients");
    if (m->adam_m) return TLM_OK;
    return tlm_adamw_prepare(m);
}

tlm_status tlm_adamw_prepare(tlm_model *m) {
    TLM_TRY(tlm_model_plan_grads(m)); /* a new block comes zeroed */
    if (!m->grad_block) return tlm_fail(TLM_EINVAL, "no trainable parameters");
    if (m->adam_m) return TLM_OK;
    m->adam_m = tlm_alloc((size_t)m->grad_numel * sizeof(float));
    m->adam_v = tlm_alloc((size_t)m->grad_numel * sizeof(float));
    if (!m->adam_m || !m->adam_v) {
        tlm_free(m->adam_m), tlm_free(m->adam_v);
        m->adam_m = m->adam_v = NULL;
        return tlm_fail(TLM_ENOMEM, "out of memory for AdamW state (%.1f MB)", (double)m->grad_numel * 8 / 1e6);
    }
    return TLM_OK;
}

/* p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), written as torch does:
 * decay first, then the Adam update with step size lr / (1 - b1^t). */
tlm_status tlm_adamw_step(tlm_model *m, const tlm_adamw_hparams *hp, int64_t step) {
    if (step < 1) return tlm_fail(TLM_EINVAL, "AdamW step must be >= 1, got %lld", (long long)step);
    if (!(hp->lr >= 0.0f) || !(hp->eps >= 0.0f) || !(hp->beta1 >= 0.0f && hp->beta1 < 1.0f) ||
        !(hp->beta2 >= 0.0f && hp->beta2 < 1.0f) || !(hp->weight_decay >= 0.0f))
        return tlm_fail(TLM_EINVAL, "AdamW hyperparameters out of range (lr=%g betas=(%g, %g) eps=%g wd=%g)",
                        (double)hp->lr, (double)hp->beta1, (double)hp->beta2, (double)hp->eps,
                        (double)hp->weight_decay);
    TLM_TRY(ensure_moments(m));
    const float b1 = hp->beta1, b2 = hp->beta2, lr = hp->lr, eps = hp->eps;
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)step));
    const float step_size = (float)(lr / (1.0 - pow(b1, (double)step)));
    for (int64_t i = 0; i < m->n_params; i++) {
        const tlm_param_slot *ps = &m->params[i];
        if (ps->grad_offset < 0) continue;
        m->fq_tables_stale |= ps->fq.kind != TLM_FQ_NONE; /* a fake-quantized embedding or head moved */
        float *p = ps->data, *g = m->grad_block + ps->grad_offset;
        float *mm = m->adam_m + ps->grad_offset, *vv = m->adam_v + ps->grad_offset;
        const float decay = ps->decay ? 1.0f - lr * hp->weight_decay : 1.0f;
        #pragma omp parallel for schedule(static) if (ps->numel > 32768)
        for (int64_t j = 0; j < ps->numel; j++) {
            p[j] *= decay;
            mm[j] += (1.0f - b1) * (g[j] - mm[j]); /* torch's lerp */
            vv[j] = b2 * vv[j] + (1.0f - b2) * g[j] * g[j];
            float denom = sqrtf(vv[j]) / bc2_sqrt + eps;
            p[j] -= step_size * mm[j] / denom;
        }
    }
    return TLM_OK;
}

tlm_status tlm_clip_grad_norm(tlm_model *m, float max_norm, float *norm) {
    if (!m->grad_block) return tlm_fail(TLM_EINVAL, "clip_grad_norm before any backward(): there are no gradients");
    double total = 0.0;
    for (int64_t i = 0; i < m->n_params; i++) {
        const tlm_param_slot *ps = &m->params[i];
        if (ps->grad_offset < 0) continue;
        const float *g = m->grad_block + ps->grad_offset;
        double ss = 0.0;
        #pragma omp parallel for reduction(+ : ss) schedule(static) if (ps->numel > 32768)
        for (int64_t j = 0; j < ps->numel; j++) ss += (double)g[j] * g[j];
        total += ss;
    }
    float n = (float)sqrt(total);
    *norm = n;
    if (!isfinite(n)) return tlm_fail(TLM_ENUMERIC, "the gradient norm is %f", (double)n);
    if (max_norm > 0.0f) {
        float coef = max_norm / (n + 1e-6f);
        if (coef < 1.0f)
            for (int64_t i = 0; i < m->n_params; i++) {
                const tlm_param_slot *ps = &m->params[i];
                if (ps->grad_offset < 0) continue;
                float *g = m->grad_block + ps->grad_offset;
                #pragma omp parallel for schedule(static) if (ps->numel > 32768)
                for (int64_t j = 0; j < ps->numel; j++) g[j] *= coef;
            }
    }
    return TLM_OK;
}
