"""Doctest collection: a module whose optional dependency is not installed is left out (its
tests in tests/ skip themselves), instead of failing to import."""

import importlib.util

_OPTIONAL = {"grouparrow/adapters/torch.py": "torch", "grouparrow/plots.py": "matplotlib"}

collect_ignore = [
    path for path, module in _OPTIONAL.items() if importlib.util.find_spec(module) is None
]
