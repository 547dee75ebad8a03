"""ggml's tensor block types (csrc/quant/ggml_*.c through tinylm._core.ggml_*)
against the two implementations GGUF files come from:

- the gguf package (gguf.quants): every dequantizer it has, bit for bit on
  random block bytes (fp16 scales of every kind: subnormal, negative, inf,
  NaN; NaN compared as NaN) and on blocks we quantized; every quantizer it
  has (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), byte for byte on inputs
  that stress each rounding rule;
- llama.cpp's libggml-base (tests/llamacpp_ref.py, skipped when the
  reference is not built): its reference quantizers for every type, the K
  types included, and its dequantizers, bit for bit, NaN payloads too.

Where the two disagree, llama.cpp's C is the one tinylm follows; they differ
only on NaN inputs: numpy's astype(float16) keeps part of a NaN's payload
where ggml writes 0x7e00, numpy's max/argmax let a NaN win a block's
maximum where ggml's comparisons skip it (the whole block then differs),
and numpy leaves a signalling fp16 NaN signalling where ggml's conversion
quiets it (still NaN, so the dequantize comparison holds).

Without llama.cpp the K types are still checked: their dequantizer against
gguf, the round trip's error, and a table of digests of llama.cpp's output
on a fixed input (GOLDEN, generated with llama.cpp and re-checked against it
whenever the reference is present).
"""
import ctypes
import hashlib

import gguf
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from tinylm import _core
from tinylm.errors import UnsupportedError

try:  # the llama.cpp reference's wrapper (tests/llamacpp_ref.py, from the llama.cpp reference work)
    import llamacpp_ref
except ImportError:
    llamacpp_ref = None

TYPES = {name: (tid, elems, nbytes, can_dq, can_q) for tid, name, elems, nbytes, can_dq, can_q in _core.ggml_types()}
ID = {name: t[0] for name, t in TYPES.items()}
DEQUANTIZABLE = [name for name, t in TYPES.items() if t[3]]
QUANTIZABLE = [name for name, t in TYPES.items() if t[4]]
K_TYPES = [name for name in QUANTIZABLE if TYPES[name][1] == 256]
FLOAT_TYPES = ("f32", "f16", "bf16")


def gguf_type(name):
    return GGMLQuantizationType[name.upper()]


def gguf_can(fn, name):
    """Whether gguf.quants implements fn ("quantize"/"dequantize") for the type."""
    elems, nbytes = TYPES[name][1], TYPES[name][2]
    probe = np.zeros((1, elems), np.float32) if fn == "quantize" else np.zeros((1, nbytes), np.uint8)
    try:
        getattr(gguf.quants, fn)(probe, gguf_type(name))
    except NotImplementedError:
        return False
    return True


GGUF_QUANTIZES = [n for n in QUANTIZABLE if n.upper() in GGMLQuantizationType.__members__ and gguf_can("quantize", n)]
GGUF_DEQUANTIZES = [n for n in DEQUANTIZABLE if n.upper() in GGMLQuantizationType.__members__
                    and gguf_can("dequantize", n)]


def ggml():
    """libggml-base through tests/llamacpp_ref.py, or a skip saying why not."""
    if llamacpp_ref is None:
        pytest.skip("tests/llamacpp_ref.py (the llama.cpp reference wrapper) is not in this checkout")
    reason = llamacpp_ref.skip_reason()
    if reason:
        pytest.skip(reason)
    return llamacpp_ref.libggml()


def ggml_quantize(lib, name, x):
    if name == "q8_K":  # not a storage type: ggml_quantize_chunk refuses it, its row function does not
        fn = lib.lib.quantize_row_q8_K_ref
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
        x = np.ascontiguousarray(x, np.float32)
        dst = ctypes.create_string_buffer(x.size // 256 * TYPES[name][2])
        fn(x.ctypes.data, dst, x.size)
        return np.frombuffer(dst.raw, np.uint8)
    return np.frombuffer(lib.quantize(ID[name], x), np.uint8)


def ggml_dequantize(lib, name, data, n):
    if name == "q8_K":  # its row function exists, but the type traits carry no to_float
        fn = lib.lib.dequantize_row_q8_K
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
        out = np.empty(n, np.float32)
        src = ctypes.create_string_buffer(bytes(data), len(data))
        fn(src, out.ctypes.data, n)
        return out
    return lib.dequantize(ID[name], bytes(data), n)


def assert_same_floats(actual, expected, what, nan_bits=False):
    """Bit-equal float32; NaN matches any NaN unless nan_bits."""
    a, e = actual.view(np.uint32), np.asarray(expected, np.float32).view(np.uint32)
    same = a == e
    if not nan_bits:
        same |= np.isnan(actual) & np.isnan(expected)
    bad = np.flatnonzero(~same)
    assert bad.size == 0, (f"{what}: {bad.size} of {a.size} differ, first at {bad[:5]}: "
                           f"{actual[bad[:5]]} vs {np.asarray(expected)[bad[:5]]}")


def assert_same_bytes(actual, expected, name, what):
    bad = np.flatnonzero(actual != expected)
    if bad.size:
        block = bad[0] // TYPES[name][2]
        pytest.fail(f"{name} {what}: {bad.size} bytes differ, first in block {block} (byte {bad[0] % TYPES[name][2]})")


# ---------------------------------------------------------------- inputs

def _chunk(rng, kind, m):
    """m float64 values of one shape that stresses a quantizer."""
    scale = 10.0 ** rng.uniform(-6, 6)
    g = rng.standard_normal(m)
    if kind == "gaussian":
        return g * scale
    if kind == "zeros":
        return np.zeros(m)
    if kind == "constant":
        return np.full(m, g[0] * scale)
    if kind == "negative_extreme":  # the largest magnitude negative (Q4_0/Q5_0 map it to -8/-16)
        g[rng.integers(m)] = -4.5
        return g * scale
    if kind == "ties":  # half-integers on a power-of-two grid: products land on .5 exactly
        return (rng.integers(-8, 8, m) + 0.5) * 2.0 ** rng.integers(-12, 12)
    if kind == "grid":  # values already on a quantization grid
        return rng.integers(-127, 128, m) * 2.0 ** rng.integers(-20, 4)
    if kind == "denormal_mixed":  # float32 subnormals beside one normal value
        g *= 1e-39
        g[rng.integers(m)] = 3e-30
        return g
    if kind == "denormal":  # only subnormals: 1/d overflows to inf in the legacy types
        return g * 10.0 ** rng.uniform(-45, -38)
    if kind == "huge":  # products and sums of squares overflow float32
        return g * 10.0 ** rng.uniform(19, 37.5)
    if kind == "sparse":
        return np.where(rng.random(m) < 0.9, 0.0, g) * scale
    if kind == "one_hot":
        x = np.zeros(m)
        x[rng.integers(m)] = g[0] * scale
        return x
    if kind == "positive":
        return np.abs(g) * scale
    raise KeyError(kind)


KINDS = ("gaussian", "zeros", "constant", "negative_extreme", "ties", "grid", "denormal_mixed", "denormal", "huge",
         "sparse", "one_hot", "positive")


def adversarial(seed, rows, n):
    """float32 [rows, n] (n a multiple of 256): each 256-value super-block one
    kind of KINDS, or (half of them) a kind per 32 values, so legacy blocks
    and K sub-blocks both meet every kind, alone and mixed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows * n // 256):
        if rng.random() < 0.5:
            out.append(_chunk(rng, KINDS[rng.integers(len(KINDS))], 256))
        else:
            out.extend(_chunk(rng, KINDS[rng.integers(len(KINDS))], 32) for _ in range(8))
    return np.concatenate(out).astype(np.float32).reshape(rows, n)


def with_nonfinite(x, seed):
    """x with about 2% of its values replaced by inf, -inf and NaNs."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    hit = rng.random(x.shape) < 0.02
    x[hit] = rng.choice(np.array([np.inf, -np.inf, np.nan, -np.nan], np.float32), hit.sum())
    return x


def random_blocks(name, rows, blocks, seed):
    """rows rows of random block bytes: every fp16 scale pattern occurs."""
    return np.random.default_rng(seed).integers(0, 256, rows * blocks * TYPES[name][2], dtype=np.uint8)


def every_half_and_midpoint():
    """float32: every binary16 value, every midpoint between two adjacent
    finite ones (the round-to-nearest-even ties) and the floats next to each
    midpoint; every bfloat16 value with the low 16 bits 0, 0x7fff, 0x8000
    (its ties), 0x8001, 0xffff."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = np.sort(np.unique(halves[np.isfinite(halves)]))
    mid = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)
    assert np.all(mid.astype(np.float64) == (finite[1:].astype(np.float64) + finite[:-1]) / 2)  # exact
    near = np.concatenate([np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))])
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    bf = (hi[:, None] | np.array([0, 0x7fff, 0x8000, 0x8001, 0xffff], np.uint32)).view(np.float32).ravel()
    return np.concatenate([halves, mid, near, bf]).astype(np.float32)


# ------------------------------------------------------------ the table

# gguf 0.19 still gives Q8_1 the block of an older ggml (float d and s, 40
# bytes); ggml-common.h's has fp16 d and s: 36 bytes, as ggml_type_size says.
GGUF_SIZE_ERRATA = {"q8_1": (32, 40)}


def test_the_table_agrees_with_gguf():
    assert {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"} \
        <= set(QUANTIZABLE) & set(DEQUANTIZABLE)
    for qtype in GGMLQuantizationType:
        names = [n for n in TYPES if n.upper() == qtype.name]
        assert names, f"gguf's {qtype.name} ({qtype.value}) is missing"
        tid, elems, nbytes = TYPES[names[0]][:3]
        assert tid == qtype.value, qtype.name
        assert GGUF_SIZE_ERRATA.get(names[0], (elems, nbytes)) == GGML_QUANT_SIZES[qtype], qtype.name
    # and nothing to dequantize that gguf could and we cannot
    assert set(GGUF_DEQUANTIZES) >= set(DEQUANTIZABLE) - {"q8_K"}
    assert {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"} <= set(GGUF_QUANTIZES)


def test_the_table_agrees_with_ggml():
    lib = ggml()
    for name, (tid, elems, nbytes, _, _) in TYPES.items():
        traits = lib.traits(tid)
        assert (traits.type_name.decode(), traits.blck_size, traits.type_size) == (name, elems, nbytes)


# ------------------------------------------------------------ dequantize

@pytest.mark.parametrize("name", GGUF_DEQUANTIZES)
def test_dequantize_random_blocks_equals_gguf(name):
    elems = TYPES[name][1]
    if elems == 1:  # every value of the float types
        raw = np.arange(1 << 16, dtype=np.uint16).view(np.uint8) if name != "f32" else random_blocks(name, 1, 4096, 1)
    else:
        raw = random_blocks(name, 4, 2048 // elems, seed=ID[name])
    rows = 4 if elems > 1 else 1
    n = raw.size // TYPES[name][2] * elems
    ours = _core.ggml_dequantize(ID[name], raw, n)
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw.reshape(rows, -1), gguf_type(name)).reshape(-1)
    assert_same_floats(ours, ref, f"{name} dequantize vs gguf")


@pytest.mark.parametrize("name", [n for n in QUANTIZABLE if n in GGUF_DEQUANTIZES])
def test_dequantize_of_our_blocks_equals_gguf(name):
    x = adversarial(seed=11, rows=4, n=1024)
    q = _core.ggml_quantize(ID[name], x)
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(q.reshape(4, -1), gguf_type(name)).reshape(-1)
    assert_same_floats(_core.ggml_dequantize(ID[name], q, x.size), ref, f"{name} dequantize(quantize(x)) vs gguf")


@pytest.mark.parametrize("name", [n for n in DEQUANTIZABLE if n != "f32"])
def test_dequantize_equals_llamacpp(name):
    lib = ggml()
    elems = TYPES[name][1]
    raw = random_blocks(name, 1, 8192 // elems, seed=100 + ID[name])
    n = raw.size // TYPES[name][2] * elems
    assert_same_floats(_core.ggml_dequantize(ID[name], raw, n), ggml_dequantize(lib, name, raw, n),
                       f"{name} dequantize vs llama.cpp", nan_bits=True)


# -------------------------------------------------------------- quantize

@pytest.mark.parametrize("name", GGUF_QUANTIZES)
def test_quantize_equals_gguf(name):
    x = adversarial(seed=ID[name], rows=8, n=1024)
    if TYPES[name][1] == 1:  # the float types: every rounding boundary too
        b = every_half_and_midpoint()
        x = np.concatenate([x.ravel(), b[np.isfinite(b)]])
        x = x[: x.size // 256 * 256].reshape(-1, 256)
    with np.errstate(all="ignore"):
        ref = gguf.quants.quantize(x, gguf_type(name)).view(np.uint8).reshape(-1)
    assert_same_bytes(_core.ggml_quantize(ID[name], x), ref, name, "quantize vs gguf")


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantize_equals_llamacpp(name):
    lib = ggml()
    x = adversarial(seed=50 + ID[name], rows=8, n=1024)
    assert_same_bytes(_core.ggml_quantize(ID[name], x), ggml_quantize(lib, name, x), name, "quantize vs llama.cpp")
    # inf and NaN inputs: what ggml's compiled code does with them (gguf's numpy port differs on NaN)
    y = with_nonfinite(x, seed=ID[name])
    assert_same_bytes(_core.ggml_quantize(ID[name], y), ggml_quantize(lib, name, y), name,
                      "quantize of inf/NaN inputs vs llama.cpp")


def test_float_conversions_round_as_ggml():
    b = every_half_and_midpoint().reshape(1, -1)
    lib = ggml()
    for name in ("f16", "bf16"):
        assert_same_bytes(_core.ggml_quantize(ID[name], b), ggml_quantize(lib, name, b), name, "every boundary")


def test_nan_conversions():
    """ggml's NaN rules (ggml-impl.h): to fp16 every NaN becomes 0x7e00 with
    its sign; to bf16 it keeps sign and top payload and is made quiet; from
    fp16 a signalling NaN comes out quiet."""
    nans = np.array([0x7f800001, 0x7fc00000, 0xffc00001, 0x7fa00000, 0xff802000], np.uint32).view(np.float32)
    f16 = _core.ggml_quantize(ID["f16"], nans.reshape(1, -1)).view(np.uint16)
    np.testing.assert_array_equal(f16, [0x7e00, 0x7e00, 0xfe00, 0x7e00, 0xfe00])
    bf16 = _core.ggml_quantize(ID["bf16"], nans.reshape(1, -1)).view(np.uint16)
    np.testing.assert_array_equal(bf16, [0x7fc0, 0x7fc0, 0xffc0, 0x7fe0, 0xffc0])
    back = _core.ggml_dequantize(ID["f16"], np.array([0x7c01, 0xfd00], np.uint16).view(np.uint8), 2)
    np.testing.assert_array_equal(back.view(np.uint32), [0x7fc02000, 0xffe00000])


# llama.cpp's reference quantizers on adversarial(GOLDEN_SEED, 4, 1024): the
# first 32 hex digits of the sha256 of their output, per type. Generated with
# libggml-base of llama-cpp-python 0.3.36's vendored llama.cpp (ggml 0.25.3;
# ggml_quantize_chunk, no importance matrix; q8_K: quantize_row_q8_K_ref);
# test_golden_digests_are_llamacpps re-derives them whenever that library is
# present, and prints the table to paste here if the input changes.
GOLDEN_SEED = 20240
GOLDEN = {
    'f32': '79c61f28361593eb0875977db86a7f31',
    'f16': 'd0beff6e7d0bc7e234fca0ea0c0ace9e',
    'q4_0': 'e823e67ebf1839708297c5ccc240d19a',
    'q4_1': '827715d18e3871c38645c7cc86010f3f',
    'q5_0': '0b3457759a22abcb16bd93ca0b6e6737',
    'q5_1': 'b03832cbbc19739cf81175a1d44ec96a',
    'q8_0': 'cb4040ddf72d2b0f83b7c1f2ed24c31c',
    'q2_K': '22d89fc9221b069db533ec61cf191349',
    'q3_K': '3c522814150d65f67f49d5ef376034bd',
    'q4_K': 'a701e6acbe2ff7b2b92d1b250efd46e4',
    'q5_K': 'b98a9cfc72aefabd47e83ed933027d6d',
    'q6_K': '45b557a584e9f4810816791bf9b3e47a',
    'q8_K': 'a74b4c5e9a2c8920605c240bcb411f79',
    'bf16': '3188d4bc4df3c0d6b9d40cfdf3fd52b1',
}


def digest(data):
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()[:32]


def test_golden_digests_are_llamacpps():
    lib = ggml()
    x = adversarial(GOLDEN_SEED, 4, 1024)
    table = {name: digest(ggml_quantize(lib, name, x)) for name in QUANTIZABLE}
    assert table == GOLDEN, "GOLDEN = {\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in table.items()) + "}"


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantize_matches_the_golden_digest(name):
    """llama.cpp's bytes without llama.cpp: the digest of its output above."""
    x = adversarial(GOLDEN_SEED, 4, 1024)
    assert digest(_core.ggml_quantize(ID[name], x)) == GOLDEN[name]


# Bounds on the round trip of unit gaussians, a little above what llama.cpp's
# quantizers reach (relative RMSE 0.30, 0.15, 0.071, 0.036, 0.018, 0.0070): a
# wrong layout or scale gives errors of order 1.
RELATIVE_RMSE = {"q2_K": 0.32, "q3_K": 0.17, "q4_K": 0.08, "q5_K": 0.04, "q6_K": 0.02, "q8_K": 0.008}


@pytest.mark.parametrize("name", K_TYPES)
def test_k_round_trip_error(name):
    x = np.random.default_rng(5).standard_normal((16, 1024)).astype(np.float32)
    y = _core.ggml_dequantize(ID[name], _core.ggml_quantize(ID[name], x), x.size).reshape(x.shape)
    rel = np.sqrt(np.mean((y - x) ** 2) / np.mean(x ** 2))
    assert rel < RELATIVE_RMSE[name], (name, rel)
    # no value lands further than one sub-block's range away
    sub = 16 if name in ("q2_K", "q3_K", "q6_K") else 32
    xs, ys = x.reshape(-1, sub), y.reshape(-1, sub)
    span = xs.max(1, keepdims=True) - np.minimum(xs.min(1, keepdims=True), 0)
    assert np.all(np.abs(ys - xs) <= span), name


@pytest.mark.parametrize("name", [n for n in QUANTIZABLE if n not in K_TYPES])
def test_requantizing_the_dequantized_is_stable(name):
    """A legacy block's maximum (and minimum) dequantize to values that give
    back the same fp16 scale, so its codes come back too."""
    x = np.random.default_rng(6).standard_normal((8, 512)).astype(np.float32)
    q = _core.ggml_quantize(ID[name], x)
    again = _core.ggml_quantize(ID[name], _core.ggml_dequantize(ID[name], q, x.size).reshape(x.shape))
    assert_same_bytes(again, q, name, "quantize(dequantize(q))")


@pytest.mark.parametrize("name", ["f16", "q4_0", "q4_K", "q6_K"])
def test_blocks_are_independent_of_rows_and_threads(name):
    """Without an importance matrix a block is encoded from its own values:
    any split into rows, and the parallel chunks of a large call, give the
    same bytes as one block at a time."""
    x = np.random.default_rng(7).standard_normal((48, 2048)).astype(np.float32)
    whole = _core.ggml_quantize(ID[name], x)
    elems = TYPES[name][1]
    one_row = _core.ggml_quantize(ID[name], x.reshape(1, -1))
    per_block = np.concatenate([_core.ggml_quantize(ID[name], b.reshape(1, -1)) for b in x.reshape(-1, elems)[:64]])
    assert_same_bytes(one_row, whole, name, "one row vs 48")
    assert_same_bytes(whole[: per_block.size], per_block, name, "block by block")


# ---------------------------------------------------------------- errors

def test_unknown_type_ids_are_value_errors():
    for bad in (-1, 4, 5, 31, 38, 43, 1000):
        with pytest.raises(ValueError, match=f"unknown ggml type id {bad}"):
            _core.ggml_dequantize(bad, b"", 0)
        with pytest.raises(ValueError, match=f"unknown ggml type id {bad}"):
            _core.ggml_quantize(bad, np.zeros((1, 256), np.float32))


@pytest.mark.parametrize("name", [n for n in TYPES if n not in DEQUANTIZABLE])
def test_types_not_implemented_are_unsupported_naming_the_type(name):
    tid, elems, nbytes = TYPES[name][:3]
    with pytest.raises(UnsupportedError, match=f"dequantizing ggml type {name} is not implemented"):
        _core.ggml_dequantize(tid, bytes(nbytes), elems)
    with pytest.raises(UnsupportedError, match=f"quantizing to ggml type {name} is not implemented"):
        _core.ggml_quantize(tid, np.zeros((1, elems), np.float32))


def test_sizes_that_are_not_whole_blocks_are_value_errors():
    with pytest.raises(ValueError, match="100 values of ggml type q4_K: not a whole number of its 256-value blocks"):
        _core.ggml_dequantize(ID["q4_K"], bytes(144), 100)
    with pytest.raises(ValueError, match="48 values of ggml type q8_0: not a whole number of its 32-value blocks"):
        _core.ggml_quantize(ID["q8_0"], np.zeros((2, 48), np.float32))
    with pytest.raises(ValueError, match="data has 143 bytes; 256 values of ggml type q4_K take 144"):
        _core.ggml_dequantize(ID["q4_K"], bytes(143), 256)
    with pytest.raises(ValueError, match="-32 values"):
        _core.ggml_dequantize(ID["q8_0"], b"", -32)
    with pytest.raises(ValueError, match="2-D"):
        _core.ggml_quantize(ID["q8_0"], np.zeros(64, np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.ggml_quantize(ID["q8_0"], np.zeros((1, 64), np.float64))
