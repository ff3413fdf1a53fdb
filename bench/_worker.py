"""One measured run, in its own process, so that its peak RSS is its own.

The benchmark scripts start ``python3 -m bench._worker JOB.json RESULT.json``; the job says
what to run (a grouparrow build, the plain-DuckDB baseline, a verify), the result holds the
seconds (timed inside the process, imports excluded), the seconds of each phase and the
process's peak RSS. :func:`launch` is the parent's side.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
HOST_SQL = "regexp_extract(url, '://([^/:]+)', 1)"
_ERROR_CHARS = 200
_RSS_INTERVAL = 0.02
# The baseline writes row groups of 16 MiB, as grouparrow does (DuckDB's default, 122,880
# rows of ~575 bytes, buffers ~70 MB per thread and runs out of memory under the budget).
_ROW_GROUP = "ROW_GROUP_SIZE_BYTES '16MiB'"
#: Groups made by the partitioners that take a number of groups.
GROUPS = 1000


def _netloc(example: Mapping[str, Any]) -> str:
    return urlparse(example["url"]).netloc


#: The keys a run can group by: name -> the key spec, made from the grouparrow module (in
#: the worker, so that the import is not timed). Benchmarking another partitioner is one
#: entry here; ``python3 -m bench.build --key NAME`` (or ``--key all``) then runs it.
KEYS: dict[str, Callable[[ModuleType], Any]] = {
    "sql": lambda ga: ga.sql(HOST_SQL),
    "python": lambda ga: ga.key_fn(_netloc, columns=["url"]),
    "url_host": lambda ga: ga.partitioners.url_host("url"),
    "url_domain": lambda ga: ga.partitioners.url_domain("url"),
    "hash_bucket": lambda ga: ga.partitioners.hash_bucket("url", GROUPS),
    "random_uniform": lambda ga: ga.partitioners.random_uniform(GROUPS),
    "iid": lambda ga: ga.partitioners.iid(GROUPS),
    "size_skewed": lambda ga: ga.partitioners.size_skewed(GROUPS, power=1.0),
    "dirichlet": lambda ga: ga.partitioners.dirichlet_over_groups("label", GROUPS, alpha=0.5),
    "label_dirichlet": lambda ga: ga.partitioners.label_dirichlet("label", GROUPS, alpha=0.5),
    "shards": lambda ga: ga.partitioners.shards("label", GROUPS, 2),
}


def launch(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process; its result, with ``ok`` False if it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        os.sync()  # the previous run's dirty pages are written back before this one starts
        done = subprocess.run(
            [sys.executable, "-m", "bench._worker", str(job_file), str(result_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not result_file.exists():
            return {"ok": False, "error": _error_line(done.stderr or done.stdout)}
        return json.loads(result_file.read_text())


def _error_line(output: str) -> str:
    """The exception line of a traceback (``XxxError: message``), shortened."""
    lines = [line for line in output.splitlines() if line.strip()] or ["(no output)"]
    raised = [line for line in lines if not line.startswith(" ") and "Error" in line]
    return (raised or lines)[-1][:_ERROR_CHARS]


class _RssByPhase:
    """Samples this process's RSS (``/proc/self/statm``) every 20 ms on a thread and keeps
    the largest value per phase; the caller sets ``phase``."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _RssByPhase:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(_RSS_INTERVAL):
                statm.seek(0)
                rss = int(statm.read().split()[1]) * page
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)


def _phase_of(progress_phase: str) -> str:
    """grouparrow's progress phases by step: "partitioning" is the map step, "clustering
    shard i/n" the reduce step."""
    return "reduce" if progress_phase.startswith("clustering") else "map"


class _Timeline(io.TextIOBase):
    """A stderr stand-in noting when grouparrow's progress line first shows each phase."""

    def __init__(self, rss: _RssByPhase) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}
        self._rss = rss

    def write(self, text: str) -> int:
        now = time.perf_counter() - self.start
        for line in text.split("\r"):
            phase, colon, _ = line.partition(":")
            if colon and phase not in self.phases:
                self.phases[phase] = now
                self._rss.phase = _phase_of(phase)
        return len(text)


def _grouparrow(job: dict[str, Any]) -> dict[str, Any]:
    import grouparrow as ga

    key = KEYS[job["key"]](ga)
    with _RssByPhase() as rss:
        timeline = _Timeline(rss)
        result = _build(ga, job, key, timeline)
    return result | {"rss_by_phase": rss.peaks}


def _build(ga: Any, job: dict[str, Any], key: Any, timeline: _Timeline) -> dict[str, Any]:
    try:
        with contextlib.redirect_stderr(timeline):
            ds = ga.build(
                job["input"],
                key=key,
                output=job["output"],
                mode="overwrite",
                num_shards=job.get("num_shards"),
                memory_limit=job.get("memory_limit"),
                text_columns=job.get("text_columns"),
                progress=True,
            )
    except ga.GroupArrowError as exc:
        failed_in = max(timeline.phases, key=timeline.phases.__getitem__, default="setup")
        return {"ok": False, "error": _error_line(str(exc)), "failed_in": failed_in}
    seconds = time.perf_counter() - timeline.start
    return {
        "seconds": seconds,
        "phases": _durations(timeline.phases, seconds),
        "num_shards": ds.num_shards,
        "num_groups": ds.num_groups,
        "memory_limit": ds.manifest.build["memory_limit"],
        "threads": ds.manifest.build["threads"],
    }


def _durations(starts: dict[str, float], end: float) -> dict[str, float]:
    """Seconds per phase from phase start times; shards' reduce steps summed as "reduce"."""
    names = sorted(starts, key=starts.__getitem__)
    out: dict[str, float] = {"setup": starts[names[0]] if names else end, "map": 0.0}
    out["reduce"] = 0.0
    for name, stop in zip(names, [starts[n] for n in names[1:]] + [end], strict=True):
        out[_phase_of(name)] += stop - starts[name]
    return out


#: Shard expressions for the map step: DuckDB's hash(); grouparrow's ga_shard (md5_number
#: modulo as UHUGEINT); the same value computed with 64-bit arithmetic only.
SHARD_SQL = {
    "hash": "hash(group_id) % {n}",
    "md5_uhugeint": "CAST(md5_number('0:' || group_id) % CAST({n} AS UHUGEINT) AS INTEGER)",
    "md5_64bit": (
        "CAST(((CAST(md5_number('0:' || group_id) >> 64 AS UBIGINT) % {n})"
        " * ((18446744073709551615::UBIGINT % {n} + 1) % {n})"
        " + CAST(md5_number('0:' || group_id) & 18446744073709551615::UHUGEINT AS UBIGINT)"
        " % {n}) % {n} AS INTEGER)"
    ),
}


def _baseline(job: dict[str, Any]) -> dict[str, Any]:
    """Plain DuckDB: partition, then per shard sort + write and a GROUP BY index.

    Options for the map-step probes: ``source`` ("parquet": read_parquet; "arrow": a pyarrow
    scanner registered as a view, as grouparrow reads files), ``shard`` (a SHARD_SQL name),
    ``flush_threshold`` and ``map_only``.
    """
    import duckdb

    out, shards = Path(job["output"]), job["num_shards"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = _connect(job, out / "_spill")
    source = _source(con, job)
    phases = {"map": 0.0, "reduce": 0.0, "index": 0.0}
    started = time.perf_counter()
    with _RssByPhase() as rss:
        for phase, statement in _steps(job, source, out):
            rss.phase = phase
            try:
                _timed(phases, phase, con.execute, statement)
            except duckdb.Error as exc:
                return {"ok": False, "error": _error_line(str(exc)), "failed_in": phase}
    seconds = time.perf_counter() - started
    shutil.rmtree(out / "_map", ignore_errors=True)
    return {"seconds": seconds, "phases": phases, "num_shards": shards, "rss_by_phase": rss.peaks}


def _connect(job: dict[str, Any], spill: Path) -> Any:
    import duckdb

    con = duckdb.connect(config={"threads": job["threads"]})
    con.execute(f"SET memory_limit = '{job['memory_limit'] // 2**20}MiB'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET partitioned_write_flush_threshold = {job.get('flush_threshold', 65536)}")
    con.execute("SET enable_progress_bar = false")
    return con


def _source(con: Any, job: dict[str, Any]) -> str:
    if job.get("source", "parquet") == "parquet":
        return f"read_parquet('{job['input']}')"
    import pyarrow.dataset as pds

    con.register("__src", pds.dataset(job["input"]).scanner(batch_size=65_536).to_reader())
    return "__src"


def _steps(job: dict[str, Any], source: str, out: Path) -> Iterator[tuple[str, str]]:
    """(phase, statement) pairs, one sort per shard as grouparrow does; lazy, so that the
    shards are listed after the map step has run (a shard without rows has no files)."""
    shards = job["num_shards"]
    if shards == 1:
        yield from _shard_steps(f"(SELECT {HOST_SQL} AS group_id, * FROM {source})", out, 0)
        return
    shard_sql = SHARD_SQL[job.get("shard", "hash")].format(n=shards)
    yield "map", _partition_sql(source, shard_sql, out / "_map")
    if job.get("map_only"):
        return
    for shard in range(shards):
        files = out / "_map" / f"shard={shard}"
        if files.is_dir():
            rows = f"read_parquet('{files / '*.parquet'}', hive_partitioning = false)"
            yield from _shard_steps(rows, out, shard)


def _shard_steps(rows: str, out: Path, shard: int) -> list[tuple[str, str]]:
    data = out / f"shard-{shard}.parquet"
    ordered = f"SELECT * FROM {rows} ORDER BY hash(group_id), group_id"
    sort = f"COPY ({ordered}) TO '{data}' (FORMAT parquet, COMPRESSION zstd, {_ROW_GROUP})"
    index = f"SELECT group_id, count(*) AS num_rows FROM read_parquet('{data}') GROUP BY 1"
    index_copy = f"COPY ({index}) TO '{out / f'index-{shard}.parquet'}' (FORMAT parquet)"
    return [("reduce", sort), ("index", index_copy)]


def _partition_sql(source: str, shard_sql: str, path: Path) -> str:
    rows = f"SELECT {HOST_SQL} AS group_id, {shard_sql} AS shard, * FROM {source}"
    return f"COPY ({rows}) TO '{path}' (FORMAT parquet, PARTITION_BY (shard), COMPRESSION zstd)"


def _timed(phases: dict[str, float], phase: str, fn: Callable[[str], Any], arg: str) -> None:
    started = time.perf_counter()
    fn(arg)
    phases[phase] += time.perf_counter() - started


def _verify(job: dict[str, Any]) -> dict[str, Any]:
    import grouparrow as ga

    started = time.perf_counter()
    report = ga.verify(job["output"])
    return {"seconds": time.perf_counter() - started, "verified": report.ok, "report": str(report)}


_KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "grouparrow": _grouparrow,
    "baseline": _baseline,
    "verify": _verify,
}


def _peak_rss() -> int:
    """This process's peak RSS since it started its program (``VmHWM``). Not ``ru_maxrss``:
    on Linux that also counts the parent's RSS at the fork that started this process."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_job(kinds: dict[str, Any], job_file: str, result_file: str) -> None:
    """Run the job in ``job_file`` with ``kinds[job["kind"]]``; its result, with this
    process's peak RSS, to ``result_file``."""
    job = json.loads(Path(job_file).read_text())
    result = kinds[job["kind"]](job)
    result.setdefault("ok", True)
    result["peak_rss"] = _peak_rss()
    Path(result_file).write_text(json.dumps(result))


def main(job_file: str, result_file: str) -> None:
    run_job(_KINDS, job_file, result_file)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
