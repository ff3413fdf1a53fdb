"""The build on Ray: one map task per fragment of the source, one reduce task per shard.

The driver (the process calling ``ga.build(..., engine="ray")``) opens the source, resolves
the key (running a prepared key's pass, such as a Dirichlet partitioner's label counts)
and cuts the source into fragments; Ray runs :func:`~grouparrow.distributed.tasks.map_task`
on each and, once all succeeded, :func:`~grouparrow.distributed.tasks.reduce_task` on each
shard; the driver writes the index from the reduce tasks' rows and commits the manifest
(:mod:`grouparrow._commit`). Ray retries a task whose worker died (``max_retries``); a
failed attempt's files are never read (see :mod:`grouparrow.distributed.tasks`). An error
in the user's key function or data is not retried: it stops the build with the same
error the local engine raises.

The driver connects to a running cluster if ``ray.init`` was called (``ray.init(
address="auto")`` on a cluster node), else starts a local Ray instance.

The driver calls :func:`grouparrow._faults.point` at its steps, for the kill tests
(``tests/reliability/test_crash_ray.py``): ``"ray:started"`` (Ray is up, nothing submitted),
``"ray:map:<n>"`` and ``"ray:reduce:<n>"`` once ``n`` map or reduce tasks finished (counted
as they finish, from 1), ``"ray:maps-done"``, ``"ray:reduces-done"``, ``"ray:index-written"``
(the index is in the staging location) and ``"ray:done"`` (the map files deleted); then the
commit's points (:mod:`grouparrow._commit`). Tasks have their own (``"map:<fragment>"``,
``"reduce:<shard>"``, in :mod:`grouparrow.distributed.tasks`). A killed driver commits
nothing: the previous output stands, and ``grouparrow gc`` deletes what it left
(docs/reliability.md).

Example:
    >>> ga.build("data/*.parquet", key="user", output="s3://bucket/by-user",
    ...          engine="ray")                                    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from grouparrow import _faults
from grouparrow._progress import Progress
from grouparrow.build import _Options, _Plan, _Stream
from grouparrow.distributed import fragments
from grouparrow.distributed.tasks import MAP_DIR, REDUCE_DIR, BuildSpec, map_task, reduce_task
from grouparrow.errors import KeySpecError
from grouparrow.format import INDEX, ShardInfo, index_schema
from grouparrow.keys import BatchKeyFnSpec, SQLKey
from grouparrow.storage import Storage

#: Attempts after the first for a task whose worker died.
MAX_RETRIES = 3


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("engine='ray' needs Ray: pip install 'grouparrow[ray]'") from exc


def run(
    source: Any,
    storage_options: Mapping[str, Any] | None,
    plan: _Plan,
    stream: _Stream,
    work: Storage,
    tmp: Path,
    options: _Options,
    temp_directory: str | None,
    progress: Progress,
) -> tuple[list[ShardInfo], int, dict[str, Any]]:
    """Map and reduce on Ray into ``work`` (the staging storage); the index is written to
    ``tmp`` (local) and, for remote staging, stored beside the shards. Returns the shard
    entries, the bytes of Arrow data, and what the build did (for the manifest)."""
    ray = _ray()
    _check_key(plan.key_spec)
    if not ray.is_initialized():
        ray.init()
    _faults.point("ray:started")
    parts = fragments.fragments(
        source,
        stream.source_schema,
        target_bytes=fragments.FRAGMENT_BYTES,
        storage_options=storage_options,
    )
    spec = BuildSpec(
        key=plan.key_spec,
        sample=stream.first,
        plan=plan.arguments,
        options=options,
        work=work,
        temp_directory=temp_directory,
    )
    remote_map = ray.remote(map_task).options(
        num_cpus=options.threads, max_retries=MAX_RETRIES, retry_exceptions=False
    )
    remote_reduce = ray.remote(reduce_task).options(
        num_cpus=options.threads, max_retries=MAX_RETRIES, retry_exceptions=False
    )
    spec_ref = ray.put(spec)
    progress.set_phase(f"partitioning ({len(parts)} map tasks)")
    maps = _gather(ray, lambda part: remote_map.remote(spec_ref, part), parts, "map")
    _faults.point("ray:maps-done")
    directories = [m.directory for m in sorted(maps, key=lambda m: m.fragment)]
    reduce_plan = _without_udfs(plan)
    progress.set_phase(f"clustering ({plan.num_shards} reduce tasks)")
    reduced = _gather(
        ray,
        lambda shard: remote_reduce.remote(spec_ref, reduce_plan, shard, directories),
        range(plan.num_shards),
        "reduce",
    )
    _faults.point("ray:reduces-done")
    writer = pq.ParquetWriter(
        tmp / INDEX,
        index_schema(plan.schema.field(0).type, plan.label_type),
        write_page_checksum=True,
    )
    try:
        for _, index in reduced:
            writer.write_table(index, row_group_size=max(index.num_rows, 1))
    finally:
        writer.close()
    if not work.local:
        work.put(tmp / INDEX, INDEX)
    _faults.point("ray:index-written")
    work.invalidate()  # the tasks wrote there: forget cached listings
    for scratch in (MAP_DIR, REDUCE_DIR):
        work.delete(scratch)
    _faults.point("ray:done")
    infos = [info for info, _ in reduced]
    report = {
        "engine": "ray",
        "rows_read": sum(m.rows_read for m in maps),
        "map_tasks": len(parts),
        "reduce_tasks": plan.num_shards,
        "bytes_shuffled": sum(m.bytes_written for m in maps),
    }
    return infos, sum(i.num_bytes for i in infos), report


def _check_key(spec: Any) -> None:
    """Refuse a key that ranks rows over the whole input (SQL window functions, such as
    ``iid``, ``label_dirichlet`` and ``shards``): each map task keys only its fragment."""
    parts = spec if isinstance(spec, tuple) else (spec,)
    for part in parts:
        windowed = (isinstance(part, SQLKey) and _WINDOW.search(part.expression)) or (
            isinstance(part, BatchKeyFnSpec) and part.inputs
        )
        if windowed:
            name = getattr(part, "definition", None) or getattr(part, "expression", part)
            raise KeySpecError(
                f"the key {name} ranks rows over the whole input (a SQL window), but "
                "engine='ray' keys each fragment of the input on its own; build it with "
                "engine='local', or use a key computed row by row (a column, "
                "random_uniform, hash_bucket, dirichlet_over_groups, size_skewed, ...)"
            )


_WINDOW = re.compile(r"\bover\s*\(", re.IGNORECASE)


def _gather(ray: Any, submit: Callable[[Any], Any], items: Sequence[Any], step: str) -> list[Any]:
    """``submit(item)`` for each item, at most two tasks per cluster CPU in flight; their
    results in order (the fault point ``"ray:<step>:<n>"`` once ``n`` succeeded). After the
    first error no task is submitted, those in flight are waited for (none may write into
    the staging location once the driver cleans it up), and the error is raised (the
    user's, unwrapped). Tasks are never cancelled: cancelling made Ray 2.60's driver abort
    ("Tried to complete task that was not pending")."""
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    results: list[Any] = [None] * len(items)
    pending: dict[Any, int] = {}
    queue = iter(enumerate(items))
    error: BaseException | None = None
    finished = 0
    while True:
        while error is None and len(pending) < window:
            entry = next(queue, None)
            if entry is None:
                break
            pending[submit(entry[1])] = entry[0]
        if not pending:
            break
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            n = pending.pop(ref)
            try:
                results[n] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                error = error or exc
                continue
            finished += 1
            _faults.point(f"ray:{step}:{finished}")
    if error is not None:
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise error
    return results


def _without_udfs(plan: _Plan) -> _Plan:
    """``plan`` for reduce tasks: rows are keyed already, the key functions stay home."""
    out = copy.copy(plan)
    out.key = dataclasses.replace(plan.key, udfs=[])
    return out
