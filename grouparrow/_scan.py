"""Shard files as PyArrow datasets that check every Parquet page's CRC-32, for DuckDB to scan.

DuckDB's own Parquet reader does not check page CRCs, so a byte flipped inside a data page
would reach SQL results unnoticed. Every SQL grouparrow runs over shards (the ``examples``
view of :mod:`grouparrow.query`, the label counts of :mod:`grouparrow.statistics`) scans them
through PyArrow instead, with ``page_checksum_verification``; DuckDB still pushes the
query's columns and filters down into the scan. Each shard is registered on the connection
under its own path (or URI), so that DuckDB's error for a damaged page names the file:
``reading the stream registered as '/data/ds/data/shard-00003-of-00008.parquet' failed:
IOError: could not verify page integrity, CRC checksum verification failed ...``.

Remote shards are opened without read-ahead (:meth:`Storage.open_ranges
<grouparrow.storage.Storage.open_ranges>`) and their column chunks fetched with
``pre_buffer``, as the group reader does.

Example:
    >>> import duckdb, grouparrow as ga, pyarrow as pa, tempfile
    >>> ds = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u",
    ...               output=tempfile.mkdtemp() + "/ds")
    >>> con = duckdb.connect()
    >>> from_shards = register_shards(con, ds.storage, [s.file for s in ds.manifest.shards],
    ...                               ds.manifest.schema)
    >>> con.sql(f"SELECT count(*) FROM ({from_shards})").fetchall()
    [(3,)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.fs

from grouparrow import _sql
from grouparrow.storage import Storage

if TYPE_CHECKING:
    import pyarrow.dataset as pads

#: Words of the error DuckDB raises when a scan meets a page whose CRC-32 does not match.
CRC_FAILURE = "CRC checksum verification failed"


class _RangesHandler(pyarrow.fs.FSSpecHandler):
    """An fsspec filesystem for PyArrow whose files read exactly the ranges asked for."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage.fs)
        self._storage = storage

    def open_input_file(self, path: str) -> Any:
        rel = path[len(self._storage.root) + 1 :]
        return pa.PythonFile(self._storage.open_ranges(rel), mode="r")


def scannable(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the types DuckDB cannot scan from Arrow replaced by those its Parquet
    reader gives the same columns (the scan casts): ``float16`` as ``float32``, in nested
    types too.

    Example:
        >>> scannable(pa.schema([("h", pa.list_(pa.float16()))])).field("h").type
        ListType(list<item: float>)
    """
    return pa.schema([f.with_type(_scannable(f.type)) for f in schema], metadata=schema.metadata)


def _scannable(t: pa.DataType) -> pa.DataType:
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_scannable(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_scannable(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_scannable(t.value_type)), t.list_size)
    if pa.types.is_map(t):
        key, item = t.key_field, t.item_field
        return pa.map_(key.with_type(_scannable(key.type)), item.with_type(_scannable(item.type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_scannable(f.type)) for f in t])
    return t


def shard_dataset(storage: Storage, rel: str, schema: pa.Schema) -> pads.Dataset:
    """The Parquet file ``rel`` of ``storage``, a shard of a dataset of ``schema``, as a
    dataset whose scans check page CRC-32s and cast to ``schema`` (Parquet's stored forms
    back to the dataset's types; types DuckDB cannot scan as :func:`scannable` says)."""
    import pyarrow.dataset as pads  # imports pandas: not on `import grouparrow`

    options = pads.ParquetFragmentScanOptions(
        page_checksum_verification=True, pre_buffer=not storage.local
    )
    file_format = pads.ParquetFileFormat(default_fragment_scan_options=options)
    filesystem = None if storage.local else pyarrow.fs.PyFileSystem(_RangesHandler(storage))
    return pads.dataset(
        storage.path(rel), schema=scannable(schema), format=file_format, filesystem=filesystem
    )


def register_shards(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    files: Sequence[str],
    schema: pa.Schema,
) -> str:
    """Register each shard of ``files`` (paths relative to ``storage``) on ``con`` under its
    full path or URI, as a :func:`shard_dataset`; returns a query of all their rows
    (the ``UNION ALL`` of the shards) to use as a subquery."""
    if not files:
        raise ValueError("register_shards needs at least one shard file")
    names = []
    for rel in files:
        name = storage.url(rel)
        con.register(name, shard_dataset(storage, rel, schema))
        names.append(name)
    return " UNION ALL ".join(f"SELECT * FROM {_sql.ident(name)}" for name in names)
