"""A group as NumPy (strings), Hugging Face datasets, Polars and pandas; the lazy importer of
the framework adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import grouparrow as ga
import grouparrow.adapters
from grouparrow.adapters import _require


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    rng = np.random.default_rng(0)
    n = 300
    table = pa.table(
        {
            "user": [f"u{j % 6}" for j in range(n)],
            "row": np.arange(n),
            "x": rng.random(n),
            "label": pa.array(rng.integers(0, 10, n), pa.int8()),
            "text": [None if j == 7 else "w" * (j % 5) for j in range(n)],
            "blob": [bytes([j % 256]) * (j % 3) for j in range(n)],
            "tags": [["a", "b"][: j % 3] for j in range(n)],
            "pixels": pa.array(
                [rng.integers(0, 256, 12, dtype=np.uint8).tobytes() for _ in range(n)],
                pa.binary(12),
            ),
            "id": pa.ExtensionArray.from_storage(
                pa.uuid(), pa.array([j.to_bytes(16, "big") for j in range(n)], pa.binary(16))
            ),
        }
    )
    out = tmp_path_factory.mktemp("conversions") / "out"
    return ga.build(table, key="user", output=out, tensor_shapes={"pixels": (3, 4)})


# -- NumPy strings ----------------------------------------------------------------------------


def test_to_numpy_strings(ds: ga.GroupedDataset) -> None:
    group = ds["u1"]
    expected = group.to_arrow().column("text").to_pylist()
    objects = group.to_numpy("text")
    assert objects.dtype == object and objects.tolist() == expected
    assert group.to_numpy()["blob"].dtype == object
    arrow = group.to_numpy("text", strings="arrow")
    assert isinstance(arrow, pa.Array) and arrow.to_pylist() == expected
    chunk = group.to_arrow().column("text").chunk(0)
    assert arrow.buffers()[2].address == chunk.buffers()[2].address  # no copy
    arrays = group.to_numpy(strings="arrow")
    assert isinstance(arrays["blob"], pa.Array) and isinstance(arrays["x"], np.ndarray)
    assert arrays["pixels"].shape == (group.num_rows, 3, 4)
    with pytest.raises(ValueError, match='must be "object" or "arrow"'):
        group.to_numpy("text", strings="list")  # type: ignore[arg-type]


def test_to_numpy_strings_arrow_of_several_chunks() -> None:
    a = pa.record_batch({"s": ["x", "yy"]})
    b = pa.record_batch({"s": ["zzz"]})
    group = ga.Group("g", [a, b], a.schema)
    assert group.to_numpy("s", strings="arrow").to_pylist() == ["x", "yy", "zzz"]
    assert group.to_numpy("s").tolist() == ["x", "yy", "zzz"]


# -- Hugging Face datasets --------------------------------------------------------------------


def test_to_hf_is_zero_copy(ds: ga.GroupedDataset) -> None:
    import datasets

    group = ds["u2"]
    hf = group.to_hf()
    assert isinstance(hf, datasets.Dataset) and hf.num_rows == group.num_rows
    ours = group.to_arrow()
    theirs = hf.data.table
    for name in ("row", "x", "text"):
        assert theirs.column(name).chunk(0).buffers()[1].address == (
            ours.column(name).chunk(0).buffers()[1].address
        )
    assert hf["row"] == ours.column("row").to_pylist()
    assert hf["tags"] == ours.column("tags").to_pylist()
    assert hf.features["label"] == datasets.Value("int8")


def test_to_hf_tensor_and_extension_columns(ds: ga.GroupedDataset) -> None:
    import datasets

    group = ds["u3"]
    hf = group.to_hf()
    assert hf.features["pixels"] == datasets.Array2D((3, 4), "uint8")
    pixels = hf.with_format("numpy")[:]["pixels"]  # datasets makes integers int64
    assert pixels.shape == (group.num_rows, 3, 4)
    assert np.array_equal(pixels, group.to_numpy("pixels"))
    assert hf[1]["pixels"] == group.to_numpy("pixels")[1].tolist()
    storage = group.to_arrow().column("pixels").chunk(0).storage
    lists = hf.data.table.column("pixels").chunk(0).storage
    assert lists.values.values.buffers()[1].address == storage.values.buffers()[1].address
    # uuid has no datasets feature: its storage (16 bytes) instead.
    assert hf.features["id"] == datasets.Value("fixed_size_binary[16]")
    assert hf["id"][0] == group.to_arrow().column("id").chunk(0).storage[0].as_py()


@pytest.mark.parametrize("shape", [(6,), (2, 3), (1, 2, 3), (1, 1, 2, 1, 3, 1)])
def test_to_hf_tensor_shapes(shape: tuple[int, ...]) -> None:
    kind = pa.fixed_shape_tensor(pa.float32(), list(shape))
    values = np.arange(18, dtype=np.float32).reshape(3, 6)
    storage = pa.array(values.tolist(), pa.list_(pa.float32(), 6)).slice(1)
    batch = pa.record_batch({"t": pa.ExtensionArray.from_storage(kind, storage)})
    hf = ga.Group("g", [batch], batch.schema).to_hf()
    back = hf.with_format("numpy")[:]["t"]
    assert back.shape == (2, *shape)
    assert np.array_equal(back.reshape(2, 6), values[1:])


def test_to_hf_permuted_tensor() -> None:
    kind = pa.fixed_shape_tensor(pa.int32(), [2, 3], permutation=[1, 0])
    storage = pa.array([list(range(6)), None, list(range(6, 12))], pa.list_(pa.int32(), 6))
    tensors = pa.ExtensionArray.from_storage(kind, storage)
    batch = pa.record_batch({"t": tensors})
    hf = ga.Group("g", [batch], batch.schema).to_hf()
    rows = ga._tensors.to_numpy(tensors)
    assert hf["t"][0] == rows[0].tolist() and hf["t"][1] is None
    assert hf["t"][2] == rows[2].tolist()


# -- Polars and pandas ------------------------------------------------------------------------


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the columns whose Python form differs between libraries."""
    return [{k: v for k, v in row.items() if k not in ("pixels", "id")} for row in rows]


def test_to_polars_round_trips(ds: ga.GroupedDataset) -> None:
    import polars as pl

    for group in ds.iter_groups():
        frame = group.to_polars()
        assert isinstance(frame, pl.DataFrame)
        assert frame.columns == ds.schema.names
        assert _plain(frame.to_dicts()) == _plain(group.to_pylist())
        back = frame.to_arrow()
        assert back.column("x").to_pylist() == group.to_arrow().column("x").to_pylist()


def test_to_pandas_round_trips(ds: ga.GroupedDataset) -> None:
    import pandas as pd

    group = ds["u4"]
    frame = group.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ds.schema.names
    rows = group.to_pylist()
    assert frame["row"].tolist() == [r["row"] for r in rows]
    assert frame["x"].tolist() == [r["x"] for r in rows]
    assert [None if t is None or t != t else t for t in frame["text"]] == [r["text"] for r in rows]
    assert frame["blob"].tolist() == [r["blob"] for r in rows]
    assert [list(t) for t in frame["tags"]] == [r["tags"] for r in rows]
    back = pa.Table.from_pandas(frame, preserve_index=False)
    assert back.column("row").to_pylist() == [r["row"] for r in rows]


# -- the lazy importer ------------------------------------------------------------------------


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _require("json").__name__ == "json"
    with pytest.raises(ModuleNotFoundError, match=r"nothere is not installed: pip install"):
        _require("nothere")

    def broken(name: str) -> Any:  # torch installed, one of its dependencies not
        raise ModuleNotFoundError("No module named 'sympy'", name="sympy")

    monkeypatch.setattr(grouparrow.adapters, "_import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="No module named 'sympy'"):
        _require("torch")
    monkeypatch.setattr(
        grouparrow.adapters,
        "_import_module",
        lambda name: (_ for _ in ()).throw(ModuleNotFoundError(name=name.split(".")[0])),
    )
    with pytest.raises(ModuleNotFoundError, match=r"^JAX is not installed: .*'grouparrow\[jax\]'"):
        _require("jax.numpy")
