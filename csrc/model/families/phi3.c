/* Phi-3 (3.5, 4-mini): Llama's layout with q, k, v fused into qkv_proj and
 * gate, up into gate_up_proj (in that order along the output). */
#include "model/layout.h"

const tlm_names_table tlm_names_phi3 = {
    .embed = "model.embed_tokens", .final_norm = "model.norm", .lm_head = "lm_head",
    .norm = {[TLM_NORM_ATTN] = "input_layernorm", [TLM_NORM_MLP] = "post_attention_layernorm"},
    .proj = {[TLM_PROJ_QKV] = "self_attn.qkv_proj", [TLM_PROJ_O] = "self_attn.o_proj",
             [TLM_PROJ_GATE_UP] = "mlp.gate_up_proj", [TLM_PROJ_DOWN] = "mlp.down_proj"},
};
