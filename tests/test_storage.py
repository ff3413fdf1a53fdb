"""Storage (local directories and fsspec URIs), manifest path validation, and datasets on a
filesystem that is not the local disk (fsspec's ``memory://``: no server needed)."""

from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import make_table

import grouparrow as ga
from grouparrow._commit import BUILD_PREFIX
from grouparrow.format import MANIFEST, read_manifest
from grouparrow.storage import Storage

pytest.importorskip("fsspec")


def _memory() -> str:
    return f"memory://ga-test-{uuid.uuid4().hex[:12]}"


def _groups(ds: ga.GroupedDataset) -> list[tuple[Any, list[dict[str, Any]]]]:
    return [(g.id, g.to_pylist()) for g in ds.iter_groups()]


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return Storage.at(tmp_path / "s" if request.param == "local" else _memory())


# -- Storage --------------------------------------------------------------------------------
def test_storage_files(storage: Storage, tmp_path: Path) -> None:
    assert storage.entries() == []
    assert storage.list() == []
    storage.write_bytes("a/b.txt", b"hello")
    storage.write_bytes("c.txt", b"0123456789")
    assert storage.read_bytes("a/b.txt") == b"hello"
    assert storage.exists("a/b.txt") and storage.is_file("a/b.txt")
    assert storage.is_dir("a") and not storage.is_file("a")
    assert not storage.exists("nope.txt")
    assert storage.size("c.txt") == 10
    assert storage.entries() == ["a", "c.txt"]
    assert storage.list() == ["a/b.txt", "c.txt"]
    assert storage.sha256("c.txt") == hashlib.sha256(b"0123456789").hexdigest()
    with storage.open_ranges("c.txt") as f:
        f.seek(3)
        assert f.read(4) == b"3456"
    with storage.open_ranges("c.txt") as f:
        assert f.read() == b"0123456789"

    # An exclusive write never replaces a file.
    with pytest.raises(FileExistsError):
        storage.write_bytes("c.txt", b"other", exclusive=True)
    assert storage.read_bytes("c.txt") == b"0123456789"
    storage.write_bytes("new.txt", b"x", exclusive=True)
    assert storage.read_bytes("new.txt") == b"x"
    if storage.local:
        assert sorted(p.name for p in storage.root_path.iterdir()) == ["a", "c.txt", "new.txt"]

    local = tmp_path / "up"
    (local / "d").mkdir(parents=True)
    (local / "d" / "1.bin").write_bytes(b"one")
    (local / "2.bin").write_bytes(b"two")
    storage.put_files([(local / "d" / "1.bin", "u/d/1.bin"), (local / "2.bin", "u/2.bin")])
    assert storage.list("u") == ["u/2.bin", "u/d/1.bin"]
    assert storage.read_bytes("u/d/1.bin") == b"one"
    storage.get("u/2.bin", tmp_path / "down" / "2.bin")
    assert (tmp_path / "down" / "2.bin").read_bytes() == b"two"

    storage.delete("u")
    storage.delete("c.txt")
    storage.delete("missing")  # nothing there: no error
    assert storage.list() == ["a/b.txt", "new.txt"]


def test_storage_names(tmp_path: Path) -> None:
    local = Storage.at(tmp_path / "ds")
    assert local.local and local.root_path == tmp_path / "ds"
    assert local.url("data/x.parquet") == f"{tmp_path}/ds/data/x.parquet"
    assert Storage.at(f"file://{tmp_path}/ds") == local
    uri = _memory()
    remote = Storage.at(uri)
    assert not remote.local
    assert remote.uri == uri
    assert remote.url("index.parquet") == f"{uri}/index.parquet"
    assert remote.child("data").url("x") == f"{uri}/data/x"
    with pytest.raises(ValueError, match="not on the local disk"):
        _ = remote.root_path
    assert pickle.loads(pickle.dumps(remote)) == remote


def test_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no filesystem for nosuchproto://"):
        Storage.at("nosuchproto://bucket/ds")
    with pytest.raises(ValueError, match=r"storage_options were given, but .* is a local path"):
        Storage.at(tmp_path / "ds", {"anon": True})
    with pytest.raises(ValueError, match=r"no filesystem for nosuchproto://"):
        ga.open("nosuchproto://bucket/ds")
    with pytest.raises(ValueError, match="is a local path"):
        ga.open(tmp_path, storage_options={"key": "k"})


# -- manifest paths -------------------------------------------------------------------------
@pytest.fixture
def local_ds(tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    ga.build(make_table(300, 9), key="k", output=out, num_shards=2)
    return out


def _edit(path: Path, edit: Any) -> None:
    body = json.loads((path / MANIFEST).read_text())
    edit(body)
    (path / MANIFEST).write_text(json.dumps(body))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("../x", "a '..' part"),
        ("/etc/passwd", "an absolute path"),
        ("data/../../x.parquet", "a '..' part"),
        ("./index.parquet", "a '.' part"),
        ("data//x.parquet", "an empty part"),
        ("", "not a non-empty string"),
        ("data\\x.parquet", "contains"),
        ("C:/x.parquet", "contains ':'"),
        ("data/*.parquet", "contains '*'"),
    ],
)
def test_manifest_paths_are_checked(local_ds: Path, bad: str, reason: str) -> None:
    def bad_index(body: dict[str, Any]) -> None:
        body["index"] = bad

    _edit(local_ds, bad_index)
    with pytest.raises(ga.FormatError) as info:
        ga.open(local_ds)
    message = str(info.value)
    assert str(local_ds / MANIFEST) in message
    assert '"index"' in message and repr(bad) in message and reason in message

    def bad_shard(body: dict[str, Any]) -> None:
        body["index"] = "index.parquet"
        body["shards"][1]["file"] = bad

    _edit(local_ds, bad_shard)
    with pytest.raises(ga.FormatError, match=r'"shards"\[1\]\["file"\]') as info:
        read_manifest(local_ds)
    assert repr(bad) in str(info.value)
    report = ga.verify(local_ds)  # reported, not raised
    assert not report.ok and '"shards"[1]["file"]' in report.problems[0]


def test_manifest_index_field(local_ds: Path) -> None:
    body = json.loads((local_ds / MANIFEST).read_text())
    assert body["index"] == "index.parquet"
    ds = ga.open(local_ds)
    expected = _groups(ds)

    # A manifest of before the field (no "index", nor the later checksums) reads
    # index.parquet.
    def old_style(b: dict[str, Any]) -> None:
        for field in ("index", "manifest_sha256", "index_info"):
            b.pop(field)

    _edit(local_ds, old_style)
    assert read_manifest(local_ds).index == "index.parquet"
    assert _groups(ga.open(local_ds)) == expected

    # The index is wherever the manifest says.
    (local_ds / "index.parquet").rename(local_ds / "data" / "idx.parquet")

    def moved(b: dict[str, Any]) -> None:
        b["index"] = "data/idx.parquet"

    _edit(local_ds, moved)
    moved_ds = ga.open(local_ds)
    assert _groups(moved_ds) == expected
    assert moved_ds.sql("SELECT count(*) FROM groups").fetchall() == [(9,)]
    assert ga.verify(local_ds).ok


# -- a dataset on memory:// -----------------------------------------------------------------
def test_build_and_read_on_memory(tmp_path: Path) -> None:
    table = make_table(800, 30, seed=2)
    local = ga.build(table, key="k", output=tmp_path / "local", num_shards=3)
    uri = _memory()
    ds = ga.build(table, key="k", output=uri, num_shards=3)
    assert ds.uri == uri and repr(ds).startswith(f"GroupedDataset({uri!r}")
    with pytest.raises(ga.GroupArrowError, match=r"not on the local disk.*ds\.uri"):
        _ = ds.path
    assert _groups(ds) == _groups(local)
    assert _groups(ga.open(uri)) == _groups(local)

    # The build's files are under one build prefix, which the manifest names.
    files = Storage.at(uri).list()
    prefix = ds.manifest.index.split("/")[0]
    assert BUILD_PREFIX.fullmatch(prefix)
    assert ds.manifest.index == f"{prefix}/index.parquet"
    assert files == sorted([MANIFEST, ds.manifest.index, *(s.file for s in ds.manifest.shards)])
    assert all(s.file.startswith(f"{prefix}/data/shard-") for s in ds.manifest.shards)

    query = "SELECT group_id, count(*) AS n, sum(i) AS s FROM examples GROUP BY 1 ORDER BY 1"
    assert ds.sql(query).fetchall() == local.sql(query).fetchall()
    assert ds.sql("SELECT sum(num_rows) FROM groups").fetchall() == [(800,)]
    assert ga.verify(uri).ok
    assert str(ga.verify(uri)).startswith(f"{uri}: 3 shards")

    copy = pickle.loads(pickle.dumps(ds))  # as DataLoader workers receive it
    assert copy["user-4"].to_pylist() == local["user-4"].to_pylist()
    assert ga.stats(uri).sort("group_id").rows() == local.stats().sort("group_id").rows()


def test_compute_stats_on_memory(tmp_path: Path) -> None:
    table = make_table(500, 12, seed=5)
    table = table.append_column("label", pa.array([i % 3 for i in range(500)]))
    local = ga.build(table, key="k", output=tmp_path / "local", num_shards=2)
    uri = _memory()
    ds = ga.build(table, key="k", output=uri, num_shards=2)
    old_index = ds.manifest.index
    counted = ds.compute_stats(label_column="label")
    new_index = counted.manifest.index
    prefix = old_index.split("/")[0]
    assert new_index != old_index and new_index.startswith(f"{prefix}/index-")
    assert not Storage.at(uri).exists(old_index)  # the replaced index is deleted
    assert counted.manifest.label_column == "label"
    expected = local.compute_stats(label_column="label").label_counts()
    assert counted.label_counts().rows() == expected.rows()
    assert ga.open(uri).label_counts().rows() == expected.rows()
    assert ga.verify(uri).ok

    # A dataset whose manifest changed since it was opened is not overwritten.
    ga.build(table, key="k", output=uri, num_shards=2, mode="overwrite")
    with pytest.raises(ga.GroupArrowError, match="changed since it was opened"):
        counted.compute_stats(label_column="label")
    assert ga.open(uri).manifest.label_column is None
