/* config_check.c: tlm_config_check, every field of a block descriptor in
 * range before anything is sized from it. Messages name the Hugging Face
 * field the value came from. */
#include "core/internal.h"
#include "model/layout.h"
#include "ops/ops.h"

#include <math.h>

/* Bounds on config.json's dimensions, far above any model tinylm targets
 * (0.05B to 3B parameters) but low enough that every size derived from them
 * fits in 64 bits, so a hostile or corrupt config is refused here, before
 * anything is allocated, instead of overflowing or exhausting memory. */
#define MAX_VOCAB (INT64_C(1) << 24)        /* the largest vocabularies in use are ~256K */
#define MAX_WIDTH (INT64_C(1) << 20)        /* hidden_size, intermediate_size */
#define MAX_COUNT (INT64_C(1) << 12)        /* layers, heads, head_dim */
#define MAX_POSITION (INT64_C(1) << 31)     /* rope original_max_position_embeddings */
#define MAX_PARAMS (INT64_C(1) << 36)       /* 69B parameters, 275 GB of f32 */

#define R16(x) (((x) + 15) & ~INT64_C(15))

/* Elements of the parameter block, each tensor rounded up to 16 floats as
 * params.c lays them out (an upper bound: quantized weights live apart).
 * The bounds above keep every term below 2^60. */
static int64_t param_numel(const tlm_config *c) {
    int64_t D = c->hidden_size, V = c->vocab_size, layer = 0;
    tlm_proj_list pl;
    tlm_layout_projections(c, &pl);
    for (int p = 0; p < pl.n; p++) {
        layer += R16(pl.in[p] * pl.out[p]);
        if (tlm_layout_proj_bias(c, pl.role[p])) layer += R16(pl.out[p]);
    }
    for (int r = 0; r < TLM_NORM_ROLES; r++)
        if (tlm_layout_has_norm(c, (tlm_norm_role)r))
            layer += tlm_layout_norm_groups(c, (tlm_norm_role)r) * R16(tlm_layout_norm_width(c, (tlm_norm_role)r)) *
                     (1 + tlm_layout_norm_bias(c, (tlm_norm_role)r));
    int64_t head = c->tie_word_embeddings ? 0 : R16(V * D);
    int64_t final_norm = R16(D) * (1 + (c->norm_kind == TLM_NORM_LAYER && c->norm_bias));
    return R16(V * D) + head + (c->lm_head_bias ? R16(V) : 0) + final_norm + c->n_layers * layer;
}

#define REQUIRE(cond, ...) do { if (!(cond)) return tlm_fail(TLM_EINVAL, __VA_ARGS__); } while (0)
#define FINITE_POSITIVE(x, name) \
    REQUIRE((x) > 0.0f && isfinite(x), "\"%s\" must be finite and > 0, got %g", name, (double)(x))
#define FINITE_NONNEGATIVE(x, name) \
    REQUIRE((x) >= 0.0f && isfinite(x), "\"%s\" must be finite and >= 0, got %g", name, (double)(x))

static tlm_status check_rope(const tlm_rope *r, const char *kind, int64_t R) {
    REQUIRE(r->type >= TLM_ROPE_DEFAULT && r->type <= TLM_ROPE_LONGROPE, "unknown rope type id %d (%s layers)",
            (int)r->type, kind);
    REQUIRE(r->theta > 0.0f && isfinite(r->theta), "\"rope_theta\" must be finite and > 0, got %g (%s layers)",
            (double)r->theta, kind);
    if (r->type == TLM_ROPE_LINEAR || r->type == TLM_ROPE_LLAMA3)
        REQUIRE(r->factor > 0.0f && isfinite(r->factor), "rope scaling \"factor\" (%s layers) must be finite and > 0",
                kind);
    if (r->type == TLM_ROPE_LLAMA3)
        REQUIRE(r->high_freq_factor > r->low_freq_factor && r->low_freq_factor > 0.0f && isfinite(r->high_freq_factor) &&
                    r->original_max_position > 0 && r->original_max_position <= MAX_POSITION,
                "llama3 rope scaling needs finite high_freq_factor > low_freq_factor > 0 and "
                "original_max_position_embeddings in [1, %lld]", (long long)MAX_POSITION);
    if (r->type == TLM_ROPE_LONGROPE) {
        REQUIRE(R / 2 <= TLM_MAX_ROPE_PAIRS, "longrope supports at most %d rotary pairs, the config has %lld",
                TLM_MAX_ROPE_PAIRS, (long long)(R / 2));
        REQUIRE(r->original_max_position > 0 && r->original_max_position <= MAX_POSITION,
                "longrope needs original_max_position_embeddings in [1, %lld]", (long long)MAX_POSITION);
        for (int64_t i = 0; i < R / 2; i++)
            REQUIRE(r->short_factor[i] > 0.0f && isfinite(r->short_factor[i]) && r->long_factor[i] > 0.0f &&
                        isfinite(r->long_factor[i]),
                    "longrope short_factor and long_factor must be finite and > 0 (element %lld)", (long long)i);
    }
    REQUIRE(r->attention_factor > 0.0f && isfinite(r->attention_factor),
            "rope attention_factor must be finite and > 0, got %g", (double)r->attention_factor);
    return TLM_OK;
}

tlm_status tlm_config_check(const tlm_config *c, uint64_t *param_bytes) {
#define IN_RANGE(field, name, max)                                                                          \
    REQUIRE(c->field > 0 && c->field <= (max), "\"%s\" must be in [1, %lld], got %lld", name, (long long)(max), \
            (long long)c->field)
    REQUIRE(c->names >= 0 && c->names < TLM_NAMES_COUNT, "unknown naming scheme id %d", (int)c->names);
    IN_RANGE(vocab_size, "vocab_size", MAX_VOCAB);
    IN_RANGE(hidden_size, "hidden_size", MAX_WIDTH);
    IN_RANGE(intermediate_size, "intermediate_size", MAX_WIDTH);
    IN_RANGE(n_layers, "num_hidden_layers", MAX_COUNT);
    IN_RANGE(n_heads, "num_attention_heads", MAX_COUNT);
    IN_RANGE(n_kv_heads, "num_key_value_heads", MAX_COUNT);
    IN_RANGE(head_dim, "head_dim", MAX_COUNT);
    REQUIRE(c->n_layers <= TLM_MAX_LAYERS, "\"num_hidden_layers\" must be at most %d", TLM_MAX_LAYERS);
    REQUIRE(c->n_heads % c->n_kv_heads == 0, "\"num_key_value_heads\" (%lld) must divide \"num_attention_heads\" (%lld)",
            (long long)c->n_kv_heads, (long long)c->n_heads);
    if (c->rotary_dim == c->head_dim)
        REQUIRE(c->head_dim % 2 == 0, "\"head_dim\" must be even, got %lld", (long long)c->head_dim);
    REQUIRE(c->rotary_dim >= 0 && c->rotary_dim <= c->head_dim && c->rotary_dim % 2 == 0,
            "the rotary dimension (head_dim x partial_rotary_factor) must be even and in [0, head_dim], got %lld",
            (long long)c->rotary_dim);
    /* !(x > 0) also refuses NaN; isfinite refuses what would make a norm
     * or RoPE inf or NaN everywhere */
    REQUIRE(c->norm_kind == TLM_NORM_RMS || c->norm_kind == TLM_NORM_LAYER, "unknown norm kind id %d", c->norm_kind);
    FINITE_POSITIVE(c->norm_eps, c->norm_kind == TLM_NORM_RMS ? "rms_norm_eps" : "layer_norm_eps");
    REQUIRE(isfinite(c->norm_offset), "the norm weight offset must be finite");
    REQUIRE(c->resid_dropout >= 0.0f && c->resid_dropout < 1.0f, "\"resid_pdrop\" must be in [0, 1), got %g",
            (double)c->resid_dropout);
    REQUIRE(c->qk_norm >= TLM_QK_NORM_NONE && c->qk_norm <= TLM_QK_NORM_PER_HEAD, "unknown q/k norm id %d", c->qk_norm);
    REQUIRE(c->act >= TLM_ACT_SILU && c->act <= TLM_ACT_GELU, "unknown activation id %d", c->act);
    REQUIRE(c->gated || !c->fused_gate_up, "a fused gate_up projection needs a gated MLP");
    FINITE_POSITIVE(c->attn_scale, "attention scale (query_pre_attn_scalar or head_dim)");
    FINITE_NONNEGATIVE(c->attn_softcap, "attn_logit_softcapping");
    FINITE_NONNEGATIVE(c->final_softcap, "final_logit_softcapping");
    FINITE_POSITIVE(c->embed_scale, "embedding scale");
    REQUIRE(c->padding_idx >= -1 && c->padding_idx < c->vocab_size, "\"pad_token_id\" %lld is outside [0, %lld)",
            (long long)c->padding_idx, (long long)c->vocab_size);
    REQUIRE(c->weights == TLM_WEIGHTS_F32 || c->weights == TLM_WEIGHTS_NF4 || c->weights == TLM_WEIGHTS_INT8 ||
                c->weights == TLM_WEIGHTS_GGUF,
            "unknown weight storage id %d", (int)c->weights);
    int any_sliding = 0;
    for (int64_t l = 0; l < c->n_layers; l++) {
        REQUIRE(!(c->layer_flags[l] & ~(TLM_LAYER_SLIDING | TLM_LAYER_NO_ROPE)), "layer %lld has unknown flags 0x%x",
                (long long)l, c->layer_flags[l]);
        any_sliding |= c->layer_flags[l] & TLM_LAYER_SLIDING;
    }
    if (any_sliding)
        REQUIRE(c->sliding_window > 0 && c->sliding_window <= MAX_POSITION,
                "\"sliding_window\" must be in [1, %lld] when layer_types has sliding_attention layers, got %lld",
                (long long)MAX_POSITION, (long long)c->sliding_window);
    TLM_TRY(check_rope(&c->rope[0], "full-attention", c->rotary_dim));
    if (any_sliding) TLM_TRY(check_rope(&c->rope[1], "sliding-window", c->rotary_dim));
    int64_t numel = param_numel(c);
    REQUIRE(numel <= MAX_PARAMS, "these dimensions make %lld parameters, more than the %lld tinylm allows "
            "(vocab_size %lld, hidden_size %lld, intermediate_size %lld, num_hidden_layers %lld)",
            (long long)numel, (long long)MAX_PARAMS, (long long)c->vocab_size, (long long)c->hidden_size,
            (long long)c->intermediate_size, (long long)c->n_layers);
#undef IN_RANGE
    if (param_bytes) *param_bytes = (uint64_t)numel * sizeof(float);
    return TLM_OK;
}
