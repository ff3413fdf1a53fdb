"""TensorFlow: a stream of groups as a ``tf.data.Dataset`` of ``tf.data.Dataset`` s, one per
group, each yielding example dicts of tensors, as Dataset Grouper's
``build_partition_stream``; and one group as a ``tf.data.Dataset``.

TensorFlow is imported only when these functions run (``pip install 'grouparrow[tensorflow]'``).
Element specs come from the dataset's schema: numbers and booleans are scalar tensors,
tensor columns (``tensor_shapes=``, fixed-size lists of numbers, ``fixed_size_binary`` as
uint8) tensors of their shape, strings and binary ``tf.string``, variable-length lists of
numbers 1-D tensors of any length. Other types (structs, timestamps, ...) and columns with
nulls raise an error naming the column: leave them out with ``columns=``.

Example:
    >>> stream = build_group_stream(ds, shuffle=True, seed=0)   # doctest: +SKIP
    >>> for client in stream.take(10):                          # doctest: +SKIP
    ...     model.fit(client.batch(32))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow.adapters._columns import ColumnSpec, check_no_nulls, column_specs
from grouparrow.group import Group

if TYPE_CHECKING:
    from grouparrow.dataset import GroupedDataset

__all__ = ["build_group_stream", "element_spec", "group_dataset"]

#: One column of a whole group: an array (rows first), or (values, row_splits) for
#: variable-length lists.
_Batch = np.ndarray | tuple[np.ndarray, np.ndarray]


def element_spec(
    source: GroupedDataset | Group | pa.Schema, columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """The ``tf.TensorSpec`` of each example's ``columns`` (all when None) of ``source``: a
    :class:`~grouparrow.GroupedDataset`, a :class:`~grouparrow.Group` or a ``pyarrow.Schema``
    (the element spec of each group's dataset).

    Example:
        >>> element_spec(ds, columns=["pixels", "label"])   # doctest: +SKIP
        {'pixels': TensorSpec(shape=(28, 28), dtype=tf.uint8, name=None),
         'label': TensorSpec(shape=(), dtype=tf.int64, name=None)}
    """
    tf = _tf()
    return {s.name: tf.TensorSpec(_shape(s), _tf_dtype(tf, s)) for s in _specs(source, columns)}


def group_dataset(group: Group, *, columns: Sequence[str] | None = None) -> Any:
    """One group as a ``tf.data.Dataset`` of example dicts (its rows in order), with the
    element spec of :func:`element_spec`.

    Example:
        >>> examples = group_dataset(ds["nytimes.com"], columns=["text"])   # doctest: +SKIP
        >>> next(iter(examples))["text"].dtype                               # doctest: +SKIP
        tf.string
    """
    tf = _tf()
    specs = _specs(group.schema, columns)
    batch = _group_batch(group, specs)
    tensors = {
        s.name: tuple(tf.constant(part) for part in value)
        if isinstance(value, tuple)
        else tf.constant(value, dtype=_tf_dtype(tf, s))
        for s, value in zip(specs, batch.values(), strict=True)
    }
    return _examples(tf, specs, tensors)


def build_group_stream(
    ds: GroupedDataset,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    worker_index: int = 0,
    num_workers: int = 1,
    columns: Sequence[str] | None = None,
) -> Any:
    """The groups of ``ds`` (a :class:`~grouparrow.GroupedDataset`) as a ``tf.data.Dataset``
    whose elements are ``tf.data.Dataset`` s, one per group, of example dicts (as Dataset
    Grouper's ``build_partition_stream``).

    Groups come in the order of :meth:`GroupedDataset.iter_groups` with the same arguments
    (shuffled by ``(seed, epoch)``, this worker's part of the groups, from group ``start``);
    each iteration of the returned dataset streams that epoch again. Only ``columns`` (all
    when None) are read. Its cardinality is the number of groups it yields.

    Example:
        >>> stream = build_group_stream(ds, shuffle=True, seed=0, epoch=1)   # doctest: +SKIP
        >>> for client in stream.take(4):                                    # doctest: +SKIP
        ...     print(client.cardinality().numpy())
    """
    tf = _tf()
    specs = _specs(ds, columns)
    names = [s.name for s in specs]
    options: dict[str, Any] = {
        "shuffle": shuffle,
        "seed": seed,
        "epoch": epoch,
        "start": start,
        "worker_index": worker_index,
        "num_workers": num_workers,
        "columns": names if columns is not None else None,
    }
    first = ds.iter_groups(**options)  # checks the arguments now, not at the first read
    remaining = max(len(first) - start, 0)

    def groups() -> Iterator[dict[str, _Batch]]:
        for group in ds.iter_groups(**options):
            yield _group_batch(group, specs)

    signature = {}
    for s in specs:
        if s.kind == "ragged":
            dtype = _tf_dtype(tf, s)
            signature[s.name] = (tf.TensorSpec((None,), dtype), tf.TensorSpec((None,), tf.int64))
        else:
            signature[s.name] = tf.TensorSpec((None, *s.shape), _tf_dtype(tf, s))
    batches = tf.data.Dataset.from_generator(groups, output_signature=signature)
    groups_ds = batches.map(lambda columns: _examples(tf, specs, columns))
    return groups_ds.apply(tf.data.experimental.assert_cardinality(remaining))


def _tf() -> Any:
    from grouparrow.adapters import _require

    return _require("tensorflow")


def _specs(
    source: GroupedDataset | Group | pa.Schema, columns: Sequence[str] | None
) -> list[ColumnSpec]:
    """Specs of the columns to convert; an error for any without a TensorFlow form."""
    schema = source if isinstance(source, pa.Schema) else source.schema
    specs = column_specs(schema, columns)
    for spec in specs:
        if spec.kind == "other":
            raise ValueError(
                f"column {spec.name!r} ({spec.type}) has no TensorFlow tensor form (numbers, "
                "booleans, fixed-shape tensors, strings, binary and variable-length lists of "
                "numbers have): leave it out with columns=[...]"
            )
    return specs


def _shape(spec: ColumnSpec) -> tuple[int | None, ...]:
    """One example's shape: a variable-length list's is ``(None,)``."""
    return (None, *spec.shape) if spec.kind == "ragged" else spec.shape


def _tf_dtype(tf: Any, spec: ColumnSpec) -> Any:
    return tf.string if spec.kind in ("string", "bytes") else tf.as_dtype(spec.dtype)


def _group_batch(group: Group, specs: list[ColumnSpec]) -> dict[str, _Batch]:
    """Each column of the whole group as NumPy: rows first, or (values, row splits)."""
    table = group.to_arrow()
    out: dict[str, _Batch] = {}
    for spec in specs:
        column = table.column(spec.name)
        check_no_nulls(column, spec.name, group.id)
        if spec.kind == "ragged":
            array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            values = array.flatten()
            if values.null_count:
                raise ValueError(
                    f"column {spec.name!r} of group {group.id!r} has null values inside its "
                    "lists, which a tensor cannot hold: fill them or leave the column out"
                )
            offsets = array.offsets.to_numpy().astype(np.int64)
            out[spec.name] = (_tensors.to_numpy(values), offsets - offsets[0])
        elif spec.kind == "array":
            out[spec.name] = _tensors.to_numpy(column)
        else:  # strings and bytes: tf.string takes str (as UTF-8) and bytes objects
            out[spec.name] = column.to_numpy()
    return out


def _examples(tf: Any, specs: list[ColumnSpec], columns: dict[str, Any]) -> Any:
    """A dataset of one example dict per row of a group's columns (tensors, rows first;
    ``(values, row_splits)`` for variable-length lists)."""
    ragged = {s.name for s in specs if s.kind == "ragged"}
    if not ragged:
        return tf.data.Dataset.from_tensor_slices({s.name: columns[s.name] for s in specs})
    # Slicing a RaggedTensor gives ragged_rank-0 specs that upset TF's type inference: slice
    # (start, end) pairs instead and cut each example's values out of the group's.
    sliced = {
        s.name: tf.stack([columns[s.name][1][:-1], columns[s.name][1][1:]], axis=1)
        if s.name in ragged
        else columns[s.name]
        for s in specs
    }

    def example(row: dict[str, Any]) -> dict[str, Any]:
        return {
            s.name: columns[s.name][0][row[s.name][0] : row[s.name][1]]
            if s.name in ragged
            else row[s.name]
            for s in specs
        }

    return tf.data.Dataset.from_tensor_slices(sliced).map(example)
