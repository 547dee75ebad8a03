"""What several commands share: loading the model, adapter and tokenizer
named on the command line."""
from __future__ import annotations

import os

import tinylm
from tinylm.evaluate.gate import UsageError

# The model `--model` defaults to: a small model shipped inside the package.
DEMO_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "demo")


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", metavar="PATH", default=None,
                        help="Hugging Face model folder (config.json, safetensors, tokenizer.json) or a .gguf "
                             "file; default: the embedded demo model")
    parser.add_argument("--adapter", metavar="DIR", help="PEFT LoRA adapter folder to apply")
    parser.add_argument("--quant", choices=("nf4", "int8"), help="quantize the base weights on load")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use)")


def load_model(args):
    """(model, tokenizer, model folder) from --model/--adapter/--quant/--threads."""
    path = args.model or DEMO_MODEL_DIR
    if not os.path.exists(path):
        if args.model is None:
            raise UsageError(f"the embedded demo model is not installed (expected at {path}); "
                             "pass --model PATH to use a model folder or .gguf file")
        raise FileNotFoundError(f"{path}: no such model folder or file")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        tinylm.set_num_threads(args.threads)
    model = tinylm.Model.from_pretrained(path, quant=args.quant)
    tok = tinylm.Tokenizer.from_pretrained(path)
    if args.adapter:
        model.load_adapter(args.adapter)
    return model, tok, path
