"""Pretrains a small Llama model from scratch, tokenizer included: the recipe
that made tinylm's embedded demo model (tinylm/models/demo).

    python recipes/pretrain.py --config recipes/configs/pretrain.yaml [key=value ...]
    tinylm run pretrain [key=value ...]

1. the corpus (datasets/corpus/make_corpus.py, if its files are missing);
2. a byte-level BPE tokenizer trained on the train split;
3. a randomly initialised LlamaForCausalLM (model.*, seed) trained with the
   Trainer on packed rows (train.*), evaluated on the held-out chapters;
4. the Hugging Face folder written to export.dir (weights in export.dtype;
   the folder appears whole or not at all), and report.json in output_dir: validation perplexity of the exported
   weights (overall and per "source" of the corpus) and greedy sample
   generations.
"""
import json
import os
import subprocess
import sys

import tinylm
from tinylm.atomic import atomic_write_text, write_folder
from tinylm.data import load_dataset
from tinylm.recipe_config import dump, run_recipe, train_defaults
from tinylm.recipe_support import (REPO, copy_tokenizer, corpus_texts, export_folder, sample_generations,
                                   validation_perplexity)
from tinylm.tokenizer_train import save_tokenizer, train_bpe

DEFAULTS = {
    "output_dir": "out/pretrain",
    "seed": 0,
    "threads": None,
    "corpus": {
        "train": "datasets/corpus/data/train.jsonl",
        "validation": "datasets/corpus/data/validation.jsonl",
    },
    "tokenizer": {"vocab_size": 4096, "min_frequency": 2},
    # Hugging Face LlamaConfig fields; vocab_size and the special token ids
    # come from the tokenizer.
    "model": {
        "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "initializer_range": 0.02,
    },
    "data": {"seq_len": 256, "packing": True},
    "train": train_defaults(learning_rate=2e-3, lr_scheduler_type="cosine", warmup_ratio=0.03, batch_size=16,
                            num_train_epochs=1.5, weight_decay=0.1, adam_beta2=0.95, eval_steps=500, save_steps=500,
                            save_total_limit=2, logging_steps=10),
    "export": {"dir": "out/pretrain/model", "dtype": "bfloat16"},
    "samples": {"prompts": ["It is a truth universally acknowledged", "Emma Woodhouse, handsome, clever,",
                            "The :mod:`json` module"],
                "max_new_tokens": 48},
}


def main(cfg: dict) -> dict:
    """Pretrains a small Llama model and its tokenizer from scratch."""
    if cfg["threads"]:
        tinylm.set_num_threads(cfg["threads"])
    out = cfg["output_dir"]
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "config.yaml"), dump(cfg))
    corpus = cfg["corpus"]
    if not all(os.path.exists(p) for p in corpus.values()):
        script = os.path.join(REPO, "datasets", "corpus", "make_corpus.py")
        subprocess.run([sys.executable, script, "--out", os.path.dirname(corpus["train"])], check=True)

    # The tokenizer waits in out/tokenizer; export.dir appears, whole, once
    # the model is trained.
    export_dir, tokenizer_dir = cfg["export"]["dir"], os.path.join(out, "tokenizer")
    vocab, merges = train_bpe(corpus_texts(corpus["train"]), cfg["tokenizer"]["vocab_size"],
                              min_frequency=cfg["tokenizer"]["min_frequency"])
    save_tokenizer(tokenizer_dir, vocab, merges, model_max_length=cfg["model"]["max_position_embeddings"])
    tok = tinylm.Tokenizer.from_pretrained(tokenizer_dir)

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "attention_bias": False, "mlp_bias": False, "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
              "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, **cfg["model"]}
    model = tinylm.Model.from_config(config, seed=cfg["seed"])
    print(f"pretrain: {model.num_parameters() / 1e6:.2f}M parameters, vocabulary {len(tok)}")
    train, val = load_dataset(corpus["train"], tok, format="text", seq_len=cfg["data"]["seq_len"],
                              packing=cfg["data"]["packing"], validation=corpus["validation"], seed=cfg["seed"])
    print(f"pretrain: {train.stats.tokens} train tokens in {train.stats.rows} rows, "
          f"{val.stats.tokens} validation tokens")
    train_cfg = dict(cfg["train"], output_dir=os.path.join(out, "train"), seed=cfg["seed"])
    result = tinylm.Trainer(model, tok, train, train_cfg, eval_data=val).fit()

    def fill(folder):
        copy_tokenizer(tokenizer_dir, folder)
        export_folder(model, folder, dtype=cfg["export"]["dtype"])

    write_folder(export_dir, fill)
    exported = tinylm.Model.from_pretrained(export_dir)
    batch = cfg["train"]["batch_size"]

    def perplexity_of(path):
        data = load_dataset(path, tok, format="text", seq_len=cfg["data"]["seq_len"], packing=cfg["data"]["packing"])
        return validation_perplexity(exported, data.train, batch)

    by_source = {name: perplexity_of(path) for name, path in split_by_source(corpus["validation"], out).items()}
    report = {
        "parameters": model.num_parameters(),
        "train_tokens_per_epoch": train.stats.tokens,
        "steps": result.global_step,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "validation": validation_perplexity(exported, val, batch),
        "validation_by_source": by_source,
        "samples": sample_generations(exported, tok, cfg["samples"]["prompts"], cfg["samples"]["max_new_tokens"]),
    }
    atomic_write_text(os.path.join(out, "report.json"), json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def split_by_source(path: str, out: str) -> dict[str, str]:
    """The documents of a JSONL corpus grouped by their "source" field, one
    file per source in out (none when the corpus has no such field)."""
    groups = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "source" in row:
                groups.setdefault(row["source"], []).append(line)
    paths = {}
    for name, lines in groups.items():
        paths[name] = os.path.join(out, f"validation-{name}.jsonl")
        atomic_write_text(paths[name], "".join(lines))
    return paths


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
