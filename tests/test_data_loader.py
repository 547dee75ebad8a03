"""Rows and batches: padding, packing, shuffling, resuming, splits, the cache."""
import json
import os
import warnings

import numpy as np
import pytest

from tinylm.data import load_dataset

IGNORE = -100


def write_pairs(path, n, offset=0):
    lines = [json.dumps({"prompt": f"Question {i + offset}: what is {i} times {i % 7}?\n",
                         "completion": f"{i * (i % 7)}" + " ok" * (i % 5)}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def load(path, tok, tmp_path, **kw):
    kw.setdefault("seq_len", 48)
    return load_dataset(path, tok, cache_dir=tmp_path / "cache", **kw)


def examples(ds):
    """{tuple(ids): labels} of each unpacked row's real tokens."""
    b = ds.rows(range(len(ds)))
    return {tuple(i[m == 1]): tuple(lab[m == 1]) for i, lab, m in zip(b["input_ids"], b["labels"], b["attention_mask"])}


def test_padding(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    train = load(write_pairs(tmp_path / "d.jsonl", 6), tok, tmp_path).train
    b = train.rows(range(len(train)))
    rows = b.pop("row_ids")
    assert rows.dtype == np.int64 and rows.tolist() == list(range(6))
    assert {k: (v.dtype, v.shape) for k, v in b.items()} == {k: (np.int32, (6, 48)) for k in b}
    pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id   # qwen3 has one, mistral not
    real = b["attention_mask"] == 1
    assert (b["input_ids"][~real] == pad).all() and (b["labels"][~real] == IGNORE).all()
    assert (b["position_ids"] == np.arange(48)).all()
    for row in real:   # real tokens first, then padding
        assert row.tolist() == sorted(row.tolist(), reverse=True)


def test_packing(tokenizer_case, tmp_path):
    tok, _, _ = tokenizer_case
    path = write_pairs(tmp_path / "d.jsonl", 40)
    plain = load(path, tok, tmp_path, seq_len=128).train
    packed = load(path, tok, tmp_path, seq_len=128, packing=True, seed=3).train
    assert packed.stats.examples == plain.stats.examples == 40
    assert packed.stats.tokens == plain.stats.tokens
    assert len(packed) <= len(plain) / 3
    b = packed.rows(range(len(packed)))
    docs = {}
    for ids, labels, mask, pos in zip(b["input_ids"], b["labels"], b["attention_mask"], b["position_ids"]):
        n = int(mask.sum())
        starts = np.flatnonzero(pos[:n] == 0).tolist()
        assert starts[0] == 0
        for k, (s, e) in enumerate(zip(starts, starts[1:] + [n])):
            assert pos[s:e].tolist() == list(range(e - s))
            doc_labels = labels[s:e].copy()
            if k > 0:   # no loss from the previous document into this one
                assert doc_labels[0] == IGNORE
            docs[tuple(ids[s:e])] = tuple(doc_labels)
        assert pos[n:].tolist() == list(range(n - starts[-1], n - starts[-1] + 128 - n))
    # every example exactly once, with its own labels (their first label is a prompt token anyway)
    assert docs == examples(plain)


def test_packing_with_train_on_prompt_masks_document_starts(mistral, tmp_path):
    packed = load(write_pairs(tmp_path / "d.jsonl", 10), mistral, tmp_path, packing=True,
                  train_on_prompt=True).train
    b = packed.rows(range(len(packed)))
    starts = (b["position_ids"] == 0) & (b["attention_mask"] == 1)
    starts[:, 0] = False
    assert starts.sum() == 10 - len(packed)
    assert (b["labels"][starts] == IGNORE).all()
    inner = (b["attention_mask"] == 1) & ~starts
    assert (b["labels"][inner] == b["input_ids"][inner]).all()


def collect(it, n=None):
    out = []
    for batch in it:
        out.append(batch)
        if n is not None and len(out) == n:
            break
    return out


def test_shuffle_is_seeded_and_covers_each_epoch(mistral, tmp_path):
    train = load(write_pairs(tmp_path / "d.jsonl", 23), mistral, tmp_path).train
    key = lambda batches: [tuple(map(tuple, b["input_ids"])) for b in batches]
    a = collect(train.batches(4, seed=7, epochs=2))
    assert key(a) == key(train.batches(4, seed=7, epochs=2))
    assert key(a) != key(train.batches(4, seed=8, epochs=2))
    assert len(a) == 12 and a[5]["input_ids"].shape == (3, 48)   # 23 rows: 5 full batches and 3 rows
    first, second = a[:6], a[6:]
    rows_of = lambda bs: sorted(r for b in bs for r in map(tuple, b["input_ids"]))
    assert rows_of(first) == rows_of(second) == sorted(map(tuple, train.rows(range(23))["input_ids"]))
    assert key(first) != key(second)   # a new order each epoch
    ordered = collect(train.batches(23, shuffle=False))
    assert (ordered[0]["input_ids"] == train.rows(range(23))["input_ids"]).all()
    it = train.batches(4, drop_last=True, epochs=3)
    assert len(it) == 15 and all(b["input_ids"].shape[0] == 4 for b in it)


def test_resume_gives_the_same_batches(mistral, tmp_path):
    train = load(write_pairs(tmp_path / "d.jsonl", 30), mistral, tmp_path).train
    full = collect(train.batches(4, seed=1, epochs=3))
    it = train.batches(4, seed=1, epochs=3)
    collect(it, 10)
    saved = json.loads(json.dumps(it.position))   # it goes through a checkpoint file
    assert saved == {"epoch": 1, "batch": 2}
    rest = collect(train.batches(4, seed=1, epochs=3, start=saved))
    assert len(rest) == len(full) - 10
    for x, y in zip(rest, full[10:]):
        assert all((x[k] == y[k]).all() for k in x)
    endless = train.batches(4, seed=1, epochs=None)
    assert len(collect(endless, 50)) == 50 and endless.position == {"epoch": 6, "batch": 2}
    with pytest.raises(ValueError, match="outside epochs of 8 batches"):
        train.batches(4, start={"epoch": 0, "batch": 8})


def test_validation_fraction(mistral, tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 50)
    train, val = load(path, mistral, tmp_path, validation=0.2, seed=5)
    assert (train.stats.examples, val.stats.examples) == (40, 10)
    t, v = examples(train), examples(val)
    assert not set(t) & set(v) and len(set(t) | set(v)) == 50
    again = load(path, mistral, tmp_path, validation=0.2, seed=5).validation
    assert examples(again) == v
    assert examples(load(path, mistral, tmp_path, validation=0.2, seed=6).validation) != v


def test_validation_file_and_several_train_files(mistral, tmp_path):
    a, b = write_pairs(tmp_path / "a.jsonl", 5), write_pairs(tmp_path / "b.jsonl", 7, offset=100)
    v = write_pairs(tmp_path / "v.jsonl", 3, offset=200)
    train, val = load([a, b], mistral, tmp_path, validation=v)
    assert (train.stats.examples, val.stats.examples) == (12, 3)
    assert examples(val) == examples(load(v, mistral, tmp_path).train)


class CountingTokenizer:
    """Passes calls through and counts the ones tokenization makes."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode_batch(self, *a, **kw):
        self.calls += 1
        return self.inner.encode_batch(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_second_run_skips_tokenization(mistral, tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 20)
    tok = CountingTokenizer(mistral)
    first = load(path, tok, tmp_path).train
    assert tok.calls > 0 and not first.stats.cache_hit
    tok.calls = 0
    second = load(path, tok, tmp_path, seq_len=32, packing=True).train   # layout options reuse the cache
    assert tok.calls == 0 and second.stats.cache_hit
    assert len(os.listdir(tmp_path / "cache")) == 1
    third = load(path, tok, tmp_path, on_error="skip").train   # tokenization options do not
    assert tok.calls > 0 and not third.stats.cache_hit
    tok.calls = 0
    write_pairs(path, 21)   # nor does new content under the same name
    assert load(path, tok, tmp_path).train.stats.examples == 21 and tok.calls > 0


def test_corrupt_cache_is_rebuilt(mistral, tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 20)
    expected = examples(load(path, mistral, tmp_path).train)
    [name] = os.listdir(tmp_path / "cache")
    cache_file = tmp_path / "cache" / name
    cache_file.write_bytes(cache_file.read_bytes()[:2000])
    with pytest.warns(UserWarning, match=f"rebuilding token cache .*{name}: token cache .*{name}"):
        again = load(path, mistral, tmp_path).train
    assert not again.stats.cache_hit and examples(again) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(path, mistral, tmp_path).train.stats.cache_hit
    other = write_pairs(tmp_path / "other.jsonl", 3)
    load(other, mistral, tmp_path)
    [other_name] = set(os.listdir(tmp_path / "cache")) - {name}
    os.replace(tmp_path / "cache" / other_name, cache_file)   # a valid cache, of another file
    with pytest.warns(UserWarning, match="it was made from other inputs"):
        assert examples(load(path, mistral, tmp_path).train) == expected


def test_streaming_equals_in_memory(mistral, tmp_path):
    path = write_pairs(tmp_path / "d.jsonl", 30)
    for packing in (False, True):
        mem = load(path, mistral, tmp_path, packing=packing, in_memory=True).train
        disk = load(path, mistral, tmp_path, packing=packing, in_memory=False).train
        assert disk.files[0]._ids is None and mem.files[0]._ids is not None
        for x, y in zip(mem.batches(8, seed=2), disk.batches(8, seed=2)):
            assert all((x[k] == y[k]).all() for k in x)
