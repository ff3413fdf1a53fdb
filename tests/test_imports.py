"""``import grouparrow`` stays light: no framework, no plotting, no HF datasets, no network."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "jax", "tensorflow", "matplotlib", "datasets", "polars", "pandas")


def test_import_grouparrow_imports_nothing_heavy() -> None:
    script = f"import sys, grouparrow\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
