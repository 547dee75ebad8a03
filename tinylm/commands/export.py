"""`tinylm export`: writes a LoRA adapter as a PEFT folder and merged into its
base as a standalone Hugging Face model folder (for transformers, or
llama.cpp's convert_hf_to_gguf.py)."""
from __future__ import annotations

from tinylm.export import export


def register(sub) -> None:
    p = sub.add_parser("export", help="export an adapter (PEFT) and the merged model (Hugging Face)",
                       description=__doc__)
    p.add_argument("--adapter", metavar="DIR", required=True, help="PEFT LoRA adapter folder (tinylm train writes "
                                                                   "OUTPUT/adapter)")
    p.add_argument("--model", metavar="DIR", help="the base model folder (default: the embedded demo model)")
    p.add_argument("--output", metavar="DIR", default="out/export", help="writes DIR/adapter and DIR/merged "
                                                                        "(default: out/export)")
    p.add_argument("--no-merged", dest="merged", action="store_false", help="write the adapter only")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="dtype of the merged weights (default: float32)")
    p.set_defaults(run=run)


def run(args) -> int:
    for kind, path in export(args.adapter, args.output, args.model, merged=args.merged, dtype=args.dtype).items():
        print(f"tinylm export: {kind} -> {path}")
    return 0
