"""Quantization-aware training: fake quantization schemes (schemes.py) and
the numpy entry points over the C kernels training uses (fake.py)."""
from tinylm.quant.fake import (fake_quantize, fake_quantize_activations, fake_quantize_activations_grad,
                               fake_quantize_grad)
from tinylm.quant.schemes import Scheme, parse

__all__ = ["fake_quantize", "fake_quantize_grad", "fake_quantize_activations", "fake_quantize_activations_grad",
           "Scheme", "parse"]
