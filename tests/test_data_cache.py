"""The HDF5 token cache in C (tinylm._core.TokenCache): round trip, atomic
writes, validation on open, and the file as libhdf5's own h5dump reads it."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from tinylm import _core
from tinylm.errors import FormatError


def write_cache(path, examples, attrs=None):
    w = _core.cache_create(str(path))
    for k, v in (attrs or {}).items():
        w.set_attr(k, v)
    for chunk in (examples[:2], examples[2:]):
        lengths = np.array([len(ids) for ids, _, _ in chunk], np.int64)
        ids = np.array([t for e, _, _ in chunk for t in e], np.int32)
        mask = np.array([m for _, e, _ in chunk for m in e], np.uint8)
        w.append(ids, mask, lengths, np.array([line for _, _, line in chunk], np.int64))
    w.commit()


EXAMPLES = [([5, 6, 7], [0, 1, 1], 1), ([], [], 3), ([9], [1], 4), ([1, 2, 3, 4, 151643], [0, 0, 1, 1, 1], 7)]


def test_round_trip(tmp_path):
    path = tmp_path / "c.h5"
    write_cache(path, EXAMPLES, {"key": "abc", "options": '{"format": "chat", "é": 1}'})
    c = _core.cache_open(str(path))
    assert c.count == 4 and c.n_tokens == 9
    assert np.asarray(c.offsets).tolist() == [0, 3, 3, 4, 9]
    assert np.asarray(c.lines).tolist() == [1, 3, 4, 7]
    assert c.attrs == {"tinylm_cache_version": "1", "key": "abc", "options": '{"format": "chat", "é": 1}'}
    ids, mask = np.empty(6, np.int32), np.empty(6, np.uint8)
    c.read(2, 2, ids, mask)
    assert ids.tolist() == [9, 1, 2, 3, 4, 151643] and mask.tolist() == [1, 0, 0, 1, 1, 1]
    with pytest.raises(IndexError):
        c.read(3, 2, ids, mask)
    with pytest.raises(ValueError, match="6 elements, expected 5"):
        c.read(3, 1, ids, mask)


def test_written_under_a_temporary_name_until_commit(tmp_path):
    path = tmp_path / "c.h5"
    w = _core.cache_create(str(path))
    w.append(np.array([1, 2], np.int32), np.array([1, 1], np.uint8), np.array([2], np.int64), np.array([1], np.int64))
    assert not path.exists() and [p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()] == [f"c.h5.tmp-{os.getpid()}"]
    w.close()   # no commit: the half-written file goes away
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="reserved"):
        _core.cache_create(str(path)).set_attr("tinylm_cache_version", "2")


def test_append_checks_sizes(tmp_path):
    w = _core.cache_create(str(tmp_path / "c.h5"))
    with pytest.raises(ValueError, match="ids has 2 elements, expected 3"):
        w.append(np.array([1, 2], np.int32), np.ones(3, np.uint8), np.array([3], np.int64), np.array([1], np.int64))
    with pytest.raises(TypeError, match="int64"):
        w.append(np.array([1], np.int32), np.ones(1, np.uint8), np.array([1], np.int32), np.array([1], np.int64))
    w.close()


def test_open_rejects_corrupt_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5 at all\n")
    with pytest.raises(FormatError, match=r"junk.h5: no tinylm seal in its first 512 bytes"):
        _core.cache_open(str(junk))
    good = tmp_path / "good.h5"
    write_cache(good, EXAMPLES)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:1500])   # a crash mid-copy, say
    with pytest.raises(FormatError, match=r"cut.h5: the seal says \d+ bytes but the file has 1500"):
        _core.cache_open(str(cut))
    # one flipped bit anywhere after the seal: libhdf5 never sees the file
    data = bytearray(good.read_bytes())
    for at in (512, len(data) // 2, len(data) - 1):
        flipped = tmp_path / f"flipped-{at}.h5"
        flipped.write_bytes(bytes(data[:at]) + bytes([data[at] ^ 0x10]) + bytes(data[at + 1:]))
        with pytest.raises(FormatError, match=f"flipped-{at}.h5: checksum [0-9a-f]{{16}} does not match"):
            _core.cache_open(str(flipped))
    with pytest.raises(OSError, match="missing.h5"):
        _core.cache_open(str(tmp_path / "missing.h5"))


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (Debian hdf5-tools; `make deps`) not installed")
def test_h5dump_reads_the_layout(tmp_path):
    path = tmp_path / "c.h5"
    write_cache(path, EXAMPLES, {"key": "abc"})
    out = subprocess.run(["h5dump", str(path)], check=True, capture_output=True, text=True).stdout
    assert 'DATASET "input_ids"' in out and "H5T_STD_I32LE" in out
    assert 'DATASET "offsets"' in out and "H5T_STD_I64LE" in out
    assert 'DATASET "loss_mask"' in out and "H5T_STD_U8LE" in out
    assert 'ATTRIBUTE "key"' in out and '"abc"' in out
    offsets = subprocess.run(["h5dump", "-d", "/offsets", "-y", "-w", "0", str(path)], check=True,
                             capture_output=True, text=True).stdout
    assert "0, 3, 3, 4, 9" in offsets


def test_offsets_outlive_close(tmp_path):
    path = tmp_path / "c.h5"
    write_cache(path, EXAMPLES)
    c = _core.cache_open(str(path))
    offsets, lines = np.asarray(c.offsets), np.asarray(c.lines)
    c.close()
    assert offsets.tolist() == [0, 3, 3, 4, 9] and lines.tolist() == [1, 3, 4, 7]
    with pytest.raises(ValueError, match="closed"):
        c.count
