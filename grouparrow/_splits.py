"""Deterministic train/eval splits by hash: of groups (by group id) and of the rows within
a group (by group id and position in the group), so a split never depends on the order or
the shards groups are read in, and the same ids give the same split in any dataset.

Example:
    >>> group_mask(["ann", "bob", "cy"], 0.5, seed=0).tolist()
    [True, False, True]
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from grouparrow.keys import KeyValue, composite_id, key_hash

_MASK64 = (1 << 64) - 1


def check_fraction(fraction: float, seed: int = 0) -> float:
    """``fraction`` as a float in [0, 1] (and ``seed`` an integer), or a ``ValueError``
    saying what is wrong."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f"fraction={fraction!r} must be a number between 0 and 1")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must be between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r} must be an integer")
    return float(fraction)


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an ``int`` if it is an integer >= 0 (a NumPy integer too, not a bool), else
    the ``ValueError`` :meth:`GroupedDataset.iter_groups` raises for it.

    Example:
        >>> check_seed(3)
        3
        >>> check_seed(1.5)
        Traceback (most recent call last):
        ...
        ValueError: seed=1.5 must be an integer >= 0
    """
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or seed < 0:
        raise ValueError(f"{name}={seed!r} must be an integer >= 0")
    return int(seed)


def group_mask(ids: Sequence[Any], fraction: float, seed: int) -> np.ndarray:
    """True for the groups in the eval side: ``md5("groups/<seed>:" + id)`` below
    ``fraction`` of its range."""
    salt = f"groups/{int(seed)}"
    hashes = np.array([key_hash(_stored(i), salt) >> 64 for i in ids], dtype=np.uint64)
    return _below(hashes, fraction)


def row_mask(ids: Sequence[Any], sizes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the rows in the eval side, for groups ``ids`` of ``sizes`` rows laid end to
    end: a uniform draw per (group id, position in the group) below ``fraction``."""
    salt = f"rows/{int(seed)}"
    bases = np.array([key_hash(_stored(i), salt) & _MASK64 for i in ids], dtype=np.uint64)
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    positions = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(starts, sizes)
    return uniform(np.repeat(bases, sizes) + positions.astype(np.uint64), 0) < fraction


def uniform(values: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per integer: splitmix64 of ``value + seed * golden``."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) & _MASK64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _below(hashes: np.ndarray, fraction: float) -> np.ndarray:
    return (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def _stored(group_id: Any) -> KeyValue:
    """A group id as stored: a composite key's tuple as its JSON text."""
    return composite_id(group_id) if isinstance(group_id, tuple) else group_id
