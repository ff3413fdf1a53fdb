"""Crash safety of the Ray engine's driver: ``ga.build(..., engine="ray")`` killed with SIGKILL
in the driver (the process that called it) after some map tasks finished, after all of
them, after some reduce tasks finished, after the index was written, and inside the commit;
on local disk and on an S3 server (moto's), with and without a previous output.

Each driver is a subprocess (``sys.executable -c ...``, in a session of its own) that starts
a local Ray instance (2 CPUs) and builds a 6,000-row Parquet source (row groups of 500, cut
into about six map tasks) into 3 shards; its ``$GROUPARROW_FAULTS`` names one driver point
(``"ray:..."``, see :mod:`grouparrow.distributed.ray_engine`) with the action ``"kill"``.
Ray's tasks run on while the driver dies: every check waits until the Ray processes of
the killed driver's session are gone, except Ray's two agents (below). Then:

- the driver died of SIGKILL at its point;
- with a previous output, the output is byte for byte what it was (local: every file; S3:
  the manifest), opens with its rows and verifies; with none, ``ga.open`` raises
  ``FileNotFoundError`` (local) or ``FormatError`` ("has no grouparrow.json": S3, where the
  killed build's prefix is): nothing partial is visible; after the commit point the output
  is the new dataset whole;
- ``ga.gc`` (a dry run first, which changes nothing) deletes every leftover: the staging
  directory next to a local output (with the tasks' ``_map`` files in it until the index
  is written), or, on S3, the build's unlisted ``build-*`` prefix (with its ``_map``
  files; ``grace=0``) and the driver's local scratch directory (``grouparrow-build-*``
  under ``temp_directory``, which gc deletes at once: its owner lock is free); then none
  is left;
- the next build to the same output (Ray, in this process) succeeds, and its shards are
  the local engine's reference bytes.

Ray processes after a driver's SIGKILL: the GCS server, the raylet and Ray's log monitor
die with the driver (Ray starts them with ``PR_SET_PDEATHSIG``), the workers within a
second or two (a task in hand may run on that long). Ray's two agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) see the raylet die at once, but before
exiting try to report it to the GCS, which is dead too, for Ray's fixed 60 s timeout
(``ray/_private/process_watcher.py``, Ray 2.60): they linger about a minute, then exit.
The last test waits for the first killed driver's agents to exit by themselves, and ends
the other drivers' agents (by pid, SIGKILL) to keep the run short.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import leftovers, make_table

import grouparrow as ga
from grouparrow import _commit
from grouparrow.distributed import fragments

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
NUM_SHARDS = 3
FRAGMENT_BYTES = 32 * 1024  # the 6,000-row source: six map tasks
#: Ray's agents, which outlive a killed driver by about a minute (see the module docstring).
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

SCRIPT = f"""
import json, sys
import ray
import grouparrow as ga
from grouparrow.distributed import fragments
fragments.FRAGMENT_BYTES = {FRAGMENT_BYTES}
source, out, mode, options, temp = sys.argv[1:6]
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
ga.build(source, key="k", output=out, num_shards={NUM_SHARDS}, mode=mode, engine="ray",
         storage_options=json.loads(options) or None, temp_directory=temp or None)
print("finished", flush=True)
"""

#: Local kills: (driver point, previous output, mode). The map and reduce counts are of
#: tasks finished (others are running); "commit:published" is past the commit point.
LOCAL_KILLS = [
    ("ray:map:1", False, "error"),
    ("ray:maps-done", True, "overwrite"),
    ("ray:reduce:1", True, "overwrite"),
    ("ray:index-written", False, "overwrite"),
    ("commit:manifest-written", True, "overwrite"),
    ("commit:published", True, "overwrite"),
]
#: Kills with the output on S3.
S3_KILLS = [
    ("ray:map:1", False, "error"),
    ("ray:reduces-done", True, "overwrite"),
]
COMMITTED = {"commit:published"}


# -- data -----------------------------------------------------------------------------------
@dataclass
class Data:
    old_src: str
    new_src: str
    old: Path  # the previous output (local engine), copied for each kill
    old_files: dict[str, str]
    new_shards: list[str]  # the SHA-256 of the reference build's shards (local engine)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    base = tmp_path_factory.mktemp("sources")
    old_src, new_src = base / "old.parquet", base / "new.parquet"
    pq.write_table(make_table(4000, num_keys=100, seed=1), old_src, row_group_size=500)
    pq.write_table(make_table(6000, num_keys=120, seed=2), new_src, row_group_size=500)
    old = ga.build(str(old_src), key="k", output=base / "old", num_shards=NUM_SHARDS)
    new = ga.build(str(new_src), key="k", output=base / "new", num_shards=NUM_SHARDS)
    return Data(
        old_src=str(old_src),
        new_src=str(new_src),
        old=old.path,
        old_files=files_of(old.path),
        new_shards=[s.sha256 for s in new.manifest.shards],
    )


def files_of(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` and its SHA-256."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def shard_hashes(directory: Path) -> list[str]:
    """The SHA-256 of each shard file the manifest at ``directory`` lists, from the bytes."""
    manifest = json.loads((directory / "grouparrow.json").read_text())
    return [
        hashlib.sha256((directory / s["file"]).read_bytes()).hexdigest() for s in manifest["shards"]
    ]


# -- Ray here, for the builds after the kills ---------------------------------------------------
@pytest.fixture(scope="module")
def ray_here() -> Iterator[None]:
    """A local Ray instance in this process (2 CPUs) for the next build after each kill."""
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(autouse=True)
def _small_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds in this process are cut as the drivers' are, and are never killed."""
    monkeypatch.setattr(fragments, "FRAGMENT_BYTES", FRAGMENT_BYTES)
    monkeypatch.delenv("GROUPARROW_FAULTS", raising=False)


# -- the killed drivers and their processes ----------------------------------------------------
@dataclass
class Kill:
    """One driver killed at ``point``: what it was told, and how it ended."""

    out: Path  # the output (local), or this kill's working folder (S3)
    uri: str
    point: str
    previous: bool
    mode: str
    temp: str = ""  # temp_directory (S3 builds)
    options: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    killed_at: float = 0.0  # time.monotonic() when it died
    returncode: int | None = None
    stderr: str = ""
    agents: list[int] = field(default_factory=list)  # its Ray agents still running then


#: Every driver killed in this module, for the last test.
KILLED: list[Kill] = []


def run_driver(kill: Kill, source: str) -> Kill:
    """Run the driver in a session of its own, to its death; then wait until its Ray
    processes are gone but for the agents (recorded in ``kill.agents``)."""
    spec = kill.out.parent / f"faults-{kill.out.name}.json"
    spec.write_text(json.dumps([{"point": kill.point, "action": "kill"}]))
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(GROUPARROW_FAULTS=str(spec), PYTHONPATH=path)
    args = [source, kill.uri, kill.mode, json.dumps(kill.options), kill.temp]
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its session id is its pid, and that of every Ray process
    )
    kill.pid = process.pid
    KILLED.append(kill)
    _, kill.stderr = process.communicate(timeout=120)
    kill.killed_at, kill.returncode = time.monotonic(), process.returncode
    kill.agents = settle(kill.pid)
    return kill


def rebuild(data: Data, output: Any, mode: str, **options: Any) -> ga.GroupedDataset:
    """The build after a kill: the new source, with Ray, where the killed one wrote."""
    return ga.build(
        data.new_src,
        key="k",
        output=output,
        num_shards=NUM_SHARDS,
        mode=mode,
        engine="ray",
        **options,
    )


def session_processes(sid: int) -> dict[int, str]:
    """The live processes (zombies excluded) of the session ``sid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, UnicodeDecodeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] not in "ZX":
            found[int(entry.name)] = command
    return found


def settle(sid: int, timeout: float = 30.0) -> list[int]:
    """Wait until the killed driver's session holds nothing but Ray's agents (the GCS, the
    raylet and the workers gone); the agents' pids."""
    deadline = time.monotonic() + timeout
    while True:
        left = session_processes(sid)
        others = {p: c for p, c in left.items() if not c.startswith(AGENTS)}
        if not others:
            return sorted(left)
        assert time.monotonic() < deadline, f"Ray processes outlive their driver: {others}"
        time.sleep(0.1)


# -- checks ---------------------------------------------------------------------------------
def check_killed(kill: Kill, before: dict[str, str] | None, data: Data) -> str:
    """The local output after the kill: ``"old"`` (unchanged), ``"new"`` (whole) or
    ``"none"``."""
    assert kill.returncode == -signal.SIGKILL, (kill.point, kill.returncode, kill.stderr[-3000:])
    if not (kill.out / "grouparrow.json").is_file():
        assert not kill.out.exists(), f"{kill.point}: {kill.out} exists without a manifest"
        assert before is None and kill.point not in COMMITTED, kill.point
        with pytest.raises(FileNotFoundError):
            ga.open(kill.out)
        return "none"
    assert ga.verify(kill.out).ok, kill.point
    if shard_hashes(kill.out) == data.new_shards:
        assert kill.point in COMMITTED, f"{kill.point}: committed too early"
        return "new"
    assert before is not None and kill.point not in COMMITTED, kill.point
    assert files_of(kill.out) == before, f"{kill.point}: the previous output changed"
    assert ga.open(kill.out).num_rows == 4000
    return "old"


def test_kill_the_driver(data: Data, tmp_path: Path, ray_here: None) -> None:
    """Local outputs: the driver killed at each of ``LOCAL_KILLS``, two at a time."""
    kills, befores = [], {}
    for n, (point, previous, mode) in enumerate(LOCAL_KILLS):
        out = tmp_path / f"k{n}"
        befores[point] = None
        if previous:
            ga.build(data.old_src, key="k", output=out, num_shards=NUM_SHARDS)
            befores[point] = files_of(out)
        kills.append(Kill(out=out, uri=str(out), point=point, previous=previous, mode=mode))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: run_driver(k, data.new_src), kills))
    outcomes = {}
    for kill in kills:
        before = befores[kill.point]
        outcomes[kill.point] = check_killed(kill, before, data)
        name, parent = kill.out.name, kill.out.parent
        found = leftovers(parent, name)
        assert found, f"{kill.point}: a killed build leaves its staging directory"
        if kill.point in ("ray:map:1", "ray:maps-done", "ray:reduce:1"):  # the map files too
            (staging,) = found
            assert any(p.is_file() for p in (parent / staging / "_map").rglob("*"))
        state = files_of(kill.out) if kill.out.exists() else None
        assert sorted(Path(p).name for p in ga.gc(kill.out, dry_run=True)) == found
        assert leftovers(parent, name) == found  # a dry run changes nothing
        assert sorted(Path(p).name for p in ga.gc(kill.out)) == found
        assert leftovers(parent, name) == []
        assert (files_of(kill.out) if kill.out.exists() else None) == state
        ds = rebuild(data, kill.out, kill.mode)
        assert ds.manifest.build["engine"] == "ray"
        assert shard_hashes(kill.out) == data.new_shards and ga.verify(kill.out).ok
        assert leftovers(parent, name) == []
    assert outcomes == {
        p: "new" if p in COMMITTED else "old" if previous else "none"
        for p, previous, _ in LOCAL_KILLS
    }


def test_kill_the_driver_of_an_s3_build(
    data: Data, tmp_path: Path, s3: tuple[str, dict[str, Any]], ray_here: None
) -> None:
    """Outputs on S3: the old manifest (or none) stands; gc deletes the killed build's
    prefix (``grace=0``: an object store cannot tell a dead build) and, at once, its local
    scratch directory (its lock is free); the next build succeeds."""
    import fsspec

    bucket, options = s3
    fs = fsspec.filesystem("s3", **options)
    kills, befores = [], {}
    for n, (point, previous, mode) in enumerate(S3_KILLS):
        uri = f"{bucket}/k{n}"
        befores[point] = None
        if previous:
            ga.build(
                data.old_src, key="k", output=uri, num_shards=NUM_SHARDS, storage_options=options
            )
            befores[point] = fs.cat_file(f"{uri}/grouparrow.json")
        temp = tmp_path / f"scratch-{n}"
        temp.mkdir()
        kills.append(
            Kill(
                out=tmp_path / f"k{n}",
                uri=uri,
                point=point,
                previous=previous,
                mode=mode,
                temp=str(temp),
                options=options,
            )
        )
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: run_driver(k, data.new_src), kills))
    for kill in kills:
        assert kill.returncode == -signal.SIGKILL, (kill.point, kill.stderr[-3000:])
        fs.invalidate_cache()
        before = befores[kill.point]
        if before is None:
            with pytest.raises(ga.FormatError, match=r"has no grouparrow\.json"):
                ga.open(kill.uri, storage_options=options)
            kept_files: list[str] = []
        else:
            assert fs.cat_file(f"{kill.uri}/grouparrow.json") == before
            assert ga.verify(kill.uri, storage_options=options).ok
            old = ga.open(kill.uri, storage_options=options)
            assert old.num_rows == 4000
            kept_files = ["grouparrow.json", old.manifest.index]
            kept_files += [s.file for s in old.manifest.shards]
        used = {f.split("/")[0] for f in kept_files if "/" in f}
        names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(kill.uri))
        (prefix,) = [n for n in names if n.startswith("build-") and n not in used]
        assert fs.find(f"{kill.uri}/{prefix}/_map"), "the map tasks' files are left"
        (scratch,) = Path(kill.temp).iterdir()
        owner = json.loads((scratch / _commit.OWNER).read_text())
        assert (owner["pid"], owner["output"]) == (kill.pid, kill.uri)
        # Default grace: the prefix is too young to tell, the scratch is known dead.
        kept = {"storage_options": options, "temp_directory": kill.temp}
        assert ga.gc(kill.uri, dry_run=True, **kept) == [str(scratch)]
        assert scratch.exists()
        assert ga.gc(kill.uri, **kept) == [str(scratch)]
        assert list(Path(kill.temp).iterdir()) == []
        assert ga.gc(kill.uri, grace=0, **kept) == [f"{kill.uri}/{prefix}"]
        fs.invalidate_cache()
        root = kill.uri.split("://", 1)[1]
        left = sorted(p.split(f"{root}/", 1)[1] for p in fs.find(kill.uri))
        assert left == sorted(kept_files)  # the previous dataset's files, or nothing
        if before is not None:
            assert fs.cat_file(f"{kill.uri}/grouparrow.json") == before
        ds = rebuild(data, kill.uri, kill.mode, storage_options=options, temp_directory=kill.temp)
        assert [s.sha256 for s in ds.manifest.shards] == data.new_shards
        assert ga.verify(kill.uri, storage_options=options).ok
        assert list(Path(kill.temp).iterdir()) == []


def test_the_driver_passes_its_points(
    data: Data, tmp_path: Path, ray_here: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's points, in order, traced in this process (the tasks' are the workers')."""
    spec = tmp_path / "faults.json"
    spec.write_text(json.dumps([{"point": "*", "action": "trace"}]))
    monkeypatch.setenv("GROUPARROW_FAULTS", str(spec))
    out = tmp_path / "traced"
    ds = ga.build(data.new_src, key="k", output=out, num_shards=NUM_SHARDS, engine="ray")
    maps = ds.manifest.build["map_tasks"]
    assert maps >= 4
    points = [line.split()[0] for line in Path(f"{spec}.trace").read_text().splitlines()]
    assert points == [
        "build:staged",
        "ray:started",
        *(f"ray:map:{n}" for n in range(1, maps + 1)),
        "ray:maps-done",
        *(f"ray:reduce:{n}" for n in range(1, NUM_SHARDS + 1)),
        "ray:reduces-done",
        "ray:index-written",
        "ray:done",
        "commit:manifest-before",
        "commit:manifest-written",
        "commit:published",
        "commit:done",
        "build:cleaned",
    ]
    assert all(p in points for p, _, _ in [*LOCAL_KILLS, *S3_KILLS])


def test_no_ray_process_outlives_a_killed_driver() -> None:
    """Every killed driver's GCS, raylet and workers were gone within seconds (checked after
    each kill); its two agents exit by themselves about a minute after: this waits for the
    first driver's, and ends the others' (SIGKILL, by pid) to keep the run short."""
    if not KILLED:
        pytest.skip("no driver was killed in this run")
    for kill in KILLED:  # nothing new started since: the agents, or nothing
        left = session_processes(kill.pid)
        assert set(left) <= set(kill.agents), left
        assert all(c.startswith(AGENTS) for c in left.values()), left
    first, *rest = sorted(KILLED, key=lambda k: k.killed_at)
    deadline = first.killed_at + 90
    while session_processes(first.pid):
        assert time.monotonic() < deadline, session_processes(first.pid)
        time.sleep(0.5)
    for kill in rest:
        end_agents(kill)
        assert session_processes(kill.pid) == {}


def end_agents(kill: Kill) -> None:
    """SIGKILL the killed driver's agents still running (only those of its session)."""
    for pid in kill.agents:
        if pid in session_processes(kill.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while session_processes(kill.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def _end_lingering_agents() -> Iterator[None]:
    """Whatever the tests did, no agent of a killed driver is left behind by this module."""
    yield
    for kill in KILLED:
        end_agents(kill)
    KILLED.clear()
