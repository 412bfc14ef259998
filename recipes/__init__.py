"""The built-in recipes, shipped inside the package as datagen.builtin_recipes (see pyproject.toml)."""
