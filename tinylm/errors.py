"""Exceptions tinylm raises besides the built-in ones.

FormatError and UnsupportedError are ValueErrors; NumericError is an
ArithmeticError. Messages name the file, tensor or line at fault.
"""
from tinylm._core import FormatError, NumericError, UnsupportedError

__all__ = ["FormatError", "UnsupportedError", "NumericError"]
