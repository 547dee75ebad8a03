"""SmolLM3: Llama where some layers skip RoPE: no_rope_layers[l] == 0 (by
default every no_rope_layer_interval-th layer)."""
from tinylm.families import base

ARCHITECTURES = {"SmolLM3ForCausalLM": "smollm3"}


def descriptor(f, arch, quant):
    d = base.descriptor(f, arch, quant)
    flags = f.get("no_rope_layers")
    if flags is None:
        interval = f.int("no_rope_layer_interval", 4)
        flags = [int((l + 1) % interval != 0) for l in range(d["n_layers"])]
    base.no_rope_layers(f, d, flags)
    # before layer_types existed: with use_sliding_window, the NoPE layers are windowed
    default = None
    if f.bool("use_sliding_window") and f.get("sliding_window") is not None:
        default = ["full_attention" if use_rope else "sliding_attention" for use_rope in flags]
    base.layer_types(f, d, default)
    return d
