"""Framework adapters: a group's rows in the form a training framework wants.

- :mod:`grouparrow.adapters.torch`: ``Group.to_torch()`` (tensors sharing Arrow's memory),
  ``GroupIterableDataset`` / ``ExampleIterableDataset`` for ``torch.utils.data.DataLoader``
  (sharded across workers and ranks, resumable) and ``collate``.
- :mod:`grouparrow.adapters.hf`: ``Group.to_hf()``, a ``datasets.Dataset`` over the group's
  Arrow table (no copy).
- :mod:`grouparrow.adapters.jax`: ``Group.to_jax()``, groups padded and stacked for ``jit``
  and ``vmap``.

NumPy, Polars and pandas need no adapter: ``Group.to_numpy()``, ``to_polars()``,
``to_pandas()``. Each framework is imported only when its adapter is used, so
``import grouparrow`` stays light; a missing one raises ``ModuleNotFoundError`` naming the
extra to install (``pip install 'grouparrow[torch]'``).

Example:
    >>> _require("nothere")
    Traceback (most recent call last):
    ModuleNotFoundError: nothere is not installed: pip install 'grouparrow[nothere]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Top-level module -> (what to call it, the grouparrow extra that installs it).
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "torch"),
    "jax": ("JAX", "jax"),
    "tensorflow": ("TensorFlow", "tensorflow"),
}

#: The importer :func:`_require` calls (tests replace it to simulate a missing framework).
_import_module = importlib.import_module


def _require(module: str) -> ModuleType:
    """``import module``, or a ``ModuleNotFoundError`` naming the extra that installs it.

    An error raised while importing an installed framework (one of its own dependencies
    missing) is raised unchanged.

    Example:
        >>> _require("json").__name__
        'json'
    """
    top = module.partition(".")[0]
    try:
        return _import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and not (module + ".").startswith(exc.name + "."):
            raise
        name, extra = FRAMEWORKS.get(top, (top, top))
        raise ModuleNotFoundError(
            f"{name} is not installed: pip install 'grouparrow[{extra}]'", name=top
        ) from exc
