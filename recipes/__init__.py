"""tinylm's recipes: short scripts over the library, each with a YAML config in
configs/ (docs/recipes.md). Run one with `tinylm run NAME` or as a script;
installed, this folder is the package tinylm.recipes."""
