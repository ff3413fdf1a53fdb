"""Composite keys: ``key=("user", "day")`` groups by the tuple of the parts, stores the
group id as the JSON array text of the parts and reads it back as a tuple."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import assert_contiguous, read_manifest_json, row_number, shard_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grouparrow as ga
from grouparrow.keys import composite_id

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

USERS = ["ann", "bob", "", "é", "日本", 'q"uote', "back\\slash", "🙂", "a,b", '["x",1]', "\\u0041"]
DAYS = [0, 1, -1, 3, 2**40, -(2**63), 2**63 - 1]
#: Text with no unpaired surrogates (they cannot be stored as UTF-8).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
INT64 = st.integers(-(2**63), 2**63 - 1)


def _table(pairs: list[tuple[Any, Any]], *, seed: int = 0) -> pa.Table:
    """One row per ``(user, day)`` pair (nulls allowed), with the input position ``i``."""
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    pairs = [pairs[j] for j in order]
    return pa.table(
        {
            "user": pa.array([u for u, _ in pairs], pa.string()),
            "day": pa.array([d for _, d in pairs], pa.int64()),
            "i": pa.array(range(len(pairs)), pa.int64()),
            "x": pa.array([float(j) / 7 for j in range(len(pairs))], pa.float64()),
        }
    )


def _expected(table: pa.Table, key: Any = None) -> dict[tuple[Any, ...], list[int]]:
    """The input positions of each group's rows, in input order, by a plain Python dict:
    ``key(row)`` (default: the (user, day) pair); rows with a null part are left out."""
    key = key or (lambda row: (row["user"], row["day"]))
    out: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for row in table.to_pylist():
        gid = key(row)
        if None not in gid:
            out[gid].append(row["i"])
    return dict(out)


def _streamed(ds: ga.GroupedDataset) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = {}
    for group in ds.iter_groups():
        assert group.id not in out
        out[group.id] = group.to_arrow().column("i").to_pylist()
    return out


def _build(table: pa.Table, out: Path, key: Any = ("user", "day"), **kw: Any) -> Any:
    kw.setdefault("threads", 2)
    return ga.build(table, key=key, output=out, **kw)


_DUCKDB: list[duckdb.DuckDBPyConnection] = []


def _duckdb_json(values: list[Any], types: list[str]) -> str:
    """DuckDB's ``json_array`` of ``values`` (cast to ``types``) as text, as the build
    computes composite ids."""
    if not _DUCKDB:
        _DUCKDB.append(duckdb.connect())
    args = ", ".join(f"CAST(${n} AS {t})" for n, t in enumerate(types, 1))
    params = {str(n): v for n, v in enumerate(values, 1)}
    sql = f"SELECT CAST(json_array({args}) AS VARCHAR)"
    (text,) = _DUCKDB[0].execute(sql, params).fetchone()
    return str(text)


PAIRS = [(u, d) for u in USERS for d in DAYS[:3]] + [("ann", DAYS[4]), ("bob", DAYS[5])] * 3


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ga.GroupedDataset, pa.Table]:
    table = _table([p for p in PAIRS for _ in range(1 + len(p[0]) % 2)] + PAIRS, seed=1)
    out = tmp_path_factory.mktemp("composite") / "out"
    return _build(table, out, num_shards=3, seed=4), table


# -- building -------------------------------------------------------------------------------


def test_every_row_lands_in_the_group_of_its_pair(
    built: tuple[ga.GroupedDataset, pa.Table],
) -> None:
    ds, table = built
    expected = _expected(table)
    assert _streamed(ds) == expected
    assert ds.num_groups == len(ds) == len(expected)
    assert ds.num_rows == table.num_rows
    assert sorted(ds.group_ids(), key=repr) == sorted(expected, key=repr)
    assert all(isinstance(g, tuple) for g in ds.group_ids())
    for gid, rows in expected.items():
        group = ds[gid]
        assert group.id == gid
        assert isinstance(group.id, tuple)
        arrow = group.to_arrow()
        assert arrow.column("i").to_pylist() == rows
        users, days = arrow.column("user").to_pylist(), arrow.column("day").to_pylist()
        assert set(zip(users, days, strict=True)) == {gid}
    assert_contiguous(ds.path)
    assert ga.verify(ds.path).ok


def test_stored_ids_are_json_text(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    assert ds.schema.field(ds.key_column).type == pa.string()
    stored = ds.index.column("group_id").to_pylist()
    assert stored == [composite_id(g) for g in ds.group_ids()]
    assert [tuple(json.loads(s)) for s in stored] == ds.group_ids()
    assert composite_id(("ann", 3)) == '["ann",3]'
    assert '["ann",0]' in stored
    assert '["🙂",-1]' in stored
    assert '["back\\\\slash",1]' in stored
    assert '["q\\"uote",0]' in stored
    # The key column of each shard file holds the same text.
    for path in shard_paths(ds.path):
        column = pq.read_table(path, columns=[ds.key_column]).column(0).to_pylist()
        assert set(column) <= set(stored)
    key = read_manifest_json(ds.path)["key"]
    assert (key["kind"], key["definition"]) == ("composite", "(user, day)")
    assert ds.manifest.key["kind"] == "composite"


def test_reopened_dataset_reads_tuples(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    again = ga.open(ds.path)
    assert again.group_ids() == ds.group_ids()
    assert _streamed(again) == _expected(table)
    shuffled = {g.id for g in again.iter_groups(shuffle=True, seed=3)}
    assert shuffled == set(ds.group_ids())


def test_lookup_by_tuple(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    expected = _expected(table)
    gid = ("back\\slash", -1)
    assert gid in ds
    assert ds[gid].to_arrow().column("i").to_pylist() == expected[gid]
    assert ds.get(gid).id == gid
    # A list of the parts finds the group too; the group's id is the tuple.
    assert list(gid) in ds
    assert ds[list(gid)].id == gid  # type: ignore[index]
    # Part values and types must match exactly.
    for missing in [
        ("ann", 2),
        ("ann", "0"),
        ("ann",),
        ("ann", 0, 0),
        (0, "ann"),
        ("ann", 0.0),
        ("ann", None),
        ("ann", b"0"),
        (),
        "ann",
        0,
        None,
    ]:
        assert missing not in ds, missing
        assert ds.get(missing) is None  # type: ignore[arg-type]
        with pytest.raises(ga.GroupNotFoundError) as info:
            ds[missing]  # type: ignore[index]
        assert isinstance(info.value, KeyError)
        assert repr(missing) in str(info.value)


def test_python_function_part(tmp_path: Path) -> None:
    table = _table([(u, d) for u in USERS[:5] for d in (1, 2, 3, 4)] * 2)

    def lower_initial(ex: Any) -> str:
        return ex["user"][:1].lower()

    ds = _build(table, tmp_path / "out", key=(lower_initial, "day"), num_shards=2)
    expected = _expected(table, lambda row: (row["user"][:1].lower(), row["day"]))
    assert _streamed(ds) == expected
    assert ds.manifest.key["kind"] == "composite"
    # A function returning int, next to a declared key_fn.
    ds2 = _build(
        table,
        tmp_path / "out2",
        key=(lambda ex: ex["day"] % 2, ga.key_fn(lambda ex: ex["user"], columns=["user"])),
    )
    assert _streamed(ds2) == _expected(table, lambda row: (row["day"] % 2, row["user"]))


def test_sql_and_batch_parts(tmp_path: Path) -> None:
    table = _table([(u, d) for u in USERS for d in (-3, 0, 5, 10)])
    key = (
        ga.sql("day % 2"),
        ga.batch_key_fn(lambda b: pc.utf8_length(b["user"]), columns=["user"]),
        "user",
    )
    ds = _build(table, tmp_path / "out", key=key, num_shards=2)
    # DuckDB's % keeps the sign of the dividend, like C.
    expected = _expected(
        table,
        lambda row: (
            int(np.fmod(row["day"], 2)),
            len(row["user"]),
            row["user"],
        ),
    )
    assert _streamed(ds) == expected
    for gid in expected:
        assert len(gid) == 3
        assert gid in ds


def test_single_part_and_several_integer_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "a": pa.array([1, 2, 1, -1], pa.int8()),
            "b": pa.array([2**64 - 1, 5, 2**64 - 1, 0], pa.uint64()),
            "i": pa.array(range(4), pa.int64()),
        }
    )
    ds = _build(table, tmp_path / "one", key=("a",))
    assert sorted(ds.group_ids()) == [(-1,), (1,), (2,)]
    assert ds[(1,)].to_arrow().column("i").to_pylist() == [0, 2]
    ds = _build(table, tmp_path / "two", key=("a", "b"))
    assert set(ds.group_ids()) == {(1, 2**64 - 1), (2, 5), (-1, 0)}
    assert ds[(1, 2**64 - 1)].num_rows == 2


def test_parts_that_could_collide_stay_apart(tmp_path: Path) -> None:
    """Separators and quotes inside string parts cannot merge two different tuples."""
    table = pa.table(
        {
            "p": ['a","b', "a", "a,b", "a", '"', "", "1"],
            "q": ["c", 'b","c', "c", "b,c", '"', "", "1"],
            "i": list(range(7)),
        }
    )
    ds = _build(table, tmp_path / "out", key=("p", "q"))
    assert ds.num_groups == 7
    for row in table.to_pylist():
        assert ds[(row["p"], row["q"])].to_arrow().column("i").to_pylist() == [row["i"]]


# -- nulls ----------------------------------------------------------------------------------


NULL_PAIRS = [("ann", 1), (None, 1), ("ann", None), (None, None), ("bob", 2), ("ann", 1)]


def test_null_part_is_an_error(tmp_path: Path) -> None:
    table = _table(NULL_PAIRS)
    with pytest.raises(ga.NullKeyError) as info:
        _build(table, tmp_path / "out")
    message = str(info.value)
    users, days = table.column("user").to_pylist(), table.column("day").to_pylist()
    null_rows = {n for n, (u, d) in enumerate(zip(users, days, strict=True)) if None in (u, d)}
    assert row_number(message) in null_rows
    assert 'on_null="drop"' in message
    assert "composite" in message
    assert not (tmp_path / "out").exists()


def test_null_part_drop(tmp_path: Path) -> None:
    table = _table(NULL_PAIRS * 5, seed=3)
    ds = _build(table, tmp_path / "out", on_null="drop", num_shards=2)
    expected = _expected(table)
    assert set(expected) == {("ann", 1), ("bob", 2)}
    assert _streamed(ds) == expected
    assert ds.num_rows == sum(len(r) for r in expected.values()) == 15
    assert read_manifest_json(tmp_path / "out")["build"]["rows_dropped_null_key"] == 15
    assert (None, 1) not in ds and ("ann", None) not in ds


def test_null_from_function_part(tmp_path: Path) -> None:
    table = _table([("ann", 1), ("bob", 2), ("cy", 3)] * 3)
    key = ("user", lambda ex: None if ex["user"] == "bob" else 7)
    with pytest.raises(ga.NullKeyError):
        _build(table, tmp_path / "out", key=key)
    ds = _build(table, tmp_path / "out2", key=key, on_null="drop")
    assert sorted(ds.group_ids()) == [("ann", 7), ("cy", 7)]


# -- bad specs ------------------------------------------------------------------------------


def _typed_table() -> pa.Table:
    return pa.table(
        {
            "user": ["a", "b"],
            "f": pa.array([1.5, 2.5]),
            "blob": pa.array([b"x", b"y"], pa.binary()),
            "flag": [True, False],
            "i": [0, 1],
        }
    )


@pytest.mark.parametrize(
    ("part", "shown"),
    [
        ("f", "'f'"),
        ("blob", "'blob'"),
        (ga.sql("f * 2"), "f * 2"),
        (lambda ex: ex["blob"], "BLOB"),
    ],
)
def test_part_of_a_bad_type(tmp_path: Path, part: Any, shown: str) -> None:
    with pytest.raises(ga.KeySpecError) as info:
        _build(_typed_table(), tmp_path / "out", key=("user", part))
    message = str(info.value)
    assert shown in message
    assert "string" in message and "integer" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ((), "empty"),
        (("user", "nope"), "'nope' is not a column"),
        (("user", 3.5), "not a key"),
        (("user", ga.sql("no_such(user)")), "does not work"),
    ],
)
def test_bad_composite_specs(tmp_path: Path, key: Any, match: str) -> None:
    with pytest.raises(ga.KeySpecError, match=match):
        _build(_typed_table(), tmp_path / "out", key=key)


# -- JSON text: DuckDB's json_array and composite_id agree ---------------------------------


@settings(max_examples=60, deadline=None)
@given(text=TEXT, number=INT64)
def test_duckdb_json_matches_composite_id(text: str, number: int) -> None:
    duck = _duckdb_json([text, number], ["VARCHAR", "BIGINT"])
    assert duck == composite_id((text, number))
    assert json.loads(duck) == [text, number]


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",))))
def test_duckdb_json_matches_python_json(text: str) -> None:
    """Outside control characters, the stored text is ``json.dumps`` with
    ``ensure_ascii=False`` and compact separators."""
    duck = _duckdb_json([text, -5, text], ["VARCHAR", "INTEGER", "VARCHAR"])
    python = json.dumps([text, -5, text], ensure_ascii=False, separators=(",", ":"))
    assert duck == python == composite_id((text, -5, text))


@pytest.mark.parametrize("code", [*range(0x20), 0x7F, 0x80, 0x2028, 0xFEFF])
def test_control_characters_match_duckdb(code: int) -> None:
    text = f"a{chr(code)}b"
    assert _duckdb_json([text], ["VARCHAR"]) == composite_id((text,))


def test_composite_id_rejects_other_types() -> None:
    for bad in [(1.5,), (b"x",), (True,), (None,), ("a", [1])]:
        with pytest.raises(TypeError, match="str or int"):
            composite_id(bad)  # type: ignore[arg-type]


@SETTINGS
@given(
    users=st.lists(TEXT, min_size=1, max_size=4, unique=True),
    days=st.lists(INT64, min_size=1, max_size=3, unique=True),
    picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=30),
    num_shards=st.integers(1, 3),
)
def test_composite_build_property(
    tmp_path_factory: pytest.TempPathFactory,
    users: list[str],
    days: list[int],
    picks: list[tuple[int, int]],
    num_shards: int,
) -> None:
    """Any strings (unicode, quotes, backslashes, control characters) and any int64 parts:
    each row lands in the group of its pair, ids round-trip and lookups find them."""
    pairs = [(users[u % len(users)], days[d % len(days)]) for u, d in picks]
    table = _table(pairs, seed=len(pairs))
    out = tmp_path_factory.mktemp("prop-composite") / "out"
    ds = _build(table, out, num_shards=num_shards)
    expected = _expected(table)
    assert _streamed(ds) == expected
    assert ds.index.column("group_id").to_pylist() == [composite_id(g) for g in ds.group_ids()]
    shards = dict(zip(ds.group_ids(), ds.index.column("shard").to_pylist(), strict=True))
    for gid, rows in expected.items():
        assert gid in ds
        assert ds[gid].to_arrow().column("i").to_pylist() == rows
        assert ga.shard_of(composite_id(gid), ds.manifest.seed, num_shards) == shards[gid]


# -- splits of composite datasets -----------------------------------------------------------


def test_splits_with_composite_ids(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    expected = _expected(table)
    train, test = ds.split_groups(0.4, seed=2)
    assert set(train.group_ids()) | set(test.group_ids()) == set(expected)
    assert set(train.group_ids()).isdisjoint(test.group_ids())
    assert test.num_groups and train.num_groups
    for gid in test.group_ids():
        assert isinstance(gid, tuple)
        assert gid in test and gid not in train
        with pytest.raises(ga.GroupNotFoundError, match="other side"):
            train[gid]
    assert train.num_rows + test.num_rows == ds.num_rows
    fit, held = ds.split_rows(0.5, seed=1)
    fit_rows, held_rows = _streamed(fit), _streamed(held)
    assert list(fit_rows) == list(held_rows) == ds.group_ids()
    for gid, rows in expected.items():
        assert sorted(fit_rows[gid] + held_rows[gid]) == sorted(rows)
        a, b = ds[gid].split(0.5, seed=1)
        assert a.to_arrow().column("i").to_pylist() == fit_rows[gid]
        assert b.to_arrow().column("i").to_pylist() == held_rows[gid]
        assert held[gid].to_arrow().column("i").to_pylist() == held_rows[gid]
        assert held[list(gid)].to_arrow().column("i").to_pylist() == held_rows[gid]
    assert fit.num_rows + held.num_rows == ds.num_rows


def test_splits_with_control_characters(tmp_path: Path) -> None:
    """A part with a control character DuckDB escapes in upper-case hex (U+001F) splits the
    same whether the group is streamed or fetched by its tuple."""
    pairs = [("a\x1fb", 1)] * 40 + [("a\x0bb", 2)] * 40 + [("plain", 3)] * 5
    table = _table(pairs)
    ds = _build(table, tmp_path / "out")
    fit, held = ds.split_rows(0.5, seed=0)
    streamed = _streamed(held)
    for gid in [("a\x1fb", 1), ("a\x0bb", 2)]:
        assert gid in ds
        assert held[gid].to_arrow().column("i").to_pylist() == streamed[gid]
        assert ds[gid].split(0.5, seed=0)[1].num_rows == len(streamed[gid])
    assert fit.num_rows + held.num_rows == 85
