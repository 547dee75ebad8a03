"""Fake quantization of numpy arrays over the kernels training uses
(csrc/quant/fake_quant.c): the forward and its straight-through gradient."""
from __future__ import annotations

import numpy as np

from tinylm import _core
from tinylm.quant.schemes import Scheme, parse


def _rows(a) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 0:
        raise ValueError("fake quantization needs an array of rows, got a scalar")
    return a.reshape(-1, a.shape[-1])


def _weight(w, scheme: str | Scheme):
    s = parse(scheme)
    w2 = _rows(w)
    out, clip = np.empty_like(w2), np.empty(w2.shape, np.uint8)
    _core.fake_quantize(s.core, w2, out, clip)
    return s, w2, out, clip


def fake_quantize(w, scheme: str | Scheme = "q4_0", *, return_clip: bool = False):
    """w_hat: w (any shape, rows along the last axis) through the quantizer
    and back: for a GGUF scheme exactly the values save_gguf writes and
    llama.cpp dequantizes; for a torchao scheme its fake quantizer's output
    (weights only; 8da4w's activations: fake_quantize_activations).
    return_clip adds the bool mask of values whose code the quantizer's
    range clamp cut (where the straight-through gradient is zero)."""
    _, w2, out, clip = _weight(w, scheme)
    shape = np.shape(w)
    return (out.reshape(shape), clip.reshape(shape).astype(bool)) if return_clip else out.reshape(shape)


def fake_quantize_grad(w, grad, scheme: str | Scheme = "q4_0") -> np.ndarray:
    """d sum(grad * fake_quantize(w)) / dw: the straight-through gradient
    (and, for torchao's int4 scheme, its terms through each group's min and
    max), as training applies it."""
    s, w2, _, clip = _weight(w, scheme)
    g2 = _rows(grad)
    if g2.shape != w2.shape:
        raise ValueError(f"grad has shape {np.shape(grad)}, w has {np.shape(w)}")
    out = np.empty_like(w2)
    _core.fake_quantize_backward(s.core, w2, clip, g2, out)
    return out.reshape(np.shape(w))


def fake_quantize_activations(x, *, return_clip: bool = False):
    """torchao's int8 per-token asymmetric dynamic fake quantization (the
    activations of 8da4w), each row of x (last axis) on its own."""
    x2 = _rows(x)
    out, clip = np.empty_like(x2), np.empty(x2.shape, np.uint8)
    _core.fake_quantize_act(x2, out, clip)
    shape = np.shape(x)
    return (out.reshape(shape), clip.reshape(shape).astype(bool)) if return_clip else out.reshape(shape)


def fake_quantize_activations_grad(x, grad) -> np.ndarray:
    """Its straight-through gradient: grad where no code was clamped, else 0."""
    x2, g2 = _rows(x), _rows(grad)
    if g2.shape != x2.shape:
        raise ValueError(f"grad has shape {np.shape(grad)}, x has {np.shape(x)}")
    out, clip = np.empty_like(x2), np.empty(x2.shape, np.uint8)
    _core.fake_quantize_act(x2, np.empty_like(x2), clip)
    _core.fake_quantize_act_backward(x2, clip, g2, out)
    return out.reshape(np.shape(x))
