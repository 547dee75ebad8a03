"""GGUF files as Python sees them: metadata as plain values, tensors as
infos with views of their bytes. The C core (csrc/io/gguf.c) has validated
every field before anything here runs; this module only gives the values
their numpy shape, and writes through the C writer (atomic, streamed).

Shapes: GGUF lists dimensions in ggml's order, `ne[0]` the contiguous one,
so a matrix [rows, cols] in numpy (and Hugging Face) terms is ne = (cols,
rows). `TensorInfo.shape` is the numpy order; `ne` the file's.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable

import numpy as np

from tinylm import _core
from tinylm.errors import FormatError

# GGUF value types (csrc/tlm.h tlm_gguf_type).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_NUMPY = {UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16, INT16: np.int16, UINT32: np.uint32, INT32: np.int32,
          FLOAT32: np.float32, BOOL: np.bool_, UINT64: np.uint64, INT64: np.int64, FLOAT64: np.float64}
_TYPE_OF_DTYPE = {np.dtype(v): k for k, v in _NUMPY.items()}


def _block_elems(ggml_type: int) -> int:
    from tinylm.gguf import ggml  # ggml reads the core's type table; file.py stays importable without it
    return ggml.by_id(ggml_type).block_elems


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: int
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    offset: int          # in the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order (rows first)."""
        return tuple(reversed(self.ne))


class GGUFFile:
    """A GGUF file mapped read-only.

    >>> with GGUFFile("model.gguf") as f:
    ...     f.metadata["general.architecture"], f.tensors["token_embd.weight"].shape
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = _core.GGUFFile(self.path)
        self.version = self._file.version
        self.alignment = self._file.alignment
        self.metadata: dict = {}
        self.types: dict[str, tuple[int, int]] = {}  # key -> (type, element type)
        for key, vtype, elem, value in self._file.metadata():
            if vtype == ARRAY and elem != STRING:
                value = np.frombuffer(value, dtype=np.dtype(_NUMPY[elem]).newbyteorder("<"))
            self.metadata[key] = value
            self.types[key] = (vtype, elem)
        self.tensors: dict[str, TensorInfo] = {
            name: TensorInfo(name, ggml_type, tuple(ne), offset, nbytes)
            for name, ggml_type, ne, offset, nbytes in self._file.tensors()}

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes (uint8, read-only) as stored: a view into the
        mapping, valid after close()."""
        if name not in self.tensors:
            raise KeyError(f"{self.path}: no tensor named {name!r}")
        return np.frombuffer(self._file.raw(name), dtype=np.uint8)

    def rows(self, name: str) -> np.ndarray:
        """The bytes as [rows, row_bytes] (uint8): each row a run of whole
        blocks, so row permutations and slices act on quantized data too. A
        matrix's rows are its slowest dimension; a 1-D tensor of a float
        type has one row per element (a fused q/k/v bias splits by rows)."""
        info = self.tensors[name]
        raw = self.raw(name)
        if len(info.ne) == 1:
            n_rows = info.ne[0] if _block_elems(info.ggml_type) == 1 else 1
        else:
            n_rows = int(np.prod(info.ne[1:], dtype=np.int64))
        return raw.reshape(n_rows, raw.size // n_rows if n_rows else 0)

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)

    def require(self, key: str, kind: type | tuple = object):
        """metadata[key], or a FormatError naming the file and key."""
        if key not in self.metadata:
            raise FormatError(f"{self.path}: metadata key {key!r} is missing")
        value = self.metadata[key]
        if not isinstance(value, kind):
            raise FormatError(f"{self.path}: metadata key {key!r} has the wrong type ({type(value).__name__})")
        return value

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_gguf(path: str | os.PathLike) -> bool:
    """A file whose first four bytes are GGUF's magic."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def value_type(value) -> tuple[int, int]:
    """The (type, element type) a Python value is written as: numpy scalars
    and arrays keep their dtype; a Python int is uint32 (int32 if negative,
    64-bit past 32 bits), a float float32, as llama.cpp's converter writes
    counts and hyperparameters; lists take their elements' type."""
    if isinstance(value, (bool, np.bool_)):
        return BOOL, BOOL
    if isinstance(value, str):
        return STRING, STRING
    if isinstance(value, np.generic):
        t = _TYPE_OF_DTYPE[value.dtype]
        return t, t
    if isinstance(value, int):
        if 0 <= value < 2 ** 32:
            return UINT32, UINT32
        if -2 ** 31 <= value < 0:
            return INT32, INT32
        return (UINT64, UINT64) if value > 0 else (INT64, INT64)
    if isinstance(value, float):
        return FLOAT32, FLOAT32
    if isinstance(value, np.ndarray):
        return ARRAY, _TYPE_OF_DTYPE[value.dtype]
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return ARRAY, STRING
        if all(isinstance(v, (bool, np.bool_)) for v in value):
            return ARRAY, BOOL
        if all(isinstance(v, (int, np.integer)) for v in value):
            return ARRAY, INT32
        if all(isinstance(v, (int, float, np.number)) for v in value):
            return ARRAY, FLOAT32
    raise TypeError(f"no GGUF type for a value of type {type(value).__name__}")


def _payload(value, vtype: int, elem: int):
    if elem == STRING:
        return [value] if vtype == STRING else list(value)
    dtype = np.dtype(_NUMPY[elem]).newbyteorder("<")
    return np.ascontiguousarray(np.asarray(value, dtype=dtype).reshape(-1)).tobytes()


def write_gguf(path: str | os.PathLike, metadata: Iterable[tuple], tensors: Iterable[tuple], *,
               alignment: int = 32) -> None:
    """Writes a GGUF v3 file atomically.

    metadata: (key, value) or (key, value, (type, element type)) in file
    order; without types, value_type() picks them. tensors: (name,
    ggml_type, shape, data) with shape in numpy order and data a bytes-like
    of exactly the type's size, or a callable returning it (called in order
    while writing, so a model's tensors are converted one at a time)."""
    tensors = list(tensors)
    writer = _core.GGUFWriter(os.fspath(path), alignment)
    try:
        for entry in metadata:
            key, value = entry[0], entry[1]
            vtype, elem = entry[2] if len(entry) > 2 else value_type(value)
            writer.add_kv(key, vtype, elem, _payload(value, vtype, elem))
        for name, ggml_type, shape, _ in tensors:
            writer.add_tensor(name, tuple(reversed(tuple(shape))), ggml_type)
        for _, _, _, data in tensors:
            writer.write_tensor(data() if callable(data) else data)
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
