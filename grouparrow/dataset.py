"""Reading a grouped dataset: streaming groups, random access by key.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> out = tempfile.mkdtemp() + "/ds"
    >>> _ = ga.build(pa.table({"user": ["a", "b", "a"], "x": [1, 2, 3]}), key="user", output=out)
    >>> ds = ga.open(out)
    >>> ds["a"].to_pylist()
    [{'group_id': 'a', 'user': 'a', 'x': 1}, {'group_id': 'a', 'user': 'a', 'x': 3}]
    >>> sorted(g.id for g in ds.iter_groups(shuffle=True, seed=1))
    ['a', 'b']
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grouparrow import _arrow
from grouparrow.errors import CorruptDatasetError, FormatError, GroupNotFoundError
from grouparrow.format import INDEX, Manifest, read_manifest
from grouparrow.keys import KeyValue, shard_of

_OPEN_FILES = 64
_EMPTY_BATCH = pa.record_batch({})


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
        id: KeyValue,
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

    def to_pylist(self) -> list[dict[str, Any]]:
        """The group's rows as a list of dicts."""
        return self.to_arrow().to_pylist()

    def to_numpy(self, column: str | None = None) -> Any:
        """One column as a NumPy array, or a dict of every column's array.

        Zero-copy where Arrow allows it (one chunk, fixed-width values, no nulls).
        """
        table = self.to_arrow()
        if column is not None:
            return _column_to_numpy(table.column(column))
        return {name: _column_to_numpy(table.column(name)) for name in table.column_names}

    def to_polars(self) -> Any:
        """The group's rows as a ``polars.DataFrame``."""
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_pandas(self) -> Any:
        """The group's rows as a ``pandas.DataFrame`` (needs pandas)."""
        return self.to_arrow().to_pandas()


def _column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_fixed_size_binary(array.type) and array.null_count == 0:
        width = array.type.byte_width
        data = np.frombuffer(array.buffers()[1], np.uint8)
        start = array.offset * width
        return data[start : start + len(array) * width].reshape(len(array), width)
    return array.to_numpy(zero_copy_only=False)


class GroupedDataset:
    """A grouped dataset on disk: a manifest, an index and group-clustered Parquet shards.

    Open one with :func:`grouparrow.open`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest: Manifest = read_manifest(self.path)
        counts = [s.num_groups for s in self.manifest.shards]
        self._group_starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._lookups: OrderedDict[int, dict[Any, int]] = OrderedDict()
        self._index_parts: OrderedDict[int, pa.Table] = OrderedDict()
        self._starts: OrderedDict[int, list[int]] = OrderedDict()
        # Parquet stores a few types in another form (timestamp[s] as [ms]): cast them back.
        self._restore = not _arrow.parquet_schema(self.schema).equals(self.schema)

    def __repr__(self) -> str:
        return (
            f"GroupedDataset({str(self.path)!r}, num_groups={self.num_groups:,}, "
            f"num_rows={self.num_rows:,}, num_shards={self.num_shards})"
        )

    # -- metadata ---------------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return self.manifest.num_groups

    @property
    def num_rows(self) -> int:
        return self.manifest.num_rows

    @property
    def num_shards(self) -> int:
        return self.manifest.num_shards

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows: the key column first, then the source columns."""
        return self.manifest.schema

    @property
    def key_column(self) -> str:
        return self.manifest.key_column

    def __len__(self) -> int:
        return self.num_groups

    @cached_property
    def _index_file(self) -> pq.ParquetFile:
        try:
            index = pq.ParquetFile(self.path / INDEX)
        except FileNotFoundError:
            raise CorruptDatasetError(
                f"{self.path / INDEX} is missing; rebuild the dataset"
            ) from None
        except (pa.ArrowException, OSError) as exc:
            raise CorruptDatasetError(f"{self.path / INDEX} cannot be read: {exc}") from exc
        if index.metadata.num_rows != self.num_groups:
            raise CorruptDatasetError(
                f"{self.path / INDEX} has {index.metadata.num_rows} rows but the manifest "
                f"lists {self.num_groups} groups; the dataset is damaged: rebuild it"
            )
        return index

    @property
    def index(self) -> pa.Table:
        """The whole index as a ``pyarrow.Table``: one row per group, in shard order."""
        try:
            return self._index_file.read()
        except (pa.ArrowException, OSError) as exc:
            raise CorruptDatasetError(f"{self.path / INDEX} cannot be read: {exc}") from exc

    def group_ids(self) -> list[KeyValue]:
        """Every group id, in storage order (shard by shard)."""
        return self._index_file.read(columns=["group_id"]).column(0).to_pylist()

    def shard_index(self, shard: int) -> pa.Table:
        """The index rows of one shard, in the order its groups are stored."""
        part = self._index_parts.get(shard)
        if part is None:
            part = self._read_index_part(shard)
            _remember(self._index_parts, shard, part, 8)
        return part

    def _read_index_part(self, shard: int) -> pa.Table:
        index = self._index_file
        start, end = int(self._group_starts[shard]), int(self._group_starts[shard + 1])
        if end == start:
            return index.schema_arrow.empty_table()
        meta = index.metadata
        row_groups, first, position = [], None, 0
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if position < end and position + n > start:
                row_groups.append(i)
                first = position if first is None else first
            position += n
        try:
            table = index.read_row_groups(row_groups)
        except (pa.ArrowException, OSError) as exc:
            raise CorruptDatasetError(f"{self.path / INDEX} cannot be read: {exc}") from exc
        return table.slice(start - (first or 0), end - start)

    # -- random access ----------------------------------------------------------------------
    def __contains__(self, group_id: object) -> bool:
        try:
            self._locate(group_id)
        except GroupNotFoundError:
            return False
        return True

    def __getitem__(self, group_id: KeyValue) -> Group:
        """One group by id; reads only the Parquet row groups that hold it."""
        shard, row = self._locate(group_id)
        part = self.shard_index(shard)
        offset = part.column("offset")[row].as_py()
        num_rows = part.column("num_rows")[row].as_py()
        return Group(group_id, self._read_rows(shard, offset, num_rows), self.schema)

    def get(self, group_id: KeyValue, default: Any = None) -> Group | Any:
        """The group with this id, or ``default`` when there is none."""
        try:
            return self[group_id]
        except GroupNotFoundError:
            return default

    def _locate(self, group_id: object) -> tuple[int, int]:
        if isinstance(group_id, pa.Scalar):
            group_id = group_id.as_py()
        elif isinstance(group_id, np.integer):
            group_id = int(group_id)
        elif isinstance(group_id, np.str_):
            group_id = str(group_id)
        if not isinstance(group_id, (str, bytes, int)) or isinstance(group_id, bool):
            raise GroupNotFoundError(
                f"no group {group_id!r}: group ids of this dataset are {self.manifest.key_type}"
            )
        try:
            shard = shard_of(group_id, self.manifest.seed, self.num_shards)
        except TypeError:
            shard = 0
        lookup = self._lookups.get(shard)
        if lookup is None:
            ids = self.shard_index(shard).column("group_id").to_pylist()
            lookup = {gid: i for i, gid in enumerate(ids)}
            _remember(self._lookups, shard, lookup, 8)
        row = lookup.get(group_id)
        if row is None:
            raise GroupNotFoundError(
                f"no group {group_id!r} in {str(self.path)!r} "
                f"({self.num_groups:,} groups, keys of type {self.manifest.key_type})"
            )
        return shard, row

    def _read_rows(self, shard: int, offset: int, num_rows: int) -> list[pa.RecordBatch]:
        file = self._file(shard)
        starts = self._row_group_starts(shard)
        first = bisect.bisect_right(starts, offset) - 1
        last = bisect.bisect_right(starts, offset + max(num_rows, 1) - 1) - 1
        try:
            table = file.read_row_groups(list(range(first, last + 1)), use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise self._damaged(shard, exc) from exc
        batches = table.slice(offset - starts[first], num_rows).to_batches()
        if self._restore:
            batches = [_arrow.conform(b, self.schema) for b in batches]
        return batches or [pa.RecordBatch.from_pylist([], self.schema)]

    # -- streaming --------------------------------------------------------------------------
    def iter_groups(
        self, *, shuffle: bool = False, seed: int = 0, columns: Sequence[str] | None = None
    ) -> Iterator[Group]:
        """Every group once, streamed shard by shard as zero-copy slices of decoded batches.

        With ``shuffle=True`` the order of shards and the group each shard starts at are
        drawn from ``seed`` (groups are stored in a seeded pseudo-random order already).
        ``columns`` reads only those columns.
        """
        order = list(range(self.num_shards))
        rng = np.random.default_rng(seed)
        if shuffle:
            rng.shuffle(order)
        for shard in order:
            count = self.manifest.shards[shard].num_groups
            if not count:
                continue
            start = int(rng.integers(count)) if shuffle else 0
            yield from self._stream(shard, start, count, columns)
            if start:
                yield from self._stream(shard, 0, start, columns)

    #: Dataset Grouper's name for the stream of groups.
    build_group_stream = iter_groups

    def __iter__(self) -> Iterator[Group]:
        return self.iter_groups()

    def _stream(
        self, shard: int, first: int, end: int, columns: Sequence[str] | None
    ) -> Iterator[Group]:
        part = self.shard_index(shard).slice(first, end - first)
        ids = part.column("group_id").to_pylist()
        offsets = part.column("offset").to_numpy().tolist()
        counts = part.column("num_rows").to_numpy().tolist()
        if not ids:
            return
        file = self._file(shard)
        starts = self._row_group_starts(shard)
        names = list(columns) if columns is not None else None
        schema = self.schema if names is None else pa.schema([self.schema.field(n) for n in names])
        rg = bisect.bisect_right(starts, offsets[0]) - 1
        batch, lo, hi = _EMPTY_BATCH, 0, 0
        for gid, offset, count in zip(ids, offsets, counts, strict=True):
            if lo <= offset and offset + count <= hi:  # the common case: inside this batch
                yield Group(gid, [batch.slice(offset - lo, count)], schema, count)
                continue
            pieces = []
            total = count
            while count > 0:
                while offset >= hi:
                    batch = self._row_group(file, shard, rg, names, schema)
                    lo, hi = starts[rg], starts[rg + 1]
                    rg += 1
                take = min(count, hi - offset)
                pieces.append(batch.slice(offset - lo, take))
                offset += take
                count -= take
            yield Group(gid, pieces, schema, total)

    def _row_group(
        self,
        file: pq.ParquetFile,
        shard: int,
        rg: int,
        columns: list[str] | None,
        schema: pa.Schema,
    ) -> pa.RecordBatch:
        try:
            table = file.read_row_group(rg, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise self._damaged(shard, exc) from exc
        batches = table.to_batches()
        batch = batches[0] if len(batches) == 1 else table.combine_chunks().to_batches()[0]
        return _arrow.conform(batch, schema) if self._restore else batch

    # -- files ------------------------------------------------------------------------------
    def _file(self, shard: int) -> pq.ParquetFile:
        file = self._files.get(shard)
        if file is None:
            path = self.path / self.manifest.shards[shard].file
            try:
                file = pq.ParquetFile(path)
            except FileNotFoundError:
                raise CorruptDatasetError(
                    f"shard file {path} is missing; the dataset is damaged: rebuild it"
                ) from None
            except (pa.ArrowException, OSError) as exc:
                raise self._damaged(shard, exc) from exc
            if file.metadata.num_rows != self.manifest.shards[shard].num_rows:
                raise CorruptDatasetError(
                    f"shard file {path} has {file.metadata.num_rows} rows but the manifest "
                    f"lists {self.manifest.shards[shard].num_rows}; the dataset is damaged"
                )
            _remember(self._files, shard, file, _OPEN_FILES)
        return file

    def _row_group_starts(self, shard: int) -> list[int]:
        """First row of each row group of a shard, then its row count (cached: hot on
        random access)."""
        starts = self._starts.get(shard)
        if starts is None:
            meta = self._file(shard).metadata
            starts = [0]
            for i in range(meta.num_row_groups):
                starts.append(starts[-1] + meta.row_group(i).num_rows)
            _remember(self._starts, shard, starts, _OPEN_FILES)
        return starts

    def _damaged(self, shard: int, exc: BaseException) -> FormatError:
        path = self.path / self.manifest.shards[shard].file
        return CorruptDatasetError(
            f"shard file {path} cannot be read ({exc}); run grouparrow verify"
        )


def _remember(cache: OrderedDict[int, Any], key: int, value: Any, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


def open(path: str | os.PathLike[str]) -> GroupedDataset:
    """Open the grouped dataset at ``path`` (a directory written by :func:`grouparrow.build`).

    Example:
        >>> ds = grouparrow.open("out/fedc4-sample")   # doctest: +SKIP
        >>> ds.num_groups                              # doctest: +SKIP
        998
    """
    return GroupedDataset(path)


#: Dataset Grouper's name for a grouped dataset.
PartitionedDataset = GroupedDataset
