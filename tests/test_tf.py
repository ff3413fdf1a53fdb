"""The TensorFlow adapter: a stream of groups as a ``tf.data.Dataset`` of datasets, one group
as a dataset, element specs from the schema. Skipped where TensorFlow is not installed
(except the checks that need no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import grouparrow as ga
import grouparrow.adapters
from grouparrow.adapters.tf import build_group_stream, element_spec, group_dataset

SIZES = {"ann": 1, "bob": 4, "cy": 6, "dee": 3, "eve": 2}
COLUMNS = ["group_id", "pixels", "label", "x", "flag", "text", "raw", "tokens"]


@pytest.fixture(scope="module")
def tf() -> Any:
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    users = [u for u, n in SIZES.items() for _ in range(n)]
    n = len(users)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 3), dtype=np.uint8)
    table = pa.table(
        {
            "user": users,
            "pixels": pa.array([img.tobytes() for img in images], pa.binary(12)),
            "label": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(np.arange(n, dtype=np.float32) / 2),
            "flag": pa.array(np.arange(n) % 2 == 0),
            "text": [f"row {j} é" for j in range(n)],
            "raw": pa.array([bytes([j, 0, 255])[: j % 4] for j in range(n)], pa.binary()),
            "tokens": pa.array([list(range(j % 5)) for j in range(n)], pa.list_(pa.int32())),
            "meta": pa.array([{"a": j} for j in range(n)]),
        }
    )
    out = tmp_path_factory.mktemp("tf") / "out"
    return ga.build(table, key="user", output=out, num_shards=2, tensor_shapes={"pixels": (4, 3)})


def _rows(group: ga.Group, columns: list[str]) -> list[dict[str, Any]]:
    """The group's rows as TensorFlow gives them back (strings as UTF-8 bytes)."""
    arrays = {
        c: group.to_numpy(c) if c in ("pixels", "label", "x", "flag") else None for c in columns
    }
    table = group.to_arrow()
    out = []
    for j in range(group.num_rows):
        row: dict[str, Any] = {}
        for c in columns:
            if arrays[c] is not None:
                row[c] = arrays[c][j]
            else:
                value = table.column(c)[j].as_py()
                row[c] = value.encode() if isinstance(value, str) else value
        out.append(row)
    return out


def _assert_examples(dataset: Any, group: ga.Group, columns: list[str]) -> None:
    got = [{k: v.numpy() for k, v in e.items()} for e in dataset]
    want = _rows(group, columns)
    assert len(got) == len(want) == group.num_rows
    for g, w in zip(got, want, strict=True):
        assert list(g) == columns
        for c in columns:
            value = g[c].tolist() if isinstance(g[c], np.ndarray) else g[c]
            expected = w[c].tolist() if isinstance(w[c], np.ndarray) else w[c]
            assert value == expected, c


# -- element specs ------------------------------------------------------------------------------


def test_element_spec_from_schema(tf: Any, ds: ga.GroupedDataset) -> None:
    spec = element_spec(ds, columns=COLUMNS)
    assert spec == {
        "group_id": tf.TensorSpec((), tf.string),
        "pixels": tf.TensorSpec((4, 3), tf.uint8),
        "label": tf.TensorSpec((), tf.int64),
        "x": tf.TensorSpec((), tf.float32),
        "flag": tf.TensorSpec((), tf.bool),
        "text": tf.TensorSpec((), tf.string),
        "raw": tf.TensorSpec((), tf.string),
        "tokens": tf.TensorSpec((None,), tf.int32),
    }
    assert element_spec(ds.schema, columns=COLUMNS) == spec


def test_unsupported_column_is_named(tf: Any, ds: ga.GroupedDataset) -> None:
    with pytest.raises(ValueError, match=r"column 'meta' \(struct<a: int64>\).*columns="):
        element_spec(ds)
    with pytest.raises(ValueError, match="'meta'"):
        build_group_stream(ds)
    with pytest.raises(KeyError, match="no column 'nope'"):
        build_group_stream(ds, columns=["nope"])


# -- the stream of groups -----------------------------------------------------------------------


def test_build_group_stream_yields_one_dataset_per_group(tf: Any, ds: ga.GroupedDataset) -> None:
    stream = build_group_stream(ds, columns=COLUMNS)
    assert isinstance(stream.element_spec, tf.data.DatasetSpec)
    assert stream.element_spec.element_spec == element_spec(ds, columns=COLUMNS)
    assert int(stream.cardinality()) == ds.num_groups
    groups = list(ds.iter_groups())
    clients = list(stream)
    assert len(clients) == len(groups) == len(SIZES)
    for client, group in zip(clients, groups, strict=True):
        assert isinstance(client, tf.data.Dataset)
        _assert_examples(client, group, COLUMNS)
    # A second pass streams the epoch again.
    assert [len(list(c)) for c in stream] == [g.num_rows for g in groups]


def test_build_group_stream_follows_iter_groups(tf: Any, ds: ga.GroupedDataset) -> None:
    def ids(dataset: Any) -> list[str]:
        return [next(iter(c))["group_id"].numpy().decode() for c in dataset]

    for epoch in (0, 1, 2):
        options = {"shuffle": True, "seed": 3, "epoch": epoch}
        stream = build_group_stream(ds, columns=["group_id", "label"], **options)
        assert ids(stream) == [g.id for g in ds.iter_groups(**options)]
    workers = [
        ids(build_group_stream(ds, columns=["group_id"], worker_index=w, num_workers=2))
        for w in range(2)
    ]
    assert sorted(workers[0] + workers[1]) == sorted(SIZES)
    assert not set(workers[0]) & set(workers[1])
    everything = ids(build_group_stream(ds, columns=["group_id"], shuffle=True, seed=1))
    resumed = build_group_stream(ds, columns=["group_id"], shuffle=True, seed=1, start=2)
    assert int(resumed.cardinality()) == len(SIZES) - 2
    assert ids(resumed) == everything[2:]


def test_build_group_stream_batches_and_training_shapes(tf: Any, ds: ga.GroupedDataset) -> None:
    stream = build_group_stream(ds, columns=["pixels", "label"])
    batches = [b for c in stream.take(2) for b in c.batch(2)]
    assert all(b["pixels"].shape[1:] == (4, 3) for b in batches)
    flat = stream.flat_map(lambda client: client.map(lambda e: e["label"]))
    assert sorted(int(v) for v in flat) == list(range(ds.num_rows))


def test_build_group_stream_nulls_fail_naming_the_column(tf: Any, tmp_path: Path) -> None:
    table = pa.table({"k": ["a", "a", "b"], "v": pa.array([1, None, 3], pa.int64())})
    nulls = ga.build(table, key="k", output=tmp_path / "out")
    with pytest.raises(tf.errors.InvalidArgumentError, match="column 'v' of group 'a'"):
        for client in build_group_stream(nulls, columns=["v"]):
            list(client)
    assert [int(e["v"]) for e in group_dataset(nulls["b"], columns=["v"])] == [3]


# -- one group --------------------------------------------------------------------------------


def test_group_dataset(tf: Any, ds: ga.GroupedDataset) -> None:
    for gid in ("ann", "cy"):
        group = ds[gid]
        dataset = group_dataset(group, columns=COLUMNS)
        assert dataset.element_spec == element_spec(ds, columns=COLUMNS)
        _assert_examples(dataset, group, COLUMNS)
    empty = ga.Group("none", [ds["ann"].to_batches()[0].slice(0, 0)], ds.schema)
    assert list(group_dataset(empty, columns=["text", "tokens", "pixels"])) == []
    with pytest.raises(ValueError, match="'b' of group 'g' holds 1 null"):
        batch = pa.record_batch({"b": pa.array(["x", None])})
        group_dataset(ga.Group("g", [batch], batch.schema))


# -- without TensorFlow ---------------------------------------------------------------------------


def test_missing_tensorflow_names_the_extra(
    ds: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name.partition(".")[0])

    monkeypatch.setattr(grouparrow.adapters, "_import_module", missing)
    for call in (
        lambda: build_group_stream(ds),
        lambda: group_dataset(ds["ann"]),
        lambda: element_spec(ds),
    ):
        with pytest.raises(ModuleNotFoundError, match=r"pip install 'grouparrow\[tensorflow\]'"):
            call()


def test_importing_the_adapter_does_not_import_tensorflow() -> None:
    script = "import sys, grouparrow.adapters.tf\nprint('tensorflow' in sys.modules)\n"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "False"
