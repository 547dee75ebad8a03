/* Llama's names, shared by the families that copied its modules: Llama,
 * Qwen2, Qwen3 (q_norm/k_norm), SmolLM3 and Gemma 1. */
#include "model/layout.h"

const tlm_names_table tlm_names_llama = {
    .embed = "model.embed_tokens", .final_norm = "model.norm", .lm_head = "lm_head",
    .norm = {[TLM_NORM_ATTN] = "input_layernorm", [TLM_NORM_MLP] = "post_attention_layernorm",
             [TLM_NORM_Q] = "self_attn.q_norm", [TLM_NORM_K] = "self_attn.k_norm"},
    .proj = {[TLM_PROJ_Q] = "self_attn.q_proj", [TLM_PROJ_K] = "self_attn.k_proj", [TLM_PROJ_V] = "self_attn.v_proj",
             [TLM_PROJ_O] = "self_attn.o_proj", [TLM_PROJ_GATE] = "mlp.gate_proj", [TLM_PROJ_UP] = "mlp.up_proj",
             [TLM_PROJ_DOWN] = "mlp.down_proj"},
};
