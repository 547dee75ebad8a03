"""LoRA adapters on a tinylm.Model, in PEFT's terms and file format.

The math (forward, backward, merge) is in C; this module resolves PEFT's
target rules (names, regex, "all-linear", layers_to_transform, rank_pattern,
alpha_pattern, exclude_modules) into per-projection ranks and scales, and
reads and writes PEFT's adapter_config.json + adapter_model.safetensors.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from tinylm import _core, atomic, checkpoint
from tinylm.errors import FormatError, UnsupportedError

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


@dataclass
class LoraConfig:
    """PEFT's LoraConfig fields that tinylm implements (same names)."""
    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list | str | None = None
    use_rslora: bool = False
    layers_to_transform: list | int | None = None
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    exclude_modules: list | str | None = None
    base_model_name_or_path: str | None = None
    seed: int = 0  # tinylm's: A's initialisation and the dropout masks; not part of PEFT's file

    def to_peft(self, targets: list[str]) -> dict:
        """adapter_config.json as PEFT writes it."""
        return {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.r, "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout, "target_modules": sorted(targets), "bias": "none",
            "use_rslora": self.use_rslora, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None,
            "init_lora_weights": True, "layers_to_transform": self.layers_to_transform, "layers_pattern": None,
            "rank_pattern": self.rank_pattern, "alpha_pattern": self.alpha_pattern,
            "exclude_modules": self.exclude_modules, "base_model_name_or_path": self.base_model_name_or_path,
            "inference_mode": True, "revision": None,
        }

    @classmethod
    def from_peft(cls, cfg: dict, source: str) -> "LoraConfig":
        """Reads a PEFT adapter_config.json, refusing what tinylm does not compute."""
        if cfg.get("peft_type", "LORA") != "LORA":
            raise UnsupportedError(f"{source}: peft_type {cfg.get('peft_type')!r} is not supported (only LORA)")
        if cfg.get("task_type") not in (None, "CAUSAL_LM"):
            raise UnsupportedError(f"{source}: task_type {cfg.get('task_type')!r} is not supported (only CAUSAL_LM)")
        refused = {"use_dora": False, "fan_in_fan_out": False, "bias": "none", "modules_to_save": None,
                   "layers_pattern": None, "target_parameters": None, "trainable_token_indices": None,
                   "lora_bias": False, "layer_replication": None}
        for key, ok in refused.items():
            value = cfg.get(key, ok)
            if value not in (ok, [], {}, "") and not (key == "layers_pattern" and value in ("layers", ["layers"])):
                raise UnsupportedError(f"{source}: {key}={value!r} is not supported")
        for key in ("r", "lora_alpha"):
            if key not in cfg:
                raise FormatError(f"{source}: missing field \"{key}\"")
        return cls(r=int(cfg["r"]), lora_alpha=float(cfg["lora_alpha"]),
                   lora_dropout=float(cfg.get("lora_dropout") or 0.0), target_modules=cfg.get("target_modules"),
                   use_rslora=bool(cfg.get("use_rslora", False)), layers_to_transform=cfg.get("layers_to_transform"),
                   rank_pattern=dict(cfg.get("rank_pattern") or {}), alpha_pattern=dict(cfg.get("alpha_pattern") or {}),
                   exclude_modules=cfg.get("exclude_modules"),
                   base_model_name_or_path=cfg.get("base_model_name_or_path"))


def module_names(projections: list[str], n_layers: int) -> list[str]:
    """The adaptable modules (a layer's projections, as the model reports
    them), in the core's [L * P] order."""
    return [f"model.layers.{l}.{proj}" for l in range(n_layers) for proj in projections]


def _matches(spec, key: str) -> bool:
    """PEFT's rule: a string is a regex matched against the whole module name;
    a list matches a module equal to an entry or ending in "." + entry."""
    if isinstance(spec, str):
        return re.fullmatch(spec, key) is not None
    return key in spec or any(key.endswith(f".{t}") for t in spec)


def _pattern_value(patterns: dict, key: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first pattern p with
    re.match(rf"(.*\\.)?({p})$", key)."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", key):
            return value
    return default


def resolve(config: LoraConfig, projections: list[str], n_layers: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-module ranks (int64) and scales (float32) in the core's order, and
    the matched target names as PEFT records them (module suffixes).
    projections: a layer's projection modules (e.g. "self_attn.q_proj")."""
    targets = config.target_modules
    short = [p.rsplit(".", 1)[1] for p in projections]
    if targets is None:
        raise ValueError("target_modules is required (e.g. [\"q_proj\", \"v_proj\"] or \"all-linear\")")
    if isinstance(targets, str) and targets.lower() == "all-linear":
        targets = short  # PEFT: every linear layer but the output head
    elif isinstance(targets, (list, tuple, set)):
        targets = list(targets)
    elif not isinstance(targets, str):
        raise ValueError(f"target_modules must be a list of names or a regex string, got {targets!r}")
    layers = config.layers_to_transform
    if isinstance(config.target_modules, str) and layers is not None:
        raise ValueError("layers_to_transform cannot be used when target_modules is a string (as in PEFT)")
    layers = None if layers is None else {layers} if isinstance(layers, int) else set(layers)
    if config.use_rslora and (config.rank_pattern or config.alpha_pattern):
        raise ValueError("use_rslora cannot be combined with rank_pattern or alpha_pattern (as in PEFT)")
    names = module_names(projections, n_layers)
    ranks = np.zeros(len(names), dtype=np.int64)
    scales = np.zeros(len(names), dtype=np.float32)
    matched = set()
    for i, key in enumerate(names):
        if config.exclude_modules and _matches(config.exclude_modules, key):
            continue
        if not _matches(targets, key) or (layers is not None and i // len(projections) not in layers):
            continue
        r = int(_pattern_value(config.rank_pattern, key, config.r))
        alpha = float(_pattern_value(config.alpha_pattern, key, config.lora_alpha))
        if r <= 0:
            raise ValueError(f"LoRA rank for {key} must be > 0, got {r}")
        ranks[i] = r
        scales[i] = alpha / math.sqrt(r) if config.use_rslora else alpha / r
        matched.add(key.rsplit(".", 1)[1])
    if not matched:
        raise ValueError(f"target_modules {config.target_modules!r} match no module of this model; "
                         f"adaptable modules are {', '.join(short)}")
    if isinstance(targets, list):
        unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
        if unknown:
            raise ValueError(f"target_modules {unknown} are not modules of this model; "
                             f"adaptable modules are {', '.join(short)}")
    return ranks, scales, sorted(matched)


class AdapterMixin:
    """LoRA methods of tinylm.Model (PEFT semantics: adding the first adapter
    freezes the base; only the active adapter trains)."""

    def _init_adapters(self):
        self._adapters: dict[str, tuple[int, LoraConfig, list[str]]] = {}  # name -> (core id, config, targets)
        # a layer's projections as the core reports them: module -> (index, in, out)
        self._projections = {module: (p, n_in, n_out) for p, (module, n_in, n_out)
                             in enumerate(self._core.projections())}

    def _resolve(self, config: LoraConfig):
        return resolve(config, list(self._projections), self._n_layers)

    def add_lora(self, r: int = 16, alpha: float = 32, dropout: float = 0.0, target_modules="all-linear",
                 name: str = "default", use_rslora: bool = False, seed: int = 0, **peft_options) -> None:
        """Adds a LoRA adapter as PEFT's get_peft_model / add_adapter would:
        A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0,
        scale alpha / r (alpha / sqrt(r) with use_rslora). Extra PEFT options:
        layers_to_transform, rank_pattern, alpha_pattern, exclude_modules.
        The first adapter becomes active; later ones are added inactive."""
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                            use_rslora=use_rslora, seed=seed, **peft_options)
        self._add_adapter(name, config)
        rng = np.random.default_rng(seed)
        for pname in self._adapter_param_names(name):
            if ".lora_A." in pname:
                param = self.param(pname)
                bound = 1.0 / math.sqrt(param.shape[1])
                param[...] = rng.uniform(-bound, bound, size=param.shape).astype(np.float32)

    def _add_adapter(self, name: str, config: LoraConfig) -> None:
        ranks, scales, targets = self._resolve(config)
        adapter_id = self._core.lora_add(name, ranks, scales, float(config.lora_dropout), int(config.seed))
        self._refresh_table()
        self._adapters[name] = (adapter_id, config, targets)
        if len(self._adapters) == 1:
            self.set_adapter(name)
        else:
            self._mark_trainable(self.active_adapter)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def adapter_config(self, name: str | None = None) -> LoraConfig:
        """A copy of an adapter's LoraConfig (default: the active one)."""
        name = name or self.active_adapter
        if name not in self._adapters:
            raise KeyError(f"no adapter named {name!r}; have {self.adapters}")
        return dataclasses.replace(self._adapters[name][1])

    @property
    def active_adapter(self) -> str | None:
        active, _ = self._core.lora_state()
        return next((n for n, (i, *_) in self._adapters.items() if i == active), None)

    def set_adapter(self, name: str) -> None:
        """Makes `name` the adapter used by compute and the only trainable one."""
        if name not in self._adapters:
            raise KeyError(f"no adapter named {name!r}; have {self.adapters}")
        self._core.lora_set_active(self._adapters[name][0])
        self._mark_trainable(name)

    def adapter_pairs(self, name: str | None = None) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
        """[(base weight name, A [r, in], B [out, r], scale)] of every module
        the adapter adapts, in layer order (copies)."""
        name = name or self.active_adapter
        if name not in self._adapters:
            raise KeyError(f"no adapter named {name!r}; have {self.adapters}")
        ranks, scales, _ = self._resolve(self._adapters[name][1])
        pairs = []
        for i, module in enumerate(module_names(list(self._projections), self._n_layers)):
            if ranks[i]:
                a = self.param(f"{module}.lora_A.{name}.weight").copy()
                b = self.param(f"{module}.lora_B.{name}.weight").copy()
                pairs.append((f"{module}.weight", a, b, float(scales[i])))
        return pairs

    def _adapter_param_names(self, name: str) -> list[str]:
        return [n for n in self.parameter_names() if f".lora_A.{name}." in n or f".lora_B.{name}." in n]

    def _mark_trainable(self, name: str | None) -> None:
        own = set(self._adapter_param_names(name)) if name else set()
        for i, pname in enumerate(self.parameter_names()):
            self._core.set_trainable(i, pname in own)

    @contextlib.contextmanager
    def disable_adapter(self):
        """Runs the base model alone inside the block (as PEFT's context manager)."""
        active, merged = self._core.lora_state()
        if merged:
            raise RuntimeError("disable_adapter() with a merged adapter: unmerge it first")
        self._core.lora_set_active(-1)
        try:
            yield self
        finally:
            self._core.lora_set_active(active)

    def merge_adapter(self) -> dict | None:
        """Folds the active adapter into the base weights: W += scale * B A.
        On a quantized base the merged weight is requantized, which loses
        precision: the relative RMS error of each requantized weight is
        returned ({module: error}) and the worst one is warned about."""
        if not self.quant or self.active_adapter is None:
            self._core.lora_merge()
            return None
        exact = {name: self._merged_param(name) for name in self._adapted_weights()}
        self._core.lora_merge()
        errors = {name: float(np.linalg.norm(self.weight(name) - w) / max(np.linalg.norm(w), 1e-30))
                  for name, w in exact.items()}
        worst = max(errors, key=errors.get)
        warnings.warn(f"merge_adapter: requantizing to {self.quant} changed the merged weights by up to "
                      f"{errors[worst]:.2%} (relative RMS, {worst})", stacklevel=2)
        return errors

    def _adapted_weights(self) -> list[str]:
        """Base weight names the active adapter adapts."""
        tag = f".lora_A.{self.active_adapter}.weight"
        return [n.replace(tag, ".weight") for n in self.parameter_names() if n.endswith(tag)]

    def unmerge_adapter(self) -> None:
        self._core.lora_unmerge()

    def _merged_param(self, name: str) -> np.ndarray:
        """A base weight with the active adapter folded in (a copy)."""
        match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", name)
        if not match or match.group(2) not in self._projections:
            return self.weight(name)
        out = np.empty(self._table[self._index[name]][1], dtype=np.float32)
        self._core.lora_merged_weight(int(match.group(1)), self._projections[match.group(2)][0], out)
        return out

    # ------------------------------------------------------------- PEFT files
    def save_adapter(self, path: str | os.PathLike, name: str | None = None, format: str = "peft") -> None:
        """Writes PEFT's adapter_config.json and adapter_model.safetensors
        (keys base_model.model.<module>.lora_A.weight, A [r, in], B [out, r]).
        Each file is written to a temporary name and renamed, the config last
        (as PEFT does), so a crash leaves the previous files or the new ones;
        other files in the folder are left alone.

        format="gguf" writes `path` as llama.cpp's GGUF LoRA adapter instead
        (llama-cli --lora; tinylm.gguf.export.save_adapter), unmerged."""
        name = name or self.active_adapter
        if name not in self._adapters:
            raise KeyError(f"no adapter named {name!r}; have {self.adapters}")
        if format == "gguf":
            from tinylm.gguf import export as gguf_export
            gguf_export.save_adapter(self, os.fspath(path), name)
            return
        if format != "peft":
            raise ValueError(f"format must be \"peft\" or \"gguf\", got {format!r}")
        _, config, targets = self._adapters[name]
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        tag = f".{name}."
        entries = [(PEFT_PREFIX + pname.replace(tag, "."), "F32", self.param(pname).shape,
                    np.ascontiguousarray(self.param(pname))) for pname in self._adapter_param_names(name)]
        checkpoint.write_safetensors(os.path.join(path, WEIGHTS_NAME), entries, {"format": "pt"})
        cfg = config.to_peft(targets)
        if cfg["base_model_name_or_path"] is None:
            cfg["base_model_name_or_path"] = self._config.get("_name_or_path") or None
        atomic.atomic_write_text(os.path.join(path, CONFIG_NAME), json.dumps(cfg, indent=2) + "\n")

    def load_adapter(self, path: str | os.PathLike, name: str | None = None, seed: int = 0) -> str:
        """Reads a PEFT LoRA adapter folder (written by PEFT or tinylm) as a new
        adapter; refuses one whose modules or shapes do not fit this base.
        Returns its name (default: "default", or the folder name if taken)."""
        path = os.fspath(path)
        cfg_path, weights = os.path.join(path, CONFIG_NAME), os.path.join(path, WEIGHTS_NAME)
        for f in (cfg_path, weights):
            if not os.path.exists(f):
                raise FileNotFoundError(f"{f}: no such file (a PEFT adapter folder needs {CONFIG_NAME} and "
                                        f"{WEIGHTS_NAME})")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                raw = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"{cfg_path}: not valid JSON: {exc}") from None
        config = LoraConfig.from_peft(raw, cfg_path)
        config.seed = seed
        if name is None:
            name = "default" if "default" not in self._adapters else os.path.basename(os.path.normpath(path))
        ranks, _, _ = self._resolve(config)
        with _core.SafetensorsFile(weights) as st:
            sources = self._match_adapter_file(st, ranks, weights)  # checked before anything is created
            self._add_adapter(name, config)
            tag = f".{name}."
            for pname in self._adapter_param_names(name):
                st.read_into(sources[PEFT_PREFIX + pname.replace(tag, ".")], self.param(pname))
        return name

    def _match_adapter_file(self, st, ranks, weights) -> dict[str, str]:
        """{PEFT key: tensor name in the file} for every A and B the config
        implies, checking presence, shape and dtype, and that nothing is left."""
        tensors = {n: (dtype, tuple(shape)) for n, dtype, shape in st.tensors()}
        sources = {}
        layer_modules = list(self._projections)
        for i, module in enumerate(module_names(layer_modules, self._n_layers)):
            if not ranks[i]:
                continue
            _, n_in, n_out = self._projections[layer_modules[i % len(layer_modules)]]
            for kind, shape in (("lora_A", (int(ranks[i]), n_in)), ("lora_B", (n_out, int(ranks[i])))):
                key = f"{PEFT_PREFIX}{module}.{kind}.weight"
                found = next((k for k in tensors if k == key or re.fullmatch(
                    re.escape(f"{PEFT_PREFIX}{module}.{kind}.") + r"[^.]+\.weight", k)), None)
                if found is None:
                    raise FormatError(f"{weights}: tensor \"{key}\" is missing (the adapter config targets it)")
                dtype, file_shape = tensors.pop(found)
                if file_shape != shape:
                    raise FormatError(f"{weights}: tensor \"{found}\" has shape {list(file_shape)} but this base "
                                      f"model needs {list(shape)}")
                if dtype not in checkpoint.FLOAT_DTYPES:
                    raise FormatError(f"{weights}: tensor \"{found}\" has dtype {dtype}")
                sources[key] = found
        if tensors:
            raise FormatError(f"{weights}: tensor \"{next(iter(tensors))}\" matches no LoRA module of this "
                              f"base model under the adapter's config")
        return sources
