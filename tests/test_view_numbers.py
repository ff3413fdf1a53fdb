"""The numbers of split views: statistics, sampling weights and ``compute_stats`` of
``split_rows`` / ``split_groups`` views, and the checks of ``seed`` in ``sample`` and
``cohorts``. Expected values are counted independently, from the groups the views yield."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import grouparrow as ga
from grouparrow.errors import GroupArrowError, QueryError

#: Rows per key: many one-row groups (so a split_rows side leaves some groups empty).
SIZES = {**{f"u{n:02d}": 1 for n in range(24)}, "big": 40, "mid": 9, "two": 2, "six": 6}


def _table() -> pa.Table:
    keys = [k for k, n in SIZES.items() for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(keys))
    keys = [keys[j] for j in order]
    return pa.table(
        {
            "k": keys,
            "i": pa.array(range(len(keys)), pa.int64()),
            "label": pa.array([j % 3 for j in range(len(keys))], pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    out = tmp_path_factory.mktemp("views") / "ds"
    return ga.build(_table(), key="k", output=out, label_column="label", threads=2)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    out = tmp_path_factory.mktemp("plain") / "ds"
    return ga.build(_table().drop_columns(["label"]), key="k", output=out, threads=2)


def _streamed_sizes(view: ga.GroupedDataset) -> dict[Any, int]:
    """Rows per group of a view, counted from the groups it streams."""
    sizes: dict[Any, int] = {}
    for group in view.iter_groups():
        assert group.id not in sizes
        sizes[group.id] = group.to_arrow().num_rows
    return sizes


def _index_sizes(table: pa.Table) -> dict[Any, int]:
    ids = table.column("group_id").to_pylist()
    return dict(zip(ids, table.column("num_rows").to_pylist(), strict=True))


def _ids(groups: list[ga.Group]) -> list[Any]:
    return [g.id for g in groups]


# -- split_rows: per-group rows ---------------------------------------------------------------
def test_row_view_index_and_stats_count_the_views_rows(built: ga.GroupedDataset) -> None:
    fit, held = built.split_rows(0.3, seed=2)
    parent = _index_sizes(built.index)
    for view in (fit, held):
        expected = _streamed_sizes(view)
        assert set(expected) == set(SIZES)
        # Random access agrees with the stream.
        assert {g.id: g.num_rows for g in view.get_many(list(SIZES))} == expected
        assert _index_sizes(view.index) == expected
        stats = view.stats()
        assert stats.columns == ["group_id", "shard", "offset", "num_rows"]
        assert dict(stats.select("group_id", "num_rows").rows()) == expected
        assert stats.get_column("num_rows").sum() == sum(expected.values()) == view.num_rows
        # Where each whole group is stored, as in the parent's index.
        assert stats.select("group_id", "shard", "offset").rows() == (
            built.stats().select("group_id", "shard", "offset").rows()
        )
    fit_sizes, held_sizes = _streamed_sizes(fit), _streamed_sizes(held)
    assert {k: fit_sizes[k] + held_sizes[k] for k in SIZES} == parent == SIZES
    assert fit.num_rows + held.num_rows == built.num_rows == sum(SIZES.values())
    # The data set was made so that some groups are empty on each side.
    assert 0 in fit_sizes.values() and 0 in held_sizes.values()


def test_row_view_of_a_group_view_counts_both_splits(built: ga.GroupedDataset) -> None:
    train, _ = built.split_groups(0.4, seed=1)
    _, held = train.split_rows(0.5, seed=3)
    expected = _streamed_sizes(held)
    assert set(expected) == set(train.group_ids()) != set(SIZES)
    assert _index_sizes(held.index) == expected
    assert dict(held.stats().select("group_id", "num_rows").rows()) == expected
    assert held.num_rows == sum(expected.values())


def test_row_view_without_labels(plain: ga.GroupedDataset) -> None:
    fit, _ = plain.split_rows(0.25, seed=0)
    expected = _streamed_sizes(fit)
    assert dict(fit.stats().select("group_id", "num_rows").rows()) == expected
    assert fit.index.column_names == ["group_id", "shard", "offset", "num_rows"]


def test_row_view_statistics_of_whole_groups_are_errors(built: ga.GroupedDataset) -> None:
    fit, _ = built.split_rows(0.3, seed=2)
    with pytest.raises(QueryError, match=r"split_rows.*no label counts.*dataset the view came"):
        fit.label_counts()
    with pytest.raises(QueryError, match=r"split_rows.*no summary"):
        fit.summary()
    assert issubclass(QueryError, GroupArrowError)
    # The parent's are untouched.
    assert built.label_counts().get_column("count").sum() == sum(SIZES.values())
    assert built.summary().get_column("total").to_list()[0] == sum(SIZES.values())


# -- split_rows: what the view holds, and sampling ----------------------------------------------
def test_row_view_holds_every_group_and_streams_the_empty_ones(built: ga.GroupedDataset) -> None:
    _, held = built.split_rows(0.3, seed=2)
    streamed = list(held.iter_groups())
    empty = {g.id for g in streamed if g.num_rows == 0}
    assert empty and all(g.to_arrow().num_rows == 0 for g in streamed if g.id in empty)
    assert len(streamed) == held.num_groups == len(held) == len(SIZES)
    assert len(held.iter_groups()) == len(SIZES)
    assert sorted(held.group_ids()) == sorted(SIZES)
    # Uniform draws are of the groups the view streams: all of them, the empty ones too.
    assert sorted(_ids(held.sample(len(SIZES), seed=0))) == sorted(SIZES)


def test_weighted_sample_of_a_row_view_uses_its_rows(built: ga.GroupedDataset) -> None:
    _, held = built.split_rows(0.3, seed=2)
    sizes = _streamed_sizes(held)
    nonzero = {k for k, n in sizes.items() if n > 0}
    assert 0 < len(nonzero) < len(SIZES)
    drawn: Counter[Any] = Counter()
    for seed in range(40):
        cohort = held.sample(3, seed=seed, weights="num_rows")
        assert len(set(_ids(cohort))) == 3
        drawn.update(_ids(cohort))
        assert all(g.num_rows == sizes[g.id] > 0 for g in cohort)
    assert set(drawn) <= nonzero
    # Without replacement, as many as have rows: exactly those.
    every = held.sample(len(nonzero), seed=1, weights="num_rows")
    assert set(_ids(every)) == nonzero
    with pytest.raises(ValueError, match=f"k={len(nonzero) + 1} is more than the {len(nonzero)}"):
        held.sample(len(nonzero) + 1, seed=1, weights="num_rows")
    # With replacement, the frequencies follow the view's rows.
    many = Counter(_ids(held.sample(4000, seed=5, weights="num_rows", replace=True)))
    assert set(many) <= nonzero
    total = sum(sizes.values())
    for k in nonzero:
        assert abs(many[k] / 4000 - sizes[k] / total) < 0.05
    for cohort in itertools.islice(held.cohorts(4, seed=3, weights="num_rows"), 10):
        assert set(_ids(cohort)) <= nonzero


def test_row_view_sampled_after_its_parent(built: ga.GroupedDataset) -> None:
    # The parent's sampling index (whole groups) must not carry over into the view.
    built.sample(2, seed=0, weights="num_rows")
    _, held = built.split_rows(0.3, seed=2)
    sizes = _streamed_sizes(held)
    for seed in range(20):
        assert all(sizes[i] > 0 for i in _ids(held.sample(2, seed=seed, weights="num_rows")))


@pytest.mark.parametrize("weights", ["num_bytes", "num_words", "shard", "nope"])
def test_row_view_weights_other_than_num_rows(built: ga.GroupedDataset, weights: str) -> None:
    fit, _ = built.split_rows(0.3, seed=2)
    with pytest.raises(ValueError, match=f"weights='{weights}'.*split_rows.*'num_rows'"):
        fit.sample(2, seed=0, weights=weights)
    with pytest.raises(ValueError, match="split_rows"):
        next(fit.cohorts(2, seed=0, weights=weights))
    # The parent still samples by them.
    assert len(built.sample(2, seed=0, weights="num_bytes")) == 2


# -- compute_stats on views ---------------------------------------------------------------
def test_compute_stats_keeps_a_group_view(tmp_path: Path) -> None:
    ds = ga.build(_table(), key="k", output=tmp_path / "ds", threads=2)
    _, test = ds.split_groups(0.4, seed=1)
    counted = test.compute_stats(label_column="label")
    assert sorted(counted.group_ids()) == sorted(test.group_ids())
    assert counted.num_groups == test.num_groups < len(SIZES)
    assert counted.num_rows == test.num_rows
    table = _table()
    expected = Counter(
        zip(table.column("k").to_pylist(), table.column("label").to_pylist(), strict=True)
    )
    rows = counted.label_counts().rows()
    assert {(g, label): n for g, label, n in rows} == {
        (g, label): n for (g, label), n in expected.items() if g in set(test.group_ids())
    }
    # The whole dataset was counted: the other side has its counts too.
    assert ga.open(tmp_path / "ds").label_counts().get_column("count").sum() == table.num_rows
    assert "split_groups" in repr(counted)


def test_compute_stats_keeps_a_row_view(tmp_path: Path) -> None:
    ds = ga.build(_table(), key="k", output=tmp_path / "ds", threads=2)
    _, held = ds.split_groups(0.4, seed=1)
    _, rows = held.split_rows(0.3, seed=2)
    counted = rows.compute_stats(label_column="label")
    assert counted._group_splits == rows._group_splits
    assert counted._row_splits == rows._row_splits
    assert _streamed_sizes(counted) == _streamed_sizes(rows)
    assert _index_sizes(counted.index) == _streamed_sizes(rows)
    with pytest.raises(QueryError, match="split_rows"):
        counted.label_counts()


# -- seeds ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0.5, 1.5, -1, True, "1", None])
def test_sample_and_cohorts_check_the_seed(built: ga.GroupedDataset, seed: Any) -> None:
    message = f"seed={seed!r} must be an integer >= 0"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        built.sample(3, seed=seed)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        built.cohorts(3, seed=seed)  # at the call, not at the first round
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        built.iter_groups(seed=seed)


def test_cohorts_checks_start_at_the_call(built: ga.GroupedDataset) -> None:
    with pytest.raises(ValueError, match="start=-1 must be an integer >= 0"):
        built.cohorts(3, seed=0, start=-1)


def test_numpy_integer_seeds_are_the_same_seeds(built: ga.GroupedDataset) -> None:
    assert _ids(built.sample(4, seed=np.int64(7))) == _ids(built.sample(4, seed=7))
    numpy_rounds = list(itertools.islice(built.cohorts(3, seed=np.uint32(2)), 3))
    int_rounds = list(itertools.islice(built.cohorts(3, seed=2), 3))
    assert [_ids(c) for c in numpy_rounds] == [_ids(c) for c in int_rounds]
    resumed = next(built.cohorts(3, seed=2, start=2))
    assert _ids(resumed) == _ids(int_rounds[2])
