"""Built-in partitioners: semantics, distributions, determinism (grouparrow/partitioners.py)."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    user = rng.integers(0, users, n)
    return pa.table(
        {
            "i": np.arange(n),
            "user": [f"u{x}" for x in user],
            "label": rng.integers(0, 10, n),
            "url": [f"https://w{x % 3}.site{x}.co.uk/p" for x in user],
        }
    )


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
        P.by_feature("user"),
        P.url_host("url"),
        P.url_domain("url"),
        P.label_dirichlet("label", 8, alpha=0.3, seed=6),
        P.label_dirichlet("label", 8, alpha=0.3, seed=6, min_size=5),
        P.shards("label", 8, 2, seed=7),
        ("user", "label"),
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


# -- url_domain --------------------------------------------------------------------------
def _registered_domain(url: str) -> str:
    """The reference: publicsuffixlist on urlparse's host (values without // are hosts)."""
    from publicsuffixlist import PublicSuffixList

    netloc = urlparse(url).netloc if "//" in url else url.split("/")[0]
    host = netloc.rpartition("@")[2]
    host = host[: host.index("]") + 1] if host.startswith("[") else host.split(":")[0]
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        return PublicSuffixList().privatesuffix(host) or host


def test_url_domain_is_the_registered_domain(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "c4" / "c4-en-train-00000-first1k.jsonl"
    with path.open(encoding="utf-8") as lines:
        urls = [json.loads(line)["url"] for line in lines]
    cases = {
        "https://news.bbc.co.uk/sport": "bbc.co.uk",
        "http://User:pw@WWW.Example.COM.:8080/a?b#c": "example.com",
        "https://a.b.github.io/x": "b.github.io",
        "www.bbc.co.uk/news": "bbc.co.uk",
        "http://192.168.0.1:80/x": "192.168.0.1",
        "http://[::1]:8080/": "[::1]",
        "http://localhost:3000/": "localhost",
        "https://co.uk/": "co.uk",
        "https://www.例子.中国/": "例子.中国",
        "": "",
    }
    table = pa.table({"i": np.arange(len(urls) + len(cases)), "url": urls + list(cases)})
    ds = ga.build(table, key=P.url_domain("url"), output=tmp_path / "out", num_shards=2)
    got = _assignment(ds)
    assert got == {i: _registered_domain(u) for i, u in enumerate(table["url"].to_pylist())}
    assert [got[len(urls) + i] for i in range(len(cases))] == list(cases.values())
    assert ds.num_groups < len({urlparse(u).netloc for u in urls})  # www.x and x merge
    assert ds.manifest.key["definition"] == "url_domain('url')"


def test_url_domain_of_hosts_and_links_agree(data_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(data_dir / "news_headlines" / "headlines.parquet")
    table = table.append_column("i", pa.array(np.arange(table.num_rows)))
    by_link = _assignment(ga.build(table, key=P.url_domain("link"), output=tmp_path / "a"))
    by_host = _assignment(ga.build(table, key=P.url_domain("domain"), output=tmp_path / "b"))
    differ = [i for i in by_link if by_link[i] != by_host[i]]
    # The dataset's domain column drops "www." even from hosts under a public suffix
    # (www.gov.uk -> gov.uk): there the registered domain is the host itself.
    assert len(differ) <= 5
    assert all(by_link[i] == "www." + by_host[i] for i in differ)
    assert by_link[0] == "techcrunch.com"


def test_url_domain_null_urls_follow_on_null(tmp_path: Path) -> None:
    table = pa.table({"url": ["https://a.org/x", None, "http://b.a.org"]})
    with pytest.raises(ga.NullKeyError, match="row 1"):
        ga.build(table, key=P.url_domain("url"), output=tmp_path / "a")
    ds = ga.build(table, key=P.url_domain("url"), output=tmp_path / "b", on_null="drop")
    assert ds.group_ids() == ["a.org"] and ds.num_rows == 2


# -- label_dirichlet ---------------------------------------------------------------------
def _label_counts(ds: ga.GroupedDataset, label: str = "label") -> dict[object, Counter[object]]:
    """label -> Counter(group -> rows)."""
    counts: dict[object, Counter[object]] = {}
    for group in ds.iter_groups():
        for value in group.to_arrow()[label].to_pylist():
            counts.setdefault(value, Counter())[group.id] += 1
    return counts


def test_label_dirichlet_cuts_each_label_exactly(tmp_path: Path) -> None:
    n, labels, k, alpha, seed = 12_000, 6, 8, 0.5, 4
    rng = np.random.default_rng(1)
    table = pa.table({"i": np.arange(n), "label": rng.integers(0, labels, n)})
    key = P.label_dirichlet("label", k, alpha, seed=seed)
    ds = ga.build(table, key=key, output=tmp_path / "out", num_shards=3)
    assert ds.num_rows == n
    sizes = Counter(table["label"].to_pylist())
    for label, counts in _label_counts(ds).items():
        rng = np.random.default_rng([seed, 0, ga.key_hash(label, seed)])
        cuts = np.floor(np.cumsum(rng.dirichlet(np.full(k, alpha))) * sizes[label])
        cuts[-1] = sizes[label]
        expected = np.diff(cuts, prepend=0).astype(int)
        assert [counts[g] for g in range(k)] == expected.tolist()


def test_label_dirichlet_alpha_controls_skew(tmp_path: Path) -> None:
    table = pa.table({"i": np.arange(8_000), "label": np.arange(8_000) % 4})

    def largest_share(alpha: float) -> float:
        ds = ga.build(
            table, key=P.label_dirichlet("label", 10, alpha), output=tmp_path / f"{alpha}"
        )
        return float(np.mean([max(c.values()) / 2000 for c in _label_counts(ds).values()]))

    assert largest_share(0.05) > 0.5 > 0.2 > largest_share(1000.0)


def test_label_dirichlet_min_size_on_fashion_mnist(data_dir: Path, tmp_path: Path) -> None:
    labels = pq.read_table(data_dir / "fashion_mnist" / "fashion_mnist.parquet", columns=["label"])
    table = labels.append_column("i", pa.array(np.arange(labels.num_rows)))
    plain = ga.build(table, key=P.label_dirichlet("label", 100, 0.1), output=tmp_path / "a")
    assert min(g.num_rows for g in plain.iter_groups()) < 20
    key = P.label_dirichlet("label", 100, 0.1, min_size=20, labels=10, seed=0)
    ds = ga.build(table, key=key, output=tmp_path / "b", num_shards=2)
    sizes = [g.num_rows for g in ds.iter_groups()]
    assert len(sizes) == 100 and min(sizes) >= 20 and sum(sizes) == 70_000
    assert "min_size=20" in ds.manifest.key["definition"]
    # A one-shot stream is spooled for the label counts: same groups.
    stream = pa.RecordBatchReader.from_batches(table.schema, iter(table.to_batches(9_999)))
    again = ga.build(stream, key=key, output=tmp_path / "c", num_shards=3)
    assert _assignment(again) == _assignment(ds)
    assert not list(tmp_path.glob(".c.grouparrow-tmp-*"))


def test_label_dirichlet_min_size_out_of_reach(tmp_path: Path) -> None:
    table = pa.table({"label": np.arange(300) % 3})
    key = P.label_dirichlet("label", 50, 0.1, min_size=50, max_tries=5)
    with pytest.raises(ga.KeySpecError, match="min_size=50"):
        ga.build(table, key=key, output=tmp_path / "a")
    assert not (tmp_path / "a").exists()


# -- shards ------------------------------------------------------------------------------
def test_shards_is_mcmahans_pathological_split(data_dir: Path, tmp_path: Path) -> None:
    path = data_dir / "fashion_mnist" / "fashion_mnist.parquet"
    table = pq.read_table(path, columns=["label"]).slice(0, 60_000)
    table = table.append_column("i", pa.array(np.arange(table.num_rows)))
    ds = ga.build(table, key=P.shards("label", 100, 2, seed=3), output=tmp_path / "a")
    assert sorted(g.num_rows for g in ds.iter_groups()) == [600] * 100
    labels_per_group = [len(set(g.to_arrow()["label"].to_pylist())) for g in ds.iter_groups()]
    assert max(labels_per_group) <= 4  # two shards, each across at most one label boundary
    assert Counter(labels_per_group).most_common(1)[0][0] <= 2
    other = ga.build(table, key=P.shards("label", 100, 2, seed=4), output=tmp_path / "b")
    assert _assignment(other) != _assignment(ds)


def test_shards_uneven_and_null_labels(tmp_path: Path) -> None:
    table = pa.table(
        {"i": np.arange(1_003), "label": [None if i % 50 == 0 else i % 7 for i in range(1_003)]}
    )
    ds = ga.build(table, key=P.shards("label", 10, 3), output=tmp_path / "a", on_null="drop")
    sizes = sorted(g.num_rows for g in ds.iter_groups())
    assert sum(sizes) == 1_003 - 21 and sizes[-1] - sizes[0] <= 3
    with pytest.raises(ga.KeySpecError, match="shards_per_group"):
        P.shards("label", 10, 0)


# -- labels= and parameter errors --------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda labels: P.dirichlet_over_groups("label", 4, 1.0, labels=labels),
        lambda labels: P.label_dirichlet("label", 4, 1.0, labels=labels),
        lambda labels: P.label_dirichlet("label", 4, 1.0, labels=labels, min_size=1),
        lambda labels: P.shards("label", 4, 2, labels=labels),
    ],
)
def test_labels_outside_the_range_name_the_row(tmp_path: Path, make: object) -> None:
    table = pa.table({"i": np.arange(40), "label": [i % 5 if i != 17 else 12 for i in range(40)]})
    with pytest.raises(ga.LabelError, match=r"label 12 is outside labels=5 .*row 17"):
        ga.build(table, key=make(5), output=tmp_path / "a")  # type: ignore[operator]
    with pytest.raises(ga.LabelError, match=r"label 12 is outside labels=\{0, 1, 2, 3, 4\}"):
        ga.build(table, key=make({0, 1, 2, 3, 4}), output=tmp_path / "b")  # type: ignore[operator]
    ds = ga.build(table, key=make(13), output=tmp_path / "c")  # type: ignore[operator]
    assert ds.num_rows == 40


def test_string_labels_and_label_sets(tmp_path: Path) -> None:
    table = pa.table({"label": ["cat", "dog", "cat", "emu"] * 50})
    key = P.label_dirichlet("label", 5, 1.0, labels={"cat", "dog", "emu"})
    assert ga.build(table, key=key, output=tmp_path / "a").num_rows == 200
    with pytest.raises(ga.LabelError, match="'emu' is outside"):
        ga.build(table, key=P.shards("label", 5, labels={"cat", "dog"}), output=tmp_path / "b")
    with pytest.raises(ga.LabelError, match="not integers"):
        ga.build(table, key=P.shards("label", 5, labels=3), output=tmp_path / "c")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: P.label_dirichlet("label", 4, 0), "alpha"),
        (lambda: P.label_dirichlet("label", 4, -0.5), "alpha"),
        (lambda: P.label_dirichlet("label", 0, 1.0), "num_groups"),
        (lambda: P.label_dirichlet("label", 4, 1.0, min_size=-1), "min_size"),
        (lambda: P.shards("label", 0), "num_groups"),
        (lambda: P.shards("label", 4, labels=0), "labels"),
        (lambda: P.dirichlet_over_groups("label", 4, 1.0, labels="abc"), "labels"),
        (lambda: P.url_domain(""), "column"),
    ],
)
def test_bad_partitioner_parameters(make: object, match: str) -> None:
    with pytest.raises(ga.KeySpecError, match=match):
        make()  # type: ignore[operator]


def test_float_labels_are_refused(tmp_path: Path) -> None:
    table = pa.table({"label": [0.5, 1.5, 0.5]})
    with pytest.raises(ga.GroupArrowError, match="float"):
        ga.build(table, key=P.label_dirichlet("label", 2, 1.0), output=tmp_path / "a")
