/* layout.c: the roles a config gives each layer and their dimensions. */
#include "model/layout.h"
#include "ops/ops.h" /* tlm_norm_kind */

#include <stddef.h>

const tlm_names_table *tlm_names_of(tlm_names names) {
    switch (names) {
    case TLM_NAMES_GEMMA2: return &tlm_names_gemma2;
    case TLM_NAMES_PHI: return &tlm_names_phi;
    case TLM_NAMES_PHI3: return &tlm_names_phi3;
    case TLM_NAMES_STABLELM: return &tlm_names_stablelm;
    case TLM_NAMES_LLAMA: return &tlm_names_llama;
    default: return NULL;
    }
}

static void add(tlm_proj_list *pl, tlm_proj_role role, int64_t in, int64_t out) {
    pl->role[pl->n] = role;
    pl->in[pl->n] = in;
    pl->out[pl->n] = out;
    pl->index[role] = pl->n++;
    if (in > pl->max_in) pl->max_in = in;
    if (in * out > pl->max_elems) pl->max_elems = in * out;
}

void tlm_layout_projections(const tlm_config *c, tlm_proj_list *pl) {
    int64_t D = c->hidden_size, F = c->intermediate_size;
    int64_t QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    pl->n = 0;
    pl->max_in = pl->max_elems = 0;
    for (int r = 0; r < TLM_PROJ_ROLES; r++) pl->index[r] = -1;
    if (c->fused_qkv) {
        add(pl, TLM_PROJ_QKV, D, QD + 2 * KD);
    } else {
        add(pl, TLM_PROJ_Q, D, QD);
        add(pl, TLM_PROJ_K, D, KD);
        add(pl, TLM_PROJ_V, D, KD);
    }
    add(pl, TLM_PROJ_O, QD, D);
    if (!c->gated) {
        add(pl, TLM_PROJ_UP, D, F); /* fc1 */
    } else if (c->fused_gate_up) {
        add(pl, TLM_PROJ_GATE_UP, D, 2 * F);
    } else {
        add(pl, TLM_PROJ_GATE, D, F);
        add(pl, TLM_PROJ_UP, D, F);
    }
    add(pl, TLM_PROJ_DOWN, F, D);
}

int tlm_layout_proj_bias(const tlm_config *c, tlm_proj_role role) {
    switch (role) {
    case TLM_PROJ_Q: case TLM_PROJ_K: case TLM_PROJ_V: case TLM_PROJ_QKV: return c->qkv_bias;
    case TLM_PROJ_O: return c->o_bias;
    default: return c->mlp_bias;
    }
}

int tlm_layout_has_norm(const tlm_config *c, tlm_norm_role r) {
    switch (r) {
    case TLM_NORM_ATTN: return 1;
    case TLM_NORM_MLP: return !c->parallel_residual;
    case TLM_NORM_ATTN_POST: case TLM_NORM_MLP_POST: return c->sandwich_norms;
    case TLM_NORM_Q: case TLM_NORM_K: return c->qk_norm != TLM_QK_NORM_NONE;
    default: return 0;
    }
}

int tlm_layout_norm_bias(const tlm_config *c, tlm_norm_role r) {
    if (!tlm_layout_has_norm(c, r) || c->norm_kind != TLM_NORM_LAYER) return 0;
    return r == TLM_NORM_Q || r == TLM_NORM_K ? c->qk_norm_bias : c->norm_bias;
}

int64_t tlm_layout_norm_groups(const tlm_config *c, tlm_norm_role r) {
    if (c->qk_norm != TLM_QK_NORM_PER_HEAD) return 1;
    return r == TLM_NORM_Q ? c->n_heads : r == TLM_NORM_K ? c->n_kv_heads : 1;
}

int64_t tlm_layout_norm_width(const tlm_config *c, tlm_norm_role r) {
    return r == TLM_NORM_Q || r == TLM_NORM_K ? c->head_dim : c->hidden_size;
}
