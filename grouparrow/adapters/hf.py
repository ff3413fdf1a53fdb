"""Hugging Face ``datasets``: a group as a ``datasets.Dataset`` over its Arrow table.

``datasets`` is a dependency of grouparrow, imported only when used. The Dataset wraps the
group's table in memory: no copy, no cache file, no fingerprinting pass. Column types that
``datasets`` has no feature for are given in a form it has, sharing the values buffer:
a ``fixed_shape_tensor`` column (``tensor_shapes=``) of 2 to 5 dimensions becomes
``datasets``' own ``Array2D`` .. ``Array5D`` (``Array2D(shape=(28, 28), dtype="uint8")``; only
list offsets are made, a few bytes per row), which ``with_format("numpy")`` or ``"torch"``
reads as one ``(rows, 28, 28)`` array; of 1 or more than 5 dimensions, (nested) fixed-size
lists. Other Arrow extension types it does not know (``uuid``) are given as their storage.

Example:
    >>> import grouparrow as ga, pyarrow as pa
    >>> batch = pa.record_batch({"user": ["ann", "ann"], "x": [1, 2]})
    >>> hf = to_hf(ga.Group("ann", [batch], batch.schema))
    >>> hf.num_rows, hf.features["x"]
    (2, Value('int64'))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow.group import Group

if TYPE_CHECKING:
    import datasets

__all__ = ["to_hf"]


def to_hf(group: Group) -> datasets.Dataset:
    """The group's rows as a ``datasets.Dataset`` sharing the group's Arrow buffers. Same
    as :meth:`Group.to_hf`.

    Example:
        >>> group = ds["ann"]                                      # doctest: +SKIP
        >>> to_hf(group).with_format("torch")[:]["pixels"].shape   # doctest: +SKIP
        torch.Size([12, 28, 28])
    """
    import datasets
    from datasets.features.features import generate_from_arrow_type

    table = group.to_arrow()
    columns = []
    for column in table.columns:
        kind = column.type
        if isinstance(kind, pa.FixedShapeTensorType):
            chunks = [_tensor(c) for c in column.chunks]
            column = pa.chunked_array(chunks, chunks[0].type if chunks else _tensor_type(kind))
        elif isinstance(kind, pa.BaseExtensionType):
            try:
                generate_from_arrow_type(kind)
            except ValueError:  # no datasets feature for it
                column = pa.chunked_array([c.storage for c in column.chunks], kind.storage_type)
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=table.column_names)
    return datasets.Dataset(datasets.table.InMemoryTable(table))


def _permuted(kind: pa.FixedShapeTensorType) -> bool:
    return bool(kind.permutation) and list(kind.permutation) != sorted(kind.permutation)


def _shape(kind: pa.FixedShapeTensorType) -> list[int]:
    """The logical shape: ``shape`` is the physical one, ``permutation`` orders it."""
    return [kind.shape[p] for p in kind.permutation] if _permuted(kind) else list(kind.shape)


def _tensor_type(kind: pa.FixedShapeTensorType) -> pa.DataType:
    """The type :func:`_tensor` gives a tensor column of type ``kind``."""
    return _tensor(pa.ExtensionArray.from_storage(kind, pa.array([], kind.storage_type))).type


def _tensor(chunk: pa.ExtensionArray) -> pa.Array:
    """A ``fixed_shape_tensor`` chunk as ``datasets``' ``ArrayND`` (2 to 5 dimensions) or
    nested fixed-size lists, of its logical shape, over its values buffer (copied only when
    the tensor's dimensions are permuted)."""
    from datasets.features import features

    kind = chunk.type
    storage = chunk.storage
    shape = _shape(kind)
    n, size = len(chunk), math.prod(shape)
    if _permuted(kind):
        rows = _tensors.to_numpy(chunk)  # (rows, *logical shape), a transposed view
        if rows.dtype == object:  # null rows (an object array of rows and None): zeros
            zeros = np.zeros(shape, kind.value_type.to_pandas_dtype())
            rows = np.stack([zeros if r is None else r for r in rows])
        values = pa.array(np.ascontiguousarray(rows).reshape(-1), kind.value_type)
    else:
        values = storage.values.slice(storage.offset * size, n * size)
    mask = storage.is_null() if storage.null_count else None
    array_type = getattr(features, f"Array{len(shape)}DExtensionType", None)
    if array_type is None or len(shape) < 2:
        level = values
        for dim in reversed(shape[1:]):
            level = pa.FixedSizeListArray.from_arrays(level, dim)
        return pa.FixedSizeListArray.from_arrays(level, shape[0], mask=mask)
    level = values
    for depth in reversed(range(len(shape))):
        offsets = pa.array(np.arange(0, len(level) + 1, shape[depth], dtype=np.int32))
        level = pa.ListArray.from_arrays(offsets, level, mask=None if depth else mask)
    dtype = np.dtype(kind.value_type.to_pandas_dtype()).name
    return pa.ExtensionArray.from_storage(array_type(tuple(shape), dtype), level)
