"""Schemas of several input files: compare them, refuse a mismatch clearly, or unify them.

DuckDB reads a list of files with the first file's schema unless told ``union_by_name``:
a column only in a later file is then silently dropped, a ``double`` column of a later
Parquet file is rounded into the first file's ``int32``, and a missing column stops the read
deep inside the build. So grouparrow compares the files first (Parquet: the footers; CSV and
JSON lines: what DuckDB's sniffer finds in each file) and either refuses with a message
naming both files and the column, or, with ``unify_schemas=True``, reads them with
``union_by_name = true``: columns matched by name, missing ones null, differing types
widened by DuckDB.

Example:
    >>> import pyarrow as pa
    >>> a = pa.schema([("k", pa.string()), ("x", pa.int32())])
    >>> b = pa.schema([("k", pa.large_string()), ("x", pa.float64())])
    >>> schema_difference(["a.parquet", "b.parquet"], [a, b])
    "column 'x' is int32 in 'a.parquet' but double in 'b.parquet'"
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from grouparrow.errors import SourceError

_KIND_NAMES = {"parquet": "Parquet", "csv": "CSV", "json": "JSON-lines"}
_FIX = (
    "pass unify_schemas=True (grouparrow build --unify-schemas) to read them by column name, "
    "a column missing from a file as null and differing types widened by DuckDB"
)


def loose_type(kind: pa.DataType) -> str:
    """``kind`` as DuckDB reads it, for comparing files: the string, binary and list
    variants are one type each, dictionaries are their values, and nested fields' names
    (``item``/``element``) and nullability do not count.

    Example:
        >>> loose_type(pa.large_list(pa.field("element", pa.large_string(), nullable=False)))
        'list<string>'
    """
    if pa.types.is_dictionary(kind):
        return loose_type(kind.value_type)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return "binary"
    if pa.types.is_fixed_size_list(kind):
        return f"fixed_size_list<{loose_type(kind.value_type)}, {kind.list_size}>"
    if _is_list(kind):
        return f"list<{loose_type(kind.value_type)}>"
    if pa.types.is_map(kind):
        return f"map<{loose_type(kind.key_type)}, {loose_type(kind.item_type)}>"
    if pa.types.is_struct(kind):
        inner = ", ".join(f"{f.name}: {loose_type(f.type)}" for f in kind)
        return f"struct<{inner}>"
    return str(kind)


def schema_difference(paths: Sequence[str], schemas: Sequence[pa.Schema]) -> str | None:
    """The first difference between the first schema and the others, in words; None when
    every file has the same columns with the same types (in any order; nullability and
    metadata do not count, nor do the differences :func:`loose_type` ignores).

    With several differing files, says how many differ from the first.
    """
    differences = [
        problem
        for path, schema in zip(paths[1:], schemas[1:], strict=True)
        if (problem := _difference(paths[0], schemas[0], path, schema)) is not None
    ]
    if not differences:
        return None
    if len(differences) == 1:
        return differences[0]
    return (
        f"{differences[0]} ({len(differences)} of the {len(paths)} files differ from "
        f"{os.fspath(paths[0])!r})"
    )


def _difference(path_a: str, a: pa.Schema, path_b: str, b: pa.Schema) -> str | None:
    types_b = {f.name: f.type for f in b}
    for field in a:
        if field.name not in types_b:
            return f"column {field.name!r} of {path_a!r} is missing in {path_b!r}"
        other = types_b[field.name]
        if loose_type(field.type) != loose_type(other):
            return (
                f"column {field.name!r} is {_show(field.type)} in {path_a!r} but "
                f"{_show(other)} in {path_b!r}"
            )
    names_a = set(a.names)
    for field in b:
        if field.name not in names_a:
            return f"column {field.name!r} of {path_b!r} is missing in {path_a!r}"
    return None


def mismatch_error(kind: str, problem: str) -> SourceError:
    """The error for input files whose schemas differ, ``problem`` naming files and column."""
    return SourceError(
        f"the {_KIND_NAMES[kind]} input files have different schemas: {problem}; {_FIX}"
    )


def check_unifiable(paths: Sequence[str], schemas: Sequence[pa.Schema]) -> None:
    """Refuse columns whose types DuckDB cannot unify well: a list in one file and a
    scalar, struct or map in another (DuckDB would pick one and fail, or parse the strings
    of a string column as lists), and timestamps with and without a time zone (DuckDB would
    read the naive ones in the machine's time zone). Scalars widen into each other
    (``int32`` + ``double`` -> ``double``, anything + ``string`` -> ``string``), structs
    merge their fields."""
    seen: dict[str, tuple[str, pa.DataType]] = {}
    for path, schema in zip(paths, schemas, strict=True):
        for field in schema:
            first = seen.setdefault(field.name, (path, field.type))
            why = _not_unifiable(first[1], field.type)
            if why is not None:
                raise SourceError(
                    f"cannot unify the schemas of the input files: column {field.name!r} is "
                    f"{_show(first[1])} in {first[0]!r} but {_show(field.type)} in {path!r}, "
                    f"and {why}; make the column agree across the files, e.g. rewrite one of "
                    "them, or read them with SQL text that casts or renames it"
                )


def unified_schema(
    schemas: Sequence[pa.Schema], duckdb_schema: pa.Schema
) -> tuple[pa.Schema, list[str]]:
    """The schema of files read with ``union_by_name``, and the names of widened columns.

    Columns in DuckDB's order; a column of the same type in every file that has it keeps
    that file's Arrow type (``large_string``, dictionaries and extension types survive);
    one whose types differ takes the type DuckDB widened it to (its timestamps with a time
    zone in the files' zone when they share one, else UTC, not the machine's zone DuckDB
    gives them). Schema metadata is dropped: it describes one file's columns (pandas,
    HuggingFace features), not the union.
    """
    fields = []
    widened = []
    for duck_field in duckdb_schema:
        mine = [s.field(duck_field.name) for s in schemas if duck_field.name in s.names]
        if mine and len({loose_type(f.type) for f in mine}) == 1:
            fields.append(mine[0].with_nullable(True))
            continue
        zones = {f.type.tz for f in mine if pa.types.is_timestamp(f.type)}
        zone = zones.pop() if len(zones) == 1 and None not in zones else "UTC"
        fields.append(duck_field.with_type(_pin_zone(duck_field.type, zone)).with_nullable(True))
        widened.append(duck_field.name)
    return pa.schema(fields), widened


def sniff(con: Any, function: str, paths: Sequence[str]) -> list[tuple[pa.Schema, bool]]:
    """What DuckDB's ``read_csv``/``read_json`` finds in each file on its own (its sniffer
    reads a sample of each): the Arrow schema, and whether the file has a row at all.
    Files are sniffed in parallel."""
    import duckdb

    def describe(path: str) -> tuple[pa.Schema, bool]:
        cursor = con.cursor()
        try:
            query = f"SELECT * FROM {function}($path) LIMIT 1"
            table = cursor.sql(query, params={"path": path}).to_arrow_table()
            return table.schema, table.num_rows > 0
        except duckdb.Error as exc:
            kind = "CSV" if function == "read_csv" else "JSON-lines"
            raise SourceError(f"cannot read {kind} input {path!r}: {exc}") from exc
        finally:
            cursor.close()

    workers = max(1, min(len(paths), os.cpu_count() or 1, 16))
    if workers == 1:
        return [describe(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(describe, paths))


def _not_unifiable(a: pa.DataType, b: pa.DataType) -> str | None:
    """Why DuckDB cannot unify ``a`` and ``b`` well, or None when it can."""
    if pa.types.is_null(a) or pa.types.is_null(b):
        return None
    if pa.types.is_dictionary(a):
        return _not_unifiable(a.value_type, b)
    if pa.types.is_dictionary(b):
        return _not_unifiable(a, b.value_type)
    kind_a, kind_b = _kind(a), _kind(b)
    if kind_a != kind_b:
        return (
            "DuckDB cannot read one as the other (a list, a struct, a map and a scalar are "
            "different kinds)"
        )
    if kind_a == "list":
        return _not_unifiable(a.value_type, b.value_type)
    if kind_a == "map":
        return _not_unifiable(a.key_type, b.key_type) or _not_unifiable(a.item_type, b.item_type)
    if kind_a == "struct":
        types_b = {f.name: f.type for f in b}
        for field in a:
            if field.name in types_b:
                why = _not_unifiable(field.type, types_b[field.name])
                if why is not None:
                    return why
        return None
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b) and (a.tz is None) != (b.tz is None):
        return "DuckDB would read the timestamps without a time zone in this machine's time zone"
    return None


def _pin_zone(kind: pa.DataType, zone: str) -> pa.DataType:
    """``kind`` with its timestamps that have a time zone in ``zone`` (same instants)."""
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, zone)
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(
            kind.value_field.with_type(_pin_zone(kind.value_type, zone)), kind.list_size
        )
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_pin_zone(kind.value_type, zone)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_pin_zone(kind.value_type, zone)))
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(_pin_zone(kind.key_type, zone)),
            kind.item_field.with_type(_pin_zone(kind.item_type, zone)),
        )
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_pin_zone(f.type, zone)) for f in kind])
    return kind


def _kind(kind: pa.DataType) -> str:
    if _is_list(kind) or pa.types.is_fixed_size_list(kind):
        return "list"
    if pa.types.is_map(kind):
        return "map"
    if pa.types.is_struct(kind):
        return "struct"
    return "scalar"


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
    )


def _show(kind: pa.DataType) -> str:
    """A type in messages: as compared (``list<int64>``, not ``list<element: int64>``)."""
    return loose_type(kind)
