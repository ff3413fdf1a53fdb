"""TensorFlow Datasets builders as sources (the optional ``grouparrow[tfds]`` extra).

The builders here are tiny, local and generated: no download, no network. They are prepared
as ArrayRecord, which TFDS writes and reads without TensorFlow; the TFRecord test runs only
where TensorFlow is installed. The tests that need no TFDS run everywhere.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import read_manifest_json

import grouparrow as ga
from grouparrow._tfds import INSTALL
from grouparrow.errors import SourceError
from grouparrow.sources import open_source

SKIP_REASON = f"tensorflow-datasets is not installed (install the extra: {INSTALL})"
NUM_TRAIN, NUM_TEST, NUM_WRITERS = 60, 12, 7


def _tfds() -> Any:
    """``tensorflow_datasets`` (and Pillow, which it decodes images with), or a skip."""
    tfds = pytest.importorskip("tensorflow_datasets", reason=SKIP_REASON)
    pytest.importorskip("PIL", reason=SKIP_REASON)
    tfds.disable_progress_bar()
    return tfds


def _example(i: int) -> dict[str, Any]:
    """Example ``i``: the values the builders generate and the tests expect back."""
    rng = np.random.default_rng(i)
    return {
        "index": i,
        "image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
        "label": i % 10,
        "writer": f"writer-{i % NUM_WRITERS}-é",
    }


def _builder_class(tfds: Any, *, splits: tuple[str, ...] = ("train", "test")) -> type:
    """An EMNIST-like builder: 28x28x1 images, a label, the writer id, the example index."""
    import PIL.Image

    sizes = {"train": (0, NUM_TRAIN), "test": (1000, NUM_TEST), "validation": (2000, 5)}

    class Handwriting(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[misc]
        VERSION = tfds.core.Version("1.2.0")

        def _info(self) -> Any:
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "index": tfds.features.Scalar(np.int64),
                        "image": tfds.features.Image(shape=(28, 28, 1)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                        "writer": tfds.features.Text(),
                    }
                ),
            )

        def _split_generators(self, dl_manager: Any) -> Any:
            return {name: self._generate_examples(*sizes[name]) for name in splits}

        def _generate_examples(self, start: int, n: int) -> Any:
            for i in range(start, start + n):
                example = _example(i)
                # A PIL image, so that TFDS encodes it without TensorFlow.
                example["image"] = PIL.Image.fromarray(example["image"][:, :, 0])
                yield i, example

    return Handwriting


def _prepared(tfds: Any, data_dir: Path, file_format: str = "array_record", **kw: Any) -> Any:
    builder = _builder_class(tfds, **kw)(data_dir=str(data_dir), file_format=file_format)
    builder.download_and_prepare()
    return builder


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The EMNIST-like builder, prepared once as ArrayRecord."""
    return _prepared(_tfds(), tmp_path_factory.mktemp("tfds"))


def _check_grouped(ds: Any, indices: range) -> None:
    """Every example of ``indices`` is in ``ds`` once, in its writer's group, unchanged."""
    assert ds.num_rows == len(indices)
    assert ds.schema.field("image").type == pa.fixed_shape_tensor(pa.uint8(), [28, 28, 1])
    assert ds.schema.field("label").type == pa.int64()
    assert ds.schema.field("writer").type == pa.string()
    seen: list[int] = []
    for group in ds.iter_groups():
        images = group.to_numpy("image")
        assert images.shape == (group.num_rows, 28, 28, 1)
        assert images.dtype == np.uint8
        rows = group.to_arrow()
        for k, i in enumerate(rows.column("index").to_pylist()):
            expected = _example(i)
            assert group.id == expected["writer"]
            assert rows.column("writer")[k].as_py() == expected["writer"]
            assert rows.column("label")[k].as_py() == expected["label"]
            np.testing.assert_array_equal(images[k], expected["image"])
        seen.extend(rows.column("index").to_pylist())
    assert sorted(seen) == list(indices)


def test_build_groups_every_example_of_the_split(builder: Any, tmp_path: Path) -> None:
    ds = ga.build(builder, key="writer", output=tmp_path / "by-writer", split="train")

    assert ds.num_groups == NUM_WRITERS
    _check_grouped(ds, range(NUM_TRAIN))
    source = read_manifest_json(tmp_path / "by-writer")["source"]
    assert source["type"] == "tfds"
    assert source["name"] == "handwriting"
    assert source["version"] == "1.2.0"
    assert source["split"] == "train"
    assert source["num_examples"] == NUM_TRAIN
    assert source["read_with"] == "as_data_source"  # no TensorFlow needed


def test_other_split_and_slices(builder: Any, tmp_path: Path) -> None:
    ds = ga.build(builder, key="writer", output=tmp_path / "test", split="test")
    _check_grouped(ds, range(1000, 1000 + NUM_TEST))

    sliced = open_source(builder, split="train[:10]").reader.read_all()
    assert sliced.num_rows == 10
    assert len(set(sliced.column("index").to_pylist())) == 10


def test_split_defaults_to_train(builder: Any) -> None:
    source = open_source(builder)
    assert source.description["split"] == "train"
    assert source.reader.read_all().num_rows == NUM_TRAIN
    assert source.size_hint is not None
    assert source.size_hint >= NUM_TRAIN * 28 * 28


def test_unknown_split_lists_the_splits(builder: Any) -> None:
    with pytest.raises(SourceError, match=r"split='validation'.*test, train"):
        open_source(builder, split="validation")


def test_no_train_split_asks_for_one(tmp_path: Path) -> None:
    tfds = _tfds()
    builder = _prepared(tfds, tmp_path, splits=("test", "validation"))
    with pytest.raises(SourceError, match=r"no 'train' split.*test, validation.*split="):
        open_source(builder)
    assert open_source(builder, split="validation").reader.read_all().num_rows == 5


def test_unprepared_builder_says_so(tmp_path: Path) -> None:
    tfds = _tfds()
    builder = _builder_class(tfds)(data_dir=str(tmp_path), file_format="array_record")
    with pytest.raises(SourceError, match=r"download_and_prepare"):
        open_source(builder)


def test_batches_are_bounded(builder: Any) -> None:
    batches = list(open_source(builder, batch_rows=16).reader)
    assert [b.num_rows for b in batches] == [16, 16, 16, 12]
    indices = pa.Table.from_batches(batches).column("index").to_pylist()
    assert sorted(indices) == list(range(NUM_TRAIN))


def test_features_map_to_arrow_types(tmp_path: Path) -> None:
    tfds = _tfds()
    import PIL.Image

    def png(pixels: np.ndarray) -> bytes:
        out = io.BytesIO()
        PIL.Image.fromarray(pixels).save(out, format="PNG")
        return out.getvalue()

    def example(i: int) -> dict[str, Any]:
        k = i % 4
        return {
            "index": i,
            "photo": png(np.full((2 + k, 3, 3), i, np.uint8)),
            "vector": np.array([i, i + 0.5, -i], np.float32),
            "ragged": np.arange(k, dtype=np.int64),
            "points": np.full((k, 2), i, np.float32),
            "flag": i % 2 == 0,
            "raw": b"\xff\x00" + bytes([i]),
            "meta": {"a": i, "name": f"n{i}"},
            "words": [f"w{j}" for j in range(k)],
            "boxes": {"x": [float(j) for j in range(k)], "tag": [f"t{j}" for j in range(k)]},
        }

    class Kinds(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[misc]
        VERSION = tfds.core.Version("1.0.0")

        def _info(self) -> Any:
            features = tfds.features
            return tfds.core.DatasetInfo(
                builder=self,
                features=features.FeaturesDict(
                    {
                        "index": np.int64,
                        "photo": features.Image(shape=(None, None, 3)),
                        "vector": features.Tensor(shape=(3,), dtype=np.float32),
                        "ragged": features.Tensor(shape=(None,), dtype=np.int64),
                        "points": features.Tensor(shape=(None, 2), dtype=np.float32),
                        "flag": np.bool_,
                        "raw": features.Tensor(shape=(), dtype=np.str_),
                        "meta": {"a": np.int32, "name": features.Text()},
                        "words": features.Sequence(features.Text()),
                        "boxes": features.Sequence({"x": np.float32, "tag": features.Text()}),
                    }
                ),
            )

        def _split_generators(self, dl_manager: Any) -> Any:
            return {"train": self._generate_examples()}

        def _generate_examples(self) -> Any:
            for i in range(9):
                yield i, example(i)

    builder = Kinds(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    table = open_source(builder).reader.read_all()

    assert table.schema == pa.schema(
        {
            "index": pa.int64(),
            "photo": pa.binary(),
            "vector": pa.fixed_shape_tensor(pa.float32(), [3]),
            "ragged": pa.list_(pa.int64()),
            "points": pa.list_(pa.list_(pa.float32(), 2)),
            "flag": pa.bool_(),
            "raw": pa.binary(),
            "meta": pa.struct({"a": pa.int32(), "name": pa.string()}),
            "words": pa.list_(pa.string()),
            "boxes": pa.struct({"x": pa.list_(pa.float32()), "tag": pa.list_(pa.string())}),
        }
    )
    assert sorted(table.column("index").to_pylist()) == list(range(9))
    for row in table.to_pylist():
        expected = example(row["index"])
        for name in ("photo", "flag", "raw", "meta", "words", "boxes"):
            assert row[name] == expected[name], name
        assert row["ragged"] == expected["ragged"].tolist()
        assert row["points"] == expected["points"].tolist()
        assert row["vector"] == expected["vector"].tolist()


def test_tfrecord_needs_tensorflow_or_says_how_to_avoid_it(
    builder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder without random access is read with TensorFlow; without it, the message
    names both ways out."""

    def no_random_access(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("prepared as tfrecord")

    monkeypatch.setattr(builder, "as_data_source", no_random_access)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow fails
    with pytest.raises(SourceError, match=r"install TensorFlow.*file_format='array_record'"):
        open_source(builder)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed"
)
def test_tfrecord_builder_is_read_with_tensorflow(tmp_path: Path) -> None:
    builder = _prepared(_tfds(), tmp_path / "data", file_format="tfrecord")
    ds = ga.build(builder, key="writer", output=tmp_path / "out")
    _check_grouped(ds, range(NUM_TRAIN))
    assert read_manifest_json(tmp_path / "out")["source"]["read_with"] == "as_dataset"


# -- without tensorflow-datasets ---------------------------------------------------------------


class _LooksLikeABuilder:
    """Stands for a TFDS object when tensorflow_datasets cannot be imported."""


_LooksLikeABuilder.__module__ = "tensorflow_datasets.core.dataset_builder"


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(SourceError, match=r"pip install 'grouparrow\[tfds\]'"):
        open_source(_LooksLikeABuilder())


def test_tensor_column_to_numpy_is_one_array(tmp_path: Path) -> None:
    """How TFDS images are stored: a fixed_shape_tensor column, read back as (n, 28, 28, 1)."""
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28, 1), dtype=np.uint8)
    kind = pa.fixed_shape_tensor(pa.uint8(), [28, 28, 1])
    storage = pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), 28 * 28)
    table = pa.table(
        {"image": pa.ExtensionArray.from_storage(kind, storage), "w": [i % 3 for i in range(30)]}
    )
    ds = ga.build(table, key="w", output=tmp_path / "out")
    for group in ds.iter_groups():
        array = group.to_numpy("image")
        assert array.shape == (group.num_rows, 28, 28, 1)
        np.testing.assert_array_equal(array, images[group.id :: 3])
