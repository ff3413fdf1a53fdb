"""Resource hygiene (issue 8, item 6): builds leave no temporary files, on success or
failure; the reader closes its files and DuckDB connections; streaming a dataset much larger
than a small budget holds a bounded amount of memory.

Counted from ``/proc/self`` (Linux only; skipped elsewhere): open file descriptors
(``/proc/self/fd``), threads (``/proc/self/task``: every DuckDB database has a thread pool,
so a connection left open shows there) and resident memory (``VmRSS``, and ``VmHWM`` for the
peak of a subprocess). The streaming test (``slow``, ~15 s) builds ~400 MB of Arrow data and
streams it in a fresh process, measuring the peak RSS and PyArrow's peak allocation.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pytest
from conftest import make_table

import grouparrow as ga
from grouparrow.cli import main

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="counts open files and memory through /proc"
)

ROOT = Path(__file__).resolve().parents[2]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def fds_under(folder: Path) -> list[str]:
    """Open file descriptors of this process pointing under ``folder``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


class Usage:
    """Open files, threads and RSS now, to compare with later (after a garbage collection)."""

    def __init__(self) -> None:
        gc.collect()
        self.fds, self.threads, self.rss = open_fds(), threads(), rss_mb()

    def check(self, *, rss_mb_growth: float, what: str) -> None:
        gc.collect()
        assert open_fds() - self.fds <= 2, f"{what}: file descriptors {self.fds} -> {open_fds()}"
        assert threads() - self.threads <= 2, f"{what}: threads {self.threads} -> {threads()}"
        grown = rss_mb() - self.rss
        assert grown < rss_mb_growth, f"{what}: RSS grew {grown:.1f} MB"


# -- temporary files -----------------------------------------------------------------------

SCHEMA = pa.schema([("u", pa.string()), ("i", pa.int64())])


def batches(fail: BaseException | None = None, count: int = 6) -> pa.RecordBatchReader:
    """``count`` batches of 2,000 rows over 7 keys; then ``fail`` is raised, if given."""

    def produce() -> Iterator[pa.RecordBatch]:
        for b in range(count):
            rows = range(b * 2000, (b + 1) * 2000)
            yield pa.record_batch({"u": [f"u{j % 7}" for j in rows], "i": list(rows)}, SCHEMA)
        if fail is not None:
            raise fail

    return pa.RecordBatchReader.from_batches(SCHEMA, produce())


def test_a_successful_build_leaves_only_its_output(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()
    for shards in (1, 4):
        out = parent / f"out{shards}"
        ds = ga.build(batches(), key="u", output=out, num_shards=shards, temp_directory=spill)
        assert ds.num_rows == 12_000
        ga.build(batches(), key="u", output=out, num_shards=shards, mode="overwrite")
    assert sorted(os.listdir(parent)) == ["out1", "out4"]
    assert list(spill.iterdir()) == []
    for out in ("out1", "out4"):
        files = sorted(str(p.relative_to(parent / out)) for p in (parent / out).rglob("*"))
        shards = 1 if out == "out1" else 4
        assert files == sorted(
            ["data", "grouparrow.json", "index.parquet"]
            + [f"data/shard-{s:05d}-of-{shards:05d}.parquet" for s in range(shards)]
        )


def test_group_counts_and_a_remote_build_leave_no_temporary_files(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    counts = ga.group_counts(batches(), key="u", temp_directory=spill)
    assert counts["num_rows"].sum() == 12_000
    uri = f"memory://grouparrow-resources-{os.getpid()}/ok"
    ds = ga.build(batches(), key="u", output=uri, num_shards=2, temp_directory=spill)
    assert ds.num_rows == 12_000
    with pytest.raises(ga.SourceError, match="broke"):
        ga.build(
            batches(RuntimeError("broke")),
            key="u",
            output=uri.replace("/ok", "/failed"),
            temp_directory=spill,
        )
    assert list(spill.iterdir()) == []
    memory = fsspec.filesystem("memory")
    assert not memory.exists(uri.replace("memory://", "").replace("/ok", "/failed"))
    memory.rm(uri.replace("memory://", "").rsplit("/", 1)[0], recursive=True)


def _raise_on_row(row: int) -> Any:
    def key(example: dict[str, Any]) -> str:
        if example["i"] == row:
            raise ValueError(f"bad row {row}")
        return str(example["u"])

    return key


def broken() -> pa.RecordBatchReader:
    return batches(RuntimeError("broke"))


FAILURES: dict[str, tuple[Callable[[], pa.RecordBatchReader], dict[str, Any], type, str]] = {
    # where it fails: the source, other build arguments, the error, its message
    "key-function-map": (
        batches,
        {"key": _raise_on_row(9_000), "num_shards": 3},
        ga.KeyFunctionError,
        "bad row 9000",
    ),
    "key-function-reduce": (
        batches,
        {"key": _raise_on_row(9_000), "num_shards": 1},
        ga.KeyFunctionError,
        "bad row 9000",
    ),
    "source-map": (broken, {"key": "u", "num_shards": 3}, ga.SourceError, "broke"),
    "source-reduce": (broken, {"key": "u", "num_shards": 1}, ga.SourceError, "broke"),
    "null-key": (
        batches,
        {"key": ga.sql("CASE WHEN i = 7000 THEN NULL ELSE u END")},
        ga.NullKeyError,
        "row 7000",
    ),
    "label-column": (
        batches,
        {"key": "u", "label_column": "missing"},
        ga.GroupArrowError,
        "missing",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.parametrize("mode", ["error", "overwrite"])
def test_a_failed_build_leaves_nothing_behind(tmp_path: Path, case: str, mode: str) -> None:
    source, arguments, error, match = FAILURES[case]
    spill = tmp_path / "spill"
    spill.mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    if mode == "overwrite":
        ga.build(pa.table({"u": ["old"]}), key="u", output=out)
        manifest = (out / "grouparrow.json").read_bytes()
    before = sorted(os.listdir(parent))
    with pytest.raises(error, match=match):
        ga.build(source(), output=out, mode=mode, temp_directory=spill, **arguments)
    assert sorted(os.listdir(parent)) == before
    assert list(spill.iterdir()) == []
    if mode == "overwrite":
        assert (out / "grouparrow.json").read_bytes() == manifest
        assert ga.open(out)["old"].num_rows == 1


# -- open files, connections and memory of the reader --------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resources") / "ds"
    ga.build(make_table(600, 40), key="k", output=out, num_shards=3, row_group_bytes=4096)
    return out


def test_open_and_iterate_1000_times_without_leaking(small: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    def once(n: int) -> None:
        ds = ga.open(small, cache_dir=cache if n % 2 else None)
        total = sum(g.num_rows for g in ds.iter_groups(shuffle=n % 3 == 0, seed=n))
        assert total == 600
        assert ds["user-3"].num_rows > 0
        assert sum(g.num_rows for g in ds.get_many(["user-1", "user-2"])) > 0

    for n in range(50):  # warm up: caches, the cache directory, lazy imports
        once(n)
    usage = Usage()
    for n in range(1_000):
        once(n)
    usage.check(rss_mb_growth=48, what="1,000 opens and epochs")
    assert fds_under(small) == []
    assert fds_under(cache) == []


def test_a_dataset_closes_its_files_when_dropped(small: Path) -> None:
    usage = Usage()
    ds = ga.open(small)
    for group in ds.iter_groups():
        group.to_arrow()
    ds.sql("SELECT count(*) FROM examples").fetchall()
    del ds, group
    gc.collect()
    assert fds_under(small) == []
    usage.check(rss_mb_growth=48, what="one dataset")


def test_sql_repeatedly_without_leaking_connections(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = ga.open(small)
    for _ in range(20):  # warm up: the first scans start PyArrow's fixed thread pools
        ds.sql("SELECT count(*) FROM examples").fetchall()
        ga.open(small).sql("SELECT count(*) FROM groups").fetchall()
        with ds.connect() as con:
            con.sql("SELECT count(*) FROM examples").fetchall()
    usage = Usage()
    for _ in range(300):  # one connection, reused
        assert ds.sql("SELECT count(*) FROM examples").fetchall() == [(600,)]
    for _ in range(40):  # a connection each: closed with the dataset, or by hand
        assert ga.open(small).sql("SELECT count(*) FROM groups").fetchall() == [(40,)]
        con = ds.connect()
        assert con.sql("SELECT count(*) FROM examples").fetchall() == [(600,)]
        con.close()
    for _ in range(20):  # the CLI's read-only connection
        assert main(["sql", str(small), "SELECT count(*) AS n FROM examples"]) == 0
    assert capsys.readouterr().out.count("600") == 20
    usage.check(rss_mb_growth=48, what="340 SQL queries")


# -- streaming far more data than a small budget -------------------------------------------

BIG_ROWS = 100_000
WIDTH = 4_000  # bytes of text per row: ~400 MB of Arrow data
GROUP_ROWS = 25
LARGE_GROUP_ROWS = 20_000  # ~80 MB: read lazily, batch by batch

STREAM = r"""
import json, sys
import pyarrow as pa
import grouparrow as ga

def status(field):
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

ds = ga.open(sys.argv[1])
groups = iter(ds.iter_groups())
first = next(groups)
base, pool = status("VmRSS"), pa.default_memory_pool()
rows, data, half = first.num_rows, 0, None
for n, group in enumerate(groups, start=2):
    rows += group.num_rows
    if group.num_rows > 10_000:  # a large group: batch by batch, never whole
        for batch in group.iter_batches(4_096):
            data += batch.nbytes
    else:
        data += group.to_arrow().nbytes
    if half is None and n >= ds.num_groups // 2:
        half = {"peak": status("VmHWM"), "pool_peak": pool.max_memory(), "bytes": data}
print(json.dumps({"base": base, "peak": status("VmHWM"), "pool_peak": pool.max_memory(),
                  "rows": rows, "bytes": data, "half": half}))
"""


def big_batches() -> pa.RecordBatchReader:
    """``BIG_ROWS`` rows of ``WIDTH`` bytes of text: groups of ``GROUP_ROWS`` rows but for
    one of ``LARGE_GROUP_ROWS``."""
    schema = pa.schema([("k", pa.int64()), ("t", pa.string())])

    def produce() -> Iterator[pa.RecordBatch]:
        for b in range(BIG_ROWS // 5_000):
            rows = np.arange(b * 5_000, (b + 1) * 5_000)
            keys = np.where(rows < LARGE_GROUP_ROWS, -1, rows // GROUP_ROWS)
            text = pa.array([f"{j:08d}" * (WIDTH // 8) for j in rows])
            yield pa.record_batch([pa.array(keys), text], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, produce())


@pytest.mark.slow
def test_streaming_memory_stays_bounded(tmp_path: Path) -> None:
    out = tmp_path / "big"
    ds = ga.build(big_batches(), key="k", output=out, num_shards=1)
    size = ds.manifest.num_bytes
    assert size > 390e6
    result = subprocess.run(
        [sys.executable, "-c", STREAM, str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    measured = json.loads(result.stdout)
    half = measured["half"]
    assert measured["rows"] == BIG_ROWS
    assert measured["bytes"] >= size * 0.95  # every row was read (the key column is small)
    assert 0.3 * size < half["bytes"] < 0.7 * size
    mb = {k: round(v / 1e6) for k, v in measured.items() if isinstance(v, int)}
    # Bounded, whatever the size: the second half of the data adds next to nothing to the
    # peak (measured: +0-5 MB of RSS, +0 MB of Arrow memory for ~200 MB streamed).
    assert measured["peak"] - half["peak"] < 0.08 * size, (mb, half)
    assert measured["pool_peak"] - half["pool_peak"] < 0.04 * size, (mb, half)
    # ... and a constant of the reader's design, not of the data: it decodes SCAN_AHEAD chunks
    # of ~8 MiB of row groups at once (a decode peaks at ~2.5x its output), holds the chunk
    # being consumed, and a large group's lazy scan runs beside the stream's. Measured for
    # 402 MB: RSS +130-210 MB, Arrow memory 120-155 MB at peak.
    assert measured["peak"] - measured["base"] < 256e6, mb
    assert measured["pool_peak"] < 192e6, mb
