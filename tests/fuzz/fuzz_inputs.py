"""Coverage-guided fuzzing (atheris) of tinylm's Python readers of files.

    python tests/fuzz/fuzz_inputs.py TARGET [libFuzzer flags] [corpus dirs]

TARGET is one of TARGETS below. Each feeds the mutated bytes to one public
entry point as the file it reads, and checks the one property every reader
promises: the input loads, or raises an allowed exception (tinylm's
FormatError / UnsupportedError, or FileNotFoundError for a file the input
names but that is absent) whose message names the file. Anything else (a
KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError, a
jinja2 error, a segfault) is a finding: atheris stops and saves the input.
Seeds are made from real files at start (seed_corpus), so the run needs
only the repository; `make fuzz` / `make test-fuzz` run every target.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["tinylm"]):
    import tinylm
    from tinylm.evaluate.golden import check_output, load_golden

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEMO = os.path.join(ROOT, "tinylm", "models", "demo")
ALLOWED = (tinylm.FormatError, tinylm.UnsupportedError)
# libFuzzer ends the process with exit(), past any cleanup of ours: the
# Makefile points TMPDIR at a folder it removes afterwards.
SCRATCH = tempfile.mkdtemp(prefix="tlm-pyfuzz-")
# The part of an input after this line is a second file (messages for the
# chat template target).
SEPARATOR = b"\n\x01--\x01\n"


def write(name: str, data: bytes) -> str:
    path = os.path.join(SCRATCH, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expect(fn, path: str) -> None:
    """Runs fn; an allowed exception must name the file (or, for a file
    inside a model folder, the folder or another file in it, as when the
    config disagrees with the checkpoint)."""
    try:
        fn()
    except ALLOWED as exc:
        if path not in str(exc) and os.path.dirname(path) not in str(exc):
            raise AssertionError(f"{type(exc).__name__} does not name {path}: {exc}") from exc


# ------------------------------------------------------------------ targets

TINY = os.path.join(SCRATCH, "tiny-model")


def _tiny_model() -> None:
    """A small real checkpoint (written by tinylm) whose config.json the
    config target replaces, so a config that agrees with it loads."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 16,
              "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}
    tinylm.Model.from_config(config).save_pretrained(TINY)


# config.json fields of each family (tinylm/families/), for the config target's seeds
_TYPES = ["sliding_attention", "full_attention"]
FAMILY_SEEDS = {
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 8, "use_sliding_window": True,
              "sliding_window": 4, "max_window_layers": 1},
    "gemma": {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "head_dim": 8, "hidden_act": "gelu"},
    "gemma2": {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "query_pre_attn_scalar": 8,
               "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4,
               "layer_types": _TYPES},
    "gemma3": {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "sliding_window": 4,
               "layer_types": _TYPES, "rope_parameters": {
                   "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                   "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}},
    "gemma3_old": {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "sliding_window": 4,
                   "rope_local_base_freq": 10000.0, "sliding_window_pattern": 2, "rope_scaling": None},
    "phi": {"architectures": ["PhiForCausalLM"], "model_type": "phi", "partial_rotary_factor": 0.5,
            "qk_layernorm": True, "resid_pdrop": 0.1, "hidden_act": "gelu_new"},
    "phi3": {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "max_position_embeddings": 64,
             "original_max_position_embeddings": 16, "sliding_window": 8,
             "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0, 1.5],
                                 "long_factor": [2.0, 4.0]}},
    "stablelm": {"architectures": ["StableLmForCausalLM"], "model_type": "stablelm", "partial_rotary_factor": 0.25,
                 "qk_layernorm": True, "use_parallel_residual": True, "use_qkv_bias": True},
    "smollm3": {"architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "no_rope_layers": [1, 0]},
}


def fuzz_config(data: bytes) -> None:
    path = write("tiny-model/config.json", data)
    expect(lambda: tinylm.Model.from_pretrained(TINY), path)


def fuzz_jsonl(data: bytes) -> None:
    path = write("data.jsonl", data)
    cache = os.path.join(SCRATCH, "cache")

    def load():
        splits = tinylm.data.load_dataset(path, TOKENIZER, seq_len=32, cache_dir=cache, in_memory=True)
        for batch in splits.train.batches(2, epochs=1):
            pass
    expect(load, path)
    shutil.rmtree(cache, ignore_errors=True)


def fuzz_golden(data: bytes) -> None:
    path = write("golden.jsonl", data)

    def load():
        for case in load_golden(path):
            for output in ("42", "", '{"a": 1}', "Paris", "B"):
                check_output(case, output)
    expect(load, path)


def fuzz_chat_template(data: bytes) -> None:
    """tokenizer_config.json (its chat_template and special tokens) and,
    after SEPARATOR, the messages as JSON: the demo tokenizer renders them."""
    config, _, messages = data.partition(SEPARATOR)
    folder = os.path.join(SCRATCH, "chat")
    path = write("chat/tokenizer_config.json", config)

    def render():
        tok = tinylm.Tokenizer.from_pretrained(folder)
        template = tok.chat_template
        # no template, or named ones without "default": a documented ValueError
        # asking the caller to pass chat_template=, not a fault of the file
        if template is None or (isinstance(template, dict) and "default" not in template):
            return
        try:
            conversation = json.loads(messages)
        except (ValueError, RecursionError):
            conversation = [{"role": "user", "content": "Hi"}]
        if isinstance(conversation, list) and all(isinstance(m, dict) for m in conversation) and conversation:
            tok.apply_chat_template(conversation, add_generation_prompt=True)
    expect(render, path)


def fuzz_tokenizer(data: bytes) -> None:
    folder = os.path.join(SCRATCH, "tok")
    path = write("tok/tokenizer.json", data)

    def load():
        tok = tinylm.Tokenizer.from_pretrained(folder)
        ids = tok.encode("Hello world, naïve café 東京 <s></s>")
        tok.decode(ids)
        tok.decode(list(range(min(len(tok), 300))))
        [tok.id_to_token(i) for i in range(min(len(tok), 300))]
        tok.special_tokens_map
    expect(load, path)


def fuzz_gguf(data: bytes) -> None:
    """A .gguf file to Model.from_pretrained (metadata -> config, the tensor
    plan, block storage), then one forward pass of what loads."""
    path = write("model.gguf", data)

    def load():
        model = tinylm.Model.from_pretrained(path)
        model.forward([[0, 1, 2]])
    expect(load, path)


TARGETS = {"config": fuzz_config, "jsonl": fuzz_jsonl, "golden": fuzz_golden,
           "chat_template": fuzz_chat_template, "tokenizer": fuzz_tokenizer, "gguf": fuzz_gguf}


# -------------------------------------------------------------------- seeds

def seed_corpus(target: str, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)

    def put(name: str, data: bytes | str) -> None:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)

    if target == "config":
        with open(os.path.join(TINY, "config.json"), "rb") as f:
            tiny = f.read()
        put("tiny", tiny)
        with open(os.path.join(DEMO, "config.json"), "rb") as f:
            put("demo", f.read())
        # every family's spellings on the tiny dimensions (tinylm/families/): the
        # names then disagree with the checkpoint, but the descriptor is read first
        base = json.loads(tiny)
        for name, extra in FAMILY_SEEDS.items():
            put(name, json.dumps({**base, **extra}))
    elif target == "jsonl":
        put("text", "\n".join(json.dumps({"text": t}) for t in ("Hello world.", "Tiny models fine-tune.")) + "\n")
        put("prompt", json.dumps({"prompt": "2+2=", "completion": " 4"}) + "\n")
        put("alpaca", json.dumps({"instruction": "Add", "input": "2 2", "output": "4"}) + "\n")
        put("chat", json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello!"}]}) + "\n")
    elif target == "golden":
        for name in os.listdir(os.path.join(ROOT, "datasets")):
            golden = os.path.join(ROOT, "datasets", name, "golden.jsonl")
            if os.path.isfile(golden):
                with open(golden, "rb") as f:
                    put(name, b"".join(f.readlines()[:8]))
    elif target == "chat_template":
        with open(os.path.join(DEMO, "tokenizer_config.json"), "rb") as f:
            config = f.read()
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
        put("demo", config + SEPARATOR + json.dumps(messages).encode())
    elif target == "tokenizer":
        with open(os.path.join(DEMO, "tokenizer.json"), encoding="utf-8") as f:
            tok = json.load(f)
        tok["model"]["vocab"] = {s: i for s, i in tok["model"]["vocab"].items() if i < 400}
        vocab = tok["model"]["vocab"]
        tok["model"]["merges"] = [m for m in tok["model"]["merges"]
                                  if all(p in vocab for p in (*(m.split(" ") if isinstance(m, str) else m),
                                                              "".join(m.split(" ") if isinstance(m, str) else m)))]
        put("demo-small", json.dumps(tok, ensure_ascii=False))
    elif target == "gguf":
        from tinylm.gguf import export
        tiny = tinylm.Model.from_pretrained(TINY)
        base = tiny.config
        for name, extra in {"llama": {}, **FAMILY_SEEDS}.items():
            config = {**base, **extra}
            try:
                model = tinylm.Model.from_config(config)
            except ALLOWED:
                continue
            for quant in ("F32", "Q8_0"):
                out = os.path.join(SCRATCH, f"seed-{name}-{quant}.gguf")
                try:
                    export.save_model(model, out, quant, [])
                except ALLOWED:  # a config a GGUF cannot hold (phi's q/k LayerNorms)
                    continue
                with open(out, "rb") as f:
                    put(f"{name}-{quant}", f.read())


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else ""
    if target not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    os.makedirs(os.path.join(SCRATCH, "tiny-model"), exist_ok=True)
    for sub in ("chat", "tok"):
        os.makedirs(os.path.join(SCRATCH, sub), exist_ok=True)
    _tiny_model()
    shutil.copy(os.path.join(DEMO, "tokenizer.json"), os.path.join(SCRATCH, "chat", "tokenizer.json"))
    global TOKENIZER
    TOKENIZER = tinylm.Tokenizer.from_pretrained(DEMO)
    args = sys.argv[2:]
    inputs = [a for a in args if not a.startswith("-")]
    if all(os.path.isdir(a) for a in inputs):   # fuzzing, not replaying saved inputs: add the seeds
        seeds = os.path.join(SCRATCH, "seeds")
        seed_corpus(target, seeds)
        args.append(seeds)
    atheris.Setup([sys.argv[0]] + args, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
