"""Input files whose schemas differ (refused, or unified on request), sources grouparrow
cannot read, and empty inputs of every kind."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import leftovers, read_manifest_json

import grouparrow as ga
from grouparrow.cli import main
from grouparrow.format import read_manifest


def _contents(ds: ga.GroupedDataset) -> dict[Any, list[dict[str, Any]]]:
    """Every group's rows (without the key column), in the dataset's order within a group."""
    out = {}
    for group in ds.iter_groups():
        rows = group.to_arrow().drop_columns([ds.key_column]).to_pylist()
        out[group.id] = rows
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path, "out") == []


# -- Parquet files whose schemas differ -----------------------------------------------------


@pytest.fixture
def first(tmp_path: Path) -> Path:
    path = tmp_path / "a.parquet"
    x = pa.array([1, 2, 3], pa.int32())
    pq.write_table(pa.table({"k": ["u", "v", "u"], "x": x}), path)
    return path


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (
            pa.table({"k": ["w"], "x": pa.array([3.5])}),
            "column 'x' is int32 in '{a}' but double in '{b}'",
        ),
        (
            pa.table({"k": ["w"], "x": pa.array([2**40])}),
            "column 'x' is int32 in '{a}' but int64 in '{b}'",
        ),
        (pa.table({"k": ["w"]}), "column 'x' of '{a}' is missing in '{b}'"),
        (
            pa.table({"k": ["w"], "x": pa.array([4], pa.int32()), "y": ["new"]}),
            "column 'y' of '{b}' is missing in '{a}'",
        ),
        (
            pa.table({"k": ["w"], "x": pa.array([[4]])}),
            "column 'x' is int32 in '{a}' but list<int64> in '{b}'",
        ),
    ],
    ids=["double", "int64", "missing", "extra", "list"],
)
def test_parquet_schema_mismatch_is_refused(
    tmp_path: Path, first: Path, other: pa.Table, expected: str
) -> None:
    """Before: a double was rounded into int32, an extra column silently dropped, a missing
    one failed deep in the build. Now: refused up front, naming both files and the column."""
    second = tmp_path / "b.parquet"
    pq.write_table(other, second)
    with pytest.raises(ga.SourceError) as info:
        ga.build([first, second], key="k", output=tmp_path / "out")
    message = str(info.value)
    assert "Parquet input files have different schemas" in message
    assert expected.format(a=first, b=second) in message
    assert "unify_schemas=True" in message and "--unify-schemas" in message
    _nothing_written(tmp_path)


def test_parquet_mismatch_counts_the_files_that_differ(tmp_path: Path, first: Path) -> None:
    same = pa.table({"k": ["w"], "x": pa.array([9], pa.int32())})
    pq.write_table(same, tmp_path / "b.parquet")
    pq.write_table(pa.table({"k": ["w"]}), tmp_path / "c.parquet")
    pq.write_table(pa.table({"k": ["w"], "x": pa.array(["9"])}), tmp_path / "d.parquet")
    with pytest.raises(ga.SourceError) as info:
        ga.build(str(tmp_path / "*.parquet"), key="k", output=tmp_path / "out")
    message = str(info.value)
    assert f"column 'x' of '{first}' is missing in '{tmp_path / 'c.parquet'}'" in message
    assert f"(2 of the 4 files differ from '{first}')" in message


def test_parquet_unify_schemas(tmp_path: Path, first: Path) -> None:
    """Missing columns are null, a column only in a later file is kept, int32 + double is
    double; the values are exact and keep their input order within a group."""
    second, third = tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(pa.table({"k": ["w", "u"], "x": [3.5, 4.25], "y": ["p", "q"]}), second)
    pq.write_table(pa.table({"y": ["r"], "k": ["v"]}), third)
    ds = ga.build([first, second, third], key="k", output=tmp_path / "out", unify_schemas=True)
    assert ds.schema.names == ["group_id", "k", "x", "y"]
    assert ds.schema.field("x").type == pa.float64()
    assert ds.schema.field("y").type == pa.string()
    assert _contents(ds) == {
        "u": [
            {"k": "u", "x": 1.0, "y": None},
            {"k": "u", "x": 3.0, "y": None},
            {"k": "u", "x": 4.25, "y": "q"},
        ],
        "v": [{"k": "v", "x": 2.0, "y": None}, {"k": "v", "x": None, "y": "r"}],
        "w": [{"k": "w", "x": 3.5, "y": "p"}],
    }
    source = read_manifest_json(tmp_path / "out")["source"]
    assert source["union_by_name"] is True
    assert source["widened_columns"] == {"x": "double"}
    assert ga.verify(tmp_path / "out").ok


def test_parquet_unify_widening_rules(tmp_path: Path) -> None:
    """What DuckDB's union_by_name does with differing types (documented in build())."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(
        pa.table(
            {
                "k": ["a"],
                "n": pa.array([5], pa.int64()),
                "s": pa.array([{"p": 1}]),
                "l": pa.array([[1]], pa.list_(pa.int32())),
            }
        ),
        a,
    )
    pq.write_table(
        pa.table(
            {
                "k": ["b"],
                "n": ["five"],
                "s": pa.array([{"q": "x"}]),
                "l": pa.array([[2**40]], pa.list_(pa.int64())),
            }
        ),
        b,
    )
    ds = ga.build([a, b], key="k", output=tmp_path / "out", unify_schemas=True)
    # A number and a string: string. Structs: their fields merged. Lists: their items widened.
    assert ds["a"].to_pylist()[0] == {
        "group_id": "a",
        "k": "a",
        "n": "5",
        "s": {"p": 1, "q": None},
        "l": [1],
    }
    assert ds["b"].to_pylist()[0]["n"] == "five"
    assert ds["b"].to_pylist()[0]["s"] == {"p": None, "q": "x"}
    assert ds["b"].to_pylist()[0]["l"] == [2**40]


@pytest.mark.parametrize(
    ("x_a", "x_b", "shown"),
    [
        (pa.array([1]), pa.array([[1]]), "int64 in '{a}' but list<int64> in '{b}'"),
        (pa.array([{"p": 1}]), pa.array(["s"]), "struct<p: int64> in '{a}' but string in '{b}'"),
        (
            pa.array([{"p": 1}]),
            pa.array([{"p": [1]}]),
            "struct<p: int64> in '{a}' but struct<p: list<int64>> in '{b}'",
        ),
    ],
    ids=["scalar-list", "struct-scalar", "nested"],
)
def test_unify_refuses_types_duckdb_cannot_unify(
    tmp_path: Path, x_a: pa.Array, x_b: pa.Array, shown: str
) -> None:
    """DuckDB would pick one of the two and fail (or parse strings as lists) mid-build."""
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": ["a"], "x": x_a}), a)
    pq.write_table(pa.table({"k": ["b"], "x": x_b}), b)
    with pytest.raises(ga.SourceError) as info:
        ga.build([a, b], key="k", output=tmp_path / "out", unify_schemas=True)
    message = str(info.value)
    assert "cannot unify the schemas" in message
    assert f"column 'x' is {shown.format(a=a, b=b)}" in message
    _nothing_written(tmp_path)


_TZ_SCRIPT = """
import datetime, sys, pyarrow as pa, pyarrow.parquet as pq, grouparrow as ga
folder = sys.argv[1]
t0 = datetime.datetime(2020, 1, 1, 12, tzinfo=datetime.timezone.utc)
for name, kind in [("a", pa.timestamp("ms", tz="UTC")), ("b", pa.timestamp("us", tz="Asia/Tokyo"))]:
    pq.write_table(pa.table({"k": [name], "t": pa.array([t0], kind)}), f"{folder}/{name}.parquet")
ds = ga.build(f"{folder}/*.parquet", key="k", output=f"{folder}/out", unify_schemas=True)
values = {g.to_arrow().column("t")[0].value for g in ds.iter_groups()}
print(ds.schema.field("t").type, sorted(values))
"""


def test_unified_time_zones_do_not_depend_on_the_machine(tmp_path: Path) -> None:
    """DuckDB gives a widened timestamp-with-time-zone column the machine's time zone; the
    build pins it to UTC (or the files' common zone), keeping the instants."""
    env = {**os.environ, "TZ": "America/New_York"}
    result = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    micros = 1_577_880_000_000_000  # 2020-01-01T12:00:00Z
    assert result.stdout.strip() == f"timestamp[us, tz=UTC] [{micros}]"


def test_unify_refuses_naive_and_zoned_timestamps(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    moment = datetime.datetime(2020, 1, 1)
    pq.write_table(pa.table({"k": ["a"], "t": pa.array([moment], pa.timestamp("us"))}), a)
    zoned = pa.array([moment], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"k": ["b"], "t": zoned}), b)
    with pytest.raises(ga.SourceError) as info:
        ga.build([a, b], key="k", output=tmp_path / "out", unify_schemas=True)
    message = str(info.value)
    assert f"column 't' is timestamp[us] in '{a}' but timestamp[us, tz=UTC] in '{b}'" in message
    assert "in this machine's time zone" in message
    _nothing_written(tmp_path)


def test_differences_that_do_not_count(tmp_path: Path) -> None:
    """Nullability, schema and field metadata, column order, string vs large_string and
    dictionary-encoded vs plain columns: no error, no unification needed."""
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    schema_a = pa.schema(
        [pa.field("k", pa.string(), nullable=False), pa.field("x", pa.int64())],
        metadata={"origin": "a"},
    )
    pq.write_table(pa.table({"k": ["u", "v"], "x": [1, 2]}, schema=schema_a), a)
    schema_b = pa.schema(
        [
            pa.field("x", pa.int64(), nullable=False, metadata={"unit": "m"}),
            pa.field("k", pa.large_string()),
        ],
        metadata={"origin": "b"},
    )
    pq.write_table(pa.table({"x": [3], "k": ["u"]}, schema=schema_b), b)
    pq.write_table(pa.table({"k": pa.array(["v", "v"]).dictionary_encode(), "x": [4, 5]}), c)
    ds = ga.build([a, b, c], key="k", output=tmp_path / "out")
    assert ds.schema.names == ["group_id", "k", "x"]
    assert _contents(ds) == {
        "u": [{"k": "u", "x": 1}, {"k": "u", "x": 3}],
        "v": [{"k": "v", "x": 2}, {"k": "v", "x": 4}, {"k": "v", "x": 5}],
    }
    assert "union_by_name" not in read_manifest_json(tmp_path / "out")["source"]


def test_unify_schemas_with_equal_schemas_changes_nothing(tmp_path: Path, first: Path) -> None:
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": ["w"], "x": pa.array([7], pa.int32())}), second)
    plain = ga.build([first, second], key="k", output=tmp_path / "plain")
    unified = ga.build([first, second], key="k", output=tmp_path / "out", unify_schemas=True)
    assert _contents(unified) == _contents(plain)
    assert unified.schema == plain.schema
    assert (
        read_manifest_json(tmp_path / "out")["source"]
        == read_manifest_json(tmp_path / "plain")["source"]
    )


def test_unified_rows_keep_their_file_and_row_in_messages(tmp_path: Path, first: Path) -> None:
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": ["w", None], "y": [1, 2]}), second)
    with pytest.raises(ga.NullKeyError) as info:
        ga.build([first, second], key="k", output=tmp_path / "out", unify_schemas=True)
    assert f"row 1 of '{second}'" in str(info.value)
    _nothing_written(tmp_path)


def test_unified_key_function_sees_unified_columns(tmp_path: Path, first: Path) -> None:
    """The key function is probed on, then applied to, rows of the unified schema."""
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": ["w"], "y": ["extra"]}), second)
    ds = ga.build(
        [first, second],
        key=lambda ex: f"{ex['k']}/{ex['y']}",
        output=tmp_path / "out",
        unify_schemas=True,
    )
    assert sorted(ds.group_ids()) == ["u/None", "v/None", "w/extra"]


def test_cli_unify_schemas(tmp_path: Path, first: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"k": ["w"], "x": [0.5]}), second)
    args = ["build", str(first), str(second), "--key", "k", "-o", str(tmp_path / "out"), "-q"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "different schemas" in error and "--unify-schemas" in error
    assert main([*args, "--unify-schemas"]) == 0
    assert ga.open(tmp_path / "out")["w"].to_pylist()[0]["x"] == 0.5


# -- CSV and JSON-lines files whose schemas differ ------------------------------------------


def test_csv_column_names_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("k,x\nu,1\nv,2\n")
    b.write_text("k,x,y\nu,3,9\n")
    with pytest.raises(ga.SourceError) as info:
        ga.build([a, b], key="k", output=tmp_path / "out")
    message = str(info.value)
    assert "CSV input files have different schemas" in message
    assert f"column 'y' of '{b}' is missing in '{a}'" in message
    _nothing_written(tmp_path)
    ds = ga.build([a, b], key="k", output=tmp_path / "out", unify_schemas=True)
    assert _contents(ds) == {
        "u": [{"k": "u", "x": 1, "y": None}, {"k": "u", "x": 3, "y": 9}],
        "v": [{"k": "v", "x": 2, "y": None}],
    }


def test_csv_sniffed_types_differ_are_widened(tmp_path: Path) -> None:
    """Sniffed types are guesses: no opt-in needed; every file's guess counts."""
    files = []
    for i in range(12):  # more than DuckDB sniffs by default (10)
        path = tmp_path / f"part-{i:02d}.csv"
        path.write_text("k,x\n" + ("u,2.5\n" if i == 11 else f"u,{i}\n"))
        files.append(path)
    ds = ga.build(str(tmp_path / "part-*.csv"), key="k", output=tmp_path / "out")
    assert ds.schema.field("x").type == pa.float64()
    assert [r["x"] for r in _contents(ds)["u"]] == [*range(11), 2.5]


def test_json_keys_differ(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", [{"k": "u", "x": 1}])
    b = _write_jsonl(tmp_path / "b.jsonl", [{"k": "v"}])
    with pytest.raises(ga.SourceError) as info:
        ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out")
    message = str(info.value)
    assert "JSON-lines input files have different schemas" in message
    assert f"column 'x' of '{a}' is missing in '{b}'" in message
    ds = ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out", unify_schemas=True)
    assert _contents(ds) == {"u": [{"k": "u", "x": 1}], "v": [{"k": "v", "x": None}]}


def test_json_many_files_a_late_one_differs(tmp_path: Path) -> None:
    """DuckDB samples the first 32 files: before, a 3.5 in the 40th file was read as 4 and a
    key only there was dropped without a word."""
    for i in range(39):
        _write_jsonl(tmp_path / f"part-{i:02d}.jsonl", [{"k": f"g{i % 3}", "x": i}])
    _write_jsonl(tmp_path / "part-39.jsonl", [{"k": "g0", "x": 3.5}])
    ds = ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out")
    assert ds.schema.field("x").type == pa.float64()
    assert [r["x"] for r in _contents(ds)["g0"]][-1] == 3.5
    assert ds.num_rows == 40

    _write_jsonl(tmp_path / "part-39.jsonl", [{"k": "g0", "x": 39, "extra": "E"}])
    with pytest.raises(ga.SourceError, match=r"column 'extra' of '.*part-39.jsonl' is missing"):
        ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out2")
    ds = ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out2", unify_schemas=True)
    assert [r["extra"] for r in _contents(ds)["g0"]] == [None] * 13 + ["E"]


# -- sources that cannot be read ------------------------------------------------------------


def _rows() -> Iterator[dict[str, Any]]:
    yield {"k": "a"}


@pytest.mark.parametrize(
    "source",
    [_rows(), [{"k": "a"}], {"k": ["a"]}, 3.5, None],
    ids=["generator", "list-of-dicts", "dict", "float", "none"],
)
def test_unsupported_source_lists_what_is_accepted(tmp_path: Path, source: Any) -> None:
    with pytest.raises(ga.SourceError) as info:
        ga.build(source, key="k", output=tmp_path / "out")
    message = str(info.value)
    assert f"cannot read a source of type {type(source).__module__}." in message
    for accepted in (
        "Parquet/CSV/JSON-lines files",
        "SQL text",
        "pyarrow Table",
        "datasets Dataset",
        "Polars DataFrame",
        "pandas DataFrame",
        "DuckDB relation",
        "__arrow_c_stream__",
    ):
        assert accepted in message
    assert list(tmp_path.iterdir()) == []


def test_empty_list_of_files(tmp_path: Path) -> None:
    with pytest.raises(ga.SourceError, match="the source is an empty list"):
        ga.build([], key="k", output=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- empty inputs ---------------------------------------------------------------------------

_SCHEMA = pa.schema([("k", pa.string()), ("x", pa.int64())])
_FEATURES = datasets.Features({"k": datasets.Value("string"), "x": datasets.Value("int64")})


def _empty_parquet(tmp_path: Path) -> Any:
    pq.write_table(_SCHEMA.empty_table(), tmp_path / "empty.parquet")
    return tmp_path / "empty.parquet"


def _empty_parquet_files(tmp_path: Path) -> Any:
    for name in ("a", "b"):
        pq.write_table(_SCHEMA.empty_table(), tmp_path / f"{name}.parquet")
    return str(tmp_path / "*.parquet")


def _csv_header(tmp_path: Path) -> Any:
    (tmp_path / "empty.csv").write_text("k,x\n")
    return tmp_path / "empty.csv"


def _generator_stream(tmp_path: Path) -> Any:
    def batches() -> Iterator[pa.RecordBatch]:
        yield from ()

    return pa.RecordBatchReader.from_batches(_SCHEMA, batches())


EMPTY_SOURCES: dict[str, Callable[[Path], Any]] = {
    "parquet-file": _empty_parquet,
    "parquet-files": _empty_parquet_files,
    "csv-header-only": _csv_header,
    "pyarrow-table": lambda _: _SCHEMA.empty_table(),
    "generator-stream": _generator_stream,
    "hf-dataset": lambda _: datasets.Dataset.from_dict({"k": [], "x": []}, features=_FEATURES),
    "hf-iterable-dataset": lambda _: datasets.IterableDataset.from_generator(
        lambda: iter([]), features=_FEATURES
    ),
    "polars-dataframe": lambda _: pl.DataFrame(schema={"k": pl.String, "x": pl.Int64}),
    "polars-lazyframe": lambda _: pl.LazyFrame(schema={"k": pl.String, "x": pl.Int64}),
    "sql": lambda _: "SELECT 'a' AS k, 1::BIGINT AS x WHERE false",
}


@pytest.mark.parametrize("make", EMPTY_SOURCES.values(), ids=EMPTY_SOURCES.keys())
def test_empty_input_builds_an_empty_dataset(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    source = make(tmp_path)
    out = tmp_path / "out"
    built = ga.build(source, key="k", output=out, num_shards=2)
    assert built.num_groups == 0 and built.num_rows == 0
    ds = ga.open(out)
    assert ds.num_groups == 0 and ds.num_rows == 0
    assert ds.schema.names == ["group_id", "k", "x"]
    assert list(ds.iter_groups()) == []
    assert list(ds.iter_groups(shuffle=True, seed=1)) == []
    assert list(ds.group_ids()) == []
    assert ds.index.num_rows == 0
    with pytest.raises(ga.GroupNotFoundError):
        ds["a"]
    manifest = read_manifest(out)
    assert manifest.num_groups == 0 and manifest.num_rows == 0
    assert [s.num_rows for s in manifest.shards] == [0, 0]
    assert manifest.build["rows_read"] == 0
    report = ga.verify(out)
    assert report.ok, report


def test_empty_input_with_a_key_function(tmp_path: Path) -> None:
    """No row to probe the function on: the key is taken to be a string."""
    path = _empty_parquet(tmp_path)
    ds = ga.build(path, key=lambda ex: ex["k"], output=tmp_path / "out")
    assert ds.num_groups == 0 and ds.schema.field("group_id").type == pa.string()
    assert ga.verify(tmp_path / "out").ok


def test_empty_files_among_others_add_nothing(tmp_path: Path) -> None:
    """An empty JSON-lines file or a header-only CSV file among others neither fails the
    schema check nor turns the other files' integer columns into strings."""
    _write_jsonl(tmp_path / "a.jsonl", [{"k": "u", "x": 1}])
    (tmp_path / "b.jsonl").write_text("")
    ds = ga.build(str(tmp_path / "*.jsonl"), key="k", output=tmp_path / "out")
    assert _contents(ds) == {"u": [{"k": "u", "x": 1}]}
    assert len(read_manifest_json(tmp_path / "out")["source"]["paths"]) == 2

    (tmp_path / "a.csv").write_text("k,x\nu,1\n")
    (tmp_path / "b.csv").write_text("k,x\n")
    ds = ga.build(str(tmp_path / "*.csv"), key="k", output=tmp_path / "out-csv")
    assert ds.schema.field("x").type == pa.int64()
    assert _contents(ds) == {"u": [{"k": "u", "x": 1}]}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("empty.jsonl", "", "the JSON input '{p}' is empty: no rows and no keys"),
        ("blank.jsonl", "\n\n", "the JSON input '{p}' is empty: no rows and no keys"),
        ("empty.csv", "", "the CSV input '{p}' is empty: no rows and no header"),
    ],
)
def test_input_without_columns_is_refused(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ga.SourceError) as info:
        ga.build(path, key="k", output=tmp_path / "out")
    assert expected.format(p=path) in str(info.value)
    _nothing_written(tmp_path)


def test_empty_hf_iterable_without_features_is_refused(tmp_path: Path) -> None:
    empty = datasets.IterableDataset.from_generator(lambda: iter([]))
    with pytest.raises(ga.SourceError, match="empty and declares no features"):
        ga.build(empty, key="k", output=tmp_path / "out")
    _nothing_written(tmp_path)


def test_empty_hf_dataset_without_features_says_why(tmp_path: Path) -> None:
    """``Dataset.from_dict({"k": []})`` has null-typed columns: the message says so."""
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(datasets.Dataset.from_dict({"k": []}), key="k", output=tmp_path / "out")
    message = str(info.value)
    assert 'has type "NULL"' in message and "without features=" in message


def test_empty_csv_header_columns_are_strings(tmp_path: Path) -> None:
    """Nothing to sniff types from: DuckDB reads a header-only CSV's columns as strings."""
    table = pa.table({"k": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
    pacsv.write_csv(table, tmp_path / "in.csv")
    ds = ga.build(tmp_path / "in.csv", key="k", output=tmp_path / "out")
    assert ds.schema.field("n").type == pa.string()
