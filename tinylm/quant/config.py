"""QATConfig: quantization-aware training as the Trainer's `qat` section."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinylm.gguf import mixture
from tinylm.quant.schemes import parse


@dataclass
class QATConfig:
    """Train the decoder's projections through the quantizer of the file
    you ship. scheme: a GGUF file type ("Q4_0", "Q4_K_M", "Q8_0", ...:
    each projection gets the type save_gguf(quant=scheme) gives it, and
    the run ends with that GGUF) or a tensor scheme of tinylm.quant.schemes
    ("q4_k", "int4_g32", "8da4w_g32", ...). fake_quant_after_n_steps: the
    float model trains that many optimizer steps first (torchtune's name).
    self_distill: the float model as loaded, before any step, is the online
    teacher through the distill section (Gemma 3's QAT recipe; distill's
    defaults unless it is set)."""
    scheme: str = "Q4_0"
    fake_quant_after_n_steps: int = 0
    target_modules: str | list = "all-linear"
    self_distill: bool = False

    def __post_init__(self):
        if not isinstance(self.scheme, str) or not self.scheme:
            raise ValueError(f"qat scheme must be a name, got {self.scheme!r}")
        if self.scheme not in mixture.FILE_TYPES:
            parse(self.scheme)  # a tensor scheme, or an UnsupportedError naming the known ones
        if (isinstance(self.fake_quant_after_n_steps, bool) or not isinstance(self.fake_quant_after_n_steps, int)
                or self.fake_quant_after_n_steps < 0):
            raise ValueError(f"qat fake_quant_after_n_steps must be an integer >= 0, got "
                             f"{self.fake_quant_after_n_steps!r}")
        if not isinstance(self.self_distill, bool):
            raise ValueError(f"qat self_distill must be true or false, got {self.self_distill!r}")

    @property
    def file_type(self) -> str | None:
        """The GGUF file type the scheme names (upper case, as llama-quantize
        spells it); None for a tensor scheme (lower case: "q4_0", "int4_g32")."""
        return self.scheme if self.scheme in mixture.FILE_TYPES else None

    def to_dict(self) -> dict:
        return asdict(self)
