"""One group: its id and its rows, as zero-copy slices of decoded record batches, with
conversions to Arrow, NumPy, Polars and pandas (the frameworks' in :mod:`grouparrow.adapters`).

Example:
    >>> import pyarrow as pa
    >>> batch = pa.record_batch({"user": ["ann", "ann"], "x": [1, 2]})
    >>> group = Group("ann", [batch], batch.schema)
    >>> group.num_rows, group.to_numpy("x").tolist()
    (2, [1, 2])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow._splits import check_fraction, row_mask
from grouparrow.keys import KeyValue

#: A group's id: ``str``, ``bytes`` or ``int``, or a tuple of them for a composite key.
GroupId = KeyValue | tuple[KeyValue, ...]


class Group:
    """One group: its id and its rows, held as zero-copy slices of decoded record batches.

    Example:
        >>> group.id, group.num_rows            # doctest: +SKIP
        ('nytimes.com', 12)
        >>> group.to_arrow().column("text")     # doctest: +SKIP
    """

    __slots__ = ("_batches", "_schema", "id", "num_rows")

    def __init__(
        self,
        id: GroupId,
        batches: list[pa.RecordBatch],
        schema: pa.Schema,
        num_rows: int | None = None,
    ) -> None:
        self.id = id
        self._batches = batches
        self._schema = schema
        self.num_rows = sum(b.num_rows for b in batches) if num_rows is None else num_rows

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return f"Group(id={self.id!r}, num_rows={self.num_rows})"

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def to_arrow(self) -> pa.Table:
        """The group's rows as a ``pyarrow.Table`` (no copy; one chunk per batch it spans)."""
        return pa.Table.from_batches(self._batches, schema=self._schema)

    def to_batches(self) -> list[pa.RecordBatch]:
        """The group's rows as record batches (zero-copy slices)."""
        return list(self._batches)

    def iter_batches(self, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The group's rows in batches of at most ``batch_size`` rows, without concatenating."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be positive")
        for batch in self._batches:
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    def split(self, fraction: float, *, seed: int = 0) -> tuple[Group, Group]:
        """The group's rows split into (train, eval) parts, ``fraction`` of them (in
        expectation) in eval, by a hash of ``(seed, group id, position in the group)``: the
        same rows as :meth:`GroupedDataset.split_rows` with that seed (rows are copied).

        Example:
            >>> train, test = group.split(0.2, seed=0)   # doctest: +SKIP
            >>> train.num_rows + test.num_rows == group.num_rows   # doctest: +SKIP
            True
        """
        test = row_mask([self.id], np.array([self.num_rows]), check_fraction(fraction, seed), seed)
        return self._take(~test), self._take(test)

    def _take(self, mask: np.ndarray) -> Group:
        table = self.to_arrow().filter(pa.array(mask))
        return Group(self.id, table.to_batches(), self._schema, table.num_rows)

    def to_pylist(self) -> list[dict[str, Any]]:
        """The group's rows as a list of dicts."""
        return self.to_arrow().to_pylist()

    def to_numpy(self, column: str | None = None, *, shape: Sequence[int] | None = None) -> Any:
        """One column as a NumPy array, or a dict of every column's array.

        Zero-copy where Arrow allows it (one chunk, fixed-width values, no nulls). A tensor
        column (``fixed_shape_tensor``, such as TFDS images or ``tensor_shapes=`` columns)
        is one ``(rows, *shape)`` array, a (nested) fixed-size list of numbers
        ``(rows, a, b, ...)``, ``fixed_size_binary[w]`` ``(rows, w)`` of uint8: views of
        Arrow's buffer when the group is one chunk without nulls (a group that spans row
        groups is concatenated first: one copy). ``shape`` reshapes each row's fixed-width
        values (equal-length ``binary`` too), also without a copy.

        Example:
            >>> group.to_numpy("pixels", shape=(28, 28)).shape    # doctest: +SKIP
            (12, 28, 28)
        """
        table = self.to_arrow()
        if column is not None:
            return _tensors.to_numpy(table.column(column), shape)
        if shape is not None:
            raise ValueError("to_numpy(shape=...) reshapes one column: name it")
        return {name: _tensors.to_numpy(table.column(name)) for name in table.column_names}

    def to_polars(self) -> Any:
        """The group's rows as a ``polars.DataFrame``."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_pandas(self) -> Any:
        """The group's rows as a ``pandas.DataFrame`` (needs pandas)."""
        return self.to_arrow().to_pandas()
