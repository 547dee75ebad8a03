"""SmolLM3, the converter's SmolLM3Model (a LlamaModel): Llama's keys and
permutation. The file says nothing of which layers skip RoPE: llama.cpp
fixes every 4th (n_no_rope_layer_step), and has no sliding window."""
from tinylm.families.fields import ACTIVATIONS, LAYER_NO_ROPE
from tinylm.gguf.archs import base, llama

ARCH = "smollm3"
HF = ("SmolLM3ForCausalLM", "smollm3")
NAMES = base.NAMES
PERMUTE_QK = True
DROP = ()
CONFIG_TENSORS = llama.CONFIG_TENSORS
CONTEXT = 32768  # SmolLM3Config's max_position_embeddings
NO_ROPE_STEP = 4  # llama.cpp's llama_model_smollm3::load_arch_hparams


def no_rope_layers(n_layers: int) -> list[int]:
    """SmolLM3's no_rope_layers (1: RoPE) as llama.cpp computes them."""
    return [int((l + 1) % NO_ROPE_STEP != 0) for l in range(n_layers)]


def write(s):
    s.refuse_rope(("default", "linear", "llama3"))
    llama.rope_dimension(s)
    base.text_model(s, CONTEXT, head_dim_key=False)
    s.put("vocab_size", base.U32(s.d["vocab_size"]))
    flags = [int(not flags & LAYER_NO_ROPE) for flags in s.d["layer_flags"]]
    if flags != no_rope_layers(s.d["n_layers"]):
        s.lose("no_rope_layers", f"llama.cpp skips RoPE on every {NO_ROPE_STEP}th layer "
                                 f"({no_rope_layers(s.d['n_layers'])}), not {flags}")
    if any(s.sliding()):
        s.lose("sliding_window", "llama.cpp's smollm3 has no sliding-window attention")
    base.activation_loss(s, ACTIVATIONS["silu"], "SiLU")


extra = llama.extra


def read(m) -> dict:
    c = base.rms_common(m, *HF)
    c["rope_parameters"] = llama.llama_rope(m, c["head_dim"])
    if not m.has_key("attention.key_length"):  # SmolLM3Config has no head_dim
        del c["head_dim"]
    c.update(hidden_act="silu", attention_bias=base.qkv_bias(m), mlp_bias=m.has("blk.0.ffn_gate.bias"),
             no_rope_layers=no_rope_layers(c["num_hidden_layers"]), no_rope_layer_interval=NO_ROPE_STEP,
             use_sliding_window=False)
    return c
