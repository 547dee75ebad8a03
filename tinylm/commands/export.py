"""`tinylm export`: writes a LoRA adapter as a PEFT folder and merged into its
base as a standalone Hugging Face model folder (for transformers), and as
GGUF files for llama.cpp: the merged model in a llama.cpp file type
(--gguf Q4_K_M) and the adapter as llama.cpp's LoRA adapter (--gguf-adapter).
Without --adapter, --gguf converts the base model itself."""
from __future__ import annotations

from tinylm.evaluate.gate import UsageError
from tinylm.export import export
from tinylm.gguf.mixture import FILE_TYPES


def register(sub) -> None:
    p = sub.add_parser("export", help="export an adapter (PEFT, GGUF) and the merged model (Hugging Face, GGUF)",
                       description=__doc__)
    p.add_argument("--adapter", metavar="DIR", help="PEFT LoRA adapter folder (tinylm train writes OUTPUT/adapter)")
    p.add_argument("--model", metavar="PATH", help="the base model folder or .gguf file (default: the embedded "
                                                   "demo model)")
    p.add_argument("--output", metavar="DIR", default="out/export", help="writes DIR/adapter, DIR/merged and the "
                                                                        "GGUF files (default: out/export)")
    p.add_argument("--no-merged", dest="merged", action="store_false", help="no merged Hugging Face folder")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="dtype of the merged weights (default: float32)")
    p.add_argument("--gguf", metavar="TYPE", type=str.upper, choices=tuple(FILE_TYPES),
                   help=f"also write DIR/model-TYPE.gguf (adapter merged in): {', '.join(FILE_TYPES)}")
    p.add_argument("--gguf-adapter", action="store_true", help="also write DIR/adapter.gguf, llama.cpp's LoRA "
                                                              "adapter (--lora)")
    p.add_argument("--output-tensor-type", metavar="TYPE", help="the GGUF head's ggml type (as llama-quantize's "
                                                               "flag), e.g. q6_K")
    p.set_defaults(run=run)


def run(args) -> int:
    if not args.adapter and not args.gguf:
        raise UsageError("tinylm export: give --adapter DIR (and/or --gguf TYPE to write a GGUF file)")
    merged = args.merged and args.adapter is not None
    for kind, path in export(args.adapter, args.output, args.model, merged=merged, dtype=args.dtype,
                             gguf=args.gguf, gguf_adapter=args.gguf_adapter,
                             output_type=args.output_tensor_type).items():
        print(f"tinylm export: {kind} -> {path}")
    return 0
