"""The local Arrow IPC cache: same groups as Parquet, zero-copy, lazy, checked, atomic."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_table, shard_paths

import grouparrow as ga
from grouparrow import _shards


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    table = make_table(6_000, 400, seed=3)
    table = table.append_column(
        "when", pa.array(np.arange(6_000) * 1_000, pa.timestamp("s"))
    ).append_column("vec", pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12_000.0)), 2))
    out = tmp_path_factory.mktemp("cache") / "out"
    return ga.build(table, key="k", output=out, num_shards=3, row_group_bytes=16 * 1024)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _groups(ds: ga.GroupedDataset, **kw: Any) -> list[tuple[Any, pa.Table]]:
    return [(g.id, g.to_arrow()) for g in ds.iter_groups(**kw)]


def test_cache_reads_the_same_groups(built: ga.GroupedDataset, tmp_path: Path) -> None:
    cached = built.cache(tmp_path / "c")
    assert cached.cache_dir == tmp_path / "c"
    assert built.cache_dir is None
    assert "cache_dir=" in repr(cached)
    assert cached.schema == built.schema
    assert cached.schema.field("when").type == pa.timestamp("s")  # Parquet stores [ms]
    # One file per shard, named by the shard's checksum, and nothing else.
    expected = sorted(f"{s.sha256}.arrow" for s in built.manifest.shards)
    assert _files(tmp_path / "c") == expected
    for kw in ({}, {"shuffle": True, "seed": 4, "epoch": 2}, {"worker_index": 1, "num_workers": 3}):
        parquet, arrow = _groups(built, **kw), _groups(cached, **kw)
        assert [gid for gid, _ in arrow] == [gid for gid, _ in parquet]
        for (_, a), (_, b) in zip(arrow, parquet, strict=True):
            assert a.schema == b.schema
            assert a.equals(b)
    ids = built.group_ids()
    for gid in ids[::7]:
        assert cached[gid].to_arrow().equals(built[gid].to_arrow())
    assert [g.to_arrow() for g in cached.get_many(ids[:50])] == [
        g.to_arrow() for g in built.get_many(ids[:50])
    ]
    assert [g.id for g in cached.sample(20, seed=9)] == [g.id for g in built.sample(20, seed=9)]
    only = next(iter(cached.iter_groups(columns=["i"])))
    assert only.to_arrow().column_names == ["i"]


def test_cache_is_zero_copy(built: ga.GroupedDataset, tmp_path: Path) -> None:
    cached = built.cache(tmp_path / "c")
    before = pa.total_allocated_bytes()
    groups = list(cached.iter_groups())
    fetched = [cached[g.id] for g in groups[:100]]
    # Every buffer is a view of the memory-mapped files: nothing was allocated.
    assert pa.total_allocated_bytes() - before < 64 * 1024
    assert sum(g.num_rows for g in groups) == built.num_rows
    assert all(len(g.to_batches()) == 1 for g in fetched)


def test_open_with_cache_dir_caches_shards_on_first_use(
    built: ga.GroupedDataset, tmp_path: Path
) -> None:
    directory = tmp_path / "lazy"
    ds = ga.open(built.path, cache_dir=directory)
    assert ds.cache_dir == directory
    assert _files(directory) == []
    gid = built.group_ids()[0]
    shard = ga.shard_of(gid, built.manifest.seed, built.num_shards)
    assert ds[gid].to_arrow().equals(built[gid].to_arrow())
    assert _files(directory) == [f"{built.manifest.shards[shard].sha256}.arrow"]
    assert sum(1 for _ in ds) == built.num_groups
    assert len(_files(directory)) == built.num_shards


def test_default_cache_dir(
    built: ga.GroupedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUPARROW_CACHE", str(tmp_path / "env"))
    assert built.cache().cache_dir == tmp_path / "env"
    assert len(_files(tmp_path / "env")) == built.num_shards
    monkeypatch.delenv("GROUPARROW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _shards.default_cache_dir() == tmp_path / "xdg" / "grouparrow"


def test_damaged_cache_files_are_rewritten(built: ga.GroupedDataset, tmp_path: Path) -> None:
    directory = tmp_path / "c"
    built.cache(directory)
    files = sorted(directory.iterdir())
    files[0].write_bytes(files[0].read_bytes()[:1000])  # truncated
    files[1].write_bytes(b"not arrow at all")
    # A valid Arrow file, but of other data: its schema and source checksum do not match.
    with pa.ipc.new_file(files[2], pa.schema([("x", pa.int64())])) as writer:
        writer.write_batch(pa.record_batch({"x": [1]}))
    cached = built.cache(directory)
    assert _groups(cached) == _groups(built)
    assert sorted(directory.iterdir()) == files


def test_rebuilt_dataset_never_reads_stale_cache(tmp_path: Path) -> None:
    out, directory = tmp_path / "out", tmp_path / "c"
    first = ga.build(make_table(500, 20, seed=1), key="k", output=out)
    assert first.cache(directory)[first.group_ids()[0]].num_rows > 0
    second = ga.build(make_table(800, 20, seed=2), key="k", output=out, mode="overwrite")
    cached = second.cache(directory)
    assert _groups(cached) == _groups(second)
    assert sum(g.num_rows for g in cached) == 800
    assert len(_files(directory)) == 2  # the old file stays until the directory is cleared


def test_corrupt_shard_is_not_cached(tmp_path: Path) -> None:
    ds = ga.build(make_table(2_000, 30), key="k", output=tmp_path / "out", num_shards=2)
    path = shard_paths(tmp_path / "out")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ga.CorruptDatasetError, match="checksum") as info:
        ds.cache(tmp_path / "c")
    assert str(path) in str(info.value)
    assert "grouparrow verify" in str(info.value)
    # Shard 0 was cached; nothing of shard 1, not even a temporary file.
    assert _files(tmp_path / "c") == [f"{ds.manifest.shards[0].sha256}.arrow"]


def test_failed_conversion_leaves_no_file(
    built: ga.GroupedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    read = _shards.ParquetShards.read

    def failing(self: Any, shard: int, part: int, columns: Any = None) -> pa.RecordBatch:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return read(self, shard, part, columns)

    monkeypatch.setattr(_shards.ParquetShards, "read", failing)
    with pytest.raises(KeyboardInterrupt):
        ga.open(built.path).cache(tmp_path / "c")
    assert _files(tmp_path / "c") == []
    monkeypatch.setattr(_shards.ParquetShards, "read", read)
    assert _groups(ga.open(built.path).cache(tmp_path / "c")) == _groups(built)


def test_cached_dataset_pickles(built: ga.GroupedDataset, tmp_path: Path) -> None:
    cached = built.cache(tmp_path / "c")
    first = next(iter(cached))
    copy = pickle.loads(pickle.dumps(cached))
    assert copy.cache_dir == cached.cache_dir
    assert next(iter(copy)).to_arrow().equals(first.to_arrow())
    plain = pickle.loads(pickle.dumps(built))
    assert plain[first.id].to_arrow().equals(first.to_arrow())


def test_views_of_a_cached_dataset(built: ga.GroupedDataset, tmp_path: Path) -> None:
    cached = built.cache(tmp_path / "c")
    train, test = cached.split_groups(0.25, seed=1)
    plain_train, plain_test = built.split_groups(0.25, seed=1)
    assert train.group_ids() == plain_train.group_ids()
    assert _groups(test) == _groups(plain_test)
    fit, held = cached.split_rows(0.5, seed=2)
    assert _groups(held) == _groups(built.split_rows(0.5, seed=2)[1])
    assert fit.cache_dir == cached.cache_dir
