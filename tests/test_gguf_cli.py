"""The command line on GGUF files, end to end with the embedded demo model:
save_gguf(Q8_0) -> `tinylm eval --model demo.gguf` (the file's blocks) ->
`tinylm train --model demo.gguf` (LoRA on the blocks) -> `tinylm export
--model demo.gguf --adapter ... --gguf Q8_0 --gguf-adapter`, whose files load
back and compute what the trained adapter computes."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinylm
from tinylm.gguf.file import GGUFFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMART_HOME = os.path.join(ROOT, "datasets", "smart_home")


def tinylm_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tinylm.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def demo_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf_cli")
    path = root / "demo-Q8_0.gguf"
    tinylm.Model.from_pretrained(tinylm.DEMO_MODEL).save_gguf(path, "Q8_0")
    return path


def test_eval_train_and_export_a_gguf(demo_gguf, tmp_path):
    with open(os.path.join(SMART_HOME, "golden.jsonl"), encoding="utf-8") as f:
        (tmp_path / "golden.jsonl").write_text("".join(f.readlines()[:8]), encoding="utf-8")
    r = tinylm_cli("eval", "--model", demo_gguf, "--golden", tmp_path / "golden.jsonl", cwd=tmp_path)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    r = tinylm_cli("train", "--model", demo_gguf, "--data", os.path.join(SMART_HOME, "train.jsonl"),
                   "--max-steps", 2, "--seq-len", 64, "--batch-size", 2, "--output", tmp_path / "run",
                   "--lora-r", 4, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    r = tinylm_cli("export", "--model", demo_gguf, "--adapter", adapter, "--gguf", "Q8_0", "--gguf-adapter",
                   "--no-merged", "--output", tmp_path / "export", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    tuned = tinylm.Model.from_pretrained(demo_gguf)
    tuned.load_adapter(adapter)
    assert tuned.quant == "gguf"
    ids = tinylm.Tokenizer.from_pretrained(demo_gguf).encode("turn on the kitchen lights")
    with GGUFFile(tmp_path / "export" / "adapter.gguf") as f:
        assert f.metadata["general.type"] == "adapter" and f.metadata["adapter.type"] == "lora"
        assert any(n.endswith(".lora_a") for n in f.tensors)
    merged = tinylm.Model.from_pretrained(tmp_path / "export" / "model-Q8_0.gguf")
    # merging requantizes W + BA to Q8_0: the merged file's logits are the adapted model's up to that rounding
    a, b = merged.forward([ids])[0], tuned.forward([ids])[0]
    assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()
