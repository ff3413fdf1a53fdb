"""The PyTorch adapter: tensors sharing Arrow's memory, iterable datasets of groups and
examples through DataLoader (workers, ranks), order, epochs and resuming."""

from __future__ import annotations

import functools
import multiprocessing
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import make_table

import grouparrow as ga
import grouparrow.adapters

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from grouparrow.adapters import torch as adapter  # noqa: E402
from grouparrow.adapters.torch import (  # noqa: E402
    ExampleIterableDataset,
    GroupIterableDataset,
    collate,
    to_torch,
    uncollate,
)

N = 1_200


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ga.GroupedDataset, pa.Table]:
    """~90 groups over 3 shards and several row groups (group "big" spans some); ``i``
    numbers the rows."""
    table = make_table(N, 90, seed=3)
    keys = ["big" if i % 4 == 0 else k for i, k in enumerate(table.column("k").to_pylist())]
    table = table.set_column(0, "k", pa.array(keys))
    table = table.append_column("label", pa.array(np.arange(N, dtype=np.int32) % 10))
    out = tmp_path_factory.mktemp("torch") / "out"
    return ga.build(table, key="k", output=out, num_shards=3, row_group_bytes=8192), table


@pytest.fixture(scope="module")
def rows_by_group(built: tuple[ga.GroupedDataset, pa.Table]) -> dict[Any, list[int]]:
    _, table = built
    out: dict[Any, list[int]] = {}
    for key, i in zip(table.column("k").to_pylist(), table.column("i").to_pylist(), strict=True):
        out.setdefault(key, []).append(i)
    return out


def _loader(dataset: Any, **kwargs: Any) -> DataLoader[Any]:
    """A DataLoader whose workers start from a fork server that has imported the adapter:
    not a fork of this process, which may hold JAX's threads (test_jax.py runs first and
    JAX warns on fork), and nearly as fast. The dataset is pickled to the workers."""
    if kwargs.get("num_workers"):
        multiprocessing.set_forkserver_preload(["grouparrow.adapters.torch"])
        kwargs["multiprocessing_context"] = "forkserver"
    return DataLoader(dataset, **kwargs)


def _address(chunk: pa.Array, width: int) -> int:
    return int(chunk.buffers()[1].address + chunk.offset * width)


# -- to_torch -------------------------------------------------------------------------------


def test_to_torch_columns(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    group = ds[table.column("k")[0].as_py()]
    tensors = group.to_torch()
    assert list(tensors) == ["group_id", "k", "i", "text", "x", "label"]
    assert tensors["i"].dtype == torch.int64 and tensors["x"].dtype == torch.float64
    assert tensors["label"].dtype == torch.int32
    assert tensors["i"].tolist() == group.to_numpy("i").tolist()
    assert tensors["x"].tolist() == group.to_numpy("x").tolist()
    # Strings come back as Python lists.
    assert tensors["text"] == group.to_arrow().column("text").to_pylist()
    assert tensors["k"] == [group.id] * group.num_rows
    assert group.to_torch("label").shape == (group.num_rows,)
    assert torch.equal(to_torch(group, "i"), tensors["i"])


def test_to_torch_shares_arrow_memory(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    shared = 0
    for group in ds.iter_groups():
        table = group.to_arrow()
        if table.column("i").num_chunks != 1:
            continue  # spans row groups: concatenated (one copy)
        shared += 1
        tensors = group.to_torch()
        assert tensors["i"].data_ptr() == _address(table.column("i").chunk(0), 8)
        assert tensors["x"].data_ptr() == _address(table.column("x").chunk(0), 8)
        assert tensors["label"].data_ptr() == _address(table.column("label").chunk(0), 4)
    assert shared > 10


def test_groups_spanning_row_groups_are_copied_correctly(
    built: tuple[ga.GroupedDataset, pa.Table], rows_by_group: dict[Any, list[int]]
) -> None:
    ds, _ = built
    # Random access reads row group by row group: a group spanning some has one chunk each.
    fetched = [ds[gid] for gid in ds.group_ids()]
    spanning = [g for g in fetched if g.to_arrow().column("i").num_chunks > 1]
    assert spanning
    for group in spanning:
        assert group.to_torch("i").tolist() == rows_by_group[group.id]


def test_to_torch_booleans_tensors_nulls(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    table = pa.table(
        {
            "k": [j % 2 for j in range(40)],
            "row": np.arange(40),
            "pixels": pa.array([im.tobytes() for im in images], pa.binary(784)),
            "flag": [j % 3 == 0 for j in range(40)],
            "vec": pa.array([[j, -j, j * 2] for j in range(40)], pa.list_(pa.float32(), 3)),
            "blob": [bytes([j]) * (j % 4) for j in range(40)],
            "maybe": [None if j == 5 else j for j in range(40)],
        }
    )
    ds = ga.build(table, key="k", output=tmp_path / "out", tensor_shapes={"pixels": (28, 28)})
    group = ds[1]
    rows = group.to_numpy("row")
    tensors = group.to_torch("pixels")
    assert tensors.shape == (20, 28, 28) and tensors.dtype == torch.uint8
    assert np.array_equal(tensors.numpy(), images[rows])
    storage = group.to_arrow().column("pixels").chunk(0).storage
    assert tensors.data_ptr() == _address(storage.values, 1) + storage.offset * 784
    flag = group.to_torch("flag")
    assert flag.dtype == torch.bool and flag.tolist() == [r % 3 == 0 for r in rows]
    vec = group.to_torch("vec")
    assert vec.shape == (20, 3) and vec.dtype == torch.float32
    assert vec[:, 1].tolist() == [-float(r) for r in rows]
    assert group.to_torch("blob") == [bytes([r]) * (r % 4) for r in rows]
    with pytest.raises(ValueError, match=r"column 'maybe' of group 1 holds 1 null"):
        group.to_torch()
    assert ds[0].to_torch("maybe").dtype == torch.int64  # group 0 has no null


def test_missing_torch_names_the_extra(
    built: tuple[ga.GroupedDataset, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, _ = built
    group = next(iter(ds.iter_groups()))
    real = grouparrow.adapters._import_module

    def without_torch(name: str) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="torch")
        return real(name)

    monkeypatch.setattr(grouparrow.adapters, "_import_module", without_torch)
    monkeypatch.delitem(sys.modules, "grouparrow.adapters.torch")  # imported afresh
    with pytest.raises(ModuleNotFoundError) as info:
        group.to_torch()
    assert str(info.value) == "PyTorch is not installed: pip install 'grouparrow[torch]'"
    assert info.value.name == "torch"


# -- GroupIterableDataset -------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2, 4])
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 on 2 cores
def test_dataloader_yields_every_group_once(
    built: tuple[ga.GroupedDataset, pa.Table],
    rows_by_group: dict[Any, list[int]],
    num_workers: int,
) -> None:
    ds, table = built
    texts = table.column("text").to_pylist()
    groups = GroupIterableDataset(ds, shuffle=True, seed=1)
    assert len(groups) == ds.num_groups
    loader = _loader(groups, batch_size=None, num_workers=num_workers)
    seen: Counter[Any] = Counter()
    for item in loader:
        rows = rows_by_group[item["group_id"]]
        seen[item["group_id"]] += 1
        assert item["i"].tolist() == rows
        assert item["text"] == [texts[i] for i in rows]
        assert item["k"] == [item["group_id"]] * len(rows)
        assert item["x"].dtype == torch.float64 and item["label"].dtype == torch.int32
    assert seen == Counter({gid: 1 for gid in rows_by_group})


def test_joined_batches_from_workers_split_back(
    built: tuple[ga.GroupedDataset, pa.Table], rows_by_group: dict[Any, list[int]]
) -> None:
    ds, table = built
    texts = table.column("text").to_pylist()
    joined = functools.partial(collate, concat=True)
    loader = _loader(GroupIterableDataset(ds), batch_size=8, collate_fn=joined, num_workers=2)
    seen: Counter[Any] = Counter()
    for batch in loader:
        assert len(batch["group_id"]) <= 8 and batch["i"].ndim == 1
        for item in uncollate(batch):
            rows = rows_by_group[item["group_id"]]
            seen[item["group_id"]] += 1
            assert item["i"].tolist() == rows and item["text"] == [texts[i] for i in rows]
    assert seen == Counter({gid: 1 for gid in rows_by_group})


def test_ranks_and_workers_split_the_groups(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    seen: Counter[Any] = Counter()
    for rank in range(2):
        groups = GroupIterableDataset(ds, columns=["i"], rank=rank, world_size=2)
        ids = [item["group_id"] for item in _loader(groups, batch_size=None, num_workers=2)]
        assert len(ids) == len(groups)
        seen.update(ids)
    assert seen == Counter({gid: 1 for gid in ds.group_ids()})
    with pytest.raises(ValueError, match="rank=2"):
        GroupIterableDataset(ds, rank=2, world_size=2)


def test_columns_and_transform(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    item = next(iter(GroupIterableDataset(ds, columns=["x"])))
    assert set(item) == {"group_id", "x"}
    sizes = list(GroupIterableDataset(ds, transform=lambda g: (g.id, g.num_rows)))
    assert sizes == [(g.id, g.num_rows) for g in ds.iter_groups()]
    with pytest.raises(KeyError, match="no column 'nope'"):
        GroupIterableDataset(ds, columns=["nope"])


def test_split_view(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    _, held = ds.split_groups(0.3, seed=0)
    groups = GroupIterableDataset(held, columns=["i"])
    ids = [item["group_id"] for item in _loader(groups, batch_size=None, num_workers=2)]
    assert sorted(ids) == sorted(held.group_ids()) and len(groups) == held.num_groups


def _order(groups: GroupIterableDataset) -> list[Any]:
    return [item["group_id"] for item in groups]


def test_shuffle_seed_and_epochs(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    plain = _order(GroupIterableDataset(ds, columns=["i"]))
    assert plain == ds.group_ids()
    first = _order(GroupIterableDataset(ds, shuffle=True, seed=7, columns=["i"]))
    assert first == _order(GroupIterableDataset(ds, shuffle=True, seed=7, columns=["i"]))
    assert first != _order(GroupIterableDataset(ds, shuffle=True, seed=8, columns=["i"]))
    assert sorted(first) == sorted(plain)
    groups = GroupIterableDataset(ds, shuffle=True, seed=7, columns=["i"])
    groups.set_epoch(1)
    second = _order(groups)
    assert second != first and sorted(second) == sorted(first)
    assert second == [g.id for g in ds.iter_groups(shuffle=True, seed=7, epoch=1)]
    groups.set_epoch(0)
    assert _order(groups) == first


def test_resume_in_one_process(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, _ = built
    full = _order(GroupIterableDataset(ds, shuffle=True, seed=2, epoch=3, columns=["i"]))
    for cut in (0, 1, 40, len(full)):
        groups = GroupIterableDataset(ds, shuffle=True, seed=2, epoch=3, columns=["i"])
        loader = iter(DataLoader(groups, batch_size=None))
        head = [next(loader)["group_id"] for _ in range(cut)]
        state = groups.state_dict()
        assert state["start"] == cut and state["epoch"] == 3 and state["seed"] == 2
        resumed = GroupIterableDataset(ds, columns=["i"])
        resumed.load_state_dict(state)
        assert resumed.state_dict() == state
        resumed.set_epoch(3)  # the usual loop: set_epoch(epoch) keeps the position
        rest = [item["group_id"] for item in DataLoader(resumed, batch_size=None)]
        assert head + rest == full
        # The next iteration is a whole epoch again; another epoch drops the position.
        assert _order(resumed) == full
        resumed.load_state_dict(state)
        resumed.set_epoch(4)
        assert resumed.state_dict()["start"] == 0 and len(_order(resumed)) == len(full)


def test_worker_state_is_per_worker(
    built: tuple[ga.GroupedDataset, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What StatefulDataLoader does: each worker saves and restores its own copy."""
    ds, _ = built
    worker = SimpleNamespace(id=1, num_workers=2)
    monkeypatch.setattr(adapter, "get_worker_info", lambda: worker)
    full = _order(GroupIterableDataset(ds, shuffle=True, seed=0, columns=["i"]))
    assert full == [g.id for g in ds.iter_groups(shuffle=True, worker_index=1, num_workers=2)]
    groups = GroupIterableDataset(ds, shuffle=True, seed=0, columns=["i"])
    items = iter(groups)
    head = [next(items)["group_id"] for _ in range(5)]
    state = groups.state_dict()
    assert (state["worker_index"], state["num_workers"], state["start"]) == (1, 2, 5)
    resumed = GroupIterableDataset(ds, columns=["i"])
    resumed.load_state_dict(state)
    assert head + _order(resumed) == full
    worker.id = 0
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="saved by worker 1 of 2 but is loaded into worker 0"):
        next(iter(resumed))


# -- ExampleIterableDataset and collate -----------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_examples_yield_every_row_once(
    built: tuple[ga.GroupedDataset, pa.Table], num_workers: int
) -> None:
    ds, table = built
    examples = ExampleIterableDataset(ds, shuffle=True, seed=4, columns=["k", "i", "text", "x"])
    assert len(examples) == N
    loader = _loader(examples, batch_size=64, collate_fn=collate, num_workers=num_workers)
    keys = table.column("k").to_pylist()
    seen = np.zeros(N, np.int64)
    for batch in loader:
        assert batch["i"].dtype == torch.int64 and batch["x"].shape == batch["i"].shape
        assert isinstance(batch["text"], list) and len(batch["text"]) == len(batch["i"])
        rows = batch["i"].tolist()
        assert batch["group_id"] == [keys[i] for i in rows]
        np.add.at(seen, rows, 1)
    assert (seen == 1).all()


def test_examples_keep_group_order_and_resume_to_the_row(
    built: tuple[ga.GroupedDataset, pa.Table],
) -> None:
    ds, _ = built
    full = [(e["group_id"], int(e["i"])) for e in ExampleIterableDataset(ds, columns=["i"])]
    assert [i for _, i in full] == [i for g in ds.iter_groups() for i in g.to_numpy("i")]
    for cut in (0, 1, 7, 500, len(full)):
        examples = ExampleIterableDataset(ds, columns=["i"])
        items = iter(examples)
        head = [next(items) for _ in range(cut)]
        state = examples.state_dict()
        resumed = ExampleIterableDataset(ds, columns=["i"])
        resumed.load_state_dict(state)
        rest = [(e["group_id"], int(e["i"])) for e in resumed]
        assert [(e["group_id"], int(e["i"])) for e in head] + rest == full, state


def test_example_values(built: tuple[ga.GroupedDataset, pa.Table]) -> None:
    ds, table = built
    example = next(iter(ExampleIterableDataset(ds, transform=lambda e: {**e, "seen": True})))
    row = table.slice(int(example["i"]), 1).to_pylist()[0]
    assert example["i"].shape == () and example["text"] == row["text"]
    assert example["x"].item() == row["x"] and example["label"].item() == row["label"]
    assert example["seen"] is True and example["k"] == example["group_id"] == row["k"]


def test_collate(tmp_path: Path) -> None:
    items = [
        {"x": torch.tensor([1.0, 2.0]), "img": torch.zeros(2, 3, 3), "id": "a", "s": ["p", "q"]},
        {"x": torch.tensor([3.0]), "img": torch.ones(1, 3, 3), "id": "b", "s": ["r"]},
    ]
    joined = collate(items, concat=True)
    assert joined["x"].tolist() == [1.0, 2.0, 3.0] and joined["img"].shape == (3, 3, 3)
    assert joined["id"] == ("a", "b") and joined["s"] == ["p", "q", "r"]
    assert joined["num_rows"].tolist() == [2, 1]
    apart = uncollate(joined)
    assert [g["id"] for g in apart] == ["a", "b"] and [g["s"] for g in apart] == [["p", "q"], ["r"]]
    assert torch.equal(apart[0]["img"], items[0]["img"]) and apart[1]["x"].tolist() == [3.0]
    ones = uncollate(collate([{"s": ["p"], "id": "a"}, {"s": ["q"], "id": "b"}], concat=True))
    assert ones == [{"s": ["p"], "id": "a"}, {"s": ["q"], "id": "b"}]
    with pytest.raises(ValueError, match=r"'x' tensors have shapes \[\(1,\), \(2,\)\]"):
        collate(items)
    stacked = collate([items[0], items[0]])
    assert stacked["img"].shape == (2, 2, 3, 3) and stacked["s"] == [["p", "q"], ["p", "q"]]
    assert collate([]) == {}
    tiny = ga.build(make_table(30, 5), key="k", output=tmp_path / "tiny")
    loader = DataLoader(
        GroupIterableDataset(tiny, columns=["i"]),
        batch_size=2,
        collate_fn=functools.partial(collate, concat=True),
    )
    batch = next(iter(loader))
    assert len(batch["group_id"]) == 2 and batch["i"].ndim == 1
