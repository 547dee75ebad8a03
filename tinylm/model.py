"""tinylm.Model: a Hugging Face decoder model computed by the C core.

Parameters live in one C block and are exposed as numpy views under their
Hugging Face names. Gradients follow PyTorch's convention: backward() adds to
them, zero_grad() clears them.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import warnings

import numpy as np

from tinylm import _core, atomic, checkpoint, families
from tinylm.adapters import AdapterMixin
from tinylm.batch_inputs import as_ids as _as_ids
from tinylm.config import config_path, read_config
from tinylm.distill.config import DistillConfig
from tinylm.errors import FormatError
from tinylm.generate import GenerationMixin
from tinylm.gguf import file as gguf_file
from tinylm.gguf import load as gguf_load
from tinylm.quant.qat_model import FakeQuantMixin


class Model(AdapterMixin, GenerationMixin, FakeQuantMixin):
    """A causal language model of any family in tinylm.families (Llama,
    Qwen2/3, Gemma 1/2/3, Phi-2, Phi-3, StableLM, SmolLM3).

    >>> model = Model.from_pretrained("path/to/hf_model")
    >>> logits = model.forward([[1, 2, 3]])            # float32 [B, T, V]
    >>> loss = model.loss(ids, labels); model.backward()
    """

    def __init__(self, config: dict, *, source: str = "config", quant: str | None = None):
        self._config = copy.deepcopy(config)
        self.quant = quant
        descriptor = families.descriptor(config, source, quant)
        self._n_layers = descriptor["n_layers"]
        self._norm_offset = descriptor["norm_offset"]
        rope = descriptor["rope"][0]  # generate() re-encodes at the length where LongRoPE switches factors
        self._reencode_at = rope["original_max_position"] + 1 if rope["type"] == families.LONGROPE else None
        try:
            self._core = _core.Model(**descriptor)
        except ValueError as exc:
            # The core's own check of the dimensions (ranges, the parameter
            # count), made before it allocates: a fault of the config.
            if type(exc) is not ValueError:
                raise
            raise FormatError(f"{source}: {exc}") from None
        self._refresh_table()
        self._init_adapters()
        self._init_fake_quant()
        self.last_num_tokens = 0  # labels counted by the last loss()
        self.last_loss_terms = None  # {"ce", "kd"} means of the last distillation loss()
        # loaded from a GGUF file: its path, each tensor's ggml type and general.file_type (tinylm.gguf.load)
        self.gguf_source, self.gguf_types, self.gguf_file_type = None, {}, None
        self.pretrained_path = None  # the folder or .gguf from_pretrained read (its tokenizer, for save_gguf)

    def _refresh_table(self) -> None:
        """Re-reads the core's parameter table (adapters add entries)."""
        self._table = self._core.params()
        self._index = {name: i for i, (name, *_rest) in enumerate(self._table)}

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, quant: str | None = None, *,
                        dequantize: bool = False) -> "Model":
        """Loads a Hugging Face model folder: config.json plus model.safetensors
        or sharded model-0000K-of-0000N.safetensors with their index; weights
        stored F32, BF16 or F16 are held as f32. quant="nf4" (bitsandbytes'
        NF4 with double quantization) or "int8" (per-row absmax) stores the
        q/k/v/o/gate/up/down weights quantized and frozen, for QLoRA;
        embeddings, norms and the LM head stay f32.

        A .gguf file (llama.cpp's format) loads too (docs/gguf.md): a
        quantized one keeps its projection weights as the file's ggml blocks,
        frozen (quant "gguf": train an adapter on it), unless dequantize=True
        (f32, trainable) or quant="nf4"/"int8" asks otherwise."""
        path = os.fspath(path)
        if gguf_file.is_gguf(path):
            return gguf_load.load_model(cls, path, quant=quant, dequantize=dequantize)
        if os.path.isfile(path):
            raise FormatError(f"{path}: not a GGUF file (it does not start with GGUF's magic) and not a model "
                              "folder")
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: not a model folder or GGUF file")
        cfg_file = config_path(path)
        model = cls(read_config(cfg_file), source=cfg_file, quant=quant)
        checkpoint.load_weights(model._core, path)
        model.pretrained_path = os.path.abspath(path)
        return model

    @classmethod
    def from_config(cls, config: dict, seed: int = 0, quant: str | None = None) -> "Model":
        """A model with fresh weights initialised as transformers does: linear
        and embedding weights ~ N(0, initializer_range), biases 0, norms the
        identity (weight 1, or 0 for Gemma's (1 + w) norms)."""
        model = cls(config, quant=quant)
        std = float(config.get("initializer_range", 0.02))
        rng = np.random.default_rng(seed)
        identity = 1.0 - model._norm_offset
        for i, (name, shape, *_) in enumerate(model._table):
            if len(shape) == 2:  # drawn a block of rows at a time: the same stream, without a float64 copy
                value = np.empty(shape, dtype=np.float32)
                step = max(1, (1 << 20) // shape[1])
                for r in range(0, shape[0], step):
                    value[r:r + step] = rng.normal(0.0, std, size=(min(step, shape[0] - r), shape[1]))
            else:  # a 1-D weight is a norm's; the rest are biases
                value = np.full(shape, identity if name.endswith(".weight") else 0.0, dtype=np.float32)
            model._core.set_weight(i, value)
        return model

    def save_pretrained(self, path: str | os.PathLike, dtype: str = "float32", max_shard_size="5GB",
                        merged: bool = False) -> None:
        """Writes config.json and safetensors (sharded past max_shard_size) in
        Hugging Face's layout; adapters are not part of it (save_adapter writes
        them). merged=True writes the base with the active adapter folded in
        (W + scale * B A), leaving this model as it is. With dtype="float32" a
        reload is bit-identical; "bfloat16" and "float16" round to nearest
        even. Every file is written to a temporary name and renamed."""
        path = os.fspath(path)
        fold = merged and not self._core.lora_state()[1]
        if fold and self.active_adapter is None:
            raise ValueError("save_pretrained(merged=True) needs an active adapter")
        if self.quant:
            warnings.warn(f"save_pretrained: the {self.quant} projection weights are written dequantized to {dtype}",
                          stacklevel=2)
        named = [(name, self._merged_param(name) if fold else self.weight(name)) for name in self.base_names()]
        checkpoint.save_weights(named, path, dtype=dtype, max_shard_size=max_shard_size)
        config = copy.deepcopy(self._config)
        for key in ("torch_dtype", "dtype"):
            if key in config:
                config[key] = dtype
        if "torch_dtype" not in config and "dtype" not in config:
            config["torch_dtype"] = dtype
        atomic.atomic_write_text(os.path.join(path, "config.json"),
                                     json.dumps(config, indent=2, sort_keys=True) + "\n")

    def save_gguf(self, path: str | os.PathLike, quant: str | None = None, *, tokenizer=None,
                  output_type: str | None = None, embedding_type: str | None = None, merged: bool = False,
                  name: str | None = None) -> None:
        """Writes a GGUF file llama.cpp runs (docs/gguf.md): metadata and
        tensor names as llama.cpp's converter writes them, the tokenizer, and
        each tensor's ggml type as llama-quantize lays out the file type
        `quant` ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0", "Q4_K_M",
        "Q6_K", ... tinylm.gguf.mixture.FILE_TYPES), quantized by llama.cpp's
        reference quantizers. quant=None keeps the types of the GGUF file
        the model came from (its blocks unchanged). output_type /
        embedding_type override the head's and the embedding's types, as
        llama-quantize's --output-tensor-type / --token-embedding-type
        (quant="Q8_0", output_type="Q6_K": Q8_0 with a Q6_K head). merged
        folds the active adapter in. tokenizer: a tinylm.Tokenizer; by default
        the one beside the weights the model was loaded from. Written to a
        temporary name and renamed."""
        from tinylm.gguf import export

        path = os.fspath(path)
        if merged and self.active_adapter is None:
            raise ValueError("save_gguf(merged=True) needs an active adapter")
        if tokenizer is None and self.gguf_source and os.path.isfile(self.gguf_source):
            with gguf_file.GGUFFile(self.gguf_source) as f:
                tok_meta = [(k, v, f.types[k]) for k, v in f.metadata.items() if k.startswith("tokenizer.")]
        else:
            if tokenizer is None:
                if not self.pretrained_path:
                    raise ValueError("save_gguf: pass tokenizer= (this model was not loaded from a folder or file "
                                     "that has one)")
                from tinylm.tokenizer import Tokenizer
                tokenizer = Tokenizer.from_pretrained(self.pretrained_path)
            from tinylm.gguf import tokenizer as gguf_tokenizer
            tok_meta = list(gguf_tokenizer.tokenizer_metadata(tokenizer, vocab_size=self._config.get("vocab_size"))
                            .items())
        export.save_model(self, path, quant, tok_meta, output_type=output_type, embedding_type=embedding_type,
                          merged=merged, name=name)

    # ------------------------------------------------------------ parameters
    @property
    def config(self) -> dict:
        """The Hugging Face config (a copy; field names as in config.json)."""
        return copy.deepcopy(self._config)

    def parameter_names(self) -> list[str]:
        return [name for name, *_ in self._table]

    def base_names(self) -> list[str]:
        """Parameters of the base model (the Hugging Face checkpoint's tensors)."""
        return [name for name in self.parameter_names() if ".lora_" not in name]

    def param(self, name: str) -> np.ndarray:
        """A writable float32 view of one parameter (TypeError for a quantized
        one: use weight())."""
        return np.asarray(self._core.param(self._lookup(name)))

    def weight(self, name: str) -> np.ndarray:
        """A float32 copy of one parameter, dequantized if stored quantized."""
        i = self._lookup(name)
        out = np.empty(self._table[i][1], dtype=np.float32)
        self._core.get_weight(i, out)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: float32 array}: views sharing memory with the model, and
        dequantized copies of quantized weights."""
        return {name: self.weight(name) if quantized else self.param(name)
                for name, _, _, _, quantized, _ in self._table}

    def fingerprint(self) -> str:
        """A hash of the configuration, the storage and every parameter
        (adapters included, as they are now): what an offline teacher cache
        records of the teacher that made it."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self._config, self.quant], sort_keys=True, default=str).encode())
        for name, _, _, _, quantized, _ in self._table:
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.weight(name) if quantized else self.param(name)).tobytes())
        return h.hexdigest()

    def load_state_dict(self, tensors: dict, strict: bool = True) -> None:
        """Copies arrays into the parameters (shapes must match)."""
        if strict:
            missing = [n for n in self.parameter_names() if n not in tensors]
            unexpected = [n for n in tensors if n not in self._index]
            if missing or unexpected:
                raise KeyError(f"load_state_dict: missing {missing[:3]}, unexpected {unexpected[:3]}")
        for name, value in tensors.items():
            if name not in self._index:
                continue
            i = self._index[name]
            src = np.ascontiguousarray(value, dtype=np.float32)
            if src.shape != tuple(self._table[i][1]):
                raise ValueError(f"{name}: shape {list(src.shape)} does not match {list(self._table[i][1])}")
            self._core.set_weight(i, src)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(int(np.prod(shape)) for _, shape, trainable, *_ in self._core.params()
                   if trainable or not trainable_only)

    def parameter_bytes(self) -> int:
        """Bytes the parameters take as stored (quantized weights count packed)."""
        return sum(self._core.param_bytes(i) for i in range(len(self._table)))

    def _lookup(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a parameter of this model") from None

    # ---------------------------------------------------------- trainability
    def _match(self, patterns) -> list[int]:
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        hits = []
        for pattern in patterns:
            found = [i for name, i in self._index.items() if fnmatch.fnmatchcase(name, pattern)]
            if not found:
                raise KeyError(f"pattern {pattern!r} matches no parameter")
            hits += found
        return hits

    def freeze(self, patterns="*") -> None:
        """Freezes parameters whose names match the glob pattern(s): they get
        no gradient and no optimizer state."""
        for i in self._match(patterns):
            self._core.set_trainable(i, False)

    def unfreeze(self, patterns="*") -> None:
        for i in self._match(patterns):
            self._core.set_trainable(i, True)

    def trainable_names(self) -> list[str]:
        return [name for name, _, trainable, *_ in self._core.params() if trainable]

    # ------------------------------------------------------------- compute
    def train(self, mode: bool = True) -> "Model":
        """Training mode (the default): loss() applies LoRA dropout. Returns
        the model, as torch's Module.train() does."""
        self._core.training(bool(mode))
        return self

    def eval(self) -> "Model":
        """Evaluation mode: loss() runs without dropout and draws no masks."""
        return self.train(False)

    @property
    def training(self) -> bool:
        return self._core.training()

    @property
    def rng_counter(self) -> int:
        """The counter that keys dropout masks (each training loss() advances
        it); saving and restoring it reproduces a run's masks exactly."""
        return self._core.rng_counter()

    @rng_counter.setter
    def rng_counter(self, value: int) -> None:
        self._core.rng_counter(int(value))

    def gradient_checkpointing_enable(self) -> None:
        """Training keeps only each layer's input and recomputes the layer in
        backward: activation memory drops to about one layer's worth plus
        [L, B, T, D], for roughly a third more compute."""
        self._core.checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self._core.checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self._core.checkpointing()

    def forward(self, input_ids, attention_mask=None, position_ids=None) -> np.ndarray:
        """Logits, float32 [B, T, V]. attention_mask [B, T] of 0/1 masks keys;
        position_ids default to 0..T-1 per row, as transformers does."""
        ids = _as_ids(input_ids, "input_ids")
        mask = None if attention_mask is None else _as_ids(attention_mask, "attention_mask", ids.shape)
        pos = None if position_ids is None else _as_ids(position_ids, "position_ids", ids.shape)
        B, T = ids.shape
        logits = np.empty((B, T, self._config["vocab_size"]), dtype=np.float32)
        self._core.forward(ids, mask, pos, B, T, logits)
        return logits

    def loss(self, input_ids, labels, attention_mask=None, position_ids=None, *, teacher=None, teacher_topk=None,
             distill=None) -> float:
        """Mean cross-entropy of logits[:, t] against labels[:, t+1] over labels
        != -100 (Hugging Face's shift). Keeps what backward() needs.

        With a teacher (a tinylm.Model sharing the tokenizer, run forward
        only on the same inputs) or teacher_topk (ids, log-probs[, their
        temperature]) of shape [B, T, k] aligned with the logits (an offline
        cache), the loss is distillation's (1 - kd_ratio) * CE + kd_ratio * KD
        as `distill` (a tinylm.distill.DistillConfig) says; last_loss_terms
        then holds the two means."""
        ids = _as_ids(input_ids, "input_ids")
        labs = _as_ids(labels, "labels", ids.shape)
        mask = None if attention_mask is None else _as_ids(attention_mask, "attention_mask", ids.shape)
        pos = None if position_ids is None else _as_ids(position_ids, "position_ids", ids.shape)
        if teacher is None and teacher_topk is None:
            value, self.last_num_tokens = self._core.loss(ids, labs, mask, pos, *ids.shape)
            self.last_loss_terms = None
            return value
        cfg = distill if distill is not None else DistillConfig()
        if teacher is not None and teacher_topk is not None:
            raise ValueError("give a teacher model or teacher_topk, not both")
        topk_ids = topk_logp = None
        k, topk_temperature = 0, 1.0
        if teacher_topk is not None:
            topk_ids, topk_logp, *rest = teacher_topk
            topk_temperature = float(rest[0]) if rest else 1.0
            topk_ids = np.ascontiguousarray(topk_ids, dtype=np.int32)
            topk_logp = np.ascontiguousarray(topk_logp, dtype=np.float32)
            if topk_ids.ndim != 3 or topk_ids.shape[:2] != ids.shape or topk_logp.shape != topk_ids.shape:
                raise ValueError(f"teacher_topk must be ids and log-probs of shape [batch, seq_len, k] = "
                                 f"{list(ids.shape)} + [k], got {list(topk_ids.shape)} and {list(topk_logp.shape)}")
            k = topk_ids.shape[2]
        value, self.last_num_tokens, ce, kd = self._core.loss_distill(
            teacher._core if teacher is not None else None, topk_ids, topk_logp, k, topk_temperature,
            cfg.core_args(), ids, labs, mask, pos, *ids.shape)
        self.last_loss_terms = {"ce": ce, "kd": kd}
        return value

    def backward(self, scale: float = 1.0) -> None:
        """Adds scale * d(last loss)/d(param) to every trainable parameter's
        gradient (call zero_grad() between steps, as in PyTorch)."""
        self._core.backward(float(scale))

    def zero_grad(self) -> None:
        self._core.zero_grad()

    def grads(self) -> dict[str, np.ndarray]:
        """{name: copy of the gradient} for trainable parameters that have one.
        Copies, because freezing re-plans (frees) the gradient block."""
        out = {}
        for name, i in self._index.items():
            grad = self._core.grad(i)
            if grad is not None:
                out[name] = np.array(grad)
        return out
