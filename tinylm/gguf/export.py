"""A tinylm.Model (and its LoRA adapters) to GGUF files llama.cpp runs.

Metadata and tensor names are llama.cpp's converter's (tinylm.gguf.arch);
each tensor's type follows the file type as llama-quantize lays it out
(tinylm.gguf.mixture); quantization is llama.cpp's reference quantizer
(tinylm.gguf.ggml); tensors go out in llama-quantize's order (by layer, then
name). Blocks are not requantized when they need not be: a projection the
model holds as ggml blocks of the type the file wants is written as it is,
and a tensor whose f32 value still equals the source GGUF file's decoded one
is copied from that file, so GGUF -> tinylm -> GGUF keeps every block.
"""
from __future__ import annotations

import os

import numpy as np

from tinylm.gguf import arch, ggml, mixture
from tinylm.gguf.file import GGUFFile, write_gguf

QUANTIZATION_VERSION = 2  # ggml's GGML_QNT_VERSION (general.quantization_version)


def _groups(plan) -> dict[str, list]:
    """GGUF tensor name -> the plan entries that fill it."""
    groups: dict[str, list] = {}
    for e in plan:
        groups.setdefault(e.gguf, []).append(e)
    return groups


def _stored_blocks(model, entries, index, ggml_type):
    """The GGUF tensor's rows as the model's own ggml blocks, when every
    entry is a projection stored as blocks of ggml_type; else None."""
    pieces = []
    for e in entries:
        _, _, _, _, quantized, t = model._table[index[e.hf]]
        if not quantized or t != ggml_type:
            return None
        pieces.append(np.frombuffer(model._core.weight_blocks(index[e.hf])[1], dtype=np.uint8)
                      .reshape(e.hf_shape[0], -1))
    e = entries[0]
    if len(entries) == 1 and e.rows is None:
        return pieces[0]
    out = np.empty((e.n_rows, pieces[0].shape[1]), dtype=np.uint8)
    for e, p in zip(entries, pieces):
        out[e.rows] = p
    return out


class _Source:
    """The GGUF file the model was loaded from, if still there: a tensor
    whose f32 value equals the file's decoded one is copied, not requantized."""

    def __init__(self, model):
        path = model.gguf_source
        self.file = GGUFFile(path) if path and os.path.isfile(path) else None

    def unchanged(self, name: str, ggml_type: int, values: np.ndarray):
        info = self.file.tensors.get(name) if self.file else None
        if info is None or info.ggml_type != ggml_type or info.shape != values.shape:
            return None
        raw = self.file.raw(name)
        return raw if np.array_equal(ggml.dequantize(ggml_type, raw, values.size), values.reshape(-1)) else None

    def close(self):
        if self.file:
            self.file.close()


def _file_types(model, names_shapes, quant, output_type, embedding_type) -> dict[str, int]:
    config = model.config
    if quant is not None:
        heads = config["num_attention_heads"]
        kv = config.get("num_key_value_heads") or heads
        return mixture.tensor_types(quant, names_shapes, config["num_hidden_layers"], n_gqa=heads // kv,
                                    output_type=output_type, embedding_type=embedding_type)
    if not model.gguf_types:
        raise ValueError("save_gguf: give quant= (F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, ...); quant=None keeps the "
                         "types of the GGUF file a model was loaded from, and this one was not")
    return {name: model.gguf_types.get(name, ggml.F32) for name, _ in names_shapes}


def _layout(model, quant, output_type, embedding_type):
    """(plan groups, extra tensors, GGUF shapes, names in llama.cpp's order,
    GGUF name -> ggml type) of the file save_gguf(quant=...) writes."""
    config = model.config
    params = [(name, tuple(shape)) for name, shape, *_ in model._core.params() if ".lora_" not in name]
    groups = _groups(arch.tensor_plan(config, params))
    extras = arch.extra_tensors(config)
    shapes = {g: tuple(reversed(entries[0].gguf_shape)) for g, entries in groups.items()}
    shapes.update({name: value.shape for name, value in extras.items()})
    names = sorted(shapes, key=mixture.llama_order)
    types = _file_types(model, [(n, shapes[n]) for n in names], quant, output_type, embedding_type)
    for name in extras:
        types[name] = ggml.F32
    return groups, extras, shapes, names, types


def param_types(model, quant, *, output_type=None, embedding_type=None) -> dict[str, int]:
    """{Hugging Face parameter name: the ggml type save_gguf(quant=...) stores
    it as} (a tensor the converter fuses or permutes keeps its rows' type)."""
    groups, _, _, _, types = _layout(model, quant, output_type, embedding_type)
    return {e.hf: types[name] for name, entries in groups.items() for e in entries}


def tensor_writes(model, quant, *, output_type=None, embedding_type=None, merged=False):
    """([(gguf name, ggml type, numpy shape, data callable)], source)."""
    groups, extras, shapes, names, types = _layout(model, quant, output_type, embedding_type)
    index = {name: i for i, (name, *_r) in enumerate(model._table)}
    source = _Source(model)

    def produce(name):
        t = types[name]
        if name in extras:
            return np.ascontiguousarray(extras[name], dtype=np.float32)
        entries = groups[name]
        blocks = None if merged else _stored_blocks(model, entries, index, t)
        if blocks is not None:
            return blocks
        weights = {e.hf: model._merged_param(e.hf) if merged else model.weight(e.hf) for e in entries}
        values = arch.to_gguf(entries, weights)[name]
        kept = source.unchanged(name, t, values)
        if kept is not None:
            return kept
        if t == ggml.F32:
            return np.ascontiguousarray(values)
        return ggml.quantize(t, values.reshape(-1, values.shape[-1]))

    return [(n, types[n], shapes[n], (lambda n=n: produce(n))) for n in names], source


def save_model(model, path: str, quant, tokenizer_metadata: list, *, output_type=None, embedding_type=None,
               merged=False, name: str | None = None) -> None:
    """Model.save_gguf (see there)."""
    config = model.config
    writes, source = tensor_writes(model, quant, output_type=output_type, embedding_type=embedding_type,
                                   merged=merged)
    try:
        meta = list(arch.gguf_metadata(config).items())
        meta[1:1] = [("general.type", "model"),
                     ("general.name", name or os.path.basename(str(config.get("_name_or_path") or "").rstrip("/"))
                      or os.path.splitext(os.path.basename(path))[0])]
        if quant is not None:
            meta.append(("general.file_type", np.uint32(mixture.file_type(quant).llama_ftype)))
        elif model.gguf_file_type is not None:
            meta.append(("general.file_type", np.uint32(model.gguf_file_type)))
        meta.append(("general.quantization_version", np.uint32(QUANTIZATION_VERSION)))
        meta += list(tokenizer_metadata)  # (key, value) or (key, value, (type, element type))
        write_gguf(path, meta, writes)
    finally:
        source.close()


def save_adapter(model, path: str, name: str, *, dtype: str = "F32") -> None:
    """LoRA adapter `name` as llama.cpp's GGUF adapter (--lora) for the base
    as its GGUF file holds it: the file the model was loaded from (q, k and
    v may be fused there in attn_qkv), else save_gguf's. For each adapted
    GGUF tensor W, "<W>.lora_a" [r, in] and ".lora_b" [out, r], B's rows in
    the order W's are. A tensor that holds several adapted weights gets one
    pair: their A's stacked, each B in its own rows and columns, zeros
    elsewhere, which adds each weight's B A to its rows alone. llama.cpp
    scales a pair by adapter.lora.alpha / r (r: lora_b's ne[0]); where PEFT's
    scale (alpha / r of the module, or alpha / sqrt(r) with rsLoRA) differs
    from that, the ratio is folded into that module's B (exactly 1 for a
    plain config)."""
    config = model.config
    params = [(n, tuple(s)) for n, s, *_ in model._core.params() if ".lora_" not in n]
    # the source file's tensor names say which weights it fuses
    plan = {e.hf: e for e in arch.tensor_plan(config, params, tensors=model.gguf_types or None)}
    t = ggml.by_name(dtype)
    pairs = model.adapter_pairs(name)
    alpha = pairs[0][3] * pairs[0][1].shape[0]
    groups: dict[str, list] = {}
    for base, a, b, scale in pairs:
        groups.setdefault(plan[base].gguf, []).append((plan[base], a, b, scale))
    writes = []
    for gguf, members in groups.items():
        rank = sum(a.shape[0] for _, a, _, _ in members)
        lora_a = np.concatenate([a for _, a, _, _ in members]).astype(np.float32)
        lora_b = np.zeros((members[0][0].n_rows, rank), dtype=np.float32)  # [out, r]
        col = 0
        for e, a, b, scale in members:
            ratio = np.float32(scale * rank / alpha)
            lora_b[slice(None) if e.rows is None else e.rows, col:col + a.shape[0]] = b if ratio == 1 else b * ratio
            col += a.shape[0]
        for suffix, m in (("lora_a", lora_a), ("lora_b", lora_b)):
            writes.append((f"{gguf}.{suffix}", t.id, m.shape,
                           m if t.id == ggml.F32 else (lambda m=m: ggml.quantize(t.id, m))))
    writes.sort(key=lambda w: mixture.llama_order(w[0]))
    meta = [("general.architecture", arch.gguf_metadata(config)["general.architecture"]),
            ("general.type", "adapter"), ("general.name", name), ("adapter.type", "lora"),
            ("adapter.lora.alpha", np.float32(alpha)),
            ("general.quantization_version", np.uint32(QUANTIZATION_VERSION))]
    write_gguf(path, meta, writes)
