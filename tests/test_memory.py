"""An input that does not fit in memory: a one-shot stream ~5x the memory budget.

The build runs in a child process (this file run as a script) so that its peak RSS is its
own: the child generates a stream of ~640 MB of Arrow data (1.5M rows: a ``user`` key with
100,000 Zipf-sized groups, ``pos``, ``score`` and ~400 bytes of ``text``) batch by batch
into ``pa.RecordBatchReader.from_batches`` (not re-readable, no size known in advance),
builds it under ``memory_limit="128MB"`` and reports its RSS after the imports and its
peak RSS (``VmHWM``) during the build. The parent checks the growth and the output.

**The margin.** ``memory_limit`` bounds DuckDB's buffer pool (its share: the budget less
room for the writer's row groups) and sizes the shards and the map step's buffers; it does
not cover everything a build holds. Measured on this input (DuckDB 2.0.1, PyArrow 26; 2
threads asked, 1 used, see ``threads`` in ``grouparrow.build``) the peak comes in the
reduce step, 326 MB above the RSS after the imports: the budget + ~200 MB, made of

- DuckDB beyond its pool, ~90 MB: the Arrow batches it hands over (65,536 rows, ~27 MB
  each here) and allocations its limit does not track (a bare ``ORDER BY`` of one shard
  fetched as Arrow under a 91 MiB limit grows RSS by 186 MB);
- the Python side of the reduce step, ~110 MB: each batch cast and its words counted
  (~40 MB of temporaries), the writer's 16 MiB row groups (one filling, one queued, one
  being encoded: ~70 MB), where the budget reserves 32 MB for them;
- what the allocators keep for reuse.

These are a few batches and row groups, whatever the input's size. ``MARGIN`` is the
~200 MB measured plus 50 % for other platforms and library versions; a build that held
the stream (640 MB), two shards (~80 MB each) at once, or ran DuckDB with more threads
than its memory allows (out of memory at 2 threads under this budget) fails the test.

Linux only (``/proc/self/status``). The peak is reset after the imports by writing ``5``
to ``/proc/self/clear_refs`` (Linux >= 4.0); where that is refused, the peak of the
imports counts too, which only makes the check stricter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 128 * 10**6
MARGIN = 300 * 10**6
ROWS = 1_500_000
BATCH_ROWS = 16_384
GROUPS = 100_000
ZIPF = 0.8  # the largest group: ~2 % of the rows
TEXT_BYTES = (100, 700)  # uniform: ~400 bytes a row
THREADS = 2  # as on a 2-core CI runner, whatever the runner has
SCHEMA = pa.schema(
    [("user", pa.int64()), ("pos", pa.int64()), ("score", pa.float64()), ("text", pa.string())]
)


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


class _Stream:
    """Seeded batches made with numpy; counts each group's rows as it goes. A batch's text
    is a window of one pool of letters and spaces, cut into rows: no copy per row."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        pool = self.rng.integers(ord("a"), ord("z") + 1, 16 * 2**20, dtype=np.uint8)
        pool[self.rng.random(pool.size) < 0.15] = ord(" ")
        self.pool = pool
        weights = np.arange(1, GROUPS + 1, dtype=np.float64) ** -ZIPF
        self.cdf = np.cumsum(weights) / weights.sum()
        self.counts = np.zeros(GROUPS, np.int64)
        self.nbytes = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        for start in range(0, ROWS, BATCH_ROWS):
            n = min(BATCH_ROWS, ROWS - start)
            users = np.minimum(np.searchsorted(self.cdf, self.rng.random(n)), GROUPS - 1)
            self.counts += np.bincount(users, minlength=GROUPS)
            lengths = self.rng.integers(TEXT_BYTES[0], TEXT_BYTES[1] + 1, n)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            at = int(self.rng.integers(0, self.pool.size - int(offsets[-1])))
            data = self.pool[at : at + int(offsets[-1])]
            text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
            columns = [
                pa.array(users.astype(np.int64)),
                pa.array(np.arange(start, start + n, dtype=np.int64)),
                pa.array(self.rng.random(n)),
                text,
            ]
            batch = pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
            self.nbytes += batch.nbytes
            yield batch


def _child(out: Path, report: Path) -> None:
    """Build the stream under the budget; write the figures and group counts for the test."""
    import grouparrow as ga

    stream = _Stream()
    reader = pa.RecordBatchReader.from_batches(SCHEMA, stream.batches())
    reset = _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    ds = ga.build(reader, key="user", output=out, memory_limit=BUDGET, threads=THREADS)
    peak = _status("VmHWM")
    np.save(report.with_suffix(".npy"), stream.counts)
    figures = {
        "reset": reset,
        "rss_before": before,
        "peak": peak,
        "seconds": time.perf_counter() - started,
        "arrow_bytes": stream.nbytes,
        "num_shards": ds.num_shards,
        "threads": ds.manifest.build["threads"],
    }
    report.write_text(json.dumps(figures))


def _run_child(tmp_path: Path) -> tuple[Path, dict[str, Any], np.ndarray]:
    out, report = tmp_path / "out", tmp_path / "report.json"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, __file__, str(out), str(report)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(report.read_text()), np.load(report.with_suffix(".npy"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_stream_larger_than_budget(tmp_path: Path) -> None:
    import grouparrow as ga

    out, figures, counts = _run_child(tmp_path)
    growth = figures["peak"] - figures["rss_before"]
    shown = (
        f"peak RSS grew {growth / 1e6:.0f} MB for a {BUDGET / 1e6:.0f} MB budget + "
        f"{MARGIN / 1e6:.0f} MB margin; {figures}"
    )
    print(shown)
    assert figures["arrow_bytes"] > 4 * BUDGET, "the stream must not fit in the budget"
    assert growth <= BUDGET + MARGIN, shown

    ds = ga.open(out)
    assert ds.num_rows == ROWS == int(counts.sum())
    index = ds.index
    ids = index.column("group_id").to_numpy()
    assert ds.num_groups == len(ids) == int(np.count_nonzero(counts))
    np.testing.assert_array_equal(index.column("num_rows").to_numpy(), counts[ids])
    report = ga.verify(out)
    assert report.ok, str(report)
    largest = int(np.argmax(counts))
    rows = ds[largest].to_arrow()
    assert rows.num_rows == counts[largest]
    assert set(rows.column("user").to_pylist()) == {largest}
    assert np.all(np.diff(rows.column("pos").to_numpy()) > 0), "a group's rows in input order"


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
