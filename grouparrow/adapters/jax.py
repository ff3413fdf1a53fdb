"""JAX: a group's columns as NumPy arrays ready for ``jax.device_put``, padded to a fixed
number of examples with a mask so that shapes are static under ``jit`` (one compilation for
every group), and a cohort of groups stacked for ``vmap``.

JAX is imported only by :func:`to_jax` (``pip install 'grouparrow[jax]'``); :func:`pad_group`
and :func:`stack_groups` need NumPy only. Numbers, booleans and fixed-shape tensor columns
(``tensor_shapes=``, fixed-size lists of numbers, ``fixed_size_binary`` as uint8) convert;
strings, variable-length lists and columns with nulls raise an error naming the column:
leave them out with ``columns=``. Without ``jax_enable_x64`` JAX stores 64-bit columns as
32-bit arrays: :func:`to_jax` raises an error naming a column with values that 32 bits do
not hold (rather than let them wrap around or become inf).

Example:
    >>> import grouparrow as ga, pyarrow as pa
    >>> batch = pa.record_batch({"x": [1.5, 2.5, 3.5], "y": [0, 1, 0]})
    >>> group = ga.Group("ann", [batch], batch.schema)
    >>> padded = pad_group(group, 4)
    >>> padded["x"].tolist(), padded["mask"].tolist()
    ([1.5, 2.5, 3.5, 0.0], [True, True, True, False])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from grouparrow import _tensors
from grouparrow.adapters._columns import (
    ColumnSpec,
    check_no_nulls,
    check_size,
    column_specs,
)
from grouparrow.group import Group

__all__ = ["pad_group", "stack_groups", "to_jax"]


def pad_group(
    group: Group,
    num_examples: int,
    *,
    columns: Sequence[str] | None = None,
    truncate: bool = False,
    mask_key: str = "mask",
) -> dict[str, np.ndarray]:
    """The group's ``columns`` (all when None) as NumPy arrays of ``num_examples`` rows:
    the group's rows first, then zeros; plus ``mask`` (bool, True for the group's rows).

    A column of numbers is ``(num_examples,)``, a tensor column ``(num_examples, *shape)``.
    A group of more than ``num_examples`` rows raises a ``ValueError``, unless
    ``truncate=True``: then it keeps its first ``num_examples`` rows (in storage order,
    which is the input order within a group; deterministic, and nothing past them is
    converted). String columns (the key column often is one) raise a ``ValueError`` naming
    them: pass ``columns=`` without them. ``mask_key`` names the mask.

    Example:
        >>> import pyarrow as pa
        >>> batch = pa.record_batch({"user": ["a", "a"], "x": [1, 2]})
        >>> group = Group("a", [batch], batch.schema)
        >>> padded = pad_group(group, 3, columns=["x"])
        >>> padded["x"].tolist(), padded["mask"].tolist()
        ([1, 2, 0], [True, True, False])
    """
    return _pad(group, num_examples, columns, truncate, mask_key, "num_examples")


def _pad(
    group: Group,
    num_examples: int,
    columns: Sequence[str] | None,
    truncate: bool,
    mask_key: str,
    size_name: str,
) -> dict[str, np.ndarray]:
    """:func:`pad_group`, its messages naming the size ``size_name`` (as the caller did)."""
    size = check_size(num_examples, size_name)
    specs = _specs(group.schema, columns, mask_key)
    out = {s.name: np.zeros((size, *s.shape), s.dtype) for s in specs}
    out[mask_key] = np.zeros(size, np.bool_)
    _fill(out, (), group, specs, size, truncate, mask_key, size_name)
    return out


def stack_groups(
    groups: Iterable[Group],
    num_examples: int,
    *,
    columns: Sequence[str] | None = None,
    truncate: bool = False,
    mask_key: str = "mask",
) -> dict[str, np.ndarray]:
    """A cohort of ``k`` groups padded as :func:`pad_group` and stacked: arrays of shape
    ``(k, num_examples, ...)`` and ``mask`` ``(k, num_examples)``, for ``jax.vmap`` over
    clients (each array is written once, with no per-group intermediate). The groups must
    share a schema (come from one dataset); there must be at least one.

    Example:
        >>> cohort = stack_groups(ds.sample(8, seed=r), 64, columns=["x", "y"])  # doctest: +SKIP
        >>> cohort["x"].shape, cohort["mask"].shape                            # doctest: +SKIP
        ((8, 64), (8, 64))
    """
    size = check_size(num_examples)
    cohort = list(groups)
    if not cohort:
        raise ValueError("stack_groups needs at least one group (the cohort is empty)")
    schema = cohort[0].schema
    specs = _specs(schema, columns, mask_key)
    for group in cohort[1:]:
        for spec in specs:
            if spec.name not in group.schema.names:
                raise ValueError(
                    f"group {group.id!r} has no column {spec.name!r} (group "
                    f"{cohort[0].id!r} has): stack groups of one dataset"
                )
            found = group.schema.field(spec.name).type
            if found != spec.type:
                raise ValueError(
                    f"column {spec.name!r} is {found} in group {group.id!r} but {spec.type} "
                    f"in group {cohort[0].id!r}: stack groups of one dataset"
                )
    k = len(cohort)
    out = {s.name: np.zeros((k, size, *s.shape), s.dtype) for s in specs}
    out[mask_key] = np.zeros((k, size), np.bool_)
    for i, group in enumerate(cohort):
        _fill(out, (i,), group, specs, size, truncate, mask_key, "num_examples")
    return out


def to_jax(
    group: Group,
    pad_to: int | None = None,
    columns: Sequence[str] | None = None,
    *,
    truncate: bool = False,
    device: Any = None,
) -> dict[str, Any]:
    """The group's ``columns`` as ``jax.Array`` s put on ``device`` (JAX's default when
    None) with ``jax.device_put``: all its rows, or with ``pad_to`` padded (and truncated
    with ``truncate=True``) as :func:`pad_group`, mask included. Same as
    :meth:`Group.to_jax`.

    Example:
        >>> arrays = to_jax(group, pad_to=128, columns=["pixels", "label"])   # doctest: +SKIP
        >>> arrays["pixels"].shape, arrays["mask"].dtype                       # doctest: +SKIP
        ((128, 28, 28), dtype('bool'))
    """
    from grouparrow.adapters import _require

    jax = _require("jax")
    if pad_to is not None:
        arrays = _pad(group, pad_to, columns, truncate, "mask", "pad_to")
    else:
        specs = _specs(group.schema, columns, None)
        table = group.to_arrow()
        arrays = {}
        for spec in specs:
            column = table.column(spec.name)
            check_no_nulls(column, spec.name, group.id)
            arrays[spec.name] = _tensors.to_numpy(column)
    rows = int(arrays["mask"].sum()) if pad_to is not None else None  # not the padding
    for name, array in arrays.items():
        _check_fits(name, array[:rows], jax.dtypes.canonicalize_dtype(array.dtype))
    return dict(jax.device_put(arrays, device))


def _check_fits(name: str, array: np.ndarray, dtype: np.dtype) -> None:
    """A ``ValueError`` when JAX would store column ``name`` (``array``) as ``dtype``, a
    narrower type, and some value does not fit it (an int64 past int32 would wrap around, a
    float64 past float32's range would become inf). Without ``jax_enable_x64`` JAX keeps
    64-bit values as 32-bit ones; values that fit pass, and nothing is checked when the
    dtype does not narrow. Cheap: a min and a max.
    """
    dtype = np.dtype(dtype)
    if dtype == array.dtype or not array.size:
        return
    if np.issubdtype(dtype, np.integer) and np.issubdtype(array.dtype, np.integer):
        low, high = array.min(), array.max()
        info = np.iinfo(dtype)
        if low >= info.min and high <= info.max:
            return
    elif np.issubdtype(dtype, np.floating) and np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)  # inf and nan stay what they are
        if not (finite & (np.abs(array) > np.finfo(dtype).max)).any():
            return
        low, high = array[finite].min(), array[finite].max()
    else:
        return
    wraps = "would wrap around" if np.issubdtype(dtype, np.integer) else "would become inf"
    raise ValueError(
        f"column {name!r} holds {array.dtype} values from {low} to {high}, which JAX without "
        f"64-bit mode stores as {dtype} ({wraps}); enable 64-bit JAX before converting with "
        'jax.config.update("jax_enable_x64", True), or store the column in a range that '
        f"{dtype} holds (e.g. rescale it, or cast it in the build's SQL), or leave it out "
        "with columns=[...]"
    )


def _specs(
    schema: pa.Schema, columns: Sequence[str] | None, mask_key: str | None
) -> list[ColumnSpec]:
    """Specs of the columns to convert; an error for any without an array form."""
    specs = column_specs(schema, columns)
    usable = [s.name for s in specs if s.kind == "array"] if columns is None else None
    for spec in specs:
        if spec.kind == "array":
            continue
        what = {
            "string": "holds strings",
            "bytes": "holds variable-length bytes",
            "ragged": "holds variable-length lists",
        }.get(spec.kind, "has no fixed-shape numeric form")
        hint = f" (columns={usable!r})" if usable is not None else ""
        raise ValueError(
            f"column {spec.name!r} ({spec.type}) {what}, which a JAX array cannot hold; "
            f"leave it out with columns=[...]{hint}. Fixed-width bytes become arrays with "
            "tensor_shapes= at the build or fixed_size_binary columns"
        )
    if mask_key is not None and mask_key in {s.name for s in specs}:
        raise ValueError(
            f"column {mask_key!r} would be overwritten by the mask: pass mask_key= another name"
        )
    return specs


def _fill(
    out: dict[str, np.ndarray],
    at: tuple[int, ...],
    group: Group,
    specs: list[ColumnSpec],
    size: int,
    truncate: bool,
    mask_key: str,
    size_name: str,
) -> None:
    """Write the group's rows into ``out[name][at]`` and its mask into ``out[mask_key][at]``."""
    n = group.num_rows
    if n > size:
        if not truncate:
            raise ValueError(
                f"group {group.id!r} has {n} rows, more than {size_name}={size}: pass a "
                f"larger {size_name} (at least {n}), or truncate=True to keep its first {size}"
            )
        n = size
    if n < group.num_rows:  # read no further than the rows kept (a large group is lazy)
        batches, have = [], 0
        for batch in group.iter_batches(n):
            batches.append(batch.slice(0, n - have))
            have += batches[-1].num_rows
            if have >= n:
                break
        table = pa.Table.from_batches(batches, schema=group.schema)
    else:
        table = group.to_arrow()
    if specs and len(specs) < table.num_columns:
        table = table.select([s.name for s in specs])
    rows: tuple[int | slice, ...] = (*at, slice(0, n))
    for spec in specs:
        column = table.column(spec.name)
        check_no_nulls(column, spec.name, group.id)
        out[spec.name][rows] = _tensors.to_numpy(column)
    out[mask_key][rows] = True
