"""Where does grouparrow's build time go, and what would close the gap to plain DuckDB?

1. Phases (setup / map / reduce, from the times grouparrow's progress line changes phase)
   of grouparrow's build, of variants (no word counts, one shard, a Python key) and of the
   plain-DuckDB baseline with the same shard count.
2. The map step alone in plain DuckDB, changing one thing at a time toward what grouparrow
   runs: the source (``read_parquet`` or a pyarrow scanner registered as a view) and the
   shard expression (``hash()``, grouparrow's ``md5_number`` modulo as UHUGEINT, the same
   value with 64-bit arithmetic).
3. The map step under the memory budget (a quarter of the input) with the
   ``partitioned_write_flush_threshold`` grouparrow sets and a smaller one.

Run from the repository root: ``python3 -m bench.breakdown [--rows N] [--repeat K]``.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench._data import DEFAULT_ROWS, Corpus, corpus
from bench.build import GB, baseline_job, grouparrow_job, measure, print_machine, settings

_LOW_FLUSH_THRESHOLD = 8_192
_RSS_PHASES = (("setup", "setup"), ("map", "map"), ("reduce", "index"))
_MAP_PROBES = (
    ("read_parquet", "hash", "DuckDB hash() % N (the baseline's map)"),
    ("arrow", "hash", "hash() % N"),
    ("read_parquet", "md5_uhugeint", "md5_number % N as UHUGEINT (grouparrow)"),
    ("read_parquet", "md5_64bit", "md5_number % N in 64-bit arithmetic"),
    ("arrow", "md5_uhugeint", "md5_number % N as UHUGEINT (~ grouparrow)"),
)


def phase_row(name: str, run: dict[str, Any]) -> str:
    if not run["ok"]:
        return f"{name:<32} FAILED in {run.get('failed_in', '?')}: {run['error']}"
    phases = run["phases"]
    reduce = phases["reduce"] + phases.get("index", 0.0)
    rss = run["rss_by_phase"]
    peaks = [max(rss.get(p, 0), rss.get(q, 0)) for p, q in _RSS_PHASES]
    by_phase = "/".join(f"{peak / GB:.1f}" if peak else "-" for peak in peaks)
    return (
        f"{name:<32} {run['seconds']:>7.1f} {run['range']:>10} "
        f"{phases.get('setup', 0.0):>7.1f} {phases['map']:>7.1f} {reduce:>7.1f} "
        f"{run['peak_rss'] / GB:>7.2f} {by_phase:>15}"
    )


def phases_table(data: Corpus, repeat: int) -> dict[str, Any]:
    ga = measure(grouparrow_job(data, "sql", "grouparrow"), repeat)
    like = settings(ga, data, None)
    fixed = {"num_shards": like["num_shards"]}
    runs = {
        f"grouparrow (auto: {like['num_shards']} shards)": ga,
        "grouparrow text_columns=[]": measure(
            grouparrow_job(data, "sql", "grouparrow-nowords", text_columns=[], **fixed), repeat
        ),
        "grouparrow num_shards=1": measure(
            grouparrow_job(data, "sql", "grouparrow-1shard", num_shards=1), repeat
        ),
        "grouparrow python key": measure(
            grouparrow_job(data, "python", "grouparrow-python", **fixed), repeat
        ),
        "duckdb baseline": measure(baseline_job(data, like, "baseline"), repeat),
    }
    print(
        f"{'build (seconds)':<32} {'total':>7} {'range':>10} {'setup':>7} {'map':>7} "
        f"{'reduce':>7} {'RSS GB':>7} {'setup/map/red.':>15}"
    )
    for name, run in runs.items():
        print(phase_row(name, run))
    _differences(list(runs.values()))
    return like


def _differences(runs: list[dict[str, Any]]) -> None:
    ga, nowords, _, python, base = runs
    if not (ga["ok"] and base["ok"]):
        return
    base_reduce = base["phases"]["reduce"] + base["phases"]["index"]
    print(
        f"\ngrouparrow / baseline: total {_ratio(ga['seconds'], base['seconds'])}, "
        f"map {_ratio(ga['phases']['map'], base['phases']['map'])}, "
        f"reduce {_ratio(ga['phases']['reduce'], base_reduce)}"
    )
    if nowords["ok"]:
        cost = ga["seconds"] - nowords["seconds"]
        print(f"num_words counting: {cost:+.1f} s ({cost / ga['seconds']:+.0%} of the build)")
    if python["ok"]:
        print(f"Python key over SQL key: {python['seconds'] - ga['seconds']:+.1f} s")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def map_table(data: Corpus, like: dict[str, Any], repeat: int) -> None:
    like = like | {"num_shards": max(like["num_shards"], 2)}  # one shard has no map step
    print(f"\nmap step alone: plain DuckDB COPY ... PARTITION_BY, {like['num_shards']} shards")
    print(f"{'source':<14} {'shard expression':<42} {'seconds':>7} {'RSS GB':>7}")
    for source, shard, label in _MAP_PROBES:
        job = baseline_job(data, like, "probe") | {
            "source": source,
            "shard": shard,
            "map_only": True,
        }
        run = measure(job, repeat)
        shown = "pyarrow reader" if source == "arrow" else source
        if run["ok"]:
            print(f"{shown:<14} {label:<42} {run['seconds']:>7.1f} {run['peak_rss'] / GB:>7.2f}")
        else:
            print(f"{shown:<14} {label:<42} FAILED: {run['error']}")


def budget_map_table(data: Corpus, repeat: int) -> None:
    budget = data.arrow_bytes // 4
    like = settings({"ok": False}, data, budget)
    print(
        f"\nmap step under the budget ({budget / GB:.2f} GB, {like['num_shards']} shards, "
        "read_parquet, hash()); RSS limit budget + 0.5 GB"
    )
    print(f"{'partitioned_write_flush_threshold':<34} {'finished':>8} {'seconds':>7} {'RSS GB':>7}")
    for threshold in (65_536, _LOW_FLUSH_THRESHOLD):
        job = baseline_job(data, like, "probe") | {"flush_threshold": threshold, "map_only": True}
        run = measure(job, repeat)
        if run["ok"]:
            print(
                f"{threshold:<34,} {'yes':>8} {run['seconds']:>7.1f} {run['peak_rss'] / GB:>7.2f}"
            )
        else:
            print(f"{threshold:<34,} {'no':>8}  {run['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="corpus rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    args = parser.parse_args()
    data = corpus(args.rows)
    print_machine(data)
    like = phases_table(data, args.repeat)
    map_table(data, like, args.repeat)
    budget_map_table(data, args.repeat)


if __name__ == "__main__":
    main()
