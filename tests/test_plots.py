"""grouparrow.plots: group-size and label plots rendered to real PNG and SVG files."""

from __future__ import annotations

import statistics
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from conftest import data_file

pytest.importorskip("matplotlib")

from grouparrow.plots import plot_labels, plot_sizes

SVG = "{http://www.w3.org/2000/svg}"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, after checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_png(path: Path) -> None:
    width, height = png_size(path)
    assert width > 300 and height > 300
    assert path.stat().st_size > 5_000


def svg_texts(path: Path) -> list[str]:
    """Every text of the SVG (matplotlib writes text as <text> elements here), after checking
    the file is a well-formed SVG with many elements."""
    assert path.stat().st_size > 5_000
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    assert sum(1 for _ in root.iter()) > 50
    return ["".join(e.itertext()).strip() for e in root.iter(f"{SVG}text")]


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def words() -> pl.DataFrame:
    """Group stats with two groups of 0 words (empty texts)."""
    return pl.DataFrame(
        {
            "group_id": ["a", "b", "c", "d", "e", "f"],
            "num_rows": [1, 2, 3, 40, 40, 5000],
            "num_words": [0, 0, 3, 50, 50, 4000],
            "num_bytes": [10, 20, 300, 4_000, 4_000, 5_000_000],
        }
    )


@pytest.fixture
def animals() -> pl.DataFrame:
    """Long-form label counts with string labels; group "z" appears first."""
    return pl.DataFrame(
        {
            "group_id": ["z", "z", "a", "a", "m"],
            "label": ["dog", "cat", "emu", "cat", "dog"],
            "count": [4, 3, 6, 5, 7],
        }
    )


# --- plot_sizes ---------------------------------------------------------------------------


def test_sizes_svg_title_labels_and_zero_note(tmp_path: Path, words: pl.DataFrame) -> None:
    import matplotlib

    had_pyplot = "matplotlib.pyplot" in sys.modules
    fonttype = matplotlib.rcParams["svg.fonttype"]
    out = plot_sizes(words, tmp_path / "words.svg", measure="num_words")
    assert out == tmp_path / "words.svg"
    texts = svg_texts(out)
    # median over all six groups, the zero-size ones included: (3 + 50) / 2
    assert "Group sizes: 6 groups, median 26.5 words" in texts
    assert "2 groups with 0 words are not shown on the log axes" in texts
    assert texts.count("words per group") == 2
    assert "groups" in texts
    assert "fraction of groups ≥ x" in texts
    assert names_in(tmp_path) == ["words.svg"]
    # The user's matplotlib settings are left as they were, and pyplot is not imported.
    assert matplotlib.rcParams["svg.fonttype"] == fonttype
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules


def test_sizes_bytes_unit(tmp_path: Path, words: pl.DataFrame) -> None:
    texts = svg_texts(plot_sizes(words, tmp_path / "s.svg", measure="num_bytes"))
    assert "Group sizes: 6 groups, median 2150 bytes" in texts
    assert texts.count("bytes per group") == 2
    assert not any("not shown" in t for t in texts)  # no zero-size groups


def test_sizes_png_overwrites_existing_file(tmp_path: Path, words: pl.DataFrame) -> None:
    out = tmp_path / "sizes.PNG"
    out.write_bytes(b"old")
    assert plot_sizes(words, str(out), measure="num_words") == out
    check_png(out)
    assert names_in(tmp_path) == ["sizes.PNG"]


def test_sizes_custom_title_and_only_zeros(tmp_path: Path) -> None:
    frame = pl.DataFrame({"group_id": ["a", "b"], "num_words": [0, 0]})
    texts = svg_texts(plot_sizes(frame, tmp_path / "z.svg", measure="num_words", title="Mine"))
    assert "Mine" in texts
    assert "2 groups with 0 words are not shown on the log axes" in texts
    assert texts.count("no group with more than 0 words") == 2


def test_sizes_nulls_are_left_out_and_said(tmp_path: Path) -> None:
    frame = pl.DataFrame({"group_id": ["a", "b", "c"], "num_rows": [4, None, 16]})
    texts = svg_texts(plot_sizes(frame, tmp_path / "n.svg"))
    assert "Group sizes: 2 groups, median 10 examples" in texts
    assert "1 groups without a num_rows value are left out" in texts


def test_sizes_empty_frame(tmp_path: Path) -> None:
    frame = pl.DataFrame({"group_id": [], "num_rows": []}, schema={"group_id": pl.String,
                                                                   "num_rows": pl.Int64})
    texts = svg_texts(plot_sizes(frame, tmp_path / "e.svg"))
    assert "Group sizes: 0 groups" in texts


@pytest.mark.parametrize("name", ["s.jpg", "s.pdf", "s", "s.png.txt"])
def test_sizes_bad_suffix(tmp_path: Path, words: pl.DataFrame, name: str) -> None:
    with pytest.raises(ValueError, match=r"one of \.png, \.svg"):
        plot_sizes(words, tmp_path / name)
    assert names_in(tmp_path) == []


def test_sizes_errors(tmp_path: Path, words: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"'num_bytes'.*columns present: \['group_id', "):
        plot_sizes(words.drop("num_bytes"), tmp_path / "s.png", measure="num_bytes")
    with pytest.raises(ValueError, match="measure must be one of"):
        plot_sizes(words, tmp_path / "s.png", measure="num_tokens")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must hold numbers"):
        plot_sizes(words.with_columns(num_rows=pl.lit("x")), tmp_path / "s.png")
    with pytest.raises(ValueError, match=">= 0"):
        plot_sizes(words.with_columns(num_rows=pl.lit(-1)), tmp_path / "s.png")
    with pytest.raises(TypeError, match="polars DataFrame or a GroupedDataset, not list"):
        plot_sizes([1, 2], tmp_path / "s.png")  # type: ignore[arg-type]
    assert names_in(tmp_path) == []


def test_failed_render_leaves_no_temp_file(tmp_path: Path, words: pl.DataFrame) -> None:
    out = tmp_path / "s.png"
    out.write_bytes(b"old")
    # An unparsable mathtext title fails while the figure is drawn, after the temp file opened.
    with pytest.raises(ValueError):
        plot_sizes(words, out, title=r"$\frac{$")
    assert names_in(tmp_path) == ["s.png"]
    assert out.read_bytes() == b"old"  # the old file is kept, not half-overwritten


def test_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, words: pl.DataFrame, animals: pl.DataFrame
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'grouparrow\[plots\]'") as info:
        plot_sizes(words, tmp_path / "s.png")
    assert info.value.name == "matplotlib"
    with pytest.raises(ModuleNotFoundError, match=r"grouparrow\[plots\]"):
        plot_labels(animals, tmp_path / "l.svg")
    assert names_in(tmp_path) == []


# --- plot_labels --------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_labels_bars_svg_string_labels(
    tmp_path: Path, animals: pl.DataFrame, normalize: bool
) -> None:
    texts = svg_texts(plot_labels(animals, tmp_path / "l.svg", normalize=normalize))
    what, axis = ("fractions", "fraction of the group's examples") if normalize else (
        "counts", "examples")
    assert f"Labels per group ({what}): first 3 of 3 groups" in texts
    assert axis in texts
    assert "group" in texts
    # legend: title, then the labels sorted
    legend = texts[texts.index("label") + 1 :]
    assert legend[:3] == ["cat", "dog", "emu"]
    # one bar per group, in order of appearance
    ticks = [t for t in texts if t in ("z", "a", "m")]
    assert ticks == ["z", "a", "m"]


def test_labels_heatmap_png_int_labels(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"group_id": [7, 7, 3, 3, 3], "label": [2, 0, 0, 1, 2], "count": [1, 9, 2, 2, 2]}
    )
    out = plot_labels(frame, tmp_path / "h.png", kind="heatmap")
    check_png(out)
    assert names_in(tmp_path) == ["h.png"]


def test_labels_heatmap_svg_axes(tmp_path: Path, animals: pl.DataFrame) -> None:
    texts = svg_texts(plot_labels(animals, tmp_path / "h.svg", kind="heatmap", normalize=False,
                                  title="Heat"))
    assert "Heat" in texts
    assert "examples" in texts  # the colour bar
    assert "label" in texts and "group" in texts
    assert [t for t in texts if t in ("cat", "dog", "emu")] == ["cat", "dog", "emu"]
    assert [t for t in texts if t in ("z", "a", "m")] == ["z", "a", "m"]


def test_labels_first_groups_only(tmp_path: Path, animals: pl.DataFrame) -> None:
    texts = svg_texts(plot_labels(animals, tmp_path / "l.svg", groups=1))
    assert "Labels per group (fractions): first 1 of 3 groups" in texts
    assert "z" in texts and "a" not in texts and "m" not in texts
    # only the labels of group "z" are on the legend
    assert "emu" not in texts
    assert [t for t in texts if t in ("cat", "dog")] == ["cat", "dog"]


def test_labels_int_labels_and_null_group(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"group_id": [None, "b", None, "c"], "label": [10, 2, 3, 10], "count": [1, 2, 3, 4]}
    )
    texts = svg_texts(plot_labels(frame, tmp_path / "l.svg", groups=2))
    assert "Labels per group (fractions): first 2 of 3 groups" in texts
    assert [t for t in texts if t in ("null", "b", "c")] == ["null", "b"]
    # integer labels sorted as numbers, not as text
    legend = texts[texts.index("label") + 1 :]
    assert legend[:3] == ["2", "3", "10"]


def test_labels_png_bars(tmp_path: Path, animals: pl.DataFrame) -> None:
    check_png(plot_labels(animals, tmp_path / "l.png"))
    assert names_in(tmp_path) == ["l.png"]


def test_labels_errors(tmp_path: Path, animals: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"'count'.*columns present: \['group_id', 'label'\]"):
        plot_labels(animals.drop("count"), tmp_path / "l.png")
    with pytest.raises(ValueError, match="'label'"):
        plot_labels(animals.rename({"label": "class"}), tmp_path / "l.png")
    with pytest.raises(ValueError, match=r"one of \.png, \.svg"):
        plot_labels(animals, tmp_path / "l.jpeg")
    with pytest.raises(ValueError, match="kind must be"):
        plot_labels(animals, tmp_path / "l.png", kind="pie")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        plot_labels(animals, tmp_path / "l.png", groups=0)
    with pytest.raises(ValueError, match="no rows"):
        plot_labels(animals.clear(), tmp_path / "l.png")
    with pytest.raises(ValueError, match="counts >= 0"):
        plot_labels(animals.with_columns(count=pl.lit(-1)), tmp_path / "l.png")
    assert names_in(tmp_path) == []


# --- real data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def femnist(data_dir: Path) -> pl.DataFrame:
    path = data_file(data_dir, "femnist/femnist_subset.parquet")
    return pl.read_parquet(path, columns=["writer_id", "label"])


def test_femnist_labels(tmp_path: Path, femnist: pl.DataFrame) -> None:
    counts = (
        femnist.group_by(["writer_id", "label"], maintain_order=True)
        .len()
        .rename({"writer_id": "group_id", "len": "count"})
    )
    writers = femnist.get_column("writer_id").unique(maintain_order=True).to_list()
    labels = femnist.get_column("label").n_unique()
    check_png(plot_labels(counts, tmp_path / "bars.png"))
    texts = svg_texts(plot_labels(counts, tmp_path / "heat.svg", kind="heatmap"))
    assert f"Labels per group (fractions): first 20 of {len(writers)} groups" in texts
    assert [t for t in texts if t in set(writers)] == writers[:20]
    assert "fraction of the group's examples" in texts
    # More than 20 labels: the bars get a colour bar of the labels, not a legend.
    bars = svg_texts(plot_labels(counts, tmp_path / "bars.svg", groups=5, normalize=False))
    assert labels > 20
    assert f"label ({labels} labels, sorted)" in bars
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "bars.svg", "heat.svg"]


def test_femnist_sizes(tmp_path: Path, femnist: pl.DataFrame) -> None:
    stats = femnist.group_by("writer_id").len().rename({"writer_id": "group_id",
                                                        "len": "num_rows"})
    median = statistics.median(stats.get_column("num_rows").to_list())
    texts = svg_texts(plot_sizes(stats, tmp_path / "sizes.svg"))
    assert f"Group sizes: {stats.height:,} groups, median {median:g} examples" in texts
    assert texts.count("examples per group") == 2
