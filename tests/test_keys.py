"""Every form of key spec, their types in the output, and every key error a user can meet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import data_file, group_counts, leftovers, make_table, read_manifest_json, row_number

import grouparrow as ga


def _index_counts(ds: ga.GroupedDataset) -> dict[Any, int]:
    index = ds.index
    return dict(
        zip(index.column("group_id").to_pylist(), index.column("num_rows").to_pylist(), strict=True)
    )


def _assert_nothing_left(tmp_path: Path, name: str = "out") -> None:
    assert leftovers(tmp_path, name) == []
    assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- key forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "arrow_type"),
    [
        ("string", pa.string()),
        ("int64", pa.int64()),
        ("int32", pa.int32()),
        ("binary", pa.binary()),
    ],
)
def test_column_key_keeps_its_type(tmp_path: Path, key_type: str, arrow_type: pa.DataType) -> None:
    table = make_table(500, 9, key_type=key_type)
    ds = ga.build(table, key="k", output=tmp_path / "out", num_shards=2)
    assert ds.schema.field("group_id").type == arrow_type
    assert ds.schema.names == ["group_id", "k", "i", "text", "x"]
    assert ds.index.schema.field("group_id").type == arrow_type
    assert pq.read_schema(tmp_path / "out" / "index.parquet").field("group_id").type == arrow_type
    manifest = read_manifest_json(tmp_path / "out")
    assert manifest["key"]["type"] == str(arrow_type)
    assert manifest["key"]["kind"] == "column"
    assert manifest["key"]["definition"] == "k"
    assert _index_counts(ds) == group_counts(table, "k")
    some = table.column("k")[0].as_py()
    assert ds[some].to_arrow().column("i").to_pylist() == [
        i
        for i, k in zip(table.column("i").to_pylist(), table.column("k").to_pylist(), strict=True)
        if k == some
    ]


def test_large_string_column_key(tmp_path: Path) -> None:
    table = make_table(300, 4)
    table = table.set_column(0, "k", table.column("k").cast(pa.large_string()))
    ds = ga.build(table, key="k", output=tmp_path / "out")
    assert ds.schema.field("group_id").type == pa.string()
    assert ds.schema.field("k").type == pa.large_string()
    assert _index_counts(ds) == group_counts(table, "k")


def test_sql_key(tmp_path: Path) -> None:
    table = make_table(400, 12)
    ds = ga.build(table, key=ga.sql("upper(k) || '!'"), output=tmp_path / "out", num_shards=3)
    expected = {f"{k.upper()}!": n for k, n in group_counts(table, "k").items()}
    assert _index_counts(ds) == expected
    manifest = read_manifest_json(tmp_path / "out")
    assert manifest["key"]["kind"] == "sql"
    assert manifest["key"]["definition"] == "upper(k) || '!'"
    assert ds.schema.field("group_id").type == pa.string()


def test_sql_key_integer_expression(tmp_path: Path) -> None:
    table = make_table(400, 12)
    ds = ga.build(table, key=ga.sql("i % 5"), output=tmp_path / "out", num_shards=2)
    assert pa.types.is_integer(ds.schema.field("group_id").type)
    assert _index_counts(ds) == {r: len(range(r, 400, 5)) for r in range(5)}
    assert ds[3].to_arrow().column("i").to_pylist() == list(range(3, 400, 5))


def test_sql_rejects_empty_expression() -> None:
    with pytest.raises(ga.KeySpecError, match="non-empty SQL expression"):
        ga.sql("  ")


def test_plain_lambda_key(tmp_path: Path) -> None:
    table = make_table(300, 6)
    ds = ga.build(table, key=lambda ex: ex["k"][::-1], output=tmp_path / "out", num_shards=2)
    assert _index_counts(ds) == {k[::-1]: n for k, n in group_counts(table, "k").items()}
    manifest = read_manifest_json(tmp_path / "out")
    assert manifest["key"]["kind"] == "python"
    assert "<lambda>" in manifest["key"]["definition"]


def test_key_fn_with_columns_and_type(tmp_path: Path) -> None:
    seen: list[set[str]] = []

    def parity(ex: Any) -> int:
        seen.append(set(ex))
        return ex["i"] % 2

    spec = ga.key_fn(parity, columns=["i"], type="int64")
    assert spec.columns == ("i",)
    assert spec.type == "int64"
    table = make_table(200, 3)
    ds = ga.build(table, key=spec, output=tmp_path / "out")
    assert ds.schema.field("group_id").type == pa.int64()
    assert _index_counts(ds) == {0: 100, 1: 100}
    # The function is handed only the columns it declared.
    assert seen and all(keys == {"i"} for keys in seen)


def test_key_fn_returning_bytes(tmp_path: Path) -> None:
    table = make_table(100, 4)
    ds = ga.build(table, key=lambda ex: ex["k"].encode() + b"\x00", output=tmp_path / "out")
    assert ds.schema.field("group_id").type == pa.binary()
    assert _index_counts(ds) == {
        k.encode() + b"\x00": n for k, n in group_counts(table, "k").items()
    }


def test_key_fn_rejects_unknown_type_and_columns(tmp_path: Path) -> None:
    with pytest.raises(ga.KeySpecError, match=r"'float'.*string, binary, int64"):
        ga.key_fn(lambda ex: ex["k"], type="float")  # type: ignore[arg-type]
    with pytest.raises(ga.KeySpecError, match=r"\['zz'\] are not columns"):
        ga.build(
            make_table(10),
            key=ga.key_fn(lambda ex: ex["k"], columns=["zz"]),
            output=tmp_path / "out",
        )
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("columns", [None, ["k"]])
def test_batch_key_fn(tmp_path: Path, columns: list[str] | None) -> None:
    names: list[list[str]] = []

    def lower_key(batch: pa.RecordBatch) -> pa.Array:
        names.append(batch.schema.names)
        return pc.utf8_upper(batch.column("k"))

    table = make_table(700, 11, chunks=3)
    ds = ga.build(
        table,
        key=ga.batch_key_fn(lower_key, columns=columns),
        output=tmp_path / "out",
        num_shards=2,
    )
    assert _index_counts(ds) == {k.upper(): n for k, n in group_counts(table, "k").items()}
    assert read_manifest_json(tmp_path / "out")["key"]["kind"] == "python_batch"
    expected_names = ["k"] if columns else ["k", "i", "text", "x"]
    assert names and all(n == expected_names for n in names)


def test_batch_key_fn_returning_a_list(tmp_path: Path) -> None:
    table = make_table(100, 3)
    spec = ga.batch_key_fn(lambda b: [i % 4 for i in b.column("i").to_pylist()], columns=["i"])
    ds = ga.build(table, key=spec, output=tmp_path / "out")
    assert _index_counts(ds) == {0: 25, 1: 25, 2: 25, 3: 25}


def test_not_a_key(tmp_path: Path) -> None:
    with pytest.raises(ga.KeySpecError, match="is not a key"):
        ga.build(make_table(10), key=3.5, output=tmp_path / "out")  # type: ignore[arg-type]
    _assert_nothing_left(tmp_path)


# -- key spec errors ------------------------------------------------------------------------


def test_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(make_table(10), key="nope", output=tmp_path / "out")
    message = str(info.value)
    assert "'nope'" in message
    assert "k, i, text, x" in message
    assert "ga.sql('nope')" in message
    _assert_nothing_left(tmp_path)


def test_float_column_key_suggests_cast(tmp_path: Path) -> None:
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(make_table(10), key="x", output=tmp_path / "out")
    message = str(info.value)
    assert "DOUBLE" in message
    assert "CAST(x AS VARCHAR)" in message
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("expression", ["nosuchfunction(k)", "k +", "missing_column"])
def test_invalid_sql_expression(tmp_path: Path, expression: str) -> None:
    with pytest.raises(ga.KeySpecError) as info:
        ga.build(make_table(10), key=ga.sql(expression), output=tmp_path / "out")
    assert repr(expression) in str(info.value)
    assert "does not work over the source columns" in str(info.value)
    _assert_nothing_left(tmp_path)


# -- key function errors --------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 3])
@pytest.mark.parametrize("bad_row", [5, 150, 100_000])
def test_key_function_raises_on_row(tmp_path: Path, bad_row: int, num_shards: int) -> None:
    table = make_table(bad_row + 500, 20)

    def host(ex: Any) -> str:
        if ex["i"] == bad_row:
            raise ValueError("no host here")
        return ex["k"]

    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(table, key=host, output=tmp_path / "out", num_shards=num_shards)
    message = str(info.value)
    assert "ValueError: no host here" in message
    assert f"row {bad_row} " in message
    assert f"i={bad_row}" in message  # a preview of the example
    assert f"k={table.column('k')[bad_row].as_py()!r}" in message
    assert "host" in message  # names the function
    assert isinstance(info.value, ga.RowKeyError)
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("bad_row", [5, 150])
def test_key_function_error_chains_the_original_exception(tmp_path: Path, bad_row: int) -> None:
    """The user's own exception (with its traceback into their function) is the cause."""

    def host(ex: Any) -> str:
        if ex["i"] == bad_row:
            raise ValueError("no host here")
        return ex["k"]

    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(300, 5), key=host, output=tmp_path / "out")
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert str(cause) == "no host here"


def test_key_function_error_preview_is_short(tmp_path: Path) -> None:
    table = pa.table({"k": ["a" * 5000] * 3, "blob": [b"\x01" * 100] * 3})

    def boom(ex: Any) -> str:
        raise RuntimeError("bad")

    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(table, key=boom, output=tmp_path / "out")
    message = str(info.value)
    assert "row 0" in message
    assert len(message) < 700
    assert "..." in message
    _assert_nothing_left(tmp_path)


@pytest.mark.parametrize("bad_row", [0, 100])
def test_key_function_returning_float(tmp_path: Path, bad_row: int) -> None:
    table = make_table(300, 5)
    key = lambda ex: 1.5 if ex["i"] >= bad_row else ex["k"]  # noqa: E731
    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(table, key=key, output=tmp_path / "out")
    message = str(info.value)
    assert "float 1.5" in message
    assert f"row {bad_row} " in message
    assert "str, bytes or int" in message
    _assert_nothing_left(tmp_path)


def test_key_function_mixed_types_in_probe(tmp_path: Path) -> None:
    key = lambda ex: ex["k"] if ex["i"] < 10 else ex["i"]  # noqa: E731
    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(100), key=key, output=tmp_path / "out")
    message = str(info.value)
    assert "string for row 0 but int64 for row 10" in message
    assert "type=" in message
    _assert_nothing_left(tmp_path)


def test_key_function_mixed_types_after_probe_rows(tmp_path: Path) -> None:
    key = lambda ex: ex["k"] if ex["i"] < 100 else ex["i"]  # noqa: E731
    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(300, 5), key=key, output=tmp_path / "out", num_shards=2)
    message = str(info.value)
    assert "returned int 100 for row 100" in message
    assert "string keys for the first rows" in message
    assert "ga.key_fn(fn, type=...)" in message
    _assert_nothing_left(tmp_path)


def test_key_function_reading_a_column_only_on_late_rows(tmp_path: Path) -> None:
    key = lambda ex: ex["k"] if ex["i"] < 100 else ex["text"]  # noqa: E731
    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(300, 5), key=key, output=tmp_path / "out")
    message = str(info.value)
    assert "'text'" in message
    assert "row 100" in message
    assert "columns=" in message
    _assert_nothing_left(tmp_path)


def test_key_function_declared_columns_fix_late_reads(tmp_path: Path) -> None:
    key = ga.key_fn(lambda ex: ex["k"] if ex["i"] < 100 else ex["text"], columns=["k", "i", "text"])
    table = make_table(300, 5)
    ds = ga.build(table, key=key, output=tmp_path / "out")
    assert ds.num_rows == 300
    assert ds["alpha"].num_rows == len([i for i in range(100, 300) if i % 5 == 0])


def test_batch_key_fn_wrong_length(tmp_path: Path) -> None:
    spec = ga.batch_key_fn(lambda b: b.column("k").slice(1), columns=["k"])
    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(200), key=spec, output=tmp_path / "out")
    message = str(info.value)
    assert "keys for a batch of" in message
    assert "exactly one key per row" in message
    _assert_nothing_left(tmp_path)


def test_batch_key_fn_wrong_length_after_probe(tmp_path: Path) -> None:
    def key(batch: pa.RecordBatch) -> pa.Array:
        keys = batch.column("k")
        return keys if batch.num_rows <= 64 else keys.slice(1)

    with pytest.raises(ga.KeyFunctionError, match="exactly one key per row"):
        ga.build(make_table(5000), key=ga.batch_key_fn(key), output=tmp_path / "out")
    _assert_nothing_left(tmp_path)


def test_batch_key_fn_raises(tmp_path: Path) -> None:
    def key(batch: pa.RecordBatch) -> pa.Array:
        raise ZeroDivisionError("nope")

    with pytest.raises(ga.KeyFunctionError) as info:
        ga.build(make_table(200), key=ga.batch_key_fn(key), output=tmp_path / "out")
    message = str(info.value)
    assert "ZeroDivisionError: nope" in message
    assert "rows 0-" in message
    _assert_nothing_left(tmp_path)


def test_batch_key_fn_returning_floats(tmp_path: Path) -> None:
    spec = ga.batch_key_fn(lambda b: b.column("x"))
    with pytest.raises(ga.KeyFunctionError, match=r"type double.*strings, binary or integers"):
        ga.build(make_table(50), key=spec, output=tmp_path / "out")
    _assert_nothing_left(tmp_path)


# -- null keys ------------------------------------------------------------------------------


def test_null_key_column_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    flights = data_file(data_dir, "nycflights13/flights.parquet")
    tailnum = pq.read_table(flights, columns=["tailnum"]).column(0)
    null_rows = set(np.flatnonzero(tailnum.is_null().to_numpy(zero_copy_only=False)).tolist())
    assert null_rows
    with pytest.raises(ga.NullKeyError) as info:
        ga.build(flights, key="tailnum", output=tmp_path / "out", num_shards=2)
    message = str(info.value)
    assert row_number(message) in null_rows
    assert 'on_null="drop"' in message
    assert "'tailnum'" in message
    assert isinstance(info.value, ValueError)
    _assert_nothing_left(tmp_path)


def test_null_key_column_drop(tmp_path: Path, data_dir: Path) -> None:
    flights = data_file(data_dir, "nycflights13/flights.parquet")
    table = pq.read_table(flights, columns=["tailnum", "carrier", "flight"])
    nulls = table.column("tailnum").null_count
    ds = ga.build(table, key="tailnum", output=tmp_path / "out", on_null="drop", num_shards=4)
    expected = group_counts(table, "tailnum")
    assert ds.num_rows == table.num_rows - nulls
    assert ds.num_groups == len(expected) == 4043
    assert _index_counts(ds) == expected
    build = read_manifest_json(tmp_path / "out")["build"]
    assert build["rows_dropped_null_key"] == nulls == 2512
    assert build["rows_read"] == table.num_rows
    assert build["on_null"] == "drop"


@pytest.mark.parametrize("bad_row", [3, 120])
def test_key_function_returning_none(tmp_path: Path, bad_row: int) -> None:
    table = make_table(300, 5)
    key = lambda ex: None if ex["i"] == bad_row else ex["k"]  # noqa: E731
    with pytest.raises(ga.NullKeyError) as info:
        ga.build(table, key=key, output=tmp_path / "out", num_shards=2)
    message = str(info.value)
    assert f"row {bad_row} " in message
    assert 'on_null="drop"' in message
    _assert_nothing_left(tmp_path)


def test_key_function_returning_none_drop(tmp_path: Path) -> None:
    table = make_table(300, 5)
    key = lambda ex: None if ex["i"] % 3 == 0 else ex["k"]  # noqa: E731
    ds = ga.build(table, key=key, output=tmp_path / "out", on_null="drop", num_shards=2)
    kept_rows = [i for i in range(300) if i % 3]
    assert ds.num_rows == len(kept_rows)
    got = sorted(i for g in ds.iter_groups() for i in g.to_arrow().column("i").to_pylist())
    assert got == kept_rows
    for group in ds.iter_groups():
        assert set(group.to_arrow().column("k").to_pylist()) == {group.id}
    assert read_manifest_json(tmp_path / "out")["build"]["rows_dropped_null_key"] == 100


def test_all_keys_null_drop_gives_an_empty_dataset(tmp_path: Path) -> None:
    table = make_table(50)
    ds = ga.build(table, key=lambda ex: None, output=tmp_path / "out", on_null="drop")
    assert ds.num_rows == 0
    assert ds.num_groups == 0
    assert list(ds.iter_groups()) == []
    assert ga.verify(tmp_path / "out").ok


def test_on_null_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"on_null='skip'.*'error', 'drop'"):
        ga.build(make_table(5), key="k", output=tmp_path / "out", on_null="skip")  # type: ignore[arg-type]
