"""The map and reduce tasks of a distributed build, independent of the scheduler.

Both wrap the local engine's steps (:func:`grouparrow.build.map_fragment` and
:func:`grouparrow.build.reduce_shard`), so there is one implementation of the logic. Each
task opens its own DuckDB connection within its own memory budget and works in a scratch
directory of its own; files reach the build's staging storage (``work``, shared by all
tasks: a local directory, or a prefix of the output's object store) only once the task has
finished them:

- a map attempt writes its rows under ``_map/<fragment>-<attempt id>/__ga_shard=<i>/`` and
  returns that name; the driver keeps only the names of attempts that succeeded, so rows of
  a failed attempt (a worker killed half-way) are never read twice;
- a reduce attempt writes its shard to a scratch file and moves (or uploads) it whole to
  ``data/shard-….parquet``; a retry writes the same bytes again.

Example:
    >>> spec = BuildSpec(key="u", sample=None, plan={}, options=None, work=None)  # doctest: +SKIP
    >>> result = map_task(spec, fragment)                                       # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from grouparrow import _faults
from grouparrow._progress import Progress
from grouparrow.build import (
    _connect,
    _keyed,
    _Options,
    _Plan,
    _Stream,
    _tune_partitioning,
    map_fragment,
    reduce_shard,
    shard_rows_sql,
)
from grouparrow.distributed.fragments import Fragment
from grouparrow.format import ShardInfo, shard_file
from grouparrow.keys import KeySpec
from grouparrow.storage import Storage

MAP_DIR = "_map"
REDUCE_DIR = "_reduce"


@dataclass(frozen=True)
class BuildSpec:
    """What every task of one build needs: the key (prepared keys already made), the rows
    key functions are probed on, the plan's arguments, each task's budget, and where the
    build's files go."""

    key: KeySpec
    sample: pa.RecordBatch
    plan: dict[str, Any]
    options: _Options
    work: Storage
    temp_directory: str | None = None


@dataclass(frozen=True)
class MapResult:
    """A finished map attempt: its directory under ``work`` and the rows it read."""

    fragment: int
    directory: str
    rows_read: int
    bytes_written: int


def map_task(spec: BuildSpec, fragment: Fragment) -> MapResult:
    """Key and partition one fragment of the source into the build's staging storage."""
    scratch = Path(tempfile.mkdtemp(prefix="grouparrow-map-", dir=spec.temp_directory))
    con = None
    try:
        con = _connect(spec.options, scratch / "_spill")
        stream = _Stream(fragment.open(), Progress(False), first_row=fragment.first_row)
        plan = _keyed(
            con, stream, spec.key, scratch / "_spool", Progress(False), spec.sample, **spec.plan
        )
        _tune_partitioning(con, stream.first, plan.num_shards, spec.options.memory_limit)
        directory = f"{MAP_DIR}/{fragment.index:06d}-{uuid.uuid4().hex[:12]}"
        local = spec.work.root_path / directory if spec.work.local else scratch / "map"
        local.parent.mkdir(parents=True, exist_ok=True)
        map_fragment(con, plan, stream, local)
        con.close()
        con = None
        _faults.point(f"map:{fragment.index}")
        written = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
        if not spec.work.local and local.is_dir():
            spec.work.put(local, directory)
        return MapResult(fragment.index, directory, stream.rows_read, written)
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(scratch, ignore_errors=True)


def reduce_task(
    spec: BuildSpec, plan: _Plan, shard: int, directories: list[str]
) -> tuple[ShardInfo, pa.Table]:
    """Sort one shard's rows from the successful map attempts' ``directories`` into its
    Parquet file in the staging storage; its manifest entry and index rows."""
    scratch = Path(tempfile.mkdtemp(prefix="grouparrow-reduce-", dir=spec.temp_directory))
    con = None
    try:
        inputs = _shard_inputs(spec.work, directories, shard, scratch / "in")
        if spec.work.local:
            out = spec.work.root_path / REDUCE_DIR / f"{shard:05d}-{uuid.uuid4().hex[:12]}"
        else:
            out = scratch / "out"
        con = _connect(spec.options, scratch / "_spill")
        info, index = reduce_shard(
            con, plan, None, shard_rows_sql(inputs, shard), out, shard, spec.options
        )
        con.close()
        con = None
        _faults.point(f"reduce:{shard}")
        name = shard_file(shard, plan.num_shards)
        spec.work.put(out / name, name)
        if spec.work.local:
            shutil.rmtree(out, ignore_errors=True)
        return info, index
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _shard_inputs(work: Storage, directories: list[str], shard: int, scratch: Path) -> list[Path]:
    """Local directories holding ``directories``' files of ``shard`` (downloaded when the
    staging storage is remote)."""
    if work.local:
        return [work.root_path / d for d in directories]
    work.invalidate()  # other tasks wrote there: forget cached listings
    local = []
    for n, directory in enumerate(directories):
        part = f"{directory}/__ga_shard={shard}"
        files = work.list(part)
        if not files:
            continue
        target = scratch / f"{n:06d}"
        for file in files:
            work.get(file, target / f"__ga_shard={shard}" / Path(file).name)
        local.append(target)
    return local
