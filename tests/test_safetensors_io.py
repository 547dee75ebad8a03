"""tinylm's safetensors reader and writer against the `safetensors` package and torch.

Files written by safetensors are read back byte for byte; files written by
tinylm load in safetensors with torch's own float rounding; malformed files
are refused by both, and tinylm's error names the file and the tensor.
"""
import json
import os
import pathlib
import struct

import numpy as np
import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file, save_file

import tinylm._core as core

TORCH_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
FLOATS = ("F32", "F16", "BF16", "F64")

# Values that stress conversions: signed zeros, infinities, NaN, f32 and f16
# denormals, f16 overflow and the largest f16, bf16 rounding ties (1 + 2^-8
# is halfway between two bf16 values, the next one rounds up).
SPECIALS = np.array(
    [0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, -np.nan, 1e-40, -1e-45, 3.4e38, -3.4e38,
     65504.0, 65519.0, 65520.0, 6e-8, 2.0**-24, 2.0**-25, 1e-8, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 / 3],
    dtype=np.float32,
)


def bits(a):
    """The raw bytes of a tensor or array, as uint8."""
    if isinstance(a, torch.Tensor):
        return a.contiguous().reshape(-1).view(torch.uint8).numpy()
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def header_pairs(path):
    """The JSON header as ordered (key, value) pairs, objects as pair lists too."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return n, json.loads(fh.read(n), object_pairs_hook=list)


def float_tensor(dtype, n, seed):
    """SPECIALS plus random values, and for 2-byte types random bit patterns
    (every NaN payload, denormal and infinity shows up)."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.cat([torch.from_numpy(SPECIALS), torch.randn(n, generator=gen) * 100]).to(dtype)
    if dtype in (torch.float16, torch.bfloat16):
        patterns = torch.randint(-32768, 32768, (n,), generator=gen, dtype=torch.int16).view(dtype)
        values = torch.cat([values, patterns])
    return values


def sample_tensor(dt, shape, seed):
    dtype = TORCH_DTYPES[dt]
    numel = int(np.prod(shape, dtype=np.int64))
    if dt in FLOATS:
        flat = float_tensor(dtype, max(numel, 64), seed)[:numel]
    elif dt == "BOOL":
        flat = torch.rand(numel, generator=torch.Generator().manual_seed(seed)) > 0.5
    else:
        info = torch.iinfo(dtype)
        gen = torch.Generator().manual_seed(seed)
        flat = torch.randint(info.min, info.max, (numel,), generator=gen, dtype=torch.int64).to(dtype)
    return flat.reshape(shape)


# ------------------------------------------------------------- reading


@pytest.mark.parametrize("dt", list(TORCH_DTYPES))
def test_reads_files_written_by_torch(tmp_path, dt):
    path = tmp_path / f"{dt}.safetensors"
    tensors = {
        "model.layers.0.mlp.up_proj.weight": sample_tensor(dt, (7, 5), 1),
        "model.norm.weight": sample_tensor(dt, (13,), 2),
        "scalar": sample_tensor(dt, (), 3),
        "empty": sample_tensor(dt, (0, 4), 4),
        "lm_head.weight": sample_tensor(dt, (2, 3, 4), 5),
    }
    metadata = {"format": "pt", "note": 'quotes " and ünïcode\n'}
    save_file(tensors, str(path), metadata=metadata)

    _, header = header_pairs(path)
    order = [k for k, _ in header if k != "__metadata__"]
    with core.SafetensorsFile(path) as f:
        assert f.path == str(path)
        assert f.tensors() == [(name, dt, tuple(tensors[name].shape)) for name in order]
        assert f.metadata() == metadata
        for name, t in tensors.items():
            assert bytes(f.raw(name)) == bits(t).tobytes()
            if dt in FLOATS:
                out = np.empty(t.numel(), np.float32)
                f.read_into(name, out)
                np.testing.assert_array_equal(out.view(np.uint32), t.float().reshape(-1).numpy().view(np.uint32))


NUMPY_DTYPES = {
    "F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I16": np.int16,
    "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}


def test_reads_files_written_by_numpy(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for dt, np_dtype in NUMPY_DTYPES.items():
        if dt in FLOATS:
            with np.errstate(over="ignore"):  # 3.4e38 becomes inf in F16, as intended
                arrays[dt] = np.concatenate([SPECIALS, rng.standard_normal(30).astype(np.float32)]).astype(np_dtype)
        else:
            arrays[dt] = rng.integers(0, 256, size=(4, 6)).astype(np_dtype)
    path = tmp_path / "numpy.safetensors"
    np_save_file(arrays, str(path), metadata={"source": "numpy"})

    with core.SafetensorsFile(str(path)) as f:
        assert sorted(f.tensors()) == sorted((dt, dt, a.shape) for dt, a in arrays.items())
        assert f.metadata() == {"source": "numpy"}
        for dt, a in arrays.items():
            assert bytes(f.raw(dt)) == a.tobytes()
            if dt in FLOATS:
                out = np.empty(a.size, np.float32)
                f.read_into(dt, out)
                np.testing.assert_array_equal(out, a.astype(np.float32))


def test_file_without_metadata_has_empty_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with core.SafetensorsFile(path) as f:
        assert f.metadata() == {}


# ------------------------------------------------------------- writing


def reference_rounding(x, dt):
    """torch's own conversion of float32 values to dt."""
    return torch.from_numpy(x).to(TORCH_DTYPES[dt])


@pytest.mark.parametrize("dt", ["F32", "F16", "BF16"])
def test_write_converts_float32_like_torch(tmp_path, dt):
    rng = np.random.default_rng(1)
    random_bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([SPECIALS, rng.standard_normal(10_000).astype(np.float32) * 300, random_bits])
    x = x[: (x.size // 8) * 8].reshape(-1, 8)
    path = tmp_path / f"conv_{dt}.safetensors"
    core.write_safetensors(path, [("w", dt, x.shape, x)])

    got = load_file(str(path))["w"]
    want = reference_rounding(x, dt)
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = np.isnan(x).reshape(-1)
    got_bits = bits(got).view(np.uint16 if dt != "F32" else np.uint32)
    want_bits = bits(want).view(got_bits.dtype)
    np.testing.assert_array_equal(got_bits[~nan], want_bits[~nan])
    assert torch.isnan(got.reshape(-1)[torch.from_numpy(nan)]).all()
    if dt == "BF16":
        # torch's vectorised bf16 cast writes NaN as 0xFFFF and its scalar
        # c10::BFloat16 cast as 0x7FC0; tinylm always writes the latter.
        scalar_nan = bits(torch.tensor(float("nan")).to(torch.bfloat16)).view(np.uint16)[0]
        assert (got_bits[nan] == scalar_nan).all()
    else:
        np.testing.assert_array_equal(got_bits[nan], want_bits[nan])


@pytest.mark.parametrize("dt", ["F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F32"])
def test_write_verbatim_buffers(tmp_path, dt):
    t = sample_tensor(dt, (3, 5), 7)
    a = t.numpy()
    path = tmp_path / f"raw_{dt}.safetensors"
    core.write_safetensors(str(path), [("t", dt, a.shape, a), ("bytes", dt, a.shape, bits(a))])
    loaded = load_file(str(path))
    for name in ("t", "bytes"):
        assert loaded[name].dtype == t.dtype and loaded[name].shape == t.shape
        assert bits(loaded[name]).tobytes() == bits(t).tobytes()


def test_write_layout_matches_the_reference_writer(tmp_path):
    # Same order as the reference writer would choose (one dtype: by name) and
    # one metadata key, so the files must be byte-identical.
    tensors = {name: sample_tensor("F32", shape, i) for i, (name, shape) in
               enumerate([("a.bias", (3,)), ("a.weight", (3, 2)), ("b", ()), ("c", (0, 5))])}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    core.write_safetensors(ours, [(n, "F32", t.shape, t.numpy()) for n, t in tensors.items()], {"format": "pt"})
    save_file(tensors, str(theirs), metadata={"format": "pt"})
    assert ours.read_bytes() == theirs.read_bytes()


def test_metadata_round_trip(tmp_path):
    metadata = {"format": "pt", "": "empty key", "quote\"back\\slash": "tab\tnew\nline\u0001 é ☃ 𝄞", "k": ""}
    path = tmp_path / "meta.safetensors"
    core.write_safetensors(path, [("w", "F32", (2,), np.ones(2, np.float32))], metadata)
    with safe_open(str(path), "pt") as ref:
        assert ref.metadata() == metadata
    with core.SafetensorsFile(path) as f:
        assert f.metadata() == metadata
    core.write_safetensors(path, [], None)
    with core.SafetensorsFile(path) as f:
        assert f.metadata() == {} and f.tensors() == []


def test_names_with_escapes_round_trip(tmp_path):
    names = ['q"uote', "back\\slash", "new\nline", "ünï.cödé", "ctl\u0007", ""]
    path = tmp_path / "names.safetensors"
    core.write_safetensors(path, [(n, "U8", (1,), np.array([i], np.uint8)) for i, n in enumerate(names)])
    assert sorted(load_file(str(path))) == sorted(names)
    with core.SafetensorsFile(path) as f:
        assert [n for n, _, _ in f.tensors()] == names
        assert [bytes(f.raw(n)) for n in names] == [bytes([i]) for i in range(len(names))]


def test_write_overwrites_atomically(tmp_path):
    path = tmp_path / "model.safetensors"
    core.write_safetensors(path, [("a", "F32", (2,), np.zeros(2, np.float32))])
    core.write_safetensors(path, [("b", "F16", (3,), np.ones(3, np.float32))])
    assert list(load_file(str(path))) == ["b"]
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_write_refusals_leave_the_target_intact(tmp_path):
    path = tmp_path / "model.safetensors"
    core.write_safetensors(path, [("a", "F32", (2,), np.zeros(2, np.float32))])
    before = path.read_bytes()
    ones = np.ones(4, np.float32)
    refused = [
        ([("w", "F32", (4,), ones), ("w", "F32", (4,), ones)], ValueError, '"w" is given twice'),
        ([("w", "F17", (4,), ones)], ValueError, 'unknown dtype "F17"'),
        ([("w", "F32", (5,), ones)], ValueError, '"w": 16 bytes of data but shape [5] of F32 needs 20'),
        ([("w", "I32", (2,), ones)], ValueError, '"w": 16 bytes of data but shape [2] of I32 needs 8'),
        ([("w", "BF16", (5,), ones)], ValueError, '"w": 4 float32 values do not fill the shape'),
        ([("w", "F16", (-4,), ones)], ValueError, '"w"'),
        ([("w", "F32", (1,) * 9, ones[:1])], ValueError, "more than 8"),
        ([("w", "F32", (4,), ones.astype(">f4"))], ValueError, "big-endian"),
        ([("__metadata__", "F32", (4,), ones)], ValueError, "reserved"),
        ([("w", "F32", (4,), ones[::2].repeat(2)[::2])], TypeError, "C-contiguous"),
        ([("w", "F32", (4,))], ValueError, "(name, dtype, shape, buffer)"),
        ([("w", "F32", (4,), "not a buffer")], TypeError, '"w"'),
        ([(1, "F32", (4,), ones)], TypeError, "tensor name must be a str"),
        ([("a\0b", "F32", (4,), ones)], ValueError, "NUL"),
    ]
    for entries, exc, needle in refused:
        with pytest.raises(exc) as info:
            core.write_safetensors(path, entries)
        assert needle in str(info.value)
        assert path.read_bytes() == before
    with pytest.raises(TypeError, match="metadata"):
        core.write_safetensors(path, [], {"k": 1})
    with pytest.raises(TypeError, match="metadata"):
        core.write_safetensors(path, [], [("k", "v")])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_write_into_missing_folder_raises_oserror(tmp_path):
    path = tmp_path / "no-such-folder" / "model.safetensors"
    with pytest.raises(OSError) as info:
        core.write_safetensors(path, [("a", "F32", (1,), np.zeros(1, np.float32))])
    assert str(path) in str(info.value)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------- malformed files


def build_file(path, header, data=b"", pad=True):
    header = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# (id, header, data, tensor the message must name or None, phrase of the message)
MALFORMED = [
    ("size", {"model.norm.weight": entry("F16", [4], 0, 12)}, 12, "model.norm.weight",
     "data_offsets [0, 12] hold 12 bytes but shape [4] of F16 needs 8"),
    ("unknown-dtype", {"w": entry("F13", [1], 0, 1)}, 1, "w", 'unknown dtype "F13"'),
    ("negative-shape", {"w": entry("U8", [-1], 0, 1)}, 1, "w", "shape[0] is not a non-negative integer"),
    ("fractional-shape", {"w": entry("U8", [0.5], 0, 1)}, 1, "w", "shape[0] is not a non-negative integer"),
    ("begin-after-end", {"w": entry("U8", [0], 4, 0)}, 4, "w", "begin after end"),
    ("end-past-buffer", {"w": entry("U8", [8], 0, 8)}, 4, "w", "end past the data buffer"),
    ("overlap", {"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 4, 12)}, 12, "b", 'overlap tensor "a"'),
    ("hole", {"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 8, 12)}, 12, "b", "bytes [4, 8) belong to no tensor"),
    ("trailing", {"a": entry("U8", [4], 0, 4)}, 8, None, "bytes [4, 8) after the last tensor"),
    ("missing-dtype", {"w": {"shape": [1], "data_offsets": [0, 1]}}, 1, "w", 'missing "dtype"'),
    ("missing-offsets", {"w": {"dtype": "U8", "shape": [1]}}, 1, "w", 'missing "data_offsets"'),
    ("entry-not-object", {"w": [1]}, 0, "w", "not an object"),
    ("metadata-not-string", {"__metadata__": {"k": 1}}, 0, None, '"k" is not a string'),
    ("duplicate", b'{"w":' + json.dumps(entry("U8", [4], 0, 4)).encode() + b',"w":'
     + json.dumps(entry("U8", [4], 4, 8)).encode() + b"}", 8, "w", "appears twice"),
    ("not-json", b'{"w": nope}', 0, None, "not valid JSON"),
    ("not-object", b"[1, 2]", 0, None, "does not start with '{'"),
    ("not-utf8", b'{"w\xff":' + json.dumps(entry("U8", [1], 0, 1)).encode() + b"}", 1, None, "not valid UTF-8"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_files_raise_format_error(tmp_path, case):
    _, header, data_len, tensor, phrase = case
    path = build_file(tmp_path / "bad.safetensors", header, bytes(range(data_len)))
    with pytest.raises(SafetensorError):  # the reference refuses it too
        with safe_open(str(path), "np"):
            pass
    with pytest.raises(core.FormatError) as info:
        core.SafetensorsFile(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message and phrase in message
    if tensor:
        assert f'tensor "{tensor}"' in message


@pytest.mark.parametrize("blob, phrase", [
    (b"", "file is 0 bytes"),
    (b"\x08\x00\x00", "file is 3 bytes"),
    (struct.pack("<Q", 64) + b"{}      ", "runs past the end"),
    (struct.pack("<Q", 2**63) + b"{}      ", "exceeds the limit"),
], ids=["empty", "short", "length-past-end", "length-absurd"])
def test_malformed_length_field(tmp_path, blob, phrase):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(SafetensorError):
        with safe_open(str(path), "np"):
            pass
    with pytest.raises(core.FormatError, match=phrase) as info:
        core.SafetensorsFile(path)
    assert str(path) in str(info.value)


def test_layouts_the_reference_accepts(tmp_path):
    # Zero-byte tensors at buffer boundaries, offsets out of header order, a
    # null __metadata__, unknown fields and no padding are all valid.
    header = (b'{"z":' + json.dumps(entry("U8", [0], 0, 0)).encode()
              + b',"__metadata__":null,"b":' + json.dumps(entry("U8", [4], 4, 8)).encode()
              + b',"a":{"extra":[1.5],"dtype":"U8","shape":[4],"data_offsets":[0,4]}'
              + b',"y":' + json.dumps(entry("U8", [0, 3], 8, 8)).encode() + b"}")
    path = build_file(tmp_path / "ok.safetensors", header, bytes(range(8)), pad=False)
    with safe_open(str(path), "np") as ref:
        assert sorted(ref.keys()) == ["a", "b", "y", "z"]
    with core.SafetensorsFile(path) as f:
        assert f.tensors() == [("z", "U8", (0,)), ("b", "U8", (4,)), ("a", "U8", (4,)), ("y", "U8", (0, 3))]
        assert f.metadata() == {}
        assert bytes(f.raw("a")) == bytes(range(4)) and bytes(f.raw("b")) == bytes(range(4, 8))


def test_every_truncation_fails_cleanly(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.int64)}, str(good),
              metadata={"format": "pt"})
    blob = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for n in range(len(blob)):
        cut.write_bytes(blob[:n])
        with pytest.raises(core.FormatError) as info:
            core.SafetensorsFile(cut)
        assert str(cut) in str(info.value)


def test_missing_file_raises_oserror(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(OSError) as info:
        core.SafetensorsFile(path)
    assert not isinstance(info.value, core.FormatError)
    assert str(path) in str(info.value)


# ----------------------------------------------------- the file object


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file({"w": torch.arange(12.0).reshape(3, 4).to(torch.bfloat16), "ids": torch.arange(3)}, str(path))
    return path


def test_read_into_errors_name_file_and_tensor(small_file):
    with core.SafetensorsFile(pathlib.Path(small_file)) as f:
        with pytest.raises(ValueError, match=r'small.safetensors: tensor "w" has 12 elements but out has 11'):
            f.read_into("w", np.empty(11, np.float32))
        with pytest.raises(core.UnsupportedError) as info:
            f.read_into("ids", np.empty(3, np.float32))
        assert str(small_file) in str(info.value) and '"ids"' in str(info.value) and "I64" in str(info.value)
        with pytest.raises(KeyError, match="nope"):
            f.read_into("nope", np.empty(1, np.float32))
        with pytest.raises(KeyError, match="nope"):
            f.raw("nope")
        with pytest.raises(TypeError):
            f.read_into("w", np.empty(12, np.float64))
        with pytest.raises(TypeError):
            f.read_into("w", np.empty((12, 2), np.float32)[:, 0])
        readonly = np.empty(12, np.float32)
        readonly.flags.writeable = False
        with pytest.raises(TypeError):
            f.read_into("w", readonly)
        out = np.empty((3, 4), np.float32)
        f.read_into("w", out)
        np.testing.assert_array_equal(out, np.arange(12.0).reshape(3, 4))


def test_closed_file_raises_value_error(small_file):
    f = core.SafetensorsFile(small_file)
    f.close()
    f.close()  # closing twice is harmless
    for call in (f.tensors, f.metadata, lambda: f.raw("w"), lambda: f.read_into("w", np.empty(12, np.float32)),
                 f.__enter__):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert f.path == str(small_file)


def test_raw_views_outlive_the_file(small_file):
    with core.SafetensorsFile(small_file) as f:
        view = f.raw("ids")
    del f
    arr = np.frombuffer(view, np.int64)
    np.testing.assert_array_equal(arr, [0, 1, 2])
    assert memoryview(view).readonly and not arr.flags.writeable
