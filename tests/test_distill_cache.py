"""Offline distillation: the teacher top-k cache (tinylm.distill.cache over
csrc/io/hdf5_topk.c) against the teacher it was made from, training from it
against online top-k training, resuming, and the caches it refuses."""
import json
import os

import numpy as np
import pytest

import tinylm
from byte_model import CONFIG, ByteTok
from test_trainer import comparable, config, data, make_model, trained, two_threads  # noqa: F401 (fixtures)
from test_trainer_distill import teacher
from tinylm.distill import CacheMismatchError, TeacherCache, build_teacher_cache, topk_logprobs
from tinylm.distill.cache import positions_of
from tinylm.errors import FormatError
from tolerance import assert_close, decoder

K = 8
DISTILL = {"loss": "forward_kl", "kd_ratio": 0.7, "temperature": 1.0, "top_k": K}


@pytest.fixture(scope="module")
def cache_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("topk") / "cache.h5"
    stats = build_teacher_cache(teacher(), data[0], path, tokenizer=ByteTok(), top_k=K, batch_size=3,
                                teacher_name="wide byte model")
    return path, stats


def test_the_cache_holds_the_teachers_top_k_at_every_labelled_position(data, cache_file):
    train, _ = data
    path, stats = cache_file
    rows = train.rows(range(len(train)))
    # forward in the build's batches of 3 rows, so the reference is the same computation bit for bit
    # whatever GEMM blocking a CPU's BLAS picks for another batch size
    model = teacher()
    logits = np.concatenate([model.forward(rows["input_ids"][i:i + 3], rows["attention_mask"][i:i + 3],
                                           rows["position_ids"][i:i + 3]) for i in range(0, len(train), 3)])
    want_ids, want_logp, _ = topk_logprobs(logits, K)
    with TeacherCache(path) as cache:
        assert (cache.k, cache.rows, cache.vocab_size) == (K, len(train), CONFIG["vocab_size"])
        m = cache.manifest
        assert m["teacher"]["name"] == "wide byte model" and m["teacher"]["weights_hash"] == teacher().fingerprint()
        assert m["seq_len"] == train.seq_len and m["data_hash"] == train.fingerprint() and m["temperature"] == 1.0
        ids, logp = cache.topk(np.arange(len(train)), rows["labels"])
        positions = 0
        for b in range(len(train)):
            where = positions_of(rows["labels"][b])
            positions += len(where)
            np.testing.assert_array_equal(ids[b, where], want_ids[b, where])
            np.testing.assert_array_equal(logp[b, where], want_logp[b, where])
            others = np.setdiff1d(np.arange(train.seq_len), where)
            assert (ids[b, others] == 0).all() and (logp[b, others] == 0).all()
        # a smaller k is the first ids of the stored ones
        ids3, logp3 = cache.topk([4, 1], rows["labels"][[4, 1]], k=3)
        np.testing.assert_array_equal(ids3, ids[[4, 1], :, :3])
    assert stats["positions"] == positions and stats["rows"] == len(train)
    assert stats["bytes"] == os.path.getsize(path) and stats["bytes_per_position"] > 0


def test_training_from_the_cache_equals_online_top_k(data, tmp_path, cache_file):
    """The same steps with the teacher model (top_k computed online from its
    hidden states) and with the cache: the same losses and weights, to the
    rounding of two summation orders over a short chain."""
    train, _ = data
    online, offline = make_model("lora"), make_model("lora")
    tinylm.Trainer(online, None, train, config(tmp_path / "online", distill=DISTILL), teacher=teacher()).fit()
    with TeacherCache(cache_file[0]) as cache:
        tinylm.Trainer(offline, ByteTok(), train, config(tmp_path / "offline", distill=DISTILL), teacher=cache).fit()
    chain = decoder(CONFIG, 2, 24, lora_r=4)
    for a, b in zip(comparable(tmp_path / "online"), comparable(tmp_path / "offline")):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for key in ("loss", "ce", "kd"):
            if key in a:
                assert_close(b[key], a[key], length=6 * chain.forward, what=f"step {a['step']} {key}")
    for name, value in trained(online).items():
        assert_close(offline.param(name), value, length=6 * chain.backward, what=name)


def test_training_from_the_cache_resumes_exactly(data, tmp_path, cache_file):
    from test_trainer import checkpoint_names, interrupt, on_loss_call
    train, _ = data
    with TeacherCache(cache_file[0]) as cache:
        straight = make_model("lora")
        tinylm.Trainer(straight, None, train, config(tmp_path / "straight", distill=DISTILL), teacher=cache).fit()
        out = tmp_path / "stopped"
        stopped = make_model("lora")
        on_loss_call(stopped, 7, interrupt)
        with pytest.raises(KeyboardInterrupt):
            tinylm.Trainer(stopped, None, train, config(out, save_steps=None, distill=DISTILL), teacher=cache).fit()
        assert checkpoint_names(out) == ["checkpoint-3"]
        resumed = make_model("lora", scrambled=True)
        tinylm.Trainer(resumed, None, train, config(out, resume_from_checkpoint=str(out / "checkpoint-3"),
                                                    distill=DISTILL), teacher=cache).fit()
    assert comparable(out) == comparable(tmp_path / "straight")
    for name, value in trained(straight).items():
        np.testing.assert_array_equal(resumed.param(name), value, err_msg=name)


def test_a_cache_for_other_data_tokenizer_or_layout_is_refused(data, tmp_path, cache_file):
    train, val = data
    path = cache_file[0]
    root = os.path.dirname(train.files[0].path)
    with TeacherCache(path) as cache:
        with pytest.raises(CacheMismatchError, match="seq_len does not match: the cache has 24, the training data "
                                                     "has 32"):
            longer = tinylm.data.load_dataset(os.path.join(root, "train.jsonl"), ByteTok(), seq_len=32,
                                              validation=0.25, cache_dir=os.path.join(root, "cache"))[0]
            tinylm.Trainer(make_model("lora"), None, longer, config(tmp_path / "a", distill=DISTILL), teacher=cache)
        with pytest.raises(CacheMismatchError, match="rows does not match"):
            cache.check(val)
        reshuffled = tinylm.data.load_dataset(os.path.join(root, "train.jsonl"), ByteTok(), seq_len=24,
                                              validation=0.25, seed=1, cache_dir=os.path.join(root, "cache"))[0]
        if len(reshuffled) == len(train):
            with pytest.raises(CacheMismatchError, match=r"data_hash \(the data files"):
                cache.check(reshuffled)

        class OtherTok(ByteTok):
            eos_token_id = 7
        with pytest.raises(CacheMismatchError, match=r"tokenizer_hash \(the tokenizer\) does not match"):
            tinylm.Trainer(make_model("lora"), OtherTok(), train, config(tmp_path / "b", distill=DISTILL),
                           teacher=cache)
        with pytest.raises(ValueError, match="on-policy batches need a teacher model"):
            tinylm.Trainer(make_model("lora"), None, train, config(tmp_path / "c", distill={**DISTILL, "lmbda": 0.5}),
                           teacher=cache)
        with pytest.raises(ValueError, match="holds the top 8 ids"):
            tinylm.Trainer(make_model("lora"), None, train, config(tmp_path / "d", distill={**DISTILL, "top_k": 9}),
                           teacher=cache)
        with pytest.raises(TypeError, match="must be the tinylm.data.Dataset it was made from"):
            tinylm.Trainer(make_model("lora"), None, list(train.batches(2)), config(tmp_path / "e", distill=DISTILL),
                           teacher=cache)


def test_a_damaged_or_foreign_file_is_a_format_error(data, tmp_path, cache_file):
    damaged = tmp_path / "damaged.h5"
    raw = bytearray(open(cache_file[0], "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"teacher cache .*damaged.h5: checksum .* \(the file is corrupt\)"):
        TeacherCache(damaged)
    token_cache = data[0].files[0].cache_path   # a sealed tinylm file of the other kind
    with pytest.raises(FormatError, match="tinylm_topk_version is missing"):
        TeacherCache(token_cache)
    with pytest.raises(OSError, match="No such file"):
        TeacherCache(tmp_path / "absent.h5")


def test_a_failed_build_leaves_nothing(data, tmp_path):
    class Broken:
        config, quant, active_adapter = {"vocab_size": CONFIG["vocab_size"]}, None, None

        def eval(self):
            return self

        def forward(self, *args):
            raise RuntimeError("teacher failed")
    with pytest.raises(RuntimeError, match="teacher failed"):
        build_teacher_cache(Broken(), data[0], tmp_path / "c.h5", tokenizer=ByteTok(), top_k=4)
    assert os.listdir(tmp_path) == []


def test_the_cli_builds_a_cache_the_trainer_accepts(tmp_path, capsys):
    from test_recipes import TASK, head
    from tinylm.cli import main
    from tinylm.recipe_support import DEMO_MODEL
    data_file = head(os.path.join(TASK, "train.jsonl"), tmp_path / "train.jsonl", 24)
    out = tmp_path / "cache.h5"
    assert main(["distill", "cache", "--teacher", DEMO_MODEL, "--data", str(data_file), "--top-k", "4",
                 "--seq-len", "64", "--output", str(out), "--cache-dir", str(tmp_path / "tok")]) == 0
    printed = capsys.readouterr().out
    assert "bytes per labelled position" in printed and str(out) in printed
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    train, _ = tinylm.data.load_dataset(str(data_file), tok, seq_len=64, cache_dir=tmp_path / "tok")
    with TeacherCache(out) as cache:
        cache.check(train, tokenizer=tok)
        assert json.loads(json.dumps(cache.manifest))["teacher"]["name"] == DEMO_MODEL
