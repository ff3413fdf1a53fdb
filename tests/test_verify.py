"""verify(): a fresh build is sound; every kind of damage is reported, naming the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table, shard_paths

import grouparrow as ga


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    ga.build(make_table(2_000, 50, chunks=2), key="k", output=path, num_shards=3)
    return path


def _assert_named(report: ga.VerifyReport, path: Path) -> None:
    """Not ok; some problem names ``path``; every problem names a file of the dataset."""
    assert not report.ok
    assert report.problems
    assert any(str(path) in problem for problem in report.problems), report.problems
    root = Path(report.path)
    for problem in report.problems:
        assert str(root) in problem, problem
        assert any(name in problem for name in ("grouparrow.json", "index.parquet", "shard-")), (
            problem
        )
    assert "problem(s)" in str(report)


def _edit_manifest(path: Path, edit: Any) -> None:
    manifest = path / "grouparrow.json"
    body = json.loads(manifest.read_text())
    edit(body)
    manifest.write_text(json.dumps(body, indent=2))


def test_fresh_build_is_ok(out: Path) -> None:
    report = ga.verify(out)
    assert report.ok
    assert report.problems == []
    assert report.checked_shards == 3
    assert report.checked_rows == 2_000
    assert report.checked_groups == 50
    assert str(report).endswith(": OK")
    assert ga.verify(out, checksums=False).ok


def test_flipped_byte(out: Path) -> None:
    shard = shard_paths(out)[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = ga.verify(out)
    _assert_named(report, shard)
    assert any(str(shard) in p and "SHA-256" in p for p in report.problems)
    assert report.checked_shards == 2


def test_truncated_shard(out: Path) -> None:
    shard = shard_paths(out)[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    for checksums in (True, False):
        report = ga.verify(out, checksums=checksums)
        _assert_named(report, shard)
        assert any(
            str(shard) in p and f"{len(data) // 2} bytes" in p and str(len(data)) in p
            for p in report.problems
        )


def test_deleted_shard(out: Path) -> None:
    shard = shard_paths(out)[2]
    shard.unlink()
    report = ga.verify(out)
    _assert_named(report, shard)
    assert f"{shard}: missing" in report.problems


def test_deleted_index(out: Path) -> None:
    (out / "index.parquet").unlink()
    report = ga.verify(out)
    _assert_named(report, out / "index.parquet")
    assert f"{out / 'index.parquet'}: missing" in report.problems


def test_garbage_index(out: Path) -> None:
    (out / "index.parquet").write_bytes(b"not parquet at all")
    report = ga.verify(out)
    _assert_named(report, out / "index.parquet")
    assert any("index.parquet: cannot be read" in p for p in report.problems)


def test_index_with_wrong_offsets(out: Path) -> None:
    index = pq.read_table(out / "index.parquet")
    offsets = index.column("offset").to_pylist()
    offsets[1] += 1
    index = index.set_column(2, index.schema.field("offset"), pa.array(offsets, pa.int64()))
    pq.write_table(index, out / "index.parquet")
    report = ga.verify(out)
    shard = shard_paths(out)[index.column("shard")[1].as_py()]
    _assert_named(report, shard)
    assert f"{shard}: group offsets differ from index.parquet" in report.problems


def test_edited_num_groups(out: Path) -> None:
    _edit_manifest(out, lambda body: body.update(num_groups=body["num_groups"] + 1))
    report = ga.verify(out)
    _assert_named(report, out / "index.parquet")
    assert any("index.parquet" in p and "51 groups" in p for p in report.problems)


def test_edited_num_rows(out: Path) -> None:
    _edit_manifest(out, lambda body: body.update(num_rows=body["num_rows"] + 5))
    report = ga.verify(out)
    _assert_named(report, out / "grouparrow.json")
    assert any(str(out / "grouparrow.json") in p and "do not add up" in p for p in report.problems)


def test_edited_shard_row_count(out: Path) -> None:
    def edit(body: dict[str, Any]) -> None:
        body["shards"][1]["num_rows"] += 1

    _edit_manifest(out, edit)
    report = ga.verify(out)
    shard = shard_paths(out)[1]
    _assert_named(report, shard)
    assert any(str(shard) in p and "the manifest says" in p for p in report.problems)


def test_edited_shard_group_count(out: Path) -> None:
    def edit(body: dict[str, Any]) -> None:
        body["shards"][0]["num_groups"] += 1
        body["shards"][1]["num_groups"] -= 1

    _edit_manifest(out, edit)
    report = ga.verify(out)
    _assert_named(report, out / "index.parquet")


def test_edited_checksum(out: Path) -> None:
    def edit(body: dict[str, Any]) -> None:
        body["shards"][0]["sha256"] = "0" * 64

    _edit_manifest(out, edit)
    report = ga.verify(out)
    shard = shard_paths(out)[0]
    _assert_named(report, shard)
    assert ga.verify(out, checksums=False).ok


def test_missing_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    report = ga.verify(folder)
    assert not report.ok
    assert any("grouparrow.json" in p and str(folder) in p for p in report.problems)
    report = ga.verify(tmp_path / "nowhere")
    assert not report.ok
    assert str(tmp_path / "nowhere") in report.problems[0]


def test_unknown_format_version(out: Path) -> None:
    _edit_manifest(out, lambda body: body.update(format_version=99))
    report = ga.verify(out)
    assert not report.ok
    assert "format_version 99" in report.problems[0]
    assert str(out / "grouparrow.json") in report.problems[0]


def test_non_contiguous_group(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ga.build(make_table(300, 4), key="k", output=out, num_shards=1)
    shard = shard_paths(out)[0]
    table = pq.read_table(shard)
    # Move the first row to the end: its group is now split in two runs.
    reordered = table.slice(1).to_batches() + table.slice(0, 1).to_batches()
    pq.write_table(pa.Table.from_batches(reordered, schema=table.schema), shard)
    data = shard.read_bytes()

    def edit(body: dict[str, Any]) -> None:
        body["shards"][0]["file_bytes"] = len(data)
        body["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()

    _edit_manifest(out, edit)
    report = ga.verify(out)
    assert not report.ok
    assert any(str(shard) in p and "not contiguous" in p for p in report.problems)
