"""How fast does grouparrow build, against plain DuckDB doing the same two steps?

Groups the synthetic web corpus (``bench/_data.py``) by URL host, once with
``grouparrow.build`` and once with a plain-DuckDB baseline (hash-partition with ``COPY ...
PARTITION_BY``, then per shard ``COPY (... ORDER BY ...)`` and a ``GROUP BY`` index), same
shard count, memory limit and threads. Then both again under a memory budget of a quarter of
the input's Arrow size. Each run is a fresh process; its peak RSS is its own.

With ``--key all``, one table instead: every key of ``bench._worker.KEYS`` (the SQL and
Python host keys, the partitioners) against the SQL key and the baseline.

Run from the repository root: ``python3 -m bench.build [--rows N] [--key NAME|all]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

import grouparrow
from bench._data import DATA_DIR, DEFAULT_ROWS, Corpus, corpus
from bench._worker import GROUPS, KEYS, REPO, launch
from grouparrow.build import _auto_shards, parse_bytes
from grouparrow.sources import open_source

OUT = DATA_DIR / "out"
GB = 1e9
RSS_SLACK = 0.5 * GB
TARGET_ROWS_PER_S = 250_000
TARGET_RATIO = 1.2


def measure(job: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``job`` run ``repeat`` times, summarized by :func:`summarize`."""
    return summarize([launch(job) for _ in range(repeat)])


def measure_pair(
    first: dict[str, Any], second: Callable[[dict[str, Any]], dict[str, Any]], repeat: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``first`` and the job ``second`` makes from its first result, run alternately (so
    that drift in the machine's speed hits both alike), each summarized."""
    firsts = [launch(first)]
    job = second(firsts[0])
    seconds = [launch(job)]
    for _ in range(repeat - 1):
        firsts.append(launch(first))
        seconds.append(launch(job))
    return summarize(firsts), summarize(seconds)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by seconds, with the largest peak RSS and the range of seconds; or
    the first failure."""
    failed = [r for r in runs if not r["ok"]]
    if failed:
        return failed[0]
    runs = sorted(runs, key=lambda r: r["seconds"])
    return {
        **runs[len(runs) // 2],
        "peak_rss": max(r["peak_rss"] for r in runs),
        "range": f"{runs[0]['seconds']:.1f}-{runs[-1]['seconds']:.1f}",
    }


def grouparrow_job(data: Corpus, key: str, name: str, **options: Any) -> dict[str, Any]:
    return {
        "kind": "grouparrow",
        "input": str(data.path),
        "output": str(OUT / name),
        "key": key,
        **options,
    }


def baseline_job(data: Corpus, like: dict[str, Any], name: str) -> dict[str, Any]:
    """The baseline with the shard count, memory limit and threads of grouparrow's run."""
    return {
        "kind": "baseline",
        "input": str(data.path),
        "output": str(OUT / name),
        "num_shards": like["num_shards"],
        "memory_limit": like["memory_limit"],
        "threads": like["threads"],
    }


def settings(run: dict[str, Any], data: Corpus, memory_limit: int | None) -> dict[str, Any]:
    """The settings of grouparrow's ``run`` to give the baseline; if it failed, the ones it
    would have used (its own rule for the shard count, from its size estimate)."""
    if run["ok"]:
        return run
    limit = parse_bytes(memory_limit)
    shards = _auto_shards(open_source(str(data.path)).size_hint, limit)
    return {"num_shards": shards, "memory_limit": limit, "threads": os.cpu_count()}


def print_machine(data: Corpus) -> None:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"machine: {os.cpu_count()} cores, {memory / 2**30:.1f} GiB RAM, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}"
    )
    print(f"grouparrow {grouparrow.__version__}, {_revision()}")
    print(
        f"input:   {data.path.name}: {data.num_rows:,} rows, {data.arrow_bytes / 1e6:,.0f} MB "
        f"Arrow, {data.file_bytes / 1e6:,.0f} MB Parquet (zstd)\n"
    )


def _revision() -> str:
    """The repository's commit, marked ``+dirty`` when grouparrow/ or sql/ has changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + ("+dirty" if git("status", "--porcelain", "grouparrow", "sql") else "")


def speed_row(name: str, run: dict[str, Any], data: Corpus, base: dict[str, Any] | None) -> str:
    if not run["ok"]:
        return f"{name:<28} FAILED: {run['error']}"
    seconds = run["seconds"]
    ratio = f"{seconds / base['seconds']:.2f}x" if base and base["ok"] else "-"
    return (
        f"{name:<28} {seconds:>8.1f} {run.get('range', '-'):>10} "
        f"{data.num_rows / seconds:>10,.0f} "
        f"{data.arrow_bytes / 1e6 / seconds:>7.1f} {ratio:>8} "
        f"{run['peak_rss'] / GB:>8.2f} {run.get('num_shards', '-'):>6}"
    )


def speed_table(data: Corpus, key: str, repeat: int) -> dict[str, Any]:
    ga, base = measure_pair(
        grouparrow_job(data, key, "grouparrow"),
        lambda run: baseline_job(data, settings(run, data, None), "baseline"),
        repeat,
    )
    check = launch({"kind": "verify", "output": str(OUT / "grouparrow")}) if ga["ok"] else ga
    print(
        f"{'run':<28} {'seconds':>8} {'range':>10} {'rows/s':>10} {'MB/s':>7} {'vs base':>8} "
        f"{'RSS GB':>8} {'shards':>6}"
    )
    print(speed_row(f"grouparrow ({key} key)", ga, data, base))
    print(speed_row("duckdb baseline", base, data, None))
    print(
        speed_row("grouparrow verify", check, data, None)
        + (f"  ok={check['verified']}" if check.get("ok") else "")
    )
    if not ga["ok"]:
        return ga
    print(
        f"\n{ga['num_groups']:,} groups; memory_limit {ga['memory_limit'] / GB:.2f} GB, "
        f"{ga['threads']} threads; median of {repeat}"
    )
    ratio = ga["seconds"] / base["seconds"] if base["ok"] else float("nan")
    rate = data.num_rows / ga["seconds"]
    print(
        f"target >= {TARGET_ROWS_PER_S:,} rows/s: {rate:,.0f} -> "
        f"{'met' if rate >= TARGET_ROWS_PER_S else 'MISSED'}"
    )
    print(
        f"target <= {TARGET_RATIO}x baseline: {ratio:.2f}x -> "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}\n"
    )
    return ga


def keys_table(data: Corpus, repeat: int) -> None:
    """Every key of ``KEYS``, each run ``repeat`` times in turn (so that drift in the
    machine's speed hits all alike) with the baseline, then each output verified once."""
    jobs = {name: grouparrow_job(data, name, "grouparrow-key") for name in KEYS}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in KEYS}
    checks: dict[str, dict[str, Any]] = {}
    bases: list[dict[str, Any]] = []
    for _ in range(repeat):
        for name, job in jobs.items():
            runs[name].append(launch(job))
            if name not in checks:  # verified while its output is there; the next replaces it
                done = runs[name][-1]
                checks[name] = (
                    launch({"kind": "verify", "output": job["output"]}) if done["ok"] else done
                )
        like = settings(runs["sql"][0], data, None)
        bases.append(launch(baseline_job(data, like, "baseline")))
    results = {name: summarize(r) for name, r in runs.items()}
    base, sql = summarize(bases), results["sql"]
    print(
        f"{'key':<16} {'seconds':>8} {'range':>10} {'rows/s':>10} {'vs sql':>7} "
        f"{'vs base':>8} {'RSS GB':>7} {'shards':>6} {'groups':>8} {'verify':>6}"
    )
    for name, run in results.items():
        print(key_row(name, run, data, sql, base, checks[name]))
    print(key_row("duckdb baseline", base, data, sql, base, None))
    print(
        f"\nvs sql / vs base: seconds over the SQL key's / the baseline's (higher is slower); "
        f"median of {repeat}; partitioners make {GROUPS:,} groups"
    )


def key_row(
    name: str,
    run: dict[str, Any],
    data: Corpus,
    sql: dict[str, Any],
    base: dict[str, Any],
    check: dict[str, Any] | None,
) -> str:
    if not run["ok"]:
        return f"{name:<16} FAILED: {run['error']}"

    def ratio(other: dict[str, Any]) -> str:
        return f"{run['seconds'] / other['seconds']:.2f}x" if other["ok"] else "-"

    verified = "-" if check is None else ("ok" if check.get("verified") else "FAILED")
    return (
        f"{name:<16} {run['seconds']:>8.1f} {run.get('range', '-'):>10} "
        f"{data.num_rows / run['seconds']:>10,.0f} {ratio(sql):>7} {ratio(base):>8} "
        f"{run['peak_rss'] / GB:>7.2f} {run.get('num_shards', '-'):>6} "
        f"{run.get('num_groups', '-'):>8} {verified:>6}"
    )


def budget_row(name: str, run: dict[str, Any], budget: int) -> str:
    if not run["ok"]:
        return f"{name:<28} {'no':>8}  in {run.get('failed_in', '?')}: {run['error']}"
    within = run["peak_rss"] <= budget + RSS_SLACK
    return (
        f"{name:<28} {'yes':>8} {run['seconds']:>8.1f} {run.get('range', '-'):>10} "
        f"{run['peak_rss'] / GB:>8.2f} "
        f"{'yes' if within else 'NO':>14} {run['num_shards']:>6}"
    )


def budget_table(data: Corpus, key: str, repeat: int) -> None:
    budget = data.arrow_bytes // 4
    ga, base = measure_pair(
        grouparrow_job(data, key, "grouparrow-budget", memory_limit=budget),
        lambda run: baseline_job(data, settings(run, data, budget), "baseline-budget"),
        repeat,
    )
    print(
        f"memory budget: {budget / GB:.2f} GB (a quarter of the input's Arrow size); "
        f"RSS limit budget + {RSS_SLACK / GB:.1f} = {(budget + RSS_SLACK) / GB:.2f} GB"
    )
    print(
        f"{'run':<28} {'finished':>8} {'seconds':>8} {'range':>10} {'RSS GB':>8} "
        f"{'<= budget+0.5':>14} "
        f"{'shards':>6}"
    )
    print(budget_row(f"grouparrow ({key} key)", ga, budget))
    print(budget_row("duckdb baseline", base, budget))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="corpus rows")
    parser.add_argument(
        "--key",
        choices=(*KEYS, "all"),
        default="sql",
        help="the key: the URL host as SQL (regexp_extract) or a Python urlparse, a "
        "partitioner, or all of them in one table (no budget runs)",
    )
    parser.add_argument("--skip-budget", action="store_true", help="skip the budget runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    args = parser.parse_args()
    data = corpus(args.rows)
    print_machine(data)
    if args.key == "all":
        keys_table(data, args.repeat)
        return
    speed_table(data, args.key, args.repeat)
    if not args.skip_budget:
        budget_table(data, args.key, args.repeat)


if __name__ == "__main__":
    main()
