"""The Model's side of quantization-aware training: which projection
weights train through which fake quantizer (csrc/model/proj.c applies it
in forward, generation and backward)."""
from __future__ import annotations

from tinylm.errors import UnsupportedError
from tinylm.gguf import ggml, mixture
from tinylm.quant.schemes import GGML, Scheme, parse


def _ggml_scheme(type_id: int) -> Scheme | None:
    """The fake quantizer of one tensor of a GGUF file type (None: F32, kept as is)."""
    if type_id == ggml.F32:
        return None
    return Scheme(ggml.by_id(type_id).name.lower(), GGML, ggml_type=type_id)


class FakeQuantMixin:
    def _init_fake_quant(self) -> None:
        self._fake_quant: dict[str, Scheme] = {}

    def set_fake_quant(self, scheme: str | Scheme | None, *, target_modules="all-linear",
                       embeddings: bool = True) -> None:
        """Trains the projection weights through a fake quantizer (None
        removes it). scheme: a GGUF file type, spelt as llama-quantize does in
        upper case ("Q4_K_M", "Q4_0", "Q8_0", ...),
        each projection then getting the type save_gguf(quant=that) gives it
        and, with embeddings, the token embedding and the head theirs too
        (Q6_K for the head of a Q4_0 or Q4_K_M file); or a tensor scheme of
        tinylm.quant.schemes, lower case ("q4_0", "q4_k", "int4_g32", ...) for every
        targeted projection. Under an active adapter the merged weight
        W + s B A is what gets fake-quantized. target_modules: "all-linear"
        or a layer's module names ("q_proj", ...)."""
        wanted = self._fake_quant_targets(target_modules)
        tables = self._fake_quant_tables()
        if scheme is None:
            plan = {name: None for name in wanted + tables}
        elif isinstance(scheme, str) and scheme in mixture.FILE_TYPES:
            from tinylm.gguf.export import param_types
            types = param_types(self, scheme)
            plan = {name: _ggml_scheme(types[name]) for name in wanted + (tables if embeddings else [])}
        else:
            s = parse(scheme)
            plan = {name: s for name in wanted}
        for name, s in plan.items():
            self._core.set_fake_quant(self._lookup(name), None if s is None else s.core)
            if s is None:
                self._fake_quant.pop(name, None)
            else:
                self._fake_quant[name] = s

    def _fake_quant_targets(self, target_modules) -> list[str]:
        modules = list(self._projections)
        if isinstance(target_modules, str) and target_modules.lower() == "all-linear":
            chosen = modules
        else:
            wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)
            chosen = [m for m in modules if m.rsplit(".", 1)[1] in wanted or m in wanted]
            unknown = [t for t in wanted if not any(t in (m, m.rsplit(".", 1)[1]) for m in modules)]
            if unknown:
                raise UnsupportedError(f"target_modules {unknown} are not projections of this model; its layers have "
                                       f"{', '.join(m.rsplit('.', 1)[1] for m in modules)}")
        return [f"model.layers.{l}.{m}.weight" for l in range(self._n_layers) for m in chosen]

    def _fake_quant_tables(self) -> list[str]:
        """The token embedding and (untied) head: the 2-D weights that are no projection's."""
        projections = set(self._fake_quant_targets("all-linear"))
        return [name for name, shape, *_ in self._table
                if len(shape) == 2 and ".lora_" not in name and name not in projections]

    @property
    def fake_quant(self) -> dict[str, str]:
        """{projection weight name: its fake quantization scheme}."""
        return {name: s.name for name, s in self._fake_quant.items()}

    def enable_fake_quant(self, on: bool = True) -> None:
        """Applies the fake quantizers (True, the default once set) or skips
        them (False: QAT's warm-up steps train the float model)."""
        self._core.enable_fake_quant(bool(on))
