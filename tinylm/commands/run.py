"""Runs a recipe with a YAML config and command-line overrides (torchtune's
convention): `tinylm run RECIPE [--config FILE] [key=value ...]`.

RECIPE is a recipe name (the recipes/ folder: pretrain, lora_finetune,
qlora_finetune, full_finetune, qat_finetune, distill, eval, export) or the path of a recipe
script. The config defaults to recipes/configs/RECIPE.yaml. Overrides use
dotted keys and YAML values: train.learning_rate=1e-4 lora.r=8
data.seq_len=64 model=path/to/model. An unknown key is an error that names
it and the closest valid key. `tinylm run RECIPE --help` describes the
recipe; see docs/recipes.md for every key.
"""
from __future__ import annotations

import argparse

from tinylm.recipe_config import load_recipe, recipe_names, run_recipe


def register(sub) -> None:
    try:
        available = ", ".join(recipe_names())
    except FileNotFoundError:
        available = "(no recipes folder found)"
    p = sub.add_parser("run", help="run a recipe (pretrain, lora_finetune, ...) with a config and overrides",
                       description=__doc__.split("\n\n")[0], epilog=f"recipes: {available}")
    p.add_argument("recipe", metavar="RECIPE", help="recipe name or path of a recipe .py file")
    # The rest goes to the recipe's own command line, so --config may come
    # before or after the overrides (argparse cannot interleave them here).
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="[--config FILE] [key=value ...]",
                   help="the recipe's config file and key=value overrides, e.g. train.max_steps=10")
    p.set_defaults(run=run)


def run(args) -> int:
    module = load_recipe(args.recipe)
    result = run_recipe(module.main, module.DEFAULTS, module.__file__, args.args, prog=f"tinylm run {args.recipe}")
    # A recipe that gates (eval with min_score) returns an object with an exit code.
    return getattr(result, "exit_code", 0)
