"""What the GGUF families share.

Writing: a `Spec` is one HF config as a family's writer sees it: the raw
dict, tinylm's descriptor of it (validated, the family's defaults applied),
and the GGUF arch. `put` records a key with its GGUF type (U32, F32, bool,
str, a list of bool), `lose` a field the file cannot carry (what llama.cpp
will assume instead), `refuse` one whose file llama.cpp would not run as
this model at all (an UnsupportedError: gguf_metadata, gguf_losses and
save_gguf all raise it). `text_model` writes the keys llama.cpp's
converter writes for most text models (TextModel.set_gguf_parameters in
conversion/base.py).

Reading: `Meta` is one file's metadata and tensor inventory with typed
getters whose errors name the key. A missing key takes llama.cpp's default
(llama_model_base::load_hparams, src/llama-model.cpp) or, where llama.cpp
requires the key, is a FormatError."""
from __future__ import annotations

import numpy as np

from tinylm import families
from tinylm.errors import FormatError, UnsupportedError
from tinylm.families.fields import LAYER_SLIDING, ROPE_TYPES, Fields, short

U32, F32 = np.uint32, np.float32  # GGUF's UINT32 and FLOAT32; bool, str and lists as Python's
DEFAULT_THETA = 10000.0  # llama.cpp's rope.freq_base when the key is absent
ROPE_NAMES = {v: k for k, v in ROPE_TYPES.items()}
_REQUIRED = object()

# HF module (under model.layers.N for the per-layer ones) -> GGUF tensor
# (under blk.N), as gguf-py's tensor_mapping.py maps the names these
# families use. A family changes what it maps otherwise.
NAMES = {
    "model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


# ----------------------------------------------------------------- writing
class Spec:
    """An HF config on its way into GGUF keys."""

    def __init__(self, config: dict, source: str, arch: str):
        self.config, self.arch = config, arch
        self.fields = Fields(config, source)
        self.d = families.descriptor(config, source)
        self.keys: dict = {}
        self.losses: list[str] = []

    def put(self, suffix: str, value) -> None:
        self.keys[f"{self.arch}.{suffix}"] = value

    def lose(self, field: str, why: str) -> None:
        self.losses.append(f"{field}: {why}")

    def int(self, key: str, default: int) -> int:
        """A raw config field the descriptor does not hold (a context length)."""
        return self.fields.int(key, default)

    def rope(self, which: int = 0) -> dict:
        """The descriptor's rope of full-attention (0) or sliding (1) layers."""
        return self.d["rope"][which]

    def sliding(self) -> list[bool]:
        return [bool(flags & LAYER_SLIDING) for flags in self.d["layer_flags"]]

    def refuse(self, what: str, why: str) -> None:
        raise UnsupportedError(f"{self.fields.source}: {what} cannot be written to a GGUF {self.arch} model ({why})")

    def refuse_rope(self, allowed: tuple[str, ...]) -> None:
        """A rope kind the arch's file has no way to say is an error, not a loss:
        the model would be computed at other positions."""
        for rope in self.d["rope"]:
            kind = ROPE_NAMES[rope["type"]]
            if kind not in allowed:
                self.refuse(f"rope type {kind!r}", f"it carries {', '.join(allowed)}")


def text_model(s: Spec, context_default: int, head_dim_key: bool) -> None:
    """The keys of TextModel.set_gguf_parameters for a dense model.
    head_dim_key: the config class has a head_dim field (AutoConfig then
    always gives one), so key_length and value_length are written; otherwise
    only when the config itself gives head_dim."""
    d = s.d
    s.put("block_count", U32(d["n_layers"]))
    s.put("context_length", U32(s.int("max_position_embeddings", context_default)))
    s.put("embedding_length", U32(d["hidden_size"]))
    s.put("feed_forward_length", U32(d["intermediate_size"]))
    s.put("attention.head_count", U32(d["n_heads"]))
    s.put("attention.head_count_kv", U32(d["n_kv_heads"]))
    linear_scaling(s, always=True)
    s.put("rope.freq_base", F32(s.rope()["theta"]))
    s.put("attention.layer_norm_rms_epsilon", F32(d["norm_eps"]))
    if head_dim_key or s.config.get("head_dim") is not None:
        head_lengths(s)


def head_lengths(s: Spec) -> None:
    s.put("attention.key_length", U32(s.d["head_dim"]))
    s.put("attention.value_length", U32(s.d["head_dim"]))


def linear_scaling(s: Spec, always: bool) -> None:
    """Linear RoPE scaling, which llama.cpp reads for every arch. The
    converter writes it only for TextModel families (always=True); for the
    others it is written here too, since leaving it out would change the model."""
    rope = s.rope()
    if ROPE_NAMES[rope["type"]] == "linear" and (always or rope["factor"] != 1.0):
        s.put("rope.scaling.type", "linear")
        s.put("rope.scaling.factor", F32(rope["factor"]))


def theta_if_not_default(s: Spec) -> None:
    """For the families whose converter writes no rope.freq_base: written
    when llama.cpp's default (10000) would be wrong."""
    if s.rope()["theta"] != DEFAULT_THETA:
        s.put("rope.freq_base", F32(s.rope()["theta"]))


def swa_pattern(s: Spec, default_pattern: int) -> None:
    """The per-layer sliding pattern, written (as llama.cpp reads it: one
    bool per layer) only where llama.cpp's default pattern for the arch
    (set_swa_pattern: layer l slides when l % n < n - 1) would differ."""
    default = [l % default_pattern < default_pattern - 1 for l in range(s.d["n_layers"])]
    if s.sliding() != default:
        s.put("attention.sliding_window_pattern", s.sliding())


def attn_scale_loss(s: Spec, assumed: float, why: str) -> None:
    """llama.cpp fixes the attention scale per arch; a config that asks for
    another one is computed differently there."""
    wanted = s.d["attn_scale"]
    if not np.isclose(wanted, assumed, rtol=1e-6):
        s.lose("query_pre_attn_scalar", f"the file cannot carry the attention scale {short(wanted)}; "
                                        f"llama.cpp uses {short(assumed)} ({why})")


def activation_loss(s: Spec, act: int, name: str) -> None:
    if s.d["act"] != act:
        s.lose("hidden_act", f"a GGUF {s.arch} model computes {name}")


# ----------------------------------------------------------------- reading
def number32(value) -> float:
    """A FLOAT32 value as the shortest decimal that reads back to it (1e-06,
    not 9.999999974752427e-07): llama.cpp reads these keys as float32."""
    return float(str(np.float32(value)))


class Meta:
    """One GGUF file's metadata (values as Python or numpy scalars, arrays as
    lists or numpy arrays), its tensor inventory (name -> GGUF shape, ne[0]
    first) and the values of the small tensors that hold configuration
    (rope_freqs, rope_factors_*)."""

    def __init__(self, meta: dict, tensors: dict, values: dict | None, source: str, arch: str):
        self.meta, self.tensors, self.values, self.source, self.arch = meta, tensors, values or {}, source, arch

    def key(self, suffix: str) -> str:
        return f"{self.arch}.{suffix}"

    def has_key(self, suffix: str) -> bool:
        return self.key(suffix) in self.meta

    def _value(self, suffix: str, default):
        key = self.key(suffix)
        if key in self.meta:
            return key, self.meta[key]
        if default is _REQUIRED:
            raise FormatError(f"{self.source}: missing required metadata key {key!r}")
        return key, None

    def int(self, suffix: str, default=_REQUIRED, minimum: int = 1) -> int:
        key, value = self._value(suffix, default)
        return default if value is None else self._int(key, value, minimum)

    def _int(self, key: str, value, minimum: int) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise FormatError(f"{self.source}: {key} must be an integer >= {minimum}, got {short(value)}")
        return int(value)

    def layer_int(self, suffix: str, default=_REQUIRED) -> int:
        """A key llama.cpp reads as one value or one per layer
        (get_key_or_arr); tinylm computes the same value on every layer."""
        key, value = self._value(suffix, default)
        if value is None:
            return default
        if isinstance(value, (list, tuple, np.ndarray)):
            values = [self._int(key, v, 1) for v in value]
            if len(set(values)) != 1:
                raise UnsupportedError(f"{self.source}: {key} differs between layers ({short(values)}); "
                                       f"tinylm computes one value for every layer")
            return values[0]
        return self._int(key, value, 1)

    def float(self, suffix: str, default=_REQUIRED) -> float:
        key, value = self._value(suffix, default)
        if value is None:
            return default
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise FormatError(f"{self.source}: {key} must be a number, got {short(value)}")
        return number32(value)

    def str(self, suffix: str, default=_REQUIRED) -> str:
        key, value = self._value(suffix, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise FormatError(f"{self.source}: {key} must be a string, got {short(value)}")
        return value

    def shape(self, name: str) -> tuple | None:
        shape = self.tensors.get(name)
        return None if shape is None else tuple(int(n) for n in shape)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def tensor_values(self, name: str) -> np.ndarray:
        """The float32 contents of a configuration tensor (rope_freqs, ...)."""
        if name not in self.values:
            raise ValueError(f"{self.source}: hf_config needs the values of tensor {name!r} (pass values=)")
        return np.asarray(self.values[name], dtype=np.float32).reshape(-1)

    def layer_flags(self, suffix: str, default_pattern: int) -> list[bool] | None:
        """Sliding layers from attention.sliding_window_pattern: a bool (or
        0/1) per layer, a period n (layer l slides when l % n < n - 1; 0:
        every layer), or, absent, the arch's default period."""
        n_layers = self.int("block_count")
        key = self.key(suffix)
        value = self.meta.get(key, default_pattern)
        if isinstance(value, (list, tuple, np.ndarray)):
            flags = [bool(v) for v in value]
            if len(flags) != n_layers:
                raise FormatError(f"{self.source}: {key} has {len(flags)} entries for {n_layers} layers")
            return flags
        n = self.int(suffix, default_pattern, minimum=0)
        return [n == 0 or l % n < n - 1 for l in range(n_layers)]


def read_common(m: Meta, eps_key: str, eps_field: str, architecture: str, model_type: str) -> dict:
    """The fields every family reads alike. Dimensions come from the keys;
    the vocabulary from token_embd's rows."""
    hidden = m.int("embedding_length")
    heads = m.layer_int("attention.head_count")
    kv_heads = m.layer_int("attention.head_count_kv", heads)
    if hidden % heads and not m.has_key("attention.key_length"):
        raise FormatError(f"{m.source}: {m.key('embedding_length')}={hidden} is not a multiple of "
                          f"{m.key('attention.head_count')}={heads} and {m.key('attention.key_length')} is missing")
    head_dim = m.int("attention.key_length", hidden // heads)
    if m.int("attention.value_length", head_dim) != head_dim:
        raise UnsupportedError(f"{m.source}: {m.key('attention.value_length')} differs from the key length "
                               f"{head_dim}; tinylm computes equal head sizes")
    embd = m.shape("token_embd.weight")
    if embd is None or len(embd) != 2 or embd[0] != hidden:
        raise FormatError(f"{m.source}: tensor 'token_embd.weight' must have shape [{hidden}, vocab], got {embd}")
    down = m.shape("blk.0.ffn_down.weight")
    config = {
        "architectures": [architecture], "model_type": model_type,
        "vocab_size": embd[1], "hidden_size": hidden,
        "intermediate_size": m.layer_int("feed_forward_length", down[0] if down else _REQUIRED),
        "num_hidden_layers": m.int("block_count"), "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "head_dim": head_dim, "max_position_embeddings": m.int("context_length"),
        eps_field: m.float(eps_key), "tie_word_embeddings": not m.has("output.weight"),
    }
    for gguf_key, field in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        value = m.meta.get(f"tokenizer.ggml.{gguf_key}")
        if value is not None:
            config[field] = int(value)
    # said even when absent: the config classes' defaults (Phi-3's 32000, SmolLM3's 128004) may lie
    # past a small vocabulary, where transformers refuses them
    pad = m.meta.get("tokenizer.ggml.padding_token_id")
    config["pad_token_id"] = None if pad is None else int(pad)
    return config


def qkv_bias(m: Meta) -> bool:
    """q, k and v carry biases (separate, or fused in attn_qkv)."""
    return m.has("blk.0.attn_q.bias") or m.has("blk.0.attn_qkv.bias")


def rms_common(m: Meta, architecture: str, model_type: str) -> dict:
    return read_common(m, "attention.layer_norm_rms_epsilon", "rms_norm_eps", architecture, model_type)


def rotary_dim(m: Meta, head_dim: int) -> int:
    return m.int("rope.dimension_count", head_dim)


def partial_factor(rotary: int, head_dim: int) -> float:
    """partial_rotary_factor such that transformers' int(head_dim * factor)
    gives `rotary` back."""
    factor = rotary / head_dim
    while int(head_dim * factor) < rotary:
        factor = float(np.nextafter(factor, 1.0))
    return factor


def rope_parameters(m: Meta, theta_default: float = DEFAULT_THETA) -> dict:
    """rope_parameters of the full-attention layers from rope.freq_base and
    rope.scaling.*: llama.cpp divides positions by rope.scaling.factor unless
    the type is yarn or longrope (yarn tinylm does not compute; longrope is
    Phi-3's, from its tensors)."""
    params = {"rope_type": "default", "rope_theta": m.float("rope.freq_base", theta_default)}
    kind = m.str("rope.scaling.type", "linear")
    factor = m.float("rope.scaling.factor", m.float("rope.scale_linear", 0.0))
    if kind == "yarn":
        raise UnsupportedError(f"{m.source}: {m.key('rope.scaling.type')} 'yarn' is not supported; tinylm computes "
                               f"linear, llama3 and longrope RoPE scaling")
    if kind in ("linear", "none") and factor not in (0.0, 1.0):
        params.update(rope_type="linear", factor=factor)
    return params
