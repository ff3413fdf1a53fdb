"""TensorFlow Datasets builders as sources: TFDS decodes the examples, this turns them into
Arrow record batches whose schema comes from ``builder.info.features``.

Only this module imports ``tensorflow_datasets``, and only once it is handed an object of one
of its classes (install it with ``pip install 'grouparrow[tfds]'``). A builder prepared in a
random-access format (``file_format="array_record"`` or ``"parquet"``) is read through
``builder.as_data_source`` and needs no TensorFlow; one prepared as TFRecord (the TFDS
default) is read through ``tfds.as_numpy(builder.as_dataset(...))``, which needs TensorFlow.

Features become Arrow types as follows:

================================================  ==============================================
``ClassLabel``                                    ``int64``
``Text``                                          ``string``
scalar ``Tensor`` / ``Scalar``                    its dtype (string tensors: ``binary``)
``Tensor``, ``Image``, ``Sequence`` of a known    ``fixed_shape_tensor(dtype, shape)`` (numbers;
shape                                             booleans and strings: nested fixed-size lists)
a shape with unknown dimensions                   nested lists (``list`` for an unknown dimension,
                                                  fixed-size ``list`` for a known one)
``Image`` of unknown shape                        ``binary``: the encoded PNG/JPEG, not decoded
``FeaturesDict``                                  ``struct`` (the top level: the columns)
``Sequence`` of a ``FeaturesDict``                a ``struct`` of sequences, as TFDS decodes it
================================================  ==============================================
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from grouparrow.errors import SourceError

if TYPE_CHECKING:
    from grouparrow.sources import Source

#: What to install for TFDS builders.
INSTALL = "pip install 'grouparrow[tfds]'"

# Rows of the first batch (to learn the bytes per row), then rows are chosen for this size.
_FIRST_BATCH_ROWS = 256
_BATCH_BYTES = 32 << 20


def looks_like_tfds(source: Any) -> bool:
    """Whether ``source`` is an instance of a class from ``tensorflow_datasets`` (or of a
    subclass of one, such as a user's ``GeneratorBasedBuilder``); imports nothing.

    Example:
        >>> looks_like_tfds([1, 2])
        False
    """
    return any(
        (getattr(cls, "__module__", None) or "").startswith("tensorflow_datasets")
        for cls in type(source).__mro__
    )


def open_tfds(source: Any, batch_rows: int, split: str | None) -> Source | None:
    """A :class:`grouparrow.sources.Source` over one split of a TFDS builder, or None when
    ``source`` is not a ``tfds.core.DatasetBuilder``.

    The builder must be prepared (``builder.download_and_prepare()``); ``split`` defaults to
    ``"train"`` and takes TFDS's slicing syntax (``"train[:10%]"``). Batches hold about
    32 MB (at most ``batch_rows`` rows); the split is never read whole.

    Example:
        >>> import grouparrow as ga, tensorflow_datasets as tfds  # doctest: +SKIP
        >>> from grouparrow import partitioners as P
        >>> builder = tfds.builder("mnist", file_format="array_record")  # doctest: +SKIP
        >>> builder.download_and_prepare()  # doctest: +SKIP
        >>> ds = ga.build(builder, key=P.iid(100, seed=0), output="out/mnist")  # doctest: +SKIP
    """
    if not looks_like_tfds(source):
        return None
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise SourceError(
            f"reading a TensorFlow Datasets builder needs tensorflow-datasets ({exc}); "
            f"install it with: {INSTALL}"
        ) from exc
    if not isinstance(source, tfds.core.DatasetBuilder):
        return None
    from grouparrow.sources import Source

    builder = source
    split, num_examples = _split(builder, split)
    features = builder.info.features
    if not isinstance(features, tfds.features.FeaturesDict):
        raise SourceError(
            f"the features of TFDS dataset {builder.name!r} are a {type(features).__name__}, "
            "not a FeaturesDict; grouparrow needs named features to make columns"
        )
    column = _column(features, tfds, "")
    schema = pa.schema(list(column.type))
    take, how = _examples(builder, split, column.decoder, tfds)
    batches = _batches(take, column, schema, batch_rows)
    first = next(batches, None)
    size = None
    if first is not None and first.num_rows:
        size = int(first.nbytes / first.num_rows * num_examples)
    description: dict[str, Any] = {
        "type": "tfds",
        "name": builder.name,
        "version": str(builder.version),
        "split": split,
        "num_examples": num_examples,
        "read_with": how,
    }
    config = getattr(builder, "builder_config", None)
    if config is not None:
        description["config"] = config.name
    head = [] if first is None else [first]
    return Source(
        pa.RecordBatchReader.from_batches(schema, itertools.chain(head, batches)),
        description,
        size,
        keepalive=[builder],
    )


def _split(builder: Any, split: str | None) -> tuple[str, int]:
    """The split to read (``"train"`` by default) and its number of examples."""
    splits = builder.info.splits
    is_prepared = getattr(builder, "is_prepared", None)
    if not splits or (is_prepared is not None and not is_prepared()):
        raise SourceError(
            f"TFDS dataset {builder.name!r} is not prepared in {str(builder.data_dir)!r}; "
            "call builder.download_and_prepare() first"
        )
    names = ", ".join(sorted(splits))
    if split is None:
        if "train" not in splits:
            raise SourceError(
                f"TFDS dataset {builder.name!r} has no 'train' split; choose one of its "
                f"splits ({names}) with split="
            )
        split = "train"
    try:
        num_examples = int(splits[split].num_examples)
    except (KeyError, ValueError, AssertionError) as exc:
        raise SourceError(
            f"split={split!r} is not a split of TFDS dataset {builder.name!r}; its splits are "
            f"{names} (slices such as 'train[:10%]' work too): {exc}"
        ) from exc
    return split, num_examples


Take = Callable[[int], list[Any]]


def _examples(builder: Any, split: str, decoders: Any, tfds: Any) -> tuple[Take, str]:
    """A function returning the next ``n`` decoded examples (fewer at the end), and how."""
    as_data_source = getattr(builder, "as_data_source", None)
    data_source = None
    if as_data_source is not None:
        try:
            data_source = as_data_source(split=split, decoders=decoders)
        except (NotImplementedError, ValueError):  # not prepared in a random-access format
            data_source = None
    if data_source is not None:
        source, position = data_source, 0

        def take_random_access(n: int) -> list[Any]:
            nonlocal position
            stop = min(position + n, len(source))
            keys = list(range(position, stop))
            position = stop
            return list(source.__getitems__(keys)) if keys else []

        return take_random_access, "as_data_source"
    try:
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise SourceError(
            f"TFDS dataset {builder.name!r} is prepared as {builder.info.file_format}, which "
            "only TensorFlow reads; install TensorFlow (pip install tensorflow-cpu), or "
            "prepare the dataset in a format read without it: "
            "tfds.builder(..., file_format='array_record').download_and_prepare()"
        ) from exc
    dataset = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
    examples = iter(tfds.as_numpy(dataset))

    def take_stream(n: int) -> list[Any]:
        return list(itertools.islice(examples, n))

    return take_stream, "as_dataset"


def _batches(
    take: Take, column: _Column, schema: pa.Schema, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Record batches of about ``_BATCH_BYTES`` (at most ``batch_rows`` rows), in order."""
    rows = max(1, min(batch_rows, _FIRST_BATCH_ROWS))
    done = 0
    while True:
        try:
            examples = take(rows)
        except ImportError as exc:  # e.g. no Pillow to decode images with
            raise SourceError(f"TFDS cannot decode the examples: {exc} ({INSTALL})") from exc
        if not examples:
            return
        try:
            struct = column.convert(examples)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise SourceError(
                f"cannot convert TFDS examples {done}-{done + len(examples) - 1} to Arrow: {exc}"
            ) from exc
        batch = pa.RecordBatch.from_struct_array(struct)
        yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        done += len(examples)
        per_row = max(batch.nbytes / batch.num_rows, 1.0)
        rows = int(max(1, min(batch_rows, _BATCH_BYTES // per_row)))


@dataclass(frozen=True)
class _Column:
    """How one feature becomes Arrow: its type, the conversion of a list of decoded values,
    and its TFDS decoder (``SkipDecoding`` for images kept encoded, a dict for a dict)."""

    type: pa.DataType
    convert: Callable[[Sequence[Any]], pa.Array]
    decoder: Any = None


@dataclass(frozen=True)
class _Tensor:
    """A tensor-like feature: the shape of one value (None: unknown) and its element type."""

    shape: tuple[int | None, ...]
    element: pa.DataType
    dtype: np.dtype | None  # None: bytes
    text: bool
    decoder: Any = None


def _column(feature: Any, tfds: Any, name: str) -> _Column:
    features = tfds.features
    if isinstance(feature, features.FeaturesDict):
        return _struct({k: _column(f, tfds, _join(name, k)) for k, f in feature.items()})
    if isinstance(feature, features.Sequence) and isinstance(
        feature.feature, features.FeaturesDict
    ):
        # TFDS decodes a sequence of dicts as a dict of sequences.
        return _struct(
            {
                k: _column(features.Sequence(f, length=_length(feature)), tfds, _join(name, k))
                for k, f in feature.feature.items()
            }
        )
    return _tensor_column(_tensor(feature, tfds, name))


def _length(sequence: Any) -> int | None:
    length = getattr(sequence, "_length", None)
    return None if length is None or length < 0 else int(length)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def _struct(children: dict[str, _Column]) -> _Column:
    fields = [pa.field(k, c.type) for k, c in children.items()]
    decoders = {k: c.decoder for k, c in children.items() if c.decoder is not None}

    def convert(values: Sequence[Any]) -> pa.Array:
        arrays = [c.convert([v[k] for v in values]) for k, c in children.items()]
        return pa.StructArray.from_arrays(arrays, fields=fields)

    return _Column(pa.struct(fields), convert, decoders or None)


def _tensor(feature: Any, tfds: Any, name: str, *, in_sequence: bool = False) -> _Tensor:
    """The shape and element type of a tensor-like feature (``Sequence`` of one included)."""
    features = tfds.features
    if isinstance(feature, features.Sequence):
        inner = _tensor(feature.feature, tfds, name, in_sequence=True)
        return _Tensor((_length(feature), *inner.shape), inner.element, inner.dtype, inner.text)
    # An image of unknown shape stays encoded, except in a Sequence (where TFDS cannot skip
    # decoding without TensorFlow): there it is decoded, into nested lists.
    unknown = isinstance(feature, features.Image) and None in _shape(feature.shape)
    if unknown and not in_sequence:
        return _Tensor((), pa.binary(), None, False, tfds.decode.SkipDecoding())
    try:
        shape = _shape(feature.shape)
        dtype = np.dtype(feature.np_dtype)
    except (TypeError, AttributeError) as exc:
        raise SourceError(
            f"TFDS feature {name!r} ({type(feature).__name__}) has no single shape and dtype; "
            "grouparrow converts FeaturesDict, Sequence, Tensor, Scalar, ClassLabel, Text and "
            "Image features and their subclasses"
        ) from exc
    if dtype.kind in "OSU":
        text = isinstance(feature, features.Text)
        return _Tensor(shape, pa.string() if text else pa.binary(), None, text)
    try:
        element = pa.from_numpy_dtype(dtype)
    except (pa.ArrowNotImplementedError, TypeError) as exc:
        raise SourceError(
            f"TFDS feature {name!r} has dtype {dtype}, which Arrow has no type for"
        ) from exc
    return _Tensor(shape, element, dtype, False)


def _shape(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None or d < 0 else int(d) for d in shape)


def _tensor_column(spec: _Tensor) -> _Column:
    shape = spec.shape
    fixed = all(d is not None for d in shape)
    numeric = pa.types.is_integer(spec.element) or pa.types.is_floating(spec.element)
    if shape and fixed and numeric:
        kind: pa.DataType = pa.fixed_shape_tensor(spec.element, list(shape))
        size = math.prod(d for d in shape if d is not None)

        def convert_tensor(values: Sequence[Any]) -> pa.Array:
            if any(v is None for v in values):
                storage = pa.array(
                    [None if v is None else np.asarray(v, spec.dtype).ravel() for v in values],
                    pa.list_(spec.element, size),
                )
            else:
                flat = _stack(values, shape, spec.dtype).reshape(-1)
                storage = pa.FixedSizeListArray.from_arrays(pa.array(flat, spec.element), size)
            return pa.ExtensionArray.from_storage(kind, storage)

        return _Column(kind, convert_tensor, spec.decoder)
    kind = spec.element
    for d in reversed(shape):
        kind = pa.list_(kind) if d is None else pa.list_(kind, d)

    def convert_nested(values: Sequence[Any]) -> pa.Array:
        return _nested(values, shape, spec).cast(kind)

    return _Column(kind, convert_nested, spec.decoder)


def _stack(values: Sequence[Any], shape: tuple[int | None, ...], dtype: Any) -> np.ndarray:
    if not values:
        return np.empty((0, *(d or 0 for d in shape)), dtype)
    return np.stack([np.asarray(v, dtype) for v in values])


def _leaf(values: Sequence[Any] | np.ndarray, spec: _Tensor) -> pa.Array:
    """Scalars (numbers, or bytes/str for strings) as an array of the element type."""
    if spec.dtype is None:
        array = pa.array(list(values), pa.binary())
        return array.cast(pa.string()) if spec.text else array
    if isinstance(values, np.ndarray):
        return pa.array(values.astype(spec.dtype, copy=False), spec.element)
    if any(v is None for v in values):
        return pa.array(list(values), spec.element)
    return pa.array(np.asarray(values, spec.dtype), spec.element)


def _nested(values: Sequence[Any], shape: tuple[int | None, ...], spec: _Tensor) -> pa.Array:
    """Values of ``shape`` as nested (fixed-size) lists of the element type."""
    if not shape:
        return _leaf(values, spec)
    mask = [v is None for v in values]
    present = [v for v in values if v is not None] if any(mask) else values
    if spec.dtype is not None and all(d is not None for d in shape):
        flat = _stack(present, shape, spec.dtype).reshape(-1)
        array: pa.Array = _leaf(flat, spec)
        for d in reversed(shape):
            array = pa.FixedSizeListArray.from_arrays(array, d)
    else:
        children = [item for value in present for item in value]
        child = _nested(children, shape[1:], spec)
        if shape[0] is None:
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in present])])
            array = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), child)
        else:
            array = pa.FixedSizeListArray.from_arrays(child, shape[0])
    if any(mask):
        positions = np.cumsum(np.logical_not(mask)) - 1
        array = array.take(pa.array(positions, mask=np.array(mask)))
    return array
