"""Vectorized Arrow helpers used on the build's per-batch path."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with the types of ``schema`` (DuckDB returns some types in another form).

    A round trip through DuckDB turns ``large_string`` into ``string``, dictionaries into
    values, fixed-size lists read from Parquet into lists (and :func:`duckdb_safe` changes
    more); casting restores them, at any depth, so the output keeps the source schema,
    extension types (such as ``arrow.fixed_shape_tensor``) included.
    """
    if batch.schema.equals(schema, check_metadata=False):
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    columns = [
        _cast(column, field.type) for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def tables_reader(first: pa.Table, rest: Iterator[pa.Table]) -> pa.RecordBatchReader:
    """A reader over ``first`` then ``rest``, each cast to ``first``'s schema.

    Example:
        >>> reader = tables_reader(pa.table({"a": [1]}), iter([pa.table({"a": [2, 3]})]))
        >>> reader.read_all().num_rows
        3
    """
    schema = first.schema

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        for table in rest:
            yield from table.cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def duckdb_safe(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the types DuckDB cannot carry unchanged replaced by ones it can.

    At any depth (inside lists, structs and maps too): durations travel as int64 (DuckDB
    reads them as intervals), half floats as float32 (DuckDB has none), fixed-size binary as
    binary (DuckDB's Parquet writer misplaces it inside a struct with null rows) and
    extension types as their storage (DuckDB turns some, such as ``arrow.uuid``, into types
    of its own). :func:`conform` casts them back.

    Example:
        >>> duckdb_safe(pa.schema([("d", pa.list_(pa.float16()))])).field("d").type
        ListType(list<item: float>)
    """
    return pa.schema(
        [field.with_type(_safe_type(field.type)) for field in schema], metadata=schema.metadata
    )


def _safe_type(kind: pa.DataType) -> pa.DataType:
    def safe(kind: pa.DataType) -> pa.DataType:
        if isinstance(kind, pa.BaseExtensionType):
            return kind.storage_type
        if pa.types.is_duration(kind):
            return pa.int64()
        if pa.types.is_float16(kind):
            return pa.float32()
        if pa.types.is_fixed_size_binary(kind):
            return pa.binary()
        return kind

    return _map_type(kind, safe)


def _storage_type(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every extension type, at any depth, replaced by its storage type."""
    return _map_type(kind, lambda k: k.storage_type if isinstance(k, pa.BaseExtensionType) else k)


def _map_type(kind: pa.DataType, change: Callable[[pa.DataType], pa.DataType]) -> pa.DataType:
    """``kind`` with ``change`` applied to it, then to the types inside it (depth first)."""
    kind = change(kind)
    if pa.types.is_map(kind):
        key, item = kind.key_field, kind.item_field
        return pa.map_(
            key.with_type(_map_type(key.type, change)),
            item.with_type(_map_type(item.type, change)),
            keys_sorted=kind.keys_sorted,
        )
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        value = kind.value_field.with_type(_map_type(kind.value_type, change))
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(value, kind.list_size)
        return pa.large_list(value) if pa.types.is_large_list(kind) else pa.list_(value)
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_map_type(f.type, change)) for f in kind.fields])
    return kind


def parquet_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` as it reads back from Parquet (e.g. ``timestamp[s]`` -> ``timestamp[ms]``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_batches([empty_batch(schema)]), sink)
    return pq.read_schema(pa.BufferReader(sink.getvalue()))


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows of ``schema`` (``Schema.empty_table`` fails on nested extensions).

    Example:
        >>> empty_batch(pa.schema([("t", pa.list_(pa.uuid()))])).num_rows
        0
    """
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def _cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``array`` as ``target``. Arrow's cast does not reach extension types inside nested
    types: such arrays are cast as their storage, viewed (no copy) from and to it."""
    if array.type == target:
        return array
    if isinstance(target, pa.BaseExtensionType):
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        if isinstance(target, pa.UuidType) and _is_string(array.type):
            array = _uuid_bytes(array)  # DuckDB returns UUIDs as text
        return pa.ExtensionArray.from_storage(target, _cast(array, target.storage_type))
    if isinstance(array.type, pa.BaseExtensionType):
        return _cast(array.storage, target)
    if not (_has_extension(target) or _has_extension(array.type)):
        return array.cast(target)
    plain = array.view(_storage_type(array.type))
    return _cast(plain, _storage_type(target)).view(target)


def _has_extension(kind: pa.DataType) -> bool:
    if isinstance(kind, pa.BaseExtensionType):
        return True
    return any(_has_extension(kind.field(i).type) for i in range(kind.num_fields))


def _is_string(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


_HEX = np.zeros(256, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def _uuid_bytes(array: pa.Array) -> pa.Array:
    """UUID text (``"1b4e28ba-2fa1-11d2-883f-0016d3cca427"``) as 16-byte binary."""
    digits = pc.replace_substring(array.cast(pa.large_string()), "-", "")
    if digits.null_count:
        digits = pc.fill_null(digits, "0" * 32)
    lengths = pc.binary_length(digits).to_numpy()
    if len(digits) and not (lengths == 32).all():
        raise pa.ArrowInvalid(f"not a UUID: {digits[int(np.argmin(lengths == 32))]}")
    offsets = _offsets(digits)
    text = np.frombuffer(digits.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    nibbles = _HEX[text].reshape(-1, 2)
    raw = (nibbles[:, 0] << 4) | nibbles[:, 1]
    out = pa.Array.from_buffers(pa.binary(16), len(array), [None, pa.py_buffer(raw.tobytes())])
    return pc.if_else(array.is_null(), pa.scalar(None, pa.binary(16)), out)


def row_nbytes(array: pa.Array) -> np.ndarray:
    """Bytes of Arrow data each row of ``array`` holds (values, offsets; not validity bits)."""
    n = len(array)
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):
        return row_nbytes(array.storage)
    if pa.types.is_dictionary(kind):
        return row_nbytes(array.dictionary_decode())
    if pa.types.is_null(kind):
        return np.zeros(n, np.int64)
    if pa.types.is_boolean(kind):
        return np.ones(n, np.int64)
    if pa.types.is_fixed_size_binary(kind):
        return np.full(n, kind.byte_width, np.int64)
    if _is_var_width(kind):
        offsets = _offsets(array)
        return np.diff(offsets).astype(np.int64) + offsets.itemsize
    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        plain = pa.large_string() if pa.types.is_string_view(kind) else pa.large_binary()
        return row_nbytes(array.cast(plain)) + 8  # a view is 16 bytes, a large offset 8
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        child = row_nbytes(array.values.slice(array.offset * size, n * size))
        return child.reshape(n, size).sum(axis=1) if n else np.zeros(0, np.int64)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        offsets = _offsets(array)
        child = row_nbytes(array.values.slice(offsets[0], offsets[-1] - offsets[0]))
        sums = np.concatenate([[0], np.cumsum(child)])
        rel = offsets - offsets[0]
        return sums[rel[1:]] - sums[rel[:-1]] + offsets.itemsize
    if pa.types.is_struct(kind):
        total = np.zeros(n, np.int64)
        for i in range(kind.num_fields):
            total += row_nbytes(array.field(i))
        return total
    try:
        width = kind.bit_width
    except ValueError:  # not fixed-width: unions, list views, run-end encoded arrays
        width = 0
    if width >= 8:
        return np.full(n, width // 8, np.int64)
    # Anything else: spread the array's bytes evenly over its rows.
    return np.full(n, array.nbytes // max(n, 1), np.int64)


def _is_var_width(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _offsets(array: pa.Array) -> np.ndarray:
    large = array.type in (pa.large_string(), pa.large_binary()) or pa.types.is_large_list(
        array.type
    )
    dtype = np.int64 if large else np.int32
    buffer = array.buffers()[1]
    return np.frombuffer(
        buffer, dtype, count=len(array) + 1, offset=array.offset * dtype().itemsize
    )


def run_starts(keys: pa.Array) -> np.ndarray:
    """Positions where a new run of equal values starts in ``keys`` (0 first, if any rows).

    Example:
        >>> run_starts(pa.array(["a", "a", "b", "a"])).tolist()
        [0, 2, 3]
    """
    n = len(keys)
    if n < 2:
        return np.zeros(n, np.int64)
    change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)


def batch_row_nbytes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes of Arrow data of each row of ``batch``, over all its columns."""
    total = np.zeros(batch.num_rows, np.int64)
    for column in batch.columns:
        total += row_nbytes(column)
    return total


def row_words(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """Whitespace-separated words in each row, summed over the string ``columns``.

    Bytes up to 0x20 (space, tab, newlines and the other ASCII control characters) separate
    words: for text without control characters other than whitespace this equals
    ``len(text.split())`` (which also splits on Unicode spaces such as U+00A0).
    """
    total = np.zeros(batch.num_rows, np.int64)
    for name in columns:
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = column.cast(pa.large_string())
        total += _words(column)
    return total


_WORD_CHUNK = 1 << 20  # bytes per step: keeps the temporaries in cache


def _words(array: pa.Array) -> np.ndarray:
    n = len(array)
    counts = np.zeros(n, np.int64)
    if not n:
        return counts
    offsets = _offsets(array).astype(np.int64)
    base = int(offsets[0])
    rel = offsets - base
    total = int(rel[-1])
    if not total:
        return counts
    data = np.frombuffer(array.buffers()[2], np.uint8, total, base)
    cuts = np.unique(np.append(np.searchsorted(rel, np.arange(0, total, _WORD_CHUNK)), n))
    for a, b in itertools.pairwise(cuts):
        lo, hi = int(rel[a]), int(rel[b])
        if hi == lo:
            continue
        space = data[lo:hi] <= 32
        before = np.empty_like(space)  # is the previous byte a space (or a row start)?
        before[0] = True
        before[1:] = space[:-1]
        starts = rel[a:b] - lo
        before[starts[starts < hi - lo]] = True
        words = np.flatnonzero(np.greater(before, space))
        counts[a:b] = np.diff(np.searchsorted(words, rel[a : b + 1] - lo))
    if array.null_count:
        counts[array.is_null().to_numpy(zero_copy_only=False)] = 0
    return counts


def is_text(kind: pa.DataType) -> bool:
    """Whether a column of this type is counted as text (plain, view or dictionary strings)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )
