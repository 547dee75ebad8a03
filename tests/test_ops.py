"""Each kernel of csrc/ops/ops.h on its own, through the test binding
tinylm._core.ops: the forward output and every input gradient against
PyTorch autograd in float32 and, where transformers has the function,
against transformers' own (its RMSNorm classes, rotary init functions,
rotary embeddings and apply_rotary_pos_emb, ACT2FN, Gemma's scaled
embedding, Gemma 2's eager attention under masking_utils' masks).

Tolerances come from tests/tolerance.py: every comparison states the
reduction length of the chain that produced the values, built from the
per-op lengths below (each says why)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, Phi3Config, StableLmConfig
from transformers.activations import ACT2FN
from transformers.masking_utils import (and_masks, causal_mask_function, padding_mask_function,
                                        sliding_window_causal_mask_function)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm, GemmaTextScaledWordEmbedding
from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply_rotary
from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding
from transformers.models.phi3.modeling_phi3 import apply_rotary_pos_emb as partial_apply_rotary
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm
from transformers.models.stablelm.modeling_stablelm import StableLmLayerNormPerHead, StableLmRotaryEmbedding

from tinylm import _core
from tinylm._core import ops
from tolerance import ACT_OPS, EXP, NORM_OPS, ROPE_OPS, SOFTMAX_OPS, approx, assert_close, gemm_scale

CAP_OPS = 3  # soft-cap: a division, a tanh, a product
# An activation's derivative: gelu tanh's is the longest, x^2, x^3, the inner polynomial, the tanh (an
# exp's worth), 1 + t, 1 - t^2, the slope polynomial and the products joining them.
ACT_SLOPE_OPS = 14


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def randn(rng, *shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def leaf(a):
    return torch.tensor(a, requires_grad=True)


# ------------------------------------------------------------------- norms

# Forward: the row's sum over D (LayerNorm: the mean, then the variance, 2D),
# then rsqrt, scale and weight (NORM_OPS). dx adds the row's two dot products
# (sum g and sum g xh, 2D) and their combination (NORM_OPS); dw and db add
# the sum over the N rows.
def norm_lengths(kind, D, N):
    forward = (2 * D if kind == ops.NORM_LAYER else D) + NORM_OPS
    return SimpleNamespace(forward=forward, dx=forward + 2 * D + NORM_OPS, dw=forward + N)


def run_norm(desc, x, w, b, dout, N, D):
    out, stats = np.empty((N, D), np.float32), np.empty((N, 2), np.float32)
    ops.norm_forward(desc, out, stats, x, w, b, N, D)
    dx = np.empty((N, D), np.float32)
    dw = np.zeros_like(w)
    db = None if b is None else np.zeros_like(b)
    ops.norm_backward(desc, dx, 0.0, dw, db, dout, x, w, stats, N, D)
    return out, stats, dx, dw, db


def check_norm(kind, N, D, ours, module_out, x_t, params, dout):
    """ours: (out, dx, dw, db); module_out: the reference's output from x_t; params: its (w, b) leaves."""
    module_out.backward(torch.tensor(dout).reshape(module_out.shape))
    n = norm_lengths(kind, D, N)
    out, dx, dw, db = ours
    assert_close(out, module_out.detach().numpy().reshape(out.shape), length=n.forward, what="out")
    assert_close(dx, x_t.grad.numpy().reshape(dx.shape), length=n.dx, what="dx")
    assert_close(dw, params[0].grad.numpy().reshape(dw.shape), length=n.dw, what="dw")
    if db is not None:
        assert_close(db, params[1].grad.numpy().reshape(db.shape), length=n.dw, what="db")


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_rmsnorm(family):
    """Llama's w * (x * rstd) and Gemma's x * rstd * (1 + w), against their classes."""
    rng = np.random.default_rng(1)
    N, D, eps = 29, 37, 1e-6
    x, w, dout = randn(rng, N, D, scale=3.0), randn(rng, D, scale=0.5), randn(rng, N, D)
    ref = (LlamaRMSNorm if family == "llama" else GemmaRMSNorm)(D, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
    x_t = leaf(x)
    desc = (ops.NORM_RMS, eps, 0.0 if family == "llama" else 1.0, 1, 0)
    out, stats, dx, dw, _ = run_norm(desc, x, w, None, dout, N, D)
    assert np.all(stats[:, 0] == 0.0)  # RMS keeps mean 0
    check_norm(ops.NORM_RMS, N, D, (out, dx, dw, None), ref(x_t), x_t, (ref.weight,), dout)


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(bias):
    """torch.nn.functional.layer_norm: biased variance, eps inside the sqrt; rows with a mean twice their spread."""
    rng = np.random.default_rng(2)
    N, D, eps = 23, 41, 1e-5
    x, w, b, dout = randn(rng, N, D, scale=2.0) + 4.0, randn(rng, D), randn(rng, D), randn(rng, N, D)
    x_t, w_t, b_t = leaf(x), leaf(w), leaf(b)
    ref = F.layer_norm(x_t, (D,), w_t, b_t if bias else None, eps)
    out, stats, dx, dw, db = run_norm((ops.NORM_LAYER, eps, 0.0, 1, 0), x, w, b if bias else None, dout, N, D)
    assert_close(stats[:, 0], x.astype(np.float64).mean(1), length=D, what="mean")
    check_norm(ops.NORM_LAYER, N, D, (out, dx, dw, db), ref, x_t, (w_t, b_t), dout)


def test_qk_norm_shared():
    """Qwen3's q/k norm: one weight [E] over every head's row ([N*H, E] rows, groups 1)."""
    rng = np.random.default_rng(3)
    N, H, E, eps = 11, 3, 24, 1e-6
    x, w, dout = randn(rng, N, H, E), randn(rng, E), randn(rng, N, H, E)
    ref = Qwen3RMSNorm(E, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
    x_t = leaf(x)
    out, _, dx, dw, _ = run_norm((ops.NORM_RMS, eps, 0.0, 1, 0), x, w, None, dout, N * H, E)
    check_norm(ops.NORM_RMS, N * H, E, (out, dx, dw, None), ref(x_t), x_t, (ref.weight,), dout)


def strided_rows(block, E):
    """Rows of `block` [G, ld] as the op reads them: (G-1)*ld + E floats from its start (a view)."""
    G, ld = block.shape
    return block.reshape(-1)[: (G - 1) * ld + E]


@pytest.mark.parametrize("kind", ["rms", "layer", "layer_bias"])
def test_norm_per_head_weights(kind):
    """A weight (and bias) per head, rows ld floats apart in a larger block: row n of [N*H, E] takes
    row n % H. LayerNorm against StableLM's per-head q/k LayerNorm; RMS against Llama's formula per head."""
    rng = np.random.default_rng(4)
    N, H, E, ld, eps = 9, 4, 20, 27, 1e-5
    x, dout = randn(rng, N, H, E, scale=2.0), randn(rng, N, H, E)
    w_block, b_block = randn(rng, H, ld), randn(rng, H, ld)
    layer, bias = kind != "rms", kind == "layer_bias"
    w, b = strided_rows(w_block, E), strided_rows(b_block, E) if bias else None
    desc = (ops.NORM_LAYER if layer else ops.NORM_RMS, eps, 0.0, H, ld)
    dw_block, db_block = np.zeros((H, ld), np.float32), np.zeros((H, ld), np.float32)
    out, stats = np.empty((N * H, E), np.float32), np.empty((N * H, 2), np.float32)
    ops.norm_forward(desc, out, stats, x, w, b, N * H, E)
    dx = np.empty((N * H, E), np.float32)
    ops.norm_backward(desc, dx, 0.0, strided_rows(dw_block, E), strided_rows(db_block, E) if bias else None,
                      dout, x, w, stats, N * H, E)
    assert not dw_block[:, E:].any() and not db_block[:, E:].any()  # nothing written between the rows
    x_t = leaf(x)
    if layer:
        ref = StableLmLayerNormPerHead(E, H, eps=eps, bias=bias)
        with torch.no_grad():
            for h, norm in enumerate(ref.norms):
                norm.weight.copy_(torch.tensor(w_block[h, :E]))
                if bias:
                    norm.bias.copy_(torch.tensor(b_block[h, :E]))
        ref_out = ref(x_t.permute(1, 0, 2)[None])[0].permute(1, 0, 2)  # it takes [B, H, T, E]: N as T
        ref_out.backward(torch.tensor(dout))
        ref_dw = torch.stack([n.weight.grad for n in ref.norms]).numpy()
        ref_db = torch.stack([n.bias.grad for n in ref.norms]).numpy() if bias else None
    else:
        w_t = leaf(w_block[:, :E])
        xf = x_t.float()
        ref_out = w_t * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps))
        ref_out.backward(torch.tensor(dout))
        ref_dw, ref_db = w_t.grad.numpy(), None
    n = norm_lengths(desc[0], E, N)
    assert_close(out.reshape(N, H, E), ref_out.detach().numpy(), length=n.forward, what="out")
    assert_close(dx.reshape(N, H, E), x_t.grad.numpy(), length=n.dx, what="dx")
    assert_close(dw_block[:, :E], ref_dw, length=n.dw, what="dw")
    if bias:
        assert_close(db_block[:, :E], ref_db, length=n.dw, what="db")


def test_norm_backward_accumulates_and_is_deterministic():
    """dx = beta*dx + ..., dw/db +=, dx/dw may be None; the weight sums are bitwise the same for a thread
    count and within rounding across counts (per-thread partials reduced in thread order)."""
    rng = np.random.default_rng(5)
    N, D, eps, G = 203, 33, 1e-5, 7
    x, dout = randn(rng, N, D), randn(rng, N, D)
    w, b = randn(rng, G, D), randn(rng, G, D)
    desc = (ops.NORM_LAYER, eps, 0.0, G, D)
    out, stats = np.empty((N, D), np.float32), np.empty((N, 2), np.float32)
    ops.norm_forward(desc, out, stats, x, w, b, N, D)

    def grads(threads):
        _core.set_num_threads(threads)
        dw, db = np.zeros_like(w), np.zeros_like(b)
        ops.norm_backward(desc, None, 0.0, dw, db, dout, x, w, stats, N, D)
        return dw, db

    dw3, db3 = grads(3)
    assert all(np.array_equal(a, c) for a, c in zip((dw3, db3), grads(3)))
    n = norm_lengths(ops.NORM_LAYER, D, N)
    for a, c in zip((dw3, db3), grads(1)):
        assert_close(a, c, length=n.dw, what="1 vs 3 threads")
    dx = np.empty((N, D), np.float32)
    ops.norm_backward(desc, dx, 0.0, None, None, dout, x, w, stats, N, D)
    twice = dx.copy()
    ops.norm_backward(desc, twice, 1.0, None, None, dout, x, w, stats, N, D)
    assert np.array_equal(twice, 2 * dx)  # 1*dx + the same dx: exact
    dw, db = dw3.copy(), db3.copy()
    ops.norm_backward(desc, None, 0.0, dw, db, dout, x, w, stats, N, D)
    assert_close(dw, 2 * dw3, length=n.dw + 1, what="dw +=")
    assert_close(db, 2 * db3, length=n.dw + 1, what="db +=")


# -------------------------------------------------------------------- RoPE

def llama_config(E, rope_parameters, **kw):
    return LlamaConfig(hidden_size=4 * E, num_attention_heads=4, num_key_value_heads=2, head_dim=E,
                       max_position_embeddings=16384, rope_parameters=rope_parameters, **kw)


LONG_SHORT = np.random.default_rng(6).uniform(1.0, 2.0, 15).astype(np.float32)
LONG_LONG = np.random.default_rng(7).uniform(1.0, 6.0, 15).astype(np.float32)


def phi3_longrope_config():
    """Phi-3 style longrope with partial rotary (Phi-4-mini's 0.75): E 40, R 30; positions past 64 use
    the long factors."""
    return Phi3Config(hidden_size=160, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      original_max_position_embeddings=64,
                      rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                                       "factor": 4.0,
                                       "short_factor": LONG_SHORT.tolist(), "long_factor": LONG_LONG.tolist(),
                                       "original_max_position_embeddings": 64})


# name -> (transformers config, its rotary class, E, R, our tlm_rope fields)
ROPES = {
    "default": (llama_config(48, {"rope_type": "default", "rope_theta": 10000.0}), LlamaRotaryEmbedding, 48, 48,
                dict(type=ops.ROPE_DEFAULT, theta=10000.0)),
    "default_partial": (StableLmConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=4,
                                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                        "partial_rotary_factor": 0.25}),
                        StableLmRotaryEmbedding, 32, 8, dict(type=ops.ROPE_DEFAULT, theta=10000.0)),
    # no model config reaches linear scaling today: the init function itself is the reference
    "linear": (llama_config(48, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}), LlamaRotaryEmbedding,
               48, 48, dict(type=ops.ROPE_LINEAR, theta=10000.0, factor=4.0)),
    "llama3": (llama_config(64, {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
               LlamaRotaryEmbedding, 64, 64,
               dict(type=ops.ROPE_LLAMA3, theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position=8192)),
    "llama3_theta_1e4": (llama_config(48, {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 8192}),
                         LlamaRotaryEmbedding, 48, 48,
                         dict(type=ops.ROPE_LLAMA3, theta=10000.0, factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position=8192)),
    "longrope": (phi3_longrope_config(), Phi3RotaryEmbedding, 40, 30,
                 dict(type=ops.ROPE_LONGROPE, theta=10000.0, short_factor=LONG_SHORT, long_factor=LONG_LONG)),
}

# inv_freq: theta^x counted as an exp; then 1/x and the type's rescaling, llama3's smoothing the longest at
# 8 roundings (2 pi / f, old_len / wavelen, - low, / (high - low), 1 - s, two products and a sum).
INV_FREQ_LENGTH = EXP + 1 + 8


def reference_inv_freq(name, use_long):
    config, rotary, E, R, fields = ROPES[name]
    if fields["type"] == ops.ROPE_DEFAULT:
        inv_freq, scaling = rotary.compute_default_rope_parameters(config)
    else:
        rope_type = config.rope_parameters["rope_type"]
        seq_len = config.rope_parameters["original_max_position_embeddings"] + 1 if use_long else None
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, seq_len=seq_len)
    assert inv_freq.shape == (R // 2,)
    return inv_freq.numpy(), scaling


def our_inv_freq(name, use_long):
    _, _, _, R, fields = ROPES[name]
    inv_freq = np.empty(R // 2, np.float32)
    ops.rope_inv_freq(inv_freq, R, use_long, **fields)
    return inv_freq


CASES = [(name, False) for name in ROPES] + [("longrope", True)]


@pytest.mark.parametrize("name,use_long", CASES)
def test_rope_inv_freq(name, use_long):
    """transformers' init functions (ROPE_INIT_FUNCTIONS; the model's compute_default_rope_parameters for
    default), element by element relative to each frequency (scale 0)."""
    expected, _ = reference_inv_freq(name, use_long)
    assert_close(our_inv_freq(name, use_long), expected, length=INV_FREQ_LENGTH, scale=0.0, what="inv_freq")


def positions(name, use_long, B, T):
    start = 70 if use_long else 0  # longrope picks the long factors from max(position) + 1 > 64
    return np.stack([np.arange(T) + start + 3 * b for b in range(B)]).astype(np.int32)


@pytest.mark.parametrize("name,use_long", CASES)
def test_rope_tables(name, use_long):
    """cos/sin against the model's rotary embedding (cos = emb.cos() * attention_scaling) from the same
    inv_freq, so the angles are the same f32 products: a cos/sin and the scaling product (ROPE_OPS)."""
    config, rotary, E, R, _ = ROPES[name]
    B, T = 2, 9
    pos = positions(name, use_long, B, T)
    inv_freq, scaling = reference_inv_freq(name, use_long)
    cos_t, sin_t = np.empty((B * T, R // 2), np.float32), np.empty((B * T, R // 2), np.float32)
    ops.rope_tables(cos_t, sin_t, pos, f32(inv_freq), B * T, R, scaling)
    cos, sin = rotary(config)(torch.zeros(1), torch.tensor(pos, dtype=torch.long))
    assert cos.shape == (B, T, R)
    for ours, ref in ((cos_t, cos), (sin_t, sin)):
        ref = ref.numpy().reshape(B * T, R)
        assert np.array_equal(ref[:, : R // 2], ref[:, R // 2:])  # rotate-half: the table's two halves repeat
        assert_close(ours, ref[:, : R // 2], length=ROPE_OPS, what="table")


@pytest.mark.parametrize("name,use_long", [("default", False), ("default_partial", False), ("longrope", True)])
def test_rope_forward_backward(name, use_long):
    """q [B,T,H,E] and k [B,T,K,E] against transformers' apply_rotary_pos_emb (Phi-3's splits off the
    R rotated elements itself); backward against autograd through it. Elements past R pass through
    untouched, exactly."""
    _, _, E, R, _ = ROPES[name]
    rng = np.random.default_rng(8)
    B, T, H, K = 2, 7, 3, 1
    pos = positions(name, use_long, B, T)
    inv_freq, scaling = reference_inv_freq(name, use_long)
    cos_t, sin_t = np.empty((B * T, R // 2), np.float32), np.empty((B * T, R // 2), np.float32)
    ops.rope_tables(cos_t, sin_t, pos, f32(inv_freq), B * T, R, scaling)
    q, k, gq, gk = randn(rng, B, T, H, E), randn(rng, B, T, K, E), randn(rng, B, T, H, E), randn(rng, B, T, K, E)

    cos = torch.tensor(np.concatenate([cos_t, cos_t], 1).reshape(B, T, R))
    sin = torch.tensor(np.concatenate([sin_t, sin_t], 1).reshape(B, T, R))
    q_t, k_t = leaf(q), leaf(k)
    apply = llama_apply_rotary if R == E else partial_apply_rotary
    q_ref, k_ref = apply(q_t, k_t, cos, sin, unsqueeze_dim=2)  # [B, T, heads, E]: cos broadcast over heads
    ((q_ref * torch.tensor(gq)).sum() + (k_ref * torch.tensor(gk)).sum()).backward()

    for x, g, nh, x_ref, x_t in ((q, gq, H, q_ref, q_t), (k, gk, K, k_ref, k_t)):
        y, dx = x.copy(), g.copy()
        ops.rope_forward(y, cos_t, sin_t, B * T, nh, E, R)
        ops.rope_backward(dx, cos_t, sin_t, B * T, nh, E, R)
        assert_close(y, x_ref.detach().numpy(), length=ROPE_OPS, what="rope")
        assert_close(dx, x_t.grad.numpy(), length=ROPE_OPS, what="d rope")
        assert np.array_equal(y[..., R:], x[..., R:]) and np.array_equal(dx[..., R:], g[..., R:])


# ------------------------------------------------------- activation, cap

ACTS = {"silu": ops.ACT_SILU, "gelu_pytorch_tanh": ops.ACT_GELU_TANH, "gelu_new": ops.ACT_GELU_TANH,
        "gelu": ops.ACT_GELU}


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
@pytest.mark.parametrize("hf_name", list(ACTS))
def test_activation(hf_name, gated):
    """transformers' ACT2FN[name](g) (* u when gated). Forward: the activation's ACT_OPS and the product.
    Backward: its derivative (ACT_SLOPE_OPS) and the products with dm and u."""
    rng = np.random.default_rng(9)
    n = 20011  # past the op's OpenMP threshold
    g, u, dm = randn(rng, n, scale=3.0), randn(rng, n), randn(rng, n)
    g_t, u_t = leaf(g), leaf(u)
    ref = ACT2FN[hf_name](g_t) * u_t if gated else ACT2FN[hf_name](g_t)
    ref.backward(torch.tensor(dm))
    act = ACTS[hf_name]
    m, dg, du = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    ops.act_forward(act, m, g, u if gated else None, n)
    ops.act_backward(act, dg, du if gated else None, dm, g, u if gated else None, n)
    assert_close(m, ref.detach().numpy(), length=ACT_OPS + 1, what="m")
    assert_close(dg, g_t.grad.numpy(), length=ACT_SLOPE_OPS + 2, what="dg")
    if gated:
        assert_close(du, u_t.grad.numpy(), length=ACT_OPS + 1, what="du")


def test_softcap():
    """cap * tanh(x / cap) as Gemma 2 writes it (divide, tanh, multiply), backward from the capped values."""
    rng = np.random.default_rng(10)
    n, cap = 20011, 30.0
    x, dy = randn(rng, n, scale=50.0), randn(rng, n)
    x_t = leaf(x)
    ref = torch.tanh(x_t / cap) * cap
    ref.backward(torch.tensor(dy))
    y, dx = x.copy(), dy.copy()
    ops.softcap_forward(y, n, cap)
    ops.softcap_backward(dx, y, n, cap)
    assert_close(y, ref.detach().numpy(), length=CAP_OPS, what="y")
    assert_close(dx, x_t.grad.numpy(), length=2 * CAP_OPS, what="dx")  # 1 - (y/cap)^2 from the rounded y


def test_add_axpy():
    rng = np.random.default_rng(11)
    n = 20011
    a, b = randn(rng, n), randn(rng, n)
    out = np.empty(n, np.float32)
    ops.add(out, a, b, n)
    assert np.array_equal(out, a + b)  # one rounded sum, as numpy's
    y = a.copy()
    ops.axpy(y, np.float32(0.3), b, n)
    assert_close(y, a + np.float32(0.3) * b, length=2, what="axpy")


# ---------------------------------------------------------------- attention

def attention_mask(B, T, pad):
    """[B, T] key mask: row 0 right-padded, row 1 left-padded by `pad`, others full."""
    mask = np.ones((B, T), np.int32)
    mask[0, T - pad:] = 0
    if B > 1:
        mask[1, :pad] = 0
    return mask


def reference_allowed(mask, window):
    """[B, 1, T, T] which keys each query sees, from transformers' mask functions (the sliding window is
    masking_utils.sliding_window_causal_mask_function)."""
    B, T = mask.shape
    base = sliding_window_causal_mask_function(window) if window else causal_mask_function
    fn = and_masks(base, padding_mask_function(torch.tensor(mask != 0)))
    idx = torch.arange(T)
    return fn(torch.arange(B)[:, None, None, None], torch.zeros(1, 1, 1, 1, dtype=torch.long),
              idx[None, None, :, None], idx[None, None, None, :])


def reference_attention(q, k, v, allowed, scale, softcap):
    """Gemma 2's eager attention (scores * scale, soft-cap, then the additive mask) on [B,T,heads,E]
    inputs, and each row's log-sum-exp; a query that sees no key outputs zeros (the op's contract;
    transformers' min-value mask would spread it uniformly)."""
    additive = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    H, K, E = q.shape[2], k.shape[2], q.shape[3]
    module = SimpleNamespace(num_key_value_groups=H // K, training=False, head_dim=E)
    out, _ = eager_attention_forward(module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), additive,
                                     scaling=scale, softcap=softcap or None)
    sees = allowed.any(-1)[:, 0, :, None, None]  # [B, T, 1, 1]
    s = torch.matmul(q.transpose(1, 2), k.repeat_interleave(H // K, 2).transpose(1, 2).transpose(2, 3)) * scale
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    lse = torch.logsumexp(s.masked_fill(~allowed, -math.inf), -1)  # [B, H, T]
    return out * sees, lse


def attention_lengths(E, T, H, K):
    """Forward: scores over E (+1 scale), the cap, softmax over T, P.V over T. Backward adds dP over E,
    dS (the softmax's ops, the cap's derivative), dQ/dK/dV over T and the sum of a kv head's H/K shares."""
    forward = (E + 1) + CAP_OPS + (T + SOFTMAX_OPS) + T
    return SimpleNamespace(forward=forward, backward=forward + E + SOFTMAX_OPS + CAP_OPS + T + H // K)


def attention_scales(q, k, v, dout, allowed, scale, softcap):
    """sum|terms| of each element of out, dq, dk, dv (assert_close's scale), in float64 from the exact
    probabilities P: out = P V, dv = P^T dO, dq = scale dS K, dk = scale dS^T Q, with
    dS = P (dP - d) (1 - tanh^2) whose terms are P (|dO| |V|^T + |dO| . |O|) (1 - tanh^2). A gradient
    that cancels to ~0 (a window of 1: dS = P (dP - d) with P = 1) is then held to the size of its
    terms, not to 0."""
    B, T, H, E = q.shape
    K = k.shape[2]

    def heads(x, rep=1):  # [B, T, n, E] -> [B, H, T, E] float64
        return torch.tensor(x, dtype=torch.float64).repeat_interleave(rep, 2).transpose(1, 2)

    qd, kd, vd, dod = heads(q), heads(k, H // K), heads(v, H // K), heads(dout)
    s = qd @ kd.transpose(2, 3) * scale
    slope = 1.0
    if softcap:
        s = torch.tanh(s / softcap) * softcap
        slope = 1 - (s / softcap) ** 2
    P = torch.softmax(s.masked_fill(~allowed, -math.inf), -1).nan_to_num(0.0)
    o = P @ vd
    A = P * (dod.abs() @ vd.abs().transpose(2, 3) + (dod.abs() * o.abs()).sum(-1, keepdim=True)) * slope

    def per_kv(x):  # [B, H, T, E] -> [B, T, K, E], a kv head's query-head shares summed
        return x.reshape(B, K, H // K, T, E).sum(2).transpose(1, 2).numpy()

    return SimpleNamespace(out=(P @ vd.abs()).transpose(1, 2).numpy(),
                           dq=(scale * A @ kd.abs()).transpose(1, 2).numpy(),
                           dk=per_kv(scale * A.transpose(2, 3) @ qd.abs()),
                           dv=per_kv(P.transpose(2, 3) @ dod.abs()))


def run_attention(desc, q, k, v, mask, dout):
    B, T, H, E = q.shape
    K = k.shape[2]
    out, lse = np.empty_like(q), np.empty((B, H, T), np.float32)
    ops.attention_forward(desc, out, lse, q, k, v, mask, B, T, H, K, E)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    ops.attention_backward(desc, dq, dk, dv, dout, q, k, v, out, lse, mask, B, T, H, K, E)
    return out, lse, dq, dk, dv


def attention_inputs(rng, B, T, H, K, E):
    return randn(rng, B, T, H, E), randn(rng, B, T, K, E), randn(rng, B, T, K, E), randn(rng, B, T, H, E)


# (window, softcap, scale): none; below T and below a query block (128) with Gemma 2's cap and
# query_pre_attn_scalar-style scale; at a block's edge (127, 128, 129); the degenerate 1 (only itself);
# T - 1.
@pytest.mark.parametrize("window,softcap,scale", [
    (0, 0.0, None), (37, 20.0, 0.25), (1, 0.0, None), (127, 0.0, None), (128, 50.0, None), (129, 0.0, None),
    (259, 0.0, None)])
def test_attention(window, softcap, scale):
    """Forward, lse and dq/dk/dv against Gemma 2's eager attention under transformers' sliding-window and
    padding masks; T = 260 spans three query blocks, GQA 4 heads on 2, both paddings."""
    rng = np.random.default_rng(12)
    B, T, H, K, E = 2, 260, 4, 2, 12
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    q, k, v, dout = attention_inputs(rng, B, T, H, K, E)
    mask = attention_mask(B, T, pad=9)
    out, lse, dq, dk, dv = run_attention((scale, softcap, window), q, k, v, mask, dout)

    q_t, k_t, v_t = leaf(q), leaf(k), leaf(v)
    allowed = reference_allowed(mask, window)
    ref, ref_lse = reference_attention(q_t, k_t, v_t, allowed, scale, softcap)
    ref.backward(torch.tensor(dout))
    n = attention_lengths(E, T, H, K)
    sc = attention_scales(q, k, v, dout, allowed, scale, softcap)
    assert_close(out, ref.detach().numpy(), length=n.forward, scale=sc.out, what="out")
    assert_close(lse, ref_lse.detach().numpy(), length=n.forward, what="lse")
    for ours, x_t, what in ((dq, q_t, "dq"), (dk, k_t, "dk"), (dv, v_t, "dv")):
        assert_close(ours, x_t.grad.numpy(), length=n.backward, scale=getattr(sc, what), what=what)


def test_attention_window_edge():
    """Which keys a query sees, read off the output: q = 0 gives each query equal weights over its keys and
    v[j] = e_j puts key j's weight in element j. Query i sees i - W < j <= i (mask[j] set), its W most
    recent positions itself included, as transformers' mask functions say."""
    B, T, W = 2, 20, 4
    q, k = np.zeros((B, T, 1, T), np.float32), np.zeros((B, T, 1, T), np.float32)
    v = np.broadcast_to(np.eye(T, dtype=np.float32)[None, :, None, :], (B, T, 1, T)).copy()
    mask = attention_mask(B, T, pad=3)
    out, lse = np.empty_like(q), np.empty((B, 1, T), np.float32)
    ops.attention_forward((1.0, 0.0, W), out, lse, q, k, v, mask, B, T, 1, 1, T)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    expected = (i - W < j) & (j <= i) & (mask[:, None, :] != 0)  # [B, T, T]
    assert np.array_equal(out[:, :, 0, :] > 0, expected)
    assert np.array_equal(expected, reference_allowed(mask, W)[:, 0].numpy())
    assert not out[1, :3].any()  # left padding: no key, zeros
    assert np.isneginf(lse[1, 0, :3]).all()


def test_attention_full_window_is_causal():
    """A window as long as the sequence changes nothing: the same computation as no window, bit for bit."""
    rng = np.random.default_rng(13)
    B, T, H, K, E = 1, 150, 2, 1, 8
    q, k, v, dout = attention_inputs(rng, B, T, H, K, E)
    full = run_attention((0.3, 0.0, 0), q, k, v, None, dout)
    windowed = run_attention((0.3, 0.0, T), q, k, v, None, dout)
    assert all(np.array_equal(a, b) for a, b in zip(full, windowed))


@pytest.mark.parametrize("window,softcap", [(0, 0.0), (23, 30.0)])
def test_attention_decode_matches_full(window, softcap):
    """A prompt of 70 positions (two decode blocks of 64) then single steps, against the full forward on
    the whole sequence with the same left padding: the same attention summed over other blocks."""
    rng = np.random.default_rng(14)
    B, T, H, K, E, Tc, scale = 2, 80, 4, 2, 8, 84, 0.3
    q, k, v, _ = attention_inputs(rng, B, T, H, K, E)
    start = np.array([0, 5], np.int32)
    mask = (np.arange(T)[None, :] >= start[:, None]).astype(np.int32)
    desc = (scale, softcap, window)
    full, lse = np.empty_like(q), np.empty((B, H, T), np.float32)
    ops.attention_forward(desc, full, lse, q, k, v, mask, B, T, H, K, E)
    kc, vc = np.zeros((B, K, Tc, E), np.float32), np.zeros((B, K, Tc, E), np.float32)
    kc[:, :, :T], vc[:, :, :T] = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    t0 = 0
    for S in [70] + [1] * (T - 70):
        out = np.empty((B, S, H, E), np.float32)
        ops.attention_decode(desc, out, f32(q[:, t0:t0 + S]), kc, vc, start, B, S, t0, Tc, H, K, E)
        assert_close(out, full[:, t0:t0 + S], length=attention_lengths(E, T, H, K).forward, what=f"t0={t0}")
        t0 += S
    assert not full[1, :5].any()


# ---------------------------------------------------------- LM head, embedding

@pytest.mark.parametrize("bias,softcap", [(False, 0.0), (True, 0.0), (True, 30.0)])
def test_lmhead_ce(bias, softcap):
    """Summed NLL of hv W^T + bias, soft-capped (Gemma 2's final_logit_softcapping), and dhv, dW, dbias
    against autograd. Loss: the GEMM over D, bias, cap, log-softmax over V, the sum over rows; dhv adds
    dlogits W over V and the cap's derivative; dW and dbias the sum over the Nv rows."""
    rng = np.random.default_rng(15)
    Nv, D, V = 37, 24, 211
    hv, W, b = randn(rng, Nv, D), randn(rng, V, D, scale=2.0), randn(rng, V)
    tv = rng.integers(0, V, Nv).astype(np.int32)
    hv_t, W_t, b_t = leaf(hv), leaf(W), leaf(b)
    logits = hv_t @ W_t.T + (b_t if bias else 0)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    ref = F.cross_entropy(logits, torch.tensor(tv, dtype=torch.long), reduction="sum")
    ref.backward()
    dhv, dW, db = np.empty_like(hv), np.zeros_like(W), np.zeros_like(b)
    nll = ops.lmhead_ce(hv, tv, W, b if bias else None, softcap, Nv, D, V, dhv, dW, db if bias else None)
    forward = D + 1 + CAP_OPS + V + SOFTMAX_OPS + Nv
    assert nll == approx(ref.item(), length=forward)
    assert_close(dhv, hv_t.grad.numpy(), length=forward + V + CAP_OPS, what="dhv")
    assert_close(dW, W_t.grad.numpy(), length=forward + CAP_OPS + Nv, what="dW")
    if bias:
        assert_close(db, b_t.grad.numpy(), length=forward + CAP_OPS + Nv, what="dbias")
    dhv2 = np.empty_like(hv)  # a frozen head: no dW, no dbias
    assert ops.lmhead_ce(hv, tv, W, b if bias else None, softcap, Nv, D, V, dhv2, None, None) == nll
    assert np.array_equal(dhv2, dhv)


@pytest.mark.parametrize("scale", [1.0, "gemma"])
def test_embedding(scale):
    """Gemma's scaled embedding (table[ids] * sqrt(D) in f32) or a plain lookup; backward adds into the
    table gradient, a token's rows summed (N at most) plus the scale."""
    rng = np.random.default_rng(16)
    N, V, D = 40, 17, 13
    ids = rng.integers(0, V, N).astype(np.int32)
    table, dout, dtable0 = randn(rng, V, D), randn(rng, N, D), randn(rng, V, D)
    s = D ** 0.5 if scale == "gemma" else 1.0
    ref_mod = GemmaTextScaledWordEmbedding(V, D, None, embed_scale=s)
    with torch.no_grad():
        ref_mod.weight.copy_(torch.tensor(table))
    ref = ref_mod(torch.tensor(ids, dtype=torch.long))
    ref.backward(torch.tensor(dout))
    out, dtable = np.empty((N, D), np.float32), dtable0.copy()
    ops.embedding_forward(out, ids, table, N, D, s)
    ops.embedding_backward(dtable, ids, dout, N, D, s)
    assert_close(out, ref.detach().numpy(), length=1, what="out")
    assert_close(dtable, dtable0 + ref_mod.weight.grad.numpy(), length=N + 2, what="dtable")


# ----------------------------------------------------- linear, LoRA, misc

@pytest.mark.parametrize("N", [1, 2, 7], ids=lambda n: f"N{n}")  # N <= 2 takes the GEMV path
@pytest.mark.parametrize("bias", [True, False])
def test_linear(N, bias):
    """F.linear and its gradients; per element scale sum|terms| (gemm_scale). dx = beta dx + dy W is
    tried with beta 0 and 1, dW and db add into what they hold."""
    rng = np.random.default_rng(17)
    In, Out = 19, 23
    x, W, b, dy = randn(rng, N, In), randn(rng, Out, In), randn(rng, Out), randn(rng, N, Out)
    x_t, W_t, b_t = leaf(x), leaf(W), leaf(b)
    ref = F.linear(x_t, W_t, b_t if bias else None)
    ref.backward(torch.tensor(dy))
    y = np.empty((N, Out), np.float32)
    ops.linear_forward(y, x, W, b if bias else None, N, In, Out)
    assert_close(y, ref.detach().numpy(), length=In + 1, scale=gemm_scale(x, W) + np.abs(b), what="y")
    dx0, dW0, db0 = randn(rng, N, In), randn(rng, Out, In), randn(rng, Out)
    for beta in (0.0, 1.0):
        dx, dW, db = dx0.copy(), dW0.copy(), db0.copy()
        ops.linear_backward(dx, beta, dW, db if bias else None, dy, x, W, N, In, Out)
        assert_close(dx, beta * dx0 + x_t.grad.numpy(), length=Out + 1, scale=gemm_scale(dy, W.T) + np.abs(dx0),
                     what="dx")
        assert_close(dW, dW0 + W_t.grad.numpy(), length=N + 1, scale=gemm_scale(dy.T, x.T) + np.abs(dW0),
                     what="dW")
        if bias:
            assert_close(db, db0 + b_t.grad.numpy(), length=N + 1, what="db")


@pytest.mark.parametrize("N", [2, 7], ids=lambda n: f"N{n}")
def test_gemm_tiles(N):
    """The GEMMs of a weight held a tile of rows at a time: y[:, :rows] = x W^T with rows < ldy (the rest
    of y untouched); dx = beta dx + dy[:, :rows] W."""
    rng = np.random.default_rng(18)
    In, rows, ldy = 16, 5, 12
    x, W, dy, dx0 = randn(rng, N, In), randn(rng, rows, In), randn(rng, N, ldy), randn(rng, N, In)
    y = np.full((N, ldy), 7.0, np.float32)
    ops.gemm_xwt(y, ldy, x, W, N, In, rows)
    assert_close(y[:, :rows], x.astype(np.float64) @ W.T, length=In, scale=gemm_scale(x, W), what="y")
    assert np.all(y[:, rows:] == 7.0)
    dx = dx0.copy()
    ops.gemm_dyw(dx, 0.5, dy, ldy, W, N, In, rows)
    expected = 0.5 * dx0.astype(np.float64) + dy[:, :rows].astype(np.float64) @ W
    assert_close(dx, expected, length=rows + 1, scale=gemm_scale(dy[:, :rows], W.T) + np.abs(dx0), what="dx")


def test_lora():
    """y += scale (x A^T) B^T with dx = dx_beta dx + ..., dA, dB += against autograd; merging adds
    scale B A into W and a negative scale takes it out again."""
    rng = np.random.default_rng(19)
    N, In, Out, R, scale = 9, 16, 12, 4, 2.0
    x, A, B, y0, dy = randn(rng, N, In), randn(rng, R, In), randn(rng, Out, R), randn(rng, N, Out), randn(rng, N, Out)
    x_t, A_t, B_t = leaf(x), leaf(A), leaf(B)
    ref = torch.tensor(y0) + scale * (x_t @ A_t.T) @ B_t.T
    ref.backward(torch.tensor(dy))
    y, xa = y0.copy(), np.empty((N, R), np.float32)
    ops.lora_forward(y, xa, x, A, B, scale, N, In, Out, R)
    assert_close(xa, x.astype(np.float64) @ A.T, length=In, scale=gemm_scale(x, A), what="xa")
    assert_close(y, ref.detach().numpy(), length=In + R + 1, what="y")  # x A^T over In, then over R, then +y
    dx0, dA0, dB0 = randn(rng, N, In), randn(rng, R, In), randn(rng, Out, R)
    dx, dA, dB = dx0.copy(), dA0.copy(), dB0.copy()
    ops.lora_backward(dx, 1.0, dA, dB, dy, x, xa, A, B, scale, N, In, Out, R)
    assert_close(dx, dx0 + x_t.grad.numpy(), length=Out + R + 1, what="dx")  # t = dy B over Out, t A over R
    assert_close(dA, dA0 + A_t.grad.numpy(), length=Out + N + 1, what="dA")  # t over Out, t^T x over N
    assert_close(dB, dB0 + B_t.grad.numpy(), length=In + N + 1, what="dB")   # xa over In, dy^T xa over N
    W0 = randn(rng, Out, In)
    W = W0.copy()
    ops.lora_merge_weight(W, A, B, scale, Out, In, R)
    assert_close(W, W0 + scale * (B.astype(np.float64) @ A), length=R + 1, what="merged")
    ops.lora_merge_weight(W, A, B, -scale, Out, In, R)
    assert_close(W, W0, length=2 * (R + 1), scale=np.abs(W0) + scale * gemm_scale(B, A.T), what="unmerged")


def test_dropout():
    """Inverted dropout: kept elements x / (1 - p), dropped 0, about p of them; the mask is a function of
    (seed, key, index), so backward adds dout / (1 - p) exactly where forward kept."""
    rng = np.random.default_rng(20)
    n, p = 100003, 0.3
    x, dout, dx0 = randn(rng, n) + 5.0, randn(rng, n), randn(rng, n)  # x never 0: kept <=> out != 0
    out = np.empty(n, np.float32)
    ops.dropout_forward(out, x, n, p, 1234, 7)
    kept = out != 0
    inv = np.float32(1.0) / np.float32(1.0 - np.float32(p))
    assert np.array_equal(out[kept], x[kept] * inv)
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # five binomial sigmas
    dx = dx0.copy()
    ops.dropout_backward_add(dx, dout, n, p, 1234, 7)
    assert np.array_equal(dx, np.where(kept, dx0 + dout * inv, dx0))
    again, other = np.empty(n, np.float32), np.empty(n, np.float32)
    ops.dropout_forward(again, x, n, p, 1234, 7)
    ops.dropout_forward(other, x, n, p, 1234, 8)
    assert np.array_equal(again, out) and not np.array_equal(other != 0, kept)


def test_logprob_gather():
    """log_softmax(logits)[target] against torch, 0 where the target is negative (-100)."""
    rng = np.random.default_rng(21)
    N, V = 7, 1000
    logits = randn(rng, N, V, scale=4.0)
    targets = rng.integers(0, V, N).astype(np.int32)
    targets[2] = -100
    out = np.empty(N, np.float32)
    ops.logprob_gather(out, logits, targets, N, V)
    ref = torch.log_softmax(torch.tensor(logits), -1).gather(1, torch.tensor(targets).clamp(min=0).long()[:, None])
    expected = np.where(targets >= 0, ref[:, 0].numpy(), 0.0)
    assert out[2] == 0.0
    assert_close(out, expected, length=V + SOFTMAX_OPS, scale=np.abs(logits).max(), what="logprob")


def test_binding_checks_arguments():
    """The binding refuses an array of the wrong size or type and an id outside the table."""
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="x has 12 elements, expected 8"):
        ops.norm_forward((ops.NORM_RMS, 1e-6, 0.0, 1, 0), np.empty(8, np.float32), np.empty(4, np.float32), x,
                         np.ones(4, np.float32), None, 2, 4)
    with pytest.raises(TypeError, match="float32"):
        ops.softcap_forward(np.zeros(3), 3, 1.0)
    with pytest.raises(ValueError, match=r"ids must be in \[0, V\)"):
        ops.embedding_forward(np.empty((1, 4), np.float32), np.array([3], np.int32), x, 1, 4, 1.0)
