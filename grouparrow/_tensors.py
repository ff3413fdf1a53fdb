"""Tensors: columns of fixed-shape values, stored and read back as NumPy arrays.

The build's ``tensor_shapes={"pixels": (28, 28)}`` stores a column of fixed-width values
(``fixed_size_binary[784]``, ``fixed_size_list<uint8>[784]``, nested fixed-size lists,
equal-length ``binary``) as Arrow's canonical ``fixed_shape_tensor(<value type>, shape)``
extension type, whose storage is one flat ``fixed_size_list<value type>[prod(shape)]``.
:func:`tensor_type` checks the column and the shape before the build reads any row;
:func:`to_tensor` converts a batch's column after DuckDB (zero-copy from fixed-width bytes).

On the way back :func:`to_numpy` views a column of fixed-width values as one NumPy array of
shape ``(rows, *shape)`` over Arrow's buffer, without copying, when the column is one chunk
without nulls (several chunks are concatenated first: one copy).

Example:
    >>> import pyarrow as pa
    >>> kind = tensor_type("pixels", pa.binary(4), (2, 2))
    >>> kind.shape, kind.value_type
    ([2, 2], DataType(uint8))
    >>> images = to_tensor(pa.array([b"abcd", b"efgh"], pa.binary(4)), kind, "pixels")
    >>> to_numpy(pa.chunked_array([images])).shape
    (2, 2, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grouparrow.errors import TensorShapeError

_ACCEPTED = (
    "fixed_size_binary, equal-length binary, fixed-size lists (nested too) of numbers, or "
    "fixed_shape_tensor"
)


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints, or a :class:`TensorShapeError` naming ``name``.

    Example:
        >>> check_shape("pixels", [28, 28])
        (28, 28)
    """
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
        raise TensorShapeError(
            f"tensor_shapes[{name!r}] = {shape!r} is not a shape; give a non-empty sequence "
            "of positive integers, e.g. (28, 28)"
        )
    dims = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise TensorShapeError(
                f"tensor_shapes[{name!r}] = {tuple(shape)!r}: dimensions must be positive integers"
            )
        dims.append(int(dim))
    return tuple(dims)


def tensor_types(
    schema: pa.Schema, tensor_shapes: Mapping[str, Sequence[int]] | None, exclude: str = ""
) -> dict[str, pa.DataType]:
    """The tensor type of each column named in ``tensor_shapes`` (a column of ``schema``).

    ``exclude`` is a column that cannot be a tensor (the key column).

    Example:
        >>> schema = pa.schema([("pixels", pa.binary(6))])
        >>> tensor_types(schema, {"pixels": (2, 3)})["pixels"].shape
        [2, 3]
    """
    if not tensor_shapes:
        return {}
    if not isinstance(tensor_shapes, Mapping):
        raise TensorShapeError(
            f"tensor_shapes={tensor_shapes!r} must map column names to shapes, e.g. "
            '{"pixels": (28, 28)}'
        )
    types = {}
    for name, shape in tensor_shapes.items():
        if name not in schema.names or name == exclude:
            raise TensorShapeError(
                f"tensor_shapes names {name!r}, which is not a column of the source "
                f"(columns: {', '.join(n for n in schema.names if n != exclude)})"
            )
        types[name] = tensor_type(name, schema.field(name).type, shape)
    return types


def tensor_type(name: str, kind: pa.DataType, shape: Sequence[int]) -> pa.DataType:
    """``fixed_shape_tensor`` of ``shape`` for column ``name`` of type ``kind``.

    Raises :class:`TensorShapeError` when ``kind`` is not fixed-width or holds another
    number of values per row than ``shape``.

    Example:
        >>> tensor_type("x", pa.list_(pa.list_(pa.float32(), 4), 3), (2, 6))
        FixedShapeTensorType(extension<arrow.fixed_shape_tensor[value_type=float, shape=[2,6]]>)
    """
    dims = check_shape(name, shape)
    found = _width(kind)
    if found is None:
        raise TensorShapeError(
            f"column {name!r} ({kind}) is not fixed-width, so tensor_shapes cannot shape it; "
            f"a tensor column must be {_ACCEPTED}"
        )
    value_type, width = found
    wanted = math.prod(dims)
    if width is not None and width != wanted:
        raise TensorShapeError(
            f"column {name!r} ({kind}) holds {width} values per row but tensor_shapes gives "
            f"{'x'.join(map(str, dims))} = {wanted}: {width} != {'*'.join(map(str, dims))}"
        )
    return pa.fixed_shape_tensor(value_type, list(dims))


def _width(kind: pa.DataType) -> tuple[pa.DataType, int | None] | None:
    """(value type, values per row) of a fixed-width column; width None: equal-length bytes
    checked row by row; None: not fixed-width."""
    if isinstance(kind, pa.FixedShapeTensorType):
        return kind.value_type, math.prod(kind.shape)
    if pa.types.is_fixed_size_binary(kind):
        return pa.uint8(), kind.byte_width
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.uint8(), None
    width, nested = 1, False
    while pa.types.is_fixed_size_list(kind):
        width, nested = width * kind.list_size, True
        kind = kind.value_type
    return (kind, width) if nested and _is_number(kind) else None


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def to_tensor(array: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    """``array`` (of a type :func:`tensor_type` accepts) as the tensor type ``target``.

    Zero-copy from fixed-size binary and fixed-size lists; equal-length binary is checked
    row by row (a :class:`TensorShapeError` names the column and the first bad length).

    Example:
        >>> kind = pa.fixed_shape_tensor(pa.uint8(), [2])
        >>> to_tensor(pa.array([b"ab"]), kind, "x").storage.to_pylist()
        [[97, 98]]
    """
    assert isinstance(target, pa.FixedShapeTensorType)
    if array.type == target:
        return array
    storage_type = target.storage_type
    width = storage_type.list_size
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    kind = array.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        array = _fixed_bytes(array, width, name)
        kind = array.type
    if pa.types.is_fixed_size_binary(kind):
        n = len(array)
        values = pa.Array.from_buffers(
            pa.uint8(), (array.offset + n) * width, [None, array.buffers()[1]]
        )
        storage = pa.Array.from_buffers(
            storage_type,
            n,
            [array.buffers()[0]],
            null_count=array.null_count,
            offset=array.offset,
            children=[values],
        )
    elif pa.types.is_fixed_size_list(kind):
        storage = _flatten(array, storage_type, name)
    else:
        raise TensorShapeError(f"column {name!r} ({kind}) cannot be stored as {target}")
    return pa.ExtensionArray.from_storage(target, storage)


def to_tensors(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with its columns whose type in ``schema`` is a tensor converted to it.

    Example:
        >>> schema = pa.schema([("x", pa.fixed_shape_tensor(pa.uint8(), [1, 2]))])
        >>> to_tensors(pa.record_batch({"x": pa.array([b"ab"])}), schema).column(0).type.shape
        [1, 2]
    """
    columns = [
        to_tensor(column, field.type, field.name)
        if isinstance(field.type, pa.FixedShapeTensorType)
        else column
        for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _fixed_bytes(array: pa.Array, width: int, name: str) -> pa.Array:
    """Binary values that must all be ``width`` bytes long, as ``fixed_size_binary``."""
    lengths = pc.binary_length(array)
    bad = pc.and_kleene(pc.is_valid(lengths), pc.not_equal(lengths, width))
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        raise TensorShapeError(
            f"column {name!r} has a value of {lengths[first].as_py()} bytes (row {first} of "
            f"a batch) but tensor_shapes needs {width}; a tensor column's values must all "
            "have the same length"
        )
    if pa.types.is_binary_view(array.type):
        array = array.cast(pa.large_binary())
    return array.cast(pa.binary(width))  # null rows of any length are fine


def _flatten(array: pa.Array, storage_type: pa.DataType, name: str) -> pa.Array:
    """Nested fixed-size lists as one flat ``fixed_size_list`` of their leaf values."""
    level = array
    while pa.types.is_fixed_size_list(level.type):
        if level is not array and level.null_count:
            raise TensorShapeError(
                f"column {name!r} has null lists inside its rows; a tensor has no place for them"
            )
        size = level.type.list_size
        level = level.values.slice(level.offset * size, len(level) * size)
    mask = array.is_null() if array.null_count else None
    return pa.FixedSizeListArray.from_arrays(level, type=storage_type, mask=mask)


def to_numpy(column: pa.ChunkedArray | pa.Array, shape: Sequence[int] | None = None) -> np.ndarray:
    """``column`` as a NumPy array; fixed-width values as one ``(rows, *shape)`` array.

    ``fixed_shape_tensor`` columns give ``(rows, *shape)`` (permuted dimensions as the type
    says), (nested) fixed-size lists of numbers ``(rows, a, b, ...)``, ``fixed_size_binary``
    ``(rows, width)`` of uint8. These are views of Arrow's buffer (no copy) when the column
    is one chunk without nulls; several chunks are concatenated first (one copy). With null
    rows the result is an object array of those rows' arrays (views too) and None. ``shape``
    reshapes each row's values, e.g. bytes to ``(28, 28)`` images (no copy either; equal-length
    ``binary`` columns too). Anything else is ``Array.to_numpy(zero_copy_only=False)``.

    Example:
        >>> to_numpy(pa.array([b"abcd"], pa.binary(4)), shape=(2, 2)).tolist()
        [[[97, 98], [99, 100]]]
    """
    if isinstance(column, pa.ChunkedArray):
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        array = column
    view = _view(array, reshape=shape is not None)
    if shape is None:
        if view is not None:
            return view
        if array.null_count and (rows := _view(array, nulls=True)) is not None:
            out = np.empty(len(array), object)
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(valid):
                out[i] = rows[i]
            return out
        return array.to_numpy(zero_copy_only=False)
    dims = check_shape("column", shape)
    if view is None:
        raise TensorShapeError(
            f"to_numpy(shape={dims}) needs a column of fixed-width values without nulls "
            f"({_ACCEPTED}); this one is {array.type}"
            + (f" with {array.null_count} nulls" if array.null_count else "")
        )
    width = math.prod(view.shape[1:])
    if width != math.prod(dims) and (len(array) or _width(array.type) != (pa.uint8(), None)):
        raise TensorShapeError(
            f"to_numpy(shape={dims}): the column ({array.type}) holds {width} values per row, "
            f"not {'*'.join(map(str, dims))} = {math.prod(dims)}"
        )
    return view.reshape(len(array), *dims)


def _view(array: pa.Array, *, reshape: bool = False, nulls: bool = False) -> np.ndarray | None:
    """A no-copy ``(rows, ...)`` view of fixed-width values without nulls, else None.

    With ``reshape`` equal-length ``binary`` values count as fixed-width too; with ``nulls``
    null rows are allowed (their slots hold whatever the buffer holds).
    """
    if array.null_count and not nulls:
        return None
    n = len(array)
    kind = array.type
    if isinstance(kind, pa.FixedShapeTensorType):
        flat = _view(array.storage, nulls=nulls)
        if flat is None:
            return None
        view = flat.reshape(n, *kind.shape)
        permutation = kind.permutation
        if permutation and list(permutation) != sorted(permutation):
            # Logical dimension i is physical dimension permutation[i] (the Arrow spec).
            view = view.transpose(0, *(1 + int(p) for p in permutation))
        return view
    if pa.types.is_fixed_size_binary(kind):
        width = kind.byte_width
        if not n:
            return np.empty((0, width), np.uint8)
        data = np.frombuffer(array.buffers()[1], np.uint8)
        start = array.offset * width
        return data[start : start + n * width].reshape(n, width)
    if reshape and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return _equal_bytes(array)
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        values = array.values.slice(array.offset * size, n * size)
        if values.null_count:  # allowed only inside null rows (Parquet fills those so)
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            inner_valid = values.is_valid().to_numpy(zero_copy_only=False).reshape(n, size)
            if not inner_valid[valid].all():
                return None
        inner = _view(values, nulls=True)
        return None if inner is None else inner.reshape(n, size, *inner.shape[1:])
    if _is_number(kind):
        if not n:
            return np.empty(0, kind.to_pandas_dtype())
        data = np.frombuffer(array.buffers()[1], kind.to_pandas_dtype())
        return data[array.offset : array.offset + n]
    return None


def _equal_bytes(array: pa.Array) -> np.ndarray | None:
    """Binary values all of one length as a ``(rows, length)`` uint8 view, else None."""
    n = len(array)
    dtype = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype, n + 1, array.offset * dtype().itemsize)
    if not n:
        return np.empty((0, 0), np.uint8)
    width = int(offsets[1] - offsets[0])
    if not (np.diff(offsets) == width).all():
        return None
    data = np.frombuffer(array.buffers()[2], np.uint8) if width else np.empty(0, np.uint8)
    return data[int(offsets[0]) : int(offsets[-1])].reshape(n, width)
