"""Steps the recipes share that are not part of the core API: reading a
text corpus, writing a complete model folder, and the numbers a run reports."""
from __future__ import annotations

import json
import os
import resource
import sys

from tinylm.atomic import atomic_copy, atomic_write_text
from tinylm.trainer.evaluation import evaluate

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# The checkout the package sits in (datasets/, recipes/ and notebooks/ are
# beside tinylm/ there).
REPO = os.path.dirname(_PACKAGE)
# The embedded demo model, shipped inside the package (docs/demo-model.md).
DEMO_MODEL = os.path.join(_PACKAGE, "models", "demo")
# The shipped datasets (smart_home, support_triage): installed as
# tinylm/datasets (pyproject maps it from datasets/), the checkout's
# datasets/ folder in a checkout or an editable install.
DATASETS = next((d for d in (os.path.join(_PACKAGE, "datasets"), os.path.join(REPO, "datasets"))
                 if os.path.isdir(os.path.join(d, "smart_home"))), os.path.join(REPO, "datasets"))
# The tokenizer's files in a model folder (copied from a base to a new model folder).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def shipped_path(path):
    """path itself when it names an existing file (or is not a relative
    path); else a relative "datasets/..." path, as the recipe configs spell
    the shipped data, is looked up in DATASETS, so the defaults work from
    any folder with an installed package. Anything else is returned as is."""
    if not isinstance(path, (str, os.PathLike)) or os.path.isabs(path) or os.path.exists(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if parts[0] == "datasets" and len(parts) > 1 and os.path.exists(os.path.join(DATASETS, *parts[1:])):
        return os.path.join(DATASETS, *parts[1:])
    return path


def corpus_texts(path: str):
    """The "text" field of each line of a JSONL corpus, streamed."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"]


def export_folder(model, path: str, dtype: str = "float32", merged: bool = False) -> None:
    """config.json + model.safetensors (save_pretrained; merged=True folds
    the active adapter in) and the generation_config.json transformers
    reads, next to any tokenizer files already in `path`."""
    model.save_pretrained(path, dtype=dtype, merged=merged)
    config = model.config
    generation = {"bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id"),
                  "pad_token_id": config.get("pad_token_id"), "do_sample": False}
    atomic_write_text(os.path.join(path, "generation_config.json"), json.dumps(generation, indent=2) + "\n")


def copy_tokenizer(base: str, folder: str) -> None:
    """Copies the tokenizer files a base model folder has into folder (each
    atomically)."""
    for name in TOKENIZER_FILES:
        source = os.path.join(base, name)
        if os.path.exists(source):
            atomic_copy(source, os.path.join(folder, name))


def validation_perplexity(model, data, batch_size: int) -> dict:
    """{"loss", "perplexity", "tokens"} of model on a Dataset (every labelled
    token, no dropout)."""
    result = evaluate(model, data, batch_size)
    return {"loss": round(result["eval_loss"], 4), "perplexity": round(result["eval_ppl"], 2),
            "tokens": result["eval_tokens"]}


def sample_generations(model, tok, prompts: list[str], max_new_tokens: int) -> list[dict]:
    """Greedy continuations of each prompt."""
    if not prompts:
        return []
    texts = model.generate(tok, list(prompts), max_new_tokens=max_new_tokens, temperature=0.0)
    return [{"prompt": p, "completion": t} for p, t in zip(prompts, texts)]


def reset_peak_rss() -> None:
    """Starts a new peak-memory window (Linux: resets the process's VmHWM;
    elsewhere peaks are since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """The process's peak resident memory in MiB since reset_peak_rss()."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss    # KiB, but bytes on macOS
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
