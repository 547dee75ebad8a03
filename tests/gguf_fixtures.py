"""GGUF files llama.cpp's converter writes from tiny random models of
several families (tests/gguf_convert.py, vocabulary step replaced), shared
by the GGUF tests through conftest's session fixture `gguf_converted`."""
import json
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer, models

import llamacpp_ref
from hf_models import VOCAB, build, save

CONVERTER = os.path.join(os.path.dirname(__file__), "gguf_convert.py")
GGUF_CASES = ["llama_gqa", "llama3_rope_bias", "qwen2_bias", "qwen3_qk_norm", "gemma_mqa", "phi3_fused"]
# Of those, the files llama.cpp cannot load (case -> tinylm's refusal to write one): qwen3_qk_norm has
# attention biases, and llama.cpp's qwen3 no attn_output.bias (tinylm/gguf/archs/qwen3.py).
UNWRITABLE = {"qwen3_qk_norm": "attention_bias=True cannot be written to a GGUF qwen3 model"}


def convert_cases(root) -> dict:
    """case -> (HF model (eval), HF folder, the converter's F32 .gguf)."""
    source = llamacpp_ref.converter_dir()
    if source is None:
        pytest.skip(f"llama.cpp's converter is not in {llamacpp_ref.CACHE} (run {llamacpp_ref.BUILD_COMMAND} --source)")
    out, jobs = {}, []
    for case in GGUF_CASES:
        # llama_gqa's rows (64, 128) fit the 32-blocks of the quantized files
        model = build(case, **dict(hidden_size=64, intermediate_size=128) if case == "llama_gqa" else {})
        folder = root / case
        save(model, folder)
        Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0")).save(
            str(folder / "tokenizer.json"))
        out[case] = (model.eval(), folder, str(root / f"{case}.gguf"))
        jobs.append([str(folder), out[case][2], []])
    (root / "jobs.json").write_text(json.dumps(jobs))
    run = subprocess.run([sys.executable, CONVERTER, source, str(root / "jobs.json")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out
