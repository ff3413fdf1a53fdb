"""Built-in partitioners: key specs for natural and synthetic group structures.

Each returns a key for :func:`grouparrow.build`, computed in DuckDB SQL (no Python per row).
Randomness comes from a hash of ``(seed, row identity)``, never from a generator consumed in
row order, so the grouping does not depend on threads, batch sizes or ``num_shards``; the
row identity is the row's input position (``row N of file F`` for Parquet files).

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> table = pa.table({"url": ["https://a.org/x", "http://b.net/", "https://a.org/y"]})
    >>> ds = ga.build(table, key=url_host("url"), output=tempfile.mkdtemp() + "/hosts")
    >>> sorted(ds.group_ids())
    ['a.org', 'b.net']
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grouparrow import _sql
from grouparrow._splits import uniform
from grouparrow._udfs import ROW_COLUMN, BadRow
from grouparrow.errors import KeySpecError, LabelError
from grouparrow.keys import BatchKeyFnSpec, PreparedKey, SQLKey, key_hash

__all__ = [
    "by_feature",
    "dirichlet_over_groups",
    "hash_bucket",
    "iid",
    "label_dirichlet",
    "random_uniform",
    "shards",
    "size_skewed",
    "url_domain",
    "url_host",
]

#: ``labels=``: the label values a partitioner expects, as a count (``0 .. n - 1``) or a set.
Labels = int | Collection[str | int] | None

# urlparse(url).netloc: what follows "//" (after an optional scheme) up to "/", "?" or "#".
_NETLOC = r"regexp_extract({column}, '^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//([^/?#]*)', 1)"


def by_feature(column: str) -> str:
    """The natural partition: one group per value of ``column`` (Dataset Grouper's
    ``group_by_feature``).

    Example:
        >>> by_feature("writer_id")
        'writer_id'
    """
    if not isinstance(column, str) or not column:
        raise KeySpecError(f"by_feature() takes a column name, got {column!r}")
    return column


def url_host(column: str = "url") -> SQLKey:
    """One group per URL host, exactly ``urllib.parse.urlparse(url).netloc`` (FedC4's key):
    port and user info included, case kept; a URL without ``//`` gives the empty host.

    Example:
        >>> url_host("url").expression.startswith("regexp_extract")
        True
    """
    return SQLKey(_NETLOC.format(column=_sql.ident(column)))


def url_domain(column: str = "url") -> BatchKeyFnSpec:
    """One group per registered domain (eTLD+1) of a URL: ``https://news.bbc.co.uk/x`` ->
    ``bbc.co.uk``, ``a.b.github.io`` -> ``b.github.io``, by the Public Suffix List (the
    ``publicsuffixlist`` package, which ships a copy of it: no network).

    The host is ``urlparse(url).netloc`` less user info and port, lower-cased, without a
    trailing dot; a value without ``//`` is read as a host name (``www.bbc.co.uk/x`` works
    too). IP addresses, and hosts that are themselves a public suffix (``localhost``,
    ``co.uk``) or empty, are their own group. Null URLs have a null key.

    Example:
        >>> url_domain("url").columns
        ('url',)
    """
    if not isinstance(column, str) or not column:
        raise KeySpecError(f"url_domain() takes a column name, got {column!r}")
    return BatchKeyFnSpec(_Domains(), (column,), "string", definition=f"url_domain({column!r})")


# Scheme (optional) and "//" (optional), then the netloc; then the host within the netloc.
_URL_NETLOC = r"^(?:(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(?P<netloc>[^/?#]*)"
_NETLOC_HOST = r"^(?:.*@)?(?P<host>\[[^\]]*\]|[^:]*)"
_DOMAIN_CACHE = 1 << 20


class _Domains:
    """The vectorized key function of :func:`url_domain`: the suffix list is consulted once
    per distinct host (cached across batches)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}
        self._psl: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        urls = batch.column(0)
        if not pa.types.is_string(urls.type):
            urls = urls.cast(pa.string())
        netloc = pc.struct_field(pc.extract_regex(urls, _URL_NETLOC), 0)
        host = pc.struct_field(pc.extract_regex(netloc, _NETLOC_HOST), 0)
        host = pc.utf8_rtrim(pc.utf8_lower(host), characters=".")
        encoded = host.dictionary_encode()
        domains = pa.array([self._domain(h) for h in encoded.dictionary.to_pylist()], pa.string())
        return domains.take(encoded.indices)

    def _domain(self, host: str) -> str:
        domain = self._cache.get(host)
        if domain is None:
            if self._psl is None:
                self._psl = _public_suffix_list()
            domain = host if _is_ip(host) else (self._psl.privatesuffix(host) or host)
            if len(self._cache) >= _DOMAIN_CACHE:
                self._cache.clear()
            self._cache[host] = domain
        return domain


def _public_suffix_list() -> Any:
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError as exc:  # a dependency; missing only in a broken install
        raise KeySpecError(
            "url_domain() needs the publicsuffixlist package: pip install publicsuffixlist"
        ) from exc
    return PublicSuffixList()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def hash_bucket(column: str, num_groups: int, *, seed: int = 0) -> SQLKey:
    """``num_groups`` groups by a seeded hash of ``column``: rows with equal values share a
    group (integer group ids ``0 .. num_groups - 1``).

    Example:
        >>> hash_bucket("user", 100).expression
        'CAST(ga_order(ga_hash_text(CAST("user" AS VARCHAR), 0)) % 100 AS BIGINT)'
    """
    _check_groups(num_groups)
    text = f"CAST({_sql.ident(column)} AS VARCHAR)"
    return SQLKey(f"CAST(ga_order(ga_hash_text({text}, {int(seed)})) % {num_groups} AS BIGINT)")


def random_uniform(num_groups: int, *, seed: int = 0) -> SQLKey:
    """Each row to one of ``num_groups`` groups uniformly at random, by a seeded hash of its
    input position (Dataset Grouper's ``group_randomly``). Group sizes are multinomial.

    Example:
        >>> random_uniform(10, seed=3).expression
        'CAST(ga_order(ga_hash_text(CAST(__ga_row AS VARCHAR), 3)) % 10 AS BIGINT)'
    """
    _check_groups(num_groups)
    return SQLKey(
        f"CAST(ga_order(ga_hash_text(CAST(__ga_row AS VARCHAR), {int(seed)})) "
        f"% {num_groups} AS BIGINT)"
    )


def iid(num_groups: int, *, seed: int = 0) -> SQLKey:
    """``num_groups`` random groups of equal size (sizes differ by at most one): rows ranked
    by a seeded hash of their position, rank ``r`` to group ``r % num_groups``. The ranking
    is a DuckDB window over all rows; for inputs far larger than memory prefer
    :func:`random_uniform` (multinomial sizes, no global ranking).

    Example:
        >>> iid(4).expression.startswith("CAST((row_number() OVER")
        True
    """
    _check_groups(num_groups)
    order = f"ga_hash_text(CAST(__ga_row AS VARCHAR), {int(seed)}), __ga_row"
    return SQLKey(f"CAST((row_number() OVER (ORDER BY {order}) - 1) % {num_groups} AS BIGINT)")


def size_skewed(num_groups: int, *, power: float = 1.0, seed: int = 0) -> BatchKeyFnSpec:
    """Quantity skew: group ``g`` gets a share of the rows proportional to
    ``(g + 1) ** -power`` (a Zipf law; ``power=0`` is uniform), each row drawn by a seeded
    hash of its position.

    Example:
        >>> size_skewed(100, power=1.2).type
        'int64'
    """
    _check_groups(num_groups)
    if not isinstance(power, (int, float)) or isinstance(power, bool) or not power >= 0:
        raise KeySpecError(f"power={power!r} must be a number >= 0")
    weights = np.arange(1, num_groups + 1, dtype=np.float64) ** -float(power)
    return BatchKeyFnSpec(
        _Skewed(np.cumsum(weights / weights.sum()), int(seed)), (ROW_COLUMN,), "int64"
    )


class _Skewed:
    """The vectorized key function of :func:`size_skewed` (picklable)."""

    def __init__(self, cdf: np.ndarray, seed: int) -> None:
        self.cdf = cdf
        self.seed = seed

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        draws = uniform(batch.column(0).to_numpy(zero_copy_only=False), self.seed)
        groups = np.searchsorted(self.cdf, draws, side="right")
        return pa.array(np.minimum(groups, len(self.cdf) - 1).astype(np.int64))


def dirichlet_over_groups(
    label: str, num_groups: int, alpha: float, *, labels: Labels = None, seed: int = 0
) -> BatchKeyFnSpec:
    """Dataset Grouper's Dirichlet partition: each label value gets a categorical
    distribution over the ``num_groups`` groups drawn from a symmetric Dirichlet(``alpha``),
    and each example goes to a group drawn from its label's distribution. Small ``alpha``
    concentrates each label in few groups (label skew); large ``alpha`` approaches uniform.

    A label's distribution is seeded by ``(seed, label value)`` and an example's draw by
    ``(seed, row position)``, so the result is the same whatever the order of labels met,
    the batch sizes or ``num_shards``. Integer group ids ``0 .. num_groups - 1``.
    ``labels`` (a count ``n`` for ``0 .. n - 1``, or the set of values) makes a row with any
    other label a :class:`~grouparrow.LabelError` naming the row.

    Example:
        >>> dirichlet_over_groups("label", 100, alpha=0.5).columns
        ('label', '__ga_row')
    """
    _check_groups(num_groups)
    _check_alpha(alpha)
    draw = _DirichletOverGroups(num_groups, float(alpha), int(seed), _LabelCheck.make(labels))
    return BatchKeyFnSpec(
        draw,
        (label, ROW_COLUMN),
        "int64",
        definition=_signature("dirichlet_over_groups", label, num_groups, alpha, seed),
    )


class _DirichletOverGroups:
    """The vectorized key function of :func:`dirichlet_over_groups` (picklable)."""

    def __init__(self, num_groups: int, alpha: float, seed: int, check: _LabelCheck) -> None:
        self.num_groups = num_groups
        self.alpha = alpha
        self.seed = seed
        self.check = check
        self._cdfs: dict[object, np.ndarray] = {}

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        labels, rows = batch.column(0), batch.column(1).to_numpy(zero_copy_only=False)
        self.check(labels)
        draws = uniform(rows, self.seed)
        groups = np.zeros(len(rows), np.int64)
        for value, chosen in _by_label(labels):
            groups[chosen] = np.searchsorted(self._cdf(value), draws[chosen], side="right")
        np.minimum(groups, self.num_groups - 1, out=groups)
        return pa.array(groups, mask=labels.is_null().to_numpy(zero_copy_only=False))

    def _cdf(self, value: object) -> np.ndarray:
        cdf = self._cdfs.get(value)
        if cdf is None:
            cdf = np.cumsum(_dirichlet(value, self.num_groups, self.alpha, [self.seed]))
            self._cdfs[value] = cdf
        return cdf


def label_dirichlet(
    label: str,
    num_groups: int,
    alpha: float,
    *,
    min_size: int = 0,
    labels: Labels = None,
    seed: int = 0,
    max_tries: int = 100,
) -> BatchKeyFnSpec | PreparedKey:
    """Label skew as Flower's ``DirichletPartitioner`` (Yurochkin et al. 2019; the
    "Dirichlet label skew" of Hsu et al. 2019 and NIID-Bench): for each label value,
    proportions over the ``num_groups`` groups are drawn from a symmetric
    Dirichlet(``alpha``), and that label's rows, in a seeded random order, are cut at
    those proportions, so each group gets exactly its share of each label (no sampling
    noise, unlike :func:`dirichlet_over_groups`).

    ``min_size``: redraw every label's proportions (at most ``max_tries`` times) until each
    group has at least ``min_size`` rows, as Flower does (its default is 10); this needs
    the label counts first, so the build reads the input twice (a one-shot stream is
    spooled to disk). ``labels`` (a count or the set of values) makes any other label a
    :class:`~grouparrow.LabelError`. Integer group ids ``0 .. num_groups - 1``.

    Example:
        >>> label_dirichlet("label", 10, alpha=0.3).type
        'int64'
    """
    _check_groups(num_groups)
    _check_alpha(alpha)
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 0:
        raise KeySpecError(f"min_size={min_size!r} must be an integer >= 0")
    name = _signature("label_dirichlet", label, num_groups, alpha, seed)
    check = _LabelCheck.make(labels)
    column = _sql.ident(label)
    inputs = (
        ("rank", f"row_number() OVER (PARTITION BY {column} ORDER BY {_row_order(seed)}) - 1"),
        ("count", f"count(*) OVER (PARTITION BY {column})"),
    )

    def spec(attempt: int) -> BatchKeyFnSpec:
        fn = _LabelDirichlet(num_groups, float(alpha), int(seed), attempt, check)
        return BatchKeyFnSpec(fn, (label,), "int64", inputs, name)

    if min_size == 0:
        return spec(0)
    name = name[:-1] + f", min_size={min_size})"

    def make(counts: pa.Table) -> BatchKeyFnSpec:
        values, sizes = counts.column(0), counts.column(1).to_numpy()
        smallest = 0
        for attempt in range(max_tries):
            fn = _LabelDirichlet(num_groups, float(alpha), int(seed), attempt, check)
            total = np.zeros(num_groups, np.int64)
            for value, n in zip(values.to_pylist(), sizes, strict=True):
                if value is not None:
                    total += np.diff(fn.cuts(value, int(n)), prepend=0)
            smallest = int(total.min())
            if smallest >= min_size:
                return spec(attempt)
        raise KeySpecError(
            f"label_dirichlet: after {max_tries} draws the smallest group still has "
            f"{smallest} rows < min_size={min_size}; lower min_size or num_groups, raise "
            "alpha, or allow more max_tries"
        )

    query = f"SELECT {column}, count(*) FROM __ga_source GROUP BY ALL ORDER BY ALL"
    return PreparedKey(query, make)


class _LabelDirichlet:
    """The vectorized key function of :func:`label_dirichlet`: a row of rank ``r`` among the
    ``n`` rows of its label goes to the group whose cut of ``0 .. n`` holds ``r``."""

    def __init__(
        self, num_groups: int, alpha: float, seed: int, attempt: int, check: _LabelCheck
    ) -> None:
        self.num_groups = num_groups
        self.alpha = alpha
        self.seed = seed
        self.attempt = attempt
        self.check = check
        self._cuts: dict[object, np.ndarray] = {}

    def cuts(self, value: object, n: int) -> np.ndarray:
        """End (exclusive) of each group's share of the label's ``n`` rows."""
        cuts = self._cuts.get(value)
        if cuts is None or cuts[-1] != n:
            p = _dirichlet(value, self.num_groups, self.alpha, [self.seed, self.attempt])
            cuts = np.floor(np.cumsum(p) * n).astype(np.int64)
            cuts[-1] = n
            self._cuts[value] = cuts
        return cuts

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        labels = batch.column(0)
        self.check(labels)
        ranks = batch.column(1).to_numpy(zero_copy_only=False)
        counts = batch.column(2).to_numpy(zero_copy_only=False)
        groups = np.zeros(len(ranks), np.int64)
        for value, chosen in _by_label(labels):
            cuts = self.cuts(value, int(counts[chosen][0]))
            groups[chosen] = np.searchsorted(cuts, ranks[chosen], side="right")
        return pa.array(groups, mask=labels.is_null().to_numpy(zero_copy_only=False))


def shards(
    label: str,
    num_groups: int,
    shards_per_group: int = 2,
    *,
    labels: Labels = None,
    seed: int = 0,
) -> BatchKeyFnSpec:
    """McMahan et al.'s (2017) pathological non-IID split: sort the rows by label, cut them
    into ``num_groups * shards_per_group`` equal shards, and give each group
    ``shards_per_group`` shards at random, so most groups see only a few labels
    (MNIST: 100 groups of 2 shards of 300 rows). Within a label rows are in a seeded random
    order; shards are dealt by a seeded permutation. Rows with a null label have a null key.
    ``labels`` (a count or the set of values) makes any other label a
    :class:`~grouparrow.LabelError`. Integer group ids ``0 .. num_groups - 1``.

    Example:
        >>> shards("label", 100, 2).definition
        "shards('label', num_groups=100, shards_per_group=2, seed=0)"
    """
    _check_groups(num_groups)
    _check_groups(shards_per_group, "shards_per_group")
    column = _sql.ident(label)
    partition = f"PARTITION BY {column} IS NULL"
    inputs = (
        ("position", f"row_number() OVER ({partition} ORDER BY {column}, {_row_order(seed)}) - 1"),
        ("total", f"count(*) OVER ({partition})"),
    )
    fn = _Shards(num_groups, shards_per_group, int(seed), _LabelCheck.make(labels))
    name = (
        f"shards({label!r}, num_groups={num_groups}, shards_per_group={shards_per_group}, "
        f"seed={seed})"
    )
    return BatchKeyFnSpec(fn, (label,), "int64", inputs, name)


class _Shards:
    """The vectorized key function of :func:`shards`."""

    def __init__(self, num_groups: int, per_group: int, seed: int, check: _LabelCheck) -> None:
        self.num_shards = num_groups * per_group
        self.per_group = per_group
        self.check = check
        self.deal = np.random.default_rng([seed, 0x5A4D]).permutation(self.num_shards)

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        labels = batch.column(0)
        self.check(labels)
        position = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        total = batch.column(2).to_numpy(zero_copy_only=False).astype(np.int64)
        shard = position * self.num_shards // np.maximum(total, 1)
        groups = self.deal[np.minimum(shard, self.num_shards - 1)] // self.per_group
        return pa.array(groups, mask=labels.is_null().to_numpy(zero_copy_only=False))


class _LabelCheck:
    """Checks a batch's labels against ``labels=`` (a count or a set); raises
    :class:`BadRow` naming the first row outside."""

    def __init__(self, allowed: pa.Array | None, count: int | None, shown: str) -> None:
        self.allowed = allowed
        self.count = count
        self.shown = shown

    @classmethod
    def make(cls, labels: Labels) -> _LabelCheck:
        if labels is None:
            return cls(None, None, "")
        if isinstance(labels, int) and not isinstance(labels, bool):
            if labels < 1:
                raise KeySpecError(f"labels={labels!r} must be a positive count or a set")
            return cls(None, labels, f"labels={labels} (0 .. {labels - 1})")
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Collection) or not labels:
            raise KeySpecError(
                f"labels={labels!r} must be a count (labels 0 .. n-1) or a non-empty set of "
                "label values"
            )
        values = sorted(labels, key=repr)
        shown = ", ".join(map(repr, values[:10])) + (", ..." if len(values) > 10 else "")
        return cls(pa.array(values), None, f"labels={{{shown}}}")

    def __call__(self, labels: pa.Array | pa.ChunkedArray) -> None:
        if self.allowed is None and self.count is None:
            return
        if self.count is not None:
            if not pa.types.is_integer(labels.type):
                raise BadRow(
                    0, f"label column is {labels.type}, not integers as {self.shown}", LabelError
                )
            inside = pc.and_(pc.greater_equal(labels, 0), pc.less(labels, self.count))
        else:
            allowed = self.allowed
            assert allowed is not None
            inside = pc.is_in(labels, value_set=allowed.cast(labels.type, safe=False))
        outside = pc.and_(pc.invert(pc.fill_null(inside, True)), pc.is_valid(labels))
        if pc.any(outside).as_py():
            i = int(pc.index(outside, True).as_py())
            raise BadRow(i, f"label {labels[i].as_py()!r} is outside {self.shown}", LabelError)


def _by_label(labels: pa.Array | pa.ChunkedArray) -> list[tuple[object, np.ndarray]]:
    """Each distinct non-null label value with the mask of its rows."""
    encoded = labels.dictionary_encode()
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return [(v, codes == c) for c, v in enumerate(encoded.dictionary.to_pylist())]


def _dirichlet(value: object, size: int, alpha: float, seeds: list[int]) -> np.ndarray:
    """A Dirichlet(alpha) draw of ``size`` proportions seeded by ``seeds`` and the label."""
    if not isinstance(value, (str, bytes, int)) or isinstance(value, bool):
        raise KeySpecError(
            f"label {value!r} is a {type(value).__name__}; label partitioners take string or "
            "integer labels (cast the column, e.g. key=... on ga.sql('CAST(x AS BIGINT)'))"
        )
    rng = np.random.default_rng([*seeds, key_hash(value, seeds[0])])
    return rng.dirichlet(np.full(size, alpha))


def _row_order(seed: int) -> str:
    """SQL ordering rows by a seeded hash of their input position (then the position)."""
    return f"ga_hash_text(CAST({ROW_COLUMN} AS VARCHAR), {int(seed)}), {ROW_COLUMN}"


def _signature(name: str, label: str, num_groups: int, alpha: float, seed: int) -> str:
    return f"{name}({label!r}, num_groups={num_groups}, alpha={alpha}, seed={seed})"


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise KeySpecError(f"alpha={alpha!r} must be a positive number")


def _check_groups(num_groups: int, name: str = "num_groups") -> None:
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise KeySpecError(f"{name}={num_groups!r} must be a positive integer")
