"""A tinylm.Model from a GGUF file: the configuration from its metadata
(tinylm.gguf.arch), each tensor through the architecture's plan (llama.cpp's
converter undone: row permutations, fused q/k/v, stacked per-head norms,
Gemma's 1 + w norms), and the storage chosen by what the file holds.

A file whose projection weights are quantized (Q4_K_M, Q8_0, ...) keeps
them as the file's ggml blocks in memory, frozen, dequantized tile by tile
before each GEMM (quant "gguf": train LoRA adapters on it, QLoRA-style);
dequantize=True loads every weight as f32 instead, trainable (the file's
rounding stays in the weights), and quant="nf4"/"int8" requantizes the
projections. Embeddings, norms and the output head are f32 in every case.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from tinylm.gguf import arch, ggml
from tinylm.gguf.file import GGUFFile

FLOAT_TYPES = (ggml.F32, ggml.F16, ggml.BF16)


def _f32(f: GGUFFile, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows of tensor `name` (its bytes, [n, row_bytes]) decoded to float32."""
    info = f.tensors[name]
    per_row = info.ne[0] if len(info.ne) > 1 else 1
    return ggml.dequantize(info.ggml_type, np.ascontiguousarray(rows), rows.shape[0] * per_row)


def _config_values(f: GGUFFile) -> dict:
    """The float32 contents of the configuration tensors (rope_freqs, ...)."""
    return {name: _f32(f, name, f.rows(name)) for name in arch.CONFIG_TENSORS if name in f.tensors}


def load_model(cls, path: str, *, quant: str | None = None, dequantize: bool = False):
    """cls.from_pretrained for a .gguf path (see Model.from_pretrained)."""
    with GGUFFile(path) as f:
        inventory = {name: info.ne for name, info in f.tensors.items()}
        config = arch.hf_config(f.metadata, inventory, path, _config_values(f))
        if isinstance(f.metadata.get("general.name"), str):
            config["_name_or_path"] = f.metadata["general.name"]  # what an export names the model again
        # with ggml-block storage the projections take no memory until they are
        # set, so this model says which parameters are projections for free
        model = cls(config, source=path, quant="gguf")
        params = [(name, tuple(shape)) for name, shape, *_ in model._core.params()]
        plan = arch.tensor_plan(config, params, path, tensors=inventory)
        arch.check_tensors(config, plan, inventory, path)
        projections = {name for name, _, _, _, quantized, _ in model._table if quantized}
        keep_blocks = (quant is None and not dequantize and
                       any(f.tensors[e.gguf].ggml_type not in FLOAT_TYPES for e in plan if e.hf in projections))
        if not keep_blocks:
            if quant is None and any(f.tensors[e.gguf].ggml_type not in FLOAT_TYPES for e in plan):
                warnings.warn(f"{path}: quantized weights loaded as f32 (dequantize=True): they keep the file's "
                              "rounding", stacklevel=3)
            del model
            model = cls(config, source=path, quant=quant)
        index = {name: i for i, (name, *_r) in enumerate(model._table)}
        for e in plan:
            rows = f.rows(e.gguf)
            rows = rows if e.rows is None else rows[e.rows]
            i = index[e.hf]
            if keep_blocks and e.hf in projections:
                model._core.set_weight_blocks(i, f.tensors[e.gguf].ggml_type, np.ascontiguousarray(rows))
            else:
                w = _f32(f, e.gguf, rows).reshape(e.hf_shape)
                model._core.set_weight(i, w - np.float32(e.shift) if e.shift else w)
        model._refresh_table()
        model.gguf_source = os.path.abspath(path)
        model.gguf_types = {e.gguf: f.tensors[e.gguf].ggml_type for e in plan}
        model.gguf_file_type = f.metadata.get("general.file_type")
    return model
