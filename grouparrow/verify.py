"""Checking a grouped dataset against its manifest: files, checksums, index, contiguity.

Works on a local directory or a URI (``verify("s3://bucket/ds", storage_options=...)``):
checksums are computed from the files streamed in pieces, never held whole.

Example:
    >>> report = verify("out/fedc4-sample")     # doctest: +SKIP
    >>> report.ok, report.problems              # doctest: +SKIP
    (True, [])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grouparrow._arrow import parquet_schema, run_starts
from grouparrow._shards import open_parquet
from grouparrow.errors import FormatError
from grouparrow.format import (
    LABEL_COUNTS,
    MANIFEST,
    Manifest,
    index_schema,
    read_manifest,
)
from grouparrow.storage import Storage


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
    storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check the dataset at ``path`` (a directory or a URI, with ``storage_options`` for its
    filesystem): manifest, shard sizes and SHA-256 (``checksums``), the index against the
    data (ids, offsets, row counts), and that each group's rows are contiguous. Returns a
    report listing every problem found, naming the file.

    Example:
        >>> import grouparrow as ga, pyarrow as pa, tempfile
        >>> out = tempfile.mkdtemp() + "/ds"
        >>> _ = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u", output=out)
        >>> verify(out).ok
        True
    """
    report = VerifyReport(str(path))
    try:
        storage = Storage.at(path, storage_options)
        storage.invalidate()  # sizes as they are now, not as a listing cached them
        manifest = read_manifest(storage)
    except (FormatError, FileNotFoundError) as exc:
        report.problems.append(str(exc))
        return report
    files = _Files(storage, path)
    index = _read_index(files, manifest, report)
    start = 0
    for shard, info in enumerate(manifest.shards):
        part = None
        if index is not None:
            part = index.slice(start, info.num_groups)
            start += info.num_groups
        _check_shard(files, manifest, shard, part, checksums, report)
    return report


class _Files:
    """The dataset's files, named in messages as the user named the dataset."""

    def __init__(self, storage: Storage, path: str | os.PathLike[str]) -> None:
        self.storage = storage
        self._local = Path(os.fspath(path).removeprefix("file://")) if storage.local else None

    def name(self, rel: str) -> str:
        return str(self._local / rel) if self._local is not None else self.storage.url(rel)


def _read_index(files: _Files, manifest: Manifest, report: VerifyReport) -> pa.Table | None:
    path = files.name(manifest.index)
    try:
        index = open_parquet(files.storage, manifest.index).read()
    except FileNotFoundError:
        report.problems.append(f"{path}: missing")
        return None
    except (pa.ArrowException, OSError) as exc:
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
    if LABEL_COUNTS in index.column_names:
        _check_label_counts(path, index, report)
    report.checked_groups = index.num_rows
    return index


def _check_label_counts(path: str, index: pa.Table, report: VerifyReport) -> None:
    """Each group's label counts add up to its rows."""
    lists = index.column(LABEL_COUNTS).combine_chunks()
    counts = pc.struct_field(pc.list_flatten(lists), "count").to_numpy()
    parents = pc.list_parent_indices(lists).to_numpy()
    sums = np.bincount(parents, weights=counts, minlength=len(lists)).astype(np.int64)
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
    try:
        file = open_parquet(storage, info.file)
        stored = parquet_schema(manifest.schema)
        if not file.schema_arrow.equals(stored, check_metadata=False):
            problems.append(f"{path}: schema differs from the manifest's")
            return
        keys = file.read(columns=[manifest.key_column]).column(0).combine_chunks()
    except (pa.ArrowException, OSError) as exc:
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
    if not run_keys.equals(part.column("group_id").combine_chunks().cast(run_keys.type)):
        problems.append(f"{path}: group ids or their order differ from {index}")
    if not np.array_equal(starts, part.column("offset").to_numpy()):
        problems.append(f"{path}: group offsets differ from {index}")
    if not np.array_equal(lengths, part.column("num_rows").to_numpy()):
        problems.append(f"{path}: group row counts differ from {index}")
    if info.num_groups != part.num_rows:
        problems.append(f"{path}: {part.num_rows} groups, the manifest says {info.num_groups}")
