/* Gemma 2 and 3: four norms per layer. post_attention_layernorm is the norm
 * on the attention output here, not the MLP's input norm as in Llama. */
#include "model/layout.h"

const tlm_names_table tlm_names_gemma2 = {
    .embed = "model.embed_tokens", .final_norm = "model.norm", .lm_head = "lm_head",
    .norm = {[TLM_NORM_ATTN] = "input_layernorm", [TLM_NORM_ATTN_POST] = "post_attention_layernorm",
             [TLM_NORM_MLP] = "pre_feedforward_layernorm", [TLM_NORM_MLP_POST] = "post_feedforward_layernorm",
             [TLM_NORM_Q] = "self_attn.q_norm", [TLM_NORM_K] = "self_attn.k_norm"},
    .proj = {[TLM_PROJ_Q] = "self_attn.q_proj", [TLM_PROJ_K] = "self_attn.k_proj", [TLM_PROJ_V] = "self_attn.v_proj",
             [TLM_PROJ_O] = "self_attn.o_proj", [TLM_PROJ_GATE] = "mlp.gate_proj", [TLM_PROJ_UP] = "mlp.up_proj",
             [TLM_PROJ_DOWN] = "mlp.down_proj"},
};
