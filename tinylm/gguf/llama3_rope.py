"""Llama 3's RoPE scaling in a GGUF file. The converter writes no keys for
it, only a tensor, rope_freqs.weight: one divisor per rotary frequency
(llama.cpp divides frequency i by it; transformers' llama3 rope is the same
division). `divisors` computes that tensor as convert_hf_to_gguf.py does
(LlamaModel.generate_extra_tensors, in float32); `recover` finds HF
parameters that give the same divisors back.

The divisors fix the model but not the four parameters: the function is
unchanged when original_max_position_embeddings, low_freq_factor and
high_freq_factor are scaled together, and where no frequency falls between
the two wavelength bounds the bounds are known only to an interval. So
`recover` takes low_freq_factor = 1 (and high_freq_factor = 4, the
converter's defaults, where the divisors do not decide it), makes the
context length an integer by scaling, and checks that its parameters give
the file's divisors back."""
from __future__ import annotations

import math

import numpy as np

from tinylm.errors import UnsupportedError

NAME = "rope_freqs.weight"
_CONVERTER_CONTEXT = 8192  # the converter's default original_max_position_embeddings


def wavelengths(theta: float, dim: int) -> np.ndarray:
    """2 pi / frequency, in float32 as the converter computes it (torch's
    float32 pow may differ from numpy's by an ulp: the divisors then agree
    to float32 rounding, not bit for bit)."""
    exps = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    freqs = np.float32(1.0) / (np.float32(theta) ** exps)
    return np.float32(2 * math.pi) / freqs


def divisors(theta: float, dim: int, factor: float, low: float, high: float, original: int) -> np.ndarray:
    """The rope_freqs tensor for transformers' llama3 parameters."""
    low_wavelen, high_wavelen = original / low, original / high
    out = []
    for wavelen in wavelengths(theta, dim):
        if wavelen < high_wavelen:
            out.append(np.float32(1.0))
        elif wavelen > low_wavelen:
            out.append(np.float32(factor))
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(np.float32(1) / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def recover(values: np.ndarray, theta: float, dim: int, source: str) -> dict | None:
    """rope_parameters fields (rope_type llama3) giving `values` back, or
    None when every divisor is 1 (no scaling)."""
    r = np.asarray(values, dtype=np.float64)
    if r.shape != (dim // 2,):
        raise UnsupportedError(f"{source}: {NAME} has {r.size} values; the rotary dimension {dim} needs {dim // 2}")
    if np.all(r == 1.0):
        return None
    wavelen = wavelengths(theta, dim).astype(np.float64)
    factor = float(str(np.float32(r.max())))
    high_band, low_band = np.isclose(r, 1.0, rtol=1e-6), np.isclose(r, factor, rtol=1e-6)
    mid = ~high_band & ~low_band
    low, high = 1.0, 4.0
    if mid.sum() >= 2:
        # smooth_i = original / (high - low) / wavelen_i - low / (high - low): a line in 1 / wavelen
        smooth = (1 / r[mid] - 1 / factor) / (1 - 1 / factor)
        (a, b), *_ = np.linalg.lstsq(np.stack([1 / wavelen[mid], -np.ones(mid.sum())], axis=1), smooth, rcond=None)
        if b <= 0 or a <= 0:
            raise UnsupportedError(f"{source}: {NAME} does not follow Llama 3's RoPE scaling")
        high, original = 1 + 1 / b, a / b
    elif mid.sum() == 1:
        smooth = (1 / r[mid][0] - 1 / factor) / (1 - 1 / factor)
        original = wavelen[mid][0] * (smooth * (high - low) + low)
    else:  # original / high above every unscaled wavelength, original / low below every scaled one
        lower = high * wavelen[high_band].max(initial=0.0)
        upper = low * wavelen[low_band].min(initial=np.inf)
        original = _CONVERTER_CONTEXT if lower < _CONVERTER_CONTEXT < upper else math.floor(lower) + 1
    # the fit carries float32 noise: the fewest significant digits that still give the divisors back
    for digits in range(1, 10):
        context = max(1, round(float(f"{original:.{digits}g}")))
        scale = context / original
        low_f, high_f = (float(f"{x * scale:.{digits}g}") for x in (low, high))
        again = divisors(theta, dim, factor, low_f, high_f, context)
        if np.allclose(again, r, rtol=1e-5, atol=0):
            return {"rope_type": "llama3", "factor": factor, "low_freq_factor": low_f, "high_freq_factor": high_f,
                    "original_max_position_embeddings": context}
    raise UnsupportedError(f"{source}: {NAME} does not follow Llama 3's RoPE scaling (the nearest parameters "
                           f"give {again.tolist()}, the file {r.tolist()})")
