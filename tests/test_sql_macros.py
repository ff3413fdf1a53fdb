"""The statistics macros of sql/stats.sql, checked against independent numpy computations."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grouparrow import _sql
from grouparrow.format import label_counts_type

QUANTILE_FIELDS = ["min", "p10", "p25", "median", "mean", "p75", "p90", "p99", "max"]


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(_sql.load("stats"))  # the whole file in one execute
    return con


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _connect()
    yield connection
    connection.close()


def _row(con: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> tuple[Any, ...]:
    """The single row of a query (fetchall: DuckDB 2 refuses new work on an unfinished result)."""
    rows = con.execute(query, params).fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def _one(con: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> Any:
    """The single value of a query."""
    (value,) = _row(con, query, params)
    return value


# -- independent reference implementations -------------------------------------------------


def _np_entropy(counts: Sequence[float]) -> float:
    p = np.asarray(counts, dtype=float)
    p = p / p.sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _np_js(p_counts: Sequence[float], q_counts: Sequence[float]) -> float:
    p = np.asarray(p_counts, dtype=float)
    q = np.asarray(q_counts, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / m[mask])).sum())

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _np_hellinger(p_counts: Sequence[float], q_counts: Sequence[float]) -> float:
    # The Euclidean form, ||sqrt(p) - sqrt(q)|| / sqrt(2): not the formula the macro uses.
    p = np.asarray(p_counts, dtype=float)
    q = np.asarray(q_counts, dtype=float)
    return float(np.linalg.norm(np.sqrt(p / p.sum()) - np.sqrt(q / q.sum())) / math.sqrt(2))


def _np_gini(values: Sequence[float]) -> float:
    x = np.asarray(values, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


# -- loading --------------------------------------------------------------------------------


def test_file_loads_in_one_execute_and_twice() -> None:
    con = _connect()
    con.execute(_sql.load("stats"))  # CREATE OR REPLACE: loading again is fine
    names = {
        row[0]
        for row in con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE starts_with(function_name, 'ga_')"
        ).fetchall()
    }
    assert names == {
        "ga_size_quantiles",
        "ga_gini",
        "ga_entropy",
        "ga_label_entropy",
        "ga_js_distance",
        "ga_hellinger",
        "ga_label_skew",
    }
    con.close()


# -- ga_size_quantiles ----------------------------------------------------------------------


def test_size_quantiles_match_numpy(con: duckdb.DuckDBPyConnection) -> None:
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8]
    con.register("sizes", pa.table({"num_rows": pa.array(values, pa.int64())}))
    result = _one(con, "SELECT ga_size_quantiles(num_rows) FROM sizes")
    assert list(result) == QUANTILE_FIELDS
    x = np.asarray(values, dtype=float)
    expected = {
        "min": 1.0,
        "p10": np.quantile(x, 0.1),
        "p25": np.quantile(x, 0.25),
        "median": np.quantile(x, 0.5),
        "mean": x.mean(),
        "p75": np.quantile(x, 0.75),
        "p90": np.quantile(x, 0.9),
        "p99": np.quantile(x, 0.99),
        "max": 9.0,
    }
    assert result == pytest.approx(expected, rel=1e-12)
    types = _one(con, "SELECT typeof(ga_size_quantiles(num_rows)) FROM sizes")
    assert types == "STRUCT(" + ", ".join(f"{f} DOUBLE" for f in QUANTILE_FIELDS) + ")"
    con.unregister("sizes")


def test_size_quantiles_known_values_and_nulls(con: duckdb.DuckDBPyConnection) -> None:
    result = _one(con, "SELECT ga_size_quantiles(x) FROM range(11) t(x)")
    assert result == pytest.approx(
        {
            "min": 0.0,
            "p10": 1.0,
            "p25": 2.5,
            "median": 5.0,
            "mean": 5.0,
            "p75": 7.5,
            "p90": 9.0,
            "p99": 9.9,
            "max": 10.0,
        }
    )
    # NULL values are ignored; a single value gives that value everywhere.
    single = _one(con, "SELECT ga_size_quantiles(x) FROM (VALUES (NULL), (7), (NULL)) t(x)")
    assert single == dict.fromkeys(QUANTILE_FIELDS, 7.0)
    # No rows, or only NULLs: a NULL struct.
    assert _one(con, "SELECT ga_size_quantiles(x) FROM range(0) t(x)") is None
    assert _one(con, "SELECT ga_size_quantiles(CAST(NULL AS BIGINT))") is None


def test_size_quantiles_per_group(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT g, ga_size_quantiles(x).median, ga_size_quantiles(x).max "
        "FROM (VALUES ('a', 1), ('a', 2), ('b', 10), ('b', 20), ('b', 60)) t(g, x) "
        "GROUP BY g ORDER BY g"
    ).fetchall()
    assert rows == [("a", 1.5, 2.0), ("b", 20.0, 60.0)]


# -- ga_gini --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 1, 1, 1], 0.0),
        ([0, 0, 0, 1], 0.75),  # at most 1 - 1/n
        ([5], 0.0),
        ([0, 1], 0.5),
        ([1, 2, 3, 4], 0.25),
        ([2.5, 0.5], 1 / 3),
    ],
)
def test_gini_known_values(
    con: duckdb.DuckDBPyConnection, values: list[float], expected: float
) -> None:
    got = _one(con, "SELECT ga_gini(x) FROM (SELECT unnest($v) AS x)", {"v": values})
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(_np_gini(values), abs=1e-12)


def test_gini_nulls_and_empty(con: duckdb.DuckDBPyConnection) -> None:
    # NULL values are ignored.
    assert _one(con, "SELECT ga_gini(x) FROM (VALUES (0), (NULL), (0), (0), (1)) t(x)") == 0.75
    # No rows, only NULLs, or a zero sum: NULL.
    assert _one(con, "SELECT ga_gini(x) FROM range(0) t(x)") is None
    assert _one(con, "SELECT ga_gini(CAST(NULL AS DOUBLE))") is None
    assert _one(con, "SELECT ga_gini(x) FROM (VALUES (0), (0)) t(x)") is None


def test_gini_per_group_and_input_order(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT g, ga_gini(x) FROM (VALUES ('a', 4), ('b', 1), ('a', 1), ('b', 1), ('a', 3), "
        "('a', 2)) t(g, x) GROUP BY g ORDER BY g"
    ).fetchall()
    assert rows == [("a", pytest.approx(0.25)), ("b", 0.0)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 10_000), st.floats(0, 1e6, allow_nan=False)),
        min_size=1,
        max_size=40,
    ).filter(lambda v: sum(v) > 0)
)
def test_gini_matches_mean_absolute_difference(
    con: duckdb.DuckDBPyConnection, values: list[float]
) -> None:
    got = _one(con, "SELECT ga_gini(x) FROM (SELECT unnest($v::DOUBLE[]) AS x)", {"v": values})
    assert got == pytest.approx(_np_gini(values), rel=1e-9, abs=1e-12)
    assert 0.0 <= got <= 1.0 - 1.0 / len(values) + 1e-12


# -- ga_entropy, ga_label_entropy -----------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([1, 1], 1.0),
        ([1, 1, 1, 1], 2.0),
        ([5], 0.0),
        ([3, 0, 3], 1.0),  # zero entries contribute 0
        ([0.5, 0.25, 0.25], 1.5),  # probabilities
        ([2, 1, 1], 1.5),
        ([7, 1], _np_entropy([7, 1])),
        (list(range(1, 101)), _np_entropy(list(range(1, 101)))),
    ],
)
def test_entropy_known_values(
    con: duckdb.DuckDBPyConnection, counts: list[float], expected: float
) -> None:
    assert _one(con, "SELECT ga_entropy($c)", {"c": counts}) == pytest.approx(expected, abs=1e-12)


def test_entropy_nulls_and_errors(con: duckdb.DuckDBPyConnection) -> None:
    assert _one(con, "SELECT ga_entropy([]::BIGINT[])") is None
    assert _one(con, "SELECT ga_entropy(NULL::BIGINT[])") is None
    assert _one(con, "SELECT ga_entropy([0, 0, 0])") is None
    assert _one(con, "SELECT ga_entropy([NULL, NULL]::BIGINT[])") is None
    # A NULL entry counts as 0.
    assert _one(con, "SELECT ga_entropy([1, NULL, 1])") == 1.0
    with pytest.raises(duckdb.InvalidInputException, match="must be non-negative"):
        con.execute("SELECT ga_entropy([1, -1, 2])")


def test_entropy_on_a_column_and_name_clashes(con: duckdb.DuckDBPyConnection) -> None:
    # Columns named like the macro's parameter and lambda variables are still the user's.
    rows = con.execute(
        "SELECT ga_entropy(total), ga_entropy(counts), ga_entropy(c) FROM (VALUES "
        "([1, 1], [1, 1, 1, 1], [5]), ([9], [1, 0], [2, 2])) t(total, counts, c)"
    ).fetchall()
    assert rows == [(1.0, 2.0, 0.0), (0.0, 0.0, 1.0)]


def test_label_entropy(con: duckdb.DuckDBPyConnection) -> None:
    counts_type = label_counts_type(pa.string())
    table = pa.table(
        {
            "group_id": [1, 2, 3, 4, 5],
            "label_counts": pa.array(
                [
                    [{"label": "a", "count": 2}, {"label": "b", "count": 2}],
                    [{"label": "b", "count": 9}],
                    [
                        {"label": "a", "count": 2},
                        {"label": "b", "count": 1},
                        {"label": "c", "count": 1},
                    ],
                    [],
                    [{"label": None, "count": 3}, {"label": "z", "count": 1}],
                ],
                counts_type,
            ),
        }
    )
    con.register("groups_s", table)
    rows = con.execute(
        "SELECT group_id, ga_label_entropy(label_counts) FROM groups_s ORDER BY group_id"
    ).fetchall()
    assert rows == [
        (1, 1.0),
        (2, 0.0),
        (3, 1.5),
        (4, None),
        (5, pytest.approx(_np_entropy([3, 1]), abs=1e-12)),
    ]
    con.unregister("groups_s")
    int_table = pa.table(
        {
            "label_counts": pa.array(
                [[{"label": 0, "count": 1}, {"label": 7, "count": 3}]],
                label_counts_type(pa.int32()),
            )
        }
    )
    con.register("groups_i", int_table)
    got = _one(con, "SELECT ga_label_entropy(label_counts) FROM groups_i")
    assert got == pytest.approx(_np_entropy([1, 3]), abs=1e-12)
    con.unregister("groups_i")


# -- ga_js_distance, ga_hellinger -----------------------------------------------------------


def test_distances_known_values(con: duckdb.DuckDBPyConnection) -> None:
    js, hel = _row(
        con, "SELECT ga_js_distance([1, 2, 3], [1, 2, 3]), ga_hellinger([1, 2, 3], [1, 2, 3])"
    )
    assert (js, hel) == (0.0, 0.0)
    # Proportional lists are the same distribution.
    js, hel = _row(
        con, "SELECT ga_js_distance([1, 2, 3], [0.5, 1.0, 1.5]), ga_hellinger([1, 2, 3], [2, 4, 6])"
    )
    assert js == pytest.approx(0.0, abs=1e-7)
    assert hel == pytest.approx(0.0, abs=1e-12)  # no cancellation: not just sqrt(eps)
    # Disjoint supports: both distances are 1.
    js, hel = _row(con, "SELECT ga_js_distance([1, 0, 0], [0, 2, 5]), ga_hellinger([3, 0], [0, 1])")
    assert js == pytest.approx(1.0, abs=1e-12)
    assert hel == pytest.approx(1.0, abs=1e-12)
    # [1, 0] vs [1, 1]: JSD = 1.5 - 0.75 * log2(3); Hellinger^2 = 1 - sqrt(1/2).
    js, hel = _row(con, "SELECT ga_js_distance([1, 0], [1, 1]), ga_hellinger([1, 0], [1, 1])")
    assert js == pytest.approx(math.sqrt(1.5 - 0.75 * math.log2(3)), abs=1e-12)
    assert hel == pytest.approx(math.sqrt(1 - math.sqrt(0.5)), abs=1e-12)
    p, q = [5, 0, 3, 2, 0, 1], [1, 1, 0, 4, 0, 7]
    js, hel = _row(con, "SELECT ga_js_distance($p, $q), ga_hellinger($p, $q)", {"p": p, "q": q})
    assert js == pytest.approx(_np_js(p, q), abs=1e-12)
    assert hel == pytest.approx(_np_hellinger(p, q), abs=1e-12)


def test_distances_nulls_and_errors(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("ga_js_distance", "ga_hellinger"):
        assert _one(con, f"SELECT {name}([]::BIGINT[], []::BIGINT[])") is None
        assert _one(con, f"SELECT {name}(NULL::BIGINT[], [1, 2])") is None
        assert _one(con, f"SELECT {name}([1, 2], NULL::BIGINT[])") is None
        assert _one(con, f"SELECT {name}([0, 0], [1, 2])") is None
        assert _one(con, f"SELECT {name}([1, 2], [0, 0])") is None
        # A NULL entry counts as 0.
        assert _one(con, f"SELECT {name}([1, NULL], [1, 0])") == 0.0
        assert _one(con, f"SELECT {name}([NULL, 1], [1, 0])") == pytest.approx(1.0)
        with pytest.raises(duckdb.InvalidInputException, match="same length"):
            con.execute(f"SELECT {name}([1, 2], [1, 2, 3])")
        with pytest.raises(duckdb.InvalidInputException, match="must be non-negative"):
            con.execute(f"SELECT {name}([1, -2], [1, 2])")


def test_distances_on_columns_with_clashing_names(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT ga_js_distance(s, z), ga_hellinger(z, s), ga_js_distance(q, p), "
        "ga_hellinger(p, q) FROM (VALUES ([1, 0], [0, 1], [2, 2], [1, 1])) t(s, z, p, q)"
    ).fetchall()
    assert rows == [(pytest.approx(1.0), pytest.approx(1.0), 0.0, 0.0)]


_counts = st.integers(0, 1000)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    size = draw(st.integers(1, 30))
    p = draw(st.lists(_counts, min_size=size, max_size=size).filter(lambda v: sum(v) > 0))
    q = draw(st.lists(_counts, min_size=size, max_size=size).filter(lambda v: sum(v) > 0))
    return p, q


@settings(max_examples=80, deadline=None)
@given(_pairs())
def test_distances_properties(
    con: duckdb.DuckDBPyConnection, pair: tuple[list[int], list[int]]
) -> None:
    p, q = pair
    row = _row(
        con,
        "SELECT ga_js_distance($p, $q), ga_js_distance($q, $p), ga_js_distance($p, $p), "
        "ga_hellinger($p, $q), ga_hellinger($q, $p), ga_hellinger($p, $p)",
        {"p": p, "q": q},
    )
    js_pq, js_qp, js_pp, hel_pq, hel_qp, hel_pp = row
    assert js_pq == pytest.approx(js_qp, abs=1e-12)
    assert hel_pq == pytest.approx(hel_qp, abs=1e-12)
    assert 0.0 <= js_pq <= 1.0
    assert 0.0 <= hel_pq <= 1.0
    assert js_pp == pytest.approx(0.0, abs=1e-7)
    assert hel_pp == pytest.approx(0.0, abs=1e-7)
    assert js_pq == pytest.approx(_np_js(p, q), abs=1e-7)
    assert hel_pq == pytest.approx(_np_hellinger(p, q), abs=1e-7)


# -- ga_label_skew --------------------------------------------------------------------------

# group -> {label: count}; label 2 is missing from group "g1", label 0 from "g3".
SKEW_COUNTS: dict[str, dict[int, int]] = {
    "g1": {0: 6, 1: 2},
    "g2": {0: 1, 1: 1, 2: 1},
    "g3": {1: 1, 2: 9},
    "g4": {2: 4},
}


def _long(label_of: Any) -> pa.Table:
    rows = [(g, label_of(lab), n) for g, counts in SKEW_COUNTS.items() for lab, n in counts.items()]
    return pa.table(
        {
            "group_id": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "count": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


def _expected_skew() -> list[tuple[Any, ...]]:
    groups = sorted(SKEW_COUNTS)
    labels = sorted({lab for counts in SKEW_COUNTS.values() for lab in counts})
    dense = np.array([[SKEW_COUNTS[g].get(lab, 0) for lab in labels] for g in groups], float)
    overall = dense.sum(axis=0)
    return [
        (
            g,
            int(row.sum()),
            int((row > 0).sum()),
            _np_entropy(row),
            _np_js(row, overall),
            _np_hellinger(row, overall),
        )
        for g, row in zip(groups, dense, strict=True)
    ]


def _assert_rows(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:3] == e[:3]
        assert g[3:] == pytest.approx(e[3:], abs=1e-12)


@pytest.mark.parametrize(
    "label_of",
    [int, lambda lab: f"label-{lab}", lambda lab: float(lab) / 2],
    ids=["int", "string", "double"],
)
def test_label_skew_matches_numpy(con: duckdb.DuckDBPyConnection, label_of: Any) -> None:
    con.register("long_labels", _long(label_of))
    result = con.execute("SELECT * FROM ga_label_skew('long_labels')")
    names = [d[0] for d in result.description]
    assert names == ["group_id", "num_rows", "num_labels", "entropy", "js_distance", "hellinger"]
    got = result.fetchall()
    _assert_rows(got, _expected_skew())
    # The same numbers from the scalar macros on dense lists.
    dense = con.execute(
        "WITH labs AS (SELECT DISTINCT label FROM long_labels), "
        "grid AS (SELECT g.group_id, l.label, coalesce(t.count, 0) AS count "
        "  FROM (SELECT DISTINCT group_id FROM long_labels) g CROSS JOIN labs l "
        "  LEFT JOIN long_labels t ON t.group_id = g.group_id AND t.label = l.label), "
        "overall AS (SELECT list(c ORDER BY label) AS q FROM "
        "  (SELECT label, sum(count) AS c FROM grid GROUP BY label)) "
        "SELECT group_id, ga_entropy(p), ga_js_distance(p, q), ga_hellinger(p, q) FROM "
        "(SELECT group_id, list(count ORDER BY label) AS p FROM grid GROUP BY group_id), overall "
        "ORDER BY group_id"
    ).fetchall()
    assert [r[0] for r in dense] == [r[0] for r in got]
    for d, g in zip(dense, got, strict=True):
        assert d[1:] == pytest.approx(g[3:], abs=1e-12)
    con.unregister("long_labels")


def test_label_skew_sparse_duplicates_and_zeros(con: duckdb.DuckDBPyConnection) -> None:
    table = _long(int)
    # g1's 6 rows of label 0 as two rows of 4 and 2.
    table = table.filter(
        pc.invert(pc.and_(pc.equal(table["group_id"], "g1"), pc.equal(table["label"], 0)))
    )
    # Explicit zero rows and a split row change nothing; an all-zero group gets NULLs.
    extra = pa.table(
        {
            "group_id": ["g1", "g4", "g4", "g5"],
            "label": [2, 2, 0, 1],
            "count": pa.array([0, 0, 0, 0], pa.int64()),
        }
    )
    split = pa.table(
        {"group_id": ["g1", "g1"], "label": [0, 0], "count": pa.array([4, 2], pa.int64())}
    )
    con.register("long_labels", pa.concat_tables([table, extra, split]))
    got = con.execute("SELECT * FROM ga_label_skew('long_labels')").fetchall()
    _assert_rows(got[:4], _expected_skew())
    assert got[4] == ("g5", 0, 0, None, None, None)
    con.unregister("long_labels")


def test_label_skew_edge_cases(con: duckdb.DuckDBPyConnection) -> None:
    # One group: it is the global distribution.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE one AS SELECT * FROM (VALUES (7, 'a', 3), (7, 'b', 1)) "
        "t(group_id, label, count)"
    )
    got = con.execute("SELECT * FROM ga_label_skew('one')").fetchall()
    assert got == [(7, 4, 2, pytest.approx(_np_entropy([3, 1])), 0.0, 0.0)]
    # Disjoint groups of equal size: JS distance of (1, 0) vs (1/2, 1/2) for each.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE two AS SELECT * FROM (VALUES (2, 'b', 5), (1, 'a', 5)) "
        "t(group_id, label, count)"
    )
    got = con.execute("SELECT * FROM ga_label_skew('two')").fetchall()
    js = math.sqrt(1.5 - 0.75 * math.log2(3))
    hel = math.sqrt(1 - math.sqrt(0.5))
    assert got == [
        (1, 5, 1, 0.0, pytest.approx(js), pytest.approx(hel)),
        (2, 5, 1, 0.0, pytest.approx(js), pytest.approx(hel)),
    ]
    # A NULL label is a label; NULL counts count 0; no rows give no rows.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE nul AS SELECT * FROM (VALUES (1, NULL, 2), (1, 'a', 2), "
        "(2, NULL, 4), (2, 'a', NULL)) t(group_id, label, count)"
    )
    got = con.execute("SELECT * FROM ga_label_skew('nul')").fetchall()
    assert got[0][:4] == (1, 4, 2, 1.0)
    assert got[0][4:] == pytest.approx((_np_js([2, 2], [6, 2]), _np_hellinger([2, 2], [6, 2])))
    assert got[1][:4] == (2, 4, 1, 0.0)
    assert got[1][4:] == pytest.approx((_np_js([4, 0], [6, 2]), _np_hellinger([4, 0], [6, 2])))
    con.execute("CREATE OR REPLACE TEMP TABLE none_ AS SELECT * FROM one WHERE false")
    assert con.execute("SELECT * FROM ga_label_skew('none_')").fetchall() == []
    for name in ("one", "two", "nul", "none_"):
        con.execute(f"DROP TABLE {name}")


def test_label_skew_many_labels(con: duckdb.DuckDBPyConnection) -> None:
    rng = np.random.default_rng(3)
    num_groups, num_labels = 40, 300
    dense = rng.integers(0, 4, (num_groups, num_labels)) * (
        rng.random((num_groups, num_labels)) < 0.1
    )
    dense[:, 0] += 1  # every group non-empty
    g_idx, l_idx = np.nonzero(dense)
    con.register(
        "many",
        pa.table(
            {
                "group_id": g_idx.astype(np.int64),
                "label": [f"L{j:03d}" for j in l_idx],
                "count": dense[g_idx, l_idx].astype(np.int64),
            }
        ),
    )
    got = con.execute("SELECT * FROM ga_label_skew('many')").fetchall()
    overall = dense.sum(axis=0)
    assert [r[0] for r in got] == list(range(num_groups))
    for g, row in zip(got, dense, strict=True):
        assert g[1:3] == (int(row.sum()), int((row > 0).sum()))
        assert g[3] == pytest.approx(_np_entropy(row), abs=1e-10)
        assert g[4] == pytest.approx(_np_js(row, overall), abs=1e-10)
        assert g[5] == pytest.approx(_np_hellinger(row, overall), abs=1e-10)
    con.unregister("many")
