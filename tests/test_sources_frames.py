"""Data frames, SQL and saved HF datasets as sources (grouparrow/_frames.py, sources.py)."""

from __future__ import annotations

from pathlib import Path

import datasets
import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import group_counts, make_table

import grouparrow as ga


@pytest.fixture
def table() -> pa.Table:
    return make_table(500, num_keys=9)


def _same_groups(ds: ga.GroupedDataset, table: pa.Table) -> None:
    assert ds.num_rows == table.num_rows
    assert {g.id: g.num_rows for g in ds.iter_groups()} == group_counts(table, "k")


def test_sql_text_is_run_by_duckdb(tmp_path: Path, table: pa.Table) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    query = f"SELECT k, i, text FROM read_parquet('{path}') WHERE i % 2 = 0"
    ds = ga.build(query, key="k", output=tmp_path / "out")
    even = table.filter(pa.compute.equal(pa.compute.bit_wise_and(table["i"], 1), 0))
    _same_groups(ds, even)
    assert ds.schema.names == ["group_id", "k", "i", "text"]
    assert ds.manifest.source == {"type": "sql", "query": query}


def test_bad_sql_text_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(ga.SourceError, match="the source query failed") as info:
        ga.build("SELECT * FROM no_such_table", key="k", output=tmp_path / "out")
    assert "no_such_table" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_duckdb_relation(tmp_path: Path, table: pa.Table) -> None:
    con = duckdb.connect()
    relation = con.from_arrow(table).filter("i < 300")
    ds = ga.build(relation, key="k", output=tmp_path / "out", num_shards=2)
    _same_groups(ds, table.slice(0, 300))


def test_polars_dataframe_and_lazyframe(tmp_path: Path, table: pa.Table) -> None:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    _same_groups(ga.build(frame, key="k", output=tmp_path / "eager"), table)
    lazy = frame.lazy().filter(pl.col("i") >= 100)
    ds = ga.build(lazy, key="k", output=tmp_path / "lazy", num_shards=3)
    _same_groups(ds, table.slice(100))
    assert ds.manifest.source["type"] == "polars.LazyFrame"
    # Rows of a group keep the frame's order.
    group = ds[table["k"][150].as_py()]
    assert group.to_arrow()["i"].to_pylist() == sorted(group.to_arrow()["i"].to_pylist())


def test_empty_lazyframe_builds_an_empty_dataset(tmp_path: Path, table: pa.Table) -> None:
    lazy = pl.from_arrow(table).lazy().filter(pl.col("i") < 0)
    ds = ga.build(lazy, key="k", output=tmp_path / "out")
    assert (ds.num_groups, ds.num_rows) == (0, 0)
    assert ga.verify(ds.path).ok


def test_pandas_dataframe(tmp_path: Path, table: pa.Table) -> None:
    frame = table.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    ds = ga.build(frame, key="k", output=tmp_path / "out")
    _same_groups(ds, table)
    assert ds.manifest.source["type"] == "pandas.DataFrame"


def test_dataset_dict_with_split(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset(table)
    both = datasets.DatasetDict({"train": hf, "test": hf.select(range(50))})
    ds = ga.build(both, key="k", output=tmp_path / "out", split="test")
    _same_groups(ds, table.slice(0, 50))
    with pytest.raises(ga.SourceError, match="split='dev' is not one of them; choose one with"):
        ga.build(both, key="k", output=tmp_path / "bad", split="dev")


def test_save_to_disk_folders(tmp_path: Path, table: pa.Table) -> None:
    hf = datasets.Dataset(table)
    hf.save_to_disk(str(tmp_path / "saved"))
    _same_groups(ga.build(tmp_path / "saved", key="k", output=tmp_path / "a"), table)
    datasets.DatasetDict({"train": hf, "test": hf.select(range(10))}).save_to_disk(
        str(tmp_path / "saved_dict")
    )
    ds = ga.build(str(tmp_path / "saved_dict"), key="k", output=tmp_path / "b", split="train")
    _same_groups(ds, table)
    with pytest.raises(ga.SourceError, match="choose one with split='train'"):
        ga.build(str(tmp_path / "saved_dict"), key="k", output=tmp_path / "c")
