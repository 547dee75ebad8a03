"""tinylm.Model.from_pretrained on .gguf files: files llama.cpp's converter
wrote from tiny random models of several families load as the Hugging Face
model they came from (logits, loss and gradients against transformers);
quantized files keep their blocks (frozen, no f32 copy) and compute as the
f32 model on the blocks' values decoded by the `gguf` package; F32 files
give bit-identical weights; bad files fail by name."""
import os

import gguf
import numpy as np
import pytest

import tinylm
from gguf_fixtures import GGUF_CASES
from hf_models import batch, reference_outputs
from tinylm.errors import FormatError, UnsupportedError
from tinylm.gguf import ggml
from tinylm.gguf.file import GGUFFile, write_gguf
from tolerance import approx, assert_close, decoder

DEQUANT = 3  # rounded operations of a decoded block value


@pytest.mark.parametrize("case", GGUF_CASES)
def test_a_converted_file_is_the_hf_model(gguf_converted, case):
    hf, folder, path = gguf_converted[case]
    model = tinylm.Model.from_pretrained(path)
    assert model.quant is None and model.gguf_source == os.path.abspath(path)
    ids, mask, labels = batch(B=2, T=13)
    logits, loss, grads = reference_outputs(hf, ids, mask, labels)
    chain = decoder(model.config, *ids.shape)
    assert_close(model.forward(ids, mask), logits, length=chain.forward, what="logits")
    assert model.loss(ids, labels, mask) == approx(loss, length=chain.loss)
    model.backward()
    ours = model.grads()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        if name in ours:
            assert_close(ours[name], grads[name], length=chain.backward, what=name)


def test_f32_round_trip_is_bit_identical(gguf_converted):
    """HF folder -> converter (F32) -> tinylm: the weights themselves, exactly
    (Llama's q/k permutation undone row for row)."""
    hf, folder, path = gguf_converted["llama3_rope_bias"]
    ours = tinylm.Model.from_pretrained(path)
    ref = tinylm.Model.from_pretrained(folder)
    for name in ref.base_names():
        np.testing.assert_array_equal(ours.weight(name), ref.weight(name), err_msg=name)


def _requantize(src: str, dst: str, kind: str) -> dict:
    """src with every projection (and nothing else) quantized by the gguf
    package, written by tinylm's writer with the same metadata and types."""
    qtype = gguf.GGMLQuantizationType[kind]
    with GGUFFile(src) as f:
        meta = [(k, f.metadata[k], f.types[k]) for k in f.metadata]
        tensors, blocks = [], {}
        for name, info in f.tensors.items():
            data = np.frombuffer(f.raw(name), dtype=np.float32).reshape(info.shape)
            if name.startswith("blk.") and name.endswith(".weight") and "norm" not in name:
                data = gguf.quants.quantize(data, qtype)
                blocks[name] = data
                tensors.append((name, int(qtype), info.shape, data))
            else:
                tensors.append((name, ggml.F32, info.shape, data.copy()))
    write_gguf(dst, meta, tensors)
    return blocks


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q5_1"])
def test_a_quantized_file_keeps_its_blocks(gguf_converted, tmp_path, kind):
    hf, folder, path = gguf_converted["llama_gqa"]
    qpath = str(tmp_path / f"{kind}.gguf")
    blocks = _requantize(path, qpath, kind)
    model = tinylm.Model.from_pretrained(qpath)
    assert model.quant == "gguf"
    # the twin: the f32 model on the blocks' values as the gguf package decodes them
    twin = tinylm.Model.from_pretrained(path)
    with GGUFFile(path) as f:
        import tinylm.gguf.arch as arch
        params = [(n, tuple(s)) for n, s, *_ in twin._core.params()]
        plan = arch.tensor_plan(twin.config, params, path, tensors={n: i.ne for n, i in f.tensors.items()})
    for e in plan:
        if e.gguf in blocks:
            decoded = gguf.quants.dequantize(blocks[e.gguf], gguf.GGMLQuantizationType[kind]).astype(np.float32)
            twin.load_state_dict({e.hf: e.to_hf(decoded)}, strict=False)
            i = model.parameter_names().index(e.hf)
            assert model._table[i][4] and model._table[i][5] == int(gguf.GGMLQuantizationType[kind])
            assert model._core.param_bytes(i) == blocks[e.gguf].nbytes  # the blocks, no f32 copy
    ids, mask, labels = batch(B=2, T=11)
    chain = decoder(model.config, *ids.shape, lora_r=4)
    assert_close(model.forward(ids, mask), twin.forward(ids, mask), length=chain.forward + DEQUANT, what="logits")
    for m in (model, twin):
        m.add_lora(r=4, alpha=8, target_modules="all-linear", seed=2)
        for n in m.parameter_names():
            if "lora_B" in n:
                m.param(n)[...] = 0.02
    assert model.loss(ids, labels, mask) == approx(twin.loss(ids, labels, mask), length=chain.loss + DEQUANT)
    model.backward()
    twin.backward()
    for name, g in twin.grads().items():
        assert_close(model.grads()[name], g, length=chain.backward + DEQUANT, what=name)
    with pytest.raises(ValueError, match="cannot be trained"):
        model.unfreeze("model.layers.0.self_attn.q_proj.weight")
    with pytest.warns(UserWarning, match="loaded as f32"):
        f32 = tinylm.Model.from_pretrained(qpath, dequantize=True)
    assert f32.quant is None
    np.testing.assert_array_equal(f32.weight("model.layers.0.mlp.up_proj.weight"),
                                  model.weight("model.layers.0.mlp.up_proj.weight"))


def test_bad_files_fail_by_name(gguf_converted, tmp_path):
    _, _, path = gguf_converted["llama_gqa"]
    with GGUFFile(path) as f:
        meta = [(k, f.metadata[k], f.types[k]) for k in f.metadata]
        tensors = [(n, i.ggml_type, i.shape, np.frombuffer(f.raw(n), np.uint8).copy()) for n, i in f.tensors.items()]
    cases = {
        "arch": ([(k, "mamba" if k == "general.architecture" else v, t) for k, v, t in meta], tensors,
                 UnsupportedError, "mamba"),
        "missing key": ([m for m in meta if m[0] != "llama.block_count"], tensors, FormatError, "llama.block_count"),
        "missing tensor": (meta, [t for t in tensors if t[0] != "blk.1.ffn_up.weight"], FormatError,
                           "blk.1.ffn_up.weight"),
        "extra tensor": (meta, tensors + [("blk.0.mystery.weight", ggml.F32, (4,), np.zeros(4, np.float32))],
                         UnsupportedError, "blk.0.mystery.weight"),
    }
    for case, (m, t, error, message) in cases.items():
        bad = str(tmp_path / f"{case.replace(' ', '_')}.gguf")
        write_gguf(bad, m, t)
        with pytest.raises(error, match=message):
            tinylm.Model.from_pretrained(bad)
