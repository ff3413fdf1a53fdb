"""Hostile and odd input (issue 8, item 4): every case ends in a correct dataset or a clear
``GroupArrowError`` subclass, and a refused build writes nothing (no output directory, no
staging leftovers next to it).

Covered: group ids that look like paths, hold NUL, newlines, glob or SQL characters, are 10 KB
long, empty, non-UTF-8 bytes (binary keys) or integers at the int64 / uint64 limits, each
read back through ``ds[id]``, ``get``/``in``, ``get_many``, streaming (shuffled or not), the
index, the Arrow cache and ``ds.sql`` with a bound parameter; column names that collide
with the key column (also ignoring case), hold quotes, SQL, template or parameter syntax,
are 5,000 characters long, empty, hold NUL or repeat; Parquet columns that hide DuckDB's
row-numbering virtual columns; key functions that return mixed types, raise, or return
lists, dicts, tuples, floats, booleans, ``None``, ints beyond int64 or strings that are not
Unicode; streams whose schema changes mid-stream; files whose columns differ; string
columns that hold bytes that are not UTF-8; empty sources; one group larger than the memory
budget among tiny ones, and wide rows under a small budget (``slow``); what ``ds.sql`` can do;
and ``grouparrow sql`` refusing statements that write unless ``--allow-write``.

The number of hostile inputs tried is the number of test cases this module collects
(``pytest --collect-only -q tests/reliability/test_hostile.py``); manifests are covered by
tests/reliability/test_corruption.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_contiguous, read_manifest_json

import grouparrow as ga
from grouparrow.cli import main
from grouparrow.keys import composite_id

# -- helpers -------------------------------------------------------------------------------


def refused(tmp_path: Path, error: type[Exception], match: str, source: Any, **kwargs: Any) -> str:
    """Build ``source`` into ``tmp_path/refused``: it must raise ``error`` matching ``match`` and
    leave ``tmp_path`` as it was (no output, no staging directory, no spill files)."""
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=match) as info:
        ga.build(source, output=tmp_path / "refused", **kwargs)
    assert sorted(os.listdir(tmp_path)) == before, "a refused build left files behind"
    return str(info.value)


def dataset_files(out: Path) -> list[str]:
    """Every file under the dataset directory, relative, sorted."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def expected_files(out: Path) -> list[str]:
    manifest = read_manifest_json(out)
    return sorted(["grouparrow.json", manifest["index"], *(s["file"] for s in manifest["shards"])])


def check_round_trip(ds: ga.GroupedDataset, want: dict[Any, list[dict[str, Any]]], cache: Path):
    """Every read path gives each group exactly ``want[id]`` (rows in input order)."""
    ids = list(want)
    assert sorted(ds.group_ids(), key=repr) == sorted(ids, key=repr)
    assert sorted(ds.index.column("group_id").to_pylist(), key=repr) == sorted(ids, key=repr)
    for gid in ids:
        assert gid in ds
        assert ds[gid].id == gid
        assert ds[gid].to_pylist() == want[gid], gid
        assert ds.get(gid).num_rows == len(want[gid])
    assert [g.id for g in ds.get_many(ids)] == ids
    assert [g.to_pylist() for g in ds.get_many(ids[::-1])] == [want[g] for g in ids[::-1]]
    for shuffle in (False, True):
        streamed = {g.id: g.to_pylist() for g in ds.iter_groups(shuffle=shuffle, seed=3)}
        assert streamed == want
    cached = ga.open(ds.uri, cache_dir=cache)
    assert {g.id: g.to_pylist() for g in cached.iter_groups()} == want
    assert [g.to_pylist() for g in cached.get_many(ids)] == [want[g] for g in ids]
    key = quote(ds.key_column)
    for gid in ids:
        rows = ds.sql(f"SELECT count(*) FROM examples WHERE {key} = $g", {"g": gid}).fetchall()
        assert rows == [(len(want[gid]),)], gid
        sizes = ds.sql("SELECT num_rows FROM groups WHERE group_id = $g", {"g": gid}).fetchall()
        assert sizes == [(len(want[gid]),)]
    assert ga.verify(ds.uri).ok
    assert dataset_files(ds.path) == expected_files(ds.path)


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def rows_by_key(table: pa.Table, key: str, key_column: str = "group_id") -> dict[Any, list]:
    """What each group should hold: ``{id: [row dicts in input order]}``, the key column
    first."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        out.setdefault(row[key], []).append({key_column: row[key], **row})
    return out


# -- group ids -----------------------------------------------------------------------------

PATHLIKE = ["a/b", "..", "../..", "../../etc/passwd", "/etc/passwd", "/", ".", "./x", "C:\\x"]
CONTROL = ["a\x00b", "\x00", "line\nbreak", "\r\n", "\t", "\x1b[31mred", "\x7f"]
SYNTAX = ["'; DROP TABLE x; --", '"q"', "a'b", "{{ key }}", "$seed", "?", "%s", "*?[]{}", "\\"]
OTHER = ["", " ", " lead", "trail ", "x" * 10_240, "é", "日本", "🙂", "\u200b", "NULL", "null"]
STRING_IDS = PATHLIKE + CONTROL + SYNTAX + OTHER
BINARY_IDS = [b"", b"\x00", b"\xff\xfe", b"\x80abc", b"\xc3(", b"a/../b", b"\x00" * 1000, b"x"]
INT64_IDS = [-(2**63), -(2**63) + 1, -1, 0, 1, 2**31, 2**63 - 2, 2**63 - 1]
UINT64_IDS = [0, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]

ID_CASES = {
    "string": (STRING_IDS, pa.string()),
    "large_string": (STRING_IDS[:6], pa.large_string()),
    "binary": (BINARY_IDS, pa.binary()),
    "int64": (INT64_IDS, pa.int64()),
    "uint64": (UINT64_IDS, pa.uint64()),
    "int8": ([-128, 0, 127], pa.int8()),
}


def id_table(ids: list[Any], kind: pa.DataType, repeat: int = 2) -> pa.Table:
    """Each id ``repeat`` times, interleaved, with its row position ``i``."""
    keys = [k for _ in range(repeat) for k in ids]
    return pa.table({"k": pa.array(keys, kind), "i": pa.array(range(len(keys)), pa.int64())})


@pytest.mark.parametrize("case", sorted(ID_CASES))
def test_hostile_group_ids_round_trip_by_column(tmp_path: Path, case: str) -> None:
    ids, kind = ID_CASES[case]
    table = id_table(ids, kind)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=3, seed=7)
    assert ds.num_groups == len(ids) and ds.num_rows == table.num_rows
    check_round_trip(ds, rows_by_key(table, "k"), tmp_path / "cache")
    assert_contiguous(tmp_path / "out")


@pytest.mark.parametrize("case", ["string", "binary", "int64"])
def test_hostile_group_ids_round_trip_by_key_function(tmp_path: Path, case: str) -> None:
    """The same ids returned by a Python key function (the UDF path) keep their type."""
    ids = ID_CASES[case][0]
    table = pa.table({"n": pa.array(range(2 * len(ids)), pa.int64())})
    ds = ga.build(table, key=lambda ex: ids[ex["n"] % len(ids)], output=tmp_path / "out")
    assert ds.manifest.key_type == {"string": "string", "binary": "binary", "int64": "int64"}[case]
    want: dict[Any, list[dict[str, Any]]] = {}
    for n in range(table.num_rows):
        want.setdefault(ids[n % len(ids)], []).append({"group_id": ids[n % len(ids)], "n": n})
    check_round_trip(ds, want, tmp_path / "cache")


def test_hostile_strings_as_composite_key_parts(tmp_path: Path) -> None:
    parts = ["a/b", "..", "a\x00b", "l\nb", '"q"', "", "x" * 10_240]
    table = pa.table({"s": parts * 2, "n": [1, -(2**63)] * len(parts)})
    ds = ga.build(table, key=("s", "n"), output=tmp_path / "out", num_shards=2)
    want: dict[Any, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        gid = (row["s"], row["n"])
        want.setdefault(gid, []).append(
            {"group_id": composite_id(gid), "s": row["s"], "n": row["n"]}
        )
    assert sorted(ds.group_ids(), key=repr) == sorted(want, key=repr)
    for gid, rows in want.items():
        assert ds[gid].to_pylist() == rows
    assert {g.id: g.to_pylist() for g in ds.iter_groups()} == want


# -- column names --------------------------------------------------------------------------

ODD_NAMES = [
    'a"b',
    "c'd",
    '"; DROP TABLE x; --',
    "{{ where }}",
    "$seed",
    "?",
    "a\nb",
    "x y",
    "SELECT",
    "é",
    "c" * 5_000,
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=lambda n: repr(n)[:20])
def test_odd_column_names_as_key_and_value(tmp_path: Path, name: str) -> None:
    other = f"v {name}"
    table = pa.table({name: ["p", "q", "p"], other: ["w x", "y", "z"]})
    ds = ga.build(
        table,
        key=name,
        output=tmp_path / "out",
        num_shards=2,
        text_columns=[other],
        label_column=other,
    )
    assert ds.schema.names == ["group_id", name, other]
    assert ds["p"].to_pylist() == [
        {"group_id": "p", name: "p", other: "w x"},
        {"group_id": "p", name: "p", other: "z"},
    ]
    assert ds.sql(f"SELECT {quote(name)} FROM examples WHERE group_id = 'q'").fetchall() == [("q",)]
    assert dict(ds.sql("SELECT group_id, num_words FROM groups").fetchall()) == {"p": 3, "q": 1}
    assert ga.verify(ds.uri).ok


@pytest.mark.parametrize("key_column", ['k"c', "'; DROP TABLE x; --", "{{ key }}", "k" * 1000])
def test_odd_key_column_names(tmp_path: Path, key_column: str) -> None:
    table = pa.table({"u": ["a", "b", "a"], "i": [0, 1, 2]})
    ds = ga.build(table, key="u", output=tmp_path / "out", key_column=key_column)
    assert ds.key_column == key_column
    assert ds["a"].to_pylist() == [
        {key_column: "a", "u": "a", "i": 0},
        {key_column: "a", "u": "a", "i": 2},
    ]
    check_round_trip(ds, rows_by_key(table, "u", key_column), tmp_path / "cache")


def test_a_source_column_named_like_the_key_column_is_refused(tmp_path: Path) -> None:
    table = pa.table({"group_id": [1, 2], "k": ["a", "b"]})
    refused(tmp_path, ga.KeySpecError, "already has a column named 'group_id'", table, key="k")
    # Named otherwise, it builds; and a key that is that column keeps one copy of it.
    ds = ga.build(table, key="k", output=tmp_path / "a", key_column="client")
    assert ds["a"].to_pylist() == [{"client": "a", "group_id": 1, "k": "a"}]
    ds = ga.build(table, key="group_id", output=tmp_path / "b")
    assert ds.schema.names == ["group_id", "k"]
    assert ds[2].to_pylist() == [{"group_id": 2, "k": "b"}]


def test_a_source_column_equal_to_the_key_column_but_for_case(tmp_path: Path) -> None:
    """DuckDB's names are case-insensitive; the key column and ``GROUP_ID`` both survive,
    with their own values (the SQL view shows the second as ``GROUP_ID_1``)."""
    table = pa.table({"u": ["a", "b"], "GROUP_ID": [10, 20]})
    ds = ga.build(table, key="u", output=tmp_path / "out", num_shards=2)
    assert ds.schema.names == ["group_id", "u", "GROUP_ID"]
    assert ds["b"].to_pylist() == [{"group_id": "b", "u": "b", "GROUP_ID": 20}]
    assert ds.sql("SELECT * FROM examples ORDER BY 1").fetchall() == [
        ("a", "a", 10),
        ("b", "b", 20),
    ]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"u": ["a"], "": [1]}, "column without a name"),
        ({"u": ["a"], "a\x00b": [1]}, "holds a NUL"),
        ({"u": ["a"], "U": ["b"]}, "differ only in case"),
        ({"u": ["a"], "x": [1], "X": [2]}, "differ only in case"),
        ({"u": ["a"], "__ga_row": [1]}, "reserves"),
    ],
    ids=["empty", "nul", "case-key", "case-other", "reserved"],
)
def test_column_names_duckdb_cannot_address_are_refused(
    tmp_path: Path, columns: dict[str, list[Any]], match: str
) -> None:
    names = list(columns)
    table = pa.Table.from_arrays([pa.array(v) for v in columns.values()], names=names)
    refused(tmp_path, ga.SourceError, match, table, key="u")


def test_repeated_column_names_are_refused(tmp_path: Path) -> None:
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array([1]), pa.array([2])], ["u", "x", "x"])
    refused(tmp_path, ga.SourceError, "two columns named 'x'", table, key="u")


def test_parquet_columns_named_like_duckdb_virtual_columns_keep_input_order(
    tmp_path: Path,
) -> None:
    """A file's own ``file_row_number`` / ``File_Index`` columns hide DuckDB's virtual
    columns that number the rows: the rows of a group still keep their input order."""
    n = 50
    table = pa.table(
        {
            "u": ["a", "b"] * (n // 2),
            "file_row_number": list(range(n))[::-1],
            "File_Index": [9] * n,
            "i": range(n),
        }
    )
    pq.write_table(table.slice(0, 20), tmp_path / "p1.parquet")
    pq.write_table(table.slice(20), tmp_path / "p2.parquet")
    for shards in (1, 3):
        out = tmp_path / f"out{shards}"
        ds = ga.build(sorted(tmp_path.glob("p*.parquet")), key="u", output=out, num_shards=shards)
        assert ds["a"].to_arrow().column("i").to_pylist() == list(range(0, n, 2))
        assert ds["b"].to_arrow().column("file_row_number").to_pylist() == list(range(n))[-2::-2]


# -- key functions -------------------------------------------------------------------------

N = 200
ROWS = pa.table({"u": [f"u{i % 7}" for i in range(N)], "i": pa.array(range(N), pa.int64())})


def _late_raise(ex: dict[str, Any]) -> str:
    if ex["i"] == 150:
        raise RuntimeError("boom at 150")
    return str(ex["u"])


BAD_KEY_FUNCTIONS: dict[str, tuple[Any, type[Exception], str]] = {
    "mixed-late": (
        lambda ex: ex["u"] if ex["i"] < 100 else ex["i"],
        ga.KeyFunctionError,
        r"returned int 100 for row 100 .*but string keys",
    ),
    "mixed-early": (
        lambda ex: ex["u"] if ex["i"] % 2 else ex["i"],
        ga.KeyFunctionError,
        "returned int64 for row 0 but string for row 1",
    ),
    "bytes-then-str": (
        lambda ex: ex["u"].encode() if ex["i"] < 120 else ex["u"],
        ga.KeyFunctionError,
        r"returned str 'u1' for row 120 .*but binary keys",
    ),
    "raises-late": (
        _late_raise,
        ga.KeyFunctionError,
        r"raised RuntimeError: boom at 150 on row 150",
    ),
    "raises-first": (lambda ex: 1 // 0, ga.KeyFunctionError, "raised ZeroDivisionError.* row 0"),
    "list": (lambda ex: [ex["u"]], ga.KeyFunctionError, r"returned list \['u0'\] for row 0"),
    "dict": (lambda ex: {"u": ex["u"]}, ga.KeyFunctionError, "returned dict .* for row 0"),
    "tuple": (lambda ex: (ex["u"],), ga.KeyFunctionError, "returned tuple .* for row 0"),
    "set": (lambda ex: {ex["u"]}, ga.KeyFunctionError, "returned set .* for row 0"),
    "float": (lambda ex: 0.5, ga.KeyFunctionError, "returned float 0.5 for row 0"),
    "bool": (lambda ex: True, ga.KeyFunctionError, "returned bool True for row 0"),
    "list-late": (
        lambda ex: [1] if ex["i"] == 150 else ex["u"],
        ga.KeyFunctionError,
        r"returned list \[1\] for row 150",
    ),
    "none": (lambda ex: None, ga.NullKeyError, "is null for row 0"),
    "none-late": (lambda ex: None if ex["i"] == 150 else ex["u"], ga.NullKeyError, "row 150"),
    "beyond-int64": (
        lambda ex: 2**64 if ex["i"] == 150 else ex["i"],
        ga.KeyFunctionError,
        r"returned int 18446744073709551616 for row 150 .*outside the range of int64",
    ),
    "below-int64": (
        lambda ex: -(2**63) - 1 if ex["i"] == 3 else ex["i"],
        ga.KeyFunctionError,
        "for row 3 .*outside the range of int64",
    ),
    "surrogate": (
        lambda ex: "\udcff" + ex["u"] if ex["i"] == 42 else ex["u"],
        ga.KeyFunctionError,
        "for row 42 .*not Unicode text",
    ),
    "batch-nested": (
        ga.batch_key_fn(lambda b: pa.array([[1]] * b.num_rows)),
        ga.KeyFunctionError,
        "returned an array of type list",
    ),
    "batch-short": (
        ga.batch_key_fn(lambda b: pa.array(["a"])),
        ga.KeyFunctionError,
        "returned 1 keys for a batch of",
    ),
    "batch-raises": (
        ga.batch_key_fn(lambda b: 1 // 0),
        ga.KeyFunctionError,
        "raised ZeroDivisionError",
    ),
    "batch-mixed": (
        ga.batch_key_fn(lambda b: ["a" if i % 2 else 1 for i in range(b.num_rows)]),
        ga.KeyFunctionError,
        "not an Arrow array of keys",
    ),
    "batch-struct": (
        ga.batch_key_fn(lambda b: pa.array([{"x": 1}] * b.num_rows)),
        ga.KeyFunctionError,
        "returned an array of type struct",
    ),
}


@pytest.mark.parametrize("case", list(BAD_KEY_FUNCTIONS))
def test_bad_key_functions_fail_clearly_naming_the_row(tmp_path: Path, case: str) -> None:
    fn, error, match = BAD_KEY_FUNCTIONS[case]
    refused(tmp_path, error, match, ROWS, key=fn, num_shards=2)


def test_key_function_returning_none_with_on_null_drop(tmp_path: Path) -> None:
    def key(ex: dict[str, Any]) -> str | None:
        return None if ex["i"] % 3 == 0 else str(ex["u"])

    ds = ga.build(ROWS, key=key, output=tmp_path / "out", on_null="drop", num_shards=2)
    kept = ROWS.filter(pa.array([i % 3 != 0 for i in range(N)]))
    check_round_trip(ds, rows_by_key(kept, "u"), tmp_path / "cache")


def test_key_function_returning_numpy_integers(tmp_path: Path) -> None:
    ds = ga.build(ROWS, key=lambda ex: np.int64(ex["i"] % 5) - 2**62, output=tmp_path / "out")
    assert ds.manifest.key_type == "int64"
    assert sorted(ds.group_ids()) == [k - 2**62 for k in range(5)]
    assert ds[-(2**62)].to_arrow().column("i").to_pylist() == list(range(0, N, 5))


# -- sources whose schema changes ----------------------------------------------------------

S1 = pa.schema([("u", pa.string()), ("i", pa.int64())])


def reader_of(*batches: pa.RecordBatch, schema: pa.Schema = S1) -> pa.RecordBatchReader:
    def produce() -> Iterator[pa.RecordBatch]:
        yield from batches

    return pa.RecordBatchReader.from_batches(schema, produce())


FIRST = pa.record_batch({"u": ["a", "b"], "i": [1, 2]}, schema=S1)

SCHEMA_CHANGES: dict[str, tuple[pa.RecordBatch, str]] = {
    "renamed": (pa.record_batch({"u": ["c"], "j": [3]}), r"has the columns \['u', 'j'\]"),
    "reordered": (pa.record_batch({"i": [3], "u": ["c"]}), r"has the columns \['i', 'u'\]"),
    "extra": (pa.record_batch({"u": ["c"], "i": [3], "x": [0.5]}), "has the columns"),
    "missing": (pa.record_batch({"u": ["c"]}), r"has the columns \['u'\]"),
    "retyped": (
        pa.record_batch({"u": ["c"], "i": ["three"]}),
        "column 'i' of type string, but the source's schema says int64",
    ),
    "key-retyped": (
        pa.record_batch({"u": [3], "i": [3]}),
        "column 'u' of type int64, but the source's schema says string",
    ),
    "overflow": (
        pa.record_batch({"u": ["c"], "i": pa.array([2**64 - 1], pa.uint64())}),
        "does not convert to the source's int64",
    ),
}


@pytest.mark.parametrize("case", list(SCHEMA_CHANGES))
@pytest.mark.parametrize("num_shards", [1, 3])
def test_a_stream_whose_schema_changes_is_refused(
    tmp_path: Path, case: str, num_shards: int
) -> None:
    later, match = SCHEMA_CHANGES[case]
    source = reader_of(FIRST, FIRST, later)
    message = refused(tmp_path, ga.SourceError, match, source, key="u", num_shards=num_shards)
    assert "batch 3 of the source (rows 4-" in message


def test_a_stream_whose_types_only_widen_is_cast(tmp_path: Path) -> None:
    narrow = pa.record_batch(
        {"u": pa.array(["a"], pa.large_string()), "i": pa.array([7], pa.int8())}
    )
    dictionary = pa.record_batch({"u": pa.array(["b"]).dictionary_encode(), "i": [8]})
    ds = ga.build(reader_of(FIRST, narrow, dictionary), key="u", output=tmp_path / "out")
    assert ds.schema.field("i").type == pa.int64()
    assert ds["a"].to_arrow().column("i").to_pylist() == [1, 7]
    assert ds["b"].to_arrow().column("i").to_pylist() == [2, 8]


def test_a_stream_whose_timestamps_change_unit_is_cast(tmp_path: Path) -> None:
    schema = pa.schema([("u", pa.string()), ("t", pa.timestamp("us", tz="UTC"))])
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    first = pa.record_batch([pa.array(["a"]), pa.array([moment], schema.field("t").type)], schema)
    seconds = pa.record_batch({"u": ["b"], "t": pa.array([moment], pa.timestamp("s", tz="UTC"))})
    zoned = pa.record_batch(
        {"u": ["c"], "t": pa.array([moment], pa.timestamp("us", tz="Asia/Tokyo"))}
    )
    ds = ga.build(reader_of(first, seconds, schema=schema), key="u", output=tmp_path / "out")
    assert [g.to_pylist()[0]["t"] for g in ds.get_many(["a", "b"])] == [moment, moment]
    source = reader_of(first, zoned, schema=schema)
    refused(tmp_path, ga.SourceError, "column 't' of type timestamp", source, key="u")


def test_files_whose_columns_differ(tmp_path: Path) -> None:
    pq.write_table(pa.table({"u": ["a"], "i": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"u": ["b"], "j": [2]}), tmp_path / "b.parquet")
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    refused(tmp_path, ga.SourceError, "column 'i' of .* is missing in", files, key="u")
    ds = ga.build(files, key="u", output=tmp_path / "out", unify_schemas=True)
    assert ds["b"].to_pylist() == [{"group_id": "b", "u": "b", "i": None, "j": 2}]
    (tmp_path / "a.csv").write_text("u,i\na,1\n")
    (tmp_path / "b.csv").write_text("u,k\nb,2\n")
    csvs = [tmp_path / "a.csv", tmp_path / "b.csv"]
    refused(tmp_path, ga.SourceError, "different", csvs, key="u")


def test_columns_duckdb_cannot_read_are_named(tmp_path: Path) -> None:
    import decimal

    table = pa.table(
        {
            "u": ["a", "b"],
            "d": pa.array([decimal.Decimal("1.5")] * 2, pa.decimal256(50, 2)),
            "ok": pa.array([decimal.Decimal("1.5")] * 2, pa.decimal128(10, 2)),
        }
    )
    match = r"cannot read the source's column\(s\) 'd' \(decimal256"
    message = refused(tmp_path, ga.SourceError, match, table, key="u")
    assert "'ok'" not in message and "cast them" in message


def test_a_generator_is_not_a_source(tmp_path: Path) -> None:
    refused(tmp_path, ga.SourceError, "cannot read a source of type", (b for b in [FIRST]), key="u")


@pytest.mark.parametrize("num_shards", [1, 3])
def test_ctrl_c_while_the_source_is_read_stays_a_keyboard_interrupt(
    tmp_path: Path, num_shards: int
) -> None:
    def batches() -> Iterator[pa.RecordBatch]:
        yield FIRST
        yield FIRST
        raise KeyboardInterrupt

    source = pa.RecordBatchReader.from_batches(S1, batches())
    refused(tmp_path, KeyboardInterrupt, "^$", source, key="u", num_shards=num_shards)


# -- bytes that are not UTF-8 --------------------------------------------------------------

NOT_UTF8 = pa.array([b"ok", b"\xff\xfe", b"\xc3("], pa.binary()).view(pa.string())


@pytest.mark.parametrize("column", ["k", "v"])
@pytest.mark.parametrize("num_shards", [1, 2])
def test_string_columns_holding_other_bytes_are_refused(
    tmp_path: Path, column: str, num_shards: int
) -> None:
    good = pa.array(["a", "b", "c"])
    table = pa.table({"k": NOT_UTF8 if column == "k" else good, "v": NOT_UTF8})
    message = refused(
        tmp_path,
        ga.SourceError,
        f"column '{column}' of batch 1",
        table,
        key="k",
        num_shards=num_shards,
    )
    assert "row 1 (" in message and "UTF-8" in message


def test_other_bytes_in_nested_strings_and_late_batches_are_refused(tmp_path: Path) -> None:
    nested = pa.ListArray.from_arrays([0, 1, 3], NOT_UTF8)
    schema = pa.schema([("u", pa.string()), ("tags", pa.list_(pa.string()))])
    fine = pa.record_batch({"u": ["a", "b"], "tags": [["x"], []]}, schema=schema)
    bad = pa.record_batch([pa.array(["c", "d"]), nested], schema=schema)
    source = reader_of(fine, bad, schema=schema)
    message = refused(tmp_path, ga.SourceError, "column 'tags' of batch 2", source, key="u")
    assert "at row 3 (" in message


def test_files_holding_other_bytes_are_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"k": NOT_UTF8, "v": [1, 2, 3]}), tmp_path / "bad.parquet")
    refused(tmp_path, ga.SourceError, "UTF-8", tmp_path / "bad.parquet", key="k")
    (tmp_path / "bad.csv").write_bytes(b"k,v\n\xff\xfe,1\nok,2\n")
    refused(tmp_path, ga.SourceError, "not utf-8", tmp_path / "bad.csv", key="k")
    (tmp_path / "bad.jsonl").write_bytes(b'{"k": "\xff\xfe", "v": 1}\n')
    refused(tmp_path, ga.SourceError, "UTF-8", tmp_path / "bad.jsonl", key="k")


def test_binary_keys_and_values_with_any_bytes_round_trip(tmp_path: Path) -> None:
    raw = [bytes([b]) * 3 for b in range(256)]
    table = pa.table({"k": pa.array(raw, pa.binary()), "v": pa.array(raw[::-1], pa.binary())})
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=4)
    check_round_trip(ds, rows_by_key(table, "k"), tmp_path / "cache")


# -- empty sources -------------------------------------------------------------------------


def written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda d: pa.table({"u": pa.array([], pa.string()), "x": pa.array([], pa.int64())}),
        lambda d: reader_of(schema=S1),
        lambda d: reader_of(pa.RecordBatch.from_pylist([], schema=S1)),
        lambda d: written(d / "h.csv", "u,x\n"),
    ],
    ids=["table", "reader", "empty-batch", "csv-header"],
)
def test_empty_sources_build_empty_datasets(tmp_path: Path, make: Callable[[Path], Any]) -> None:
    ds = ga.build(make(tmp_path), key="u", output=tmp_path / "out", num_shards=3)
    assert (ds.num_groups, ds.num_rows, ds.num_shards) == (0, 0, 3)
    assert list(ds.iter_groups(shuffle=True)) == []
    assert ds.group_ids() == []
    assert ds.sql("SELECT count(*) FROM examples").fetchall() == [(0,)]
    assert ga.verify(ds.uri).ok
    with pytest.raises(ga.GroupNotFoundError):
        ds["a"]
    assert ds.get_many([]) == []


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: [], ga.SourceError, "empty list"),
        (lambda d: pa.table({}), ga.KeySpecError, "not a column"),
        (lambda d: written(d / "e.jsonl", ""), ga.SourceError, "empty"),
        (lambda d: written(d / "e.csv", ""), ga.SourceError, "empty"),
    ],
    ids=["list", "no-columns", "jsonl", "csv"],
)
def test_sources_without_columns_are_refused(
    tmp_path: Path, make: Callable[[Path], Any], error: type[Exception], match: str
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = make(inputs)
    refused(tmp_path, error, match, source, key="u")


# -- one enormous group --------------------------------------------------------------------

BIG_ROWS = 300_000  # of ~1 KB: ~300 MB of Arrow data, against a 256 MB budget
TINY_GROUPS = 300


def enormous_group_source() -> pa.RecordBatchReader:
    """``big`` (BIG_ROWS rows of 1 KB text, ``i`` counting up) among tiny groups of 1-3
    rows, interleaved batch by batch."""
    schema = pa.schema([("k", pa.string()), ("i", pa.int64()), ("t", pa.string())])
    text = pa.array(["y" * 1000] * 10_000)

    def batches() -> Iterator[pa.RecordBatch]:
        for b in range(BIG_ROWS // 10_000):
            rows = np.arange(b * 10_000, (b + 1) * 10_000)
            yield pa.record_batch([pa.array(["big"] * 10_000), pa.array(rows), text], schema=schema)
            tiny = [f"t{(b * 10 + j) % TINY_GROUPS}" for j in range(10)]
            yield pa.record_batch(
                [pa.array(tiny), pa.array(-1 - np.arange(b * 10, b * 10 + 10)), pa.array(tiny)],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def check_enormous_group(ds: ga.GroupedDataset) -> None:
    assert ds.num_rows == BIG_ROWS + BIG_ROWS // 1000
    assert ds.num_groups == 1 + TINY_GROUPS
    big = ds["big"]
    assert big.num_rows == BIG_ROWS
    expected = 0
    for batch in big.iter_batches(65_536):  # streamed, never whole in memory
        values = batch.column("i").to_numpy()
        assert np.array_equal(values, np.arange(expected, expected + len(values)))
        assert set(batch.column("k").unique().to_pylist()) == {"big"}
        expected += len(values)
    assert expected == BIG_ROWS
    index = ds.index.to_pylist()
    row = next(r for r in index if r["group_id"] == "big")
    shard = pq.read_table(ds.path / ds.manifest.shards[row["shard"]].file, columns=["group_id"])
    keys = shard.column(0).to_numpy(zero_copy_only=False)
    assert (keys[row["offset"] : row["offset"] + BIG_ROWS] == "big").all()
    assert (keys == "big").sum() == BIG_ROWS  # contiguous: nowhere else in the shard
    tiny = [g for g in ds.iter_groups() if g.id != "big"]
    assert sorted(g.num_rows for g in tiny) == sorted(
        [BIG_ROWS // 1000 // TINY_GROUPS] * TINY_GROUPS
    )


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_one_group_larger_than_the_memory_budget(tmp_path: Path, threads: int) -> None:
    ds = ga.build(
        enormous_group_source(),
        key="k",
        output=tmp_path / "out",
        memory_limit="256MB",
        threads=threads,
        num_shards=2,
    )
    check_enormous_group(ds)


def wide_rows(rows: int, width: int) -> pa.RecordBatchReader:
    """``rows`` rows of ``width`` bytes of text, in groups of 10."""
    schema = pa.schema([("k", pa.int64()), ("t", pa.string())])

    def batches() -> Iterator[pa.RecordBatch]:
        for b in range(rows // 10_000):
            span = np.arange(b * 10_000, (b + 1) * 10_000)
            text = pa.array([f"{j:08d}" * (width // 8) for j in span])
            yield pa.record_batch([pa.array(span // 10), text], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


@pytest.mark.slow
def test_wide_rows_under_a_small_budget(tmp_path: Path) -> None:
    ds = ga.build(
        wide_rows(300_000, 1_000),
        key="k",
        output=tmp_path / "out",
        memory_limit="300MB",
        threads=2,
        num_shards=2,
    )
    assert ds.num_rows == 300_000 and ds.num_groups == 30_000


# -- SQL -----------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> ga.GroupedDataset:
    table = pa.table({"u": ["a", "b", "a"], "x": [1, 2, 3]})
    return ga.build(table, key="u", output=tmp_path / "ds")


def test_ds_sql_has_the_documented_powers(small: ga.GroupedDataset, tmp_path: Path) -> None:
    """What grouparrow.query's docstring says ``ds.sql`` can do, it can: read other files,
    write files, attach databases, change settings; several statements run."""
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert small.sql(f"SELECT * FROM read_csv('{other}')").fetchall() == [(1, 2)]
    small.sql(f"COPY (SELECT * FROM examples) TO '{tmp_path / 'copy.csv'}'")
    assert (tmp_path / "copy.csv").read_text().splitlines()[0] == "group_id,u,x"
    small.sql(f"ATTACH '{tmp_path / 'new.duckdb'}' AS n")
    assert (tmp_path / "new.duckdb").is_file()
    small.sql("SET threads = 1")
    assert small.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
    assert small.sql("SELECT 1; SELECT 2 AS two").fetchall() == [(2,)]
    with pytest.raises(ga.QueryError, match=r"not an? table"):
        small.sql("INSERT INTO examples VALUES ('z', 'z', 0)")
    small.sql("CREATE OR REPLACE VIEW groups AS SELECT 'replaced' AS group_id")
    assert small.sql("SELECT * FROM groups").fetchall() == [("replaced",)]
    assert small.connect().sql("SELECT count(*) FROM groups").fetchall() == [(2,)]
    assert ga.verify(small.uri).ok


WRITES = [
    "COPY (SELECT * FROM examples) TO '{out}/x.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{out}/x.csv'",
    "SELECT 1; /* a comment */ COPY (SELECT 1) TO '{out}/x.csv' -- trailing",
    "EXPORT DATABASE '{out}/x'",
    "ATTACH '{out}/x.duckdb' AS x",
    "CREATE TABLE t AS SELECT 1",
    "CREATE OR REPLACE VIEW groups AS SELECT 1",
    "CREATE MACRO m(x) AS x",
    "CREATE SECRET s (TYPE s3)",
    "INSERT INTO examples VALUES ('z', 'z', 0)",
    "UPDATE examples SET x = 0",
    "DELETE FROM examples",
    "DROP VIEW examples",
    "ALTER VIEW examples RENAME TO e",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD json",
    "SET threads = 1",
    "RESET threads",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "PRAGMA profiling_output = '{out}/x.json'",
    "IMPORT DATABASE '{out}'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}/x.csv'",
    "CALL checkpoint()",
    "CHECKPOINT",
    "BEGIN TRANSACTION",
    "USE memory",
    "DETACH x",
    "VACUUM",
    "PREPARE p AS SELECT 1",
    "PIVOT examples ON u USING sum(x)",
    "UPDATE EXTENSIONS",
]


@pytest.mark.parametrize("statement", WRITES)
def test_cli_sql_refuses_statements_that_write(
    small: ga.GroupedDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], statement: str
) -> None:
    out = tmp_path / "w"
    out.mkdir()
    assert main(["sql", str(small.path), statement.format(out=out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "grouparrow sql: error: refusing to run" in captured.err
    assert "--allow-write" in captured.err
    assert list(out.iterdir()) == []


READS = {
    "SELECT count(*) AS n FROM examples": "3",
    "WITH g AS (SELECT * FROM groups) SELECT count(*) AS n FROM g": "2",
    "FROM groups SELECT count(*) AS n": "2",
    "SELECT 'COPY (SELECT 1) TO ''x.csv''; DROP TABLE t' AS n": "DROP TABLE",
    'SELECT 1 AS "COPY"': "COPY",
    "DESCRIBE examples": "group_id",
    "SUMMARIZE examples": "column_name",
    "SHOW TABLES": "examples",
    "EXPLAIN SELECT * FROM examples": "physical_plan",
    "PRAGMA table_info('examples')": "group_id",
    "PRAGMA version": "library_version",
    "PIVOT examples ON u IN ('a', 'b') USING sum(x)": "a",
    "VALUES (1), (2)": "col0",
    "SELECT count(*) FROM read_csv('{other}')": "1",
}


@pytest.mark.parametrize("query", list(READS))
def test_cli_sql_runs_statements_that_read(
    small: ga.GroupedDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], query: str
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    assert main(["sql", str(small.path), query.format(other=other), "--format", "csv"]) == 0
    assert READS[query] in capsys.readouterr().out


def test_cli_sql_allow_write(
    small: ga.GroupedDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "copy.parquet"
    query = f"COPY (SELECT * FROM examples ORDER BY x) TO '{target}'"
    assert main(["sql", str(small.path), query, "--allow-write"]) == 0
    assert pq.read_table(target).column("x").to_pylist() == [1, 2, 3]
    assert main(["sql", str(small.path), "SET threads = 1; SELECT 7 AS n", "--allow-write"]) == 0
    assert "7" in capsys.readouterr().out


def test_cli_sql_read_only_connection_locks_settings(small: ga.GroupedDataset) -> None:
    """Belt and braces: the read-only connection itself refuses SET and installs nothing."""
    from grouparrow import query

    con = query.connect(small, read_only=True)
    try:
        assert con.sql("SELECT current_setting('autoinstall_known_extensions')").fetchall() == [
            (False,)
        ]
        with pytest.raises(duckdb.Error, match="lock"):
            con.execute("SET threads = 1")
    finally:
        con.close()


def test_cli_sql_refuses_before_opening_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", str(tmp_path / "missing"), "DROP VIEW examples"]) == 2
    assert "refusing to run a DROP statement" in capsys.readouterr().err


def test_cli_sql_json_output_of_hostile_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ids = ["a\nb", '"; DROP TABLE x; --', "a\x00b", ""]
    ds = ga.build(pa.table({"k": ids}), key="k", output=tmp_path / "ds")
    assert main(["sql", str(ds.path), "SELECT group_id FROM groups", "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(json.loads(line)["group_id"] for line in lines) == sorted(ids)
