"""Groups larger than the reader keeps in memory: read row group by row group on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grouparrow as ga
from grouparrow import _shards, dataset

_BIG = 300_000


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    """One group of 300k rows (~30 MB) among 500 small ones, in ~64 KiB row groups."""
    rng = np.random.default_rng(0)
    keys = np.concatenate([np.zeros(_BIG, np.int64), rng.integers(1, 501, 20_000)])
    rng.shuffle(keys)
    table = pa.table(
        {
            "k": pa.array([f"g{k}" for k in keys]),
            "i": pa.array(np.arange(len(keys))),
            "pad": pa.array(np.full(len(keys), "y" * 80)),
        }
    )
    out = tmp_path_factory.mktemp("large") / "out"
    return ga.build(table, key="k", output=out, num_shards=2, row_group_bytes=64 * 1024)


def _expected(ds: ga.GroupedDataset, gid: str) -> np.ndarray:
    return np.sort(ds[gid].to_numpy("i"))


def test_large_group_streams_in_bounded_memory(
    built: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[list[int]] = []
    read = pq.ParquetFile.read_row_groups

    def counting(self: pq.ParquetFile, parts: list[int], **kwargs: Any) -> pa.Table:
        if "pad" in self.schema_arrow.names:  # a shard, not the index
            reads.append(parts)
        return read(self, parts, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counting)
    monkeypatch.setattr(_shards, "SCAN_CHUNK_BYTES", 256 * 1024)
    monkeypatch.setattr(dataset, "LARGE_GROUP_BYTES", 20_000)
    big = ga.open(built.path)["g0"]
    assert big.num_rows == _BIG
    assert reads == []  # nothing read until rows are asked for
    seen, peak, base = [], 0, pa.total_allocated_bytes()
    for batch in big.iter_batches(10_000):
        assert batch.num_rows <= 10_000
        seen.append(batch.column("i").to_numpy())
        peak = max(peak, pa.total_allocated_bytes() - base - sum(a.nbytes for a in seen))
    values = np.concatenate(seen)
    assert len(values) == _BIG and np.all(np.diff(values) > 0)  # input order, all rows
    assert set(big.to_arrow().column("k").to_pylist()) == {"g0"}
    # Row groups of ~64 KiB were decoded 256 KiB at a time (SCAN_AHEAD + 1 = 4 such chunks
    # held at most), never the ~30 MB group at once.
    assert peak < 4 * 2**20, peak
    assert len(reads) > 100


def test_streams_yield_large_groups_lazily_in_order(
    built: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = [(g.id, g.to_arrow()) for g in built.iter_groups(shuffle=True, seed=3)]
    assert dataset.LARGE_GROUP_BYTES > 30 * 2**20  # g0 is not large by default
    monkeypatch.setattr(dataset, "LARGE_GROUP_BYTES", 20_000)  # groups of >~200 rows are
    for ds in (ga.open(built.path), ga.open(built.path).cache(built.path.parent / "c")):
        groups = list(ds.iter_groups(shuffle=True, seed=3))
        lazy = [g for g in groups if g._batches is None]
        assert [g.id for g in lazy] == ["g0"]
        assert [(g.id, g.to_arrow()) for g in groups] == eager
        for worker in range(3):
            part = ds.iter_groups(worker_index=worker, num_workers=3)
            assert all(g.to_arrow().equals(ds[g.id].to_arrow()) for g in part)


def test_random_access_to_large_groups(
    built: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = {gid: _expected(built, gid) for gid in ["g0", "g7", "g8"]}
    monkeypatch.setattr(dataset, "LARGE_GROUP_BYTES", 20_000)
    ds = ga.open(built.path)
    many = ds.get_many(["g7", "g0", "g8"])
    assert [g.id for g in many] == ["g7", "g0", "g8"]
    assert many[1]._batches is None and many[0]._batches is not None
    for group in many:
        assert np.array_equal(np.sort(group.to_numpy("i")), expected[group.id])
    fit, held = ds.split_rows(0.3, seed=1)
    assert fit["g0"].num_rows + held["g0"].num_rows == _BIG
    assert 0.25 < held["g0"].num_rows / _BIG < 0.35
