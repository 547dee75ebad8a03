"""llama.cpp's GGUF format, in and out.

- file: the container (metadata, tensor infos, bytes), over the C reader and
  writer (csrc/io/gguf.c, gguf_write.c).
- ggml: ggml's tensor types and their block codecs (csrc/quant/ggml_*.c).
- arch (with plan, archs/ one table per family, llama3_rope): GGUF metadata and
  tensor names <-> the Hugging Face configuration and parameter names
  (llama.cpp's converter undone and redone).
- tokenizer: tokenizer.ggml.* <-> tinylm's tokenizer.
- mixture: which ggml type each tensor of an exported file gets.
- load / export: tinylm.Model from and to a .gguf file, LoRA adapters included.
"""
