/* fake_tables.c: QAT for the two whole-matrix weights, the token embedding
 * and the LM head (projections are fake-quantized a tile at a time in
 * proj.c). They are read row by row (a lookup) or all at once (the head's
 * vocabulary chunks), so compute reads a fake-quantized copy, rebuilt when
 * the weights may have changed (set_weight, an optimizer step, switching
 * the quantizers on); backward's gradient of the copy passes to the weight
 * straight through, zero where the quantizer's clamp cut a code. */
#include "core/internal.h"
#include "model/fake_tables.h"

#include <string.h>

int tlm_fq_is_table(const tlm_model *m, int64_t i) { return i == m->embed || i == m->lm_head; }

static int applies(const tlm_model *m, const tlm_param_slot *p) {
    return p->fq.kind != TLM_FQ_NONE && !m->fake_quant_off;
}

tlm_status tlm_fq_table_set(tlm_model *m, tlm_param_slot *p, const tlm_fake_quant *fq) {
    if (!fq) {
        tlm_free(p->fq_values);
        tlm_free(p->fq_clip);
        p->fq_values = NULL;
        p->fq_clip = NULL;
        memset(&p->fq, 0, sizeof p->fq);
        return TLM_OK;
    }
    if (fq->kind != TLM_FQ_GGML || fq->act_int8)
        return tlm_fail(TLM_EUNSUPPORTED, "%s: the embedding and the head take a ggml type's fake quantization "
                        "(the type the GGUF file stores them as), not a torchao scheme", p->name);
    if (!p->fq_values) {
        p->fq_values = tlm_alloc((size_t)p->numel * sizeof(float));
        p->fq_clip = tlm_alloc((size_t)p->numel);
        if (!p->fq_values || !p->fq_clip) {
            tlm_fq_table_set(m, p, NULL);
            return tlm_fail(TLM_ENOMEM, "out of memory for the fake-quantized copy of %s", p->name);
        }
    }
    p->fq = *fq;
    m->fq_tables_stale = 1;
    return TLM_OK;
}

void tlm_fq_tables_refresh(tlm_model *m) {
    if (!m->fq_tables_stale || m->fake_quant_off) return;
    int slots[2] = {m->embed, m->lm_head == m->embed ? -1 : m->lm_head};
    for (int k = 0; k < 2; k++) {
        tlm_param_slot *p = slots[k] < 0 ? NULL : &m->params[slots[k]];
        if (p && p->fq.kind != TLM_FQ_NONE) /* checked when it was set */
            tlm_fake_quantize(&p->fq, p->data, p->shape[0], p->shape[1], p->fq_values, p->fq_clip);
    }
    m->fq_tables_stale = 0;
}

const float *tlm_fq_table_weight(tlm_model *m, int i) {
    const tlm_param_slot *p = &m->params[i];
    return applies(m, p) ? p->fq_values : p->data;
}

void tlm_fq_tables_mask_grads(tlm_model *m) {
    int slots[2] = {m->embed, m->lm_head == m->embed ? -1 : m->lm_head};
    for (int k = 0; k < 2; k++) {
        float *g = slots[k] < 0 ? NULL : tlm_pgrad(m, slots[k]);
        const tlm_param_slot *p = slots[k] < 0 ? NULL : &m->params[slots[k]];
        if (!g || !applies(m, p)) continue;
        #pragma omp parallel for schedule(static) if (p->numel > 65536)
        for (int64_t j = 0; j < p->numel; j++)
            if (p->fq_clip[j]) g[j] = 0.0f;
    }
}
