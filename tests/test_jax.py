"""The JAX adapter: groups padded to a fixed size with a mask, stacked cohorts, ``to_jax``."""

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
from grouparrow.adapters.jax import pad_group, stack_groups, to_jax

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

NUMERIC = ["pixels", "label", "x", "flag"]
SIZES = {"ann": 1, "bob": 5, "cy": 9, "dee": 14}  # rows per user


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    users = [u for u, n in SIZES.items() for _ in range(n)]
    n = len(users)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    table = pa.table(
        {
            "user": users,
            "pixels": pa.array([img.tobytes() for img in images], pa.binary(784)),
            "label": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(np.arange(n, dtype=np.float32) / 2),
            "flag": pa.array(np.arange(n) % 2 == 0),
            "text": [f"row {j}" for j in range(n)],
        }
    )
    out = tmp_path_factory.mktemp("jax") / "out"
    return ga.build(table, key="user", output=out, num_shards=2, tensor_shapes={"pixels": (28, 28)})


def _expected(group: ga.Group) -> dict[str, np.ndarray]:
    return {c: np.asarray(group.to_numpy(c)) for c in NUMERIC}


# -- pad_group --------------------------------------------------------------------------------


def test_pad_group_contents_and_mask(ds: ga.GroupedDataset) -> None:
    for gid, n in SIZES.items():
        group = ds[gid]
        padded = pad_group(group, 16, columns=NUMERIC)
        assert set(padded) == {*NUMERIC, "mask"}
        assert padded["pixels"].shape == (16, 28, 28) and padded["pixels"].dtype == np.uint8
        assert padded["label"].shape == (16,) and padded["label"].dtype == np.int64
        assert padded["x"].dtype == np.float32 and padded["flag"].dtype == np.bool_
        assert padded["mask"].dtype == np.bool_
        assert padded["mask"].tolist() == [True] * n + [False] * (16 - n)
        for column, values in _expected(group).items():
            assert np.array_equal(padded[column][:n], values)
            assert not padded[column][n:].any()  # zeros


def test_pad_group_exact_size_has_full_mask(ds: ga.GroupedDataset) -> None:
    padded = pad_group(ds["bob"], 5, columns=["label"])
    assert padded["mask"].all() and padded["label"].shape == (5,)


def test_pad_group_group_spanning_batches() -> None:
    schema = pa.schema([("v", pa.int32()), ("t", pa.fixed_shape_tensor(pa.float32(), [2]))])
    batches = [
        pa.record_batch(
            [
                pa.array([i, i + 1], pa.int32()),
                pa.ExtensionArray.from_storage(
                    schema.field("t").type,
                    pa.array([[i, i], [i + 1, i + 1]], pa.list_(pa.float32(), 2)),
                ),
            ],
            schema=schema,
        )
        for i in (0, 10)
    ]
    padded = pad_group(ga.Group("g", batches, schema), 6)
    assert padded["v"].tolist() == [0, 1, 10, 11, 0, 0]
    assert padded["t"].tolist() == [[0, 0], [1, 1], [10, 10], [11, 11], [0, 0], [0, 0]]
    assert padded["mask"].sum() == 4


def test_pad_group_too_large_names_group_size_and_fix(ds: ga.GroupedDataset) -> None:
    with pytest.raises(ValueError) as info:
        pad_group(ds["dee"], 8, columns=NUMERIC)
    message = str(info.value)
    assert "'dee'" in message and "14 rows" in message and "num_examples=8" in message
    assert "truncate=True" in message


def test_pad_group_truncate_keeps_first_rows(ds: ga.GroupedDataset) -> None:
    group = ds["dee"]
    padded = pad_group(group, 8, columns=NUMERIC, truncate=True)
    assert padded["mask"].all()
    for column, values in _expected(group).items():
        assert np.array_equal(padded[column], values[:8])


def test_pad_group_truncate_reads_only_the_rows_kept() -> None:
    if not hasattr(ga.Group, "lazy"):
        pytest.skip("no lazy groups in this version")
    batches = [pa.record_batch({"v": pa.array(np.arange(i, i + 4))}) for i in range(0, 40, 4)]
    read: list[int] = []

    def source() -> Any:
        for j, batch in enumerate(batches):
            read.append(j)
            yield batch

    group = ga.Group.lazy("big", source, batches[0].schema, 40)
    padded = pad_group(group, 6, truncate=True)
    assert padded["v"].tolist() == list(range(6)) and padded["mask"].all()
    assert read == [0, 1]  # the first two batches, not the other eight


def test_pad_group_string_column_is_named(ds: ga.GroupedDataset) -> None:
    with pytest.raises(ValueError) as info:
        pad_group(ds["ann"], 4)  # every column: the key and "text" are strings
    message = str(info.value)
    assert "'group_id'" in message and "strings" in message and "columns=" in message
    assert repr(NUMERIC) in message  # the columns that would convert
    with pytest.raises(ValueError, match="'text'"):
        pad_group(ds["ann"], 4, columns=["label", "text"])


def test_pad_group_other_errors(ds: ga.GroupedDataset) -> None:
    group = ds["ann"]
    with pytest.raises(KeyError, match="no column 'nope'"):
        pad_group(group, 4, columns=["nope"])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_examples"):
            pad_group(group, bad, columns=["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask_key"):
        pad_group(group, 4, columns=["x"], mask_key="x")
    assert set(pad_group(group, 4, columns=["x"], mask_key="valid")) == {"x", "valid"}


def test_pad_group_nulls_and_nested_columns() -> None:
    batch = pa.record_batch(
        {"v": pa.array([1, None], pa.int64()), "l": pa.array([[1], [2, 3]]), "ok": [1.0, 2.0]}
    )
    group = ga.Group(7, [batch], batch.schema)
    with pytest.raises(ValueError, match=r"column 'v' of group 7 holds 1 null"):
        pad_group(group, 4, columns=["v"])
    with pytest.raises(ValueError, match=r"'l'.*variable-length lists"):
        pad_group(group, 4, columns=["l"])
    assert pad_group(group, 4, columns=["ok"])["ok"].tolist() == [1.0, 2.0, 0.0, 0.0]


# -- jit -------------------------------------------------------------------------------------


def test_jit_compiles_once_for_groups_of_any_size(ds: ga.GroupedDataset) -> None:
    traces = 0

    @jax.jit
    def masked_mean(arrays: dict[str, Any]) -> Any:
        nonlocal traces
        traces += 1
        mask = arrays["mask"]
        pixels = arrays["pixels"].astype(jnp.float32).mean(axis=(1, 2))
        return jnp.sum(jnp.where(mask, pixels + arrays["x"], 0.0)) / jnp.maximum(mask.sum(), 1)

    for group in ds.iter_groups(columns=["user", *NUMERIC]):
        result = masked_mean(group.to_jax(pad_to=16, columns=NUMERIC))
        expected = _expected(group)
        want = (expected["pixels"].mean(axis=(1, 2)) + expected["x"]).mean()
        assert float(result) == pytest.approx(want, rel=1e-5)
    assert traces == 1


# -- stack_groups ----------------------------------------------------------------------------


def test_stack_groups_shapes_and_contents(ds: ga.GroupedDataset) -> None:
    cohort = ds.sample(3, seed=1)
    stacked = stack_groups(cohort, 16, columns=NUMERIC)
    assert stacked["pixels"].shape == (3, 16, 28, 28)
    assert stacked["label"].shape == stacked["x"].shape == stacked["mask"].shape == (3, 16)
    for i, group in enumerate(cohort):
        single = pad_group(group, 16, columns=NUMERIC)
        for column in [*NUMERIC, "mask"]:
            assert np.array_equal(stacked[column][i], single[column])


def test_stack_groups_vmap(ds: ga.GroupedDataset) -> None:
    cohort = ds.sample(4, seed=0)
    stacked = stack_groups(cohort, 16, columns=["label"])

    def masked_sum(arrays: dict[str, Any]) -> Any:
        return jnp.sum(jnp.where(arrays["mask"], arrays["label"], 0))

    sums = jax.jit(jax.vmap(masked_sum))(jax.device_put(stacked))
    assert sums.shape == (4,)
    assert sums.tolist() == [int(g.to_numpy("label").sum()) for g in cohort]


def test_stack_groups_truncate_and_errors(ds: ga.GroupedDataset) -> None:
    groups = ds.get_many(["ann", "dee"])
    with pytest.raises(ValueError, match="'dee' has 14 rows"):
        stack_groups(groups, 10, columns=["label"])
    stacked = stack_groups(groups, 10, columns=["label"], truncate=True)
    assert stacked["mask"].sum(axis=1).tolist() == [1, 10]
    with pytest.raises(ValueError, match="at least one group"):
        stack_groups([], 4, columns=["label"])
    other = pa.record_batch({"label": pa.array([1], pa.int32())})
    with pytest.raises(ValueError, match="'label' is int32 in group 'x'"):
        stack_groups([groups[0], ga.Group("x", [other], other.schema)], 4, columns=["label"])
    with pytest.raises(ValueError, match="group 'x' has no column 'x'"):
        stack_groups([groups[0], ga.Group("x", [other], other.schema)], 4, columns=["x"])


# -- to_jax ----------------------------------------------------------------------------------


def test_to_jax_unpadded_and_padded(ds: ga.GroupedDataset) -> None:
    group = ds["cy"]
    arrays = group.to_jax(columns=NUMERIC)
    assert set(arrays) == set(NUMERIC)  # no mask without padding
    assert all(isinstance(a, jax.Array) for a in arrays.values())
    assert arrays["pixels"].shape == (9, 28, 28)
    assert np.array_equal(np.asarray(arrays["pixels"]), group.to_numpy("pixels"))
    padded = to_jax(group, 12, ["x"], device=jax.devices()[0])
    assert padded["x"].shape == padded["mask"].shape == (12,)
    assert int(padded["mask"].sum()) == 9
    with pytest.raises(ValueError, match="truncate=True"):
        group.to_jax(pad_to=4, columns=["x"])
    assert group.to_jax(pad_to=4, columns=["x"], truncate=True)["x"].shape == (4,)
    with pytest.raises(ValueError, match="'text'"):
        group.to_jax(columns=["text"])


def test_missing_jax_names_the_extra(
    ds: ga.GroupedDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name.partition(".")[0])

    monkeypatch.setattr(grouparrow.adapters, "_import_module", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'grouparrow\[jax\]'"):
        ds["ann"].to_jax(columns=["x"])
    # pad_group and stack_groups need NumPy only.
    assert pad_group(ds["ann"], 2, columns=["x"])["mask"].tolist() == [True, False]


def test_importing_the_adapter_does_not_import_jax() -> None:
    script = "import sys, grouparrow.adapters.jax\nprint('jax' in sys.modules)\n"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "False"
