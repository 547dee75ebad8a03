"""Which GGUF tensor holds which HF parameter, and how.

Shapes: an Entry's hf_shape is PyTorch's (a matrix [out, in]); its
gguf_shape is GGUF's ne order, fastest dimension first (the same matrix
[in, out]). Arrays passed in and out here are row-major in PyTorch's order
(shape reversed(gguf_shape) for a GGUF tensor). A GGUF tensor's rows are
its slowest dimension: a matrix's rows are HF's rows, a 1-D tensor's rows
its elements. Quantized GGUF data is stored a row at a time, so every
transform here is a row permutation or selection (usable on quantized
rows as is) or, for 1-D float tensors only (GGUF keeps those F32), a shift:

    hf = gguf_rows[rows].reshape(hf_shape) - shift

rows is None for all rows in order. llama's q/k de-permutation is a
permutation; q, k and v read from a fused attn_qkv are row ranges of it (a
llama's q and k permuted within theirs); StableLM's per-head norms select
one row each of a stacked tensor; Gemma's norms are stored as 1 + w."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tinylm.errors import FormatError, UnsupportedError

_PER_HEAD = re.compile(r"(.*\.norms)\.(\d+)")


@dataclass(frozen=True, eq=False)
class Entry:
    """One HF parameter in one GGUF tensor."""
    hf: str
    hf_shape: tuple[int, ...]
    gguf: str
    gguf_shape: tuple[int, ...]
    rows: np.ndarray | None = None  # hf row r is gguf row rows[r]
    shift: float = 0.0  # hf = gguf - shift (1-D float tensors only)

    @property
    def n_rows(self) -> int:
        """The GGUF tensor's row count (its slowest dimension)."""
        return self.gguf_shape[-1]

    @property
    def f32(self) -> bool:
        """GGUF keeps this tensor F32 whatever the file type (the converter's
        rule: 1-D tensors and norms)."""
        return len(self.gguf_shape) == 1 or self.gguf.endswith("_norm.weight")

    def inverse_rows(self) -> np.ndarray | None:
        """Where rows is a permutation (llama's q/k): gguf row g is hf row
        inverse_rows()[g], so a writer permutes HF rows (quantized or not)
        with it."""
        return None if self.rows is None else np.argsort(self.rows)

    def to_hf(self, gguf: np.ndarray) -> np.ndarray:
        """This parameter from its GGUF tensor's (dequantized) values."""
        a = np.asarray(gguf, dtype=np.float32)
        if a.shape != tuple(reversed(self.gguf_shape)):
            raise FormatError(f"tensor {self.gguf!r}: got shape {list(reversed(a.shape))}, "
                              f"expected {list(self.gguf_shape)}")
        if self.rows is not None:
            a = a.reshape(self.n_rows, -1)[self.rows]
        a = a.reshape(self.hf_shape)
        return a - np.float32(self.shift) if self.shift else a.copy()


def llama_rows(n_rows: int, n_heads: int) -> np.ndarray:
    """rows for q or k of a llama-arch file. The converter permutes each
    head's rows [first half, second half] into pairs (LlamaModel.permute):
    gguf row h*E + 2i + j holds hf row h*E + j*E/2 + i."""
    head_dim = n_rows // n_heads
    half = head_dim // 2
    r = np.arange(n_rows)
    head, within = r // head_dim, r % head_dim
    return head * head_dim + 2 * (within % half) + within // half


def plan(family, descriptor: dict, params, source: str, tensors: dict | None = None) -> list[Entry]:
    """The entries for a model's parameters ((hf name, hf shape) pairs, e.g.
    tinylm.Model's table), in their order. tensors: the inventory of the file
    being read, when it holds q, k and v fused in attn_qkv (llama.cpp reads
    either; the converter fuses with --fuse-qkv, older Phi-2 files always)."""
    entries, stacks = [], {}
    for name, shape in params:
        shape = tuple(int(n) for n in shape)
        if name in family.DROP:
            continue
        gguf, module, head = _gguf_name(family, name, source)
        rows, gguf_shape = None, tuple(reversed(shape))
        if family.PERMUTE_QK and module in ("self_attn.q_proj", "self_attn.k_proj"):
            heads = descriptor["n_heads"] if module == "self_attn.q_proj" else descriptor["n_kv_heads"]
            rows = llama_rows(shape[0], heads)
        if tensors is not None and gguf not in tensors:
            gguf, rows, gguf_shape = _fused_qkv(descriptor, gguf, module, shape, rows, tensors, gguf_shape)
        if head is not None:
            rows = np.array([head])
            stacks.setdefault(gguf, []).append(len(entries))
        shift = descriptor["norm_offset"] if gguf.endswith("norm.weight") else 0.0
        entries.append(Entry(name, shape, gguf, gguf_shape, rows, shift))
    for gguf, members in stacks.items():  # one row per head: [head_dim, heads]
        heads = max(entries[i].rows[0] for i in members) + 1
        if heads != len(members):
            raise FormatError(f"{source}: the heads of {gguf!r} are not numbered 0..{len(members) - 1}")
        for i in members:
            e = entries[i]
            entries[i] = Entry(e.hf, e.hf_shape, gguf, (e.hf_shape[0], heads), e.rows, e.shift)
    return entries


_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _fused_qkv(d: dict, gguf: str, module: str, shape: tuple, rows, tensors: dict, gguf_shape: tuple):
    """q, k or v as rows of the layer's attn_qkv (q rows, then k, then v),
    when the file has that and not the separate tensor."""
    fused = gguf.replace(".attn_q.", ".attn_qkv.").replace(".attn_k.", ".attn_qkv.").replace(".attn_v.", ".attn_qkv.")
    if module not in _QKV or fused not in tensors:
        return gguf, rows, gguf_shape
    sizes = [d["n_heads"] * d["head_dim"], d["n_kv_heads"] * d["head_dim"], d["n_kv_heads"] * d["head_dim"]]
    offset = sum(sizes[:_QKV.index(module)])
    rows = offset + (np.arange(shape[0]) if rows is None else rows)
    return fused, rows, gguf_shape[:-1] + (sum(sizes),)


def _gguf_name(family, name: str, source: str) -> tuple[str, str, int | None]:
    """(GGUF tensor name, HF module, head index of a per-head norm or None)."""
    module, _, leaf = name.rpartition(".")
    prefix, head = "", None
    if module.startswith("model.layers."):
        layer, _, module = module[len("model.layers."):].partition(".")
        prefix = f"blk.{layer}."
        per_head = _PER_HEAD.fullmatch(module)
        if per_head:
            module, head = per_head.group(1), int(per_head.group(2))
    gguf = family.NAMES.get(module)
    if gguf is None or leaf not in ("weight", "bias"):
        raise UnsupportedError(f"{source}: parameter {name} has no tensor in a GGUF {family.ARCH} model")
    return f"{prefix}{gguf}.{leaf}", module, head


def to_gguf(entries: list[Entry], tensors) -> dict[str, np.ndarray]:
    """GGUF tensors (float32, PyTorch order) from HF parameters: the inverse
    of Entry.to_hf (Gemma's 1 + w is rounded to float32 as the converter's)."""
    out = {}
    for e in entries:
        value = np.asarray(tensors[e.hf], dtype=np.float32).reshape(e.hf_shape)
        if e.shift:
            value = value + np.float32(e.shift)
        if e.rows is None:
            out[e.gguf] = value.reshape(tuple(reversed(e.gguf_shape)))
            continue
        if e.gguf not in out:
            out[e.gguf] = np.zeros(tuple(reversed(e.gguf_shape)), dtype=np.float32)
        out[e.gguf].reshape(e.n_rows, -1)[e.rows] = value.reshape(len(e.rows), -1)
    return out


def check(family, entries: list[Entry], tensors: dict, source: str) -> None:
    """A file's tensor inventory (name -> GGUF shape) against the plan: every
    planned tensor present with its shape, nothing else but the family's
    configuration tensors."""
    planned = {e.gguf: e.gguf_shape for e in entries}
    for name, shape in planned.items():
        if name not in tensors:
            raise FormatError(f"{source}: tensor {name!r} is missing")
        got = tuple(int(n) for n in tensors[name])
        if got != shape:
            raise FormatError(f"{source}: tensor {name!r} has shape {list(got)}, expected {list(shape)}")
    for name in tensors:
        if name not in planned and name not in family.CONFIG_TENSORS:
            raise UnsupportedError(f"{source}: tensor {name!r} is not part of a {family.ARCH} model as tinylm "
                                   f"computes it")
