"""A GGUF file's architecture metadata and tensor names <-> a Hugging Face
config.json and parameter names, both ways, for the families tinylm
computes (archs/: llama, qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3,
stablelm, smollm3). The facts are llama.cpp's: convert_hf_to_gguf.py for
what a file holds, src/llama-model.cpp for what a missing key means.

    config  = hf_config(meta, tensors, source, values)   # GGUF -> config.json dict
    keys    = gguf_metadata(config)                       # config -> the arch's keys
    lost    = gguf_losses(config)                         # what those keys cannot say
    entries = tensor_plan(config, params)                 # parameter <-> tensor
    extras  = extra_tensors(config)                       # rope_freqs, rope_factors_*

Conventions: `meta` maps key -> value (scalars as Python or numpy scalars,
arrays as lists or numpy arrays). `tensors` maps GGUF tensor name -> GGUF
shape in ne order (fastest dimension first: a matrix is [cols, rows]).
`values` holds the float32 contents of the configuration tensors
(CONFIG_TENSORS present in the file). gguf_metadata's values carry their
GGUF type: numpy.uint32 (UINT32), numpy.float32 (FLOAT32), bool, str, list
of bool (ARRAY of BOOL). Tokenizer keys and general.name / file_type are not
part of it. Arrays of tensor data are float32 in PyTorch's row-major order
(plan.py)."""
from __future__ import annotations

from tinylm import families
from tinylm.errors import FormatError, UnsupportedError
from tinylm.gguf import plan
from tinylm.gguf.archs import BY_ARCH, BY_HF, base
from tinylm.gguf.plan import Entry, to_gguf

__all__ = ["ARCHITECTURES", "CONFIG_TENSORS", "Entry", "hf_config", "gguf_metadata", "gguf_losses",
           "tensor_plan", "extra_tensors", "to_hf", "to_gguf", "check_tensors"]

ARCHITECTURES = tuple(sorted(BY_ARCH))
CONFIG_TENSORS = tuple(sorted({name for family in BY_ARCH.values() for name in family.CONFIG_TENSORS}))


def _family_of_file(meta: dict, source: str):
    arch = meta.get("general.architecture")
    if arch is None:
        raise FormatError(f"{source}: missing required metadata key 'general.architecture'")
    if not isinstance(arch, str):
        raise FormatError(f"{source}: general.architecture must be a string, got {base.short(arch)}")
    if arch not in BY_ARCH:
        raise UnsupportedError(f"{source}: GGUF architecture {arch!r} is not supported; tinylm supports "
                               f"{', '.join(ARCHITECTURES)}")
    return BY_ARCH[arch]


def _family_of_config(config: dict, source: str):
    name = families.architecture_of(config, source)
    if name not in BY_HF:
        raise UnsupportedError(f"{source}: architecture {name} has no GGUF mapping; tinylm maps "
                               f"{', '.join(sorted(BY_HF))}")
    return BY_HF[name]


def hf_config(meta: dict, tensors: dict, source: str = "GGUF", values: dict | None = None) -> dict:
    """The config.json (transformers 5 spelling: rope_parameters) of the
    model a GGUF file holds. What the file does not say is what llama.cpp
    assumes (the family modules say which)."""
    family = _family_of_file(meta, source)
    config = family.read(base.Meta(meta, tensors, values, source, family.ARCH))
    families.descriptor(config, source)  # what tinylm cannot compute fails here, naming the file
    return config


def _spec(config: dict, source: str):
    family = _family_of_config(config, source)
    s = base.Spec(config, source, family.ARCH)
    family.write(s)
    return family, s


def gguf_metadata(config: dict, source: str = "config.json") -> dict:
    """The architecture keys for an HF config, as convert_hf_to_gguf.py
    writes them, with general.architecture. Where the converter writes a
    value llama.cpp then computes wrongly (Phi-2's FFN length and KV heads,
    Phi-3's given attention factor) the true one is written, and keys the
    converter leaves out are added where llama.cpp's default would be wrong
    (a rope base, linear scaling, a sliding-layer pattern)."""
    _, s = _spec(config, source)
    return {"general.architecture": s.arch, **s.keys}


def gguf_losses(config: dict, source: str = "config.json") -> list[str]:
    """The config fields a GGUF file of this model cannot carry, each with
    what llama.cpp computes instead ("field: why"); empty when it carries all."""
    return _spec(config, source)[1].losses


def tensor_plan(config: dict, params, source: str = "config.json", tensors: dict | None = None) -> list[Entry]:
    """One Entry per HF parameter the file holds, for `params`: (name, shape)
    pairs of the model's parameters (e.g. [(n, s) for n, s, *_ in
    model._core.params()]). Parameters the file does not keep (an untied
    Gemma LM head) have no entry; one it cannot hold is an UnsupportedError.
    tensors: when reading, the file's inventory (a file may hold q, k, v
    fused in attn_qkv); when writing, None (separate, as the converter)."""
    family = _family_of_config(config, source)
    return plan.plan(family, families.descriptor(config, source), params, source, tensors)


def extra_tensors(config: dict, source: str = "config.json") -> dict:
    """The configuration tensors the converter adds (float32, 1-D):
    rope_freqs.weight for Llama 3 rope scaling, rope_factors_long/short.weight
    for Phi-3's LongRoPE."""
    family, s = _spec(config, source)
    return family.extra(s)


def to_hf(entries: list[Entry], read) -> dict:
    """{hf name: float32 array} with read(gguf name) -> the tensor's float32
    values (PyTorch order)."""
    cache = {}
    out = {}
    for e in entries:
        if e.gguf not in cache:
            cache[e.gguf] = read(e.gguf)
        out[e.hf] = e.to_hf(cache[e.gguf])
    return out


def check_tensors(config: dict, entries: list[Entry], tensors: dict, source: str = "GGUF") -> None:
    """FormatError for a planned tensor missing or of another shape,
    UnsupportedError for a tensor the model does not use."""
    plan.check(_family_of_config(config, source), entries, tensors, source)
