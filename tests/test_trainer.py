"""tinylm.Trainer end to end on a tiny Llama and a tiny tokenized dataset:
accumulation, resume, atomic checkpoints, NaN stop, Ctrl-C, pruning, the
best adapter, evaluation, metrics and the loss curve."""
import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import tinylm
import tinylm.data
from tinylm import _core
from byte_model import CONFIG, ByteTok
from tolerance import approx, assert_close, decoder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(train, validation): 12 and 4 rows of 24 tokens. Completions differ in
    length, so batches hold different numbers of labelled tokens."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    with open(root / "train.jsonl", "w") as f:
        for i in range(16):
            prompt = f"q{i}: " + "ab" * int(rng.integers(1, 5)) + "\n"
            f.write(json.dumps({"prompt": prompt, "completion": "xyz"[: 1 + i % 3] * int(rng.integers(1, 4))}) + "\n")
    return tinylm.data.load_dataset(root / "train.jsonl", ByteTok(), seq_len=24, validation=0.25,
                                    cache_dir=root / "cache")


@pytest.fixture(autouse=True)
def two_threads():
    before = tinylm.get_num_threads()
    tinylm.set_num_threads(2)
    yield
    tinylm.set_num_threads(before)


def make_model(kind, scrambled=False):
    """kind "lora": a base with a LoRA adapter (dropout 0.1); "full": the base
    alone. scrambled: its trainable weights are noise, so a resumed run
    shows that every trained value came from the checkpoint. (The adapter
    seed stays 0: it also keys the dropout masks.)"""
    model = tinylm.Model.from_config(CONFIG, seed=0)
    if kind == "lora":
        model.add_lora(r=4, alpha=8, dropout=0.1, target_modules="all-linear", seed=0)
    if scrambled:
        rng = np.random.default_rng(99)
        for name in model.trainable_names():
            model.param(name)[...] = rng.normal(0, 1, model.param(name).shape)
    return model


def config(out, **overrides):
    base = dict(output_dir=str(out), learning_rate=1e-2, batch_size=2, gradient_accumulation_steps=2, max_steps=6,
                lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.01, save_steps=3, seed=3,
                disable_tqdm=True)
    return tinylm.TrainConfig(**{**base, **overrides})


def records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def comparable(out):
    """metrics.jsonl without the wall-clock field."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records(out)]


def checkpoint_names(out):
    return sorted(n for n in os.listdir(out) if n.startswith("checkpoint"))


def trained(model):
    return {name: model.param(name).copy() for name in model.trainable_names()}


def on_loss_call(model, n, action):
    """Makes the model's n-th loss() call run action(model) first."""
    real, calls = model.loss, [0]

    def loss(*args, **kwargs):
        calls[0] += model.training  # training micro-batches only; evaluation calls loss() too
        if model.training and calls[0] == n:
            action(model)
        return real(*args, **kwargs)

    model.loss = loss


def interrupt(model):
    raise KeyboardInterrupt


def digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def labelled(batch):
    return int((batch["labels"][:, 1:] != -100).sum())


# ------------------------------------------------------------ accumulation
def test_accumulation_4x2_equals_one_batch_of_8(data, tmp_path):
    train, _ = data
    micro = list(train.batches(2, seed=3))[:4]
    assert len({labelled(b) for b in micro}) > 1, "equal counts would not tell token weighting from batch weighting"
    runs = {}
    for batch_size, accumulation in ((2, 4), (8, 1)):
        model = make_model("full")
        out = tmp_path / f"{batch_size}x{accumulation}"
        tinylm.Trainer(model, None, train, config(out, batch_size=batch_size, max_steps=1, max_grad_norm=None,
                                                  gradient_accumulation_steps=accumulation)).fit()
        runs[batch_size] = records(out)[0], model.grads()  # the grads of the one step stay until the next
    (small, small_grads), (big, big_grads) = runs[2], runs[8]
    # The same sums grouped differently (4 batches of 2 rows or one of 8).
    chain = decoder(CONFIG, 8, 24)
    norm = max(g.size for g in big_grads.values()) + len(big_grads) + 2  # per tensor, then across (test_optim)
    assert small["loss"] == approx(big["loss"], length=chain.loss)
    assert small["grad_norm"] == approx(big["grad_norm"], length=chain.backward + norm, what="grad norm")
    assert set(small_grads) == set(big_grads)
    for name, grad in big_grads.items():
        assert_close(small_grads[name], grad, length=chain.backward, what=name)


# ------------------------------------------------------------------ resume
@pytest.mark.filterwarnings("error::UserWarning")  # nothing may differ between the runs
@pytest.mark.parametrize("kind", ["lora", "full"])
def test_resume_equals_uninterrupted(data, tmp_path, kind):
    train, val = data
    # LoRA: dropout masks come from the checkpointed counter, and evaluating
    # between steps (no dropout) must not shift them.
    eval_data, extra = (val, {"eval_steps": 2}) if kind == "lora" else (None, {})
    straight = make_model(kind)
    tinylm.Trainer(straight, None, train, config(tmp_path / "straight", **extra), eval_data=eval_data).fit()

    out = tmp_path / "stopped"
    stopped = make_model(kind)
    on_loss_call(stopped, 7, interrupt)  # step 4's first micro-batch: Ctrl-C mid-step
    with pytest.raises(KeyboardInterrupt):
        tinylm.Trainer(stopped, None, train, config(out, save_steps=None, **extra), eval_data=eval_data).fit()
    assert checkpoint_names(out) == ["checkpoint-3"], "Ctrl-C saves the last completed step"

    resumed = make_model(kind, scrambled=True)
    tinylm.Trainer(resumed, None, train, config(out, resume_from_checkpoint=str(out / "checkpoint-3"), **extra),
                   eval_data=eval_data).fit()
    # Exact: the same operations in the same order (one process, one thread
    # count): a resume must reproduce every bit, or it resumed something else.
    assert comparable(out) == comparable(tmp_path / "straight")
    assert [r["step"] for r in records(out)] == [1, 2, 3, 4, 5, 6]
    for name, value in trained(straight).items():
        np.testing.assert_array_equal(resumed.param(name), value, err_msg=name)


def test_a_list_of_batches_trains_epochs_and_resumes(data, tmp_path):
    train, _ = data
    batches = list(train.batches(2, shuffle=False))  # 6 batches; 3 per step -> 2 steps an epoch
    settings = dict(max_steps=-1, num_train_epochs=2, gradient_accumulation_steps=4, save_steps=None)
    straight = make_model("full")
    result = tinylm.Trainer(straight, None, batches, config(tmp_path / "straight", **settings)).fit()
    assert result.global_step == 4 and result.metrics["epoch"] == 2.0
    assert [r["epoch"] for r in records(tmp_path / "straight")] == pytest.approx([4 / 6, 1.0, 1 + 4 / 6, 2.0],
                                                                                abs=1e-6)

    out = tmp_path / "stopped"
    stopped = make_model("full")
    on_loss_call(stopped, 7, interrupt)  # the steps take 4, 2, 4, 2 micro-batches: call 7 is in step 3
    with pytest.raises(KeyboardInterrupt):
        tinylm.Trainer(stopped, None, batches, config(out, **settings)).fit()
    resumed = make_model("full", scrambled=True)
    tinylm.Trainer(resumed, None, batches, config(out, resume_from_checkpoint=True, **settings)).fit()
    assert comparable(out) == comparable(tmp_path / "straight")  # exact, as above
    for name, value in trained(straight).items():
        np.testing.assert_array_equal(resumed.param(name), value, err_msg=name)


def test_resume_checks_what_it_continues(data, tmp_path):
    train, _ = data
    out = tmp_path / "run"
    tinylm.Trainer(make_model("lora"), None, train, config(out, max_steps=1)).fit()
    with pytest.raises(ValueError, match="batch_size=2"):
        tinylm.Trainer(make_model("lora"), None, train,
                       config(out, batch_size=4, resume_from_checkpoint=True)).fit()
    with pytest.raises(ValueError, match="holds a LoRA adapter"):
        tinylm.Trainer(make_model("full"), None, train, config(out, resume_from_checkpoint=True)).fit()
    with pytest.warns(UserWarning, match=r"learning_rate: 0.01 -> 0.02"):
        tinylm.Trainer(make_model("lora"), None, train,
                       config(out, max_steps=2, learning_rate=2e-2, resume_from_checkpoint=True)).fit()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tinylm.Trainer(make_model("lora"), None, train, config(tmp_path / "empty", resume_from_checkpoint=True)).fit()


# ------------------------------------------------------------- checkpoints
def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(data, tmp_path, monkeypatch):
    train, _ = data
    out = tmp_path / "run"
    real = _core.write_safetensors

    def crash_after_first_file(path, *args, **kwargs):
        if "checkpoint-4" in os.fspath(path) and os.path.basename(path) == "optimizer.safetensors":
            raise OSError("simulated crash")  # the adapter file of checkpoint-4 is already written
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_core, "write_safetensors", crash_after_first_file)
    with pytest.raises(OSError, match="simulated crash"):
        tinylm.Trainer(make_model("lora"), None, train, config(out, max_steps=4, save_steps=2)).fit()
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == ["checkpoint-2", "metrics.jsonl"], "no half checkpoint-4 under any name"

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process now
    leftover = out / f"checkpoint-9.tmp-{gone.pid}-0"  # what a killed process would leave
    leftover.mkdir()
    (leftover / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    resumed = make_model("lora", scrambled=True)
    tinylm.Trainer(resumed, None, train, config(out, max_steps=4, save_steps=2, resume_from_checkpoint=True)).fit()
    assert checkpoint_names(out) == ["checkpoint-2", "checkpoint-4"]
    assert [r["step"] for r in records(out)] == [1, 2, 3, 4]


def test_nan_loss_stops_and_leaves_the_last_checkpoint_intact(data, tmp_path):
    train, _ = data
    out = tmp_path / "run"
    model = make_model("lora")
    before = {}

    def poison(m):
        before.update(digest(out / "checkpoint-2"))
        m.param("model.layers.1.mlp.down_proj.lora_B.default.weight")[0, 0] = np.nan

    on_loss_call(model, 7, poison)  # step 4
    with pytest.raises(tinylm.NumericError, match=r"step 4: the training loss is nan .*checkpoint-2, is intact"):
        tinylm.Trainer(model, None, train, config(out, save_steps=2)).fit()
    assert checkpoint_names(out) == ["checkpoint-2"]
    assert digest(out / "checkpoint-2") == before
    assert max(r["step"] for r in records(out)) == 3


def test_full_fine_tuning_checkpoints_are_hugging_face_models(data, tmp_path):
    train, _ = data
    model = make_model("full")
    tinylm.Trainer(model, None, train, config(tmp_path, max_steps=2)).fit()
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-2", dtype=torch.float32)
    for name, tensor in ref.state_dict().items():  # exact: the f32 bits saved
        np.testing.assert_array_equal(model.param(name), tensor.numpy(), err_msg=name)


def test_save_total_limit_and_best_adapter(data, tmp_path):
    train, val = data
    out = tmp_path / "run"
    tinylm.Trainer(make_model("lora"), None, train,
                   config(out, learning_rate=0.05, lr_scheduler_type="constant", warmup_steps=0, max_steps=4,
                          save_steps=1, save_total_limit=2, eval_steps=1), eval_data=val).fit()
    assert checkpoint_names(out) == ["checkpoint-3", "checkpoint-4"]
    evals = {r["step"]: r["eval_loss"] for r in records(out)}
    best = min(evals, key=evals.get)
    assert best == 3, "the best step must not be the last, or best/ could not be told from the last weights"
    with open(out / "checkpoint-4" / "trainer_state.json") as f:
        state = json.load(f)
    assert (state["best_global_step"], state["best_metric"]) == (best, evals[best])
    assert digest(out / "best") == {k: v for k, v in digest(out / "checkpoint-3").items() if k.startswith("adapter")}
    fresh = tinylm.Model.from_config(CONFIG, seed=0)
    fresh.load_adapter(out / "best")  # a PEFT folder
    result = tinylm.Trainer(fresh, None, train, config(tmp_path / "x"), eval_data=val).evaluate()
    assert result["eval_loss"] == approx(evals[best], length=decoder(CONFIG, len(val), 24, lora_r=4).loss)


# -------------------------------------------------------------- evaluation
def test_eval_is_the_token_mean_without_dropout(data, tmp_path):
    train, val = data
    with_dropout = make_model("lora")
    rng = np.random.default_rng(1)
    for name in with_dropout.trainable_names():  # B = 0 would make the adapter a no-op
        with_dropout.param(name)[...] += rng.normal(0, 0.2, with_dropout.param(name).shape)
    twin = tinylm.Model.from_config(CONFIG, seed=0)
    twin.add_lora(r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    for name in twin.trainable_names():
        twin.param(name)[...] = with_dropout.param(name)
    counter = with_dropout._core.rng_counter()
    ours = tinylm.Trainer(with_dropout, None, train, config(tmp_path, eval_batch_size=3), eval_data=val).evaluate()
    assert with_dropout._core.rng_counter() == counter
    every_row = val.rows(range(len(val)))  # one loss over the whole set: the token-weighted mean
    expected = twin.loss(every_row["input_ids"], every_row["labels"], every_row["attention_mask"],
                         every_row["position_ids"])
    # batches of 3 against one batch of every row: the sums grouped
    # differently; a perplexity exp(m) moves by exp(m) times m's error
    length = decoder(CONFIG, len(val), 24, lora_r=4).loss + 2
    assert ours["eval_loss"] == approx(expected, length=length)
    assert ours["eval_ppl"] == approx(np.exp(expected), length=length, scale=np.exp(expected) * expected)


# ------------------------------------------------------- Ctrl-C and output
def test_ctrl_c_finishes_the_step_then_saves(data, tmp_path):
    train, _ = data
    model = make_model("lora")
    on_loss_call(model, 3, lambda m: os.kill(os.getpid(), signal.SIGINT))  # during step 2
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tinylm.Trainer(model, None, train, config(tmp_path, save_steps=None)).fit()
    assert signal.getsignal(signal.SIGINT) is handler
    assert checkpoint_names(tmp_path) == ["checkpoint-2"]
    with open(tmp_path / "checkpoint-2" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 2


def test_metrics_and_loss_curve(data, tmp_path, monkeypatch, capsys):
    train, val = data
    out = tmp_path / "run"
    tinylm.Trainer(make_model("lora"), None, train, config(out, logging_steps=2, eval_steps=3, warmup_steps=0,
                                                           warmup_ratio=0.3), eval_data=val).fit()
    rows = records(out)
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    train_keys = {"step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}
    assert set(rows[0]) == train_keys and set(rows[1]) == {"step", "epoch", "eval_loss", "eval_ppl"}
    assert set(rows[3]) == train_keys | {"eval_loss", "eval_ppl"}
    assert rows[0]["tokens"] < rows[2]["tokens"] < rows[3]["tokens"]
    # warmup_ratio 0.3 of 6 steps = 2 warmup steps, then cosine, as transformers schedules it
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = transformers.get_cosine_schedule_with_warmup(opt, 2, 6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [rows[0]["lr"], rows[2]["lr"], rows[3]["lr"]] == pytest.approx([lrs[1], lrs[3], lrs[5]], rel=1e-12)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    tinylm.Trainer(make_model("lora"), None, train, config(tmp_path / "bare", max_steps=1)).fit()
    assert not (tmp_path / "bare" / "loss_curve.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_constructor_takes_yaml_and_refuses_what_it_cannot_train(data, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\nlearning_rate: 2e-4\n")
    assert tinylm.Trainer(make_model("lora"), None, data.train, path).config.learning_rate == 2e-4
    model = make_model("lora")
    model.unfreeze("lm_head.weight")
    with pytest.raises(tinylm.UnsupportedError, match="lm_head.weight is trainable besides adapter 'default'"):
        tinylm.Trainer(model, None, data.train, config(tmp_path))
