"""Built-in partitioners: semantics, distributions, determinism (grouparrow/partitioners.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pytest

import grouparrow as ga
from grouparrow import partitioners as P


def _assignment(ds: ga.GroupedDataset, row_column: str = "i") -> dict[int, object]:
    """Input row (by the ``i`` column) -> its group id."""
    out = {}
    for group in ds.iter_groups():
        for i in group.to_arrow()[row_column].to_pylist():
            out[i] = group.id
    return out


def _rows(n: int, users: int = 50) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"i": np.arange(n), "user": [f"u{x}" for x in rng.integers(0, users, n)]})


def test_url_host_is_urlparse_netloc(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "c4" / "c4-en-train-00000-first1k.jsonl"
    with path.open(encoding="utf-8") as lines:
        urls = [json.loads(line)["url"] for line in lines]
    extra = ["http://User@Example.COM:8080/a?b#c", "https://x.org", "nohost", "//h2/x"]
    table = pa.table({"i": np.arange(len(urls) + len(extra)), "url": urls + extra})
    ds = ga.build(table, key=P.url_host("url"), output=tmp_path / "out")
    expected = {i: urlparse(u).netloc for i, u in enumerate(table["url"].to_pylist())}
    assert _assignment(ds) == expected


def test_by_feature_is_the_column(tmp_path: Path) -> None:
    table = _rows(300)
    ds = ga.build(table, key=P.by_feature("user"), output=tmp_path / "out")
    assert _assignment(ds) == dict(enumerate(table["user"].to_pylist()))
    with pytest.raises(ga.KeySpecError):
        P.by_feature("")


def test_hash_bucket_keeps_equal_values_together(tmp_path: Path) -> None:
    table = _rows(2000, users=200)
    ds = ga.build(table, key=P.hash_bucket("user", 16, seed=5), output=tmp_path / "out")
    groups = _assignment(ds)
    by_user: dict[str, set[object]] = {}
    for i, user in enumerate(table["user"].to_pylist()):
        by_user.setdefault(user, set()).add(groups[i])
    assert all(len(g) == 1 for g in by_user.values())
    assert set(groups.values()) <= set(range(16)) and len(set(groups.values())) > 10
    assert ds.manifest.key_type == pa.int64()


@pytest.mark.parametrize(
    "partitioner",
    [
        P.random_uniform(8, seed=1),
        P.hash_bucket("user", 8),
        P.dirichlet_over_groups("user", 8, alpha=0.5, seed=2),
        P.iid(8, seed=4),
        P.size_skewed(8, power=1.5, seed=5),
    ],
)
def test_deterministic_across_shards_and_batches(tmp_path: Path, partitioner: object) -> None:
    table = _rows(3000)
    one = ga.build(table, key=partitioner, output=tmp_path / "a", num_shards=1)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=97))
    many = ga.build(rechunked, key=partitioner, output=tmp_path / "b", num_shards=3, threads=1)
    assert _assignment(one) == _assignment(many)


def test_random_uniform_is_uniform_and_seeded(tmp_path: Path) -> None:
    n, k = 20_000, 10
    table = _rows(n)
    ds = ga.build(table, key=P.random_uniform(k, seed=7), output=tmp_path / "a")
    counts = Counter(_assignment(ds).values())
    assert set(counts) == set(range(k))
    expected = n / k
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001
    other = ga.build(table, key=P.random_uniform(k, seed=8), output=tmp_path / "b")
    assert _assignment(other) != _assignment(ds)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_groups_must_be_positive(bad: object) -> None:
    with pytest.raises(ga.KeySpecError, match="num_groups"):
        P.random_uniform(bad)  # type: ignore[arg-type]
    with pytest.raises(ga.KeySpecError, match="num_groups"):
        P.hash_bucket("user", bad)  # type: ignore[arg-type]


def test_dirichlet_over_groups_follows_each_labels_draw(tmp_path: Path) -> None:
    n, labels, k, alpha, seed = 30_000, 5, 6, 0.7, 3
    table = pa.table({"i": np.arange(n), "label": np.arange(n) % labels})
    key = P.dirichlet_over_groups("label", k, alpha, seed=seed)
    ds = ga.build(table, key=key, output=tmp_path / "out", num_shards=2)
    counts: dict[int, Counter[object]] = {label: Counter() for label in range(labels)}
    for group in ds.iter_groups():
        for label in group.to_arrow()["label"].to_pylist():
            counts[label][group.id] += 1
    for label in range(labels):
        rng = np.random.default_rng([seed, ga.key_hash(label, seed)])
        expected = rng.dirichlet(np.full(k, alpha)) * (n // labels)
        observed = np.array([counts[label][g] for g in range(k)])
        kept = expected > 5  # chi-square over the groups expected to hold enough rows
        chi2 = float((((observed - expected) ** 2)[kept] / expected[kept]).sum())
        assert chi2 < 20.5  # at most 5 degrees of freedom, p = 0.001
        assert observed[~kept].sum() <= max(20, 4 * expected[~kept].sum())


def test_dirichlet_alpha_controls_skew(tmp_path: Path) -> None:
    table = pa.table({"i": np.arange(10_000), "label": np.arange(10_000) % 4})

    def largest_share(alpha: float) -> float:
        key = P.dirichlet_over_groups("label", 10, alpha, seed=0)
        ds = ga.build(table, key=key, output=tmp_path / f"a{alpha}")
        sizes: dict[int, Counter[object]] = {label: Counter() for label in range(4)}
        for group in ds.iter_groups():
            for label in group.to_arrow()["label"].to_pylist():
                sizes[label][group.id] += 1
        return float(np.mean([max(c.values()) / 2500 for c in sizes.values()]))

    assert largest_share(0.05) > 0.5 > 0.2 > largest_share(1000.0)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan")])
def test_dirichlet_alpha_must_be_positive(alpha: float) -> None:
    with pytest.raises(ga.KeySpecError, match="alpha"):
        P.dirichlet_over_groups("label", 4, alpha)


def test_dirichlet_null_labels_follow_on_null(tmp_path: Path) -> None:
    table = pa.table({"i": np.arange(6), "label": [1, None, 2, 1, None, 2]})
    key = P.dirichlet_over_groups("label", 3, alpha=1.0)
    with pytest.raises(ga.NullKeyError, match="row 1"):
        ga.build(table, key=key, output=tmp_path / "a")
    ds = ga.build(table, key=key, output=tmp_path / "b", on_null="drop")
    assert ds.num_rows == 4 and ds.manifest.build["rows_dropped_null_key"] == 2


def test_iid_groups_have_equal_sizes(tmp_path: Path) -> None:
    ds = ga.build(_rows(1003), key=P.iid(10, seed=1), output=tmp_path / "a", num_shards=2)
    sizes = sorted(g.num_rows for g in ds.iter_groups())
    assert sizes == [100] * 7 + [101] * 3
    other = ga.build(_rows(1003), key=P.iid(10, seed=2), output=tmp_path / "b")
    assert _assignment(other) != _assignment(ds)


def test_size_skewed_follows_a_power_law(tmp_path: Path) -> None:
    n, k, power = 40_000, 8, 1.0
    ds = ga.build(_rows(n), key=P.size_skewed(k, power=power, seed=3), output=tmp_path / "a")
    observed = np.array([ds[g].num_rows if g in ds else 0 for g in range(k)])
    weights = np.arange(1, k + 1) ** -power
    expected = weights / weights.sum() * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001
    assert observed[0] > 2 * observed[3] > 0
    with pytest.raises(ga.KeySpecError, match="power"):
        P.size_skewed(4, power=-1)
