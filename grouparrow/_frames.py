"""Data frames and SQL as sources: Polars, pandas, DuckDB relations and SQL text.

Each returns ``(reader, description, size_hint)`` or None when ``source`` is not of its kind;
:func:`grouparrow.sources.open_source` dispatches here. A Polars ``LazyFrame`` and DuckDB
queries are streamed batch by batch, never collected whole.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from grouparrow._arrow import tables_reader
from grouparrow.errors import SourceError

_SQL_START = re.compile(r"^\s*(select|with|from|values|table|pivot|unpivot)\b", re.IGNORECASE)

FrameSource = tuple[pa.RecordBatchReader, dict[str, Any], int | None, list[Any]]


def looks_like_sql(text: str) -> bool:
    """Whether ``text`` is a query (``SELECT ...``, ``FROM ...``, ``WITH ...``) not a path.

    Example:
        >>> looks_like_sql("SELECT * FROM read_parquet('x.parquet')"), looks_like_sql("x.jsonl")
        (True, False)
    """
    return bool(_SQL_START.match(text))


def open_sql(query: str, batch_rows: int) -> FrameSource:
    """A DuckDB query, run on a connection of its own and streamed as Arrow batches."""
    import duckdb

    con = duckdb.connect()
    try:
        relation = con.sql(query)
        if relation is None:
            raise SourceError(f"the source query returns no rows to group: {query!r}")
        reader = relation.to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise SourceError(f"the source query failed: {exc}\nquery: {query}") from exc
    return reader, {"type": "sql", "query": query}, None, [con, relation]


def open_frame(source: Any, batch_rows: int) -> FrameSource | None:
    """Polars DataFrame/LazyFrame, pandas DataFrame or DuckDB relation; else None."""
    module = type(source).__module__.split(".")[0]
    name = type(source).__name__
    description = {"type": f"{module}.{name}"}
    if module == "polars" and name == "LazyFrame":
        return _polars_lazy(source, batch_rows), description, None, []
    if module == "polars" and name == "DataFrame":
        table = source.to_arrow()
        return table.to_reader(max_chunksize=batch_rows), description, table.nbytes, []
    if module == "pandas" and name == "DataFrame":
        table = pa.Table.from_pandas(source, preserve_index=False)
        return table.to_reader(max_chunksize=batch_rows), description, table.nbytes, []
    if module in ("duckdb", "_duckdb") and name == "DuckDBPyRelation":
        import duckdb

        try:
            reader = source.to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise SourceError(f"the DuckDB relation cannot be read: {exc}") from exc
        return reader, {"type": "duckdb.DuckDBPyRelation"}, None, [source]
    return None


def _polars_lazy(frame: Any, batch_rows: int) -> pa.RecordBatchReader:
    """A ``LazyFrame`` through Polars' streaming engine, one batch at a time."""
    batches = iter(frame.collect_batches(chunk_size=batch_rows, maintain_order=True))
    first = next(batches, None)
    if first is None:
        return frame.collect().to_arrow().to_reader()
    return tables_reader(first.to_arrow(), (frame_batch.to_arrow() for frame_batch in batches))
