"""tinylm.Trainer with a teacher (online distillation): the distill section
of the config, a run that resumes exactly, kd_ratio 0 as plain fine-tuning,
and the settings it refuses."""
import numpy as np
import pytest

import tinylm
from byte_model import CONFIG
from test_trainer import checkpoint_names, comparable, config, data, interrupt, make_model, on_loss_call, records, \
    trained, two_threads  # noqa: F401 (fixtures)
from tinylm.distill import DistillConfig
from tolerance import assert_close, decoder

DISTILL = {"loss": "jsd", "beta": 0.4, "kd_ratio": 0.6, "temperature": 2.0}


def teacher():
    """A wider model on the same (byte) vocabulary, with its own weights."""
    return tinylm.Model.from_config({**CONFIG, "hidden_size": 48, "intermediate_size": 96}, seed=5)


def assert_resumes_exactly(train, tmp_path, distill):
    """An uninterrupted run, and one stopped by Ctrl-C in step 4 then resumed
    from checkpoint 3 with scrambled weights: the same metrics and weights,
    bit for bit (one process, one thread count)."""
    straight = make_model("lora")
    tinylm.Trainer(straight, None, train, config(tmp_path / "straight", distill=distill), teacher=teacher()).fit()
    out = tmp_path / "stopped"
    stopped = make_model("lora")
    on_loss_call(stopped, 7, interrupt)
    with pytest.raises(KeyboardInterrupt):
        tinylm.Trainer(stopped, None, train, config(out, save_steps=None, distill=distill), teacher=teacher()).fit()
    assert checkpoint_names(out) == ["checkpoint-3"]
    resumed = make_model("lora", scrambled=True)
    tinylm.Trainer(resumed, None, train, config(out, resume_from_checkpoint=str(out / "checkpoint-3"),
                                                distill=distill), teacher=teacher()).fit()
    assert comparable(out) == comparable(tmp_path / "straight")
    for name, value in trained(straight).items():
        np.testing.assert_array_equal(resumed.param(name), value, err_msg=name)


def test_distillation_resumes_exactly(data, tmp_path):
    assert_resumes_exactly(data[0], tmp_path, DISTILL)


def test_the_teacher_changes_training_and_kd_ratio_zero_does_not(data, tmp_path):
    train, _ = data
    plain, zero, distilled = make_model("lora"), make_model("lora"), make_model("lora")
    tinylm.Trainer(plain, None, train, config(tmp_path / "plain", max_steps=2)).fit()
    tinylm.Trainer(zero, None, train, config(tmp_path / "zero", max_steps=2, distill={"kd_ratio": 0.0}),
                   teacher=teacher()).fit()
    tinylm.Trainer(distilled, None, train, config(tmp_path / "kd", max_steps=2, distill=DISTILL),
                   teacher=teacher()).fit()
    chain = decoder(CONFIG, 2, 24, lora_r=4)
    moved = 0
    for name, value in trained(plain).items():
        assert_close(zero.param(name), value, length=3 * chain.backward, what=name)
        moved += not np.allclose(distilled.param(name), value, rtol=1e-3, atol=1e-5)
    assert moved >= len(trained(plain)) // 2  # every B, which starts at zero, and A where it moved enough
    assert [r["loss"] for r in records(tmp_path / "kd")] != [r["loss"] for r in records(tmp_path / "plain")]


def test_distill_settings_are_checked(data, tmp_path):
    train, _ = data
    with pytest.raises(ValueError, match="unknown TrainConfig.distill key 'kd_weight'; valid keys: loss, kd_ratio"):
        config(tmp_path, distill={"kd_weight": 0.5})
    with pytest.raises(ValueError, match="distill is set but no teacher"):
        tinylm.Trainer(make_model("lora"), None, train, config(tmp_path, distill=DISTILL))
    model = make_model("lora")
    with pytest.raises(ValueError, match="another model"):
        tinylm.Trainer(model, None, train, config(tmp_path), teacher=model)
    cfg = config(tmp_path, distill=DISTILL)
    assert cfg.distill == DistillConfig(**DISTILL)
    assert tinylm.TrainConfig.from_dict(cfg.to_dict()).distill == cfg.distill  # as a checkpoint stores it


def test_on_policy_batches_are_the_students_own_completions(data):
    """GKD's on-policy batch: each row's prompt (its tokens before the first
    label) continued greedily by the student up to the row's completion
    length, the continuation labelled."""
    from tinylm.distill.on_policy import on_policy_batch
    train, _ = data
    batch = next(iter(train.batches(3, shuffle=False)))
    student = make_model("lora")
    out = on_policy_batch(student, batch, temperature=0.0, seed=0)
    for b in range(3):
        labels, mask = batch["labels"][b], batch["attention_mask"][b]
        start = int(np.nonzero(labels != -100)[0][0])
        prompt = batch["input_ids"][b, :start].tolist()
        budget = int(mask.sum()) - start
        (new,) = student.generate_ids([prompt], max_new_tokens=budget)
        n = start + len(new)
        assert out["input_ids"][b, :start].tolist() == prompt
        assert out["input_ids"][b, start:n].tolist() == new and out["labels"][b, start:n].tolist() == new
        assert (out["labels"][b, :start] == -100).all() and (out["labels"][b, n:] == -100).all()
        assert out["attention_mask"][b].sum() == n


def test_on_policy_distillation_resumes_exactly(data, tmp_path):
    train, _ = data
    gkd = {**DISTILL, "lmbda": 0.5, "generation_temperature": 0.9, "max_new_tokens": 6}
    assert_resumes_exactly(train, tmp_path / "gkd", gkd)
    tinylm.Trainer(make_model("lora"), None, train, config(tmp_path / "plain", distill=DISTILL),
                   teacher=teacher()).fit()
    # on-policy batches changed training
    assert comparable(tmp_path / "plain") != comparable(tmp_path / "gkd" / "straight")


def test_a_teacher_on_another_tokenizer_is_refused(data, tmp_path):
    from eval_fixtures import build_tokenizer
    from fixture_paths import tokenizer_fixture
    from tinylm.distill import check_shared_tokenizer
    train, _ = data
    build_tokenizer().save_pretrained(tmp_path / "tok")
    tok = tinylm.Tokenizer.from_pretrained(tmp_path / "tok")
    check_shared_tokenizer(tok, tinylm.Tokenizer.from_pretrained(tmp_path / "tok"))  # the same files: accepted
    other = tinylm.Tokenizer.from_pretrained(tokenizer_fixture("qwen3"))
    with pytest.raises(ValueError, match=r"the student's tokenizer .* and the teacher's .* differ: 211 ids against"):
        tinylm.Trainer(make_model("lora"), tok, train, config(tmp_path / "o"), teacher=teacher(), teacher_tok=other)
