"""SQL over a grouped dataset with DuckDB: the ``examples``, ``groups`` and ``labels`` views,
grouparrow's macros, and errors that show the query.

``ds.sql(query)`` returns a DuckDB relation (``.pl()``, ``.arrow()``, ``.df()``,
``.fetchall()``); ``ds.connect()`` hands over a connection with the same views for longer
work. Values go in as bound parameters (``params=``), never pasted into the text.

The ``examples`` view scans the shards through PyArrow, which checks every Parquet page's
CRC-32 (:mod:`grouparrow._scan`; DuckDB's own reader does not): a damaged page makes the
query fail with DuckDB's error naming the shard file, never return its bytes. DuckDB pushes
columns and filters into that scan; ``checked=False`` reads the shards with DuckDB's
``read_parquet`` instead, unchecked, faster on selective queries (it skips pages by their
statistics) and cheaper to set up over thousands of shards (bench/RESULTS.md, "SQL over
examples"). The ``groups`` view reads the index, which opening a dataset checks whole.

A remote dataset's fsspec filesystem is registered on the connection
(:meth:`Storage.register <grouparrow.storage.Storage.register>`), and the views read its
URIs through it: DuckDB's httpfs extension is not needed.

What SQL can do. ``ds.sql`` and ``ds.connect`` hand over a plain in-memory DuckDB
connection with the process's rights: it reads the dataset, and DuckDB's SQL can do there
whatever DuckDB can. Run only SQL you would run in the ``duckdb`` shell:

* read any file the process can read (``read_csv('/etc/passwd')``, ``read_text``,
  ``read_parquet('s3://...')`` with DuckDB's own credentials), and URLs once the httpfs
  extension is loaded;
* write files: ``COPY (SELECT ...) TO 'file'``, ``EXPORT DATABASE 'dir'``, ``ATTACH
  'new.duckdb'`` (creates a database file);
* install (network) and load extensions (``INSTALL``, ``LOAD``; DuckDB also installs and
  loads known extensions on first use of their functions);
* change the connection's settings (``SET memory_limit``, ``SET threads``, profiling output
  files) and create tables, views and macros in memory. ``ds.sql`` keeps one connection
  per dataset object and process, so such changes last: ``CREATE OR REPLACE VIEW groups``
  changes what later ``ds.sql`` calls see (``ds.connect()`` gives a fresh connection).

It cannot change the dataset through the views (they read Parquet files; DuckDB does not
write to a file a view reads), but ``COPY ... TO`` a shard's path would overwrite it, as
any program could. Several statements separated by ``;`` all run; the last one's rows are
returned.

``grouparrow sql`` (:func:`check_read_only`) runs only statements that read: ``SELECT``
(with ``WITH``, ``FROM``-first, ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, a
``PIVOT`` with an ``IN`` list), ``EXPLAIN`` (not ``EXPLAIN ANALYZE``, which runs the
statement) and read-only ``PRAGMA`` statements (``table_info``, ``version``, ...), as
DuckDB's parser classifies them; and its connection installs no extension
(``autoinstall_known_extensions`` off) and refuses ``SET`` (``lock_configuration``).
Anything else (``COPY``, ``CREATE``, ``INSERT``, ``ATTACH``, ``INSTALL``, ``LOAD``,
``SET``, ``EXPORT``, ``CALL``, ...) exits with status 2 unless ``--allow-write`` is given.
Reading other files stays possible.

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
from grouparrow._scan import register_shards
from grouparrow.errors import QueryError

if TYPE_CHECKING:
    from grouparrow.dataset import GroupedDataset

#: The views every connection has (``labels`` only when the index holds label counts).
VIEWS = ("examples", "groups", "labels")


def connect(
    ds: GroupedDataset, *, read_only: bool = False, checked: bool = True
) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the dataset's views and grouparrow's macros.

    In a :meth:`~grouparrow.GroupedDataset.split_groups` view, ``examples`` and ``groups``
    hold that side's groups only. ``read_only``: the connection installs no extension and
    its settings are locked (``SET`` fails); pair it with ``run(..., read_only=True)``,
    which refuses statements that write. ``checked``: ``examples`` checks page CRCs (each
    shard is then also a view named by its path); ``False``: DuckDB's unchecked reader.

    Example:
        >>> con = ds.connect()                                            # doctest: +SKIP
        >>> con.sql("SELECT count(*) FROM examples").fetchall()           # doctest: +SKIP
        [(105153,)]
    """
    if ds._row_splits:
        raise QueryError(
            "SQL over a split_rows() view is not supported (its rows are chosen per group "
            "in Python); query the dataset it came from"
        )
    storage = ds.storage
    files = [shard.file for shard in ds.manifest.shards]
    con = duckdb.connect()
    storage.register(con)  # a remote dataset: DuckDB reads through its fsspec filesystem
    if checked:
        shards = register_shards(con, storage, files, ds.manifest.schema)
    else:
        listed = ", ".join(_sql.literal(storage.url(f)) for f in files)
        shards = f"SELECT * FROM read_parquet([{listed}])"
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
            shards=shards,
            index=_sql.literal(storage.url(ds.manifest.index)),
            examples_filter=examples_filter,
            groups_filter=groups_filter,
        )
    )
    if ds.manifest.label_column is not None:
        con.execute(_sql.load("labels"))
    if read_only:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET allow_community_extensions = false")
        con.execute("SET lock_configuration = true")
    return con


def run(
    con: duckdb.DuckDBPyConnection, query: str, params: Any = None, *, read_only: bool = False
) -> duckdb.DuckDBPyRelation:
    """``con.sql(query, params=params)``, a failure raised as :class:`QueryError` that
    shows the query (DuckDB parses and binds here; errors while rows are fetched later come
    from DuckDB as they are). ``read_only``: first refuse, with a :class:`QueryError`, a
    query holding a statement that writes (:func:`check_read_only`).

    Example:
        >>> import duckdb
        >>> run(duckdb.connect(), "SELECT 42 AS answer", read_only=True).fetchall()
        [(42,)]
    """
    if not isinstance(query, str) or not query.strip():
        raise QueryError(f"the query must be non-empty SQL text, got {query!r}")
    if read_only:
        check_read_only(query)
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
        self._cons: dict[bool, duckdb.DuckDBPyConnection] = {}

    def get(self, ds: GroupedDataset, *, checked: bool = True) -> duckdb.DuckDBPyConnection:
        if self._pid != os.getpid():
            self._cons, self._pid = {}, os.getpid()
        if checked not in self._cons:
            self._cons[checked] = connect(ds, checked=checked)
        return self._cons[checked]

    def __getstate__(self) -> dict[str, Any]:
        return {"_pid": -1, "_cons": {}}


#: ``PRAGMA`` statements that only read (the others change settings, or import a database).
READ_ONLY_PRAGMAS = frozenset(
    {
        "collations",
        "database_list",
        "database_size",
        "functions",
        "metadata_info",
        "platform",
        "show",
        "show_databases",
        "show_tables",
        "show_tables_expanded",
        "storage_info",
        "table_info",
        "user_agent",
        "version",
    }
)


def check_read_only(query: str) -> None:
    """Raise a :class:`QueryError` unless every statement of ``query`` only reads, as
    DuckDB's parser classifies it (not by matching text): ``SELECT`` (``WITH``, ``FROM``,
    ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, a ``PIVOT`` with an ``IN`` list),
    ``EXPLAIN`` without ``ANALYZE`` (which runs the statement), and the ``PRAGMA`` statements in
    :data:`READ_ONLY_PRAGMAS`. ``COPY``, ``CREATE``, ``INSERT``, ``UPDATE``, ``DELETE``,
    ``DROP``, ``ALTER``, ``ATTACH``, ``DETACH``, ``INSTALL``, ``LOAD``, ``SET``, ``RESET``,
    ``USE``, ``EXPORT``, ``IMPORT``, ``CALL``, ``CHECKPOINT``, transactions and kinds DuckDB
    adds later are refused.

    Example:
        >>> check_read_only("SELECT count(*) FROM examples")
        >>> check_read_only("COPY (SELECT 1) TO 'x.csv'")
        Traceback (most recent call last):
        ...
        grouparrow.errors.QueryError: refusing to run a COPY statement: "COPY (SELECT 1) TO 'x.csv'"; only statements that read run here (SELECT, EXPLAIN, read-only PRAGMAs): pass --allow-write (grouparrow sql) to run statements that write files, change settings or load extensions
    """  # noqa: E501
    if not isinstance(query, str) or not query.strip():
        raise QueryError(f"the query must be non-empty SQL text, got {query!r}")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"{type(exc).__name__}: {exc}\nin the query:\n    {query}") from exc
    if not statements:
        raise QueryError(f"the query holds no SQL statement: {query!r}")
    for statement in statements:
        problem = _writes(statement)
        if problem is not None:
            text = statement.query.strip()
            shown = text if len(text) <= 200 else text[:200] + " ..."
            raise QueryError(
                f"refusing to run {problem}: {shown!r}; only statements that read run here "
                "(SELECT, EXPLAIN, read-only PRAGMAs): pass --allow-write (grouparrow sql) to "
                "run statements that write files, change settings or load extensions"
            )


def _writes(statement: Any) -> str | None:
    """What makes ``statement`` more than a read, or ``None`` when it only reads."""
    try:
        kind = statement.type
    except ValueError:  # a statement type newer than this DuckDB's Python enum
        return "a statement of a kind grouparrow does not know"
    name = kind.name if hasattr(kind, "name") else str(kind)
    if kind == duckdb.StatementType.SELECT:
        return None
    words = _words(statement.query)
    if kind == duckdb.StatementType.EXPLAIN:
        if {"ANALYZE", "ANALYSE"} & {w.upper() for w in words}:
            return "EXPLAIN ANALYZE (it runs the statement it explains)"
        return None
    if kind == duckdb.StatementType.PRAGMA:
        if (
            len(words) >= 2
            and words[0].upper() == "PRAGMA"
            and words[1].strip('"').lower() in READ_ONLY_PRAGMAS
            and "=" not in words
        ):
            return None
        return _a(f"{' '.join(words[:2]).upper() or 'PRAGMA'} statement")
    if kind == duckdb.StatementType.MULTI:
        return "a PIVOT without an IN list (it creates a type first; list the values)"
    return _a(f"{name} statement")


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'AEIOU' else 'a'} {noun}"


def _words(text: str) -> list[str]:
    """The keyword, identifier and operator tokens of ``text`` by DuckDB's tokenizer."""
    tokens = duckdb.tokenize(text)
    words = []
    for (start, kind), following in zip(tokens, [*tokens[1:], (len(text), None)], strict=True):
        if kind in (
            duckdb.token_type.keyword,
            duckdb.token_type.identifier,
            duckdb.token_type.operator,
        ):
            words.append(text[start : following[0]].strip())
    return words
