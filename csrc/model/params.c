/* params.c: the Hugging Face-named parameter table, and the planned blocks
 * for parameters and gradients. */
#include "core/internal.h"
#include "model/fake_tables.h"
#include "model/params.h"

#include <stdio.h>
#include <string.h>

#define R16(x) (((x) + 15) & ~(int64_t)15)

int tlm_model_add_param(tlm_model *m, const char *name, int64_t rows, int64_t cols, int decay) {
    if (m->n_params == m->params_capacity) {
        int64_t cap = m->params_capacity ? 2 * m->params_capacity : 64;
        tlm_param_slot *grown = realloc(m->params, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        m->params = grown;
        m->params_capacity = cap;
    }
    tlm_param_slot *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    if (!p->name) return -1;
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->numel = cols > 0 ? rows * cols : rows;
    p->grad_offset = -1;
    p->trainable = 1;
    p->decay = decay;
    p->group = 1;
    m->grads_planned = 0;
    return (int)m->n_params++;
}

/* "<prefix><module>.<what>" into the slot table; -1 when out of memory. */
static int add_named(tlm_model *m, const char *prefix, const char *module, const char *what, int64_t rows,
                     int64_t cols, int decay) {
    char name[384];
    snprintf(name, sizeof name, "%s%s.%s", prefix, module, what);
    return tlm_model_add_param(m, name, rows, cols, decay);
}

/* A layer's norm: one weight (and bias), or per-head norms (StableLM's
 * q_layernorm.norms.<h>) as consecutive slots the norm op reads as rows of
 * one [groups, R16(E)] table, trained together. */
static int add_norm(tlm_model *m, const char *prefix, const char *module, tlm_norm_role r, int *lp) {
    const tlm_config *c = &m->cfg;
    int64_t groups = tlm_layout_norm_groups(c, r), width = tlm_layout_norm_width(c, r);
    int bias = tlm_layout_norm_bias(c, r);
    char per_head[200];
    for (int part = 0; part < 1 + bias; part++) {
        const char *what = part ? "bias" : "weight";
        for (int64_t g = 0; g < groups; g++) {
            const char *mod = module;
            if (groups > 1) {
                snprintf(per_head, sizeof per_head, "%s.norms.%lld", module, (long long)g);
                mod = per_head;
            }
            int idx = add_named(m, prefix, mod, what, width, 0, 0);
            if (idx < 0) return -1;
            if (g == 0) lp[part ? TLM_ROLE_NORM_B(r) : TLM_ROLE_NORM_W(r)] = idx, m->params[idx].group = (int)groups;
            else m->params[idx].group = 0;
        }
    }
    return 0;
}

static int build_table(tlm_model *m) {
    const tlm_config *c = &m->cfg;
    const tlm_names_table *nt = tlm_names_of(c->names);
    int64_t D = c->hidden_size, V = c->vocab_size;
    char prefix[64];
    m->final_norm_b = m->lm_head_b = -1;
    m->embed = add_named(m, "", nt->embed, "weight", V, D, 1);
    if (m->embed < 0) return -1;
    for (int64_t l = 0; l < c->n_layers; l++) {
        int *lp = m->layer_params[l];
        for (int r = 0; r < TLM_LAYER_ROLES; r++) lp[r] = -1;
        snprintf(prefix, sizeof prefix, "model.layers.%lld.", (long long)l);
        /* In the scheme's order: attention (its norm, projections, q/k norms), then the MLP. */
        if (add_norm(m, prefix, nt->norm[TLM_NORM_ATTN], TLM_NORM_ATTN, lp) < 0) return -1;
        for (int p = 0; p < m->projs.n; p++) {
            tlm_proj_role role = m->projs.role[p];
            if (role == TLM_PROJ_O)
                for (int r = TLM_NORM_Q; r <= TLM_NORM_K; r++)
                    if (tlm_layout_has_norm(c, (tlm_norm_role)r) &&
                        add_norm(m, prefix, nt->norm[r], (tlm_norm_role)r, lp) < 0)
                        return -1;
            if (role == TLM_PROJ_GATE || role == TLM_PROJ_GATE_UP || (role == TLM_PROJ_UP && !c->gated)) {
                if (tlm_layout_has_norm(c, TLM_NORM_ATTN_POST) &&
                    add_norm(m, prefix, nt->norm[TLM_NORM_ATTN_POST], TLM_NORM_ATTN_POST, lp) < 0)
                    return -1;
                if (tlm_layout_has_norm(c, TLM_NORM_MLP) && add_norm(m, prefix, nt->norm[TLM_NORM_MLP], TLM_NORM_MLP, lp) < 0)
                    return -1;
            }
            if ((lp[TLM_ROLE_PROJ_W(role)] = add_named(m, prefix, nt->proj[role], "weight", m->projs.out[p],
                                                       m->projs.in[p], 1)) < 0)
                return -1;
            if (tlm_layout_proj_bias(c, role) &&
                (lp[TLM_ROLE_PROJ_B(role)] = add_named(m, prefix, nt->proj[role], "bias", m->projs.out[p], 0, 0)) < 0)
                return -1;
        }
        if (tlm_layout_has_norm(c, TLM_NORM_MLP_POST) &&
            add_norm(m, prefix, nt->norm[TLM_NORM_MLP_POST], TLM_NORM_MLP_POST, lp) < 0)
            return -1;
    }
    if ((m->final_norm = add_named(m, "", nt->final_norm, "weight", D, 0, 0)) < 0) return -1;
    if (c->norm_kind == TLM_NORM_LAYER && c->norm_bias &&
        (m->final_norm_b = add_named(m, "", nt->final_norm, "bias", D, 0, 0)) < 0)
        return -1;
    m->lm_head = c->tie_word_embeddings ? m->embed : add_named(m, "", nt->lm_head, "weight", V, D, 1);
    if (c->lm_head_bias && (m->lm_head_b = add_named(m, "", nt->lm_head, "bias", V, 0, 0)) < 0) return -1;
    return m->lm_head >= 0 ? 0 : -1;
}

/* Gives the projection weights quantized storage (frozen); the rest of the
 * base gets one f32 block, each tensor 64-byte aligned. */
static int allocate_base(tlm_model *m) {
    if (m->cfg.weights != TLM_WEIGHTS_F32)
        for (int64_t l = 0; l < m->cfg.n_layers; l++)
            for (int p = 0; p < m->projs.n; p++) {
                tlm_param_slot *s = &m->params[m->layer_params[l][TLM_ROLE_PROJ_W(m->projs.role[p])]];
                s->qw = calloc(1, sizeof *s->qw);
                if (!s->qw || tlm_qweight_alloc(s->qw, m->cfg.weights, s->shape[0], s->shape[1]) < 0) return -1;
                s->trainable = 0;
                if (m->cfg.weights == TLM_WEIGHTS_GGUF) m->blocks_pending++;
            }
    for (int64_t i = 0; i < m->n_params; i++)
        if (!m->params[i].qw) m->param_numel += R16(m->params[i].numel);
    m->param_block = tlm_alloc((size_t)m->param_numel * sizeof(float));
    if (!m->param_block) return -1;
    for (int64_t i = 0, at = 0; i < m->n_params; i++) {
        if (m->params[i].qw) continue;
        m->params[i].data = m->param_block + at;
        at += R16(m->params[i].numel);
    }
    return 0;
}

tlm_status tlm_params_create(tlm_model *m) {
    m->layer_params = calloc((size_t)m->cfg.n_layers, sizeof *m->layer_params);
    if (!m->layer_params || build_table(m) < 0) return tlm_fail(TLM_ENOMEM, "out of memory creating the model");
    if (allocate_base(m) < 0) {
        uint64_t bytes = 0;
        tlm_config_check(&m->cfg, &bytes);
        return tlm_fail(TLM_ENOMEM, "out of memory for the model's parameters (%.1f GB)", (double)bytes / 1e9);
    }
    return TLM_OK;
}

void tlm_params_free(tlm_model *m) {
    if (m->params)
        for (int64_t i = 0; i < m->n_params; i++) {
            free(m->params[i].name);
            if (m->params[i].qw) tlm_qweight_free(m->params[i].qw);
            free(m->params[i].qw);
            tlm_free(m->params[i].fq_values);
            tlm_free(m->params[i].fq_clip);
        }
    free(m->params);
    free(m->layer_params);
    tlm_free(m->param_block);
    tlm_free(m->grad_block);
    tlm_free(m->adam_m);
    tlm_free(m->adam_v);
    tlm_free(m->head_pending);
    tlm_free(m->head_b_pending);
}

tlm_status tlm_model_param(tlm_model *m, int64_t i, tlm_param *out) {
    if (i < 0 || i >= m->n_params)
        return tlm_fail(TLM_EINVAL, "parameter index %lld out of range [0, %lld)", (long long)i,
                        (long long)m->n_params);
    const tlm_param_slot *p = &m->params[i];
    out->name = p->name;
    out->ndim = p->ndim;
    out->shape[0] = p->shape[0];
    out->shape[1] = p->shape[1];
    out->numel = p->numel;
    out->data = p->data;
    out->quantized = p->qw != NULL;
    out->ggml_type = p->qw ? p->qw->ggml_type : -1;
    out->grad = tlm_pgrad(m, (int)i);
    out->adam_m = (m->adam_m && p->grad_offset >= 0) ? m->adam_m + p->grad_offset : NULL;
    out->adam_v = (m->adam_v && p->grad_offset >= 0) ? m->adam_v + p->grad_offset : NULL;
    out->trainable = p->trainable;
    out->decay = p->decay;
    return TLM_OK;
}

/* Changing the trainable set re-plans the gradient block at the next
 * backward and drops optimizer moments (they no longer line up). The slots
 * of a per-head norm change together: the norm op reads their weights and
 * gradients as rows of one table. */
tlm_status tlm_model_set_trainable(tlm_model *m, int64_t i, int trainable) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    if (trainable && m->params[i].qw)
        return tlm_fail(TLM_EINVAL, "%s is stored quantized and cannot be trained (train an adapter on it)",
                        m->params[i].name);
    int64_t first = i;
    while (first > 0 && m->params[first].group == 0) first--;
    for (int64_t s = first; s < first + m->params[first].group; s++)
        if (m->params[s].trainable != !!trainable) {
            m->params[s].trainable = !!trainable;
            m->grads_planned = 0;
        }
    return TLM_OK;
}

tlm_status tlm_model_set_decay(tlm_model *m, int64_t i, int decay) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    m->params[i].decay = !!decay;
    return TLM_OK;
}

tlm_status tlm_model_plan_grads(tlm_model *m) {
    if (m->grads_planned) return TLM_OK;
    tlm_free(m->grad_block);
    tlm_free(m->adam_m);
    tlm_free(m->adam_v);
    tlm_free(m->head_pending);
    tlm_free(m->head_b_pending);
    m->grad_block = m->adam_m = m->adam_v = m->head_pending = m->head_b_pending = NULL;
    m->grad_numel = 0;
    m->have_loss = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        tlm_param_slot *p = &m->params[i];
        p->grad_offset = p->trainable ? m->grad_numel : -1;
        if (p->trainable) m->grad_numel += R16(p->numel);
    }
    if (m->grad_numel > 0) {
        m->grad_block = tlm_alloc((size_t)m->grad_numel * sizeof(float));
        if (!m->grad_block)
            return tlm_fail(TLM_ENOMEM, "out of memory for gradients (%.1f MB)", (double)m->grad_numel * 4 / 1e6);
    }
    if (m->params[m->lm_head].trainable) { /* loss() computes the head's gradient before backward scales it */
        m->head_pending = tlm_alloc((size_t)m->params[m->lm_head].numel * sizeof(float));
        if (!m->head_pending) return tlm_fail(TLM_ENOMEM, "out of memory for the LM head's gradient");
    }
    if (m->lm_head_b >= 0 && m->params[m->lm_head_b].trainable) {
        m->head_b_pending = tlm_alloc((size_t)m->params[m->lm_head_b].numel * sizeof(float));
        if (!m->head_b_pending) return tlm_fail(TLM_ENOMEM, "out of memory for the LM head bias's gradient");
    }
    m->grads_planned = 1;
    return TLM_OK;
}

void tlm_model_zero_grad(tlm_model *m) {
    if (m->grad_block) memset(m->grad_block, 0, (size_t)m->grad_numel * sizeof(float));
}

tlm_status tlm_model_set_weight(tlm_model *m, int64_t i, const float *src) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    tlm_param_slot *p = &m->params[i];
    if (!p->qw) {
        memcpy(p->data, src, (size_t)p->numel * sizeof(float));
        m->fq_tables_stale |= p->fq.kind != TLM_FQ_NONE;
        return TLM_OK;
    }
    float *scratch = malloc((size_t)tlm_qweight_blocks(p->qw) * sizeof(float) + 1);
    if (!scratch) return tlm_fail(TLM_ENOMEM, "out of memory quantizing %s", p->name);
    tlm_status st = tlm_qweight_set(p->qw, src, scratch);
    free(scratch);
    m->have_loss = 0;
    return st == TLM_OK ? TLM_OK : tlm_fail_context(st, "%s", p->name);
}

static tlm_status gguf_slot(tlm_model *m, int64_t i, tlm_param_slot **out) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    tlm_param_slot *p = &m->params[i];
    if (!p->qw || p->qw->kind != TLM_WEIGHTS_GGUF)
        return tlm_fail(TLM_EINVAL, "%s is not stored as ggml blocks", p->name);
    *out = p;
    return TLM_OK;
}

tlm_status tlm_model_set_weight_blocks(tlm_model *m, int64_t i, int type, const void *blocks, uint64_t nbytes) {
    tlm_param_slot *p = NULL;
    TLM_TRY(gguf_slot(m, i, &p));
    int first = p->qw->data == NULL;
    tlm_status st = tlm_qweight_set_blocks(p->qw, type, blocks, nbytes);
    if (st != TLM_OK) return tlm_fail_context(st, "%s", p->name);
    if (first) m->blocks_pending--;
    m->have_loss = 0;
    return TLM_OK;
}

tlm_status tlm_model_weight_blocks(tlm_model *m, int64_t i, const void **blocks, uint64_t *nbytes) {
    tlm_param_slot *p = NULL;
    TLM_TRY(gguf_slot(m, i, &p));
    if (!p->qw->data) return tlm_fail(TLM_EINVAL, "%s has no blocks yet", p->name);
    *blocks = p->qw->data;
    *nbytes = (uint64_t)tlm_qweight_bytes(p->qw);
    return TLM_OK;
}

/* The projection (layer and index into m->projs) whose weight is slot i; -1 if none is. */
static int proj_of(const tlm_model *m, int64_t i, int64_t *layer) {
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < m->projs.n; p++)
            if (m->layer_params[l][TLM_ROLE_PROJ_W(m->projs.role[p])] == i) {
                *layer = l;
                return p;
            }
    return -1;
}

tlm_status tlm_model_set_fake_quant(tlm_model *m, int64_t i, const tlm_fake_quant *fq) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    tlm_param_slot *p = &m->params[i];
    int64_t layer;
    int on = fq && fq->kind != TLM_FQ_NONE;
    if (on && p->qw)
        return tlm_fail(TLM_EUNSUPPORTED, "%s is stored quantized; fake quantization trains a float weight "
                        "(load the model without quant= for QAT)", p->name);
    int table = tlm_fq_is_table(m, i);
    if (!table && proj_of(m, i, &layer) < 0)
        return tlm_fail(TLM_EINVAL, "%s is neither a projection weight, the embedding nor the head: fake "
                        "quantization applies to those", p->name);
    if (on) { /* rows of shape[1] values: a projection's input, the embedding's width */
        tlm_status st = tlm_fake_quant_check(fq, p->shape[1]);
        if (st != TLM_OK) return tlm_fail_context(st, "%s", p->name);
    }
    m->have_loss = 0;
    if (table) return tlm_fq_table_set(m, p, on ? fq : NULL);
    m->n_fake_quant += on - (p->fq.kind != TLM_FQ_NONE);
    m->n_fake_quant_acts += (on && fq->act_int8) - (p->fq.kind != TLM_FQ_NONE && p->fq.act_int8);
    if (on)
        p->fq = *fq;
    else
        memset(&p->fq, 0, sizeof p->fq);
    return TLM_OK;
}

void tlm_model_enable_fake_quant(tlm_model *m, int on) {
    m->fake_quant_off = !on;
    m->fq_tables_stale = 1;
    m->have_loss = 0;
}

tlm_status tlm_model_get_weight(tlm_model *m, int64_t i, float *dst) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    tlm_param_slot *p = &m->params[i];
    if (!p->qw) {
        memcpy(dst, p->data, (size_t)p->numel * sizeof(float));
        return TLM_OK;
    }
    if (p->qw->kind == TLM_WEIGHTS_GGUF && !p->qw->data) return tlm_fail(TLM_EINVAL, "%s has no blocks yet", p->name);
    float *scratch = malloc((size_t)tlm_qweight_blocks(p->qw) * sizeof(float) + 1);
    if (!scratch) return tlm_fail(TLM_ENOMEM, "out of memory dequantizing %s", p->name);
    tlm_qweight_rows(p->qw, 0, p->shape[0], dst, scratch);
    free(scratch);
    return TLM_OK;
}

size_t tlm_model_param_bytes(const tlm_model *m, int64_t i) {
    if (i < 0 || i >= m->n_params) return 0;
    const tlm_param_slot *p = &m->params[i];
    return p->qw ? tlm_qweight_bytes(p->qw) : (size_t)p->numel * sizeof(float);
}
