"""The DuckDB Arrow UDFs that run Python key functions, and how they report a bad row.

A key function becomes a scalar UDF on the build's connection: the columns it reads (and
any SQL-computed inputs) arrive as one STRUCT argument, followed by the row's input
position, so that an error can name the row (``row 12 of 'part-3.parquet'``).

Example:
    >>> preview({"user": "ann", "text": "x" * 100})
    "user='ann', text='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from grouparrow import _sql
from grouparrow.errors import KeyFunctionError, RowKeyError
from grouparrow.sources import RowLabel

KeyType = Literal["string", "binary", "int64"]
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "binary": pa.binary(),
    "int64": pa.int64(),
}
#: The column holding each row's input position during a build.
ROW_COLUMN = "__ga_row"
PREVIEW_CHARS = 240


def register(udf: KeyUDF, name: str, schema: pa.Schema, con: Any) -> str:
    """Register ``udf`` on ``con``; return the SQL that calls it on each row.

    The columns the function reads (and its SQL-computed inputs) travel as one STRUCT
    argument (DuckDB UDFs take a fixed number of parameters), followed by the row's input
    position.
    """
    import duckdb

    duck_type = {"string": "VARCHAR", "binary": "BLOB", "int64": "BIGINT"}[udf.type_name]
    options = {"type": "arrow", "null_handling": "special", "side_effects": False}
    fields = [(c, _sql.ident(c)) for c in udf.columns] + list(udf.inputs)
    if not fields:
        con.create_function(
            name, udf.call_rows, [duckdb.sqltype("BIGINT")], duckdb.sqltype(duck_type), **options
        )
        return f"{name}(__ga_row)"
    struct = "struct_pack(" + ", ".join(f"{_sql.ident(n)} := {e}" for n, e in fields) + ")"
    if ROW_COLUMN not in schema.names:
        schema = schema.append(pa.field(ROW_COLUMN, pa.int64()))
    con.register("__ga_types", schema.empty_table())
    try:
        struct_type = con.sql(f"SELECT {struct} FROM __ga_types").types[0]
    finally:
        con.unregister("__ga_types")
    con.create_function(
        name,
        udf.call_struct,
        [struct_type, duckdb.sqltype("BIGINT")],
        duckdb.sqltype(duck_type),
        **options,
    )
    return f"{name}({struct}, __ga_row)"


def qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qual}" if module and module != "__main__" else qual


def raised_message(name: str, exc: BaseException, row: str, example: Mapping[str, Any]) -> str:
    return (
        f"key function {name} raised {type(exc).__name__}: {exc} on {row} "
        f"({preview(example)}); fix the function, or return None for such rows and "
        'pass on_null="drop" to skip them'
    )


def python_type_name(value: Any) -> KeyType | None:
    """The key type of a value a key function returned (NumPy integers are integers;
    ``bool`` is not), or ``None`` when it is not a key.

    Example:
        >>> python_type_name("a"), python_type_name(b"a"), python_type_name(3), python_type_name(True)
        ('string', 'binary', 'int64', None)
    """  # noqa: E501
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return "int64"
    return None


INT64_RANGE = (-(2**63), 2**63 - 1)
#: The Python types of a batch of keys that need no closer look, by key type.
_EXACT: dict[str, set[type]] = {"string": {str, type(None)}, "binary": {bytes, type(None)}}


def unusable_key(value: Any, type_name: KeyType) -> tuple[str, str] | None:
    """Why ``value``, returned by a key function whose keys are ``type_name``, cannot be a
    key: ``(the value as shown, the reason)``; ``None`` when it can, or is null.

    Example:
        >>> unusable_key(2**64, "int64")[1]
        ', outside the range of int64 keys; return keys this large as str'
    """
    if value is None:
        return None
    kind = python_type_name(value)
    shown = f"{type(value).__name__} {value!r}"
    if kind != type_name:
        return shown, (
            f", but {type_name} keys for the first rows; return one type for every row "
            "(str, bytes or int), or declare it with ga.key_fn(fn, type=...)"
        )
    if kind == "int64" and not INT64_RANGE[0] <= int(value) <= INT64_RANGE[1]:
        return shown, ", outside the range of int64 keys; return keys this large as str"
    if kind == "string":
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"str {value[:60]!r}", (
                f", which is not Unicode text ({exc.reason} at position {exc.start}); return "
                "such keys as bytes"
            )
    return None


def as_array(result: Any, length: int, name: str) -> pa.Array:
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    elif not isinstance(result, pa.Array):
        try:
            result = pa.array(result)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise KeyFunctionError(
                f"key function {name} returned {type(result).__name__}, which is not an Arrow "
                f"array of keys: {exc}"
            ) from exc
    if len(result) != length:
        raise KeyFunctionError(
            f"key function {name} returned {len(result)} keys for a batch of {length} rows; "
            "return exactly one key per row"
        )
    return result


def preview(example: Mapping[str, Any] | pa.RecordBatch) -> str:
    if isinstance(example, pa.RecordBatch):
        rows = example.to_pylist()
        example = rows[0] if rows else {}
    parts = []
    for name, value in example.items():
        if isinstance(value, str) and len(value) > 60:
            value = value[:57] + "..."
        elif isinstance(value, (bytes, bytearray)) and len(value) > 16:
            value = f"<{len(value)} bytes>"
        parts.append(f"{name}={value!r}")
    text = ", ".join(parts)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _fields(columns: pa.ChunkedArray | pa.StructArray) -> list[pa.Array]:
    if isinstance(columns, pa.ChunkedArray):
        columns = columns.combine_chunks()
    return columns.flatten()


class KeyUDF(abc.ABC):
    """What both key UDFs hold: the function, the columns it gets, its key type, its failure."""

    def __init__(
        self,
        fn: Any,
        columns: tuple[str, ...],
        type_name: KeyType,
        name: str,
        inputs: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.fn = fn
        self.columns = columns
        self.inputs = inputs
        self.type_name = type_name
        self.type = ARROW_TYPES[type_name]
        self.name = name
        self.failure: Exception | None = None
        self.row_label: Callable[[int], str] = RowLabel()

    @abc.abstractmethod
    def call_struct(self, columns: pa.ChunkedArray, rows: pa.ChunkedArray) -> pa.Array:
        """The UDF when the function reads columns: they arrive as one struct column."""

    @abc.abstractmethod
    def call_rows(self, rows: pa.ChunkedArray) -> pa.Array:
        """The UDF when the function reads no column."""


class ExampleUDF(KeyUDF):
    """The DuckDB Arrow UDF that calls a per-example key function on each row."""

    def __init__(
        self,
        fn: Callable[[Mapping[str, Any]], Any],
        columns: tuple[str, ...],
        type_name: KeyType,
        name: str,
        all_columns: tuple[str, ...],
    ) -> None:
        super().__init__(fn, columns, type_name, name)
        self.all_columns = all_columns

    def _examples(self, cols: list[list[Any]], n: int) -> Iterator[dict[str, Any]]:
        names = self.columns
        if not names:
            return (dict() for _ in range(n))
        if len(names) == 1:
            name = names[0]
            return ({name: v} for v in cols[0])
        return (dict(zip(names, values, strict=True)) for values in zip(*cols, strict=True))

    def call_struct(self, columns: pa.ChunkedArray, rows: pa.ChunkedArray) -> pa.Array:
        return self._call([a.to_pylist() for a in _fields(columns)], rows)

    def call_rows(self, rows: pa.ChunkedArray) -> pa.Array:
        return self._call([], rows)

    def _call(self, cols: list[list[Any]], rows: pa.ChunkedArray) -> pa.Array:
        fn = self.fn
        try:
            keys = [fn(example) for example in self._examples(cols, len(rows))]
        except Exception as exc:
            self.failure = self._locate_raise(cols, rows, exc)
            raise
        exact = _EXACT.get(self.type_name)
        if exact is not None and not set(map(type, keys)) <= exact:
            # PyArrow would take a str for a binary key (its UTF-8) and bytes for a string
            # key: a function returning both is refused, as on its first rows.
            error = self._unusable(keys, cols, rows)
            if error is not None:
                self.failure = error
                raise error
        try:
            return pa.array(keys, type=self.type)
        except (pa.ArrowException, TypeError, OverflowError, ValueError) as exc:
            # ValueError: a str that is not Unicode text (UnicodeEncodeError)
            self.failure = self._unusable(keys, cols, rows) or KeyFunctionError(
                f"key function {self.name} returned unusable keys: {exc}"
            )
            self.failure.__cause__ = exc
            raise

    def _row(self, cols: list[list[Any]], i: int) -> dict[str, Any]:
        return {name: col[i] for name, col in zip(self.columns, cols, strict=True)}

    def _locate_raise(
        self, cols: list[list[Any]], rows: pa.ChunkedArray, exc: Exception
    ) -> KeyFunctionError:
        # Run row by row to find the row that fails (the first of the chunk if none does).
        i = 0
        for position, example in enumerate(self._examples(cols, len(rows))):
            try:
                self.fn(example)
            except Exception as again:
                exc, i = again, position
                break
        row = self.row_label(rows[i].as_py())
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        if isinstance(missing, str) and missing in self.all_columns:
            error = KeyFunctionError(
                f"key function {self.name} read column {missing!r} on {row}, which it did "
                "not read on the first rows, so it was not passed to it; declare the columns "
                f"it reads: key=ga.key_fn(fn, columns=[...{missing!r}...])"
            )
        else:
            error = KeyFunctionError(raised_message(self.name, exc, row, self._row(cols, i)))
        error.__cause__ = exc
        return error

    def _unusable(
        self, keys: list[Any], cols: list[list[Any]], rows: pa.ChunkedArray
    ) -> KeyFunctionError | None:
        """The error naming the first row whose key is unusable, if any."""
        for i, value in enumerate(keys):
            problem = unusable_key(value, self.type_name)
            if problem is not None:
                shown, reason = problem
                return KeyFunctionError(
                    f"key function {self.name} returned {shown} for "
                    f"{self.row_label(rows[i].as_py())} ({preview(self._row(cols, i))}){reason}"
                )
        return None


class BatchUDF(KeyUDF):
    """The DuckDB Arrow UDF that calls a vectorized key function on each chunk."""

    def call_struct(self, columns: pa.ChunkedArray, rows: pa.ChunkedArray) -> pa.Array:
        names = [*self.columns, *(name for name, _ in self.inputs)]
        return self._call(pa.RecordBatch.from_arrays(_fields(columns), names=names), rows)

    def call_rows(self, rows: pa.ChunkedArray) -> pa.Array:
        return self._call(pa.RecordBatch.from_pydict({}, schema=pa.schema([])), rows)

    def _call(self, batch: pa.RecordBatch, rows: pa.ChunkedArray) -> pa.Array:
        try:
            result = as_array(self.fn(batch), batch.num_rows, self.name)
            if result.type != self.type:
                result = result.cast(self.type)
            return result
        except BadRow as exc:
            row = self.row_label(rows[exc.index].as_py())
            shown = batch.select(list(self.columns)).slice(exc.index, 1)
            self.failure = exc.error_type(f"{exc.message} on {row} ({preview(shown)})")
            raise
        except Exception as exc:
            if isinstance(exc, KeyFunctionError):
                self.failure = exc
            else:
                first = self.row_label(rows[0].as_py())
                last = self.row_label(rows[len(rows) - 1].as_py())
                self.failure = KeyFunctionError(
                    f"key function {self.name} raised {type(exc).__name__}: {exc} on the batch "
                    f"from {first} to {last} (first row: {preview(batch.slice(0, 1))})"
                )
                self.failure.__cause__ = exc
            raise


class BadRow(Exception):
    """Raised by a vectorized key function about one row of its batch (``index``); the
    build reports ``error_type(message + the row's name and values)``.

    Example:
        >>> BadRow(3, "label 12 is outside labels=10").index
        3
    """

    def __init__(
        self, index: int, message: str, error_type: type[RowKeyError] = KeyFunctionError
    ) -> None:
        super().__init__(message)
        self.index = index
        self.message = message
        self.error_type = error_type
