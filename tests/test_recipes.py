"""Every shipped recipe runs for a couple of steps through `tinylm run` with its
shipped config, and the everyday commands (train, export) work and explain
themselves."""
import argparse
import json
import os

import numpy as np
import pytest

import tinylm
from tinylm import cli
from tinylm.recipe_config import recipe_dir, recipe_names
from tolerance import assert_close, decoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = os.path.join(REPO, "datasets", "smart_home")


def head(src, dst, n):
    with open(src) as f:
        lines = f.readlines()[:n]
    with open(dst, "w") as f:
        f.writelines(lines)
    return str(dst)


@pytest.fixture(scope="module")
def small_task(tmp_path_factory):
    """16 training, 8 validation and 4 golden smart_home examples."""
    d = tmp_path_factory.mktemp("task")
    return {"train": head(os.path.join(TASK, "train.jsonl"), d / "train.jsonl", 16),
            "validation": head(os.path.join(TASK, "validation.jsonl"), d / "validation.jsonl", 8),
            "golden": head(os.path.join(TASK, "golden.jsonl"), d / "golden.jsonl", 4)}


QUICK = ["train.max_steps=2", "train.batch_size=4", "train.disable_tqdm=true"]


def run(*argv):
    return cli.main(["run", *argv])


def finetune_args(name, out, task):
    return [name, "--config", os.path.join(recipe_dir(), "configs", f"{name}.yaml"), f"output_dir={out}",
            f"data.train={task['train']}", f"data.validation={task['validation']}", *QUICK]


def test_pretrain_recipe(tmp_path, small_task):
    corpus = tmp_path / "corpus.jsonl"
    with open(small_task["train"]) as f, open(corpus, "w") as out:
        for i, line in enumerate(f):
            row = json.loads(line)
            out.write(json.dumps({"text": row["prompt"] + row["completion"], "source": "ab"[i % 2]}) + "\n")
    model_dir = tmp_path / "model"
    assert run("pretrain", f"output_dir={tmp_path / 'run'}", f"export.dir={model_dir}", f"corpus.train={corpus}",
               f"corpus.validation={corpus}", "tokenizer.vocab_size=300", "model.hidden_size=32",
               "model.intermediate_size=64", "model.num_hidden_layers=1", "model.num_attention_heads=2",
               "model.num_key_value_heads=1", "data.seq_len=64", "samples.max_new_tokens=4", *QUICK) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["steps"] == 2 and report["validation"]["perplexity"] > 1
    assert set(report["validation_by_source"]) == {"a", "b"}
    assert len(report["samples"]) == 3 and all(isinstance(s["completion"], str) for s in report["samples"])
    assert sorted(os.listdir(model_dir)) == ["config.json", "generation_config.json", "model.safetensors",
                                             "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["vocab_size"] == 300 and config["torch_dtype"] == "bfloat16"
    tinylm.Model.from_pretrained(model_dir)


@pytest.mark.parametrize("name, output", [("lora_finetune", "adapter"), ("qlora_finetune", "adapter"),
                                          ("full_finetune", "model")])
def test_finetune_recipes(name, output, tmp_path, small_task):
    assert run(*finetune_args(name, tmp_path, small_task)) == 0
    assert os.path.exists(tmp_path / output / ("adapter_model.safetensors" if output == "adapter"
                                               else "model.safetensors"))
    assert os.path.exists(tmp_path / "train" / "metrics.jsonl") and os.path.exists(tmp_path / "config.yaml")
    if output == "model":
        assert tinylm.Tokenizer.from_pretrained(tmp_path / "model").encode("hi")


@pytest.mark.parametrize("config, output", [("qat_finetune", "adapter"), ("qat_full_finetune", "model")])
def test_qat_recipe_ships_the_gguf_it_trained_for(config, output, tmp_path, small_task):
    """The recipe ends with output_dir/model.gguf, every projection Q4_0 (the
    adapter merged in), which tinylm loads and runs on its blocks."""
    from tinylm.gguf.file import GGUFFile
    from tinylm.gguf import ggml
    args = finetune_args("qat_finetune", tmp_path, small_task)
    args[2] = os.path.join(recipe_dir(), "configs", f"{config}.yaml")
    assert run(*args, "train.qat.fake_quant_after_n_steps=1") == 0
    assert os.path.isdir(tmp_path / output)
    with GGUFFile(tmp_path / "model.gguf") as f:
        types = {name: info.ggml_type for name, info in f.tensors.items()}
    projections = [n for n in types if (".attn_" in n or ".ffn_" in n) and "norm" not in n]
    assert len(projections) == 7 * tinylm.Model.from_pretrained(tinylm.DEMO_MODEL).config["num_hidden_layers"]
    assert {types[n] for n in projections} == {ggml.by_name("q4_0").id}
    shipped = tinylm.Model.from_pretrained(tmp_path / "model.gguf")
    assert np.isfinite(shipped.forward([[1, 2, 3]])).all()


def test_train_command_qat(tmp_path, small_task):
    assert cli.main(["train", "--data", small_task["train"], "--output", str(tmp_path), "--qat", "Q8_0",
                     "--qat-after", "1", "--max-steps", "2", "--batch-size", "4", "--seq-len", "64"]) == 0
    assert (tmp_path / "model.gguf").exists() and (tmp_path / "adapter").exists()
    assert cli.main(["train", "--qat-after", "1", "--output", str(tmp_path / "x")]) == 2


def test_eval_and_export_recipes(tmp_path, small_task):
    assert run(*finetune_args("lora_finetune", tmp_path / "lora", small_task)) == 0
    adapter = tmp_path / "lora" / "adapter"
    assert run("eval", f"output_dir={tmp_path / 'eval'}", f"golden=[{small_task['golden']}]",
               f"adapter={adapter}", "max_new_tokens=8") == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["totals"]["cases"] == 4
    assert (tmp_path / "eval" / "junit.xml").exists() and (tmp_path / "eval" / "report.md").exists()
    # The gate: the base model answers none of them, so min_score=0.5 fails the run.
    assert run("eval", f"output_dir={tmp_path / 'eval2'}", f"golden=[{small_task['golden']}]",
               "max_new_tokens=8", "min_score=0.5") == 1

    assert run("export", f"output_dir={tmp_path / 'export'}", f"adapter={adapter}") == 0
    merged = tinylm.Model.from_pretrained(tmp_path / "export" / "merged")
    tuned = tinylm.Model.from_pretrained(tinylm.DEMO_MODEL)
    tuned.load_adapter(tmp_path / "export" / "adapter")
    ids = [[5, 17, 99, 300, 41]]
    ours = tuned.forward(ids)
    # merging rounds W + s B A (a sum over r, a product and a sum); the rest is the forward in another order
    r = tuned.adapter_config().r
    length = decoder(tuned.config, 1, len(ids[0]), lora_r=r).forward + r + 2
    assert_close(merged.forward(ids), ours, length=length, what="merged")

    # Their real consumers: transformers for the merged folder, PEFT for the adapter.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    hf_merged = AutoModelForCausalLM.from_pretrained(tmp_path / "export" / "merged", dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tinylm.DEMO_MODEL, dtype=torch.float32)
    hf_tuned = PeftModel.from_pretrained(base, tmp_path / "export" / "adapter")
    with torch.no_grad():
        for hf in (hf_merged, hf_tuned):
            assert_close(hf(torch.tensor(ids)).logits.numpy(), ours, length=length, what=type(hf).__name__)


def test_unknown_keys_and_recipes_are_usage_errors(capsys):
    assert run("lora_finetune", "lora.rank=8") == 2
    assert "unknown config key 'lora.rank'; did you mean 'lora.r'?" in capsys.readouterr().err
    assert run("lora_finetune", "learning_rate=1e-3") == 2
    assert "did you mean 'train.learning_rate'?" in capsys.readouterr().err
    assert run("pretrian") == 2
    assert "unknown recipe 'pretrian'; did you mean 'pretrain'?" in capsys.readouterr().err


def test_train_and_export_commands(tmp_path, small_task):
    out = tmp_path / "mine"
    assert cli.main(["train", "--data", small_task["train"], "--validation", small_task["validation"], "--output",
                     str(out), "--max-steps", "2", "--batch-size", "4", "--lora-r", "4", "--lr", "1e-3",
                     "train.disable_tqdm=true"]) == 0
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4
    resolved = (out / "config.yaml").read_text()
    assert "learning_rate: 0.001" in resolved and "max_steps: 2" in resolved
    assert cli.main(["export", "--adapter", str(out / "adapter"), "--output", str(tmp_path / "export"),
                     "--no-merged"]) == 0
    assert sorted(os.listdir(tmp_path / "export")) == ["adapter"]


def _parsers(parser, path=("tinylm",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_help_is_complete():
    parsers = dict(_parsers(cli.build_parser()))
    assert {("tinylm", c) for c in ("train", "eval", "generate", "export", "demo", "run")} <= set(parsers)
    for command in ("train", "export", "demo", "run"):
        parser = parsers[("tinylm", command)]
        assert parser.description, command
        for action in parser._actions:
            assert action.help, f"tinylm {command}: {action.dest} has no help"
    text = parsers[("tinylm", "run")].format_help()
    assert all(name in text for name in recipe_names())


def test_shipped_datasets_found_from_any_folder(tmp_path, monkeypatch):
    """The configs' relative "datasets/..." paths name the shipped data
    (package data in an installed wheel), so `tinylm train` with the defaults
    works outside a checkout; an existing file or another path is kept."""
    from tinylm.recipe_support import DATASETS, shipped_path
    monkeypatch.chdir(tmp_path)
    found = shipped_path("datasets/smart_home/train.jsonl")
    assert found == os.path.join(DATASETS, "smart_home", "train.jsonl") and os.path.isfile(found)
    assert shipped_path("datasets/nope.jsonl") == "datasets/nope.jsonl"
    assert shipped_path("mine.jsonl") == "mine.jsonl" and shipped_path(0.1) == 0.1 and shipped_path(None) is None
    (tmp_path / "datasets" / "smart_home").mkdir(parents=True)
    (tmp_path / "datasets" / "smart_home" / "train.jsonl").write_text("{}\n")
    assert shipped_path("datasets/smart_home/train.jsonl") == "datasets/smart_home/train.jsonl"


def test_train_without_validation(tmp_path, small_task, capsys):
    """`tinylm train ... data.validation=null` trains and says there was no
    validation (it used to fail formatting the missing eval loss)."""
    assert cli.main(["train", "--data", small_task["train"], "--output", str(tmp_path / "t"), "--max-steps", "1",
                     "--batch-size", "4", "data.validation=null", "train.disable_tqdm=true"]) == 0
    assert "no validation" in capsys.readouterr().out
    assert (tmp_path / "t" / "adapter" / "adapter_model.safetensors").exists()


def test_distill_recipe_online_and_from_a_cache(tmp_path, small_task):
    """`tinylm distill train` with a teacher model, then with the cache
    `tinylm distill cache` made from the same data options."""
    from tinylm.recipe_support import DEMO_MODEL
    base = ["--config", os.path.join(recipe_dir(), "configs", "distill.yaml"), f"data.train={small_task['train']}",
            f"data.validation={small_task['validation']}", *QUICK]
    assert cli.main(["distill", "train", *base, f"output_dir={tmp_path / 'online'}", f"teacher.model={DEMO_MODEL}",
                     "train.distill.kd_ratio=0.5"]) == 0
    assert "teacher:\n  model: " + DEMO_MODEL in (tmp_path / "online" / "config.yaml").read_text()
    assert os.path.exists(tmp_path / "online" / "model" / "model.safetensors")
    cache = tmp_path / "cache.h5"
    assert cli.main(["distill", "cache", "--teacher", DEMO_MODEL, "--data", small_task["train"],
                     "--validation", small_task["validation"], "--top-k", "8", "--output", str(cache)]) == 0
    assert cli.main(["distill", "train", *base, f"output_dir={tmp_path / 'offline'}", f"teacher.cache={cache}"]) == 0
    assert os.path.exists(tmp_path / "offline" / "model" / "model.safetensors")
    # a cache for other data options is refused by name, before any training
    assert cli.main(["distill", "train", *base, f"output_dir={tmp_path / 'bad'}", f"teacher.cache={cache}",
                     "data.seq_len=64"]) == 2
    assert not os.path.exists(tmp_path / "bad" / "model")
