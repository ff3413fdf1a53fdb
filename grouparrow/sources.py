"""Anything grouparrow can group, turned into a stream of Arrow record batches.

:func:`open_source` is the one entry point: files (Parquet, CSV, JSON lines; plain or
compressed; paths, globs, directories, lists of them), pyarrow tables, record batch readers
and datasets, HuggingFace ``datasets.Dataset``, and any object exporting the Arrow C stream
interface (``__arrow_c_stream__``). Nothing here reads a whole input into memory.

Example:
    >>> import pyarrow as pa
    >>> src = open_source(pa.table({"user": ["a", "b"], "x": [1, 2]}))
    >>> src.reader.read_all().num_rows
    2
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from grouparrow import _schemas
from grouparrow._arrow import tables_reader
from grouparrow._frames import looks_like_sql, open_frame, open_sql
from grouparrow._tfds import open_tfds
from grouparrow.errors import SourceError
from grouparrow.storage import Storage, is_uri

#: Rows per record batch when grouparrow chooses the batch size.
BATCH_ROWS = 65_536

_COMPRESSIONS = (".gz", ".zst", ".zstd", ".bz2", ".xz")
_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
# How many bytes of Arrow data one byte of file holds, roughly: sizes the shards.
_EXPANSION = {"parquet": 3.0, "csv": 1.2, "json": 1.0}


@dataclass(frozen=True, slots=True)
class RowLabel:
    """Names a row in messages: ``row 1841``, or ``row 12 of 'part-3.parquet'``.

    Rows read by DuckDB from Parquet files are numbered ``file_index << 40 | row_in_file``.
    """

    files: tuple[str, ...] = ()

    def __call__(self, row: int) -> str:
        if not self.files:
            return f"row {row}"
        return f"row {row & _ROW_MASK} of {self.files[row >> _FILE_SHIFT]!r}"


_FILE_SHIFT = 40
_ROW_MASK = (1 << _FILE_SHIFT) - 1


@dataclass(frozen=True, slots=True)
class Source:
    """An opened input: its batches, a description for the manifest, a size estimate.

    When ``sql`` is set, DuckDB reads the input itself with that query (which numbers the
    rows as ``__ga_row``) and ``reader`` only serves the first rows, to probe key functions.
    """

    reader: pa.RecordBatchReader
    description: dict[str, Any]
    size_hint: int | None = None
    sql: str | None = None
    num_rows: int | None = None
    row_label: RowLabel = RowLabel()
    keepalive: list[Any] = field(default_factory=list, repr=False, compare=False)
    #: Where ``sql`` reads remote files: register it on the connection that runs the SQL.
    storage: Storage | None = None


def open_source(
    source: Any,
    *,
    batch_rows: int = BATCH_ROWS,
    split: str | None = None,
    unify_schemas: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    """Open ``source`` as a :class:`Source` whose ``reader`` streams its rows.

    Files may be URIs of any fsspec filesystem (``s3://bucket/c4/*.json.gz``), read with
    ``storage_options``.

    ``split`` picks one split of a ``datasets.DatasetDict`` (or of a folder it was saved to)
    or of a TensorFlow Datasets builder (default ``"train"``).
    Several input files must have the same columns and types (a :class:`SourceError` names
    the first difference) unless ``unify_schemas`` is true: then they are read by column
    name, a column missing from a file is null and differing types are widened by DuckDB.

    The source's columns must have names DuckDB can tell apart: not empty, without NUL, and
    not equal ignoring case (DuckDB's names are case-insensitive). Every batch a stream
    yields must have the columns of its schema, in order (a batch whose types differ only
    in width, ``int32`` for ``int64`` say, is cast), and string columns must hold valid
    UTF-8: else a :class:`SourceError` names the batch, the rows and the column.

    Example:
        >>> import pyarrow as pa
        >>> open_source(pa.table({"user": ["a"]})).reader.schema.names
        ['user']
    """
    src = _open(source, batch_rows, split, unify_schemas, storage_options)
    check_column_names(src.reader.schema)
    # What DuckDB read and wrote back as Arrow is valid UTF-8 already.
    from_duckdb = src.sql is None and src.description.get("type") in _FROM_DUCKDB
    reader = checked_reader(src.reader, validate_utf8=not from_duckdb)
    return dataclasses.replace(src, reader=reader, keepalive=[*src.keepalive, src.reader])


#: Source types whose stream DuckDB produces.
_FROM_DUCKDB = frozenset({"sql", "csv", "json", "duckdb.DuckDBPyRelation"})


def _open(
    source: Any,
    batch_rows: int,
    split: str | None,
    unify_schemas: bool,
    storage_options: Mapping[str, Any] | None,
) -> Source:
    if isinstance(source, str) and looks_like_sql(source) and not os.path.exists(source):
        reader, description, size, keep = open_sql(source, batch_rows)
        return Source(reader, description, size, keepalive=keep)
    if isinstance(source, (str, os.PathLike)) and _is_saved_hf(source):
        import datasets

        source = datasets.load_from_disk(os.fspath(source))
    if isinstance(source, (list, tuple)) and not source:
        raise SourceError(
            "the source is an empty list: give at least one input file, glob or directory"
        )
    if isinstance(source, (str, os.PathLike)) or _is_path_list(source):
        return _open_files(source, batch_rows, unify_schemas, storage_options)
    if isinstance(source, pa.Table):
        return Source(
            source.to_reader(max_chunksize=batch_rows),
            {"type": "pyarrow.Table", "num_rows": source.num_rows},
            source.nbytes,
        )
    if isinstance(source, pa.RecordBatch):
        return _open(pa.Table.from_batches([source]), batch_rows, None, False, None)
    if isinstance(source, pa.RecordBatchReader):
        return Source(source, {"type": "pyarrow.RecordBatchReader"})
    hf = _open_hf(source, batch_rows, split)
    if hf is not None:
        return hf
    tfds = open_tfds(source, batch_rows, split)
    if tfds is not None:
        return tfds
    frame = open_frame(source, batch_rows)
    if frame is not None:
        reader, description, size, keep = frame
        return Source(reader, description, size, keepalive=keep)
    pa_ds = _open_pyarrow_dataset(source, batch_rows)
    if pa_ds is not None:
        return pa_ds
    if hasattr(source, "__arrow_c_stream__"):
        return Source(
            pa.RecordBatchReader.from_stream(source),
            {"type": f"{type(source).__module__}.{type(source).__qualname__}"},
        )
    raise SourceError(
        f"cannot read a source of type {type(source).__module__}.{type(source).__qualname__}; "
        "pass a path or glob of Parquet/CSV/JSON-lines files, a folder written by "
        "datasets' save_to_disk, SQL text, a pyarrow Table, RecordBatchReader or Dataset, a "
        "datasets Dataset/IterableDataset/DatasetDict (with split=), a Polars DataFrame or "
        "LazyFrame, a pandas DataFrame, a DuckDB relation, a prepared TensorFlow Datasets "
        "builder (with split=), or an object with "
        "__arrow_c_stream__"
    )


def check_column_names(schema: pa.Schema) -> None:
    """Refuse column names DuckDB cannot tell apart or address: empty, holding NUL, or equal
    to another ignoring case (DuckDB's identifiers are case-insensitive).

    Example:
        >>> check_column_names(pa.schema([("a", pa.int8()), ("A", pa.int8())]))
        Traceback (most recent call last):
        ...
        grouparrow.errors.SourceError: the source has columns 'a' and 'A', whose names differ only in case; DuckDB, which runs the build, does not tell them apart: rename one
    """  # noqa: E501
    seen: dict[str, str] = {}
    for name in schema.names:
        if not name:
            raise SourceError(
                f"the source has a column without a name (columns: {schema.names}); name it"
            )
        if "\x00" in name:
            raise SourceError(f"the source's column name {name!r} holds a NUL character; rename it")
        other = seen.get(name.casefold())
        if other is None:
            seen[name.casefold()] = name
            continue
        if other == name:
            raise SourceError(f"the source has two columns named {name!r}; rename one")
        raise SourceError(
            f"the source has columns {other!r} and {name!r}, whose names differ only in case; "
            "DuckDB, which runs the build, does not tell them apart: rename one"
        )


def checked_reader(
    reader: pa.RecordBatchReader, *, validate_utf8: bool = True
) -> pa.RecordBatchReader:
    """``reader`` with each batch checked against its declared schema: the same column
    names in the same order; a type of the same kind but another width or layout
    (``int32`` for ``int64``, ``large_string`` for ``string``) is cast; anything else, and
    (``validate_utf8``) a string column holding bytes that are not UTF-8, raises a
    :class:`SourceError` naming the batch, its rows and the column.

    Example:
        >>> schema = pa.schema([("a", pa.int64())])
        >>> batches = [pa.record_batch({"a": [1]}), pa.record_batch({"a": pa.array([2], pa.int8())})]
        >>> checked_reader(pa.RecordBatchReader.from_batches(schema, batches)).read_all()["a"]
        <pyarrow.lib.ChunkedArray object at ...>
        [
          [
            1
          ],
          [
            2
          ]
        ]
    """  # noqa: E501
    schema = reader.schema
    strings = [i for i, f in enumerate(schema) if validate_utf8 and _has_string(f.type)]

    def batches() -> Iterator[pa.RecordBatch]:
        first = 0
        for number, batch in enumerate(reader, start=1):
            where = f"batch {number} of the source (rows {first}-{first + batch.num_rows - 1})"
            if not batch.schema.equals(schema, check_metadata=False):
                batch = _conform(batch, schema, where)
            for i in strings:
                _check_utf8(batch.column(i), schema.field(i).name, first, where)
            first += batch.num_rows
            yield batch

    return pa.RecordBatchReader.from_batches(schema, batches())


def _conform(batch: pa.RecordBatch, schema: pa.Schema, where: str) -> pa.RecordBatch:
    """``batch`` in ``schema``'s types, or a :class:`SourceError` saying how it differs."""
    if batch.schema.names != schema.names:
        raise SourceError(
            f"{where} has the columns {batch.schema.names}, but the source's schema has "
            f"{schema.names}: every batch of a stream must have its schema"
        )
    columns = []
    for column, declared in zip(batch.columns, schema, strict=True):
        if column.type != declared.type:
            if _kind(column.type) != _kind(declared.type):
                raise SourceError(
                    f"{where} has column {declared.name!r} of type {column.type}, but the "
                    f"source's schema says {declared.type}: every batch of a stream must have "
                    "its schema"
                )
            try:
                column = column.cast(declared.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SourceError(
                    f"{where} has column {declared.name!r} of type {column.type}, which does "
                    f"not convert to the source's {declared.type}: {exc}"
                ) from exc
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _kind(kind: pa.DataType) -> Any:
    """What a type holds, whatever its width or layout: types of one kind cast safely (or
    fail on a value that does not fit, which is reported)."""
    if pa.types.is_dictionary(kind):
        return _kind(kind.value_type)
    if isinstance(kind, pa.BaseExtensionType):
        return ("extension", kind.extension_name, _kind(kind.storage_type))
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "floating"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return "binary"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        return ("list", _kind(kind.value_type))
    if pa.types.is_large_list_view(kind):
        return ("list", _kind(kind.value_type))
    if pa.types.is_struct(kind):
        return ("struct", tuple((f.name, _kind(f.type)) for f in kind.fields))
    if pa.types.is_map(kind):
        return ("map", _kind(kind.key_type), _kind(kind.item_type))
    if pa.types.is_timestamp(kind):
        return ("timestamp", kind.tz)
    for family in ("date", "time", "decimal", "duration"):
        if getattr(pa.types, f"is_{family}")(kind):
            return family
    return str(kind)


def _has_string(kind: pa.DataType) -> bool:
    """Whether values of this type hold strings, at any depth."""
    if pa.types.is_dictionary(kind):
        return _has_string(kind.value_type)
    if isinstance(kind, pa.BaseExtensionType):
        return _has_string(kind.storage_type)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return True
    return any(_has_string(kind.field(i).type) for i in range(kind.num_fields))


def _check_utf8(column: pa.Array, name: str, first: int, where: str) -> None:
    """A :class:`SourceError` naming the first row of ``column`` that is not valid (string
    bytes that are not UTF-8), if any."""
    try:
        column.validate(full=True)
        return
    except pa.ArrowInvalid as exc:
        problem = exc
    lo, hi = 0, len(column)  # the first invalid row: invalid [lo, hi) halves, valid before
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:  # a copy: a slice of a nested array would validate all of its children
            pa.concat_arrays([column.slice(lo, mid - lo)]).validate(full=True)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    raise SourceError(
        f"column {name!r} of {where} is not valid Arrow data at row {first + lo} ({problem}); "
        "a string column must hold UTF-8 text: cast a column of other bytes to binary"
    ) from problem


def file_format(path: str) -> str | None:
    """``"parquet"``, ``"csv"`` or ``"json"`` from a file name (compression suffixes ignored)."""
    name = path.lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _FORMATS.get(os.path.splitext(name)[1])


def _is_path_list(source: Any) -> bool:
    return (
        isinstance(source, Sequence)
        and not isinstance(source, (str, bytes))
        and len(source) > 0
        and all(isinstance(s, (str, os.PathLike)) for s in source)
    )


def input_storage(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storage_options: Mapping[str, Any] | None = None,
) -> Storage | None:
    """The filesystem of input files given as URIs (all on one), or ``None`` for local files."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    uris = [os.fspath(i) for i in items if is_uri(i)]
    if not uris:
        return None
    if len(uris) != len(items):
        raise SourceError("the input mixes local paths and URIs; give one or the other")
    protocols = {u.split("://", 1)[0] for u in uris}
    if len(protocols) > 1:
        raise SourceError(f"the input spans several filesystems ({sorted(protocols)}); use one")
    return Storage.at(uris[0], storage_options)


def _expand(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storage: Storage | None = None,
) -> list[str]:
    """The input files (sorted within each glob or directory); URIs stay URIs."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if storage is not None:
        return _expand_remote([os.fspath(i) for i in items], storage)
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not found:
                raise SourceError(f"no file matches the pattern {text!r}")
            paths.extend(found)
        elif os.path.isdir(text):
            found = sorted(
                str(p) for p in Path(text).rglob("*") if p.is_file() and file_format(str(p))
            )
            if not found:
                raise SourceError(
                    f"directory {text!r} holds no Parquet, CSV or JSON-lines file "
                    f"(looked for {', '.join(sorted(_FORMATS))}, optionally compressed)"
                )
            paths.extend(found)
        elif os.path.isfile(text):
            paths.append(text)
        else:
            raise SourceError(f"file not found: {text!r}")
    return paths


def _expand_remote(items: list[str], storage: Storage) -> list[str]:
    fs = storage.fs
    paths: list[str] = []
    for item in items:
        path = fs._strip_protocol(item)
        if glob.has_magic(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise SourceError(f"no file matches the pattern {item!r}")
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if file_format(p))
            if not found:
                raise SourceError(f"{item!r} holds no Parquet, CSV or JSON-lines file")
        elif fs.isfile(path):
            found = [path]
        else:
            raise SourceError(f"file not found: {item!r}")
        paths.extend(fs.unstrip_protocol(p) for p in found)
    return paths


def _open_files(
    source: Any,
    batch_rows: int,
    unify_schemas: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    storage = input_storage(source, storage_options)
    paths = _expand(source, storage)
    found = {p: file_format(p) for p in paths}
    unknown = [p for p, f in found.items() if f is None]
    if unknown:
        raise SourceError(
            f"cannot tell the format of {unknown[0]!r} from its name; supported suffixes are "
            f"{', '.join(sorted(_FORMATS))} (optionally followed by {', '.join(_COMPRESSIONS)})"
        )
    kinds = sorted({f for f in found.values() if f is not None})
    if len(kinds) > 1:
        raise SourceError(
            f"the input mixes file formats ({', '.join(kinds)}); group one format at a time"
        )
    kind = kinds[0]
    if storage is None:
        size = sum(os.path.getsize(p) for p in paths)
        paths = [os.path.abspath(p) for p in paths]
    else:
        size = sum(int(storage.fs.size(p)) for p in paths)
    factor = _EXPANSION[kind] * (4.0 if paths[0].lower().endswith(_COMPRESSIONS) else 1.0)
    description = {"type": kind, "paths": list(paths)}
    if kind == "parquet":
        return _open_parquet(
            paths, description, int(size * factor), unify_schemas, storage, batch_rows
        )
    return _open_with_duckdb(
        kind, paths, batch_rows, description, int(size * factor), unify_schemas, storage
    )


def parquet_file(path: str, storage: Storage | None) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` of a local path, or of a URI on ``storage``'s
    filesystem."""
    import pyarrow.parquet as pq

    if storage is None:
        return pq.ParquetFile(path, pre_buffer=False)
    return pq.ParquetFile(
        storage.fs._strip_protocol(path),
        pre_buffer=False,
        filesystem=storage.arrow_filesystem(),
    )


def _open_parquet(
    paths: list[str],
    description: dict[str, Any],
    size: int,
    unify_schemas: bool = False,
    storage: Storage | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Source:
    """Parquet is read by DuckDB itself (parallel, within its memory limit), rows numbered
    from the files' own row numbers; PyArrow reads the first rows for probing.

    The files' schemas (from their footers) must agree, or ``unify_schemas`` be true: then
    DuckDB reads them with ``union_by_name`` (see :mod:`grouparrow._schemas`).

    Files with a column named ``file_index`` or ``file_row_number`` (in any case) hide
    DuckDB's virtual columns of those names, which number the rows: they are streamed
    instead, in order, by PyArrow (or by DuckDB, one thread, with ``union_by_name``)."""
    from grouparrow import _sql

    files = []
    for path in paths:
        try:
            files.append(parquet_file(path, storage))
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"cannot read Parquet input {path!r}: {exc}") from exc
    schema = files[0].schema_arrow
    schemas = [f.schema_arrow for f in files]
    problem = _schemas.schema_difference(paths, schemas)
    if problem is not None and not unify_schemas:
        raise _schemas.mismatch_error("parquet", problem)
    listed = ", ".join(_sql.literal(p) for p in paths)
    options = "" if problem is None else ", union_by_name = true"
    read = f"read_parquet([{listed}]{options})"
    if any(name.casefold() in _VIRTUAL for s in schemas for name in s.names):
        keep: list[Any] = list(files)
        if problem is None:

            def every_row() -> Any:
                for file in files:
                    yield from file.iter_batches(batch_size=batch_rows)

            reader = pa.RecordBatchReader.from_batches(schema, every_row())
        else:
            reader = _unified_parquet_reader(
                paths, schemas, read, description, keep, storage, None, batch_rows
            )
        return Source(reader, description, size, keepalive=keep)
    sql = (
        f"SELECT *, (CAST(file_index AS BIGINT) << {_FILE_SHIFT}) + "
        f"CAST(file_row_number AS BIGINT) AS __ga_row FROM {read}"
    )
    keepalive: list[Any] = list(files)
    if problem is None:

        def first_rows() -> Any:
            for file in files:
                yield from file.iter_batches(batch_size=_PROBE_BATCH_ROWS)

        probe = pa.RecordBatchReader.from_batches(schema, first_rows())
    else:
        probe = _unified_parquet_reader(paths, schemas, read, description, keepalive, storage)
    return Source(
        probe,
        description,
        size,
        sql=sql,
        num_rows=sum(f.metadata.num_rows for f in files),
        row_label=RowLabel(tuple(paths)),
        keepalive=keepalive,
        storage=storage,
    )


_PROBE_BATCH_ROWS = 1024


#: DuckDB's virtual columns of ``read_parquet`` that number the rows; a column of the same
#: name in a file hides them.
_VIRTUAL = ("file_index", "file_row_number")


def _unified_parquet_reader(
    paths: list[str],
    schemas: list[pa.Schema],
    read: str,
    description: dict[str, Any],
    keepalive: list[Any],
    storage: Storage | None = None,
    limit: int | None = _PROBE_BATCH_ROWS,
    batch_rows: int = _PROBE_BATCH_ROWS,
) -> pa.RecordBatchReader:
    """The first ``limit`` rows (``None``: all, in order) of Parquet files read with
    ``union_by_name``, by DuckDB itself, in the unified schema (and that schema's story in
    ``description``)."""
    import duckdb

    from grouparrow import _arrow

    _schemas.check_unifiable(paths, schemas)
    con = duckdb.connect(config={"threads": 1})
    keepalive.append(con)
    if storage is not None:
        storage.register(con)
    try:
        duck_schema = con.sql(f"SELECT * FROM {read} LIMIT 0").to_arrow_table().schema
    except duckdb.Error as exc:
        raise SourceError(f"cannot unify the schemas of the Parquet input: {exc}") from exc
    schema, widened = _schemas.unified_schema(schemas, duck_schema)
    description["union_by_name"] = True
    if widened:
        description["widened_columns"] = {n: str(duck_schema.field(n).type) for n in widened}

    def first_rows() -> Any:
        relation = con.sql(f"SELECT * FROM {read}" + ("" if limit is None else f" LIMIT {limit}"))
        for batch in relation.to_arrow_reader(batch_rows):
            yield _arrow.conform(batch, schema)

    return pa.RecordBatchReader.from_batches(schema, first_rows())


def _open_with_duckdb(
    kind: str,
    paths: list[str],
    batch_rows: int,
    description: dict[str, Any],
    size: int,
    unify_schemas: bool = False,
    storage: Storage | None = None,
) -> Source:
    """CSV and JSON through DuckDB's readers (parallel, streaming, compression-aware).

    Each file is sniffed on its own first. Files without rows add nothing and are left out
    (a CSV file with only a header still gives its columns; input with no columns at all is
    refused). Different column names across files are refused (or, with ``unify_schemas``,
    read with ``union_by_name``); different sniffed types are not an error (they are guesses
    from a sample, as within one file) but are read with ``union_by_name`` too, so that
    every file's types count, not only the first ones'."""
    import duckdb

    con = duckdb.connect()
    if storage is not None:
        storage.register(con)
    function = "read_csv" if kind == "csv" else "read_json"
    sniffed = _schemas.sniff(con, function, paths)
    kept = [i for i, (_, has_rows) in enumerate(sniffed) if has_rows]
    if not kept:
        names = sniffed[0][0].names
        if kind == "json" or names == ["column0"]:
            which = f"{paths[0]!r} is" if len(paths) == 1 else f"files ({paths[0]!r}, ...) are"
            raise SourceError(
                f"the {kind.upper()} input {which} empty: no rows and no "
                f"{'header' if kind == 'csv' else 'keys'}, so no columns to group by"
            )
        kept = [0]
    read = [paths[i] for i in kept]
    options = ""
    if len(read) > 1:
        schemas = [sniffed[i][0] for i in kept]
        problem = _schemas.schema_difference(read, schemas)
        if problem is not None:
            if not unify_schemas and any(set(s.names) != set(schemas[0].names) for s in schemas):
                raise _schemas.mismatch_error(kind, problem)
            options = ", union_by_name = true"
            description["union_by_name"] = True
    try:
        relation = con.sql(f"SELECT * FROM {function}($paths{options})", params={"paths": read})
        reader = relation.to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise SourceError(f"cannot read {kind.upper()} input {paths[0]!r}: {exc}") from exc
    return Source(reader, description, size, keepalive=[con, relation])


def _is_saved_hf(path: str | os.PathLike[str]) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    folder = Path(path)
    return folder.is_dir() and (
        (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()
    )


def _open_hf(source: Any, batch_rows: int, split: str | None = None) -> Source | None:
    module = type(source).__module__
    if not module.startswith("datasets"):
        return None
    import datasets

    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None or split not in source:
            names, first = ", ".join(source), next(iter(source), "train")
            problem = "" if split is None else f"split={split!r} is not one of them; "
            raise SourceError(
                f"a DatasetDict holds several splits ({names}); {problem}choose one with "
                f"split={first!r}, or pass dataset_dict[{first!r}]"
            )
        return _open_hf(source[split], batch_rows)
    if isinstance(source, datasets.IterableDataset):
        return _open_hf_iterable(source, batch_rows)
    if not isinstance(source, datasets.Dataset):
        return None
    description = {
        "type": "datasets.Dataset",
        "num_rows": source.num_rows,
        "fingerprint": getattr(source, "_fingerprint", None),
        **_hf_builder(source),
    }
    if getattr(source, "_indices", None) is None:
        # Zero-copy: the dataset's own (often memory-mapped) Arrow table.
        table = source.data.table
        return Source(table.to_reader(max_chunksize=batch_rows), description, table.nbytes)
    # Selected/shuffled rows: follow the indices mapping batch by batch.
    arrow = source.with_format("arrow")
    schema = arrow.data.schema

    def batches() -> Any:
        for table in arrow.iter(batch_size=batch_rows):
            yield from table.to_batches()

    return Source(pa.RecordBatchReader.from_batches(schema, batches()), description)


def _open_hf_iterable(source: Any, batch_rows: int) -> Source:
    """An ``IterableDataset``, read batch by batch as Arrow (its schema from the first one)."""
    tables = iter(source.with_format("arrow").iter(batch_size=batch_rows))
    first = next(tables, None)
    if first is None:
        features = source.features
        if features is None:
            raise SourceError("the IterableDataset is empty and declares no features")
        first = features.arrow_schema.empty_table()
    description = {"type": "datasets.IterableDataset", **_hf_builder(source)}
    return Source(tables_reader(first, tables), description)


def _hf_builder(source: Any) -> dict[str, Any]:
    """``{"builder": "json"}`` for a dataset made by ``load_dataset``; else nothing."""
    builder = getattr(getattr(source, "info", None), "builder_name", None)
    return {"builder": builder} if isinstance(builder, str) and builder else {}


def _open_pyarrow_dataset(source: Any, batch_rows: int) -> Source | None:
    import pyarrow.dataset as pds

    if not isinstance(source, pds.Dataset):
        return None
    files = getattr(source, "files", None)
    description: dict[str, Any] = {"type": "pyarrow.dataset.Dataset"}
    if files:
        description["paths"] = list(files)
    return Source(source.scanner(batch_size=batch_rows).to_reader(), description)
