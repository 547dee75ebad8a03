"""Projection weights held as ggml blocks (quant="gguf", what a quantized
GGUF file loads as): each projection its own type, dequantized tile by tile
before its GEMMs, so the model equals an f32 model on the dequantized
weights in forward, loss and every LoRA gradient; the blocks themselves come
back unchanged."""
import numpy as np
import pytest

import tinylm
from hf_models import batch, build, save
from tinylm.errors import UnsupportedError
from tinylm.gguf import ggml
from tolerance import approx, assert_close, decoder

DEQUANT = 3  # rounded operations of a dequantized value: d * scale * q (+ min)
# one type per projection, cycling, so a layer mixes block sizes 32 and 256 and float blocks
TYPES = ["q8_0", "q4_K", "q6_K", "f16", "q4_0", "q5_K", "q5_0"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf_base")
    save(build("llama_gqa", hidden_size=256, intermediate_size=512), path)  # rows of 256 and 512: K types fit
    return path


def _block_model(base_dir):
    """The base with every projection weight as ggml blocks of a cycling type,
    and the f32 twin holding exactly what those blocks decode to."""
    f32 = tinylm.Model.from_pretrained(base_dir)
    model = tinylm.Model(f32.config, quant="gguf")
    twin = tinylm.Model(f32.config)
    k = 0
    for i, (name, shape, _, _, quantized, _) in enumerate(model._table):
        w = f32.weight(name)
        if quantized:
            t = ggml.by_name(TYPES[k % len(TYPES)])
            k += 1
            blocks = ggml.quantize(t.id, w)
            model._core.set_weight_blocks(i, t.id, blocks)
            w = ggml.dequantize(t.id, blocks, w.size).reshape(shape)
        else:
            model._core.set_weight(i, w)
        twin._core.set_weight(i, np.ascontiguousarray(w))
    model._refresh_table()  # the table now says each projection's type
    return model, twin


def test_block_storage_equals_f32_on_the_decoded_weights(base_dir):
    model, twin = _block_model(base_dir)
    for m in (model, twin):
        m.add_lora(r=4, alpha=8, target_modules="all-linear", seed=1)
        for n in m.parameter_names():
            if "lora_B" in n:
                m.param(n)[...] = np.random.default_rng(len(n)).normal(0, 0.1, m.param(n).shape)
    ids, mask, labels = batch(B=2, T=19)
    chain = decoder(model.config, *ids.shape, lora_r=4)
    assert_close(model.forward(ids, mask), twin.forward(ids, mask), length=chain.forward + DEQUANT, what="logits")
    assert model.loss(ids, labels, mask) == approx(twin.loss(ids, labels, mask), length=chain.loss + DEQUANT)
    model.backward()
    twin.backward()
    ours, ref = model.grads(), twin.grads()
    assert set(ours) == set(ref) and all("lora_" in n for n in ours)
    for name in ref:
        assert_close(ours[name], ref[name], length=chain.backward + DEQUANT, what=name)


def test_blocks_come_back_unchanged_and_are_frozen(base_dir):
    model, twin = _block_model(base_dir)
    name = "model.layers.0.self_attn.q_proj.weight"
    i = model.parameter_names().index(name)
    t = model._table[i][5]
    assert t == ggml.by_name("q8_0").id
    blocks = ggml.quantize(t, twin.weight(name))
    got_type, got = model._core.weight_blocks(i)
    assert got_type == t and got == blocks.tobytes()
    assert model._core.param_bytes(i) == len(blocks)  # 34 bytes per 32 weights, nothing else
    np.testing.assert_array_equal(model.weight(name), twin.weight(name))
    with pytest.raises(TypeError, match="quantized"):
        model.param(name)
    with pytest.raises(ValueError, match="cannot be trained"):
        model.unfreeze(name)


def test_merging_requantizes_to_the_same_type(base_dir):
    model, _ = _block_model(base_dir)
    model.add_lora(r=2, alpha=4, target_modules=["q_proj"], seed=3)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = 0.05
    name = "model.layers.1.self_attn.q_proj.weight"
    i = model.parameter_names().index(name)
    before = model._table[i][5]
    exact = model._merged_param(name)
    with pytest.warns(UserWarning, match="requantizing"):
        model.merge_adapter()
    assert model._core.weight_blocks(i)[0] == before
    np.testing.assert_array_equal(model.weight(name), ggml.dequantize(before, ggml.quantize(before, exact),
                                                                      exact.size).reshape(exact.shape))


def test_missing_or_wrong_blocks_fail_by_name(base_dir):
    f32 = tinylm.Model.from_pretrained(base_dir)
    model = tinylm.Model(f32.config, quant="gguf")
    ids, mask, _ = batch(B=1, T=5)
    with pytest.raises(ValueError, match="have not been loaded"):
        model.forward(ids, mask)
    name = "model.layers.0.mlp.down_proj.weight"
    i = model.parameter_names().index(name)
    with pytest.raises(ValueError, match="has no blocks yet"):
        model.weight(name)
    q8 = ggml.by_name("q8_0").id
    with pytest.raises(ValueError, match=f"{name}.*take"):
        model._core.set_weight_blocks(i, q8, b"\0" * 10)
    with pytest.raises(ValueError, match="down_proj.weight: 96 values of ggml type q4_K"):  # a row of 96
        tinylm.Model(dict(f32.config, intermediate_size=96), quant="gguf")._core.set_weight_blocks(
            i, ggml.by_name("q4_K").id, b"")
    embed = model.parameter_names().index("model.embed_tokens.weight")
    with pytest.raises(ValueError, match="not stored as ggml blocks"):
        model._core.set_weight_blocks(embed, q8, b"")
    with pytest.raises(UnsupportedError, match="iq2_xxs"):
        ggml.dequantize(ggml.by_name("iq2_xxs").id, b"\0" * 66, 256)
