"""The build: source -> keyed rows -> hash-partitioned shards -> group-clustered Parquet.

Two steps, as in DESIGN.md. The *map* step streams the source once through DuckDB, computes
each row's key and placement hash, and writes the rows to per-shard temporary Parquet files.
The *reduce* step sorts each shard by ``(order hash, key, input position)`` in DuckDB (which
spills to disk past its memory limit) and writes it with PyArrow, row groups sized by bytes
and a page index for random access, while it records the index rows (group, offset, rows,
bytes, words) and checks that every group's rows came out contiguous. With one shard the
source is sorted directly and the map step is skipped.

Everything is written under a temporary directory next to the output; the manifest is
written last and the directory renamed into place (see :mod:`grouparrow._commit`), so a
failed or interrupted build, even one killed with SIGKILL, leaves no partial output and the
previous output (``mode="overwrite"``) untouched. A killed build's leftovers are deleted by
the next build to the same output, or by :func:`grouparrow.gc`. The engine calls
:func:`grouparrow._faults.point` at each step (``"map:done"``, ``"reduce:<shard>:start"``,
...), so that tests can kill it there.

Example:
    >>> import pyarrow as pa, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "by-user")
    >>> ds = build(pa.table({"user": ["a", "b", "a"], "x": [1, 2, 3]}), key="user", output=out)
    >>> ds.num_groups, ds.num_rows
    (2, 3)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grouparrow import _arrow, _faults, _sql, _tensors
from grouparrow._commit import check_output, commit, new_build_id, staging_directory
from grouparrow._progress import Progress
from grouparrow._writer import GroupRuns, ShardWriter
from grouparrow.errors import (
    GroupArrowError,
    KeySpecError,
    NullKeyError,
    SourceError,
)
from grouparrow.format import (
    INDEX,
    LABEL_COUNTS,
    Manifest,
    ShardInfo,
    index_schema,
    shard_file,
)
from grouparrow.gc import gc, recover
from grouparrow.keys import Key, KeySpec, PreparedKey, resolve
from grouparrow.sources import RowLabel, Source, open_source
from grouparrow.statistics import check_label_column, count_labels, with_label_counts
from grouparrow.storage import Storage, is_uri

if TYPE_CHECKING:
    from grouparrow.dataset import GroupedDataset

Mode = Literal["error", "overwrite"]
Engine = Literal["local", "ray"]
OnNull = Literal["error", "drop"]

#: Uncompressed bytes per Parquet row group of the output.
ROW_GROUP_BYTES = 8 * 2**20
_BATCH_ROWS = 65_536
_UNKNOWN_SIZE_SHARDS = 8
_FLUSH_ROWS = (2_048, 131_072)
#: DuckDB memory per thread. Measured (DuckDB 2.0.1, ~420-byte rows): under its 91 MiB
#: share of a 128 MB budget the reduce step's sort runs out of memory with 2 threads and the
#: map step with 8; under 183 MiB (256 MB) the sort with 2; 212 MiB (290 MB) sorts with 2.
#: With 1 KB rows a 300 MB shard needs ~350 MB for 2 threads (tests/reliability).
_THREAD_MEMORY = 160 * 2**20
_RESERVED = "__ga_"
_NULL_MARK = "grouparrow:null-key:"
_PREVIEW_COLUMNS = 8


def build(
    source: Any,
    /,
    *,
    key: KeySpec,
    output: str | os.PathLike[str],
    mode: Mode = "error",
    num_shards: int | None = None,
    seed: int = 0,
    key_column: str = "group_id",
    on_null: OnNull = "error",
    text_columns: Sequence[str] | None = None,
    memory_limit: int | str | None = None,
    threads: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
    row_group_bytes: int = ROW_GROUP_BYTES,
    progress: bool = False,
    split: str | None = None,
    unify_schemas: bool = False,
    tensor_shapes: Mapping[str, Sequence[int]] | None = None,
    label_column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    engine: Engine = "local",
) -> GroupedDataset:
    """Group ``source`` by ``key`` into a group-clustered Parquet dataset at ``output``.

    An empty input with columns (an empty Parquet file, a CSV file with only a header, an
    empty table, frame, stream, or ``datasets`` dataset with features) builds a valid empty
    dataset: 0 groups, 0 rows, the source's columns, ``num_shards`` empty shards, which
    ``ga.open``, ``iter_groups`` and ``ga.verify`` accept. An input with no columns to key on
    (an empty JSON-lines file, an empty CSV file without a header, an empty
    ``IterableDataset`` without features) is refused with a :class:`~grouparrow.SourceError`.

    Args:
        source: files (Parquet, CSV, JSON lines; paths, globs, directories), a pyarrow
            Table / RecordBatchReader / Dataset, a ``datasets.Dataset`` (for
            ``load_dataset`` arguments over local files, ``ga.hf_dataset("json",
            data_files=...)``), or any object with ``__arrow_c_stream__``.
        key: a column name, ``ga.sql("<expression>")``, a function of one example, or
            ``ga.batch_key_fn(<function of a batch>)``; see :mod:`grouparrow.keys`.
        output: the dataset directory to create: a path, or a URI of any fsspec filesystem
            (``s3://bucket/fedc4``; see :mod:`grouparrow.storage`).
        mode: ``"error"`` refuses an existing output; ``"overwrite"`` replaces it once the
            new dataset is complete (until then the old one stays readable).
        num_shards: number of shard files; by default one per quarter of the memory budget
            of (estimated) input, so that each shard sorts in memory.
        seed: seeds the order of groups (and their shards); same input, key and seed give
            the same output.
        key_column: name of the key column in the output.
        on_null: ``"error"`` stops at a row whose key is null; ``"drop"`` skips such rows.
        text_columns: string columns whose words are counted into ``num_words`` (default:
            every string column but the key).
        memory_limit: the build's memory budget, bytes or text like ``"4GB"`` (default:
            half the machine's memory). DuckDB gets it less room for the writer's row
            groups, and spills to ``temp_directory`` past it.
        threads: DuckDB threads (default: one per core); at most one per 96 MiB of
            DuckDB's share of ``memory_limit``, as DuckDB runs out of memory with more.
        temp_directory: where DuckDB spills (default: inside the build's temporary folder).
        row_group_bytes: uncompressed size of the output's Parquet row groups.
        progress: print rows read and the current phase to stderr.
        split: the split to group when ``source`` is a ``datasets.DatasetDict`` (or a folder
            one was saved to) or a TensorFlow Datasets builder (default ``"train"``).
        unify_schemas: for several input files whose columns differ (names; or types, for
            Parquet), read them by column name with DuckDB's ``union_by_name``: a column
            missing from a file is null, differing types are widened (``int32`` + ``double``
            -> ``double``, a number + a string -> string, structs merge their fields; a list
            and a scalar, or timestamps with and without a time zone, are refused). By
            default such files are refused with a
            :class:`~grouparrow.SourceError` naming both files and the column. Differences
            in nullability, metadata or column order never count, nor do CSV/JSON types
            that DuckDB's sniffer guessed differently per file (those are widened anyway).
        tensor_shapes: columns to store as Arrow's ``fixed_shape_tensor`` of the given shape,
            e.g. ``{"pixels": (28, 28)}``: ``fixed_size_binary`` and equal-length binary
            columns become uint8 tensors, (nested) fixed-size lists of numbers tensors of
            their numbers, so that ``group.to_numpy("pixels")`` is an ``(n, 28, 28)`` array
            with no copy. A :class:`~grouparrow.TensorShapeError` names a column whose
            values per row are not the shape's product, or that is not fixed-width.
        label_column: a column (integers, strings, booleans or dates) to count per group
            into the index (``label_counts``), for ``ds.label_counts()``, the label
            heterogeneity in ``ds.stats()`` and ``ds.summary()``, and label plots.
        storage_options: credentials and settings for the filesystem of URIs in ``source``
            and ``output`` (passed to fsspec, e.g. ``{"key": ..., "secret": ...,
            "client_kwargs": {"endpoint_url": ...}}`` for s3fs).
        engine: ``"local"`` runs the build in this process; ``"ray"`` runs its map step as
            one Ray task per fragment of the source (Parquet row groups, a CSV/JSON file, a
            range of a table's rows) and its reduce step as one task per shard, on the Ray
            cluster this process is connected to (else a local one): same output for the
            same input, key, seed and ``num_shards``. ``memory_limit`` and ``threads`` are
            then per task (default: one thread, this machine's half-memory share of a
            core). Needs ``pip install 'grouparrow[ray]'``; see docs/distributed.md.

    Returns:
        The built dataset, opened.

    Example:
        >>> import grouparrow as ga, pyarrow as pa, tempfile
        >>> out = tempfile.mkdtemp() + "/by-label"
        >>> ga.build(pa.table({"label": [1, 2, 1]}), key="label", output=out).num_groups
        2
    """
    from grouparrow.dataset import open as open_dataset

    if engine not in ("local", "ray"):
        raise ValueError(f"engine={engine!r} is not one of 'local', 'ray'")
    if engine == "ray":  # a budget per task (one core each, by default)
        threads = threads or 1
        if memory_limit is None:
            memory_limit = max(parse_bytes(None) // (os.cpu_count() or 1), 256 * 2**20)
    options = _Options.check(
        mode, on_null, num_shards, key_column, row_group_bytes, memory_limit, threads
    )
    out = Storage.at(output, storage_options if is_uri(output) else None)
    if out.local:
        recover(out.root_path)  # an overwrite killed between its two renames: undo it
    check_output(out, mode)
    started = time.monotonic()
    reporter = Progress(progress)
    src = open_source(
        source,
        batch_rows=_BATCH_ROWS,
        split=split,
        unify_schemas=unify_schemas,
        storage_options=storage_options,
    )
    stream = _Stream(src, reporter)
    shards = num_shards or _auto_shards(src.size_hint, options.memory_limit)
    staging = staging_directory(out, temp_directory)
    tmp = staging.path
    _faults.point("build:staged")
    con = None
    uploaded: str | None = None  # a distributed build's prefix on an object-store output
    committing = False
    try:
        spill = Path(temp_directory) if temp_directory is not None else tmp / "_spill"
        con = _connect(options, spill)
        plan = _keyed(
            con,
            stream,
            key,
            tmp / "_spool",
            reporter,
            key_column=key_column,
            on_null=on_null,
            text_columns=text_columns,
            seed=seed,
            num_shards=shards,
            tensor_shapes=tensor_shapes,
            label_column=label_column,
        )
        if engine == "local":
            _tune_partitioning(con, stream.first, shards, options.memory_limit)
            shard_infos, num_bytes = _run(con, plan, tmp, stream, options, reporter)
            report: dict[str, Any] = {"engine": "local", "rows_read": stream.rows_read}
        else:
            from grouparrow.distributed import ray_engine

            # Tasks write where the driver commits: the local staging directory, or a fresh
            # build prefix of an object-store output.
            uploaded = None if out.local else new_build_id()
            work = Storage.at(tmp) if uploaded is None else out.child(uploaded)
            shard_infos, num_bytes, report = ray_engine.run(
                source,
                storage_options,
                plan,
                stream,
                work,
                tmp,
                options,
                None if temp_directory is None else os.fspath(temp_directory),
                reporter,
            )
        reporter.close()
        rows_read = int(report.pop("rows_read"))
        manifest = Manifest(
            schema=plan.schema,
            key_column=key_column,
            key=plan.key.describe(),
            seed=seed,
            num_groups=sum(s.num_groups for s in shard_infos),
            num_rows=sum(s.num_rows for s in shard_infos),
            num_bytes=num_bytes,
            shards=tuple(shard_infos),
            source=src.description,
            stats={
                "num_words": {"columns": plan.text_columns, "split": "bytes <= 0x20"},
                **({LABEL_COUNTS: {"column": label_column}} if label_column else {}),
            },
            build={
                **report,
                "rows_read": rows_read,
                "rows_dropped_null_key": rows_read - sum(s.num_rows for s in shard_infos),
                "on_null": on_null,
                "memory_limit": options.memory_limit,
                "threads": options.threads,
                "seconds": round(time.monotonic() - started, 3),
            },
            grouparrow_version=_version(),
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        for scratch in ("_map", "_spill", "_spool"):
            shutil.rmtree(tmp / scratch, ignore_errors=True)
        con.close()
        con = None
        committing = True  # from here a failure is commit()'s to clean up
        commit(tmp, out, manifest, mode, uploaded=uploaded)
    except BaseException:
        reporter.close()
        if con is not None:
            con.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if uploaded is not None and not committing:
            with contextlib.suppress(Exception):
                out.child(uploaded).delete()
        raise
    finally:
        staging.close()
    if out.local:
        with contextlib.suppress(OSError):  # committed: leftovers are only wasted space
            gc(out.root_path)  # what killed builds to this output left
    _faults.point("build:cleaned")
    return open_dataset(out.uri, storage_options=storage_options)


def _keyed(
    con: duckdb.DuckDBPyConnection,
    stream: _Stream,
    key: KeySpec,
    spool: Path,
    reporter: Progress,
    sample: pa.RecordBatch | None = None,
    **plan: Any,
) -> _Plan:
    """Register the source with ``con``, resolve the key (running a prepared key's query,
    with a one-shot stream spooled under ``spool``) and plan the keyed rows' SQL.

    Key functions are probed on ``sample`` (default: the stream's first rows); a fragment
    of a distributed build passes the whole source's, so that every task resolves the key
    alike."""
    stream.register(con)
    if isinstance(key, PreparedKey):
        key = _prepare(con, key, stream, spool)
    resolved = resolve(key, stream.schema, stream.first if sample is None else sample, con)
    made = _Plan.make(stream, resolved, **plan)
    made.key_spec, made.arguments = key, plan
    resolved.set_row_label(stream.source.row_label)
    if stream.source.sql is not None:
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        reporter.watch(con.query_progress, stream.source.num_rows)
    return made


class _Options:
    __slots__ = ("memory_limit", "row_group_bytes", "threads")

    def __init__(self, memory_limit: int, threads: int, row_group_bytes: int) -> None:
        self.memory_limit = memory_limit
        self.threads = threads
        self.row_group_bytes = row_group_bytes

    @classmethod
    def check(
        cls,
        mode: str,
        on_null: str,
        num_shards: int | None,
        key_column: str,
        row_group_bytes: int,
        memory_limit: int | str | None,
        threads: int | None,
    ) -> _Options:
        if mode not in ("error", "overwrite"):
            raise ValueError(f"mode={mode!r} is not one of 'error', 'overwrite'")
        if on_null not in ("error", "drop"):
            raise ValueError(f"on_null={on_null!r} is not one of 'error', 'drop'")
        if num_shards is not None and (not isinstance(num_shards, int) or num_shards < 1):
            raise ValueError(f"num_shards={num_shards!r} must be a positive integer or None")
        if not key_column or key_column.startswith(_RESERVED):
            raise ValueError(
                f"key_column={key_column!r} must be a non-empty name not starting "
                f"with {_RESERVED!r}"
            )
        if row_group_bytes < 1:
            raise ValueError(f"row_group_bytes={row_group_bytes!r} must be positive")
        if threads is not None and threads < 1:
            raise ValueError(f"threads={threads!r} must be a positive integer or None")
        limit = parse_bytes(memory_limit)
        most = max(1, _duckdb_limit(limit, row_group_bytes) // _THREAD_MEMORY)
        return cls(limit, min(threads or os.cpu_count() or 1, most), row_group_bytes)


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(value: int | str | None) -> int:
    """Bytes from ``value`` (``4_000_000_000``, ``"4GB"``, ``"512 MiB"``); None: half of RAM.

    Example:
        >>> parse_bytes("1.5GiB")
        1610612736
    """
    if value is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * 2**30
        return max(total // 2, 256 * 2**20)
    if isinstance(value, int) and value > 0:
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(
            f"memory_limit={value!r} is not a size; use bytes or text like '4GB' or '512MiB'"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _auto_shards(size_hint: int | None, memory_limit: int) -> int:
    if size_hint is None:
        return _UNKNOWN_SIZE_SHARDS
    target = max(memory_limit // 4, 64 * 2**20)
    return max(1, math.ceil(size_hint / target))


def _duckdb_limit(memory_limit: int, row_group_bytes: int) -> int:
    """DuckDB's share of the build's budget: the budget less room for the row groups the
    writer holds (measured: without this the reduce step ends ~1 % over budget + 0.5 GB)."""
    return memory_limit - min(memory_limit // 4, 4 * row_group_bytes)


def _connect(options: _Options, spill: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": options.threads})
    duckdb_limit = _duckdb_limit(options.memory_limit, options.row_group_bytes) // 2**20
    con.execute(f"SET memory_limit = {_sql.literal(f'{duckdb_limit}MiB')}")
    con.execute(f"SET temp_directory = {_sql.literal(str(spill))}")
    # Measured (DESIGN.md): without it the partitioned write runs out of memory under a low
    # memory_limit (and see _tune_partitioning).
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute(_sql.load("macros"))
    return con


def _tune_partitioning(
    con: duckdb.DuckDBPyConnection, sample: pa.RecordBatch, num_shards: int, memory_limit: int
) -> None:
    """Rows DuckDB buffers per partition before writing: a quarter of the memory budget
    over all shards (measured: a fixed 65,536 runs out of memory with wide rows and many
    shards under a small budget)."""
    per_row = max(sample.nbytes / max(sample.num_rows, 1), 64.0)
    rows = int(memory_limit / (4 * num_shards * per_row))
    threshold = min(max(rows, _FLUSH_ROWS[0]), _FLUSH_ROWS[1])
    con.execute(f"SET partitioned_write_flush_threshold = {threshold}")


class _Stream:
    """The source's batches, numbered (``__ga_row``), counted, with the first one peeked.

    A source that DuckDB reads itself (``Source.sql``) is registered as that query; then
    only the first batch is read here, to probe key functions.
    """

    def __init__(self, source: Source, progress: Progress, first_row: int = 0) -> None:
        reader = source.reader
        self.source = source
        self.source_schema = reader.schema
        self.schema = _arrow.duckdb_safe(reader.schema)
        self._recast = not self.schema.equals(self.source_schema)
        reserved = [n for n in self.schema.names if n.startswith(_RESERVED)]
        if reserved:
            raise SourceError(
                f"source column {reserved[0]!r} uses the prefix {_RESERVED!r}, which grouparrow "
                "reserves; rename it"
            )
        self._reader = reader
        self._progress = progress
        # Rows DuckDB reads itself are counted up front; streamed rows are numbered from
        # ``first_row`` (a fragment's place in the source).
        self.first_row = first_row if source.sql is None else 0
        self.rows = (source.num_rows or 0) if source.sql is not None else first_row
        self.failure: BaseException | None = None
        try:
            first = next(iter(reader), None)
            self.first = self._safe(first or _arrow.empty_batch(self.source_schema))
        except (pa.ArrowException, OSError, duckdb.Error) as exc:
            raise SourceError(f"cannot read the source: {exc}") from exc

    @property
    def rows_read(self) -> int:
        return self.rows - self.first_row

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make the rows, numbered, the view ``__ga_source`` of ``con``."""
        if self.source.sql is not None:
            if self.source.storage is not None:
                self.source.storage.register(con)
            con.execute(f"CREATE VIEW __ga_source AS {self.source.sql}")
            return
        schema = self.schema.append(pa.field("__ga_row", pa.int64(), nullable=False))
        try:
            con.register(
                "__ga_source", pa.RecordBatchReader.from_batches(schema, self._batches(schema))
            )
        except duckdb.NotImplementedException as exc:
            raise SourceError(_unreadable(self.schema, exc)) from exc

    def _batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        batches = iter(self._reader)
        batch: pa.RecordBatch | None = self.first
        try:
            while batch is not None:
                n = batch.num_rows
                if n:
                    rows = pa.array(np.arange(self.rows, self.rows + n, dtype=np.int64))
                    columns = batch.columns if batch is self.first else self._safe(batch).columns
                    yield pa.RecordBatch.from_arrays([*columns, rows], schema=schema)
                    self.rows += n
                    self._progress.add_rows(n)
                batch = next(batches, None)
        except BaseException as exc:  # a Ctrl-C in the source's iterator included
            self.failure = exc
            raise

    def _safe(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return _arrow.conform(batch, self.schema) if self._recast else batch


class _Plan:
    """The SQL and schemas of one build."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    schema: pa.Schema
    row_schema: pa.Schema  # ``schema`` with the source's types for tensor_shapes columns
    tensors: dict[str, pa.DataType]
    keyed_sql: str
    key: Key
    key_column: str
    num_shards: int
    seed: int
    text_columns: list[str]
    label_column: str | None
    label_type: pa.DataType | None
    params: dict[str, Any]
    key_spec: KeySpec  # as given (a prepared key: made), for the tasks of a distributed build
    arguments: dict[str, Any]  # the keyword arguments it was made from

    @classmethod
    def make(
        cls,
        stream: _Stream,
        key: Key,
        key_column: str,
        on_null: str,
        text_columns: Sequence[str] | None,
        seed: int,
        num_shards: int,
        tensor_shapes: Mapping[str, Sequence[int]] | None = None,
        label_column: str | None = None,
    ) -> _Plan:
        source_schema = stream.source_schema
        names = source_schema.names
        exclude = ["__ga_key"]
        if key_column in names:
            if not (key.kind == "column" and key.definition == key_column):
                raise KeySpecError(
                    f"the source already has a column named {key_column!r}; name the key "
                    "column otherwise with key_column=..."
                )
            exclude.append(_sql.ident(key_column))
        kept = [f for f in source_schema if f.name != key_column]
        key_field = pa.field(key_column, key.arrow_type or pa.string(), nullable=False)
        row_schema = pa.schema([key_field, *kept], metadata=source_schema.metadata)
        tensors = _tensors.tensor_types(source_schema, tensor_shapes, exclude=key_column)
        schema = pa.schema(
            [f.with_type(tensors[f.name]) if f.name in tensors else f for f in row_schema],
            metadata=source_schema.metadata,
        )
        if text_columns is None:
            key_source = key.definition if key.kind == "column" else None
            words = [f.name for f in kept if _arrow.is_text(f.type) and f.name != key_source]
        else:
            words = list(text_columns)
            bad = [
                c
                for c in words
                if c not in names or not _arrow.is_text(source_schema.field(c).type)
            ]
            if bad:
                raise KeySpecError(
                    f"text_columns {bad} are not string columns of the source "
                    f"(string columns: {[f.name for f in kept if _arrow.is_text(f.type)]})"
                )
        if on_null == "drop":
            check, where = key.value, f"WHERE NOT {key.null_test}"
        else:
            shown = [*key.columns, *(n for n in names if n not in key.columns)]
            preview = ", ".join(
                f"{_sql.ident(n)} := {_sql.ident(n)}" for n in shown[:_PREVIEW_COLUMNS]
            )
            check = (
                f"CASE WHEN {key.null_test} THEN error("
                f"{_sql.literal(_NULL_MARK)} || __ga_row || ':' || "
                f"left(CAST(struct_pack({preview}) AS VARCHAR), 240)) ELSE {key.value} END"
            )
            where = ""
        ident = _sql.ident(key_column)
        keyed = _sql.render(
            "keyed",
            key=key.expression,
            key_check=check,
            key_column=ident,
            exclude=", ".join(exclude),
            where=where,
            key_hash=key.hash_expression.format(k=ident),
        )
        return cls(
            schema=schema,
            row_schema=row_schema,
            tensors=tensors,
            keyed_sql=keyed,
            key=key,
            key_column=key_column,
            num_shards=num_shards,
            seed=seed,
            text_columns=words,
            label_column=label_column,
            label_type=None if label_column is None else check_label_column(schema, label_column),
            params={"seed": seed, "num_shards": num_shards},
        )


def _run(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    tmp: Path,
    stream: _Stream,
    options: _Options,
    progress: Progress,
) -> tuple[list[ShardInfo], int]:
    """The local engine: the map step over the whole source as one fragment, then the
    reduce step shard by shard, in this process (:mod:`grouparrow.distributed` schedules
    the same two steps as tasks)."""
    if plan.num_shards > 1:
        progress.set_phase("partitioning")
        _faults.point("map:start")
        map_fragment(con, plan, stream, tmp / "_map")
        _faults.point("map:done")
    (tmp / "data").mkdir(exist_ok=True)
    index_writer = pq.ParquetWriter(
        tmp / INDEX,
        index_schema(plan.schema.field(0).type, plan.label_type),
        write_page_checksum=True,
    )
    infos: list[ShardInfo] = []
    try:
        for shard in range(plan.num_shards):
            progress.set_phase(f"clustering shard {shard + 1}/{plan.num_shards}")
            _faults.point(f"reduce:{shard}:start")
            if plan.num_shards == 1:
                rows_sql: str | None = plan.keyed_sql
            else:
                rows_sql = shard_rows_sql([tmp / "_map"], shard)
            info, index = reduce_shard(con, plan, stream, rows_sql, tmp, shard, options)
            index_writer.write_table(index, row_group_size=max(index.num_rows, 1))
            infos.append(info)
            if plan.num_shards > 1:
                shutil.rmtree(tmp / "_map" / f"__ga_shard={shard}", ignore_errors=True)
            _faults.point(f"reduce:{shard}:done")
    finally:
        index_writer.close()
    _faults.point("index:done")
    return infos, sum(info.num_bytes for info in infos)


def map_fragment(
    con: duckdb.DuckDBPyConnection, plan: _Plan, stream: _Stream, directory: Path
) -> None:
    """The map step over one fragment of the source (the local engine: all of it): every
    keyed row to the Parquet files of its shard, under ``directory/__ga_shard=<i>/``."""
    statement = _sql.render("partition", keyed=plan.keyed_sql, path=_sql.literal(str(directory)))
    _execute(con, plan, stream, statement)


def shard_rows_sql(directories: Sequence[Path], shard: int) -> str | None:
    """SQL for the rows the map step wrote for ``shard`` under ``directories`` (each one
    fragment's output), or ``None`` when none has any."""
    found = [d / f"__ga_shard={shard}" for d in directories]
    patterns = [_sql.literal(str(d / "*.parquet")) for d in found if d.is_dir()]
    if not patterns:
        return None
    return f"SELECT * FROM read_parquet([{', '.join(patterns)}], hive_partitioning = true)"


def reduce_shard(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    stream: _Stream | None,
    rows_sql: str | None,
    directory: Path,
    shard: int,
    options: _Options,
) -> tuple[ShardInfo, pa.Table]:
    """The reduce step for one shard: its rows (``rows_sql``; ``None``: no rows) sorted
    into ``directory/data/shard-….parquet``; returns the shard's manifest entry and index
    rows (with label counts when the plan has a label column). ``stream``, when the source
    is being read in this process, names the row in errors."""
    name = shard_file(shard, plan.num_shards)
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    info, index = _cluster_shard(
        con, plan, stream, rows_sql, directory / name, name, shard, options
    )
    if plan.label_column is not None:
        assert plan.label_type is not None
        labels = count_labels(
            con,
            Storage.at(directory),
            name,
            plan.schema,
            plan.key_column,
            plan.label_column,
            plan.label_type,
        )
        index = with_label_counts(index, labels, f"shard {shard}")
    return info, index


def _unreadable(schema: pa.Schema, exc: Exception) -> str:
    """Why DuckDB refused to read a source of ``schema``: the columns whose Arrow types it
    cannot read, and what to do."""
    bad = []
    for field in schema:
        try:
            with duckdb.connect() as con:
                con.from_arrow(pa.table({"c": pa.array([], field.type)})).fetchall()
        except duckdb.Error:
            bad.append(f"{field.name!r} ({field.type})")
    columns = ", ".join(bad) or "a column"
    return (
        f"DuckDB cannot read the source's column(s) {columns} ({exc}); cast them to a type it "
        "reads before building (e.g. a decimal256 to decimal128 or float64, a union to its "
        "members)"
    )


def _prepare(
    con: duckdb.DuckDBPyConnection, key: PreparedKey, stream: _Stream, spool: Path
) -> KeySpec:
    """Run a prepared key's query over the source; a one-shot stream is spooled first."""
    try:
        if stream.source.sql is None:
            spool.mkdir()
            con.execute(
                "COPY (SELECT * FROM __ga_source) TO "
                f"{_sql.literal(str(spool))} (FORMAT parquet, PER_THREAD_OUTPUT true)"
            )
            con.unregister("__ga_source")
            con.execute(
                "CREATE VIEW __ga_source AS SELECT * FROM "
                f"read_parquet({_sql.literal(str(spool / '*.parquet'))})"
            )
        stats = con.sql(key.query).to_arrow_table()
    except duckdb.Error as exc:
        error = _translate(exc, None, stream)
        raise error from error.__cause__ or exc
    except RuntimeError as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from exc
        raise
    return key.make(stats)


def _execute(
    con: duckdb.DuckDBPyConnection, plan: _Plan, stream: _Stream | None, statement: str
) -> Any:
    try:
        params = {k: v for k, v in plan.params.items() if f"${k}" in statement}
        return con.sql(statement, params=params or None)
    except duckdb.Error as exc:
        error = _translate(exc, plan.key, stream)
        raise error from error.__cause__ or exc
    except RuntimeError as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from exc
        raise


def _interrupted(exc: RuntimeError) -> bool:
    """Whether ``exc`` is the ``RuntimeError("Query interrupted")`` DuckDB 2.0.1 raises when
    Ctrl-C stops a query it streams (not its ``InterruptException``)."""
    return "Query interrupted" in str(exc)


def _translate(exc: duckdb.Error, key: Key | None, stream: _Stream | None) -> BaseException:
    failure = key.failure() if key is not None else None
    if failure is not None:
        return failure
    if stream is not None and stream.failure is not None:
        if isinstance(stream.failure, (GroupArrowError, KeyboardInterrupt)):
            return stream.failure
        return SourceError(f"reading the source failed: {stream.failure}")
    text = str(exc)
    mark = text.find(_NULL_MARK)
    if mark >= 0 and key is not None:
        row, _, preview = text[mark + len(_NULL_MARK) :].partition(":")
        label = stream.source.row_label if stream is not None else RowLabel()
        where = label(int(row)) if row.isdigit() else f"row {row}"
        return NullKeyError(
            f"the key ({key.kind} {key.definition!r}) is null for {where} "
            f'({preview.strip()}); fix the key, or pass on_null="drop" to skip rows '
            "whose key is null"
        )
    if isinstance(exc, duckdb.InterruptException):
        return KeyboardInterrupt()
    if isinstance(exc, duckdb.OutOfMemoryException):
        return GroupArrowError(
            f"DuckDB ran out of memory ({exc}); pass a larger memory_limit or more "
            "num_shards, and make sure temp_directory has free space"
        )
    return GroupArrowError(f"the build query failed: {exc}")


def _cluster_shard(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    stream: _Stream | None,
    rows_sql: str | None,
    path: Path,
    name: str,
    shard: int,
    options: _Options,
) -> tuple[ShardInfo, pa.Table]:
    file_schema = _arrow.parquet_schema(plan.schema)
    row_schema = _arrow.parquet_schema(plan.row_schema) if plan.tensors else file_schema
    writer = ShardWriter(path, file_schema, plan.key_column, options.row_group_bytes)
    runs = GroupRuns(plan.schema.field(0).type)
    try:
        if rows_sql is not None:
            query = _sql.render("cluster", rows=rows_sql)
            relation = _execute(con, plan, stream, query)
            point: str | None = f"reduce:{shard}:writing"  # once the shard file is begun
            try:
                for raw in relation.to_arrow_reader(_BATCH_ROWS):
                    batch = _arrow.conform(raw, row_schema)
                    if plan.tensors:
                        batch = _tensors.to_tensors(batch, file_schema)
                    runs.add(
                        batch.column(0),
                        _arrow.batch_row_nbytes(batch),
                        _arrow.row_words(batch, plan.text_columns),
                    )
                    writer.add(batch)
                    if point is not None:
                        _faults.point(point)
                        point = None
            except duckdb.Error as exc:
                error = _translate(exc, plan.key, stream)
                raise error from error.__cause__ or exc
            except RuntimeError as exc:
                if _interrupted(exc):
                    raise KeyboardInterrupt from exc
                raise
        num_rows, file_bytes, sha256 = writer.close()
    except BaseException:
        writer.abort()
        raise
    index = runs.table(shard)
    info = ShardInfo(
        file=name,
        num_rows=num_rows,
        num_groups=index.num_rows,
        num_bytes=int(pc.sum(index.column("num_bytes")).as_py() or 0),
        file_bytes=file_bytes,
        sha256=sha256,
    )
    return info, index


def _version() -> str:
    from grouparrow import __version__

    return __version__
