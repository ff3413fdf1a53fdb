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

from grouparrow import _sql
from grouparrow.errors import KeySpecError
from grouparrow.keys import SQLKey

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


def _check_groups(num_groups: int) -> None:
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise KeySpecError(f"num_groups={num_groups!r} must be a positive integer")
