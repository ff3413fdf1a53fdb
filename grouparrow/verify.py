"""Checking a grouped dataset against its manifest: files, checksums, index, contiguity.

Three depths (see "What is checked, and when" in FORMAT.md):

- ``verify(path, checksums=False)``: the manifest's structure, each file's size and the
  checksum of its tail (footer and page index), the index against the data's key column
  (ids, offsets, row counts, contiguity), reading the key column only.
- ``verify(path)`` (the default, ``grouparrow verify DIR``): that, plus the SHA-256 of every
  byte of every file (the manifest's own checksum, the index's, each shard's): any changed
  byte is reported, naming the file.
- ``verify(path, full=True)`` (``grouparrow verify DIR --full``): that, plus every column of
  every row group decoded (each page's CRC-32 checked) and the index's per-group statistics
  (``num_bytes``, ``num_words``, label counts) recomputed from the data.

Works on a local directory or a URI (``verify("s3://bucket/ds", storage_options=...)``):
checksums are computed from the files streamed in pieces, never held whole.

Example:
    >>> report = verify("out/fedc4-sample")     # doctest: +SKIP
    >>> report.ok, report.problems              # doctest: +SKIP
    (True, [])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grouparrow._arrow import batch_row_nbytes, parquet_schema, row_words, run_starts
from grouparrow._shards import READ_ERRORS, open_parquet
from grouparrow.errors import CorruptDatasetError, FormatError
from grouparrow.format import (
    LABEL_COUNTS,
    MANIFEST,
    Manifest,
    index_schema,
    read_manifest,
)
from grouparrow.storage import Storage

T = TypeVar("T")


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found: ``problems`` is empty when the dataset is sound."""

    path: str
    problems: list[str] = field(default_factory=list)
    checked_shards: int = 0
    checked_groups: int = 0
    checked_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.checked_shards} shards, {self.checked_groups:,} groups, "
            f"{self.checked_rows:,} rows checked"
        )
        if self.ok:
            return f"{head}: OK"
        return "\n".join(
            [f"{head}: {len(self.problems)} problem(s)", *(f"  - {p}" for p in self.problems)]
        )


def verify(
    path: str | os.PathLike[str],
    *,
    checksums: bool = True,
    full: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check the dataset at ``path`` (a directory or a URI, with ``storage_options`` for its
    filesystem): the manifest (and its own checksum), each file's size, SHA-256
    (``checksums``; ``False`` checks only the tails' checksums) and footer, the index against
    the data (ids, offsets, row counts), and that each group's rows are contiguous. With
    ``full``, also decode every column of every row group and recompute the index's
    per-group statistics from the data. Returns a report listing every problem found,
    naming the file.

    Example:
        >>> import grouparrow as ga, pyarrow as pa, tempfile
        >>> out = tempfile.mkdtemp() + "/ds"
        >>> _ = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u", output=out)
        >>> verify(out).ok, verify(out, full=True).ok
        (True, True)
    """
    report = VerifyReport(str(path))
    try:
        storage = Storage.at(path, storage_options)
        storage.invalidate()  # sizes as they are now, not as a listing cached them
        files = _Files(storage, path)
        manifest = _read_manifest(files, checksums, report)
    except (FormatError, FileNotFoundError) as exc:
        report.problems.append(str(exc))
        return report
    if manifest is None:
        return report
    index = _guarded(
        files.name(manifest.index), report, _read_index, files, manifest, checksums, report
    )
    start = 0
    for shard, info in enumerate(manifest.shards):
        part = None
        if index is not None:
            part = index.slice(start, info.num_groups)
            start += info.num_groups
        _guarded(
            files.name(info.file),
            report,
            _check_shard,
            files,
            manifest,
            shard,
            part,
            checksums,
            full,
            report,
        )
    return report


def _guarded(where: str, report: VerifyReport, check: Callable[..., T], *args: Any) -> T | None:
    """``check(*args)``; whatever else it raises on a damaged file is that file's problem
    (a damaged file can hold any bytes: verify reports, it does not crash)."""
    try:
        return check(*args)
    except Exception as exc:
        report.problems.append(f"{where}: cannot be checked ({type(exc).__name__}: {exc})")
        return None


class _Files:
    """The dataset's files, named in messages as the user named the dataset."""

    def __init__(self, storage: Storage, path: str | os.PathLike[str]) -> None:
        self.storage = storage
        self._local = Path(os.fspath(path).removeprefix("file://")) if storage.local else None

    def name(self, rel: str) -> str:
        return str(self._local / rel) if self._local is not None else self.storage.url(rel)

    def tail_sha256(self, rel: str, size: int, tail_bytes: int) -> str:
        """The SHA-256 of the last ``tail_bytes`` of a file of ``size`` bytes."""
        with self.storage.open_ranges(rel) as f:
            f.seek(size - tail_bytes)
            return hashlib.sha256(f.read(tail_bytes)).hexdigest()


def _read_manifest(files: _Files, checksums: bool, report: VerifyReport) -> Manifest | None:
    """The manifest; one that fails its own checksum is reported and checked further as it
    reads (what it says of the other files may show what changed)."""
    where = files.name(MANIFEST)
    try:
        return read_manifest(files.storage, checksum=checksums)
    except CorruptDatasetError as exc:  # its checksum: the rest is still worth checking
        report.problems.append(str(exc))
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        report.problems.append(f"{where}: cannot be read ({exc})")
        return None
    return read_manifest(files.storage, checksum=False)


def _read_index(
    files: _Files, manifest: Manifest, checksums: bool, report: VerifyReport
) -> pa.Table | None:
    storage = files.storage
    path = files.name(manifest.index)
    info = manifest.index_info
    if not storage.is_file(manifest.index):
        report.problems.append(f"{path}: missing")
        return None
    if info is not None:
        size = storage.size(manifest.index)
        if size != info.file_bytes:
            report.problems.append(f"{path}: {size} bytes, the manifest says {info.file_bytes}")
        elif checksums and storage.sha256(manifest.index) != info.sha256:
            report.problems.append(
                f"{path}: SHA-256 differs from the manifest (the file changed or is damaged)"
            )
        elif files.tail_sha256(manifest.index, size, info.tail_bytes) != info.tail_sha256:
            report.problems.append(
                f"{path}: its footer or page index differs from their checksum in the manifest"
            )
    try:
        index = open_parquet(storage, manifest.index).read()
    except READ_ERRORS as exc:
        report.problems.append(f"{path}: cannot be read ({exc})")
        return None
    expected = index_schema(manifest.key_type, manifest.label_type)
    if not index.schema.equals(expected, check_metadata=False):
        report.problems.append(f"{path}: schema {index.schema} differs from {expected}")
        return None
    if index.num_rows != manifest.num_groups:
        report.problems.append(
            f"{path}: {index.num_rows} rows, but the manifest lists {manifest.num_groups} groups"
        )
        return None
    shards = index.column("shard").to_numpy()
    expected_shards = np.repeat(
        np.arange(manifest.num_shards), [s.num_groups for s in manifest.shards]
    )
    if not np.array_equal(shards, expected_shards):
        report.problems.append(f"{path}: shard numbers disagree with the manifest's group counts")
        return None
    if pc.count_distinct(index.column("group_id")).as_py() != index.num_rows:
        report.problems.append(f"{path}: some group id appears more than once")
    if sum(s.num_rows for s in manifest.shards) != manifest.num_rows:
        report.problems.append(
            f"{files.name(MANIFEST)}: shard row counts do not add up to num_rows"
        )
    if sum(s.num_bytes for s in manifest.shards) != manifest.num_bytes:
        report.problems.append(
            f"{files.name(MANIFEST)}: shard byte counts do not add up to num_bytes"
        )
    if LABEL_COUNTS in index.column_names:
        _check_label_counts(path, index, report)
    report.checked_groups = index.num_rows
    return index


def _check_label_counts(path: str, index: pa.Table, report: VerifyReport) -> None:
    """Each group's label counts add up to its rows."""
    lists = index.column(LABEL_COUNTS).combine_chunks()
    counts = pc.struct_field(pc.list_flatten(lists), "count").to_numpy()
    parents = pc.list_parent_indices(lists).to_numpy()
    sums = np.zeros(len(lists), np.int64)
    np.add.at(sums, parents, counts)  # integers: damaged counts must not become floats
    bad = np.flatnonzero(sums != index.column("num_rows").to_numpy())
    if len(bad):
        i = int(bad[0])
        report.problems.append(
            f"{path}: the label counts of group {index.column('group_id')[i].as_py()!r} add "
            f"up to {sums[i]} rows, but it has {index.column('num_rows')[i].as_py()} "
            f"({len(bad)} such groups); recount with ds.compute_stats(label_column=...)"
        )


def _check_shard(
    files: _Files,
    manifest: Manifest,
    shard: int,
    part: pa.Table | None,
    checksums: bool,
    full: bool,
    report: VerifyReport,
) -> None:
    info = manifest.shards[shard]
    storage = files.storage
    path = files.name(info.file)
    index = manifest.index
    problems = report.problems
    if not storage.is_file(info.file):
        problems.append(f"{path}: missing")
        return
    size = storage.size(info.file)
    if size != info.file_bytes:
        problems.append(f"{path}: {size} bytes, the manifest says {info.file_bytes}")
        return
    if checksums and storage.sha256(info.file) != info.sha256:
        problems.append(
            f"{path}: SHA-256 differs from the manifest (the file changed or is damaged)"
        )
        return
    if info.tail_sha256 and (
        files.tail_sha256(info.file, size, info.tail_bytes) != info.tail_sha256
    ):
        problems.append(
            f"{path}: its footer or page index differs from their checksum in the manifest"
        )
    try:
        file = open_parquet(storage, info.file)
        stored = parquet_schema(manifest.schema)
        if not file.schema_arrow.equals(stored, check_metadata=False):
            problems.append(f"{path}: schema differs from the manifest's")
            return
        keys = file.read(columns=[manifest.key_column]).column(0).combine_chunks()
    except READ_ERRORS as exc:
        problems.append(f"{path}: cannot be read ({exc})")
        return
    report.checked_shards += 1
    report.checked_rows += len(keys)
    if len(keys) != info.num_rows:
        problems.append(f"{path}: {len(keys)} rows, the manifest says {info.num_rows}")
        return
    if part is None:
        return
    n = len(keys)
    starts = run_starts(keys)
    run_keys = keys.take(pa.array(starts))
    lengths = np.diff(np.append(starts, n))
    if pc.count_distinct(run_keys).as_py() != len(run_keys):
        problems.append(f"{path}: the rows of some group are not contiguous")
    if len(run_keys) != part.num_rows:
        problems.append(f"{path}: {len(run_keys)} groups in the data, {part.num_rows} in {index}")
        return
    same_ids = run_keys.equals(part.column("group_id").combine_chunks().cast(run_keys.type))
    if not same_ids:
        problems.append(f"{path}: group ids or their order differ from {index}")
    if not np.array_equal(starts, part.column("offset").to_numpy()):
        problems.append(f"{path}: group offsets differ from {index}")
    if not np.array_equal(lengths, part.column("num_rows").to_numpy()):
        problems.append(f"{path}: group row counts differ from {index}")
    if info.num_groups != part.num_rows:
        problems.append(f"{path}: {part.num_rows} groups, the manifest says {info.num_groups}")
    if full and same_ids:
        _check_statistics(path, file, manifest, starts, part, report)


def _check_statistics(
    path: str,
    file: pq.ParquetFile,
    manifest: Manifest,
    starts: np.ndarray,
    part: pa.Table,
    report: VerifyReport,
) -> None:
    """``verify(full=True)``: decode every row group of a shard (pages' CRC-32 checked) and
    compare each group's ``num_bytes``, ``num_words`` and label counts with the index."""
    text_columns = list(manifest.stats.get("num_words", {}).get("columns", []))
    label = manifest.label_column
    nbytes, words, labels = [], [], []
    try:
        for rg in range(file.metadata.num_row_groups):
            for batch in file.read_row_group(rg).to_batches():
                nbytes.append(batch_row_nbytes(batch))
                words.append(row_words(batch, text_columns))
                if label is not None:
                    labels.append(batch.column(label))
    except READ_ERRORS as exc:
        report.problems.append(f"{path}: cannot be decoded ({exc})")
        return
    index = manifest.index
    for column, rows in (("num_bytes", nbytes), ("num_words", words)):
        per_row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        sums = np.add.reduceat(per_row, starts) if len(starts) else per_row[:0]
        if not np.array_equal(sums, part.column(column).to_numpy()):
            report.problems.append(f"{path}: the {column} of some group differ from {index}")
    if label is not None and LABEL_COUNTS in part.column_names:
        values = pa.chunked_array(labels, file.schema_arrow.field(label).type)
        _compare_label_counts(path, index, values, starts, part, report)


def _compare_label_counts(
    path: str,
    index: str,
    values: pa.ChunkedArray,
    starts: np.ndarray,
    part: pa.Table,
    report: VerifyReport,
) -> None:
    """Each group's label counts in the index equal those counted from the data."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    sizes = np.diff(np.append(starts, len(values)))
    group = np.repeat(np.arange(len(starts)), sizes)
    counted = (
        pa.table({"g": group, "label": values})
        .group_by(["g", "label"], use_threads=False)
        .aggregate([([], "count_all")])
        .rename_columns(["g", "label", "count"])
    )
    lists = part.column(LABEL_COUNTS).combine_chunks()
    flat = pc.list_flatten(lists)
    stored = pa.table(
        {
            "g": pc.list_parent_indices(lists),
            "label": pc.struct_field(flat, "label").cast(values.type),
            "count": pc.struct_field(flat, "count"),
        }
    )
    order = [(name, "ascending", "at_end") for name in ("g", "label", "count")]
    if not counted.cast(stored.schema).sort_by(order).equals(stored.sort_by(order)):
        report.problems.append(f"{path}: the label counts of some group differ from {index}")
