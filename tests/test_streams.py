"""Epochs, resumable streams, worker sharding, batched random access and cohorts."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grouparrow as ga
from grouparrow._shards import ParquetShards


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    rng = np.random.default_rng(0)
    n = 6_000
    users = rng.zipf(1.5, n) % 700
    table = pa.table({"user": users, "i": np.arange(n)})
    out = tmp_path_factory.mktemp("streams") / "ds"
    return ga.build(table, key="user", output=out, num_shards=4, row_group_bytes=4096)


def _ids(groups: object) -> list[object]:
    return [g.id for g in groups]  # type: ignore[attr-defined]


def test_each_epoch_is_every_group_once_in_its_own_order(ds: ga.GroupedDataset) -> None:
    everything = sorted(ds.group_ids())
    orders = [_ids(ds.iter_groups(shuffle=True, seed=1, epoch=e)) for e in range(3)]
    for order in orders:
        assert sorted(order) == everything
    assert orders[0] != orders[1] != orders[2]
    assert _ids(ds.iter_groups(shuffle=True, seed=1, epoch=1)) == orders[1]
    assert len(ds.iter_groups(shuffle=True, seed=1, epoch=1)) == ds.num_groups


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_from_state_continues_exactly(ds: ga.GroupedDataset, shuffle: bool) -> None:
    full = _ids(ds.iter_groups(shuffle=shuffle, seed=5, epoch=2))
    for cut in (0, 1, 137, len(full) - 1, len(full)):
        stream = ds.iter_groups(shuffle=shuffle, seed=5, epoch=2)
        head = [next(stream).id for _ in range(cut)]
        state = stream.state_dict()
        assert state["start"] == cut and state["epoch"] == 2
        assert head + _ids(ds.iter_groups(**state)) == full
        other = ds.iter_groups()
        other.load_state_dict(state)
        assert head + _ids(other) == full


@pytest.mark.parametrize("shuffle", [False, True])
def test_start_skips_without_reading(
    ds: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch, shuffle: bool
) -> None:
    monkeypatch.setattr("grouparrow._streams.WINDOW_BYTES", 200)
    full = _ids(ds.iter_groups(shuffle=shuffle, seed=2))
    rows: list[int] = []  # of the batches the reader took from its scans
    original = ParquetShards.scan

    def counting(self: ParquetShards, *args: object) -> Iterator[pa.RecordBatch]:
        for batch in original(self, *args):  # type: ignore[arg-type]
            rows.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(ParquetShards, "scan", counting)
    rest = _ids(ds.iter_groups(shuffle=shuffle, seed=2, start=len(full) - 3))
    assert rest == full[-3:]
    # The row groups under the groups yielded (or, shuffled, under their window), not the
    # 6,000 rows before them.
    assert 0 < sum(rows) < 600


def test_shuffled_epochs_change_neighbours(
    ds: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pairs(ids: list[object]) -> set[tuple[object, object]]:
        return set(itertools.pairwise(ids))

    for window_bytes in (2_000, 8 * 2**20):
        monkeypatch.setattr("grouparrow._streams.WINDOW_BYTES", window_bytes)
        plain = pairs(_ids(ds.iter_groups()))
        epochs = [pairs(_ids(ds.iter_groups(shuffle=True, seed=0, epoch=e))) for e in range(2)]
        # A rotation alone would keep nearly every neighbour; a permutation, hardly any.
        assert len(epochs[0] & epochs[1]) < 0.2 * len(plain)
        assert len(epochs[0] & plain) < 0.2 * len(plain)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    workers=st.integers(1, 4),
    cut=st.integers(0, 800),
    window_bytes=st.sampled_from([1, 150, 2_000, 2**30]),
)
def test_shuffled_windows_resume_property(
    ds: ga.GroupedDataset, seed: int, workers: int, cut: int, window_bytes: int
) -> None:
    import grouparrow._streams as streams

    saved = streams.WINDOW_BYTES
    streams.WINDOW_BYTES = window_bytes
    try:
        seen: list[object] = []
        for w in range(workers):
            kw = {"shuffle": True, "seed": seed, "worker_index": w, "num_workers": workers}
            full = _ids(ds.iter_groups(**kw))
            stream = ds.iter_groups(**kw)
            head = [next(stream).id for _ in range(min(cut, len(full)))]
            assert head + _ids(ds.iter_groups(**stream.state_dict())) == full
            seen += full
        assert sorted(seen) == sorted(ds.group_ids())
    finally:
        streams.WINDOW_BYTES = saved


def test_state_keeps_the_columns(ds: ga.GroupedDataset) -> None:
    stream = ds.iter_groups(shuffle=True, seed=1, columns=["i"])
    next(stream)
    state = stream.state_dict()
    assert state["columns"] == ["i"]
    group = next(ds.iter_groups(**state))
    assert group.schema.names == ["i"]


@pytest.mark.parametrize(
    ("columns", "error", "message"),
    [
        (["nope"], KeyError, "no column 'nope'; the columns are 'group_id', 'user', 'i'"),
        ("i", TypeError, r"pass columns=\['i'\]"),
    ],
)
def test_bad_columns_are_named(
    ds: ga.GroupedDataset, columns: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ds.iter_groups(columns=columns)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_workers", [1, 2, 4, 7])
def test_workers_partition_the_groups(ds: ga.GroupedDataset, num_workers: int) -> None:
    seen: Counter[object] = Counter()
    for w in range(num_workers):
        stream = ds.iter_groups(shuffle=True, seed=3, worker_index=w, num_workers=num_workers)
        ids = _ids(stream)
        assert len(ids) == len(stream)
        seen.update(ids)
    assert set(seen.values()) == {1} and len(seen) == ds.num_groups


def test_workers_and_resume_on_a_view(ds: ga.GroupedDataset) -> None:
    train, _test = ds.split_groups(0.3, seed=1)
    seen = []
    for w in range(3):
        stream = train.iter_groups(shuffle=True, seed=0, worker_index=w, num_workers=3)
        head = [next(stream).id for _ in range(5)]
        seen += head + _ids(train.iter_groups(**stream.state_dict()))
    assert sorted(seen) == sorted(train.group_ids())


@pytest.mark.parametrize(
    "kwargs",
    [{"num_workers": 0}, {"worker_index": 2, "num_workers": 2}, {"start": -1}, {"epoch": -1}],
)
def test_bad_stream_arguments(ds: ga.GroupedDataset, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ds.iter_groups(**kwargs)  # type: ignore[arg-type]


def test_get_many_matches_single_fetches(ds: ga.GroupedDataset) -> None:
    ids = [*ds.group_ids()[::7][:60], ds.group_ids()[3]]
    many = ds.get_many(ids)
    assert [g.id for g in many] == ids
    for group in many:
        assert group.to_pylist() == ds[group.id].to_pylist()
    with pytest.raises(ga.GroupNotFoundError):
        ds.get_many([ids[0], "no such group"])
    assert ds.get_many([]) == []


def test_sample_is_seeded_and_weighted(ds: ga.GroupedDataset) -> None:
    a = _ids(ds.sample(20, seed=4))
    assert a == _ids(ds.sample(20, seed=4)) and len(set(a)) == 20
    assert a != _ids(ds.sample(20, seed=5))
    sizes = dict(zip(ds.group_ids(), ds.index["num_rows"].to_pylist(), strict=True))
    uniform = np.mean([sizes[i] for s in range(30) for i in _ids(ds.sample(20, seed=s))])
    weighted = [
        sizes[i] for s in range(30) for i in _ids(ds.sample(20, seed=s, weights="num_rows"))
    ]
    assert np.mean(weighted) > 2 * uniform
    with_replacement = _ids(ds.sample(ds.num_groups + 5, seed=0, replace=True))
    assert len(with_replacement) == ds.num_groups + 5
    with pytest.raises(ValueError, match="replace=True"):
        ds.sample(ds.num_groups + 1)
    with pytest.raises(ValueError, match="weights"):
        ds.sample(3, weights="nope")


def test_cohorts_resume_by_round(ds: ga.GroupedDataset) -> None:
    rounds = ds.cohorts(5, seed=9)
    first = [_ids(next(rounds)) for _ in range(6)]
    assert len({tuple(c) for c in first}) == 6
    resumed = ds.cohorts(5, seed=9, start=4)
    assert _ids(next(resumed)) == first[4] and _ids(next(resumed)) == first[5]
    _, test = ds.split_groups(0.5, seed=2)
    assert set(_ids(next(test.cohorts(10, seed=0)))) <= set(test.group_ids())


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    epoch=st.integers(0, 5),
    workers=st.integers(1, 5),
    cut=st.integers(0, 800),
)
def test_streams_property(
    ds: ga.GroupedDataset, seed: int, epoch: int, workers: int, cut: int
) -> None:
    seen: list[object] = []
    for w in range(workers):
        kw = {
            "shuffle": True,
            "seed": seed,
            "epoch": epoch,
            "worker_index": w,
            "num_workers": workers,
        }
        full = _ids(ds.iter_groups(**kw))
        k = min(cut, len(full))
        stream = ds.iter_groups(**kw)
        head = [next(stream).id for _ in range(k)]
        assert head + _ids(ds.iter_groups(**stream.state_dict())) == full
        seen += full
    assert sorted(seen) == sorted(ds.group_ids())
