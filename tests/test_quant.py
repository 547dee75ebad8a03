"""NF4 (with double quantization) and int8 against bitsandbytes' CPU backend,
and QLoRA models against the f32 model on the dequantized weights."""
import bitsandbytes.functional as bnbf
import numpy as np
import pytest
import torch

import tinylm
from tinylm import _core
from hf_models import batch, build, save
from tolerance import approx, assert_close, decoder

# Codes, block scales and int8 rows are compared exactly: both sides apply the
# same rounding rule to the same f32 values, so there is nothing to reorder.
DEQUANT = 3  # rounded operations of a dequantized weight: code2 * absmax2 + offset, times the code
SHAPES = [(64, 64), (96, 200), (7, 9), (1, 1), (3, 21), (256, 576)]  # includes partial last blocks and odd sizes


def _matrix(shape, seed):
    g = np.random.default_rng(seed)
    x = g.standard_normal(shape).astype(np.float32) * g.uniform(0.01, 2.0)
    x.ravel()[:: max(1, x.size // 5)] = 0.0  # exact zeros and
    if x.size > 3:
        x.ravel()[1] = -np.abs(x).max()  # a negative absmax
    return x


@pytest.mark.parametrize("shape", SHAPES)
def test_nf4_codes_and_absmax_equal_bitsandbytes(shape):
    x = _matrix(shape, seed=sum(shape))
    packed, state = bnbf.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type="nf4",
                                       compress_statistics=False)
    ours_packed, ours_absmax = _core.nf4_quantize(x)
    np.testing.assert_array_equal(np.frombuffer(ours_packed, np.uint8), packed.numpy().ravel())
    np.testing.assert_array_equal(np.frombuffer(ours_absmax, np.float32), state.absmax.numpy())


def test_nf4_midpoint_ties_go_to_the_lower_code():
    code = np.array(tinylm_nf4_code(), dtype=np.float32)
    mids = ((code[:-1] + code[1:]) / np.float32(2)).astype(np.float32)
    x = np.concatenate([mids, [1.0]]).astype(np.float32)  # absmax 1 so values are their own scaled values
    packed, _ = bnbf.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type="nf4", compress_statistics=False)
    ours, _ = _core.nf4_quantize(x)
    np.testing.assert_array_equal(np.frombuffer(ours, np.uint8), packed.numpy().ravel())


def tinylm_nf4_code():
    """NF4's codebook as bitsandbytes defines it."""
    return bnbf.get_4bit_type("nf4", device="cpu").tolist()


def test_dynamic_map_equals_bitsandbytes():
    expected = bnbf.create_dynamic_map(signed=True).numpy()
    np.testing.assert_array_equal(np.frombuffer(_core.dynamic_map(), np.float32), expected)


@pytest.mark.parametrize("shape", [(96, 200), (256, 576), (1024, 640), (5, 13)])
def test_double_quantization_equals_bitsandbytes(shape):
    x = _matrix(shape, seed=shape[0])
    _, state = bnbf.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type="nf4", compress_statistics=True)
    _, absmax = _core.nf4_quantize(x)
    absmax = np.frombuffer(absmax, np.float32)
    # The offset is the mean of the block absmax. bitsandbytes takes torch's
    # float32 mean, whose summation order (and so last bit) depends on the
    # CPU's vector width; ours is the correctly rounded mean.
    offset = state.offset.item()
    assert _core.nf4_absmax_offset(absmax) == approx(offset, length=absmax.size + 1)  # a mean of positive terms
    codes, scales = _core.nf4_double_quantize(absmax, offset)  # bitsandbytes' offset: the codes must be identical
    np.testing.assert_array_equal(np.frombuffer(codes, np.uint8), state.absmax.numpy())
    np.testing.assert_array_equal(np.frombuffer(scales, np.float32), state.state2.absmax.numpy())


@pytest.mark.parametrize("shape", [(64, 64), (33, 17), (1, 5)])
def test_int8_rows_equal_bitsandbytes(shape):
    x = _matrix(shape, seed=7)
    cb, scb, _ = bnbf.int8_vectorwise_quant(torch.from_numpy(x.copy()))
    q, absmax = _core.int8_rows_quantize(x, shape[1])
    np.testing.assert_array_equal(np.frombuffer(q, np.int8).reshape(shape), cb.numpy())
    np.testing.assert_array_equal(np.frombuffer(absmax, np.float32), scb.numpy())


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    save(build("qwen2_bias", hidden_size=128, intermediate_size=192), path)
    return path


def _twin_f32(model):
    """An f32 model whose weights are the quantized model's dequantized ones."""
    twin = tinylm.Model(model.config)
    twin.load_state_dict({n: v for n, v in model.state_dict().items() if n in twin.parameter_names()})
    return twin


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_qlora_equals_f32_on_the_dequantized_weights(base_dir, quant):
    model = tinylm.Model.from_pretrained(base_dir, quant=quant)
    twin = _twin_f32(model)
    for m in (model, twin):
        m.add_lora(r=4, alpha=8, target_modules="all-linear", seed=1)
        for n in m.parameter_names():
            if "lora_B" in n:
                m.param(n)[...] = np.random.default_rng(hash(n) % 2**32).normal(0, 0.1, m.param(n).shape)
    ids, mask, labels = batch(B=2, T=19)
    # The same weights, expanded tile by tile before (or inside) another GEMM:
    # the same computation in another order.
    chain = decoder(model.config, *ids.shape, lora_r=4)
    assert_close(model.forward(ids, mask), twin.forward(ids, mask), length=chain.forward + DEQUANT, what="logits")
    assert model.loss(ids, labels, mask) == approx(twin.loss(ids, labels, mask), length=chain.loss + DEQUANT)
    model.backward()
    twin.backward()
    ours, ref = model.grads(), twin.grads()
    assert set(ours) == set(ref) and all("lora_" in n for n in ours)
    for name in ref:
        assert_close(ours[name], ref[name], length=chain.backward + DEQUANT, what=name)


def test_quantized_weights_are_small_frozen_and_close(base_dir):
    f32 = tinylm.Model.from_pretrained(base_dir)
    nf4 = tinylm.Model.from_pretrained(base_dir, quant="nf4")
    name = "model.layers.0.mlp.up_proj.weight"
    i = nf4.parameter_names().index(name)
    n = f32.param(name).size
    assert nf4._core.param_bytes(i) == n // 2 + n // 64 + 4 * -(-n // 64 // 256) + 4  # about 4.127 bits a weight
    assert nf4._core.param_bytes(i) / f32._core.param_bytes(i) < 0.3
    with pytest.raises(TypeError, match="quantized"):
        nf4.param(name)
    with pytest.raises(ValueError, match="cannot be trained"):
        nf4.unfreeze(name)
    w, deq = f32.param(name), nf4.weight(name)
    assert np.abs(deq - w).max() <= np.abs(w).max() * 0.2  # NF4's coarsest step is about a sixth of absmax
    # exact: the embedding is not quantized
    np.testing.assert_array_equal(nf4.param("model.embed_tokens.weight"), f32.param("model.embed_tokens.weight"))


def test_dequantized_weight_equals_bitsandbytes_dequantization(base_dir):
    f32 = tinylm.Model.from_pretrained(base_dir)
    nf4 = tinylm.Model.from_pretrained(base_dir, quant="nf4")
    name = "model.layers.1.self_attn.o_proj.weight"
    w = torch.from_numpy(f32.param(name).copy())
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    expected = bnbf.dequantize_4bit(packed, state).numpy()
    assert_close(nf4.weight(name), expected, length=DEQUANT, what=name)


def test_merge_into_an_nf4_base_and_save_merged(base_dir, tmp_path):
    model = tinylm.Model.from_pretrained(base_dir, quant="nf4")
    model.add_lora(r=4, alpha=8, target_modules=["q_proj", "down_proj"])
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = 0.05
    ids, mask, _ = batch(B=2, T=11)
    unmerged = model.forward(ids, mask)
    with pytest.warns(UserWarning, match="dequantized"):
        model.save_pretrained(tmp_path / "merged", merged=True)
    merged_f32 = tinylm.Model.from_pretrained(tmp_path / "merged")
    merge = DEQUANT + 4 + 2  # dequantized, then W + s B A rounded: a sum over r = 4, a product and a sum
    assert_close(merged_f32.forward(ids, mask), unmerged, length=decoder(model.config, *ids.shape, lora_r=4).forward
                 + merge, what="merged (dequantized) model")
    with pytest.warns(UserWarning, match="requantizing to nf4"):
        errors = model.merge_adapter()  # dequantize, merge in f32, requantize: lossy, and reported
    assert sorted(errors) == sorted(f"model.layers.{l}.{m}.weight" for l in range(2)
                                    for m in ("self_attn.q_proj", "mlp.down_proj"))
    assert all(0 < e < 0.2 for e in errors.values())
    # Each merged weight is exactly the NF4 quantization of the f32 merge.
    fresh = tinylm.Model(model.config, quant="nf4")
    fresh.load_state_dict(merged_f32.state_dict())
    for name in errors:
        np.testing.assert_array_equal(model.weight(name), fresh.weight(name), err_msg=name)
