"""GGUF, llama.cpp's model file: arch.py maps its metadata and tensor names
to a Hugging Face config.json and parameter names and back (archs/ holds one
table per family); tokenizer.py does the same for the vocabulary."""
