"""Key specs: how each row finds its group.

A key is one of

* a column name (``key="writer_id"``);
* a DuckDB SQL expression over the columns, marked so it is never mistaken for a column
  name (``key=ga.sql("regexp_extract(url, '//([^/]+)', 1)")``);
* a Python function of one example (a ``dict`` of the columns it reads) returning ``str``,
  ``bytes`` or ``int`` (``key=lambda ex: urlparse(ex["url"]).netloc``), optionally wrapped
  in :func:`key_fn` to declare the columns it reads or its type;
* a vectorized function of a ``pyarrow.RecordBatch`` returning an Arrow array, wrapped in
  :func:`batch_key_fn`;
* a tuple of any of these, a *composite* key (``key=("user", "day")``): the group id is the
  tuple, stored as its JSON array text (``'["ann",3]'``) and read back as a tuple.

Every form becomes a SQL expression; Python functions are registered on the build's DuckDB
connection as Arrow UDFs and called from the grouping SQL. Keys are strings, binary or
integers, and keep their type in the output.

Example:
    >>> from urllib.parse import urlparse
    >>> host = key_fn(lambda ex: urlparse(ex["url"]).netloc, columns=["url"])
    >>> host.columns
    ('url',)
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from grouparrow import _sql
from grouparrow._udfs import (
    ARROW_TYPES,
    ROW_COLUMN,
    BatchUDF,
    ExampleUDF,
    KeyType,
    KeyUDF,
    as_array,
    preview,
    python_type_name,
    qualname,
    raised_message,
    register,
)
from grouparrow.errors import KeyFunctionError, KeySpecError

if TYPE_CHECKING:
    import duckdb

KeyValue = str | bytes | int
#: A function of one example (a mapping of column name to value) returning its group key.
KeyFn = Callable[[Mapping[str, Any]], KeyValue | None]
#: A vectorized function of a record batch returning one key per row.
BatchKeyFn = Callable[[pa.RecordBatch], pa.Array | pa.ChunkedArray | Sequence[Any]]

_PROBE_ROWS = 64


@dataclass(frozen=True, slots=True)
class SQLKey:
    """A DuckDB SQL expression over the source columns; made by :func:`sql`.

    ``definition`` is how the manifest names the key (default: the expression).
    """

    expression: str
    definition: str | None = None


@dataclass(frozen=True, slots=True)
class ExampleKeyFn:
    """A per-example Python key function; made by :func:`key_fn`."""

    fn: KeyFn
    columns: tuple[str, ...] | None = None
    type: KeyType | None = None


@dataclass(frozen=True, slots=True)
class BatchKeyFnSpec:
    """A vectorized Python key function; made by :func:`batch_key_fn`.

    ``inputs`` adds columns computed in SQL before the function sees the batch, as
    ``(name, expression)`` pairs (window functions allowed: a row's rank within its label,
    say); ``definition`` is how the manifest names the key (default: the function's name).
    """

    fn: BatchKeyFn
    columns: tuple[str, ...] | None = None
    type: KeyType | None = None
    inputs: tuple[tuple[str, str], ...] = ()
    definition: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedKey:
    """A key that needs a look at the whole input first (label counts, say).

    The build runs ``query`` (SQL over the view ``__ga_source`` of the numbered source
    rows) once, and ``make(result)`` returns the key spec to group by. A one-shot stream is
    first spooled to temporary Parquet files, so the input is read twice.
    """

    query: str
    make: Callable[[pa.Table], KeySpec]


KeySpec = str | SQLKey | ExampleKeyFn | BatchKeyFnSpec | PreparedKey | KeyFn | tuple[Any, ...]


def sql(expression: str) -> SQLKey:
    """Mark ``expression`` as DuckDB SQL computing the key from the source columns.

    Example:
        >>> sql("lower(regexp_extract(url, '//([^/:]+)', 1))").expression
        "lower(regexp_extract(url, '//([^/:]+)', 1))"
    """
    if not isinstance(expression, str) or not expression.strip():
        raise KeySpecError(f"ga.sql() takes a non-empty SQL expression, got {expression!r}")
    return SQLKey(expression)


def key_fn(
    fn: KeyFn, *, columns: Sequence[str] | None = None, type: KeyType | None = None
) -> ExampleKeyFn:
    """A Python function of one example, as a key.

    ``columns`` names the columns the function reads (only those are converted to Python);
    by default grouparrow runs the function on the first rows and records what it reads.
    ``type`` fixes the key type instead of inferring it from the first rows.

    Example:
        >>> spec = key_fn(lambda ex: ex["user"].lower(), columns=["user"], type="string")
        >>> spec.type
        'string'
    """
    return ExampleKeyFn(fn, _columns(columns), _check_type(type))


def batch_key_fn(
    fn: BatchKeyFn, *, columns: Sequence[str] | None = None, type: KeyType | None = None
) -> BatchKeyFnSpec:
    """A vectorized key: ``fn(batch: pyarrow.RecordBatch)`` returns one key per row.

    ``columns`` limits the batch to the columns the function needs (faster); by default it
    sees every source column. ``columns`` may name ``"__ga_row"``, the row's input position:
    a stable row identity for seeded random partitions.

    Example:
        >>> import pyarrow.compute as pc
        >>> spec = batch_key_fn(lambda b: pc.utf8_lower(b["user"]), columns=["user"])
        >>> spec.columns
        ('user',)
    """
    return BatchKeyFnSpec(fn, _columns(columns), _check_type(type))


def key_hash(key: KeyValue, seed: int | str) -> int:
    """The 128-bit placement hash of a key, equal to the ``ga_hash_*`` SQL macros:
    ``md5("<seed>:" + key)`` read as a little-endian integer.

    Example:
        >>> key_hash("nytimes.com", 0) >> 64   # the group's place in its shard's order
        11607252884538399510
    """
    if isinstance(key, str):
        data = key.encode("utf-8")
    elif isinstance(key, bool):
        raise TypeError("group keys are str, bytes or int, not bool")
    elif isinstance(key, int):
        data = str(key).encode("ascii")
    else:
        data = bytes(key)
    digest = hashlib.md5(f"{seed}:".encode() + data, usedforsecurity=False).digest()
    return int.from_bytes(digest, "little")


def shard_of(key: KeyValue, seed: int, num_shards: int) -> int:
    """The shard that holds the group ``key`` in a dataset of ``num_shards`` shards.

    Example:
        >>> 0 <= shard_of("nytimes.com", 0, 8) < 8
        True
    """
    return (key_hash(key, seed) & _LOW_64) % num_shards


_LOW_64 = (1 << 64) - 1


def _columns(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return (columns,)
    return tuple(columns)


def _check_type(type: str | None) -> KeyType | None:
    if type is not None and type not in ARROW_TYPES:
        raise KeySpecError(f"key type {type!r} is not one of {', '.join(ARROW_TYPES)}")
    return type  # type: ignore[return-value]


@dataclass(slots=True)
class Key:
    """A key spec resolved against a source schema: SQL to compute it, and its kind.

    ``expression`` computes ``__ga_key`` from a source row; ``value`` turns ``__ga_key``
    into the stored key and ``null_test`` tells when the row has none (a composite key's
    ``__ga_key`` is a struct of its parts, its value their JSON array).
    """

    expression: str
    kind: Literal["column", "sql", "python", "python_batch", "composite"]
    definition: str
    udfs: list[KeyUDF] = field(default_factory=list)
    duckdb_type: str = ""
    arrow_type: pa.DataType | None = None
    value: str = "__ga_key"
    null_test: str = "__ga_key IS NULL"

    @property
    def hash_expression(self) -> str:
        """SQL for the placement hash of the key column (bound: ``$seed``)."""
        family = _family(self.duckdb_type)
        if family == "text":
            return "ga_hash_text({k}, $seed)"
        if family == "blob":
            return "ga_hash_blob({k}, $seed)"
        return "ga_hash_text(CAST({k} AS VARCHAR), $seed)"

    def set_row_label(self, label: Callable[[int], str]) -> None:
        """How the key's errors name a row from its ``__ga_row`` number."""
        for udf in self.udfs:
            udf.row_label = label

    @property
    def columns(self) -> tuple[str, ...]:
        """The source columns the key reads, where known (column keys and Python keys)."""
        if self.kind == "column":
            return (self.definition,)
        return tuple(dict.fromkeys(c for udf in self.udfs for c in udf.columns))

    def failure(self) -> Exception | None:
        """The error a key UDF met during the last query, if any (then cleared)."""
        for udf in self.udfs:
            if udf.failure is not None:
                failure, udf.failure = udf.failure, None
                return failure
        return None

    def describe(self) -> dict[str, str]:
        """The key's entry in the manifest."""
        return {"kind": self.kind, "definition": self.definition}


def resolve(
    spec: KeySpec, schema: pa.Schema, sample: pa.RecordBatch, con: duckdb.DuckDBPyConnection
) -> Key:
    """Turn ``spec`` into a :class:`Key` over ``schema``; registers UDFs on ``con``.

    ``sample`` holds the first rows of the source: Python key functions are run on them to
    learn which columns they read and which type they return.
    """
    if isinstance(spec, tuple):
        key = _composite(spec, schema, sample, con)
    else:
        key = _resolve_one(spec, schema, sample, con, "__ga_key_fn")
    _type_key(key, schema, con)
    return key


def _resolve_one(spec: Any, schema: pa.Schema, sample: pa.RecordBatch, con: Any, name: str) -> Key:
    names = schema.names
    if isinstance(spec, str):
        if spec not in names:
            raise KeySpecError(
                f"key {spec!r} is not a column of the source (columns: {', '.join(names)}); "
                f"to group by an expression, pass key=ga.sql({spec!r})"
            )
        return Key(_sql.ident(spec), "column", spec)
    if isinstance(spec, SQLKey):
        return Key(f"({spec.expression})", "sql", spec.definition or spec.expression)
    if isinstance(spec, BatchKeyFnSpec):
        return _batch_key(spec, schema, sample, con, name)
    if isinstance(spec, PreparedKey):
        raise KeySpecError(
            "this key needs a pass over the whole input first; pass it to grouparrow.build "
            "as the whole key= (not inside a composite key)"
        )
    if isinstance(spec, ExampleKeyFn) or callable(spec):
        if not isinstance(spec, ExampleKeyFn):
            spec = ExampleKeyFn(spec)
        return _example_key(spec, schema, sample, con, name)
    raise KeySpecError(
        f"key={spec!r} is not a key: pass a column name, ga.sql('<expression>'), a function "
        "of one example, ga.batch_key_fn(<function of a batch>), or a tuple of these"
    )


def _composite(parts: tuple[Any, ...], schema: pa.Schema, sample: pa.RecordBatch, con: Any) -> Key:
    """A tuple key: a struct of the parts, stored as the JSON array of their values."""
    if not parts:
        raise KeySpecError("key=() is empty; a composite key names at least one part")
    keys = [_resolve_one(p, schema, sample, con, f"__ga_key_fn_{i}") for i, p in enumerate(parts)]
    for part in keys:
        _type_key(part, schema, con)
        if _family(part.duckdb_type) not in ("text", "integer"):
            raise KeySpecError(
                f"composite key part {part.definition!r} has type {part.duckdb_type}; the "
                "parts of a composite key are strings or integers (cast binary to VARCHAR)"
            )
    fields = [f"p{i}" for i in range(len(keys))]
    expression = (
        "struct_pack("
        + ", ".join(f"{f} := {k.expression}" for f, k in zip(fields, keys, strict=True))
        + ")"
    )
    definition = "(" + ", ".join(k.definition for k in keys) + ")"
    return Key(
        expression,
        "composite",
        definition,
        [udf for k in keys for udf in k.udfs],
        value="CAST(json_array(" + ", ".join(f"__ga_key.{f}" for f in fields) + ") AS VARCHAR)",
        null_test="(" + " OR ".join(f"__ga_key.{f} IS NULL" for f in fields) + ")",
    )


def composite_id(parts: Sequence[KeyValue]) -> str:
    """The stored id of a composite key's group: the JSON array of its parts, as DuckDB's
    ``json_array`` writes it (compact, non-ASCII as is, control characters without a short
    escape as ``\\u00XX`` in upper-case hex).

    Example:
        >>> composite_id(("ann", 3))
        '["ann",3]'
    """
    values: list[str | int] = []
    for part in parts:
        if isinstance(part, str):
            values.append(str(part))
        elif isinstance(part, numbers.Integral) and not isinstance(part, (bool, np.bool_)):
            values.append(int(part))  # NumPy integers too
        else:
            raise TypeError(f"composite key parts are str or int, not {type(part).__name__}")
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if "\\u" in text:  # json writes lower-case hex
        text = _ESCAPE.sub(lambda m: "\\u" + m[1].upper() if m[1] else m[0], text)
    return text


def composite_parts(definition: str) -> list[str]:
    """The parts of a composite key from its manifest ``definition`` (``"(a, lower(b))"``,
    as :func:`resolve` writes it): the text split at its top-level commas, outside brackets
    and quotes. For messages: a part's own text could hold an unbalanced quote.

    Example:
        >>> composite_parts("(user, regexp_extract(url, '://([^/]+)', 1))")
        ['user', "regexp_extract(url, '://([^/]+)', 1)"]
    """
    text = definition.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def composite_id_problem(group_id: object, definition: str) -> str | None:
    """Why ``group_id`` cannot name a group of a dataset whose composite key is
    ``definition`` (the manifest's): it is not a tuple of as many values as the key has
    parts. None when its length fits (then it may simply be absent).

    Example:
        >>> composite_id_problem(("ann",), "(user, day)").endswith("the id given has 1")
        True
        >>> composite_id_problem(("ann", 3), "(user, day)") is None
        True
    """
    parts = composite_parts(definition)
    named = ", ".join(parts)
    example = "(" + ", ".join(f"<{p}>" for p in parts) + ")"
    if isinstance(group_id, (tuple, list)):
        if len(group_id) == len(parts):
            return None
        given = f"the id given has {len(group_id)}"
    else:
        given = f"the id given is one {type(group_id).__name__}"
    return (
        f"no group {group_id!r}: this dataset's key has {len(parts)} parts ({named}), so a "
        f"group id is a tuple of {len(parts)} values, e.g. ds[{example}]; {given}"
    )


#: One JSON escape, matched from the left (so ``\\u0041``, an escaped backslash then text,
#: is not taken for the escape ``\u0041``): group 1 holds a ``\uXXXX`` escape's hex digits.
_ESCAPE = re.compile(r"\\(?:u([0-9a-f]{4})|.)", re.DOTALL)


def _type_key(key: Key, schema: pa.Schema, con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    probe = schema.append(pa.field("__ga_row", pa.int64())).empty_table()
    con.register("__ga_probe", probe)
    try:
        relation = con.sql(
            f"SELECT {key.value} AS k FROM (SELECT {key.expression} AS __ga_key FROM __ga_probe)"
        )
        key.duckdb_type = str(relation.types[0])
        key.arrow_type = relation.to_arrow_table().schema.field(0).type
    except duckdb.Error as exc:
        raise KeySpecError(
            f"key SQL expression {key.definition!r} does not work over the source columns "
            f"({', '.join(schema.names)}): {exc}"
        ) from exc
    finally:
        con.unregister("__ga_probe")
    if _family(key.duckdb_type) is None:
        fix = (
            f'key=ga.sql("CAST({key.definition} AS VARCHAR)")'
            if key.kind == "column"
            else "convert it to a string, e.g. with CAST(... AS VARCHAR) or str()"
        )
        if key.duckdb_type.strip('"') == "NULL":
            fix += (
                " (a null type means no value told the type: an empty source without declared "
                "types, e.g. a datasets.Dataset made from empty lists without features=)"
            )
        raise KeySpecError(
            f"key {key.definition!r} has type {key.duckdb_type}; grouparrow groups by string, "
            f"binary or integer keys: {fix}"
        )
    if pa.types.is_large_string(key.arrow_type) or pa.types.is_string_view(key.arrow_type):
        key.arrow_type = pa.string()


def _family(duckdb_type: str) -> str | None:
    if duckdb_type == "VARCHAR":
        return "text"
    if duckdb_type == "BLOB":
        return "blob"
    if duckdb_type.rstrip("U") in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"} or (
        duckdb_type in {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
    ):
        return "integer"
    return None


def _check_columns(columns: Sequence[str], schema: pa.Schema) -> None:
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise KeySpecError(
            f"key function columns {missing} are not columns of the source "
            f"(columns: {', '.join(schema.names)})"
        )


def _example_key(
    spec: ExampleKeyFn, schema: pa.Schema, sample: pa.RecordBatch, con: Any, udf_name: str
) -> Key:
    rows = sample.slice(0, _PROBE_ROWS).to_pylist()
    columns = spec.columns
    if columns is None:
        seen: set[str] = set()
        values = [_probe(spec.fn, _Recorder(row, seen), i, row) for i, row in enumerate(rows)]
        columns = tuple(c for c in schema.names if c in seen)
    else:
        _check_columns(columns, schema)
        values = [
            _probe(spec.fn, {c: row[c] for c in columns}, i, row) for i, row in enumerate(rows)
        ]
    type_name = spec.type or _infer_type(values, rows)
    name = qualname(spec.fn)
    udf = ExampleUDF(spec.fn, columns, type_name, name, tuple(schema.names))
    return Key(register(udf, udf_name, schema, con), "python", name, [udf])


def _batch_key(
    spec: BatchKeyFnSpec, schema: pa.Schema, sample: pa.RecordBatch, con: Any, udf_name: str
) -> Key:
    if spec.columns is not None and ROW_COLUMN in spec.columns:
        schema = schema.append(pa.field(ROW_COLUMN, pa.int64()))
        rows = pa.array(np.arange(sample.num_rows, dtype=np.int64))
        sample = sample.append_column(ROW_COLUMN, rows)
    columns = spec.columns if spec.columns is not None else tuple(schema.names)
    _check_columns(columns, schema)
    name = qualname(spec.fn)
    type_name = spec.type
    if type_name is None and spec.inputs:
        raise KeySpecError(f"key function {name} has SQL inputs, so declare its type=")
    if type_name is None:
        probe = sample.slice(0, _PROBE_ROWS).select(list(columns))
        try:
            result = as_array(spec.fn(probe), probe.num_rows, name)
        except KeyFunctionError:
            raise
        except Exception as exc:
            raise KeyFunctionError(
                f"key function {name} raised {type(exc).__name__}: {exc} on the batch of "
                f"rows 0-{probe.num_rows - 1} (first row: {preview(probe.slice(0, 1))})"
            ) from exc
        type_name = _arrow_type_name(result.type, name)
    udf = BatchUDF(spec.fn, columns, type_name, name, spec.inputs)
    definition = spec.definition or name
    return Key(register(udf, udf_name, schema, con), "python_batch", definition, [udf])


class _Recorder(Mapping[str, Any]):
    """A read-only example that notes which columns the key function reads."""

    __slots__ = ("_row", "_seen")

    def __init__(self, row: dict[str, Any], seen: set[str]) -> None:
        self._row = row
        self._seen = seen

    def __getitem__(self, name: str) -> Any:
        self._seen.add(name)
        return self._row[name]

    def __iter__(self) -> Iterator[str]:
        self._seen.update(self._row)
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def _probe(fn: KeyFn, example: Mapping[str, Any], i: int, row: dict[str, Any]) -> Any:
    try:
        return fn(example)
    except Exception as exc:
        raise KeyFunctionError(raised_message(qualname(fn), exc, f"row {i}", row)) from exc


def _infer_type(values: list[Any], rows: list[dict[str, Any]]) -> KeyType:
    found: dict[KeyType, int] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        name = python_type_name(value)
        if name is None:
            raise KeyFunctionError(
                f"key function returned {type(value).__name__} {value!r} for row {i} "
                f"({preview(rows[i])}); return str, bytes or int"
            )
        found.setdefault(name, i)
    if len(found) > 1:
        (a, i), (b, j) = list(found.items())[:2]
        raise KeyFunctionError(
            f"key function returned {a} for row {i} but {b} for row {j}; return one type for "
            "every row, or declare it with ga.key_fn(fn, type=...)"
        )
    return next(iter(found), "string")


def _arrow_type_name(type_: pa.DataType, name: str) -> KeyType:
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return "binary"
    if pa.types.is_integer(type_):
        return "int64"
    if pa.types.is_null(type_):
        return "string"
    raise KeyFunctionError(
        f"key function {name} returned an array of type {type_}; return strings, binary or "
        "integers (e.g. pyarrow.compute.cast(result, pyarrow.string()))"
    )
