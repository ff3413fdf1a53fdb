"""Two builds racing for the same output (local disk): one clear winner, never a mix.

Two processes (``sys.executable -c ...``) build different data (4,000 rows, 3 shards each)
to the same output. They are lined up with barrier files: either at the start (both wait
for a file the test creates once both are ready, then run the whole build at the same
moment), or inside the commit (both build, then wait at ``commit:manifest-written`` through
``$GROUPARROW_FAULTS``, so that their renames race for certain).

- ``mode="error"``, new output: exactly one build returns, the other raises
  ``OutputExistsError``; the output is the winner's dataset, whole (its shards are the bytes
  of a reference build of the winner's data), and verifies.
- ``mode="overwrite"``, with or without a previous output, with the atomic swap or the
  two-rename protocol: both builds succeed, one after the other; the output is exactly one
  of the two datasets, whole, and verifies.
- Nothing is left beside the output (``.NAME.grouparrow-*``).

Long run (more rounds of each race): ``GROUPARROW_LONG=1`` (``GROUPARROW_RACE_ROUNDS=N``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import leftovers, make_table

import grouparrow as ga

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("GROUPARROW_LONG") == "1"
ROUNDS = int(os.environ.get("GROUPARROW_RACE_ROUNDS", "10" if LONG else "1"))
NUM_SHARDS = 3

SCRIPT = """
import os, sys, time
import grouparrow as ga
from grouparrow import _commit
source, out, mode, exchange, barrier = sys.argv[1:6]
_commit.EXCHANGE = exchange == "1"
print("ready", flush=True)
while not os.path.exists(barrier):
    time.sleep(0.001)
try:
    ga.build(source, key="k", output=out, num_shards=3, mode=mode)
except ga.OutputExistsError as exc:
    print(f"lost: {exc}", flush=True)
    sys.exit(3)
print("won", flush=True)
"""


@dataclass
class Data:
    sources: list[str]
    shards: list[list[str]]  # the reference builds' shard hashes
    rows: list[int]
    old: Path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    base = tmp_path_factory.mktemp("sources")
    sources, shards, rows = [], [], []
    for n, (keys, seed) in enumerate([(150, 11), (90, 12)]):
        path = base / f"s{n}.parquet"
        pq.write_table(make_table(4000 + n, num_keys=keys, seed=seed), path, row_group_size=1000)
        ds = ga.build(str(path), key="k", output=base / f"ref{n}", num_shards=NUM_SHARDS)
        sources.append(str(path))
        shards.append(shard_hashes(base / f"ref{n}"))
        rows.append(ds.num_rows)
    old = base / "old"
    ga.build(make_table(500, num_keys=20, seed=13), key="k", output=old, num_shards=NUM_SHARDS)
    assert shards[0] != shards[1]
    return Data(sources, shards, rows, old)


def shard_hashes(directory: Path) -> list[str]:
    """The SHA-256 of each shard file the manifest lists, in order, from the bytes."""
    import hashlib

    manifest = json.loads((directory / "grouparrow.json").read_text())
    return [
        hashlib.sha256((directory / s["file"]).read_bytes()).hexdigest() for s in manifest["shards"]
    ]


def race(
    data: Data, tmp: Path, out: Path, mode: str, *, exchange: bool = True, in_commit: bool
) -> list[subprocess.CompletedProcess[str]]:
    """Run the two builds to ``out``, released together; how each ended."""
    start = tmp / f"go-{out.name}"
    commit = tmp / f"commit-{out.name}"
    spec = tmp / f"faults-{out.name}.json"
    waits = [{"point": "commit:manifest-written", "action": "wait", "file": str(commit)}]
    spec.write_text(json.dumps(waits if in_commit else []))
    env = {**os.environ, "GROUPARROW_FAULTS": str(spec)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SCRIPT,
                source,
                str(out),
                mode,
                "1" if exchange else "0",
                str(start),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for source in data.sources
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    start.touch()
    if in_commit:
        staged = 0
        deadline = time.monotonic() + 120
        while staged < 2:  # both at the barrier: two staging directories with a manifest
            assert time.monotonic() < deadline
            assert all(p.poll() is None for p in processes)
            staged = sum(
                (tmp / name / "grouparrow.json").exists() for name in leftovers(tmp, out.name)
            )
            time.sleep(0.005)
        commit.touch()
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    return results


def which(out: Path, data: Data) -> int:
    """Which of the two datasets ``out`` holds, whole (else the test fails)."""
    report = ga.verify(out)
    assert report.ok, report.problems
    found = shard_hashes(out)
    assert found in data.shards, "the output is neither build's dataset"
    n = data.shards.index(found)
    assert ga.open(out).num_rows == data.rows[n]
    return n


@pytest.mark.parametrize("in_commit", [False, True], ids=["at-start", "in-commit"])
def test_two_builds_race_for_a_new_output(data: Data, tmp_path: Path, in_commit: bool) -> None:
    for round_ in range(ROUNDS):
        out = tmp_path / f"out{round_}"
        results = race(data, tmp_path, out, "error", in_commit=in_commit)
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 3], [r.stderr[-2000:] for r in results]
        winner = next(n for n, r in enumerate(results) if r.returncode == 0)
        loser = results[1 - winner]
        assert "lost: output" in loser.stdout
        assert "already exists" in loser.stdout or "created by someone else" in loser.stdout
        if in_commit:  # both built: the second rename lost
            assert "created by someone else during the build" in loser.stdout
        assert which(out, data) == winner
        assert leftovers(tmp_path, out.name) == []


@pytest.mark.parametrize(
    ("previous", "exchange", "in_commit"),
    [
        (False, True, False),
        (True, True, False),
        (True, True, True),
        (False, True, True),
        (True, False, True),
    ],
    ids=["fresh", "replace", "replace-in-commit", "fresh-in-commit", "two-renames-in-commit"],
)
def test_two_overwrites_race(
    data: Data, tmp_path: Path, previous: bool, exchange: bool, in_commit: bool
) -> None:
    for round_ in range(ROUNDS):
        out = tmp_path / f"out{round_}"
        if previous:
            shutil.copytree(data.old, out)
        results = race(data, tmp_path, out, "overwrite", exchange=exchange, in_commit=in_commit)
        assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
        assert which(out, data) in (0, 1)
        assert leftovers(tmp_path, out.name) == []
