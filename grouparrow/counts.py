"""Group statistics of a source without writing the grouped data (Dataset Grouper's
``tfds_group_counts``): one streaming pass computes each row's key (as the build does) and
its bytes and words; DuckDB sums them per group, spilling to disk past its memory limit.

The figures equal those of the index ``grouparrow.build`` writes for the same source, key and
options (``num_rows``, ``num_bytes``, ``num_words``, ``label_counts``).

Example:
    >>> import grouparrow as ga, pyarrow as pa
    >>> table = pa.table({"user": ["a", "b", "a"], "text": ["hi there", "yo", "hey"]})
    >>> ga.group_counts(table, key="user").rows()
    [('a', 2, 39, 3), ('b', 1, 16, 1)]
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from grouparrow import _arrow, _sql, _tensors
from grouparrow._progress import Progress
from grouparrow.build import (
    _BATCH_ROWS,
    _connect,
    _execute,
    _keyed,
    _Options,
    _Plan,
    _Stream,
    _translate,
)
from grouparrow.format import LABEL_COUNTS, label_counts_type
from grouparrow.keys import KeySpec
from grouparrow.sources import open_source

if TYPE_CHECKING:
    import polars as pl


def group_counts(
    source: Any,
    /,
    *,
    key: KeySpec,
    label_column: str | None = None,
    key_column: str = "group_id",
    on_null: str = "error",
    text_columns: Sequence[str] | None = None,
    memory_limit: int | str | None = None,
    threads: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
    split: str | None = None,
    unify_schemas: bool = False,
    tensor_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """Per-group statistics of ``source`` grouped by ``key``, without building: a Polars
    frame sorted by group, ``(key_column, num_rows, num_bytes, num_words)`` and, with
    ``label_column``, ``label_counts`` (``list<struct<label, count>>``, labels sorted).

    Takes :func:`grouparrow.build`'s source, key and option arguments, and streams the
    source once in bounded memory (DuckDB spills the per-group sums to ``temp_directory``
    past ``memory_limit``).

    Example:
        >>> counts = ga.group_counts("c4/*.json.gz", key=ga.partitioners.url_domain("url"))
        ...                                                            # doctest: +SKIP
        >>> counts.select(pl.col("num_words").sum())                   # doctest: +SKIP
    """
    import polars as pl

    from grouparrow.statistics import check_label_column

    options = _Options.check("error", on_null, None, key_column, 1 << 20, memory_limit, threads)
    reporter = Progress(progress)
    src = open_source(source, batch_rows=_BATCH_ROWS, split=split, unify_schemas=unify_schemas)
    stream = _Stream(src, reporter)
    scratch = Path(tempfile.mkdtemp(prefix="grouparrow-counts-", dir=temp_directory))
    con = agg = None
    try:
        con = _connect(options, scratch / "_spill")
        plan = _keyed(
            con,
            stream,
            key,
            scratch / "_spool",
            reporter,
            key_column=key_column,
            on_null=on_null,
            text_columns=text_columns,
            seed=0,
            num_shards=1,
            tensor_shapes=tensor_shapes,
            label_column=None,
        )
        label_type = None if label_column is None else check_label_column(plan.schema, label_column)
        reporter.set_phase("counting")
        rows = _RowStats(con, plan, stream, label_column)
        agg = _connect(options, scratch / "_spill_counts")
        agg.register("__ga_rows", pa.RecordBatchReader.from_batches(rows.schema, rows.batches()))
        query = _sql.render(
            "group_counts",
            key=_sql.ident(key_column),
            labels=(
                "list({'label': __ga_label, 'count': __ga_n} ORDER BY __ga_label NULLS LAST)"
                f" AS {LABEL_COUNTS}"
                if label_column is not None
                else "NULL AS __ga_none"
            ),
        )
        try:
            table = agg.sql(query).to_arrow_table()
        except duckdb.Error:
            if rows.failure is not None:
                raise rows.failure from None
            raise
    finally:
        reporter.close()
        for connection in (con, agg):
            if connection is not None:
                connection.close()
        shutil.rmtree(scratch, ignore_errors=True)
    key_type = plan.schema.field(0).type
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        key_column: table.column(key_column).cast(key_type),
        **{name: table.column(name).cast(pa.int64()) for name in _SUMS},
    }
    if label_type is not None:
        columns[LABEL_COUNTS] = table.column(LABEL_COUNTS).cast(label_counts_type(label_type))
    frame = pl.from_arrow(pa.table(columns))
    assert isinstance(frame, pl.DataFrame)
    return frame


_SUMS = ("num_rows", "num_bytes", "num_words")


class _RowStats:
    """The keyed rows, reduced to what the per-group sums need: key, label, bytes, words
    (computed as the build computes them for the index)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        plan: _Plan,
        stream: _Stream,
        label_column: str | None,
    ) -> None:
        self.con, self.plan, self.stream, self.label_column = con, plan, stream, label_column
        stored = _arrow.parquet_schema(plan.schema)  # the types of the batches below
        label_type = pa.null() if label_column is None else stored.field(label_column).type
        self.schema = pa.schema(
            [
                pa.field(plan.key_column, stored.field(0).type),
                pa.field("__ga_label", label_type),
                pa.field("__ga_bytes", pa.int64()),
                pa.field("__ga_words", pa.int64()),
            ]
        )
        self.failure: BaseException | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        plan = self.plan
        file_schema = _arrow.parquet_schema(plan.schema)
        row_schema = _arrow.parquet_schema(plan.row_schema) if plan.tensors else file_schema
        query = (
            "SELECT * EXCLUDE (__ga_shard, __ga_order, __ga_order_low, __ga_row) "
            f"FROM ({plan.keyed_sql}) AS __ga_keyed"
        )
        try:
            relation = _execute(self.con, plan, self.stream, query)
            for raw in relation.to_arrow_reader(_BATCH_ROWS):
                batch = _arrow.conform(raw, row_schema)
                if plan.tensors:
                    batch = _tensors.to_tensors(batch, file_schema)
                n = batch.num_rows
                label = (
                    pa.nulls(n) if self.label_column is None else batch.column(self.label_column)
                )
                yield pa.RecordBatch.from_arrays(
                    [
                        batch.column(0),
                        label,
                        pa.array(_arrow.batch_row_nbytes(batch)),
                        pa.array(_arrow.row_words(batch, plan.text_columns)),
                    ],
                    schema=self.schema,
                )
        except duckdb.Error as exc:
            error = _translate(exc, plan.key, self.stream)
            self.failure = error
            raise error from error.__cause__ or exc
        except BaseException as exc:
            self.failure = exc
            raise
