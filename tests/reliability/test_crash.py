"""Crash safety: builds killed with SIGKILL at every step of the map, reduce and commit phases,
and at points in time, with and without a previous output, with ``mode="error"`` and
``mode="overwrite"``, on local disk and with the object-store commit.

Each kill runs a build of a 4,000-row Parquet source into 3 shards in a subprocess
(``sys.executable -c ...``) whose ``$GROUPARROW_FAULTS`` names one point with the action
``"kill"`` (the process sends itself SIGKILL there: no ``finally``, no ``atexit``). The points
are not listed by hand: a first build runs with ``{"point": "*", "action": "trace"}`` and
records every point the engine passes (``grouparrow/_faults.py``), and the test kills a build
at each one of them. After every kill:

- the process died of SIGKILL;
- before the commit point, the previous output (if any) is byte for byte what it was (every
  file of the directory; on object stores the manifest and every file it lists), opens and
  verifies; with no previous output, ``ga.open`` raises ``FileNotFoundError`` or
  ``FormatError`` (nothing partial is visible); after the commit point, the output is the new
  dataset whole (its shards are the reference build's bytes) and verifies;
- the leftovers (``.NAME.grouparrow-tmp-*``, ``.NAME.grouparrow-old-*``, unlisted ``build-*``
  prefixes) are reported and deleted by ``ga.gc`` (or ``grouparrow gc``), or deleted by the
  next build to the same output, alternately; then none is left.

Time kills: builds of a 20,000-row source killed after a delay aimed at the middle of a
phase (the map step's COPY, a shard's sort or write, the commit's renames...; the times are
measured by a first, traced build), checked as above: the old or the new dataset, whole.

Long run (more time kills, every scenario at every point): ``GROUPARROW_LONG=1``; the number
of time kills: ``GROUPARROW_TIME_KILLS=200``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import leftovers, make_table

import grouparrow as ga
from grouparrow import _commit, _faults
from grouparrow.cli import main
from grouparrow.gc import recover

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("GROUPARROW_LONG") == "1"
TIME_KILLS = int(os.environ.get("GROUPARROW_TIME_KILLS", "40" if LONG else "8"))
NUM_SHARDS = 3
LOCAL_OPTIONS = {"auto_mkdir": True}  # local:// URIs: the object-store commit on local disk

SCRIPT = """
import json, sys, time
import grouparrow as ga
from grouparrow import _commit
source, out, mode, exchange, options = sys.argv[1:6]
_commit.EXCHANGE = exchange == "1"
print(f"started {time.monotonic()}", flush=True)
ga.build(source, key="k", output=out, num_shards=3, mode=mode,
         storage_options=json.loads(options) or None, temp_directory=sys.argv[6] or None)
print("finished", flush=True)
"""

#: The points of a local build with 3 shards, in order (checked against the trace).
LOCAL_POINTS = [
    "build:staged",
    "map:start",
    "map:done",
    *(f"reduce:{i}:{step}" for i in range(NUM_SHARDS) for step in ("start", "writing", "done")),
    "index:done",
    "commit:manifest-before",
    "commit:manifest-written",
    "commit:published",
    "commit:done",
    "build:cleaned",
]
#: The commit's points: where ``mode`` and the swap matter.
COMMIT_POINTS = LOCAL_POINTS[LOCAL_POINTS.index("commit:manifest-before") :]
#: Points at or after which the new dataset is the output.
COMMITTED = {"commit:published", "commit:done", "build:cleaned", "remote:committed", "remote:done"}


# -- sources and reference datasets ----------------------------------------------------------
@dataclass
class Data:
    old_src: str
    new_src: str
    big_src: str
    old: Path  # the previous output, built once (copied for each kill)
    new: Path  # the reference build of new_src
    big: Path  # the reference build of big_src
    old_files: dict[str, str]  # the previous output's files and their SHA-256
    new_shards: list[str]  # the SHA-256 of new's shards


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    base = tmp_path_factory.mktemp("sources")
    paths = {}
    for name, rows, seed in (("old", 4000, 1), ("new", 4000, 2), ("big", 20_000, 3)):
        paths[name] = base / f"{name}.parquet"
        pq.write_table(make_table(rows, num_keys=150, seed=seed), paths[name], row_group_size=1000)
    refs = {}
    for name in ("old", "new", "big"):
        refs[name] = base / f"ref-{name}"
        ga.build(str(paths[name]), key="k", output=refs[name], num_shards=NUM_SHARDS)
    return Data(
        old_src=str(paths["old"]),
        new_src=str(paths["new"]),
        big_src=str(paths["big"]),
        old=refs["old"],
        new=refs["new"],
        big=refs["big"],
        old_files=files_of(refs["old"]),
        new_shards=shard_hashes(refs["new"]),
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` and its SHA-256."""
    return {
        str(p.relative_to(directory)): sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def listed_files(directory: Path) -> dict[str, str]:
    """The manifest and the files it lists, with their SHA-256."""
    manifest = json.loads((directory / "grouparrow.json").read_text())
    names = ["grouparrow.json", manifest["index"], *(s["file"] for s in manifest["shards"])]
    return {n: sha256(directory / n) for n in names}


def shard_hashes(directory: Path) -> list[str]:
    """The SHA-256 of each shard file the manifest lists, in order, computed from the bytes."""
    manifest = json.loads((directory / "grouparrow.json").read_text())
    return [sha256(directory / s["file"]) for s in manifest["shards"]]


# -- running builds ---------------------------------------------------------------------------
@dataclass
class Run:
    """One build in a subprocess: what it was told, and how it ended."""

    out: Path
    uri: str
    mode: str
    point: str | None = None
    delay: float | None = None
    previous: bool = False
    remote: bool = False
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def command(run: Run, source: str, exchange: bool, options: dict[str, Any] | None) -> list[str]:
    scratch = ""  # an object-store build stages in temp_directory: keep /tmp clean
    if run.remote:
        scratch = str(run.out.parent / f"scratch-{run.out.name}")
        os.makedirs(scratch, exist_ok=True)
    return [
        sys.executable,
        "-c",
        SCRIPT,
        source,
        run.uri,
        run.mode,
        "1" if exchange else "0",
        json.dumps(options or {}),
        scratch,
    ]


def spawn(
    run: Run,
    source: str,
    faults: list[Any],
    *,
    exchange: bool = True,
    options: dict[str, Any] | None = None,
) -> subprocess.Popen[str]:
    spec = run.out.parent / f"faults-{run.out.name}.json"
    spec.write_text(json.dumps(faults))
    env = {**os.environ, "GROUPARROW_FAULTS": str(spec)}
    return subprocess.Popen(
        command(run, source, exchange, options),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def execute(
    run: Run, source: str, *, exchange: bool = True, options: dict[str, Any] | None = None
) -> Run:
    """Run the build, killed at ``run.point`` or after ``run.delay`` seconds."""
    faults = [] if run.point is None else [{"point": run.point, "action": "kill"}]
    process = spawn(run, source, faults, exchange=exchange, options=options)
    if run.delay is not None:
        assert process.stdout is not None
        word, started = process.stdout.readline().split()
        assert word == "started"
        time.sleep(max(0.0, float(started) + run.delay - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    run.returncode, run.stdout, run.stderr = process.returncode, stdout, stderr
    return run


def execute_all(runs: list[Run], source: str, **kwargs: Any) -> list[Run]:
    """Run the builds, two at a time (each in its own directory)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda r: execute(r, source, **kwargs), runs))


def trace(tmp: Path, source: str, uri: str, mode: str, **kwargs: Any) -> list[str]:
    """The points a build passes, in order (it is not killed)."""
    return list(timed_trace(tmp, source, uri, mode, **kwargs))


def timed_trace(tmp: Path, source: str, uri: str, mode: str, **kwargs: Any) -> dict[str, float]:
    """The points a build passes, in order, each with its time (seconds since the build
    began)."""
    run = Run(out=tmp / "traced", uri=uri, mode=mode)
    spec = tmp / "faults-traced.json"
    process = spawn(run, source, [{"point": "*", "action": "trace"}], **kwargs)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    started = float(stdout.split()[1])
    lines = [line.split() for line in Path(f"{spec}.trace").read_text().splitlines()]
    Path(f"{spec}.trace").unlink()
    return {name: float(t) - started for name, t in lines}


# -- checks -----------------------------------------------------------------------------------
def previous_output(data: Data, out: Path, remote: bool) -> dict[str, str]:
    """Make the previous dataset at ``out``; the files to find unchanged after a kill."""
    if remote:
        ga.build(
            data.old_src,
            key="k",
            output=f"local://{out}",
            num_shards=NUM_SHARDS,
            storage_options=LOCAL_OPTIONS,
        )
        return listed_files(out)
    shutil.copytree(data.old, out)
    return dict(data.old_files)


def check_killed(run: Run, before: dict[str, str] | None, new: Path) -> str:
    """Check the output after the kill (``new``: the reference build of what it built);
    returns which dataset the output holds: ``"old"``, ``"new"`` or ``"none"``."""
    what = f"killed at {run.point or f'{run.delay:.3f} s'}"
    if run.delay is None:
        assert run.returncode == -signal.SIGKILL, (what, run.returncode, run.stderr[-2000:])
    else:  # a time kill may land after the build finished
        assert run.returncode in (-signal.SIGKILL, 0), (what, run.returncode, run.stderr[-2000:])
    options = LOCAL_OPTIONS if run.remote else None
    if not (run.out / "grouparrow.json").is_file():
        if run.out.exists() and not run.remote:
            raise AssertionError(f"{what}: {run.out} exists without a manifest")
        assert before is None, f"{what}: the previous output is gone"
        assert run.point is None or run.point not in COMMITTED, f"{what}: not committed"
        with pytest.raises((FileNotFoundError, ga.FormatError)):
            ga.open(run.uri, storage_options=options)
        return "none"
    report = ga.verify(run.uri, storage_options=options)
    assert report.ok, (what, report.problems)
    ds = ga.open(run.uri, storage_options=options)
    if shard_hashes(run.out) == shard_hashes(new):
        assert run.point is None or run.point in COMMITTED, f"{what}: committed too early"
        assert ds.num_rows == ga.open(new).num_rows
        return "new"
    assert before is not None, f"{what}: an output that is neither missing nor the new one"
    assert run.point is None or run.point not in COMMITTED, f"{what}: the old output after commit"
    now = listed_files(run.out) if run.remote else files_of(run.out)
    assert now == before, f"{what}: the previous output changed"
    assert ds.num_rows == 4000
    return "old"


def clean_up(run: Run, how: str, source: str, new: Path) -> None:
    """Remove the leftovers: by ``gc`` (the function, or the CLI) or by the next build; then
    check that none is left and the output is as it was (gc) or the new dataset (build)."""
    name, parent = run.out.name, run.out.parent
    if run.remote:
        # The build's local scratch (under its temp_directory), unless it got to remove it:
        # its owner lock is free, so gc deletes it at once.
        scratch = run.out.parent / f"scratch-{run.out.name}"
        dead = sorted(str(p) for p in scratch.iterdir())
        assert len(dead) == (0 if run.point == "remote:done" else 1), (run.point, dead)
        kept = {"storage_options": LOCAL_OPTIONS, "temp_directory": scratch}
        assert ga.gc(run.uri, **kept) == dead  # its build-* prefix: too young to tell
        assert list(scratch.iterdir()) == []
        unlisted = remote_leftovers(run.out)
        assert ga.gc(run.uri, storage_options=LOCAL_OPTIONS) == []  # too young to tell
        before = listed_files(run.out) if (run.out / "grouparrow.json").exists() else None
        removed = ga.gc(run.uri, grace=0, storage_options=LOCAL_OPTIONS)
        assert sorted(removed) == sorted(f"{run.uri}/{n}" for n in unlisted)
        assert remote_leftovers(run.out) == []
        if before is not None:
            assert listed_files(run.out) == before
        return
    found = leftovers(parent, name)
    if how == "build":
        ga.build(source, key="k", output=run.out, num_shards=NUM_SHARDS, mode="overwrite")
        assert shard_hashes(run.out) == shard_hashes(new)
        assert ga.verify(run.out).ok
    else:
        state = files_of(run.out) if run.out.exists() else None
        assert sorted(Path(p).name for p in ga.gc(run.out, dry_run=True)) == found
        assert leftovers(parent, name) == found  # a dry run changes nothing
        if how == "cli":
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                assert main(["gc", str(run.out)]) == 0
            for leftover in found:
                assert str(parent / leftover) in stdout.getvalue()
        else:
            assert sorted(Path(p).name for p in ga.gc(run.out)) == found
        assert (files_of(run.out) if run.out.exists() else None) == state
    assert leftovers(parent, name) == []


def remote_leftovers(out: Path) -> list[str]:
    """``build-*`` prefixes of a remote-layout output that its manifest does not list."""
    if not out.exists():
        return []
    used: set[str] = set()
    if (out / "grouparrow.json").exists():
        used = {f.split("/")[0] for f in listed_files(out)}
    return sorted(
        p.name for p in out.iterdir() if p.name.startswith("build-") and p.name not in used
    )


# -- the fault hook ---------------------------------------------------------------------------
def test_fault_actions(tmp_path: Path) -> None:
    """The hook's actions: kill (SIGKILL, once), exit (status 77, once; a plain name too),
    sleep, wait and trace (every time), globs."""
    spec = tmp_path / "f.json"
    script = (
        "import sys\nfrom grouparrow import _faults\n"
        "for name in sys.argv[1:]:\n    _faults.point(name)\n    print(name, flush=True)\n"
    )

    def run(faults: list[Any], *points: str) -> subprocess.CompletedProcess[str]:
        spec.write_text(json.dumps(faults))
        return subprocess.run(
            [sys.executable, "-c", script, *points],
            cwd=ROOT,
            env={**os.environ, "GROUPARROW_FAULTS": str(spec)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    killed = run([{"point": "reduce:*:start", "action": "kill"}], "a", "reduce:1:start", "b")
    assert (killed.returncode, killed.stdout.split()) == (-signal.SIGKILL, ["a"])
    again = run([{"point": "reduce:*:start", "action": "kill"}], "reduce:1:start", "reduce:2:start")
    assert (again.returncode, again.stdout.split()) == (-signal.SIGKILL, ["reduce:1:start"])
    exited = run(["map:1"], "map:0", "map:1", "x")
    assert (exited.returncode, exited.stdout.split()) == (_faults.EXIT_STATUS, ["map:0"])
    assert run(["map:1"], "map:1").returncode == 0  # once
    traced = run(
        [{"point": "*", "action": "trace"}, {"point": "s*", "action": "sleep", "seconds": 0.01}],
        "s1",
        "t",
        "s1",
    )
    assert traced.returncode == 0
    lines = [line.split() for line in Path(f"{spec}.trace").read_text().splitlines()]
    assert [name for name, _ in lines] == ["s1", "t", "s1"]
    assert float(lines[2][1]) - float(lines[0][1]) >= 0.01  # slept at "s1"
    (tmp_path / "go").touch()
    waited = run([{"point": "w", "action": "wait", "file": str(tmp_path / "go")}], "w", "x")
    assert (waited.returncode, waited.stdout.split()) == (0, ["w", "x"])
    timed_out = run(
        [{"point": "w", "action": "wait", "file": "/nonexistent", "seconds": 0.01}], "w"
    )
    assert (timed_out.returncode, timed_out.stdout.split()) == (0, ["w"])
    bad = run([{"point": "x", "action": "explode"}], "x")
    assert bad.returncode == 1 and "action 'explode' is not one of" in bad.stderr


def test_the_engine_passes_every_point(data: Data, tmp_path: Path) -> None:
    """The trace of a local build is the documented list of points; a two-rename overwrite
    adds ``commit:moved-aside``; an object-store commit has its own three."""
    out = tmp_path / "traced"
    assert trace(tmp_path, data.new_src, str(out), "error") == LOCAL_POINTS
    shutil.rmtree(out)
    shutil.copytree(data.old, out)
    two = trace(tmp_path, data.new_src, str(out), "overwrite", exchange=False)
    assert two == with_moved_aside(LOCAL_POINTS)
    remote = trace(
        tmp_path, data.new_src, f"local://{tmp_path}/remote", "error", options=LOCAL_OPTIONS
    )
    end = LOCAL_POINTS.index("index:done") + 1
    assert remote == [
        *LOCAL_POINTS[:end],
        "remote:uploaded",
        "remote:committed",
        "remote:done",
        "build:cleaned",
    ]


# -- kills at every point ---------------------------------------------------------------------
def with_moved_aside(points: list[str]) -> list[str]:
    """``points`` with the two-rename overwrite's point between its renames."""
    n = points.index("commit:published")
    return [*points[:n], "commit:moved-aside", *points[n:]]


#: Where ``mode`` or the swap make no difference (before the commit), one point stands for
#: all unless GROUPARROW_LONG=1.
SOME = LOCAL_POINTS if LONG else ["reduce:1:writing", *COMMIT_POINTS]
SCENARIOS = {
    # name: (previous output, mode, atomic swap, points)
    "fresh-error": (False, "error", True, LOCAL_POINTS),
    "fresh-overwrite": (False, "overwrite", True, SOME),
    "replace": (True, "overwrite", True, LOCAL_POINTS),
    "replace-two-renames": (True, "overwrite", False, with_moved_aside(SOME)),
}
CLEANERS = ("gc", "build", "cli")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kill_at_every_point(data: Data, tmp_path: Path, scenario: str) -> None:
    previous, mode, exchange, points = SCENARIOS[scenario]
    runs = []
    befores: dict[str, dict[str, str] | None] = {}
    for n, point in enumerate(points):
        out = tmp_path / f"k{n:02d}"
        befores[out.name] = previous_output(data, out, False) if previous else None
        runs.append(Run(out=out, uri=str(out), mode=mode, point=point, previous=previous))
    execute_all(runs, data.new_src, exchange=exchange)
    outcomes = {}
    for n, run in enumerate(runs):
        if run.point == "commit:moved-aside":
            # Killed between the renames: no output until recover() (which ga.open, every
            # build and gc run first; see the tests below) puts the old one back.
            assert not run.out.exists()
            restored = recover(run.out)
            assert restored is not None and ".k" in restored and "grouparrow-old-" in restored
        outcomes[run.point] = check_killed(run, befores[run.out.name], data.new)
        clean_up(run, CLEANERS[n % 3], data.new_src, data.new)
    expected = {p: ("new" if p in COMMITTED else "old" if previous else "none") for p in points}
    assert outcomes == expected


@pytest.mark.parametrize("previous", [True, False], ids=["replace", "fresh"])
def test_kill_the_object_store_commit(data: Data, tmp_path: Path, previous: bool) -> None:
    """The object-store commit (upload under a build prefix, manifest last), on local disk
    through a ``local://`` URI: killed after the index, after the upload, after the manifest
    and at the end."""
    points = ["index:done", "remote:uploaded", "remote:committed", "remote:done"]
    runs, befores = [], {}
    for n, point in enumerate(points):
        out = tmp_path / f"r{n}"
        befores[out.name] = previous_output(data, out, True) if previous else None
        runs.append(
            Run(
                out=out,
                uri=f"local://{out}",
                mode="overwrite",
                point=point,
                previous=previous,
                remote=True,
            )
        )
    execute_all(runs, data.new_src, options=LOCAL_OPTIONS)
    outcomes = {}
    for run in runs:
        outcomes[run.point] = check_killed(run, befores[run.out.name], data.new)
        clean_up(run, "gc", data.new_src, data.new)
    old_or_none = "old" if previous else "none"
    assert outcomes == {
        "index:done": old_or_none,
        "remote:uploaded": old_or_none,
        "remote:committed": "new",
        "remote:done": "new",
    }


def test_kill_the_s3_commit(data: Data, tmp_path: Path, s3: tuple[str, dict[str, Any]]) -> None:
    """On a real S3 server (moto's): killed after the upload the old dataset stands and the
    upload is an unlisted prefix; killed after the manifest the new one stands and the old
    prefix is; ``gc`` deletes either (``grace=0``)."""
    import fsspec

    bucket, options = s3
    fs = fsspec.filesystem("s3", **options)
    for n, (point, expected) in enumerate([("remote:uploaded", 4000), ("remote:committed", None)]):
        uri = f"{bucket}/k{n}"
        ga.build(data.old_src, key="k", output=uri, num_shards=NUM_SHARDS, storage_options=options)
        before = fs.cat_file(f"{uri}/grouparrow.json")
        run = execute(
            Run(out=tmp_path / f"s{n}", uri=uri, mode="overwrite", point=point, remote=True),
            data.new_src,
            options=options,
        )
        assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
        (scratch,) = (tmp_path / f"scratch-s{n}").iterdir()  # the build's local scratch
        assert json.loads((scratch / _commit.OWNER).read_text())["output"] == uri
        assert ga.gc(uri, storage_options=options, temp_directory=scratch.parent) == [str(scratch)]
        assert not scratch.exists()
        fs.invalidate_cache()
        assert ga.verify(uri, storage_options=options).ok
        ds = ga.open(uri, storage_options=options)
        if expected is not None:
            assert fs.cat_file(f"{uri}/grouparrow.json") == before and ds.num_rows == expected
        else:
            assert [s.sha256 for s in ds.manifest.shards] == data.new_shards
        prefixes = sorted(p.rsplit("/", 1)[1] for p in fs.ls(uri) if "/build-" in p)
        used = ds.manifest.index.split("/")[0]
        assert len(prefixes) == 2 and used in prefixes
        assert ga.gc(uri, storage_options=options) == []  # younger than a day
        removed = ga.gc(uri, grace=0, storage_options=options)
        assert removed == [f"{uri}/{p}" for p in prefixes if p != used]
        fs.invalidate_cache()
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(uri)) == sorted(["grouparrow.json", used])
        assert ga.verify(uri, storage_options=options).ok


# -- kills in time ----------------------------------------------------------------------------
#: Phases to kill builds in the middle of (between two points), most telling first: the
#: map step's COPY, a shard's sort, a shard's write, the index's close, the renames...
PHASES = [
    ("map:start", "map:done"),
    ("reduce:0:start", "reduce:0:writing"),
    ("reduce:0:writing", "reduce:0:done"),
    ("index:done", "commit:manifest-before"),
    ("commit:manifest-written", "commit:published"),
    ("reduce:1:start", "reduce:1:writing"),
    ("reduce:2:writing", "reduce:2:done"),
    ("build:staged", "map:start"),
]
PHASES += [p for p in itertools.pairwise(LOCAL_POINTS) if p not in PHASES]


def test_kill_in_time(data: Data, tmp_path: Path) -> None:
    """Builds of 20,000 rows over a previous output, killed after a delay: the times at which
    a first build passed each point are measured, and each kill aims at the middle of one
    phase (``PHASES``, in turn; several kills per phase are spread over it). Timing varies
    from run to run, so a kill may land in a neighbouring phase or after the build: the
    output must be the old dataset or the new one, whole, whenever it lands."""
    shutil.copytree(data.old, tmp_path / "traced")
    times = timed_trace(tmp_path, data.big_src, str(tmp_path / "traced"), "overwrite")
    assert list(times) == LOCAL_POINTS
    per_phase = -(-TIME_KILLS // len(PHASES))
    runs, befores = [], {}
    for n in range(TIME_KILLS):
        (a, b), k = PHASES[n % len(PHASES)], n // len(PHASES)
        out = tmp_path / f"t{n:03d}"
        befores[out.name] = previous_output(data, out, False)
        delay = times[a] + (k + 0.5) / per_phase * (times[b] - times[a])
        runs.append(Run(out=out, uri=str(out), mode="overwrite", delay=delay, previous=True))
    execute_all(runs, data.big_src)
    outcomes = []
    for n, run in enumerate(runs):
        outcomes.append(check_killed(run, befores[run.out.name], data.big))
        clean_up(run, CLEANERS[n % 3], data.big_src, data.big)
    assert set(outcomes) <= {"old", "new"}


# -- recovery and gc --------------------------------------------------------------------------
def _killed_between_renames(data: Data, tmp_path: Path) -> Path:
    """``tmp_path/out``, the old dataset, after an overwrite (no atomic swap) was killed
    between its two renames."""
    out = tmp_path / "out"
    shutil.copytree(data.old, out)
    run = execute(
        Run(out=out, uri=str(out), mode="overwrite", point="commit:moved-aside"),
        data.new_src,
        exchange=False,
    )
    assert run.returncode == -signal.SIGKILL
    return out


def test_a_build_recovers_an_interrupted_two_rename_overwrite(data: Data, tmp_path: Path) -> None:
    """Killed between the two renames (no atomic swap): the next build, even one that fails
    because the output exists, first puts the old output back."""
    out = _killed_between_renames(data, tmp_path)
    assert not out.exists() and len(leftovers(tmp_path, "out")) == 2
    with pytest.raises(ga.OutputExistsError, match="already exists"):
        ga.build(data.new_src, key="k", output=out, num_shards=NUM_SHARDS)
    assert files_of(out) == data.old_files
    assert ga.verify(out).ok
    (staging,) = leftovers(tmp_path, "out")  # the killed build's, complete: not published
    assert ".out.grouparrow-tmp-" in staging
    assert [Path(p).name for p in ga.gc(out)] == [staging]
    assert leftovers(tmp_path, "out") == []


def test_open_recovers_an_interrupted_two_rename_overwrite(data: Data, tmp_path: Path) -> None:
    """Killed between the two renames: ``ga.open`` puts the old output back (through
    :func:`grouparrow.gc.recover`) and opens it; gc then deletes the dead build's files."""
    out = _killed_between_renames(data, tmp_path)
    assert not out.exists()
    assert ga.open(out).num_rows == 4000
    assert files_of(out) == data.old_files and ga.verify(out).ok
    (staging,) = leftovers(tmp_path, "out")
    assert [Path(p).name for p in ga.gc(out)] == [staging]
    assert leftovers(tmp_path, "out") == []


def test_gc_keeps_a_running_build(data: Data, tmp_path: Path) -> None:
    """A build that is running (its owner file locked) is never deleted by gc, nor by
    another build's clean-up; once it is killed, gc deletes its staging directory."""
    out = tmp_path / "out"
    shutil.copytree(data.old, out)
    run = Run(out=out, uri=str(out), mode="overwrite")
    hang = [
        {"point": "reduce:1:start", "action": "trace"},
        {"point": "reduce:1:start", "action": "sleep", "seconds": 120},
    ]
    process = spawn(run, data.new_src, hang)
    trace_file = tmp_path / "faults-out.json.trace"
    try:
        deadline = time.monotonic() + 60
        while not trace_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.02)
        (staging,) = leftovers(tmp_path, "out")
        owner = json.loads((tmp_path / staging / _commit.OWNER).read_text())
        assert owner["pid"] == process.pid
        assert ga.gc(out) == [] and ga.gc(out, grace=0) == []
        other = tmp_path / "other"  # a build to another output of the same folder
        ga.build(data.old_src, key="k", output=other, num_shards=NUM_SHARDS)
        ga.build(data.old_src, key="k", output=out, num_shards=NUM_SHARDS, mode="overwrite")
        assert leftovers(tmp_path, "out") == [staging]
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert [Path(p).name for p in ga.gc(out)] == [staging]
    assert leftovers(tmp_path, "out") == []
    assert shard_hashes(out) == shard_hashes(data.old)  # the last build: old_src again


def test_gc_cli(data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``grouparrow gc PATH [--dry-run] [--json]``: what it deletes, one per line."""
    out = tmp_path / "out"
    shutil.copytree(data.old, out)
    run = execute(Run(out=out, uri=str(out), mode="overwrite", point="reduce:0:done"), data.new_src)
    assert run.returncode == -signal.SIGKILL
    (staging,) = leftovers(tmp_path, "out")
    assert main(["gc", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out == f"would remove {tmp_path / staging}\n"
    assert leftovers(tmp_path, "out") == [staging]
    assert main(["gc", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "removed": [str(tmp_path / staging)],
        "dry_run": False,
    }
    assert main(["gc", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: nothing to remove\n"
    assert main(["gc", str(out), "--grace", "-1"]) == 2
    assert "grace" in capsys.readouterr().err


def test_the_scratch_of_object_store_builds_is_owned_and_collected(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object-store build's local scratch (``grouparrow-build-*`` under its
    ``temp_directory``) is owned and locked like a local staging directory: ``gc`` (and
    ``grouparrow gc --temp-directory``) and every successful build to the same output delete
    those of killed builds to that output, never a running build's, nor another output's,
    nor one with no owner file (``local://`` outputs: the object-store commit on local
    disk)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    a, b = f"local://{tmp_path}/a", f"local://{tmp_path}/b"
    options = json.dumps(LOCAL_OPTIONS)
    runs = 0

    def start(uri: str, faults: list[Any]) -> subprocess.Popen[str]:
        nonlocal runs
        runs += 1
        spec = tmp_path / f"faults-{runs}.json"
        spec.write_text(json.dumps(faults))
        args = [data.new_src, uri, "overwrite", "1", options, str(temp)]
        return subprocess.Popen(
            [sys.executable, "-c", SCRIPT, *args],
            cwd=ROOT,
            env={**os.environ, "GROUPARROW_FAULTS": str(spec)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def killed(uri: str, point: str) -> Path:
        """The scratch directory of a build to ``uri`` killed at ``point``."""
        before = set(temp.iterdir())
        process = start(uri, [{"point": point, "action": "kill"}])
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, stderr[-2000:]
        (scratch,) = set(temp.iterdir()) - before
        owner = json.loads((scratch / _commit.OWNER).read_text())
        assert (owner["pid"], owner["output"]) == (process.pid, uri)
        assert scratch.name.startswith(_commit.SCRATCH_PREFIX)
        return scratch

    dead_a, dead_b = killed(a, "reduce:1:writing"), killed(b, "map:done")
    unowned = temp / f"{_commit.SCRATCH_PREFIX}unowned"  # an older grouparrow's, say
    unowned.mkdir()
    running = start(a, [{"point": "reduce:1:start", "action": "sleep", "seconds": 120}])
    try:
        deadline = time.monotonic() + 60
        while len(list(temp.iterdir())) < 4:
            assert running.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        (alive,) = set(temp.iterdir()) - {dead_a, dead_b, unowned}
        with _commit.parent_lock(temp):  # held while a build makes its scratch and owner file
            pass
        assert _commit.owner_alive(alive) and not _commit.owner_alive(dead_a)
        kept = {"storage_options": LOCAL_OPTIONS, "temp_directory": temp}
        assert ga.gc(a, dry_run=True, **kept) == [str(dead_a)]
        assert dead_a.exists()
        assert main(["gc", a, "--temp-directory", str(temp), "--storage-options", options]) == 0
        assert capsys.readouterr().out == f"removed {dead_a}\n"
        assert ga.gc(a, grace=0, **kept) == []  # the running one, another's, an unowned one
        dead_a = killed(a, "index:done")
        ga.build(
            data.old_src,
            key="k",
            output=a,
            num_shards=NUM_SHARDS,
            mode="overwrite",
            temp_directory=temp,
            storage_options=LOCAL_OPTIONS,
        )  # a successful build to `a` removes its dead scratch
        assert sorted(temp.iterdir()) == sorted([alive, dead_b, unowned])
    finally:
        running.kill()
        running.communicate(timeout=60)
    assert ga.gc(a, **kept) == [str(alive)]
    assert ga.gc(b, **kept) == [str(dead_b)]
    assert list(temp.iterdir()) == [unowned]


@pytest.fixture(autouse=True)
def _no_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builds made in this process are never killed."""
    monkeypatch.delenv("GROUPARROW_FAULTS", raising=False)
