"""`tinylm run RECIPE [--config FILE] [key=value ...]`: runs a recipe with a
YAML config and command-line overrides (torchtune's convention).

RECIPE is a recipe name (the recipes/ folder: pretrain, lora_finetune,
qlora_finetune, full_finetune, eval, export) or the path of a recipe
script. The config defaults to recipes/configs/RECIPE.yaml. Overrides use
dotted keys and YAML values: train.learning_rate=1e-4 lora.r=8
data.seq_len=64 model=path/to/model. An unknown key is an error that names
it and the closest valid key. See docs/recipes.md.
"""
from __future__ import annotations

from tinylm.recipe_config import default_config_path, load_config, load_recipe, recipe_names


def register(sub) -> None:
    try:
        available = ", ".join(recipe_names())
    except FileNotFoundError:
        available = "(no recipes folder found)"
    p = sub.add_parser("run", help="run a recipe (pretrain, lora_finetune, ...) with a config and overrides",
                       description=__doc__.split("\n\n")[0], epilog=f"recipes: {available}")
    p.add_argument("recipe", metavar="RECIPE", help="recipe name or path of a recipe .py file")
    p.add_argument("--config", metavar="FILE", help="YAML config (default: recipes/configs/RECIPE.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=10")
    p.set_defaults(run=run)


def run(args) -> int:
    module = load_recipe(args.recipe)
    config = args.config or default_config_path(module.__file__)
    result = module.main(load_config(config, args.overrides, module.DEFAULTS))
    # A recipe that gates (eval with min_score) returns an object with an exit code.
    return getattr(result, "exit_code", 0)
