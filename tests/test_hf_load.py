"""``ga.hf_dataset``: ``datasets.load_dataset`` arguments for local files, never the Hub."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import data_file, make_table, read_manifest_json

import grouparrow as ga

_C4 = "c4/c4-en-train-00000-first1k.jsonl"
_SHAKESPEARE = "shakespeare/shakespeare_lines.parquet"
_HOST = ga.sql("regexp_extract(url, '://([^/:]+)', 1)")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, as the issue asks, and any attempt to open a connection fails the test."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _groups(ds: ga.GroupedDataset, columns: list[str]) -> dict[Any, list[tuple[Any, ...]]]:
    """Each group's rows (only ``columns``), in the dataset's order within the group."""
    out = {}
    for group in ds.iter_groups():
        table = group.to_arrow()
        out[group.id] = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return out


def test_json_like_the_file_itself(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, _C4)
    source = ga.hf_dataset("json", data_files=str(path))
    assert isinstance(source, datasets.IterableDataset)
    via_hf = ga.build(source, key=_HOST, output=tmp_path / "hf")
    direct = ga.build(path, key=_HOST, output=tmp_path / "direct")
    assert via_hf.num_rows == direct.num_rows == 1_000
    assert via_hf.num_groups == direct.num_groups > 100
    assert _groups(via_hf, ["url", "text"]) == _groups(direct, ["url", "text"])
    assert read_manifest_json(tmp_path / "hf")["source"] == {
        "type": "datasets.IterableDataset",
        "builder": "json",
    }
    assert ga.verify(tmp_path / "hf").ok


def test_parquet_like_the_file_itself(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, _SHAKESPEARE)
    source = ga.hf_dataset("parquet", data_files=[path])  # a list, of Path objects
    via_hf = ga.build(source, key="play_speaker", output=tmp_path / "hf", num_shards=3)
    direct = ga.build(path, key="play_speaker", output=tmp_path / "direct", num_shards=3)
    assert via_hf.num_rows == direct.num_rows
    assert via_hf.schema.names == direct.schema.names
    columns = direct.schema.names[1:]
    assert _groups(via_hf, columns) == _groups(direct, columns)


def test_csv_like_the_file_itself(tmp_path: Path) -> None:
    table = make_table(500, 23, seed=5).select(["k", "i", "text"])
    path = tmp_path / "in.csv"
    pacsv.write_csv(table, path)
    source = ga.hf_dataset("csv", data_files={"train": str(path)})
    via_hf = ga.build(source, key="k", output=tmp_path / "hf", num_shards=2)
    direct = ga.build(path, key="k", output=tmp_path / "direct", num_shards=2)
    assert via_hf.num_rows == 500 and via_hf.num_groups == direct.num_groups == 23
    assert _groups(via_hf, ["k", "i", "text"]) == _groups(direct, ["k", "i", "text"])


def test_glob_and_not_streaming(tmp_path: Path) -> None:
    """``streaming=False`` prepares datasets' Arrow cache (here under ``cache_dir``) and
    gives a ``Dataset``; the groups are the same."""
    table = make_table(300, 11, seed=2).select(["k", "i"])
    for j in range(3):
        pacsv.write_csv(table.slice(100 * j, 100), tmp_path / f"part-{j}.csv")
    pattern = str(tmp_path / "part-*.csv")
    cached = ga.hf_dataset("csv", data_files=pattern, streaming=False, cache_dir=tmp_path / "c")
    assert isinstance(cached, datasets.Dataset)
    streamed = ga.hf_dataset("csv", data_files=pattern)
    a = ga.build(cached, key="k", output=tmp_path / "a")
    b = ga.build(streamed, key="k", output=tmp_path / "b")
    direct = ga.build(pattern, key="k", output=tmp_path / "direct")
    assert _groups(a, ["k", "i"]) == _groups(b, ["k", "i"]) == _groups(direct, ["k", "i"])
    assert a.num_rows == 300
    assert read_manifest_json(tmp_path / "a")["source"]["builder"] == "csv"


def test_every_split_then_build_split(tmp_path: Path) -> None:
    table = pa.table({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    pacsv.write_csv(table, tmp_path / "train.csv")
    pacsv.write_csv(table.slice(0, 1), tmp_path / "test.csv")
    files = {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    splits = ga.hf_dataset("csv", data_files=files, split=None)
    ds = ga.build(splits, key="k", output=tmp_path / "out", split="test")
    assert ds.num_rows == 1 and list(ds.group_ids()) == ["a"]


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ga.SourceError) as info:
        ga.hf_dataset("json", data_files=str(missing))
    message = str(info.value)
    assert "file not found" in message and str(missing) in message


def test_glob_without_match_is_a_source_error(tmp_path: Path) -> None:
    pattern = str(tmp_path / "none-*.jsonl")
    with pytest.raises(ga.SourceError) as info:
        ga.hf_dataset("json", data_files=pattern)
    assert pattern in str(info.value)


def test_bad_split_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("k\nx\n")
    with pytest.raises(ga.SourceError) as info:
        ga.hf_dataset("csv", data_files=str(tmp_path / "a.csv"), split="validation")
    message = str(info.value)
    assert "validation" in message and "a.csv" in message


@pytest.mark.parametrize("name", ["allenai/c4", "c4", "not-a-builder"])
def test_hub_names_are_refused(name: str) -> None:
    with pytest.raises(ga.SourceError) as info:
        ga.hf_dataset(name, data_files="x.jsonl")
    message = str(info.value)
    assert "local files only" in message and repr(name) in message
    assert "parquet" in message and "json" in message and "csv" in message


@pytest.mark.parametrize(
    "data_files",
    [
        "hf://datasets/allenai/c4/en/c4-train.00000-of-01024.json.gz",
        ["local.jsonl", "https://example.org/x.jsonl"],
        {"train": ["s3://bucket/x.jsonl"]},
    ],
)
def test_urls_are_refused(data_files: Any) -> None:
    with pytest.raises(ga.SourceError, match=r"local files only; '.*://.*' is a URL"):
        ga.hf_dataset("json", data_files=data_files)


def test_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    pacsv.write_csv(pa.table({"k": ["a", "b", "b"]}), folder / "train.csv")
    ds = ga.build(ga.hf_dataset(str(folder)), key="k", output=tmp_path / "out")
    index = ds.index.to_pydict()
    assert dict(zip(index["group_id"], index["num_rows"], strict=True)) == {"a": 1, "b": 2}
