"""Fault injection for tests: crash, kill, slow down or trace this process at named points.

The engine calls :func:`point` at the steps of a build (``"map:done"``, ``"reduce:1:start"``,
``"commit:published"``, ...; the list is in ``tests/reliability/test_crash.py`` and
docs/reliability.md); a Ray build's driver at its own (``"ray:map:1"``, ``"ray:index-written"``,
...; listed in :mod:`grouparrow.distributed.ray_engine` and checked by
``tests/reliability/test_crash_ray.py``), its tasks at ``"map:<fragment>"`` and
``"reduce:<shard>"``. When ``$GROUPARROW_FAULTS`` names a JSON file, each entry of the list it
holds says what to do at the points it matches:

- ``"map:1"``: a point's name: exit at once with status 77 (``os._exit``), as a killed worker
  would, the first time a process reaches it (a ``<file>.<point>.done`` file beside the list
  records that; later attempts pass, so that a retried task succeeds);
- ``{"point": "reduce:1:start", "action": "kill"}``: send SIGKILL to this process, once as
  above (``"action": "exit"`` is the plain name's behaviour); ``point`` may be a glob
  (``"reduce:*:start"``: each matching point once);
- ``{"point": "*", "action": "sleep", "seconds": 0.1}``: sleep at every matching point;
- ``{"point": "commit:manifest-written", "action": "wait", "file": "/tmp/go"}``: wait there
  until the file exists (at most ``seconds``, default 60): a barrier that lines up several
  processes at the same step;
- ``{"point": "*", "action": "trace"}``: append the point's name and the time
  (``time.monotonic()``, the same clock in every process) to ``<file>.trace``, one point per
  line: which points a build passes, in order, and when.

Without the variable (always, outside tests) :func:`point` costs one environment lookup.

Example:
    >>> point("map:0")  # no $GROUPARROW_FAULTS: nothing happens
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import time
from typing import Any

EXIT_STATUS = 77
ACTIONS = ("exit", "kill", "sleep", "trace", "wait")


def point(name: str) -> None:
    """Do what ``$GROUPARROW_FAULTS`` lists for the point ``name`` (nothing if unlisted)."""
    spec = os.environ.get("GROUPARROW_FAULTS")
    if not spec:
        return
    try:
        with open(spec, encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError:
        return
    for entry in entries:
        pattern, action, seconds = _entry(entry)
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if action == "sleep":
            time.sleep(seconds)
        elif action == "wait":
            deadline = time.monotonic() + (seconds or 60.0)
            while not os.path.exists(entry["file"]) and time.monotonic() < deadline:
                time.sleep(0.001)
        elif action == "trace":
            fd = os.open(f"{spec}.trace", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
            try:
                os.write(fd, f"{name} {time.monotonic():.6f}\n".encode())
            finally:
                os.close(fd)
        elif _first_time(spec, name):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)  # pragma: no cover - the signal is delivered first
            os._exit(EXIT_STATUS)


def _entry(entry: Any) -> tuple[str, str, float]:
    """``(pattern, action, seconds)`` of one entry of the list."""
    if isinstance(entry, str):
        return entry, "exit", 0.0
    if not isinstance(entry, dict) or not isinstance(entry.get("point"), str):
        raise ValueError(f"$GROUPARROW_FAULTS: {entry!r} is not a point name or an object")
    action = entry.get("action", "exit")
    if action not in ACTIONS:
        raise ValueError(f"$GROUPARROW_FAULTS: action {action!r} is not one of {ACTIONS}")
    if action == "wait" and not isinstance(entry.get("file"), str):
        raise ValueError(f"$GROUPARROW_FAULTS: {entry!r} waits for no file")
    return entry["point"], action, float(entry.get("seconds", 0.0))


def _first_time(spec: str, name: str) -> bool:
    """Whether no process reached ``name`` before (and mark it reached)."""
    done = f"{spec}.{name.replace(':', '-')}.done"
    try:
        fd = os.open(done, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True
