/* params.c: the model object, its Hugging Face-named parameter table, and the
 * planned blocks for parameters and gradients. */
#include "core/internal.h"
#include "model/model.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Bounds on config.json's dimensions, far above any model tinylm targets
 * (0.05B to 3B parameters) but low enough that every size derived from them
 * fits in 64 bits, so a hostile or corrupt config is refused here, before
 * anything is allocated, instead of overflowing or exhausting memory. */
#define MAX_VOCAB (INT64_C(1) << 24)        /* the largest vocabularies in use are ~256K */
#define MAX_WIDTH (INT64_C(1) << 20)        /* hidden_size, intermediate_size */
#define MAX_COUNT (INT64_C(1) << 12)        /* layers, heads, head_dim */
#define MAX_POSITION (INT64_C(1) << 31)     /* rope original_max_position_embeddings */
#define MAX_PARAMS (INT64_C(1) << 36)       /* 69B parameters, 275 GB of f32 */

/* Elements of the parameter block, each tensor rounded up to 16 floats as
 * allocate_base lays them out. The bounds above keep every term below 2^60. */
static int64_t param_numel(const tlm_config *c) {
    int64_t D = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int64_t QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
#define R16(x) (((x) + 15) & ~INT64_C(15))
    int64_t layer = R16(D) + R16(QD * D) + 2 * R16(KD * D) + R16(D * QD) + R16(D) + 2 * R16(F * D) + R16(D * F);
    if (c->qkv_bias) layer += R16(QD) + 2 * R16(KD);
    if (c->o_bias) layer += R16(D);
    if (c->mlp_bias) layer += 2 * R16(F) + R16(D);
    int64_t total = R16(V * D) * (c->tie_word_embeddings ? 1 : 2) + R16(D) + c->n_layers * layer;
#undef R16
    return total;
}

tlm_status tlm_config_check(const tlm_config *c, uint64_t *param_bytes) {
#define REQUIRE(cond, ...) do { if (!(cond)) return tlm_fail(TLM_EINVAL, __VA_ARGS__); } while (0)
#define IN_RANGE(field, name, max)                                                                          \
    REQUIRE(c->field > 0 && c->field <= (max), "\"%s\" must be in [1, %lld], got %lld", name, (long long)(max), \
            (long long)c->field)
    REQUIRE(c->arch == TLM_ARCH_LLAMA || c->arch == TLM_ARCH_QWEN2, "unknown architecture id %d", (int)c->arch);
    IN_RANGE(vocab_size, "vocab_size", MAX_VOCAB);
    IN_RANGE(hidden_size, "hidden_size", MAX_WIDTH);
    IN_RANGE(intermediate_size, "intermediate_size", MAX_WIDTH);
    IN_RANGE(n_layers, "num_hidden_layers", MAX_COUNT);
    IN_RANGE(n_heads, "num_attention_heads", MAX_COUNT);
    IN_RANGE(n_kv_heads, "num_key_value_heads", MAX_COUNT);
    IN_RANGE(head_dim, "head_dim", MAX_COUNT);
    REQUIRE(c->n_heads % c->n_kv_heads == 0, "\"num_key_value_heads\" (%lld) must divide \"num_attention_heads\" (%lld)",
            (long long)c->n_kv_heads, (long long)c->n_heads);
    REQUIRE(c->head_dim % 2 == 0, "\"head_dim\" must be even, got %lld", (long long)c->head_dim);
    /* !(x > 0) also refuses NaN; isfinite refuses what would make RoPE or
     * RMSNorm inf or NaN everywhere */
    REQUIRE(c->rms_norm_eps > 0.0f && isfinite(c->rms_norm_eps), "\"rms_norm_eps\" must be finite and > 0, got %g",
            (double)c->rms_norm_eps);
    REQUIRE(c->rope_theta > 0.0f && isfinite(c->rope_theta), "\"rope_theta\" must be finite and > 0, got %g",
            (double)c->rope_theta);
    REQUIRE(c->weights == TLM_WEIGHTS_F32 || c->weights == TLM_WEIGHTS_NF4 || c->weights == TLM_WEIGHTS_INT8,
            "unknown weight storage id %d", (int)c->weights);
    REQUIRE(c->rope_type == TLM_ROPE_DEFAULT || c->rope_type == TLM_ROPE_LINEAR || c->rope_type == TLM_ROPE_LLAMA3,
            "unknown rope type id %d", (int)c->rope_type);
    if (c->rope_type != TLM_ROPE_DEFAULT)
        REQUIRE(c->rope_factor > 0.0f && isfinite(c->rope_factor), "rope_scaling \"factor\" must be finite and > 0");
    if (c->rope_type == TLM_ROPE_LLAMA3)
        REQUIRE(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0.0f &&
                    isfinite(c->rope_high_freq_factor) && c->rope_original_max_position > 0 &&
                    c->rope_original_max_position <= MAX_POSITION,
                "llama3 rope_scaling needs finite high_freq_factor > low_freq_factor > 0 and "
                "original_max_position_embeddings in [1, %lld]", (long long)MAX_POSITION);
    int64_t numel = param_numel(c);
    REQUIRE(numel <= MAX_PARAMS, "these dimensions make %lld parameters, more than the %lld tinylm allows "
            "(vocab_size %lld, hidden_size %lld, intermediate_size %lld, num_hidden_layers %lld)",
            (long long)numel, (long long)MAX_PARAMS, (long long)c->vocab_size, (long long)c->hidden_size,
            (long long)c->intermediate_size, (long long)c->n_layers);
#undef IN_RANGE
#undef REQUIRE
    if (param_bytes) *param_bytes = (uint64_t)numel * sizeof(float);
    return TLM_OK;
}

/* Appends one parameter slot (data set by the caller); returns its index,
 * or -1 when out of memory. The table grows; slots are addressed by index,
 * so growing never invalidates anything held outside. */
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
    m->grads_planned = 0;
    return (int)m->n_params++;
}

static const int PROJ_WEIGHT_ROLES[] = {P_WQ, P_WK, P_WV, P_WO, P_WG, P_WU, P_WD};

/* Gives the projection weights quantized storage (frozen); the rest of the
 * base gets one f32 block. */
static int allocate_base(tlm_model *m) {
    if (m->cfg.weights != TLM_WEIGHTS_F32)
        for (int64_t l = 0; l < m->cfg.n_layers; l++)
            for (size_t r = 0; r < sizeof PROJ_WEIGHT_ROLES / sizeof *PROJ_WEIGHT_ROLES; r++) {
                tlm_param_slot *p = &m->params[m->layer_params[l][PROJ_WEIGHT_ROLES[r]]];
                p->qw = calloc(1, sizeof *p->qw);
                if (!p->qw || tlm_qweight_alloc(p->qw, m->cfg.weights, p->shape[0], p->shape[1]) < 0) return -1;
                p->trainable = 0;
            }
    for (int64_t i = 0; i < m->n_params; i++)
        if (!m->params[i].qw) m->param_numel += (m->params[i].numel + 15) & ~(int64_t)15; /* 64-byte aligned */
    m->param_block = tlm_alloc((size_t)m->param_numel * sizeof(float));
    if (!m->param_block) return -1;
    for (int64_t i = 0, at = 0; i < m->n_params; i++) {
        if (m->params[i].qw) continue;
        m->params[i].data = m->param_block + at;
        at += (m->params[i].numel + 15) & ~(int64_t)15;
    }
    return 0;
}

static int build_table(tlm_model *m) {
    const tlm_config *c = &m->cfg;
    int64_t D = c->hidden_size, F = c->intermediate_size;
    int64_t QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    char name[128];
    m->embed = tlm_model_add_param(m, "model.embed_tokens.weight", c->vocab_size, D, 1);
    for (int64_t l = 0; l < c->n_layers; l++) {
        int *lp = m->layer_params[l];
        for (int r = 0; r < P_LAYER_ROLES; r++) lp[r] = -1;
#define ADD(role, suffix, rows, cols, decay)                                              \
        snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix);      \
        if ((lp[role] = tlm_model_add_param(m, name, rows, cols, decay)) < 0) return -1
        ADD(P_IN_NORM, "input_layernorm.weight", D, 0, 0);
        ADD(P_WQ, "self_attn.q_proj.weight", QD, D, 1);
        if (c->qkv_bias) { ADD(P_BQ, "self_attn.q_proj.bias", QD, 0, 0); }
        ADD(P_WK, "self_attn.k_proj.weight", KD, D, 1);
        if (c->qkv_bias) { ADD(P_BK, "self_attn.k_proj.bias", KD, 0, 0); }
        ADD(P_WV, "self_attn.v_proj.weight", KD, D, 1);
        if (c->qkv_bias) { ADD(P_BV, "self_attn.v_proj.bias", KD, 0, 0); }
        ADD(P_WO, "self_attn.o_proj.weight", D, QD, 1);
        if (c->o_bias) { ADD(P_BO, "self_attn.o_proj.bias", D, 0, 0); }
        ADD(P_POST_NORM, "post_attention_layernorm.weight", D, 0, 0);
        ADD(P_WG, "mlp.gate_proj.weight", F, D, 1);
        if (c->mlp_bias) { ADD(P_BG, "mlp.gate_proj.bias", F, 0, 0); }
        ADD(P_WU, "mlp.up_proj.weight", F, D, 1);
        if (c->mlp_bias) { ADD(P_BU, "mlp.up_proj.bias", F, 0, 0); }
        ADD(P_WD, "mlp.down_proj.weight", D, F, 1);
        if (c->mlp_bias) { ADD(P_BD, "mlp.down_proj.bias", D, 0, 0); }
#undef ADD
    }
    m->final_norm = tlm_model_add_param(m, "model.norm.weight", D, 0, 0);
    m->lm_head = c->tie_word_embeddings ? m->embed : tlm_model_add_param(m, "lm_head.weight", c->vocab_size, D, 1);
    return m->embed >= 0 && m->final_norm >= 0 && m->lm_head >= 0 ? 0 : -1;
}

tlm_status tlm_model_create(const tlm_config *cfg, tlm_model **out) {
    *out = NULL;
    TLM_TRY(tlm_config_check(cfg, NULL));
    tlm_model *m = calloc(1, sizeof *m);
    if (!m) return tlm_fail(TLM_ENOMEM, "out of memory creating the model");
    m->cfg = *cfg;
    m->active = -1;
    m->training = 1;
    m->layer_params = calloc((size_t)cfg->n_layers, sizeof *m->layer_params);
    m->inv_freq = tlm_alloc((size_t)cfg->head_dim / 2 * sizeof(float));
    if (!m->layer_params || !m->inv_freq || build_table(m) < 0) goto oom;
    if (allocate_base(m) < 0) {
        tlm_model_free(m);
        return tlm_fail(TLM_ENOMEM, "out of memory for the model's parameters (%.1f GB)",
                        (double)param_numel(cfg) * sizeof(float) / 1e9);
    }
    tlm_rope_inv_freq(m->inv_freq, cfg->head_dim, cfg->rope_theta, cfg->rope_type, cfg->rope_factor,
                      cfg->rope_low_freq_factor, cfg->rope_high_freq_factor, cfg->rope_original_max_position);
    *out = m;
    return TLM_OK;
oom:
    tlm_model_free(m);
    return tlm_fail(TLM_ENOMEM, "out of memory creating the model");
}

void tlm_model_free(tlm_model *m) {
    if (!m) return;
    if (m->params)
        for (int64_t i = 0; i < m->n_params; i++) {
            free(m->params[i].name);
            if (m->params[i].qw) tlm_qweight_free(m->params[i].qw);
            free(m->params[i].qw);
        }
    free(m->params);
    free(m->layer_params);
    tlm_free(m->inv_freq);
    tlm_free(m->param_block);
    tlm_free(m->grad_block);
    tlm_free(m->adam_m);
    tlm_free(m->adam_v);
    tlm_free(m->head_pending);
    tlm_lora_free_all(m);
    tlm_arena_release(m);
    free(m);
}

const tlm_config *tlm_model_config(const tlm_model *m) { return &m->cfg; }

int64_t tlm_model_n_params(const tlm_model *m) { return m->n_params; }

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
    out->grad = tlm_pgrad(m, (int)i);
    out->adam_m = (m->adam_m && p->grad_offset >= 0) ? m->adam_m + p->grad_offset : NULL;
    out->adam_v = (m->adam_v && p->grad_offset >= 0) ? m->adam_v + p->grad_offset : NULL;
    out->trainable = p->trainable;
    out->decay = p->decay;
    return TLM_OK;
}

/* Changing the trainable set re-plans the gradient block at the next
 * backward and drops optimizer moments (they no longer line up). */
tlm_status tlm_model_set_trainable(tlm_model *m, int64_t i, int trainable) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    if (trainable && m->params[i].qw)
        return tlm_fail(TLM_EINVAL, "%s is stored quantized and cannot be trained (train an adapter on it)",
                        m->params[i].name);
    if (m->params[i].trainable != !!trainable) {
        m->params[i].trainable = !!trainable;
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
    m->grad_block = m->adam_m = m->adam_v = m->head_pending = NULL;
    m->grad_numel = 0;
    m->have_loss = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        tlm_param_slot *p = &m->params[i];
        p->grad_offset = p->trainable ? m->grad_numel : -1;
        if (p->trainable) m->grad_numel += (p->numel + 15) & ~(int64_t)15;
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
        return TLM_OK;
    }
    float *scratch = malloc((size_t)tlm_qweight_blocks(p->qw) * sizeof(float));
    if (!scratch) return tlm_fail(TLM_ENOMEM, "out of memory quantizing %s", p->name);
    tlm_qweight_set(p->qw, src, scratch);
    free(scratch);
    m->have_loss = 0;
    return TLM_OK;
}

tlm_status tlm_model_get_weight(tlm_model *m, int64_t i, float *dst) {
    if (i < 0 || i >= m->n_params) return tlm_fail(TLM_EINVAL, "parameter index %lld out of range", (long long)i);
    tlm_param_slot *p = &m->params[i];
    if (!p->qw) {
        memcpy(dst, p->data, (size_t)p->numel * sizeof(float));
        return TLM_OK;
    }
    float *scratch = malloc((size_t)tlm_qweight_blocks(p->qw) * sizeof(float));
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
