"""Fuzzing the build and every read path against DuckDB (issue 8, item 5).

Hypothesis builds random small datasets: random schemas (numbers, booleans, strings, binary,
dates, timestamps, nullable values, and nested lists, structs, maps and lists of structs),
keys of random type (string, int64, binary) drawn with random skew (a few huge groups among
many small ones), by a column, a SQL expression or a Python key function, with 1 to 5 shards,
a random seed and row groups from tiny (groups span many row groups) to the default. For
each one it checks the invariants (every input row in exactly one group, each group's rows
contiguous in one shard and in input order, the index agreeing with the shard files and
with ``shard_of``, ``grouparrow verify`` clean) and that every read path (streaming
unshuffled and shuffled, by worker, by columns; ``ds[id]``, ``get``, ``get_many``; the Arrow
cache; ``to_arrow``, ``to_numpy``, ``to_polars``, ``to_pandas``; ``ds.sql``) agrees with
DuckDB queries on the source.

CI runs a bounded, derandomized number of examples (``FUZZ_EXAMPLES``, 30 for the main
property and half as many for key functions; no example database). For a long local run::

    GROUPARROW_FUZZ_EXAMPLES=2000 python -m pytest -q -p no:cacheprovider \\
        tests/reliability/test_fuzz.py

which also draws fresh random examples (not derandomized) each run; a failure prints the
falsifying example and a ``@reproduce_failure`` line to paste above the test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import assert_contiguous, shard_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grouparrow as ga

LONG = os.environ.get("GROUPARROW_FUZZ_EXAMPLES")
FUZZ_EXAMPLES = int(LONG) if LONG else 30
SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = settings(SETTINGS, max_examples=max(FUZZ_EXAMPLES // 2, 1))

# -- random sources ------------------------------------------------------------------------

KEY_ALPHABETS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "string": (pa.string(), st.text(max_size=8)),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "binary": (pa.binary(), st.binary(max_size=8)),
}

SHORT_TEXT = st.text(max_size=6)
TIMES = st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1))

# name -> (Arrow type, strategy of one non-null value)
COLUMN_KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int32": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "float64": (pa.float64(), st.floats(allow_nan=False, width=64)),
    "bool": (pa.bool_(), st.booleans()),
    "string": (pa.string(), st.text(max_size=12)),
    "large_string": (pa.large_string(), SHORT_TEXT),
    "binary": (pa.binary(), st.binary(max_size=8)),
    "date": (pa.date32(), st.dates(dt.date(1900, 1, 1), dt.date(2200, 1, 1))),
    "timestamp": (pa.timestamp("us"), TIMES),
    "list_int": (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=4)),
    "list_str": (pa.list_(pa.string()), st.lists(st.one_of(st.none(), SHORT_TEXT), max_size=3)),
    "struct": (
        pa.struct([("a", pa.int64()), ("b", pa.string())]),
        st.fixed_dictionaries({"a": st.none() | st.integers(-9, 9), "b": st.none() | SHORT_TEXT}),
    ),
    "map": (
        pa.map_(pa.string(), pa.int64()),
        st.dictionaries(SHORT_TEXT, st.integers(-9, 9), max_size=3).map(lambda d: list(d.items())),
    ),
    "list_struct": (
        pa.list_(pa.struct([("x", pa.float32())])),
        st.lists(st.fixed_dictionaries({"x": st.floats(-1e3, 1e3, width=32)}), max_size=3),
    ),
    "list_list": (
        pa.list_(pa.list_(pa.int8())),
        st.lists(st.lists(st.integers(-128, 127), max_size=2), max_size=2),
    ),
}


@st.composite
def sources(draw: st.DrawFn) -> tuple[pa.Table, str]:
    """A table: key column ``k`` (of a random key type; values drawn with skew from a small
    alphabet), the row position ``i``, and 0-4 random other columns (nullable); sometimes in
    several chunks. Returns it and the key type's name."""
    key_kind = draw(st.sampled_from(sorted(KEY_ALPHABETS)))
    key_type, key_values = KEY_ALPHABETS[key_kind]
    alphabet = draw(st.lists(key_values, min_size=1, max_size=12, unique=True))
    weights = draw(st.lists(st.integers(1, 60), min_size=len(alphabet), max_size=len(alphabet)))
    pool = [value for value, w in zip(alphabet, weights, strict=True) for _ in range(w)]
    n = draw(st.integers(0, 250))
    keys = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    columns: dict[str, pa.Array] = {
        "k": pa.array(keys, key_type),
        "i": pa.array(range(n), pa.int64()),
    }
    for j, kind in enumerate(draw(st.lists(st.sampled_from(sorted(COLUMN_KINDS)), max_size=4))):
        arrow_type, values = COLUMN_KINDS[kind]
        nullable = draw(st.booleans())
        cell = st.one_of(st.none(), values) if nullable else values
        columns[f"c{j}_{kind}"] = pa.array(draw(st.lists(cell, min_size=n, max_size=n)), arrow_type)
    table = pa.table(columns)
    cuts = draw(st.lists(st.integers(0, n), max_size=3))
    if cuts:
        bounds = [0, *sorted(cuts), n]
        table = pa.concat_tables(table.slice(a, b - a) for a, b in itertools.pairwise(bounds))
    return table, key_kind


BUILDS = st.fixed_dictionaries(
    {
        "num_shards": st.integers(1, 5),
        "seed": st.integers(0, 2**32),
        "row_group_bytes": st.sampled_from([256, 4096, 65_536, 8 * 2**20]),
        "threads": st.integers(1, 2),
    }
)

# -- what DuckDB says the groups are -------------------------------------------------------


def normal(value: Any) -> Any:
    """A value as compared: bytes-like as bytes, containers recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(normal(v) for v in value)
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def expected_groups(table: pa.Table, key: str) -> dict[Any, list[dict[str, Any]]]:
    """Each group's rows, in input order: the groups and their rows' positions ``i`` from
    DuckDB on the source (``GROUP BY``), each row's values from the source itself."""
    con = duckdb.connect()
    try:
        con.register("src", table)
        members = con.sql(f"SELECT {key}, list(i ORDER BY i) FROM src GROUP BY {key}").fetchall()
    finally:
        con.close()
    rows = table.to_pylist()
    return {
        normal(gid): [{"group_id": normal(gid), **normal(rows[i])} for i in positions]
        for gid, positions in members
    }


def rows(group: ga.Group) -> list[dict[str, Any]]:
    return [normal(r) for r in group.to_pylist()]


# -- checks --------------------------------------------------------------------------------


def check_dataset(
    ds: ga.GroupedDataset,
    table: pa.Table,
    want: dict[Any, list[dict[str, Any]]],
    seed: int,
    cache: Path,
) -> None:
    out = ds.path
    ids = list(want)
    n = table.num_rows
    # Every input row in exactly one group; sizes equal DuckDB's GROUP BY.
    assert ds.num_rows == n and ds.num_groups == len(want)
    positions = [r["i"] for group in want.values() for r in group]
    assert sorted(positions) == list(range(n))
    # Groups contiguous in one shard; the index equals the shard files.
    assert_contiguous(out)
    index = ds.index.to_pylist()
    assert sorted((normal(r["group_id"]) for r in index), key=repr) == sorted(ids, key=repr)
    shards = [pq.read_table(p) for p in shard_paths(out)]
    assert sum(s.num_rows for s in shards) == n
    for entry in index:
        gid = normal(entry["group_id"])
        assert entry["shard"] == ga.shard_of(gid, seed, ds.num_shards)
        part = shards[entry["shard"]].slice(entry["offset"], entry["num_rows"])
        assert [normal(r) for r in part.to_pylist()] == want[gid]
    report = ga.verify(ds.uri)
    assert report.ok, report
    # Streaming, in storage order and shuffled, whole and by worker, all columns or some.
    for shuffle in (False, True):
        stream = {normal(g.id): rows(g) for g in ds.iter_groups(shuffle=shuffle, seed=seed)}
        assert stream == want
    seen: Counter[Any] = Counter()
    for worker in range(3):
        for group in ds.iter_groups(shuffle=True, seed=1, worker_index=worker, num_workers=3):
            seen[normal(group.id)] += 1
            assert rows(group) == want[normal(group.id)]
    assert seen == Counter(dict.fromkeys(want, 1))
    some = {normal(g.id): g.to_pylist() for g in ds.iter_groups(columns=["i"])}
    assert some == {gid: [{"i": r["i"]} for r in group] for gid, group in want.items()}
    # Random access.
    for gid in ids:
        assert rows(ds[gid]) == want[gid]
        assert gid in ds
    order = ids[::-1]
    assert [rows(g) for g in ds.get_many(order)] == [want[g] for g in order]
    with pytest.raises(ga.GroupNotFoundError):
        ds["no such group" if ds.manifest.key_type == "string" else 1.5]  # type: ignore[index]
    # The Arrow cache: streaming and random access read the converted shards.
    cached = ga.open(ds.uri, cache_dir=cache)
    assert {normal(g.id): rows(g) for g in cached.iter_groups(shuffle=True, seed=2)} == want
    assert [rows(g) for g in cached.get_many(ids)] == [want[g] for g in ids]
    # Adapters.
    for gid in ids[:5]:
        group = ds[gid]
        expected_i = [r["i"] for r in want[gid]]
        assert group.to_numpy("i").tolist() == expected_i
        assert group.to_arrow().column("i").to_pylist() == expected_i
        assert group.to_pandas()["i"].tolist() == expected_i
        if not any(pa.types.is_map(f.type) for f in ds.schema):
            frame = group.to_polars()
            assert frame.height == len(expected_i) and frame["i"].to_list() == expected_i
    # SQL on the dataset equals DuckDB on the source.
    con = duckdb.connect()
    try:
        con.register("src", table)
        source_counts = dict(con.sql("SELECT k, count(*) FROM src GROUP BY k").fetchall())
    finally:
        con.close()
    counts = dict(ds.sql("SELECT group_id, count(*) FROM examples GROUP BY 1").fetchall())
    assert {normal(k): v for k, v in counts.items()} == {
        normal(k): v for k, v in source_counts.items()
    }
    sizes = dict(ds.sql("SELECT group_id, num_rows FROM groups").fetchall())
    assert {normal(k): v for k, v in sizes.items()} == {g: len(r) for g, r in want.items()}
    for gid in ids[:5]:
        got = ds.sql("SELECT i FROM examples WHERE group_id = $g ORDER BY i", {"g": gid})
        assert [i for (i,) in got.fetchall()] == [r["i"] for r in want[gid]]


# -- properties ----------------------------------------------------------------------------


@SETTINGS
@given(data=sources(), build=BUILDS)
def test_random_datasets_agree_with_duckdb(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[pa.Table, str], build: dict[str, Any]
) -> None:
    table, _ = data
    root = tmp_path_factory.mktemp("fuzz")
    ds = ga.build(table, key="k", output=root / "out", **build)
    want = expected_groups(table, "k")
    check_dataset(ds, table, want, build["seed"], root / "cache")


KEY_FORMS = ["sql", "key_fn", "batch_key_fn"]


def key_of(form: str, kind: str) -> Any:
    """The key ``k`` given another way: as SQL, a function of one example or of a batch."""
    if form == "sql":
        return ga.sql("k")
    if form == "key_fn":
        return ga.key_fn(lambda ex: ex["k"], columns=["k"], type=kind)  # type: ignore[arg-type]
    return ga.batch_key_fn(lambda batch: batch.column("k"), columns=["k"], type=kind)  # type: ignore[arg-type]


@FEWER
@given(data=sources(), build=BUILDS, form=st.sampled_from(KEY_FORMS))
def test_random_key_forms_agree_with_duckdb(
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[pa.Table, str],
    build: dict[str, Any],
    form: str,
) -> None:
    """The same grouping through DuckDB SQL and the Python UDF paths."""
    table, kind = data
    root = tmp_path_factory.mktemp("fuzz-key")
    ds = ga.build(table, key=key_of(form, kind), output=root / "out", **build)
    assert ds.manifest.key_type == kind
    check_dataset(ds, table, expected_groups(table, "k"), build["seed"], root / "cache")


def test_fuzz_settings_are_bounded_in_ci() -> None:
    """CI runs a fixed, small number of derandomized examples; the long run is opt-in."""
    if LONG:
        pytest.skip("GROUPARROW_FUZZ_EXAMPLES is set: a long run")
    assert SETTINGS.max_examples == 30 and SETTINGS.derandomize and SETTINGS.database is None
    assert FEWER.max_examples == 15
    assert np.iinfo(np.int64).max == 2**63 - 1  # the int64 key alphabet's top is reachable
