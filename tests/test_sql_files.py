"""Each SQL file loads and runs on a tiny table; templates and quoting helpers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import grouparrow as ga
from grouparrow import _sql

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
SQL_NAMES = sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(_sql.load("macros"))
    return con


def _placeholders(name: str) -> set[str]:
    text = "\n".join(
        line for line in _sql.load(name).splitlines() if not line.lstrip().startswith("--")
    )
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))


def test_sql_files_present() -> None:
    assert {"macros", "keyed", "partition", "cluster"} <= set(SQL_NAMES)


@pytest.mark.parametrize("name", SQL_NAMES)
def test_each_sql_file_loads(name: str) -> None:
    text = _sql.load(name)
    assert text == (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
    assert text.strip()
    # Each file says what it does in a leading comment.
    assert text.lstrip().startswith("--")


def test_load_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"no_such_file\.sql is missing"):
        _sql.load("no_such_file")


# -- macros.sql -----------------------------------------------------------------------------


def _md5_le(data: bytes) -> int:
    return int.from_bytes(hashlib.md5(data).digest(), "little")


def test_macros_known_answers() -> None:
    con = _connect()
    h, shard, order = con.execute(
        "SELECT ga_hash_text('a', 0), ga_shard(ga_hash_text('a', 0), 8), "
        "ga_order(ga_hash_text('a', 0))"
    ).fetchone()
    assert int(h) == _md5_le(b"0:a") == ga.key_hash("a", 0)
    assert shard == (ga.key_hash("a", 0) & (2**64 - 1)) % 8 == ga.shard_of("a", 0, 8)
    assert order == ga.key_hash("a", 0) >> 64
    (blob,) = con.execute("SELECT ga_hash_blob('\\x00\\xFF'::BLOB, 7)").fetchone()
    assert int(blob) == _md5_le(b"7:\x00\xff") == ga.key_hash(b"\x00\xff", 7)
    (number,) = con.execute("SELECT ga_hash_text(CAST(-42 AS VARCHAR), 3)").fetchone()
    assert int(number) == _md5_le(b"3:-42") == ga.key_hash(-42, 3)
    con.close()


def test_macros_on_a_tiny_table() -> None:
    con = _connect()
    table = pa.table({"k": ["a", "b", "ü", "a\\b", ""], "n": [1, 2, 3, 4, 5]})
    con.register("t", table)
    rows = con.execute(
        "SELECT k, ga_shard(ga_hash_text(k, $seed), $n) AS shard, "
        "ga_order(ga_hash_text(k, $seed)) AS ord FROM t ORDER BY n",
        {"seed": 11, "n": 5},
    ).fetchall()
    for key, shard, order in rows:
        assert shard == ga.shard_of(key, 11, 5)
        assert 0 <= shard < 5
        assert order == ga.key_hash(key, 11) >> 64
    con.close()


def test_macros_are_idempotent() -> None:
    con = _connect()
    con.execute(_sql.load("macros"))  # CREATE OR REPLACE: loading twice is fine
    assert con.execute("SELECT ga_shard(ga_hash_text('x', 1), 1)").fetchone() == (0,)
    con.close()


# -- keyed.sql, cluster.sql, partition.sql --------------------------------------------------

SOURCE = pa.table(
    {
        "k": ["b", "a", "b", "c", "a", "b"],
        "v": [10, 20, 30, 40, 50, 60],
        "__ga_row": pa.array(range(6), pa.int64()),
    }
)


def _keyed() -> str:
    return _sql.render(
        "keyed",
        key=_sql.ident("k"),
        key_check="__ga_key",
        key_column=_sql.ident("group_id"),
        exclude="__ga_key",
        where="",
        key_hash="ga_hash_text({k}, $seed)".format(k=_sql.ident("group_id")),
    )


def test_keyed_sql_runs() -> None:
    con = _connect()
    con.register("__ga_source", SOURCE)
    result = con.sql(_keyed(), params={"seed": 4, "num_shards": 3}).to_arrow_table()
    assert result.column_names[:4] == ["__ga_shard", "__ga_order", "__ga_order_low", "group_id"]
    assert set(result.column_names) == {
        "__ga_shard",
        "__ga_order",
        "__ga_order_low",
        "group_id",
        "k",
        "v",
        "__ga_row",
    }
    assert sorted(result.column("__ga_row").to_pylist()) == list(range(6))
    for row in result.to_pylist():
        assert row["group_id"] == row["k"]
        assert row["__ga_shard"] == ga.shard_of(row["k"], 4, 3)
        assert row["__ga_order"] == ga.key_hash(row["k"], 4) >> 64
        assert row["__ga_order_low"] == ga.key_hash(row["k"], 4) & (2**64 - 1)
    con.close()


def test_cluster_sql_runs() -> None:
    con = _connect()
    con.register("__ga_source", SOURCE)
    query = _sql.render("cluster", rows=_keyed())
    result = con.sql(query, params={"seed": 4, "num_shards": 1}).to_arrow_table()
    assert result.column_names == ["group_id", "k", "v"]
    keys = result.column("group_id").to_pylist()
    # Contiguous groups in hash order, rows of a group in input order.
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert sorted(runs) == ["a", "b", "c"]
    assert [ga.key_hash(k, 4) >> 64 for k in runs] == sorted(ga.key_hash(k, 4) >> 64 for k in runs)
    for key in runs:
        values = [v for k, v in zip(keys, result.column("v").to_pylist(), strict=True) if k == key]
        assert values == [
            v
            for k, v in zip(SOURCE["k"].to_pylist(), SOURCE["v"].to_pylist(), strict=True)
            if k == key
        ]
    con.close()


def test_partition_sql_runs(tmp_path: Path) -> None:
    con = _connect()
    con.register("__ga_source", SOURCE)
    target = tmp_path / "it's a map"
    statement = _sql.render("partition", keyed=_keyed(), path=_sql.literal(str(target)))
    con.execute(statement, {"seed": 4, "num_shards": 3})
    shards = {}
    for folder in sorted(target.iterdir()):
        match = re.fullmatch(r"__ga_shard=(\d+)", folder.name)
        assert match, folder.name
        table = pq.read_table(next(iter(folder.glob("*.parquet"))))
        shards[int(match.group(1))] = table
    rows = sum(t.num_rows for t in shards.values())
    assert rows == 6
    for shard, table in shards.items():
        for key in table.column("group_id").to_pylist():
            assert ga.shard_of(key, 4, 3) == shard
    con.close()


# -- render ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in SQL_NAMES if _placeholders(n)])
def test_render_rejects_missing_and_extra_placeholders(name: str) -> None:
    wanted = _placeholders(name)
    assert wanted
    parts = {p: "x" for p in wanted}
    rendered = _sql.render(name, **parts)
    assert "{{" not in rendered
    missing = dict(parts)
    missing.pop(sorted(wanted)[0])
    with pytest.raises(TypeError) as info:
        _sql.render(name, **missing)
    assert f"{name}.sql takes" in str(info.value)
    assert sorted(wanted)[0] in str(info.value)
    with pytest.raises(TypeError, match="unexpected_part"):
        _sql.render(name, **parts, unexpected_part="1")


def test_render_drops_comment_lines() -> None:
    rendered = _sql.render("cluster", rows='SELECT 1 AS "g"')
    assert "--" not in rendered
    assert '"g"' in rendered


def test_render_macros_takes_nothing() -> None:
    assert "ga_hash_text" in _sql.render("macros")
    with pytest.raises(TypeError):
        _sql.render("macros", key="k")


# -- quoting --------------------------------------------------------------------------------


def test_ident_and_literal_text() -> None:
    assert _sql.ident('a"b') == '"a""b"'
    assert _sql.ident("plain") == '"plain"'
    assert _sql.literal("it's") == "'it''s'"
    assert _sql.literal("a''b") == "'a''''b'"
    assert _sql.literal("back\\slash") == "'back\\slash'"


def test_ident_and_literal_in_a_real_query(tmp_path: Path) -> None:
    folder = tmp_path / "it's here"
    folder.mkdir()
    path = folder / "o'neil.parquet"
    column = 'a"b'
    pq.write_table(pa.table({column: [1, 2, 3], "select": ["x", "y'z", 'q"']}), path)
    con = duckdb.connect()
    query = (
        f"SELECT {_sql.ident(column)} AS v, {_sql.ident('select')} AS s "
        f"FROM read_parquet({_sql.literal(str(path))}) ORDER BY 1"
    )
    assert con.execute(query).fetchall() == [(1, "x"), (2, "y'z"), (3, 'q"')]
    con.execute(f"CREATE TABLE {_sql.ident('t; DROP')} AS SELECT 1 AS {_sql.ident(column)}")
    assert con.execute(f"SELECT {_sql.ident(column)} FROM {_sql.ident('t; DROP')}").fetchall() == [
        (1,)
    ]
    con.close()


def test_build_with_quotes_in_names_and_paths(tmp_path: Path) -> None:
    """The same quoting, end to end: odd column names and an output path with a quote."""
    table = pa.table({'us"er': ["a", "b", "a"], "it's": [1, 2, 3], "select": ["x y", "z", "w"]})
    out = tmp_path / "it's" / "out"
    ds = ga.build(table, key='us"er', output=out, num_shards=2)
    assert ds.schema.names == ["group_id", 'us"er', "it's", "select"]
    assert ds["a"].to_arrow().column("it's").to_pylist() == [1, 3]
    assert ga.verify(out).ok
    ds = ga.build(table, key=ga.sql('upper("us""er")'), output=tmp_path / "sql", key_column='g"id')
    assert ds.schema.names[0] == 'g"id'
    assert ds["A"].num_rows == 2
