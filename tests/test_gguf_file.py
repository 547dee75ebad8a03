"""The GGUF container (csrc/io/gguf.c, gguf_write.c, tinylm/gguf/file.py)
against the `gguf` package, llama.cpp's own Python reader and writer: what
it writes we read, what we write it reads, and malformed files fail with a
FormatError that names the key or tensor at fault."""
from __future__ import annotations

import os
import struct

import gguf
import numpy as np
import pytest

from tinylm.errors import FormatError, UnsupportedError
from tinylm.gguf.file import ARRAY, FLOAT32, INT32, STRING, UINT32, GGUFFile, is_gguf, write_gguf

Q8_0, F32, F16 = 8, 0, 1


def reference_file(path, *, alignment=None):
    """A file with every value type, written by the gguf package."""
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("v.u8", 200)
    w.add_int8("v.i8", -5)
    w.add_uint16("v.u16", 60000)
    w.add_int16("v.i16", -30000)
    w.add_uint32("v.u32", 4000000000)
    w.add_int32("v.i32", -2000000000)
    w.add_float32("v.f32", 0.1)
    w.add_uint64("v.u64", 2 ** 63 + 5)
    w.add_int64("v.i64", -2 ** 62)
    w.add_float64("v.f64", 0.1)
    w.add_bool("v.bool", True)
    w.add_string("v.str", "héllo \x00 wörld")
    w.add_array("v.strs", ["a", "", "ü" * 3])
    w.add_array("v.ints", [1, -2, 3])
    w.add_array("v.floats", [0.5, -1.25])
    w.add_tensor("f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("f16", np.linspace(-1, 1, 64, dtype=np.float16).reshape(2, 32))
    q = gguf.quants.quantize(np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_reads_what_the_gguf_package_writes(tmp_path):
    path = reference_file(tmp_path / "ref.gguf")
    ref = gguf.GGUFReader(str(path))
    with GGUFFile(path) as f:
        assert f.version == 3 and f.alignment == 32
        assert f.metadata["general.architecture"] == "llama"
        for key, field in ref.fields.items():
            if key.startswith("GGUF."):
                continue
            ours, theirs = f.metadata[key], field.contents()
            if isinstance(ours, np.ndarray):
                np.testing.assert_array_equal(ours, np.asarray(theirs, dtype=ours.dtype))
                assert ours.dtype == np.dtype(field.parts[-1].dtype)
            elif isinstance(theirs, float):
                assert ours == theirs or np.float32(ours) == np.float32(theirs)
            else:
                assert ours == theirs, key
        assert f.types["v.u32"] == (UINT32, UINT32) and f.types["v.strs"] == (ARRAY, STRING)
        assert f.metadata["v.f32"] == float(np.float32(0.1)) and f.metadata["v.f64"] == 0.1
        assert f.metadata["v.u64"] == 2 ** 63 + 5
        for t in ref.tensors:
            info = f.tensors[t.name]
            assert info.ggml_type == int(t.tensor_type) and info.nbytes == t.n_bytes
            assert info.ne == tuple(int(n) for n in t.shape)
            assert info.offset == t.data_offset - ref.data_offset
            np.testing.assert_array_equal(f.raw(t.name), np.asarray(t.data).view(np.uint8).reshape(-1))
        assert f.rows("q8").shape == (2, 34)


def test_custom_alignment_and_version_2(tmp_path):
    path = reference_file(tmp_path / "a.gguf", alignment=64)
    with GGUFFile(path) as f:
        assert f.alignment == 64 and all(t.offset % 64 == 0 for t in f.tensors.values())
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 2)  # v2 and v3 share the layout for little-endian files
    (tmp_path / "v2.gguf").write_bytes(data)
    with GGUFFile(tmp_path / "v2.gguf") as f:
        assert f.version == 2 and f.metadata["v.i8"] == -5


def test_the_gguf_package_reads_what_we_write(tmp_path):
    q = gguf.quants.quantize(np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
    meta = [("general.architecture", "llama"), ("a.count", 7), ("a.neg", -3), ("a.big", 2 ** 40), ("a.eps", 1e-5),
            ("a.flag", False), ("a.ids", [1, 2, 3]), ("a.scores", np.array([0.5, -1.0], np.float32)),
            ("a.types", np.array([1, 3], np.int32)), ("a.toks", ["x", "é", ""]), ("a.i8", np.int8(-1)),
            ("a.u64s", np.array([2 ** 63], np.uint64)), ("a.explicit", 5, (INT32, INT32)),
            ("a.f", [1.5, 2], (ARRAY, FLOAT32))]
    tensors = [("w", F32, (3, 4), np.arange(12, dtype=np.float32)), ("h", F16, (32,), lambda: np.ones(32, np.float16)),
               ("q", Q8_0, (2, 32), q)]
    for alignment in (32, 128):
        path = tmp_path / f"ours{alignment}.gguf"
        write_gguf(path, meta, tensors, alignment=alignment)
        ref = gguf.GGUFReader(str(path))
        got = {k: v.contents() for k, v in ref.fields.items() if not k.startswith("GGUF.")}
        assert got.pop("general.alignment", 32) == alignment
        assert got["a.count"] == 7 and ref.fields["a.count"].types == [gguf.GGUFValueType.UINT32]
        assert got["a.neg"] == -3 and ref.fields["a.neg"].types == [gguf.GGUFValueType.INT32]
        assert got["a.big"] == 2 ** 40 and ref.fields["a.big"].types == [gguf.GGUFValueType.UINT64]
        assert got["a.explicit"] == 5 and ref.fields["a.explicit"].types == [gguf.GGUFValueType.INT32]
        assert np.float32(got["a.eps"]) == np.float32(1e-5) and got["a.flag"] is False
        assert got["a.ids"] == [1, 2, 3] and got["a.toks"] == ["x", "é", ""] and got["a.u64s"] == [2 ** 63]
        assert got["a.f"] == [1.5, 2.0] and got["a.i8"] == -1
        assert [t.name for t in ref.tensors] == ["w", "h", "q"]
        np.testing.assert_array_equal(ref.tensors[0].data.reshape(-1), np.arange(12, dtype=np.float32))
        assert list(ref.tensors[0].shape) == [4, 3]
        np.testing.assert_array_equal(np.asarray(ref.tensors[2].data).view(np.uint8).reshape(-1), q.reshape(-1))
        # and back through our reader, byte for byte
        with GGUFFile(path) as f:
            assert f.metadata["a.toks"] == ["x", "é", ""] and f.metadata["a.scores"].tolist() == [0.5, -1.0]
            np.testing.assert_array_equal(f.raw("q"), q.reshape(-1))
            assert f.tensors["w"].shape == (3, 4) and f.tensors["w"].ne == (4, 3)
    assert is_gguf(tmp_path / "ours32.gguf") and not is_gguf(tmp_path) and not is_gguf(tmp_path / "missing")
    assert sorted(os.listdir(tmp_path)) == ["ours128.gguf", "ours32.gguf"]  # no temporary left behind


def test_writer_refuses_bad_arguments_and_leaves_nothing(tmp_path):
    path = tmp_path / "x.gguf"
    cases = [
        ([("k", 1), ("k", 2)], [], "given twice"),
        ([("general.alignment", 64)], [], "alignment"),
        ([], [("t", Q8_0, (2, 31), b"")], "not a multiple"),
        ([], [("t", F32, (2,), b"\0" * 4)], "takes 8 bytes"),
        ([], [("t", 99, (2,), b"")], "not a ggml type"),
        ([], [("n" * 64, F32, (1,), b"\0" * 4)], "1 to 63 bytes"),
        ([], [("t", F32, (1,), b"\0" * 4), ("t", F32, (1,), b"\0" * 4)], "given twice"),
    ]
    for meta, tensors, message in cases:
        with pytest.raises(ValueError, match=message):
            write_gguf(path, meta, tensors)
        assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ bad files

def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _kv(key, vtype, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


def _info(name, ne, ggml_type, offset) -> bytes:
    return _s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + \
        struct.pack("<IQ", ggml_type, offset)


def _file(kvs=(), infos=(), data=b"", *, version=3, n_tensors=None, n_kv=None, alignment=32, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % alignment)
    return body + data


GOOD_KV = _kv("general.architecture", STRING, _s("llama"))
GOOD_INFO = _info("w", (4, 2), F32, 0)
GOOD_DATA = np.arange(8, dtype=np.float32).tobytes()

BAD_FILES = {
    "magic": (_file(magic=b"GGML"), FormatError, "not a GGUF file"),
    "version 1": (_file(version=1), UnsupportedError, "version 1"),
    "version 4": (_file(version=4), FormatError, "version 4"),
    "big-endian": (_file(version=3 << 24), UnsupportedError, "big-endian"),
    "absurd kv count": (_file([GOOD_KV], n_kv=2 ** 60), FormatError, "key/values but only"),
    "absurd tensor count": (_file([GOOD_KV], n_tensors=2 ** 60), FormatError, "tensors but only"),
    "kv count past the end": (_file([GOOD_KV], n_kv=2, alignment=1), FormatError, "truncated"),
    "key length past the end": (_file([struct.pack("<Q", 2 ** 40) + b"x" * 20]), FormatError, "truncated"),
    "value type": (_file([_kv("k", 13, b"\0" * 8)]), FormatError, 'key "k": value type 13'),
    "nested array": (_file([_kv("k", ARRAY, struct.pack("<IQ", ARRAY, 1) + b"\0" * 12)]), UnsupportedError,
                     'key "k": arrays of arrays'),
    "array length": (_file([_kv("k", ARRAY, struct.pack("<IQ", INT32, 2 ** 61))]), FormatError,
                     'key "k": 2305843009213693952 values'),
    "string array length": (_file([_kv("k", ARRAY, struct.pack("<IQ", STRING, 2 ** 61))]), FormatError,
                            'key "k": array of 2305843009213693952 strings'),
    "string in array past the end": (_file([_kv("k", ARRAY, struct.pack("<IQ", STRING, 2) + _s("a") +
                                                struct.pack("<Q", 999) + b"xx")]), FormatError,
                                     r'key "k".*string \[1\]'),
    "bool": (_file([_kv("k", 7, b"\x02")]), FormatError, 'key "k": bool value 2'),
    "utf-8 key": (_file([_kv(b"k\xff", UINT32, b"\0" * 4)]), FormatError, "not valid UTF-8"),
    "utf-8 value": (_file([_s("k") + struct.pack("<I", STRING) + _s(b"\xc3\x28")]), FormatError,
                    'key "k".*not valid UTF-8'),
    "empty key": (_file([_kv("", UINT32, b"\0" * 4)]), FormatError, "empty"),
    "duplicate key": (_file([GOOD_KV, GOOD_KV]), FormatError, 'key "general.architecture" appears twice'),
    "alignment type": (_file([_kv("general.alignment", INT32, struct.pack("<i", 64))]), FormatError,
                       '"general.alignment" must be a uint32'),
    "alignment value": (_file([_kv("general.alignment", UINT32, struct.pack("<I", 48))]), FormatError,
                        "not a power of two"),
    "ndim": (_file([GOOD_KV], [_info("w", (1, 1, 1, 1, 1), F32, 0)], GOOD_DATA), FormatError,
             'tensor "w": 5 dimensions'),
    "dimension overflow": (_file([GOOD_KV], [_info("w", (2 ** 62, 8), F32, 0)], GOOD_DATA), FormatError,
                           'tensor "w": dimension 1'),
    "ggml type": (_file([GOOD_KV], [_info("w", (4, 2), 4, 0)], GOOD_DATA), FormatError,
                  'tensor "w": type 4 is not a ggml type'),
    "block size": (_file([GOOD_KV], [_info("w", (48, 1), Q8_0, 0)], b"\0" * 64), FormatError,
                   'tensor "w": row length 48 is not a multiple of q8_0'),
    "offset past the end": (_file([GOOD_KV], [_info("w", (4, 2), F32, 64)], GOOD_DATA), FormatError,
                            'tensor "w": bytes \\[64, 96\\)'),
    "short data": (_file([GOOD_KV], [GOOD_INFO], GOOD_DATA[:-1]), FormatError, 'tensor "w": bytes \\[0, 32\\)'),
    "unaligned": (_file([GOOD_KV], [_info("w", (4, 1), F32, 16)], GOOD_DATA), FormatError,
                  'tensor "w": offset 16 is not a multiple'),
    "overlap": (_file([GOOD_KV], [_info("a", (16,), F32, 0), _info("b", (8,), F32, 32)], b"\0" * 64),
                FormatError, 'tensor "b" at \\[32, 64\\) overlaps tensor "a"'),
    "duplicate tensor": (_file([GOOD_KV], [_info("w", (4,), F32, 0), _info("w", (4,), F32, 32)], b"\0" * 64),
                         FormatError, 'tensor "w" appears twice'),
    "tensor name NUL": (_file([GOOD_KV], [_info("a\0b", (4,), F32, 0)], b"\0" * 32), FormatError, "NUL"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_fail_by_name(tmp_path, case):
    data, error, message = BAD_FILES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(error, match=message) as info:
        GGUFFile(path)
    assert str(path) in str(info.value)


def test_every_truncation_fails_cleanly(tmp_path):
    """Cut a real file at every byte of its header and metadata: each prefix
    is a FormatError, never a crash or a read past the end."""
    full = reference_file(tmp_path / "ref.gguf").read_bytes()
    with GGUFFile(tmp_path / "ref.gguf") as f:
        header_end = f._file.data_offset
    path = tmp_path / "cut.gguf"
    for n in range(0, header_end + 40):
        path.write_bytes(full[:n])
        if n < header_end or n < len(full):
            with pytest.raises(FormatError):
                GGUFFile(path)


def test_a_vocabulary_only_file_may_end_without_padding(tmp_path):
    body = _file([GOOD_KV], alignment=1)
    (tmp_path / "v.gguf").write_bytes(body)
    with GGUFFile(tmp_path / "v.gguf") as f:
        assert f.tensors == {} and f.metadata["general.architecture"] == "llama"
