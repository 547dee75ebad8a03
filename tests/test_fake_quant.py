"""tinylm.quant.fake_quantize on its own: the GGUF schemes equal the gguf
package's quantize -> dequantize (the types it can quantize) and tinylm's
GGUF writer as llama.cpp reads it (all), torchao 0.18's fake quantizers in
forward and gradient, and the straight-through gradient stops exactly where
the quantizer's clamp cut a code (a PyTorch reference of the rounding).
Edge cases: ties, all-zero blocks, a block whose largest magnitude is
negative, denormals, constant groups."""
import warnings

import gguf
import numpy as np
import pytest
import torch

import tinylm.quant as tq
from tinylm.errors import UnsupportedError
from tinylm.gguf import ggml

warnings.filterwarnings("ignore", module="torchao")
from torchao.quantization.qat.fake_quantizer import FakeQuantizerBase  # noqa: E402

GGUF_PACKAGE = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]  # the legacy types gguf.quantize implements
K_TYPES = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]


def _weights(rows=16, cols=512, seed=0) -> np.ndarray:
    """Random rows plus the edge cases, block by block (32 values): an
    all-zero block, a block whose largest magnitude is negative, exact
    ties of the largest magnitude with both signs, values on the .5
    rounding boundaries of Q4_0's grid, denormals, a constant block."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    w[0, :32] = 0.0
    w[0, 32:64] = rng.uniform(-0.01, 0.004, 32)
    w[0, 40] = -0.02                                  # largest magnitude negative
    w[0, 64:96] = rng.uniform(-0.5, 0.5, 32)
    w[0, 70], w[0, 71] = 0.75, -0.75                  # tie of the largest magnitude, both signs
    d = 0.8 / -8                                      # Q4_0's scale for a block whose extreme is 0.8
    w[1, :32] = np.float32(d) * (np.arange(32) % 16 - 8 + 0.5)  # codes exactly half-way
    w[1, 0] = 0.8
    w[1, 32:64] = np.float32(1e-40) * np.arange(1, 33)           # denormals
    w[1, 64:96] = 0.3                                 # constant
    w[2, :256] = 0.0                                  # an all-zero K super-block
    return w


@pytest.mark.parametrize("scheme", GGUF_PACKAGE)
def test_gguf_schemes_equal_the_gguf_package(scheme):
    w = _weights()
    t = getattr(gguf.GGMLQuantizationType, scheme.upper())
    expected = gguf.dequantize(gguf.quantize(w, t), t)
    np.testing.assert_array_equal(tq.fake_quantize(w, scheme), expected)


@pytest.mark.parametrize("scheme", GGUF_PACKAGE + K_TYPES)
def test_gguf_schemes_equal_what_a_file_holds(scheme, tmp_path):
    """The values a GGUF tensor of that type holds as the gguf package reads
    the file tinylm writes (its dequantization is llama.cpp's, tested in
    tests/test_ggml_blocks.py against llama.cpp's own quantizer)."""
    from tinylm.gguf.file import GGUFFile, write_gguf
    w = _weights(cols=768)
    t = ggml.by_name(scheme)
    path = tmp_path / "w.gguf"
    write_gguf(str(path), [("general.architecture", "llama")], [("w", t.id, w.shape, lambda: ggml.quantize(t.id, w))])
    reader = gguf.GGUFReader(str(path))
    tensor = reader.tensors[0]
    expected = gguf.dequantize(tensor.data, tensor.tensor_type).reshape(w.shape)
    np.testing.assert_array_equal(tq.fake_quantize(w, scheme), expected)
    with GGUFFile(str(path)) as f:
        assert f.tensors["w"].ggml_type == t.id


def _q4_0_reference(w: torch.Tensor):
    """quantize_row_q4_0_ref in float32 torch ops, with the STE: the
    forward is the fp16-scaled codes, the gradient passes where the code
    trunc(x / d + 8.5) was not cut to 15."""
    x = w.detach().reshape(-1, 32)
    amax_idx = x.abs().argmax(dim=1, keepdim=True)  # the first of equals, as ggml's strict '<'
    d = torch.gather(x, 1, amax_idx) / -8
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    t = x * inv + 8.5
    # ggml's (int8_t)(int) conversion as x86 does it: out of int32 range (inf, NaN) gives INT32_MIN, whose
    # low byte is 0; in range, truncation then the low byte
    wide = torch.where(torch.isfinite(t) & (t.abs() < 2.0**31), torch.trunc(t), torch.full_like(t, -2.0**31))
    code = ((wide.to(torch.int64) + 128) % 256 - 128).to(torch.float32)
    keep = (code <= 15).reshape(w.shape)
    d16 = d.to(torch.float16).to(torch.float32)
    value = ((torch.clamp(code, max=15) - 8) * d16).reshape(w.shape)
    passed = torch.where(keep, w, w.detach())
    return passed + (value - passed).detach(), keep


def test_q4_0_gradient_is_the_straight_through_reference():
    w = torch.tensor(_weights(), requires_grad=True)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(3))
    value, keep = _q4_0_reference(w)
    (value * g).sum().backward()
    ours, clip = tq.fake_quantize(w.detach().numpy(), "q4_0", return_clip=True)
    np.testing.assert_array_equal(ours, value.detach().numpy())
    np.testing.assert_array_equal(clip, ~keep.numpy())
    assert clip.sum() > 0  # the half-way row cuts codes: the mask is exercised
    np.testing.assert_array_equal(tq.fake_quantize_grad(w.detach().numpy(), g.numpy(), "q4_0"), w.grad.numpy())


@pytest.mark.parametrize("scheme", ["q5_0", "q4_k", "q6_k"])
def test_clipped_values_are_outside_the_grid(scheme):
    """Where the gradient stops the value was cut: it lies farther from its
    quantized value than any kept value of the same block from its own, and
    kept values are within half a grid step (the block's smallest gap)."""
    w = _weights(cols=512, seed=5) * 3
    w_hat, clip = tq.fake_quantize(w, scheme, return_clip=True)
    err = np.abs(w - w_hat)
    block = 32 if scheme == "q5_0" else 16
    err_b, clip_b = err.reshape(-1, block), clip.reshape(-1, block)
    checked = 0
    for e, c in zip(err_b, clip_b):
        if c.any() and (~c).any():
            assert e[c].min() >= e[~c].max() * 0.999
            checked += 1
    assert checked > 0


def _torchao(config, w, g):
    fq = FakeQuantizerBase.from_config(config)
    t = torch.tensor(w, requires_grad=True)
    out = fq(t)
    (out * torch.tensor(g)).sum().backward()
    return out.detach().numpy(), t.grad.numpy()


def _int4_config(group):
    from torchao.quantization.qat.fake_quantize_config import Int4WeightFakeQuantizeConfig
    return Int4WeightFakeQuantizeConfig(group_size=group, activation_dtype=torch.bfloat16)


def _intx_config(bits, group):
    from torchao.quantization.qat.fake_quantize_config import IntxFakeQuantizeConfig
    return IntxFakeQuantizeConfig(getattr(torch, f"int{bits}"), group_size=group, is_symmetric=True)


@pytest.mark.parametrize("group", [32, 64, 128, 256])
def test_int4_weight_only_equals_torchao(group):
    """Forward bit for bit; the gradient (through each group's min and max
    too) to the rounding of its group sums: 2 g U of the largest term."""
    w, g = _weights(), np.random.default_rng(1).standard_normal((16, 512)).astype(np.float32)
    expected, expected_grad = _torchao(_int4_config(group), w, g)
    np.testing.assert_array_equal(tq.fake_quantize(w, f"int4_g{group}"), expected)
    grad = tq.fake_quantize_grad(w, g, f"int4_g{group}")
    scale = 15 * np.abs(g).reshape(-1, group).sum(axis=1).max()
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=4 * group * 2.0**-24 * scale)
    assert np.abs(grad - g).max() > 0.1  # the min/max terms are there (a plain STE would be g)


@pytest.mark.parametrize("bits,group", [(4, 32), (4, 128), (2, 64), (8, 32)])
def test_symmetric_intx_equals_torchao(bits, group):
    w, g = _weights(), np.random.default_rng(2).standard_normal((16, 512)).astype(np.float32)
    expected, expected_grad = _torchao(_intx_config(bits, group), w, g)
    name = f"8da4w_g{group}" if bits == 4 else f"int{bits}_sym_g{group}"
    np.testing.assert_array_equal(tq.fake_quantize(w, name), expected)
    np.testing.assert_array_equal(tq.fake_quantize_grad(w, g, name), expected_grad)


def test_int8_token_activations_equal_torchao():
    from torchao.quantization.qat.fake_quantize_config import IntxFakeQuantizeConfig
    x = _weights(rows=24, cols=96, seed=4) * 40
    x[3] = np.abs(x[3])  # a row with no negative value: zero point at the bottom of the range
    x[4] = 0.0
    g = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    expected, expected_grad = _torchao(IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False), x, g)
    np.testing.assert_array_equal(tq.fake_quantize_activations(x), expected)
    np.testing.assert_array_equal(tq.fake_quantize_activations_grad(x, g), expected_grad)


def test_unknown_schemes_and_bad_shapes_are_refused_by_name():
    w = _weights()
    with pytest.raises(UnsupportedError, match="iq4_nl"):
        tq.fake_quantize(w, "iq4_nl")
    with pytest.raises(ValueError, match="groups of 48"):
        tq.fake_quantize(w, "int4_g48")
    with pytest.raises(ValueError, match="q4_K"):
        tq.fake_quantize(w[:, :96], "q4_k")  # 96 values: not a whole 256-value super-block
    with pytest.raises(ValueError, match="grad has shape"):
        tq.fake_quantize_grad(w, w[:2], "q8_0")
