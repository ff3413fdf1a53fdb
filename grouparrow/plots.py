"""Plots of a grouped dataset's structure: the group-size distribution and the label
distribution per group (how non-IID the clients are), written to PNG or SVG files.

matplotlib is optional (``pip install 'grouparrow[plots]'``) and imported only when a plot is
drawn. Figures are drawn without pyplot (no window, no global backend change) and saved
atomically: a temporary file next to the output, then a rename.

Example:
    >>> import polars as pl, tempfile
    >>> stats = pl.DataFrame({"group_id": ["ann", "bob", "eve"], "num_rows": [3, 40, 500]})
    >>> plot_sizes(stats, tempfile.mkdtemp() + "/sizes.png").name
    'sizes.png'
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from grouparrow.dataset import GroupedDataset

__all__ = ["plot_labels", "plot_sizes"]

#: The output formats, by file suffix.
_FORMATS = {".png": "png", ".svg": "svg"}

#: The unit of each size measure, as the axis says it.
_UNITS = {"num_rows": "examples", "num_words": "words", "num_bytes": "bytes"}

#: Up to this many labels get a legend; more get a colour bar of label positions.
_MAX_LEGEND = 20

#: Group or label names longer than this are shortened on the axes.
_MAX_NAME = 24


def plot_sizes(
    stats: pl.DataFrame | GroupedDataset,
    output: str | os.PathLike[str],
    *,
    measure: Literal["num_rows", "num_words", "num_bytes"] = "num_rows",
    title: str | None = None,
) -> Path:
    """Plot the distribution of group sizes: a histogram with logarithmic bins (left) and the
    complementary CDF P(size >= x) (right), both on log-log axes.

    ``stats`` is a Polars frame with a column named by ``measure`` (one row per group), or a
    :class:`~grouparrow.GroupedDataset`, whose ``stats()`` is used. Groups of size 0 (a group
    of empty texts has 0 words) cannot sit on log axes: they are left out of both panels and a
    note under the plot says how many; the title's median and the CCDF's fractions still count
    them. The format comes from the suffix of ``output`` (``.png`` or ``.svg``).

    Returns the path written. Raises ``ValueError`` for another suffix, an unknown
    ``measure`` or a missing column, and ``ModuleNotFoundError`` without matplotlib.

    Example:
        >>> import polars as pl, tempfile
        >>> stats = pl.DataFrame({"group_id": ["a", "b", "c"], "num_words": [0, 12, 700]})
        >>> plot_sizes(stats, tempfile.mkdtemp() + "/w.svg", measure="num_words").suffix
        '.svg'
    """
    path, fmt = _output(output)
    if measure not in _UNITS:
        raise ValueError(f"measure must be one of {sorted(_UNITS)}, not {measure!r}")
    frame = _frame(stats, "stats", [measure], "plot_sizes")
    column = frame.get_column(measure)
    if not column.dtype.is_numeric():
        raise ValueError(f"column {measure!r} must hold numbers, not {column.dtype}")
    Figure = _figure_class()
    unit = _UNITS[measure]
    nulls = column.null_count()
    values = column.drop_nulls().cast(pl.Float64).to_numpy()
    if values.size and (not np.isfinite(values).all() or values.min() < 0):
        raise ValueError(f"column {measure!r} must hold finite sizes >= 0")
    n = int(values.size)
    positive = np.sort(values[values > 0])
    zeros = n - int(positive.size)
    if title is None:
        title = f"Group sizes: {n:,} groups"
        if n:
            title += f", median {float(np.median(values)):g} {unit}"

    fig = Figure(figsize=(11.0, 4.6), dpi=100, layout="constrained")
    hist, ccdf = fig.subplots(1, 2)
    fig.suptitle(title)
    if positive.size:
        hist.hist(positive, bins=_log_bins(positive), color="tab:blue", edgecolor="white")
        unique, counts = np.unique(positive, return_counts=True)
        # P(size >= x) over every group with a value, the zero-size ones included.
        at_least = (positive.size - np.cumsum(counts) + counts) / n
        ccdf.plot(unique, at_least, drawstyle="steps-post", marker=".", color="tab:blue")
        for ax in (hist, ccdf):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
    else:
        for ax in (hist, ccdf):
            ax.text(0.5, 0.5, f"no group with more than 0 {unit}", ha="center", va="center",
                    transform=ax.transAxes)
    hist.set_xlabel(f"{unit} per group")
    hist.set_ylabel("groups")
    hist.set_title("histogram (logarithmic bins)", fontsize="medium")
    ccdf.set_xlabel(f"{unit} per group")
    ccdf.set_ylabel("fraction of groups ≥ x")
    ccdf.set_title("complementary CDF", fontsize="medium")
    notes = []
    if zeros:
        notes.append(f"{zeros:,} groups with 0 {unit} are not shown on the log axes")
    if nulls:
        notes.append(f"{nulls:,} groups without a {measure} value are left out")
    if notes:
        fig.supxlabel("; ".join(notes), fontsize="small")
    return _save(fig, path, fmt)


def plot_labels(
    labels: pl.DataFrame | GroupedDataset,
    output: str | os.PathLike[str],
    *,
    groups: int = 20,
    kind: Literal["bars", "heatmap"] = "bars",
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Plot the label distribution of the first ``groups`` groups (in order of appearance):
    stacked bars, one bar per group and one colour per label (``kind="bars"``), or a groups x
    labels heat map (``kind="heatmap"``).

    ``labels`` is a Polars frame in long form with columns ``group_id, label, count`` (one row
    per group and label present), or a :class:`~grouparrow.GroupedDataset`, whose
    ``label_counts()`` is used. Labels may be numbers or strings; they are sorted along the
    axis. ``normalize=True`` plots each label's fraction of the group's examples, else counts.
    Up to 20 labels get a legend; more get a colour bar of the sorted labels. The format comes
    from the suffix of ``output`` (``.png`` or ``.svg``).

    Returns the path written. Raises ``ValueError`` for another suffix, a missing column, an
    empty frame or bad arguments, and ``ModuleNotFoundError`` without matplotlib.

    Example:
        >>> import polars as pl, tempfile
        >>> counts = pl.DataFrame({"group_id": ["a", "a", "b"], "label": [0, 1, 1],
        ...                        "count": [3, 1, 5]})
        >>> plot_labels(counts, tempfile.mkdtemp() + "/labels.png", kind="heatmap").name
        'labels.png'
    """
    path, fmt = _output(output)
    if kind not in ("bars", "heatmap"):
        raise ValueError(f"kind must be 'bars' or 'heatmap', not {kind!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, not {groups!r}")
    frame = _frame(labels, "label_counts", ["group_id", "label", "count"], "plot_labels")
    if not frame.get_column("count").dtype.is_numeric():
        raise ValueError(f"column 'count' must hold numbers, not {frame['count'].dtype}")
    if frame.height == 0:
        raise ValueError("no label counts to plot: the frame has no rows")
    Figure = _figure_class()

    total = frame.get_column("group_id").n_unique()
    shown = frame.get_column("group_id").unique(maintain_order=True).head(groups)
    # The rows of the first `groups` groups: those whose group first appears early enough.
    first = pl.col("_row").min().over("group_id")
    frame = frame.with_row_index("_row").with_columns(_first=first)
    cutoff = frame.get_column("_first").unique().sort().head(groups).max()
    frame = (
        frame.filter(pl.col("_first") <= cutoff)
        .group_by("group_id", "label")
        .agg(pl.col("count").fill_null(0).sum())
    )
    if frame.get_column("count").min() < 0:  # type: ignore[operator]
        raise ValueError("column 'count' must hold counts >= 0")
    label_values = frame.get_column("label").unique().sort(nulls_last=True)
    group_pos = {g: i for i, g in enumerate(shown.to_list())}
    label_pos = {v: i for i, v in enumerate(label_values.to_list())}
    matrix = np.zeros((len(group_pos), len(label_pos)), dtype=np.float64)
    for g, v, c in frame.iter_rows():
        matrix[group_pos[g], label_pos[v]] += c
    if normalize:
        sums = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)
    value_label = "fraction of the group's examples" if normalize else "examples"
    group_names = [_name(g) for g in group_pos]
    label_names = [_name(v) for v in label_pos]
    if title is None:
        what = "fractions" if normalize else "counts"
        title = f"Labels per group ({what}): first {len(group_pos):,} of {total:,} groups"

    ng, nl = matrix.shape
    if kind == "bars":
        size = (min(40.0, max(7.0, 0.35 * ng + 4.0)), 5.5)
    else:
        size = (min(40.0, max(7.0, 0.22 * nl + 4.0)), min(40.0, max(4.5, 0.28 * ng + 2.5)))
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.subplots()
    fig.suptitle(title)
    if kind == "bars":
        _stacked_bars(fig, ax, matrix, group_names, label_names)
        ax.set_xlabel("group")
        ax.set_ylabel(value_label)
    else:
        image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis")
        fig.colorbar(image, ax=ax, label=value_label)
        _ticks(ax.set_xticks, nl, label_names, rotate=nl > 10)
        _ticks(ax.set_yticks, ng, group_names, rotate=False)
        ax.set_xlabel("label")
        ax.set_ylabel("group")
    return _save(fig, path, fmt)


def _stacked_bars(
    fig: Figure, ax: Axes, matrix: np.ndarray, groups: list[str], labels: list[str]
) -> None:
    """One bar per group (row of ``matrix``), one stacked segment per label (column), drawn
    as a single collection of rectangles (thousands of patches would be slow)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    ng, nl = matrix.shape
    if nl <= 10:
        colors = [colormaps["tab10"](i) for i in range(nl)]
    elif nl <= _MAX_LEGEND:
        colors = [colormaps["tab20"](i) for i in range(nl)]
    else:
        colors = [colormaps["viridis"](i / max(1, nl - 1)) for i in range(nl)]
    half = 0.4 if ng > 1 else 0.25
    tops = np.cumsum(matrix, axis=1)
    rects, faces = [], []
    for i, j in zip(*np.nonzero(matrix > 0), strict=True):
        low, high = tops[i, j] - matrix[i, j], tops[i, j]
        rects.append([(i - half, low), (i + half, low), (i + half, high), (i - half, high)])
        faces.append(colors[j])
    ax.add_collection(PolyCollection(rects, facecolors=faces, linewidths=0), autolim=False)
    ax.set_xlim(-0.6, ng - 0.4)
    top = float(tops[:, -1].max()) if nl else 0.0
    ax.set_ylim(0.0, 1.0 if top == 0 or abs(top - 1.0) < 1e-9 else top * 1.03)
    _ticks(ax.set_xticks, ng, groups, rotate=ng > 6 or max(map(len, groups), default=0) > 6)
    if nl <= _MAX_LEGEND:
        handles = [Patch(facecolor=colors[j], label=labels[j]) for j in range(nl)]
        ax.legend(handles=handles, title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize="small", frameon=False)
    else:
        cmap = ListedColormap(colors)
        norm = BoundaryNorm(np.arange(nl + 1) - 0.5, nl)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.set_label(f"label ({nl} labels, sorted)")
        step = math.ceil(nl / 15)
        bar.set_ticks(list(range(0, nl, step)), labels=labels[::step])


def _ticks(
    set_ticks: Callable[..., Any], n: int, names: Sequence[str], *, rotate: bool
) -> None:
    """Tick every position, or every k-th when there are more than 50, named by ``names``."""
    step = math.ceil(n / 50) if n else 1
    positions = list(range(0, n, step))
    rotation = {"rotation": 90} if rotate else {}
    set_ticks(positions, labels=[names[i] for i in positions], fontsize="small", **rotation)


def _log_bins(values: np.ndarray) -> np.ndarray:
    """Logarithmically spaced bin edges covering the sorted positive ``values``."""
    low, high = float(values[0]), float(values[-1])
    if high <= low * 1.0001:
        return np.array([low / math.sqrt(2.0), low * math.sqrt(2.0)])
    bins = int(min(50, max(10, math.ceil(math.sqrt(values.size)))))
    return np.logspace(math.log10(low), math.log10(high), bins + 1)


def _name(value: object) -> str:
    """A group id or label as an axis shows it: shortened past ``_MAX_NAME`` characters."""
    text = "null" if value is None else str(value)
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 1] + "…"


def _frame(source: object, method: str, columns: list[str], function: str) -> pl.DataFrame:
    """The Polars frame to plot: ``source`` itself, or a dataset's ``method()``; checks that
    ``columns`` are there."""
    if isinstance(source, pl.DataFrame):
        frame = source
    elif hasattr(source, method):
        frame = getattr(source, method)()
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"{method}() returned {type(frame).__name__}, not a polars DataFrame")
    else:
        raise TypeError(
            f"{function} takes a polars DataFrame or a GroupedDataset, not "
            f"{type(source).__name__}"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{function} needs column {missing[0]!r}, missing from the frame "
            f"(columns present: {frame.columns})"
        )
    return frame


def _output(output: str | os.PathLike[str]) -> tuple[Path, str]:
    """The output path and the format its suffix names; ``ValueError`` for another suffix."""
    path = Path(output)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the image format of {os.fspath(output)!r}: the file name must end "
            f"in one of {', '.join(_FORMATS)}"
        )
    return path, fmt


def _figure_class() -> type[Figure]:
    """matplotlib's ``Figure``, or a ``ModuleNotFoundError`` naming the extra to install."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModuleNotFoundError(
            "plots need matplotlib: pip install 'grouparrow[plots]'", name="matplotlib"
        ) from exc
    return Figure


def _save(fig: Figure, path: Path, fmt: str) -> Path:
    """Save ``fig`` to a temporary file beside ``path``, rename it over ``path``, free it."""
    import matplotlib

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # SVG keeps its text as text (searchable, smaller) and carries no date (reproducible).
    metadata = {"Date": None} if fmt == "svg" else None
    try:
        with (
            matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "grouparrow"}),
            open(tmp, "xb") as f,
        ):
            fig.savefig(f, format=fmt, metadata=metadata)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        fig.clear()
    return path
