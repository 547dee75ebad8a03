"""The GGUF families: one module per llama.cpp architecture tinylm computes,
each holding its GGUF arch name (ARCH), the HF architecture class and
model_type (HF), its tensor names (NAMES: HF module -> GGUF tensor), whether
q/k rows are permuted (PERMUTE_QK), the HF parameters the file does not keep
(DROP), the small tensors that hold configuration (CONFIG_TENSORS), and
write(spec) / extra(spec) / read(meta): the keys and tensors for an HF
config, and the HF config for a file's keys (base.py)."""
from tinylm.gguf.archs import gemma, gemma2, gemma3, llama, phi2, phi3, qwen2, qwen3, smollm3, stablelm

FAMILIES = (llama, qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3, stablelm, smollm3)
BY_ARCH = {family.ARCH: family for family in FAMILIES}
BY_HF = {family.HF[0]: family for family in FAMILIES}
