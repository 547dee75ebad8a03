"""Recipe configs: YAML + key=value overrides checked against a recipe's
defaults; unknown keys name themselves and the closest valid key."""
import pytest

from tinylm.recipe_config import load_config, load_recipe, parse_override, recipe_names, train_defaults

DEFAULTS = {
    "output_dir": "out",
    "model": None,
    "lora": {"r": 16, "alpha": 32.0, "target_modules": "all-linear", "use_rslora": False},
    "data": {"train": "a.jsonl", "seq_len": 128},
    "train": train_defaults(learning_rate=2e-3),
}


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_file_then_overrides_update_the_defaults(tmp_path):
    path = write(tmp_path, "lora:\n  r: 8\ntrain:\n  learning_rate: 1e-4\n  batch_size: 4\n")
    cfg = load_config(path, ["lora.alpha=16", "data.seq_len=64", "train.batch_size=2", "model=some/dir",
                             "lora.target_modules=[q_proj, v_proj]"], DEFAULTS)
    assert cfg["lora"] == {"r": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"], "use_rslora": False}
    assert cfg["data"] == {"train": "a.jsonl", "seq_len": 64}
    assert cfg["train"]["learning_rate"] == 1e-4      # YAML 1.1 reads "1e-4" as a string
    assert cfg["train"]["batch_size"] == 2 and cfg["train"]["num_train_epochs"] == 3.0
    assert cfg["model"] == "some/dir"
    assert DEFAULTS["lora"]["r"] == 16                  # the defaults are not modified


def test_override_values_are_yaml_and_numbers_follow_the_default():
    assert parse_override("lora.alpha=1e3") == ("lora.alpha", "1e3")
    cfg = load_config(None, ["lora.alpha=1e3", "lora.r=4", "model=null", "lora.use_rslora=true"], DEFAULTS)
    assert cfg["lora"]["alpha"] == 1000.0 and cfg["lora"]["r"] == 4 and cfg["model"] is None
    assert cfg["lora"]["use_rslora"] is True
    cfg = load_config(None, ["lora=null"], DEFAULTS)
    assert cfg["lora"] is None


@pytest.mark.parametrize("override, message", [
    ("lora.rr=4", "unknown config key 'lora.rr'; did you mean 'lora.r'?"),
    ("learning_rate=1e-3", "unknown config key 'learning_rate'; did you mean 'train.learning_rate'?"),
    ("trian.max_steps=3", "unknown config key 'trian'; did you mean 'train'?"),
    ("data.seqlen=64", "unknown config key 'data.seqlen'; did you mean 'data.seq_len'?"),
    ("lora.r.x=1", "unknown config key 'lora.r.x'"),
])
def test_unknown_override_keys_suggest_the_closest(override, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace(".", r"\.")):
        load_config(None, [override], DEFAULTS)


def test_unknown_key_in_the_file_names_the_file(tmp_path):
    path = write(tmp_path, "lora:\n  alhpa: 8\n")
    with pytest.raises(ValueError, match=f"{path}: unknown config key 'lora.alhpa'; did you mean 'lora.alpha'"):
        load_config(path, [], DEFAULTS)


@pytest.mark.parametrize("override, message", [
    ("lora.r=four", "lora.r must be a number, got 'four'"),
    ("lora.use_rslora=maybe", "lora.use_rslora must be true or false"),
    ("lora=3", "lora must be a mapping with keys r, alpha"),
    ("novalue", "must look like key=value"),
])
def test_bad_values(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override], DEFAULTS)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), [], DEFAULTS)
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1\n"), [], DEFAULTS)
    assert load_config(write(tmp_path, ""), [], DEFAULTS) == DEFAULTS


def test_every_shipped_config_loads_against_its_recipe():
    import os
    names = recipe_names()
    assert {"pretrain", "lora_finetune", "qlora_finetune", "full_finetune", "eval", "export"} <= set(names)
    for name in names:
        module = load_recipe(name)
        path = os.path.join(os.path.dirname(module.__file__), "configs", f"{name}.yaml")
        cfg = load_config(path, [], module.DEFAULTS)
        assert cfg["output_dir"].startswith("out/"), name


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(ValueError, match="unknown recipe 'lora_fintune'; did you mean 'lora_finetune'"):
        load_recipe("lora_fintune")
