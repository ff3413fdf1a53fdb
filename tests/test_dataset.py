"""Reading a grouped dataset: open, metadata, random access, streaming, the Group API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import group_counts, make_table, read_manifest_json, rows_of, shard_paths

import grouparrow as ga


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ga.GroupedDataset, pa.Table]:
    table = make_table(3_000, 60, seed=2, chunks=3)
    out = tmp_path_factory.mktemp("dataset") / "out"
    return ga.build(table, key="k", output=out, num_shards=4, seed=5), table


def _input_rows(table: pa.Table, key: Any) -> list[int]:
    return rows_of(table, "k", key).column("i").to_pylist()


# -- open -----------------------------------------------------------------------------------


def test_open_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError) as info:
        ga.open(missing)
    assert str(missing) in str(info.value)


def test_open_directory_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(ga.FormatError) as info:
        ga.open(tmp_path)
    assert "grouparrow.json" in str(info.value)
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_open_a_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(make_table(3), path)
    with pytest.raises((ga.FormatError, FileNotFoundError, NotADirectoryError)) as info:
        ga.open(path)
    assert str(path) in str(info.value)


def _edit_manifest(path: Path, edit: Any) -> None:
    manifest_path = path / "grouparrow.json"
    body = json.loads(manifest_path.read_text())
    edit(body)
    manifest_path.write_text(json.dumps(body))


def test_open_unknown_format_version(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(20), key="k", output=out)
    _edit_manifest(out, lambda body: body.update(format_version=2))
    with pytest.raises(ga.FormatError) as info:
        ga.open(out)
    message = str(info.value)
    assert "format_version 2" in message
    assert "version 1" in message
    assert "grouparrow.json" in message


def test_open_corrupt_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(20), key="k", output=out)
    (out / "grouparrow.json").write_text('{"format": "grouparrow", "format_vers')
    with pytest.raises(ga.FormatError) as info:
        ga.open(out)
    assert "not valid JSON" in str(info.value)
    assert str(out / "grouparrow.json") in str(info.value)


def test_open_not_a_grouparrow_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "grouparrow.json").write_text('{"format": "lance"}')
    with pytest.raises(ga.FormatError, match="not a grouparrow manifest"):
        ga.open(out)


def test_open_malformed_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(20), key="k", output=out)
    _edit_manifest(out, lambda body: body.pop("shards"))
    with pytest.raises(ga.FormatError, match=r"malformed.*shards"):
        ga.open(out)


def test_open_non_utf8_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "grouparrow.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ga.FormatError, match="UTF-8"):
        ga.open(out)


# -- metadata -------------------------------------------------------------------------------


def test_metadata(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    counts = group_counts(table, "k")
    assert ds.num_groups == len(counts) == len(ds)
    assert ds.num_rows == 3_000
    assert ds.num_shards == 4
    assert ds.key_column == "group_id"
    assert ds.schema == pa.schema(
        [pa.field("group_id", pa.string(), nullable=False), *table.schema]
    )
    ids = ds.group_ids()
    assert sorted(ids) == sorted(counts)
    assert ids == ds.index.column("group_id").to_pylist()
    assert "num_groups=60" in repr(ds) and "num_rows=3,000" in repr(ds)
    # shard_index: the index rows of one shard, in storage order.
    parts = [ds.shard_index(s) for s in range(4)]
    assert sum(p.num_rows for p in parts) == ds.num_groups
    assert [g for p in parts for g in p.column("group_id").to_pylist()] == ids
    for shard, part in enumerate(parts):
        assert set(part.column("shard").to_pylist()) <= {shard}


def test_open_matches_build(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    again = ga.open(ds.path)
    assert isinstance(again, ga.GroupedDataset)
    assert again.group_ids() == ds.group_ids()
    assert again.schema == ds.schema


# -- random access --------------------------------------------------------------------------


def test_getitem_every_group(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    for key, count in group_counts(table, "k").items():
        group = ds[key]
        assert isinstance(group, ga.Group)
        assert group.id == key
        assert group.num_rows == len(group) == count
        rows = group.to_arrow()
        assert rows.column("i").to_pylist() == _input_rows(table, key)
        assert set(rows.column("group_id").to_pylist()) == {key}


@pytest.mark.parametrize("key_type", ["int64", "int32", "binary"])
def test_getitem_other_key_types(tmp_path: Path, key_type: str) -> None:
    table = make_table(500, 13, key_type=key_type)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=3)
    for key, count in group_counts(table, "k").items():
        assert key in ds
        group = ds[key]
        assert group.num_rows == count
        assert group.to_arrow().column("i").to_pylist() == _input_rows(table, key)
    key = table.column("k")[0]
    assert ds[key].num_rows == ds[key.as_py()].num_rows  # a pyarrow scalar works too
    with pytest.raises(ga.GroupNotFoundError):
        ds["user-0"]


def test_getitem_numpy_integer(tmp_path: Path) -> None:
    """Integer ids taken from NumPy arrays (e.g. a column's to_numpy()) find their group."""
    table = make_table(200, 6, key_type="int64")
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=2)
    key = table.column("k").to_numpy()[0]
    assert isinstance(key, np.integer)
    assert key in ds
    assert ds[key].num_rows == ds[int(key)].num_rows
    assert ds[key].id == int(key)


def test_group_not_found(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    with pytest.raises(ga.GroupNotFoundError) as info:
        ds["no-such-user"]
    message = str(info.value)
    assert "'no-such-user'" in message
    assert str(ds.path) in message
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, ga.GroupArrowError)
    with pytest.raises(KeyError):
        ds["also-missing"]
    for wrong in (3, b"user-1", None, 1.5, True):
        with pytest.raises(ga.GroupNotFoundError) as info:
            ds[wrong]  # type: ignore[index]
        assert repr(wrong) in str(info.value)


def test_contains_and_get(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    key = table.column("k")[0].as_py()
    assert key in ds
    assert "nobody" not in ds
    assert 7 not in ds
    assert None not in ds
    assert ds.get(key).num_rows == ds[key].num_rows
    assert ds.get("nobody") is None
    sentinel = object()
    assert ds.get("nobody", sentinel) is sentinel


# -- streaming ------------------------------------------------------------------------------


def _order(ds: ga.GroupedDataset, **kw: Any) -> list[Any]:
    return [g.id for g in ds.iter_groups(**kw)]


def test_iter_groups_every_group_once(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    counts = group_counts(table, "k")
    plain = _order(ds)
    assert plain == ds.group_ids()  # storage order
    assert [g.id for g in ds] == plain
    for group in ds.iter_groups():
        assert group.num_rows == counts[group.id]
        assert group.to_arrow().column("i").to_pylist() == _input_rows(table, group.id)
    for seed in range(5):
        order = _order(ds, shuffle=True, seed=seed)
        assert sorted(order) == sorted(counts)
        assert len(order) == len(set(order))


def test_iter_groups_shuffle_seeds(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    orders = [tuple(_order(ds, shuffle=True, seed=seed)) for seed in range(6)]
    assert _order(ds, shuffle=True, seed=3) == list(orders[3])
    assert orders[0] != orders[1]
    assert len(set(orders)) >= 5


def test_iter_groups_shuffle_rows_intact(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    for group in ds.iter_groups(shuffle=True, seed=7):
        assert group.to_arrow().column("i").to_pylist() == _input_rows(table, group.id)


def test_build_group_stream_alias(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    assert ga.PartitionedDataset is ga.GroupedDataset
    assert [g.id for g in ds.build_group_stream()] == _order(ds)
    assert [g.id for g in ds.build_group_stream(shuffle=True, seed=2)] == _order(
        ds, shuffle=True, seed=2
    )


def test_iter_groups_columns(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    for group in ds.iter_groups(columns=["i", "text"]):
        rows = group.to_arrow()
        assert rows.column_names == ["i", "text"]
        assert group.schema.names == ["i", "text"]
        assert rows.column("i").to_pylist() == _input_rows(table, group.id)
    groups = list(ds.iter_groups(columns=["x"], shuffle=True, seed=1))
    assert len(groups) == ds.num_groups


# -- the Group API --------------------------------------------------------------------------


def test_group_conversions(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    key = table.column("k")[5].as_py()
    group = ds[key]
    expected = rows_of(table, "k", key)
    rows = group.to_pylist()
    assert rows == [{"group_id": key, **row} for row in expected.to_pylist()]
    assert repr(group) == f"Group(id={key!r}, num_rows={expected.num_rows})"
    arrays = group.to_numpy()
    assert set(arrays) == {"group_id", "k", "i", "text", "x"}
    assert arrays["i"].dtype == np.int64
    assert arrays["i"].tolist() == expected.column("i").to_pylist()
    assert np.array_equal(group.to_numpy("x"), expected.column("x").to_numpy())
    frame = group.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == ["group_id", "k", "i", "text", "x"]
    assert frame["i"].to_list() == expected.column("i").to_pylist()
    assert frame["text"].to_list() == expected.column("text").to_pylist()
    batches = group.to_batches()
    assert sum(b.num_rows for b in batches) == group.num_rows
    for batch_size in (1, 3, 1000):
        pieces = list(group.iter_batches(batch_size))
        assert all(0 < b.num_rows <= batch_size for b in pieces)
        assert [i for b in pieces for i in b.column("i").to_pylist()] == expected.column(
            "i"
        ).to_pylist()
    with pytest.raises(ValueError, match="batch_size=0"):
        list(group.iter_batches(0))


def test_group_to_arrow_is_zero_copy(tmp_path: Path) -> None:
    """Groups streamed from one row group are slices of the same decoded buffers."""
    table = make_table(2_000, 40)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=1)
    assert pq.ParquetFile(shard_paths(tmp_path / "out")[0]).metadata.num_row_groups == 1
    addresses = set()
    offsets = []
    ranges = []
    for group in ds.iter_groups():
        chunk = group.to_arrow().column("i").chunk(0)
        buffer = chunk.buffers()[1]
        addresses.add(buffer.address)
        offsets.append(chunk.offset)
        ranges.append((buffer.address, buffer.size))
        # NumPy views the same memory: no copy.
        array = group.to_numpy("i")
        pointer = array.__array_interface__["data"][0]
        assert buffer.address <= pointer < buffer.address + buffer.size
        assert pointer == buffer.address + chunk.offset * 8
        assert not array.flags["OWNDATA"]
    # One decoded batch for the whole shard, and each group a slice at its index offset.
    assert len(addresses) == 1
    assert offsets == ds.index.column("offset").to_pylist()
    assert all(size >= 2_000 * 8 for _, size in ranges)


def test_random_access_is_a_slice(tmp_path: Path) -> None:
    table = make_table(2_000, 40)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=1)
    index = ds.index
    ids = index.column("group_id").to_pylist()
    offsets = index.column("offset").to_pylist()
    for gid, offset in list(zip(ids, offsets, strict=True))[:8]:
        chunk = ds[gid].to_arrow().column("i").chunk(0)
        assert chunk.offset == offset  # a view into the row group, not a copy
        assert chunk.buffers()[1].size >= 2_000 * 8


def test_fixed_size_binary_to_numpy_is_zero_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 16), dtype=np.uint8)
    table = pa.table(
        {
            "k": [f"w{j % 7}" for j in range(300)],
            "pixels": pa.array([row.tobytes() for row in pixels], pa.binary(16)),
        }
    )
    ds = ga.build(table, key="k", output=tmp_path / "out")
    for group in ds.iter_groups():
        array = group.to_numpy("pixels")
        assert array.shape == (group.num_rows, 16)
        assert array.dtype == np.uint8
        rows = [j for j in range(300) if f"w{j % 7}" == group.id]
        assert np.array_equal(array, pixels[rows])
        buffer = group.to_arrow().column("pixels").chunk(0).buffers()[1]
        pointer = array.__array_interface__["data"][0]
        assert buffer.address <= pointer < buffer.address + buffer.size


def test_group_spanning_row_groups(tmp_path: Path) -> None:
    n = 20_000
    keys = ["big" if j % 2 == 0 or 5_000 <= j < 12_000 else f"s{j % 97}" for j in range(n)]
    table = pa.table({"k": keys, "i": np.arange(n), "pad": [f"p{j}" * 3 for j in range(n)]})
    for num_shards in (1, 2):
        out = tmp_path / f"out{num_shards}"
        ds = ga.build(table, key="k", output=out, num_shards=num_shards, row_group_bytes=1)
        big_shard = ga.shard_of("big", 0, num_shards)
        meta = pq.ParquetFile(shard_paths(out)[big_shard]).metadata
        assert meta.num_row_groups >= 2
        expected = [j for j, k in enumerate(keys) if k == "big"]
        assert len(expected) > meta.row_group(0).num_rows
        group = ds["big"]
        rows = group.to_arrow()
        assert rows.column("i").to_pylist() == expected
        assert rows.column("pad").to_pylist() == [f"p{j}" * 3 for j in expected]
        streamed = {g.id: g for g in ds.iter_groups()}
        assert streamed["big"].to_arrow().column("i").to_pylist() == expected
        assert rows.column("i").num_chunks >= 2  # one chunk per row group it spans
        pieces = list(streamed["big"].iter_batches(3_000))
        assert all(b.num_rows <= 3_000 for b in pieces)
        assert [i for b in pieces for i in b.column("i").to_pylist()] == expected
        for gid, group in streamed.items():
            assert group.to_arrow().column("i").to_pylist() == [
                j for j, k in enumerate(keys) if k == gid
            ]
        shuffled = {g.id: g.num_rows for g in ds.iter_groups(shuffle=True, seed=4)}
        assert shuffled == {g: s.num_rows for g, s in streamed.items()}


# -- reading damaged datasets ---------------------------------------------------------------


def test_missing_shard_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = ga.build(make_table(200, 10), key="k", output=out, num_shards=2)
    ids = ds.group_ids()
    for path in shard_paths(out):
        path.unlink()
    ds = ga.open(out)
    with pytest.raises(ga.CorruptDatasetError) as info:
        ds[ids[0]]
    assert "shard-0000" in str(info.value)
    with pytest.raises(ga.CorruptDatasetError):
        list(ds.iter_groups())


def test_missing_index(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(200, 10), key="k", output=out, num_shards=2)
    (out / "index.parquet").unlink()
    ds = ga.open(out)
    with pytest.raises(ga.CorruptDatasetError) as info:
        ds.group_ids()
    assert str(out / "index.parquet") in str(info.value)


def test_shard_row_count_mismatch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = ga.build(make_table(200, 10), key="k", output=out, num_shards=1)
    ids = ds.group_ids()
    pq.write_table(pq.read_table(shard_paths(out)[0]).slice(0, 50), shard_paths(out)[0])
    with pytest.raises(ga.CorruptDatasetError, match="has 50 rows but the manifest lists 200"):
        ga.open(out)[ids[0]]
    assert read_manifest_json(out)["num_rows"] == 200
