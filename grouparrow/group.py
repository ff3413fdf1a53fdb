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

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow._splits import check_fraction, row_mask
from grouparrow.adapters._columns import check_column
from grouparrow.keys import KeyValue

if TYPE_CHECKING:
    import datasets

#: A group's id: ``str``, ``bytes`` or ``int``, or a tuple of them for a composite key.
GroupId = KeyValue | tuple[KeyValue, ...]


class Group:
    """One group: its id and its rows, held as zero-copy slices of decoded record batches.

    Example:
        >>> group.id, group.num_rows            # doctest: +SKIP
        ('nytimes.com', 12)
        >>> group.to_arrow().column("text")     # doctest: +SKIP
    """

    __slots__ = ("_batches", "_schema", "_source", "id", "num_rows")

    def __init__(
        self,
        id: GroupId,
        batches: list[pa.RecordBatch],
        schema: pa.Schema,
        num_rows: int | None = None,
    ) -> None:
        self.id = id
        self._batches: list[pa.RecordBatch] | None = batches
        self._source: Callable[[], Iterator[pa.RecordBatch]] | None = None
        self._schema = schema
        self.num_rows = sum(b.num_rows for b in batches) if num_rows is None else num_rows

    @classmethod
    def lazy(
        cls,
        id: GroupId,
        source: Callable[[], Iterator[pa.RecordBatch]],
        schema: pa.Schema,
        num_rows: int,
    ) -> Group:
        """A group whose rows are read only when asked for: ``source()`` yields its batches
        anew on each call. The reader hands out large groups this way, so that
        :meth:`iter_batches` streams a group larger than memory.

        Example:
            >>> batch = pa.record_batch({"x": [1, 2, 3]})
            >>> big = Group.lazy("g", lambda: iter([batch]), batch.schema, 3)
            >>> [b.num_rows for b in big.iter_batches(2)]
            [2, 1]
        """
        group = cls(id, [], schema, num_rows)
        group._batches, group._source = None, source
        return group

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return f"Group(id={self.id!r}, num_rows={self.num_rows})"

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def _all(self) -> list[pa.RecordBatch]:
        if self._batches is None:
            assert self._source is not None
            self._batches = list(self._source())  # asked for all of it: keep it
        return self._batches

    def to_arrow(self) -> pa.Table:
        """The group's rows as a ``pyarrow.Table`` (no copy; one chunk per batch it spans)."""
        return pa.Table.from_batches(self._all(), schema=self._schema)

    def to_batches(self) -> list[pa.RecordBatch]:
        """The group's rows as record batches (zero-copy slices)."""
        return list(self._all())

    def iter_batches(self, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The group's rows in batches of at most ``batch_size`` rows, without concatenating.

        A large group (see :meth:`lazy`) is read row group by row group as the batches are
        consumed, so it never has to fit in memory.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be positive")
        batches = self._batches if self._batches is not None else self._source_batches()
        for batch in batches:
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    def _source_batches(self) -> Iterator[pa.RecordBatch]:
        assert self._source is not None
        return self._source()

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

    def to_numpy(
        self,
        column: str | None = None,
        *,
        shape: Sequence[int] | None = None,
        strings: Literal["object", "arrow"] = "object",
    ) -> Any:
        """One column as a NumPy array, or a dict of every column's array.

        Zero-copy where Arrow allows it (one chunk, fixed-width values, no nulls). A tensor
        column (``fixed_shape_tensor``, such as TFDS images or ``tensor_shapes=`` columns)
        is one ``(rows, *shape)`` array, a (nested) fixed-size list of numbers
        ``(rows, a, b, ...)``, ``fixed_size_binary[w]`` ``(rows, w)`` of uint8: views of
        Arrow's buffer when the group is one chunk without nulls (a group that spans row
        groups is concatenated first: one copy). ``shape`` reshapes each row's fixed-width
        values (equal-length ``binary`` too), also without a copy.

        Strings and variable-length bytes are NumPy object arrays of Python ``str`` /
        ``bytes`` (None for nulls): one Python object made per row. With ``strings="arrow"``
        they stay a ``pyarrow.Array`` instead, with no copy when the group is one chunk (for
        ``pyarrow.compute`` or a tokenizer that reads Arrow). Nested columns (lists, structs)
        are object arrays of Python values.

        Example:
            >>> group.to_numpy("pixels", shape=(28, 28)).shape    # doctest: +SKIP
            (12, 28, 28)
            >>> group.to_numpy("text", strings="arrow").type      # doctest: +SKIP
            DataType(string)
        """
        if strings not in ("object", "arrow"):
            raise ValueError(f'strings={strings!r} must be "object" or "arrow"')
        if column is not None:
            check_column(self._schema, column, "column")
            return _column_to_numpy(self.to_arrow().column(column), shape, strings)
        table = self.to_arrow()
        if shape is not None:
            raise ValueError("to_numpy(shape=...) reshapes one column: name it")
        return {
            name: _column_to_numpy(table.column(name), None, strings) for name in table.column_names
        }

    def to_polars(self) -> Any:
        """The group's rows as a ``polars.DataFrame``."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_pandas(self) -> Any:
        """The group's rows as a ``pandas.DataFrame`` (needs pandas)."""
        return self.to_arrow().to_pandas()

    @overload
    def to_torch(self, column: None = None) -> dict[str, Any]: ...
    @overload
    def to_torch(self, column: str) -> Any: ...
    def to_torch(self, column: str | None = None) -> Any:
        """One column as a ``torch.Tensor``, or a dict of every column's: numbers, booleans
        and tensor columns as tensors that share Arrow's memory where the dtype allows
        (read-only views: ``.clone()`` one to write to it), strings, bytes and other columns
        as Python lists; a column with nulls is an error.
        :func:`grouparrow.adapters.torch.to_torch`; needs ``pip install 'grouparrow[torch]'``.

        Example:
            >>> group.to_torch("pixels").shape    # doctest: +SKIP
            torch.Size([12, 28, 28])
        """
        from grouparrow.adapters import _require

        return _require("grouparrow.adapters.torch").to_torch(self, column)

    def to_hf(self) -> datasets.Dataset:
        """The group's rows as a Hugging Face ``datasets.Dataset`` over its Arrow table, with
        no copy (tensor columns become nested fixed-size lists, ``Array``-like features):
        :func:`grouparrow.adapters.hf.to_hf`.

        Example:
            >>> group.to_hf().with_format("torch")[:]["label"]   # doctest: +SKIP
            tensor([3, 1, 4])
        """
        from grouparrow.adapters.hf import to_hf

        return to_hf(self)

    def tokenize_and_pack(
        self, tokenizer: Any, seq_len: int, **kwargs: Any
    ) -> dict[str, np.ndarray]:
        """The group's texts (``column="text"`` by default) tokenized, concatenated and cut
        into ``seq_len``-token blocks of ``input_ids``, ``targets`` (shifted by one) and
        ``mask``: :func:`grouparrow.lm.tokenize_and_pack` of this group.

        Example:
            >>> out = group.tokenize_and_pack(tokenizer, 128, eos_id=0)   # doctest: +SKIP
            >>> out["input_ids"].shape, out["targets"].shape              # doctest: +SKIP
            ((37, 128), (37, 128))
        """
        from grouparrow.lm import tokenize_and_pack

        return tokenize_and_pack(self, tokenizer, seq_len, **kwargs)

    def to_jax(
        self,
        pad_to: int | None = None,
        columns: Sequence[str] | None = None,
        *,
        truncate: bool = False,
        device: Any = None,
    ) -> dict[str, Any]:
        """The group's ``columns`` (all when None; strings must be left out) as ``jax.Array`` s
        via ``jax.device_put``: all rows, or with ``pad_to`` zero-padded to that many rows
        plus a bool ``mask``, so that ``jit`` compiles once for groups of any size
        (``truncate=True`` keeps the first ``pad_to`` rows of a larger group; else it is an
        error): :func:`grouparrow.adapters.jax.to_jax`. Needs ``pip install 'grouparrow[jax]'``.

        Example:
            >>> arrays = group.to_jax(pad_to=64, columns=["pixels", "label"])   # doctest: +SKIP
            >>> arrays["pixels"].shape, arrays["mask"].shape                    # doctest: +SKIP
            ((64, 28, 28), (64,))
        """
        from grouparrow.adapters.jax import to_jax

        return to_jax(self, pad_to, columns, truncate=truncate, device=device)


def _column_to_numpy(
    column: pa.ChunkedArray, shape: Sequence[int] | None, strings: str
) -> np.ndarray | pa.Array:
    """``column`` as :meth:`Group.to_numpy` gives it."""
    kind = column.type
    text = (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
    )
    if strings == "arrow" and text and shape is None:
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return _tensors.to_numpy(column, shape)
