"""Concurrent readers while the dataset is rebuilt: each sees one version whole, or is told.

Eight reader processes open the dataset again and again and read it (every group streamed,
groups fetched by id, both on the same opened object; one reader through the Arrow cache)
while a writer process rebuilds it with ``mode="overwrite"`` several times, each time with
other content (other groups, other rows, a ``version`` column). Every read must match
exactly one version's content (its groups, each group's rows), never a mix; the only error
allowed is the ``DatasetReplacedError`` ("the dataset at ... was replaced since it was
opened; open it again"). Half of the rebuilds use the two-rename overwrite (systems without
an atomic directory swap), whose window without a dataset readers wait through.

Single-process tests pin the cases down: a reader that opened every file before a rebuild
keeps reading the old version whole (Linux keeps unlinked files readable); one that had not
is refused; a reader of the Arrow cache keeps reading its cached version.

``GROUPARROW_LONG=1`` rebuilds 20 times instead of 6. ``GROUPARROW_RELIABILITY_STATS=FILE``
appends the readers' outcomes (reads of one version whole, "replaced" errors) to FILE.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import grouparrow as ga
from grouparrow import _commit

LONG = os.environ.get("GROUPARROW_LONG") == "1"
REBUILDS = 20 if LONG else 6
READERS = 8
NUM_SHARDS = 3
REPLACED = "was replaced since it was opened"
HERE = Path(__file__).resolve().parent


def version_table(version: int) -> pa.Table:
    """Version ``version``'s rows: other groups and rows for every version."""
    rng = np.random.default_rng(version)
    rows = 600 + 40 * version
    keys = rng.integers(0, 20 + 3 * version, rows)
    return pa.table(
        {
            "k": pa.array([f"g{version % 2}-{k}" for k in keys]),
            "i": pa.array(np.arange(rows, dtype=np.int64)),
            "version": pa.array(np.full(rows, version, dtype=np.int64)),
            "x": pa.array(rng.random(rows)),
        }
    )


def build_version(path: Path | str, version: int) -> ga.GroupedDataset:
    return ga.build(
        version_table(version),
        key="k",
        output=path,
        mode="overwrite",
        num_shards=NUM_SHARDS,
        row_group_bytes=4096,
    )


def digest(table: pa.Table) -> str:
    return hashlib.sha256(repr(table.to_pydict()).encode("utf-8")).hexdigest()


def contents(ds: ga.GroupedDataset) -> dict[str, str]:
    """Every group's digest (read by streaming)."""
    return {str(g.id): digest(g.to_arrow()) for g in ds.iter_groups()}


# -- the processes ----------------------------------------------------------------------------


def judge(
    expected: dict[str, dict[str, str]],
    ids: list[str],
    fetched: list[tuple[str, pa.Table]],
    streamed: list[tuple[str, pa.Table]] | None = None,
) -> str:
    """ "ok <version>" when the ids (the index's) and the groups read (``fetched`` by id, and
    every group ``streamed``) are all of one version and equal to it; else what is mixed."""
    groups = fetched + (streamed or [])
    versions = {v for _, table in groups for v in table.column("version").to_pylist()}
    if len(versions) != 1:
        return f"MIX: versions {sorted(versions)} in one read"
    version = str(versions.pop())
    want = expected[version]
    if sorted(ids) != sorted(want):
        return f"MIX: the index lists other groups than version {version}'s"
    if streamed is not None and sorted(gid for gid, _ in streamed) != sorted(want):
        return f"MIX: the stream gave other groups than version {version}'s"
    for gid, table in groups:
        if want.get(gid) != digest(table):
            return f"MIX: group {gid!r} differs from version {version}'s"
    return f"ok {version}"


def reader_main(config_json: str) -> None:
    """A reader process: read until the writer is done, then once more; write outcomes."""
    config = json.loads(config_json)
    expected = json.loads(Path(config["expected"]).read_text())
    rng = np.random.default_rng(config["seed"])
    Path(config["ready"]).touch()
    outcomes: list[str] = []
    n = 0
    while True:
        done = Path(config["stop"]).exists()
        n += 1
        try:
            ds = ga.open(config["path"], cache_dir=config["cache"])
            ids = [str(i) for i in ds.group_ids()]
            picked = [ids[int(j)] for j in rng.choice(len(ids), size=min(8, len(ids)))]
            fetched = [(gid, ds[gid].to_arrow()) for gid in picked]
            outcomes.append(judge(expected, ids, fetched))
            streamed = [(str(g.id), g.to_arrow()) for g in ds.iter_groups(shuffle=True, seed=n)]
            outcomes.append(judge(expected, ids, fetched, streamed))
        except ga.FormatError as exc:
            outcomes.append("replaced" if REPLACED in str(exc) else f"ERROR {exc!r}")
        except Exception as exc:
            outcomes.append(f"ERROR {type(exc).__name__}: {exc!r}")
        if done:
            break
    Path(config["out"]).write_text(json.dumps(outcomes))


def writer_main(config_json: str) -> None:
    """The writer process: once every reader is up, rebuild the dataset version by version
    (every other one with the two-rename overwrite), then say it is done."""
    config = json.loads(config_json)
    deadline = time.monotonic() + 300
    while not all(Path(r).exists() for r in config["ready"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for n, version in enumerate(config["versions"]):
        _commit.EXCHANGE = n % 2 == 0
        build_version(config["path"], version)
    Path(config["stop"]).touch()


def _spawn(function: str, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    code = f"import sys, test_concurrency as t; t.{function}(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", code, json.dumps(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


# -- the tests --------------------------------------------------------------------------------


def test_readers_see_one_version_whole_while_it_is_rebuilt(tmp_path: Path) -> None:
    versions = list(range(REBUILDS + 1))
    expected = {}
    for version in versions:
        ds = build_version(tmp_path / f"ref-{version}", version)
        expected[str(version)] = contents(ds)
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    path = tmp_path / "ds"
    build_version(path, versions[0])
    readers = []
    for r in range(READERS):
        config = {
            "path": str(path),
            "expected": str(tmp_path / "expected.json"),
            "seed": r,
            "cache": str(tmp_path / "cache") if r == 0 else None,
            "ready": str(tmp_path / f"ready-{r}"),
            "stop": str(tmp_path / "stop"),
            "out": str(tmp_path / f"reader-{r}.json"),
        }
        readers.append(_spawn("reader_main", config))
    writer = _spawn(
        "writer_main",
        {
            "path": str(path),
            "versions": versions[1:],
            "ready": [str(tmp_path / f"ready-{r}") for r in range(READERS)],
            "stop": str(tmp_path / "stop"),
        },
    )
    try:
        out, _ = writer.communicate(timeout=600)
        assert writer.returncode == 0, out.decode()
        for reader in readers:
            out, _ = reader.communicate(timeout=600)
            assert reader.returncode == 0, out.decode()
    finally:
        for process in (writer, *readers):
            if process.poll() is None:
                process.kill()
                process.wait()
    results = [json.loads((tmp_path / f"reader-{r}.json").read_text()) for r in range(READERS)]
    bad = [o for result in results for o in result if not (o.startswith("ok ") or o == "replaced")]
    assert not bad, bad
    if stats := os.environ.get("GROUPARROW_RELIABILITY_STATS"):
        outcomes = [o.split()[0] for result in results for o in result]
        counts = {"readers": READERS, "rebuilds": REBUILDS}
        counts.update({o: outcomes.count(o) for o in sorted(set(outcomes))})
        counts["versions_read"] = len({o for result in results for o in result if o != "replaced"})
        with open(stats, "a", encoding="utf-8") as f:
            f.write(json.dumps({"concurrency": counts}) + "\n")
    # Every reader read the last version whole once the writer was done.
    assert all(result[-2:] == [f"ok {versions[-1]}"] * 2 for result in results), results
    assert ga.verify(path).ok
    assert contents(ga.open(path)) == expected[str(versions[-1])]


def test_a_reader_that_opened_every_file_keeps_reading_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    old = contents(build_version(path, 1))
    ds = ga.open(path)
    assert contents(ds) == old  # every shard and the index opened
    build_version(path, 2)
    assert contents(ds) == old
    assert contents(ga.open(path)) == contents(build_version(tmp_path / "ref", 2))


def test_a_reader_that_had_not_opened_a_shard_is_told(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    build_version(path, 1)
    ds = ga.open(path)
    first = ds.manifest.shards[0].num_groups
    gid = ds.group_ids()[0]  # in shard 0
    group = ds[gid].to_arrow()
    assert first > 0
    build_version(path, 2)
    assert ds[gid].to_arrow() == group  # shard 0 is open: the old rows, unmixed
    with pytest.raises(ga.FormatError, match=REPLACED) as info:
        list(ds.iter_groups())
    assert str(path) in str(info.value)
    assert isinstance(info.value, ga.GroupArrowError)
    # Opened again, it reads the new version.
    assert contents(ga.open(path)) == contents(build_version(tmp_path / "ref", 2))


def test_a_reader_that_had_not_read_the_index_is_told(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    build_version(path, 1)
    ds = ga.open(path)
    build_version(path, 2)
    with pytest.raises(ga.FormatError, match=REPLACED):
        ds.group_ids()
    with pytest.raises(ga.FormatError, match=REPLACED):
        ds.sql("SELECT count(*) FROM groups").fetchall()


def test_a_cache_reader_keeps_its_cached_version(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    old = contents(build_version(path, 1))
    cached = ga.open(path).cache(tmp_path / "cache")
    assert contents(cached) == old
    build_version(path, 2)
    assert contents(cached) == old
    new = ga.open(path, cache_dir=tmp_path / "cache")
    assert contents(new) == contents(build_version(tmp_path / "ref", 2))


def test_open_waits_through_a_two_rename_overwrite(tmp_path: Path) -> None:
    """Between the two renames of an overwrite without an atomic swap there is no dataset
    at the path; a reader opening it then waits for the new one (the build holds its
    parent directory's lock meanwhile) instead of failing or undoing the overwrite."""
    path = tmp_path / "ds"
    build_version(path, 1)
    new = tmp_path / ".ds.grouparrow-tmp-0123456789ab"
    build_version(tmp_path / "staged", 2)
    (tmp_path / "staged").rename(new)
    old = tmp_path / ".ds.grouparrow-old-0123456789ab"
    between = threading.Event()

    def overwrite() -> None:
        with _commit.parent_lock(tmp_path):
            path.rename(old)
            between.set()
            time.sleep(0.05)
            new.rename(path)

    thread = threading.Thread(target=overwrite)
    thread.start()
    try:
        between.wait()
        ds = ga.open(path)
    finally:
        thread.join()
    shutil.rmtree(old)
    assert contents(ds) == contents(build_version(tmp_path / "ref", 2))


def test_open_undoes_an_overwrite_killed_between_its_renames(tmp_path: Path) -> None:
    """The old dataset renamed aside, the new one still staged, no build running: the
    reader puts the old one back (as builds and ``grouparrow gc`` do) and reads it."""
    path = tmp_path / "ds"
    old_contents = contents(build_version(path, 1))
    build_version(tmp_path / "staged", 2)
    (tmp_path / "staged").rename(tmp_path / ".ds.grouparrow-tmp-0123456789ab")
    path.rename(tmp_path / ".ds.grouparrow-old-0123456789ab")
    assert contents(ga.open(path)) == old_contents
    assert ga.verify(path).ok
