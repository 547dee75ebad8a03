"""ggml's tensor types, as the C core knows them (csrc/quant/ggml_*.c): one
table, read from the core, so each type's id, name and block geometry are
said once. Names are ggml's ("q4_K", "f16"); lookups ignore case."""
from __future__ import annotations

import dataclasses

import numpy as np

from tinylm import _core
from tinylm.errors import UnsupportedError


@dataclasses.dataclass(frozen=True)
class GGMLType:
    id: int
    name: str
    block_elems: int
    block_bytes: int
    can_dequantize: bool
    can_quantize: bool

    def row_bytes(self, n: int) -> int:
        return n // self.block_elems * self.block_bytes


TYPES = {row[0]: GGMLType(*row) for row in _core.ggml_types()}
_BY_NAME = {t.name.upper(): t for t in TYPES.values()}


def by_name(name: str) -> GGMLType:
    """The type called `name` ("Q4_K", "q8_0", "F16", ...)."""
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise UnsupportedError(f"{name!r} is not a ggml tensor type tinylm knows; known: "
                               f"{', '.join(sorted(t.name for t in TYPES.values()))}") from None


def by_id(type_id: int) -> GGMLType:
    try:
        return TYPES[type_id]
    except KeyError:
        raise UnsupportedError(f"ggml type id {type_id} is not one tinylm knows") from None


F32, F16, BF16 = (by_name(n).id for n in ("f32", "f16", "bf16"))


def dequantize(type_id: int, data, n: int) -> np.ndarray:
    """float32 [n] from n elements of ggml blocks (llama.cpp's dequantization,
    bit for bit)."""
    return _core.ggml_dequantize(type_id, data, n)


def quantize(type_id: int, x: np.ndarray) -> np.ndarray:
    """uint8 [rows * row_bytes]: the rows of x [rows, n] as ggml blocks, by
    llama.cpp's reference quantizer (no importance matrix)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return _core.ggml_quantize(type_id, x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x)
