"""Hugging Face safetensors checkpoints: one file or shards with an index.

The C reader validates each file's header before any tensor is read; this
module checks the checkpoint against the model's parameter table (names,
shapes, completeness) and names the file and tensor in every error.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from tinylm import _core
from tinylm.atomic import atomic_write_text, remove_stale
from tinylm.errors import FormatError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}
WRITE_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
_ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}
# Tensors some writers include that carry no parameters of ours.
_IGNORABLE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


def weight_files(directory: str) -> tuple[list[str], dict[str, str] | None]:
    """The safetensors files of a model folder and, when sharded, the index's
    tensor -> file map. Every listed shard must exist."""
    single, index = os.path.join(directory, SINGLE), os.path.join(directory, INDEX)
    if os.path.exists(single):
        return [single], None
    if not os.path.exists(index):
        others = [f for f in ("pytorch_model.bin", "model.bin") if os.path.exists(os.path.join(directory, f))]
        hint = f" (found {others[0]}; tinylm reads safetensors only)" if others else ""
        raise FileNotFoundError(f"{directory}: no {SINGLE} or {INDEX}{hint}")
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map must map tensor names to file names")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise FormatError(f"{index}: not a valid safetensors index: {exc}") from None
    files = []
    for shard in dict.fromkeys(weight_map.values()):
        if os.path.basename(shard) != shard:
            raise FormatError(f"{index}: shard name {shard!r} must be a file name in the model folder")
        path = os.path.join(directory, shard)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: shard listed in {index} is missing")
        files.append(path)
    return files, weight_map


def load_weights(core: "_core.Model", directory: str) -> None:
    """Fills the core model's parameters from the folder's safetensors."""
    table = {name: (i, shape, quantized) for i, (name, shape, _, _, quantized, _) in enumerate(core.params())}
    tied = "lm_head.weight" not in table
    files, weight_map = weight_files(directory)
    loaded: dict[str, str] = {}
    for path in files:
        with _core.SafetensorsFile(path) as st:
            for name, dtype, shape in st.tensors():
                if name not in table:
                    if _IGNORABLE.search(name) or (tied and name == "lm_head.weight"):
                        continue
                    raise FormatError(f"{path}: tensor \"{name}\" is not a parameter of this architecture")
                if weight_map is not None and weight_map.get(name) != os.path.basename(path):
                    raise FormatError(f"{path}: tensor \"{name}\" is not where {INDEX} says "
                                      f"({weight_map.get(name)!r})")
                if name in loaded:
                    raise FormatError(f"{path}: tensor \"{name}\" also appears in {loaded[name]}")
                index, expected, quantized = table[name]
                if tuple(shape) != tuple(expected):
                    raise FormatError(f"{path}: tensor \"{name}\" has shape {list(shape)} but config.json "
                                      f"implies {list(expected)}")
                if dtype not in FLOAT_DTYPES:
                    raise FormatError(f"{path}: tensor \"{name}\" has dtype {dtype}; "
                                      f"expected one of {sorted(FLOAT_DTYPES)}")
                if quantized:  # read f32, then the core quantizes it
                    staging = np.empty(expected, dtype=np.float32)
                    st.read_into(name, staging)
                    core.set_weight(index, staging)
                else:
                    st.read_into(name, core.param(index))
                loaded[name] = path
    missing = [name for name in table if name not in loaded]
    if missing:
        where = ", ".join(os.path.basename(f) for f in files)
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FormatError(f"{directory}: tensor \"{missing[0]}\"{more} is missing from {where}")


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?i?B)\s*", size, re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size like \"2GB\" or \"500MB\"")
    units = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return int(float(match.group(1)) * units[match.group(2).upper()])


def write_safetensors(path: str, entries: list, metadata: dict) -> None:
    """_core.write_safetensors (atomic: a temporary file renamed over path),
    after removing the temporary files a killed writer of path left."""
    directory, name = os.path.split(os.path.abspath(path))
    remove_stale(directory, name)
    _core.write_safetensors(path, entries, metadata)


def save_weights(named: list[tuple[str, np.ndarray]], directory: str, dtype: str = "float32",
                 max_shard_size: int | str = "5GB") -> list[str]:
    """Writes tensors as HF safetensors (sharded past max_shard_size) and
    returns the file names. Each file is written atomically; stale weight
    files of an earlier save in the folder are removed afterwards."""
    if dtype not in WRITE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(WRITE_DTYPES)}, got {dtype!r}")
    st_dtype = WRITE_DTYPES[dtype]
    itemsize = _ITEMSIZE[st_dtype]
    limit = _parse_size(max_shard_size)
    shards: list[list[tuple[str, np.ndarray]]] = [[]]
    size = 0
    for name, array in named:
        nbytes = array.size * itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append((name, array))
        size += nbytes
    os.makedirs(directory, exist_ok=True)
    if len(shards) == 1:
        names = [SINGLE]
    else:
        names = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    for file_name, shard in zip(names, shards):
        entries = [(name, st_dtype, tuple(array.shape), np.ascontiguousarray(array, dtype=np.float32))
                   for name, array in shard]
        write_safetensors(os.path.join(directory, file_name), entries, {"format": "pt"})
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(a.size * itemsize for _, a in named)},
            "weight_map": {name: file_name for file_name, shard in zip(names, shards) for name, _ in shard},
        }
        atomic_write_text(os.path.join(directory, INDEX), json.dumps(index, indent=2, sort_keys=True) + "\n")
    stale = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")
    for existing in os.listdir(directory):
        if stale.match(existing) and existing not in names and not (len(shards) > 1 and existing == INDEX):
            os.unlink(os.path.join(directory, existing))
    return names
