"""Group statistics: per-group label counts (at build time and with ``compute_stats``), the
``stats()`` / ``summary()`` tables, ``ga.group_counts`` and SQL over a dataset (``ds.sql``),
checked against values computed independently from the source (Counter, numpy, polars)."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import data_file

import grouparrow as ga
from grouparrow.errors import GroupArrowError, KeySpecError, NullKeyError, QueryError
from grouparrow.format import label_counts_type

MEASURES = [
    "examples per group",
    "words per group",
    "bytes per group",
]
LABEL_MEASURES = [
    "labels per group",
    "label entropy (bits)",
    "label JS distance",
    "label Hellinger distance",
]
SUMMARY_COLUMNS = ["measure", "groups", "total", "min", "median", "mean", "p90", "p99", "max"]
INDEX_COLUMNS = ["group_id", "shard", "offset", "num_rows", "num_bytes", "num_words"]
METRICS = ["num_labels", "label_entropy", "label_js_distance", "label_hellinger"]

# -- the small hand-made source: string labels with nulls -------------------------------------

SMALL = pa.table(
    {
        "user": ["ann", "bob", "ann", "cy", "ann", "bob", "cy", "ann", "dee", "cy", "eve", "eve"],
        "label": ["x", "y", "x", None, "y", "y", "x", None, "z", None, "x", "y"],
        "grade": pa.array([3, 1, 2, 3, 3, 1, 2, 2, 5, 3, 1, 1], pa.int32()),
        "text": [
            "hello there",
            "one",
            "a b c",
            "",
            "tabs\tand  spaces",
            "x y",
            "word",
            "p q r s",
            "z",
            "  lead",
            "e1 e2",
            "e3",
        ],
        "score": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5],
        "blob": [b"\x00"] * 12,
        "tags": [[1, 2]] * 12,
    }
)


def _build_small(output: Path, **kwargs: Any) -> ga.GroupedDataset:
    return ga.build(SMALL, key="user", output=output, text_columns=["text"], **kwargs)


# -- independent reference computations ----------------------------------------------------


def _sort_key(label: Any) -> tuple[bool, Any]:
    """Labels sorted, a null last."""
    return (label is None, label if label is not None else 0)


def expected_label_counts(keys: Sequence[Any], labels: Sequence[Any]) -> dict[Any, list[dict]]:
    """Per key, ``[{"label": l, "count": n}, ...]`` sorted by label with a null last."""
    pairs = Counter(zip(keys, labels, strict=True))
    out: dict[Any, list[dict]] = {}
    for (key, label), n in pairs.items():
        out.setdefault(key, []).append({"label": label, "count": n})
    return {k: sorted(v, key=lambda d: _sort_key(d["label"])) for k, v in out.items()}


def expected_metrics(keys: Sequence[Any], labels: Sequence[Any]) -> dict[Any, dict[str, float]]:
    """Per key: labels present, entropy (bits), Jensen-Shannon and Hellinger distance of its
    label distribution to the global one, by numpy over a dense group x label grid."""
    values = sorted(set(labels), key=_sort_key)
    position = {v: i for i, v in enumerate(values)}
    groups = sorted(set(keys))
    row = {g: i for i, g in enumerate(groups)}
    grid = np.zeros((len(groups), len(values)))
    for key, label in zip(keys, labels, strict=True):
        grid[row[key], position[label]] += 1
    q = grid.sum(axis=0) / grid.sum()
    out = {}
    for g, counts in zip(groups, grid, strict=True):
        p = counts / counts.sum()
        nz = p > 0
        m = (p + q) / 2
        kl_pm = np.sum(p[nz] * np.log2(p[nz] / m[nz]))
        qz = q > 0
        kl_qm = np.sum(q[qz] * np.log2(q[qz] / m[qz]))
        out[g] = {
            "num_labels": int(nz.sum()),
            "label_entropy": float(-np.sum(p[nz] * np.log2(p[nz]))),
            "label_js_distance": math.sqrt(max(0.0, (kl_pm + kl_qm) / 2)),
            "label_hellinger": math.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2),
        }
    return out


def gini(values: Sequence[float]) -> float:
    """Gini coefficient by the mean absolute difference: sum |xi - xj| / (2 n^2 mean)."""
    x = np.asarray(values, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def quantiles(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=float)
    return {
        "min": float(x.min()),
        "median": float(np.quantile(x, 0.5)),
        "mean": float(x.mean()),
        "p90": float(np.quantile(x, 0.9)),
        "p99": float(np.quantile(x, 0.99)),
        "max": float(x.max()),
    }


def index_by_group(ds: ga.GroupedDataset) -> dict[Any, dict[str, Any]]:
    return {row["group_id"]: row for row in ds.index.to_pylist()}


def assert_same_frames(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Equal frames, floats to the last few bits (DuckDB sums doubles in parallel)."""
    assert a.schema == b.schema
    floats = [name for name, dtype in a.schema.items() if dtype == pl.Float64]
    assert a.drop(floats).equals(b.drop(floats))
    for name in floats:
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=1e-12, atol=1e-14)


def files_in(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- module fixtures: each dataset built once ----------------------------------------------


@pytest.fixture(scope="module")
def femnist_path(data_dir: Path) -> Path:
    return data_file(data_dir, "femnist/femnist_subset.parquet")


@pytest.fixture(scope="module")
def femnist_source(femnist_path: Path) -> pa.Table:
    return pq.read_table(femnist_path, columns=["writer_id", "label", "split", "source_file"])


@pytest.fixture(scope="module", params=[1, 3], ids=["1shard", "3shards"])
def femnist_ds(
    request: pytest.FixtureRequest, femnist_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ga.GroupedDataset:
    out = tmp_path_factory.mktemp("femnist") / "ds"
    return ga.build(
        femnist_path, key="writer_id", output=out, label_column="label", num_shards=request.param
    )


@pytest.fixture(scope="module", params=[1, 3], ids=["1shard", "3shards"])
def small_ds(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ga.GroupedDataset:
    out = tmp_path_factory.mktemp("small") / "ds"
    return _build_small(out, label_column="label", num_shards=request.param)


@pytest.fixture(scope="module")
def plain_small(tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    """The small table without label counts (read-only in the tests that use it)."""
    return _build_small(tmp_path_factory.mktemp("plain") / "ds", num_shards=2)


# -- label counts at build time ------------------------------------------------------------


def test_femnist_label_counts_match_the_source(
    femnist_ds: ga.GroupedDataset, femnist_source: pa.Table
) -> None:
    keys = femnist_source.column("writer_id").to_pylist()
    labels = femnist_source.column("label").to_pylist()
    expected = expected_label_counts(keys, labels)
    index = index_by_group(femnist_ds)
    assert len(index) == 184 == len(expected)
    assert {g: row["label_counts"] for g, row in index.items()} == expected
    assert {g: row["num_rows"] for g, row in index.items()} == dict(Counter(keys))
    # The label type is kept inside the struct: int16 stays int16.
    field = femnist_ds.index.schema.field("label_counts")
    assert field.type == label_counts_type(pa.int16())
    assert field.type.value_type.field("label").type == pa.int16()
    assert femnist_ds.manifest.label_column == "label"
    assert femnist_ds.manifest.label_type == pa.int16()
    assert ga.verify(femnist_ds.path).ok


def test_femnist_label_counts_long_form(
    femnist_ds: ga.GroupedDataset, femnist_source: pa.Table
) -> None:
    long = femnist_ds.label_counts()
    assert long.columns == ["group_id", "label", "count"]
    assert long.schema["label"] == pl.Int16 and long.schema["count"] == pl.Int64
    pairs = Counter(
        zip(
            femnist_source.column("writer_id").to_pylist(),
            femnist_source.column("label").to_pylist(),
            strict=True,
        )
    )
    assert {(g, lab): n for g, lab, n in long.rows()} == dict(pairs)
    assert long.height == len(pairs)
    # Groups in storage order (the index's), labels sorted within each group.
    order = femnist_ds.index.column("group_id").to_pylist()
    assert long.get_column("group_id").unique(maintain_order=True).to_list() == order
    for (_,), part in long.group_by("group_id", maintain_order=True):
        assert part.get_column("label").to_list() == sorted(part.get_column("label").to_list())


def test_small_string_labels_with_nulls(small_ds: ga.GroupedDataset) -> None:
    users = SMALL.column("user").to_pylist()
    labels = SMALL.column("label").to_pylist()
    index = index_by_group(small_ds)
    assert {g: row["label_counts"] for g, row in index.items()} == {
        "ann": [
            {"label": "x", "count": 2},
            {"label": "y", "count": 1},
            {"label": None, "count": 1},
        ],
        "bob": [{"label": "y", "count": 2}],
        "cy": [{"label": "x", "count": 1}, {"label": None, "count": 2}],
        "dee": [{"label": "z", "count": 1}],
        "eve": [{"label": "x", "count": 1}, {"label": "y", "count": 1}],
    }
    assert {g: row["label_counts"] for g, row in index.items()} == expected_label_counts(
        users, labels
    )
    assert {g: row["num_rows"] for g, row in index.items()} == dict(Counter(users))
    words: Counter[str] = Counter()
    for user, text in zip(users, SMALL.column("text").to_pylist(), strict=True):
        words[user] += len(text.split())
    assert {g: row["num_words"] for g, row in index.items()} == dict(words)
    assert small_ds.index.schema.field("label_counts").type == label_counts_type(pa.string())
    long = small_ds.label_counts()
    assert sorted(long.rows(), key=repr) == sorted(
        [(g, lab, n) for (g, lab), n in Counter(zip(users, labels, strict=True)).items()],
        key=repr,
    )
    assert ga.verify(small_ds.path).ok


def test_label_counts_without_labels_is_an_error(plain_small: ga.GroupedDataset) -> None:
    assert plain_small.manifest.label_column is None
    assert "label_counts" not in plain_small.index.column_names
    with pytest.raises(GroupArrowError, match=r"no label counts.*compute_stats"):
        plain_small.label_counts()


def test_build_rejects_a_label_column_that_cannot_be_counted(tmp_path: Path) -> None:
    for column in ["nope", "score", "blob", "tags"]:
        with pytest.raises(KeySpecError, match=f"label_column='{column}'"):
            _build_small(tmp_path / column, label_column=column)
        assert not (tmp_path / column).exists()


# -- ds.stats() ----------------------------------------------------------------------------


def test_stats_columns_and_label_metrics(femnist_ds: ga.GroupedDataset, femnist_source) -> None:
    stats = femnist_ds.stats()
    assert stats.columns == [*INDEX_COLUMNS, "label_counts", *METRICS]
    assert stats.height == 184
    # Rows in storage order, index columns as the index holds them.
    assert stats.select(INDEX_COLUMNS).to_arrow().to_pylist() == (
        femnist_ds.index.select(INDEX_COLUMNS).to_pylist()
    )
    keys = femnist_source.column("writer_id").to_pylist()
    assert dict(stats.select("group_id", "num_rows").rows()) == dict(Counter(keys))
    words: Counter[str] = Counter()
    for key, split, file in zip(
        keys,
        femnist_source.column("split").to_pylist(),
        femnist_source.column("source_file").to_pylist(),
        strict=True,
    ):
        words[key] += len(split.split()) + len(file.split())
    assert dict(stats.select("group_id", "num_words").rows()) == dict(words)
    assert stats.get_column("num_bytes").sum() == femnist_ds.manifest.num_bytes
    expected = expected_metrics(keys, femnist_source.column("label").to_pylist())
    for row in stats.select("group_id", *METRICS).iter_rows(named=True):
        want = expected[row["group_id"]]
        assert row["num_labels"] == want["num_labels"]
        for metric in METRICS[1:]:
            assert row[metric] == pytest.approx(want[metric], rel=1e-9, abs=1e-12), metric


def test_stats_of_small_labels_with_nulls(small_ds: ga.GroupedDataset) -> None:
    stats = small_ds.stats()
    expected = expected_metrics(SMALL.column("user").to_pylist(), SMALL.column("label").to_pylist())
    got = {r["group_id"]: r for r in stats.iter_rows(named=True)}
    assert set(got) == set(expected)
    for group, want in expected.items():
        assert got[group]["num_labels"] == want["num_labels"]
        for metric in METRICS[1:]:
            assert got[group][metric] == pytest.approx(want[metric], rel=1e-9, abs=1e-12)
    # A single-label group has entropy 0; "ann" has 3 labels, one of them null.
    assert got["bob"]["label_entropy"] == 0.0 and got["ann"]["num_labels"] == 3
    assert got["ann"]["label_entropy"] == pytest.approx(1.5)


def test_stats_without_labels_is_the_index(plain_small: ga.GroupedDataset) -> None:
    stats = plain_small.stats()
    assert stats.columns == INDEX_COLUMNS
    assert stats.to_arrow().to_pylist() == plain_small.index.to_pylist()


def test_ga_stats_of_a_path_equals_ds_stats(femnist_ds: ga.GroupedDataset) -> None:
    by_path = ga.stats(femnist_ds.path)
    assert_same_frames(by_path, femnist_ds.stats())
    assert_same_frames(ga.stats(str(femnist_ds.path)), by_path)


def test_stats_are_reproducible(femnist_ds: ga.GroupedDataset) -> None:
    ds = ga.open(femnist_ds.path)
    ds.sql("SET threads = 2").fetchall()  # this object's own connection, as on 2+ cores
    first, summary = ds.stats(), ds.summary()
    for _ in range(4):
        assert ds.stats().equals(first)
        assert ds.summary().equals(summary)


# -- ds.summary() --------------------------------------------------------------------------


def test_summary_with_labels(femnist_ds: ga.GroupedDataset, femnist_source: pa.Table) -> None:
    summary = femnist_ds.summary()
    assert summary.columns == [*SUMMARY_COLUMNS, "gini"]
    assert summary.get_column("measure").to_list() == MEASURES + LABEL_MEASURES
    assert summary.get_column("groups").to_list() == [184] * 7
    index = femnist_ds.index
    rows = {r["measure"]: r for r in summary.iter_rows(named=True)}
    assert rows["examples per group"]["total"] == femnist_ds.num_rows == 18796
    assert rows["words per group"]["total"] == int(np.sum(index.column("num_words")))
    assert rows["words per group"]["total"] == 2 * 18796  # "split" and "source_file": 1 word
    assert rows["bytes per group"]["total"] == femnist_ds.manifest.num_bytes
    assert rows["bytes per group"]["total"] == sum(s.num_bytes for s in femnist_ds.manifest.shards)
    distinct = len(set(femnist_source.column("label").to_pylist()))
    assert rows["labels per group"]["total"] == distinct == 62
    for measure in LABEL_MEASURES[1:]:
        assert rows[measure]["total"] is None
    metrics = expected_metrics(
        femnist_source.column("writer_id").to_pylist(), femnist_source.column("label").to_pylist()
    )
    columns = {
        "examples per group": index.column("num_rows").to_pylist(),
        "words per group": index.column("num_words").to_pylist(),
        "bytes per group": index.column("num_bytes").to_pylist(),
        "labels per group": [m["num_labels"] for m in metrics.values()],
        "label entropy (bits)": [m["label_entropy"] for m in metrics.values()],
        "label JS distance": [m["label_js_distance"] for m in metrics.values()],
        "label Hellinger distance": [m["label_hellinger"] for m in metrics.values()],
    }
    for measure, values in columns.items():
        row = rows[measure]
        for name, want in quantiles(values).items():
            assert row[name] == pytest.approx(want, rel=1e-9, abs=1e-12), (measure, name)
        assert row["gini"] == pytest.approx(gini(values), rel=1e-9), measure


def test_summary_without_labels(plain_small: ga.GroupedDataset) -> None:
    summary = plain_small.summary()
    assert summary.get_column("measure").to_list() == MEASURES
    sizes = sorted(Counter(SMALL.column("user").to_pylist()).values())  # [1, 2, 2, 3, 4]
    first = summary.row(0, named=True)
    assert first == {
        "measure": "examples per group",
        "groups": 5,
        "total": 12,
        "min": 1.0,
        "median": 2.0,
        "mean": 2.4,
        "p90": pytest.approx(float(np.quantile(sizes, 0.9))),
        "p99": pytest.approx(float(np.quantile(sizes, 0.99))),
        "max": 4.0,
        "gini": pytest.approx(gini(sizes)),
    }
    assert summary.row(1, named=True)["total"] == sum(
        len(t.split()) for t in SMALL.column("text").to_pylist()
    )
    assert summary.row(2, named=True)["total"] == plain_small.manifest.num_bytes


def test_summary_label_total_counts_the_null_label(small_ds: ga.GroupedDataset) -> None:
    rows = {r["measure"]: r for r in small_ds.summary().iter_rows(named=True)}
    distinct = set(SMALL.column("label").to_pylist())  # x, y, z and null
    assert rows["labels per group"]["total"] == len(distinct) == 4
    assert rows["labels per group"]["max"] <= rows["labels per group"]["total"]


# -- compute_stats ---------------------------------------------------------------------------


def test_compute_stats_equals_building_with_labels(
    femnist_ds: ga.GroupedDataset, femnist_path: Path, tmp_path: Path
) -> None:
    plain = ga.build(
        femnist_path, key="writer_id", output=tmp_path / "ds", num_shards=femnist_ds.num_shards
    )
    assert plain.manifest.label_column is None
    counted = plain.compute_stats(label_column="label")
    assert counted.manifest.label_column == "label"
    assert ga.open(tmp_path / "ds").manifest.label_column == "label"
    assert counted.index.equals(femnist_ds.index)
    assert_same_frames(counted.stats(), femnist_ds.stats())
    assert_same_frames(counted.summary(), femnist_ds.summary())
    assert ga.verify(counted.path).ok
    assert files_in(tmp_path / "ds") == files_in(femnist_ds.path)


def test_compute_stats_replaces_counts_of_another_column(tmp_path: Path) -> None:
    ds = _build_small(tmp_path / "ds", label_column="label", num_shards=2)
    regraded = ds.compute_stats(label_column="grade")
    assert regraded.manifest.label_column == "grade"
    assert regraded.manifest.stats["label_counts"] == {"column": "grade"}
    assert regraded.index.schema.field("label_counts").type == label_counts_type(pa.int32())
    expected = expected_label_counts(
        SMALL.column("user").to_pylist(), SMALL.column("grade").to_pylist()
    )
    assert {g: r["label_counts"] for g, r in index_by_group(regraded).items()} == expected
    assert expected["ann"] == [{"label": 2, "count": 2}, {"label": 3, "count": 2}]
    assert regraded.label_counts().schema["label"] == pl.Int32
    assert ga.verify(regraded.path).ok
    # Back to the string labels: the same index as built with them.
    back = regraded.compute_stats(label_column="label")
    assert back.index.equals(ds.index)


def test_compute_stats_bool_and_date_labels(tmp_path: Path) -> None:
    table = pa.table(
        {
            "u": ["a", "b", "a", "a", "b"],
            "ok": [True, False, None, True, True],
            "day": pa.array([3, 1, 3, 2, None], pa.date32()),
        }
    )
    ds = ga.build(table, key="u", output=tmp_path / "ds")
    flags = ds.compute_stats(label_column="ok")
    assert flags.index.schema.field("label_counts").type == label_counts_type(pa.bool_())
    assert index_by_group(flags)["a"]["label_counts"] == [
        {"label": True, "count": 2},
        {"label": None, "count": 1},
    ]
    days = flags.compute_stats(label_column="day")
    assert days.index.schema.field("label_counts").type == label_counts_type(pa.date32())
    expected = expected_label_counts(table.column("u").to_pylist(), table.column("day").to_pylist())
    assert {g: r["label_counts"] for g, r in index_by_group(days).items()} == expected
    assert ga.verify(days.path).ok


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("nope", "is not a column"),
        ("score", "has type double"),
        ("blob", "has type binary"),
        ("tags", "has type list"),
    ],
)
def test_compute_stats_bad_column_changes_nothing(
    small_ds: ga.GroupedDataset, tmp_path: Path, column: str, message: str
) -> None:
    path = tmp_path / "ds"
    shutil.copytree(small_ds.path, path)
    ds = ga.open(path)
    before = files_in(path)
    index_hash = sha256(path / "index.parquet")
    manifest_text = (path / "grouparrow.json").read_text(encoding="utf-8")
    with pytest.raises(KeySpecError, match=f"label_column='{column}' {message}"):
        ds.compute_stats(label_column=column)
    assert sha256(path / "index.parquet") == index_hash
    assert (path / "grouparrow.json").read_text(encoding="utf-8") == manifest_text
    assert files_in(path) == before
    assert ga.open(path).manifest.label_column == "label"


def test_objects_opened_before_compute_stats_keep_working(tmp_path: Path) -> None:
    ds = _build_small(tmp_path / "ds", num_shards=3)
    before = ga.open(tmp_path / "ds")
    old_index = before.index
    assert before["ann"].num_rows == 4
    after = before.compute_stats(label_column="label")
    assert after.manifest.label_column == "label"
    assert before.manifest.label_column is None
    # The old object reads what it read before: groups, streams, its index and stats.
    assert before["ann"].to_pylist() == ds["ann"].to_pylist()
    assert sorted(g.id for g in before) == ["ann", "bob", "cy", "dee", "eve"]
    assert before.index.equals(old_index)
    assert before.stats().columns == INDEX_COLUMNS
    assert before.summary().height == 3
    # And the new index holds the index rows of the old one, plus the counts.
    assert after.index.select(INDEX_COLUMNS).equals(old_index)


def test_object_whose_index_was_not_read_keeps_working(tmp_path: Path) -> None:
    ds = _build_small(tmp_path / "ds")
    before = ga.open(tmp_path / "ds")
    ds.compute_stats(label_column="label")
    assert before["ann"].num_rows == 4
    assert before.stats().columns[: len(INDEX_COLUMNS)] == INDEX_COLUMNS


# -- verify ---------------------------------------------------------------------------------


def test_verify_catches_label_counts_that_do_not_add_up(
    small_ds: ga.GroupedDataset, tmp_path: Path
) -> None:
    path = tmp_path / "ds"
    shutil.copytree(small_ds.path, path)
    index = pq.read_table(path / "index.parquet")
    rows = index.to_pylist()
    position = [r["group_id"] for r in rows].index("cy")
    assert rows[position]["label_counts"][1] == {"label": None, "count": 2}
    rows[position]["label_counts"][1]["count"] = 5
    damaged = pa.Table.from_pylist(rows, schema=index.schema)
    assert damaged.schema.equals(index.schema)
    pq.write_table(damaged, path / "index.parquet")
    report = ga.verify(path)
    assert not report.ok
    # (The rewritten index no longer matches its checksum either: reported first.)
    assert (
        f"{path / 'index.parquet'}: the label counts of group 'cy' add up to 6 rows, but it has "
        "3 (1 such groups); recount with ds.compute_stats(label_column=...)"
    ) in report.problems
    # An index that does not match its checksum is not trusted, not even to recount from.
    with pytest.raises(ga.CorruptDatasetError, match=r"index\.parquet has .* bytes"):
        ga.open(path).compute_stats(label_column="label")


# -- ga.group_counts -------------------------------------------------------------------------

COUNT_COLUMNS = ["group_id", "num_rows", "num_bytes", "num_words"]


def _index_counts(ds: ga.GroupedDataset, columns: Sequence[str] = COUNT_COLUMNS) -> pl.DataFrame:
    return ds.stats().select(columns).sort("group_id")


def test_group_counts_shakespeare(data_dir: Path, tmp_path: Path) -> None:
    source = data_file(data_dir, "shakespeare/shakespeare_lines.parquet")
    counts = ga.group_counts(source, key="play_speaker")
    assert counts.columns == COUNT_COLUMNS
    ds = ga.build(source, key="play_speaker", output=tmp_path / "ds", num_shards=2)
    assert counts.equals(_index_counts(ds))
    keys = pq.read_table(source, columns=["play_speaker"]).column(0).to_pylist()
    assert dict(counts.select("group_id", "num_rows").rows()) == dict(Counter(keys))
    ids = counts.get_column("group_id").to_list()
    assert ids == sorted(ids) and len(ids) == 1334


def test_group_counts_c4_jsonl(data_dir: Path, tmp_path: Path) -> None:
    source = data_file(data_dir, "c4/c4-en-train-00000-first1k.jsonl")
    counts = ga.group_counts(source, key=ga.partitioners.url_domain("url"))
    ds = ga.build(source, key=ga.partitioners.url_domain("url"), output=tmp_path / "ds")
    assert counts.equals(_index_counts(ds))
    assert counts.get_column("num_rows").sum() == 1000
    ids = counts.get_column("group_id").to_list()
    assert ids == sorted(ids)
    # A SQL key: the URL's host, as urlparse gives it; the key column renamed.
    hosts = ga.group_counts(source, key=ga.partitioners.url_host("url"), key_column="host")
    assert hosts.columns == ["host", "num_rows", "num_bytes", "num_words"]
    urls = pl.read_ndjson(source).get_column("url").to_list()
    assert dict(hosts.select("host", "num_rows").rows()) == dict(
        Counter(urlparse(u).netloc for u in urls)
    )
    assert hosts.get_column("host").to_list() == sorted(hosts.get_column("host").to_list())
    assert hosts.get_column("num_words").sum() == counts.get_column("num_words").sum()


def test_group_counts_femnist_with_labels(
    femnist_ds: ga.GroupedDataset, femnist_path: Path
) -> None:
    counts = ga.group_counts(femnist_path, key="writer_id", label_column="label")
    assert counts.columns == [*COUNT_COLUMNS, "label_counts"]
    assert counts.equals(_index_counts(femnist_ds, [*COUNT_COLUMNS, "label_counts"]))
    assert (
        counts.to_arrow().schema.field("label_counts").type.value_type.field("label").type
        == pa.int16()
    )


def test_group_counts_nulls_labels_and_key_column() -> None:
    table = pa.table(
        {
            "u": ["a", None, "b", "a", "b", "a"],
            "lab": ["p", "q", None, "p", "r", None],
            "text": ["one two", "x", "three", "", "four five six", "seven"],
        }
    )
    with pytest.raises(NullKeyError, match=r"column 'u'.*row 1"):
        ga.group_counts(table, key="u")
    counts = ga.group_counts(
        table, key="u", on_null="drop", label_column="lab", key_column="user", text_columns=["text"]
    )
    assert counts.columns == ["user", "num_rows", "num_bytes", "num_words", "label_counts"]
    assert counts.select("user", "num_rows", "num_words", "label_counts").rows() == [
        ("a", 3, 3, [{"label": "p", "count": 2}, {"label": None, "count": 1}]),
        ("b", 2, 4, [{"label": "r", "count": 1}, {"label": None, "count": 1}]),
    ]
    with pytest.raises(KeySpecError, match="label_column='nope'"):
        ga.group_counts(table, key="u", on_null="drop", label_column="nope")


# -- ds.sql / ds.connect ---------------------------------------------------------------------


def test_sql_views(small_ds: ga.GroupedDataset) -> None:
    count = small_ds.sql("SELECT count(*) FROM examples").fetchall()
    assert count == [(small_ds.num_rows,)] == [(12,)]
    examples = small_ds.sql("SELECT * FROM examples").to_arrow_table()
    assert examples.column_names == small_ds.schema.names
    assert sorted(examples.column("score").to_pylist()) == SMALL.column("score").to_pylist()
    groups = small_ds.sql("SELECT * FROM groups").pl()
    assert groups.to_arrow().to_pylist() == small_ds.index.to_pylist()
    labels = small_ds.sql("SELECT * FROM labels").pl()
    assert labels.columns == ["group_id", "label", "count"]
    assert sorted(labels.rows(), key=repr) == sorted(small_ds.label_counts().rows(), key=repr)


def test_sql_without_labels_has_no_labels_view(plain_small: ga.GroupedDataset) -> None:
    assert plain_small.sql("SELECT count(*) FROM groups").fetchall() == [(5,)]
    with pytest.raises(QueryError, match="labels"):
        plain_small.sql("SELECT * FROM labels")


def test_sql_params_are_bound(small_ds: ga.GroupedDataset) -> None:
    rows = small_ds.sql(
        "SELECT group_id FROM groups WHERE num_rows >= $n ORDER BY group_id", params={"n": 3}
    ).fetchall()
    assert rows == [("ann",), ("cy",)]
    rows = small_ds.sql("SELECT count(*) FROM examples WHERE user = ?", ["bob"]).fetchall()
    assert rows == [(2,)]
    # A value with a quote in it is a value, not SQL.
    sneaky = "x' OR '1'='1"
    assert small_ds.sql(
        "SELECT count(*) FROM groups WHERE group_id = $g", {"g": sneaky}
    ).fetchall() == [(0,)]
    quoted = small_ds.sql("SELECT $v AS v", {"v": "it's"}).fetchall()
    assert quoted == [("it's",)]


def test_sql_errors_show_the_query(small_ds: ga.GroupedDataset) -> None:
    query = "SELECT nonexistent_column FROM groups"
    with pytest.raises(QueryError) as info:
        small_ds.sql(query)
    assert query in str(info.value) and "nonexistent_column" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GroupArrowError)
    with pytest.raises(QueryError, match=re.escape("SELEC count(*) FRM groups")):
        small_ds.sql("SELEC count(*) FRM groups")
    with pytest.raises(QueryError, match="non-empty"):
        small_ds.sql("   ")
    with pytest.raises(ga.QueryError):
        small_ds.sql("SELECT $missing")
    # The connection still works after errors.
    assert small_ds.sql("SELECT 1").fetchall() == [(1,)]


def test_sql_returns_a_relation(small_ds: ga.GroupedDataset) -> None:
    relation = small_ds.sql("SELECT group_id, num_rows FROM groups ORDER BY group_id")
    assert isinstance(relation, duckdb.DuckDBPyRelation)
    frame = relation.pl()
    assert isinstance(frame, pl.DataFrame)
    expected = sorted(Counter(SMALL.column("user").to_pylist()).items())
    assert frame.rows() == expected
    arrow: Any = small_ds.sql("SELECT group_id, num_rows FROM groups ORDER BY group_id").arrow()
    if isinstance(arrow, pa.RecordBatchReader):
        arrow = arrow.read_all()
    assert isinstance(arrow, pa.Table)
    assert list(zip(*arrow.to_pydict().values(), strict=True)) == expected


def test_connect_gives_an_independent_connection(small_ds: ga.GroupedDataset) -> None:
    con = small_ds.connect()
    other = small_ds.connect()
    try:
        assert con.sql("SELECT count(*) FROM examples").fetchall() == [(12,)]
        con.execute("CREATE TABLE mine AS SELECT 42 AS answer")
        assert con.sql("SELECT answer FROM mine").fetchall() == [(42,)]
        with pytest.raises(duckdb.CatalogException):
            other.sql("SELECT * FROM mine")
        with pytest.raises(QueryError, match="mine"):
            small_ds.sql("SELECT * FROM mine")
        assert other.sql("SELECT count(*) FROM labels").fetchall() == [(9,)]
    finally:
        con.close()
        other.close()
    assert small_ds.sql("SELECT count(*) FROM groups").fetchall() == [(5,)]


def test_sql_over_split_views(small_ds: ga.GroupedDataset) -> None:
    train, test = small_ds.split_groups(0.4, seed=0)
    seen: list[Any] = []
    for view in (train, test):
        ids = sorted(view.group_ids())
        seen += ids
        groups = view.sql("SELECT group_id FROM groups ORDER BY 1").fetchall()
        assert [g for (g,) in groups] == ids
        rows = view.sql("SELECT DISTINCT group_id FROM examples ORDER BY 1").fetchall()
        assert [g for (g,) in rows] == ids
        assert view.sql("SELECT count(*) FROM examples").fetchall() == [(view.num_rows,)]
        labelled = view.sql("SELECT DISTINCT group_id FROM labels ORDER BY 1").fetchall()
        assert [g for (g,) in labelled] == ids
        con = view.connect()
        try:
            assert con.sql("SELECT count(*) FROM groups").fetchall() == [(len(ids),)]
        finally:
            con.close()
    assert sorted(seen) == ["ann", "bob", "cy", "dee", "eve"]
    assert sorted(test.group_ids()) == ["ann", "cy"]
    fit, _ = small_ds.split_rows(0.5, seed=0)
    with pytest.raises(QueryError, match="split_rows"):
        fit.sql("SELECT count(*) FROM examples")
    with pytest.raises(QueryError, match="split_rows"):
        fit.connect()


def test_sql_macros(femnist_ds: ga.GroupedDataset, femnist_source: pa.Table) -> None:
    sizes = femnist_ds.index.column("num_rows").to_pylist()
    (value,) = femnist_ds.sql("SELECT ga_gini(num_rows) FROM groups").fetchall()[0]
    assert value == pytest.approx(gini(sizes), rel=1e-12)
    skew = femnist_ds.sql("SELECT * FROM ga_label_skew('labels')").pl()
    assert skew.columns == [
        "group_id",
        "num_rows",
        "num_labels",
        "entropy",
        "js_distance",
        "hellinger",
    ]
    expected = expected_metrics(
        femnist_source.column("writer_id").to_pylist(), femnist_source.column("label").to_pylist()
    )
    assert skew.get_column("group_id").to_list() == sorted(expected)
    for row in skew.iter_rows(named=True):
        want = expected[row["group_id"]]
        assert row["num_labels"] == want["num_labels"]
        assert row["js_distance"] == pytest.approx(want["label_js_distance"], rel=1e-9, abs=1e-12)
        assert row["hellinger"] == pytest.approx(want["label_hellinger"], rel=1e-9, abs=1e-12)


def test_sql_connection_is_per_process(small_ds: ga.GroupedDataset) -> None:
    import pickle

    small_ds.sql("SELECT 1").fetchall()
    copy = pickle.loads(pickle.dumps(small_ds))
    assert copy.sql("SELECT count(*) FROM examples").fetchall() == [(12,)]


def test_sql_over_examples_reads_every_arrow_type(tmp_path: Path) -> None:
    """The checked scan (PyArrow under DuckDB) reads what DuckDB's Parquet reader reads, the
    same values, including float16 (cast to float32, which DuckDB cannot scan from Arrow);
    fixed-size lists come as DuckDB arrays and durations as intervals, where the unchecked
    reader gives lists and integers."""
    import datetime as dt
    import decimal

    n = 6
    table = pa.table(
        {
            "u": [i % 3 for i in range(n)],
            "f16": pa.array(np.arange(n, dtype=np.float16)),
            "l16": pa.array([[np.float16(i)] for i in range(n)], pa.list_(pa.float16())),
            "ls": pa.array([f"s{i}" for i in range(n)], pa.large_string()),
            "dic": pa.array(["x", "y", "x", "y", "x", "z"]).dictionary_encode(),
            "ts": pa.array(
                [dt.datetime(2020, 1, 1, i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            "dec": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(10, 2)),
            "lst": pa.array([[1, 2], [3], [], None, [4], [5, 6]]),
            "st": pa.array([{"a": i, "b": str(i)} for i in range(n)]),
            "mp": pa.array([[("k", i)] for i in range(n)], pa.map_(pa.string(), pa.int64())),
            "fsb": pa.array([b"ab"] * n, pa.binary(2)),
            "u64": pa.array([2**63 + i for i in range(n)], pa.uint64()),
            "fsl": pa.array([[float(i), 2.0] for i in range(n)], pa.list_(pa.float32(), 2)),
            "dur": pa.array([dt.timedelta(seconds=i) for i in range(n)]),
        }
    )
    ds = ga.build(table, key="u", output=tmp_path / "ds")
    query = 'SELECT * EXCLUDE (group_id) FROM examples ORDER BY "u64"'
    checked, unchecked = ds.sql(query).fetchall(), ds.sql(query, checked=False).fetchall()
    assert [row[:-2] for row in checked] == [row[:-2] for row in unchecked]
    assert [row[:3] for row in checked] == [(i % 3, float(i), [float(i)]) for i in range(n)]
    assert [row[-2:] for row in checked] == [
        ((float(i), 2.0), dt.timedelta(seconds=i)) for i in range(n)
    ]
    assert [row[-2:] for row in unchecked] == [([float(i), 2.0], i * 10**6) for i in range(n)]
