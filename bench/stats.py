"""Per-group label counts: grouparrow's index and DuckDB against loading every group (Flower).

    python3 -m bench.stats [--groups N] [--budget SECONDS]

On a FEMNIST-like corpus (``--groups`` writers, default 20,000, lognormal sizes of median
~10 rows, 62 labels drawn per writer from a Dirichlet(0.5), a 784-byte ``pixels`` column),
each measurement in a fresh process (its own peak RSS), in one run:

- grouparrow: ``ds.label_counts()`` (stored in the index at build time), ``ds.stats()``
  (with each group's label entropy and JS / Hellinger distance), ``ds.compute_stats`` (a
  recount from the shards by DuckDB) and ``ga.group_counts`` (from the source, no build);
- the Flower way: the rows in an HF ``Dataset``, each client's rows selected by precomputed
  indices and its labels counted (``np.bincount``), as ``partitioner.load_partition(i)``
  then a count does; a run longer than ``--budget`` seconds is extrapolated from the
  clients it reached;
- the same loop over grouparrow's reader (``iter_groups``), and over a ``pyarrow.Table``
  in memory (``take`` by indices).

Prints seconds, clients/s, ratios against the Flower way, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent / "data"
LABELS = 62
TARGET_RATIO = 100
TARGET_SECONDS = 0.1


def corpus(groups: int, seed: int = 0) -> Path:
    """The FEMNIST-like source Parquet for ``groups`` writers (made once, cached)."""
    path = DATA / f"stats-femnist-{groups}-s{seed}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.round(rng.lognormal(np.log(10), 0.9, groups)), 1, 500).astype(np.int64)
    writer = np.repeat(np.arange(groups), sizes)
    mixes = rng.dirichlet(np.full(LABELS, 0.5), groups)
    cdf = np.cumsum(mixes, axis=1)[writer]
    labels = (cdf < rng.random(len(writer))[:, None]).sum(axis=1).clip(0, LABELS - 1)
    order = rng.permutation(len(writer))  # writers interleaved, as in a real export
    pixels = rng.integers(0, 256, (len(writer), 784), dtype=np.uint8)
    table = pa.table(
        {
            "writer_id": pa.array([f"f{w:05d}_{w % 97:02d}" for w in writer[order]]),
            "label": pa.array(labels[order].astype(np.int16)),
            "pixels": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(784), len(writer), [None, pa.py_buffer(pixels[order].tobytes())]
            ),
        }
    )
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=65_536)
    tmp.rename(path)
    return path


# -- jobs: each runs in its own process and prints one JSON line ---------------------------
def _job(name: str, source: str, dataset: str, budget: float) -> dict[str, Any]:
    import polars  # noqa: F401 - imported before the clock starts, as in a user's session

    import grouparrow as ga

    if name == "label_counts":
        ds = ga.open(dataset)
        started = time.perf_counter()
        counts = ds.label_counts()
        return {"seconds": time.perf_counter() - started, "groups": counts["group_id"].n_unique()}
    if name == "stats":
        ds = ga.open(dataset)
        started = time.perf_counter()
        frame = ds.stats()
        return {"seconds": time.perf_counter() - started, "groups": frame.height}
    if name == "compute_stats":
        ds = ga.open(dataset)
        started = time.perf_counter()
        ds = ds.compute_stats(label_column="label")
        return {"seconds": time.perf_counter() - started, "groups": ds.num_groups}
    if name == "group_counts":
        started = time.perf_counter()
        frame = ga.group_counts(source, key="writer_id", label_column="label")
        return {"seconds": time.perf_counter() - started, "groups": frame.height}
    if name == "reader_loop":
        ds = ga.open(dataset)
        started = time.perf_counter()
        groups = 0
        for group in ds.iter_groups(columns=["label"]):
            np.bincount(group.to_numpy("label"), minlength=LABELS)
            groups += 1
        return {"seconds": time.perf_counter() - started, "groups": groups}
    return _load_each(name, source, budget)


def _load_each(name: str, source: str, budget: float) -> dict[str, Any]:
    """Select each client's rows by precomputed indices (not timed) and count its labels."""
    ids = pq.read_table(source, columns=["writer_id"]).column(0).to_numpy(zero_copy_only=False)
    uniques, inverse = np.unique(ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
    if name == "flower_hf":
        import datasets

        data: Any = datasets.Dataset.from_parquet(source)

        def labels(rows: np.ndarray) -> np.ndarray:
            return np.asarray(data.select(rows)["label"])
    else:  # arrow_take
        data = pq.read_table(source).combine_chunks()  # one chunk: take is fast then

        def labels(rows: np.ndarray) -> np.ndarray:
            return data.take(rows).column("label").to_numpy()

    started = time.perf_counter()
    done = 0
    for i in range(len(uniques)):
        np.bincount(labels(order[bounds[i] : bounds[i + 1]]), minlength=LABELS)
        done += 1
        if time.perf_counter() - started > budget:
            break
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds * len(uniques) / done,
        "groups": len(uniques),
        "reached": done,
        "measured_seconds": seconds,
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``; ``ru_maxrss`` would count the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run(name: str, source: Path, dataset: Path, budget: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.stats", "--job", name, "--source", str(source)]
    command += ["--dataset", str(dataset), "--budget", str(budget)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=20_000)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per slow loop")
    parser.add_argument("--repeat", type=int, default=3, help="fast measurements: median of K")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        result = _job(args.job, args.source, args.dataset, args.budget)
        result["rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return

    import grouparrow as ga

    source = corpus(args.groups)
    dataset = DATA / "out" / f"stats-femnist-{args.groups}"
    started = time.perf_counter()
    ds = ga.build(source, key="writer_id", output=dataset, mode="overwrite", label_column="label")
    built = time.perf_counter() - started
    print(
        f"corpus: {ds.num_groups:,} writers, {ds.num_rows:,} rows, {LABELS} labels; built with "
        f"label counts in {built:.1f} s ({ds.manifest.num_bytes / 1e6:,.0f} MB of Arrow data)"
    )
    results: dict[str, dict[str, Any]] = {}
    for name in ("label_counts", "stats", "compute_stats", "group_counts", "reader_loop"):
        runs = [_run(name, source, dataset, args.budget) for _ in range(args.repeat)]
        ok = [r for r in runs if "error" not in r]
        results[name] = sorted(ok, key=lambda r: r["seconds"])[len(ok) // 2] if ok else runs[0]
    for name in ("arrow_take", "flower_hf"):
        results[name] = _run(name, source, dataset, args.budget)
    _print(results)


_ROWS = [
    ("label_counts", "grouparrow: ds.label_counts() (stored in the index)"),
    ("stats", "grouparrow: ds.stats() (+ entropy, JS, Hellinger)"),
    ("compute_stats", "grouparrow: ds.compute_stats() (recount, DuckDB)"),
    ("group_counts", "grouparrow: ga.group_counts(source) (no build)"),
    ("reader_loop", "load each group: grouparrow iter_groups"),
    ("arrow_take", "load each group: pyarrow.Table.take"),
    ("flower_hf", "load each group: HF Dataset.select (Flower)"),
]


def _print(results: dict[str, dict[str, Any]]) -> None:
    base = results["flower_hf"]
    print(
        f"\n{'per-group label counts of all clients':<54}{'seconds':>9}{'clients/s':>12}"
        f"{'vs Flower':>11}{'RSS MB':>8}"
    )
    for name, title in _ROWS:
        r = results[name]
        if "error" in r:
            print(f"{title:<54} failed: {r['error']}")
            continue
        ratio = base.get("seconds", float("nan")) / r["seconds"]
        reached = r.get("reached", r["groups"])
        note = f"  (extrapolated from {reached:,})" if reached < r["groups"] else ""
        print(
            f"{title:<54}{r['seconds']:>9.3f}{r['groups'] / r['seconds']:>12,.0f}"
            f"{ratio:>10,.0f}x{r['rss_mb']:>8,.0f}{note}"
        )
    main_run = results["label_counts"]
    if "error" not in main_run and "error" not in base:
        ratio = base["seconds"] / main_run["seconds"]
        per_10k = main_run["seconds"] * 10_000 / main_run["groups"]
        print(
            f"\ntarget >= {TARGET_RATIO}x the Flower way: {ratio:,.0f}x "
            f"({'met' if ratio >= TARGET_RATIO else 'MISSED'}); target <= {TARGET_SECONDS} s "
            f"per 10k groups: {per_10k:.4f} s ({'met' if per_10k <= TARGET_SECONDS else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
