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

import numpy as np
import pyarrow as pa

from grouparrow import _sql
from grouparrow.errors import KeySpecError
from grouparrow.keys import ROW_COLUMN, BatchKeyFnSpec, SQLKey, key_hash

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
        uniform = _uniform(batch.column(0).to_numpy(zero_copy_only=False), self.seed)
        groups = np.searchsorted(self.cdf, uniform, side="right")
        return pa.array(np.minimum(groups, len(self.cdf) - 1).astype(np.int64))


def dirichlet_over_groups(
    label: str, num_groups: int, alpha: float, *, seed: int = 0
) -> BatchKeyFnSpec:
    """Dataset Grouper's Dirichlet partition: each label value gets a categorical
    distribution over the ``num_groups`` groups drawn from a symmetric Dirichlet(``alpha``),
    and each example goes to a group drawn from its label's distribution. Small ``alpha``
    concentrates each label in few groups (label skew); large ``alpha`` approaches uniform.

    A label's distribution is seeded by ``(seed, label value)`` and an example's draw by
    ``(seed, row position)``, so the result is the same whatever the order of labels met,
    the batch sizes or ``num_shards``. Integer group ids ``0 .. num_groups - 1``.

    Example:
        >>> dirichlet_over_groups("label", 100, alpha=0.5).columns
        ('label', '__ga_row')
    """
    _check_groups(num_groups)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise KeySpecError(f"alpha={alpha!r} must be a positive number")
    draw = _DirichletOverGroups(num_groups, float(alpha), int(seed))
    return BatchKeyFnSpec(draw, (label, ROW_COLUMN), "int64")


class _DirichletOverGroups:
    """The vectorized key function of :func:`dirichlet_over_groups` (picklable)."""

    def __init__(self, num_groups: int, alpha: float, seed: int) -> None:
        self.num_groups = num_groups
        self.alpha = alpha
        self.seed = seed
        self._cdfs: dict[object, np.ndarray] = {}

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        labels, rows = batch.column(0), batch.column(1).to_numpy(zero_copy_only=False)
        uniform = _uniform(rows, self.seed)
        groups = np.zeros(len(rows), np.int64)
        encoded = labels.dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        for code, value in enumerate(encoded.dictionary.to_pylist()):
            chosen = codes == code
            groups[chosen] = np.searchsorted(self._cdf(value), uniform[chosen], side="right")
        np.minimum(groups, self.num_groups - 1, out=groups)
        return pa.array(groups, mask=labels.is_null().to_numpy(zero_copy_only=False))

    def _cdf(self, value: object) -> np.ndarray:
        cdf = self._cdfs.get(value)
        if cdf is None:
            if not isinstance(value, (str, bytes, int)) or isinstance(value, bool):
                raise KeySpecError(
                    f"dirichlet_over_groups: label {value!r} is not a string, bytes or integer"
                )
            rng = np.random.default_rng([self.seed, key_hash(value, self.seed)])
            cdf = np.cumsum(rng.dirichlet(np.full(self.num_groups, self.alpha)))
            self._cdfs[value] = cdf
        return cdf


def _uniform(rows: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row position: splitmix64 of (row, seed)."""
    x = rows.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) & _MASK64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


_MASK64 = (1 << 64) - 1


def _check_groups(num_groups: int) -> None:
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise KeySpecError(f"num_groups={num_groups!r} must be a positive integer")
