"""Loading the SQL files shipped with grouparrow, and the one quoting helper.

SQL text lives in ``sql/*.sql`` (shipped inside the wheel as ``grouparrow/sql``). Templates
mark the places that take identifiers or literals with ``{{ name }}``; values are never
pasted in: they are bound as ``$name`` parameters when the statement runs. Identifiers and
paths reach the text only through :func:`ident` and :func:`literal`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _sql_dir() -> Path:
    shipped = resources.files("grouparrow") / "sql"
    if shipped.is_dir():
        return Path(str(shipped))
    # A source checkout (or an editable install): the top-level sql/ folder.
    return Path(__file__).resolve().parent.parent / "sql"


@cache
def load(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = _sql_dir() / f"{name}.sql"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"grouparrow's SQL file {name}.sql is missing from {path.parent}; "
            "the installation is incomplete: reinstall grouparrow"
        ) from None


def render(name: str, /, **parts: str) -> str:
    """``sql/<name>.sql`` with each ``{{ part }}`` replaced by already-quoted SQL text."""
    # Comment lines document the placeholders; they are not part of the statement.
    text = "\n".join(line for line in load(name).splitlines() if not line.lstrip().startswith("--"))
    wanted = set(_PLACEHOLDER.findall(text))
    if wanted != set(parts):
        raise TypeError(f"{name}.sql takes {sorted(wanted)}, got {sorted(parts)}")
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], text)


def ident(name: str) -> str:
    """Quote an identifier (column or table name) for DuckDB: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """Quote a string literal (a path, a setting) for DuckDB: ``it's`` -> ``'it''s'``."""
    return "'" + value.replace("'", "''") + "'"
