"""save_pretrained: bit-identical reloads, and transformers reads what we write."""
import json

import numpy as np
import pytest
import torch

import tinylm
from hf_models import batch, build, load_reference, save
from tolerance import assert_close, decoder


@pytest.mark.parametrize("shard", [None, "50KB"])
def test_save_reload_is_bit_identical(tmp_path, shard):
    save(build("qwen2_bias"), tmp_path / "src")
    model = tinylm.Model.from_pretrained(tmp_path / "src")
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(tmp_path / "out", **kwargs)
    if shard:
        assert (tmp_path / "out" / "model.safetensors.index.json").exists()
        assert not (tmp_path / "out" / "model.safetensors").exists()
    again = tinylm.Model.from_pretrained(tmp_path / "out")
    for name, value in model.state_dict().items():  # exact: the same f32 bits written and read
        np.testing.assert_array_equal(again.param(name), value, err_msg=name)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]


def test_transformers_loads_a_trained_and_saved_model(tmp_path):
    save(build("llama3_rope_bias"), tmp_path / "src")
    model = tinylm.Model.from_pretrained(tmp_path / "src")
    ids, mask, labels = batch(B=2, T=17)
    opt = tinylm.AdamW(model, lr=1e-2)
    for _ in range(2):  # change the weights so the comparison is not with the source
        model.zero_grad()
        model.loss(ids, labels, mask)
        model.backward()
        opt.step()
    model.save_pretrained(tmp_path / "out")
    ref = load_reference(tmp_path / "out")
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert_close(model.forward(ids, mask), expected, length=decoder(model.config, *ids.shape).forward, what="logits")


@pytest.mark.parametrize("dtype,torch_dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_half_precision_save_rounds_like_torch(tmp_path, dtype, torch_dtype):
    save(build("llama_gqa"), tmp_path / "src")
    model = tinylm.Model.from_pretrained(tmp_path / "src")
    model.save_pretrained(tmp_path / "out", dtype=dtype)
    saved = tinylm.Model.from_pretrained(tmp_path / "out")
    for name, value in model.state_dict().items():
        expected = torch.from_numpy(value.copy()).to(torch_dtype).float().numpy()
        # exact: one correctly rounded conversion (round to nearest even) on both sides
        np.testing.assert_array_equal(saved.param(name), expected, err_msg=name)
    assert json.loads((tmp_path / "out" / "config.json").read_text()).get("dtype", dtype) == dtype


def test_save_over_an_earlier_sharded_save_leaves_no_stale_shards(tmp_path):
    save(build("llama_gqa"), tmp_path / "src")
    model = tinylm.Model.from_pretrained(tmp_path / "src")
    model.save_pretrained(tmp_path / "out", max_shard_size="40KB")
    model.save_pretrained(tmp_path / "out")
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["config.json", "model.safetensors"]
