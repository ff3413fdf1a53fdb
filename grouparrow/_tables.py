"""Printing Arrow tables from the CLI: aligned text for people, CSV and JSON lines exact.

Text cells are shortened to fit; numbers are right-aligned, floats shown to 6 significant
digits. CSV and JSON keep every value exactly: integers as written, floats as their
shortest round-tripping repr, nested values as JSON, bytes as base64, dates and times ISO
8601.

Example:
    >>> import pyarrow as pa
    >>> print(format_table(pa.table({"group": ["a", "bb"], "n": [1, 20]})))
    group   n
    a       1
    bb     20
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
from collections.abc import Iterable
from typing import IO, Any

import pyarrow as pa

_CELL = 40


def format_table(table: pa.Table, *, total_rows: int | None = None) -> str:
    """``table`` as aligned columns under a header; ``total_rows`` > its rows adds a line
    saying how many were left out."""
    rows = table.to_pylist()
    names = table.column_names
    numeric = [_is_number(f.type) for f in table.schema]
    cells = [[_cell(row[name]) for name in names] for row in rows]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(names), *(line(r) for r in cells)]
    if total_rows is not None and total_rows > len(rows):
        lines.append(f"... {total_rows - len(rows):,} more rows ({total_rows:,} in all)")
    return "\n".join(lines)


def write_csv(batches: Iterable[pa.RecordBatch], names: list[str], out: IO[str]) -> None:
    """The rows as CSV with a header row (an empty field for null)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for batch in batches:
        for row in batch.to_pylist():
            writer.writerow(["" if row[n] is None else _exact(row[n], text=True) for n in names])


def write_json(batches: Iterable[pa.RecordBatch], out: IO[str]) -> None:
    """The rows as JSON lines: one object per row."""
    for batch in batches:
        for row in batch.to_pylist():
            out.write(json.dumps({k: _exact(v) for k, v in row.items()}) + "\n")


def _exact(value: Any, text: bool = False) -> Any:
    """A JSON-ready value with nothing lost (``text``: as a CSV field)."""
    if isinstance(value, bool):
        return ("true" if value else "false") if text else value
    if value is None:
        return value
    if isinstance(value, float | int):
        return repr(value) if text else value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.timedelta | decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        nested = {str(k): _exact(v) for k, v in value.items()}
        return json.dumps(nested) if text else nested
    if isinstance(value, list | tuple):
        items = [_exact(v) for v in value]
        return json.dumps(items) if text else items
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | tuple | bytes):
        text = json.dumps(_exact(value))
    else:
        text = str(value)
    text = text.replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
