"""What each Arrow column becomes in a framework: its kind, NumPy dtype and per-example shape.

Shared by the JAX and TensorFlow adapters; decided from the schema alone, before any row is
read, so errors name the column whatever the data.

Example:
    >>> import pyarrow as pa
    >>> spec = column_spec(pa.field("pixels", pa.fixed_shape_tensor(pa.uint8(), [28, 28])))
    >>> spec.kind, spec.dtype, spec.shape
    ('array', dtype('uint8'), (28, 28))
    >>> column_spec(pa.field("text", pa.string())).kind
    'string'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow.errors import GroupArrowError

#: Kinds of columns: ``array`` (numbers, bools and fixed-shape tensors: one NumPy array of
#: ``(rows, *shape)``), ``string`` (UTF-8 text), ``bytes`` (variable-length binary),
#: ``ragged`` (variable-length lists of numbers), ``other`` (no framework form).
KINDS = ("array", "string", "bytes", "ragged", "other")


@dataclass(frozen=True)
class ColumnSpec:
    """One column's framework form: ``kind`` (one of :data:`KINDS`), NumPy ``dtype`` of its
    values (object for strings and bytes) and the ``shape`` of one example's value (of each
    item for ``ragged``: a list's length varies)."""

    name: str
    type: pa.DataType
    kind: str
    dtype: np.dtype
    shape: tuple[int, ...]


def column_spec(field: pa.Field) -> ColumnSpec:
    """The framework form of one column of a grouparrow schema.

    Example:
        >>> column_spec(pa.field("x", pa.list_(pa.float32(), 3))).shape
        (3,)
    """
    kind = field.type
    if _is_scalar(kind):
        values = _tensors.to_numpy(pa.array([], kind))
        return ColumnSpec(field.name, kind, "array", values.dtype, ())
    if _is_fixed(kind):
        values = _tensors.to_numpy(_empty(kind))
        return ColumnSpec(field.name, kind, "array", values.dtype, tuple(values.shape[1:]))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return ColumnSpec(field.name, kind, "string", np.dtype(object), ())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return ColumnSpec(field.name, kind, "bytes", np.dtype(object), ())
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_scalar(kind.value_type):
        dtype = _tensors.to_numpy(pa.array([], kind.value_type)).dtype
        return ColumnSpec(field.name, kind, "ragged", dtype, ())
    return ColumnSpec(field.name, kind, "other", np.dtype(object), ())


class ColumnNotFoundError(KeyError, GroupArrowError):
    """A column name that the group or dataset does not have; the message lists the ones it
    has. A ``KeyError`` (as a missing key of a mapping)."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument; keep the text.
        return str(self.args[0]) if self.args else ""


def check_column(schema: pa.Schema, name: object, what: str = "column") -> str:
    """``name`` when it is a column of ``schema``; else a :class:`ColumnNotFoundError` that
    names it and lists the columns (a ``TypeError`` when it is not a str at all). ``what``
    names the argument in the messages.

    Example:
        >>> check_column(pa.schema([("x", pa.int8())]), "x")
        'x'
    """
    if not isinstance(name, str):
        raise TypeError(
            f"{what}={name!r} must be one column name (a str), not a {type(name).__name__}"
        )
    if name not in schema.names:
        raise ColumnNotFoundError(
            f"no column {name!r}; the columns are {', '.join(map(repr, schema.names))}"
        )
    return name


def check_columns(schema: pa.Schema, columns: object, what: str = "columns") -> list[str]:
    """``columns`` as a list of names of columns of ``schema``, each once. A single ``str``
    is refused with a ``TypeError`` (it would be read one character at a time: pass
    ``[name]``); an unknown name raises :class:`ColumnNotFoundError` listing the columns.

    Example:
        >>> check_columns(pa.schema([("a", pa.int8()), ("b", pa.int8())]), ("b",))
        ['b']
    """
    if isinstance(columns, (str, bytes)):
        raise TypeError(
            f"{what}={columns!r} must be a list of column names, not one name: pass "
            f"{what}=[{columns!r}]"
        )
    try:
        names = list(columns)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"{what}={columns!r} must be a list of column names, not a {type(columns).__name__}"
        ) from None
    for name in names:
        check_column(schema, name, f"an entry of {what}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}={names!r} names a column twice")
    return names


def column_specs(schema: pa.Schema, columns: Sequence[str] | None) -> list[ColumnSpec]:
    """The specs of ``columns`` of ``schema`` (all of them when None), in that order; as
    :func:`check_columns`, a ``KeyError`` names an unknown column and lists the others.

    Example:
        >>> [s.name for s in column_specs(pa.schema([("a", pa.int8()), ("b", pa.int8())]), ["b"])]
        ['b']
    """
    if columns is None:
        return [column_spec(field) for field in schema]
    return [column_spec(schema.field(n)) for n in check_columns(schema, columns)]


def check_size(num_examples: object, name: str = "num_examples") -> int:
    """``num_examples`` as a positive int, else a ``ValueError``.

    Example:
        >>> check_size(8)
        8
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise ValueError(f"{name}={num_examples!r} must be a positive integer")
    if num_examples < 1:
        raise ValueError(f"{name}={num_examples!r} must be a positive integer")
    return int(num_examples)


def check_no_nulls(column: pa.ChunkedArray, name: str, group_id: object) -> None:
    """A ``ValueError`` naming the column and the group when ``column`` holds nulls."""
    if column.null_count:
        raise ValueError(
            f"column {name!r} of group {group_id!r} holds {column.null_count} null(s), which "
            "have no place in a framework tensor; fill them before the build (e.g. "
            "coalesce(x, 0) in a SQL source) or leave the column out with columns=[...]"
        )


def _is_scalar(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_fixed(kind: pa.DataType) -> bool:
    """A tensor column: ``fixed_shape_tensor`` or (nested) fixed-size lists of numbers or
    ``fixed_size_binary`` (uint8 values)."""
    if isinstance(kind, pa.FixedShapeTensorType):
        return _is_number(kind.value_type)
    if pa.types.is_fixed_size_binary(kind):
        return True
    if not pa.types.is_fixed_size_list(kind):
        return False
    while pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    return _is_number(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _empty(kind: pa.DataType) -> pa.Array:
    if isinstance(kind, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(kind, pa.array([], kind.storage_type))
    return pa.array([], kind)
