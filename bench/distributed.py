"""The Ray engine against the local engine, on the same synthetic web corpus and machine.

Each build runs in a fresh process (``python3 -m bench.distributed --worker``): the local
engine (DuckDB, 2 threads), then ``engine="ray"`` on a local Ray instance of 2 CPUs (its
start is timed apart from the build). Peak memory is the largest RSS of the whole process
tree (the driver, and Ray's raylet, GCS and workers), sampled every 20 ms. The two outputs
are compared shard by shard (SHA-256): they must be the same bytes.

Run: ``python3 -m bench.distributed`` (``--rows 2000000 --shards 8 --repeat 1``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._data import DATA_DIR, corpus
from bench._worker import HOST_SQL, REPO

OUT = DATA_DIR / "out" / "distributed"
MB = 1e6


class TreeRss:
    """The peak summed RSS of this process and all its descendants (read from ``/proc``)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.sample())

    def sample(self) -> int:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry)
            children.setdefault(int(fields[1]), []).append(pid)
            rss[pid] = int(fields[21]) * self._page
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += rss.get(pid, 0)
            todo.extend(children.get(pid, []))
        return total


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One build in this process: its seconds, the tree's peak RSS, and the manifest."""
    import grouparrow as ga

    output = Path(job["output"])
    shutil.rmtree(output, ignore_errors=True)
    result: dict[str, Any] = {}
    with TreeRss() as rss:
        if job["engine"] == "ray":
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            result["ray_init_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        ds = ga.build(
            job["source"],
            key=ga.sql(HOST_SQL),
            output=output,
            num_shards=job["shards"],
            engine=job["engine"],
        )
        result["seconds"] = time.perf_counter() - started
    result["peak_rss"] = rss.peak
    result["build"] = ds.manifest.build
    result["sha256"] = [s.sha256 for s in ds.manifest.shards]
    result["groups"] = ds.num_groups
    return result


def launch(job: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        os.sync()
        done = subprocess.run(
            [sys.executable, "-m", "bench.distributed", "--worker", str(job_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{job['engine']} build failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="corpus rows")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="builds per engine (median)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return
    data = corpus(args.rows)
    print(
        f"corpus: {data.num_rows:,} rows, {data.file_bytes / MB:,.0f} MB Parquet, "
        f"{data.arrow_bytes / MB:,.0f} MB Arrow; key: URL host; {args.shards} shards; "
        f"{os.cpu_count()} cores"
    )
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    for _ in range(args.repeat):
        for engine in runs:
            job = {
                "engine": engine,
                "source": str(data.path),
                "output": str(OUT / engine),
                "shards": args.shards,
            }
            runs[engine].append(launch(job))
    local, ray = runs["local"][-1], runs["ray"][-1]
    assert local["sha256"] == ray["sha256"], "the engines wrote different shards"
    seconds = {e: statistics.median(r["seconds"] for r in rs) for e, rs in runs.items()}
    print()
    print("| engine | build s | rows/s | peak RSS (process tree) |")
    print("|---|---|---|---|")
    for engine, rs in runs.items():
        rss = max(r["peak_rss"] for r in rs)
        print(
            f"| {engine} | {seconds[engine]:.1f} | {data.num_rows / seconds[engine]:,.0f} | "
            f"{rss / MB:,.0f} MB |"
        )
    build = ray["build"]
    print()
    print(
        f"Ray / local: {seconds['ray'] / seconds['local']:.2f}x the time "
        f"(+ {statistics.median(r['ray_init_seconds'] for r in runs['ray']):.1f} s to start Ray)"
    )
    print(
        f"Ray work: {build['map_tasks']} map tasks, {build['reduce_tasks']} reduce tasks, "
        f"{build['bytes_shuffled'] / MB:,.0f} MB shuffled (map output, zstd Parquet) = "
        f"{build['bytes_shuffled'] / data.file_bytes:.2f}x the input file"
    )
    print(
        f"same shards, byte for byte: {local['sha256'] == ray['sha256']} ({ray['groups']:,} groups)"
    )


if __name__ == "__main__":
    main()
