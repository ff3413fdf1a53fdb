"""The order of a stream of groups, and a resumable iterator over it.

One epoch visits every group once: shards in an order drawn from ``(seed, epoch)``, each
shard read sequentially from a drawn start, wrapping around (the reader also permutes the
groups within windows of a few MiB, see :func:`windows`). With ``num_workers`` the groups
of every shard are cut into contiguous ranges, one per worker, so workers read disjoint,
complete, sequential parts. A position in the stream (groups yielded so far) is enough to
resume it: the segments are recomputed and the skipped ones never read.

Example:
    >>> [(s.shard, s.first, s.end) for s in segments([4, 0, 3], shuffle=False)]
    [(0, 0, 4), (2, 0, 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from grouparrow.group import Group


@dataclass(frozen=True, slots=True)
class Segment:
    """Storage positions ``first .. end`` of one shard's groups, read in order."""

    shard: int
    first: int
    end: int


#: Bytes of groups (the index's ``num_bytes``) a shuffled stream permutes together.
WINDOW_BYTES = 8 * 2**20


def windows(num_bytes: np.ndarray, window_bytes: int | None = None) -> np.ndarray:
    """Where the windows of consecutive groups a shuffled stream permutes start, and then
    the number of groups: a window ends when its groups reach ``window_bytes`` (by default
    ``WINDOW_BYTES``; one larger group is a window of its own). A window is about one chunk
    of decoded row groups, so holding it while it is yielded costs little memory.

    Example:
        >>> windows(np.array([3, 2, 3, 9, 1]), window_bytes=6).tolist()
        [0, 3, 4, 5]
    """
    before = np.cumsum(num_bytes) - num_bytes
    size = window_bytes or WINDOW_BYTES
    window = before // size
    new = np.diff(window) > 0
    new |= num_bytes[1:] > size  # a group larger than a window: a window of its own
    return np.concatenate([[0], np.flatnonzero(new) + 1, [len(num_bytes)]])


def segments(
    counts: Sequence[int],
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    worker_index: int = 0,
    num_workers: int = 1,
) -> list[Segment]:
    """The segments one worker reads in one epoch, in order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(counts)) if shuffle else np.arange(len(counts))
    # One draw per shard, by shard id: a worker's start does not depend on the others'.
    draws = rng.random(len(counts)) if shuffle else np.zeros(len(counts))
    out = []
    for shard in order.tolist():
        n = counts[shard]
        lo, hi = n * worker_index // num_workers, n * (worker_index + 1) // num_workers
        if hi <= lo:
            continue
        start = lo + int(draws[shard] * (hi - lo))
        out.append(Segment(shard, start, hi))
        if start > lo:
            out.append(Segment(shard, lo, start))
    return out


class GroupStream(Iterator["Group"]):
    """An epoch of groups that can say where it is and resume there in O(1).

    ``state_dict()`` is a small dict (seed, epoch, position, worker, columns...); pass it
    back as ``ds.iter_groups(**state)`` or to :meth:`load_state_dict` to continue with
    exactly the groups not yet seen, without reading the earlier ones (a shuffled stream
    reads at most the window it stopped in again).

    ``read(segment, skip, config, columns)`` yields the segment's groups less the first
    ``skip``, in the order ``config`` (shuffle, seed, epoch...) asks for.

    Example:
        >>> stream = ds.iter_groups(shuffle=True, seed=0, epoch=3)   # doctest: +SKIP
        >>> first = [next(stream) for _ in range(10)]                 # doctest: +SKIP
        >>> rest = ds.iter_groups(**stream.state_dict())              # doctest: +SKIP
    """

    def __init__(
        self,
        counts: Sequence[int],
        count: Callable[[Segment], int],
        read: Callable[[Segment, int, dict[str, Any], list[str] | None], Iterator[Group]],
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
        start: int,
        worker_index: int,
        num_workers: int,
        columns: Sequence[str] | None = None,
    ) -> None:
        _check(seed, epoch, start, worker_index, num_workers)
        self._counts, self._count, self._read = counts, count, read
        self._columns = None if columns is None else list(columns)
        self._config: dict[str, Any] = {
            "shuffle": bool(shuffle),
            "seed": int(seed),
            "epoch": int(epoch),
            "worker_index": int(worker_index),
            "num_workers": int(num_workers),
        }
        self.position = int(start)
        self._groups: Iterator[Group] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is: ``ds.iter_groups(**state)`` continues from here."""
        return {**self._config, "start": self.position, "columns": self._columns}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`) on the next ``next()``."""
        config = {k: state[k] for k in self._config}
        _check(
            config["seed"],
            config["epoch"],
            state["start"],
            config["worker_index"],
            config["num_workers"],
        )
        self._config = config
        self._columns = state.get("columns", self._columns)
        self.position = int(state["start"])
        self._groups = None

    def __len__(self) -> int:
        """Groups this worker sees in one epoch."""
        return sum(self._count(s) for s in self._segments())

    def __iter__(self) -> GroupStream:
        return self

    def __next__(self) -> Group:
        if self._groups is None:
            self._groups = self._run(self.position)
        group = next(self._groups)
        self.position += 1
        return group

    def _segments(self) -> list[Segment]:
        return segments(self._counts, **self._config)

    def _run(self, position: int) -> Iterator[Group]:
        for segment in self._segments():
            n = self._count(segment)
            if position >= n:
                position -= n
                continue
            yield from self._read(segment, position, self._config, self._columns)
            position = 0


def _check(seed: Any, epoch: Any, start: Any, worker_index: Any, num_workers: Any) -> None:
    for name, value in (("seed", seed), ("epoch", epoch), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}={value!r} must be an integer >= 0")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers={num_workers!r} must be a positive integer")
    if not isinstance(worker_index, int) or not 0 <= worker_index < num_workers:
        raise ValueError(
            f"worker_index={worker_index!r} must be an integer in 0 .. num_workers - 1 "
            f"({num_workers - 1})"
        )
