"""Doctest collection: an adapter whose framework is not installed is left out (its tests in
tests/ skip themselves), instead of failing to import."""

import importlib.util

collect_ignore = [
    f"grouparrow/adapters/{module}.py"
    for module in ("torch",)
    if importlib.util.find_spec(module) is None
]
