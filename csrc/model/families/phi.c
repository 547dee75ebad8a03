/* Phi-2: one input norm feeding attention and the MLP in parallel, an
 * attention output called dense, a plain MLP fc1 -> fc2. */
#include "model/layout.h"

const tlm_names_table tlm_names_phi = {
    .embed = "model.embed_tokens", .final_norm = "model.final_layernorm", .lm_head = "lm_head",
    .norm = {[TLM_NORM_ATTN] = "input_layernorm", [TLM_NORM_Q] = "self_attn.q_layernorm",
             [TLM_NORM_K] = "self_attn.k_layernorm"},
    .proj = {[TLM_PROJ_Q] = "self_attn.q_proj", [TLM_PROJ_K] = "self_attn.k_proj", [TLM_PROJ_V] = "self_attn.v_proj",
             [TLM_PROJ_O] = "self_attn.dense", [TLM_PROJ_UP] = "mlp.fc1", [TLM_PROJ_DOWN] = "mlp.fc2"},
};
