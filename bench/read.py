"""How fast does grouparrow read groups back, against the raw limits and a Flower-style baseline?

Two datasets: the synthetic client corpus (``bench._data.clients``: 200,000 clients by
default, median 3 rows, a long tail) grouped by ``client``, and the Shakespeare lines grouped
by character (``play_speaker``, 1,334 clients, as LEAF's Shakespeare). Each is built once
with ``grouparrow.build`` under ``bench/data/out/read-*`` (rebuilt when its source changes or
with ``--rebuild``) and converted to an Arrow IPC cache (``ds.cache``) in every run.

Measured, each in a fresh process (so that its peak RSS is its own), the page cache warm
(every file is read once before the measurements):

- full stream (``iter_groups``) from Parquet, against ``ParquetFile.iter_batches`` over the
  same shard files (the limit: decoding, no groups);
- full stream from the Arrow cache, against iterating the memory-mapped IPC batches
  (``pa.ipc.open_file(pa.memory_map(path))``), and against those batches sliced once per
  group at the index's offsets (a hand-written loop: the floor for one object per group);
- 1,000 random fetches (``ds[id].to_arrow()``) from Parquet and from the cache: latency
  p50/p99 and bytes read per fetch; ``get_many`` of the same 1,000;
- ``torch.utils.data.DataLoader`` over ``GroupIterableDataset`` with 0 and 2 workers, one
  group per step, and with 2 workers joining 64 groups per step (``collate(concat=True)``),
  against the same DataLoader moving a precomputed item (PyTorch's own cost);
- the baseline Flower uses: the rows in memory as a ``datasets.Dataset``, each client's row
  indices precomputed (as its partitioners do), a client read as
  ``hf.select(indices).with_format("arrow")[:]``, for the same 1,000 fetches and a full pass
  (bounded in time and extrapolated on the large dataset).

Run from the repository root: ``python3 -m bench.read [--groups N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench._data import DATA_DIR, DEFAULT_CLIENTS, clients
from bench._worker import REPO, _error_line, run_job

OUT = DATA_DIR / "out"
SHAKESPEARE = REPO.parent / "shared" / "data" / "shakespeare" / "shakespeare_lines.parquet"
FETCHES = 1000
WARM_FETCHES = 100
HF_SECONDS = 20.0
TORCH_SECONDS = 15.0
TORCH_BATCH = 64  # groups per step, joined by collate(concat=True)
MIN_SECONDS = 1.0  # of timed passes per stream process
MAX_PASSES = 500
QUICK_GROUPS = 20_000
JOB_TIMEOUT = 600
MB = 1e6

TARGET_MBPS_SHARE = 0.90  # of the raw scan's MB/s
TARGET_PARQUET_GPS = 50_000
TARGET_CACHE_GPS = 500_000
TARGET_PARQUET_P50_MS = 20.0
TARGET_CACHE_P50_MS = 1.0


# -- the datasets ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subject:
    """A dataset to read: its source rows, the key column, the built dataset and its cache."""

    name: str
    source: Path
    key: str
    output: Path
    cache_dir: Path


def prepare(name: str, source: Path, key: str, rebuild: bool) -> Subject:
    """The dataset of ``source`` grouped by ``key``, built unless a build of the same source
    (path, size, modification time) is there already."""
    import grouparrow as ga

    output = OUT / f"read-{name}"
    stamp_file = OUT / f"read-{name}.source.json"
    stat = source.stat()
    stamp = {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "key": key}
    current = json.loads(stamp_file.read_text()) if stamp_file.exists() else None
    if rebuild or current != stamp or not (output / "grouparrow.json").exists():
        started = time.perf_counter()
        ga.build(str(source), key=key, output=output, mode="overwrite")
        print(f"built {output.relative_to(REPO)} in {time.perf_counter() - started:.1f} s")
        stamp_file.write_text(json.dumps(stamp))
    return Subject(name, source, key, output, OUT / f"read-{name}-cache")


def make_cache(subject: Subject) -> tuple[float, dict[int, str]]:
    """Seconds to convert every shard to the cache (from scratch), and each shard's file."""
    import grouparrow as ga

    shutil.rmtree(subject.cache_dir, ignore_errors=True)
    started = time.perf_counter()
    ga.open(subject.output).cache(cache_dir=subject.cache_dir)
    seconds = time.perf_counter() - started
    shards = ga.open(subject.output).manifest.shards
    return seconds, {n: str(subject.cache_dir / f"{s.sha256}.arrow") for n, s in enumerate(shards)}


def warm_page_cache(paths: Iterable[Path]) -> int:
    """Read every file under ``paths`` once; the bytes read."""
    total = 0
    for root in paths:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        total += len(chunk)
    return total


def fetch_ids(subject: Subject, seed: int = 1) -> tuple[list[Any], list[Any]]:
    """``FETCHES`` random group ids and up to ``WARM_FETCHES`` others (the warm-up)."""
    import grouparrow as ga

    ids = ga.open(subject.output).group_ids()
    order = np.random.default_rng(seed).permutation(len(ids))
    chosen = [ids[i] for i in order[:FETCHES]]
    warm = [ids[i] for i in order[FETCHES : FETCHES + WARM_FETCHES]] or chosen[:WARM_FETCHES]
    return chosen, warm


# -- the workers: one measurement each, in its own process ----------------------------------
def _passes(run: Callable[[], dict[str, Any]], passes: int) -> dict[str, Any]:
    """``run`` once to warm up, then ``passes`` times and for at least ``MIN_SECONDS`` (a
    small dataset's pass takes milliseconds): the median pass's seconds, and the median
    pass's CPU seconds (all the process's threads: how many cores a pass kept busy)."""
    started = time.perf_counter()
    result = run()
    first = time.perf_counter() - started
    seconds: list[float] = []
    cpu: list[float] = []
    while len(seconds) < passes or (sum(seconds) < MIN_SECONDS and len(seconds) < MAX_PASSES):
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
        cpu.append(_cpu_seconds() - cpu_started)
    return {
        **result,
        "seconds": statistics.median(seconds),
        "cpu_seconds": statistics.median(cpu),
        "passes": seconds,
        "first": first,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _open(job: dict[str, Any]) -> Any:
    import grouparrow as ga

    if job.get("cache_dir"):
        return ga.open(job["path"], cache_dir=job["cache_dir"])
    return ga.open(job["path"])


def _raw_parquet(job: dict[str, Any]) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        nbytes = rows = 0
        for path in job["files"]:
            for batch in pq.ParquetFile(path).iter_batches():
                nbytes += batch.nbytes
                rows += batch.num_rows
        return {"bytes": nbytes, "rows": rows}

    return _passes(run, job["passes"])


def _raw_ipc(job: dict[str, Any]) -> dict[str, Any]:
    """The cache files' batches, memory-mapped; with ``slices``, also one slice per group
    at the index's offsets (shards in order, groups in storage order)."""
    spans: dict[int, tuple[list[int], list[int]]] = {}
    if job["slices"]:
        index = pq.read_table(Path(job["path"]) / "index.parquet", columns=["shard", "offset"])
        counts = pq.read_table(Path(job["path"]) / "index.parquet", columns=["num_rows"])
        shard_of = index.column("shard").to_numpy()
        offsets = index.column("offset").to_numpy()
        sizes = counts.column("num_rows").to_numpy()
        for shard in np.unique(shard_of).tolist():
            mine = shard_of == shard
            spans[shard] = (offsets[mine].tolist(), sizes[mine].tolist())
    files = {int(k): v for k, v in job["files"].items()}

    def run() -> dict[str, Any]:
        nbytes = rows = groups = 0
        for shard, path in sorted(files.items()):
            reader = pa.ipc.open_file(pa.memory_map(path))
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            for batch in batches:
                nbytes += batch.nbytes
                rows += batch.num_rows
            if not job["slices"]:
                continue
            b, lo, hi = -1, 0, 0
            for offset, count in zip(*spans.get(shard, ([], [])), strict=True):
                while offset >= hi:
                    b += 1
                    lo, hi = hi, hi + batches[b].num_rows
                batches[b].slice(offset - lo, count)  # (a group spanning batches: cut short)
                groups += 1
        return {"bytes": nbytes, "rows": rows, "groups": groups}

    return _passes(run, job["passes"])


def _stream(job: dict[str, Any]) -> dict[str, Any]:
    ds = _open(job)
    to_arrow = job["touch"] == "arrow"

    def run() -> dict[str, Any]:
        groups = rows = 0
        for group in ds.iter_groups():
            # Its rows: zero-copy slices (a lazy large group is read here), or a Table.
            if to_arrow:
                group.to_arrow()
            else:
                group.to_batches()
            groups += 1
            rows += group.num_rows
        return {"groups": groups, "rows": rows}

    return _passes(run, job["passes"])


class _Rchar:
    """``rchar`` of ``/proc/self/io``: bytes this process got from read syscalls (page-cache
    hits included; memory-mapped reads not), less what reading the counter itself adds."""

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/io", os.O_RDONLY)
        deltas = []
        for _ in range(20):
            a = self.read(raw=True)
            deltas.append(self.read(raw=True) - a)
        self._own = int(np.median(deltas))

    def read(self, raw: bool = False) -> int:
        text = os.pread(self._fd, 4096, 0).decode()
        value = int(text.split("rchar:")[1].split()[0])
        return value if raw else value - self._own

    def delta(self, before: int) -> int:
        return max(0, self.read() - before - self._own)


def _fetch(job: dict[str, Any]) -> dict[str, Any]:
    ds = _open(job)
    rchar = _Rchar()
    started = time.perf_counter()
    ds[job["warm"][0]].to_arrow()  # loads the index part and the id lookup
    first = time.perf_counter() - started
    for gid in job["warm"][1:]:
        ds[gid].to_arrow()
    latencies, reads, rows = [], [], []
    for gid in job["ids"]:
        before = rchar.read()
        started = time.perf_counter()
        table = ds[gid].to_arrow()
        latencies.append(time.perf_counter() - started)
        reads.append(rchar.delta(before))
        rows.append(table.num_rows)
    before = rchar.read()
    started = time.perf_counter()
    cohort = ds.get_many(job["ids"])
    for group in cohort:
        group.to_arrow()
    many = time.perf_counter() - started
    result = {
        "latencies": latencies,
        "rchar": reads,
        "rows": rows,
        "first": first,
        "get_many": many,
        "get_many_rchar": rchar.delta(before),
    }
    if job.get("cache_files"):
        result["touched"], result["group_bytes"] = _batches_touched(job)
    return result


def _batches_touched(job: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Per fetch: the bytes of the cache's record batches that overlap the group (what a
    memory-mapped read can touch; ``rchar`` does not see it), and the group's own bytes."""
    index = pq.read_table(Path(job["path"]) / "index.parquet")
    where = {
        gid: (shard, offset, count, nbytes)
        for gid, shard, offset, count, nbytes in zip(
            index.column("group_id").to_pylist(),
            index.column("shard").to_pylist(),
            index.column("offset").to_pylist(),
            index.column("num_rows").to_pylist(),
            index.column("num_bytes").to_pylist(),
            strict=True,
        )
    }
    batches = {}
    for shard, path in job["cache_files"].items():
        reader = pa.ipc.open_file(pa.memory_map(path))
        sizes = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        starts = np.cumsum([0] + [b.num_rows for b in sizes])
        batches[int(shard)] = (starts, np.array([b.nbytes for b in sizes]))
    touched, own = [], []
    for gid in job["ids"]:
        shard, offset, count, group_bytes = where[gid]
        starts, nbytes = batches[shard]
        first = int(np.searchsorted(starts, offset, side="right")) - 1
        last = int(np.searchsorted(starts, offset + max(count, 1) - 1, side="right")) - 1
        touched.append(int(nbytes[first : last + 1].sum()))
        own.append(group_bytes)
    return touched, own


def _hf(job: dict[str, Any]) -> dict[str, Any]:
    """Flower's way: the rows in memory as a ``datasets.Dataset``, each client's row indices
    computed once (as ``NaturalIdPartitioner`` does), a client read by ``select``."""
    import datasets

    datasets.disable_progress_bars()
    started = time.perf_counter()
    table = pq.read_table(job["source"])
    hf = datasets.Dataset(table)  # an in-memory table
    load = time.perf_counter() - started
    started = time.perf_counter()
    keys = pc.dictionary_encode(table.column(job["key"])).combine_chunks()
    codes = keys.indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(keys.dictionary)))
    names = keys.dictionary.to_pylist()
    indices = {
        name: order[start:end].tolist()
        for name, start, end in zip(names, np.concatenate([[0], bounds[:-1]]), bounds, strict=True)
    }
    mapping = time.perf_counter() - started

    def fetch(gid: Any) -> pa.Table:
        return hf.select(indices[gid]).with_format("arrow")[:]

    for gid in job["warm"]:
        fetch(gid)
    latencies, rows = [], []
    for gid in job["ids"]:
        started = time.perf_counter()
        rows.append(fetch(gid).num_rows)
        latencies.append(time.perf_counter() - started)
    # A full pass over every client, in storage order, for at most job["seconds"].
    started = time.perf_counter()
    done = 0
    for gid in job["order"]:
        fetch(gid)
        done += 1
        if time.perf_counter() - started > job["seconds"]:
            break
    return {
        "load": load,
        "mapping": mapping,
        "latencies": latencies,
        "rows": rows,
        "stream_groups": done,
        "stream_seconds": time.perf_counter() - started,
        "num_groups": len(indices),
    }


def _torch(job: dict[str, Any]) -> dict[str, Any]:
    """One pass of a DataLoader over ``GroupIterableDataset``, stopped after
    ``job["seconds"]`` (worker start-up included): one group per step, or with ``batch``
    that many groups joined per step (``collate(concat=True)``) and split again
    (``uncollate``) in the main process. With ``floor``, the DataLoader over a trivial
    dataset yielding the adapter's first item again and again instead: what moving items of
    that shape through the DataLoader costs, with no reading at all."""
    try:
        from grouparrow.adapters import torch as adapter
    except ImportError as exc:
        return {"skipped": f"not available: grouparrow.adapters.torch ({exc})"}
    from torch.utils.data import DataLoader

    batch = job.get("batch")
    if batch and not hasattr(adapter, "uncollate"):
        return {"skipped": "not available: grouparrow.adapters.torch.uncollate"}
    groups: Any = adapter.GroupIterableDataset(_open(job), shuffle=False, seed=0, columns=None)
    if job.get("floor"):
        groups = _repeat(next(iter(groups)), job["num_groups"])
    options: dict[str, Any] = {"batch_size": None}
    if batch:
        options = {"batch_size": batch, "collate_fn": partial(adapter.collate, concat=True)}
    loader = DataLoader(groups, num_workers=job["workers"], **options)
    started = time.perf_counter()
    count = 0
    items = iter(loader)
    for item in items:
        count += len(adapter.uncollate(item)) if batch else 1
        if time.perf_counter() - started > job["seconds"]:
            break
    seconds = time.perf_counter() - started
    del items  # stops the workers
    return {
        "groups": count,
        "seconds": seconds,
        # The largest worker's peak; a forked worker's count starts with the parent's pages.
        "children_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _repeat(item: Any, total: int) -> Any:
    """An ``IterableDataset`` yielding ``item`` ``total`` times, split across workers."""
    from torch.utils.data import IterableDataset, get_worker_info

    class Repeat(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            info = get_worker_info()
            workers, index = (info.num_workers, info.id) if info else (1, 0)
            for _ in range(total * (index + 1) // workers - total * index // workers):
                yield item

    return Repeat()


_KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw_parquet": _raw_parquet,
    "raw_ipc": _raw_ipc,
    "stream": _stream,
    "fetch": _fetch,
    "hf": _hf,
    "torch": _torch,
}


def worker(job_file: str, result_file: str) -> None:
    run_job(_KINDS, job_file, result_file)


def launch(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process; its result, with ``ok`` False if it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.read", "--job", str(job_file), str(result_file)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
                timeout=JOB_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {JOB_TIMEOUT} s"}
        if done.returncode != 0 or not result_file.exists():
            return {"ok": False, "error": _error_line(done.stderr or done.stdout)}
        return json.loads(result_file.read_text())


def alternate(jobs: list[dict[str, Any]], repeat: int) -> list[dict[str, Any]]:
    """Each job run ``repeat`` times, the jobs in turn (so that drift in the machine's load
    hits all alike); per job the run with the median seconds, with the largest peak RSS and
    every run's seconds, or the first failure."""
    runs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for _ in range(repeat):
        for done, job in zip(runs, jobs, strict=True):
            done.append(launch(job))
    out = []
    for done in runs:
        failed = [r for r in done if not r["ok"] or r.get("skipped")]
        if failed:
            out.append(failed[0])
            continue
        done.sort(key=lambda r: r["seconds"])
        median = dict(done[len(done) // 2])
        median["peak_rss"] = max(r["peak_rss"] for r in done)
        median["runs"] = [r["seconds"] for r in done]
        out.append(median)
    return out


# -- the table ------------------------------------------------------------------------------
class Table:
    """Rows of: measurement, grouparrow, baseline, ratio, target, met?, peak RSS."""

    HEADER = (
        f"{'measurement':<46} {'grouparrow':>11} {'baseline':>11} {'ratio':>7} "
        f"{'target':>11} {'met?':>6} {'RSS MB ga/base':>15}"
    )

    def __init__(self) -> None:
        self.lines: list[str] = [self.HEADER]
        self.verdicts: list[tuple[str, bool]] = []
        self.dataset = ""

    def section(self, dataset: str, title: str) -> None:
        self.dataset = dataset
        self.lines.append(f"-- {dataset}: {title}")

    def row(
        self,
        name: str,
        ga: float | None,
        base: float | None,
        fmt: str,
        *,
        target: str = "-",
        met: bool | None = None,
        rss: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
    ) -> None:
        def show(value: float | None) -> str:
            return "-" if value is None else format(value, fmt)

        ratio = f"{ga / base:.2f}" if ga is not None and base else "-"
        verdict = "-" if met is None else ("yes" if met else "NO")
        if met is not None:
            self.verdicts.append((f"{self.dataset}, {name.split(' (')[0]} {target}", met))
        self.lines.append(
            f"{name:<46} {show(ga):>11} {show(base):>11} {ratio:>7} {target:>11} "
            f"{verdict:>6} {_rss(*rss):>15}"
        )

    def note(self, text: str) -> None:
        self.lines.append(f"   {text}")

    def print(self) -> None:
        print("\n".join(self.lines))


def _rss(ga: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    def mb(run: dict[str, Any] | None) -> str:
        return f"{run['peak_rss'] / MB:.0f}" if run and run.get("peak_rss") else "-"

    return f"{mb(ga)}/{mb(base)}" if ga or base else ""


def _spread(run: dict[str, Any]) -> str:
    """The median pass's seconds and the range over processes (and the untimed first pass)."""
    runs = run.get("runs", [run["seconds"]])
    return f"{run['seconds']:.3f} ({min(runs):.3f}-{max(runs):.3f}; first {run['first']:.3f})"


def _cores(run: dict[str, Any]) -> str:
    """The median pass's CPU time, and the cores it kept busy (CPU time over wall time)."""
    return f"CPU {run['cpu_seconds']:.3f} s ({run['cpu_seconds'] / run['seconds']:.2f} cores)"


def _ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1e3, q))


def _failed(table: Table, name: str, *runs: dict[str, Any]) -> bool:
    """A line for a failed or skipped run; True if one was."""
    for run in runs:
        if run.get("skipped"):
            table.row(f"{name}: skipped", None, None, "")
            table.note(f"skipped: {run['skipped']}")
            return True
        if not run["ok"]:
            table.row(name, None, None, "")
            table.note(f"FAILED: {run['error']}")
            return True
    return False


def measure(subject: Subject, args: argparse.Namespace, table: Table) -> None:
    import grouparrow as ga

    ds = ga.open(subject.output)
    shard_files = [str(subject.output / s.file) for s in ds.manifest.shards]
    groups = ds.num_groups
    sizes = ds.index.column("num_rows").to_numpy()
    cache_seconds, files = make_cache(subject)
    warmed = warm_page_cache([subject.output, subject.source, subject.cache_dir])
    table.section(
        subject.name,
        f"{groups:,} groups, {ds.num_rows:,} rows (median {np.median(sizes):.0f}"
        f", max {sizes.max():,} rows/group), {ds.num_shards} shard(s), "
        f"{sum(s.file_bytes for s in ds.manifest.shards) / MB:,.0f} MB Parquet",
    )
    base = {"path": str(subject.output), "passes": args.passes}
    cached = {**base, "cache_dir": str(subject.cache_dir)}

    # Full stream, Parquet, against the raw scan.
    raw, stream = alternate(
        [
            {**base, "kind": "raw_parquet", "files": shard_files},
            {**base, "kind": "stream", "touch": "none"},
        ],
        args.repeat,
    )
    if not _failed(table, "stream, Parquet", raw, stream):
        mbps, raw_mbps = raw["bytes"] / stream["seconds"] / MB, raw["bytes"] / raw["seconds"] / MB
        table.row(
            "stream, Parquet: MB/s (vs iter_batches)",
            mbps,
            raw_mbps,
            ",.0f",
            target=f">= {TARGET_MBPS_SHARE:.0%} base",
            met=mbps >= TARGET_MBPS_SHARE * raw_mbps,
            rss=(stream, raw),
        )
        gps = stream["groups"] / stream["seconds"]
        table.row(
            "stream, Parquet: groups/s",
            gps,
            groups / raw["seconds"],
            ",.0f",
            target=f">= {TARGET_PARQUET_GPS:,}",
            met=gps >= TARGET_PARQUET_GPS,
        )
        table.note(
            f"{raw['bytes'] / MB:,.0f} MB of Arrow data decoded; seconds per pass "
            f"{_spread(stream)} vs raw {_spread(raw)}; {_cores(stream)} vs raw {_cores(raw)}"
        )

    # Full stream, Arrow cache, against memory-mapped IPC.
    job = {**cached, "files": {str(k): v for k, v in files.items()}}
    raw_ipc, sliced, cstream = alternate(
        [
            {**job, "kind": "raw_ipc", "slices": False},
            {**job, "kind": "raw_ipc", "slices": True},
            {**cached, "kind": "stream", "touch": "none"},
        ],
        args.repeat,
    )
    if not _failed(table, "stream, Arrow cache", raw_ipc, sliced, cstream):
        gps = cstream["groups"] / cstream["seconds"]
        table.row(
            "stream, cache: groups/s (vs mmap batches)",
            gps,
            groups / raw_ipc["seconds"],
            ",.0f",
            target=f">= {TARGET_CACHE_GPS:,}",
            met=gps >= TARGET_CACHE_GPS,
            rss=(cstream, raw_ipc),
        )
        table.row(
            "stream, cache: groups/s (vs mmap + slicing)",
            gps,
            sliced["groups"] / sliced["seconds"],
            ",.0f",
            rss=(cstream, sliced),
        )
        table.note(
            f"cache built in {cache_seconds:.1f} s ({raw_ipc['bytes'] / MB:,.0f} MB); "
            f"stream {raw_ipc['bytes'] / cstream['seconds'] / MB:,.0f} MB/s; seconds per "
            f"pass {_spread(cstream)} vs slicing {_spread(sliced)}"
        )

    # Random fetches: grouparrow (Parquet, cache) and the HF baseline.
    ids, warm = fetch_ids(subject)
    order = ds.group_ids()
    fetch = launch({**base, "kind": "fetch", "ids": ids, "warm": warm})
    hf = launch(
        {
            "kind": "hf",
            "source": str(subject.source),
            "key": subject.key,
            "ids": ids,
            "warm": warm,
            "order": order,
            "seconds": args.hf_seconds,
        }
    )
    if not _failed(table, "random fetch, Parquet", fetch, hf):
        fetch_rows(table, "Parquet", fetch, hf, TARGET_PARQUET_P50_MS)
        kb = np.array(fetch["rchar"]) / 1e3
        table.row("random fetch, Parquet: KB read/fetch p50", float(np.median(kb)), None, ",.1f")
        table.note(
            f"KB read = rchar delta (read syscalls, page-cache hits included): mean "
            f"{kb.mean():,.1f}, p99 {np.percentile(kb, 99):,.1f}; median group "
            f"{np.median(fetch['rows']):.0f} rows; first fetch in the process "
            f"{fetch['first'] * 1e3:.0f} ms (index + id lookup)"
        )
    job = {**cached, "kind": "fetch", "ids": ids, "warm": warm}
    cfetch = launch({**job, "cache_files": {str(k): v for k, v in files.items()}})
    if not _failed(table, "random fetch, Arrow cache", cfetch, hf):
        fetch_rows(table, "cache", cfetch, hf, TARGET_CACHE_P50_MS)
        touched = np.array(cfetch["touched"]) / 1e3
        own = np.array(cfetch["group_bytes"]) / 1e3
        table.row(
            "random fetch, cache: KB batches touched p50",
            float(np.median(touched)),
            None,
            ",.1f",
        )
        table.note(
            f"memory-mapped: rchar sees none of it (median rchar "
            f"{np.median(cfetch['rchar']) / 1e3:.1f} KB); KB of the record batches "
            f"overlapping the group, mean {touched.mean():,.1f}; the group's own rows: "
            f"p50 {np.median(own):,.1f} KB, mean {own.mean():,.1f} KB (index num_bytes)"
        )

    # DataLoader over groups, against the same DataLoader moving precomputed items.
    for workers, batch in ((0, None), (2, None), (2, TORCH_BATCH)):
        job = {**base, "kind": "torch", "workers": workers, "seconds": args.torch_seconds}
        job["batch"] = batch
        run = launch(job)
        floor = launch({**job, "floor": True, "num_groups": groups})
        name = f"DataLoader, {workers} workers" + (f" x{batch}" if batch else "")
        if _failed(table, name, run, floor):
            continue
        gps = run["groups"] / run["seconds"]
        table.row(f"{name}: groups/s (vs items)", gps, floor["groups"] / floor["seconds"], ",.0f")
        part = "all" if run["groups"] >= groups else "the first"
        direct = f"{stream['groups'] / stream['seconds']:,.0f}" if stream["ok"] else "-"
        table.note(
            f"{part} {run['groups']:,} groups in {run['seconds']:.1f} s (iter_groups alone: "
            f"{direct}/s); RSS main {run['peak_rss'] / MB:,.0f} MB, largest worker "
            f"{run['children_rss'] / MB:,.0f} MB (counts pages shared at fork)"
        )

    # Full pass: grouparrow against HF select per client.
    arrow = launch({**base, "kind": "stream", "touch": "arrow"})
    if not _failed(table, "stream vs HF select", arrow, hf):
        hf_gps = hf["stream_groups"] / hf["stream_seconds"]
        table.row(
            "full pass, Parquet: groups/s (vs HF select)",
            arrow["groups"] / arrow["seconds"],
            hf_gps,
            ",.0f",
            rss=(arrow, hf),
        )
        part = "all" if hf["stream_groups"] >= groups else "extrapolated from"
        table.note(
            f"both materialize each group as a pyarrow.Table; HF: {part} "
            f"{hf['stream_groups']:,} of {groups:,} groups in {hf['stream_seconds']:.1f} s "
            f"(a full pass: {groups / hf_gps:,.0f} s); HF load {hf['load']:.1f} s, "
            f"index mapping {hf['mapping']:.1f} s (not counted)"
        )
    table.note(f"page cache warmed: {warmed / MB:,.0f} MB read before the measurements")


def fetch_rows(
    table: Table, where: str, run: dict[str, Any], hf: dict[str, Any], target: float
) -> None:
    p50, hf50 = _ms(run["latencies"], 50), _ms(hf["latencies"], 50)
    table.row(
        f"random fetch, {where}: p50 ms (vs HF select)",
        p50,
        hf50,
        ",.3f",
        target=f"<= {target:g} ms",
        met=p50 <= target,
        rss=(run, hf),
    )
    table.row(
        f"random fetch, {where}: p99 ms (vs HF select)",
        _ms(run["latencies"], 99),
        _ms(hf["latencies"], 99),
        ",.3f",
    )
    per_group = run["get_many"] / len(run["latencies"]) * 1e3
    table.row(
        f"get_many({len(run['latencies']):,}), {where}: ms/group",
        per_group,
        float(np.mean(hf["latencies"]) * 1e3),
        ",.3f",
    )


def print_machine() -> None:
    import datasets

    import grouparrow as ga
    from bench.build import _revision

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"machine: {os.cpu_count()} cores, {memory / 2**30:.1f} GiB RAM, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"pyarrow {pa.__version__}, datasets {datasets.__version__}"
    )
    print(f"grouparrow {ga.__version__}, {_revision()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=DEFAULT_CLIENTS, help="synthetic clients")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_GROUPS:,} clients, 1 pass")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per stream (median)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="processes per stream and its raw baseline"
    )
    parser.add_argument("--hf-seconds", type=float, default=HF_SECONDS, help="HF full-pass bound")
    parser.add_argument(
        "--torch-seconds", type=float, default=TORCH_SECONDS, help="DataLoader pass bound"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the datasets")
    parser.add_argument("--skip-shakespeare", action="store_true")
    parser.add_argument("--job", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        worker(*args.job)
        return
    if args.quick:
        args.groups, args.passes, args.repeat = QUICK_GROUPS, 1, 1
        args.hf_seconds = min(args.hf_seconds, 3.0)
        args.torch_seconds = min(args.torch_seconds, 3.0)
    started = time.perf_counter()
    print_machine()
    corpus = clients(args.groups)
    subjects = [prepare(f"clients-{args.groups}-s0", corpus.path, "client", args.rebuild)]
    if args.skip_shakespeare:
        pass
    elif SHAKESPEARE.exists():
        subjects.append(prepare("shakespeare", SHAKESPEARE, "play_speaker", args.rebuild))
    else:
        print(f"Shakespeare skipped: {SHAKESPEARE} not found")
    table = Table()
    for subject in subjects:
        measure(subject, args, table)
    print()
    table.print()
    print(
        "\nratio = grouparrow / baseline (throughput: higher is better; latency: lower is "
        "better); warm page cache; each cell a fresh process, RSS = its peak (VmHWM)"
    )
    for name, met in table.verdicts:
        print(f"target {name}: {'met' if met else 'MISSED'}")
    print(
        f"\n{time.perf_counter() - started:.0f} s in all; load average at the end: "
        f"{os.getloadavg()[0]:.2f} (1 min)"
    )


if __name__ == "__main__":
    main()
