"""Random access reads little: row groups end at group boundaries, a fetch reads one."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shard_paths

import grouparrow as ga
from grouparrow import _shards


def _skewed(num_groups: int, seed: int) -> pa.Table:
    """Groups of 1 to ~2,000 rows (lognormal sizes), rows of ~100 bytes."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.lognormal(1.5, 1.6, num_groups).astype(int) + 1, 2_000)
    keys = np.repeat(np.arange(num_groups), sizes)
    rng.shuffle(keys)
    return pa.table(
        {
            "k": pa.array([f"g{k}" for k in keys]),
            "i": pa.array(np.arange(len(keys))),
            "pad": pa.array(["x" * 80] * len(keys)),
        }
    )


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    out = tmp_path_factory.mktemp("ra") / "out"
    return ga.build(_skewed(3_000, 1), key="k", output=out, num_shards=2, row_group_bytes=64 * 1024)


def test_row_groups_end_at_group_boundaries(skewed: ga.GroupedDataset) -> None:
    split = 0
    for shard, path in enumerate(shard_paths(skewed.path)):
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        assert len(sizes) > 10
        part = skewed.shard_index(shard)
        offsets = part.column("offset").to_numpy()
        counts = part.column("num_rows").to_numpy()
        for rg in range(1, len(sizes)):
            boundary = starts[rg]
            g = bisect.bisect_right(offsets.tolist(), boundary) - 1
            if offsets[g] == boundary:
                continue  # the row group starts with a group
            # A group is cut only when it fills at least 3/4 of the row group it leaves.
            split += 1
            inside = boundary - max(offsets[g], starts[rg - 1])
            assert inside >= 0.75 * sizes[rg - 1] - 1, (shard, rg, counts[g])
    assert split > 0  # the largest groups do span row groups


def test_fetching_a_small_group_reads_one_row_group(
    skewed: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[int, int]] = []
    read = _shards.ParquetShards.read

    def counting(self: Any, shard: int, part: int, columns: Any = None) -> pa.RecordBatch:
        reads.append((shard, part))
        return read(self, shard, part, columns)

    monkeypatch.setattr(_shards.ParquetShards, "read", counting)
    ds = ga.open(skewed.path)
    index = ds.index
    sizes = index.column("num_rows").to_numpy()
    small = [index.column("group_id")[int(j)].as_py() for j in np.flatnonzero(sizes <= 100)]
    assert len(small) > 1_000
    for gid in small[:300]:
        reads.clear()
        group = ds[gid]
        assert len(reads) == 1
        assert len(group.to_batches()) == 1  # one chunk: to_numpy without a copy
    reads.clear()
    many = ds.get_many(small[:40])
    assert len(reads) == len(set(reads)) <= 40
    assert [g.id for g in many] == small[:40]


def test_every_row_once_with_tiny_row_groups(tmp_path: Path) -> None:
    table = _skewed(400, 2)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=3, row_group_bytes=1)
    seen = np.concatenate([g.to_numpy("i") for g in ds.iter_groups()])
    assert sorted(seen.tolist()) == list(range(table.num_rows))
    for gid in ds.group_ids()[:50]:
        keys = ds[gid].to_arrow().column("k").to_pylist()
        assert set(keys) == {gid}


def test_random_access_while_streaming(skewed: ga.GroupedDataset) -> None:
    """A stream decodes ahead on a thread; fetching groups meanwhile reads the same files."""
    ds = ga.open(skewed.path)
    ids = ds.group_ids()
    rng = np.random.default_rng(0)
    expected = {gid: skewed[gid].to_arrow() for gid in ids}
    for group in ds.iter_groups(shuffle=True, seed=1):
        other = ids[int(rng.integers(len(ids)))]
        assert ds[other].to_arrow().equals(expected[other])
        assert group.to_arrow().equals(expected[group.id])
