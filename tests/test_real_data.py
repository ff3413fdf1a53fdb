"""Real, naturally grouped data from ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest
from conftest import assert_contiguous, data_file, group_counts

import grouparrow as ga


def _netloc(example: Any) -> str:
    return urlparse(example["url"]).netloc


def _plain_ascii(text: str) -> bool:
    """ASCII without control characters (other than whitespace): where grouparrow's word
    count and ``str.split()`` are both defined to agree."""
    return text.isascii() and all(ch >= " " or ch in "\t\n\r\x0b\x0c" for ch in text)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize(
    "relative", ["c4/c4-en-train-00000-first1k.jsonl", "c4/c4-sample-olmo-1k.json.gz"]
)
def test_c4_by_url_host(tmp_path: Path, data_dir: Path, relative: str) -> None:
    path = data_file(data_dir, relative)
    docs = _read_jsonl(path)
    by_host: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_host.setdefault(urlparse(doc["url"]).netloc, []).append(doc)
    hosts = Counter({host: len(group) for host, group in by_host.items()})
    ds = ga.build(path, key=_netloc, output=tmp_path / "out", num_shards=3)
    assert ds.num_rows == len(docs) == 1_000
    assert ds.num_groups == len(hosts)
    index = ds.index
    assert dict(
        zip(index.column("group_id").to_pylist(), index.column("num_rows").to_pylist(), strict=True)
    ) == dict(hosts)
    manifest = json.loads((tmp_path / "out" / "grouparrow.json").read_text())
    assert manifest["key"]["kind"] == "python"
    assert manifest["key"]["definition"].endswith("_netloc")
    assert manifest["source"]["type"] == "json"
    # Each group: exactly the documents of that host, in file order.
    for host, count in hosts.most_common(5):
        group = ds[host]
        assert group.num_rows == count
        assert group.to_arrow().column("url").to_pylist() == [d["url"] for d in by_host[host]]
        assert group.to_arrow().column("text").to_pylist() == [d["text"] for d in by_host[host]]
    # num_words: whitespace-separated words of the text columns, per group.
    text_columns = manifest["stats"]["num_words"]["columns"]
    assert "text" in text_columns and "url" in text_columns
    words = dict(
        zip(
            index.column("group_id").to_pylist(), index.column("num_words").to_pylist(), strict=True
        )
    )
    checked = 0
    for host in hosts:
        values = [d[c] for d in by_host[host] for c in text_columns]
        if all(_plain_ascii(v) for v in values):
            assert words[host] == sum(len(v.split()) for v in values), host
            checked += 1
    assert checked > 300
    assert ga.verify(tmp_path / "out").ok
    assert_contiguous(tmp_path / "out")


def test_c4_klyq(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "c4/c4-en-train-00000-first1k.jsonl")
    ds = ga.build(path, key=_netloc, output=tmp_path / "out")
    group = ds["klyq.com"]
    urls = group.to_arrow().column("url").to_pylist()
    assert urls
    assert all(urlparse(u).netloc == "klyq.com" for u in urls)
    assert "klyq.com" in ds
    assert "www.klyq.com" not in ds


def test_c4_sql_key_matches_python_key(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "c4/c4-en-train-00000-first1k.jsonl")
    by_sql = ga.build(
        path, key=ga.sql("regexp_extract(url, '^[a-z]+://([^/?#]*)', 1)"), output=tmp_path / "a"
    )
    by_python = ga.build(path, key=_netloc, output=tmp_path / "b")
    assert sorted(by_sql.group_ids()) == sorted(by_python.group_ids())
    # Same keys and seed: same placement and order.
    assert by_sql.group_ids() == by_python.group_ids()


def test_shakespeare_by_speaker(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "shakespeare/shakespeare_lines.parquet")
    table = pq.read_table(path)
    counts = group_counts(table, "play_speaker")
    ds = ga.build(path, key="play_speaker", output=tmp_path / "out", num_shards=4)
    assert ds.num_groups == len(counts) == 1_334
    assert ds.num_rows == table.num_rows == 105_153
    index = ds.index
    assert (
        dict(
            zip(
                index.column("group_id").to_pylist(),
                index.column("num_rows").to_pylist(),
                strict=True,
            )
        )
        == counts
    )
    seen = 0
    for group in ds.iter_groups(shuffle=True, seed=0, columns=["line_id"]):
        assert group.num_rows == counts[group.id]
        seen += 1
    assert seen == 1_334
    speaker, _ = max(counts.items(), key=lambda kv: kv[1])
    lines = ds[speaker].to_arrow()
    expected = table.filter(table.column("play_speaker").to_numpy(zero_copy_only=False) == speaker)
    assert lines.column("line_id").to_pylist() == expected.column("line_id").to_pylist()
    assert lines.column("text").to_pylist() == expected.column("text").to_pylist()
    assert ga.verify(tmp_path / "out").ok


def test_shakespeare_by_play_sql(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "shakespeare/shakespeare_lines.parquet")
    table = pq.read_table(path, columns=["play"])
    ds = ga.build(path, key=ga.sql("lower(play)"), output=tmp_path / "out", num_shards=2)
    expected = Counter(p.lower() for p in table.column("play").to_pylist())
    assert ds.num_groups == len(expected) == 36
    index = ds.index
    assert dict(
        zip(index.column("group_id").to_pylist(), index.column("num_rows").to_pylist(), strict=True)
    ) == dict(expected)


def test_news_headlines_by_domain(tmp_path: Path, data_dir: Path) -> None:
    path = data_file(data_dir, "news_headlines/headlines.parquet")
    table = pq.read_table(path)
    ds = ga.build(table, key="domain", output=tmp_path / "out", num_shards=2, on_null="drop")
    counts = group_counts(table, "domain")
    assert ds.num_groups == len(counts)
    assert ds.num_rows == sum(counts.values())
    assert_contiguous(tmp_path / "out")
