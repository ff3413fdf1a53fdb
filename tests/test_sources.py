"""Every kind of source grouparrow reads, and the errors for the ones it cannot."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import datasets
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from conftest import group_counts, leftovers, make_table, read_manifest_json

import grouparrow as ga


def _index_counts(ds: ga.GroupedDataset) -> dict[Any, int]:
    index = ds.index
    return dict(
        zip(index.column("group_id").to_pylist(), index.column("num_rows").to_pylist(), strict=True)
    )


def _rows(ds: ga.GroupedDataset, columns: list[str]) -> list[tuple[Any, ...]]:
    out = []
    for group in ds.iter_groups():
        table = group.to_arrow()
        out.extend(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return sorted(out)


def _expected_rows(table: pa.Table, columns: list[str]) -> list[tuple[Any, ...]]:
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def _check(ds: ga.GroupedDataset, table: pa.Table) -> None:
    assert ds.num_rows == table.num_rows
    assert ds.num_groups == len(group_counts(table, "k"))
    assert _index_counts(ds) == group_counts(table, "k")
    assert _rows(ds, ["k", "i"]) == _expected_rows(table, ["k", "i"])


@pytest.fixture
def table() -> pa.Table:
    return make_table(1_000, 37, seed=3)


# -- files ----------------------------------------------------------------------------------


def test_parquet_file(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=128)
    ds = ga.build(path, key="k", output=tmp_path / "out", num_shards=3)
    _check(ds, table)
    assert ds.schema.names == ["group_id", "k", "i", "text", "x"]
    source = read_manifest_json(tmp_path / "out")["source"]
    assert source["type"] == "parquet"
    assert source["paths"] == [str(path.resolve())]


def test_parquet_file_as_str(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.pq"
    pq.write_table(table, path)
    _check(ga.build(str(path), key="k", output=str(tmp_path / "out")), table)


def test_parquet_glob(tmp_path: Path, table: pa.Table) -> None:
    parts = [table.slice(0, 300), table.slice(300, 300), table.slice(600)]
    for j, part in enumerate(parts):
        pq.write_table(part, tmp_path / f"part-{j}.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    ds = ga.build(str(tmp_path / "part-*.parquet"), key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    assert len(read_manifest_json(tmp_path / "out")["source"]["paths"]) == 3


def test_list_of_paths(tmp_path: Path, table: pa.Table) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(table.slice(0, 400), a)
    pq.write_table(table.slice(400), b)
    _check(ga.build([a, b], key="k", output=tmp_path / "out"), table)


def test_directory(tmp_path: Path, table: pa.Table) -> None:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    pq.write_table(table.slice(0, 500), folder / "a.parquet")
    pq.write_table(table.slice(500), folder / "nested" / "b.parquet")
    (folder / "README").write_text("ignored: no known suffix")
    ds = ga.build(folder, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)


def test_csv(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.csv"
    pacsv.write_csv(table.select(["k", "i", "text"]), path)
    ds = ga.build(path, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    assert ds.schema.names == ["group_id", "k", "i", "text"]
    assert read_manifest_json(tmp_path / "out")["source"]["type"] == "csv"
    # Input order is kept within a group.
    first = table.column("k")[0].as_py()
    assert ds[first].to_arrow().column("i").to_pylist() == [
        i
        for i, k in zip(table.column("i").to_pylist(), table.column("k").to_pylist(), strict=True)
        if k == first
    ]


def _write_jsonl(path: Path, table: pa.Table, opener: Any = open) -> None:
    with opener(path, "wt", encoding="utf-8") as f:
        for row in table.select(["k", "i", "text"]).to_pylist():
            f.write(json.dumps(row) + "\n")


def test_json_lines(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.jsonl"
    _write_jsonl(path, table)
    ds = ga.build(path, key="k", output=tmp_path / "out")
    _check(ds, table)
    assert read_manifest_json(tmp_path / "out")["source"]["type"] == "json"


def test_json_lines_gz(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.json.gz"
    _write_jsonl(path, table, gzip.open)
    ds = ga.build(path, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)


def test_json_lines_key_function(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.jsonl.gz"
    _write_jsonl(path, table, gzip.open)
    ds = ga.build(path, key=lambda ex: ex["k"].upper(), output=tmp_path / "out")
    assert _index_counts(ds) == {k.upper(): n for k, n in group_counts(table, "k").items()}


# -- in-memory Arrow ------------------------------------------------------------------------


def test_pyarrow_table(tmp_path: Path, table: pa.Table) -> None:
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    assert read_manifest_json(tmp_path / "out")["source"] == {
        "type": "pyarrow.Table",
        "num_rows": 1_000,
    }


def test_pyarrow_record_batch(tmp_path: Path, table: pa.Table) -> None:
    batch = table.combine_chunks().to_batches()[0]
    _check(ga.build(batch, key="k", output=tmp_path / "out"), table)


def test_record_batch_reader(tmp_path: Path, table: pa.Table) -> None:
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=70))
    ds = ga.build(reader, key="k", output=tmp_path / "out", num_shards=3)
    _check(ds, table)
    assert read_manifest_json(tmp_path / "out")["source"]["type"] == "pyarrow.RecordBatchReader"


def test_pyarrow_dataset(tmp_path: Path, table: pa.Table) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(table.slice(0, 600), folder / "a.parquet")
    pq.write_table(table.slice(600), folder / "b.parquet")
    dataset = pds.dataset(folder, format="parquet")
    ds = ga.build(dataset, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    source = read_manifest_json(tmp_path / "out")["source"]
    assert source["type"] == "pyarrow.dataset.Dataset"
    assert len(source["paths"]) == 2


def test_empty_table(tmp_path: Path) -> None:
    empty = make_table(0)
    ds = ga.build(empty, key="k", output=tmp_path / "out", num_shards=2)
    assert ds.num_rows == 0
    assert ds.num_groups == 0
    assert ds.schema.names == ["group_id", "k", "i", "text", "x"]
    assert ga.verify(tmp_path / "out").ok


# -- the Arrow C stream protocol ------------------------------------------------------------


def test_duckdb_relation(tmp_path: Path, table: pa.Table) -> None:
    con = duckdb.connect()
    con.register("t", table)
    relation = con.sql("SELECT * FROM t")
    _check(ga.build(relation, key="k", output=tmp_path / "out"), table)
    con.close()


def test_polars_dataframe(tmp_path: Path, table: pa.Table) -> None:
    """Polars exports strings as string_view through __arrow_c_stream__."""
    frame = pl.from_arrow(table)
    ds = ga.build(frame, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)


def test_string_view_columns(tmp_path: Path, table: pa.Table) -> None:
    viewed = table.set_column(2, "text", table.column("text").cast(pa.string_view()))
    ds = ga.build(viewed, key="k", output=tmp_path / "out")
    _check(ds, table)
    words = sum(len(s.split()) for s in table.column("text").to_pylist())
    assert sum(ds.index.column("num_words").to_pylist()) == words


# -- HuggingFace datasets -------------------------------------------------------------------


def test_hf_dataset(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset.from_dict(table.to_pydict())
    ds = ga.build(hf, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    source = read_manifest_json(tmp_path / "out")["source"]
    assert source["type"] == "datasets.Dataset"
    assert source["num_rows"] == 1_000


def test_hf_dataset_from_arrow_table(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset(table)
    _check(ga.build(hf, key="k", output=tmp_path / "out"), table)


def test_hf_dataset_select_honours_indices(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset.from_dict(table.to_pydict())
    picked = [999, 5, 3, 500, 3, 42, 7, 8]
    selected = hf.select(picked)
    ds = ga.build(selected, key="k", output=tmp_path / "out")
    expected = table.take(picked)
    assert ds.num_rows == len(picked)
    assert _rows(ds, ["k", "i"]) == _expected_rows(expected, ["k", "i"])
    assert _index_counts(ds) == group_counts(expected, "k")
    # Within a group, rows come in the order of the selection.
    for group in ds.iter_groups():
        want = [i for i in picked if table.column("k")[i].as_py() == group.id]
        assert group.to_arrow().column("i").to_pylist() == want


def test_hf_dataset_shuffle_honours_indices(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset.from_dict(table.to_pydict()).shuffle(seed=0)
    order = hf["i"]
    assert order != sorted(order)
    ds = ga.build(hf, key="k", output=tmp_path / "out", num_shards=2)
    _check(ds, table)
    keys = table.column("k").to_pylist()
    for group in ds.iter_groups():
        assert group.to_arrow().column("i").to_pylist() == [i for i in order if keys[i] == group.id]


def test_hf_iterable_dataset(tmp_path: Path, table: pa.Table) -> None:
    """DESIGN.md: an IterableDataset is read in batches."""
    hf = datasets.Dataset.from_dict(table.to_pydict()).to_iterable_dataset(num_shards=2)
    ds = ga.build(hf, key="k", output=tmp_path / "out")
    _check(ds, table)


def test_hf_dataset_dict_is_refused(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset.from_dict(table.to_pydict())
    both = datasets.DatasetDict({"train": hf, "test": hf.select([0, 1])})
    with pytest.raises(ga.SourceError) as info:
        ga.build(both, key="k", output=tmp_path / "out")
    message = str(info.value)
    assert "train, test" in message
    assert "dataset_dict['train']" in message
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path, "out") == []


# -- source errors --------------------------------------------------------------------------


@pytest.mark.parametrize("source", [object(), 42, {"k": [1, 2]}, b"bytes"])
def test_unsupported_object(tmp_path: Path, source: Any) -> None:
    with pytest.raises(ga.SourceError) as info:
        ga.build(source, key="k", output=tmp_path / "out")
    message = str(info.value)
    assert f"{type(source).__module__}.{type(source).__qualname__}" in message
    assert "pyarrow Table" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(ga.SourceError) as info:
        ga.build(missing, key="k", output=tmp_path / "out")
    assert "file not found" in str(info.value)
    assert str(missing) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_glob_without_match(tmp_path: Path) -> None:
    pattern = str(tmp_path / "none-*.parquet")
    with pytest.raises(ga.SourceError, match="no file matches the pattern"):
        ga.build(pattern, key="k", output=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["data.txt", "data.parquet.bak", "noext"])
def test_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("k\na\n")
    with pytest.raises(ga.SourceError) as info:
        ga.build(path, key="k", output=tmp_path / "out")
    message = str(info.value)
    assert name in message
    assert ".parquet" in message
    assert ".jsonl" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_directory_without_data_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    with pytest.raises(ga.SourceError, match="holds no Parquet, CSV or JSON-lines file"):
        ga.build(folder, key="k", output=tmp_path / "out")


def test_mixed_formats(tmp_path: Path, table: pa.Table) -> None:
    pq.write_table(table, tmp_path / "a.parquet")
    pacsv.write_csv(table, tmp_path / "b.csv")
    with pytest.raises(ga.SourceError, match=r"mixes file formats \(csv, parquet\)"):
        ga.build([tmp_path / "a.parquet", tmp_path / "b.csv"], key="k", output=tmp_path / "out")


def test_corrupt_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ga.SourceError) as info:
        ga.build(path, key="k", output=tmp_path / "out")
    assert "bad.parquet" in str(info.value)
    assert leftovers(tmp_path, "out") == []
    assert not (tmp_path / "out").exists()


def test_reserved_column_prefix(tmp_path: Path, table: pa.Table) -> None:
    bad = table.append_column("__ga_row", table.column("i"))
    with pytest.raises(ga.SourceError, match=r"'__ga_row'.*reserves; rename it"):
        ga.build(bad, key="k", output=tmp_path / "out")
    assert leftovers(tmp_path, "out") == []
    assert not (tmp_path / "out").exists()


def test_null_key_in_a_later_parquet_file_names_the_file_and_row(tmp_path: Path) -> None:
    first, second = tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"
    pq.write_table(pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}), first)
    pq.write_table(pa.table({"k": ["d", "e", "f", None], "v": [4, 5, 6, 7]}), second)
    with pytest.raises(ga.NullKeyError) as info:
        ga.build(str(tmp_path / "part-*.parquet"), key="k", output=tmp_path / "out")
    message = str(info.value)
    assert "row 3 of" in message and "part-1.parquet" in message and "v': 7" in message
    ds = ga.build([first, second], key="k", output=tmp_path / "out", on_null="drop", num_shards=2)
    assert ds.num_rows == 6 and ds.manifest.build["rows_dropped_null_key"] == 1
