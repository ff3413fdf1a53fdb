"""The analysis commands of the grouparrow CLI: stats, sql, plot, counts (and build
--label-column), run through ``grouparrow.cli.main`` with their output, files and exit codes
checked against values computed from the sources."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import data_file

import grouparrow as ga
from grouparrow.cli import main

MEASURES = ["examples per group", "words per group", "bytes per group"]
LABEL_MEASURES = [
    "labels per group",
    "label entropy (bits)",
    "label JS distance",
    "label Hellinger distance",
]

SMALL = pa.table(
    {
        "user": ["ann", "bob", "ann", "cy", "ann", "bob", "cy", "dee"],
        "label": ["x", "y", "x", None, "y", "y", "x", "z"],
        "score": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
        "text": ["a b", "c", "d e f", "g", "h i", "j", "k l m n", "o"],
    }
)


def expected_label_counts(keys: list[Any], labels: list[Any]) -> dict[Any, list[dict]]:
    """Per key, ``[{"label": l, "count": n}, ...]`` sorted by label with a null last."""
    out: dict[Any, list[dict]] = {}
    for (key, label), n in Counter(zip(keys, labels, strict=True)).items():
        out.setdefault(key, []).append({"label": label, "count": n})
    return {
        k: sorted(v, key=lambda d: (d["label"] is None, d["label"] or 0)) for k, v in out.items()
    }


def check_png(path: Path) -> None:
    """A real PNG: signature, an IHDR chunk first, a sensible size and an IEND chunk last."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200
    assert data[-8:-4] == b"IEND"
    assert len(data) > 5_000


def assert_rows_close(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Equal rows; floats to the last few bits (DuckDB sums doubles in parallel)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for name, value in w.items():
            if isinstance(value, float):
                assert g[name] == pytest.approx(value, rel=1e-12, abs=1e-14), name
            else:
                assert g[name] == value, name


# -- module fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def femnist_path(data_dir: Path) -> Path:
    return data_file(data_dir, "femnist/femnist_subset.parquet")


@pytest.fixture(scope="module")
def femnist_source(femnist_path: Path) -> pa.Table:
    return pq.read_table(femnist_path, columns=["writer_id", "label"])


@pytest.fixture(scope="module")
def femnist(femnist_path: Path, tmp_path_factory: pytest.TempPathFactory) -> ga.GroupedDataset:
    """FEMNIST by writer with label counts; read-only in the tests."""
    out = tmp_path_factory.mktemp("femnist") / "ds"
    return ga.build(femnist_path, key="writer_id", output=out, label_column="label", num_shards=2)


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "small.parquet"
    pq.write_table(SMALL, path)
    return path


@pytest.fixture
def small_plain(small_source: Path, tmp_path: Path) -> Path:
    """A fresh unlabelled dataset of the small table (the tests change it)."""
    out = tmp_path / "plain"
    ga.build(small_source, key="user", output=out, text_columns=["text"])
    return out


@pytest.fixture(scope="module")
def shakespeare(data_dir: Path) -> Path:
    return data_file(data_dir, "shakespeare/shakespeare_lines.parquet")


# -- build --label-column --------------------------------------------------------------------


def test_build_with_label_column(small_source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    argv = ["build", str(small_source), "--key", "user", "-o", str(out), "-q"]
    assert main([*argv, "--label-column", "label"]) == 0
    assert "groups           4" in capsys.readouterr().out
    ds = ga.open(out)
    assert ds.manifest.label_column == "label"
    index = {r["group_id"]: r["label_counts"] for r in ds.index.to_pylist()}
    assert index == expected_label_counts(
        SMALL.column("user").to_pylist(), SMALL.column("label").to_pylist()
    )
    assert index["cy"] == [{"label": "x", "count": 1}, {"label": None, "count": 1}]
    # A column that cannot be counted: exit 2, the column named, nothing written.
    bad = tmp_path / "bad"
    assert main([*argv[:4], "-o", str(bad), "-q", "--label-column", "score"]) == 2
    err = capsys.readouterr().err
    assert "label_column='score'" in err and "double" in err
    assert not bad.exists()


# -- stats -----------------------------------------------------------------------------------


def test_stats_table(femnist: ga.GroupedDataset, femnist_source: pa.Table, capsys) -> None:
    assert main(["stats", str(femnist.path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[:5] == [
        f"path          {femnist.path}",
        "num groups    184",
        "num rows      18,796",
        "key column    group_id",
        "label column  label",
    ]
    assert lines[5] == ""
    header = ["measure", "groups", "total", "min", "median", "mean", "p90", "p99", "max", "gini"]
    assert lines[6].split() == header
    rows = {name: lines[7 + i] for i, name in enumerate(MEASURES + LABEL_MEASURES)}
    assert len(lines) == 7 + len(rows)
    index = femnist.index
    totals = {
        "examples per group": 18796,
        "words per group": int(np.sum(index.column("num_words"))),
        "bytes per group": femnist.manifest.num_bytes,
        "labels per group": len(set(femnist_source.column("label").to_pylist())),
    }
    assert totals["labels per group"] == 62 and totals["words per group"] == 37592
    for name, line in rows.items():
        assert line.startswith(name)
        cells = line[len(name) :].split()
        assert len(cells) == 9
        assert cells[0] == "184"
        assert cells[1] == (str(totals[name]) if name in totals else "null")
    sizes = index.column("num_rows").to_numpy()
    examples = rows["examples per group"][len("examples per group") :].split()
    assert examples[2] == str(int(sizes.min())) and examples[7] == str(int(sizes.max()))
    assert float(examples[4]) == pytest.approx(sizes.mean(), rel=1e-5)


def test_stats_json_equals_summary(femnist: ga.GroupedDataset, capsys) -> None:
    assert main(["stats", str(femnist.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in report.items() if k != "summary"} == {
        "path": str(femnist.path),
        "num_groups": 184,
        "num_rows": 18796,
        "key_column": "group_id",
        "label_column": "label",
    }
    summary = femnist.summary()
    assert_rows_close(report["summary"], summary.to_dicts())
    assert [r["measure"] for r in report["summary"]] == MEASURES + LABEL_MEASURES
    # Integers stay integers, JSON numbers parse back to the frame's exact values.
    first = report["summary"][0]
    assert first["total"] == 18796 and isinstance(first["total"], int)
    assert first["max"] == float(np.max(femnist.index.column("num_rows")))


def test_stats_label_counts_an_unlabelled_dataset(small_plain: Path, capsys) -> None:
    assert ga.open(small_plain).manifest.label_column is None
    assert main(["stats", str(small_plain), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["label_column"] is None
    assert [r["measure"] for r in plain["summary"]] == MEASURES

    assert main(["stats", str(small_plain), "--label", "label", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"counting 'label' per group into {small_plain / 'index.parquet'}" in captured.err
    report = json.loads(captured.out)
    assert report["label_column"] == "label"
    assert [r["measure"] for r in report["summary"]] == MEASURES + LABEL_MEASURES
    ds = ga.open(small_plain)
    assert ds.manifest.label_column == "label"
    assert {r["group_id"]: r["label_counts"] for r in ds.index.to_pylist()} == (
        expected_label_counts(SMALL.column("user").to_pylist(), SMALL.column("label").to_pylist())
    )
    assert ga.verify(small_plain).ok
    # Already counted: nothing is recounted.
    assert main(["stats", str(small_plain), "--label", "label"]) == 0
    assert capsys.readouterr().err == ""
    # A column that cannot be counted: exit 2, the column named, the counts kept.
    assert main(["stats", str(small_plain), "--label", "score"]) == 2
    captured = capsys.readouterr()
    assert "grouparrow stats: error:" in captured.err and "label_column='score'" in captured.err
    assert ga.open(small_plain).manifest.label_column == "label"
    assert main(["stats", str(small_plain.parent / "nothing")]) == 2
    assert "no grouped dataset" in capsys.readouterr().err


# -- sql -------------------------------------------------------------------------------------


def test_sql_table(femnist: ga.GroupedDataset, femnist_source: pa.Table, capsys) -> None:
    query = "SELECT group_id, num_rows FROM groups ORDER BY num_rows DESC, group_id LIMIT 4"
    assert main(["sql", str(femnist.path), query]) == 0
    lines = capsys.readouterr().out.splitlines()
    sizes = Counter(femnist_source.column("writer_id").to_pylist())
    top = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
    assert [line.split() for line in lines] == [
        ["group_id", "num_rows"],
        *[[g, str(n)] for g, n in top],
    ]
    # Numbers are right-aligned under their header.
    assert len({len(line) for line in lines}) == 1


def test_sql_table_limit(femnist: ga.GroupedDataset, capsys) -> None:
    query = "SELECT group_id FROM groups ORDER BY group_id"
    assert main(["sql", str(femnist.path), query, "--limit", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = sorted(femnist.group_ids())
    assert lines == ["group_id", *ids[:5], "... 179 more rows (184 in all)"]
    # Every row fits: no "more rows" line.
    assert main(["sql", str(femnist.path), query + " LIMIT 3", "--limit", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == ["group_id", *ids[:3]]
    assert main(["sql", str(femnist.path), query, "--limit", "-1"]) == 2
    assert "--limit -1" in capsys.readouterr().err


CSV_QUERY = (
    "SELECT group_id, num_rows, CAST(num_rows AS DOUBLE) / 7 AS ratio, label_counts, "
    "NULL AS nothing, group_id LIKE 'f0%' AS f0 FROM groups ORDER BY group_id"
)


def _expected_rows(ds: ga.GroupedDataset) -> list[dict[str, Any]]:
    rows = sorted(ds.index.to_pylist(), key=lambda r: r["group_id"])
    return [
        {
            "group_id": r["group_id"],
            "num_rows": r["num_rows"],
            "ratio": r["num_rows"] / 7,
            "label_counts": r["label_counts"],
            "nothing": None,
            "f0": r["group_id"].startswith("f0"),
        }
        for r in rows
    ]


def test_sql_csv(femnist: ga.GroupedDataset, capsys) -> None:
    assert main(["sql", str(femnist.path), CSV_QUERY, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["group_id", "num_rows", "ratio", "label_counts", "nothing", "f0"]
    expected = _expected_rows(femnist)
    assert len(rows) == 1 + len(expected) == 185  # every row, no --limit
    for row, want in zip(rows[1:], expected, strict=True):
        assert row[0] == want["group_id"]
        assert int(row[1]) == want["num_rows"]
        assert float(row[2]) == want["ratio"]  # the shortest repr round-trips exactly
        assert json.loads(row[3]) == want["label_counts"]
        assert row[4] == ""
        assert row[5] == ("true" if want["f0"] else "false")


def test_sql_csv_floats_round_trip(femnist: ga.GroupedDataset, capsys) -> None:
    query = (
        "SELECT 0.1::DOUBLE AS a, 1e-300::DOUBLE AS b, 1::DOUBLE / 3 AS c, "
        "2.5::FLOAT AS d, 123456789012345678::BIGINT AS e"
    )
    assert main(["sql", str(femnist.path), query, "--format", "csv"]) == 0
    header, values = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert header == ["a", "b", "c", "d", "e"]
    assert [float(v) for v in values[:4]] == [0.1, 1e-300, 1 / 3, 2.5]
    assert values[4] == "123456789012345678"


def test_sql_json_lines(femnist: ga.GroupedDataset, capsys) -> None:
    assert main(["sql", str(femnist.path), CSV_QUERY, "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == _expected_rows(femnist)


def test_sql_params(femnist: ga.GroupedDataset, femnist_source: pa.Table, capsys) -> None:
    sizes = Counter(femnist_source.column("writer_id").to_pylist())
    query = "SELECT count(*) AS n FROM groups WHERE num_rows > $n"
    assert main(["sql", str(femnist.path), query, "--param", "n=150", "--format", "csv"]) == 0
    assert capsys.readouterr().out == f"n\n{sum(1 for v in sizes.values() if v > 150)}\n"
    # Text (with a quote) is bound as a value; several params.
    query = "SELECT $who AS who, $k + 1 AS k1, count(*) AS n FROM groups WHERE group_id = $who"
    argv = ["sql", str(femnist.path), query, "--format", "json"]
    assert main([*argv, "--param", "who=it's", "--param", "k=2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"who": "it's", "k1": 3, "n": 0}
    writer = sorted(sizes)[0]
    assert main([*argv, "--param", f"who={writer}", "--param", "k=2.5"]) == 0
    assert json.loads(capsys.readouterr().out) == {"who": writer, "k1": 3.5, "n": 1}
    assert main(["sql", str(femnist.path), query, "--param", "who"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_sql_bad_query_exits_2(femnist: ga.GroupedDataset, capsys) -> None:
    query = "SELECT nope FROM groups"
    assert main(["sql", str(femnist.path), query]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("grouparrow sql: error: ")
    assert query in captured.err and "nope" in captured.err
    for fmt in ["csv", "json"]:
        assert main(["sql", str(femnist.path), "SELEC 1", "--format", fmt]) == 2
        assert "SELEC 1" in capsys.readouterr().err


def test_sql_error_while_running_exits_2_in_csv(femnist: ga.GroupedDataset, capsys) -> None:
    query = "SELECT error('boom: ' || group_id) FROM groups"
    assert main(["sql", str(femnist.path), query, "--format", "csv"]) == 2
    assert "boom" in capsys.readouterr().err


def test_sql_error_while_running_exits_2_in_table(femnist: ga.GroupedDataset, capsys) -> None:
    query = "SELECT CAST(group_id AS INTEGER) FROM groups"
    assert main(["sql", str(femnist.path), query]) == 2
    assert "Could not convert" in capsys.readouterr().err


def test_sql_without_labels_view(small_plain: Path, capsys) -> None:
    assert main(["sql", str(small_plain), "SELECT * FROM labels"]) == 2
    assert "labels" in capsys.readouterr().err
    assert main(["sql", str(small_plain), "SELECT sum(num_rows) AS n FROM groups"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "8"]


# -- plot ------------------------------------------------------------------------------------


def test_plot_sizes_and_labels(femnist: ga.GroupedDataset, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    sizes = tmp_path / "sizes.png"
    assert main(["plot", str(femnist.path), "--kind", "sizes", "-o", str(sizes)]) == 0
    assert capsys.readouterr().out.strip() == str(sizes)
    check_png(sizes)
    labels = tmp_path / "labels.png"
    argv = ["plot", str(femnist.path), "--kind", "labels", "--output", str(labels)]
    assert main([*argv, "--groups", "5"]) == 0
    assert capsys.readouterr().out.strip() == str(labels)
    check_png(labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.png", "sizes.png"]


def test_plot_labels_of_an_unlabelled_dataset(small_plain: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "labels.png"
    assert main(["plot", str(small_plain), "--kind", "labels", "-o", str(out)]) == 2
    assert "no label counts" in capsys.readouterr().err
    assert not out.exists()
    argv = ["plot", str(small_plain), "--kind", "labels", "-o", str(out), "--label", "label"]
    assert main(argv) == 0
    check_png(out)
    assert ga.open(small_plain).manifest.label_column == "label"
    assert main(["plot", str(small_plain), "--kind", "sizes", "-o", str(tmp_path / "x.gif")]) == 2
    assert not (tmp_path / "x.gif").exists()


# -- counts ----------------------------------------------------------------------------------


def test_counts_output_parquet_and_csv(shakespeare: Path, tmp_path: Path, capsys) -> None:
    expected = ga.group_counts(shakespeare, key="play_speaker")
    keys = pq.read_table(shakespeare, columns=["play_speaker"]).column(0).to_pylist()
    assert dict(expected.select("group_id", "num_rows").rows()) == dict(Counter(keys))

    parquet = tmp_path / "x.parquet"
    argv = ["counts", str(shakespeare), "--key", "play_speaker"]
    assert main([*argv, "--output", str(parquet)]) == 0
    printed = capsys.readouterr().out
    assert "num groups    1,334" in printed and f"output        {parquet}" in printed
    line = next(x for x in printed.splitlines() if x.startswith("examples per group"))
    assert line.split()[3:5] == ["1334", "105153"]
    written = pl.read_parquet(parquet)
    assert written.equals(expected)

    table = tmp_path / "x.csv"
    assert main([*argv, "--output", str(table)]) == 0
    capsys.readouterr()
    rows = list(csv.reader(io.StringIO(table.read_text(encoding="utf-8"), newline="")))
    assert rows[0] == ["group_id", "num_rows", "num_bytes", "num_words"]
    assert [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows[1:]] == expected.rows()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.parquet"]


def test_counts_labels_json_lines(
    femnist_path: Path, femnist: ga.GroupedDataset, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "counts.jsonl"
    argv = ["counts", str(femnist_path), "--key", "writer_id", "--label", "label", "-o", str(out)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_groups"] == 184 and report["label_column"] == "label"
    assert [r["measure"] for r in report["summary"]] == MEASURES + LABEL_MEASURES
    assert_rows_close(report["summary"], femnist.summary().to_dicts())
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    index = sorted(femnist.index.to_pylist(), key=lambda r: r["group_id"])
    columns = ["group_id", "num_rows", "num_bytes", "num_words", "label_counts"]
    assert rows == [{c: r[c] for c in columns} for r in index]


def test_counts_sql_key_and_nulls(data_dir: Path, tmp_path: Path, capsys) -> None:
    c4 = data_file(data_dir, "c4/c4-en-train-00000-first1k.jsonl")
    expression = "regexp_extract(url, '://([^/]+)', 1)"
    assert main(["counts", str(c4), "--key", expression, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    urls = pl.read_ndjson(c4).get_column("url").to_list()
    hosts = Counter(re.search("://([^/]+)", u).group(1) for u in urls)  # type: ignore[union-attr]
    assert report["num_groups"] == len(hosts)
    assert report["summary"][0]["total"] == 1000
    assert report["summary"][0]["max"] == max(hosts.values())

    source = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"u": ["a", None, "a", "b"], "t": ["x y", "z", "w", "v"]}), source)
    assert main(["counts", str(source), "--key", "u"]) == 2
    assert "--on-null drop" in capsys.readouterr().err
    out = tmp_path / "kept.csv"
    assert main(["counts", str(source), "--key", "u", "--on-null", "drop", "-o", str(out)]) == 0
    capsys.readouterr()
    assert (
        out.read_text(encoding="utf-8").splitlines()[0] == "group_id,num_rows,num_bytes,num_words"
    )
    assert [r[:2] for r in csv.reader(out.read_text(encoding="utf-8").splitlines()[1:])] == [
        ["a", "2"],
        ["b", "1"],
    ]


def test_counts_bad_output_suffix_exits_2(shakespeare: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.txt"
    assert main(["counts", str(shakespeare), "--key", "play_speaker", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "grouparrow counts: error:" in captured.err
    assert ".parquet, .csv or .json" in captured.err and str(out) in captured.err
    assert list(tmp_path.iterdir()) == []


def test_counts_key_column_names_the_output_column(
    small_source: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "x.parquet"
    argv = ["counts", str(small_source), "--key", "user", "--key-column", "who", "-o", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert pq.read_table(out).column_names == ["who", "num_rows", "num_bytes", "num_words"]
