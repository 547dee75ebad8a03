"""TrainConfig (dict / YAML, errors) and the learning-rate schedules against
transformers' own schedulers."""
import pytest
import torch
import transformers

import tinylm
from tinylm.trainer.schedule import lr_factor, warmup_steps


def _transformers_lrs(kind, warmup, total):
    """The learning-rate multiplier before each of total + 2 updates, as a
    transformers scheduler on a torch optimizer yields it."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    kwargs = {} if kind == "constant" else {"num_warmup_steps": warmup}
    if kind in ("linear", "cosine"):
        kwargs["num_training_steps"] = total
    sched = transformers.get_scheduler(kind, opt, **kwargs)
    out = []
    for _ in range(total + 2):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant_with_warmup", "constant"])
@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 10), (4, 4), (5, 37)])
def test_schedules_equal_transformers(kind, warmup, total):
    if kind == "constant":
        warmup = 0
    ours = [lr_factor(kind, step, warmup, total) for step in range(total + 2)]
    assert ours == pytest.approx(_transformers_lrs(kind, warmup, total), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("ratio,total", [(0.1, 95), (0.25, 8), (0.03, 1000)])
def test_warmup_ratio_equals_transformers(ratio, total, tmp_path):
    # transformers 5 spells a ratio as a warmup_steps below 1
    args = transformers.TrainingArguments(output_dir=str(tmp_path), warmup_steps=ratio, report_to=[])
    assert warmup_steps(0, ratio, total) == args.get_warmup_steps(total)
    assert warmup_steps(7, 0.0, total) == 7


def test_yaml_config(tmp_path):
    path = tmp_path / "train.yaml"
    # 1e-4 without a dot is a string to PyYAML: it must still be read as a number
    path.write_text("output_dir: out\nlearning_rate: 1e-4\nbatch_size: 4\nmax_grad_norm: null\n"
                    "lr_scheduler_type: cosine\nwarmup_ratio: 0.1\nmax_steps: 20\n")
    cfg = tinylm.TrainConfig.from_yaml(path)
    assert cfg.learning_rate == 1e-4 and cfg.batch_size == 4 and cfg.max_grad_norm is None
    assert cfg.lr_scheduler_type == "cosine" and cfg.warmup_ratio == 0.1 and cfg.max_steps == 20
    assert cfg.adam_beta2 == 0.999  # defaults are transformers' TrainingArguments defaults


@pytest.mark.parametrize("key,hint", [
    ("learning_rte", "did you mean 'learning_rate'?"),
    ("gradient_accumulation", "did you mean 'gradient_accumulation_steps'?"),
    ("per_device_train_batch_size", "tinylm calls it 'batch_size'"),
])
def test_unknown_yaml_key_names_it_and_suggests(tmp_path, key, hint):
    path = tmp_path / "bad.yaml"
    path.write_text(f"output_dir: out\n{key}: 3\n")
    with pytest.raises(ValueError) as err:
        tinylm.TrainConfig.from_yaml(path)
    assert str(path) in str(err.value) and repr(key) in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize("values,message", [
    ({"batch_size": "eight"}, "TrainConfig.batch_size must be int"),
    ({"warmup_steps": 2.5}, "TrainConfig.warmup_steps must be int"),
    ({"learning_rate": -1.0}, "learning_rate=-1.0: must be >= 0"),
    ({"lr_scheduler_type": "cosin"}, "must be one of linear, cosine"),
    ({"lr_scheduler_type": "constant", "warmup_steps": 5}, "use \"constant_with_warmup\""),
    ({"warmup_steps": 5, "warmup_ratio": 0.1}, "not both"),
    ({"max_steps": 0}, "max_steps=0"),
    ({"save_total_limit": 0}, "save_total_limit=0"),
])
def test_invalid_values_are_named(values, message):
    with pytest.raises((ValueError, TypeError)) as err:
        tinylm.TrainConfig.from_dict({"output_dir": "out", **values})
    assert message in str(err.value)


def test_output_dir_is_required():
    with pytest.raises(ValueError, match="output_dir is required"):
        tinylm.TrainConfig.from_dict({"learning_rate": 1e-3})
