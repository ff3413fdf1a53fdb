"""Deterministic held-out splits: of groups (``split_groups``) and of the rows within each
group (``split_rows``, ``Group.split``), as views over a built dataset."""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grouparrow as ga

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

STRING_KEYS = ["a", "b", "", "é", "日本", "a\\b", "'q'", '"dq"', "🙂", "x y", "A", "zz"]
INT_KEYS = [0, 1, -1, 7, 2**40, -(2**63), 2**63 - 1, 123456789, 42, -42]
BYTES_KEYS = [b"", b"\x00", b"\xff\xfe", b"abc", b"a\\b", b"'", b"\x00\x01"]
ALPHABETS = {"string": STRING_KEYS, "int": INT_KEYS, "bytes": BYTES_KEYS}
ARROW_TYPES = {"string": pa.string(), "int": pa.int64(), "bytes": pa.binary()}


def _table(
    sizes: dict[Any, int], *, seed: int = 0, key_type: pa.DataType | None = None
) -> pa.Table:
    """Rows ``sizes[k]`` per key ``k`` (column ``k``), shuffled, with the input position
    ``i`` (unique per row) and a string column ``s``."""
    keys = [k for k, n in sizes.items() for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(keys))
    keys = [keys[j] for j in order]
    return pa.table(
        {
            "k": pa.array(keys, key_type),
            "i": pa.array(range(len(keys)), pa.int64()),
            "s": pa.array([f"row {j}" for j in range(len(keys))], pa.string()),
        }
    )


def _input_rows(table: pa.Table) -> dict[Any, list[int]]:
    """The input positions ``i`` of each key's rows, in input order."""
    rows: dict[Any, list[int]] = defaultdict(list)
    for k, i in zip(table.column("k").to_pylist(), table.column("i").to_pylist(), strict=True):
        rows[k].append(i)
    return dict(rows)


def _build(table: pa.Table, out: Path, **kw: Any) -> ga.GroupedDataset:
    kw.setdefault("threads", 2)
    return ga.build(table, key="k", output=out, **kw)


def _rows(group: ga.Group) -> list[int]:
    return group.to_arrow().column("i").to_pylist()


def _streamed(ds: ga.GroupedDataset, **kw: Any) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = {}
    for group in ds.iter_groups(**kw):
        assert group.id not in out, f"group {group.id!r} streamed twice"
        out[group.id] = _rows(group)
    return out


def _is_subsequence(part: list[int], whole: list[int]) -> bool:
    it = iter(whole)
    return all(x in it for x in part)


# -- the documented hashes, written out independently of grouparrow._splits ----------------

_M64 = (1 << 64) - 1


def _md5_int(salt: str, key: Any) -> int:
    if isinstance(key, bytes):
        data = key
    else:
        data = key.encode() if isinstance(key, str) else str(key).encode()
    return int.from_bytes(hashlib.md5(f"{salt}:".encode() + data).digest(), "little")


def _splitmix_uniform(x: int) -> float:
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    return (x >> 11) * 2.0**-53


def _in_eval_group(key: Any, fraction: float, seed: int) -> bool:
    return ((_md5_int(f"groups/{seed}", key) >> 64) >> 11) * 2.0**-53 < fraction


def _in_eval_row(key: Any, position: int, fraction: float, seed: int) -> bool:
    base = _md5_int(f"rows/{seed}", key) & _M64
    return _splitmix_uniform(base + position) < fraction


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[ga.GroupedDataset, pa.Table]:
    """2,000 groups of 1 to 3 rows, in 4 shards."""
    rng = np.random.default_rng(7)
    sizes = {f"g{j}": int(n) for j, n in enumerate(rng.integers(1, 4, 2000))}
    table = _table(sizes, seed=1)
    return _build(table, tmp_path_factory.mktemp("many") / "out", num_shards=4, seed=3), table


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[ga.GroupedDataset, pa.Table]:
    """60 groups of 1 to 40 rows, in 3 shards (one row group per few groups)."""
    rng = np.random.default_rng(11)
    sizes = {f"u{j}": int(n) for j, n in enumerate(rng.integers(1, 41, 60))}
    table = _table(sizes, seed=2)
    out = tmp_path_factory.mktemp("small") / "out"
    return _build(table, out, num_shards=3, seed=9, row_group_bytes=2_000), table


# -- split_groups ---------------------------------------------------------------------------


def _assert_group_view(view: ga.GroupedDataset, table: pa.Table) -> None:
    """Everything a split_groups view reports agrees with the groups it streams."""
    expected = _input_rows(table)
    ids = view.group_ids()
    assert len(ids) == len(set(ids)) == view.num_groups == len(view)
    streamed = _streamed(view)
    assert list(streamed) == ids  # storage order, the same as group_ids()
    assert set(_streamed(view, shuffle=True, seed=5)) == set(ids)
    assert view.num_rows == sum(len(expected[g]) for g in ids)
    index = view.index
    assert index.column("group_id").to_pylist() == ids
    assert index.column("num_rows").to_pylist() == [len(expected[g]) for g in ids]
    for gid in ids[:20]:
        assert gid in view
        assert streamed[gid] == expected[gid] == _rows(view[gid])
        assert view.get(gid).id == gid


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.97])
def test_split_groups_partitions_the_groups(
    many: tuple[ga.GroupedDataset, pa.Table], fraction: float
) -> None:
    ds, table = many
    train, test = ds.split_groups(fraction, seed=4)
    train_ids, test_ids = set(train.group_ids()), set(test.group_ids())
    assert train_ids.isdisjoint(test_ids)
    assert train_ids | test_ids == set(ds.group_ids())
    assert train.num_groups + test.num_groups == ds.num_groups == 2000
    assert train.num_rows + test.num_rows == ds.num_rows == table.num_rows
    # Both sides keep the dataset's storage order.
    order = {gid: n for n, gid in enumerate(ds.group_ids())}
    for view in (train, test):
        positions = [order[g] for g in view.group_ids()]
        assert positions == sorted(positions)
    # The parent is not changed by taking views of it.
    assert ds.num_groups == 2000
    assert len(ds.group_ids()) == 2000
    _assert_group_view(train, table)
    _assert_group_view(test, table)


def test_split_groups_membership_is_the_documented_hash(
    many: tuple[ga.GroupedDataset, pa.Table],
) -> None:
    ds, _ = many
    for fraction, seed in [(0.2, 0), (0.5, 17), (0.01, -3), (0.9, 2**40)]:
        _, test = ds.split_groups(fraction, seed=seed)
        want = {g for g in ds.group_ids() if _in_eval_group(g, fraction, seed)}
        assert set(test.group_ids()) == want


def test_other_side_is_not_found(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    train, test = ds.split_groups(0.5, seed=1)
    assert train.num_groups and test.num_groups
    for here, there in ((train, test), (test, train)):
        for gid in there.group_ids():
            assert gid not in here
            assert gid in ds
            assert here.get(gid) is None
            assert here.get(gid, "missing") == "missing"
            with pytest.raises(ga.GroupNotFoundError) as info:
                here[gid]
            assert isinstance(info.value, KeyError)
            assert repr(gid) in str(info.value)
            assert "other side" in str(info.value)
    with pytest.raises(ga.GroupNotFoundError):
        train["no-such-group"]
    assert "no-such-group" not in test


@pytest.mark.parametrize("seed", [0, 5])
def test_split_groups_fraction_zero_and_one(
    small: tuple[ga.GroupedDataset, pa.Table], seed: int
) -> None:
    ds, table = small
    for fraction in (0, 0.0):
        train, test = ds.split_groups(fraction, seed=seed)
        assert train.group_ids() == ds.group_ids()
        assert train.num_rows == ds.num_rows
        assert test.num_groups == len(test) == test.num_rows == 0
        assert test.group_ids() == []
        assert list(test.iter_groups()) == []
        assert list(test.iter_groups(shuffle=True, seed=2)) == []
        assert test.index.num_rows == 0
        assert test.index.schema.equals(ds.index.schema)
    for fraction in (1, 1.0):
        train, test = ds.split_groups(fraction, seed=seed)
        assert test.group_ids() == ds.group_ids()
        assert test.num_rows == table.num_rows
        assert _streamed(test) == _streamed(ds)
        assert train.num_groups == train.num_rows == 0
        assert list(train) == []
        gid = ds.group_ids()[0]
        assert gid not in train
        with pytest.raises(ga.GroupNotFoundError):
            train[gid]


def test_split_groups_is_deterministic(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    first = [v.group_ids() for v in ds.split_groups(0.4, seed=3)]
    again = [v.group_ids() for v in ds.split_groups(0.4, seed=3)]
    reopened = [v.group_ids() for v in ga.open(ds.path).split_groups(0.4, seed=3)]
    assert first == again == reopened
    # A larger fraction only moves groups into the eval side.
    bigger = set(ds.split_groups(0.7, seed=3)[1].group_ids())
    assert set(first[1]) <= bigger


def test_split_groups_seeds_differ(many: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = many
    tests = [frozenset(ds.split_groups(0.5, seed=s)[1].group_ids()) for s in range(4)]
    assert len(set(tests)) == 4
    # Independent seeds: the overlap of two halves is about a quarter of the groups.
    overlap = len(tests[0] & tests[1])
    assert abs(overlap - 500) < 6 * math.sqrt(2000 * 0.25 * 0.75)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.8])
def test_split_groups_fraction_is_near_target(
    many: tuple[ga.GroupedDataset, pa.Table], fraction: float
) -> None:
    ds, _ = many
    n = ds.num_groups
    tolerance = 5 * math.sqrt(n * fraction * (1 - fraction))  # five binomial sigmas
    for seed in range(3):
        train, test = ds.split_groups(fraction, seed=seed)
        assert abs(test.num_groups - n * fraction) <= tolerance, (seed, test.num_groups)
        assert train.num_groups == n - test.num_groups


def test_split_groups_views_compose(many: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = many
    train, test = ds.split_groups(0.2, seed=0)
    fit, dev = train.split_groups(0.1, seed=1)
    fit_ids, dev_ids, test_ids = set(fit.group_ids()), set(dev.group_ids()), set(test.group_ids())
    assert fit_ids | dev_ids == set(train.group_ids())
    assert not (fit_ids & dev_ids) and not (fit_ids & test_ids) and not (dev_ids & test_ids)
    assert fit.num_groups + dev.num_groups + test.num_groups == ds.num_groups
    assert fit.num_rows + dev.num_rows + test.num_rows == ds.num_rows
    # dev is exactly the train groups whose seed-1 hash is below 0.1.
    assert dev_ids == {g for g in train.group_ids() if _in_eval_group(g, 0.1, 1)}
    _assert_group_view(dev, table)
    # The parent views are not changed by splitting them again.
    assert set(train.group_ids()) == fit_ids | dev_ids
    for gid in test_ids:
        assert gid not in fit and gid not in dev
    # Splitting with the same seed again gives nothing new.
    again_train, again_test = train.split_groups(0.2, seed=0)
    assert again_train.group_ids() == train.group_ids()
    assert again_test.num_groups == 0


def test_split_groups_streams_columns_and_repr(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    train, _ = ds.split_groups(0.3, seed=2)
    groups = list(train.iter_groups(columns=["i"]))
    assert [g.id for g in groups] == train.group_ids()
    for group in groups:
        assert group.schema.names == ["i"]
        assert _rows(group) == _rows(ds[group.id])
    assert "split_groups" in repr(train)
    assert f"num_groups={train.num_groups}" in repr(train)


@SETTINGS
@given(
    kind=st.sampled_from(sorted(ALPHABETS)),
    sizes=st.lists(st.integers(1, 4), min_size=0, max_size=10),
    shards=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    build_seeds=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)),
    fraction=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)),
    seed=st.integers(-(2**40), 2**40),
)
def test_split_groups_property(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    sizes: list[int],
    shards: tuple[int, int],
    build_seeds: tuple[int, int],
    fraction: float,
    seed: int,
) -> None:
    """Any table, any two builds of it: the split is a partition of the groups, the row
    counts add up, and the same ids land on the same side in both builds."""
    alphabet, key_type = ALPHABETS[kind], ARROW_TYPES[kind]
    table = _table(dict(zip(alphabet, sizes, strict=False)), key_type=key_type, seed=len(sizes))
    base = tmp_path_factory.mktemp("prop-groups")
    expected = _input_rows(table)
    sides = []
    for n, (num_shards, build_seed) in enumerate(zip(shards, build_seeds, strict=True)):
        ds = _build(table, base / f"b{n}", num_shards=num_shards, seed=build_seed)
        train, test = ds.split_groups(fraction, seed=seed)
        train_ids, test_ids = train.group_ids(), test.group_ids()
        assert set(train_ids).isdisjoint(test_ids)
        assert set(train_ids) | set(test_ids) == set(expected)
        assert train.num_groups + test.num_groups == len(expected)
        assert train.num_rows == sum(len(expected[g]) for g in train_ids)
        assert test.num_rows == sum(len(expected[g]) for g in test_ids)
        assert train.num_rows + test.num_rows == table.num_rows
        assert _streamed(test) == {g: expected[g] for g in test_ids}
        if fraction == 0.0:
            assert test_ids == []
        if fraction == 1.0:
            assert train_ids == []
        sides.append(set(test_ids))
    assert sides[0] == sides[1]
    assert sides[0] == {g for g in expected if _in_eval_group(g, fraction, seed)}


# -- bad fractions --------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [-0.1, 1.5, 2, float("nan"), float("inf"), -1e-300])
def test_fraction_out_of_range(small: tuple[ga.GroupedDataset, pa.Table], fraction: Any) -> None:
    ds, _ = small
    group = next(iter(ds))
    for split in (ds.split_groups, ds.split_rows, group.split):
        with pytest.raises(ValueError, match="between 0 and 1") as info:
            split(fraction, seed=0)
        assert f"fraction={fraction!r}" in str(info.value)


@pytest.mark.parametrize("fraction", ["0.5", None, True, [0.5], 1j])
def test_fraction_not_a_number(small: tuple[ga.GroupedDataset, pa.Table], fraction: Any) -> None:
    ds, _ = small
    group = next(iter(ds))
    for split in (ds.split_groups, ds.split_rows, group.split):
        with pytest.raises(ValueError, match="must be a number") as info:
            split(fraction, seed=0)
        assert f"fraction={fraction!r}" in str(info.value)


def test_fraction_accepts_numpy_float(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    a = [v.group_ids() for v in ds.split_groups(np.float64(0.25), seed=1)]
    b = [v.group_ids() for v in ds.split_groups(0.25, seed=1)]
    assert a == b


# -- split_rows -----------------------------------------------------------------------------


def _assert_row_split(
    ds: ga.GroupedDataset,
    fit: ga.GroupedDataset,
    held: ga.GroupedDataset,
    expected: dict[Any, list[int]],
) -> None:
    """fit and held hold every group of ``ds``, in the same order, and split each group's
    rows in two, each side keeping their order."""
    ids = ds.group_ids()
    assert fit.group_ids() == held.group_ids() == ids
    assert fit.num_groups == held.num_groups == len(fit) == len(held) == len(ids)
    fit_rows, held_rows = _streamed(fit), _streamed(held)
    assert list(fit_rows) == list(held_rows) == ids
    for gid in ids:
        whole, a, b = expected[gid], fit_rows[gid], held_rows[gid]
        assert Counter(a + b) == Counter(whole)
        assert not set(a) & set(b)
        assert _is_subsequence(a, whole) and _is_subsequence(b, whole)
    assert fit.num_rows == sum(len(r) for r in fit_rows.values())
    assert held.num_rows == sum(len(r) for r in held_rows.values())
    assert fit.num_rows + held.num_rows == ds.num_rows


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 1.0])
def test_split_rows_partitions_each_group(
    small: tuple[ga.GroupedDataset, pa.Table], fraction: float
) -> None:
    ds, table = small
    expected = _input_rows(table)
    fit, held = ds.split_rows(fraction, seed=3)
    _assert_row_split(ds, fit, held, expected)
    if fraction == 0.0:
        assert fit.num_rows == ds.num_rows and held.num_rows == 0
        assert all(g.num_rows == 0 for g in held)
    if fraction == 1.0:
        assert held.num_rows == ds.num_rows and fit.num_rows == 0
        assert all(len(g) == 0 and g.to_arrow().schema == ds.schema for g in fit)


def test_split_rows_is_the_documented_hash(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    """A row is held out when the hash of (seed, group id, its position in the group) is
    below the fraction: positions count the group's rows in input order."""
    ds, table = small
    expected = _input_rows(table)
    for fraction, seed in [(0.3, 0), (0.7, 123)]:
        fit, held = ds.split_rows(fraction, seed=seed)
        held_rows = _streamed(held)
        fit_rows = _streamed(fit)
        for gid, rows in expected.items():
            flags = [_in_eval_row(gid, p, fraction, seed) for p in range(len(rows))]
            assert held_rows[gid] == [r for r, f in zip(rows, flags, strict=True) if f]
            assert fit_rows[gid] == [r for r, f in zip(rows, flags, strict=True) if not f]


def test_split_rows_random_access_and_group_split_agree(
    small: tuple[ga.GroupedDataset, pa.Table],
) -> None:
    ds, _ = small
    fit, held = ds.split_rows(0.35, seed=8)
    fit_rows, held_rows = _streamed(fit), _streamed(held)
    for group in ds.iter_groups():
        a, b = group.split(0.35, seed=8)
        assert a.id == b.id == group.id
        assert a.num_rows + b.num_rows == group.num_rows == len(group)
        assert _rows(a) == fit_rows[group.id] == _rows(fit[group.id])
        assert _rows(b) == held_rows[group.id] == _rows(held[group.id])
        assert a.schema == b.schema == ds.schema
        assert a.to_arrow().schema == ds.schema
        assert group.id in fit and group.id in held
    # A group fetched by id splits the same way as a streamed one.
    gid = ds.group_ids()[0]
    assert _rows(ds[gid].split(0.35, seed=8)[1]) == held_rows[gid]


def test_split_rows_shuffled_stream(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    fit, held = ds.split_rows(0.5, seed=1)
    for view in (fit, held):
        plain = _streamed(view)
        shuffled = _streamed(view, shuffle=True, seed=4)
        assert shuffled == plain
        assert list(shuffled) != list(plain)  # 60 groups in 3 shards: the order changes
    # Both sides stream their groups in the same order, shuffled or not.
    assert [g.id for g in fit.iter_groups(shuffle=True, seed=4)] == [
        g.id for g in held.iter_groups(shuffle=True, seed=4)
    ]


def test_split_rows_stream_columns(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    fit, _ = ds.split_rows(0.5, seed=2)
    whole = _streamed(fit)
    for group in fit.iter_groups(columns=["i", "s"]):
        assert group.schema.names == ["i", "s"]
        assert group.to_arrow().column_names == ["i", "s"]
        assert _rows(group) == whole[group.id]


def test_split_rows_fraction_of_rows_is_near_target(
    many: tuple[ga.GroupedDataset, pa.Table],
) -> None:
    ds, _ = many
    n = ds.num_rows
    for fraction in (0.1, 0.5):
        fit, held = ds.split_rows(fraction, seed=6)
        assert abs(held.num_rows - n * fraction) <= 5 * math.sqrt(n * fraction * (1 - fraction))
        assert fit.num_rows + held.num_rows == n
        assert fit.num_groups == held.num_groups == ds.num_groups


def test_split_rows_seeds_differ_and_repeat(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = small
    held = {s: _streamed(ds.split_rows(0.5, seed=s)[1]) for s in (0, 1, 2)}
    assert held[0] != held[1] and held[1] != held[2] and held[0] != held[2]
    assert _streamed(ds.split_rows(0.5, seed=1)[1]) == held[1]
    assert _streamed(ga.open(ds.path).split_rows(0.5, seed=1)[1]) == held[1]
    # Group.split with a seed matches the view with that seed.
    group = ds[ds.group_ids()[0]]
    assert group.split(0.5, seed=0)[1].num_rows == len(held[0][group.id])


def test_group_split_of_a_single_row(tmp_path: Path) -> None:
    ds = _build(_table({"solo": 1}), tmp_path / "out")
    group = ds["solo"]
    sides = [side.num_rows for side in group.split(0.5, seed=0)]
    assert sorted(sides) == [0, 1]
    a, b = group.split(0.0)
    assert (a.num_rows, b.num_rows) == (1, 0)
    assert b.to_pylist() == []
    assert b.to_arrow().schema == ds.schema
    a, b = group.split(1.0)
    assert (a.num_rows, b.num_rows) == (0, 1)
    # An empty group splits into two empty groups.
    assert [side.num_rows for side in a.split(0.5, seed=3)] == [0, 0]


def test_splits_of_an_empty_dataset(tmp_path: Path) -> None:
    table = _table({}, key_type=pa.string())
    ds = _build(table, tmp_path / "out", num_shards=3)
    for views in (ds.split_groups(0.5), ds.split_rows(0.5)):
        for view in views:
            assert view.num_groups == view.num_rows == len(view) == 0
            assert view.group_ids() == []
            assert list(view.iter_groups(shuffle=True)) == []
            assert view.index.num_rows == 0


def test_split_rows_then_split_groups_commute(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = small
    expected = _input_rows(table)
    train, test = ds.split_groups(0.3, seed=5)
    fit, held = train.split_rows(0.4, seed=6)
    _assert_row_split(train, fit, held, expected)
    assert set(fit.group_ids()).isdisjoint(test.group_ids())
    for gid in test.group_ids():
        assert gid not in fit and gid not in held
        with pytest.raises(ga.GroupNotFoundError):
            held[gid]
    # The other order gives the same views.
    fit2, held2 = ds.split_rows(0.4, seed=6)
    train_fit, _ = fit2.split_groups(0.3, seed=5)
    train_held, _ = held2.split_groups(0.3, seed=5)
    assert _streamed(train_fit) == _streamed(fit)
    assert _streamed(train_held) == _streamed(held)
    assert train_fit.num_rows == fit.num_rows and train_held.num_rows == held.num_rows
    # Row counts add up over the four pieces.
    test_fit, test_held = test.split_rows(0.4, seed=6)
    total = fit.num_rows + held.num_rows + test_fit.num_rows + test_held.num_rows
    assert total == ds.num_rows
    assert "split_rows" in repr(held) and "split_groups" in repr(held)


def test_split_rows_twice(small: tuple[ga.GroupedDataset, pa.Table]) -> None:
    """Splitting the fit side again divides its rows further."""
    ds, table = small
    expected = _input_rows(table)
    fit, held = ds.split_rows(0.2, seed=0)
    fit_a, fit_b = fit.split_rows(0.5, seed=1)
    fit_rows = _streamed(fit)
    _assert_row_split(fit, fit_a, fit_b, fit_rows)
    a_rows, b_rows, held_rows = _streamed(fit_a), _streamed(fit_b), _streamed(held)
    for gid, rows in expected.items():
        assert sorted(a_rows[gid] + b_rows[gid] + held_rows[gid]) == sorted(rows)
    assert fit_a.num_rows + fit_b.num_rows + held.num_rows == ds.num_rows


def test_split_rows_random_access_with_numpy_and_arrow_ids(tmp_path: Path) -> None:
    """Ids given as NumPy integers or Arrow scalars find the same rows as plain ints."""
    table = _table({5: 30, -7: 25, 2**40: 12}, key_type=pa.int64())
    ds = _build(table, tmp_path / "out", num_shards=2)
    fit, held = ds.split_rows(0.5, seed=2)
    streamed = _streamed(held)
    for gid in (5, -7, 2**40):
        for alias in (np.int64(gid), pa.scalar(gid, pa.int64())):
            group = held[alias]
            assert _rows(group) == streamed[gid] == _rows(held[gid])
            assert group.id == gid
            assert _rows(fit[alias]) == _rows(fit[gid])


@SETTINGS
@given(
    kind=st.sampled_from(sorted(ALPHABETS)),
    sizes=st.lists(st.integers(1, 25), min_size=1, max_size=8),
    num_shards=st.integers(1, 4),
    fraction=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)),
    seed=st.integers(-(2**40), 2**40),
)
def test_split_rows_property(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    sizes: list[int],
    num_shards: int,
    fraction: float,
    seed: int,
) -> None:
    alphabet, key_type = ALPHABETS[kind], ARROW_TYPES[kind]
    table = _table(dict(zip(alphabet, sizes, strict=False)), key_type=key_type, seed=sum(sizes))
    expected = _input_rows(table)
    out = tmp_path_factory.mktemp("prop-rows") / "out"
    ds = _build(table, out, num_shards=num_shards, row_group_bytes=1_000)
    fit, held = ds.split_rows(fraction, seed=seed)
    _assert_row_split(ds, fit, held, expected)
    held_rows, fit_rows = _streamed(held), _streamed(fit)
    for gid, rows in expected.items():
        a, b = ds[gid].split(fraction, seed=seed)
        assert _rows(a) == fit_rows[gid]
        assert _rows(b) == held_rows[gid]
        flags = [_in_eval_row(gid, p, fraction, seed) for p in range(len(rows))]
        assert held_rows[gid] == [r for r, f in zip(rows, flags, strict=True) if f]
    # Chained with a group split, the four pieces still cover every row once.
    train, test = ds.split_groups(0.5, seed=seed)
    pieces = [*train.split_rows(fraction, seed=seed), *test.split_rows(fraction, seed=seed)]
    seen = Counter(i for view in pieces for rows in _streamed(view).values() for i in rows)
    assert seen == Counter(range(table.num_rows))
    assert sum(v.num_rows for v in pieces) == table.num_rows
