"""Supervised fine-tuning from a config: LoRA, QLoRA (LoRA on an NF4 or int8
base) or full, optionally distilled from a teacher (a `teacher` section:
DISTILL_DEFAULTS) and quantization-aware (train.qat: QAT_DEFAULTS). The
lora_finetune, qlora_finetune, full_finetune, distill and qat_finetune
recipes and `tinylm train` are this function with different settings.

    result = finetune(load_config("recipes/configs/lora_finetune.yaml", [], FINETUNE_DEFAULTS))

Outputs in output_dir: train/ (the Trainer's checkpoints, metrics.jsonl,
loss_curve.png), then adapter/ (PEFT) for LoRA, or model/ (a Hugging Face
folder with the tokenizer) for full fine-tuning, model.gguf after QAT for a
GGUF file type (the quantized model trained, adapter merged), and
config.yaml (the resolved config). adapter/ and model/ appear whole or not at all (built
under a temporary name and renamed).
"""
from __future__ import annotations

import os
import time

import tinylm
from tinylm.atomic import atomic_write_text, write_folder
from tinylm.data import load_dataset
from tinylm.distill import DistillConfig, TeacherCache
from tinylm.quant.config import QATConfig
from tinylm.recipe_config import dump, train_defaults
from tinylm.recipe_support import DEMO_MODEL, copy_tokenizer, export_folder, peak_rss_mb, shipped_path

FINETUNE_DEFAULTS = {
    "output_dir": "out/finetune",
    "seed": 0,
    "threads": None,
    "model": None,          # a Hugging Face model folder; None: the embedded demo model
    "quant": None,          # "nf4" or "int8": the frozen base is stored quantized (QLoRA)
    # LoRA settings (PEFT's names: r, alpha = lora_alpha, dropout = lora_dropout);
    # lora: null fine-tunes every weight instead.
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear", "use_rslora": False},
    "data": {
        "train": "datasets/smart_home/train.jsonl",
        "validation": "datasets/smart_home/validation.jsonl",
        "format": None,     # detected from the first record
        "seq_len": 128,
        "packing": False,
        "train_on_prompt": False,
    },
    "train": train_defaults(learning_rate=2e-3, lr_scheduler_type="cosine", warmup_ratio=0.05, batch_size=16,
                            num_train_epochs=2.0, save_steps=None, logging_steps=5),
}

# Distillation adds the teacher: a model folder (online, or on-policy with
# train.distill.lmbda > 0), with its own adapter and storage, or an offline
# cache that `tinylm distill cache` made from the same data; and the loss,
# train.distill (tinylm.distill.DistillConfig's fields).
DISTILL_DEFAULTS = dict(
    FINETUNE_DEFAULTS, output_dir="out/distill",
    teacher={"model": None, "adapter": None, "quant": None, "cache": None},
    train=dict(FINETUNE_DEFAULTS["train"], distill=DistillConfig().to_dict()))

# Quantization-aware training: train.qat (tinylm.quant.config.QATConfig's
# fields); train.distill is the self-distillation loss when qat.self_distill.
QAT_DEFAULTS = dict(
    FINETUNE_DEFAULTS, output_dir="out/qat",
    train=dict(FINETUNE_DEFAULTS["train"], qat=QATConfig().to_dict(), distill=None))
GGUF_NAME = "model.gguf"


def load_base(cfg: dict):
    """(model, tokenizer, folder) for cfg["model"] (the demo model when None)
    with cfg["quant"]."""
    folder = cfg["model"] or DEMO_MODEL  # a model folder or a .gguf file
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{folder}: no such model folder or file")
    return tinylm.Model.from_pretrained(folder, quant=cfg["quant"]), tinylm.Tokenizer.from_pretrained(folder), folder


def load_teacher(section: dict | None):
    """(teacher, its tokenizer or None) for a teacher section: a
    TeacherCache when it names a cache, else the model folder with its
    adapter and storage; (None, None) without one."""
    if not section or not (section.get("model") or section.get("cache")):
        return None, None
    if section.get("cache"):
        if section.get("model"):
            raise ValueError("teacher: give a model folder (online) or a cache (offline), not both")
        return TeacherCache(section["cache"]), None
    folder = section["model"]
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{folder}: no such teacher model folder or file")
    teacher = tinylm.Model.from_pretrained(folder, quant=section.get("quant"))
    if section.get("adapter"):
        teacher.load_adapter(section["adapter"])
    return teacher, tinylm.Tokenizer.from_pretrained(folder)


def finetune(cfg: dict) -> dict:
    """Fine-tunes as cfg says (see FINETUNE_DEFAULTS) and returns what it
    wrote and measured: {"output": folder, "gguf" (the QAT file or None), "kind", "steps", "train_loss",
    "eval_loss", "train_runtime_s", "tokens_per_s", "peak_rss_mb", "trainable"}."""
    if cfg["threads"]:
        tinylm.set_num_threads(cfg["threads"])
    if cfg["quant"] and not cfg["lora"]:
        raise ValueError(f"quant={cfg['quant']!r} needs a LoRA adapter: a quantized base cannot be fine-tuned "
                         f"fully (set lora, or quant: null)")
    out = cfg["output_dir"]
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "config.yaml"), dump(cfg))
    model, tok, base = load_base(cfg)
    lora = cfg["lora"]
    if lora:
        model.add_lora(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                       target_modules=lora["target_modules"], use_rslora=lora["use_rslora"], seed=cfg["seed"])
    data = cfg["data"]
    train, val = load_dataset(shipped_path(data["train"]), tok, format=data["format"], seq_len=data["seq_len"],
                              packing=data["packing"], train_on_prompt=data["train_on_prompt"],
                              validation=shipped_path(data["validation"]), seed=cfg["seed"])
    teacher, teacher_tok = load_teacher(cfg.get("teacher"))
    train_cfg = dict(cfg["train"], output_dir=os.path.join(out, "train"), seed=cfg["seed"])
    qat = QATConfig(**train_cfg["qat"]) if train_cfg.get("qat") else None
    if teacher is None and not (qat and qat.self_distill):
        train_cfg["distill"] = None
    trainer = tinylm.Trainer(model, tok, train, train_cfg, eval_data=val, teacher=teacher, teacher_tok=teacher_tok)
    start = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        if isinstance(teacher, TeacherCache):
            teacher.close()
    runtime = time.perf_counter() - start
    if lora:
        target = os.path.join(out, "adapter")
        write_folder(target, model.save_adapter)
    else:
        target = os.path.join(out, "model")

        def fill(folder):
            export_folder(model, folder)
            copy_tokenizer(base, folder)

        write_folder(target, fill)
    gguf = None
    if qat and qat.file_type:  # the file the training was for
        gguf = os.path.join(out, GGUF_NAME)
        model.save_gguf(gguf, qat.file_type, tokenizer=tok, merged=bool(lora))
    last_eval = next((r["eval_loss"] for r in reversed(trainer.metrics.read()) if "eval_loss" in r), None)
    return {"output": target, "gguf": gguf, "kind": "lora" if lora else "full", "base": base,
            "steps": result.global_step,
            "train_loss": result.training_loss, "eval_loss": last_eval, "train_runtime_s": runtime,
            "tokens_per_s": trainer.state.num_input_tokens_seen / runtime, "peak_rss_mb": peak_rss_mb(),
            "trainable": model.num_parameters(trainable_only=True)}
