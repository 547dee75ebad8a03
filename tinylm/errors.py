"""Exceptions tinylm raises besides the built-in ones.

FormatError and UnsupportedError are ValueErrors; NumericError is an
ArithmeticError. Messages name the file, tensor or line at fault.
ChatTemplateError (tinylm.chat_template) is a FormatError that is also a
jinja2 TemplateError.
"""
from tinylm._core import FormatError, NumericError, UnsupportedError

__all__ = ["FormatError", "UnsupportedError", "NumericError"]
