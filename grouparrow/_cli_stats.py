"""The analysis commands of the ``grouparrow`` CLI:

    grouparrow stats DIR [--json] [--label COLUMN]
    grouparrow sql DIR "QUERY" [--format table|csv|json] [--limit N] [--param NAME=VALUE]
                             [--allow-write]
    grouparrow plot DIR --kind sizes|labels --output FILE [--measure M] [--groups N]
    grouparrow counts SOURCE... --key EXPR [--label COLUMN] [--output FILE] [--json]

DIR may be a URI (``s3://bucket/ds``); ``--storage-options JSON`` then passes the
filesystem's settings (credentials, endpoint) as a JSON object, or ``@FILE`` to read it
from a file.

Example:
    >>> from grouparrow.cli import main
    >>> main(["sql", "out/shakespeare-by-speaker", "SELECT count(*) AS n FROM groups"])
    ...                                                                # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import grouparrow as ga
from grouparrow import _sql, _tables
from grouparrow import query as _query
from grouparrow._scan import CRC_FAILURE
from grouparrow.format import LABEL_COUNTS
from grouparrow.statistics import summarize


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """The ``--storage-options`` flag of a command that takes a dataset URI."""
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        type=storage_options,
        help="settings of the filesystem of a URI DIR (s3://, gs://, ...), as a JSON object, "
        'e.g. \'{"anon": true}\' or \'{"client_kwargs": {"endpoint_url": "http://..."}}\'; '
        "@FILE reads it from FILE (keeps secrets off the command line)",
    )


def storage_options(text: str) -> dict[str, Any]:
    """``--storage-options``: a JSON object, or ``@FILE`` holding one.

    Example:
        >>> storage_options('{"anon": true}')
        {'anon': True}
    """
    source = "--storage-options"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {source}: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{source} is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"{source} must be a JSON object, like '{{\"anon\": true}}'; got {text.strip()!r}"
        )
    return value


def add_commands(commands: Any) -> None:
    """Add ``stats``, ``sql``, ``plot`` and ``counts`` to the CLI's subparsers."""
    stats = commands.add_parser(
        "stats",
        help="group statistics of a grouped dataset",
        description="Print the dataset table: groups, and per group the examples, words and "
        "bytes (min, median, mean, p90, p99, max, Gini); with labels, labels per group and "
        "label heterogeneity (entropy, Jensen-Shannon and Hellinger distance to the global "
        "label distribution). Per-group rows: grouparrow sql DIR 'SELECT * FROM groups'.",
    )
    stats.add_argument("path", metavar="DIR", help="dataset directory or URI")
    add_storage_options(stats)
    stats.add_argument(
        "--label",
        metavar="COLUMN",
        help="count this column per group (stored in the index, atomically, if not there yet)",
    )
    stats.add_argument("--json", action="store_true", help="print JSON (exact values)")
    stats.set_defaults(run=_stats)

    sql = commands.add_parser(
        "sql",
        help="run DuckDB SQL over a grouped dataset",
        description="Run QUERY with the views examples (every row), groups (the index: "
        "group_id, shard, offset, num_rows, num_bytes, num_words[, label_counts]) and, with "
        "label counts, labels (group_id, label, count); grouparrow's macros (ga_gini, "
        "ga_size_quantiles, ga_label_entropy, ga_label_skew, ...) are installed. Only "
        "statements that read run (SELECT, EXPLAIN, read-only PRAGMAs), unless --allow-write; "
        "they can still read any file this process can.",
    )
    sql.add_argument("path", metavar="DIR", help="dataset directory or URI")
    add_storage_options(sql)
    sql.add_argument("query", metavar="QUERY")
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table: aligned, for people (default); csv, or json (one object per line): "
        "every row, exact",
    )
    sql.add_argument(
        "--limit", type=int, default=100, metavar="N", help="rows shown as a table (default 100)"
    )
    sql.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="bind $NAME to VALUE (a JSON number, true/false/null, else text); repeatable",
    )
    sql.add_argument(
        "--allow-write",
        action="store_true",
        help="also run statements that write or change things: COPY ... TO, CREATE, INSERT, "
        "ATTACH, INSTALL/LOAD, SET, EXPORT, ... (default: refused, exit status 2)",
    )
    sql.set_defaults(run=_sql_command)

    plot = commands.add_parser(
        "plot",
        help="plot group sizes or labels per group",
        description="Write a figure (.png or .svg): --kind sizes, the distribution of group "
        "sizes (histogram and complementary CDF, log-log); --kind labels, the label "
        "distribution of the first --groups groups (needs label counts: --label).",
    )
    plot.add_argument("path", metavar="DIR", help="dataset directory or URI")
    add_storage_options(plot)
    plot.add_argument("--kind", choices=["sizes", "labels"], required=True)
    plot.add_argument("--output", "-o", required=True, metavar="FILE", help=".png or .svg")
    plot.add_argument(
        "--measure",
        choices=["num_rows", "num_words", "num_bytes"],
        default="num_rows",
        help="group size measure for --kind sizes (default num_rows)",
    )
    plot.add_argument("--groups", type=int, default=20, metavar="N", help="groups shown (labels)")
    plot.add_argument("--style", choices=["bars", "heatmap"], default="bars", help="labels plot")
    plot.add_argument(
        "--label", metavar="COLUMN", help="count this column per group first if needed"
    )
    plot.set_defaults(run=_plot)

    counts = commands.add_parser(
        "counts",
        help="group statistics of a source, without building",
        description="Stream SOURCE once, group it by the key, and print the dataset table "
        "(as grouparrow stats does); --output writes the per-group counts (.parquet, .csv "
        "or .json lines).",
    )
    counts.add_argument("source", nargs="+", help="input files, globs or directories")
    counts.add_argument("--key", required=True, metavar="EXPR", help="column or SQL expression")
    counts.add_argument("--label", metavar="COLUMN", help="also count this column per group")
    counts.add_argument("--key-column", default="group_id", help="name of the key column")
    counts.add_argument(
        "--on-null", choices=["error", "drop"], default="error", help="rows whose key is null"
    )
    counts.add_argument("--memory-limit", metavar="SIZE", help="DuckDB memory budget")
    counts.add_argument("--output", "-o", metavar="FILE", help="write the per-group counts")
    counts.add_argument("--json", action="store_true", help="print JSON (exact values)")
    counts.set_defaults(run=_counts)


def _labelled(args: argparse.Namespace) -> ga.GroupedDataset:
    ds = ga.open(args.path, storage_options=args.storage_options)
    label = args.label
    if label is not None and ds.manifest.label_column != label:
        where = ds.storage.url(ds.manifest.index)
        print(f"counting {label!r} per group into {where}", file=sys.stderr)
        ds = ds.compute_stats(label_column=label)
    return ds


def _stats(args: argparse.Namespace) -> int:
    ds = _labelled(args)
    _print_summary(
        ds.summary(),
        {
            "path": dataset_name(ds),
            "num_groups": ds.num_groups,
            "num_rows": ds.num_rows,
            "key_column": ds.key_column,
            "label_column": ds.manifest.label_column,
        },
        args.json,
    )
    return 0


def dataset_name(ds: ga.GroupedDataset) -> str:
    """A dataset as the CLI shows it: a local directory's path, or the URI."""
    return str(ds.path) if ds.storage.local else ds.uri


def _print_summary(frame: Any, about: dict[str, Any], as_json: bool) -> None:
    table = frame.to_arrow()
    if as_json:
        print(json.dumps({**about, "summary": table.to_pylist()}, indent=2))
        return
    for name, value in about.items():
        if value is not None:
            shown = f"{value:,}" if isinstance(value, int) else value
            print(f"{name.replace('_', ' '):<13} {shown}")
    print()
    print(_tables.format_table(table))


def _sql_command(args: argparse.Namespace) -> int:
    read_only = not args.allow_write
    if read_only:  # before the dataset is opened: refused whatever DIR holds
        _query.check_read_only(args.query)
    ds = ga.open(args.path, storage_options=args.storage_options)
    params = dict(_param(p) for p in args.param) or None
    con = _query.connect(ds, read_only=read_only)
    try:
        return _print_query(_query.run(con, args.query, params, read_only=read_only), args)
    finally:
        con.close()


def _print_query(relation: duckdb.DuckDBPyRelation, args: argparse.Namespace) -> int:
    if args.format == "table":
        if args.limit < 0:
            raise ValueError(f"--limit {args.limit} must be >= 0")
        try:
            table = relation.limit(args.limit + 1).to_arrow_table()
            total = None
            if table.num_rows > args.limit:
                total = relation.aggregate("count(*)").fetchall()[0][0]
        except duckdb.Error as exc:
            raise _failed(exc) from exc
        print(_tables.format_table(table.slice(0, args.limit), total_rows=total))
        return 0
    try:  # rows stream out as DuckDB makes them: errors can come at any batch
        reader = relation.to_arrow_reader()
        if args.format == "csv":
            _tables.write_csv(reader, reader.schema.names, sys.stdout)
        else:
            _tables.write_json(reader, sys.stdout)
    except (duckdb.Error, pa.ArrowException) as exc:
        raise _failed(exc) from exc
    return 0


def _failed(exc: Exception) -> ga.GroupArrowError:
    """An error DuckDB raised while running the query (after it bound): a damaged page
    (:data:`grouparrow._scan.CRC_FAILURE`, DuckDB's message names the shard) is a
    :class:`~grouparrow.CorruptDatasetError`."""
    if CRC_FAILURE in str(exc):
        return ga.CorruptDatasetError(
            f"{exc}\nthe dataset is damaged: run grouparrow verify --full to list the damaged "
            "files, then rebuild it"
        )
    return ga.QueryError(f"{type(exc).__name__}: {exc}")


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--param {text!r}: write NAME=VALUE")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name, parsed if isinstance(parsed, int | float | bool) or parsed is None else value


def _plot(args: argparse.Namespace) -> int:
    from grouparrow import plots

    ds = _labelled(args)
    if args.kind == "sizes":
        out = plots.plot_sizes(ds, args.output, measure=args.measure)
    else:
        out = plots.plot_labels(ds, args.output, groups=args.groups, kind=args.style)
    print(out)
    return 0


def _counts(args: argparse.Namespace) -> int:
    source = args.source[0] if len(args.source) == 1 else args.source
    key: Any = args.key
    if args.key not in _columns(source):
        key = ga.sql(args.key)
    counts = ga.group_counts(
        source,
        key=key,
        label_column=args.label,
        key_column=args.key_column,
        on_null=args.on_null,
        memory_limit=args.memory_limit,
    )
    if args.output:
        _write(counts.to_arrow(), Path(args.output))
    table = counts.to_arrow().rename_columns(["group_id", *counts.columns[1:]])
    con = duckdb.connect()
    con.execute(_sql.load("macros"))
    con.execute(_sql.load("stats"))
    con.register("groups", table)
    labels = LABEL_COUNTS in table.column_names
    if labels:
        con.execute(_sql.load("labels"))
    frame = summarize(lambda q: _query.run(con, q), labels=labels)
    about = {
        "source": str(source),
        "key": args.key,
        "num_groups": table.num_rows,
        "label_column": args.label,
        "output": args.output,
    }
    _print_summary(frame, about, args.json)
    return 0


def _columns(source: Any) -> list[str]:
    from grouparrow.sources import open_source

    return open_source(source).reader.schema.names


def _write(table: pa.Table, path: Path) -> None:
    """The per-group counts to ``path`` by its suffix, atomically."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".json", ".jsonl"):
        raise ValueError(f"--output {str(path)!r}: use a .parquet, .csv or .json(l) file")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                if suffix == ".csv":
                    _tables.write_csv(table.to_batches(), table.column_names, f)
                else:
                    _tables.write_json(table.to_batches(), f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
