"""Ctrl-C in the middle of a build leaves no partial output and no temporary files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A build slow enough to interrupt: a Python key function that sleeps a little per batch.
SCRIPT = """
import sys, time
import numpy as np, pyarrow as pa
import grouparrow as ga

def batches():
    for i in range(400):
        yield pa.record_batch({"k": pa.array(np.arange(i * 1000, (i + 1) * 1000) % 97)})

def slow_key(batch):
    time.sleep(0.01)
    return batch["k"]

reader = pa.RecordBatchReader.from_batches(pa.schema([("k", pa.int64())]), batches())
print("started", flush=True)
ga.build(reader, key=ga.batch_key_fn(slow_key), output=sys.argv[1], num_shards=int(sys.argv[2]),
         mode=sys.argv[3])
print("finished", flush=True)
"""


def _run_and_interrupt(out: Path, num_shards: int, mode: str) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out), str(num_shards), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("num_shards", [1, 3])
def test_ctrl_c_leaves_nothing(tmp_path: Path, num_shards: int) -> None:
    out = tmp_path / "out"
    result = _run_and_interrupt(out, num_shards, "error")
    assert "finished" not in result.stdout
    assert "KeyboardInterrupt" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_during_overwrite_keeps_the_old_dataset(tmp_path: Path) -> None:
    import grouparrow as ga

    out = tmp_path / "out"
    old = ga.build(ga.examples.path("shakespeare"), key="speaker", output=out)
    result = _run_and_interrupt(out, 2, "overwrite")
    assert "finished" not in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    reopened = ga.open(out)
    assert (reopened.num_groups, reopened.num_rows) == (old.num_groups, old.num_rows)
    assert ga.verify(out).ok
