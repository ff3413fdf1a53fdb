"""Input files given as URIs of an fsspec filesystem (here ``memory://``; S3 in
tests/test_remote.py): globs, directories, Parquet read by DuckDB through the registered
filesystem, JSON lines through DuckDB's reader, and clear errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table

import grouparrow as ga


@pytest.fixture
def memory() -> Iterator[str]:
    """A fresh folder of fsspec's in-memory filesystem, as a ``memory://`` URI."""
    root = f"/ga-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


def _put_parquet(uri: str, table: pa.Table, **kwargs: object) -> None:
    with fsspec.open(uri, "wb") as f:
        pq.write_table(table, f, **kwargs)


def test_a_parquet_glob_on_a_uri_builds_as_the_local_files_do(memory: str, tmp_path: Path) -> None:
    table = make_table(3_000, num_keys=40, seed=2)
    for i in range(3):
        part = table.slice(i * 1000, 1000)
        _put_parquet(f"{memory}/in/p{i}.parquet", part, row_group_size=300)
        pq.write_table(part, tmp_path / f"p{i}.parquet", row_group_size=300)
    remote = ga.build(f"{memory}/in/*.parquet", key="k", output=tmp_path / "r", num_shards=2)
    local = ga.build(str(tmp_path / "p*.parquet"), key="k", output=tmp_path / "l", num_shards=2)
    assert [s.sha256 for s in remote.manifest.shards] == [s.sha256 for s in local.manifest.shards]
    assert remote.manifest.source["paths"] == [f"{memory}/in/p{i}.parquet" for i in range(3)]


def test_a_directory_of_json_lines_on_a_uri(memory: str, tmp_path: Path) -> None:
    rows = [{"user": f"u{i % 4}", "n": i} for i in range(40)]
    with fsspec.open(f"{memory}/j/rows.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows))
    ds = ga.build(f"{memory}/j", key="user", output=tmp_path / "o")
    assert (ds.num_groups, ds.num_rows) == (4, 40)
    assert sorted(ds["u1"].to_arrow().column("n").to_pylist()) == list(range(1, 40, 4))


def test_a_null_key_in_a_remote_file_names_it(memory: str, tmp_path: Path) -> None:
    _put_parquet(f"{memory}/n.parquet", pa.table({"u": ["a", None], "x": [1, 2]}))
    with pytest.raises(ga.NullKeyError, match=r"row 1 of 'memory://.*/n\.parquet'"):
        ga.build(f"{memory}/n.parquet", key="u", output=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_bad_remote_inputs_are_named(memory: str, tmp_path: Path) -> None:
    with pytest.raises(
        ga.SourceError, match=r"no file matches the pattern 'memory://.*\*\.parquet'"
    ):
        ga.build(f"{memory}/none/*.parquet", key="u", output=tmp_path / "o")
    with pytest.raises(ga.SourceError, match="file not found"):
        ga.build(f"{memory}/missing.parquet", key="u", output=tmp_path / "o")
    pq.write_table(pa.table({"u": ["a"]}), tmp_path / "a.parquet")
    _put_parquet(f"{memory}/b.parquet", pa.table({"u": ["b"]}))
    with pytest.raises(ga.SourceError, match="mixes local paths and URIs"):
        ga.build(
            [str(tmp_path / "a.parquet"), f"{memory}/b.parquet"], key="u", output=tmp_path / "o"
        )
    with pytest.raises(ValueError, match="no filesystem for nosuch://"):
        ga.build("nosuch://x/y.parquet", key="u", output=tmp_path / "o")
    assert not (tmp_path / "o").exists()
