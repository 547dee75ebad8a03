/* model.c: the composition root. Creates a model from its descriptor
 * (layout, parameters, rotary tables) and frees everything it owns; the
 * modules below it never call upward. */
#include "adapters/lora.h"
#include "core/internal.h"
#include "model/arena.h"
#include "model/params.h"

#include <string.h>

/* The model's norms as the norm op takes them: the layer norms share one
 * weight row; q/k norms run over [N*heads, E] rows with one weight, or a
 * weight per head laid out R16(E) apart (params.c's per-head slots). */
static void describe_norms(tlm_model *m) {
    const tlm_config *c = &m->cfg;
    tlm_norm_desc base = {.kind = (tlm_norm_kind)c->norm_kind, .eps = c->norm_eps, .w_offset = c->norm_offset,
                          .groups = 1, .ld = 0};
    m->norm = m->q_norm = m->k_norm = base;
    if (c->qk_norm == TLM_QK_NORM_PER_HEAD) {
        int64_t ld = (c->head_dim + 15) & ~(int64_t)15;
        m->q_norm.groups = c->n_heads, m->q_norm.ld = ld;
        m->k_norm.groups = c->n_kv_heads, m->k_norm.ld = ld;
    }
}

static int rope_tables(tlm_model *m) {
    const tlm_config *c = &m->cfg;
    int64_t R = c->rotary_dim;
    for (int kind = 0; kind < 2; kind++)
        for (int use_long = 0; use_long < 2; use_long++) {
            m->inv_freq[kind][use_long] = tlm_alloc((size_t)(R / 2 + 1) * sizeof(float));
            if (!m->inv_freq[kind][use_long]) return -1;
            tlm_rope_inv_freq(m->inv_freq[kind][use_long], R, &c->rope[kind], use_long);
        }
    return 0;
}

tlm_status tlm_model_create(const tlm_config *cfg, tlm_model **out) {
    *out = NULL;
    TLM_TRY(tlm_config_check(cfg, NULL));
    tlm_model *m = calloc(1, sizeof *m);
    if (!m) return tlm_fail(TLM_ENOMEM, "out of memory creating the model");
    m->cfg = *cfg;
    m->active = -1;
    m->training = 1;
    tlm_layout_projections(&m->cfg, &m->projs);
    describe_norms(m);
    tlm_status st = tlm_params_create(m);
    if (st == TLM_OK && rope_tables(m) < 0) st = tlm_fail(TLM_ENOMEM, "out of memory creating the model");
    if (st != TLM_OK) {
        tlm_model_free(m);
        return st;
    }
    *out = m;
    return TLM_OK;
}

void tlm_model_free(tlm_model *m) {
    if (!m) return;
    tlm_lora_free_all(m);
    tlm_params_free(m);
    for (int kind = 0; kind < 2; kind++)
        for (int use_long = 0; use_long < 2; use_long++) tlm_free(m->inv_freq[kind][use_long]);
    tlm_arena_release(m);
    tlm_free(m->distill_block);
    free(m);
}

const tlm_config *tlm_model_config(const tlm_model *m) { return &m->cfg; }

int64_t tlm_model_n_params(const tlm_model *m) { return m->n_params; }

int tlm_model_n_proj(const tlm_model *m) { return m->projs.n; }

tlm_status tlm_model_proj(const tlm_model *m, int p, tlm_proj_info *out) {
    if (p < 0 || p >= m->projs.n)
        return tlm_fail(TLM_EINVAL, "projection %d out of range [0, %d)", p, m->projs.n);
    out->role = m->projs.role[p];
    out->module = tlm_names_of(m->cfg.names)->proj[out->role];
    out->in = m->projs.in[p];
    out->out = m->projs.out[p];
    return TLM_OK;
}
