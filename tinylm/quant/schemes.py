"""Fake quantization schemes by name: what a weight is trained to survive.

  GGUF block types, the values `save_gguf` writes and llama.cpp reads:
    "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"
  torchao 0.18's QAT fake quantizers:
    "int4_g{G}"       QATConfig(Int4WeightOnlyConfig(group_size=G))
    "8da4w_g{G}"      QATConfig(Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                      weight_granularity=PerGroup(G))): int8 per-token activations as well
    "int{B}_sym_g{G}" QATConfig(IntxWeightOnlyConfig(weight_dtype=torch.int{B}, granularity=PerGroup(G)))

A mixture file type (Q4_K_M: each tensor its own type) is a plan over
tensors, not a scheme: tinylm.gguf.mixture decides each tensor's type."""
from __future__ import annotations

import dataclasses
import re

from tinylm.errors import UnsupportedError
from tinylm.gguf import ggml

# tlm_fq_kind (csrc/tlm.h)
GGML, INT4_ASYM, INTX_SYM = 1, 2, 3
GGUF_SCHEMES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
_TORCHAO = {  # pattern -> (kind, bits, int8 activations)
    re.compile(r"int4_g(\d+)"): (INT4_ASYM, 4, False),
    re.compile(r"8da4w_g(\d+)"): (INTX_SYM, 4, True),
}
_INTX = re.compile(r"int([2-8])_sym_g(\d+)")


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str            # as parse() was given it, lower case
    kind: int            # GGML, INT4_ASYM or INTX_SYM
    ggml_type: int = -1  # GGML
    group_size: int = 0  # torchao: values per scale along a row
    bits: int = 0
    act_int8: bool = False

    @property
    def core(self) -> tuple:
        """The (kind, ggml_type, group_size, bits, act_int8) tuple the C core takes."""
        return (self.kind, self.ggml_type, self.group_size, self.bits, self.act_int8)


def parse(name: str | Scheme) -> Scheme:
    """The scheme called `name` (case ignored)."""
    if isinstance(name, Scheme):
        return name
    key = str(name).strip().lower()
    if key in GGUF_SCHEMES:
        return Scheme(key, GGML, ggml_type=ggml.by_name(key).id)
    for pattern, (kind, bits, act) in _TORCHAO.items():
        m = pattern.fullmatch(key)
        if m:
            return Scheme(key, kind, group_size=int(m.group(1)), bits=bits, act_int8=act)
    m = _INTX.fullmatch(key)
    if m:
        return Scheme(key, INTX_SYM, group_size=int(m.group(2)), bits=int(m.group(1)))
    raise UnsupportedError(f"{name!r} is not a fake quantization scheme tinylm knows; known: "
                           f"{', '.join(GGUF_SCHEMES)}, int4_g<G>, 8da4w_g<G>, int<B>_sym_g<G> "
                           "(G values per group, B bits 2..8)")
