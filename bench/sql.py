"""SQL over ``examples``: the checked scan (page CRCs, PyArrow) against DuckDB's own reader.

    python3 -m bench.sql [--rows N] [--shards K] [--repeat R]

Builds the synthetic web corpus (``bench/_data.py``, default 2,000,000 rows, ~1.2 GB of
Arrow) grouped by host into ``--shards`` shards (once, cached in ``bench/data/out``), then
runs each query ``--repeat`` times (best kept, page cache warm) on two connections of the
same dataset, in one process: ``ds.sql(q)`` (the ``examples`` view scans the shards through
PyArrow with ``page_checksum_verification``, grouparrow/_scan.py) and ``ds.sql(q,
checked=False)`` (DuckDB's ``read_parquet``, which checks nothing): the baseline. Prints
milliseconds, the ratio checked / unchecked, the time to set up each kind of connection
(``ds.connect``), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import grouparrow as ga
from bench import _data

QUERIES = {
    "count rows": "SELECT count(*) FROM examples",
    "sum a number": "SELECT sum(label) FROM examples",
    "per group: rows, bytes": (
        "SELECT group_id, count(*), sum(length(text)) FROM examples GROUP BY 1 ORDER BY 2 DESC "
        "LIMIT 5"
    ),
    "text filter": "SELECT count(*) FROM examples WHERE text LIKE '%zebra%'",
    "one group's rows": "SELECT * FROM examples WHERE group_id = $g",
    "label counts": "SELECT count(*) FROM (SELECT group_id, label, count(*) FROM examples "
    "GROUP BY ALL)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = _data.corpus(args.rows)
    out = _data.DATA_DIR / "out" / f"sql-{args.rows}-{args.shards}"
    if not (out / "grouparrow.json").exists():
        key = ga.sql("regexp_extract(url, '//([^/]+)', 1)")
        ga.build(corpus.path, key=key, output=out, num_shards=args.shards, mode="overwrite")
    ds = ga.open(out)
    [(group,)] = ds.sql("SELECT group_id FROM groups ORDER BY num_rows DESC LIMIT 1").fetchall()
    params = {"g": group}
    print(f"{corpus.num_rows:,} rows, {ds.num_groups:,} groups, {args.shards} shards")
    for checked in (True, False):
        start = time.perf_counter()
        ds.connect(checked=checked).close()
        print(
            f"set up {'a checked' if checked else 'an unchecked'} connection: "
            f"{(time.perf_counter() - start) * 1e3:.1f} ms"
        )
    print(f"{'query':<24} {'checked ms':>11} {'DuckDB ms':>10} {'ratio':>6}")
    for name, query in QUERIES.items():
        best = {}
        for checked in (True, False):
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                ds.sql(query, params if "$g" in query else None, checked=checked).fetchall()
                times.append(time.perf_counter() - start)
            best[checked] = min(times)
        print(
            f"{name:<24} {best[True] * 1e3:>11.1f} {best[False] * 1e3:>10.1f} "
            f"{best[True] / best[False]:>6.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
