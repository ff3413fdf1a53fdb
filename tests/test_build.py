"""The build: output modes, atomic commit, shards, manifest, schemas, statistics."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import (
    assert_contiguous,
    data_file,
    group_counts,
    leftovers,
    make_table,
    read_manifest_json,
    rows_of,
    shard_paths,
)

import grouparrow as ga

# -- output modes and the atomic commit -----------------------------------------------------


def test_mode_error_refuses_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(20), key="k", output=out)
    before = read_manifest_json(out)
    with pytest.raises(ga.OutputExistsError) as info:
        ga.build(make_table(30), key="k", output=out)
    message = str(info.value)
    assert str(out) in message
    assert "overwrite" in message
    assert isinstance(info.value, FileExistsError)
    assert read_manifest_json(out) == before
    assert leftovers(tmp_path, "out") == []


def test_mode_error_accepts_an_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ds = ga.build(make_table(20), key="k", output=out)
    assert ds.num_rows == 20


def test_output_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("hello")
    with pytest.raises(ga.OutputExistsError, match="is a file"):
        ga.build(make_table(20), key="k", output=out, mode="overwrite")
    assert out.read_text() == "hello"


def test_mode_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(20, 3), key="k", output=out)
    ds = ga.build(make_table(50, 5, seed=1), key="k", output=out, mode="overwrite", num_shards=2)
    assert ds.num_rows == 50
    assert ga.open(out).num_rows == 50
    assert ga.open(out).num_shards == 2
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "shard-00000-of-00002.parquet",
        "shard-00001-of-00002.parquet",
    ]
    assert ga.verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_overwrite_keeps_the_old_dataset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    v1 = ga.build(make_table(300, 5), key="k", output=out, num_shards=2)
    manifest = read_manifest_json(out)

    def bad(ex: Any) -> str:
        if ex["i"] == 200:
            raise RuntimeError("broken key")
        return ex["k"]

    with pytest.raises(ga.KeyFunctionError, match="broken key"):
        ga.build(make_table(300, 5), key=bad, output=out, mode="overwrite", num_shards=3)
    again = ga.open(out)
    assert again.num_rows == v1.num_rows == 300
    assert again.num_shards == 2
    assert read_manifest_json(out) == manifest
    assert ga.verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_refuses_a_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ga.OutputExistsError) as info:
        ga.build(make_table(20), key="k", output=out, mode="overwrite")
    message = str(info.value)
    assert "not a grouparrow dataset" in message
    assert "grouparrow.json" in message
    assert (out / "cat.jpg").read_bytes() == b"meow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"mode": "append"}, "mode='append'"),
        ({"num_shards": 0}, "num_shards=0"),
        ({"num_shards": -2}, "num_shards=-2"),
        ({"key_column": ""}, "key_column=''"),
        ({"key_column": "__ga_key"}, "key_column='__ga_key'"),
        ({"row_group_bytes": 0}, "row_group_bytes=0"),
        ({"threads": 0}, "threads=0"),
        ({"memory_limit": "lots"}, "memory_limit='lots'"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=re.escape(pattern)):
        ga.build(make_table(10), key="k", output=tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


def test_no_temporary_directories_after_failure(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "keep.txt").write_text("x")
    for key in ("nope", ga.sql("k +"), lambda ex: 1.5, lambda ex: None):
        with pytest.raises(ga.GroupArrowError):
            ga.build(make_table(100), key=key, output=parent / "out", num_shards=2)
        assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]


def test_memory_limit_and_temp_directory(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    ds = ga.build(
        make_table(2_000, 40),
        key="k",
        output=tmp_path / "out",
        memory_limit="512MiB",
        threads=1,
        temp_directory=spill,
        num_shards=2,
    )
    build = read_manifest_json(tmp_path / "out")["build"]
    assert build["memory_limit"] == 512 * 2**20
    assert build["threads"] == 1
    assert ds.num_rows == 2_000


# -- shards and manifest --------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 2, 5, 12])
def test_num_shards_respected(tmp_path: Path, num_shards: int) -> None:
    table = make_table(600, 40)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=num_shards)
    names = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert names == [f"shard-{i:05d}-of-{num_shards:05d}.parquet" for i in range(num_shards)]
    manifest = read_manifest_json(tmp_path / "out")
    assert [s["file"] for s in manifest["shards"]] == [f"data/{n}" for n in names]
    assert manifest["sharding"] == {"hash": "md5", "num_shards": num_shards}
    assert ds.num_shards == num_shards
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "data",
        "grouparrow.json",
        "index.parquet",
    ]


def test_manifest_content(tmp_path: Path) -> None:
    table = make_table(777, 23, key_type="int64")
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=3, seed=11)
    manifest = read_manifest_json(tmp_path / "out")
    assert manifest["format"] == "grouparrow"
    assert manifest["format_version"] == 1
    assert manifest["grouparrow_version"] == ga.__version__
    assert manifest["num_rows"] == 777
    assert manifest["num_groups"] == len(group_counts(table, "k")) == ds.num_groups
    assert manifest["seed"] == 11
    assert manifest["key"] == {
        "column": "group_id",
        "type": "int64",
        "kind": "column",
        "definition": "k",
    }
    assert manifest["schema"][0] == {"name": "group_id", "type": "int64", "nullable": False}
    assert [f["name"] for f in manifest["schema"]] == ["group_id", "k", "i", "text", "x"]
    shards = manifest["shards"]
    assert len(shards) == 3
    assert sum(s["num_rows"] for s in shards) == 777
    assert sum(s["num_groups"] for s in shards) == manifest["num_groups"]
    assert sum(s["num_bytes"] for s in shards) == manifest["num_bytes"] > 0
    index = ds.index
    for shard, info in enumerate(shards):
        path = tmp_path / "out" / info["file"]
        data = path.read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["file_bytes"] == len(data)
        assert info["num_rows"] == pq.ParquetFile(path).metadata.num_rows
        in_shard = pc.equal(index.column("shard"), shard)
        assert info["num_groups"] == pc.sum(in_shard.cast(pa.int64())).as_py()
    build = manifest["build"]
    assert build["rows_read"] == 777
    assert build["rows_dropped_null_key"] == 0
    assert build["on_null"] == "error"
    assert manifest["source"]["type"] == "pyarrow.Table"
    dt.datetime.fromisoformat(manifest["created_at"])


def test_index_layout(tmp_path: Path) -> None:
    table = make_table(900, 31)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=4)
    index_file = pq.ParquetFile(tmp_path / "out" / "index.parquet")
    assert index_file.schema_arrow.names == [
        "group_id",
        "shard",
        "offset",
        "num_rows",
        "num_bytes",
        "num_words",
    ]
    assert index_file.schema_arrow.field("shard").type == pa.int32()
    # One row group per shard.
    assert index_file.metadata.num_row_groups == 4
    index = ds.index
    shards = index.column("shard").to_pylist()
    assert shards == sorted(shards)
    # Offsets are the running sums of group sizes within each shard.
    for shard in range(4):
        part = index.filter(pc.equal(index.column("shard"), shard))
        offsets = part.column("offset").to_pylist()
        sizes = part.column("num_rows").to_pylist()
        assert offsets == list(np.cumsum([0, *sizes[:-1]])) if sizes else offsets == []


def test_same_seed_same_order_other_seed_other_order(tmp_path: Path) -> None:
    table = make_table(2_000, 200)
    a = ga.build(table, key="k", output=tmp_path / "a", num_shards=3, seed=1)
    b = ga.build(table, key="k", output=tmp_path / "b", num_shards=3, seed=1)
    c = ga.build(table, key="k", output=tmp_path / "c", num_shards=3, seed=2)
    assert a.group_ids() == b.group_ids()
    assert sorted(a.group_ids()) == sorted(c.group_ids())
    assert a.group_ids() != c.group_ids()


def test_groups_in_order_hash_order(tmp_path: Path) -> None:
    """Within a shard, groups are ordered by the high 64 bits of their hash."""
    table = make_table(1_000, 150)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=2, seed=9)
    index = ds.index
    for shard in range(2):
        ids = index.filter(pc.equal(index.column("shard"), shard)).column("group_id").to_pylist()
        orders = [ga.key_hash(g, 9) >> 64 for g in ids]
        assert orders == sorted(orders)


# -- schemas --------------------------------------------------------------------------------


def test_femnist_schema_round_trip(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "femnist/femnist_subset.parquet")
    source = pq.read_table(path)
    ds = ga.build(path, key="writer_id", output=tmp_path / "out", num_shards=2)
    assert ds.schema.field("pixels").type == pa.binary(784)
    assert ds.schema.field("label").type == pa.int16()
    assert ds.schema.names == ["group_id", *source.schema.names]
    assert pq.read_schema(shard_paths(tmp_path / "out")[0]).field("pixels").type == pa.binary(784)
    assert ds.num_groups == 184
    assert ds.num_rows == 18_796
    writer = source.column("writer_id")[0].as_py()
    group = ds[writer]
    pixels = group.to_numpy("pixels")
    expected = rows_of(source, "writer_id", writer)
    assert pixels.shape == (expected.num_rows, 784)
    assert pixels.dtype == np.uint8
    want = np.frombuffer(b"".join(expected.column("pixels").to_pylist()), np.uint8)
    assert np.array_equal(pixels, want.reshape(-1, 784))
    assert group.to_numpy("label").tolist() == expected.column("label").to_pylist()
    for g in ds.iter_groups(columns=["pixels"]):
        assert g.to_numpy("pixels").shape == (g.num_rows, 784)


def test_large_string_round_trip(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "nycflights13/flights.parquet")
    source = pq.read_table(path)
    ds = ga.build(path, key="carrier", output=tmp_path / "out", num_shards=2)
    large = [f.name for f in source.schema if f.type == pa.large_string()]
    assert large == ["carrier", "tailnum", "origin", "dest", "time_hour"]
    for name in large:
        assert ds.schema.field(name).type == pa.large_string()
    for path_ in shard_paths(tmp_path / "out"):
        assert pq.read_schema(path_).field("origin").type == pa.large_string()
    assert ds.schema.field("group_id").type == pa.string()
    assert ds.num_groups == 16
    assert ds.num_rows == source.num_rows
    ua = ds["UA"].to_arrow()
    assert ua.schema.field("dest").type == pa.large_string()
    expected = rows_of(source, "carrier", "UA")
    assert ua.drop_columns(["group_id"]).equals(expected, check_metadata=False)
    assert ga.verify(tmp_path / "out").ok


TYPED_COLUMNS: dict[str, pa.Array] = {
    "ts_s": pa.array([0, 1, 2, None], pa.timestamp("s")),
    "ts_ms": pa.array([0, 10**12, 2, None], pa.timestamp("ms")),
    "ts_us_utc": pa.array(
        [dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone.utc)] * 3 + [None],
        pa.timestamp("us", tz="UTC"),
    ),
    "ts_us_paris": pa.array([1, 2, 3, None], pa.timestamp("us", tz="Europe/Paris")),
    "ts_ns": pa.array([1, 2, 1_700_000_000_123_456_789, None], pa.timestamp("ns")),
    "date32": pa.array([dt.date(2020, 1, 2), dt.date(1969, 12, 31), None, dt.date(2000, 2, 29)]),
    "date64": pa.array([0, 86_400_000, None, 2 * 86_400_000], pa.date64()),
    "time64": pa.array([1, 2, None, 4], pa.time64("us")),
    "duration": pa.array([1, 2, None, 4], pa.duration("ms")),
    "decimal": pa.array(
        [decimal.Decimal("1.25"), None, decimal.Decimal("-3.50"), decimal.Decimal("0")],
        pa.decimal128(10, 2),
    ),
    "bool": pa.array([True, False, None, True]),
    "uint8": pa.array([0, 255, None, 7], pa.uint8()),
    "float32": pa.array([1.5, None, -2.0, 0.0], pa.float32()),
    "large_binary": pa.array([b"a", b"", None, b"\x00"], pa.large_binary()),
    "list": pa.array([[1], [2, 3], [], None]),
    "large_list": pa.array([[1], [2, 3], [], None], pa.large_list(pa.int64())),
    "fixed_list": pa.array([[1, 2], [3, 4], None, [5, 6]], pa.list_(pa.int32(), 2)),
    "struct": pa.array([{"a": 1, "b": "x"}, {"a": 2, "b": None}, None, {"a": 4, "b": "z"}]),
    "map": pa.array([[("a", 1)], [], None, [("b", 2)]], pa.map_(pa.string(), pa.int64())),
    "dictionary": pa.array(["x", "y", None, "x"]).dictionary_encode(),
}


@pytest.mark.parametrize("num_shards", [1, 2])
@pytest.mark.parametrize("column", sorted(TYPED_COLUMNS))
def test_column_type_round_trip(tmp_path: Path, column: str, num_shards: int) -> None:
    values = TYPED_COLUMNS[column]
    table = pa.table({"k": ["a", "b", "a", "a"], "i": [0, 1, 2, 3], column: values})
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=num_shards)
    assert ds.schema.field(column).type == values.type
    group = ds["a"].to_arrow()
    assert group.schema.field(column).type == values.type
    assert group.column(column).to_pylist() == values.take([0, 2, 3]).to_pylist()
    streamed = {g.id: g.to_arrow().column(column).to_pylist() for g in ds.iter_groups()}
    assert streamed == {"a": values.take([0, 2, 3]).to_pylist(), "b": [values[1].as_py()]}
    report = ga.verify(tmp_path / "out")
    assert report.ok, report.problems


def test_schema_metadata_kept(tmp_path: Path) -> None:
    table = make_table(10).replace_schema_metadata({"origin": "unit-test"})
    ds = ga.build(table, key="k", output=tmp_path / "out")
    assert ds.schema.metadata == {b"origin": b"unit-test"}


# -- key column naming ----------------------------------------------------------------------


def test_key_column_renaming(tmp_path: Path) -> None:
    table = make_table(200, 6)
    ds = ga.build(table, key="k", output=tmp_path / "out", key_column="client", num_shards=2)
    assert ds.schema.names == ["client", "k", "i", "text", "x"]
    assert ds.key_column == "client"
    manifest = read_manifest_json(tmp_path / "out")
    assert manifest["key"]["column"] == "client"
    for shard in shard_paths(tmp_path / "out"):
        assert pq.read_schema(shard).names[0] == "client"
    assert_contiguous(tmp_path / "out", key_column="client")
    # The index keeps its own column name.
    assert ds.index.column_names[0] == "group_id"
    some = table.column("k")[0].as_py()
    assert set(ds[some].to_arrow().column("client").to_pylist()) == {some}
    assert ga.verify(tmp_path / "out").ok


def test_key_column_named_like_a_source_column(tmp_path: Path) -> None:
    table = make_table(50)
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(table, key=ga.sql("upper(k)"), output=tmp_path / "out", key_column="text")
    assert "'text'" in str(info.value)
    assert "key_column=" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_source_column_named_group_id(tmp_path: Path) -> None:
    table = pa.table({"group_id": ["a", "b", "a"], "v": [1, 2, 3]})
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(table, key="v", output=tmp_path / "out")
    assert "'group_id'" in str(info.value)
    assert "key_column=" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    # Grouping by that very column is fine: it becomes the key column, once.
    ds = ga.build(table, key="group_id", output=tmp_path / "same")
    assert ds.schema.names == ["group_id", "v"]
    assert ds["a"].to_pylist() == [{"group_id": "a", "v": 1}, {"group_id": "a", "v": 3}]
    # Or the key column gets another name.
    ds = ga.build(table, key="v", output=tmp_path / "other", key_column="client")
    assert ds.schema.names == ["client", "group_id", "v"]
    assert ds[2].to_pylist() == [{"client": 2, "group_id": "b", "v": 2}]


# -- statistics -----------------------------------------------------------------------------


def _words_table(n: int = 400) -> pa.Table:
    rng = np.random.default_rng(4)
    vocab = ["a", "bb", "ccc", "dd  d", "\tx\ny ", "", "  ", "z"]
    text = [" ".join(rng.choice(vocab, rng.integers(0, 6)).tolist()) for _ in range(n)]
    title = [None if j % 7 == 0 else f"title {j} of things" for j in range(n)]
    return pa.table(
        {
            "user": pa.array(rng.integers(0, 25, n)),
            "text": text,
            "title": title,
            "blob": pa.array([b"a b c"] * n, pa.binary()),
        }
    )


def _python_words(table: pa.Table, columns: list[str]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    users = table.column("user").to_pylist()
    for name in columns:
        for user, value in zip(users, table.column(name).to_pylist(), strict=True):
            out[user] = out.get(user, 0) + (len(value.split()) if value is not None else 0)
    for user in users:
        out.setdefault(user, 0)
    return out


def _index_column(ds: ga.GroupedDataset, column: str) -> dict[Any, int]:
    index = ds.index
    return dict(
        zip(index.column("group_id").to_pylist(), index.column(column).to_pylist(), strict=True)
    )


def test_num_words_default_text_columns(tmp_path: Path) -> None:
    table = _words_table()
    ds = ga.build(table, key="user", output=tmp_path / "out", num_shards=2)
    assert _index_column(ds, "num_words") == _python_words(table, ["text", "title"])
    stats = read_manifest_json(tmp_path / "out")["stats"]["num_words"]
    assert stats == {"columns": ["text", "title"], "split": "bytes <= 0x20"}


def test_num_words_chosen_text_columns(tmp_path: Path) -> None:
    table = _words_table()
    ds = ga.build(table, key="user", output=tmp_path / "out", text_columns=["text"])
    assert _index_column(ds, "num_words") == _python_words(table, ["text"])
    ds = ga.build(table, key="user", output=tmp_path / "none", text_columns=[])
    assert set(_index_column(ds, "num_words").values()) == {0}


def test_default_text_columns_exclude_the_key(tmp_path: Path) -> None:
    """The docs: text_columns defaults to every string column but the key."""
    table = pa.table({"user": ["ann lee", "bob", "ann lee"], "text": ["hi there", "yo", "a b c"]})
    ds = ga.build(table, key="user", output=tmp_path / "out")
    assert read_manifest_json(tmp_path / "out")["stats"]["num_words"]["columns"] == ["text"]
    assert _index_column(ds, "num_words") == {"ann lee": 5, "bob": 1}


@pytest.mark.parametrize("bad", [["nope"], ["user"], ["blob"], ["text", "nope"]])
def test_text_columns_validation(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(_words_table(), key="user", output=tmp_path / "out", text_columns=bad)
    message = str(info.value)
    assert "are not string columns" in message
    assert "'nope'" in message or "'user'" in message or "'blob'" in message
    assert "'text'" in message and "'title'" in message  # lists the valid ones
    assert list(tmp_path.iterdir()) == []


def test_num_bytes_positive(tmp_path: Path) -> None:
    table = _words_table()
    ds = ga.build(table, key="user", output=tmp_path / "out", num_shards=3)
    sizes = _index_column(ds, "num_bytes")
    assert all(n > 0 for n in sizes.values())
    assert sum(sizes.values()) == ds.manifest.num_bytes
    # Bigger groups hold more bytes: the per-row payload is about the same.
    counts = _index_column(ds, "num_rows")
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)  # type: ignore[arg-type]
    if counts[big] > 2 * counts[small]:
        assert sizes[big] > sizes[small]


# -- a larger build: threads, many row groups, contiguity -----------------------------------


@pytest.mark.slow
def test_contiguity_large(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, g = 300_000, 20_000
    weights = 1.0 / np.arange(1, g + 1) ** 0.9
    ids = rng.choice(g, n, p=weights / weights.sum())
    table = pa.table(
        {
            "k": pa.array([f"g{j:05d}" for j in ids]),
            "i": pa.array(np.arange(n)),
            "v": pa.array(rng.integers(0, 2**60, n)),
        }
    )
    table = pa.concat_tables([table.slice(s, 50_000) for s in range(0, n, 50_000)])
    out = tmp_path / "out"
    ds = ga.build(table, key="k", output=out, num_shards=3, threads=2, row_group_bytes=256 * 1024)
    assert ds.num_rows == n
    expected = dict(zip(*np.unique(ids, return_counts=True), strict=True))
    assert ds.num_groups == len(expected) > 15_000
    report = ga.verify(out)
    assert report.ok, report.problems
    assert report.checked_rows == n
    for path in shard_paths(out):
        assert pq.ParquetFile(path).metadata.num_row_groups >= 5
    all_runs = assert_contiguous(out)
    assert {int(k[1:]): v for k, v in all_runs} == expected
    # Streaming: each group's rows in input order, every group once.
    seen = 0
    for group in ds.iter_groups(columns=["i"]):
        rows = group.to_arrow().column("i").to_numpy()
        assert len(rows) == expected[int(group.id[1:])]
        assert np.all(np.diff(rows) > 0)
        seen += 1
    assert seen == len(expected)


def test_manifest_is_valid_json_with_schema(tmp_path: Path) -> None:
    ga.build(make_table(10), key="k", output=tmp_path / "out")
    text = (tmp_path / "out" / "grouparrow.json").read_text()
    body = json.loads(text)
    assert set(body) >= {
        "format",
        "format_version",
        "num_groups",
        "num_rows",
        "num_bytes",
        "key",
        "seed",
        "schema",
        "arrow_schema",
        "shards",
        "source",
        "build",
    }
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize("sizes", [[5000], [1, 4999], [777, 1234, 2989], [100] * 50])
def test_a_shard_file_depends_on_its_rows_not_on_their_batches(
    tmp_path: Path, sizes: list[int]
) -> None:
    """The same rows in other batches (DuckDB's batches vary with its threads; a Ray task
    has one) make the same bytes: a distributed build can match a local one exactly."""
    from grouparrow._writer import ShardWriter

    table = make_table(5000, num_keys=60, seed=8).sort_by("k")
    reference = tmp_path / "one.parquet"
    writer = ShardWriter(reference, table.schema, "k", 64 * 1024)
    writer.add(table.combine_chunks().to_batches()[0])
    expected = writer.close()
    path = tmp_path / "split.parquet"
    writer = ShardWriter(path, table.schema, "k", 64 * 1024)
    start = 0
    for size in sizes:
        writer.add(table.slice(start, size).combine_chunks().to_batches()[0])
        start += size
    assert writer.close() == expected
    assert path.read_bytes() == reference.read_bytes()
    assert pq.ParquetFile(path).metadata.num_row_groups > 3
