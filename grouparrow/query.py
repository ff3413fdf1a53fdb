"""SQL over a grouped dataset with DuckDB: the ``examples``, ``groups`` and ``labels`` views,
grouparrow's macros, and errors that show the query.

``ds.sql(query)`` returns a DuckDB relation (``.pl()``, ``.arrow()``, ``.df()``,
``.fetchall()``); ``ds.connect()`` hands over a connection with the same views for longer
work. Values go in as bound parameters (``params=``), never pasted into the text.

A remote dataset's fsspec filesystem is registered on the connection
(:meth:`Storage.register <grouparrow.storage.Storage.register>`), and the views read its
URIs through it: DuckDB's httpfs extension is not needed.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> ds = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u",
    ...               output=tempfile.mkdtemp() + "/ds")
    >>> ds.sql("SELECT group_id, num_rows FROM groups ORDER BY 1").fetchall()
    [('a', 2), ('b', 1)]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from grouparrow import _sql
from grouparrow.errors import QueryError

if TYPE_CHECKING:
    from grouparrow.dataset import GroupedDataset

#: The views every connection has (``labels`` only when the index holds label counts).
VIEWS = ("examples", "groups", "labels")


def connect(ds: GroupedDataset) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the dataset's views and grouparrow's macros.

    In a :meth:`~grouparrow.GroupedDataset.split_groups` view, ``examples`` and ``groups``
    hold that side's groups only.

    Example:
        >>> con = ds.connect()                                            # doctest: +SKIP
        >>> con.sql("SELECT count(*) FROM examples").fetchone()           # doctest: +SKIP
        (105153,)
    """
    if ds._row_splits:
        raise QueryError(
            "SQL over a split_rows() view is not supported (its rows are chosen per group "
            "in Python); query the dataset it came from"
        )
    storage = ds.storage
    files = [storage.url(shard.file) for shard in ds.manifest.shards]
    con = duckdb.connect()
    storage.register(con)  # a remote dataset: DuckDB reads through its fsspec filesystem
    examples_filter = groups_filter = ""
    if ds._group_splits:
        ids = ds.index.column("group_id")
        con.register("__ga_selected", pa.table({"group_id": ids}))
        selected = "IN (SELECT group_id FROM __ga_selected)"
        examples_filter = f"WHERE {_sql.ident(ds.key_column)} {selected}"
        groups_filter = f"WHERE group_id {selected}"
    con.execute(_sql.load("macros"))
    con.execute(_sql.load("stats"))
    con.execute(
        _sql.render(
            "views",
            files="[" + ", ".join(_sql.literal(f) for f in files) + "]",
            index=_sql.literal(storage.url(ds.manifest.index)),
            examples_filter=examples_filter,
            groups_filter=groups_filter,
        )
    )
    if ds.manifest.label_column is not None:
        con.execute(_sql.load("labels"))
    return con


def run(con: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
    """``con.sql(query, params=params)``, a failure raised as :class:`QueryError` that
    shows the query (DuckDB parses and binds here; errors while rows are fetched later come
    from DuckDB as they are)."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError(f"the query must be non-empty SQL text, got {query!r}")
    try:
        return con.sql(query, params=params)
    except duckdb.Error as exc:
        shown = query if len(query) <= 2000 else query[:2000] + " ..."
        raise QueryError(
            f"{type(exc).__name__}: {exc}\nin the query:\n    {shown}\n"
            f"(views: {', '.join(VIEWS)}; see grouparrow/FORMAT.md for their columns)"
        ) from exc


class Connections:
    """One connection per process for ``ds.sql`` (a DuckDB connection does not survive a
    fork), made on first use."""

    def __init__(self) -> None:
        self._pid = -1
        self._con: duckdb.DuckDBPyConnection | None = None

    def get(self, ds: GroupedDataset) -> duckdb.DuckDBPyConnection:
        if self._con is None or self._pid != os.getpid():
            self._con, self._pid = connect(ds), os.getpid()
        return self._con

    def __getstate__(self) -> dict[str, Any]:
        return {"_pid": -1, "_con": None}
