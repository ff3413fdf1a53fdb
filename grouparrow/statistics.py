"""Group statistics: the per-group table and the dataset summary as Polars frames, per-group
label counts (counted by DuckDB from the shard files, at build time or later) and the label
heterogeneity of each group against the whole dataset.

The index holds each group's ``num_rows``, ``num_bytes`` and ``num_words``, and with a
label column its ``label_counts`` (``list<struct<label, count>>``, labels that occur,
sorted). Everything here reads the index: no shard is opened, so the statistics of millions
of groups come back in well under a second.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> table = pa.table({"user": ["a", "a", "b"], "label": [0, 1, 1]})
    >>> ds = ga.build(table, key="user", output=tempfile.mkdtemp() + "/ds", label_column="label")
    >>> ds.label_counts().rows()
    [('a', 0, 1), ('a', 1, 1), ('b', 1, 1)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grouparrow import _sql
from grouparrow._scan import shard_dataset
from grouparrow.errors import GroupArrowError, KeySpecError, QueryError
from grouparrow.format import (
    INDEX,
    LABEL_COUNTS,
    Manifest,
    file_checks,
    index_schema,
    label_counts_type,
    read_manifest,
    write_manifest,
)
from grouparrow.storage import Storage

if TYPE_CHECKING:
    import polars as pl

    from grouparrow.dataset import GroupedDataset

#: The per-group label heterogeneity columns :meth:`GroupedDataset.stats` adds.
LABEL_METRICS = ("num_labels", "label_entropy", "label_js_distance", "label_hellinger")
#: Labels in the whole dataset (a null label is one, as in each group's ``num_labels``).
_DISTINCT_LABELS = "(SELECT count(*) FROM (SELECT DISTINCT label FROM labels))"
_QUANTILES = ("min", "median", "mean", "p90", "p99", "max")
#: The index columns of a split_rows() view (the others describe whole groups).
ROW_VIEW_COLUMNS = ("group_id", "shard", "offset", "num_rows")
#: Rows whose split_rows() hashes :func:`row_view_index` computes at once (memory bound).
_ROWS_AT_ONCE = 1 << 22


def check_label_column(schema: pa.Schema, column: str) -> pa.DataType:
    """The type of ``column`` of ``schema`` if it can be counted as a label, else a
    :class:`KeySpecError` naming the columns that can."""

    def countable(t: pa.DataType) -> bool:
        if pa.types.is_dictionary(t):
            t = t.value_type
        return (
            pa.types.is_integer(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_date(t)
        )

    if not isinstance(column, str) or column not in schema.names:
        raise KeySpecError(
            f"label_column={column!r} is not a column of the dataset (columns: {schema.names})"
        )
    label_type = schema.field(column).type
    if not countable(label_type):
        usable = [f.name for f in schema if countable(f.type)]
        raise KeySpecError(
            f"label_column={column!r} has type {label_type}; labels must be integers, "
            f"booleans, strings or dates (such columns: {usable})"
        )
    return label_type


def count_labels(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    rel: str,
    schema: pa.Schema,
    key_column: str,
    label_column: str,
    label_type: pa.DataType,
) -> pa.Table:
    """``(group_id, label_counts)`` of the shard file ``rel`` of ``storage`` (of a dataset
    of ``schema``; its page CRCs checked: :mod:`grouparrow._scan`), its groups in no
    particular order."""
    name = "__ga_label_shard"
    con.register(name, shard_dataset(storage, rel, schema))
    try:
        query = _sql.render(
            "label_counts",
            shard=name,
            key=_sql.ident(key_column),
            label=_sql.ident(label_column),
        )
        table = con.sql(query).to_arrow_table()
    finally:
        con.unregister(name)
    counts = table.column(LABEL_COUNTS).cast(label_counts_type(label_type))
    return pa.table({"group_id": table.column("group_id"), LABEL_COUNTS: counts})


def with_label_counts(index: pa.Table, labels: pa.Table, where: str) -> pa.Table:
    """A shard's index rows with its label counts (from :func:`count_labels`, groups in any
    order) appended, in the index's order."""
    ids = index.column("group_id")
    counted = labels.column("group_id").cast(ids.type)
    position = pc.index_in(ids, value_set=counted, skip_nulls=False)
    if labels.num_rows != index.num_rows or position.null_count:
        raise GroupArrowError(
            f"label counts of {where} do not line up with its index ({labels.num_rows} "
            f"groups counted, {index.num_rows} indexed); the dataset may be damaged: run "
            "grouparrow verify"
        )
    return index.append_column(
        pa.field(LABEL_COUNTS, labels.schema.field(LABEL_COUNTS).type, nullable=False),
        labels.column(LABEL_COUNTS).take(position),
    )


def compute_stats(ds: GroupedDataset, label_column: str) -> GroupedDataset:
    """Count ``label_column`` per group of an existing dataset and store the counts in its
    index (replacing any counted before), atomically, and return the dataset reopened.

    Locally a new index is written beside the old one and renamed over it, then the
    manifest records the column (readers that have the old index open keep reading it). On
    an object store, which has no rename, the new index is uploaded under a new name
    (``index-<UTC time>-<8 hex>.parquet`` beside the old one), then a new manifest pointing
    to it is written (the commit point), then the old index is deleted; the manifest must
    not have changed since ``ds`` was opened (else a :class:`GroupArrowError`: reopen).

    Example:
        >>> ds = ds.compute_stats(label_column="label")     # doctest: +SKIP
        >>> ds.label_counts().head(2)                        # doctest: +SKIP
    """
    from grouparrow.dataset import GroupedDataset

    manifest = ds.manifest
    storage = ds.storage
    label_type = check_label_column(manifest.schema, label_column)
    if not storage.local:
        _check_unchanged(ds)
    base = ds._index_file.read(columns=index_schema(manifest.key_type).names)
    schema = index_schema(manifest.key_type, label_type)
    if storage.local:  # the new index is renamed over the old: write it beside it
        directory = Path(storage.path(manifest.index)).parent
    else:
        directory = Path(tempfile.mkdtemp(prefix="grouparrow-stats-"))
    tmp = directory / f".{INDEX}.{uuid.uuid4().hex[:12]}.tmp"
    con = duckdb.connect()
    try:
        storage.register(con)
        with pq.ParquetWriter(tmp, schema, write_page_checksum=True) as writer:
            start = 0
            for info in manifest.shards:
                part = base.slice(start, info.num_groups)
                start += info.num_groups
                labels = count_labels(
                    con,
                    storage,
                    info.file,
                    manifest.schema,
                    manifest.key_column,
                    label_column,
                    label_type,
                )
                table = with_label_counts(part, labels, f"shard {info.file}")
                writer.write_table(table.cast(schema), row_group_size=max(table.num_rows, 1))
        stats = {**manifest.stats, LABEL_COUNTS: {"column": label_column}}
        # The new index's size and checksums, from the file written, before it is published.
        index_info = file_checks(Storage.at(tmp.parent), tmp.name)
        updated = dataclasses.replace(manifest, stats=stats, index_info=index_info)
        if storage.local:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, storage.path(manifest.index))
            write_manifest(storage, updated)
        else:
            _publish_index(ds, tmp, updated)
    finally:
        tmp.unlink(missing_ok=True)
        if not storage.local:
            shutil.rmtree(directory, ignore_errors=True)
        con.close()
    return GroupedDataset(ds._path or storage, cache_dir=ds.cache_dir)


def _check_unchanged(ds: GroupedDataset) -> None:
    """A remote dataset's manifest is still the one ``ds`` was opened with."""
    if read_manifest(ds.storage).to_json() != ds.manifest.to_json():
        raise GroupArrowError(
            f"the manifest of {ds.storage.uri!r} changed since it was opened (rebuilt, or "
            "stats computed by another process); open it again and retry"
        )


def _publish_index(ds: GroupedDataset, local: Path, manifest: Manifest) -> None:
    """Upload the index at ``local`` under a new name beside the old, write ``manifest``
    pointing to it, then delete the old index (a remote dataset)."""
    storage, old = ds.storage, ds.manifest.index
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"index-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    folder = posixpath.dirname(old)
    new = f"{folder}/{name}" if folder else name
    _check_unchanged(ds)
    storage.put_files([(local, new)])
    try:
        write_manifest(storage, dataclasses.replace(manifest, index=new))
    except BaseException:
        with contextlib.suppress(Exception):
            storage.delete(new)
        raise
    with contextlib.suppress(Exception):  # committed: a leftover is only wasted space
        storage.delete(old)


def row_view_index(ds: GroupedDataset, index: pa.Table) -> pa.Table:
    """Index rows ``index`` of a split_rows() view ``ds`` as the view sees them: columns
    :data:`ROW_VIEW_COLUMNS`, ``num_rows`` the rows of each group the view holds (counted
    from the split's hash of (seed, group id, position), without reading any shard).

    Example:
        >>> fit, held = ds.split_rows(0.3, seed=2)                 # doctest: +SKIP
        >>> row_view_index(fit, ds.index).column("num_rows")       # doctest: +SKIP
    """
    sizes = index.column("num_rows").to_numpy().astype(np.int64)
    ids = index.column("group_id").to_pylist()  # as stored: what the split's hash salts
    counts = np.zeros(len(sizes), dtype=np.int64)
    ends = np.cumsum(sizes)
    lo = 0
    while lo < len(sizes):
        before = int(ends[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, before + _ROWS_AT_ONCE, side="right")))
        part = sizes[lo:hi]
        kept = ds._row_selection(ids[lo:hi], part)
        counts[lo:hi] = np.add.reduceat(kept, np.cumsum(part) - part)
        lo = hi
    table = index.select(list(ROW_VIEW_COLUMNS))
    position = ROW_VIEW_COLUMNS.index("num_rows")
    field = index.schema.field("num_rows")
    return table.set_column(position, field, pa.array(counts, field.type))


def row_view_error(ds: GroupedDataset, what: str) -> QueryError:
    """The error for statistics a split_rows() view cannot have: ``what`` describes whole
    groups, not the rows of each the view holds."""
    return QueryError(
        f"a split_rows() view of {ds._where} has no {what}: they are of whole groups, and "
        "the view holds some rows of each; compute them on the dataset the view came from, "
        "or from the view's groups (ds.iter_groups()); ds.stats() and ds.index give each "
        "group's num_rows in the view"
    )


def group_stats(ds: GroupedDataset) -> pl.DataFrame:
    """One row per group: the index's columns (``group_id, shard, offset, num_rows,
    num_bytes, num_words``, and ``label_counts`` when labels were counted) and, with labels,
    ``num_labels``, ``label_entropy`` (bits), ``label_js_distance`` and ``label_hellinger``
    (the group's label distribution against that of all groups in the dataset, or in the
    split_groups view, both in [0, 1]). A split_rows() view's: its index
    (:func:`row_view_index`), with no label metrics."""
    import polars as pl

    if ds._row_splits:
        rows = pl.from_arrow(ds.index)
        assert isinstance(rows, pl.DataFrame)
        return rows
    manifest = ds.manifest  # the index may be newer (compute_stats since): read what it says
    columns = index_schema(manifest.key_type, manifest.label_type).names
    frame = pl.from_arrow(ds.index.select(columns))
    assert isinstance(frame, pl.DataFrame)
    if manifest.label_column is None:
        return frame
    skew = ds.sql(
        "SELECT group_id, num_labels, entropy AS label_entropy, js_distance AS "
        "label_js_distance, hellinger AS label_hellinger FROM ga_label_skew('labels')"
    ).pl()
    return frame.join(skew, on="group_id", how="left", maintain_order="left")


def label_counts(ds: GroupedDataset) -> pl.DataFrame:
    """The label counts in long form: ``(group_id, label, count)``, one row per group and
    label that occurs in it, groups in storage order, labels sorted."""
    import polars as pl

    if ds._row_splits:
        raise row_view_error(ds, "label counts")
    if ds.manifest.label_column is None:
        raise GroupArrowError(
            f"{ds._where} has no label counts: build it with label_column=..., or run "
            "ds.compute_stats(label_column=...) (grouparrow stats DIR --label COLUMN)"
        )
    frame = pl.from_arrow(ds.index.select(["group_id", LABEL_COUNTS]))
    assert isinstance(frame, pl.DataFrame)
    return frame.explode(LABEL_COUNTS).unnest(LABEL_COUNTS)


def summary(ds: GroupedDataset) -> pl.DataFrame:
    """The dataset table papers print: for examples, words and bytes per group (and, with
    labels, labels per group and the label heterogeneity metrics) the total, min, median,
    mean, p90, p99, max and the Gini coefficient of their spread over groups.

    Example:
        >>> ds.summary()                     # doctest: +SKIP
        measure            total   min  median  mean ...
        examples per group  105153  1   22.0    78.8 ...
    """
    if ds._row_splits:
        raise row_view_error(ds, "summary (words, bytes and labels per group)")
    return summarize(ds.sql, labels=ds.manifest.label_column is not None)


def summarize(run: Callable[[str], duckdb.DuckDBPyRelation], *, labels: bool) -> pl.DataFrame:
    """:func:`summary` of whatever ``run`` queries as the views ``groups`` (and ``labels``)."""
    import polars as pl

    # (row name, column, the total's SQL)
    measures = [
        (f"{name} per group", column, f"CAST(sum({column}) AS BIGINT)")
        for name, column in (
            ("examples", "num_rows"),
            ("words", "num_words"),
            ("bytes", "num_bytes"),
        )
    ]
    source = "groups"
    if labels:
        source = (
            "(SELECT g.*, s.num_labels, s.entropy, s.js_distance, s.hellinger FROM groups g "
            "JOIN ga_label_skew('labels') s USING (group_id))"
        )
        measures += [
            ("labels per group", "num_labels", _DISTINCT_LABELS),
            ("label entropy (bits)", "entropy", "NULL"),
            ("label JS distance", "js_distance", "NULL"),
            ("label Hellinger distance", "hellinger", "NULL"),
        ]
    parts = [
        f"SELECT {i} AS i, {_sql.literal(name)} AS measure, count(*) AS groups, "
        f"CAST({total} AS BIGINT) AS total, ga_size_quantiles({column}) AS q, "
        f"ga_gini({column}) AS gini FROM {source}"
        for i, (name, column, total) in enumerate(measures)
    ]
    rows = run(" UNION ALL ".join(f"({p})" for p in parts) + " ORDER BY i").pl()
    quantiles = (
        rows.get_column("q")
        .struct.unnest()
        .select([pl.col(q).cast(pl.Float64) for q in _QUANTILES])
    )
    return pl.concat(
        [rows.select("measure", "groups", "total"), quantiles, rows.select("gini")],
        how="horizontal",
    )


def stats(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """The per-group statistics of the dataset at ``path``, a directory or a URI (see
    :meth:`GroupedDataset.stats`).

    Example:
        >>> import grouparrow as ga, pyarrow as pa, tempfile
        >>> out = tempfile.mkdtemp() + "/ds"
        >>> _ = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u", output=out)
        >>> ga.stats(out).select("group_id", "num_rows").sort("group_id").rows()
        [('a', 2), ('b', 1)]
    """
    from grouparrow.dataset import open as open_dataset

    return open_dataset(path, storage_options=storage_options).stats()
