"""PyTorch: a group's columns as tensors that share Arrow's memory, and iterable datasets of
groups or of examples for ``torch.utils.data.DataLoader``, sharded across workers and ranks
and resumable.

Importing this module imports torch (``pip install 'grouparrow[torch]'``); ``import
grouparrow`` does not. What each column becomes (:func:`to_torch`):

- numbers and booleans: a ``(rows,)`` tensor; tensor columns (``tensor_shapes=``,
  ``fixed_shape_tensor``, fixed-size lists of numbers, ``fixed_size_binary`` as uint8): a
  ``(rows, *shape)`` tensor. Numbers and tensors share the Arrow buffer when the group is one
  chunk (a group spanning row groups is concatenated first: one copy); booleans are copied
  (Arrow packs them in bits). A column with nulls raises a ``ValueError`` naming it.
- strings, bytes, variable-length lists and anything else: a Python list (``to_pylist()``).

Tensors that share Arrow's memory are **read-only views**: Arrow's buffers are immutable,
and writing through such a tensor is undefined behaviour. ``.clone()`` one to write to it
(moving it to a GPU with ``.to("cuda")`` copies too).

Example:
    >>> import grouparrow as ga, pyarrow as pa
    >>> batch = pa.record_batch({"user": ["ann", "ann"], "x": [1.5, 2.5]})
    >>> to_torch(ga.Group("ann", [batch], batch.schema))
    {'user': ['ann', 'ann'], 'x': tensor([1.5000, 2.5000], dtype=torch.float64)}
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from grouparrow.adapters import _require

_require("torch")  # the error names the extra to install when torch is missing

import torch  # noqa: E402
from torch.utils.data import IterableDataset, get_worker_info  # noqa: E402

from grouparrow import _tensors  # noqa: E402
from grouparrow.adapters._columns import (  # noqa: E402
    check_column,
    check_columns,
    check_no_nulls,
    column_spec,
)
from grouparrow.group import Group  # noqa: E402

if TYPE_CHECKING:
    from grouparrow._streams import GroupStream
    from grouparrow.dataset import GroupedDataset

__all__ = [
    "ExampleIterableDataset",
    "GroupIterableDataset",
    "collate",
    "to_torch",
    "uncollate",
]

#: What torch.from_numpy says about Arrow's read-only buffers (documented above instead).
_READ_ONLY = "The given NumPy array is not writable"


def to_torch(group: Group, column: str | None = None) -> Any:
    """One column of ``group`` as a ``torch.Tensor`` (or a Python list), or a dict of every
    column's: numbers, booleans and tensor columns as tensors, sharing Arrow's memory where
    the dtype allows (read-only views: ``.clone()`` to write); strings, bytes and other
    columns as lists. Same as :meth:`Group.to_torch`.

    Example:
        >>> import grouparrow as ga, pyarrow as pa
        >>> batch = pa.record_batch({"pixels": pa.array([b"abcd"], pa.binary(4))})
        >>> to_torch(ga.Group("ann", [batch], batch.schema), "pixels").shape
        torch.Size([1, 4])
    """
    if column is not None:
        return _convert(group, [check_column(group.schema, column, "column")])[column]
    return _convert(group)


def _convert(group: Group, names: Sequence[str] | None = None, skip: str = "") -> dict[str, Any]:
    """``names`` (all but ``skip`` when None) of ``group`` as tensors or lists."""
    table = group.to_arrow()
    if names is None:
        names = [name for name in table.column_names if name != skip]
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _READ_ONLY, UserWarning)
        for name in names:
            column = table.column(name)
            if not _is_array(column.type):
                out[name] = column.to_pylist()
                continue
            check_no_nulls(column, name, group.id)
            out[name] = torch.from_numpy(_tensors.to_numpy(column))
    return out


#: Whether a column type becomes a tensor (numbers, booleans, fixed-shape tensors), by type.
_ARRAY_TYPES: dict[pa.DataType, bool] = {}


def _is_array(kind: pa.DataType) -> bool:
    found = _ARRAY_TYPES.get(kind)
    if found is None:
        found = _ARRAY_TYPES[kind] = column_spec(pa.field("c", kind)).kind == "array"
    return found


def collate(items: Sequence[Mapping[str, Any]], *, concat: bool = False) -> dict[str, Any]:
    """Items of :class:`ExampleIterableDataset` or :class:`GroupIterableDataset` (dicts) as
    one batch, for ``DataLoader(collate_fn=collate)``: each key's tensors stacked (a new first
    dimension of ``len(items)``), every other value (strings, bytes, group ids) kept in a list.

    With ``concat=True`` (``collate_fn=functools.partial(collate, concat=True)``) the items
    are groups joined into one batch of all their rows: tensors concatenated along the rows,
    lists joined, other values (the group ids) in a tuple, and ``"num_rows"`` (a tensor of
    each group's rows) added; :func:`uncollate` splits such a batch back into groups. That is
    the fast way to take groups from DataLoader workers: each tensor a worker sends costs a
    shared-memory transfer, so one batch of 64 joined groups costs what one group does. For
    one group per step without workers use ``DataLoader(groups, batch_size=None)``.

    Example:
        >>> batch = collate([{"x": torch.tensor(1), "id": "a"}, {"x": torch.tensor(2), "id": "b"}])
        >>> batch["x"], batch["id"]
        (tensor([1, 2]), ['a', 'b'])
    """
    if not items:
        return {}
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if all(isinstance(v, torch.Tensor) for v in values):
            out[key] = _join(key, values, concat)
        elif concat and all(isinstance(v, list) for v in values):
            out[key] = [x for v in values for x in v]
        else:
            out[key] = tuple(values) if concat else values
    if concat and _ROWS not in out:
        out[_ROWS] = torch.tensor([_rows(item) for item in items], dtype=torch.int64)
    return out


#: The key :func:`collate` with ``concat=True`` adds: each joined group's rows.
_ROWS = "num_rows"


def _rows(item: Mapping[str, Any]) -> int:
    for value in item.values():
        if (isinstance(value, torch.Tensor) and value.ndim) or isinstance(value, list):
            return len(value)
    return 0


def uncollate(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The groups of a ``collate(..., concat=True)`` batch, apart again: tensors split into
    views along the rows by ``batch["num_rows"]``, row lists sliced, per-group values (ids)
    handed out. Joining groups in DataLoader workers and splitting them in the main process
    moves one tensor per column per batch between processes instead of one per group.

    Example:
        >>> batch = collate([{"x": torch.tensor([1, 2]), "id": "a"},
        ...                  {"x": torch.tensor([3]), "id": "b"}], concat=True)
        >>> [(g["id"], g["x"].tolist()) for g in uncollate(batch)]
        [('a', [1, 2]), ('b', [3])]
    """
    sizes = batch[_ROWS].tolist()
    groups: list[dict[str, Any]] = [{} for _ in sizes]
    for key, value in batch.items():
        if key == _ROWS:
            continue
        if isinstance(value, torch.Tensor):
            parts: Sequence[Any] = torch.split(value, sizes)
        elif isinstance(value, tuple):  # one value per group (ids)
            parts = value
        else:  # the groups' row lists, joined
            bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
            parts = [value[a:b] for a, b in itertools.pairwise(bounds)]
        for group, part in zip(groups, parts, strict=True):
            group[key] = part
    return groups


def _join(key: str, values: list[torch.Tensor], concat: bool) -> torch.Tensor:
    shapes = {tuple(v.shape[1:] if concat else v.shape) for v in values}
    if len(shapes) > 1:
        how = "concatenated" if concat else "stacked"
        raise ValueError(
            f"collate: the {key!r} tensors have shapes {sorted(shapes)}, which cannot be "
            f"{how}; batch examples (ExampleIterableDataset), join groups with "
            "collate(..., concat=True), or take one group per step with "
            "DataLoader(batch_size=None)"
        )
    return torch.cat(values) if concat else torch.stack(values)


class _GroupShards(IterableDataset[Any]):
    """Sharding across DataLoader workers and ranks, epochs and resuming, for both datasets."""

    def __init__(
        self,
        ds: GroupedDataset,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        columns: Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.ds = ds
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.epoch = epoch
        self.columns = None if columns is None else check_columns(ds.schema, columns)
        self.transform = transform
        self.rank, self.world_size = _ranks(rank, world_size)
        self._resume: dict[str, Any] | None = None
        self._stream: GroupStream | None = None
        self._open(0, self.rank, self.world_size)  # checks seed and epoch now

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch ``epoch`` next (its own order when ``shuffle=True``), as
        ``DistributedSampler.set_epoch``: call it before each epoch. A resumed position
        (:meth:`load_state_dict`) is kept when ``epoch`` is its epoch, dropped otherwise."""
        if epoch != self.epoch:
            self._resume = None
            self._stream = None
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """Where this copy of the dataset is: its epoch and the groups of it already yielded
        (``start``), with the seed and its worker's place (a small dict, which
        ``ds.iter_groups(**state)`` takes too). With DataLoader workers each worker holds its
        own copy: see the class docstring."""
        if self._resume is not None:
            return dict(self._resume)
        if self._stream is not None:
            return self._stream.state_dict()
        return self._open(0, self.rank, self.world_size).state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`) on the next iteration: the same
        epoch, seed and order, without the items already yielded (none is read again)."""
        state = dict(state)
        self.shuffle, self.seed, self.epoch = bool(state["shuffle"]), state["seed"], state["epoch"]
        self._resume = state
        self._stream = None

    def _open(self, start: int, worker_index: int, num_workers: int) -> GroupStream:
        return self.ds.iter_groups(
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            start=start,
            worker_index=worker_index,
            num_workers=num_workers,
            columns=self.columns,
        )

    def _start(self) -> tuple[GroupStream, dict[str, Any]]:
        """This worker's stream of the epoch, from the resumed position if any."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index, total = self.rank * workers + worker, self.world_size * workers
        state, self._resume = self._resume or {}, None
        start = int(state.get("start", 0))
        if start or state.get("row"):
            saved = (state.get("worker_index"), state.get("num_workers"))
            if saved != (index, total):
                raise ValueError(
                    f"this state was saved by worker {saved[0]} of {saved[1]} but is loaded "
                    f"into worker {index} of {total} (rank * DataLoader workers + worker id): "
                    "resume with the same ranks and num_workers, or at an epoch boundary "
                    "(set_epoch)"
                )
        self._stream = self._open(start, index, total)
        return self._stream, state

    def _key_column(self) -> str:
        return self.ds.key_column

    def _tensors(self, group: Group) -> dict[str, Any]:
        """``to_torch(group)`` without the key column (the group id replaces it)."""
        return _convert(group, skip=self._key_column())


class GroupIterableDataset(_GroupShards):
    """A ``torch.utils.data.IterableDataset`` of groups: one item per group, every group of
    ``ds`` once per epoch.

    An item is the group's columns as :func:`to_torch` makes them, with the group's id
    under the key column's name (``ds.key_column``, ``"group_id"`` unless the build named it
    otherwise) in place of that column's per-row copies; ``transform(group)`` (a
    :class:`~grouparrow.Group`) makes the item instead. ``columns`` reads only those columns.
    ``shuffle``, ``seed`` and ``epoch`` order the groups as ``ds.iter_groups`` does; call
    :meth:`set_epoch` before each epoch.

    Sharding is automatic: inside DataLoader workers each worker streams its own disjoint
    part of every shard (``worker_info.id`` of ``num_workers``), and with ``rank`` and
    ``world_size`` (taken from ``torch.distributed`` when it is initialized) each process
    its own (global worker ``rank * num_workers + id`` of ``world_size * num_workers``):
    together they yield every group exactly once. ``len()`` is the number of groups this rank
    yields in an epoch (all its workers together). The dataset pickles, so workers may start
    with ``multiprocessing_context="forkserver"`` or ``"spawn"``: do so when the main
    process runs JAX or other threads that ``fork`` breaks. Each tensor a worker yields
    crosses to the main process through shared memory (about 0.5 ms per tensor on 2 cores),
    so for small groups ``num_workers=0`` is faster; workers pay off when ``transform`` does
    real work per group.

    Resuming: :meth:`state_dict` says where the iteration is (epoch, groups yielded) and
    :meth:`load_state_dict` continues there without reading the groups already seen. With
    ``num_workers=0`` that is the DataLoader's position. With workers each holds a copy of
    the dataset: the main process's copy only knows the epoch, so resume at epoch
    boundaries, or use ``torchdata``'s ``StatefulDataLoader``, which saves and restores each
    worker's copy (a state is refused by a worker of another place).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> groups = GroupIterableDataset(ds, shuffle=True, seed=0)       # doctest: +SKIP
        >>> loader = DataLoader(groups, batch_size=None, num_workers=4)   # doctest: +SKIP
        >>> for epoch in range(10):                                       # doctest: +SKIP
        ...     groups.set_epoch(epoch)
        ...     for client in loader:          # {"group_id": "ann", "x": tensor([...]), ...}
        ...         train(client)
    """

    def __len__(self) -> int:
        return len(self._open(0, self.rank, self.world_size))

    def __iter__(self) -> Iterator[Any]:
        stream, _ = self._start()
        key = self._key_column()
        for group in stream:
            if self.transform is not None:
                yield self.transform(group)
            else:
                yield {**self._tensors(group), key: group.id}


class ExampleIterableDataset(_GroupShards):
    """A ``torch.utils.data.IterableDataset`` of examples: one dict per row, group after
    group (the rows of a group together, in their stored order), each with its group's id
    under the key column's name (``ds.key_column``).

    A row's values are views of its group's :func:`to_torch` tensors (0-d for a number, one
    tensor of its shape for a tensor column) and Python values for strings and bytes;
    ``transform(example)`` maps each dict. Groups are ordered, sharded over DataLoader
    workers and ranks, and resumed (to the row) as in :class:`GroupIterableDataset`. Batch
    them with ``DataLoader(examples, batch_size=32, collate_fn=collate)``. ``len()`` is the
    number of rows when ``world_size`` is 1.

    Example:
        >>> examples = ExampleIterableDataset(ds, columns=["pixels", "label"])  # doctest: +SKIP
        >>> loader = DataLoader(examples, batch_size=32, collate_fn=collate)   # doctest: +SKIP
        >>> next(iter(loader))["pixels"].shape                                  # doctest: +SKIP
        torch.Size([32, 28, 28])
    """

    _row = _rows = 0  # rows of the current group yielded, and in it

    def __len__(self) -> int:
        if self.world_size != 1:
            raise TypeError(
                "len() of ExampleIterableDataset is known for world_size=1 only (the rows of "
                "one rank's groups are not counted without reading the index)"
            )
        return self.ds.num_rows

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`GroupIterableDataset.state_dict`, to the row: ``start`` is the group
        being read and ``row`` the rows of it already yielded."""
        state = super().state_dict()
        if self._resume is None and self._stream is not None and 0 < self._row < self._rows:
            state["start"] -= 1  # the group being read is not finished
            state["row"] = self._row
        state.setdefault("row", 0)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._row = self._rows = 0

    def __iter__(self) -> Iterator[Any]:
        stream, state = self._start()
        skip = int(state.get("row", 0))
        key = self._key_column()
        self._row = self._rows = 0
        for group in stream:
            self._row, self._rows = skip, group.num_rows
            values = {
                name: value.unbind(0) if isinstance(value, torch.Tensor) else value
                for name, value in self._tensors(group).items()
            }
            for i in range(skip, group.num_rows):
                example = {name: value[i] for name, value in values.items()}
                example[key] = group.id
                self._row = i + 1
                yield example if self.transform is None else self.transform(example)
            skip = 0


def _ranks(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world size): given, or from an initialized ``torch.distributed``, or (0, 1)."""
    if rank is None or world_size is None:
        dist = torch.distributed
        initialized = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialized else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialized else 1
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be an integer in 0 .. world_size - 1")
    return rank, world_size
