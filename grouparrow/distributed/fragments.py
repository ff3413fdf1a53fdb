"""A source cut into fragments: the units of the distributed map step.

A fragment is a run of row groups of one Parquet file, one CSV or JSON-lines file, or a
range of rows of an in-memory Arrow table (a ``pyarrow.Table``, or a ``datasets.Dataset``'s
own table). Each opens as a :class:`~grouparrow.sources.Source` whose rows carry the numbers
the local engine gives them (``file_index << 40 | row in file`` for files, the row's
position for tables), so that rows of a group keep their input order however the source was
cut, and a distributed build writes the same shards as a local one.

Example:
    >>> import pyarrow as pa
    >>> parts = fragments(pa.table({"x": list(range(10))}), target_bytes=40)
    >>> [(f.first_row, f.num_rows) for f in parts]
    [(0, 5), (5, 5)]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from grouparrow import _arrow
from grouparrow.errors import SourceError
from grouparrow.sources import (
    _FILE_SHIFT,
    BATCH_ROWS,
    RowLabel,
    Source,
    _expand,
    checked_reader,
    file_format,
    input_storage,
    parquet_file,
)
from grouparrow.storage import Storage

#: Uncompressed bytes of input per map task (Parquet row groups are not split).
FRAGMENT_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Fragment:
    """One map task's input. ``first_row`` is the ``__ga_row`` of its first row."""

    index: int
    first_row: int
    num_rows: int | None
    schema: pa.Schema
    label: RowLabel
    path: str | None = None
    kind: str = "table"
    row_groups: tuple[int, ...] = ()
    table: pa.Table | None = None
    storage: Storage | None = None  # the filesystem of a URI ``path``

    def describe(self) -> str:
        if self.path is None:
            return f"rows {self.first_row}..{self.first_row + (self.num_rows or 0) - 1}"
        groups = (
            f" row groups {self.row_groups[0]}..{self.row_groups[-1]}" if self.row_groups else ""
        )
        return f"{self.path!r}{groups}"

    def open(self) -> Source:
        """The fragment's rows, in the source's schema, numbered from ``first_row``."""
        description = {"fragment": self.index, "of": self.describe()}
        if self.table is not None:
            # The same checks as the local engine's sources (column names, UTF-8).
            reader = checked_reader(self.table.to_reader(max_chunksize=BATCH_ROWS))
            return Source(reader, description, self.table.nbytes, row_label=self.label)
        assert self.path is not None
        batches = self._parquet() if self.kind == "parquet" else self._with_duckdb()
        reader = pa.RecordBatchReader.from_batches(self.schema, batches)
        if self.kind == "parquet":
            reader = checked_reader(reader)
        return Source(reader, description, row_label=self.label)

    def _parquet(self) -> Iterator[pa.RecordBatch]:
        assert self.path is not None
        file = parquet_file(self.path, self.storage)
        for batch in file.iter_batches(BATCH_ROWS, row_groups=list(self.row_groups)):
            yield _align(batch, self.schema)

    def _with_duckdb(self) -> Iterator[pa.RecordBatch]:
        import duckdb

        con = duckdb.connect(config={"threads": 1})
        if self.storage is not None:
            self.storage.register(con)
        try:
            function = "read_csv" if self.kind == "csv" else "read_json"
            relation = con.sql(f"SELECT * FROM {function}($path)", params={"path": self.path})
            for batch in relation.to_arrow_reader(BATCH_ROWS):
                yield _align(batch, self.schema)
        finally:
            con.close()


def fragments(
    source: Any,
    schema: pa.Schema | None = None,
    *,
    target_bytes: int = FRAGMENT_BYTES,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Fragment]:
    """``source`` cut into fragments of about ``target_bytes`` of Arrow data each.

    Files (paths, globs, directories of Parquet, CSV or JSON lines), ``pyarrow`` Tables and
    record batches, ``datasets.Dataset`` (without an indices mapping), Polars and pandas
    frames. ``schema``: the source's schema as the driver read it (files are cast to it).
    Files may be URIs, read with ``storage_options``.
    """
    if isinstance(source, (str, os.PathLike)) or (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(s, (str, os.PathLike)) for s in source)
    ):
        storage = input_storage(source, storage_options)
        return _file_fragments(_expand(source, storage), schema, target_bytes, storage)
    table = _as_table(source)
    if table is None:
        raise SourceError(
            f"engine='ray' cannot cut a {type(source).__module__}.{type(source).__qualname__} "
            "into tasks: pass Parquet/CSV/JSON-lines files (paths, globs, directories), a "
            "pyarrow Table, a datasets.Dataset, or a Polars/pandas DataFrame; or build with "
            "engine='local'"
        )
    return _table_fragments(table, target_bytes)


def _as_table(source: Any) -> pa.Table | None:
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    module = type(source).__module__
    if module.startswith("datasets"):
        import datasets

        if isinstance(source, datasets.Dataset):
            if getattr(source, "_indices", None) is not None:
                raise SourceError(
                    "engine='ray' needs a datasets.Dataset without an indices mapping (after "
                    "select/shuffle/train_test_split): call dataset.flatten_indices() first"
                )
            return source.data.table
        return None
    if module.startswith(("polars", "pandas")) and hasattr(source, "__arrow_c_stream__"):
        return pa.table(source)
    return None


def _table_fragments(table: pa.Table, target_bytes: int) -> list[Fragment]:
    n = table.num_rows
    per_row = max(table.nbytes / max(n, 1), 1.0)
    rows = max(1, int(target_bytes // per_row))
    out = []
    for i, start in enumerate(range(0, max(n, 1), rows)):
        part = table.slice(start, rows)
        out.append(Fragment(i, start, part.num_rows, table.schema, RowLabel(), table=part))
    return out


def _file_fragments(
    paths: list[str], schema: pa.Schema | None, target_bytes: int, storage: Storage | None
) -> list[Fragment]:
    kinds = {file_format(p) for p in paths}
    if None in kinds or len(kinds) != 1:
        raise SourceError(
            f"engine='ray' reads files of one format (Parquet, CSV or JSON lines); got {paths!r}"
        )
    kind = kinds.pop()
    assert kind is not None
    absolute = tuple(paths if storage is not None else (os.path.abspath(p) for p in paths))
    label = RowLabel(absolute)
    if kind != "parquet":
        if schema is None:
            raise ValueError("CSV and JSON fragments need the source's schema")
        return [
            Fragment(i, i << _FILE_SHIFT, None, schema, label, path=p, kind=kind, storage=storage)
            for i, p in enumerate(absolute)
        ]
    out: list[Fragment] = []
    for i, path in enumerate(absolute):
        meta = parquet_file(path, storage).metadata
        file_schema = schema or meta.schema.to_arrow_schema()
        row, size, first = 0, 0, 0
        groups: list[int] = []
        for rg in range(meta.num_row_groups):
            if groups and size + meta.row_group(rg).total_byte_size > target_bytes:
                out.append(
                    _parquet_fragment(len(out), path, i, first, groups, file_schema, label, meta)
                )
                groups, size, first = [], 0, row
            groups.append(rg)
            size += meta.row_group(rg).total_byte_size
            row += meta.row_group(rg).num_rows
        if groups or meta.num_row_groups == 0:
            out.append(
                _parquet_fragment(len(out), path, i, first, groups, file_schema, label, meta)
            )
    return [dataclasses.replace(f, storage=storage) for f in out]


def _parquet_fragment(
    index: int,
    path: str,
    file_index: int,
    first: int,
    groups: list[int],
    schema: pa.Schema,
    label: RowLabel,
    meta: Any,
) -> Fragment:
    rows = sum(meta.row_group(g).num_rows for g in groups)
    return Fragment(
        index,
        (file_index << _FILE_SHIFT) + first,
        rows,
        schema,
        label,
        path=path,
        kind="parquet",
        row_groups=tuple(groups),
    )


def _align(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in ``schema``: columns by name, cast; a column it lacks is null (files read
    with ``union_by_name``)."""
    if batch.schema.names == schema.names:
        return _arrow.conform(batch, schema)
    columns = [
        batch.column(f.name) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    names = pa.schema([pa.field(f.name, c.type) for f, c in zip(schema, columns, strict=True)])
    return _arrow.conform(pa.RecordBatch.from_arrays(columns, schema=names), schema)
