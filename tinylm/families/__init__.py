"""The model families tinylm computes: one module per family, each holding
the architecture class names it serves and `descriptor(fields, arch, quant)`,
which turns config.json into the C core's block descriptor (tlm_config in
csrc/tlm.h; the parameter names live with the core, csrc/model/families/).
A field that would change the math and that the core does not compute is an
UnsupportedError naming it, never a silent approximation."""
from __future__ import annotations

from tinylm.errors import FormatError, UnsupportedError
from tinylm.families import gemma, gemma2, gemma3, llama, phi, phi3, qwen2, qwen3, smollm3, stablelm
from tinylm.families.fields import ROPE_TYPES, Fields

LONGROPE = ROPE_TYPES["longrope"]

FAMILIES = (llama, qwen2, qwen3, gemma, gemma2, gemma3, phi, phi3, stablelm, smollm3)
# architecture class name -> (family module, model_type)
ARCHITECTURES = {name: (family, model_type) for family in FAMILIES
                 for name, model_type in family.ARCHITECTURES.items()}
_BY_MODEL_TYPE = {model_type: name for name, (_, model_type) in ARCHITECTURES.items()}


def architecture_of(config: dict, source: str) -> str:
    archs = config.get("architectures")
    if archs:
        if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
            raise FormatError(f"{source}: \"architectures\" must be a list with one class name, got {archs!r}")
        name = archs[0]
    else:
        model_type = config.get("model_type")
        name = _BY_MODEL_TYPE.get(model_type if isinstance(model_type, str) else None, f"model_type={model_type!r}")
    if name not in ARCHITECTURES:
        raise UnsupportedError(
            f"{source}: architecture {name} is not supported; tinylm supports {', '.join(sorted(ARCHITECTURES))}"
        )
    return name


def descriptor(config: dict, source: str = "config.json", quant: str | None = None) -> dict:
    """The block descriptor (keyword arguments of tinylm._core.Model)."""
    arch = architecture_of(config, source)
    family, _ = ARCHITECTURES[arch]
    return family.descriptor(Fields(config, source), arch, quant)
