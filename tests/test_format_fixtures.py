"""Datasets written by released format versions stay readable, forever."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import grouparrow as ga

FIXTURES = Path(__file__).parent / "fixtures"


def _example_rows() -> list[dict]:
    with open(ga.examples.path("shakespeare"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_format_v1_fixture_opens_verifies_and_holds_the_example() -> None:
    ds = ga.open(FIXTURES / "format_v1_shakespeare")
    assert ds.manifest.key == {"kind": "column", "definition": "speaker"}
    assert (ds.num_groups, ds.num_rows, ds.num_shards) == (32, 600, 2)
    assert ga.verify(ds.path).ok

    expected: dict[str, list[str]] = defaultdict(list)
    for row in _example_rows():
        expected[row["speaker"]].append(row["text"])
    assert sorted(ds.group_ids()) == sorted(expected)
    for group in ds.iter_groups():
        assert group.to_arrow().column("text").to_pylist() == expected[group.id]
    assert ds["HORATIO"].to_arrow().column("text").to_pylist() == expected["HORATIO"]
