"""Recipe configs: a YAML file plus `key=value` command-line overrides
(torchtune's convention), checked against the recipe's defaults.

    cfg = load_config("recipes/configs/lora_finetune.yaml", ["train.learning_rate=1e-3", "lora.r=8"], DEFAULTS)

A recipe's DEFAULTS is a nested dict that names every valid key. The file
and the overrides may only use those keys: an unknown one is a ValueError
that names it and suggests the closest valid key (a bare `learning_rate`
is answered with `train.learning_rate`). A default of None accepts any
value; a mapping default accepts only its own keys.
Override values are read as YAML (`lora.target_modules=[q_proj,v_proj]`,
`quant=null`), and numeric strings become numbers where the default is a
number, because YAML 1.1 reads `1e-4` as a string.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import importlib.util
import os

import yaml

from tinylm.trainer.config import TrainConfig


def train_defaults(**changes) -> dict:
    """TrainConfig's fields and defaults as a config section (output_dir is
    filled in by the recipe from its own output_dir)."""
    out = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out["output_dir"] = None
    out.update(changes)
    return out


def load_config(path: str | os.PathLike | None, overrides: list[str], defaults: dict) -> dict:
    """defaults, updated by the YAML file at path (if any), then by the overrides."""
    values = {}
    if path is not None:
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            try:
                values = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a recipe config must be a YAML mapping, got {type(values).__name__}")
    where = path or "config"
    config = merge(defaults, values, defaults, where)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(config, key, value, defaults, f"override {item!r}")
    return config


def parse_override(item: str) -> tuple[str, object]:
    if "=" not in item or item.startswith("="):
        raise ValueError(f"override {item!r} must look like key=value (e.g. train.learning_rate=1e-4)")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def merge(base: dict, update: dict, defaults: dict, where: str, prefix: str = "") -> dict:
    """A copy of base (the section of defaults at `prefix`) with update's
    keys set, each checked against defaults."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        set_dotted(out, str(key), value, defaults, where, prefix)
    return out


def set_dotted(config: dict, key: str, value, defaults: dict, where: str, prefix: str = "") -> None:
    """config[a][b] = value for key "a.b"; config is the section of defaults
    at `prefix` (the root when empty)."""
    spec = defaults
    for part in filter(None, prefix.split(".")):
        spec = spec[part]
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts):
        name = prefix + ".".join(parts[:depth + 1])
        if not isinstance(spec, dict) or part not in spec:
            raise ValueError(f"{where}: unknown config key {name!r}{suggest(name, defaults)}")
        if depth == len(parts) - 1:
            node[part] = _checked(value, spec[part], name, defaults, where)
            return
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node, spec = node[part], spec[part]


def _checked(value, default, name: str, defaults: dict, where: str):
    if isinstance(default, dict):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {name} must be a mapping with keys {', '.join(default)}; got {value!r}")
        return merge(default, value, defaults, where, prefix=f"{name}.")
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return float(value) if isinstance(default, float) else int(value)
        except ValueError:
            raise ValueError(f"{where}: {name} must be a number, got {value!r}") from None
    if isinstance(default, bool) and not isinstance(value, bool) and value is not None:
        raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def all_keys(defaults: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in defaults.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out += all_keys(value, f"{prefix}{key}.")
    return out


def suggest(name: str, defaults: dict) -> str:
    """'; did you mean X?' with the closest valid dotted key: the same key
    under another section first, then the closest spelling."""
    keys = all_keys(defaults)
    leaf = name.rsplit(".", 1)[-1]
    moved = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != name]
    close = moved or difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    if not close:
        siblings = [k for k in keys if k.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] or "." not in k]
        close = difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in siblings], n=1, cutoff=0.5)
        close = [k for k in siblings if k.rsplit(".", 1)[-1] in close][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# Recipes ship inside an installed package as tinylm/recipes (pyproject maps
# it from recipes/); in a checkout or an editable install they are the
# checkout's recipes/ folder.
RECIPE_DIRS = (os.path.join(_PACKAGE, "recipes"), os.path.join(os.path.dirname(_PACKAGE), "recipes"))


def recipe_dir() -> str:
    for path in RECIPE_DIRS:
        if os.path.isdir(os.path.join(path, "configs")):
            return path
    raise FileNotFoundError(f"no recipes folder (looked in {', '.join(RECIPE_DIRS)})")


def recipe_names() -> list[str]:
    folder = recipe_dir()
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def default_config_path(recipe_path: str) -> str | None:
    """configs/<name>.yaml beside the recipe, if there is one."""
    name = os.path.splitext(os.path.basename(recipe_path))[0]
    path = os.path.join(os.path.dirname(os.path.abspath(recipe_path)), "configs", f"{name}.yaml")
    return path if os.path.exists(path) else None


def load_recipe(name_or_path: str):
    """The recipe module (with DEFAULTS and main) named like "lora_finetune",
    or at a .py path."""
    if name_or_path.endswith(".py"):
        path = name_or_path
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such recipe file")
    else:
        names = recipe_names()
        if name_or_path not in names:
            close = difflib.get_close_matches(name_or_path, names, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown recipe {name_or_path!r}; {hint}recipes: {', '.join(names)}")
        path = os.path.join(recipe_dir(), f"{name_or_path}.py")
    spec = importlib.util.spec_from_file_location(f"tinylm_recipe_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("DEFAULTS", "main"):
        if not hasattr(module, attr):
            raise ValueError(f"{path}: a recipe must define {attr}")
    return module


def run_recipe(main, defaults: dict, recipe_path: str, argv: list[str] | None = None, prog: str | None = None):
    """The command line of a recipe: [--config FILE] [key=value ...] in any
    order; the config defaults to configs/<recipe name>.yaml beside the
    script. Returns what main returns."""
    default = default_config_path(recipe_path)
    # The recipe module's docstring (main's globals) says what it does and writes.
    parser = argparse.ArgumentParser(prog=prog, description=main.__globals__.get("__doc__"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", default=default, help=f"YAML config (default: {default})")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=10")
    args = parser.parse_intermixed_args(argv)
    return main(load_config(args.config, args.overrides, defaults))


def dump(config: dict) -> str:
    """The resolved config as YAML (written next to a run's outputs)."""
    return yaml.safe_dump(config, sort_keys=False)
