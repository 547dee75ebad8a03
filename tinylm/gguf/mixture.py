"""Which ggml type each tensor of an exported file gets: llama.cpp's file
types ("Q4_K_M", "Q8_0", "F16", ...) as its converter (F32/F16/BF16) and
`llama-quantize` (the quantized types) lay them out.

The rules are llama-quantize's (src/llama-quant.cpp, llama_tensor_get_type)
for the tensors tinylm's families have: only 2-D weights are quantized
(norms and biases stay F32); the output head (or the token embedding when
it is tied) gets Q6_K unless the file type is Q8_0, or Q8_0 when its row
length does not fit the type's block; attn_v (and a fused attn_qkv, which
llama-quantize treats as attn_v) and ffn_down get more bits in the first
and last eighth of the layers and every third layer between (Q4_K_M,
Q5_K_M); a row length that is not a multiple of 256 falls back to a 32-block
type (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0), and to
F16 when not even 32 divides it. Mixture-of-experts and Falcon-only rules
do not apply to these families.
"""
from __future__ import annotations

import dataclasses
import re

from tinylm.errors import UnsupportedError
from tinylm.gguf import ggml


@dataclasses.dataclass(frozen=True)
class FileType:
    name: str
    llama_ftype: int  # general.file_type (llama.h's LLAMA_FTYPE_*)
    default: str      # the ggml type most tensors get


FILE_TYPES = {ft.name: ft for ft in (
    FileType("F32", 0, "f32"), FileType("F16", 1, "f16"), FileType("BF16", 32, "bf16"),
    FileType("Q4_0", 2, "q4_0"), FileType("Q4_1", 3, "q4_1"), FileType("Q8_0", 7, "q8_0"),
    FileType("Q5_0", 8, "q5_0"), FileType("Q5_1", 9, "q5_1"), FileType("Q2_K", 10, "q2_K"),
    FileType("Q3_K_S", 11, "q3_K"), FileType("Q3_K_M", 12, "q3_K"), FileType("Q3_K_L", 13, "q3_K"),
    FileType("Q4_K_S", 14, "q4_K"), FileType("Q4_K_M", 15, "q4_K"), FileType("Q5_K_S", 16, "q5_K"),
    FileType("Q5_K_M", 17, "q5_K"), FileType("Q6_K", 18, "q6_K"),
)}
FLOAT_FILE_TYPES = ("F32", "F16", "BF16")
# llama-quantize's fallback when a row does not fit a 256-block type
_FALLBACK = {"q2_K": "q4_0", "q3_K": "q4_0", "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0"}


def file_type(name: str) -> FileType:
    try:
        return FILE_TYPES[name.upper()]
    except KeyError:
        raise UnsupportedError(f"GGUF file type {name!r} is not one tinylm writes; choose one of "
                               f"{', '.join(FILE_TYPES)}") from None


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for part in ("attn_qkv", "attn_v", "attn_k", "attn_q", "attn_output"):
        if f"{part}.weight" in name:
            return "attn_v" if part == "attn_qkv" else part
    for part in ("ffn_up", "ffn_gate", "ffn_down"):
        if part in name:
            return part
    return "other"


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def llama_order(name: str) -> tuple[int, str]:
    """llama.cpp's tensor order (llama_model_loader's weight_name_comparer):
    by layer (tensors outside the blocks first), then by name. llama-quantize
    walks and writes tensors in this order, so its per-category counters
    follow it."""
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def _quantizable(name: str, shape: tuple) -> bool:
    return len(shape) >= 2 and name.endswith("weight") and "_norm.weight" not in name


def tensor_types(ftype: str, tensors: list[tuple[str, tuple]], n_layers: int, *, n_gqa: int = 1,
                 output_type: str | None = None, embedding_type: str | None = None) -> dict[str, int]:
    """{GGUF tensor name: ggml type id} for tensors [(name, numpy shape)] (in
    any order: they are walked in llama_order). output_type
    and embedding_type override the head's and the embedding's types, as
    llama-quantize's --output-tensor-type and --token-embedding-type do."""
    ft = file_type(ftype)
    names = {n for n, _ in tensors}
    tied = "output.weight" not in names
    n_attn_v = sum(_category(n) == "attn_v" for n, _ in tensors)
    i_attn_v = i_down = 0
    out = {}
    for name, shape in sorted(tensors, key=lambda t: llama_order(t[0])):
        if not _quantizable(name, shape):
            out[name] = ggml.F32
            continue
        cols = shape[-1]
        if ft.name in FLOAT_FILE_TYPES:
            out[name] = ggml.by_name(ft.default).id
            continue
        t, cat = ft.default, _category(name)
        # llama-quantize applies these two overrides before any other rule, and without the fallback
        if cat == "token_embd" and embedding_type or cat == "output" and output_type:
            out[name] = ggml.by_name(embedding_type if cat == "token_embd" else output_type).id
            continue
        if cat == "output" or (tied and cat == "token_embd"):
            if output_type:
                t = output_type
            elif cols % ggml.by_name(t).block_elems:
                t = "q8_0"
            elif t != "q8_0":
                t = "q6_K"
        elif cat == "attn_v":
            if ft.name == "Q2_K":
                t = "q4_K" if n_gqa >= 4 else "q3_K"
            elif ft.name == "Q3_K_M":
                t = "q5_K" if i_attn_v < 2 else "q4_K"
            elif ft.name == "Q3_K_L":
                t = "q5_K"
            elif ft.name in ("Q4_K_M", "Q5_K_M") and _more_bits(i_attn_v, n_attn_v):
                t = "q6_K"
            elif ft.name == "Q4_K_S" and i_attn_v < 4:
                t = "q5_K"
            i_attn_v += 1
        elif cat == "ffn_down":
            i, n = i_down, n_layers
            if ft.name == "Q2_K":
                t = "q3_K"
            elif ft.name == "Q3_K_M":
                t = "q5_K" if i < n // 16 else "q4_K"
            elif ft.name == "Q3_K_L":
                t = "q5_K"
            elif ft.name in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
                t = "q6_K"
            elif ft.name == "Q4_K_S" and i < n // 8:
                t = "q5_K"
            i_down += 1
        elif cat == "attn_output":
            t = {"Q2_K": "q3_K", "Q3_K_M": "q4_K", "Q3_K_L": "q5_K"}.get(ft.name, t)
        gt = ggml.by_name(t)
        if cols % gt.block_elems:
            gt = ggml.by_name(_FALLBACK.get(gt.name, gt.name))
            if cols % gt.block_elems:
                gt = ggml.by_name("f16")
        out[name] = gt.id
    return out
