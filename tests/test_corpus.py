"""The pretraining corpus script: R's lazy-load database reader on a database
built here byte by byte (R's XDR serialization), and the chapter split and
document cutting on a small novel."""
import gzip
import importlib.util
import os
import struct
import sys
import zlib

import pytest

CORPUS = os.path.join(os.path.dirname(__file__), "..", "datasets", "corpus")


def _load(name):
    sys.path.insert(0, CORPUS)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(CORPUS, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(CORPUS)


rdata = _load("rdata")
make_corpus = _load("make_corpus")

# --- a minimal writer of R's XDR serialization (version 3), for the test only
ATTR, UTF8 = 1 << 9, 1 << 15


def _int(v):
    return struct.pack(">i", v)


def _charsxp(s):
    if s is None:
        return _int(9) + _int(-1)
    b = s.encode("utf-8")
    return _int(9 | UTF8) + _int(len(b)) + b


def _strsxp(items):
    return _int(16) + _int(len(items)) + b"".join(_charsxp(s) for s in items)


def _names_attr(names):
    # pairlist cell with a tag: flags LISTSXP | has-tag; tag is SYMSXP "names"
    return _int(2 | (1 << 10)) + _int(1) + _charsxp("names") + _strsxp(names) + _int(254)


def _named_list(names, values):
    return _int(19 | ATTR) + _int(len(values)) + b"".join(values) + _names_attr(names)


def _intsxp(values):
    return _int(13) + _int(len(values)) + b"".join(_int(v) for v in values)


def _serialize(body):
    return b"X\n" + _int(3) + _int(0x040201) + _int(0x030500) + _int(5) + b"UTF-8" + body


def write_lazyload(prefix, objects: dict):
    offsets, db = [], b""
    for value in objects.values():
        payload = _serialize(_strsxp(value))
        entry = _int(len(payload)) + zlib.compress(payload)
        offsets.append((len(db), len(entry)))
        db += entry
    index = _named_list(["variables", "references", "compressed"], [
        _named_list(list(objects), [_intsxp(list(o)) for o in offsets]),
        _named_list([], []), _intsxp([1])])
    with open(prefix + ".rdb", "wb") as f:
        f.write(db)
    with open(prefix + ".rdx", "wb") as f:
        f.write(gzip.compress(_serialize(index)))


def test_reads_character_vectors_from_a_lazyload_database(tmp_path):
    objects = {"emma": ["EMMA", "", "CHAPTER I", "Emma Woodhouse, handsome, clever, and rich", None, "caf\u00e9"],
               "persuasion": ["Persuasion", "Chapter 1", "Sir Walter Elliot"]}
    prefix = str(tmp_path / "Rdata")
    write_lazyload(prefix, objects)
    assert rdata.read_lazyload(prefix) == objects


def test_refuses_what_it_does_not_read():
    with pytest.raises(ValueError, match="not R's XDR serialization"):
        rdata.unserialize(b"A\n" + _int(3))
    with pytest.raises(ValueError, match="R object type 3 is not supported"):
        rdata.unserialize(_serialize(_int(3)))


NOVEL = """TITLE

By Someone


CHAPTER I


It was a dark and stormy
night; the rain fell in _torrents_.

"Indeed," said she.

VOLUME II

Chapter 2.

A second chapter, with one paragraph.
""".split("\n")


def test_chapters_drop_front_matter_and_headings_and_unwrap_lines():
    assert make_corpus.chapters(NOVEL) == [
        ["It was a dark and stormy night; the rain fell in torrents.", '"Indeed," said she.'],
        ["A second chapter, with one paragraph."]]


def test_documents_are_whole_paragraphs_within_the_limit(monkeypatch):
    monkeypatch.setattr(make_corpus, "MAX_CHARS", 60)
    long = "First sentence here is long enough. Second one follows it. Third closes it off."
    docs = make_corpus.documents(["Short one.", "Short two.", long, "Tail."])
    assert docs == ["Short one.\n\nShort two.", "First sentence here is long enough. Second one follows it.",
                    "Third closes it off.\n\nTail."]
    assert all(len(d) <= 60 for d in docs)
