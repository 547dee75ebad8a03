"""Reads JSONL and plain-text files into (line, record) pairs.

Errors name the file and the 1-based line. With on_error="skip" a bad line
is counted in `Skips` and left out instead of raising.
"""
import json
import os

from tinylm.errors import FormatError

ON_ERROR = ("raise", "skip")


class Skips:
    """How many lines were left out, and the first reason (for messages)."""

    def __init__(self):
        self.count = 0
        self.first = None

    def add(self, reason):
        self.count += 1
        if self.first is None:
            self.first = reason


def bad_line(path, line, message, on_error, skips):
    """Raises FormatError "path:line: message", or counts the skip."""
    reason = f"{path}:{line}: {message}"
    if on_error == "raise":
        raise FormatError(reason)
    skips.add(reason)


def is_text_file(path):
    return os.fspath(path).lower().endswith(".txt")


def _decode(raw, path, line, on_error, skips):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line(path, line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                 "tinylm reads UTF-8 text only", on_error, skips)
        return None


def _lines(path, on_error, skips):
    """Yields (line number, decoded line without its newline); streams the file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]   # a UTF-8 byte-order mark is not content
            text = _decode(raw.rstrip(b"\r\n"), path, number, on_error, skips)
            if text is not None:
                yield number, text


def read_jsonl(path, on_error, skips):
    """Yields (line, dict) for each non-blank line; blank lines are not examples."""
    for number, text in _lines(path, on_error, skips):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            bad_line(path, number, f"malformed JSON: {exc.msg} at column {exc.colno}", on_error, skips)
            continue
        if not isinstance(record, dict):
            bad_line(path, number, f"expected a JSON object, got {type(record).__name__}", on_error, skips)
            continue
        yield number, record


def read_text(path, on_error, skips):
    """Yields (first line, {"text": paragraph}): documents are separated by blank lines."""
    start, block = None, []
    for number, text in _lines(path, on_error, skips):
        if text.strip():
            if start is None:
                start = number
            block.append(text)
        elif block:
            yield start, {"text": "\n".join(block)}
            start, block = None, []
    if block:
        yield start, {"text": "\n".join(block)}


def read_records(path, on_error, skips):
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return read_text(path, on_error, skips) if is_text_file(path) else read_jsonl(path, on_error, skips)
