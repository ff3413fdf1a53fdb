"""Invariants of the build, checked on random tables with Hypothesis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_contiguous, read_manifest_json, shard_paths, sorted_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grouparrow as ga
from grouparrow import _sql

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

STRING_KEYS = ["a", "b", "", "é", "日本", "a\\b", "\\", "x y", "'q'", '"dq"', "🙂", "A"]
INT_KEYS = [0, 1, -1, 7, 2**40, -(2**63), 2**63 - 1, 123456789]
BYTES_KEYS = [b"", b"\x00", b"\xff\xfe", b"abc", b"a\\b", b"\x00\x01\x02", b"'"]
ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "bytes": pa.binary()}
ALPHABETS = {"string": STRING_KEYS, "int": INT_KEYS, "bytes": BYTES_KEYS}


@st.composite
def tables(draw: Any) -> tuple[pa.Table, str]:
    """A table with a key column ``k`` (str, int or bytes keys from a small alphabet), the
    row position ``i`` and a nullable string column ``s``; sometimes in several chunks."""
    kind = draw(st.sampled_from(sorted(ALPHABETS)))
    alphabet = draw(st.lists(st.sampled_from(ALPHABETS[kind]), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(0, 300))
    keys = draw(st.lists(st.sampled_from(alphabet), min_size=n, max_size=n))
    strings = draw(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=n, max_size=n))
    table = pa.table(
        {
            "k": pa.array(keys, ARROW_TYPES[kind]),
            "i": pa.array(range(n), pa.int64()),
            "s": pa.array(strings, pa.string()),
        }
    )
    chunks = draw(st.integers(1, 3))
    if chunks > 1 and n > chunks:
        size = n // chunks
        table = pa.concat_tables([table.slice(0, size), table.slice(size)])
    return table, kind


def _duckdb_counts(table: pa.Table) -> dict[Any, int]:
    con = duckdb.connect()
    con.register("t", table)
    rows = con.sql("SELECT k, count(*) FROM t GROUP BY k").fetchall()
    con.close()
    return {bytes(k) if isinstance(k, (bytes, bytearray, memoryview)) else k: n for k, n in rows}


@SETTINGS
@given(
    data=tables(),
    num_shards=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_build_invariants(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[pa.Table, str], num_shards: int, seed: int
) -> None:
    table, kind = data
    out = tmp_path_factory.mktemp("prop") / "out"
    ds = ga.build(table, key="k", output=out, num_shards=num_shards, seed=seed, threads=2)

    # Every input row is in exactly one group: the multiset of rows is unchanged.
    shards = [pq.read_table(p) for p in shard_paths(out)]
    assert len(shards) == num_shards
    output = pa.concat_tables(shards) if shards else None
    assert output is not None
    assert output.num_rows == table.num_rows == ds.num_rows
    assert sorted_rows(output, ["k", "i", "s"]) == sorted_rows(table, ["k", "i", "s"])
    assert output.column("group_id").to_pylist() == output.column("k").to_pylist()

    # Groups are contiguous within their shard file, and in one shard only.
    all_runs = assert_contiguous(out)

    # The index equals a DuckDB GROUP BY on the input.
    index = ds.index
    index_counts = dict(
        zip(index.column("group_id").to_pylist(), index.column("num_rows").to_pylist(), strict=True)
    )
    expected = _duckdb_counts(table)
    assert index_counts == expected
    assert ds.num_groups == len(expected) == index.num_rows
    assert dict(all_runs) == expected
    assert index.schema.field("group_id").type == ARROW_TYPES[kind]
    assert ds.schema.field("group_id").type == ARROW_TYPES[kind]

    # Placement: shard_of(k, seed, num_shards) is the shard the index records.
    for gid, shard in zip(
        index.column("group_id").to_pylist(), index.column("shard").to_pylist(), strict=True
    ):
        assert ga.shard_of(gid, seed, num_shards) == shard

    # Streaming yields every group exactly once, shuffled or not.
    for shuffle in (False, True):
        seen = Counter()
        for group in ds.iter_groups(shuffle=shuffle, seed=seed):
            seen[group.id] += 1
            assert group.num_rows == expected[group.id]
        assert seen == Counter({k: 1 for k in expected})

    # Random access: exactly the input rows with that key, in input order.
    for gid in expected:
        got = ds[gid].to_arrow()
        want = [
            {"k": k, "i": i, "s": s}
            for k, i, s in zip(
                table.column("k").to_pylist(),
                table.column("i").to_pylist(),
                table.column("s").to_pylist(),
                strict=True,
            )
            if k == gid
        ]
        assert got.select(["k", "i", "s"]).to_pylist() == want
        assert set(got.column("group_id").to_pylist()) == {gid}

    assert ga.verify(out).ok


SQL_SEEDS = st.integers(-(2**31), 2**62)


def _macros() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(_sql.load("macros"))
    return con


@settings(max_examples=40, deadline=None)
@given(
    key=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20), seed=SQL_SEEDS
)
def test_key_hash_matches_sql_text(key: str, seed: int) -> None:
    con = _macros()
    (h,) = con.execute("SELECT ga_hash_text($k, $seed)", {"k": key, "seed": seed}).fetchone()
    assert int(h) == ga.key_hash(key, seed)
    con.close()


@pytest.mark.parametrize("key", ["", "\\", "a\\b\\\\c", "日本語", "🙂x", "\\x00", "'\""])
def test_key_hash_matches_sql_text_examples(key: str) -> None:
    con = _macros()
    for seed in (0, 1, 42):
        (h,) = con.execute("SELECT ga_hash_text($k, $seed)", {"k": key, "seed": seed}).fetchone()
        assert int(h) == ga.key_hash(key, seed)
    con.close()


@settings(max_examples=40, deadline=None)
@given(key=st.integers(-(2**63), 2**63 - 1), seed=SQL_SEEDS)
def test_key_hash_matches_sql_int(key: int, seed: int) -> None:
    con = _macros()
    (h,) = con.execute(
        "SELECT ga_hash_text(CAST(CAST($k AS BIGINT) AS VARCHAR), $seed)", {"k": key, "seed": seed}
    ).fetchone()
    assert int(h) == ga.key_hash(key, seed)
    con.close()


@settings(max_examples=40, deadline=None)
@given(key=st.binary(max_size=20), seed=SQL_SEEDS)
def test_key_hash_matches_sql_blob(key: bytes, seed: int) -> None:
    con = _macros()
    (h,) = con.execute(
        "SELECT ga_hash_blob(CAST($k AS BLOB), $seed)", {"k": key, "seed": seed}
    ).fetchone()
    assert int(h) == ga.key_hash(key, seed)
    con.close()


def test_key_hash_rejects_bool() -> None:
    with pytest.raises(TypeError, match="bool"):
        ga.key_hash(True, 0)


def _shard_hashes(path: Any) -> list[str]:
    return [s["sha256"] for s in read_manifest_json(path)["shards"]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), num_shards=st.integers(1, 4), seed=st.integers(0, 1000))
def test_builds_are_deterministic(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[pa.Table, str], num_shards: int, seed: int
) -> None:
    table, _ = data
    base = tmp_path_factory.mktemp("det")
    for threads in (1, 2):
        a = base / f"a{threads}"
        b = base / f"b{threads}"
        ga.build(table, key="k", output=a, num_shards=num_shards, seed=seed, threads=threads)
        ga.build(table, key="k", output=b, num_shards=num_shards, seed=seed, threads=threads)
        assert _shard_hashes(a) == _shard_hashes(b)
        for pa_, pb in zip(shard_paths(a), shard_paths(b), strict=True):
            assert pa_.read_bytes() == pb.read_bytes()
        assert (a / "index.parquet").read_bytes() == (b / "index.parquet").read_bytes()


@pytest.mark.parametrize("num_shards", [1, 3])
def test_builds_are_deterministic_larger_input(tmp_path: Any, num_shards: int) -> None:
    """A larger input, in many chunks, so that DuckDB really uses both threads."""
    from conftest import make_table

    table = make_table(60_000, 3_000, chunks=12, seed=5)
    hashes = {}
    for threads in (1, 2):
        for run in ("a", "b"):
            out = tmp_path / f"{run}{threads}"
            ga.build(table, key="k", output=out, num_shards=num_shards, seed=3, threads=threads)
            hashes[run, threads] = _shard_hashes(out)
        assert hashes["a", threads] == hashes["b", threads]
    # Same input, key and seed give the same output, whatever the number of threads.
    assert hashes["a", 1] == hashes["a", 2]
